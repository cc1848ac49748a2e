import dataclasses
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from helpers.eqx import find_sub_tree, named_parameters
from nanojaxgpt import GPT, GPTConfig
from nanojaxgpt.config import TrainConfig
from nanojaxgpt.architecture import MLP_CHOICES
from nanojaxgpt.model import MLPS, QUERY_BLOCK, flops_per_token

# float32 results are compared to tight tolerances: pin float32 matmuls (TF32 on GPUs otherwise)
pytestmark = pytest.mark.usefixtures("exact_float32_matmuls")

# nanoGPT's CPU recipe for Tiny Shakespeare, characters: the training default
CPU_RECIPE = GPTConfig.from_training(TrainConfig(), vocab_size=65)


def small_model(**overrides) -> GPT:
    config = dataclasses.replace(CPU_RECIPE, **overrides)
    return GPT.create_instance(config, jax.random.key(0))


def test_every_mlp_choice_has_its_module():
    assert tuple(MLPS) == MLP_CHOICES == ("swiglu", "gelu", "gelu_exact", "relu2")


@pytest.mark.parametrize("mlp", MLP_CHOICES)
def test_logits_do_not_depend_on_later_tokens(mlp):
    model = small_model(mlp=mlp)
    idx = jax.random.randint(jax.random.key(1), (32,), 0, 65)
    t = 12
    changed = idx.at[t + 1 :].set((idx[t + 1 :] + 7) % 65)
    before, after = model(idx), model(changed)
    np.testing.assert_array_equal(before[: t + 1], after[: t + 1])
    assert not np.allclose(before[t + 1 :], after[t + 1 :])


def test_attention_in_query_blocks_equals_attention_over_the_whole_sequence():
    """Training attends in blocks of QUERY_BLOCK queries (the masked blocks above the diagonal
    skipped); decoding attends over the whole cache in one block. Both must give the same
    output, also across block boundaries and for a last block that is not full."""
    seq = 2 * QUERY_BLOCK + 44
    config = dataclasses.replace(CPU_RECIPE, block_size=seq)
    attn = GPT.create_instance(config, jax.random.key(0)).transformer.h.attn
    attn = jax.tree.map(lambda a: a[0] if eqx.is_array(a) else a, attn)  # the first layer
    x = jax.random.normal(jax.random.key(1), (seq, config.n_embd))
    head_size = config.n_embd // config.n_head
    empty_cache = (jnp.zeros((config.n_head, seq, head_size)),) * 2
    positions = jnp.arange(seq)
    in_blocks, _ = attn(x, positions)
    in_one_block, _ = attn(x, positions, cache=empty_cache)
    np.testing.assert_allclose(in_blocks, in_one_block, rtol=1e-5, atol=1e-6)
    changed = x.at[QUERY_BLOCK + 5 :].set(0.0)
    np.testing.assert_array_equal(attn(changed, positions)[0][: QUERY_BLOCK + 5], in_blocks[: QUERY_BLOCK + 5])


def test_backward_pass_keeps_linear_and_attention_outputs_but_no_attention_matrix(capsys):
    model = GPT.create_instance(
        GPTConfig(block_size=64, vocab_size=50, n_layer=2, n_head=2, n_embd=48), jax.random.key(0)
    )
    params, static = eqx.partition(model, eqx.is_inexact_array)
    idx = jnp.arange(64) % 50
    with jax.default_device(jax.devices("cpu")[0]):  # the CPU's plan (LAYER_PLANS), on any machine
        jax.ad_checkpoint.print_saved_residuals(lambda p: eqx.combine(p, static)(idx).sum(), params)
    kept_by_blocks = [
        line.split()[0] for line in capsys.readouterr().out.splitlines() if "output of scan" in line
    ]
    # per layer: the block's input, c_attn's output, attention's output before and after c_proj
    # (ln_2's input is the block's input plus the latter), mlp.c_fc's output; no (64, 64)
    # scores or softmax weights
    assert sorted(kept_by_blocks) == sorted(
        ["f32[2,64,48]", "f32[2,64,144]", "f32[2,64,48]", "f32[2,64,48]", "f32[2,64,256]"]
    )


def test_gpt2_initialisation_statistics():
    config = GPTConfig(n_layer=4, n_head=4, n_embd=256, block_size=64, vocab_size=1000, bias=True)
    model = GPT.create_instance(config, jax.random.key(0))
    params = dict(named_parameters(model))
    for name in ("transformer.wte.weight", "transformer.h.attn.c_attn.weight", "transformer.h.mlp.c_fc.weight"):
        assert abs(float(params[name].std()) / 0.02 - 1) < 0.05, name
    scaled = 0.02 / math.sqrt(2 * config.n_layer)
    for name in ("transformer.h.attn.c_proj.weight", "transformer.h.mlp.c_proj.weight"):
        assert abs(float(params[name].std()) / scaled - 1) < 0.05, name
    biases = [name for name in params if name.endswith(".bias")]
    assert len(biases) == 7  # ln_1, c_attn, c_proj, ln_2, c_fc, c_proj, ln_f
    for name in biases:
        np.testing.assert_array_equal(params[name], 0)
    np.testing.assert_array_equal(params["transformer.h.ln_1.weight"], 1)
    for name in ("transformer.h.attn.c_attn.weight", "transformer.h.mlp.c_proj.weight"):
        layers = params[name]
        assert layers.shape[0] == config.n_layer
        for i in range(1, config.n_layer):
            assert not np.allclose(layers[0], layers[i]), f"{name}: block {i} equals block 0"


def test_parameter_count_matches_nanogpt():
    # nanoGPT prints "number of parameters: 0.80M" for this config: 795,904 by its get_num_params
    assert small_model(mlp="gelu").get_num_params() == 795_904
    assert small_model(mlp="gelu").get_num_params(non_embedding=False) == 795_904 + 64 * 128
    swiglu = small_model(mlp="swiglu").get_num_params()
    assert abs(swiglu / 795_904 - 1) < 0.01


def test_embedding_and_output_projection_are_one_array():
    model = small_model()
    shapes = [p.shape for _, p in named_parameters(model)]
    assert shapes.count((65, 128)) == 1

    idx = jnp.array([3, 1, 4, 1, 5, 9, 2, 6])
    weights = jax.random.normal(jax.random.key(2), (8, 65))
    loss = lambda m: jnp.sum(weights * m(idx))
    tied_grad = eqx.filter_grad(loss)(model).transformer.wte.weight

    def untied_loss(embedding, head):
        transformer = eqx.tree_at(lambda t: t.wte.weight, model.transformer, embedding)
        return jnp.sum(weights * (transformer(idx)[0] @ head.T))

    wte = model.transformer.wte.weight
    from_embedding, from_head = jax.grad(untied_loss, argnums=(0, 1))(wte, wte)
    assert float(jnp.abs(from_embedding).max()) > 0 and float(jnp.abs(from_head).max()) > 0
    # float32 sums in another order (GPUs): up to 1e-6 of the largest entries (about 10)
    np.testing.assert_allclose(tied_grad, from_embedding + from_head, rtol=1e-5, atol=1e-5)


def test_configure_optimizers_decays_matrices_only():
    model = small_model(bias=True)
    params = eqx.filter(model, eqx.is_inexact_array)
    optimizer = model.configure_optimizers(weight_decay=0.5, learning_rate=1.0, betas=(0.9, 0.95))
    zero_grads = jax.tree.map(jnp.zeros_like, params)
    updates, _ = optimizer.update(zero_grads, optimizer.init(params), params)
    updated = dict(named_parameters(optax.apply_updates(params, updates)))
    decayed = []
    for name, before in named_parameters(params):
        layer_ndim = before.ndim - 1 if name.startswith("transformer.h.") else before.ndim
        if layer_ndim >= 2:
            np.testing.assert_allclose(updated[name], 0.5 * before, rtol=1e-6)
            decayed.append(name)
        else:
            np.testing.assert_array_equal(updated[name], before)
    assert decayed == [
        "transformer.wte.weight",
        "transformer.wpe.weight",
        "transformer.h.attn.c_attn.weight",
        "transformer.h.attn.c_proj.weight",
        "transformer.h.mlp.c_fc.weight",
        "transformer.h.mlp.c_proj.weight",
    ]


def test_dropout_is_random_in_training_and_off_in_inference():
    model = small_model(dropout=0.2)
    idx = jnp.arange(16)
    first = model(idx, key=jax.random.key(1))
    assert not np.allclose(first, model(idx, key=jax.random.key(2)))
    np.testing.assert_array_equal(first, model(idx, key=jax.random.key(1)))
    with pytest.raises(RuntimeError, match="requires a key"):
        model(idx)
    inference = eqx.nn.inference_mode(model)
    np.testing.assert_array_equal(inference(idx, key=jax.random.key(1)), inference(idx))


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(n_embd=130, n_head=4), "n_embd=130 is not divisible by n_head=4"),
        (dict(n_layer=0), "n_layer=0 must be a positive integer"),
        (dict(block_size=-8), "block_size=-8 must be a positive integer"),
        (dict(vocab_size=0), "vocab_size=0 must be a positive integer"),
        (dict(dropout=1.0), r"dropout=1.0 must be in \[0, 1\)"),
        (dict(dropout=-0.1), r"dropout=-0.1 must be in \[0, 1\)"),
        (dict(mlp="relu"), "mlp='relu' is not one of swiglu, gelu, gelu_exact, relu2"),
        (dict(pos_emb="alibi"), "pos_emb='alibi' is not one of learned, rotary"),
        (dict(pos_emb="rotary", n_embd=132, n_head=4), "needs an even head size, not n_embd/n_head = 33"),
        (dict(logit_softcap=-1.0), r"logit_softcap=-1.0 must be >= 0 \(0 is off\)"),
    ],
)
def test_invalid_config_raises_with_the_numbers(overrides, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(CPU_RECIPE, **overrides)


def test_a_batch_without_vmap_names_the_shape_and_jax_vmap():
    with pytest.raises(ValueError, match=r"one sequence of token ids, shape \(seq,\), not shape "
                                         r"\(8, 64\): for a batch, jax.vmap\(model\)\(idx\)"):
        small_model()(jnp.zeros((8, 64), dtype=int))


def test_sequence_longer_than_block_size_raises():
    model = small_model()
    with pytest.raises(ValueError, match="length 65: block_size is only 64"):
        model(jnp.zeros(65, jnp.int32))


def test_crop_block_size_returns_a_new_model():
    model = small_model()
    cropped = model.crop_block_size(32)
    assert cropped.config.block_size == 32 and model.config.block_size == 64
    assert cropped.transformer.wpe.weight.shape == (32, 128)
    idx = jnp.arange(20)
    np.testing.assert_allclose(cropped(idx), model(idx), rtol=1e-6)
    with pytest.raises(ValueError, match="length 33: block_size is only 32"):
        cropped(jnp.zeros(33, jnp.int32))
    with pytest.raises(ValueError, match="block_size=128 must be in"):
        model.crop_block_size(128)


def test_estimate_mfu_uses_nanogpt_formula():
    model = small_model()
    n = model.get_num_params()
    assert flops_per_token(model.config, n) == 6 * n + 12 * 4 * 4 * 32 * 64
    expected = (6 * n + 12 * 4 * 4 * 32 * 64) * 64 * 12 / 0.5 / 1e12
    assert model.estimate_mfu(fwdbwd_per_iter=12, dt=0.5, peak_flops=1e12) == pytest.approx(expected)


def test_generate_continues_past_block_size():
    model = small_model(block_size=8)
    prompt = jnp.array([1, 2, 3])
    out = model.generate(prompt, 12, temperature=0.0, key=jax.random.key(0))
    assert out.shape == (15,)
    np.testing.assert_array_equal(out[:3], prompt)
    # greedy: every new token is the argmax after the last block_size tokens before it
    for i in range(3, 15):
        context = out[max(0, i - 8) : i]
        assert int(out[i]) == int(jnp.argmax(model(context)[-1]))
    sampled = model.generate(prompt, 12, temperature=1.0, top_k=1, key=jax.random.key(5))
    np.testing.assert_array_equal(sampled, out)  # top_k=1 is greedy too


def test_named_parameters_and_find_sub_tree():
    model = small_model()
    names = [name for name, _ in named_parameters(model)]
    assert names[:3] == ["transformer.wte.weight", "transformer.wpe.weight", "transformer.h.ln_1.weight"]
    weight = find_sub_tree(model, "transformer.h.attn.c_proj.weight")
    assert weight.shape == (4, 128, 128)
    assert find_sub_tree({"layers": [1, 2]}, "layers.1") == 2
    with pytest.raises(KeyError, match="no 'c_attnn'"):
        find_sub_tree(model, "transformer.h.attn.c_attnn.weight")
