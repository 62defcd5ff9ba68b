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
  is recomputed;
* every sample gets a crc32 of its stored bytes in ``NAME_crc32`` (allocated with the data,
  written with the sample, before its flag), checked when a reader first reads the sample,
  so a byte changed on disk or in transfer is an error naming the file and the sample
  rather than silently wrong data; files from before the checksums read unchecked;
* a new file is built under a unique temporary name and renamed into place, and a writer
  holds ``OUT.lock`` (:func:`sciml._files.writer_lock`) while it writes, so two writers of
  one file never interleave.
"""

from __future__ import annotations

import hashlib
import math
import os
import zlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import h5py
import numpy as np

from .._files import atomic_path

#: Attributes that every complete store carries beside its settings.
STATE_ATTRS = ("complete", "mean", "std")
#: Suffix of the dataset holding the per-sample crc32s of a dataset of samples.
CRC_SUFFIX = "_crc32"


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
    per chunk, and ``vorticity_crc32`` one checksum per sample; ``done`` is all zeros;
    ``arrays`` (times, coordinates) are stored as given.
    """
    count = len(sample_index)

    def build(f: h5py.File) -> None:
        for k, v in attrs.items():
            f.attrs[k] = v
        f.attrs["complete"] = False
        f.attrs["mean"] = math.nan
        f.attrs["std"] = math.nan
        create_samples(f, "vorticity", (count, *sample_shape))
        f.create_dataset("done", data=np.zeros(count, np.uint8))
        f.create_dataset("sample_index", data=np.asarray(sample_index, np.int64))
        for k, v in arrays.items():
            f.create_dataset(k, data=v)

    create_h5(path, build)


def create_samples(group: h5py.Group, name: str, shape: tuple[int, ...]) -> h5py.Dataset:
    """A float32 dataset of ``shape[0]`` samples, one per chunk, allocated in full, and
    beside it ``NAME_crc32``, the crc32 of each sample's stored bytes (see :func:`write_sample`)."""
    dset = group.create_dataset(name, shape=shape, dtype=np.float32,
                                dcpl=_early_dcpl((1, *shape[1:])))
    group.create_dataset(name + CRC_SUFFIX, data=np.zeros(shape[0], np.uint32))
    return dset


def _crc_dataset(dset: h5py.Dataset) -> h5py.Dataset | None:
    """The checksums stored beside ``dset`` (None in files from before them)."""
    name = dset.name + CRC_SUFFIX
    return dset.file[name] if name in dset.file else None


def write_sample(dset: h5py.Dataset, j: int, values: np.ndarray) -> None:
    """``dset[j] = values``, and its checksum where the file keeps them."""
    values = np.ascontiguousarray(values, dtype=dset.dtype)
    dset[j] = values
    crcs = _crc_dataset(dset)
    if crcs is not None:
        crcs[j] = zlib.crc32(values)


def stored_checksums(dset: h5py.Dataset) -> np.ndarray | None:
    """All the per-sample checksums of ``dset`` (None in files from before them)."""
    crcs = _crc_dataset(dset)
    return None if crcs is None else crcs[:]


def read_checked(dset: h5py.Dataset, s: int, crcs: np.ndarray | None, path: Path,
                 fix: str) -> np.ndarray:
    """Sample ``s`` of ``dset``, whole, checked against ``crcs[s]`` (None: not checked).

    Raises:
        ValueError: the sample's bytes do not match their checksum; names the file, the
            dataset and the sample.
    """
    values = dset[s]
    if crcs is not None:
        got, want = zlib.crc32(np.ascontiguousarray(values)), int(crcs[s])
        if got != want:
            raise ValueError(
                f"{path} is corrupt: sample {s} of {dset.name} (its HDF5 chunk) has crc32 "
                f"{got:08x} but the file records {want:08x}: bytes changed on disk or in "
                f"transfer; {fix}"
            )
    return values


def create_h5(path: Path, build: Callable[[h5py.File], None]) -> None:
    """Create the HDF5 file ``path`` atomically: ``build(f)`` fills a new file under a
    unique temporary name in the same directory, which is then renamed over ``path``."""
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        build(f)


def open_h5(path: Path, mode: str, *, what: str, fix: str) -> h5py.File:
    """Open ``path`` with h5py; an unreadable file becomes a ValueError naming it."""
    try:
        return h5py.File(path, mode)
    except BlockingIOError:
        # HDF5 locks a file while it is open for writing (the lock goes with its process)
        raise ValueError(
            f"cannot open {what} {path}: another process has it open for writing (HDF5 file "
            "lock); wait for that process to finish"
        ) from None
    except OSError as e:
        raise ValueError(
            f"cannot open {what} {path} as HDF5 ({e}): the file is corrupt or is not an HDF5 "
            f"file; {fix}"
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


def finalize(f: h5py.File, samples: Sequence[str] = ("vorticity",)) -> None:
    """Store the statistics, flush, then mark the file complete (the last write).

    Each dataset of samples named in ``samples`` gets its ``mean`` and ``std`` as attributes
    of its group (the file's root for ``"vorticity"``, ``nx{n}`` for ``"nx{n}/u"``).
    """
    for name in samples:
        mean, std = moments(f[name])
        f[name].parent.attrs.modify("mean", mean)
        f[name].parent.attrs.modify("std", std)
    f.flush()
    f.attrs.modify("complete", True)
    f.flush()


# ------------------------------------------------------------------------- fingerprints


def fingerprint(path: str | os.PathLike) -> str:
    """A short digest (16 hex digits) of a data file's content: the same for the same content
    under any name, different when any stored value differs.

    For an HDF5 file, blake2b over every attribute and dataset in name order, where a
    dataset stored with per-sample checksums (``NAME_crc32``, every file sciml writes)
    counts by its checksums instead of its bytes, so the fingerprint of a sciml file reads
    a few kilobytes. Datasets without checksums (older files) are read in full, in blocks.
    Any other file is hashed whole.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the HDF5 file cannot be opened.
    """
    path = Path(path)
    h = hashlib.blake2b(digest_size=8)
    if not h5py.is_hdf5(path):
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        return h.hexdigest()
    with open_h5(path, "r", what="the data file", fix="check the path") as f:
        _hash_attrs(h, f)
        names: list[str] = []
        f.visit(names.append)
        for name in sorted(names):
            obj = f[name]
            h.update(name.encode() + b"\0")
            _hash_attrs(h, obj)
            if isinstance(obj, h5py.Dataset):
                h.update(f"{obj.dtype.str}{obj.shape}".encode())
                if _crc_dataset(obj) is None:
                    _hash_dataset(h, obj)
    return h.hexdigest()


def _canonical(v: object) -> bytes:
    """Bytes of a stored value that do not depend on the numpy or h5py version."""
    v = _plain(v)
    if isinstance(v, np.ndarray):
        if v.dtype.kind in "OSU":
            return repr(v.tolist()).encode()
        return f"{v.dtype.str}{v.shape}".encode() + np.ascontiguousarray(v).tobytes()
    return repr(v).encode()


def _hash_attrs(h: hashlib.blake2b, obj: h5py.HLObject) -> None:
    for k in sorted(obj.attrs):
        h.update(k.encode() + b"=" + _canonical(obj.attrs[k]) + b"\0")


def _hash_dataset(h: hashlib.blake2b, d: h5py.Dataset) -> None:
    """The values of ``d``, read in blocks of about 16 MB along the first axis."""
    if d.ndim == 0 or d.size == 0:
        h.update(_canonical(d[()]))
        return
    row = d.dtype.itemsize * (d.size // d.shape[0])
    step = max(1, (1 << 24) // max(1, row))
    for i in range(0, d.shape[0], step):
        h.update(_canonical(d[i:i + step]))
