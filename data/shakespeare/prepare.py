"""Tiny Shakespeare in GPT-2's BPE: train.bin and val.bin beside this file.

Downloads input.txt first when it is missing. 301,966 train and 36,059 val tokens.

Run from anywhere: `python data/shakespeare/prepare.py`. The code is nanojaxgpt/prepare.py.
"""

import sys
from pathlib import Path

from nanojaxgpt.errors import run_main
from nanojaxgpt.prepare import main

if __name__ == "__main__":
    here = Path(__file__).resolve().parent
    run_main(main, ["--name", "shakespeare", "--data-dir", str(here), *sys.argv[1:]])
