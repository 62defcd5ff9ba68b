"""A resumable HDF5 store of fixed-shape samples: creation, checks, statistics.

The store is written so that a process killed at any moment (SIGKILL included) leaves a
file that opens and whose completed samples can be trusted:

* the file is created under a temporary name and renamed into place, so it either does
  not exist or holds its full metadata;
* every dataset is allocated in full at creation (``H5D_ALLOC_TIME_EARLY``, no fill
  written), so writing a sample only writes raw bytes at fixed offsets: the HDF5
  metadata never changes while samples are written, and a kill between two writes
  cannot leave a B-tree or object header half updated;
* the default (earliest) file format is used on purpose: the newer superblock keeps an
  "open for writing" flag that a killed writer leaves set, after which HDF5 refuses to
  open the file without the ``h5clear`` tool;
* a sample's flag in ``done`` is set only after its data has been written and flushed,
  so a flag on disk implies its data is on disk. Data without a flag is never read: it
  is recomputed.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path

import h5py
import numpy as np

#: Attributes that every complete store carries beside its settings.
STATE_ATTRS = ("complete", "mean", "std")


def _early_dcpl(chunks: tuple[int, ...] | None) -> h5py.h5p.PropDCID:
    """Dataset-creation properties: allocate all storage now, write no fill values."""
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    if chunks is not None:
        dcpl.set_chunk(chunks)
    dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
    dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)
    return dcpl


def create_store(
    path: Path,
    *,
    attrs: Mapping[str, object],
    sample_shape: tuple[int, ...],
    sample_index: np.ndarray,
    arrays: Mapping[str, np.ndarray],
) -> None:
    """Create an empty store at ``path`` (atomically, replacing any file there).

    ``vorticity`` gets shape ``(len(sample_index),) + sample_shape``, float32, one sample
    per chunk; ``done`` is all zeros; ``arrays`` (times, coordinates) are stored as given.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    count = len(sample_index)
    try:
        with h5py.File(tmp, "w") as f:
            for k, v in attrs.items():
                f.attrs[k] = v
            f.attrs["complete"] = False
            f.attrs["mean"] = math.nan
            f.attrs["std"] = math.nan
            shape = (count, *sample_shape)
            f.create_dataset("vorticity", shape=shape, dtype=np.float32,
                             dcpl=_early_dcpl((1, *sample_shape)))
            f.create_dataset("done", data=np.zeros(count, np.uint8))
            f.create_dataset("sample_index", data=np.asarray(sample_index, np.int64))
            for k, v in arrays.items():
                f.create_dataset(k, data=v)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def open_h5(path: Path, mode: str, *, what: str, fix: str) -> h5py.File:
    """Open ``path`` with h5py; an unreadable file becomes a ValueError naming it."""
    try:
        return h5py.File(path, mode)
    except OSError as e:
        raise ValueError(
            f"cannot open {what} {path} as HDF5 ({e}): the file is corrupt, is not an HDF5 "
            f"file or is open for writing elsewhere; {fix}"
        ) from None


def check_format(
    f: h5py.File, path: Path, *, fmt: str, version: int, fix: str,
    datasets: tuple[str, ...] = ("vorticity", "done", "times"),
) -> None:
    """Raise a ValueError unless ``f`` is a store of format ``fmt``, version ``version``."""
    found = f.attrs.get("format")
    if found is None:
        raise ValueError(f"{path} has no 'format' attribute: it is not a {fmt} file; {fix}")
    if _plain(found) != fmt:
        raise ValueError(f"{path} has format {_plain(found)!r}, not {fmt!r}; {fix}")
    v = f.attrs.get("format_version")
    if v is None or int(v) != version:
        raise ValueError(
            f"{path} has format_version {None if v is None else int(v)} but this version of "
            f"sciml reads version {version}; regenerate the file with this version"
        )
    missing = [d for d in datasets if d not in f]
    if missing:
        raise ValueError(f"{path} lacks the dataset(s) {missing}: the file is damaged; {fix}")


def _plain(v: object) -> object:
    """An HDF5 attribute value as a plain Python object (str, int, float, bool)."""
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, np.generic):
        return v.item()
    return v


def first_mismatch(
    f: h5py.File, settings: Mapping[str, object]
) -> tuple[str, object, object] | None:
    """The first setting whose stored value differs: ``(name, stored, wanted)``, or None."""
    for k, want in settings.items():
        have = _plain(f.attrs[k]) if k in f.attrs else None
        if isinstance(want, bool) or isinstance(have, bool):
            same = have is not None and bool(have) == bool(want)
        elif isinstance(want, (int, float)) and isinstance(have, (int, float)):
            same = float(have) == float(want)
        else:
            same = have == want
        if not same:
            return k, have, want
    return None


def require_settings(f: h5py.File, path: Path, settings: Mapping[str, object], fix: str
                     ) -> None:
    """Raise a ``ValueError`` naming the first setting the file at ``path`` stores
    differently (resuming it with other settings would mix two data sets)."""
    bad = first_mismatch(f, settings)
    if bad is not None:
        k, have, want = bad
        raise ValueError(
            f"{path} exists with other settings: {k} = {have!r} in the file but {want!r} "
            f"now; rerun with the file's settings to resume it, or {fix}"
        )


def moments(dset: h5py.Dataset) -> tuple[float, float]:
    """Mean and (population) standard deviation of a dataset, one sample at a time.

    Sums are taken in float64, each sample's by numpy and the total by ``math.fsum``
    (exactly rounded, so independent of the order of the samples): two stores holding the
    same values get the same statistics bit for bit.
    """
    count = dset.size
    total = math.fsum(float(np.sum(dset[i], dtype=np.float64)) for i in range(dset.shape[0]))
    mean = total / count
    sq = math.fsum(
        float(np.sum(np.square(dset[i].astype(np.float64) - mean)))
        for i in range(dset.shape[0])
    )
    return mean, math.sqrt(sq / count)


def finalize(f: h5py.File) -> None:
    """Store the statistics, flush, then mark the file complete (the last write)."""
    mean, std = moments(f["vorticity"])
    f.attrs.modify("mean", mean)
    f.attrs.modify("std", std)
    f.flush()
    f.attrs.modify("complete", True)
    f.flush()
