"""Tiny Shakespeare as characters: train.bin, val.bin and meta.pkl beside this file.

Downloads input.txt first when it is missing. Vocab 65; 1,003,854 train and 111,540 val tokens.

Run from anywhere: `python data/shakespeare_char/prepare.py`. The code is nanojaxgpt/prepare.py.
"""

import sys
from pathlib import Path

from nanojaxgpt.errors import run_main
from nanojaxgpt.prepare import main

if __name__ == "__main__":
    here = Path(__file__).resolve().parent
    run_main(main, ["--name", "shakespeare_char", "--data-dir", str(here), *sys.argv[1:]])
