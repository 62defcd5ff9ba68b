"""The writer behind :func:`sciml.data.generate_ns2d`: batches, resume, shards, merge.

Kept apart from the presets so that each module reads in one sitting; the file schema
is documented in :mod:`sciml.data.ns2d`.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from .._device import AUTO, check_device
from .._files import atomic_path, writer_lock
from ..pdes import NavierStokes2D
from ._store import (
    check_format,
    create_store,
    finalize,
    first_mismatch,
    open_h5,
    read_checked,
    stored_checksums,
    write_sample,
)
from ._writer import FIX, Format, Solve, resume, sample_seed

if TYPE_CHECKING:
    from .ns2d import NS2DPreset

FORMAT = "sciml.ns2d"
FORMAT_VERSION = 1
DTYPES = {"float64": torch.float64, "float32": torch.float32}
#: the store's format; ``SCIML_NS2D_TEST_KILL`` is the test-only kill hook (see ``Format``)
STORE = Format(FORMAT, FORMAT_VERSION, ("vorticity", "done", "times"), "SCIML_NS2D_TEST_KILL")


def shard_path(out: str | os.PathLike, rank: int, world_size: int) -> Path:
    """The file that rank ``rank`` of ``world_size`` writes: ``OUT.rank{r}-of-{K}.h5``."""
    out = Path(out)
    return out.with_name(f"{out.stem}.rank{rank}-of-{world_size}.h5")


class Writer:
    """Writes one data set: a preset at validated settings (see ``generate_ns2d``)."""

    def __init__(self, preset: NS2DPreset, *, samples: int, resolution: int,
                 solver_resolution: int, seed: int, t_start: float, t_end: float,
                 snapshots: int, dt: float, dtype: str) -> None:
        self.preset, self.samples, self.seed, self.dt = preset, samples, seed, dt
        self.n, self.big, self.dtype = resolution, solver_resolution, DTYPES[dtype]
        self.times = np.linspace(t_start, t_end, snapshots)
        #: the attributes that identify the data set (compared when a file is resumed)
        self.settings: dict[str, object] = {
            "format": FORMAT, "format_version": FORMAT_VERSION, "preset": preset.name,
            "length": float(preset.length), "viscosity": float(preset.viscosity),
            "drag": float(preset.drag), **preset.describe(), "samples": samples,
            "t_start": t_start, "t_end": t_end, "snapshots": snapshots,
            "solver_resolution": solver_resolution, "resolution": resolution,
            "method": preset.method, "dt": dt, "seed": seed, "dtype": dtype,
            "sample_seeding": "torch.Generator().manual_seed(sciml.data.sample_seed(seed, i))",
        }

    def run(self, out: Path, *, rank: int, world_size: int, batch_size: int,
            device: torch.device | str | None, progress: bool) -> Path:
        """Write (or finish) ``out``, alone or as rank ``rank`` of ``world_size``."""
        dev = _device(device)
        if world_size == 1:
            with writer_lock(out):
                self.write(out, np.arange(self.samples), batch_size, dev, progress)
            return out
        if STORE.existing(out, self.settings) and STORE.is_complete(out):
            return out
        return _generate_distributed(self, out, rank, world_size, batch_size, dev, progress)

    def create(self, path: Path, settings: Mapping[str, object], index: np.ndarray) -> None:
        grid = np.arange(self.n, dtype=np.float64) * (self.preset.length / self.n)
        create_store(path, attrs=settings, sample_shape=(len(self.times), self.n, self.n),
                     sample_index=index, arrays={"times": self.times, "x": grid, "y": grid})

    def write(self, path: Path, index: np.ndarray, batch_size: int, device: torch.device,
              progress: bool, shard: tuple[int, int] | None = None) -> None:
        """Solve the samples ``index`` not yet done into the store at ``path``.

        ``shard = (rank, world_size)`` marks the file as that rank's shard. The caller
        holds the lock of ``path``.
        """
        settings, desc = dict(self.settings), f"ns2d {self.preset.name}"
        if shard is not None:
            settings.update(shard_rank=shard[0], shard_world_size=shard[1])
            desc += f" (rank {shard[0]} of {shard[1]})"
        resume(STORE, path, settings,
               create=lambda p, attrs: self.create(p, attrs, index),
               solver=lambda f: self._solver(index, device), samples=("vorticity",),
               batch_size=batch_size, progress=progress, desc=desc)

    def _solver(self, index: np.ndarray, device: torch.device) -> Solve:
        """Solves the samples at positions ``batch`` of a file holding samples ``index``."""
        ns = NavierStokes2D(
            viscosity=self.preset.viscosity, length=self.preset.length, drag=self.preset.drag,
            forcing=self.preset.forcing_field(self.big, dtype=self.dtype, device=device),
            method=self.preset.method,
        )
        stride = self.big // self.n

        def solve(batch: list[int]) -> dict[str, np.ndarray]:
            w0 = torch.cat([
                self.preset.initial_condition(self.big, _generator(self.seed, int(index[j])))
                for j in batch
            ]).to(device=device, dtype=self.dtype)
            w = ns.solve(w0, self.times.tolist(), t0=0.0, dt=self.dt)
            return {"vorticity": w[..., ::stride, ::stride].to(torch.float32).cpu().numpy()}

        return solve


def _generator(seed: int, index: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(sample_seed(seed, index))
    return g


def _device(device: torch.device | str | None) -> torch.device:
    """Where this process solves: ``None`` means ``"auto"`` (the rank's GPU if there is
    one, else the CPU); the torchrun rule of :func:`~sciml.utils.check_device`."""
    return check_device(AUTO if device is None else device, "device", resolve=True)


def _generate_distributed(job: Writer, out: Path, rank: int, world_size: int, batch_size: int,
                          device: torch.device, progress: bool) -> Path:
    import torch.distributed as dist

    created = _init_distributed(rank, world_size, device)
    try:
        index = np.arange(rank, job.samples, world_size)
        shard = shard_path(out, rank, world_size)
        with writer_lock(shard):
            job.write(shard, index, batch_size, device, progress and rank == 0,
                      shard=(rank, world_size))
        _barrier(device)
        if rank == 0:
            with writer_lock(out):
                _merge(job, out, world_size)
        _barrier(device)  # every rank returns once the merged file is complete
    finally:
        if created:
            dist.destroy_process_group()
    return out


def _init_distributed(rank: int, world_size: int, device: torch.device) -> bool:
    """Join (or reuse) the process group; True if this call created it."""
    import torch.distributed as dist

    if not dist.is_available():
        raise ValueError("world_size > 1 needs torch.distributed, which this torch build lacks")
    if dist.is_initialized():
        if (dist.get_rank(), dist.get_world_size()) != (rank, world_size):
            raise ValueError(
                f"rank/world_size = {rank}/{world_size} but the process group is "
                f"{dist.get_rank()}/{dist.get_world_size()}; pass the group's values"
            )
        return False
    if "MASTER_ADDR" not in os.environ or "MASTER_PORT" not in os.environ:
        raise ValueError(
            f"world_size = {world_size} needs a torch.distributed job (MASTER_ADDR and "
            f"MASTER_PORT are not set): launch with `torchrun --nproc_per_node {world_size} "
            "-m sciml_recipes generate ns2d ...`, or pass world_size=1"
        )
    if device.type == "cuda":
        torch.cuda.set_device(device)
    # shards can take hours: the barrier waits for the slowest rank (torchrun stops every
    # rank if one fails, so a long timeout does not hang a failed job)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=rank,
                            world_size=world_size, timeout=datetime.timedelta(hours=48))
    return True


def _barrier(device: torch.device) -> None:
    import torch.distributed as dist

    if device.type == "cuda":
        dist.barrier(device_ids=[device.index or 0])
    else:
        dist.barrier()


def _merge(job: Writer, out: Path, world_size: int) -> None:
    """Copy the complete shards into ``out`` in sample order (each sample checked against
    its checksum on the way); delete them afterwards."""
    shards = [shard_path(out, r, world_size) for r in range(world_size)]
    samples = job.samples
    with atomic_path(out) as tmp:
        job.create(tmp, job.settings, np.arange(samples))
        sources = []
        try:
            for r, p in enumerate(shards):
                f = open_h5(p, "r", what="the shard", fix="rerun the same torchrun command")
                sources.append(f)
                check_format(f, p, fmt=FORMAT, version=FORMAT_VERSION, datasets=STORE.datasets,
                             fix="rerun the same torchrun command")
                settings = {**job.settings, "shard_rank": r, "shard_world_size": world_size}
                if first_mismatch(f, settings) is not None or not bool(f.attrs["complete"]):
                    raise ValueError(f"shard {p} is incomplete or from another run; rerun the "
                                     "same torchrun command to finish it")
            with open_h5(tmp, "r+", what="the merged file", fix=FIX) as g:
                vort = g["vorticity"]
                crcs = [stored_checksums(src["vorticity"]) for src in sources]
                for i in range(samples):
                    r, j = i % world_size, i // world_size
                    src = sources[r]
                    if int(src["sample_index"][j]) != i:  # pragma: no cover - defensive
                        raise ValueError(f"{shards[r]} holds sample "
                                         f"{int(src['sample_index'][j])} where {i} belongs")
                    write_sample(vort, i, read_checked(src["vorticity"], j, crcs[r], shards[r],
                                                       "delete it and rerun the same torchrun "
                                                       "command"))
                g.flush()
                g["done"][:] = 1
                g.flush()
                finalize(g)
        finally:
            for f in sources:
                f.close()
    for p in shards:
        p.unlink()
