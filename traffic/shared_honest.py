"""Honest keys that share what a linked network shares: the hard negatives of key linkage.

Independent people and teams share a great deal: one popular app's fixed system prompt,
client library and settings; one public benchmark's exact questions; one mobile carrier's
CGNAT addresses; one reseller's servers. What they do not share is a script: their own
messages differ, their timing is human, and nobody runs a campaign through them.

Same shape as honest.py: `(rng, key, start_ts, duration_s, params)` -> records in ts order;
`params["group"]` is what the group's keys share (drawn once per group by the scenario).
The client profiles here (header sets in the order each library sends them, and the user
agents of real browsers and SDKs) are also what traffic/hydra.py borrows to blend in.
"""

from __future__ import annotations

import heapq
import math
import operator
import random
from collections.abc import Callable, Iterator, Mapping

from . import honest, prompts
from .conversation import chat
from .records import APP_AGENTS, DESKTOP_AGENTS, Client, chat_body, documentation_ip
from .timing import interleave_sessions, next_opening, regular_arrivals

# Header names in the order each client library sends them (values are stand-ins). The
# simulator's honest.py clients send only `user-agent` and `content-type`: "default".
HEADER_PROFILES: dict[str, tuple[str, ...]] = {
    "default": ("user-agent", "content-type"),
    "openai-python": (
        "accept-encoding", "connection", "accept", "content-type", "user-agent", "x-stainless-lang",
        "x-stainless-package-version", "x-stainless-os", "x-stainless-arch", "x-stainless-runtime",
        "x-stainless-runtime-version", "x-stainless-async", "x-stainless-retry-count", "content-length",
    ),
    "openai-node": (
        "accept", "content-type", "user-agent", "x-stainless-lang", "x-stainless-package-version",
        "x-stainless-os", "x-stainless-arch", "x-stainless-runtime", "x-stainless-runtime-version",
        "x-stainless-retry-count", "content-length", "accept-encoding", "connection",
    ),
    "browser-fetch": (
        "connection", "content-length", "sec-ch-ua", "content-type", "sec-ch-ua-mobile", "user-agent",
        "sec-ch-ua-platform", "accept", "origin", "sec-fetch-site", "sec-fetch-mode", "sec-fetch-dest",
        "referer", "accept-encoding", "accept-language",
    ),
    "python-requests": ("user-agent", "accept-encoding", "accept", "connection", "content-type", "content-length"),
    "aiohttp": ("accept", "accept-encoding", "user-agent", "content-length", "content-type"),
}

# User agents of real browsers, SDKs and apps: what a residential proxy network's keys claim.
RESIDENTIAL_AGENTS = (
    *DESKTOP_AGENTS,
    *APP_AGENTS,
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/129.0 Mobile Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:131.0) Gecko/20100101 Firefox/131.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:132.0) Gecko/20100101 Firefox/132.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/129.0 Safari/537.36",
    "OpenAI/Python 1.55.3", "OpenAI/Python 1.52.2", "OpenAI/JS 4.71.1", "OpenAI/JS 4.68.4",
    "langchain-openai/0.2.5", "llama-index-llms-openai/0.2.16", "curl/8.7.1",
)

POPULAR_APP_PROMPTS = (
    ("You are Quill, a friendly writing companion inside the Quill app. Help the user with whatever they "
     "ask: drafting, editing, explaining or brainstorming. Be warm and clear, use Markdown when it helps, "
     "and never claim to be human."),
    ("You are StudyBuddy, a patient tutor for students. Explain ideas simply, check understanding with a "
     "question at the end, and never just hand over homework answers without the reasoning behind them."),
)

CARRIER_PREFIX = "198.51.100."  # one CGNAT pool (documentation range): a few public addresses, many users


def headers_of(profile: str, user_agent: str) -> dict[str, str]:
    """A request's headers as `profile`'s library sends them, with stand-in values."""
    return {name: user_agent if name == "user-agent" else "application/json" if name == "content-type" else "x"
            for name in HEADER_PROFILES[profile]}


def through(records: Iterator[dict], ip: str | None = None, headers: dict | None = None) -> Iterator[dict]:
    """Records as they arrive from somewhere else: another address, another client's headers."""
    for record in records:
        if ip is not None:
            record["ip"] = ip
        if headers is not None:
            record["headers"] = dict(headers)
        yield record


def residential_ip(rng: random.Random) -> str:
    """A home connection: its own /64 (IPv6), or an IPv4 address in the ranges most honest
    simulated keys use too."""
    return documentation_ip(rng, v6_share=0.5)


# --- one popular app, its own users' keys ---------------------------------------------------


def popular_app(rng: random.Random, params: Mapping) -> dict:
    """What a popular bring-your-own-key app's users share: its fixed system prompt, model,
    settings, user agent and client library."""
    return {
        "system_prompt": rng.choice(POPULAR_APP_PROMPTS),
        "model": rng.choice(("gpt-4o-mini", "gpt-4o")),
        "max_tokens": rng.choice((1024, 2048)),
        "temperature": 0.7,
        "user_agent": rng.choice(("Quill/3.2.1 (iPhone; iOS 17.5)", "StudyBuddy/2.8.0 (Android 14)")),
        "profile": rng.choice(("openai-node", "openai-python")),
    }


def popular_app_user(
    rng: random.Random, key: str, start_ts: float, duration_s: float, params: Mapping
) -> Iterator[dict]:
    """A popular app's user: its fixed system prompt, their own key, home connection and questions."""
    app = params["group"]
    client = Client(key, residential_ip(rng), app["user_agent"], rng.uniform(40, 90))
    headers = headers_of(app["profile"], app["user_agent"])
    offset, hours = rng.choice(honest.OFFSETS), (rng.uniform(7, 10), rng.uniform(21, 24))
    chats_per_day = rng.uniform(*params["chats_per_day"])

    def body_of(messages: list[dict]) -> dict:
        return chat_body(app["model"], messages, max_tokens=app["max_tokens"], temperature=app["temperature"])

    records = _days_of_chats(rng, client, start_ts, duration_s, offset, hours, chats_per_day, body_of,
                             app["system_prompt"])
    yield from through(records, headers=headers)


def _days_of_chats(rng: random.Random, client: Client, start_ts: float, duration_s: float, offset: int,
                   hours: tuple[float, float], chats_per_day: float, body_of: Callable[[list[dict]], dict],
                   system_prompt: str) -> Iterator[dict]:
    """A person's chats of one to three turns with real prompts at random moments in their hours."""
    mean_gap = (hours[1] - hours[0]) * 3600 / chats_per_day
    end, ts = start_ts + duration_s, start_ts + rng.expovariate(1 / mean_gap)
    while True:
        opened = next_opening(ts, offset, *hours)
        ts = opened if opened == ts else opened + rng.uniform(0, min(mean_gap, 3600.0))
        if ts >= end:
            return
        first = rng.choice(prompts.human_prompts())
        turns = [first, *(rng.choice(prompts.human_prompts())[:200] for _ in range(rng.choice((0, 0, 0, 1, 2))))]
        last = None
        for last in chat(rng, client, ts, turns, body_of, lambda: int(rng.lognormvariate(math.log(350), 0.7)) + 20,
                         45.0, system_prompt):
            yield last
        ts = last["ts"] + rng.expovariate(1 / mean_gap)


# --- one public benchmark, run once by many teams -----------------------------------------


def shared_benchmark(rng: random.Random, params: Mapping) -> dict:
    """The benchmark every team of the group runs (the same questions, word for word)."""
    return {"name": rng.choice(("arena_hard", "mt_bench"))}


def benchmark_team(
    rng: random.Random, key: str, start_ts: float, duration_s: float, params: Mapping
) -> Iterator[dict]:
    """A team running a public benchmark once that many other teams also run, at its own time, some sampling answers."""
    profile = rng.choice(("openai-python", "openai-python", "default"))
    agent = rng.choice(APP_AGENTS)
    client = Client(key, documentation_ip(rng), agent, rng.uniform(40, 90))
    questions = prompts.benchmark(params["group"]["name"])
    if params["group"]["name"] == "arena_hard":
        questions = questions[: rng.randint(100, len(questions))]
    model, max_tokens = rng.choice(("gpt-4o", "gpt-4o-mini", "gpt-4.1")), rng.choice((2048, 4096))
    temperature = rng.choice((0.0, 0.0, 0.7, 1.0))  # some evaluations sample several answers
    workers = rng.choice((2, 4, 8))
    began = start_ts + rng.uniform(0, duration_s * 0.8)

    def body_of(messages: list[dict]) -> dict:
        return chat_body(model, messages, max_tokens=max_tokens, temperature=temperature)

    starts = regular_arrivals(rng, began, math.inf, rng.uniform(8, 30) / workers, 0.4)
    sessions = (chat(rng, client, ts, turns, body_of, lambda: int(rng.triangular(200, 1500, 600)), 0.05)
                for ts, turns in zip(starts, questions, strict=False))
    end = start_ts + duration_s
    for record in through(interleave_sessions(sessions), headers=headers_of(profile, agent)):
        if record["ts"] >= end:
            return
        yield record


# --- one mobile carrier's CGNAT ----------------------------------------------------------


def mobile_carrier(rng: random.Random, params: Mapping) -> dict:
    """The handful of public addresses a carrier's CGNAT puts its subscribers behind."""
    return {"addresses": [f"{CARRIER_PREFIX}{rng.randint(1, 254)}" for _ in range(4)]}


def carrier_user(
    rng: random.Random, key: str, start_ts: float, duration_s: float, params: Mapping
) -> Iterator[dict]:
    """A casual user on a mobile carrier whose CGNAT puts thousands of subscribers behind a few addresses."""
    address = rng.choice(params["group"]["addresses"])
    yield from through(honest.casual_user(rng, key, start_ts, duration_s, params), ip=address)


# --- one reseller's servers ---------------------------------------------------------------


def reseller(rng: random.Random, params: Mapping) -> dict:
    """An API reseller: its servers (one /64) and its gateway software's client."""
    prefix = ":".join(format(rng.randrange(0x10000), "x") for _ in range(2))
    return {"prefix": f"2001:db8:{prefix}:", "user_agent": rng.choice(("OpenAI/JS 4.73.0", "resell-gw/2.4.1")),
            "profile": rng.choice(("openai-node", "aiohttp"))}


def reseller_address(rng: random.Random, shop: Mapping) -> str:
    return shop["prefix"] + ":".join(format(rng.randrange(0x10000), "x") for _ in range(4))


def reseller_customers(
    rng: random.Random, key: str, start_ts: float, duration_s: float, shop: Mapping, customers: int,
    chats_per_day: tuple[float, float],
) -> Iterator[dict]:
    """The honest traffic a reseller sends through one of its keys: a few of its customers'
    ordinary chats, all arriving from the reseller's servers with its client's headers."""
    address, headers = reseller_address(rng, shop), headers_of(shop["profile"], shop["user_agent"])
    people = [honest.casual_user(random.Random(f"{key}:customer:{n}:{rng.random()}"), key, start_ts, duration_s,
                                 {"chats_per_day": chats_per_day}) for n in range(customers)]
    merged = heapq.merge(*people, key=operator.itemgetter("ts"))
    yield from through(merged, ip=address, headers=headers)


def reseller_key(
    rng: random.Random, key: str, start_ts: float, duration_s: float, params: Mapping
) -> Iterator[dict]:
    """An honest reseller's key, carrying a few of its customers' chats from its servers."""
    yield from reseller_customers(rng, key, start_ts, duration_s, params["group"], rng.randint(2, 4),
                                  params["chats_per_day"])
