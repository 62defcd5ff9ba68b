"""Reading Navier-Stokes data sets: windows of trajectories as a torch ``Dataset``."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

from .._validation import check_int
from ..pdes import NavierStokes2D
from ._ns2d_writer import FORMAT, FORMAT_VERSION
from ._store import check_format, open_h5, read_checked, stored_checksums

__all__ = ["NS2DDataset"]

_FIX = "regenerate it with `sciml generate ns2d`"
_CORRUPT_FIX = "restore the file from a copy, or delete it and rerun `sciml generate ns2d`"


class NS2DDataset(Dataset):
    """Input/output windows of the trajectories in a file written by :func:`generate_ns2d`.

    Item ``k`` is the window ``vorticity[s, t:t + input_steps + output_steps]`` of sample
    ``s = samples[k // W]`` starting at ``t = (k % W) * stride`` (``W`` windows per
    trajectory, ``W = (T - input_steps - output_steps) // stride + 1``): the first
    ``input_steps`` consecutive frames are the input, the next ``output_steps`` the
    target, both ``(steps, x, y)`` float32. With ``normalize`` the values are
    ``(w - mean) / std`` with the file's statistics; :meth:`denormalize` undoes it.

    The file is opened lazily, once per process, so the data set can be handed to a
    ``DataLoader`` with worker processes. The first read of a trajectory in a process
    checks it against its stored checksum (files written before checksums are not
    checked).

    Args:
        path: the HDF5 file.
        input_steps: frames in the input (>= 1).
        output_steps: frames in the target (>= 1).
        stride: steps between the starts of consecutive windows (>= 1).
        normalize: standardise with the stored mean and std.
        samples: indices of the trajectories to use (e.g. a train/test split), or None
            for all.
        subsample: keep every ``subsample``-th grid point in x and y (e.g. 2 reads a file
            stored at 128^2 as 64^2: the same points a 64^2 file of the solve would hold).

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is unreadable, of another format or version, incomplete (an
            interrupted generation: rerun it), or too short for one window; when an item
            is read, the trajectory does not match its checksum (the file is corrupt).
    """

    #: the ``format`` attribute of the files this class reads
    FORMAT = FORMAT

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        input_steps: int = 10,
        output_steps: int = 40,
        stride: int = 1,
        normalize: bool = True,
        samples: Sequence[int] | None = None,
        subsample: int = 1,
    ) -> None:
        self.path = Path(path)
        self.input_steps = check_int("input_steps", input_steps, minimum=1)
        self.output_steps = check_int("output_steps", output_steps, minimum=1)
        self.stride = check_int("stride", stride, minimum=1)
        self.normalize = bool(normalize)
        self.subsample = check_int("subsample", subsample, minimum=1)
        if not self.path.exists():
            raise FileNotFoundError(f"no data file at {self.path}; {_FIX}")
        with open_h5(self.path, "r", what="the data file", fix=_FIX) as f:
            check_format(f, self.path, fmt=FORMAT, version=FORMAT_VERSION, fix=_FIX)
            if not bool(f.attrs.get("complete", False)):
                done = int(np.count_nonzero(f["done"][:]))
                raise ValueError(
                    f"{self.path} is incomplete ({done} of {f['done'].shape[0]} samples "
                    "done): its generation was interrupted; rerun the same "
                    "`sciml generate ns2d` command to finish it"
                )
            n_samples, n_times = f["vorticity"].shape[:2]
            self.times = np.asarray(f["times"][:])
            self.mean = float(f.attrs["mean"])
            self.std = float(f.attrs["std"])
            self.attrs = {k: (v.item() if hasattr(v, "item") else v) for k, v in f.attrs.items()}
            stored = int(f["vorticity"].shape[-1])
        if stored % self.subsample:
            raise ValueError(
                f"subsample = {self.subsample} does not divide the stored resolution {stored} "
                f"of {self.path}; pick a divisor of {stored}"
            )
        self.resolution = stored // self.subsample
        self.samples = self._samples(samples, n_samples)
        span = self.input_steps + self.output_steps
        if span > n_times:
            raise ValueError(
                f"input_steps + output_steps = {span} exceeds the {n_times} snapshots in "
                f"{self.path}; ask for fewer steps or generate more snapshots"
            )
        self.windows_per_sample = (n_times - span) // self.stride + 1
        self._file: h5py.File | None = None
        self._pid: int | None = None
        self._crcs: np.ndarray | None = None  # this process's copy of the checksums
        self._checked: set[int] = set()  # the trajectories this process has checked

    @staticmethod
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

    def __len__(self) -> int:
        return len(self.samples) * self.windows_per_sample

    def _h5(self) -> h5py.File:
        # one handle per process: a handle inherited through fork is not used
        if self._file is None or self._pid != os.getpid():
            self._file = open_h5(self.path, "r", what="the data file", fix=_FIX)
            self._pid = os.getpid()
            self._crcs = stored_checksums(self._file["vorticity"])
            self._checked = set()
        return self._file

    def __getitem__(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        n = len(self)
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
            raise TypeError(f"index must be an int, got {type(k).__name__}")
        if not -n <= k < n:
            raise IndexError(f"index {k} is out of range for {n} windows")
        k = int(k) % n
        s = self.samples[k // self.windows_per_sample]
        t = (k % self.windows_per_sample) * self.stride
        k0, span = self.subsample, self.input_steps + self.output_steps
        dset = self._h5()["vorticity"]
        if s in self._checked:
            w = dset[s, t:t + span, ::k0, ::k0]
        else:  # the first read of a trajectory checks it whole against its checksum
            w = read_checked(dset, s, self._crcs, self.path, _CORRUPT_FIX)[t:t + span, ::k0, ::k0]
            self._checked.add(s)
        if self.normalize:
            w = (w.astype(np.float64) - self.mean) / self.std
        x = torch.from_numpy(np.ascontiguousarray(w, dtype=np.float32))
        return x[:self.input_steps], x[self.input_steps:]

    @property
    def frame_dt(self) -> float:
        """Time between consecutive stored frames."""
        return float(self.times[1] - self.times[0]) if len(self.times) > 1 else 0.0

    def equation(
        self, *, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None
    ) -> NavierStokes2D:
        """The equation the data solve, at this data set's resolution (for residual losses).

        Rebuilt from the file's preset, viscosity, drag and box length; the forcing is the
        preset's, sampled on the ``resolution`` grid.
        """
        from .ns2d import PRESETS

        name = str(self.attrs.get("preset", ""))
        if name not in PRESETS:
            raise ValueError(
                f"{self.path} was written with preset {name!r}, which is not one of "
                f"{sorted(PRESETS)}; build the NavierStokes2D yourself"
            )
        forcing = PRESETS[name].forcing_field(self.resolution, dtype=dtype, device=device)
        return NavierStokes2D(
            viscosity=float(self.attrs["viscosity"]), length=float(self.attrs["length"]),
            drag=float(self.attrs["drag"]), forcing=forcing,
        )

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """Undo the normalisation of :meth:`__getitem__` (identity without ``normalize``)."""
        return x * self.std + self.mean if self.normalize else x

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
