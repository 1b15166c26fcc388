#!/usr/bin/env bash
# Reproduces models/default.skops and models/default.json: the isolation forest fitted on
# one simulated day of honest traffic only (no attack keys), seed 0, from the simulator's
# default benign mix (traffic/scenarios.py BENIGN_MIX; rates and lengths from real traces).
# Usage: bash models/train_default.sh
set -euo pipefail
cd "$(dirname "$0")/.."
traffic="$(mktemp -d)/benign-day.jsonl.gz"
DISTILLGUARD_KEY_SECRET=model-training distillguard simulate --out "$traffic" --hours 24 --seed 0 --benign 800
DISTILLGUARD_KEY_SECRET=model-training distillguard train --traffic "$traffic" --out models/default --seed 0
rm -f "$traffic"
