"""Honest look-alikes of a harvesting network, at scale: many independent keys that share
what a network's keys share, and must never be flagged for it.

Seven classes (`CLASSES`), each sharing one thing a network might: an office's NAT
address, a mobile carrier's CGNAT addresses, the popular SDK (its user agent and header
order, default settings), a popular app's fixed system prompt, one public benchmark's
questions, a reseller's servers, or one company's product (many keys, one system prompt,
one backend, one SDK, one template around its users' questions). `lookalike_streams`
splits N keys over them; every key draws from its own seeded stream.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Mapping

from . import honest, prompts, shared_honest
from .conversation import chat
from .records import Client, chat_body
from .shared_honest import headers_of, residential_ip, through
from .timing import next_opening

CLASSES = ("office_nat", "carrier_nat", "popular_sdk", "popular_app", "public_benchmark", "reseller_customers",
           "company_keys")
SHARES = {"office_nat": 0.15, "carrier_nat": 0.2, "popular_sdk": 0.2, "popular_app": 0.2, "public_benchmark": 0.02,
          "reseller_customers": 0.1, "company_keys": 0.13}
GROUP_SIZES = {"office_nat": (5, 60), "carrier_nat": (300, 800), "popular_sdk": (10**9, 10**9),
               "popular_app": (500, 2000), "public_benchmark": (10**9, 10**9), "reseller_customers": (20, 80),
               "company_keys": (20, 300)}
PRODUCTS = (
    ("You are the assistant inside Helpwise, a customer-support tool. Answer the customer's question "
     "politely and concisely, and suggest contacting a human agent when you are unsure.",
     "Customer question: {question}\n\nAnswer for the customer:"),
    ("You are LexiDraft, a writing assistant for small businesses. Keep a professional tone and format "
     "your answer in Markdown when it helps.", "{question}"),
    ("You are the tutor inside Brightpath Learning. Explain step by step, at the learner's level, and "
     "end with one question that checks understanding.", "Learner asks: {question}"),
)


def split(total: int) -> dict[str, int]:
    """`total` look-alike keys over the classes by SHARES (largest remainders)."""
    exact = {name: total * SHARES[name] for name in CLASSES}
    counts = {name: int(value) for name, value in exact.items()}
    for name in sorted(CLASSES, key=lambda n: counts[n] - exact[n])[: total - sum(counts.values())]:
        counts[name] += 1
    return counts


def reseller_shops(seed: str, count: int) -> list[dict]:
    """The resellers of a population: honest customers' keys go through them, and a
    network may send part of its harvest through the first."""
    return [shared_honest.reseller(random.Random(f"{seed}:shop:{n}"), {}) for n in range(count)]


def lookalike_streams(seed: str, total: int, start_ts: float, duration_s: float,
                      shops: list[dict]) -> list[tuple[str, str, Iterator[dict]]]:
    """(raw key, class, records in ts order) for `total` look-alike keys."""
    streams = []
    for name, count in split(total).items():
        group_rng = random.Random(f"{seed}:{name}:groups")
        index, group_number = 0, 0
        while index < count:
            low, high = GROUP_SIZES[name]
            size = min(count - index, group_rng.randint(low, high))
            group = _group(random.Random(f"{seed}:{name}:group:{group_number}"), name, shops, group_number)
            for _ in range(size):
                key = f"sk-look-{name}-{index}"
                rng = random.Random(f"{seed}:{name}:{index}")
                streams.append((key, name, _run(name, rng, key, start_ts, duration_s, group)))
                index += 1
            group_number += 1
    return streams


def _group(rng: random.Random, name: str, shops: list[dict], number: int) -> dict:
    if name == "office_nat":
        return honest.office_nat_office(rng, {})
    if name == "carrier_nat":
        return shared_honest.mobile_carrier(rng, {})
    if name == "popular_app":
        return shared_honest.popular_app(rng, {})
    if name == "public_benchmark":
        return {"name": "arena_hard"}
    if name == "reseller_customers":
        return shops[number % len(shops)]
    if name == "company_keys":
        system_prompt, template = rng.choice(PRODUCTS)
        return {"system_prompt": system_prompt, "template": template if rng.random() < 0.6 else "{question}",
                "model": rng.choice(("gpt-4o-mini", "gpt-4o", "gpt-4.1-mini")), "max_tokens": rng.choice((None, 1024)),
                "temperature": rng.choice((None, 0.3, 0.7)), "sdk": rng.choice((("OpenAI/Python 1.54.4", "openai-python"),
                                                                                  ("OpenAI/JS 4.73.0", "openai-node"))),
                "prefix": "2001:db8:" + ":".join(format(rng.randrange(0x10000), "x") for _ in range(2)) + ":",
                "offset": rng.choice(honest.OFFSETS)}
    return {}


def _run(name: str, rng: random.Random, key: str, start_ts: float, duration_s: float, group: dict) -> Iterator[dict]:
    params = {"group": group}
    if name == "office_nat":
        return honest.office_nat(rng, key, start_ts, duration_s, {**params, "chats_per_day": (3.0, 30.0)})
    if name == "carrier_nat":
        return shared_honest.carrier_user(rng, key, start_ts, duration_s, {**params, "chats_per_day": (1.0, 12.0)})
    if name == "popular_app":
        return shared_honest.popular_app_user(rng, key, start_ts, duration_s, {**params, "chats_per_day": (1.0, 6.0)})
    if name == "public_benchmark":
        return shared_honest.benchmark_team(rng, key, start_ts, duration_s, params)
    if name == "reseller_customers":
        return shared_honest.reseller_key(rng, key, start_ts, duration_s, {**params, "chats_per_day": (3.0, 7.0)})
    if name == "company_keys":
        return company_key(rng, key, start_ts, duration_s, group)
    return popular_sdk_user(rng, key, start_ts, duration_s)


def popular_sdk_user(rng: random.Random, key: str, start_ts: float, duration_s: float) -> Iterator[dict]:
    """A developer on the popular SDK with its default settings, from home or a cloud host."""
    agent, profile = "OpenAI/Python 1.54.4", "openai-python"
    ip = residential_ip(rng) if rng.random() < 0.6 else \
        "2001:db8:" + ":".join(format(rng.randrange(0x10000), "x") for _ in range(6))
    client = Client(key, ip, agent, rng.uniform(40, 90))
    model = rng.choice(("gpt-4o-mini", "gpt-4o", "gpt-4.1"))

    def body_of(messages: list[dict]) -> dict:
        return chat_body(model, messages)

    source = prompts.coding_prompts() if rng.random() < 0.5 else prompts.human_prompts()
    records = _chats(rng, client, start_ts, duration_s, rng.choice(honest.OFFSETS), rng.uniform(3, 25), body_of,
                     source, None, "{question}")
    return through(records, headers=headers_of(profile, agent))


def company_key(rng: random.Random, key: str, start_ts: float, duration_s: float, company: Mapping) -> Iterator[dict]:
    """One of a company's many keys for one product (a tenant, an environment): the product's
    system prompt, template, settings and backend, its users' own questions at their pace."""
    ip = company["prefix"] + ":".join(format(rng.randrange(0x10000), "x") for _ in range(4))
    agent, profile = company["sdk"]
    client = Client(key, ip, agent, rng.uniform(40, 90))

    def body_of(messages: list[dict]) -> dict:
        return chat_body(company["model"], messages, max_tokens=company["max_tokens"],
                         temperature=company["temperature"])

    records = _chats(rng, client, start_ts, duration_s, company["offset"], rng.uniform(5, 50), body_of,
                     prompts.human_prompts(), company["system_prompt"], company["template"])
    return through(records, headers=headers_of(profile, agent))


def _chats(rng: random.Random, client: Client, start_ts: float, duration_s: float, offset: int, chats_per_day: float,
           body_of, source: tuple[str, ...], system_prompt: str | None, template: str) -> Iterator[dict]:
    """Chats of one to three turns from `source`, at random moments in waking hours."""
    hours = (rng.uniform(7, 10), rng.uniform(20, 24))
    mean_gap = (hours[1] - hours[0]) * 3600 / chats_per_day
    end, ts = start_ts + duration_s, start_ts + rng.expovariate(1 / mean_gap)
    while True:
        opened = next_opening(ts, offset, *hours)
        ts = opened if opened == ts else opened + rng.uniform(0, min(mean_gap, 3600.0))
        if ts >= end:
            return
        first = template.format(question=rng.choice(source))
        turns = [first, *(rng.choice(prompts.human_prompts())[:200] for _ in range(rng.choice((0, 0, 1, 2))))]
        last = None
        for last in chat(rng, client, ts, turns, body_of, lambda: int(rng.lognormvariate(math.log(350), 0.7)) + 20,
                         45.0, system_prompt):
            yield last
        ts = last["ts"] + rng.expovariate(1 / mean_gap)
