"""nanoGPT's PyTorch model and training step, for side-by-side runs with nanojaxgpt.

The model is nanoGPT's model.py (LayerNorm with optional bias, fused-QKV attention through
`scaled_dot_product_attention`, GELU MLP, tied embeddings, GPT-2 init), plus the SwiGLU MLP of
nanojaxgpt so both MLPs can be compared. Training draws the very batches nanojaxgpt draws
(`BatchSampler`, same seed), so losses are comparable run for run.

    pip install -e ".[torch]"
    python scripts/torch_reference.py --mlp=gelu          # nanoGPT's CPU recipe, 2000 iters
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
from nanojaxgpt.tokenizer import load_tokenizer
from nanojaxgpt.optim import learning_rate_at


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
        self.c_proj = nn.Linear(hidden, c.n_embd, bias=c.bias)
        self.dropout = nn.Dropout(c.dropout)

    def forward(self, x):
        h = self.c_fc(x)
        if self.swiglu:
            gate, value = h.chunk(2, dim=-1)
            h = F.silu(gate) * value
        else:
            h = F.gelu(h, approximate="tanh")
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
        self.wte = nn.Embedding(vocab_size, c.n_embd)
        self.wpe = nn.Embedding(c.block_size, c.n_embd)
        self.drop = nn.Dropout(c.dropout)
        self.h = nn.ModuleList([Block(c) for _ in range(c.n_layer)])
        self.ln_f = LayerNorm(c.n_embd, c.bias)
        self.lm_head = nn.Linear(c.n_embd, vocab_size, bias=False)
        self.wte.weight = self.lm_head.weight  # weight tying
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

    def forward(self, idx, targets):
        T = idx.size(1)
        x = self.drop(self.wte(idx) + self.wpe(torch.arange(T, device=idx.device)))
        for block in self.h:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1))


def make_optimizer(model, c):
    """nanoGPT's configure_optimizers: decay the 2-D parameters only."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": c.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=c.learning_rate, betas=(c.beta1, c.beta2))


def train_step(model, optimizer, x, y, c):
    """One iteration as nanoGPT's train.py runs it: accumulate, clip, step."""
    for micro_x, micro_y in zip(x, y):
        loss = model(micro_x, micro_y) / len(x)
        loss.backward()
    if c.grad_clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), c.grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.item() * len(x)


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
            group["lr"] = float(learning_rate_at(iter_num, c))
        x, y = sampler.batches("train", c.gradient_accumulation_steps, 0, iter_num)
        loss = train_step(model, optimizer, torch.from_numpy(x).long(), torch.from_numpy(y).long(), c)
        if iter_num % c.log_interval == 0:
            print(f"iter {iter_num}: loss {loss:.4f}, time {(time.time() - t0) * 1000 / (iter_num + 1):.2f}ms (mean)", flush=True)
    print(f"wall time {time.time() - t0:.1f}s")


if __name__ == "__main__":
    main()
