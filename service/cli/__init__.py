"""The `distillguard` command: one sub-command per job; the bodies live beside this file
(processes: serve, scorer, demo, mock-upstream; offline: train, score, evaluate, simulate,
replay; review: key-id, keys, admin, audit, labels)."""

from __future__ import annotations

import argparse

from ..offline.generalisation_cli import add_arguments as add_generalisation_arguments
from ..offline.network_cli import add_arguments as add_network_arguments
from .offline import cmd_evaluate, cmd_replay, cmd_score, cmd_simulate, cmd_train
from .processes import cmd_demo, cmd_mock_upstream, cmd_scorer, cmd_serve
from .review import cmd_admin_hash_token, cmd_audit, cmd_key_id, cmd_keys, cmd_labels


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="distillguard", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--config", help="YAML config file (default: $DISTILLGUARD_CONFIG)")
        return p

    def shared_state(p: argparse.ArgumentParser, *, leaf: bool = True) -> argparse.ArgumentParser:
        """--config and --redis-url for a command on the gateway's Redis, before or after its
        sub-command (a sub-command's default never hides the value given before it)."""
        default = argparse.SUPPRESS if leaf else None
        p.add_argument("--config", default=default, help="YAML config file (default: $DISTILLGUARD_CONFIG)")
        p.add_argument("--redis-url", default=default,
                       help="the gateway's Redis (default: redis_url of the config, $DISTILLGUARD_REDIS_URL)")
        return p

    serve = with_config(commands.add_parser("serve", help="run the gateway"))
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int)
    serve.add_argument("--redis-url", help="redis://, rediss://, unix:// (cluster detected); none = embedded")
    serve.add_argument("--upstream", help="upstream base URL that /v1 maps to")
    serve.set_defaults(func=cmd_serve)

    scorer = with_config(commands.add_parser("scorer", help="run a detection worker on the event streams"))
    scorer.add_argument("--redis-url", help="the gateway's Redis (cluster detected)")
    scorer.add_argument("--name", help="unique among scorers (default: host-pid)")
    scorer.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on this port (default: off)")
    scorer.set_defaults(func=cmd_scorer)

    demo = with_config(commands.add_parser("demo", help="gateway + simulator, embedded store, one process"))
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8000)
    demo.add_argument("--upstream-port", type=int, default=8001)
    demo.set_defaults(func=cmd_demo)

    mock = commands.add_parser("mock-upstream", help="run the OpenAI-compatible upstream simulator")
    mock.add_argument("--host", default="127.0.0.1")
    mock.add_argument("--port", type=int, default=8001)
    mock.add_argument("--seed", type=int, default=0)
    mock.add_argument("--latency-ms", type=float, default=0.0)
    mock.add_argument("--tokens-per-second", type=float, default=0.0)
    mock.add_argument("--answers", choices=("model", "fixed"), default="model",
                      help="answer like a model (default) or with 16 fixed words (benchmarks, tests)")
    mock.set_defaults(func=cmd_mock_upstream)

    key_id = with_config(commands.add_parser("key-id", help="print the key_id of raw keys (args or stdin)"))
    key_id.add_argument("raw_keys", nargs="*")
    key_id.set_defaults(func=cmd_key_id)

    train = with_config(commands.add_parser("train", help="fit the isolation forest on benign traffic"))
    train.add_argument("--traffic", required=True, help="traffic file (JSON Lines, .gz ok)")
    train.add_argument("--out", default="models/default", help="model path without suffix")
    train.add_argument("--target-fpr", type=float, default=0.001)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--labels", help="reviewers' verdicts (`labels export`): dismissed keys train as honest, "
                                        "confirmed keys calibrate the threshold")
    train.set_defaults(func=cmd_train)

    score = with_config(commands.add_parser("score", help="score a traffic file offline"))
    score.add_argument("file")
    score.add_argument("--report", help="write flags and summary as JSON")
    score.add_argument("--no-linkage", action="store_true",
                       help="skip the cross-key clustering passes (per-key detection only)")
    score.set_defaults(func=cmd_score)

    evaluate = with_config(commands.add_parser(
        "evaluate", help="simulate honest and attack keys, train, score, print the per-scenario table"))
    evaluate.add_argument("--benign", type=int, help="honest keys (default: 2000; 300 with the flags below)")
    evaluate.add_argument("--attacks-per-scenario", type=int, default=10, help="keys of every attack (default: 10)")
    evaluate.add_argument("--hours", type=float, help="simulated hours (default: 24; 6 with the flags below)")
    evaluate.add_argument("--seed", type=int, default=1)
    evaluate.add_argument("--train-share", type=float, default=0.5, help="share of honest keys that train the forest")
    evaluate.add_argument("--target-fpr", type=float, default=0.001, help="the forest's calibration target")
    evaluate.add_argument("--scenario", action="append", default=[], metavar="NAME=N",
                          help="N more keys of one scenario, on top of the mix; repeatable")
    evaluate.add_argument("--param", action="append", default=[], metavar="SCENARIO.NAME=VALUE",
                          help="override a scenario parameter, as `simulate --param` takes it; repeatable")
    evaluate.add_argument("--no-linkage", action="store_true",
                          help="skip the cross-key clustering passes (per-key detection only)")
    evaluate.add_argument("--html", help="also write the self-contained report page here")
    evaluate.add_argument("--json", help="also write every figure as JSON here")
    add_generalisation_arguments(evaluate)
    add_network_arguments(evaluate)
    evaluate.set_defaults(func=cmd_evaluate)

    simulate = commands.add_parser("simulate", help="write labelled simulated traffic")
    from traffic.simulate import add_arguments as add_simulate_arguments

    add_simulate_arguments(simulate)
    simulate.set_defaults(func=cmd_simulate)

    replay = with_config(commands.add_parser("replay", help="send a traffic file's requests to a running gateway"))
    replay.add_argument("file")
    replay.add_argument("--target", required=True, help="the gateway's URL, e.g. http://127.0.0.1:8000")
    replay.add_argument("--speed", default="1", help="divide recorded gaps by this, or 'max' (default: 1)")
    replay.add_argument("--concurrency", type=int, default=64, help="requests in flight at most (default: 64)")
    replay.add_argument("--read-ahead", type=int, default=10_000, help="records read but unanswered, at most")
    replay.add_argument("--timeout", default="120s", help="per request, to the end of its answer")
    replay.add_argument("--report", help="write the report as JSON")
    replay.add_argument("--admin-url", help="read the gateway's flags here (default: --target)")
    replay.add_argument("--admin-token", help="admin token (default: admin_token of the config)")
    replay.add_argument("--settle", default="3s", help="wait until the flags are unchanged this long")
    replay.add_argument("--quiet", action="store_true", help="no progress bar")
    replay.add_argument("--shard", help="I/N: replay only the I-th of N disjoint sets of keys (run N replayers)")
    replay.set_defaults(func=cmd_replay)

    keys = shared_state(commands.add_parser("keys", help="set and read per-key decisions"), leaf=False)
    keys_commands = keys.add_subparsers(dest="keys_command", required=True)
    block = shared_state(keys_commands.add_parser("block", help="block a key (its requests get 403 with the reason)"))
    block.add_argument("key_id")
    block.add_argument("--reason", required=True, help="reason code returned to the client")
    block.add_argument("--ttl", help="e.g. 1h; default: until allowed again")
    block.add_argument("--note")
    throttle = shared_state(keys_commands.add_parser("throttle", help="move a key to a stricter tier"))
    throttle.add_argument("key_id")
    throttle.add_argument("--tier", required=True)
    throttle.add_argument("--reason")
    throttle.add_argument("--ttl")
    throttle.add_argument("--note")
    shared_state(keys_commands.add_parser("allow", help="lift a key's decision")).add_argument("key_id")
    shared_state(keys_commands.add_parser("show", help="print a key's decision")).add_argument("key_id")
    keys.set_defaults(func=cmd_keys)

    admin = commands.add_parser("admin", help="review console administration")
    admin_commands = admin.add_subparsers(dest="admin_command", required=True)
    hash_token = admin_commands.add_parser("hash-token", help="new reviewer token + the hash for admin.reviewers")
    hash_token.add_argument("--token", help="'-': hash a token read from stdin instead of making one")
    hash_token.set_defaults(func=cmd_admin_hash_token)

    audit = shared_state(commands.add_parser("audit", help="the audit trail"), leaf=False)
    audit_commands = audit.add_subparsers(dest="audit_command", required=True)
    export = shared_state(audit_commands.add_parser("export", help="write the audit trail as JSON Lines, oldest first"))
    export.add_argument("--since", help="ISO time (2026-11-01T00:00:00Z) or a duration ago (7d)")
    export.add_argument("--until", help="ISO time or a duration ago")
    export.add_argument("--out", help="file to write (default: stdout)")
    audit.set_defaults(func=cmd_audit)

    labels = shared_state(commands.add_parser("labels", help="reviewers' verdicts, for `train --labels`"), leaf=False)
    labels_export = shared_state(labels.add_subparsers(dest="labels_command", required=True).add_parser(
        "export", help="write every label as JSON Lines (key_id, label, action, reviewer, reason, ts)"))
    labels_export.add_argument("--out", help="file to write (default: stdout)")
    labels.set_defaults(func=cmd_labels)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.func(args)

