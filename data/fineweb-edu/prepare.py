"""FineWeb-edu's 10B-token sample in GPT-2's BPE, as build-nanogpt's fineweb.py: uint16 token
shards of 100M tokens beside this file (shard 0 the validation split) and an index.json.

Needs `pip install 'nanojaxgpt[data]'` and about 20GB; streams from the Hugging Face hub. The
options of `python -m nanojaxgpt.prepare fineweb-edu` apply (`--subset=sample-100BT`,
`--max_tokens=N`, `--data_files=GLOB`, `--num_proc=N`). The code is nanojaxgpt/fineweb.py.

Run from anywhere: `python data/fineweb-edu/prepare.py`
"""

import sys
from pathlib import Path

from nanojaxgpt.errors import run_main
from nanojaxgpt.prepare import main

if __name__ == "__main__":
    here = Path(__file__).resolve().parent
    run_main(main, ["fineweb-edu", "--data_dir", str(here), *sys.argv[1:]])
