"""Parameter groups read from the model's structure: what AdamW decays, and what an optimizer
for the hidden matrices alone would take."""

import jax

from helpers.eqx import named_parameters
from nanojaxgpt import GPT, GPTConfig
from nanojaxgpt.optim import EMBEDDING, GAIN_OR_BIAS, HIDDEN_MATRIX, param_groups


def test_parameter_groups_count_dimensions_per_layer():
    model = GPT.create_instance(GPTConfig(n_layer=3, n_head=2, n_embd=16, block_size=8, vocab_size=11,
                                          bias=True, mlp="gelu"), jax.random.key(0))
    names = [name for name, _ in named_parameters(model)]
    groups = dict(zip(names, jax.tree.leaves(param_groups(model)), strict=True))
    assert {name for name, group in groups.items() if group == HIDDEN_MATRIX} == {
        "transformer.h.attn.c_attn.weight", "transformer.h.attn.c_proj.weight",
        "transformer.h.mlp.c_fc.weight", "transformer.h.mlp.c_proj.weight",
    }  # each (3, out, in): a matrix per layer
    assert {name for name, group in groups.items() if group == EMBEDDING} == {
        "transformer.wte.weight", "transformer.wpe.weight",
    }
    gains_and_biases = {name for name, group in groups.items() if group == GAIN_OR_BIAS}
    assert len(gains_and_biases) == 8 + 2  # four biases and two LayerNorms per block, ln_f
    assert len(groups) == 4 + 2 + 10
