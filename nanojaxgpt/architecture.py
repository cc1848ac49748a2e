"""What a GPT is, as plain data: `GPTConfig` with its checks, and the GPT-2 sizes by name.

No JAX here: the command line (nanojaxgpt/config.py) checks a model config with these before
anything loads the model, and the model, the checkpoints and the Hugging Face code all read
the same definitions.
"""

from dataclasses import dataclass, fields

# the MLPs the model builds by name (nanojaxgpt/model.py's `MLPS`)
MLP_CHOICES = ("swiglu", "gelu", "gelu_exact", "relu2")
# how a token's position enters: GPT-2's learned embeddings, or rotary embeddings in attention
POSITION_CHOICES = ("learned", "rotary")

# the hub's repositories of OpenAI's four GPT-2 sizes
PRETRAINED = {
    "gpt2": "openai-community/gpt2",  # 124M: n_layer=12, n_head=12, n_embd=768
    "gpt2-medium": "openai-community/gpt2-medium",  # 350M: 24, 16, 1024
    "gpt2-large": "openai-community/gpt2-large",  # 774M: 36, 20, 1280
    "gpt2-xl": "openai-community/gpt2-xl",  # 1558M: 48, 25, 1600
}


@dataclass(frozen=True)
class GPTConfig:
    block_size: int = 1024
    vocab_size: int = 50304  # GPT-2's 50257 padded up to a multiple of 64 for efficiency
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0
    bias: bool = True  # biases in Linears and LayerNorms, like GPT-2; False is a bit better and faster
    mlp: str = "swiglu"  # "gelu": GPT-2's MLP (tanh GELU), for its weights; "gelu_exact": nanoGPT's (erf GELU)
    # the options of the modern recipe (the modded-nanogpt speedrun), off by default
    pos_emb: str = "learned"  # "rotary": rotary embeddings of queries and keys, no wpe
    qk_norm: bool = False  # RMS-normalise each head's queries and keys before attention
    tied_head: bool = True  # the output head is the token embedding matrix, as in GPT-2
    logit_softcap: float = 0.0  # > 0: logits become cap * tanh(logits / cap)
    zero_init_proj: bool = False  # residual projections (and an untied head) start at zero

    def __post_init__(self):
        """The checks of every model config, the command line's included (it shows the message
        as its one-line usage error)."""
        for name in ("block_size", "vocab_size", "n_layer", "n_head", "n_embd"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name}={value!r} must be a positive integer")
        if self.n_embd % self.n_head != 0:
            raise ValueError(
                f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}; "
                f"pick n_embd a multiple of n_head"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout={self.dropout!r} must be in [0, 1), e.g. --dropout=0.2")
        if self.mlp not in MLP_CHOICES:
            raise ValueError(f"mlp={self.mlp!r} is not one of {', '.join(MLP_CHOICES)}")
        if self.pos_emb not in POSITION_CHOICES:
            raise ValueError(f"pos_emb={self.pos_emb!r} is not one of {', '.join(POSITION_CHOICES)}")
        if self.pos_emb == "rotary" and (self.n_embd // self.n_head) % 2:
            raise ValueError(
                f"pos_emb='rotary' needs an even head size, not n_embd/n_head = "
                f"{self.n_embd // self.n_head}; pick n_embd and n_head to make it even"
            )
        if not self.logit_softcap >= 0:
            raise ValueError(f"logit_softcap={self.logit_softcap!r} must be >= 0 (0 is off)")

    @classmethod
    def from_training(cls, config, vocab_size: int) -> "GPTConfig":
        """The model that a training config describes (nanojaxgpt.config.TrainConfig has a key
        for each of our fields but vocab_size, which the data set gives)."""
        names = [field.name for field in fields(cls) if field.name != "vocab_size"]
        return cls(**{name: getattr(config, name) for name in names}, vocab_size=vocab_size)


# what a checkpoint fixes: resuming with other values is a mistake (dropout may change; the
# initialisation is past)
ARCHITECTURE_KEYS = tuple(
    f.name for f in fields(GPTConfig) if f.name not in ("vocab_size", "dropout", "zero_init_proj")
)
