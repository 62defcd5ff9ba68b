"""2D Navier-Stokes vorticity datasets: presets, a resumable (and sharded) HDF5 writer.

The writer integrates :class:`sciml.pdes.NavierStokes2D` from random initial vorticities
on a fine grid (``solver_resolution``), keeps every ``solver_resolution // resolution``-th
grid point and stores the trajectories as float32.

File schema (format ``"sciml.ns2d"``, ``format_version`` 1)
------------------------------------------------------------

Datasets:

* ``vorticity`` ``(sample, time, x, y)`` float32, chunked one sample per chunk; the array
  index ``[s, t, i, j]`` is the vorticity of sample ``s`` at ``times[t]`` and the point
  ``(x[i], y[j])`` (first grid axis x, second y, as everywhere in sciml);
* ``times`` ``(time,)`` float64: ``numpy.linspace(t_start, t_end, snapshots)``; every
  run starts at ``t = 0`` from the initial condition, so ``t_start > 0`` skips a spin-up;
* ``x``, ``y`` ``(resolution,)`` float64: grid coordinates ``i * length / resolution``;
* ``vorticity_crc32`` ``(sample,)`` uint32: the crc32 of each sample's stored bytes,
  written with the sample and checked when :class:`NS2DDataset` first reads it;
* ``done`` ``(sample,)`` uint8: 1 once a sample is written and flushed (resume state);
* ``sample_index`` ``(sample,)`` int64: the sample's index in the whole data set (a shard
  holds a subset); sample ``i`` starts from the initial condition drawn with
  ``torch.Generator().manual_seed(sample_seed(seed, i))``, so any sample can be
  regenerated alone.

Attributes:

* ``format`` = ``"sciml.ns2d"``, ``format_version`` = 1;
* ``preset``; physics: ``length``, ``viscosity``, ``drag``, ``forcing`` and
  ``initial_condition`` (descriptions of the fields, as calls of :mod:`sciml.pdes`);
* generator settings: ``samples``, ``t_start``, ``t_end``, ``snapshots``,
  ``solver_resolution``, ``resolution``, ``method``, ``dt``, ``seed``, ``dtype`` (of the
  solve), ``sample_seeding``; shards add ``shard_rank`` and ``shard_world_size``;
* ``mean``, ``std``: of ``vorticity`` over all samples, times and points (float64 sums),
  written when every sample is done; then ``complete`` = True, the last write.

A run interrupted at any point (even by SIGKILL) is resumed by running it again with the
same arguments: finished samples are kept, the others are recomputed, and the result is
bit-identical to an uninterrupted run (the step is fixed, so a sample never depends on the
batch it was solved in). See :mod:`sciml.data._store` for why the file survives a kill.
"""

from __future__ import annotations

import inspect
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from .._validation import check_choice, check_int, check_real
from ..pdes import (
    NavierStokes2D,
    check_step_count,
    fno_forcing,
    gaussian_random_field,
    kolmogorov_forcing,
    mcwilliams_vorticity,
)
from ._ns2d_writer import DTYPES, Writer, shard_path
from ._writer import sample_seed

__all__ = ["PRESETS", "NS2DPreset", "generate_ns2d", "sample_seed", "shard_path"]

_FORCINGS: dict[str, Callable[..., torch.Tensor] | None] = {
    "none": None, "fno": fno_forcing, "kolmogorov": kolmogorov_forcing,
}
_INITIALS: dict[str, Callable[..., torch.Tensor]] = {
    "gaussian_random_field": gaussian_random_field, "mcwilliams": mcwilliams_vorticity,
}
# arguments of the field functions that the writer fills in itself
_RESERVED = {"n", "batch", "length", "generator", "dtype", "device"}


def _check_params(kind: str, fn: Callable[..., torch.Tensor] | None,
                  params: tuple[tuple[str, float], ...]) -> None:
    allowed = set() if fn is None else set(inspect.signature(fn).parameters) - _RESERVED
    for k, _ in params:
        if k not in allowed:
            raise ValueError(f"{kind} takes no parameter {k!r}; its parameters: {sorted(allowed)}")


def _describe(fn_name: str, params: tuple[tuple[str, float], ...], length: float) -> str:
    args = ", ".join(f"{k}={v!r}" for k, v in (*params, ("length", length)))
    return f"sciml.pdes.{fn_name}({args})"


@dataclass(frozen=True)
class NS2DPreset:
    """A Navier-Stokes data set: physics, initial condition, output times, scheme.

    Args:
        name: the preset's name (stored in the file).
        length: side ``L`` of the periodic box.
        viscosity: ``nu``; drag: linear drag ``mu`` (see :class:`~sciml.pdes.NavierStokes2D`).
        forcing: ``"none"``, ``"fno"`` (:func:`~sciml.pdes.fno_forcing`) or
            ``"kolmogorov"`` (:func:`~sciml.pdes.kolmogorov_forcing`).
        forcing_params: keyword arguments of the forcing, as ``((name, value), ...)``.
        initial: ``"gaussian_random_field"`` or ``"mcwilliams"`` (the functions of
            :mod:`sciml.pdes` of those names); initial_params: their keyword arguments.
        t_start, t_end, snapshots: stored times ``linspace(t_start, t_end, snapshots)``.
        method: time scheme of :class:`~sciml.pdes.NavierStokes2D` (a fixed-step one).
        velocity_bound: a bound on ``max|u|`` over the data, which sets the fixed step
            ``dt = 0.5 (length / solver_resolution) / velocity_bound`` (CFL 0.5).
    """

    name: str
    length: float
    viscosity: float
    drag: float
    forcing: str
    forcing_params: tuple[tuple[str, float], ...]
    initial: str
    initial_params: tuple[tuple[str, float], ...]
    t_start: float
    t_end: float
    snapshots: int
    method: str
    velocity_bound: float

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name must be a non-empty string, got {self.name!r}")
        check_real("length", self.length, positive=True)
        check_real("viscosity", self.viscosity, minimum=0)
        check_real("drag", self.drag, minimum=0)
        check_choice("forcing", self.forcing, sorted(_FORCINGS))
        check_choice("initial", self.initial, sorted(_INITIALS))
        _check_params(f"forcing {self.forcing!r}", _FORCINGS[self.forcing], self.forcing_params)
        _check_params(f"initial {self.initial!r}", _INITIALS[self.initial], self.initial_params)
        _check_times(self.t_start, self.t_end, self.snapshots)
        # the solver validates its own settings (method names included)
        NavierStokes2D(viscosity=self.viscosity, length=self.length, drag=self.drag,
                       method=self.method)
        check_real("velocity_bound", self.velocity_bound, positive=True)

    def default_dt(self, solver_resolution: int) -> float:
        """The fixed step ``0.5 * (length / solver_resolution) / velocity_bound``."""
        return 0.5 * (self.length / solver_resolution) / self.velocity_bound

    def forcing_field(self, n: int, *, dtype: torch.dtype = torch.float64,
                      device: torch.device | str | None = None) -> torch.Tensor | None:
        """The vorticity forcing on an ``n x n`` grid (None for unforced flow)."""
        fn = _FORCINGS[self.forcing]
        if fn is None:
            return None
        return fn(n, **dict(self.forcing_params), length=self.length, dtype=dtype, device=device)

    def initial_condition(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """One random initial vorticity ``(1, n, n)`` (float64, CPU) drawn from ``generator``."""
        fn = _INITIALS[self.initial]
        return fn(1, n, **dict(self.initial_params), length=self.length, generator=generator)

    def describe(self) -> dict[str, str]:
        """The forcing and the initial condition as the calls that build them."""
        fn = _FORCINGS[self.forcing]
        forcing = "none" if fn is None else _describe(fn.__name__, self.forcing_params,
                                                      self.length)
        initial = _describe(_INITIALS[self.initial].__name__, self.initial_params, self.length)
        return {"forcing": forcing, "initial_condition": initial}


def _check_times(t_start: object, t_end: object, snapshots: object) -> None:
    t0 = check_real("t_start", t_start, minimum=0)
    t1 = check_real("t_end", t_end, minimum=0)
    n = check_int("snapshots", snapshots, minimum=1)
    if t1 < t0:
        raise ValueError(f"t_end = {t1} is before t_start = {t0} (a preset's t_start is "
                         "where its stored window begins, after a spin-up); pass t_end >= "
                         "t_start, or a smaller t_start (--t-start on the command line)")
    if n == 1 and t1 != t0:
        raise ValueError(
            f"snapshots = 1 stores only t_start = {t0}, but t_end = {t1}; pass t_end = t_start "
            "or more snapshots"
        )


#: The data sets of the literature, at their published settings.
PRESETS: dict[str, NS2DPreset] = {
    # the setting of Li et al., Fourier Neural Operator, ICLR 2021 (nu = 1e-3, T = 50);
    # the last 20 time units are stored
    "fno": NS2DPreset(
        name="fno", length=1.0, viscosity=1e-3, drag=0.0,
        forcing="fno", forcing_params=(("amplitude", 0.1),),
        initial="gaussian_random_field", initial_params=(("alpha", 2.5), ("tau", 7.0)),
        t_start=30.0, t_end=50.0, snapshots=100, method="ifrk4", velocity_bound=0.4,
    ),
    # Kochkov et al., PNAS 2021: forced turbulence with drag 0.1 on the 2 pi box
    "kolmogorov": NS2DPreset(
        name="kolmogorov", length=2 * math.pi, viscosity=1e-3, drag=0.1,
        forcing="kolmogorov", forcing_params=(("wavenumber", 4), ("amplitude", 1.0)),
        initial="mcwilliams", initial_params=(("peak_wavenumber", 4.0), ("max_velocity", 1.0)),
        t_start=0.0, t_end=10.0, snapshots=50, method="ifrk4", velocity_bound=6.0,
    ),
    # McWilliams (1984) decaying turbulence
    "mcwilliams": NS2DPreset(
        name="mcwilliams", length=2 * math.pi, viscosity=1e-3, drag=0.0,
        forcing="none", forcing_params=(),
        initial="mcwilliams", initial_params=(("peak_wavenumber", 4.0), ("max_velocity", 7.0)),
        t_start=0.0, t_end=10.0, snapshots=50, method="ifrk4", velocity_bound=7.0,
    ),
}


def generate_ns2d(
    out: str | os.PathLike,
    *,
    preset: str | NS2DPreset,
    samples: int,
    resolution: int = 64,
    solver_resolution: int = 256,
    seed: int = 0,
    batch_size: int = 4,
    t_start: float | None = None,
    t_end: float | None = None,
    snapshots: int | None = None,
    dt: float | None = None,
    dtype: str = "float64",
    progress: bool = True,
    rank: int = 0,
    world_size: int = 1,
    device: torch.device | str | None = None,
) -> Path:
    """Generate (or finish) a 2D Navier-Stokes data set in the HDF5 file ``out``.

    Each sample ``i`` starts from the preset's random initial vorticity drawn with its own
    generator (seeded by :func:`sample_seed` ``(seed, i)``), is integrated on a
    ``solver_resolution^2`` grid with the fixed step ``dt`` and stored on a
    ``resolution^2`` grid (every ``solver_resolution // resolution``-th point) as float32.
    The file schema is in the module docstring.

    Running the same call again resumes an interrupted run (finished samples are kept) or
    returns at once if the file is complete. With ``world_size > 1`` (one process per rank,
    launched by ``torchrun``), rank ``r`` solves the samples ``i % world_size == r`` into
    :func:`shard_path`, then rank 0 merges the shards into ``out`` (bit-identical to a
    single-process run) and deletes them; ``out`` must be on a file system that every
    rank sees. The merge needs room for the shards and the merged file at once.

    Args:
        out: the HDF5 file to write.
        preset: a name in :data:`PRESETS` or an :class:`NS2DPreset`.
        samples: number of trajectories.
        resolution: stored grid size; must divide ``solver_resolution``.
        solver_resolution: grid size of the solve.
        seed: base seed (>= 0).
        batch_size: samples solved together (does not change the results).
        t_start, t_end, snapshots: override the preset's output times.
        dt: override the preset's step (``preset.default_dt(solver_resolution)``).
        dtype: precision of the solve, ``"float64"`` or ``"float32"``.
        progress: show a progress bar (samples/s), on rank 0 only.
        rank, world_size: this process's place in a ``torch.distributed`` job.
        device: where to solve; default the process's GPU if there is one
            (``cuda:LOCAL_RANK`` under torchrun), else the CPU. Under torchrun pass
            ``"cuda"`` rather than ``"cuda:N"`` (see :func:`~sciml.utils.check_device`).

    Returns:
        ``Path(out)``, once the file is complete.

    Raises:
        ValueError: a bad argument, or ``out`` exists and is not this data set (another
            setting, another format, unreadable): the message names the difference.
        sciml.pdes.NavierStokesBlowUp: the solve blew up (pass a smaller ``dt``).
    """
    if isinstance(preset, str):
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose from {sorted(PRESETS)}")
        preset = PRESETS[preset]
    elif not isinstance(preset, NS2DPreset):
        raise TypeError(f"preset must be a name or an NS2DPreset, got {type(preset).__name__}")
    samples = check_int("samples", samples, minimum=1)
    resolution = check_int("resolution", resolution, minimum=4)
    solver_resolution = check_int("solver_resolution", solver_resolution, minimum=4)
    if solver_resolution % resolution:
        raise ValueError(
            f"solver_resolution = {solver_resolution} is not a multiple of resolution = "
            f"{resolution}: the stored grid takes every k-th solver point; pick e.g. "
            f"solver_resolution = {resolution * max(1, round(solver_resolution / resolution))}"
        )
    seed = check_int("seed", seed, minimum=0)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    t0 = preset.t_start if t_start is None else t_start
    t1 = preset.t_end if t_end is None else t_end
    nt = preset.snapshots if snapshots is None else snapshots
    _check_times(t0, t1, nt)
    step = (preset.default_dt(solver_resolution) if dt is None
            else check_real("dt", dt, positive=True))
    # refuse an absurd step count before any file is made (the solve would run for ever)
    check_step_count(float(t1), step, intervals=int(nt))
    check_choice("dtype", dtype, sorted(DTYPES))
    world_size = check_int("world_size", world_size, minimum=1)
    rank = check_int("rank", rank, minimum=0)
    if rank >= world_size:
        raise ValueError(f"rank = {rank} must be < world_size = {world_size}")
    if samples < world_size:
        raise ValueError(f"samples = {samples} < world_size = {world_size}: every rank needs "
                         "a sample; launch fewer processes")
    writer = Writer(preset, samples=samples, resolution=resolution,
                    solver_resolution=solver_resolution, seed=seed, t_start=float(t0),
                    t_end=float(t1), snapshots=int(nt), dt=float(step), dtype=dtype)
    return writer.run(Path(out), rank=rank, world_size=world_size, batch_size=batch_size,
                      device=device, progress=progress)
