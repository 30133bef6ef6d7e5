import importlib.util
import os

# The oracle run (scripts/run_oracle_tests.sh) must have the official library: there a
# missing import fails loudly. Elsewhere these files are not collected.
if os.environ.get('GEMMA4_ORACLE') != '1' and importlib.util.find_spec('gemma') is None:
  collect_ignore_glob = ['test_*.py']
