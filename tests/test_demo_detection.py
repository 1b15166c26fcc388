"""`distillguard demo` flags a harvesting script as production would: the real `openai` client
sends Alpaca / Code Alpaca seed instructions for sampled 1,024-token answers on one key while
a person chats with follow-ups on another, and the admin API shows which key was flagged.

The simulator behind the demo answers at lengths drawn from real serving traces, so nothing
here is sized to please the detectors: if the harvester goes unflagged, the assertion prints
every rule condition against the key's window features."""

from __future__ import annotations

import json
import statistics
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest

from detectors.rules import DEFAULT_RULES
from tests.support.demo import Demo
from tests.support.processes import wait_until
from traffic import prompts

HARVEST_KEY, BENIGN_KEY = "sk-demo-harvest", "sk-demo-person"
HARVEST_CONCURRENCY = 8
FOLLOW_UPS = ("Can you give me a concrete example?", "Why is that?", "How would that change for a beginner?",
              "What is the most common mistake there?", "Could you say that more simply?",
              "Thanks. What should I read next about it?", "And how long does that usually take?",
              "Is there a cheaper way?", "What would you do in my place?", "Ok, one last question: any pitfalls?")
OPENERS = ("I'm planning a two-week trip to Portugal in spring and I'm not sure where to start.",
           "My sourdough keeps coming out flat and dense. I feed the starter every day.",
           "I want to start running again after a knee injury last year.",
           "Our team keeps missing sprint deadlines and I have to present a fix on Monday.")

pytestmark = pytest.mark.timeout(600)


@pytest.fixture
def demo(tmp_path):
    running = Demo(tmp_path)
    yield running
    running.stop()


FRAMINGS = ("{task}", "{task}\nAnswer for a beginner.", "{task}\nAnswer for an expert, in depth.")


def seed_instructions() -> list[str]:
    """Alpaca's 175 and Code Alpaca's 20 human-written seed tasks, with their inputs, each in
    three framings: 585 distinct tasks, a harvest's volume (under 150 it would be an eval's)."""
    tasks = [*prompts.seed_tasks(), *prompts.seed_tasks(code=True)]
    bare = [f"{t['instruction']}\n\n{t['input']}" if t.get("input") else t["instruction"] for t in tasks]
    return [framing.format(task=task) for framing in FRAMINGS for task in bare]


def harvest(client: openai.OpenAI, instructions: list[str], max_tokens: int = 1024) -> list[int | str]:
    """One answer per instruction, sampled, as a distillation script collects them: the
    answer's completion tokens, or the HTTP status that refused it."""
    def ask(instruction: str) -> int | str:
        try:
            response = client.chat.completions.create(
                model="sim", messages=[{"role": "user", "content": instruction}], temperature=0.7, max_tokens=max_tokens)
        except openai.APIStatusError as exc:
            return str(exc.status_code)
        return response.usage.completion_tokens

    with ThreadPoolExecutor(HARVEST_CONCURRENCY) as pool:
        return list(pool.map(ask, instructions))


def chat(client: openai.OpenAI, opener: str) -> int:
    """A person's conversation: each turn sends the whole history and reads the answer."""
    messages = [{"role": "system", "content": "You are a friendly, helpful assistant."},
                {"role": "user", "content": opener}]
    answered = 0
    for follow_up in FOLLOW_UPS:
        response = client.chat.completions.create(model="sim", messages=messages, temperature=1.0)
        messages += [{"role": "assistant", "content": response.choices[0].message.content},
                     {"role": "user", "content": follow_up}]
        answered += 1
    return answered


def explain(key: dict) -> str:
    """Every shipped rule's conditions against the key's window, for a failure message."""
    window = key.get("window") or {}
    features = window.get("features") or {}
    lines = [f"requests_seen={window.get('requests_seen')} last_verdicts={json.dumps(key.get('last_verdicts'))}"]
    for name, rule in DEFAULT_RULES.items():
        parts = []
        for condition in rule["when"]:
            feature = condition.split()[0]
            parts.append(f"{condition} (is {features.get(feature, float('nan')):.3g})")
        lines.append(f"{name}: " + "; ".join(parts))
    return "\n".join(lines)


def test_a_harvesting_script_is_flagged_in_the_demo_and_a_chatting_person_is_not(demo):
    instructions = seed_instructions()
    with ThreadPoolExecutor(1 + len(OPENERS)) as pool:
        harvested = pool.submit(harvest, demo.client(HARVEST_KEY), instructions)
        chats = [pool.submit(chat, demo.client(BENIGN_KEY), opener) for opener in OPENERS]
        outcomes, turns = harvested.result(), sum(c.result() for c in chats)
    answered = [n for n in outcomes if isinstance(n, int)]
    refused = {status: outcomes.count(status) for status in set(outcomes) - set(answered)}
    assert len(outcomes) == len(instructions) >= 190 and len(answered) >= 40
    assert 100 <= statistics.median(answered) <= 700 and max(answered) <= 1024  # lengths as a model gives them
    assert turns == len(OPENERS) * len(FOLLOW_UPS)

    harvest_id, benign_id = demo.key_id(HARVEST_KEY), demo.key_id(BENIGN_KEY)
    flagged = flag_of(demo, harvest_id)
    harvest_key = demo.admin(f"/keys/{harvest_id}")
    print(f"harvest: {len(answered)} answered (median {statistics.median(answered)} tokens), refused {refused}; "
          f"flag {json.dumps(flagged)}\n{explain(harvest_key)}")
    assert flagged is not None, f"harvest key not flagged; refused {refused}\n{explain(harvest_key)}"
    assert flagged["reasons"] and flagged["requests_before_flag"] <= len(instructions), flagged
    flags = {flag["key_id"] for flag in demo.admin("/flags")["flags"]}
    benign_key = demo.admin(f"/keys/{benign_id}")
    assert benign_key["window"]["requests_seen"] == turns
    assert benign_id not in flags, explain(benign_key)


def flag_of(demo: Demo, key_id: str) -> dict | None:
    """The key's flag once the in-process scorer has caught up, or None if it never comes."""
    try:
        return wait_until(lambda: {f["key_id"]: f for f in demo.admin("/flags")["flags"]}.get(key_id), timeout=30,
                          what="flag")
    except TimeoutError:
        return None
