"""The traffic file format: what a valid line is, how each invalid line is reported, gzip,
and that reading streams."""

from __future__ import annotations

import gzip
import hashlib
import hmac
import io
import json
import tracemalloc

import pytest

from traffic.format import TrafficFormatError, TrafficRecord, TrafficWriter, read_traffic, write_record

SECRET = b"traffic-format-test"
GOOD = {
    "ts": 1732400000.125, "key": "sk-test-1", "ip": "203.0.113.7", "method": "POST",
    "path": "/v1/chat/completions", "headers": {"user-agent": "OpenAI/Python 1.54.4"},
    "body": {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}]},
    "label": "benign", "scenario": "casual_user",
}


def key_id_of(raw: str) -> str:
    return hmac.new(SECRET, raw.encode(), hashlib.sha256).hexdigest()[:16]


def write_lines(path, lines: list) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for line in lines:
            handle.write(line if isinstance(line, str) else json.dumps(line, ensure_ascii=False))
            handle.write("\n")


def line_with(**changes) -> dict:
    line = {**GOOD, "ts": GOOD["ts"] + 10}
    for name, value in changes.items():
        if value is ...:
            line.pop(name, None)
        else:
            line[name] = value
    return line


def test_a_valid_line_becomes_a_record_with_the_key_hashed(tmp_path):
    path = tmp_path / "traffic.jsonl"
    write_lines(path, [GOOD])
    [record] = read_traffic(path, key_id_of)
    assert record == TrafficRecord(
        ts=1732400000.125, key_id=key_id_of("sk-test-1"), ip="203.0.113.7", method="POST",
        path="/v1/chat/completions", headers={"user-agent": "OpenAI/Python 1.54.4"}, body=GOOD["body"],
        label="benign", scenario="casual_user",
    )


def test_a_recorded_line_carries_key_id_and_the_recorder_fields(tmp_path):
    path = tmp_path / "traffic.jsonl"
    recorded = {"ts": 1732400000, "key_id": "0123456789abcdef", "ip": "2001:db8::1", "method": "GET",
                "path": "/v1/models", "body": None, "status": 429, "latency_ms": 1.5,
                "usage": {"prompt_tokens": 3, "completion_tokens": 0}}
    write_lines(path, [recorded])
    [record] = read_traffic(path)
    assert (record.key_id, record.status, record.latency_ms, record.usage) == (
        "0123456789abcdef", 429, 1.5, {"prompt_tokens": 3, "completion_tokens": 0})
    assert (record.headers, record.body, record.label, record.scenario) == ({}, None, None, None)
    assert isinstance(record.ts, float)


def test_header_names_are_read_in_lower_case(tmp_path):
    path = tmp_path / "traffic.jsonl"
    write_lines(path, [line_with(headers={"User-Agent": "curl/8.5"})])
    assert next(read_traffic(path, key_id_of)).headers == {"user-agent": "curl/8.5"}


def test_blank_lines_are_skipped(tmp_path):
    path = tmp_path / "traffic.jsonl"
    write_lines(path, [GOOD, "", "   ", line_with()])
    assert len(list(read_traffic(path, key_id_of))) == 2


BAD_LINES = [
    ("not json", '{"ts": 1732400010, "key": ', None, "not valid JSON"),
    ("not an object", "[1, 2, 3]", None, "must be a JSON object"),
    ("ts missing", line_with(ts=...), "ts", "missing"),
    ("ts a string", line_with(ts="1732400010"), "ts", "must be a number"),
    ("ts a boolean", line_with(ts=True), "ts", "must be a number"),
    ("ts negative", line_with(ts=-5), "ts", "not negative"),
    ("both keys", line_with(key_id="0123456789abcdef"), "key", "exactly one"),
    ("no key", line_with(key=...), "key_id", "missing"),
    ("key empty", line_with(key=""), "key", "non-empty string"),
    ("key_id not hex", {**line_with(key=...), "key_id": "0123456789ABCDEZ"}, "key_id", "16 lowercase hex"),
    ("key_id too short", {**line_with(key=...), "key_id": "0123"}, "key_id", "16 lowercase hex"),
    ("ip missing", line_with(ip=...), "ip", "missing"),
    ("ip not an address", line_with(ip="example.com"), "ip", "IPv4 or IPv6"),
    ("method lower case", line_with(method="post"), "method", "must be one of"),
    ("method a list", line_with(method=["POST"]), "method", "must be one of"),
    ("path relative", line_with(path="v1/chat/completions"), "path", "starting with '/'"),
    ("headers a list", line_with(headers=["user-agent"]), "headers", "must be an object"),
    ("header value a number", line_with(headers={"x-retry": 3}), "headers", "must be a string"),
    ("body a string", line_with(body="{}"), "body", "JSON object or null"),
    ("label unknown", line_with(label="malicious"), "label", "'benign', 'attack'"),
    ("label a dict", line_with(label={"kind": "attack"}), "label", "'benign', 'attack'"),
    ("scenario a number", line_with(scenario=5), "scenario", "string or null"),
    ("status a string", line_with(status="200"), "status", "HTTP status code"),
    ("status out of range", line_with(status=1000), "status", "HTTP status code"),
    ("latency negative", line_with(latency_ms=-1), "latency_ms", "non-negative number"),
    ("usage incomplete", line_with(usage={"prompt_tokens": 3}), "usage", "completion_tokens"),
    ("usage a float", line_with(usage={"prompt_tokens": 3, "completion_tokens": 1.5}), "usage", "completion_tokens"),
    ("unknown field", line_with(lable="attack"), "lable", "unknown field"),
]


@pytest.mark.parametrize(("line", "field", "problem"), [case[1:] for case in BAD_LINES],
                         ids=[case[0] for case in BAD_LINES])
def test_an_invalid_line_is_reported_with_file_line_and_field(tmp_path, line, field, problem):
    path = tmp_path / "traffic.jsonl"
    write_lines(path, [GOOD, GOOD, line, GOOD])
    with pytest.raises(TrafficFormatError) as caught:
        list(read_traffic(path, key_id_of))
    message = str(caught.value)
    where = f"{path}:3: field '{field}': " if field else f"{path}:3: "
    assert message.startswith(where), message
    assert problem in message
    assert (caught.value.line, caught.value.field) == (3, field)


def test_the_error_message_reads_file_line_field_problem(tmp_path):
    path = tmp_path / "traffic.jsonl"
    write_lines(path, [line_with(ts="soon")])
    with pytest.raises(TrafficFormatError, match=r"traffic\.jsonl:1: field 'ts': must be a number$"):
        list(read_traffic(path, key_id_of))


def test_records_before_a_bad_line_are_yielded(tmp_path):
    path = tmp_path / "traffic.jsonl"
    write_lines(path, [GOOD, line_with(ip="nowhere")])
    records = read_traffic(path, key_id_of)
    assert next(records).ip == "203.0.113.7"
    with pytest.raises(TrafficFormatError):
        next(records)


def test_ts_may_go_back_less_than_a_second(tmp_path):
    path = tmp_path / "traffic.jsonl"
    write_lines(path, [line_with(ts=1000.0), line_with(ts=1000.9), line_with(ts=1000.2), line_with(ts=1000.5)])
    assert [r.ts for r in read_traffic(path, key_id_of)] == [1000.0, 1000.9, 1000.2, 1000.5]


def test_ts_going_back_more_than_a_second_is_an_error(tmp_path):
    path = tmp_path / "traffic.jsonl"
    write_lines(path, [line_with(ts=1000.0), line_with(ts=1005.0), line_with(ts=1003.5)])
    with pytest.raises(TrafficFormatError, match=r":3: field 'ts': goes back 1\.500 s"):
        list(read_traffic(path, key_id_of))


def test_a_raw_key_needs_a_key_id_function(tmp_path):
    path = tmp_path / "traffic.jsonl"
    write_lines(path, [GOOD])
    with pytest.raises(TrafficFormatError, match=r":1: field 'key': raw key given but no key_id_of"):
        list(read_traffic(path))


def test_gzip_files_read_like_plain_ones(tmp_path):
    lines = [line_with(ts=1000.0 + i, key=f"sk-test-{i % 3}") for i in range(50)]
    plain, packed = tmp_path / "traffic.jsonl", tmp_path / "traffic.jsonl.gz"
    with TrafficWriter(plain) as writer:
        writer.write_all(lines)
    with TrafficWriter(packed) as writer:
        writer.write_all(lines)
    assert packed.read_bytes()[:2] == b"\x1f\x8b"
    assert list(read_traffic(packed, key_id_of)) == list(read_traffic(plain, key_id_of))


def test_gzip_is_recognised_by_content_not_name(tmp_path):
    path = tmp_path / "traffic.jsonl"
    path.write_bytes(gzip.compress((json.dumps(GOOD) + "\n").encode()))
    assert len(list(read_traffic(path, key_id_of))) == 1


def test_open_handles_are_read_too():
    text = json.dumps(GOOD) + "\n"
    assert len(list(read_traffic(io.StringIO(text), key_id_of))) == 1
    assert len(list(read_traffic(io.BytesIO(gzip.compress(text.encode())), key_id_of))) == 1


def test_a_truncated_gzip_file_is_a_format_error(tmp_path):
    path = tmp_path / "traffic.jsonl.gz"
    whole = gzip.compress("".join(json.dumps(line_with(ts=1000.0 + i)) + "\n" for i in range(2000)).encode())
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(TrafficFormatError, match="unreadable gzip data"):
        list(read_traffic(path, key_id_of))


def test_the_writer_puts_one_compact_line_per_record(tmp_path):
    path = tmp_path / "traffic.jsonl"
    with TrafficWriter(path) as writer:
        writer.write({"ts": 1.0, "key_id": "0123456789abcdef", "ip": "192.0.2.1", "method": "POST",
                      "path": "/v1/chat/completions", "body": {"messages": [{"content": "请一步一步思考"}]}})
        writer.write({**GOOD, "ts": 2.0})
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2 == writer.records_written
    assert lines[0].startswith('{"ts":1.0,"key_id":"0123456789abcdef","ip":"192.0.2.1"')
    assert "请一步一步思考" in lines[0]


def test_a_record_round_trips_through_write_and_read(tmp_path):
    path = tmp_path / "traffic.jsonl"
    [original] = read_traffic(io.StringIO(json.dumps({**GOOD, "status": 200, "latency_ms": 5.0,
                                                      "usage": {"prompt_tokens": 1, "completion_tokens": 2}})),
                              key_id_of)
    with open(path, "w", encoding="utf-8") as handle:
        write_record(handle, original)
    assert list(read_traffic(path)) == [original]


def test_reading_streams_in_constant_memory(tmp_path):
    path = tmp_path / "big.jsonl"
    with open(path, "w", encoding="utf-8") as handle:
        for i in range(200_000):
            write_record(handle, {
                "ts": 1732400000 + i * 0.01, "key_id": format(i % 500, "016x"), "ip": f"198.51.100.{i % 250 + 1}",
                "method": "POST", "path": "/v1/chat/completions", "headers": {"user-agent": "OpenAI/Python 1.54.4"},
                "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"question {i}"}]},
                "label": "benign", "status": 200, "usage": {"prompt_tokens": 5, "completion_tokens": 40},
            })
    tracemalloc.start()
    try:
        count = sum(1 for _ in read_traffic(path))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 200_000
    assert peak < 4 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB"


EIGHT_FEATURES = {"prompt_chars": 2, "prompt_tokens": 1, "message_count": 1, "system_hash": "",
                  "user_hash": "0123456789abcdef", "template_fp": 5, "template_head": 7, "reasoning_marker": False}


def test_text_features_added_later_may_be_missing_from_older_files_but_are_checked_when_present(tmp_path):
    path = tmp_path / "traffic.jsonl"
    write_lines(path, [line_with(features=EIGHT_FEATURES),
                       line_with(features={**EIGHT_FEATURES, "task_generation_marker": True,
                                           "previous_user_hash": "fedcba9876543210"})])
    older, newer = read_traffic(path, key_id_of)
    assert "previous_user_hash" not in older.features and newer.features["previous_user_hash"] == "fedcba9876543210"
    write_lines(path, [line_with(features={**EIGHT_FEATURES, "previous_user_hash": "not hex"})])
    with pytest.raises(TrafficFormatError, match="previous_user_hash"):
        list(read_traffic(path, key_id_of))
    write_lines(path, [line_with(features={k: v for k, v in EIGHT_FEATURES.items() if k != "user_hash"})])
    with pytest.raises(TrafficFormatError, match="missing 'user_hash'"):
        list(read_traffic(path, key_id_of))


SHAPE_FEATURES = {"user_chars": 97, "segments": "33e04d96:47,2c1a6b:49", "tool_results": 1, "toolset": "5c3132af",
                  "assistant_hash": "377ba3e2f504e4e8", "judgement_marker": True, "rewrite_marker": False}


@pytest.mark.parametrize(("name", "bad"), [
    ("user_chars", -1), ("tool_results", True), ("toolset", "5c3132af0"), ("toolset", "5C3132AF"),
    ("assistant_hash", "377ba3e2"), ("judgement_marker", 1), ("segments", "33e04d96"),
    ("segments", "xyz:4"), ("segments", ",".join(["a:1"] * 9)), ("segments", 7),
])
def test_the_request_shape_features_read_back_and_a_wrong_kind_names_the_feature(tmp_path, name, bad):
    path = tmp_path / "traffic.jsonl"
    write_lines(path, [line_with(features={**EIGHT_FEATURES, **SHAPE_FEATURES}),
                       line_with(features={**EIGHT_FEATURES, "segments": "", "toolset": ""})])
    full, empty = read_traffic(path, key_id_of)
    assert full.features == {**EIGHT_FEATURES, **SHAPE_FEATURES}
    assert empty.features["segments"] == "" and "user_chars" not in empty.features
    write_lines(path, [line_with(features={**EIGHT_FEATURES, **SHAPE_FEATURES, name: bad})])
    with pytest.raises(TrafficFormatError, match=name):
        list(read_traffic(path, key_id_of))
