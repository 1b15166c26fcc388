"""One request -> its features: what is extracted, what it defaults to, and the fingerprints'
promise that one template with other fillers stays close while unrelated prompts do not."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from detectors.features import RequestFeatures, from_fields, hamming, request_features, to_fields
from detectors.text import fingerprint_window, template_fingerprint, template_text
from tests.support.prompts import UNRELATED

SALT = b"test-salt"
REPO = Path(__file__).resolve().parents[1]


def features(body, *, path="/v1/chat/completions", headers=None, client_ip="203.0.113.7", usage=None, status=200):
    return request_features(
        ts=1_700_000_000.25, key_id="k_test", path=path, body=body, headers=headers,
        client_ip=client_ip, status=status, latency_ms=812.5, usage=usage, salt=SALT,
    )


def chat(*messages: tuple[str, object], **params) -> dict:
    return {"model": "gpt-4o-mini", "messages": [{"role": r, "content": c} for r, c in messages], **params}


def fingerprint(text: str) -> int:
    return features(chat(("user", text))).template_fp


# --- fields ---------------------------------------------------------------------------


def test_chat_request_fields_are_extracted():
    body = chat(
        ("system", "You are terse."),
        ("user", "Hello there"),
        ("assistant", "Hi."),
        ("user", [{"type": "text", "text": "Name three rivers."}, {"type": "image_url", "image_url": {"url": "x"}}]),
        max_tokens=256, temperature=0.2, top_p=0.9, n=3, stream=True,
        tools=[{"type": "function", "function": {"name": "f"}}],
        response_format={"type": "json_schema", "json_schema": {"name": "s"}}, reasoning_effort="high",
    )
    usage = {"prompt_tokens": 40, "completion_tokens": 12}
    f = features(body, headers={"user-agent": "python-requests/2.31"}, usage=usage)
    assert (f.ts, f.key_id, f.path, f.model, f.status, f.latency_ms) == (
        1_700_000_000.25, "k_test", "/v1/chat/completions", "gpt-4o-mini", 200, 812.5,
    )
    assert f.message_count == 4
    assert f.prompt_chars == len("You are terse.") + len("Hello there") + len("Hi.") + len("Name three rivers.")
    assert (f.prompt_tokens, f.completion_tokens) == (40, 12)
    assert (f.max_tokens, f.temperature, f.top_p, f.n) == (256, 0.2, 0.9, 3)
    assert f.stream and f.has_tools
    assert f.response_format == "json_schema"
    assert f.reasoning_effort == "high"
    assert len(f.system_hash) == 16 and len(f.user_hash) == 16
    assert len(f.ip_prefix) == 12 and len(f.ua_hash) == 12


def test_user_hash_is_of_the_last_user_message_ignoring_case_and_spacing():
    first = features(chat(("user", "Old question"), ("user", "What is  the\nCapital of Peru?")))
    second = features(chat(("user", "what is the capital of peru? ")))
    other = features(chat(("user", "What is the capital of Chile?")))
    assert first.user_hash == second.user_hash != other.user_hash


def test_system_and_developer_messages_both_count_as_system():
    system = features(chat(("system", "Be brief."), ("user", "Hi")))
    developer = features(chat(("developer", "Be brief."), ("user", "Hi")))
    assert system.system_hash == developer.system_hash != ""
    assert features(chat(("user", "Hi"))).system_hash == ""


def test_completions_with_a_string_prompt():
    f = features({"model": "davinci-002", "prompt": "Once upon a time", "max_tokens": 50}, path="/v1/completions")
    assert (f.message_count, f.prompt_chars, f.max_tokens) == (1, 16, 50)
    assert f.prompt_tokens == 4
    assert f.user_hash == features(chat(("user", "once upon a time"))).user_hash


def test_completions_with_a_list_prompt_fingerprint_the_last_prompt():
    f = features({"model": "m", "prompt": ["First prompt", "Second prompt text"]}, path="/v1/completions")
    assert (f.message_count, f.prompt_chars) == (2, len("First prompt") + len("Second prompt text"))
    assert f.template_fp == fingerprint("Second prompt text")


def test_completions_with_token_ids_estimate_tokens_from_their_count():
    f = features({"model": "m", "prompt": [1, 2, 3, 4, 5]}, path="/v1/completions")
    assert (f.message_count, f.prompt_chars, f.prompt_tokens, f.user_hash) == (1, 0, 5, "")


def test_embeddings_input_string_and_list():
    single = features({"model": "text-embedding-3-small", "input": "hello world"}, path="/v1/embeddings")
    batch = features({"model": "text-embedding-3-small", "input": ["a b", "c d e"]}, path="/v1/embeddings")
    assert (single.message_count, single.prompt_chars, single.prompt_tokens) == (1, 11, 3)
    assert (batch.message_count, batch.prompt_chars) == (2, 8)
    assert single.template_fp != 0


def test_embeddings_never_carry_a_reasoning_marker():
    f = features({"model": "e", "input": "Solve it step by step"}, path="/v1/embeddings")
    assert not f.reasoning_marker


def test_responses_api_input_instructions_and_effort():
    body = {
        "model": "o4-mini", "instructions": "Be exact.", "max_output_tokens": 900,
        "input": [{"role": "user", "content": [{"type": "input_text", "text": "Prove it step by step."}]}],
        "reasoning": {"effort": "medium"}, "text": {"format": {"type": "json_object"}},
    }
    f = features(body, path="/v1/responses", usage={"input_tokens": 30, "output_tokens": 70})
    assert (f.max_tokens, f.reasoning_effort, f.response_format) == (900, "medium", "json_object")
    assert (f.prompt_tokens, f.completion_tokens, f.message_count) == (30, 70, 1)
    assert f.system_hash != "" and f.reasoning_marker


def test_missing_fields_take_their_defaults():
    for body in (None, {}, {"messages": []}):
        f = features(body, headers=None, client_ip=None)
        # Without usage the answer length is unknown (-1), never zero.
        assert (f.prompt_chars, f.prompt_tokens, f.completion_tokens, f.message_count) == (0, 0, -1, 0)
        assert (f.system_hash, f.user_hash, f.template_fp, f.template_head) == ("", "", 0, 0)
        assert (f.model, f.max_tokens, f.temperature, f.top_p, f.n) == ("", 0, -1.0, -1.0, 1)
        assert (f.logprobs, f.top_logprobs, f.stream, f.has_tools) == (False, 0, False, False)
        assert (f.response_format, f.reasoning_marker, f.reasoning_effort) == ("", False, "")
        assert (f.ip_prefix, f.ua_hash) == ("", "")


def test_prompt_tokens_are_estimated_when_usage_is_unknown():
    assert features(chat(("user", "x" * 9))).prompt_tokens == 3
    assert features(chat(("user", "x" * 9)), usage={"prompt_tokens": 0}).prompt_tokens == 3


def test_max_completion_tokens_counts_as_max_tokens():
    assert features(chat(("user", "hi"), max_completion_tokens=77)).max_tokens == 77


def test_malformed_values_fall_back_instead_of_raising():
    body = {
        "model": ["not", "a", "string"], "messages": [None, 3, {"role": "user", "content": {"odd": 1}}],
        "max_tokens": "many", "temperature": "hot", "top_p": float("nan"), "n": True, "logprobs": "yes",
        "response_format": "weird", "reasoning": "lots",
    }
    f = features(body, usage={"prompt_tokens": "ten"})
    assert (f.model, f.max_tokens, f.temperature, f.top_p, f.n, f.logprobs) == ("", 0, -1.0, -1.0, 1, False)
    assert (f.response_format, f.reasoning_effort, f.message_count) == ("", "", 3)


def test_hostile_counts_are_clamped():
    f = features(chat(("user", "hi"), max_tokens=10**400, n=-4, top_logprobs=2**40), usage={"completion_tokens": -9})
    assert (f.max_tokens, f.n, f.top_logprobs, f.completion_tokens) == (2**31 - 1, 0, 2**31 - 1, 0)


# --- logprobs ---------------------------------------------------------------------------


def test_chat_logprobs_with_top_logprobs():
    f = features(chat(("user", "hi"), logprobs=True, top_logprobs=5))
    assert (f.logprobs, f.top_logprobs) == (True, 5)
    assert not features(chat(("user", "hi"), logprobs=False)).logprobs


def test_completions_logprobs_integer_is_the_top_count():
    f = features({"model": "m", "prompt": "hi", "logprobs": 5}, path="/v1/completions")
    assert (f.logprobs, f.top_logprobs) == (True, 5)
    zero = features({"model": "m", "prompt": "hi", "logprobs": 0}, path="/v1/completions")
    assert (zero.logprobs, zero.top_logprobs) == (False, 0)


# --- template fingerprints ----------------------------------------------------------------

TEMPLATES = [
    [
        "Translate 'good morning' into French.",
        "Translate 'where is the station' into German.",
        "Translate 'I would like a coffee, please' into Spanish.",
    ],
    [
        'Classify the sentiment of this review as positive, negative or neutral: "The battery died after two days."',
        'Classify the sentiment of this review as positive, negative or neutral: "Best purchase I made all year!"',
    ],
    [
        "Question 17: A train leaves at 14:05 travelling at 80 km/h. How far has it gone by 16:35? "
        "Give the answer in kilometres and explain briefly.",
        "Question 342: A train leaves at 09:10 travelling at 125.5 km/h. How far has it gone by 12:00? "
        "Give the answer in kilometres and explain briefly.",
    ],
    [
        "Write a short biography of Marie Curie for a school newsletter, in about 150 words, "
        "mentioning where they were born and what they are remembered for.",
        "Write a short biography of Nelson Mandela for a school newsletter, in about 200 words, "
        "mentioning where they were born and what they are remembered for.",
    ],
    [
        "Summarise the following support ticket in one sentence and tag its urgency.\n\n"
        "Ticket #48213 from jane.doe@example.com: \"Cannot log in since the update, see https://status.example.com\"",
        "Summarise the following support ticket in one sentence and tag its urgency.\n\n"
        "Ticket #99120 from ops@acme.io: \"Invoices page times out after 30s, see https://acme.io/billing?id=7\"",
    ],
    [
        "Fix the bug in this function and explain the fix:\n```python\ndef add(a, b):\n    return a - b\n```",
        "Fix the bug in this function and explain the fix:\n```js\nfunction last(xs) { return xs[xs.length]; }\n```",
    ],
]



@pytest.mark.parametrize("family", TEMPLATES, ids=lambda family: family[0][:24])
def test_one_template_with_other_fillers_stays_within_six_bits(family):
    prints = [fingerprint(prompt) for prompt in family]
    for a, b in itertools.combinations(prints, 2):
        assert hamming(a, b) <= 6


def test_a_long_template_with_one_unmasked_filler_word_stays_close_on_average():
    template = (
        "You are an expert tutor. Explain the concept of {} to a curious student who has just started "
        "university. Use a concrete everyday example, keep it under two hundred words, avoid jargon, and "
        "finish with one question the student can use to check their understanding."
    )
    topics = ["photosynthesis", "entropy", "inflation", "recursion", "gravity", "osmosis", "democracy"]
    prints = [fingerprint(template.format(topic)) for topic in topics]
    distances = [hamming(a, b) for a, b in itertools.combinations(prints, 2)]
    assert sum(distances) / len(distances) <= 8


def test_one_template_shares_its_head():
    heads = {features(chat(("user", prompt))).template_head for prompt in TEMPLATES[0]}
    assert len(heads) == 1


def test_unrelated_prompts_are_far_apart():
    prints = [fingerprint(prompt) for prompt in UNRELATED]
    distances = [hamming(a, b) for a, b in itertools.combinations(prints, 2)]
    assert sum(distances) / len(distances) >= 16
    assert min(distances) >= 8


def test_masking_keeps_the_template_and_drops_the_fillers():
    masked = template_text("Translate 'foo' into French, then email Bob at bob@x.org about the 3 results.")
    assert masked == "translate <str> into <name> then email <name> at <email> about the <num> results"
    masked = template_text(
        "See https://example.com/a?b=1 or run `ls -la` and “quote” «citation» 1,250.50 2024-05-01"
    )
    assert masked == "see https <url> or run <code> and <str> <str> <num> <num>"


def test_a_capitalised_word_opening_a_sentence_is_not_a_name():
    assert template_text("Paris is big. Rome is old") == "paris is big rome is old"


def test_cjk_characters_are_tokens_of_their_own():
    assert template_text("请翻译这句话") == "请 翻 译 这 句 话"


def test_long_prompts_fingerprint_only_their_head_and_tail():
    head, tail = "Please review the contract below. " * 60, " Which clauses are risky?" * 20
    middle_a, middle_b = "alpha beta gamma " * 200, "delta epsilon zeta " * 200
    assert fingerprint(head + middle_a + tail) == fingerprint(head + middle_b + tail)
    assert len(fingerprint_window(head + middle_a + tail)) == 2_000 + 1 + 500


def test_long_prompts_in_any_script_are_cut_by_bytes():
    window = fingerprint_window("请总结以下会议记录" * 1_000)
    assert len(window.encode()) <= 2_000 + 1 + 500
    assert window.startswith("请总结") and window.endswith("会议记录")


def test_empty_text_has_zero_fingerprint():
    assert template_fingerprint("") == (0, 0)
    assert template_fingerprint(" .,;! ") == (0, 0)


def test_fingerprints_are_the_same_in_every_process():
    code = (
        "from detectors.features import request_features as r; import json;"
        "f = r(ts=0, key_id='k', path='/v1/chat/completions', body={'messages': [{'role': 'user', "
        "'content': 'Translate \\'foo\\' into French, Bob.'}]}, headers={'user-agent': 'ua'}, "
        "client_ip='198.51.100.4', status=200, latency_ms=1, usage=None, salt=b's');"
        "print(json.dumps([f.template_fp, f.template_head, f.user_hash, f.ip_prefix, f.ua_hash]))"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        ).stdout
        for seed in ("1", "2")
    }
    assert len(outputs) == 1
    assert json.loads(outputs.pop())[0] == fingerprint("Translate 'foo' into French, Bob.")


# --- reasoning markers ----------------------------------------------------------------------

ASKS_FOR_REASONING = {
    "English": "Solve 3x + 5 = 20. Think step by step and show your reasoning.",
    "English, tag": "Answer inside <think></think> first.",
    "Chinese": "请一步一步地解这道题，并写出推理过程。",
    "Spanish": "Resuelve el problema paso a paso.",
    "French": "Résous ce problème étape par étape.",
    "German": "Löse die Aufgabe Schritt für Schritt.",
    "Japanese": "この問題をステップバイステップで解いてください。",
    "Russian": "Реши задачу шаг за шагом.",
    "Portuguese": "Resolva o problema passo a passo.",
    "Korean": "이 문제를 단계별로 풀어 주세요.",
}


@pytest.mark.parametrize("language", ASKS_FOR_REASONING)
def test_reasoning_requests_are_marked(language):
    assert features(chat(("user", ASKS_FOR_REASONING[language]))).reasoning_marker


def test_reasoning_markers_in_the_system_message_count():
    assert features(chat(("system", "Always show your work."), ("user", "2+2?"))).reasoning_marker


@pytest.mark.parametrize(
    "prompt",
    ["What is the capital of France?", "Summarise this article: The council approved the new budget on Monday."],
)
def test_neutral_prompts_are_not_marked(prompt):
    assert not features(chat(("system", "You are a helpful assistant."), ("user", prompt))).reasoning_marker


# --- client hashes ----------------------------------------------------------------------------


def test_ipv4_addresses_in_one_slash_24_share_a_prefix():
    prefix = features({}, client_ip="203.0.113.7").ip_prefix
    assert prefix == features({}, client_ip="203.0.113.99").ip_prefix
    assert prefix != features({}, client_ip="203.0.114.7").ip_prefix
    assert prefix == features({}, client_ip="::ffff:203.0.113.42").ip_prefix


def test_ipv6_addresses_in_one_slash_64_share_a_prefix():
    prefix = features({}, client_ip="2001:db8:1:2::1").ip_prefix
    assert prefix == features({}, client_ip="2001:db8:1:2:ffff::9").ip_prefix
    assert prefix != features({}, client_ip="2001:db8:1:3::1").ip_prefix


def test_client_hashes_depend_on_the_salt():
    other = request_features(
        ts=0, key_id="k", path="/v1/chat/completions", body={}, headers={"user-agent": "curl/8"},
        client_ip="203.0.113.7", status=200, latency_ms=0, usage=None, salt=b"another-salt",
    )
    mine = features({}, headers={"user-agent": "curl/8"})
    assert (other.ip_prefix, other.ua_hash) != (mine.ip_prefix, mine.ua_hash)


def test_header_order_tells_client_libraries_apart_whatever_their_values():
    sdk = features({}, headers={"accept": "application/json", "content-type": "application/json", "user-agent": "a/1"})
    same_names = features({}, headers={"accept": "*/*", "content-type": "text/plain", "user-agent": "b/2"})
    reordered = features({}, headers={"user-agent": "a/1", "accept": "application/json", "content-type": "x"})
    assert sdk.header_order == same_names.header_order
    assert sdk.header_order != reordered.header_order
    assert len(sdk.header_order) == 12


def test_no_headers_means_no_header_order():
    assert features({}, headers=None).header_order == ""
    assert features({}, headers={}).header_order == ""


def test_unparsable_client_addresses_still_hash():
    assert len(features({}, client_ip="testclient").ip_prefix) == 12


# --- stream entries -------------------------------------------------------------------------


def test_stream_fields_round_trip():
    body = chat(
        ("system", "Be exact."), ("user", "Translate 'x' into French step by step"),
        max_tokens=64, temperature=0.7, top_p=0.95, logprobs=True, top_logprobs=3,
    )
    original = features(body, headers={"user-agent": "ua/1"}, usage={"prompt_tokens": 21, "completion_tokens": 8})
    assert original.header_order
    fields = to_fields(original)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in fields.items())
    assert from_fields(fields) == original
    as_redis_returns_them = {k.encode(): v.encode() for k, v in fields.items()}
    assert from_fields(as_redis_returns_them) == original


def test_stream_fields_round_trip_defaults_and_extremes():
    original = RequestFeatures(
        ts=0.1 + 0.2, key_id="k:ü", path="/v1/embeddings", prompt_chars=0, prompt_tokens=0, completion_tokens=0,
        message_count=0, system_hash="", user_hash="", template_fp=2**64 - 1, template_head=2**32 - 1, model="",
        max_tokens=0, temperature=-1.0, top_p=-1.0, n=1, logprobs=False, top_logprobs=0, stream=False,
        has_tools=False, response_format="", reasoning_marker=False, reasoning_effort="", ip_prefix="",
        ua_hash="", status=599, latency_ms=1e-7,
    )
    assert from_fields(to_fields(original)) == original


def test_entries_missing_newer_fields_read_with_defaults():
    fields = to_fields(features(chat(("user", "hi"))))
    del fields["reasoning_effort"], fields["top_p"], fields["header_order"]
    restored = from_fields(fields)
    assert (restored.reasoning_effort, restored.top_p, restored.header_order) == ("", -1.0, "")


def test_a_reasoning_request_earlier_in_the_chat_does_not_mark_later_turns():
    body = chat(("user", "Solve 3x + 5 = 20 step by step."), ("assistant", "x = 5."), ("user", "Thanks! And 4x?"))
    assert not features(body).reasoning_marker


# --- task generation (self-instruct data) -------------------------------------------------

ASKS_FOR_NEW_TASKS = {
    "Alpaca": "You are asked to come up with a set of 20 diverse task instructions. These task instructions "
              "will be given to a GPT model.",
    "Code Alpaca": "You are asked to come up with a set of 20 diverse code generation task instructions.",
    "self-instruct": "Come up with a series of tasks:\n1. Write a poem.\n2. Sort a list.\n3.",
    "few-shot list": "###\n1. Instruction: Give three tips.\n1. Input:\n<noinput>\n###\n2. Instruction: Sort.\n2.",
    "plain": "Generate 50 new and different instructions for training an assistant.",
}
NOT_NEW_TASKS = (
    "Write instructions for assembling a bookshelf.",
    "Generate 10 quiz questions about photosynthesis.",
    "How do I write prompts for image models?",
    "What tasks should I finish before a move?",
    "Write a story about a robot doing household tasks.",
)


@pytest.mark.parametrize("name", ASKS_FOR_NEW_TASKS)
def test_requests_to_invent_new_tasks_are_marked(name):
    assert features(chat(("user", ASKS_FOR_NEW_TASKS[name]))).task_generation_marker


@pytest.mark.parametrize("prompt", NOT_NEW_TASKS)
def test_ordinary_requests_about_tasks_or_instructions_are_not_marked(prompt):
    assert not features(chat(("user", prompt))).task_generation_marker


def test_the_task_generation_marker_survives_the_stream_entry():
    marked = features(chat(("user", ASKS_FOR_NEW_TASKS["Alpaca"])))
    assert from_fields(to_fields(marked)) == marked and marked.task_generation_marker
