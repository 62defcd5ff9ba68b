"""torch.distributed plumbing of the Trainer: process group, sharding, reductions.

Sharding (why the union of the ranks' batches is the single-process batch): each epoch
has one permutation ``perm`` of the ``n`` samples, the same on every rank. It is padded
by wrapping around to a multiple of ``world_size`` and rank ``r`` takes
``perm[r::world_size]``, cut into batches of ``batch_size``. Batch ``k`` of rank ``r`` is
then ``perm[(k * batch_size + j) * world_size + r]`` for ``j < batch_size``: the ranks'
batches ``k`` together are exactly the single-process batch ``k`` of size
``batch_size * world_size``, element ``j * world_size + r`` going to rank ``r``. Since
DistributedDataParallel averages the ranks' gradients, a run on ``W`` processes with
batch ``b`` takes the same steps as one process with batch ``W * b`` (up to rounding)
whenever ``n`` is a multiple of ``W``; otherwise the ``(-n) % W`` wrapped samples are
seen twice per epoch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.distributed as dist

from .._device import check_device, torchrun_world_size


def default_device() -> torch.device:
    """cuda:LOCAL_RANK under torchrun on a CUDA machine, else the CPU (the rule of
    :func:`sciml.utils.check_device` with ``resolve=True`` for ``None``)."""
    return check_device(None, resolve=True)


class Distributed:
    """The process group a fit runs in: set up on entry, torn down on exit if we made it.

    With ``WORLD_SIZE > 1`` and no process group yet, one is initialised from the
    torchrun environment (backend ``nccl`` on CUDA, ``gloo`` on the CPU) and destroyed on
    exit. A group the caller initialised is used and left alone. Without either, the run
    is a single process and every method is a no-op. ``create=False`` never initialises
    a group (see :meth:`current`).
    """

    def __init__(self, device: torch.device, *, create: bool = True) -> None:
        self.device = device
        self.create = create
        self.created = False
        self.active = False
        self.rank = 0
        self.world_size = 1

    def __enter__(self) -> Distributed:
        if not dist.is_available():
            if torchrun_world_size() > 1:
                raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
            return self
        if self.create and not dist.is_initialized() and torchrun_world_size() > 1:
            backend = "nccl" if self.device.type == "cuda" else "gloo"
            if self.device.type == "cuda":
                # "cuda" means this process's GPU, cuda:LOCAL_RANK; another index would
                # put two ranks on one GPU and is refused with the fix
                torch.cuda.set_device(check_device(self.device, resolve=True))
            dist.init_process_group(backend=backend)
            self.created = True
        if dist.is_initialized():
            self.active = dist.get_world_size() > 1
            self.rank = dist.get_rank()
            self.world_size = dist.get_world_size()
        return self

    @classmethod
    def current(cls, device: torch.device) -> Distributed:
        """The process group already in use (if any), without creating one."""
        return cls(device, create=False).__enter__()

    def __exit__(self, *exc: object) -> None:
        if self.created and dist.is_initialized():
            dist.destroy_process_group()
        self.created = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def sum(self, values: Sequence[float] | torch.Tensor) -> list[float]:
        """Sum a few numbers over the ranks in float64 (returned as floats on one process)."""
        if not self.active:
            if isinstance(values, torch.Tensor):
                return values.tolist()
            return [float(v) for v in values]
        if isinstance(values, torch.Tensor):
            t = values.to(self.device, torch.float64)
        else:
            t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t.tolist()

    def gather_objects(self, obj: object) -> list[object]:
        """Every rank's ``obj``, in rank order (``[obj]`` on one process)."""
        if not self.active:
            return [obj]
        out: list[object] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out


def epoch_seed(seed: int, epoch: int) -> int:
    """A well-mixed 63-bit seed for the permutation of ``epoch`` (independent streams)."""
    state = np.random.SeedSequence([seed, epoch]).generate_state(1, dtype=np.uint64)[0]
    return int(state) & (2**63 - 1)


def epoch_order(n: int, epoch: int, *, seed: int, shuffle: bool) -> torch.Tensor:
    """The order of the ``n`` samples in ``epoch``: seeded from ``(seed, epoch)`` only."""
    if not shuffle:
        return torch.arange(n)
    g = torch.Generator()
    g.manual_seed(epoch_seed(seed, epoch))
    return torch.randperm(n, generator=g)


def shard_batches(
    perm: torch.Tensor, batch_size: int, rank: int, world_size: int
) -> list[list[int]]:
    """This rank's batches of ``perm`` (see the module docstring for the layout)."""
    padded = len(perm) + (-len(perm)) % world_size
    if padded > len(perm):
        perm = perm.repeat(math.ceil(padded / len(perm)))[:padded]
    mine = perm[rank::world_size].tolist()
    return [mine[i:i + batch_size] for i in range(0, len(mine), batch_size)]


def steps_per_epoch(n: int, batch_size: int, world_size: int) -> int:
    """Batches per epoch on every rank (equal thanks to the padding)."""
    return math.ceil(math.ceil(n / world_size) / batch_size)
