"""TinyStories in GPT-2's BPE: train.bin and val.bin beside this file.

Needs `pip install 'nanojaxgpt[data]'`.

Run from anywhere: `python data/tinystories/prepare.py`
(`--num-proc N` sets the number of processes). The code is nanojaxgpt/prepare.py.
"""

import sys
from pathlib import Path

from nanojaxgpt.errors import run_main
from nanojaxgpt.prepare import main

if __name__ == "__main__":
    here = Path(__file__).resolve().parent
    run_main(main, ["--name", "tinystories", "--data-dir", str(here), *sys.argv[1:]])
