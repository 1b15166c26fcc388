"""Randomised harvesting networks: one campaign cut over 10 to 5,000 keys, each drawing
every evasion the public record describes, and keys that retire while new ones appear.

`draw_network(rng, size)` picks what one network does: its wrappers (a few shared, one per
key, or none), languages, address pool (datacentre /64s, residential spread, a mobile
carrier's CGNAT, or a mix), client (one script, the popular SDK honest developers use, or
each key its own browser or SDK with its header order), sampling settings (fixed, per key,
or as honest clients send them), timing (staggered, random or diurnal, never
synchronised), 5 to 50 requests per key per day, key lifetimes from hours to weeks, and
whether some keys are a reseller's, mixing its honest customers' chats in.
`member_slots(...)` gives `size` slots: each slot holds one live key at a time, and a
retiring key is replaced at once by a new one, so the network keeps its width while its
membership turns over. Every key's records come from its own seeded stream.
"""

from __future__ import annotations

import heapq
import math
import operator
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from . import prompts
from . import vocabulary as words
from .hydra import ANSWER_FRAMES, TASK_LABELS
from .records import CHAT_MODELS, SCRIPT_AGENTS, Client, chat_body, user
from .shared_honest import (
    CARRIER_PREFIX,
    HEADER_PROFILES,
    RESIDENTIAL_AGENTS,
    headers_of,
    reseller_address,
    reseller_customers,
    residential_ip,
    through,
)
from .timing import DAY_S, HOUR_S, diurnal_factor

POPULAR_SDK = ("OpenAI/Python 1.54.4", "openai-python")  # what most honest developers send: see lookalikes.py
PER_DAY = (5, 50)
WRAPPINGS = ("shared", "paraphrase", "bare")
ADDRESSES = ("datacentre", "residential", "carrier", "mixed")
CLIENTS = ("one_script", "popular_sdk", "per_key")
SAMPLINGS = ("fixed", "per_key", "honest_like")
TIMINGS = ("staggered", "random", "diurnal")
# (shortest, longest) key lifetime in hours for each regime a network may run its keys in.
LIFETIMES = {"hours": (2.0, 12.0), "day": (12.0, 24.0), "days": (48.0, 168.0), "weeks": (168.0, 672.0)}
NON_ENGLISH = (  # (label, frame, answer ask): wrappers a network writes in another language
    ("Tarea:", "Da una respuesta detallada y completa.", "Responde en español."),
    ("Aufgabe:", "Gib eine ausführliche, gut strukturierte Antwort.", "Antworte auf Deutsch."),
    ("Tâche :", "Donne une réponse détaillée et complète.", "Réponds en français."),
    ("任务：", "请给出详细、完整的回答。", "请用中文回答。"),
    ("課題：", "詳しく丁寧に答えてください。", "日本語で答えてください。"),
    ("Tarefa:", "Dê uma resposta detalhada e completa.", "Responda em português."),
    ("Задание:", "Дай подробный и полный ответ.", "Ответь на русском языке."),
)
CAPS = (None, 1024, 2048, 3000, 4000, 4096, 8192)
STYLE = ("per_day", "wrapping", "wrappers", "non_english", "addresses", "client", "sampling", "timing", "lifetime",
         "answer_scale", "reseller_share")  # what `draw_network(style=...)` may pin


@dataclass(frozen=True)
class Member:
    """What the evaluation needs to know of one network key (the generator's ground truth)."""

    network: int
    size: int
    slot: int
    founder: bool  # live from the network's start (not a replacement)
    born_ts: float
    retires_ts: float
    through_reseller: bool
    network_start_ts: float


def draw_network(rng: random.Random, size: int, start_ts: float, shop: Mapping | None = None,
                 burner: bool = False, style: Mapping | None = None) -> dict:
    """What one network does; `shop` is the reseller some of its keys may go through, a
    `burner` network runs keys that live a day at most and send 20 requests a day at most,
    and `style` pins any of the drawn choices (after the draw, so the rest stay as drawn)."""
    low = rng.randint(PER_DAY[0], 20 if burner else 40)
    high = rng.randint(low, 20 if burner else PER_DAY[1])
    wordings = [_wording(rng) for _ in range(5)]
    non_english = rng.choice((0.0, 0.0, 0.0, rng.uniform(0.2, 1.0)))
    network = {
        "size": size, "start_ts": start_ts, "per_day": (low, high), "wrapping": rng.choice(WRAPPINGS),
        "wordings": wordings, "wrappers": rng.randint(1, 5), "non_english": non_english,
        "addresses": rng.choice(ADDRESSES), "client": rng.choice(CLIENTS), "sampling": rng.choice(SAMPLINGS),
        "timing": rng.choice(TIMINGS), "lifetime": rng.choice(("hours", "day")) if burner else rng.choice(tuple(LIFETIMES)),
        "prefixes": [_prefix(rng) for _ in range(rng.randint(1, 40))],
        "carrier": [f"{CARRIER_PREFIX}{rng.randint(1, 254)}" for _ in range(rng.randint(2, 6))],
        "script": (rng.choice(SCRIPT_AGENTS), rng.choice(("default", "python-requests", "aiohttp", "openai-python"))),
        "settings": _settings(rng), "utc_offset_h": rng.choice((-8, -5, 0, 1, 3, 5, 8, 9)),
        "answer_scale": rng.uniform(0.5, 2.0),
        "reseller_share": rng.uniform(0.2, 0.8) if shop is not None and rng.random() < 0.3 else 0.0,
        "shop": shop,
    }
    return {**network, **(style or {})}


def describe(network: Mapping) -> str:
    """One line saying how a network hides: what the report prints beside its figures."""
    share = f", {network['reseller_share']:.0%} through a reseller" if network["reseller_share"] else ""
    language = f", {network['non_english']:.0%} non-English" if network["non_english"] else ""
    return (f"{network['wrapping']} wrappers ({network['wrappers']}), {network['addresses']} addresses, "
            f"{network['client']} client, {network['sampling']} sampling, {network['timing']} timing, "
            f"{network['per_day'][0]}-{network['per_day'][1]}/day, keys live {network['lifetime']}{language}{share}")


def member_slots(seed: str, index: int, network: Mapping, end_ts: float,
                 members: dict[str, Member]) -> list[Iterator[dict]]:
    """One record stream per slot of the network (in ts order); every key a slot creates is
    entered in `members` as it is born."""
    return [_slot(f"{seed}:network:{index}:slot:{slot}", index, slot, network, end_ts, members)
            for slot in range(network["size"])]


def _slot(seed: str, index: int, slot: int, network: Mapping, end_ts: float,
          members: dict[str, Member]) -> Iterator[dict]:
    """One slot's keys one after another: each lives its drawn life, then the next is issued."""
    rng = random.Random(seed)
    shortest, longest = LIFETIMES[network["lifetime"]]
    born, generation = network["start_ts"], 0
    while born < end_ts:
        key_rng = random.Random(f"{seed}:key:{generation}")
        life = math.exp(key_rng.uniform(math.log(shortest), math.log(longest))) * HOUR_S
        if generation == 0 and network["lifetime"] in ("days", "weeks"):
            life = key_rng.uniform(0.0, 1.0) * life + HOUR_S  # the founders were not all issued the same day
        key = f"sk-net-{index}-{slot}-{generation}"
        through_reseller = key_rng.random() < network["reseller_share"]
        members[key] = Member(index, network["size"], slot, generation == 0, born, born + life, through_reseller,
                              network["start_ts"])
        yield from _key_records(key_rng, key, born, min(born + life, end_ts), network, through_reseller)
        born += life + rng.uniform(0, 0.5 * HOUR_S)
        generation += 1


def _key_records(rng: random.Random, key: str, born: float, end: float, network: Mapping,
                 through_reseller: bool) -> Iterator[dict]:
    """One key's harvest from its birth to its retirement (and its reseller customers' chats)."""
    ip, agent, profile = _client(rng, network)
    client = Client(key, ip, agent, rng.uniform(40, 90))
    wording = _key_wording(rng, network)
    settings = _key_settings(rng, network)
    per_day = rng.uniform(*network["per_day"])
    rotate_ip = network["addresses"] in ("datacentre", "carrier") and rng.random() < 0.5
    campaign = (_harvest(rng, client, ts, network, wording, settings, rotate_ip)
                for ts in _send_times(rng, born, end, per_day, network))
    if not through_reseller:
        yield from through(campaign, headers=headers_of(profile, agent))
        return
    shop = network["shop"]
    relayed = through(campaign, ip=reseller_address(rng, shop), headers=headers_of(shop["profile"], shop["user_agent"]))
    customers = reseller_customers(rng, key, born, end - born, shop, rng.randint(2, 4), (3.0, 7.0))
    yield from heapq.merge(relayed, customers, key=operator.itemgetter("ts"))


def _send_times(rng: random.Random, born: float, end: float, per_day: float, network: Mapping) -> list[float]:
    """When a key sends, never in step with the others: inside its own daily window
    (staggered), anywhere (random), or following the day in the network's time zone."""
    times: list[float] = []
    timing = network["timing"]
    window_s, offset_s = rng.uniform(0.2, 4.0) * HOUR_S, rng.uniform(0, DAY_S)
    day_start = born
    while day_start < end:
        count = _poisson(rng, per_day)
        for _ in range(count):
            if timing == "staggered":
                ts = day_start + (offset_s + rng.uniform(0, window_s)) % DAY_S
            elif timing == "diurnal":
                ts = day_start + rng.uniform(0, DAY_S)
                while rng.random() > diurnal_factor(ts, network["utc_offset_h"]):
                    ts = day_start + rng.uniform(0, DAY_S)
            else:
                ts = day_start + rng.uniform(0, DAY_S)
            if ts < end:
                times.append(ts)
        day_start += DAY_S
    return sorted(times)


def _poisson(rng: random.Random, mean: float) -> int:
    """A day's count around `mean` (normal approximation, at least one a day)."""
    return max(1, round(rng.gauss(mean, math.sqrt(mean))))


def _prefix(rng: random.Random) -> str:
    """A datacentre /64 (documentation range: no simulated record names a real host)."""
    return "2001:db8:" + ":".join(format(rng.randrange(0x10000), "x") for _ in range(2)) + ":"


def _address(rng: random.Random, network: Mapping, kind: str) -> str:
    if kind == "datacentre":
        return rng.choice(network["prefixes"]) + ":".join(format(rng.randrange(0x10000), "x") for _ in range(4))
    if kind == "carrier":
        return rng.choice(network["carrier"])
    return residential_ip(rng)


def _client(rng: random.Random, network: Mapping) -> tuple[str, str, str]:
    kind = network["addresses"] if network["addresses"] != "mixed" else rng.choice(ADDRESSES[:3])
    ip = _address(rng, network, kind)
    if network["client"] == "one_script":
        agent, profile = network["script"]
    elif network["client"] == "popular_sdk":
        agent, profile = POPULAR_SDK
    else:
        agent = rng.choice(RESIDENTIAL_AGENTS)
        profile = "browser-fetch" if agent.startswith("Mozilla") else rng.choice(tuple(HEADER_PROFILES))
    return ip, agent, profile


def _wording(rng: random.Random, language: tuple[str, str, str] | None = None) -> dict:
    label, frame, ask = language or (rng.choice(TASK_LABELS), rng.choice(ANSWER_FRAMES), "")
    return {"label": label, "frame": frame, "ask": ask, "frame_first": rng.random() < 0.5,
            "openings": rng.sample(words.PARAPHRASE_OPENINGS, 2), "extras": rng.sample(words.PARAPHRASE_EXTRAS, 3),
            "joiner": rng.choice(("\n", "\n\n", " "))}


def _key_wording(rng: random.Random, network: Mapping) -> dict | None:
    """The key's wrapper: one of the network's few, its own, or none; in another language
    for the network's non-English share."""
    foreign = rng.random() < network["non_english"]
    if network["wrapping"] == "bare":
        return {"bare": True, "ask": rng.choice(NON_ENGLISH)[2] if foreign else ""}
    if foreign:
        return _wording(rng, rng.choice(NON_ENGLISH))
    return _wording(rng) if network["wrapping"] == "paraphrase" else rng.choice(network["wordings"][:network["wrappers"]])


def _settings(rng: random.Random) -> dict:
    return {"model": rng.choice(CHAT_MODELS), "max_tokens": rng.choice(CAPS),
            "temperature": rng.choice((None, 0.6, 0.7, 0.8, 1.0)), "n": rng.choice((None,) * 6 + (2,))}


def _key_settings(rng: random.Random, network: Mapping) -> dict:
    if network["sampling"] == "fixed":
        return network["settings"]
    if network["sampling"] == "per_key":
        return _settings(rng)
    return {"model": rng.choice(("gpt-4o-mini", "gpt-4o")), "max_tokens": None,
            "temperature": rng.choice((None, None, 0.7, 1.0)), "n": None, "stream": rng.random() < 0.6 or None}


def _prompt(rng: random.Random, wording: Mapping | None) -> str:
    instruction, task_input = prompts.harvest_task(rng)
    task = f"{instruction}\n\n{task_input}" if task_input else instruction
    if wording.get("bare"):
        return f"{task}\n\n{wording['ask']}" if wording["ask"] else task
    asked = f"{wording['label']} {task}".strip()
    parts = [wording["frame"], asked] if wording["frame_first"] else [asked, wording["frame"]]
    if rng.random() < 0.4:
        parts.append(rng.choice(wording["extras"]))
    if wording["ask"]:
        parts.append(wording["ask"])
    opening = rng.choice(wording["openings"])
    return wording["joiner"].join(([opening] if opening else []) + parts)


def _harvest(rng: random.Random, client: Client, ts: float, network: Mapping, wording: dict, settings: Mapping,
             rotate_ip: bool) -> dict:
    body = chat_body(settings["model"], [user(_prompt(rng, wording))], max_tokens=settings["max_tokens"],
                     temperature=settings["temperature"], n=settings["n"], stream=settings.get("stream"))
    ip = _address(rng, network, network["addresses"]) if rotate_ip else None
    tokens = int(rng.triangular(300, 1500, 700) * network["answer_scale"])
    return client.request(rng, ts, body, tokens, ip=ip)
