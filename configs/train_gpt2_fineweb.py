# GPU: GPT-2 (124M) on FineWeb-edu's 10B-token sample, build-nanogpt's recipe, with HellaSwag and
# samples as it trains (README: "Reproducing GPT-2 (124M) on FineWeb-edu")
#   python -m nanojaxgpt.prepare fineweb-edu        # about 20 GB of shards in data/fineweb-edu
#   python -m nanojaxgpt.train configs/train_gpt2_fineweb.py

out_dir = 'out-gpt2-fineweb'
dataset = 'fineweb-edu'
wandb_project = 'fineweb'
wandb_run_name = 'gpt2-124M'

# 2**19 = 524,288 tokens an iteration: 8 micro-batches of 64 x 1024 (on 8 GPUs, one each);
# on a GPU with less than ~50 GB, halve batch_size and double gradient_accumulation_steps
batch_size = 64
block_size = 1024
gradient_accumulation_steps = 8

# GPT-2's network as build-nanogpt trains it: biases, tanh GELU, vocabulary padded to 50304
n_layer = 12
n_head = 12
n_embd = 768
bias = True
mlp = 'gelu'
dropout = 0.0

# 19,073 iterations of 2**19 tokens: one pass over the 10B tokens
max_iters = 19073
lr_decay_iters = 19073
warmup_iters = 715
learning_rate = 6e-4
min_lr = 6e-5
weight_decay = 0.1
beta1 = 0.9
beta2 = 0.95
grad_clip = 1.0

# val loss over 20 micro-batches, HellaSwag and four samples every 250 iterations, as build-nanogpt
eval_interval = 250
eval_iters = 20
hellaswag_interval = 250
sample_interval = 250
sample_prompt = "Hello, I'm a language model,"
log_interval = 10

deterministic = False  # the fast GPU plan (README, GPU): resume continues, though not bit for bit
