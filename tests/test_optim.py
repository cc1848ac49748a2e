"""Parameter groups read from the model's structure: what AdamW decays, and what Muon takes
(the hidden matrices, layer by layer)."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from helpers.eqx import named_parameters
from nanojaxgpt import GPT, GPTConfig
from nanojaxgpt.config import OPTIMIZER_CHOICES, parse_args
from nanojaxgpt.optim import EMBEDDING, GAIN_OR_BIAS, HIDDEN_MATRIX, OPTIMIZERS, make_optimizer, param_groups


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


def test_muon_orthogonalises_each_layers_matrix_and_leaves_the_rest_to_adamw():
    args = ["--n_layer=2", "--n_head=2", "--n_embd=16", "--grad_clip=0", "--warmup_iters=0",
            "--decay_lr=False", "--tied_head=False"]
    muon_config, adamw_config = parse_args([*args, "--optimizer=muon"]), parse_args(args)
    model = GPT.create_instance(GPTConfig.from_training(muon_config, vocab_size=11), jax.random.key(0))
    params = eqx.filter(model, eqx.is_inexact_array)
    grads = jax.tree.map(lambda p: jax.random.normal(jax.random.key(p.size), p.shape), params)
    # the MLP's gradient nearly of rank one: its singular values far apart
    c_fc = grads.transformer.h.mlp.c_fc.weight
    spike = 20 * jnp.einsum("lo,li->loi", c_fc[:, :, 0], c_fc[:, 0, :])
    grads = eqx.tree_at(lambda g: g.transformer.h.mlp.c_fc.weight, grads, c_fc + spike)
    updates = {}
    for name, config in (("muon", muon_config), ("adamw", adamw_config)):
        optimizer = make_optimizer(model, config)
        updates[name], _ = optimizer.update(grads, optimizer.init(params), params)
    # a block matrix's update, layer by layer, has (nearly) equal singular values: orthogonalised
    spread = lambda m: (lambda s: s.min() / s.max())(np.linalg.svd(np.asarray(m), compute_uv=False))
    for grad, update in zip(grads.transformer.h.mlp.c_fc.weight, updates["muon"].transformer.h.mlp.c_fc.weight):
        assert spread(grad) < 0.1 and spread(update) > 0.5
    # embeddings, the untied head, gains and biases: AdamW's update, the same numbers
    for where in (lambda m: m.transformer.wte.weight, lambda m: m.head.weight,
                  lambda m: m.transformer.h.ln_1.weight, lambda m: m.transformer.ln_f.weight):
        np.testing.assert_array_equal(where(updates["muon"]), where(updates["adamw"]))


def test_every_optimizer_choice_is_built():
    assert tuple(OPTIMIZERS) == OPTIMIZER_CHOICES == ("adamw", "muon")


def test_the_untied_head_is_decayed_like_an_embedding():
    model = GPT.create_instance(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=8, vocab_size=11,
                                          tied_head=False, pos_emb="rotary"), jax.random.key(0))
    groups = dict(zip([name for name, _ in named_parameters(model)], jax.tree.leaves(param_groups(model))))
    assert groups["head.weight"] == EMBEDDING and "transformer.wpe.weight" not in groups
