#!/usr/bin/env bash
# Reproduces models/default.skops and models/default.json: the isolation forest fitted on
# one simulated day of honest traffic only (no attack keys), seed 0.
# Usage: bash models/train_default.sh
set -euo pipefail
cd "$(dirname "$0")/.."
traffic="$(mktemp -d)/benign-day.jsonl.gz"
DISTILLGUARD_KEY_SECRET=model-training distillguard simulate --out "$traffic" --hours 24 --seed 0 \
  --scenario heavy_developer=60 --scenario support_chatbot=6 --scenario rag_service=6 \
  --scenario batch_document_job=6 --scenario benchmark_run=8 --scenario office_nat=48 \
  --scenario casual_user=300
DISTILLGUARD_KEY_SECRET=model-training distillguard train --traffic "$traffic" --out models/default --seed 0
