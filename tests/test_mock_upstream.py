"""The upstream simulator over real loopback HTTP, checked with the `openai` client and httpx."""

from __future__ import annotations

import json
import socket
import threading
import time

import httpx
import openai
import pytest
import uvicorn

from service.upstream_sim import MockSettings, create_mock_app

MESSAGES = [{"role": "user", "content": "Name three rivers."}]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RunningMock:
    def __init__(self, settings: MockSettings) -> None:
        self.port = _free_port()
        config = uvicorn.Config(create_mock_app(settings), host="127.0.0.1", port=self.port,
                                http="httptools", log_level="warning", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "mock upstream did not start"
            time.sleep(0.01)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def stats(self) -> dict:
        return httpx.get(f"{self.url}/mock/stats", timeout=5).json()

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(5)


@pytest.fixture(scope="module")
def mock():
    running = RunningMock(MockSettings(seed=7, default_completion_tokens=16, answers="fixed"))
    yield running
    running.stop()


@pytest.fixture
def client(mock):
    with openai.OpenAI(base_url=mock.base_url, api_key="sk-test", max_retries=0, timeout=5) as client:
        yield client


def test_chat_completion_has_usage_and_is_deterministic(client):
    first = client.chat.completions.create(model="sim", messages=MESSAGES, max_tokens=5)
    second = client.chat.completions.create(model="sim", messages=MESSAGES, max_tokens=5)
    assert first.choices[0].message.content == second.choices[0].message.content
    assert len(first.choices[0].message.content.split()) == 5
    assert first.choices[0].finish_reason == "length"
    assert first.usage.completion_tokens == 5
    assert first.usage.prompt_tokens == 3 + 3
    assert first.usage.total_tokens == first.usage.prompt_tokens + first.usage.completion_tokens
    other = client.chat.completions.create(model="sim", messages=[{"role": "user", "content": "x"}],
                                           max_tokens=5)
    assert other.choices[0].message.content != first.choices[0].message.content


def test_length_is_capped_by_the_default_and_n_choices_are_returned(client):
    completion = client.chat.completions.create(model="sim", messages=MESSAGES, max_tokens=500, n=2)
    assert [c.index for c in completion.choices] == [0, 1]
    assert completion.usage.completion_tokens == 2 * 16
    assert completion.choices[0].finish_reason == "stop"


def test_chat_logprobs_are_returned(client):
    completion = client.chat.completions.create(model="sim", messages=MESSAGES, max_tokens=3,
                                                logprobs=True, top_logprobs=2)
    content = completion.choices[0].logprobs.content
    assert len(content) == 3
    assert "".join(t.token for t in content) == completion.choices[0].message.content
    assert all(len(t.top_logprobs) == 2 and t.logprob <= 0 for t in content)


def test_stream_without_include_usage_has_no_usage_chunk(client):
    chunks = list(client.chat.completions.create(model="sim", messages=MESSAGES, max_tokens=4, stream=True))
    assert len(chunks) == 5
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.choices for c in chunks) and all(c.usage is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "length"
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    again = client.chat.completions.create(model="sim", messages=MESSAGES, max_tokens=4, stream=True)
    assert len(text.split()) == 4 and text == "".join(c.choices[0].delta.content or "" for c in again)


def test_stream_with_include_usage_ends_with_a_usage_chunk(client, mock):
    with httpx.stream("POST", f"{mock.base_url}/chat/completions", timeout=5, json={
        "model": "sim", "messages": MESSAGES, "max_tokens": 4, "stream": True,
        "stream_options": {"include_usage": True},
    }) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    payloads = [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]
    assert all("usage" in p and p["usage"] is None for p in payloads[:-1])
    assert payloads[-1]["choices"] == [] and payloads[-1]["usage"]["completion_tokens"] == 4
    chunks = list(client.chat.completions.create(model="sim", messages=MESSAGES, max_tokens=4, stream=True,
                                                 stream_options={"include_usage": True}))
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == chunks[-1].usage.prompt_tokens + 4


def test_legacy_completions(client):
    completion = client.completions.create(model="sim", prompt="one two three", max_tokens=3)
    assert completion.object == "text_completion"
    assert len(completion.choices[0].text.split()) == 3
    assert completion.usage.prompt_tokens == 3


def test_embeddings_and_models(client, mock):
    result = client.embeddings.create(model="sim-embed", input=["a cat", "a dog"])
    assert [d.index for d in result.data] == [0, 1]
    assert len(result.data[0].embedding) == 64 and result.data[0].embedding != result.data[1].embedding
    assert abs(sum(v * v for v in result.data[0].embedding) - 1) < 1e-3
    floats = httpx.post(f"{mock.base_url}/embeddings", timeout=5,
                        json={"model": "sim-embed", "input": "a cat", "dimensions": 8}).json()
    assert len(floats["data"][0]["embedding"]) == 8 and floats["usage"]["prompt_tokens"] == 2
    assert "sim" in [m.id for m in client.models.list()]


def test_unknown_path_and_bad_json_get_openai_errors(mock):
    missing = httpx.post(f"{mock.base_url}/nothing-here", json={}, timeout=5)
    assert missing.status_code == 404
    assert set(missing.json()["error"]) >= {"message", "type", "code"}
    bad = httpx.post(f"{mock.base_url}/chat/completions", content=b"{not json", timeout=5)
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_json"


def test_mock_status_header_fails_the_request(client):
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="sim", messages=MESSAGES, extra_headers={"x-mock-status": "500"})
    assert caught.value.status_code == 500
    assert caught.value.body["message"]


def test_stats_record_the_last_request_under_any_prefix(mock):
    response = httpx.get(f"{mock.url}/tenant-a/v1/models?limit=3&after=a%20b",
                         headers={"X-Request-Tag": "kept"}, timeout=5)
    assert response.status_code == 200
    stats = mock.stats()
    assert stats["last_path"] == "/tenant-a/v1/models?limit=3&after=a%20b"
    assert stats["last_headers"]["x-request-tag"] == "kept"
    httpx.post(f"{mock.base_url}/chat/completions", json={"model": "sim", "messages": MESSAGES}, timeout=5)
    assert json.loads(mock.stats()["last_body"])["messages"] == MESSAGES


def test_latency_and_completion_tokens_headers(client):
    started = time.monotonic()
    completion = client.chat.completions.create(
        model="sim", messages=MESSAGES,
        extra_headers={"x-mock-latency-ms": "200", "x-mock-completion-tokens": "30"},
    )
    assert time.monotonic() - started >= 0.2
    assert completion.usage.completion_tokens == 30


def test_a_closed_stream_is_counted_as_cancelled(mock):
    httpx.post(f"{mock.url}/mock/reset", timeout=5)
    headers = {"x-mock-tokens-per-second": "5", "x-mock-completion-tokens": "40"}
    body = {"model": "sim", "messages": MESSAGES, "stream": True}
    with httpx.Client(timeout=5) as http:
        with http.stream("POST", f"{mock.base_url}/chat/completions", json=body, headers=headers) as response:
            first = next(response.iter_lines())
            assert first.startswith("data: {")
            stats = mock.stats()
            assert stats["streams_started"] == 1 and stats["streams_completed"] == 0
    deadline = time.monotonic() + 1.5
    while mock.stats()["streams_cancelled"] < 1:
        assert time.monotonic() < deadline, "the mock never saw the disconnect"
        time.sleep(0.02)
    stats = mock.stats()
    assert stats["streams_completed"] == 0 and stats["requests"] == 1
