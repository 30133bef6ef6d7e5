#!/usr/bin/env bash
# Runs the oracle suite (pytest marker `oracle`): gemma4 against the official
# gemma==4.0.1, live, in the cached Python 3.12 environment built by oracle_env.sh.
# Extra arguments go to pytest. GEMMA4_WRITE_GOLDEN=1 rewrites tests/golden/.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
env_dir="$(bash "$root/scripts/oracle_env.sh")"
cd "$root"
export GEMMA4_ORACLE=1 PYTHONPATH="$root/src:$root${PYTHONPATH:+:$PYTHONPATH}"
exec "$env_dir/bin/python" -m pytest -o addopts="" -m oracle tests/oracle -p no:cacheprovider "$@"
