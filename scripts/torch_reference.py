"""nanoGPT's PyTorch model and training step, for side-by-side runs with nanojaxgpt.

The model is nanoGPT's model.py, written from its documented behaviour: LayerNorm with optional
bias, fused-QKV attention through `scaled_dot_product_attention`, the MLP, tied embeddings,
GPT-2's initialisation, and its module names, so that its `state_dict()` is nanoGPT's. The MLP
follows nanojaxgpt's `mlp` key: 'gelu_exact' is nanoGPT's (`nn.GELU()`, erf), 'gelu' GPT-2's
tanh GELU, 'swiglu' nanojaxgpt's default. The optimizer is nanoGPT's configure_optimizers
(AdamW, the 2-D parameters decayed), a step is its train.py's (accumulation, clipping, step),
and `nanogpt_checkpoint` is the dict its train.py saves. Training draws the very batches
nanojaxgpt draws (`BatchSampler`, same seed), so losses are comparable run for run.

    pip install -e ".[torch]"
    python scripts/torch_reference.py --mlp=gelu_exact    # nanoGPT's network and CPU recipe
"""

import argparse
import math
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from nanojaxgpt.config import parse_args
from nanojaxgpt.data import BatchSampler
from nanojaxgpt.model import swiglu_hidden_size
from nanojaxgpt.nanogpt import CONFIG_KEYS
from nanojaxgpt.tokenizer import load_tokenizer


class LayerNorm(nn.Module):
    def __init__(self, ndim, bias):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ndim))
        self.bias = nn.Parameter(torch.zeros(ndim)) if bias else None

    def forward(self, x):
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, 1e-5)


class CausalSelfAttention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c_attn = nn.Linear(c.n_embd, 3 * c.n_embd, bias=c.bias)
        self.c_proj = nn.Linear(c.n_embd, c.n_embd, bias=c.bias)
        self.n_head, self.dropout = c.n_head, c.dropout
        self.resid_dropout = nn.Dropout(c.dropout)

    def forward(self, x):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        dropout = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=True)
        return self.resid_dropout(self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C)))


class MLP(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.swiglu = c.mlp == "swiglu"
        hidden = swiglu_hidden_size(c.n_embd) if self.swiglu else 4 * c.n_embd
        self.c_fc = nn.Linear(c.n_embd, 2 * hidden if self.swiglu else hidden, bias=c.bias)
        self.gelu = nn.GELU(approximate="tanh" if c.mlp == "gelu" else "none")
        self.c_proj = nn.Linear(hidden, c.n_embd, bias=c.bias)
        self.dropout = nn.Dropout(c.dropout)

    def forward(self, x):
        h = self.c_fc(x)
        if self.swiglu:
            gate, value = h.chunk(2, dim=-1)
            h = F.silu(gate) * value
        else:
            h = self.gelu(h)
        return self.dropout(self.c_proj(h))


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.ln_1, self.attn = LayerNorm(c.n_embd, c.bias), CausalSelfAttention(c)
        self.ln_2, self.mlp = LayerNorm(c.n_embd, c.bias), MLP(c)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, c, vocab_size):
        super().__init__()
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(vocab_size, c.n_embd),
            wpe=nn.Embedding(c.block_size, c.n_embd),
            drop=nn.Dropout(c.dropout),
            h=nn.ModuleList([Block(c) for _ in range(c.n_layer)]),
            ln_f=LayerNorm(c.n_embd, c.bias),
        ))
        self.lm_head = nn.Linear(c.n_embd, vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # weight tying
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * c.n_layer))

    @staticmethod
    def _init_weights(module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)

    def forward(self, idx, targets=None):
        positions = torch.arange(idx.size(1), device=idx.device)
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(positions))
        for block in self.transformer.h:
            x = block(x)
        logits = self.lm_head(self.transformer.ln_f(x))
        if targets is None:
            return logits
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))


def make_optimizer(model, c):
    """nanoGPT's configure_optimizers: decay the 2-D parameters only."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": c.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=c.learning_rate, betas=(c.beta1, c.beta2))


def get_lr(it: int, c) -> float:
    """nanoGPT's learning rate at iteration `it`: linear warmup, cosine decay, then min_lr."""
    if not c.decay_lr:
        return c.learning_rate
    if it < c.warmup_iters:
        return c.learning_rate * (it + 1) / (c.warmup_iters + 1)
    if it > c.lr_decay_iters:
        return c.min_lr
    decay_ratio = (it - c.warmup_iters) / (c.lr_decay_iters - c.warmup_iters)
    coeff = 0.5 * (1.0 + math.cos(math.pi * decay_ratio))
    return c.min_lr + coeff * (c.learning_rate - c.min_lr)


def train_step(model, optimizer, x, y, c):
    """One iteration as nanoGPT's train.py runs it: accumulate, clip, step. Returns the mean of
    the micro-batches' losses (what nanojaxgpt logs; nanoGPT logs the last micro-batch's)."""
    losses = []
    for micro_x, micro_y in zip(x, y):
        loss = model(micro_x, micro_y) / len(x)
        loss.backward()
        losses.append(loss.item() * len(x))
    if c.grad_clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), c.grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return sum(losses) / len(losses)


def nanogpt_checkpoint(model, optimizer, c, iter_num: int, best_val_loss) -> dict:
    """The dict nanoGPT's train.py saves as ckpt.pt."""
    model_args = dict(n_layer=c.n_layer, n_head=c.n_head, n_embd=c.n_embd, block_size=c.block_size,
                      bias=c.bias, vocab_size=model.lm_head.weight.shape[0], dropout=c.dropout)
    return {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "model_args": model_args,
            "iter_num": iter_num, "best_val_loss": best_val_loss,
            "config": {key: getattr(c, key) for key in CONFIG_KEYS}}


@torch.no_grad()
def estimate_loss(model, sampler, c, iter_num):
    model.eval()
    out = {}
    for split in ("train", "val"):
        x, y = sampler.batches(split, c.eval_iters, 1, iter_num)
        x, y = torch.from_numpy(x).long(), torch.from_numpy(y).long()
        out[split] = sum(model(xb, yb).item() for xb, yb in zip(x, y)) / c.eval_iters
    model.train()
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("overrides", nargs="*", help="nanojaxgpt config file and --key=value overrides")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args, unknown = parser.parse_known_args()
    c = parse_args(args.overrides + unknown)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(c.seed)
    data_dir = Path("data") / c.dataset
    sampler = BatchSampler(data_dir, c.block_size, c.batch_size, c.seed)
    model = GPT(c, vocab_size=load_tokenizer(data_dir).vocab_size if (data_dir / "meta.pkl").exists() else 50304)
    optimizer = make_optimizer(model, c)
    print(f"number of parameters: {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M (torch)")
    t0 = time.time()
    for iter_num in range(c.max_iters + 1):
        if iter_num % c.eval_interval == 0 or iter_num == c.max_iters:
            losses = estimate_loss(model, sampler, c, iter_num)
            print(f"step {iter_num}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}", flush=True)
        if iter_num == c.max_iters:
            break
        for group in optimizer.param_groups:
            group["lr"] = get_lr(iter_num, c)
        x, y = sampler.batches("train", c.gradient_accumulation_steps, 0, iter_num)
        loss = train_step(model, optimizer, torch.from_numpy(x).long(), torch.from_numpy(y).long(), c)
        if iter_num % c.log_interval == 0:
            print(f"iter {iter_num}: loss {loss:.4f}, time {(time.time() - t0) * 1000 / (iter_num + 1):.2f}ms (mean)", flush=True)
    print(f"wall time {time.time() - t0:.1f}s")


if __name__ == "__main__":
    main()
