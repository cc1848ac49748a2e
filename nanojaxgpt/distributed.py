"""Data parallelism and FSDP over every device, on one host or several, with JAX's SPMD.

One mesh axis, `data`, spans all devices of all processes. Batches are split along it. Parameters
and optimizer state are replicated, or with `fsdp=True` each array is split along its largest
axis that the device count divides (the layer axis of the stacked blocks excepted: `lax.scan`
walks it), and XLA inserts the gathers and reduce-scatters. The step is the same code either way.
"""

import os

import equinox as eqx
import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from nanojaxgpt.errors import UsageError


def initialize_multihost(coordinator_address: str, num_processes: int, process_id: int) -> None:
    """Join a multi-process run when one is configured: explicitly by the config keys, or by
    the environment (`JAX_COORDINATOR_ADDRESS`, or SLURM with several tasks; `auto` also lets
    JAX detect Cloud TPU and MPI launches)."""
    if coordinator_address == "auto" or (
        not coordinator_address
        and ("JAX_COORDINATOR_ADDRESS" in os.environ or int(os.environ.get("SLURM_NTASKS", "1")) > 1)
    ):
        jax.distributed.initialize()
    elif coordinator_address:
        if not 0 <= process_id < num_processes:
            raise UsageError(
                f"process_id={process_id} must be in [0, num_processes={num_processes})"
            )
        jax.distributed.initialize(coordinator_address, num_processes, process_id)


# nanoGPT's `device` names (before any ':index') and the JAX platform each one means
DEVICE_PLATFORMS = {"cpu": "cpu", "cuda": "cuda", "gpu": "cuda", "tpu": "tpu"}


def device_platform(device: str) -> str | None:
    """The JAX platform of nanoGPT's `device` name (None for 'auto'), or a UsageError."""
    if device == "auto":
        return None
    if device.split(":")[0] not in DEVICE_PLATFORMS:
        raise UsageError(f"device={device!r} is not one of auto, {', '.join(DEVICE_PLATFORMS)}")
    return DEVICE_PLATFORMS[device.split(":")[0]]


def select_device(device: str) -> None:
    """Point JAX at the platform that nanoGPT's `device` names ('cpu', 'cuda', 'cuda:0', 'tpu';
    'auto' keeps JAX's default) before its first computation, so that no other backend starts
    (a GPU's memory stays free with --device=cpu). A platform this machine lacks is one usage
    error naming those it has."""
    platform = device_platform(device)
    if platform is None:
        return
    jax.config.update("jax_platforms", platform)
    try:
        jax.devices()
    except (RuntimeError, AssertionError):  # jax 0.10 asserts when no backend of it starts
        jax.config.update("jax_platforms", None)
        available = ", ".join(sorted({d.platform for d in jax.devices()}))
        raise UsageError(f"device={device!r}, but JAX finds no {platform} device here (it has: "
                         f"{available}); use --device=auto or one of those") from None


def is_main_process() -> bool:
    return jax.process_index() == 0


def split_iteration(sequences: int, batch_size: int, n_devices: int) -> tuple[int, int, int]:
    """How `sequences` per iteration run on at most `n_devices`: (devices, micro-steps,
    sequences per device per micro-step). All the devices if the sequences split evenly over
    them, else the most devices that they do split over; then the fewest micro-steps that keep
    a device's micro-batch within `batch_size`. nanoGPT's own split, `batch_size` per device
    and gradient_accumulation_steps/n_devices micro-steps, comes out whenever it exists."""
    devices = max(d for d in range(1, n_devices + 1) if sequences % d == 0)
    per_device = sequences // devices
    micro_steps = -(-per_device // batch_size)
    while per_device % micro_steps:
        micro_steps += 1
    return devices, micro_steps, per_device // micro_steps


def make_mesh(n_devices: int | None = None) -> Mesh:
    """The first `n_devices` devices (default: all) on one `data` axis; XLA (not our code)
    decides where collectives go."""
    devices = jax.devices()[: n_devices or jax.device_count()]
    return jax.make_mesh((len(devices),), ("data",), axis_types=(AxisType.Auto,), devices=devices)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Batches (micro-steps, sequences, tokens) are split by sequence."""
    return NamedSharding(mesh, PartitionSpec(None, "data"))


def local_rows(global_batch: int) -> slice:
    """The sequences of a global batch that this process's devices hold."""
    per_process = global_batch // jax.process_count()
    return slice(jax.process_index() * per_process, (jax.process_index() + 1) * per_process)


def to_global_batch(local: np.ndarray, mesh: Mesh) -> jax.Array:
    """One global array from each process's rows of the batch."""
    global_shape = (local.shape[0], local.shape[1] * jax.process_count(), *local.shape[2:])
    return jax.make_array_from_process_local_data(batch_sharding(mesh), local, global_shape)


def _is_stacked(path) -> bool:
    return any(getattr(entry, "name", None) == "h" for entry in path)


def state_shardings(tree, mesh: Mesh, fsdp: bool):
    """A NamedSharding for every array of `tree` (a model, or an optimizer state built from
    one): replicated, or with `fsdp` split along the largest axis the device count divides."""
    n_devices = mesh.devices.size

    def sharding(path, leaf):
        if not fsdp or not eqx.is_array(leaf):
            return NamedSharding(mesh, PartitionSpec())
        first = 1 if _is_stacked(path) and leaf.ndim > 1 else 0
        candidates = [a for a in range(first, leaf.ndim) if leaf.shape[a] % n_devices == 0]
        if not candidates:
            return NamedSharding(mesh, PartitionSpec())
        axis = max(candidates, key=lambda a: leaf.shape[a])
        return NamedSharding(mesh, PartitionSpec(*[("data" if a == axis else None) for a in range(leaf.ndim)]))

    return jax.tree_util.tree_map_with_path(sharding, eqx.filter(tree, eqx.is_array))


def place(tree, shardings):
    """Put every array of `tree` on the devices as `shardings` says. Every process passes the
    same values (they come from the same seed or the same checkpoint)."""
    arrays, static = eqx.partition(tree, eqx.is_array)

    def put(array, sharding):
        host = np.asarray(array)
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    return eqx.combine(jax.tree.map(put, arrays, shardings), static)


def gather_to_host(tree):
    """`tree` with every array whole on this host, for saving: a collective, so every process
    must call it."""
    arrays, static = eqx.partition(tree, eqx.is_array)
    if jax.process_count() > 1:
        arrays = multihost_utils.process_allgather(arrays, tiled=True)
    else:
        arrays = jax.device_get(arrays)
    return eqx.combine(arrays, static)
