"""Derives the small tables the traffic simulator ships in traffic/data/traces/ from the
raw LLM-serving traces in ../shared/data/traces, so simulated keys draw their rates,
burstiness and token lengths from real services without the repository carrying the
traces (about 17 MB) or anyone needing ../shared to simulate.

    python scripts/derive_trace_tables.py [--traces ../shared/data/traces] [--out traffic/data/traces]

Writes, deterministically (same inputs, same bytes):
- servegen_clients.json: one line per ServeGen client (a production API customer of
  Alibaba Bailian): mean rate, active share, hour-of-day and day-by-day volume shapes,
  quantiles of the inter-arrival CV of its 600-s windows, and for clients whose dataset
  file exists, quantiles of its prompt and completion lengths (and reasoning share).
- service_traces.json: whole-service traces without client ids (Azure LLM 2023 conv and
  code, Mooncake conversation) and ServeGen's pooled per-category lengths: length
  quantiles, the prompt/completion rank correlation, and arrival statistics.
See traffic/data/SOURCES.md for origins, licences and what each number means.
"""

from __future__ import annotations

import argparse
import ast
import csv
import gzip
import io
import itertools
import json
import math
import statistics
import tarfile
from collections import defaultdict
from pathlib import Path

WINDOW_S = 600
DATASET_WINDOW_S = 21600
# Probabilities of the pooled length tables: every percentile, plus the far tail.
PROBABILITIES = tuple(round(p / 100, 2) for p in range(100)) + (0.995, 0.999, 1.0)
# Coarser grid for each client's own lengths.
CLIENT_PROBABILITIES = (0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 1.0)
CV_PROBABILITIES = (0.1, 0.25, 0.5, 0.75, 0.9)
SERVEGEN_TRACES = ("language_m-large", "language_m-mid", "language_m-small", "reason_deepseek-r1")
SERVEGEN_DATASETS = ("language_m-small", "reason_deepseek-r1")


def weighted_quantiles(pdf: dict[float, float], probabilities: tuple[float, ...]) -> list[float]:
    """Quantiles of a discrete distribution {value: weight}: the smallest value whose
    cumulative weight reaches each probability."""
    total = sum(pdf.values())
    points = sorted((value, weight / total) for value, weight in pdf.items() if weight > 0)
    result, cumulative, index = [], 0.0, 0
    for probability in probabilities:
        while index < len(points) - 1 and cumulative + points[index][1] < probability - 1e-12:
            cumulative += points[index][1]
            index += 1
        result.append(points[index][0])
    return result


def sample_quantiles(values: list[float], probabilities: tuple[float, ...]) -> list[float]:
    return weighted_quantiles(dict(_counts(values)), probabilities)


def _counts(values: list[float]) -> dict[float, int]:
    counts: dict[float, int] = defaultdict(int)
    for value in values:
        counts[value] += 1
    return counts


def spearman(xs: list[float], ys: list[float]) -> float:
    """Rank correlation (average ranks for ties); numpy-free so the script needs nothing."""
    def ranks(values: list[float]) -> list[float]:
        order = sorted(range(len(values)), key=values.__getitem__)
        result = [0.0] * len(values)
        start = 0
        while start < len(order):
            end = start
            while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
                end += 1
            for position in range(start, end + 1):
                result[order[position]] = (start + end) / 2
            start = end + 1
        return result

    rx, ry = ranks(xs), ranks(ys)
    mx, my = statistics.fmean(rx), statistics.fmean(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    return cov / math.sqrt(sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry))


def arrival_stats(stamps_s: list[float]) -> dict:
    """Rate and burstiness of a whole service: inter-arrival CV over the trace and per 600-s window."""
    stamps = sorted(stamps_s)
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    by_window: dict[int, list[float]] = defaultdict(list)
    for stamp in stamps:
        by_window[int((stamp - stamps[0]) // WINDOW_S)].append(stamp)
    window_cvs = []
    for window in by_window.values():
        window_gaps = [b - a for a, b in itertools.pairwise(window)]
        if len(window_gaps) >= 10 and statistics.fmean(window_gaps) > 0:
            window_cvs.append(statistics.pstdev(window_gaps) / statistics.fmean(window_gaps))
    span = stamps[-1] - stamps[0]
    return {
        "requests": len(stamps), "span_s": round(span, 1), "rate_per_s": _round(len(stamps) / span),
        "interarrival_cv": _round(statistics.pstdev(gaps) / statistics.fmean(gaps)),
        "window_cv_quantiles": [_round(v) for v in sample_quantiles(window_cvs, CV_PROBABILITIES)],
    }


def _round(value: float, digits: int = 4) -> float:
    """Four significant digits: enough for a simulator, short in the JSON."""
    if value == 0 or not math.isfinite(value):
        return 0.0
    return round(value, max(0, digits - 1 - math.floor(math.log10(abs(value)))))


def length_table(prompts: list[int], completions: list[int], stamps: list[float]) -> dict:
    return {
        "prompt_tokens": sample_quantiles(prompts, PROBABILITIES),
        "completion_tokens": sample_quantiles(completions, PROBABILITIES),
        "spearman_rho": _round(spearman(prompts, completions), 3),
        "arrivals": arrival_stats(stamps),
    }


def azure(path: Path) -> dict:
    from datetime import datetime

    prompts, completions, stamps = [], [], []
    with gzip.open(path, "rt", newline="") as handle:
        for row in csv.DictReader(handle):
            prompts.append(int(row["ContextTokens"]))
            completions.append(int(row["GeneratedTokens"]))
            stamp = datetime.strptime(row["TIMESTAMP"][:26], "%Y-%m-%d %H:%M:%S.%f")
            stamps.append(stamp.timestamp())
    return length_table(prompts, completions, stamps)


def mooncake(path: Path) -> dict:
    prompts, completions, stamps = [], [], []
    with gzip.open(path, "rt") as handle:
        for line in handle:
            row = json.loads(line)
            prompts.append(row["input_length"])
            completions.append(row["output_length"])
            stamps.append(row["timestamp"] / 1000.0)
    return length_table(prompts, completions, stamps)


def _tar_members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path, "r:gz") as tar:
        return {member.name: tar.extractfile(member).read() for member in tar.getmembers() if member.isfile()}


def servegen_client(rows: list[list[str]]) -> dict:
    """One client's trace (600-s windows) reduced to its volume shapes and burstiness."""
    rates = [float(row[1]) for row in rows]
    active = [row for row in rows if row[3]]
    mean_rate = statistics.fmean(rates)
    hours, days = [0.0] * 24, [0.0] * max(1, len(rows) * WINDOW_S // 86400)
    for row, rate in zip(rows, rates, strict=True):
        start = int(row[0])
        hours[(start // 3600) % 24] += rate
        days[min(len(days) - 1, start // 86400)] += rate
    total = sum(rates) or 1.0
    return {
        "mean_rate_per_s": _round(mean_rate),
        "active_share": round(len(active) / len(rows), 4),
        "weibull_share": round(sum(row[3] == "Weibull" for row in active) / max(1, len(active)), 3),
        "cv_quantiles": [_round(v, 3) for v in sample_quantiles([float(row[2]) for row in active] or [1.0],
                                                                CV_PROBABILITIES)],
        "hourly_shape": [round(24 * volume / total, 3) for volume in hours],
        "daily_shape": [round(len(days) * volume / total, 3) for volume in days],
    }


def servegen_lengths(dataset: dict, rows: list[list[str]]) -> dict | None:
    """A client's length distributions: its 6-hour PDFs mixed by the requests it sent in each."""
    volume: dict[int, float] = defaultdict(float)
    for row in rows:
        volume[int(row[0]) // DATASET_WINDOW_S * DATASET_WINDOW_S] += float(row[1]) * WINDOW_S
    mixed: dict[str, dict[float, float]] = defaultdict(lambda: defaultdict(float))
    for start, fields in dataset.items():
        weight = volume.get(int(start), 0.0)
        for name, text in fields.items():
            pdf = ast.literal_eval(text)
            if weight <= 0 or not pdf:
                continue
            norm = sum(pdf.values()) or 1.0
            for value, probability in pdf.items():
                mixed[name][value] += weight * probability / norm
    if not mixed.get("input_tokens") or not mixed.get("output_tokens"):
        return None
    lengths = {
        "prompt_tokens": weighted_quantiles(mixed["input_tokens"], CLIENT_PROBABILITIES),
        "completion_tokens": weighted_quantiles(mixed["output_tokens"], CLIENT_PROBABILITIES),
    }
    if mixed.get("reason_ratio"):
        lengths["reason_ratio"] = [round(v, 3) for v in weighted_quantiles(mixed["reason_ratio"], CLIENT_PROBABILITIES)]
    return {"pdfs": mixed, "lengths": lengths}


def servegen(traces: Path) -> tuple[list[dict], dict]:
    clients, pooled = [], {}
    for category in SERVEGEN_TRACES:
        members = _tar_members(traces / "servegen" / f"{category}_trace.tgz")
        datasets = (_tar_members(traces / "servegen" / f"{category}_dataset.tgz")
                    if category in SERVEGEN_DATASETS else {})
        pool: dict[str, dict[float, float]] = defaultdict(lambda: defaultdict(float))
        for name in sorted(members, key=lambda n: int(n.rsplit("chunk-", 1)[1].split("-")[0])):
            chunk = name.rsplit("/", 1)[1].removesuffix("-trace.csv")
            rows = list(csv.reader(io.StringIO(members[name].decode())))
            client = {"id": f"{category}/{chunk}", **servegen_client(rows)}
            dataset = datasets.get(name.replace("-trace.csv", "-dataset.json"))
            if dataset is not None:
                derived = servegen_lengths(json.loads(dataset), rows)
                if derived is not None:
                    client.update(derived["lengths"])
                    for field, pdf in derived["pdfs"].items():  # every client weighs the same in the pool
                        norm = sum(pdf.values())
                        for value, weight in pdf.items():
                            pool[field][value] += weight / norm
            clients.append(client)
        if pool:
            pooled[f"servegen_{category}"] = {
                "prompt_tokens": weighted_quantiles(pool["input_tokens"], PROBABILITIES),
                "completion_tokens": weighted_quantiles(pool["output_tokens"], PROBABILITIES),
                "spearman_rho": None,
                **({"reason_ratio": [round(v, 3) for v in weighted_quantiles(pool["reason_ratio"], PROBABILITIES)]}
                   if "reason_ratio" in pool else {}),
                "clients": sum(1 for c in clients if c["id"].startswith(category) and "prompt_tokens" in c),
            }
    return clients, pooled


def write_json_lines(path: Path, header: dict, list_name: str, items: list[dict]) -> None:
    """Pretty enough to diff: the header indented, then one list item per line."""
    compact = {"separators": (",", ":"), "ensure_ascii": False}
    head = "".join(f"  {json.dumps(name)}: {json.dumps(value, **compact)},\n" for name, value in header.items())
    body = ",\n".join("    " + json.dumps(item, **compact) for item in items)
    path.write_text(f"{{\n{head}  \"{list_name}\": [\n{body}\n  ]\n}}\n")


def main() -> None:
    root = Path(__file__).resolve().parent.parent
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=Path, default=root.parent / "shared" / "data" / "traces")
    parser.add_argument("--out", type=Path, default=root / "traffic" / "data" / "traces")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    clients, pooled = servegen(args.traces)
    write_json_lines(args.out / "servegen_clients.json", {
        "source": "alibaba/ServeGen @ f891d1189eb32b3868dfc443800c4150548c282a, data/<category>/<model>/chunk-*",
        "licence": "Apache-2.0",
        "window_s": WINDOW_S,
        "day_starts_at_local_midnight": True,
        "cv_probabilities": list(CV_PROBABILITIES),
        "length_probabilities": list(CLIENT_PROBABILITIES),
    }, "clients", clients)

    services = {
        "azure_conv": azure(args.traces / "azure_llm_2023" / "AzureLLMInferenceTrace_conv.csv.gz"),
        "azure_code": azure(args.traces / "azure_llm_2023" / "AzureLLMInferenceTrace_code.csv.gz"),
        "mooncake_conversation": mooncake(args.traces / "mooncake_fast25" / "conversation_trace.jsonl.gz"),
        **pooled,
    }
    sources = {
        "azure_conv": "Azure/AzurePublicDataset @ b469a113cedca53ddc3bdea71a143dc4b7d8700c "
                      "data/AzureLLMInferenceTrace_conv.csv (CC-BY 4.0)",
        "azure_code": "Azure/AzurePublicDataset @ b469a113cedca53ddc3bdea71a143dc4b7d8700c "
                      "data/AzureLLMInferenceTrace_code.csv (CC-BY 4.0)",
        "mooncake_conversation": "kvcache-ai/Mooncake @ 3b5a594133958449a1feaf1c9e0fc1b553e34a28 "
                                 "FAST25-release/traces/conversation_trace.jsonl (Apache-2.0)",
        **{name: "alibaba/ServeGen @ f891d1189eb32b3868dfc443800c4150548c282a, per-client dataset PDFs "
                 "pooled with equal client weights (Apache-2.0)" for name in pooled},
    }
    write_json_lines(args.out / "service_traces.json", {"probabilities": list(PROBABILITIES), "sources": sources},
                     "services", [{"name": name, **table} for name, table in services.items()])
    for name in ("servegen_clients.json", "service_traces.json"):
        print(f"wrote {args.out / name} ({(args.out / name).stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
