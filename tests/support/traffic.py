"""Small, deterministic test traffic: a logprob harvester and an ordinary chat user.

The harvester asks many different one-shot questions for a single token with its top-10
logprobs (soft labels); the chat user holds multi-turn conversations about a few issues.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac

import httpx

from detectors.features import request_features, to_fields
from tests.conftest import TEST_SECRET

SUBJECTS = (
    "photosynthesis", "tidal forces", "compound interest", "binary search", "the french revolution",
    "plate tectonics", "vaccination", "supply chains", "quantum tunnelling", "jazz harmony", "sourdough",
    "glacier formation", "public key cryptography", "the water cycle", "game theory", "coral reefs",
    "volcanic eruptions", "inflation", "neural networks", "roman aqueducts", "black holes", "sleep cycles",
    "medieval castles", "ocean currents", "prime numbers", "bird migration", "electric motors", "tea ceremonies",
    "antibiotic resistance", "wind turbines",
)
TASKS = (
    "{s}: explain it to a curious teenager.",
    "Write a short poem about {s}.",
    "{s} in five surprising facts, please.",
    "Summarise the history of {s} in one paragraph.",
    "{s} - what are common misconceptions about it?",
    "Give an analogy that makes {s} easy to grasp.",
    "{s}: draft a quiz question with four options.",
    "How would you teach {s} in ten minutes?",
)
ISSUES = ("my parcel has not arrived", "the invoice shows the wrong amount", "I cannot log in to the app",
          "the blender makes a grinding noise")
FOLLOW_UPS = ("Thanks. It still does not work, what now?", "Could you check again please?",
              "That helped a bit. Anything else I can try?", "Ok, and how long will that take?")


def key_id(raw: str, secret: str = TEST_SECRET) -> str:
    return hmac.new(secret.encode(), raw.encode(), hashlib.sha256).hexdigest()[:16]


def harvest_request(i: int) -> dict:
    """A self-instruct harvester's request: new tasks invented around a seed, with soft labels.
    What marks it is in the prompt (it asks for new tasks), so it reads as a harvest whatever
    the length of the simulator's fixed answers."""
    subject = SUBJECTS[i % len(SUBJECTS)]
    task = TASKS[(i + i // len(SUBJECTS)) % len(TASKS)]
    prompt = f"Come up with a set of 5 new diverse task instructions like this one.\n{task.format(s=subject)}"
    return {"model": "sim", "messages": [{"role": "user", "content": prompt}],
            "logprobs": True, "top_logprobs": 10, "max_tokens": 256}


def chat_request(i: int) -> dict:
    issue = ISSUES[(i // 4) % len(ISSUES)]
    messages = [{"role": "system", "content": "You are the support assistant of a small web shop."},
                {"role": "user", "content": f"Hi, {issue} (order {4100 + i // 4})."}]
    for turn in range(i % 4):
        messages += [{"role": "assistant", "content": "Sorry to hear that. Let me look into it."},
                     {"role": "user", "content": FOLLOW_UPS[(i + turn) % len(FOLLOW_UPS)]}]
    return {"model": "sim", "messages": messages, "max_tokens": 200, "temperature": 0.7}


async def send(base_url: str, raw_key: str, bodies: list[dict], concurrency: int = 8) -> list[int]:
    """POST each body to /chat/completions with `raw_key`; the statuses, in order."""
    limit = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=base_url, timeout=15,
                                 headers={"authorization": f"Bearer {raw_key}"}) as client:
        async def one(body: dict) -> int:
            async with limit:
                return (await client.post("/chat/completions", json=body)).status_code

        return list(await asyncio.gather(*(one(body) for body in bodies)))


def event_fields(raw_key: str, body: dict, ts: float, completion_tokens: int = 1) -> dict[str, str]:
    """A stream entry as the gateway would append it for one finished request."""
    features = request_features(
        ts=ts, key_id=key_id(raw_key), path="/v1/chat/completions", body=body,
        headers={"user-agent": "test-client/1.0"}, client_ip="127.0.0.1", status=200, latency_ms=12.0,
        usage={"prompt_tokens": 20, "completion_tokens": completion_tokens}, salt=TEST_SECRET.encode(),
    )
    return to_fields(features)


def plumbing_evidence():
    """The evidence score with the test suite's distinct-task floor (tests/conftest.py): the
    test harvester flags within tens of requests, as the ladder and review tests need."""
    from detectors.evidence import EvidenceConfig, EvidenceDetector
    from tests.conftest import PLUMBING_MIN_DISTINCT_TASKS

    return EvidenceDetector(EvidenceConfig(min_distinct_tasks=PLUMBING_MIN_DISTINCT_TASKS))
