"""Prompt text for simulated clients: real human prompts for honest keys, the Alpaca
self-instruct material and filled templates for harvesters.

Data files are read once from traffic/data (see its SOURCES.md) and cached; every
builder takes the caller's `random.Random`, so a seed fixes every word.
"""

from __future__ import annotations

import bisect
import gzip
import json
import random
import re
from functools import cache
from importlib import resources

from . import vocabulary as words

_CODE_HINT = re.compile(
    r"```|\b(python|javascript|typescript|java|c\+\+|rust|golang|sql|bash|regex|function|script|code|"
    r"compile|api|class|docker|kubernetes|pandas|numpy|react|html|css)\b",
    re.I,
)


def _data_text(name: str) -> str:
    raw = resources.files("traffic").joinpath("data", name).read_bytes()
    if name.endswith(".gz"):
        raw = gzip.decompress(raw)
    return raw.decode("utf-8")


def _data_rows(name: str) -> list[dict]:
    return [json.loads(line) for line in _data_text(name).split("\n") if line.strip()]


@cache
def benchmark(name: str) -> tuple[tuple[str, ...], ...]:
    """A public benchmark's questions, each as its turns: `mt_bench`, `vicuna_bench`, `arena_hard`."""
    if name == "arena_hard":
        return tuple((row["prompt"],) for row in _data_rows("arena_hard_v0.1_question.jsonl.gz"))
    if name in ("mt_bench", "vicuna_bench"):
        return tuple(tuple(row["turns"]) for row in _data_rows(f"{name}_question.jsonl.gz"))
    raise ValueError(f"unknown benchmark {name!r}; known: arena_hard, mt_bench, vicuna_bench")


@cache
def human_prompts() -> tuple[str, ...]:
    """First turns people actually wrote: Chatbot Arena users, benchmark authors, self-instruct experts."""
    prompts = [turns[0] for name in ("arena_hard", "mt_bench", "vicuna_bench") for turns in benchmark(name)]
    for row in _data_rows("self_instruct_user_oriented_252.jsonl.gz"):
        extra = row["instances"][0]["input"].strip() if row["instances"] else ""
        prompts.append(f"{row['instruction']}\n\n{extra}" if extra else row["instruction"])
    return tuple(prompts)


@cache
def coding_prompts() -> tuple[str, ...]:
    """Real code questions: Arena-Hard v2.0 coding, plus Arena-Hard v0.1 prompts that mention code."""
    prompts = [row["prompt"] for row in _data_rows("arena_hard_v2.0_coding_120.jsonl.gz")]
    prompts += [turns[0] for turns in benchmark("arena_hard") if _CODE_HINT.search(turns[0])]
    return tuple(prompts)


@cache
def seed_tasks(code: bool = False) -> tuple[dict, ...]:
    """Human-written self-instruct seed tasks (Alpaca's 175, or Code Alpaca's 20)."""
    name = "codealpaca_seed_tasks_20.jsonl.gz" if code else "alpaca_seed_tasks_175.jsonl.gz"
    rows = _data_rows(name)
    return tuple({"instruction": row["instruction"], **row["instances"][0]} for row in rows)


@cache
def generation_template(code: bool = False) -> str:
    return _data_text("codealpaca_prompt.txt" if code else "alpaca_prompt.txt")


def generation_prompt(rng: random.Random, code: bool = False) -> str:
    """The Alpaca bootstrapping request: the template plus three sampled seed tasks, asking
    for twenty more (as stanford_alpaca's generate_instruction.py builds it)."""
    prompt = generation_template(code) + "\n"
    tasks = rng.sample(seed_tasks(code), 3)
    for number, task in enumerate(tasks, 1):
        instruction = re.sub(r"\s+", " ", task["instruction"]).strip().rstrip(":")
        prompt += f"###\n{number}. Instruction: {instruction}\n"
        prompt += f"{number}. Input:\n{task['input'] or '<noinput>'}\n{number}. Output:\n{task['output']}\n"
    return prompt + f"###\n{len(tasks) + 1}. Instruction:"


def bootstrap_prompt(rng: random.Random) -> str:
    """self-instruct's bootstrap_instructions.py request: eight numbered instructions (six
    human seeds, two from the growing machine-made pool, shuffled), then "9." to continue."""
    instructions = [task["instruction"] for task in rng.sample(seed_tasks(), 6)]
    instructions += [filled_instruction(rng) for _ in range(2)]
    rng.shuffle(instructions)
    prompt = "Come up with a series of tasks:\n"
    for number, instruction in enumerate(instructions, 1):
        prompt += f"{number}. {_one_line(instruction)}\n"
    return prompt + f"{len(instructions) + 1}."


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().rstrip(":")


def filled_instruction(rng: random.Random) -> str:
    """A self-instruct style task from a template family with varied fillers."""
    topic, topic2 = rng.sample(words.TOPICS, 2)
    return rng.choice(words.INSTRUCTION_TEMPLATES).format(
        topic=topic, topic2=topic2, form=rng.choice(words.FORMS), goal=rng.choice(words.GOALS),
        n=rng.randint(3, 12), sentence=f"{rng.choice(words.SENTENCE_SUBJECTS)} {rng.choice(words.SENTENCE_PREDICATES)}",
        language=rng.choice(words.LANGUAGES), audience=rng.choice(words.AUDIENCES), tone=rng.choice(words.TONES),
    )


def harvest_task(rng: random.Random) -> tuple[str, str]:
    """(instruction, input): a seed task with a varied constraint, or a freshly filled
    instruction. Harvesters drop near-duplicates, so exact repeats are rare."""
    if rng.random() < 0.3:
        task = rng.choice(seed_tasks(code=rng.random() < 0.15))
        variation = rng.choice(words.SEED_VARIATIONS).format(
            n=rng.randint(2, 9), words=rng.choice((50, 80, 100, 150, 200, 300)), audience=rng.choice(words.AUDIENCES),
            language=rng.choice(words.LANGUAGES),
        )
        return f"{task['instruction']} {variation}".strip(), task["input"]
    return filled_instruction(rng), ""


HARVEST_WRAPPERS = ("plain", "alpaca", "labelled")


def harvest_prompt(rng: random.Random, wrapper: str = "plain") -> str:
    """One single-turn instruction a harvester wants answered, in the key's chosen wrapper."""
    instruction, task_input = harvest_task(rng)
    if wrapper == "alpaca":
        template = words.ALPACA_WITH_INPUT if task_input else words.ALPACA_NO_INPUT
        return template.format(instruction=instruction, input=task_input)
    if wrapper == "labelled":
        return f"Instruction: {instruction}\nInput: {task_input or '<noinput>'}\nOutput:"
    return f"{instruction}\n\n{task_input}" if task_input else instruction


REASONING_LANGUAGES = tuple(words.REASONING_PHRASES)


def reasoning_prompt(rng: random.Random, language: str) -> str:
    """A task plus a request for the full reasoning, in `language` (en, zh, es, fr, de, ja)."""
    phrase = rng.choice(words.REASONING_PHRASES[language])
    if rng.random() < 0.5:
        task = rng.choice(words.REASONING_TASKS[language]).format(
            a=rng.randint(2, 9), b=rng.randint(2, 30), c=rng.randint(2, 12), n=rng.randint(20, 2000)
        )
    else:
        task = harvest_prompt(rng)
    return f"{task}\n{phrase}" if rng.random() < 0.7 else f"{phrase}\n{task}"


def sweep_prompt(topic: str, audience: str, aspects: str) -> str:
    return f"Explain {topic} to {audience} in detail, covering {aspects}."


def paraphrased_prompt(rng: random.Random) -> str:
    """A harvesting request whose every part (opening, ask, extras, order) is drawn anew."""
    ask = rng.choice(words.PARAPHRASE_ASKS).format(topic=rng.choice(words.TOPICS))
    ask = ask[0].upper() + ask[1:]
    if not ask.endswith("?"):
        ask += rng.choice((".", "!", ", please.", "."))
    extras = rng.sample(words.PARAPHRASE_EXTRAS, rng.randint(0, 3))
    parts = [ask, *extras]
    rng.shuffle(parts)
    opening = rng.choice(words.PARAPHRASE_OPENINGS)
    return rng.choice((" ", "\n")).join(([opening] if opening else []) + parts)


def document_text(rng: random.Random, chars: int) -> str:
    """Policy-style prose of about `chars` characters, in paragraphs."""
    paragraphs, total = [], 0
    while total < chars:
        picked = rng.sample(words.DOCUMENT_SENTENCES, rng.randint(3, 6))
        paragraph = " ".join(sentence.format(n=rng.randint(low, high)) for sentence, low, high in picked)
        paragraphs.append(paragraph)
        total += len(paragraph) + 2
    return "\n\n".join(paragraphs)


def assistant_reply(rng: random.Random, tokens: int) -> str:
    """Stand-in text of about `tokens` tokens for earlier assistant turns in a conversation:
    a run of whole sentences from a long shuffled text, cut once it is long enough."""
    text, starts = _reply_text()
    first = rng.randrange(len(starts) // 2)
    last = bisect.bisect_left(starts, starts[first] + tokens * 4 + 1)
    return text[starts[first]:starts[last] - 1]


@cache
def _reply_text() -> tuple[str, tuple[int, ...]]:
    """The assistant sentences shuffled over and over (seeded): 16,000 words to slice from."""
    order, pool = random.Random(0), words.ASSISTANT_SENTENCES
    sentences = [sentence for _ in range(400) for sentence in order.sample(pool, len(pool))]
    starts, offset = [], 0
    for sentence in sentences:
        starts.append(offset)
        offset += len(sentence) + 1
    return " ".join(sentences) + " ", tuple(starts)


_FAMILIES = (
    lambda rng: sweep_prompt(rng.choice(words.TOPICS), rng.choice(words.AUDIENCES), rng.choice(words.ASPECTS)),
    lambda rng: harvest_prompt(rng, "alpaca"),
    lambda rng: "You are an expert tutor. Write a comprehensive, well-structured answer with examples.\n\n"
                f"Question: {filled_instruction(rng)}",
    lambda rng: f"Task: {harvest_task(rng)[0]}\nGive a detailed, high-quality answer.\nAnswer:",
)
FAMILY_COUNT = len(_FAMILIES)


def family_prompt(rng: random.Random, family: int) -> str:
    """A prompt from one of the template families a coordinated network can share."""
    return _FAMILIES[family](rng)


@cache
def reasoning_questions() -> tuple[tuple[str, ...], ...]:
    """Hard questions people bring to reasoning models, each as its turns: Arena-Hard v2.0
    maths and coding prompts (Chatbot Arena users) and MT-Bench's two-turn maths,
    reasoning and coding questions."""
    subsets = ("arena_hard_v2.0_math_120.jsonl.gz", "arena_hard_v2.0_coding_120.jsonl.gz")
    questions = [(row["prompt"],) for name in subsets for row in _data_rows(name)]
    questions += [tuple(row["turns"]) for row in _data_rows("mt_bench_question.jsonl.gz")
                  if row["category"] in ("math", "reasoning", "coding")]
    return tuple(questions)


_CODE_LINE = re.compile(
    r"^(\s{2,}\S|.*[;{}]\s*$|\s*(def|class|import|from|return|if|for|while|const|let|var|function|#include|"
    r"public|private|SELECT|FROM)\b)"
)


@cache
def code_blocks() -> tuple[str, ...]:
    """Runs of five or more code lines found in real users' coding questions."""
    blocks = []
    for text in coding_prompts():
        run: list[str] = []
        for line in [*text.split("\n"), ""]:
            if _CODE_LINE.match(line):
                run.append(line)
                continue
            if len(run) >= 5:
                blocks.append("\n".join(run))
            run = []
    return tuple(blocks)


def code_context(rng: random.Random, chars: int) -> str:
    """About `chars` characters of an editor's context: real code blocks, one after another."""
    blocks, start = code_blocks(), rng.randrange(len(code_blocks()))
    parts, total, index = [], 0, start
    while total < chars:
        block = blocks[index % len(blocks)]
        parts.append(block)
        total += len(block) + 2
        index += 1
    return "\n\n".join(parts)[:chars]


class DocumentShelf:
    """One app's documents: a long text generated once from the key's `rng` and handed out
    in slices, so long prompts cost a slice, not a fresh essay, and a key's documents
    differ from every other key's."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = random.Random(rng.random())
        self._text = ""

    def text(self, rng: random.Random, chars: int) -> str:
        """About `chars` characters starting at a paragraph, grown on demand."""
        if chars <= 0:
            return ""
        while len(self._text) < 2 * chars + 4000:
            self._text += document_text(self._rng, 4000) + "\n\n"
        start = self._text.find("\n\n", rng.randrange(len(self._text) - chars - 4000)) + 2
        return self._text[start:start + chars]
