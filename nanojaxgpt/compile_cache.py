"""JAX's persistent compilation cache for training: a run loads the compiled steps that an
earlier run of the same shapes left in the cache folder instead of compiling them again, which
is most of the time a training process takes before its first iteration."""

import os
import warnings
from pathlib import Path

import jax


def cache_folder(setting: str) -> Path | None:
    """The folder that the `compile_cache` key names: 'auto' is the user's cache folder
    ($XDG_CACHE_HOME or ~/.cache, then nanojaxgpt/jax), '' is none."""
    if not setting:
        return None
    if setting == "auto":
        return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "nanojaxgpt" / "jax"
    return Path(setting).expanduser()


def use_compilation_cache(setting: str) -> None:
    """Keep every compiled program in the folder of `setting`, however quick its compilation
    was. Call it before the first compilation; a cache folder that the user gave JAX itself
    (JAX_COMPILATION_CACHE_DIR) is left as it is. The cache only saves time, so a full disk or
    an unwritable folder costs a compilation, not a warning per program."""
    folder = cache_folder(setting)
    if folder is None or jax.config.jax_compilation_cache_dir:
        return
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    warnings.filterwarnings("ignore", message="Error (reading|writing) persistent compilation cache")
