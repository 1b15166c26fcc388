"""Recording: the gateway appends every finished request to traffic files that the strict
reader accepts, keeps of each body what its mode promises, never a raw key, rotates by
size, keeps lines in `ts` order, and loses records (never requests) to a full disk."""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import re
import resource
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import httpx
import openai
import pytest
from prometheus_client import REGISTRY

from detectors.features import request_features
from service.config import ConfigError, RecordingConfig, load_settings
from service.offline.scoring import record_features, score_records, train_forest
from service.proxy import Exchange
from service.recording.lines import Finished, HeaderNames, encode_line, traffic_record
from service.recording.recorder import Recorder
from service.scoring.detection import build_pipeline
from service.usage import Usage
from tests.conftest import TEST_SECRET, base_config
from tests.support.processes import wait_until
from tests.support.traffic import chat_request, harvest_request, key_id, send
from traffic.format import TEXT_FEATURES, TrafficFormatError, read_traffic

FILE_NAME = re.compile(r"^traffic-\d{8}T\d{6}-(\d+)-(\d+)\.jsonl(\.gz)?$")
PROMPT = "Describe the zebra-striped lighthouse of Quillport"
RAW_KEY = "sk-live-SECRETKEY-0123456789"
# The text features every features-mode file has carried since the first.
EIGHT_FEATURES = ("prompt_chars", "prompt_tokens", "message_count", "system_hash", "user_hash", "template_fp",
                  "template_head", "reasoning_marker")


def recording_config(upstream, directory: Path, **recording) -> dict:
    return base_config(upstream.base_url, detection={"enabled": False},
                       recording={"enabled": True, "directory": str(directory), **recording})


def traffic_files(directory: Path) -> list[Path]:
    """The finished files, in the order their worker wrote them (pid, then sequence)."""
    files = [path for path in Path(directory).glob("traffic-*") if not path.name.endswith(".part")]
    return sorted(files, key=lambda path: tuple(int(n) for n in FILE_NAME.match(path.name).groups()[:2]))


def recorded(directory: Path) -> list:
    """Every record, each file read with the strict reader; a clean stop leaves no open file."""
    assert not list(Path(directory).glob("*.part")), "a stopped gateway left a file unfinished"
    return [record for path in traffic_files(directory) for record in read_traffic(path)]


def file_bytes(directory: Path) -> bytes:
    return b"".join(
        gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
        for data in (path.read_bytes() for path in Path(directory).iterdir())
    )


def metric(gateway, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in gateway.metrics().splitlines() if line.startswith(name))


def client_for(gateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url, api_key=key, max_retries=0, timeout=15)


def test_answered_refused_and_streamed_requests_are_recorded_in_the_traffic_format(gateway_factory, upstream, tmp_path):
    limited = "sk-rec-limited"
    config = recording_config(upstream, tmp_path, bodies="full", gzip=False)
    config["limits"]["keys"] = {key_id(limited): {"requests": {"limit": 1, "window": "1m"}}}
    gateway = gateway_factory(config)
    messages = [{"role": "user", "content": "Name three rivers."}]
    before = time.time()
    with client_for(gateway, "sk-rec-plain") as client:
        client.chat.completions.create(model="sim", messages=messages, max_tokens=5)
    with client_for(gateway, "sk-rec-stream") as client:
        chunks = list(client.chat.completions.create(model="sim", messages=messages, max_tokens=5, stream=True))
    with client_for(gateway, limited) as client:
        client.chat.completions.create(model="sim", messages=messages, max_tokens=5)
        with pytest.raises(openai.RateLimitError):
            client.chat.completions.create(model="sim", messages=messages, max_tokens=5)
    after = time.time()
    gateway.stop()

    records = recorded(tmp_path)
    assert [(r.key_id, r.status) for r in records] == [
        (key_id("sk-rec-plain"), 200), (key_id("sk-rec-stream"), 200), (key_id(limited), 200), (key_id(limited), 429)]
    plain, streamed, _, refused = records
    assert all(before <= r.ts <= after and r.ip == "127.0.0.1" and r.method == "POST" for r in records)
    assert all(r.path == "/v1/chat/completions" and r.latency_ms >= 0 for r in records)
    assert plain.body == {"model": "sim", "messages": messages, "max_tokens": 5}
    assert plain.usage["completion_tokens"] == 5
    # The stream's body is the client's, without the usage option the gateway added upstream.
    assert streamed.body == {"model": "sim", "messages": messages, "max_tokens": 5, "stream": True}
    assert streamed.usage["completion_tokens"] > 0 and len(chunks) > 1
    assert refused.usage is None
    assert plain.headers["user-agent"].startswith("OpenAI/Python") and plain.headers["x-stainless-lang"] == "python"
    assert plain.headers["authorization"] == "", "header names are kept in order, credential values never"


@pytest.mark.parametrize("bodies", ["full", "features", "none"])
def test_the_body_mode_decides_what_is_kept_and_no_mode_keeps_the_raw_key(bodies, gateway_factory, upstream, tmp_path):
    gateway = gateway_factory(recording_config(upstream, tmp_path, bodies=bodies))
    body = {
        "model": "sim", "max_tokens": 7, "logprobs": True, "top_logprobs": 5, "temperature": 0.2,
        "messages": [{"role": "system", "content": "Answer like a harbour pilot."}, {"role": "user", "content": PROMPT}],
        "tools": [{"type": "function", "function": {"name": "find_quillport_chart", "parameters": {"type": "object"}}}],
    }
    response = httpx.post(f"{gateway.base_url}/chat/completions", json=body, timeout=10, headers={
        "authorization": f"Bearer {RAW_KEY}", "user-agent": "probe/2.0", "cookie": "session=SECRETCOOKIE"})
    assert response.status_code == 200
    gateway.stop()

    stored = file_bytes(tmp_path)
    for secret in (RAW_KEY, "SECRETKEY", "SECRETCOOKIE"):
        assert secret.encode() not in stored
    [record] = recorded(tmp_path)
    assert record.key_id == key_id(RAW_KEY) and record.headers["user-agent"] == "probe/2.0"
    if bodies == "full":
        assert record.body == body and record.features is None
        return
    for text in ("Quillport", "harbour pilot", "find_quillport_chart"):
        assert text.encode() not in stored
    if bodies == "none":
        assert record.body is None and record.features is None
        return
    assert record.body == {"model": "sim", "max_tokens": 7, "logprobs": True, "top_logprobs": 5, "temperature": 0.2,
                           "tools": [{"type": "function"}]}
    live = request_features(ts=0, key_id="", path=record.path, body=body, headers=None, client_ip=None, status=200,
                            latency_ms=0, usage=record.usage, salt=b"")
    assert record.features == {name: getattr(live, name) for name in TEXT_FEATURES}
    assert record.features["prompt_chars"] == len("Answer like a harbour pilot.") + len(PROMPT)


def test_score_and_train_read_a_features_recording_as_they_read_a_full_one(gateway_factory, upstream, tmp_path):
    full_dir, features_dir = tmp_path / "full", tmp_path / "features"
    full = gateway_factory(recording_config(upstream, full_dir, bodies="full"))
    features = gateway_factory(recording_config(upstream, features_dir, bodies="features"))
    traffic = {"sk-rec-harvester": [harvest_request(i) for i in range(40)]}
    traffic.update({f"sk-rec-chat-{k}": [chat_request(i + 7 * k) for i in range(60)] for k in range(5)})

    async def both_gateways():  # keys in parallel, each key's requests in order
        await asyncio.gather(*(send(gateway.base_url, raw, bodies, concurrency=1)
                               for gateway in (full, features) for raw, bodies in traffic.items()))

    asyncio.run(both_gateways())
    full.stop()
    features.stop()

    def per_key(directory):
        by_key = {}
        for record in recorded(directory):
            features_seen = replace(record_features(record, TEST_SECRET.encode()), ts=0.0, latency_ms=0.0)
            by_key.setdefault(record.key_id, []).append(features_seen)
        return by_key

    assert per_key(features_dir) == per_key(full_dir), "detection sees the same requests in both recordings"
    assert all(r.body and "messages" not in r.body for r in recorded(features_dir))
    [features_file] = traffic_files(features_dir)
    [full_file] = traffic_files(full_dir)
    report = tmp_path / "report.json"
    subprocess.run([sys.executable, "-m", "service.cli", "score", str(features_file), "--report", str(report),
                    "--config", str(features.config_path)], check=True, capture_output=True, timeout=120)
    flagged = {flag["key_id"] for flag in json.loads(report.read_text())["flags"]}
    pipeline = build_pipeline(load_settings(features.config_path))
    full_report = score_records(read_traffic(full_file), TEST_SECRET.encode(), pipeline)
    assert key_id("sk-rec-harvester") in flagged
    assert flagged == {flag["key_id"] for flag in full_report.flags()}
    trained = [train_forest(read_traffic(path), TEST_SECRET.encode(), target_fpr=0.01, seed=0, source=path.name)
               for path in (features_file, full_file)]
    assert trained[0].card["training_rows"] == trained[1].card["training_rows"] > 0


AGENT_TOOLS = [{"type": "function", "function": {"name": name, "parameters": {"type": "object"}}}
               for name in ("calculator", "search_docs")]
SHAPED_REQUESTS = [
    {  # an agent's second step: tools offered, the assistant's call and the tool's result resent
        "model": "sim", "max_tokens": 256, "tools": AGENT_TOOLS, "messages": [
            {"role": "system", "content": "You are a helpful assistant with tools."},
            {"role": "user", "content": "What is 17 times 23, and where does the gateway keep its keys?"},
            {"role": "assistant", "content": "Let me compute that first.", "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "calculator", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "391"},
        ]},
    {  # a grading prompt
        "model": "sim", "temperature": 0, "messages": [
            {"role": "system", "content": "You are an impartial judge. Rate the response on a scale of 1 to 10."},
            {"role": "user", "content": "Question: Name three rivers of Europe.\nResponse: The Danube, the Rhine "
                                        "and the Loire.\nGive your rating as a single number."},
        ]},
    {  # a rewrite prompt, multi-turn: the earlier exchange is resent as history
        "model": "sim", "max_tokens": 1024, "messages": [
            {"role": "user", "content": "Rewrite the following instruction to make it more complex:\n"
                                        "List three fruits that are red in colour."},
            {"role": "assistant", "content": "List three fruits that are red, and for each name a dish it is in."},
            {"role": "user", "content": "Rewrite the following instruction to make it more complex:\n"
                                        "Explain photosynthesis to a child in simple words."},
        ]},
]


def test_a_features_line_gives_the_request_features_of_its_full_line(tmp_path):
    """Tools and a tool result, a grading prompt, a rewrite prompt, multi-turn: every text
    feature detection reads survives `bodies: features`, so offline scoring sees no difference."""
    headers = [(b"user-agent", b"OpenAI/Python 1.54.4"), (b"authorization", b"Bearer sk-x")]
    lines = {bodies: tmp_path / f"{bodies}.jsonl" for bodies in ("full", "features")}
    for bodies, path in lines.items():
        with path.open("wb") as handle:
            for seq, body in enumerate(SHAPED_REQUESTS):
                finished = Finished(ts=1_700_000_000.0 + seq, seq=seq, key_id=key_id("sk-rec-shape"), ip="127.0.0.1",
                                    method="POST", path="/v1/chat/completions", headers=headers, request=body,
                                    strip_usage=False, status=200, latency_ms=12.5, usage=(40 + seq, 9), size=0)
                handle.write(encode_line(traffic_record(finished, bodies, HeaderNames.of(["user-agent"]))))
    salt = TEST_SECRET.encode()
    full = [record_features(record, salt) for record in read_traffic(lines["full"])]
    stripped = list(read_traffic(lines["features"]))
    assert all("messages" not in record.body for record in stripped)
    assert [record_features(record, salt) for record in stripped] == full
    agent, judge, rewrite = full
    assert (agent.tool_results, agent.toolset != "", agent.assistant_hash != "") == (1, True, True)
    assert judge.judgement_marker and not judge.rewrite_marker and judge.segments.count(",") == 2
    assert rewrite.rewrite_marker and rewrite.previous_user_hash and rewrite.assistant_hash
    # The same line as an older recording wrote it (no shape features) reads, and loses them.
    older = replace(stripped[0], features={k: v for k, v in stripped[0].features.items() if k in EIGHT_FEATURES})
    assert record_features(older, salt).tool_results == 0 != agent.tool_results


def test_lines_stay_in_ts_order_when_a_slow_stream_finishes_after_later_requests(gateway_factory, upstream, tmp_path):
    gateway = gateway_factory(recording_config(upstream, tmp_path, bodies="none", gzip=False))
    slow_body = {"model": "sim", "messages": [{"role": "user", "content": "Take your time."}], "stream": True}

    async def traffic():
        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=15,
                                     headers={"authorization": "Bearer sk-rec-quick"}) as client:
            slow = asyncio.create_task(client.post("/chat/completions", json=slow_body, headers={
                "authorization": "Bearer sk-rec-slow", "x-mock-latency-ms": "2500"}))
            while metric(gateway, "distillguard_requests_in_flight") < 1:
                await asyncio.sleep(0.02)
            quick = 0
            while not slow.done():  # requests that arrive after the slow one and finish before it
                assert (await client.post("/chat/completions", json=chat_request(quick))).status_code == 200
                quick += 1
                await asyncio.sleep(0.05)
            assert (await slow).status_code == 200
            return quick

    quick = asyncio.run(traffic())
    gateway.stop()
    [path] = traffic_files(tmp_path)
    records = list(read_traffic(path))
    assert len(records) == quick + 1
    assert records[0].key_id == key_id("sk-rec-slow") and records[0].latency_ms >= 2500
    assert [r.ts for r in records] == sorted(r.ts for r in records)
    assert records[-1].ts - records[0].ts > 1.0, "written in finishing order, the file would be out of order"


def test_files_rotate_by_size_and_each_is_a_valid_traffic_file(gateway_factory, upstream, tmp_path):
    gateway = gateway_factory(recording_config(upstream, tmp_path, bodies="full", gzip=False, max_file_bytes=2048))
    assert asyncio.run(send(gateway.base_url, "sk-rec-rotate", [chat_request(i) for i in range(30)])) == [200] * 30
    gateway.stop()
    files = traffic_files(tmp_path)
    assert len(files) >= 3
    assert [int(FILE_NAME.match(path.name).group(2)) for path in files] == list(range(1, len(files) + 1))
    longest_line = max(len(line) for path in files for line in path.read_bytes().splitlines(keepends=True))
    assert all(path.stat().st_size < 2048 + longest_line for path in files)
    assert len(recorded(tmp_path)) == 30


def test_keep_files_deletes_the_oldest_files(gateway_factory, upstream, tmp_path):
    gateway = gateway_factory(
        recording_config(upstream, tmp_path, bodies="full", gzip=False, max_file_bytes=2048, keep_files=2))
    assert asyncio.run(send(gateway.base_url, "sk-rec-keep", [chat_request(i) for i in range(30)])) == [200] * 30
    gateway.stop()
    files = traffic_files(tmp_path)
    sequences = [int(FILE_NAME.match(path.name).group(2)) for path in files]
    assert len(files) == 2 and sequences[0] > 1, "only the two newest files are kept"
    assert sequences[1] == sequences[0] + 1
    assert 0 < len(recorded(tmp_path)) < 30


def test_each_worker_writes_its_own_files(gateway_factory, upstream, redis_server, tmp_path):
    gateway = gateway_factory(recording_config(upstream, tmp_path, bodies="features"), workers=2,
                              redis_url=redis_server.url)
    sent = 0

    def both_workers_recorded() -> bool:
        nonlocal sent
        for i in range(20):  # a new connection each, so the kernel spreads them over the workers
            assert httpx.post(f"{gateway.base_url}/chat/completions", json=chat_request(i), timeout=10,
                              headers={"authorization": "Bearer sk-rec-workers"}).status_code == 200
        sent += 20
        return len({FILE_NAME.match(p.name.removesuffix(".part")).group(1) for p in tmp_path.iterdir()}) >= 2

    wait_until(both_workers_recorded, timeout=30, interval=0.5, what="files from both workers")
    gateway.stop()
    records = recorded(tmp_path)  # each file valid on its own: the workers' lines never interleave
    assert len(records) == sent
    assert len({FILE_NAME.match(path.name).group(1) for path in traffic_files(tmp_path)}) == 2


def test_an_unwritable_directory_costs_records_never_requests_and_recording_resumes(gateway_factory, upstream, tmp_path):
    directory = tmp_path / "recordings"
    directory.write_text("a file where the directory should be")
    gateway = gateway_factory(recording_config(upstream, directory, gzip=False))
    for i in range(3):
        response = httpx.post(f"{gateway.base_url}/chat/completions", json=chat_request(i), timeout=10,
                              headers={"authorization": "Bearer sk-rec-unwritable"})
        assert response.status_code == 200
    wait_until(lambda: metric(gateway, "distillguard_recording_errors_total") >= 1, what="error metric")
    wait_until(lambda: metric(gateway, "distillguard_recording_dropped_total") == 3, what="3 records dropped")
    assert "recording: requests not recorded" in gateway.log()

    directory.unlink()
    response = httpx.post(f"{gateway.base_url}/chat/completions", json=chat_request(3), timeout=10,
                          headers={"authorization": "Bearer sk-rec-unwritable"})
    assert response.status_code == 200
    wait_until(lambda: metric(gateway, "distillguard_recording_records_total") == 1, what="recording resumed")
    gateway.stop()
    assert len(recorded(directory)) == 1


def test_a_write_that_fails_mid_file_drops_its_chunk_and_leaves_every_file_readable(
    gateway_factory, upstream, tmp_path
):
    gateway = gateway_factory(recording_config(upstream, tmp_path, bodies="full", gzip=False))
    # A file-size limit on the gateway process: writes past 40 KiB fail (EFBIG), as on a full disk.
    resource.prlimit(gateway.proc.pid, resource.RLIMIT_FSIZE, (40 * 1024, resource.RLIM_INFINITY))
    padding = "lorem ipsum dolor sit amet " * 300  # about 8 KB a request, 24 KB a burst
    sent = 0
    for burst in range(4):
        bodies = [{"model": "sim", "max_tokens": 3, "messages": [{"role": "user", "content": f"{burst}-{i} {padding}"}]}
                  for i in range(3)]
        assert asyncio.run(send(gateway.base_url, "sk-rec-full-disk", bodies)) == [200] * 3
        sent += 3
        wait_until(lambda: metric(gateway, "distillguard_recording_records_total")
                   + metric(gateway, "distillguard_recording_dropped_total") == sent, what="burst written or dropped")
    written = metric(gateway, "distillguard_recording_records_total")
    assert metric(gateway, "distillguard_recording_errors_total") >= 1
    assert metric(gateway, 'distillguard_recording_dropped_total{reason="write_error"}') == sent - written > 0
    assert written > 0
    gateway.stop()
    assert len(recorded(tmp_path)) == written, "no file ends in a partial line"


def test_the_reader_takes_exactly_the_eight_text_features_each_of_its_type():
    features = {"prompt_chars": 51, "prompt_tokens": 13, "message_count": 2, "system_hash": "",
                "user_hash": "0123456789abcdef", "template_fp": 2**64 - 1, "template_head": 7, "reasoning_marker": False}
    line = {"ts": 1.0, "key_id": "0123456789abcdef", "ip": "192.0.2.1", "method": "POST",
            "path": "/v1/chat/completions", "body": {"model": "sim"}, "features": features}
    [record] = read_traffic(io.StringIO(json.dumps(line)))
    assert record.features == features
    missing = {k: v for k, v in features.items() if k != "prompt_tokens"}
    for bad, problem in ((missing, "missing 'prompt_tokens'"), ({**features, "prompt": "hi"}, "unknown feature 'prompt'"),
                         ({**features, "template_fp": 2**64}, "'template_fp' must be"),
                         ({**features, "user_hash": "Hi"}, "'user_hash' must be"),
                         ({**features, "reasoning_marker": 1}, "'reasoning_marker' must be"), ([1], "must be an object")):
        with pytest.raises(TrafficFormatError, match=re.escape(problem)) as caught:
            list(read_traffic(io.StringIO(json.dumps({**line, "features": bad}))))
        assert caught.value.field == "features"


def _exchange(i: int) -> Exchange:
    return Exchange("POST", "/v1/chat/completions", "/chat/completions", "/v1/chat/completions", "0123456789abcdef",
                    "127.0.0.1", [(b"user-agent", b"t")], b"{}", chat_request(i), 0.0, received_at=1.0 + i,
                    status=200, usage=Usage(3, 4), finished=0.01)


def test_a_full_queue_drops_the_newest_records_and_counts_them(tmp_path):
    def dropped() -> float:
        return REGISTRY.get_sample_value("distillguard_recording_dropped_total", {"reason": "queue_full"}) or 0.0

    recorder = Recorder(RecordingConfig(enabled=True, directory=str(tmp_path), queue_size=5))  # never started
    before = dropped()
    for i in range(8):
        recorder.listen(_exchange(i))
    assert dropped() - before == 3
    recorder._release(everything=True)
    assert [finished.ts for finished in recorder.files.inbox.get_nowait()] == [1.0, 2.0, 3.0, 4.0, 5.0]


def test_recording_settings_come_from_the_environment_and_never_name_a_credential_header(monkeypatch):
    monkeypatch.setenv("DISTILLGUARD_RECORDING__ENABLED", "true")
    monkeypatch.setenv("DISTILLGUARD_RECORDING__BODIES", "none")
    monkeypatch.setenv("DISTILLGUARD_RECORDING__MAX_FILE_BYTES", "4096")
    recording = load_settings().recording
    assert (recording.enabled, recording.bodies, recording.max_file_bytes) == (True, "none", 4096)
    for bad in ({"bodies": "prompts"}, {"headers": ["user-agent", "Authorization"]}, {"headers": ["x-*"]},
                {"max_file_bytes": 10}):
        with pytest.raises(ConfigError, match="recording"):
            load_settings(recording=bad)
