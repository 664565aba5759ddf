#!/usr/bin/env bash
# Installs what bench/run.py needs, idempotently: wrk (Debian package) and, into the Python
# environment the bench runs with, matplotlib plus the project's runtime libraries.
#
#   bash bench/setup.sh            # uses $VIRTUAL_ENV, else ./.venv, else python3 on PATH
#
# The constant-rate latency client is bench/rateload.py (pure Python): Debian's wrk has no
# -R and wrk2 is not packaged, see bench/README.md.
set -euo pipefail

repo_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

if [[ -n "${VIRTUAL_ENV:-}" ]]; then
  python="$VIRTUAL_ENV/bin/python"
elif [[ -x "$repo_dir/.venv/bin/python" ]]; then
  python="$repo_dir/.venv/bin/python"
else
  python="$(command -v python3)"
fi

# Root in these machines; sudo elsewhere.
as_root() {
  if [[ "$(id -u)" == 0 ]]; then "$@"; else sudo "$@"; fi
}

missing_debs=()
command -v wrk >/dev/null || missing_debs+=(wrk)
command -v taskset >/dev/null || missing_debs+=(util-linux)
if ((${#missing_debs[@]})); then
  echo "setup: apt-get install ${missing_debs[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing_debs[@]}" >/dev/null
fi

# module to import -> package to install
declare -A modules=(
  [matplotlib]=matplotlib
  [aiohttp]=aiohttp
  [jwcrypto]=jwcrypto
  [yaml]=PyYAML
  [cryptography]=cryptography
  [uvloop]=uvloop
)
missing_pips=()
for module in "${!modules[@]}"; do
  "$python" -c "import $module" 2>/dev/null || missing_pips+=("${modules[$module]}")
done
if ((${#missing_pips[@]})); then
  echo "setup: pip install ${missing_pips[*]} (into $python)"
  "$python" -m pip install -q "${missing_pips[@]}"
fi

echo "setup: ready: $(wrk -v 2>&1 | head -n1); python $("$python" -c 'import sys; print(sys.version.split()[0])')"
