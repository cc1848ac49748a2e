# nanoGPT's "baby GPT": a 6-layer character model of Tiny Shakespeare, about 10M parameters.
# On a GPU: python -m nanojaxgpt.train configs/train_shakespeare_char.py

out_dir = "out-shakespeare-char-baby"  # not the default run's folder: nothing is overwritten
eval_interval = 250  # evaluate often: this model overfits
eval_iters = 200
log_interval = 10
always_save_checkpoint = False  # save only when val loss improves

wandb_log = False
wandb_project = "shakespeare-char"
wandb_run_name = "mini-gpt"

dataset = "shakespeare_char"
gradient_accumulation_steps = 1
batch_size = 64
block_size = 256  # 256 characters of context

n_layer = 6
n_head = 6
n_embd = 384
dropout = 0.2

learning_rate = 1e-3  # a small network can take a large learning rate
max_iters = 5000
lr_decay_iters = 5000  # usually equal to max_iters
min_lr = 1e-4  # learning_rate / 10
beta2 = 0.99  # a little bigger: few tokens per iteration
warmup_iters = 100
