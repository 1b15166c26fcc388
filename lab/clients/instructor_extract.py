"""An instructor extraction pipeline: request texts into a pydantic model, with validation retries.

What a product team runs to tag a backlog of user requests: each text becomes a
`RequestTicket` (category, language, entities, urgency, summary) through instructor's
patched openai client, in TOOLS, JSON_SCHEMA or MD_JSON mode.
"""

from concurrent.futures import ThreadPoolExecutor
from typing import Literal

from _common import MODEL, RESULT, instruction_text, main, param, sample
from pydantic import BaseModel, Field

SYSTEM = "You are a precise information-extraction system. Extract only what the text states."


class Entity(BaseModel):
    name: str
    kind: Literal["person", "organisation", "place", "product", "concept", "other"]


class RequestTicket(BaseModel):
    category: Literal["writing", "coding", "maths", "advice", "facts", "other"]
    language: str = Field(description="ISO 639-1 code of the text's language")
    urgency: int = Field(ge=1, le=5)
    entities: list[Entity] = Field(default_factory=list, max_length=8)
    summary: str = Field(description="one sentence")


def run() -> None:
    import instructor
    import openai

    mode = {"tools": instructor.Mode.TOOLS, "json_schema": instructor.Mode.JSON_SCHEMA,
            "md_json": instructor.Mode.MD_JSON}[param("mode", "tools")]
    client = instructor.from_openai(openai.OpenAI(max_retries=2), mode=mode)
    texts = [instruction_text(r) for r in sample("alpaca_instructions_400.jsonl", param("rows", 200), 6)]

    def extract(text: str) -> None:
        messages = [{"role": "user", "content": f"Extract a ticket from this request:\n\n{text}"}]
        if param("system", False):
            messages.insert(0, {"role": "system", "content": SYSTEM})
        try:
            client.chat.completions.create(model=MODEL, response_model=RequestTicket, messages=messages,
                                           max_tokens=param("max_tokens", 512),
                                           temperature=param("temperature", 0.0), max_retries=2)
            RESULT.ok()
        except Exception as exc:  # noqa: BLE001 - instructor raises its own and pydantic's errors
            RESULT.error(exc)

    with ThreadPoolExecutor(param("concurrency", 4)) as pool:
        list(pool.map(extract, texts))


main(run)
