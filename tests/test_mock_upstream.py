"""The upstream simulator over real loopback HTTP, checked with the `openai` client and httpx."""

from __future__ import annotations

import json
import math
import re
import socket
import statistics
import threading
import time
from enum import Enum
from typing import Literal

import httpx
import jsonschema
import openai
import pytest
import uvicorn
from pydantic import BaseModel, Field

from service.upstream_sim import MockSettings, create_mock_app, tokens
from traffic import prompts

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
    with httpx.Client(timeout=5) as http, \
            http.stream("POST", f"{mock.base_url}/chat/completions", json=body, headers=headers) as response:
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


# --- answers like a model -------------------------------------------------------------------

class Priority(str, Enum):
    low = "low"
    high = "high"


class Address(BaseModel):
    street: str
    city: str
    postcode: str | None = None


class Person(BaseModel):
    name: str
    age: int = Field(ge=0, le=120)
    email: str
    addresses: list[Address] = Field(min_length=1, max_length=3)
    priority: Priority
    nickname: str | None = None


class Step(BaseModel):
    explanation: str
    output: str


class MathReasoning(BaseModel):
    steps: list[Step]
    final_answer: str


class Cat(BaseModel):
    kind: Literal["cat"]
    lives: int = Field(gt=0, le=9)


class Dog(BaseModel):
    kind: Literal["dog"]
    good: bool


class Node(BaseModel):
    label: str
    score: float = Field(ge=0, le=1)
    children: list[Node] = []
    pet: Cat | Dog = Field(discriminator="kind")
    tags: dict[str, int] = {}
    mode: Literal["fast", "slow"] = "fast"


SCHEMAS = (Person, MathReasoning, Node, Address)
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather for a city", "strict": True,
    "parameters": {"type": "object", "additionalProperties": False, "required": ["city", "unit"],
                   "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}}}}}
SEARCH_TOOL = {"type": "function", "function": {
    "name": "search_docs", "description": "Search the documentation",
    "parameters": {"type": "object", "required": ["query"],
                   "properties": {"query": {"type": "string"}, "limit": {"type": "integer", "minimum": 1}}}}}
ESSAY = [{"role": "user", "content": "Write a short essay about the history of Roman aqueducts."}]


@pytest.fixture(scope="module")
def model_mock():
    running = RunningMock(MockSettings(seed=7))
    yield running
    running.stop()


@pytest.fixture
def model_client(model_mock):
    with openai.OpenAI(base_url=model_mock.base_url, api_key="sk-test", max_retries=0, timeout=10) as client:
        yield client


def _tasks(count: int) -> list[str]:
    tasks = prompts.seed_tasks()[:count]
    return [f"{t['instruction']}\n\n{t['input']}" if t.get("input") else t["instruction"] for t in tasks]


@pytest.mark.parametrize("model", SCHEMAS, ids=lambda m: m.__name__)
def test_json_schema_answers_are_instances_of_the_schema(model_client, model):
    schema = model.model_json_schema()
    for task in _tasks(8):
        completion = model_client.chat.completions.create(
            model="sim", messages=[{"role": "user", "content": task}],
            response_format={"type": "json_schema", "json_schema": {"name": model.__name__, "schema": schema}})
        value = json.loads(completion.choices[0].message.content)
        jsonschema.validate(value, schema)
        model.model_validate(value)
        assert completion.usage.completion_tokens == tokens.count(completion.choices[0].message.content)


def test_json_object_answers_hold_the_keys_the_prompt_quotes(model_client):
    completion = model_client.chat.completions.create(
        model="sim", response_format={"type": "json_object"},
        messages=[{"role": "user", "content": 'Reply in JSON as {"title": ..., "summary": ...} for: rivers'}])
    assert set(json.loads(completion.choices[0].message.content)) == {"title", "summary"}


def test_parse_with_a_pydantic_model_returns_the_parsed_object(model_client):
    completion = model_client.beta.chat.completions.parse(
        model="sim", response_format=MathReasoning,
        messages=[{"role": "user", "content": "Solve 8x + 7 = -23 step by step."}])
    parsed = completion.choices[0].message.parsed
    assert isinstance(parsed, MathReasoning) and parsed.steps


def test_a_forced_tool_call_has_arguments_that_conform(model_client):
    schema = Person.model_json_schema()
    tool = {"type": "function", "function": {"name": "Person", "description": "Extract a person",
                                             "parameters": schema}}
    for task in _tasks(5):
        completion = model_client.chat.completions.create(
            model="sim", messages=[{"role": "user", "content": task}], tools=[tool],
            tool_choice={"type": "function", "function": {"name": "Person"}})
        choice = completion.choices[0]
        assert choice.finish_reason == "stop" and choice.message.content is None
        (call,) = choice.message.tool_calls
        assert call.function.name == "Person"
        jsonschema.validate(json.loads(call.function.arguments), schema)


def test_a_two_step_tool_loop_ends_with_a_text_answer(model_client):
    messages = [{"role": "user", "content": "What's the weather in Paris today?"}]
    first = model_client.chat.completions.create(model="sim", messages=messages, tools=[WEATHER_TOOL, SEARCH_TOOL],
                                                 parallel_tool_calls=False)
    assert first.choices[0].finish_reason == "tool_calls"
    (call,) = first.choices[0].message.tool_calls
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments)["unit"] in ("c", "f")
    messages += [first.choices[0].message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id, "content": "18 C and sunny"}]
    second = model_client.chat.completions.create(model="sim", messages=messages, tools=[WEATHER_TOOL, SEARCH_TOOL])
    assert second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.tool_calls is None and second.choices[0].message.content


def test_parallel_tool_calls_come_only_when_allowed(model_client):
    counts = {True: [], False: []}
    for parallel, found in counts.items():
        for task in _tasks(24):
            completion = model_client.chat.completions.create(
                model="sim", messages=[{"role": "user", "content": task}], tools=[WEATHER_TOOL, SEARCH_TOOL],
                tool_choice="required", parallel_tool_calls=parallel)
            found.append(len(completion.choices[0].message.tool_calls))
    assert set(counts[False]) == {1}
    assert 2 in counts[True] and 1 in counts[True]


def test_streamed_tool_call_deltas_assemble_into_valid_arguments(model_client):
    stream = model_client.chat.completions.create(
        model="sim", messages=[{"role": "user", "content": "Search the docs for rate limits"}], stream=True,
        tools=[SEARCH_TOOL], tool_choice="required", stream_options={"include_usage": True})
    chunks = list(stream)
    deltas = [d for c in chunks if c.choices for d in c.choices[0].delta.tool_calls or []]
    assert deltas[0].id and deltas[0].function.name == "search_docs"
    arguments = json.loads("".join(d.function.arguments or "" for d in deltas))
    jsonschema.validate(arguments, SEARCH_TOOL["function"]["parameters"])
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    assert chunks[-1].usage.completion_tokens > 0


def test_a_reasoning_model_returns_its_reasoning_and_counts_it(model_client):
    completion = model_client.chat.completions.create(model="sim-reasoning", messages=ESSAY)
    message, usage = completion.choices[0].message, completion.usage
    reasoning = message.model_extra["reasoning_content"]
    assert reasoning and message.content
    assert usage.completion_tokens_details.reasoning_tokens == tokens.count(reasoning)
    assert usage.completion_tokens == tokens.count(reasoning) + tokens.count(message.content)
    plain = model_client.chat.completions.create(model="sim", messages=ESSAY)
    assert "reasoning_content" not in plain.choices[0].message.model_extra
    assert plain.usage.completion_tokens_details.reasoning_tokens == 0
    effort = model_client.chat.completions.create(model="sim", messages=ESSAY, reasoning_effort="low")
    assert effort.usage.completion_tokens_details.reasoning_tokens > 0


def test_streamed_reasoning_comes_before_the_content(model_client):
    chunks = list(model_client.chat.completions.create(model="sim-reasoning", messages=ESSAY, stream=True,
                                                       max_completion_tokens=400))
    kinds = [("reasoning" if (c.choices[0].delta.model_extra or {}).get("reasoning_content") else
              "content" if c.choices[0].delta.content else None) for c in chunks]
    kinds = [k for k in kinds if k]
    assert kinds[0] == "reasoning" and kinds.count("reasoning") + kinds.count("content") <= 400
    assert kinds == sorted(kinds, key=lambda k: k != "reasoning")


def test_chat_logprobs_list_the_chosen_token_first_among_k_sorted_alternatives(model_client):
    completion = model_client.chat.completions.create(model="sim", messages=ESSAY, max_tokens=40, logprobs=True,
                                                      top_logprobs=5)
    content = completion.choices[0].logprobs.content
    assert "".join(t.token for t in content) == completion.choices[0].message.content
    assert len(content) == completion.usage.completion_tokens == 40
    for entry in content:
        values = [t.logprob for t in entry.top_logprobs]
        assert len(values) == 5 and values == sorted(values, reverse=True)
        assert entry.top_logprobs[0].token == entry.token and values[0] == entry.logprob
        assert sum(math.exp(v) for v in values) <= 1 + 1e-9
        assert bytes(entry.bytes).decode() == entry.token


def test_legacy_logprobs_and_echo(model_client):
    completion = model_client.completions.create(model="sim", prompt="Once upon a time", max_tokens=6,
                                                 logprobs=2, echo=True)
    choice = completion.choices[0]
    assert choice.text.startswith("Once upon a time ")
    assert "".join(choice.logprobs.tokens) == choice.text
    assert choice.logprobs.text_offset == [sum(map(len, choice.logprobs.tokens[:i]))
                                           for i in range(len(choice.logprobs.tokens))]
    assert all(len(top) == 2 for top in choice.logprobs.top_logprobs)
    assert completion.usage.completion_tokens == 6 and choice.finish_reason == "length"


def test_answer_lengths_are_drawn_per_request_and_capped_by_max_tokens(model_client):
    lengths, finishes = [], []
    for task in _tasks(60):
        completion = model_client.chat.completions.create(
            model="sim", messages=[{"role": "user", "content": task}], temperature=0.7, max_tokens=1024)
        content = completion.choices[0].message.content
        assert completion.usage.completion_tokens == tokens.count(content)
        lengths.append(completion.usage.completion_tokens)
        finishes.append(completion.choices[0].finish_reason)
    assert max(lengths) <= 1024 and len(set(lengths)) >= 40
    assert 60 <= statistics.median(lengths) <= 600
    assert all(f == "length" for n, f in zip(lengths, finishes) if n == 1024)
    capped = [model_client.chat.completions.create(model="sim", messages=[{"role": "user", "content": task}],
                                                   max_completion_tokens=64) for task in _tasks(20)]
    assert all(c.usage.completion_tokens <= 64 for c in capped)
    assert {c.choices[0].finish_reason for c in capped if c.usage.completion_tokens == 64} == {"length"}
    assert {c.choices[0].finish_reason for c in capped if c.usage.completion_tokens < 64} <= {"stop"}


def test_a_label_request_gets_a_short_answer_and_an_essay_a_long_one(model_client):
    def length(content: str, **extra) -> int:
        return model_client.chat.completions.create(
            model="sim", messages=[{"role": "user", "content": content}], **extra).usage.completion_tokens

    labels = [length(f"Classify the sentiment of this review as positive or negative: {t}") for t in _tasks(15)]
    essays = [length(f"Write a detailed essay about {t}") for t in _tasks(15)]
    assert statistics.median(labels) < 40 < statistics.median(essays)
    assert length("Is this email spam? Answer yes or no.", max_tokens=1) == 1


def test_prompt_tokens_grow_with_the_prompt(model_client):
    short = model_client.chat.completions.create(model="sim", messages=ESSAY, max_tokens=5)
    longer = model_client.chat.completions.create(
        model="sim", max_tokens=5, messages=[{"role": "user", "content": ESSAY[0]["content"] * 10}])
    assert longer.usage.prompt_tokens > short.usage.prompt_tokens + 90


def test_model_answers_are_deterministic_and_n_choices_differ(model_client):
    first = model_client.chat.completions.create(model="sim", messages=ESSAY, n=3)
    again = model_client.chat.completions.create(model="sim", messages=ESSAY, n=3)
    texts = [c.message.content for c in first.choices]
    assert texts == [c.message.content for c in again.choices] and len(set(texts)) == 3
    assert first.usage.completion_tokens == sum(tokens.count(t) for t in texts)


def test_code_requests_get_a_code_block(model_client):
    completion = model_client.chat.completions.create(
        model="sim", messages=[{"role": "user", "content": "Write a Python function that merges two sorted lists."}])
    assert "```python\n" in completion.choices[0].message.content


def test_dspy_field_markers_are_answered_in_order_with_their_types(model_client):
    system = ("Your input fields are:\n1. `question` (str)\nYour output fields are:\n1. `reasoning` (str)\n"
              "2. `answer` (int)\n3. `verdict` (Literal['yes', 'no'])")
    user = ("[[ ## question ## ]]\nHow many legs has a spider?\n\nRespond with the corresponding output fields, "
            "starting with the field `[[ ## reasoning ## ]]`, then `[[ ## answer ## ]]` (must be formatted as a "
            "valid Python int), then `[[ ## verdict ## ]]`, and then ending with the marker for "
            "`[[ ## completed ## ]]`.")
    content = model_client.chat.completions.create(
        model="sim", messages=[{"role": "system", "content": system}, {"role": "user", "content": user}],
    ).choices[0].message.content
    sections = dict(re.findall(r"\[\[ ## (\w+) ## \]\]\n([^\[]*)", content))
    assert list(sections) == ["reasoning", "answer", "verdict"] and content.endswith("[[ ## completed ## ]]")
    assert int(sections["answer"].strip()) >= 1 and sections["verdict"].strip() in ("yes", "no")


def test_the_fixed_answers_header_and_the_completion_tokens_header(model_client):
    fixed = model_client.chat.completions.create(model="sim", messages=ESSAY,
                                                 extra_headers={"x-mock-answers": "fixed"})
    assert fixed.usage.completion_tokens == 16 and len(fixed.choices[0].message.content.split()) == 16
    sized = model_client.chat.completions.create(model="sim", messages=ESSAY,
                                                 extra_headers={"x-mock-completion-tokens": "123"})
    assert sized.usage.completion_tokens == tokens.count(sized.choices[0].message.content) == 123


def test_a_stop_sequence_ends_the_answer_before_it(model_client):
    whole = model_client.chat.completions.create(model="sim", messages=ESSAY, max_tokens=300)
    stopped = model_client.chat.completions.create(model="sim", messages=ESSAY, max_tokens=300, stop=["\n\n"])
    assert "\n\n" in whole.choices[0].message.content
    assert "\n\n" not in stopped.choices[0].message.content and stopped.choices[0].finish_reason == "stop"
    assert stopped.usage.completion_tokens == tokens.count(stopped.choices[0].message.content)
