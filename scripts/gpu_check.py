"""The GPU check, run by scripts/gpu_check.sh (which sets up the environment): in one call on a
GPU machine, the test suite, nanojaxgpt's bench against nanoGPT's bench.py on the same shapes
(GPT-2 124M, block 1024, bf16, random tokens), determinism, and sampling from GPT-2 124M-sized
random weights. Figures go to OUT/gpu_check.json, each command's output to OUT/logs/.

    python scripts/gpu_check.py OUT NANOGPT_DIR [--variants] [--baby]

`--variants` also times the deterministic plans still undecided (the layers' scan partly or
wholly unrolled under XLA's determinism flags; scripts/xla_determinism_repro.py isolates the
compile error that the unrolled one hit with jax 0.11.2) and the micro-batch of 48.
`--baby` runs nanoGPT's baby GPT side by side (its train.py config/train_shakespeare_char.py with
torch.compile, and configs/train_shakespeare_char.py, both for BABY_ITERS iterations: ms/iter
after warm-up, whole-process seconds, final val loss), then the modern recipe at that size
(configs/speedrun_shakespeare_char_gpu.py) over 3 seeds against nanoGPT's val loss and time.
All nanojaxgpt benchmark compilations run first, several at once and beside the test suite,
into a persistent compilation cache; the timed runs then load them and run one at a time, alone
on the GPU. Determinism: the final loss after 25 steps, from the first compilation, from a
second one made independently (no cache), and from the timed run, must have the same bits.
"""

import concurrent.futures
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
GPT2 = ["configs/train_gpt2.py", "--gradient_accumulation_steps=1"]

# name: (bench arguments, changes to the LayerPlan in force, XLA_FLAGS); configs/train_gpt2.py
# has deterministic=False, so "b12" is the unrolled plan and "b12 deterministic" the scanned one
RUNS = {
    "b12": (["--batch_size=12"], {}, ""),
    "b12 deterministic": (["--batch_size=12", "--deterministic=True"], {}, ""),
    "b24": (["--batch_size=24"], {}, ""),
}
VARIANTS = {
    "b12 deterministic, unroll 2": (["--batch_size=12", "--deterministic=True"], {"scan_unroll": 2}, ""),
    "b12 deterministic, unroll 4": (["--batch_size=12", "--deterministic=True"], {"scan_unroll": 4}, ""),
    "b12 deterministic, unrolled": (["--batch_size=12", "--deterministic=True"], {"scan_unroll": True}, ""),
    "b48": (["--batch_size=48"], {}, ""),
}
# runs whose loss is also computed by an independent second compilation
TWICE = ("b12", "b12 deterministic")

# runs nanojaxgpt's bench with the layer plan in force changed as argv[1] (JSON) says
BENCH_WITH_PLAN = """
import dataclasses, json, sys
from nanojaxgpt import model
changes = json.loads(sys.argv[1])
if changes.get("saved_for_backward") == "cpu":
    changes["saved_for_backward"] = model.LAYER_PLANS["cpu"].saved_for_backward
plan_in_force = model.layer_plan
model.layer_plan = lambda: dataclasses.replace(plan_in_force(), **changes)
from nanojaxgpt.bench import main
main(sys.argv[2:])
"""

# nanoGPT's bench.py as it is, then its peak memory
NANOGPT_BENCH = """
import runpy, torch
runpy.run_path("bench.py", run_name="__main__")
print(f"peak memory: {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB")
"""

SAMPLING = """
import json, sys, time
import jax, jax.numpy as jnp
from nanojaxgpt import GPT, GPTConfig
from nanojaxgpt.checkpoint import save_checkpoint
from nanojaxgpt.bench import bench_sampling
from nanojaxgpt.precision import cast_floats
config = GPTConfig(n_layer=12, n_head=12, n_embd=768, block_size=1024, vocab_size=50304, bias=False, mlp="gelu")
model = GPT.create_instance(config, jax.random.key(0))
save_checkpoint(sys.argv[1], model, (), {"iter_num": 0, "best_val_loss": 0.0, "config": {}})
print(json.dumps(bench_sampling(cast_floats(model, jnp.bfloat16), 5, 500, repeats=1)))
"""


def run(name: str, command: list[str], logs: Path, timeout: float, cwd=REPO, env=None) -> tuple[str, float]:
    """Run `command`, its output to logs/NAME.log; returns (output, seconds)."""
    start = time.perf_counter()
    try:
        result = subprocess.run(command, cwd=cwd, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, timeout=timeout)
        output = result.stdout + ("" if result.returncode == 0 else f"\nexit code {result.returncode}")
    except subprocess.TimeoutExpired as error:
        output = (error.stdout or b"").decode(errors="replace") + f"\ntimed out after {timeout} s"
    seconds = time.perf_counter() - start
    (logs / f"{file_name(name)}.log").write_text(output)
    print(f"[{time.strftime('%H:%M:%S')}] {name}: {seconds:.0f} s", flush=True)
    return output, seconds


def file_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def bench(name: str, spec: tuple, logs: Path, out: Path, env: dict) -> dict:
    """nanojaxgpt's bench of GPT-2 124M (20 timed steps after 5): its figures, or an error."""
    args, plan, xla_flags = spec
    json_out = out / f"{file_name(name)}.json"
    command = [sys.executable, "-c", BENCH_WITH_PLAN, json.dumps(plan), *GPT2, *args,
               "--num_steps=20", "--warmup_steps=5", f"--json_out={json_out}"]
    env = {**env, "XLA_FLAGS": xla_flags} if xla_flags else env
    run(name, command, logs, 240, env=env)
    try:
        figures = json.loads(json_out.read_text())
        json_out.unlink()
        return figures
    except (OSError, ValueError):
        return {"error": f"see logs/{file_name(name)}.log"}


def main(out: Path, nanogpt: Path, variants: bool, baby: bool) -> None:
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    runs = {**RUNS, **(VARIANTS if variants else {})}
    cache = {"JAX_COMPILATION_CACHE_DIR": tempfile.mkdtemp(prefix="jax-cache-"),
             "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}
    # processes that share the GPU take its memory as they need it, not 75% each at start
    shared = {**os.environ, "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
    report = {"date": time.strftime("%Y-%m-%d"), "runs": {}, "determinism": {}}
    report["versions"], _ = run("versions", [sys.executable, "-c",
        "import jax, torch; print(jax.__version__, jax.devices()[0].device_kind, torch.__version__)"],
        logs, 120)

    # 1. compile every bench run into the cache, several at a time, beside the test suite
    with concurrent.futures.ThreadPoolExecutor(5) as pool:
        tests = pool.submit(run, "pytest", [sys.executable, "-m", "pytest", "-n", "8", "-q",
                                            "-p", "no:cacheprovider"], logs, 300, env=shared)
        first = {name: pool.submit(bench, f"compile {name}", spec, logs, out, {**shared, **cache})
                 for name, spec in runs.items()}
        again = {name: pool.submit(bench, f"again {name}", runs[name], logs, out, shared)
                 for name in TWICE if name in runs}
        for name, future in first.items():
            figures = future.result()
            report["runs"][name] = {"cold_compile_s": figures.get("compile_s"),
                                    "error": figures.get("error")}
            report["determinism"][name] = [figures.get("loss")]
        for name, future in again.items():
            report["determinism"][name].append(future.result().get("loss"))
        test_output, test_seconds = tests.result()
    summary = [line for line in test_output.splitlines() if re.search(r"\d+ (passed|failed)", line)]
    report["tests"] = {"summary": summary[-1] if summary else None, "seconds": test_seconds,
                       "failed": re.findall(r"^FAILED (\S+)", test_output, re.M)}
    save(out, report)

    # 2. alone on the GPU: nanoGPT's bench, then each of ours (compiled already), then sampling
    output, _ = run("nanogpt bench b12", [sys.executable, "-c", NANOGPT_BENCH, "--real_data=False",
                                          "--compile=True", "--batch_size=12"], logs, 300, cwd=nanogpt)
    ms = re.search(r"time per iteration: ([\d.]+)ms", output)
    peak = re.search(r"peak memory: (\d+) MiB", output)
    report["nanogpt_b12"] = {"ms_per_iter": float(ms.group(1)) if ms else None,
                             "peak_memory_mib": int(peak.group(1)) if peak else None}
    for name, spec in runs.items():
        figures = bench(f"bench {name}", spec, logs, out, {**os.environ, **cache})
        report["runs"][name].update(figures)
        report["determinism"][name].append(figures.get("loss"))
        save(out, report)
    ours, theirs = report["runs"]["b12"].get("ms_per_iter"), report["nanogpt_b12"]["ms_per_iter"]
    if ours and theirs:
        report["speed_ratio_b12"] = theirs / ours  # our iterations/s over nanoGPT's
        report["nanogpt_b12"]["mfu"] = report["runs"]["b12"]["mfu"] * ours / theirs  # MFU goes as 1/ms
    checkpoint = tempfile.mkdtemp(prefix="random-gpt2-")
    output, _ = run("sampling", [sys.executable, "-c", SAMPLING, checkpoint], logs, 300)
    report["sampling_5x500_bf16"] = read_json_line(output)
    output, _ = run("sample command", [sys.executable, "-m", "nanojaxgpt.sample", f"--out_dir={checkpoint}",
                                       "--num_samples=5", "--max_new_tokens=50", "--dtype=bfloat16"],
                    logs, 200)
    report["sample_command_ok"] = output.count("---------------") == 5
    save(out, report)
    if baby:
        report["baby"] = baby_gpt(nanogpt, logs)
        save(out, report)
    print_summary(report)


BABY_ITERS = 2000  # of nanoGPT's 5000: both runs in about a minute on an H200 (lr decayed over these)
SPEEDRUN_SEEDS = "1337,1338,1339"


def train_log_figures(output: str) -> dict:
    """ms/iter (median of the log lines after the first 5, evaluation steps left out) and the
    last val loss, from nanoGPT's (or our) training log."""
    times = [float(t) for it, t in re.findall(r"^iter (\d+): loss [\d.]+, time ([\d.]+)ms", output, re.M)
             if int(it) % 250 != 0][5:]
    val = re.findall(r"^step \d+: train loss [\d.]+, val loss ([\d.]+)", output, re.M)
    return {"ms_per_iter": sorted(times)[len(times) // 2] if times else None,
            "val_loss": float(val[-1]) if val else None}


def baby_gpt(nanogpt: Path, logs: Path) -> dict:
    """nanoGPT's baby GPT and ours, side by side, then the modern recipe at that size over 3 seeds."""
    text = os.environ.get("TINY_SHAKESPEARE", str(REPO.parent / "shared/data/tinyshakespeare/input.txt"))
    for folder in (nanogpt / "data/shakespeare_char", REPO / "data/shakespeare_char"):
        folder.mkdir(parents=True, exist_ok=True)
        if not (folder / "input.txt").exists():
            (folder / "input.txt").write_bytes(Path(text).read_bytes())
    run("nanogpt prepare shakespeare_char", [sys.executable, "data/shakespeare_char/prepare.py"], logs, 120,
        cwd=nanogpt)
    same = [f"--max_iters={BABY_ITERS}", f"--lr_decay_iters={BABY_ITERS}"]
    figures = {}
    output, seconds = run("nanogpt baby", [sys.executable, "train.py", "config/train_shakespeare_char.py",
                                           "--compile=True", *same], logs, 400, cwd=nanogpt)
    figures["nanogpt"] = {**train_log_figures(output), "process_s": seconds}
    output, seconds = run("ours baby", [sys.executable, "-m", "nanojaxgpt.train", "configs/train_shakespeare_char.py",
                                        "--overwrite_checkpoint=True", *same], logs, 400)
    figures["ours"] = {**train_log_figures(output), "process_s": seconds}
    if figures["nanogpt"]["ms_per_iter"] and figures["ours"]["ms_per_iter"]:
        figures["speed_ratio"] = figures["nanogpt"]["ms_per_iter"] / figures["ours"]["ms_per_iter"]
    target = figures["nanogpt"]["val_loss"]
    output, _ = run("speedrun gpu seeds", [sys.executable, "-m", "nanojaxgpt.seeds",
                                           "configs/speedrun_shakespeare_char_gpu.py", f"--seeds={SPEEDRUN_SEEDS}",
                                           *([f"--target={target}"] if target else [])], logs, 600)
    figures["speedrun"] = [line.strip() for line in output.splitlines() if "seed" in line]
    return figures


def print_summary(report: dict) -> None:
    print(f"tests: {report['tests']}")
    print(f"nanoGPT b12: {report['nanogpt_b12']}, ours/theirs speed {report.get('speed_ratio_b12')}")
    for name, figures in report["runs"].items():
        if "ms_per_iter" not in figures:
            print(f"{name}: {figures}")
            continue
        print(f"{name}: {figures['ms_per_iter']:.1f} ms, MFU {figures['mfu'] * 100:.1f}%, "
              f"compile {figures.get('cold_compile_s') or 0:.0f} s cold, "
              f"{figures['peak_memory_bytes'] / 2**30:.1f} GiB")
    for name, losses in report["determinism"].items():
        print(f"determinism {name}: {losses} {'same bits' if len(set(losses)) == 1 else 'DIFFER'}")
    print(f"sampling: {report['sampling_5x500_bf16']}, sample command ok: {report['sample_command_ok']}")
    if "baby" in report:
        print(f"baby GPT: {json.dumps(report['baby'], indent=1)}")


def save(out: Path, report: dict) -> None:
    (out / "gpu_check.json").write_text(json.dumps(report, indent=1))


def read_json_line(output: str):
    for line in reversed(output.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    return None


if __name__ == "__main__":
    arguments = [a for a in sys.argv[1:] if a not in ("--variants", "--baby")]
    if len(arguments) != 2:
        sys.exit(__doc__)
    main(Path(arguments[0]).resolve(), Path(arguments[1]).resolve(), "--variants" in sys.argv,
         "--baby" in sys.argv)
