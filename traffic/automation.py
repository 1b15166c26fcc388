"""Honest automation that resembles harvesting: the hard negatives of the new families.

An intent classifier reading top-5 logprobs of a one-token label, LLM-as-judge evaluations
over a fixed case set, summarisation / translation / extraction pipelines with JSON
schemas, prompt-optimisation runs re-asking one dev set under many instructions, test
questions generated from a team's own documents, and a content-writing product. What they
share with harvesters is their machinery; what they lack is an ever-new stream of tasks
whose answers are the product.

Same shape as honest.py: `(rng, key, start_ts, duration_s, params)` -> records in ts order.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterator, Mapping
from itertools import islice

from . import prompts, traces
from . import vocabulary as words
from .harvest_pipelines import OFFSETS, cap_options, stand_in
from .records import APP_AGENTS, CHAT_MODELS, Client, chat_body, documentation_ip, system, user
from .timing import next_local_time, paced_arrivals, regular_arrivals

INTENTS = (
    ("billing", "login_problem", "cancel_subscription", "upgrade_plan", "bug_report", "other"),
    ("order_status", "return_item", "product_question", "complaint", "shipping_address", "other"),
    ("book_appointment", "reschedule", "cancel", "opening_hours", "price_question", "other"),
)
CLASSIFY_SYSTEM = ("Classify the customer's message into exactly one intent: {labels}. Reply with the label only.",
                   "You are an intent classifier. Possible intents: {labels}. Output one intent and nothing else.",
                   "Clasifica el mensaje del cliente en una de estas intenciones: {labels}. Responde solo la etiqueta.")
JUDGE_RUBRICS = (
    ("You are grading an answer for factual correctness against a reference. Return JSON: {\"score\": 1-5, "
     "\"reason\": one sentence}."),
    "Evaluate whether the answer is faithful to the context. Respond with JSON {\"faithful\": true|false}.",
    ("You will be given a question and a response. Rate helpfulness from 1 to 10. Output only the number, then a "
     "short justification."),
    "Bewerte, ob die Antwort die Frage vollständig beantwortet. Antworte als JSON {\"score\": 0-1, \"grund\": ...}.",
)
DOCUMENT_TASKS = {
    "summarise": ("Summarise the document below in at most 150 words for an executive audience.",
                  "Fasse das folgende Dokument in fünf Stichpunkten zusammen.",
                  "Résume le document suivant en un paragraphe."),
    "translate": ("Translate the document below into {language}. Keep headings and numbers unchanged.",
                  "Traduce el siguiente documento al {language}, conservando el formato."),
    "extract": (("Extract the parties, dates, amounts and obligations from the contract below as JSON matching the "
                "schema."), "Extrae los campos del esquema del documento siguiente. Devuelve solo JSON."),
}
EXTRACTION_SCHEMA = {"type": "json_schema", "json_schema": {"name": "extraction", "strict": True, "schema": {
    "type": "object", "properties": {"parties": {"type": "array", "items": {"type": "string"}},
                                     "dates": {"type": "array", "items": {"type": "string"}},
                                     "amounts": {"type": "array", "items": {"type": "number"}}},
    "required": ["parties", "dates", "amounts"], "additionalProperties": False}}}
PROPOSER = (
    "Use the information below to learn about a task that we are trying to solve using calls to an LM, then generate "
    "a new instruction that will be used to prompt a Language Model to better solve the task.\n\nDATASET SUMMARY: "
    "{summary}\n\nPREVIOUS INSTRUCTIONS AND SCORES:\n{history}\n\nPROPOSED INSTRUCTION:"
)
QUESTION_GENERATION = (
    ("Context information is below.\n---------------------\n{context}\n---------------------\nGiven the context "
     "information and not prior knowledge, generate only questions based on the below query.\nYou are a Teacher/ "
     "Professor. Your task is to setup {n} questions for an upcoming quiz/examination. The questions should be "
     "diverse in nature across the document. Restrict the questions to the context information provided."),
    ("Generate {n} question-answer pairs that a new employee might ask, answerable only from this passage of our "
     "handbook. Return a JSON list of {{\"question\", \"answer\"}}.\n\n{context}"),
    ("Rewrite the following question so that answering it requires combining two facts from the context. Keep it "
     "answerable from the context.\nQuestion: {question}\nContext: {context}"),
)
CONTENT_ASKS = (
    "Write a blog post about {topic} for {audience}.", "Write a product description for our new {thing}.",
    "Draft a LinkedIn post announcing our {thing}.", "Write a newsletter intro about {topic}.",
    "Escribe un artículo de blog sobre {topic} para {audience}.", "Schreibe einen Blogartikel über {topic}.",
    "Write five catchy headlines about {topic}.",
)
THINGS = ("running shoes", "budget app", "coffee subscription", "hiking backpack", "CRM plugin", "desk lamp")


def _app_client(rng: random.Random, key: str) -> Client:
    return Client(key, documentation_ip(rng, v6_share=0.0), rng.choice(APP_AGENTS), rng.uniform(60, 110))


def _app_arrivals(rng: random.Random, start_ts: float, duration_s: float, params: Mapping) -> Iterator[float]:
    """An app's requests in a real customer's rhythm (ServeGen), scaled to one key."""
    profile = traces.client_profile(rng, traces.LANGUAGE, params["volume_scale"], params["max_requests_per_day"],
                                    steady=True)
    return profile.arrivals(rng, start_ts, start_ts + duration_s, rng.choice(OFFSETS))


def _placed(rng: random.Random, instruction: str) -> Callable[[str], list[dict]]:
    """Where this key puts its fixed instruction: the system message, or atop the user's."""
    if rng.random() < 0.6:
        return lambda text: [system(instruction), user(text)]
    return lambda text: [user(f"{instruction}\n\n{text}")]


def intent_classifier(rng: random.Random, key: str, start_ts: float, duration_s: float, params: Mapping
                      ) -> Iterator[dict]:
    """An intent classifier: a one-token label with its top-5 logprobs for calibrated confidence, on every request."""
    client, model = _app_client(rng, key), rng.choice(("gpt-4o-mini", "gpt-4.1-mini", "gpt-4o"))
    labels = rng.choice(INTENTS)
    messages_of = _placed(rng, rng.choice(CLASSIFY_SYSTEM).format(labels=", ".join(labels)))
    cap = rng.randint(1, 5)
    options = {rng.choice(("max_tokens", "max_tokens", "max_completion_tokens")): cap, "logprobs": True,
               "top_logprobs": rng.choice((5, 5, 5, 3, 10)), "temperature": rng.choice((None, 0.0, 0.0))}
    for ts in _app_arrivals(rng, start_ts, duration_s, params):
        roll = rng.random()
        if roll < 0.5:
            text = rng.choice(words.SUPPORT_QUESTIONS).format(n=rng.randint(10000, 99999), p=rng.randint(1, 99),
                                                              device=rng.choice(words.DEVICES))
        else:
            text = rng.choice(prompts.human_prompts())[:300]
        yield client.request(rng, ts, chat_body(model, messages_of(text), **options), rng.randint(1, cap))


def llm_judge_eval(rng: random.Random, key: str, start_ts: float, duration_s: float, params: Mapping
                   ) -> Iterator[dict]:
    """LLM-as-judge evaluation: a fixed set of cases graded with one rubric per run, short verdicts, mostly temperature 0."""
    client, model = _app_client(rng, key), rng.choice(CHAT_MODELS)
    cases = [(rng.choice(prompts.human_prompts())[:600], rng.choice(words.RAG_QUESTIONS))
             for _ in range(rng.randint(*params["cases"]))]
    rubric = rng.choice(JUDGE_RUBRICS)
    messages_of = _placed(rng, rubric)
    options = {**cap_options(rng, (None, 50, 100, 256, 512)), "temperature": rng.choice((None, 0.0, 0.0, 0.0, 0.3)),
               "response_format": {"type": "json_object"} if "JSON" in rubric and rng.random() < 0.6 else None}
    workers, offset = rng.choice((1, 4, 8, 16)), rng.choice(OFFSETS)
    run_hours = sorted(rng.uniform(0, 24) for _ in range(rng.randint(1, 4)))  # CI runs a day, local time
    end, day = start_ts + duration_s, 0
    while True:
        for hour in run_hours:
            began = next_local_time(start_ts + day * 86400, offset, hour)
            if began >= end:
                return
            times = regular_arrivals(rng, began, end, rng.uniform(0.5, 3.0) / workers, 0.5)
            for ts, (question, reference) in zip(times, cases, strict=False):
                text = f"Question: {question}\nReference: {reference}\nAnswer: {stand_in(rng, rng.randint(40, 300))}"
                yield client.request(rng, ts, chat_body(model, messages_of(text), **options), rng.randint(5, 120))
        day += 1


def document_pipeline(rng: random.Random, key: str, start_ts: float, duration_s: float, params: Mapping
                      ) -> Iterator[dict]:
    """Summarisation, translation or structured extraction: one fixed instruction over long documents, often JSON schema."""
    client, model = _app_client(rng, key), rng.choice(CHAT_MODELS)
    kind = rng.choice(tuple(DOCUMENT_TASKS))
    instruction = rng.choice(DOCUMENT_TASKS[kind]).format(language=rng.choice(words.LANGUAGES))
    messages_of = _placed(rng, instruction)
    options = {**cap_options(rng), "temperature": rng.choice((None, 0.0, 0.0, 0.2))}
    if kind == "extract":
        options["response_format"] = EXTRACTION_SCHEMA if rng.random() < 0.7 else {"type": "json_object"}
    shelf = prompts.DocumentShelf(rng)
    pace = rng.choice(("steady", "bursty", "poisson", "diurnal"))
    rate = rng.uniform(*params["rate_per_s"])
    for ts in paced_arrivals(rng, start_ts, start_ts + duration_s, rate, pace, rng.choice(OFFSETS)):
        document = shelf.text(rng, rng.randint(1500, 12000))
        ratio = {"summarise": (0.05, 0.2), "translate": (0.9, 1.2), "extract": (0.02, 0.1)}[kind]
        yield client.request(rng, ts, chat_body(model, messages_of(document), **options),
                             max(20, int(len(document) / 4 * rng.uniform(*ratio))))


def prompt_optimisation(rng: random.Random, key: str, start_ts: float, duration_s: float, params: Mapping
                        ) -> Iterator[dict]:
    """A prompt-optimisation run (DSPy-like): one small dev set re-asked under many proposed instructions."""
    client, model = _app_client(rng, key), rng.choice(CHAT_MODELS)
    # A demo keeps its answer (bootstrapped once, as DSPy's few-shot optimisers do).
    dev_set = [(rng.choice(prompts.human_prompts())[:500], stand_in(rng, 40)) for _ in range(rng.randint(20, 200))]
    minibatch = min(len(dev_set), rng.choice((25, 50, len(dev_set))))
    in_system = rng.random() < 0.6
    eval_options = {**cap_options(rng, (None, 256, 512, 1024)), "temperature": rng.choice((None, 0.0))}
    history: list[str] = []
    began = start_ts + rng.uniform(0, duration_s * 0.5)
    times = paced_arrivals(rng, began, start_ts + duration_s, rng.uniform(0.5, 4.0), "bursty")

    def plan() -> Iterator[tuple[dict, int]]:
        for _ in range(rng.randint(*params["trials"])):
            proposal = PROPOSER.format(summary="Questions users ask a general assistant; answers judged by a metric.",
                                       history="\n".join(history[-5:]) or "(none)")
            yield chat_body(model, [user(proposal)], temperature=1.0), rng.randint(30, 120)
            instruction = f"Instruction #{len(history) + 1}: {stand_in(rng, rng.randint(20, 80))}"
            history.append(f"{instruction} -- score {rng.uniform(40, 90):.1f}")
            demos = rng.sample(dev_set, rng.randint(0, 3))
            for example in rng.sample(dev_set, minibatch):
                shots = "".join(f"Question: {demo}\nAnswer: {answer}\n\n" for demo, answer in demos)
                messages = ([system(instruction), user(f"{shots}Question: {example[0]}")] if in_system
                            else [user(f"{instruction}\n\n{shots}Question: {example[0]}")])
                yield chat_body(model, messages, **eval_options), int(rng.triangular(20, 400, 100))

    for ts, (body, answer) in zip(times, plan(), strict=False):
        yield client.request(rng, ts, body, answer)


def test_question_generation(rng: random.Random, key: str, start_ts: float, duration_s: float, params: Mapping
                             ) -> Iterator[dict]:
    """Test questions generated from a team's own documents (LlamaIndex, ragas), once, chunk by chunk."""
    client, model = _app_client(rng, key), rng.choice(CHAT_MODELS)
    templates = rng.sample(QUESTION_GENERATION, rng.randint(1, 3))
    options = {**cap_options(rng, (None, 512, 1024, 2048)), "temperature": rng.choice((None, 0.0, 0.7))}
    shelf, per_chunk = prompts.DocumentShelf(rng), rng.randint(2, 10)
    began = start_ts + rng.uniform(0, duration_s * 0.6)
    times = paced_arrivals(rng, began, start_ts + duration_s, rng.uniform(0.2, 3.0), rng.choice(("steady", "bursty")))
    for ts in islice(times, rng.randint(*params["chunks"])):
        template = rng.choice(templates)
        text = template.format(context=shelf.text(rng, rng.randint(1000, 4000)), n=per_chunk,
                               question=rng.choice(words.RAG_QUESTIONS))
        yield client.request(rng, ts, chat_body(model, [user(text)], **options), per_chunk * rng.randint(20, 70))


def content_writer(rng: random.Random, key: str, start_ts: float, duration_s: float, params: Mapping
                   ) -> Iterator[dict]:
    """A content-writing product: a fixed system prompt, its users' one-shot 'write about X' requests, long answers."""
    client, model = _app_client(rng, key), rng.choice(CHAT_MODELS)
    brand = hashlib.sha256(key.encode()).hexdigest()[:6]
    system_prompt = (f"You are the writing assistant of Brand-{brand}. Write in a {rng.choice(words.TONES)} tone, "
                     "use short paragraphs and Markdown headings, and never invent statistics.")
    options = {**cap_options(rng, (None, 1024, 2048, 4096)), "temperature": rng.choice((None, 0.7, 0.9, 1.0)),
               "stream": rng.choice((None, True, True))}
    for ts in _app_arrivals(rng, start_ts, duration_s, params):
        ask = rng.choice(CONTENT_ASKS).format(topic=rng.choice(words.TOPICS), audience=rng.choice(words.AUDIENCES),
                                              thing=rng.choice(THINGS))
        body = chat_body(model, [system(system_prompt), user(ask)], **options)
        yield client.request(rng, ts, body, int(rng.triangular(300, 2000, 700)))
