"""`distillguard replay`: a traffic file's requests reach a real gateway in each key's file
order, on the file's schedule divided by the speed, never more at once than the
concurrency; refusals, Ctrl-C and the labelled detection report come back as specified,
and memory does not grow with the file."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
import tracemalloc
from collections import defaultdict
from pathlib import Path

import redis
from aiohttp import web

from service.offline.scoring import ScoreReport
from service.replay.replayer import SYNTHETIC_KEY_PREFIX, ReplayOptions, replay_file
from service.store import decision_key
from tests.conftest import TEST_SECRET, base_config
from tests.support.processes import LOOPBACK, free_port, wait_until
from tests.support.traffic import chat_request, harvest_request, key_id
from traffic.format import TrafficWriter

ROOT = Path(__file__).resolve().parents[1]
ADMIN_TOKEN = "replay-admin-token"
COMPLETION = {"id": "chatcmpl-rec", "object": "chat.completion", "created": 1700000000, "model": "sim",
              "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
              "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}}


class RecordingUpstream:
    """An upstream that notes, per API key, which requests arrived in which order and when,
    and the most requests it ever had at once. Runs its own event loop in a thread."""

    def __init__(self, delay_s=lambda seq: 0.0) -> None:
        self.delay_s = delay_s
        self.order: dict[str, list[int]] = defaultdict(list)
        self.arrivals: dict[str, list[float]] = defaultdict(list)
        self.in_flight = self.most_in_flight = 0
        self.port = free_port()
        started = threading.Event()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._serve, args=(started,), daemon=True)
        self.thread.start()
        started.wait(10)

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}/v1"

    @property
    def received(self) -> int:
        return sum(len(seqs) for seqs in self.order.values())

    def _serve(self, started: threading.Event) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._answer)
        self.runner = web.AppRunner(app, access_log=None)
        self.loop.run_until_complete(self.runner.setup())
        self.loop.run_until_complete(web.TCPSite(self.runner, LOOPBACK, self.port).start())
        started.set()
        self.loop.run_forever()

    async def _answer(self, request: web.Request) -> web.Response:
        seq = int((await request.json())["messages"][0]["content"].rsplit("#", 1)[1])
        key = request.headers["authorization"].removeprefix("Bearer ")
        self.order[key].append(seq)
        self.arrivals[key].append(time.monotonic())
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay_s(seq))
        finally:
            self.in_flight -= 1
        return web.json_response(COMPLETION)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def line(seq: int, ts: float, key: str | None = None, key_id_: str | None = None, **extra) -> dict:
    """One request of a traffic file; its body carries `#seq` so the upstream can tell it apart."""
    record = {"ts": 1.7e9 + ts, "ip": "192.0.2.10", "method": "POST", "path": "/v1/chat/completions",
              "headers": {"user-agent": "replay-test/1.0"},
              "body": {"model": "sim", "messages": [{"role": "user", "content": f"request #{seq}"}]}, **extra}
    record.update({"key": key} if key else {"key_id": key_id_})
    return record


def write(path: Path, records) -> Path:
    with TrafficWriter(path) as writer:
        writer.write_all(records)
    return path


def replay(path: Path, target: str, **options) -> dict:
    options.setdefault("progress", False)
    options.setdefault("key_secret", TEST_SECRET.encode())
    report, _ = asyncio.run(replay_file(str(path), ReplayOptions(target=target, **options), install_signals=False))
    return report


def replay_command(path: Path, target: str, *args: str, **popen) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISTILLGUARD_")}
    env.update({"DISTILLGUARD_HOME": str(path.parent), "DISTILLGUARD_KEY_SECRET": TEST_SECRET})
    return subprocess.Popen([sys.executable, "-m", "service.cli", "replay", str(path), "--target", target, *args],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def test_every_request_reaches_the_gateway_in_its_keys_file_order(gateway_factory, tmp_path):
    upstream = RecordingUpstream(delay_s=lambda seq: (seq * 7 % 5) / 1000)  # uneven, so requests could overtake
    try:
        gateway = gateway_factory(base_config(upstream.base_url))
        keys = [f"sk-order-{n}" for n in range(6)]
        records = [line(i, i * 0.01, keys[i % 6]) for i in range(180)]
        report = replay(write(tmp_path / "order.jsonl", records), gateway.url, speed=None, concurrency=8)
    finally:
        upstream.stop()
    assert report["requests_sent"] == 180 and report["statuses"] == {"200": 180}
    for n, key in enumerate(keys):
        assert upstream.order[key] == list(range(n, 180, 6))
    assert {row["key_id"]: row["sent"] for row in report["keys"]} == {key_id(key): 30 for key in keys}


def test_no_more_requests_are_in_flight_than_the_concurrency(gateway_factory, tmp_path):
    upstream = RecordingUpstream(delay_s=lambda seq: 0.03)
    try:
        gateway = gateway_factory(base_config(upstream.base_url))
        records = [line(i, i * 0.001, f"sk-parallel-{i % 12}") for i in range(60)]
        report = replay(write(tmp_path / "parallel.jsonl", records), gateway.url, speed=None, concurrency=3)
    finally:
        upstream.stop()
    assert report["requests_sent"] == upstream.received == 60
    assert 2 <= upstream.most_in_flight <= 3


def test_recorded_gaps_are_kept_divided_by_the_speed(gateway_factory, tmp_path):
    upstream = RecordingUpstream()
    try:
        gateway = gateway_factory(base_config(upstream.base_url))
        records = sorted([line(i, i * 1.0, "sk-gaps-a") for i in range(5)]
                         + [line(10 + i, 0.5 + i * 1.0, "sk-gaps-b") for i in range(4)], key=lambda r: r["ts"])
        report = replay(write(tmp_path / "gaps.jsonl", records), gateway.url, speed=4.0)
    finally:
        upstream.stop()
    assert report["requests_sent"] == 9 and report["duration_s"] >= 4 / 4 - 0.05
    first = upstream.arrivals["sk-gaps-a"][0]
    offsets = {seq: at - first for key in ("sk-gaps-a", "sk-gaps-b")
               for seq, at in zip(upstream.order[key], upstream.arrivals[key])}
    for record in records:  # never before its recorded time / 4 (late is allowed, early is not); the
        seq = int(record["body"]["messages"][0]["content"].rsplit("#", 1)[1])  # slack: the first request's trip
        assert offsets[seq] >= (record["ts"] - 1.7e9) / 4 - 0.25, (seq, offsets[seq])


def test_recorded_key_ids_are_sent_as_stable_synthetic_keys_named_as_the_gateway_names_them(
    gateway_factory, tmp_path
):
    upstream = RecordingUpstream()
    try:
        gateway = gateway_factory(base_config(upstream.base_url))
        recorded = ["0123456789abcdef", "fedcba9876543210"]
        records = [line(i, i * 0.01, key_id_=recorded[i % 2]) for i in range(10)]
        report = replay(write(tmp_path / "recorded.jsonl", records), gateway.url, speed=None)
    finally:
        upstream.stop()
    assert sorted(upstream.order) == [SYNTHETIC_KEY_PREFIX + k for k in recorded]
    assert {row["key_id"]: row["gateway_key_id"] for row in report["keys"]} == {
        k: key_id(SYNTHETIC_KEY_PREFIX + k) for k in recorded
    }


def test_shards_split_a_file_into_disjoint_sets_of_keys_that_cover_it(gateway_factory, tmp_path):
    upstream = RecordingUpstream()
    try:
        gateway = gateway_factory(base_config(upstream.base_url))
        path = write(tmp_path / "shared.jsonl", [line(i, i * 0.01, f"sk-shard-{i % 10}") for i in range(60)])
        reports = [replay(path, gateway.url, speed=None, shard=(index, 3)) for index in range(3)]
    finally:
        upstream.stop()
    key_sets = [{row["key_id"] for row in report["keys"]} for report in reports]
    assert sum(len(keys) for keys in key_sets) == len(set().union(*key_sets)) == 10
    assert all(key_sets) and sum(report["requests_sent"] for report in reports) == upstream.received == 60
    assert all(upstream.order[f"sk-shard-{n}"] == list(range(n, 60, 10)) for n in range(10))


def test_the_first_429_and_403_of_each_key_are_reported(gateway_factory, upstream, own_redis, tmp_path):
    config = base_config(upstream.base_url)
    config["limits"]["tiers"]["default"] = {"requests": {"limit": 5, "window": "1m"}}
    gateway = gateway_factory(config, redis_url=own_redis.url)
    redis.Redis.from_url(own_redis.url).hset(decision_key(key_id("sk-refused-blocked")),
                                             mapping={"action": "block", "reason": "test", "set_by": "test"})
    records = ([line(i, i * 0.01, "sk-refused-busy") for i in range(8)]
               + [line(20 + i, 1 + i * 0.01, "sk-refused-blocked") for i in range(3)]
               + [line(30 + i, 2 + i * 0.01, "sk-refused-calm") for i in range(2)])
    report = replay(write(tmp_path / "refused.jsonl", records), gateway.url, speed=None)
    assert report["statuses"] == {"200": 7, "403": 3, "429": 3}
    rows = {row["key_id"]: row for row in report["keys"]}
    busy, blocked, calm = (rows[key_id(f"sk-refused-{name}")] for name in ("busy", "blocked", "calm"))
    assert busy["first_429"]["request"] == 6 and busy["first_429"]["ts"] == 1.7e9 + 0.05
    assert busy["first_403"] is None
    assert blocked["first_403"]["request"] == 1 and blocked["first_429"] is None
    assert calm["first_429"] is None and calm["first_403"] is None and calm["sent"] == 2


def test_ctrl_c_stops_cleanly_with_a_partial_report_and_exit_status_130(gateway_factory, tmp_path):
    upstream = RecordingUpstream(delay_s=lambda seq: 1.0)
    try:
        gateway = gateway_factory(base_config(upstream.base_url))
        records = sorted((line(i * 3 + k, i * 2.0, f"sk-stop-{k}") for i in range(30) for k in range(3)),
                         key=lambda r: r["ts"])
        path = write(tmp_path / "long.jsonl", records)
        out = tmp_path / "partial.json"
        command = replay_command(path, gateway.url, "--speed", "1", "--report", str(out))
        wait_until(lambda: upstream.received >= 3, timeout=20, what="the first requests in flight")
        command.send_signal(signal.SIGINT)
        stdout, stderr = command.communicate(timeout=20)
    finally:
        upstream.stop()
    assert command.returncode == 130, stderr
    assert "interrupted: partial report" in stdout
    report = json.loads(out.read_text())
    assert report["interrupted"] is True
    assert 3 <= report["requests_sent"] < len(records)
    assert report["statuses"] == {"200": report["requests_sent"]}  # requests in flight were let finish


def test_a_labelled_replay_reports_detection_in_the_shape_of_score(gateway_factory, upstream, tmp_path):
    config = base_config(upstream.base_url, admin_token=ADMIN_TOKEN)
    gateway = gateway_factory(config)  # the embedded store runs the scorer in the gateway
    harvester = "a1b2c3d4e5f60718"  # a recorded key: only its key_id is in the file
    records = []
    for i in range(40):
        records.append({**line(i, i * 0.1, key_id_=harvester, label="attack", scenario="logprob_harvester"),
                        "body": harvest_request(i)})
        records.append({**line(i, i * 0.1 + 0.05, "sk-labelled-chat", label="benign", scenario="support_chat"),
                        "body": chat_request(i)})
    out = tmp_path / "labelled.json"
    command = replay_command(write(tmp_path / "labelled.jsonl", records), gateway.url, "--speed", "max",
                             "--admin-token", ADMIN_TOKEN, "--settle", "1s", "--report", str(out))
    stdout, stderr = command.communicate(timeout=90)
    assert command.returncode == 0, stderr
    report = json.loads(out.read_text())
    summary = report["detection"]["summary"]
    assert summary.keys() == ScoreReport().summary().keys()
    assert (summary["precision"], summary["recall"], summary["false_positive_rate"]) == (1.0, 1.0, 0.0)
    assert summary["scenarios"]["logprob_harvester"]["recall"] == 1.0
    assert summary["scenarios"]["support_chat"]["false_positive_rate"] == 0.0
    (attack,) = summary["attack_keys"]
    assert attack["key_id"] == harvester and 0 < attack["ttd_requests"] <= 40 and attack["ttd_seconds"] >= 0
    (flag,) = report["detection"]["flags"]
    assert flag["gateway_key_id"] == key_id(SYNTHETIC_KEY_PREFIX + harvester)
    assert report["detection"]["warnings"] == []
    assert "precision 1.0, recall 1.0, false-positive rate 0.0" in stdout


def test_memory_stays_flat_however_long_the_file(upstream, tmp_path):
    """Against the simulator directly (a cheap target): the traced peak of a file four times
    longer is about the same, because reading holds back at `read_ahead` records."""

    def peak(lines: int, traced: bool = True) -> tuple[int, dict]:
        path = write(tmp_path / f"flat-{lines}.jsonl", (line(i, i * 0.001, f"sk-flat-{i % 20}") for i in range(lines)))
        if traced:
            tracemalloc.start()
        try:
            report = replay(path, upstream.base_url, speed=None, concurrency=16, read_ahead=100)
            return tracemalloc.get_traced_memory()[1], report
        finally:
            tracemalloc.stop()

    peak(200, traced=False)  # first-use costs (lazy imports, caches) out of the comparison
    short_peak, short = peak(1_000)
    long_peak, long = peak(4_000)
    assert short["requests_sent"] == 1_000 and long["requests_sent"] == 4_000
    assert long["most_waiting"] <= 100
    assert long_peak < short_peak * 1.3, (short_peak, long_peak)
