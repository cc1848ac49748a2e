"""nanoGPT in JAX and Equinox.

The modules in layers, each importing only those below it: `architecture` (GPTConfig, no JAX)
and `config` (the command line) at the bottom; `model` (the network) and `optim`; `generate`
(sampling) and `hf` (GPT-2's weights) on the model; `checkpoint`, then the commands (`train`,
`sample`, `bench`, `export`). nanoGPT's two entry points on the model are attached here, above
the modules that implement them, so that the model imports neither.
"""

from nanojaxgpt.architecture import GPTConfig
from nanojaxgpt.generate import generate
from nanojaxgpt.hf import from_pretrained
from nanojaxgpt.model import GPT

GPT.generate = generate  # model.generate(idx, max_new_tokens, temperature, top_k, key=key)
GPT.from_pretrained = staticmethod(from_pretrained)  # GPT.from_pretrained("gpt2", dict(dropout=0.1))

__all__ = ["GPT", "GPTConfig"]
