"""Text that reads like a model's answer, about the words of the prompt: sentences,
paragraphs, markdown lists and headings, code blocks when code is asked for, and a
thinking monologue for reasoning models. Every choice comes from the caller's rng."""

from __future__ import annotations

import random
import re

from . import tokens

_STOP = frozenset((
    "about", "above", "after", "again", "against", "also", "another", "answer", "because", "been", "before",
    "being", "below", "between", "both", "could", "does", "doing", "down", "during", "each", "few", "from",
    "further", "give", "have", "having", "here", "into", "itself", "just", "like", "make", "more", "most", "much",
    "must", "need", "only", "other", "over", "own", "please", "same", "should", "some", "such", "than", "that",
    "their", "them", "then", "there", "these", "they", "this", "those", "through", "under", "until", "very",
    "want", "were", "what", "when", "where", "which", "while", "whom", "will", "with", "within", "without",
    "would", "write", "your", "yours", "tell", "explain", "describe", "following", "given", "using", "list",
    "following", "provide", "create", "generate", "example", "examples", "sentence", "sentences", "words", "word",
    "text", "answer", "question", "respond", "response", "output", "input", "task", "instruction", "essay", "short",
    "long", "brief", "briefly", "classify", "sentiment", "solve", "what's", "summarize", "summarise", "paragraph",
    "paragraphs", "article", "story", "poem", "detailed", "help", "know", "best", "good", "steps", "step", "format",
    "json", "following", "return", "user", "assistant", "system", "based", "below", "above", "simple", "write",
))
OPENINGS = (
    "Here is a clear overview of {a}.", "Sure! Let's look at {a} step by step.", "Great question about {a}.",
    "{A} is worth looking at from a few angles.", "Below is a practical answer about {a} and {b}.",
    "In short, {a} comes down to a few key ideas.",
)
SENTENCES = (
    "The main point about {a} is that it depends on the context and the goal.",
    "A common mistake is to treat {a} and {b} as the same thing.",
    "In practice, {a} works well when the inputs are clear and consistent.",
    "For example, consider how {a} changes once {b} is taken into account.",
    "This is why many people start with {a} before moving on to {b}.",
    "It also helps to compare {a} with {b} side by side.",
    "Keep in mind that {a} can vary a lot from one situation to another.",
    "Most of the benefit comes from applying {a} consistently over time.",
    "One useful way to think about {a} is as a trade-off between cost and quality.",
    "If you are unsure, begin with the simplest version of {a} and refine it.",
    "The evidence suggests that {a} matters more than it first appears.",
    "When {b} is involved, the details of {a} become especially important.",
    "A good rule of thumb is to check {a} early and revisit it later.",
    "Experts usually recommend measuring {a} before changing anything.",
    "Small improvements in {a} tend to add up to noticeable results.",
    "There are exceptions, so it is worth testing {a} in your own setting.",
    "The history of {a} explains many of the conventions used today.",
    "Clear communication about {a} avoids most misunderstandings.",
)
CLOSINGS = (
    "In summary, {a} rewards a careful, step-by-step approach.",
    "Let me know if you would like more detail on {a} or {b}.",
    "Overall, focusing on {a} first gives the most reliable results.",
)
THOUGHTS = (
    "Okay, the user is asking about {a}.", "Let me think about what {a} really means here.",
    "First, I should consider {b}.", "Wait, maybe {a} also depends on {b}.", "Hmm, let me check that again.",
    "So the answer should cover {a} and then {b}.", "I need to be careful not to confuse {a} with {b}.",
    "Let me break this down into smaller steps.", "That seems right, but let me verify it once more.",
    "Actually, a simpler way to see it is through {a}.", "Now, how does {b} fit into this?",
)
NAMES = ("Alex Morgan", "Priya Shah", "Liu Wei", "Maria Garcia", "Sam Okafor", "Emma Larsen", "Yuki Tanaka")
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*")
MAX_PHRASE, MAX_TOPICS = 3, 12


def topics(prompt: str) -> list[str]:
    """What the prompt is about: runs of up to three content words ("Roman aqueducts"), in order;
    capitals kept where they are not a sentence's first letter."""
    text = prompt[-2000:]
    found: dict[str, None] = {}
    run: list[str] = []
    for match in _WORD.finditer(text):
        word = match.group()
        if len(word) < 4 or word.lower() in _STOP or len(run) == MAX_PHRASE:
            if run:
                found.setdefault(" ".join(run), None)
            run = []
            if len(word) < 4 or word.lower() in _STOP:
                continue
        opening = text[:match.start()].rstrip()[-1:] in ("", ".", "!", "?", ":", "\n")
        run.append(word.lower() if opening or not word[0].isupper() else word)
    if run:
        found.setdefault(" ".join(run), None)
    return list(found)[:MAX_TOPICS]


class Writer:
    """Writes about the topic words of one prompt."""

    def __init__(self, prompt: str, rng: random.Random) -> None:
        self.rng = rng
        self.topics = topics(prompt) or ["the topic", "the details"]

    def topic(self) -> str:
        return self.rng.choice(self.topics)

    def _fill(self, template: str) -> str:
        a, b = self.topic(), self.topic()
        return template.format(a=a, b=b, A=a[:1].upper() + a[1:])

    def sentence(self) -> str:
        return self._fill(self.rng.choice(SENTENCES))

    def phrase(self, words: int = 3) -> str:
        return " ".join(self.topic() for _ in range(max(words, 1)))

    def name(self) -> str:
        return self.rng.choice(NAMES)

    def label(self, prompt: str) -> str:
        """A short answer: one of the options the prompt offers, when it offers some."""
        options = re.findall(r"(?i)\b(positive|negative|neutral|mixed|yes|no|true|false|spam|ham)\b", prompt)
        return self.rng.choice(options).capitalize() if options else self.topic().capitalize()

    def answer(self, length: int, kind: str) -> str:
        """Markdown text of at least `length` tokens (the caller cuts it to size)."""
        parts, size = [self._fill(self.rng.choice(OPENINGS))], 0
        while size < length:
            block = self._block(kind, len(parts))
            parts.append(block)
            size += tokens.count(block) + 1
        return "\n\n".join(parts)

    def _block(self, kind: str, index: int) -> str:
        roll = self.rng.random()
        if kind == "code" and index == 1:
            return self.code()
        if kind in ("long", "code") and roll < 0.3:
            items = [f"{i}. **{self.topic().capitalize()}**: {self.sentence()}" for i in range(1, self.rng.randint(3, 6))]
            return "\n".join(items)
        if kind == "long" and roll < 0.4:
            return f"## {self.topic().capitalize()} and {self.topic()}"
        return " ".join(self.sentence() for _ in range(self.rng.randint(2, 5)))

    def code(self) -> str:
        name = re.sub(r"\W", "_", self.topic().lower())
        other = re.sub(r"\W", "_", self.topic().lower())
        return (f"```python\ndef process_{name}(items):\n    \"\"\"Return the {name} entries with their {other}.\"\"\"\n"
                f"    result = []\n    for item in items:\n        if item.get(\"{other}\"):\n"
                f"            result.append(item[\"{other}\"])\n    return result\n```")

    def thinking(self, length: int) -> str:
        sentences, size = [], 0
        while size < length:
            sentence = self._fill(self.rng.choice(THOUGHTS))
            sentences.append(sentence)
            size += tokens.count(sentence) + 1
        return " ".join(sentences)


def cut(text: str, length: int, ending: bool) -> list[str]:
    """The first `length` token pieces of `text`; an answer that stopped by itself ends a sentence."""
    chosen = tokens.pieces(text)[:length]
    if ending and chosen and len(chosen) == length and chosen[-1].strip() not in (".", "!", "?", "`"):
        chosen[-1] = "."
    return chosen
