#!/usr/bin/env bash
# Everything the tests need on a fresh Debian machine, then the tests.
# Usage: scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
[ -x /usr/bin/chromium ] || need_apt+=(chromium)  # rendered pages (Playwright uses it, never its own)
command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)  # alert-rule unit tests and a live Prometheus
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing ${need_apt[*]}; run as root or install them with apt-get" >&2
    exit 1
  fi
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need_apt[@]}" >/dev/null
fi

python3 -m pip install -q --disable-pip-version-check -e ".[test]" 2>&1 | grep -v -i "warning" || true
# Two workers, each taking whole files (module fixtures stay on one worker): most tests wait
# on processes they start, so two workers halve the wall time on two cores.
exec python3 -m pytest -n 2 --dist loadfile "$@"
