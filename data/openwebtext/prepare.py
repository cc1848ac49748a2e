"""OpenWebText in GPT-2's BPE, as nanoGPT's: train.bin and val.bin beside this file.

Needs `pip install 'nanojaxgpt[data]'` and about 54GB in Hugging Face's cache; nanoGPT
got about 9B train and 4M val tokens (17GB and 8.5MB).

Run from anywhere: `python data/openwebtext/prepare.py`
(`--num-proc N` sets the number of processes). The code is nanojaxgpt/prepare.py.
"""

import sys
from pathlib import Path

from nanojaxgpt.errors import run_main
from nanojaxgpt.prepare import main

if __name__ == "__main__":
    here = Path(__file__).resolve().parent
    run_main(main, ["--name", "openwebtext", "--data-dir", str(here), *sys.argv[1:]])
