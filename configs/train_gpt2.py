# GPT-2 (124M) on OpenWebText, as nanoGPT trains it: about 0.5M tokens per iteration
# (12 sequences x 1024 tokens x 40 accumulated micro-batches), 600k iterations.
# Prepare the data first: python data/openwebtext/prepare.py

out_dir = "out"
eval_interval = 1000
eval_iters = 200
log_interval = 10

wandb_log = True  # needs the extra: pip install -e ".[wandb]"
wandb_project = "owt"
wandb_run_name = "gpt2-124M"

dataset = "openwebtext"
batch_size = 12
block_size = 1024
gradient_accumulation_steps = 5 * 8

n_layer = 12
n_head = 12
n_embd = 768
dropout = 0.0
bias = False
mlp = "gelu"  # GPT-2's own MLP, for a like-for-like reproduction

# GPU kernels that add in any order: a step 1.6x faster (H200, README "GPU"); resume continues
# the run, but not bit for bit
deterministic = False

learning_rate = 6e-4
max_iters = 600000
lr_decay_iters = 600000
min_lr = 6e-5
weight_decay = 1e-1
beta1 = 0.9
beta2 = 0.95
grad_clip = 1.0
warmup_iters = 2000
