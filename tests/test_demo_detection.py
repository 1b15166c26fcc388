"""`distillguard demo` flags a harvesting script as production would: the real `openai` client
sends Alpaca / Code Alpaca seed instructions for sampled 1,024-token answers on one key while
a person chats with follow-ups on another, and the admin API shows which key was flagged.

The simulator behind the demo answers at lengths drawn from real serving traces, so nothing
here is sized to please the detectors: if the harvester goes unflagged, the assertion prints
every rule condition against the key's window features."""

from __future__ import annotations

import json
import os
import secrets
import statistics
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest
import yaml

from detectors.rules import DEFAULT_RULES
from service.console.auth import hash_token
from service.keys import KeyHasher
from tests.support.processes import LOOPBACK, _cli, free_port, stop_process, wait_until
from traffic import prompts

HARVEST_KEY, BENIGN_KEY = "sk-demo-harvest", "sk-demo-person"
HARVEST_CONCURRENCY = 8
FOLLOW_UPS = ("Can you give me a concrete example?", "Why is that?", "How would that change for a beginner?",
              "What is the most common mistake there?", "Could you say that more simply?",
              "Thanks. What should I read next about it?", "And how long does that usually take?",
              "Is there a cheaper way?", "What would you do in my place?", "Ok, one last question: any pitfalls?")
OPENERS = ("I'm planning a two-week trip to Portugal in spring and I'm not sure where to start.",
           "My sourdough keeps coming out flat and dense. I feed the starter every day.",
           "I want to start running again after a knee injury last year.")

pytestmark = pytest.mark.timeout(600)


class Demo:
    def __init__(self, tmp_path: Path) -> None:
        self.token, self.secret = secrets.token_urlsafe(24), secrets.token_hex(32)
        config = {"key_secret": self.secret,
                  "admin": {"reviewers": [{"name": "test", "role": "viewer", "token_sha256": hash_token(self.token)}]}}
        config_path = tmp_path / "demo.yaml"
        config_path.write_text(yaml.safe_dump(config))
        self.port, upstream_port = free_port(), free_port()
        self.log_path = tmp_path / "demo.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("DISTILLGUARD_")}
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                _cli("demo", "--config", str(config_path), "--port", str(self.port),
                     "--upstream-port", str(upstream_port)),
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                env={**env, "DISTILLGUARD_HOME": str(tmp_path)},
            )
        self.url = f"http://{LOOPBACK}:{self.port}"
        wait_until(lambda: httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200, timeout=60,
                   what="demo up")

    def client(self, key: str) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=key, max_retries=0, timeout=60)

    def admin(self, path: str) -> dict:
        response = httpx.get(f"{self.url}/admin/api{path}", headers={"Authorization": f"Bearer {self.token}"},
                             timeout=10)
        response.raise_for_status()
        return response.json()

    def key_id(self, raw_key: str) -> str:
        return KeyHasher(self.secret.encode()).key_id(raw_key)


@pytest.fixture
def demo(tmp_path):
    running = Demo(tmp_path)
    yield running
    stop_process(running.proc)


def seed_instructions() -> list[str]:
    """Alpaca's 175 and Code Alpaca's 20 human-written seed tasks, with their inputs."""
    tasks = [*prompts.seed_tasks(), *prompts.seed_tasks(code=True)]
    return [f"{t['instruction']}\n\n{t['input']}" if t.get("input") else t["instruction"] for t in tasks]


def harvest(client: openai.OpenAI, instructions: list[str]) -> list[int | str]:
    """One answer per instruction, sampled, as a distillation script collects them: the
    answer's completion tokens, or the HTTP status that refused it."""
    def ask(instruction: str) -> int | str:
        try:
            response = client.chat.completions.create(
                model="sim", messages=[{"role": "user", "content": instruction}], temperature=0.7, max_tokens=1024)
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
