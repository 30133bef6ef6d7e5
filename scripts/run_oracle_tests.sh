#!/usr/bin/env bash
# Runs the oracle suite (pytest marker `oracle`): gemma4 against the official
# gemma==4.0.1, live, in the cached Python 3.12 environment built by oracle_env.sh;
# before it, the default environment's slow tests (marker `slow`).
# Extra arguments go to pytest. GEMMA4_WRITE_GOLDEN=1 rewrites tests/golden/.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
env_dir="$(bash "$root/scripts/oracle_env.sh")"
dialog_dir="$(bash "$root/scripts/dialog_env.sh")"  # dialog with mcp 1.x: test_dialog_*.py
cd "$root"
export GEMMA4_ORACLE=1 PYTHONPATH="$root/src:$root${PYTHONPATH:+:$PYTHONPATH}"
# One process per file: in one long process, XLA once segfaulted compiling an official
# encoder late in the run (never with the file alone); separate processes keep each
# file's state apart. Every file runs; the status is the first failure's.
status=0
# First the default environment's slow tests (pytest marker `slow`: several processes,
# the real model at length), kept out of the README's test command to keep it short.
# They need the .venv that command builds.
[ -x "$root/.venv/bin/python" ] || { echo "run_oracle_tests.sh: the slow tests need $root/.venv (run the README's test command first)" >&2; exit 2; }
echo "+ .venv/bin/pytest -m slow"
(unset GEMMA4_ORACLE PYTHONPATH; "$root/.venv/bin/python" -m pytest -m slow -p no:cacheprovider "$@") \
  || status=$?
for file in tests/oracle/test_*.py; do
  echo "+ $file"
  python="$env_dir/bin/python"
  case "$file" in tests/oracle/test_dialog_*) python="$dialog_dir/bin/python";; esac
  "$python" -m pytest -o addopts="" -m oracle "$file" -p no:cacheprovider "$@" \
    || { rc=$?; [ "$status" -ne 0 ] || status=$rc; }
done
exit "$status"
