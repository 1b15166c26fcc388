"""DSPy prompt optimisation: a chain-of-thought QA program compiled, then evaluated (honest use).

BootstrapFewShot runs the program over the training set to collect demonstrations;
BootstrapFewShotWithRandomSearch also scores several candidate programs on a validation
set. Data: lab/data/arithmetic_qa_200.jsonl, made for the lab.
"""

from _common import API_KEY, BASE_URL, MODEL, RESULT, main, param, rows


def run() -> None:
    import dspy

    lm = dspy.LM(f"openai/{MODEL}", api_base=BASE_URL, api_key=API_KEY, cache=False, num_retries=2,
                 max_tokens=param("max_tokens", 1024), temperature=param("temperature", 0.0))
    dspy.configure(lm=lm)
    examples = [dspy.Example(question=r["question"], answer=r["answer"]).with_inputs("question")
                for r in rows("arithmetic_qa_200.jsonl")]
    train = examples[:param("train", 40)]
    dev = examples[100:100 + param("dev", 60)]

    def exact(example, prediction, trace=None) -> bool:
        return str(example.answer).strip() == str(getattr(prediction, "answer", "")).strip()

    program = dspy.ChainOfThought("question -> answer: int")
    if param("optimizer") == "random_search":
        optimizer = dspy.BootstrapFewShotWithRandomSearch(
            metric=exact, max_bootstrapped_demos=2, max_labeled_demos=4,
            num_candidate_programs=param("candidates", 3), num_threads=param("num_threads", 4))
        compiled = optimizer.compile(program, trainset=train, valset=dev[:20])
    else:
        optimizer = dspy.BootstrapFewShot(metric=exact, max_bootstrapped_demos=4, max_labeled_demos=4)
        compiled = optimizer.compile(program, trainset=train)
    evaluate = dspy.Evaluate(devset=dev, metric=exact, num_threads=param("num_threads", 4),
                             display_progress=False, provide_traceback=True, max_errors=10_000)
    result = evaluate(compiled)
    failed = sum(1 for *_, score in getattr(result, "results", []) if score is None)
    RESULT.ok(len(dev) - failed)
    if failed:
        RESULT.error(f"{failed} evaluation rows raised", failed)
    RESULT.notes["score"] = float(getattr(result, "score", 0.0))
    RESULT.notes["lm_calls"] = len(lm.history)


main(run)
