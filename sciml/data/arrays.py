"""Your own operator-learning data: arrays in an HDF5 or NPZ file, as a torch ``Dataset``.

Two layouts are read, by key:

* **pairs**: an input array ``(samples, in_channels, *grid)`` and a target array
  ``(samples, out_channels, *grid)`` on the same grid of 1 to 3 axes (a coefficient field
  and the solution it gives, an initial condition and the state at a later time);
* **trajectories**: one array ``(samples, time, *grid)``; item ``k`` is a window of
  ``input_steps`` consecutive frames (the input) and the ``output_steps`` frames after them
  (the target), as for :class:`~sciml.data.NS2DDataset`.

:class:`ArrayData` describes the file (keys, split, window shape, resolution) and hands
out the train and test :class:`ArrayDataset`; :class:`Normalization` holds the statistics
of the training samples that standardise both. A model trained on normalised items
predicts normalised targets: :meth:`ArrayDataset.denormalize` gives them their units back.

A file may also hold the test samples at a finer resolution (``fine_inputs`` /
``fine_targets``): a Fourier neural operator trained on the coarse grid evaluates on it
zero-shot. Training at a ``subsample`` of the stored grid leaves the full grid for the
same purpose.

Example::

    import numpy as np
    np.savez("mine.npz", a=coefficients, u=solutions)        # (N, 1, 64, 64) each
    data = ArrayData("mine.npz", inputs="a", targets="u", test_samples=100)
    train, test = data.dataset("train"), data.dataset("test")   # items (x, y), normalised
"""

from __future__ import annotations

import math
import os
import zipfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

from .._validation import check_bool, check_choice, check_int

__all__ = ["ArrayData", "ArrayDataset", "Normalization"]

_CHUNK = 64  # samples read together for the statistics


def _check_key(name: str, v: object, *, optional: bool = False) -> str | None:
    if v is None and optional:
        return None
    if not isinstance(v, str) or not v:
        none = " or None" if optional else ""
        raise TypeError(f"{name} must be the name of an array in the file (a non-empty str)"
                        f"{none}, got {v!r}")
    return v


class _Source:
    """The arrays of one file, opened lazily once per process (HDF5 read on demand, NPZ
    arrays loaded whole the first time they are used)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._pid: int | None = None
        self._h5: h5py.File | None = None
        self._npz: dict[str, np.ndarray] = {}
        self.kind = "hdf5" if h5py.is_hdf5(path) else "npz"
        if self.kind == "npz" and not zipfile.is_zipfile(path):
            raise ValueError(
                f"{path} is neither an HDF5 file nor an NPZ archive; save your arrays with "
                "numpy.savez(path, x=inputs, y=targets) or with h5py")

    def keys(self) -> list[str]:
        if self.kind == "hdf5":
            names: list[str] = []
            self._file().visititems(
                lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
            return names
        with np.load(self.path, allow_pickle=False) as z:
            return list(z.files)

    def _file(self) -> h5py.File:
        if self._h5 is None or self._pid != os.getpid():
            try:
                self._h5 = h5py.File(self.path, "r")
            except OSError as e:
                raise ValueError(f"cannot open {self.path} as HDF5 ({e}); check the file") from None
            self._pid = os.getpid()
        return self._h5

    def array(self, key: str) -> h5py.Dataset | np.ndarray:
        """The array ``key`` (an h5py dataset, read on slicing, or an in-memory array)."""
        if self.kind == "hdf5":
            f = self._file()
            if key not in f or not isinstance(f[key], h5py.Dataset):
                raise KeyError(key)
            return f[key]
        if self._pid != os.getpid():
            self._npz, self._pid = {}, os.getpid()
        if key not in self._npz:
            try:
                with np.load(self.path, allow_pickle=False) as z:
                    if key not in z.files:
                        raise KeyError(key)
                    self._npz[key] = z[key]
            except ValueError as e:  # an object array (pickled): refused, never unpickled
                raise ValueError(f"the array {key!r} in {self.path} cannot be read without "
                                 f"pickle ({e}); store a numeric array") from None
        return self._npz[key]

    def shape(self, key: str, what: str) -> tuple[int, ...]:
        try:
            a = self.array(key)
        except KeyError:
            raise ValueError(
                f"{self.path} holds no array {key!r} ({what}); it holds "
                f"{sorted(self.keys())}: pass the right key") from None
        if not np.issubdtype(a.dtype, np.number) or np.issubdtype(a.dtype, np.complexfloating):
            raise ValueError(f"the array {key!r} in {self.path} has dtype {a.dtype}; store "
                             "real numbers (float32 or float64)")
        return tuple(int(n) for n in a.shape)

    def close(self) -> None:
        if self._h5 is not None and self._pid == os.getpid():
            self._h5.close()
        self._h5, self._npz, self._pid = None, {}, None

    def __getstate__(self) -> dict[str, object]:
        return {"path": self.path, "kind": self.kind, "_pid": None, "_h5": None, "_npz": {}}


@dataclass(frozen=True)
class Normalization:
    """The affine maps ``(v - mean) / std`` of the inputs and the targets, per channel.

    ``input_mean`` / ``input_std`` hold one value per input channel, or a single value
    shared by all (trajectories, whose channels are frames of one field); the same for the
    targets. A channel that does not vary over the training samples keeps ``std = 1``.
    :meth:`identity` is the map that changes nothing.
    """

    input_mean: tuple[float, ...]
    input_std: tuple[float, ...]
    target_mean: tuple[float, ...]
    target_std: tuple[float, ...]

    def __post_init__(self) -> None:
        for name in ("input_mean", "input_std", "target_mean", "target_std"):
            v = getattr(self, name)
            if isinstance(v, (str, bytes)) or not isinstance(v, Sequence) or not v:
                raise TypeError(f"{name} must be a non-empty sequence of numbers, got {v!r}")
            vals = tuple(float(e) for e in v)
            if not all(math.isfinite(e) for e in vals):
                raise ValueError(f"{name} holds a non-finite value: {vals}")
            if name.endswith("std") and min(vals) <= 0:
                raise ValueError(f"{name} must be > 0, got {vals}")
            object.__setattr__(self, name, vals)

    @classmethod
    def identity(cls) -> Normalization:
        return cls((0.0,), (1.0,), (0.0,), (1.0,))

    def to_dict(self) -> dict[str, list[float]]:
        """JSON-safe; ``Normalization(**d)`` rebuilds it."""
        return {k: list(v) for k, v in asdict(self).items()}

    @staticmethod
    def _apply(v: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...], dims: int,
               inverse: bool) -> torch.Tensor:
        m = torch.tensor(mean, dtype=v.dtype, device=v.device)
        s = torch.tensor(std, dtype=v.dtype, device=v.device)
        if len(mean) > 1:  # per channel: the axis before the grid
            m, s = m.reshape(-1, *([1] * dims)), s.reshape(-1, *([1] * dims))
        return v * s + m if inverse else (v - m) / s

    def inputs(self, x: torch.Tensor, dims: int) -> torch.Tensor:
        """Normalise inputs ``(..., channels, *grid)`` with ``dims`` grid axes."""
        return self._apply(x, self.input_mean, self.input_std, dims, False)

    def targets(self, y: torch.Tensor, dims: int) -> torch.Tensor:
        """Normalise targets ``(..., channels, *grid)``."""
        return self._apply(y, self.target_mean, self.target_std, dims, False)

    def denormalize(self, y: torch.Tensor, dims: int) -> torch.Tensor:
        """Undo :meth:`targets`: a prediction in the data's units."""
        return self._apply(y, self.target_mean, self.target_std, dims, True)


@dataclass(frozen=True)
class ArrayData:
    """Which arrays of a file a model learns from, how they are split and windowed.

    Args:
        path: an HDF5 file or an NPZ archive (``numpy.savez``) holding the arrays.
        inputs, targets: keys of the input ``(samples, in_channels, *grid)`` and target
            ``(samples, out_channels, *grid)`` arrays (pairs; ignored with
            ``trajectories``). Arrays without a channel axis need one: ``a[:, None]``.
        trajectories: key of a ``(samples, time, *grid)`` array; items are then windows
            of ``input_steps`` frames in and ``output_steps`` frames out.
        input_steps, output_steps: frames in and out of a window (trajectories only).
        stride, test_stride: steps between the starts of training / test windows
            (``test_stride`` None: as ``stride``).
        test_samples: samples held out for testing, the last ones in the file (None: a
            fifth of them, at least one). Shuffle an ordered file before writing it.
        subsample: spatial stride (2 trains at 32 points per axis on a file stored at 64).
        normalize: standardise inputs and targets with the training samples' statistics.
        fine_inputs, fine_targets: keys of the same kind of arrays at a finer resolution,
            for zero-shot evaluation (for trajectories only ``fine_inputs``, the fine
            trajectories). If they hold as many samples as the main arrays they are taken
            to be the same samples and only the test ones are used; otherwise all of them
            are test samples.

    Raises:
        FileNotFoundError: no file at ``path``.
        TypeError, ValueError: a bad setting (named), a file that is neither HDF5 nor NPZ,
            a missing key (the message lists the keys the file holds), arrays whose shapes
            do not fit together, or too few samples or frames.
    """

    path: str
    inputs: str = "x"
    targets: str = "y"
    trajectories: str | None = None
    input_steps: int = 1
    output_steps: int = 1
    stride: int = 1
    test_stride: int | None = None
    test_samples: int | None = None
    subsample: int = 1
    normalize: bool = True
    fine_inputs: str | None = None
    fine_targets: str | None = None
    _shapes: dict = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.path, (str, os.PathLike)) or str(self.path) == "":
            raise TypeError(f"path must be a file path (str or pathlib.Path), got {self.path!r}")
        path = Path(self.path)
        if not path.is_file():
            raise FileNotFoundError(f"no data file at {str(path)!r}; pass the HDF5 or NPZ file "
                                    "that holds your arrays")
        object.__setattr__(self, "path", str(path))
        _check_key("inputs", self.inputs)
        _check_key("targets", self.targets)
        for name in ("trajectories", "fine_inputs", "fine_targets"):
            _check_key(name, getattr(self, name), optional=True)
        for name in ("input_steps", "output_steps", "stride", "subsample"):
            check_int(name, getattr(self, name), minimum=1)
        if self.test_stride is not None:
            check_int("test_stride", self.test_stride, minimum=1)
        if self.test_samples is not None:
            check_int("test_samples", self.test_samples, minimum=1)
        check_bool("normalize", self.normalize)
        if self.trajectories is None and (self.fine_inputs is None) != (self.fine_targets is None):
            raise ValueError("fine_inputs and fine_targets go together for pairs: pass both "
                             "keys, or neither")
        if self.trajectories is not None and self.fine_targets is not None:
            raise ValueError("fine_targets is for pairs; with trajectories pass the fine "
                             "trajectories as fine_inputs")
        object.__setattr__(self, "_shapes", self._read_shapes())

    # -- the file ---------------------------------------------------------------------
    def _read_shapes(self) -> dict[str, tuple[int, ...]]:
        src = _Source(Path(self.path))
        try:
            return self._check_shapes(src)
        finally:
            src.close()

    def _check_shapes(self, src: _Source) -> dict[str, tuple[int, ...]]:
        p = self.path
        if self.trajectories is not None:
            u = src.shape(self.trajectories, "trajectories")
            if not 3 <= len(u) <= 5:
                raise ValueError(
                    f"trajectories {self.trajectories!r} in {p} has shape {u}; it must be "
                    "(samples, time, *grid) with 1 to 3 grid axes")
            span = self.input_steps + self.output_steps
            if span > u[1]:
                raise ValueError(
                    f"input_steps + output_steps = {span} exceeds the {u[1]} frames of "
                    f"{self.trajectories!r} in {p}; ask for fewer steps")
            shapes = {"x": u, "y": u}
            if self.fine_inputs is not None:
                f = src.shape(self.fine_inputs, "fine_inputs")
                if len(f) != len(u) or f[1] < span:
                    raise ValueError(
                        f"fine_inputs {self.fine_inputs!r} in {p} has shape {f}; it must be "
                        f"(samples, time >= {span}, *grid) with {len(u) - 2} grid axes like "
                        f"{self.trajectories!r} {u}")
                shapes["fine_x"] = shapes["fine_y"] = f
        else:
            x = src.shape(self.inputs, "inputs")
            y = src.shape(self.targets, "targets")
            for key, s in ((self.inputs, x), (self.targets, y)):
                if not 3 <= len(s) <= 5:
                    raise ValueError(
                        f"{key!r} in {p} has shape {s}; pairs must be (samples, channels, "
                        "*grid) with 1 to 3 grid axes (add a channel axis with a[:, None])")
            if x[0] != y[0] or x[2:] != y[2:]:
                raise ValueError(
                    f"inputs {self.inputs!r} {x} and targets {self.targets!r} {y} in {p} must "
                    "hold the same samples on the same grid: (N, C_in, *grid) and (N, C_out, "
                    "*grid)")
            shapes = {"x": x, "y": y}
            if self.fine_inputs is not None:
                fx = src.shape(self.fine_inputs, "fine_inputs")
                fy = src.shape(self.fine_targets, "fine_targets")
                if (len(fx) != len(x) or len(fy) != len(y) or fx[1] != x[1] or fy[1] != y[1]
                        or fx[0] != fy[0] or fx[2:] != fy[2:]):
                    raise ValueError(
                        f"the fine arrays {self.fine_inputs!r} {fx} and {self.fine_targets!r} "
                        f"{fy} in {p} must match {x} and {y} in all but the sample count and "
                        "the grid size, and share their own samples and grid")
                shapes["fine_x"], shapes["fine_y"] = fx, fy
        n = shapes["x"][0]
        held = self.test_samples if self.test_samples is not None else max(1, round(n / 5))
        if held >= n:
            raise ValueError(
                f"test_samples = {held} leaves nothing to train on: {p} holds {n} samples; "
                "hold out fewer (or add samples)")
        grid = shapes["x"][2:]
        bad = [g for g in grid if g % self.subsample]
        if bad:
            raise ValueError(f"subsample = {self.subsample} does not divide the grid {grid} "
                             f"of {p}; pick a common divisor")
        return shapes

    @property
    def layout(self) -> str:
        """``"pairs"`` or ``"trajectories"``."""
        return "pairs" if self.trajectories is None else "trajectories"

    @property
    def samples(self) -> int:
        """The number of samples in the file."""
        return self._shapes["x"][0]

    def grid(self, subsample: int | None = None, *, fine: bool = False) -> tuple[int, ...]:
        """The grid of the items (at ``subsample``, default the training one)."""
        k = self.subsample if subsample is None else check_int("subsample", subsample,
                                                                 minimum=1)
        shape = self._shapes["fine_x" if fine else "x"]
        return tuple(n // k for n in shape[2:])

    @property
    def has_fine(self) -> bool:
        """Whether the file holds fine arrays (``fine_inputs``)."""
        return "fine_x" in self._shapes

    @property
    def channels(self) -> tuple[int, int]:
        """Channels of an item's input and target."""
        if self.trajectories is not None:
            return self.input_steps, self.output_steps
        return self._shapes["x"][1], self._shapes["y"][1]

    def split(self) -> tuple[list[int], list[int]]:
        """Train and test sample indices: the last ``test_samples`` are held out."""
        n = self.samples
        held = self.test_samples if self.test_samples is not None else max(1, round(n / 5))
        return list(range(n - held)), list(range(n - held, n))

    # -- statistics and data sets -----------------------------------------------------
    def statistics(self) -> Normalization:
        """Mean and std of the training samples (per channel for pairs, one pair of values
        for trajectories), read in chunks in float64; the identity without ``normalize``.

        Raises:
            ValueError: a training sample holds NaN or Inf (named by key and index).
        """
        if not self.normalize:
            return Normalization.identity()
        train, _ = self.split()
        src = _Source(Path(self.path))
        try:
            if self.trajectories is not None:
                m, s = self._moments(src, self.trajectories, train, per_channel=False)
                return Normalization(m, s, m, s)
            mi, si = self._moments(src, self.inputs, train, per_channel=True)
            mo, so = self._moments(src, self.targets, train, per_channel=True)
            return Normalization(mi, si, mo, so)
        finally:
            src.close()

    def _moments(self, src: _Source, key: str, samples: list[int], *, per_channel: bool
                 ) -> tuple[tuple[float, ...], tuple[float, ...]]:
        a = src.array(key)
        k = self.subsample
        total = count = square = 0.0
        for i in range(0, len(samples), _CHUNK):
            lo, hi = samples[i], samples[min(i + _CHUNK, len(samples)) - 1] + 1
            block = np.asarray(a[lo:hi], dtype=np.float64)
            block = block[(slice(None), slice(None)) + (slice(None, None, k),) * (block.ndim - 2)]
            if not np.isfinite(block).all():
                bad = lo + int(np.argwhere(~np.isfinite(block))[0][0])
                raise ValueError(f"sample {bad} of {key!r} in {self.path} holds NaN or Inf; "
                                 "fix or drop it before training")
            axes = (0, *range(2, block.ndim)) if per_channel else None
            total = total + block.sum(axis=axes)
            square = square + (block * block).sum(axis=axes)
            count += block.size / (block.shape[1] if per_channel else 1)
        mean = np.atleast_1d(total / count)
        var = np.maximum(np.atleast_1d(square / count) - mean * mean, 0.0)
        std = np.sqrt(var)
        scale = np.maximum(np.abs(mean), 1.0)
        std = np.where(std > 1e-12 * scale, std, 1.0)  # a constant channel is left as it is
        return tuple(float(v) for v in mean), tuple(float(v) for v in std)

    def dataset(self, part: str, *, normalization: Normalization | None = None,
                subsample: int | None = None) -> ArrayDataset:
        """The ``"train"`` or ``"test"`` items, or ``"fine"``: the test samples of the fine
        arrays (at full resolution unless ``subsample``).

        Args:
            part: ``"train"``, ``"test"`` or ``"fine"``.
            normalization: the statistics to apply (default: :meth:`statistics`, computed
                from the training samples; pass the stored ones of a trained model).
            subsample: override the spatial stride (1 on a model trained at 2 evaluates
                zero-shot at the stored resolution).

        Raises:
            ValueError: ``part`` is unknown, or ``"fine"`` on a file without fine arrays.
        """
        check_choice("part", part, ("train", "test", "fine"))
        if normalization is None:
            normalization = self.statistics()
        elif not isinstance(normalization, Normalization):
            raise TypeError(f"normalization must be a Normalization or None, got "
                            f"{type(normalization).__name__}")
        train, test = self.split()
        if part == "fine":
            if not self.has_fine:
                raise ValueError(f"{self.path} has no fine arrays: set fine_inputs (and "
                                 "fine_targets for pairs) to their keys")
            n_fine = self._shapes["fine_x"][0]
            samples = test if n_fine == self.samples else list(range(n_fine))
            k = 1 if subsample is None else subsample
        else:
            samples = train if part == "train" else test
            k = self.subsample if subsample is None else subsample
        stride = self.stride if part == "train" else (self.test_stride or self.stride)
        return ArrayDataset(self, samples, normalization, subsample=k, stride=stride,
                            fine=part == "fine")

    def settings(self) -> dict[str, object]:
        """The constructor arguments (JSON-safe): ``ArrayData(**data.settings())``."""
        d = asdict(self)
        d.pop("_shapes", None)
        return d


class ArrayDataset(Dataset):
    """Normalised ``(input, target)`` items of an :class:`ArrayData` (float32 tensors).

    Pairs give ``(in_channels, *grid)`` and ``(out_channels, *grid)``; trajectories give
    ``(input_steps, *grid)`` and ``(output_steps, *grid)`` windows (sample ``samples[k //
    W]`` from frame ``(k % W) * stride``, ``W`` windows per sample). Build it with
    :meth:`ArrayData.dataset`. The file is opened once per process, so the data set can go
    to a ``DataLoader`` with workers.
    """

    def __init__(self, data: ArrayData, samples: Sequence[int], normalization: Normalization,
                 *, subsample: int = 1, stride: int = 1, fine: bool = False) -> None:
        if not isinstance(data, ArrayData):
            raise TypeError(f"data must be an ArrayData, got {type(data).__name__}")
        self.data = data
        self.samples = tuple(int(s) for s in samples)
        self.normalization = normalization
        self.subsample = check_int("subsample", subsample, minimum=1)
        self.stride = check_int("stride", stride, minimum=1)
        self.fine = bool(fine)
        shape = data._shapes["fine_x" if fine else "x"]
        bad = [g for g in shape[2:] if g % self.subsample]
        if bad:
            raise ValueError(f"subsample = {self.subsample} does not divide the grid "
                             f"{shape[2:]} of {data.path}; pick a common divisor")
        self.grid = tuple(n // self.subsample for n in shape[2:])
        self.dims = len(self.grid)
        if data.trajectories is not None:
            span = data.input_steps + data.output_steps
            self.windows_per_sample = (shape[1] - span) // self.stride + 1
        else:
            self.windows_per_sample = 1
        self._src = _Source(Path(data.path))

    @property
    def resolution(self) -> int:
        """Points along the first grid axis."""
        return self.grid[0]

    def __len__(self) -> int:
        return len(self.samples) * self.windows_per_sample

    def _keys(self) -> tuple[str, str]:
        d = self.data
        if d.trajectories is not None:
            key = d.fine_inputs if self.fine else d.trajectories
            return key, key
        return (d.fine_inputs, d.fine_targets) if self.fine else (d.inputs, d.targets)

    def __getitem__(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        n = len(self)
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
            raise TypeError(f"index must be an int, got {type(k).__name__}")
        if not -n <= k < n:
            raise IndexError(f"index {k} is out of range for {n} items")
        k = int(k) % n
        s = self.samples[k // self.windows_per_sample]
        cut = (slice(None),) + (slice(None, None, self.subsample),) * self.dims
        kx, ky = self._keys()
        if self.data.trajectories is not None:
            t = (k % self.windows_per_sample) * self.stride
            span = self.data.input_steps + self.data.output_steps
            w = np.asarray(self._src.array(kx)[s, t:t + span], dtype=np.float64)[cut]
            x, y = w[:self.data.input_steps], w[self.data.input_steps:]
        else:
            x = np.asarray(self._src.array(kx)[s], dtype=np.float64)[cut]
            y = np.asarray(self._src.array(ky)[s], dtype=np.float64)[cut]
        xt, yt = torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(
            np.ascontiguousarray(y))
        xt = self.normalization.inputs(xt, self.dims)
        yt = self.normalization.targets(yt, self.dims)
        return xt.float(), yt.float()

    def denormalize(self, y: torch.Tensor) -> torch.Tensor:
        """A (batch of) normalised target(s) or prediction(s) in the data's units."""
        return self.normalization.denormalize(y, self.dims)

    def close(self) -> None:
        """Close this process's file handle (reopened on the next item)."""
        self._src.close()
