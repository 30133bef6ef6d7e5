#!/usr/bin/env bash
# Builds (once) and prints the path of the Python 3.12 environment that runs the
# official gemma==4.0.1 as a test oracle. It lives outside the repository and is
# reused by later runs on the same machine: $GEMMA4_ORACLE_ENV or ~/.cache/gemma4/oracle-py312.
set -euo pipefail
env_dir="${GEMMA4_ORACLE_ENV:-$HOME/.cache/gemma4/oracle-py312}"
stamp="$env_dir/.gemma4-oracle-ready-v1"
if [ -f "$stamp" ]; then echo "$env_dir"; exit 0; fi

source "$(dirname "$0")/python312.sh"

echo "oracle_env: building $env_dir with $py312 (about 3.5 GB, a few minutes)" >&2
rm -rf "$env_dir"
"$py312" -m venv "$env_dir"
"$env_dir/bin/pip" install --quiet --upgrade pip >&2
"$env_dir/bin/pip" install --quiet "gemma==4.0.1" >&2
# sentencepiece 0.2.3 with protobuf<7 fails at import; 0.2.1 works.
"$env_dir/bin/pip" install --quiet "sentencepiece==0.2.1" "pytest" >&2
"$env_dir/bin/python" -c "import gemma; from gemma import gm" >&2
touch "$stamp"
echo "$env_dir"
