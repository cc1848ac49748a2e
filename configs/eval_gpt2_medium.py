# Evaluate OpenAI's gpt2-medium on OpenWebText: python -m nanojaxgpt.train configs/eval_gpt2_medium.py
out_dir = "out-eval-gpt2-medium"
batch_size = 8
block_size = 1024
eval_iters = 500  # use more iterations to get a good estimate
eval_only = True
wandb_log = False
init_from = "gpt2-medium"
dataset = "openwebtext"
