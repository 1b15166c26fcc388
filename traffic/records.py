"""Turns a simulated chat request into a traffic record the gateway would have recorded:
body, client address, user agent, the upstream's usage, status and latency.

Addresses come only from the documentation ranges (RFC 5737, RFC 3849), so no simulated
record ever names a real host.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

DOCUMENTATION_V4 = ("192.0.2.", "198.51.100.", "203.0.113.")
DOCUMENTATION_V6 = "2001:db8:"
CHAT_PATH = "/v1/chat/completions"

SCRIPT_AGENTS = (
    "OpenAI/Python 1.54.4", "OpenAI/Python 1.37.1", "python-requests/2.32.3", "python-httpx/0.27.2",
    "Python/3.11 aiohttp/3.10.5", "OpenAI/JS 4.73.0",
)
APP_AGENTS = ("OpenAI/Python 1.54.4", "OpenAI/JS 4.73.0", "OpenAI/Python 1.51.0", "langchain-openai/0.2.9")
DESKTOP_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.0 Safari/605",
    "OpenAI/Python 1.54.4", "ChatBox/1.5.1", "OpenAI/JS 4.73.0",
)
CHAT_MODELS = ("gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini")
REASONING_MODELS = ("o3-mini", "o4-mini", "deepseek-reasoner")


def documentation_ip(rng: random.Random, v6_share: float = 0.15) -> str:
    """A client address from 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24 or 2001:db8::/32."""
    if rng.random() < v6_share:
        groups = ":".join(format(rng.randrange(0x10000), "x") for _ in range(6))
        return f"{DOCUMENTATION_V6}{groups}"
    return f"{rng.choice(DOCUMENTATION_V4)}{rng.randint(1, 254)}"


def user(content: str) -> dict:
    return {"role": "user", "content": content}


def system(content: str) -> dict:
    return {"role": "system", "content": content}


def assistant(content: str) -> dict:
    return {"role": "assistant", "content": content}


def chat_body(model: str, messages: list[dict], **options) -> dict:
    """An OpenAI chat request; options left as None are not sent, as a client would omit them."""
    body = {"model": model, "messages": messages}
    body.update((name, value) for name, value in options.items() if value is not None)
    if body.get("stream"):
        body["stream_options"] = {"include_usage": True}
    return body


def message_chars(message: dict) -> int:
    """The text a message sends: its content (null beside tool calls) and its calls' arguments."""
    calls = message.get("tool_calls") or ()
    return len(message.get("content") or "") + sum(len(call["function"]["arguments"]) for call in calls)


def prompt_tokens(messages: list[dict]) -> int:
    """About four characters a token, plus the few tokens each message's framing costs."""
    chars = sum(message_chars(message) for message in messages)
    return -(-chars // 4) + 3 * len(messages)


@dataclass
class Client:
    """What stays fixed for one simulated key: its key, address, user agent, and how fast
    the upstream answers it."""

    key: str
    ip: str
    user_agent: str
    tokens_per_second: float = 60.0

    def request(self, rng: random.Random, ts: float, body: dict, completion_tokens: int, ip: str | None = None,
                reasoning_share: float = 0.0) -> dict:
        """The record of one successful chat request sent at `ts`.

        `completion_tokens` is what the model would say; it is cut to `max_tokens` and
        multiplied by `n`, as the upstream's usage would be. A reasoning model spends
        `reasoning_share` of them thinking, reported as OpenAI reports reasoning tokens.
        """
        limit = body.get("max_tokens") or body.get("max_completion_tokens")
        per_choice = max(1, min(completion_tokens, limit) if limit else completion_tokens)
        latency_ms = rng.uniform(150, 900) + 1000.0 * per_choice / self.tokens_per_second
        usage = {"prompt_tokens": prompt_tokens(body["messages"]), "completion_tokens": per_choice * body.get("n", 1)}
        if reasoning_share:
            reasoning = round(usage["completion_tokens"] * reasoning_share)
            usage["completion_tokens_details"] = {"reasoning_tokens": reasoning}
        return {
            "ts": round(ts, 3),
            "key": self.key,
            "ip": ip or self.ip,
            "method": "POST",
            "path": CHAT_PATH,
            "headers": {"user-agent": self.user_agent, "content-type": "application/json"},
            "body": body,
            "status": 200,
            "latency_ms": round(latency_ms, 1),
            "usage": usage,
        }
