"""Hydra networks: one harvesting campaign spread over many keys, each far under every limit.

The largest distillation campaigns reported in 2026 ran through tens of thousands of
accounts at 20 to 30 requests a day each, some through resellers whose keys also carry
honest customers. Per key they look clean; what gives them away is what the keys share:
one template family, one script's settings and client, one job scheduler's waves.

Variants (params, defaults in scenarios.py), so each evasion can be measured on its own:
  - `paraphrase`: every key words the family's wrapper its own way (no exact template is
    shared across keys); the campaign's tasks still come from one pool.
  - `residential`: every key on its own residential address with its own user agent, drawn
    from real browsers and SDKs, and the header set most honest keys send.
  - `reseller_share`: that share of the keys are a reseller's keys, whose honest customers'
    chats (a few casual users, `shared_honest.reseller_customers`) make up about half their
    traffic; the campaign's requests on them come from the reseller's servers too.
    They are labelled `attack` like the rest: the key does carry harvesting traffic, and the
    provider must review it (the reseller is told, not silently cut off); see docs.
    `reseller_key_indexes` says which keys they are.
  - `waves`: (fewest, most) scheduler waves a day the keys send in; (0, 0) spreads every
    key's requests evenly over the day, with no shared rhythm.
"""

from __future__ import annotations

import heapq
import math
import operator
import random
from collections.abc import Iterator, Mapping

from . import prompts
from . import vocabulary as words
from .records import CHAT_MODELS, SCRIPT_AGENTS, Client, chat_body, user
from .shared_honest import (
    RESIDENTIAL_AGENTS,
    headers_of,
    reseller,
    reseller_address,
    reseller_customers,
    residential_ip,
    through,
)
from .timing import DAY_S, HOUR_S

MAX_PER_DAY = 30

# Ways a paraphrasing network words "answer this task at length": each key picks its own.
TASK_LABELS = ("Task:", "Question:", "Here is what I need:", "", "Request:", "Prompt:", "Assignment:", "Topic:",
               "Please handle this:", "Next item:")
ANSWER_FRAMES = (
    "Give a detailed, high-quality answer.", "Please answer thoroughly, with examples.",
    "I need a complete and well-organised response.", "Write a comprehensive reply.",
    "Provide an extensive, carefully structured answer.", "Answer at length and cover every relevant aspect.",
    "Be exhaustive and precise.", "Explain fully, as a domain expert would.",
    "Take your time and write a long, careful answer.", "Respond in depth; do not leave anything out.",
    "A thorough treatment, please, with concrete cases.", "Go deep on this and structure your answer well.",
)


def hydra_network(rng: random.Random, params: Mapping) -> dict:
    """What one network's keys share: the template family, the script's settings and client,
    its address pool, its scheduler's daily waves, and (if used) the reseller."""
    proxies = [":".join(format(rng.randrange(0x10000), "x") for _ in range(2)) for _ in range(rng.randint(2, 6))]
    fewest, most = params["waves"]
    waves = [(rng.uniform(0, 24), rng.uniform(0.75, 2.5)) for _ in range(rng.randint(fewest, most))]
    return {
        "family": rng.randrange(prompts.FAMILY_COUNT),
        "model": rng.choice(CHAT_MODELS),
        "max_tokens": rng.choice((2048, 3072, 4000, 4096)),
        "temperature": rng.choice((0.7, 0.8, 1.0)),
        "n": rng.choice((None, None, None, None, None, 2, 3)),
        "user_agent": rng.choice(SCRIPT_AGENTS),
        "profile": rng.choice(("default", "openai-python", "python-requests", "aiohttp")),
        "pool": [f"2001:db8:{prefix}:" for prefix in proxies],
        "waves": waves,
        "reseller": reseller(rng, params),
    }


def reseller_key_indexes(seed: int, name: str, keys: int, share: float) -> set[int]:
    """Which of a scenario's keys are reseller keys: the first draw of each key's own
    random stream (traffic.scenarios.generate seeds it `"{seed}:{name}:{index}"`)."""
    return {index for index in range(keys) if random.Random(f"{seed}:{name}:{index}").random() < share}


def hydra_member(
    rng: random.Random, key: str, start_ts: float, duration_s: float, params: Mapping
) -> Iterator[dict]:
    """One key of a harvesting network of many keys, each paced under 30 requests a day."""
    through_reseller = rng.random() < params["reseller_share"]  # first draw: see reseller_key_indexes
    network = params["group"]
    if params["residential"]:
        agent = rng.choice(RESIDENTIAL_AGENTS)
        client, headers = Client(key, residential_ip(rng), agent, rng.uniform(40, 90)), headers_of("default", agent)
    else:
        address = rng.choice(network["pool"]) + ":".join(format(rng.randrange(0x10000), "x") for _ in range(4))
        client = Client(key, address, network["user_agent"], rng.uniform(40, 90))
        headers = headers_of(network["profile"], network["user_agent"])
    wording = _wording(rng) if params["paraphrase"] else None
    campaign = _campaign(rng, client, start_ts, duration_s, params, network, wording)
    if not through_reseller:
        yield from through(campaign, headers=headers)
        return
    shop = network["reseller"]
    shop_headers = headers_of(shop["profile"], shop["user_agent"])
    relayed = through(campaign, ip=reseller_address(rng, shop), headers=shop_headers)
    customers = reseller_customers(rng, key, start_ts, duration_s, shop, 3, (3.0, 7.0))
    yield from heapq.merge(relayed, customers, key=operator.itemgetter("ts"))


def _campaign(rng: random.Random, client: Client, start_ts: float, duration_s: float, params: Mapping,
              network: Mapping, wording: dict | None) -> Iterator[dict]:
    low, high = params["per_day"]
    end = start_ts + duration_s
    for day in range(math.ceil(duration_s / DAY_S)):
        day_start = start_ts + day * DAY_S
        count = min(MAX_PER_DAY, rng.randint(int(low), int(high)))
        for ts in sorted(_send_times(rng, day_start, network["waves"], count)):
            if start_ts <= ts < end:
                yield _harvest(rng, client, ts, network, wording)


def _send_times(rng: random.Random, day_start: float, waves: list, count: int) -> Iterator[float]:
    """When the scheduler hands this key its work today: inside the network's waves (a few
    minutes' jitter a day), or anywhere in the day when the network has none."""
    if not waves:
        for _ in range(count):
            yield day_start + rng.uniform(0, DAY_S)
        return
    lengths = [length for _, length in waves]
    shift = rng.uniform(-600, 600)
    for _ in range(count):
        begin, length = rng.choices(waves, weights=lengths)[0]
        yield day_start + begin * HOUR_S + shift + rng.uniform(0, length * HOUR_S)


def _wording(rng: random.Random) -> dict:
    """One key's own way of wrapping the campaign's tasks."""
    return {"label": rng.choice(TASK_LABELS), "frame": rng.choice(ANSWER_FRAMES), "frame_first": rng.random() < 0.5,
            "openings": rng.sample(words.PARAPHRASE_OPENINGS, 2), "extras": rng.sample(words.PARAPHRASE_EXTRAS, 3),
            "joiner": rng.choice(("\n", "\n\n", " "))}


def _paraphrased(rng: random.Random, wording: Mapping) -> str:
    task = prompts.harvest_task(rng)[0]
    asked = f"{wording['label']} {task}".strip()
    parts = [wording["frame"], asked] if wording["frame_first"] else [asked, wording["frame"]]
    if rng.random() < 0.4:
        parts.append(rng.choice(wording["extras"]))
    opening = rng.choice(wording["openings"])
    return wording["joiner"].join(([opening] if opening else []) + parts)


def _harvest(rng: random.Random, client: Client, ts: float, network: Mapping, wording: dict | None) -> dict:
    text = _paraphrased(rng, wording) if wording else prompts.family_prompt(rng, network["family"])
    body = chat_body(network["model"], [user(text)], max_tokens=network["max_tokens"],
                     temperature=network["temperature"], n=network["n"])
    return client.request(rng, ts, body, int(rng.triangular(300, 1500, 700)))
