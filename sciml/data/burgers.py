"""Combined Burgers/KdV data sets (MP-PDE's E1, E2, E3): a resumable writer, a Dataset.

:func:`generate_burgers` solves each batch once at the finest resolution with
:func:`sciml.pdes.generate_trajectories` and stores every resolution.

File schema (format ``"sciml.burgers"``, ``format_version`` 1)
---------------------------------------------------------------

* group ``nx{n}`` per resolution ``n``: dataset ``u`` ``(sample, time, n)`` float32
  (one sample per chunk), ``u[s, k, i]`` the value of sample ``s`` at ``t[k]`` in cell /
  point ``i``; ``u_crc32`` ``(sample,)`` uint32, the crc32 of each sample's stored bytes
  (checked when a sample is read); dataset ``x`` ``(n,)`` float64, the cell centres
  ``(i + 1/2) L / n`` (conservative) or ``linspace(0, L, n)`` (paper); attributes
  ``mean``, ``std`` of ``u``;
* ``t`` ``(time,)`` float64: ``linspace(0, T, nt)``;
* ``theta`` ``(sample, 3)`` float64: ``[alpha, beta, gamma]``;
* ``amplitude``, ``omega``, ``phase`` ``(sample, 5)`` float64 and ``l`` ``(sample, 5)``
  int64: the forcing ``sum_j A_j sin(omega_j t + 2 pi l_j x / L + phi_j)``; sample ``i``'s
  parameters are :func:`sciml.pdes.sample_parameters` ``(family, 1, generator=g)`` with
  ``g = torch.Generator().manual_seed(sample_seed(seed, i))``, all written when the file is
  created;
* ``done`` ``(sample,)`` uint8: 1 once a sample's data are written and flushed;
* attributes: ``format``, ``format_version``, ``family``, ``convention``, ``length``,
  ``T``, ``nt``, ``resolutions`` (e.g. ``"200,100,50,40"``), ``solver_resolution``,
  ``samples``, ``seed``, ``cfl``, ``scheme``, ``sample_seeding``; ``alpha_range``,
  ``beta_range``, ``gamma_range``; ``complete`` (True once every sample is done, the
  last write).

A run killed at any point is resumed by running it again with the same arguments:
finished samples are kept and the others recomputed. Each sample's step sizes depend on
that sample alone, so the file equals an uninterrupted run's bit for bit, whatever the
batch sizes. See :mod:`sciml.data._store` for why a killed writer leaves a sound file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

from .._device import AUTO, check_device
from .._files import writer_lock
from .._validation import check_choice, check_int
from ..pdes.burgers import (
    CONVENTIONS,
    LENGTH,
    CombinedParameters,
    _check_resolutions,
    generate_trajectories,
    get_family,
    grid,
    sample_parameters,
)
from ._store import (
    check_format,
    create_h5,
    create_samples,
    open_h5,
    read_checked,
    stored_checksums,
)
from ._writer import Format, Solve, resume, sample_seed

__all__ = ["BurgersDataset", "generate_burgers"]

FORMAT = "sciml.burgers"
FORMAT_VERSION = 1
CFL = 0.4
#: the store's format; ``SCIML_BURGERS_TEST_KILL`` is the test-only kill hook (see ``Format``)
_STORE = Format(FORMAT, FORMAT_VERSION, ("t", "done", "theta"), "SCIML_BURGERS_TEST_KILL")
_READ_FIX = "regenerate it with `sciml generate burgers`"
_CORRUPT_FIX = "restore the file from a copy, or delete it and rerun `sciml generate burgers`"
_PARAM_KEYS = ("amplitude", "omega", "phase", "l")


def sample_params(family: str, seed: int, index: int) -> CombinedParameters:
    """The parameters of sample ``index`` of a data set generated with ``seed``."""
    g = torch.Generator()
    g.manual_seed(sample_seed(seed, index))
    return sample_parameters(family, 1, generator=g)


def generate_burgers(
    out: str | os.PathLike,
    *,
    family: str,
    convention: str = "conservative",
    samples: int,
    seed: int = 0,
    batch_size: int = 64,
    resolutions: Sequence[int] = (200, 100, 50, 40),
    nt: int = 250,
    progress: bool = True,
    device: torch.device | str | None = None,
) -> Path:
    """Generate (or finish) a combined Burgers/KdV data set in the HDF5 file ``out``.

    Every batch is solved in float64 at ``max(resolutions)`` and coarsened to the other
    resolutions by the ``convention``'s rule (:func:`sciml.pdes.generate_trajectories`);
    the schema is in the module docstring. Running the same call again resumes an
    interrupted run or returns at once if the file is complete.

    Args:
        out: the HDF5 file to write.
        family: ``"E1"``, ``"E2"`` or ``"E3"``.
        convention: ``"conservative"`` or ``"paper"`` (see :mod:`sciml.pdes.burgers`).
        samples: number of trajectories (>= 1).
        seed: base seed (>= 0); sample ``i`` uses :func:`sample_seed` ``(seed, i)``.
        batch_size: samples solved together (does not change the results).
        resolutions: stored grid sizes; each must divide the largest (the solve).
        nt: stored times ``linspace(0, T, nt)``.
        progress: show a tqdm progress bar.
        device: where to solve (default: CUDA if available, ``cuda:LOCAL_RANK`` under
            torchrun, else the CPU; see :func:`~sciml.utils.check_device`).

    Returns:
        ``Path(out)``, once the file is complete.

    Raises:
        ValueError: a bad argument, or ``out`` exists and is not this data set (other
            settings, another format, unreadable): the message names the difference.
    """
    fam = get_family(family)
    convention = check_choice("convention", convention, CONVENTIONS)
    samples = check_int("samples", samples, minimum=1)
    seed = check_int("seed", seed, minimum=0)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    res = _check_resolutions(resolutions)
    nt = check_int("nt", nt, minimum=2)
    # None: the GPU if there is one (this process's under torchrun), else the CPU
    dev = check_device(AUTO if device is None else device, "device", resolve=True)
    out = Path(out)
    settings: dict[str, object] = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "family": fam.name,
        "convention": convention, "length": LENGTH, "T": float(fam.T), "nt": nt,
        "resolutions": ",".join(map(str, res)), "solver_resolution": max(res),
        "samples": samples, "seed": seed, "cfl": CFL,
        "scheme": "finite volumes, WENO5-JS + Godunov flux, 5-point u_xx and u_xxx, "
                  "SSP-RK3, float64",
        "sample_seeding": "sciml.pdes.sample_parameters(family, 1, generator=torch."
                          "Generator().manual_seed(sciml.data.sample_seed(seed, i)))",
    }
    with writer_lock(out):
        resume(_STORE, out, settings,
               create=lambda p, attrs: _create(p, attrs, fam.name, res, nt, fam.T, convention),
               solver=lambda f: _solver(f, fam.name, convention, res, nt, dev),
               samples=[f"nx{n}/u" for n in res], batch_size=batch_size, progress=progress,
               desc=f"burgers {fam.name} ({convention})")
    return out


def _create(path: Path, settings: Mapping[str, object], family: str, res: tuple[int, ...],
            nt: int, T: float, convention: str) -> None:
    """Create the store atomically: metadata, all parameters, allocated (empty) data."""
    samples, seed = int(settings["samples"]), int(settings["seed"])
    p = CombinedParameters.cat([sample_params(family, seed, i) for i in range(samples)])
    fam = get_family(family)

    def build(f: h5py.File) -> None:
        for k, v in settings.items():
            f.attrs[k] = v
        for k in ("alpha", "beta", "gamma"):
            f.attrs[f"{k}_range"] = np.asarray(getattr(fam, k), dtype=np.float64)
        f.attrs["complete"] = False
        f.create_dataset("t", data=np.linspace(0.0, T, nt))
        f.create_dataset("done", data=np.zeros(samples, np.uint8))
        f.create_dataset("theta", data=p.theta().numpy())
        for k in _PARAM_KEYS:
            f.create_dataset(k, data=getattr(p, k).numpy())
        for n in res:
            g = f.create_group(f"nx{n}")
            create_samples(g, "u", (samples, nt, n))
            g.create_dataset("x", data=grid(n, convention=convention).numpy())
            g.attrs["mean"] = np.nan
            g.attrs["std"] = np.nan

    create_h5(path, build)


def _read_params(f: h5py.File, index: Sequence[int] | slice) -> CombinedParameters:
    theta = torch.from_numpy(np.asarray(f["theta"][index], dtype=np.float64))
    kw = {k: torch.from_numpy(np.asarray(f[k][index])) for k in _PARAM_KEYS}
    return CombinedParameters(alpha=theta[:, 0], beta=theta[:, 1], gamma=theta[:, 2], **kw)


def _solver(f: h5py.File, family: str, convention: str, res: tuple[int, ...], nt: int,
            device: torch.device) -> Solve:
    """Solves the samples ``batch`` of ``f`` (their parameters are in the file)."""

    def solve(batch: list[int]) -> dict[str, np.ndarray]:
        u = generate_trajectories(_read_params(f, batch), family=family, convention=convention,
                                  resolutions=res, nt=nt, dtype=torch.float64, device=device)
        return {f"nx{n}/u": u[n].to(torch.float32).cpu().numpy() for n in res}

    return solve


class BurgersDataset(Dataset):
    """Whole trajectories at one resolution of a file written by :func:`generate_burgers`.

    Item ``k`` is ``(u, theta)``: ``u`` the trajectory ``(nt, nx)`` float32 of sample
    ``samples[k]``, ``theta`` its ``[alpha, beta, gamma]`` ``(3,)`` float32. The file is
    opened lazily, once per process, so the data set can go to a ``DataLoader`` with
    worker processes.

    Args:
        path: the HDF5 file.
        nx: the resolution to read (one of the file's ``resolutions``).
        samples: indices of the trajectories to use (e.g. a split), or None for all.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: unreadable, another format or version, incomplete (rerun the
            generation), no such resolution, samples out of range.
    """

    def __init__(self, path: str | os.PathLike, nx: int, *,
                 samples: Sequence[int] | None = None) -> None:
        self.path = Path(path)
        self.nx = check_int("nx", nx, minimum=1)
        if not self.path.exists():
            raise FileNotFoundError(f"no data file at {self.path}; {_READ_FIX}")
        with open_h5(self.path, "r", what="the data file", fix=_READ_FIX) as f:
            check_format(f, self.path, fmt=FORMAT, version=FORMAT_VERSION, fix=_READ_FIX,
                         datasets=("t", "done", "theta"))
            if not bool(f.attrs["complete"]):
                done = int(np.count_nonzero(f["done"][:]))
                raise ValueError(
                    f"{self.path} is incomplete ({done} of {f['done'].shape[0]} samples "
                    "done): its generation was interrupted; rerun the same `sciml generate "
                    "burgers` command to finish it")
            self.resolutions = tuple(int(r) for r in str(f.attrs["resolutions"]).split(","))
            if f"nx{self.nx}" not in f:
                raise ValueError(f"{self.path} has no resolution nx = {self.nx}; it holds "
                                 f"{list(self.resolutions)}")
            self._x = np.asarray(f[f"nx{self.nx}/x"][:])
            self._t = np.asarray(f["t"][:])
            self.attrs = {k: (v.item() if hasattr(v, "item") and np.ndim(v) == 0 else v)
                          for k, v in f.attrs.items()}
            n = int(f["done"].shape[0])
        self.samples = _samples(samples, n)
        self._file: h5py.File | None = None
        self._pid: int | None = None
        self._crcs: np.ndarray | None = None  # this process's copy of the checksums
        self._checked: set[int] = set()  # the samples this process has checked

    @property
    def x(self) -> np.ndarray:
        """Coordinates of the ``nx`` values (cell centres or linspace points)."""
        return self._x

    @property
    def t(self) -> np.ndarray:
        """The ``nt`` stored times."""
        return self._t

    @property
    def dt(self) -> float:
        """Time between consecutive stored frames."""
        return float(self._t[1] - self._t[0])

    @property
    def length(self) -> float:
        return float(self.attrs["length"])

    @property
    def family(self) -> str:
        return str(self.attrs["family"])

    @property
    def convention(self) -> str:
        return str(self.attrs["convention"])

    def parameters(self, items: Sequence[int] | None = None) -> CombinedParameters:
        """The full parameters (forcing included) of items ``items`` (default all), e.g.
        for :func:`sciml.pdes.solve_combined`."""
        n = len(self)
        idx = list(range(n)) if items is None else [int(k) for k in items]
        bad = [k for k in idx if not -n <= k < n]
        if bad or not idx:
            raise ValueError(f"items {bad or idx} are not indices of the {n} trajectories")
        rows = [self.samples[k] for k in idx]
        unique = sorted(set(rows))  # h5py reads increasing, unique indices
        with open_h5(self.path, "r", what="the data file", fix=_READ_FIX) as f:
            p = _read_params(f, unique)
        pos = {r: i for i, r in enumerate(unique)}
        return p[torch.tensor([pos[r] for r in rows], dtype=torch.long)]

    def __len__(self) -> int:
        return len(self.samples)

    def _h5(self) -> h5py.File:
        if self._file is None or self._pid != os.getpid():
            self._file = open_h5(self.path, "r", what="the data file", fix=_READ_FIX)
            self._pid = os.getpid()
            self._crcs = stored_checksums(self._file[f"nx{self.nx}/u"])
            self._checked = set()
        return self._file

    def __getitem__(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        n = len(self)
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
            raise TypeError(f"index must be an int, got {type(k).__name__}")
        if not -n <= k < n:
            raise IndexError(f"index {k} is out of range for {n} trajectories")
        s = self.samples[int(k) % n]
        f = self._h5()
        dset = f[f"nx{self.nx}/u"]
        if s in self._checked:
            u = dset[s]
        else:  # the first read of a sample checks it against its checksum
            u = read_checked(dset, s, self._crcs, self.path, _CORRUPT_FIX)
            self._checked.add(s)
        u = torch.from_numpy(np.ascontiguousarray(u, dtype=np.float32))
        theta = torch.from_numpy(np.asarray(f["theta"][s], dtype=np.float32))
        return u, theta

    def __getstate__(self) -> dict[str, object]:
        state = dict(self.__dict__)
        state["_file"] = None  # an h5py handle cannot be pickled (spawned workers)
        state["_pid"] = None
        return state

    def close(self) -> None:
        """Close this process's file handle (reopened on the next item)."""
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._file = None


def _samples(samples: Sequence[int] | None, n: int) -> tuple[int, ...]:
    if samples is None:
        return tuple(range(n))
    out = tuple(check_int(f"samples[{i}]", s, minimum=0) for i, s in enumerate(samples))
    if not out:
        raise ValueError("samples is empty; pass None for all or at least one index")
    bad = [s for s in out if s >= n]
    if bad:
        raise ValueError(f"samples {bad} are out of range: the file holds {n} samples")
    return out
