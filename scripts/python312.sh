# Sourced by oracle_env.sh and dialog_env.sh: sets py312 to a Python 3.12 interpreter
# (pyenv's, else python3.12 on the PATH) or exits saying none was found.
py312=""
if command -v pyenv >/dev/null 2>&1; then
  for p in "$(pyenv root)"/versions/3.12.*/bin/python3.12; do [ -x "$p" ] && py312="$p"; done
fi
[ -n "$py312" ] || py312="$(command -v python3.12 || true)"
if [ -z "$py312" ]; then echo "$(basename "$0"): no Python 3.12 found" >&2; exit 1; fi
