#!/usr/bin/env bash
# Install LiteLLM's proxy into its own virtualenv for bench/proxy_bench.py (target "litellm").
# Idempotent: re-running only checks that `litellm` is importable and the CLI is present.
#
#   bash bench/setup_litellm.sh            # default venv: /tmp/dg-bench/litellm-venv
#   LITELLM_VENV=/some/dir bash bench/setup_litellm.sh
#   LITELLM_SPEC='litellm[proxy]==1.x.y' bash bench/setup_litellm.sh
set -euo pipefail

VENV="${LITELLM_VENV:-/tmp/dg-bench/litellm-venv}"
SPEC="${LITELLM_SPEC:-litellm[proxy]}"
PY="${PYTHON:-python3}"

if [[ -x "$VENV/bin/litellm" ]] && "$VENV/bin/python" -c 'import litellm.proxy.proxy_server' >/dev/null 2>&1; then
    echo "litellm already installed in $VENV ($("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("litellm"))'))"
    exit 0
fi

mkdir -p "$(dirname "$VENV")"
if [[ ! -x "$VENV/bin/python" ]]; then
    "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet "$SPEC"
# Fail here, not at benchmark time, if the proxy extra did not come along.
LITELLM_LOCAL_MODEL_COST_MAP=True "$VENV/bin/python" -c 'import litellm.proxy.proxy_server' >/dev/null
echo "litellm $("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("litellm"))') installed in $VENV"
