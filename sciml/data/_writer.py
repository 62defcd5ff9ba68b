"""The skeleton of a resumable HDF5 writer, which the Navier-Stokes and Burgers writers fill in.

A writer supplies its format (:class:`Format`: name, version, the datasets every file has,
its test kill variable), a function that creates an empty store, one that solves a batch
of samples and one that finalises the file; :func:`resume` does the rest in the crash-safe
order of :mod:`sciml.data._store`:

* an existing file is checked against the format and the settings (another data set is
  refused with the first setting that differs, never overwritten), a complete one is left
  untouched, a missing one created;
* the samples whose ``done`` flag is unset are solved batch by batch; each batch's samples
  and their crc32 checksums are written and flushed, and only then their flags set and
  flushed, so a flag on disk implies its data is on disk;
* the file is finalised (statistics, then ``complete``, the last write).

The caller holds the lock of the file (:func:`sciml._files.writer_lock`).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from .._validation import check_int
from ._store import check_format, finalize, open_h5, require_settings, write_sample

FIX = "use another output path (--out) or delete the file to start over"

#: ``solve(batch)``: the samples at positions ``batch`` of the file, as
#: ``{dataset name: array (len(batch), ...)}``.
Solve = Callable[[list[int]], Mapping[str, np.ndarray]]


def sample_seed(seed: int, index: int) -> int:
    """The seed of sample ``index`` of a data set generated with ``seed``.

    ``numpy.random.SeedSequence([seed, index])`` hashed to 63 bits: streams of different
    samples (and seeds) are independent, and sample ``index`` can be redrawn alone with
    ``torch.Generator().manual_seed(sample_seed(seed, index))``.
    """
    seed = check_int("seed", seed, minimum=0)
    index = check_int("index", index, minimum=0)
    state = np.random.SeedSequence([seed, index]).generate_state(1, np.uint64)[0]
    return int(state) >> 1


@dataclass(frozen=True)
class Format:
    """What identifies one kind of store.

    ``kill_env`` names the test-only hook: ``"data:K"`` or ``"done:K"`` in that variable
    makes the writer SIGKILL itself after the K-th batch of the process is written and
    flushed (``data``) or flagged done (``done``).
    """

    name: str
    version: int
    datasets: tuple[str, ...]
    kill_env: str
    fix: str = FIX

    def existing(self, path: Path, settings: Mapping[str, object]) -> bool:
        """Whether ``path`` holds this data set (complete or not); raise if it holds another."""
        if not path.exists():
            return False
        with open_h5(path, "r", what="the existing output", fix=self.fix) as f:
            check_format(f, path, fmt=self.name, version=self.version, fix=self.fix,
                         datasets=self.datasets)
            require_settings(f, path, settings, self.fix)
        return True

    def is_complete(self, path: Path) -> bool:
        with open_h5(path, "r", what="the existing output", fix=self.fix) as f:
            return bool(f.attrs["complete"])

    def test_kill(self, phase: str, batch: int) -> None:
        """Test-only crash hook (see ``kill_env``); does nothing unless the variable is set."""
        if os.environ.get(self.kill_env) == f"{phase}:{batch}":
            os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))


def resume(
    fmt: Format,
    path: Path,
    settings: Mapping[str, object],
    *,
    create: Callable[[Path, Mapping[str, object]], None],
    solver: Callable[[h5py.File], Solve],
    samples: Sequence[str],
    batch_size: int,
    progress: bool,
    desc: str,
) -> None:
    """Bring the store at ``path`` to complete (the caller holds its lock).

    ``create(path, settings)`` makes the empty store when there is none; ``solver(f)``
    (called once, only if samples are left) returns the batch solver. ``samples`` names
    the datasets of samples: :func:`~sciml.data._store.finalize` stores their statistics
    before it marks the file complete.

    Raises:
        ValueError: ``path`` holds another data set, another format, or is unreadable.
    """
    if not fmt.existing(path, settings):
        create(path, settings)
    elif fmt.is_complete(path):
        return  # untouched
    f = open_h5(path, "r+", what="the data file", fix=fmt.fix)
    try:
        todo = [int(j) for j in np.flatnonzero(f["done"][:] == 0)]
        if todo:
            _solve_into(fmt, f, todo, solver(f), batch_size, progress, desc)
        finalize(f, samples)
    finally:
        f.close()


def _solve_into(fmt: Format, f: h5py.File, todo: list[int], solve: Solve, batch_size: int,
                progress: bool, desc: str) -> None:
    done = f["done"]
    total = done.shape[0]
    bar = progress_bar(progress, total=total, initial=total - len(todo), desc=desc)
    try:
        for b, batch in enumerate(chunks(todo, batch_size), start=1):
            for name, data in solve(batch).items():
                dset = f[name]
                for k, j in enumerate(batch):
                    write_sample(dset, j, data[k])
            f.flush()  # the data and checksums reach the file before their flags do
            fmt.test_kill("data", b)
            for j in batch:
                done[j] = 1
            f.flush()
            fmt.test_kill("done", b)
            if bar is not None:
                bar.update(len(batch))
    finally:
        if bar is not None:
            bar.close()


def chunks(xs: Sequence[int], size: int) -> Iterator[list[int]]:
    """``xs`` in consecutive lists of ``size`` (the last may be shorter)."""
    for i in range(0, len(xs), size):
        yield list(xs[i:i + size])


def progress_bar(on: bool, *, total: int, initial: int, desc: str):
    """A tqdm bar counting samples, or None when ``on`` is False."""
    if not on:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="sample", smoothing=0.1)
