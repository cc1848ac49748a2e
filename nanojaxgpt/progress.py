"""What a run says while it works, so that no phase of it is silent.

- Compiling the training step is announced before it starts, and its time said after.
- An evaluation (eval_iters batches of each split, in one compiled call) advances a tqdm bar from
  inside the computation, batch by batch; the bar appears only once the evaluation has taken
  EVAL_BAR_DELAY_S seconds, so the default recipe's evaluations (well under a second) show none.
- After ESTIMATE_AFTER timed iterations, a run that will take more than LONG_RUN_S seconds says
  how long, and on a CPU that the GPU-sized configs belong on a GPU.
"""

import contextlib
import time

from tqdm import tqdm

EVAL_BAR_DELAY_S = 3.0
ESTIMATE_AFTER = 3  # iterations timed after the first evaluation
LONG_RUN_S = 600.0

_eval_bar: tqdm | None = None  # the bar of the evaluation running now, if shown


def eval_batch_done(done, loss) -> None:
    """Called by the compiled evaluation (`jax.debug.callback`) when its `done`-th batch has its
    `loss`; setting the count, not adding to it, counts once when each device calls it."""
    del loss  # an argument only so that the call waits for the batch's loss
    if _eval_bar is not None and int(done) > _eval_bar.n:
        _eval_bar.update(int(done) - _eval_bar.n)


@contextlib.contextmanager
def eval_bar(split: str, batches: int, enabled: bool):
    """The progress bar of one split's evaluation, shown after EVAL_BAR_DELAY_S seconds."""
    global _eval_bar
    _eval_bar = tqdm(total=batches, desc=f"eval {split}", unit="batch", leave=False,
                     delay=EVAL_BAR_DELAY_S, disable=not enabled)
    try:
        yield
    finally:
        _eval_bar.close()
        _eval_bar = None


@contextlib.contextmanager
def announce_compile(say):
    say("compiling the training step...")
    start = time.perf_counter()
    yield
    say(f"compiled in {time.perf_counter() - start:.1f} s")


def duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{max(minutes, 1)} min"


def long_run_note(iters_left: int, evals_left: int, iter_s: float, eval_s: float,
                  platform: str) -> str | None:
    """A line saying how long the rest of a run takes, when that is more than LONG_RUN_S."""
    total = iters_left * iter_s + evals_left * eval_s
    if total <= LONG_RUN_S:
        return None
    note = (f"note: this run takes about {duration(total)} more: {iters_left} iterations at "
            f"{iter_s:.2f} s and {evals_left} evaluations at {eval_s:.0f} s")
    if platform == "cpu":
        note += ("; on a CPU, the configs marked GPU in the README take hours: the default "
                 "recipe (python -m nanojaxgpt.train) trains in a few minutes")
    return note
