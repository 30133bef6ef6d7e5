#!/usr/bin/env bash
# Builds (once) and prints the path of the Python 3.12 environment that runs the
# official `dialog` package (the conversation text the official ChatSampler formats
# with) as a test oracle: $GEMMA4_DIALOG_ENV or ~/.cache/gemma4/dialog-py312.
# It is apart from the gemma==4.0.1 environment because there dialog 1.1.0 sits beside
# mcp 2.3, whose renamed fields (input_schema, structured_content) break dialog's tool
# declarations and responses; dialog was written against mcp 1.x.
set -euo pipefail
env_dir="${GEMMA4_DIALOG_ENV:-$HOME/.cache/gemma4/dialog-py312}"
stamp="$env_dir/.gemma4-dialog-ready-v2"
if [ -f "$stamp" ]; then echo "$env_dir"; exit 0; fi

source "$(dirname "$0")/python312.sh"

echo "dialog_env: building $env_dir with $py312" >&2
rm -rf "$env_dir"
"$py312" -m venv "$env_dir"
# gemma4's own dependencies too: the oracle tests compare gemma4 with dialog live.
"$env_dir/bin/pip" install --quiet "dialog==1.1.0" "mcp==1.30.0" "pytest>=8" "hypothesis>=6" \
  jax numpy sentencepiece pillow ml_dtypes gguf scipy >&2
"$env_dir/bin/python" -c "import dialog, jax" >&2
touch "$stamp"
echo "$env_dir"
