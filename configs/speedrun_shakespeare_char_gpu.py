# GPU: the modern recipe at nanoGPT's baby GPT size (6 layers of 384, block 256, batch 64), the
# target being the val loss nanoGPT's config/train_shakespeare_char.py reaches, in at most a third
# of its time. Not yet measured on a GPU: `bash scripts/gpu_check.sh OUT NANOGPT_DIR --baby` runs
# it over 3 seeds beside nanoGPT's own run. The choices carry over what the CPU speedrun
# (configs/speedrun_shakespeare_char.py) measured: Muon does most of it, and a fifth of nanoGPT's
# iterations reached its loss there; here 30% of nanoGPT's 5000, as a larger network overfits
# later.
# python -m nanojaxgpt.seeds configs/speedrun_shakespeare_char_gpu.py --seeds=1337,1338,1339 --target=1.47

out_dir = "out-speedrun-shakespeare-char-gpu"
eval_interval = 250
eval_iters = 200
log_interval = 10

dataset = "shakespeare_char"
batch_size = 64
block_size = 256

n_layer = 6
n_head = 6
n_embd = 384
dropout = 0.2  # nanoGPT's: this network overfits Tiny Shakespeare without it
bias = False

# the modded-nanogpt speedrun's model
mlp = "relu2"
pos_emb = "rotary"
qk_norm = True
tied_head = False
logit_softcap = 30.0
zero_init_proj = True

# Muon for the blocks' matrices, AdamW for the rest
optimizer = "muon"
muon_learning_rate = 0.02
muon_momentum = 0.95
learning_rate = 3e-3
min_lr = 3e-4
beta2 = 0.99
max_iters = 1500
lr_decay_iters = 1500
warmup_iters = 50
