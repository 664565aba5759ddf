#!/usr/bin/env bash
# Installs what bench/run.py needs, idempotently: wrk (Debian package) and, into the Python
# environment the bench runs with, the project with its `fast` extra (uvloop, as the sidecar
# ships) plus matplotlib.
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

# The sidecar as it ships fast: the project itself (editable) with its `fast` extra (uvloop),
# which also brings its runtime libraries (aiohttp, jwcrypto, PyYAML, prometheus-client).
# Skipped when this checkout's sidecar and uvloop already import from outside the repo.
installed_from="$(cd / && "$python" -c 'import uvloop, sidecar, os; print(os.path.dirname(os.path.dirname(os.path.abspath(sidecar.__file__))))' 2>/dev/null || true)"
if [[ "$installed_from" != "$repo_dir" ]]; then
  echo "setup: pip install -e '$repo_dir[fast]' (into $python)"
  "$python" -m pip install -q -e "$repo_dir[fast]"
fi

# The bench's own: matplotlib for the chart.
if ! "$python" -c "import matplotlib" 2>/dev/null; then
  echo "setup: pip install matplotlib (into $python)"
  "$python" -m pip install -q matplotlib
fi

echo "setup: ready: $(wrk -v 2>&1 | head -n1); python $("$python" -c 'import sys; print(sys.version.split()[0])'); uvloop $("$python" -c 'import uvloop; print(uvloop.__version__)')"
