"""Keeping two writers of one output apart: an advisory lock file beside it.

A writer holds ``OUT.lock`` (``fcntl.flock``) for as long as it writes ``OUT``; a second
writer that finds the lock held stops at once with an error naming the holder's pid,
instead of interleaving its writes with the first one's. The kernel releases the lock
when its owner ends, however it ends (SIGKILL included), so a lock file left behind by a
killed writer is not held and the next writer simply takes it over: nobody ever has to
delete one. The owner writes its pid into the file (for the message) and removes the
file when it is done.

Where ``fcntl`` is missing (Windows) no lock is taken; temporary names are unique anyway,
so concurrent writers do not trip over each other's temporary files there either.

Every file the library writes is also written once, whole: :func:`atomic_write` (bytes,
text or a writer callback) and :func:`atomic_path` (a temporary path for writers that open
the file themselves, such as h5py) build it under a unique temporary name beside the
destination, fsync it, rename it over the destination with :func:`os.replace` (atomic on
POSIX and Windows) and fsync the directory. A reader sees the previous complete file or
the new complete file, never a partial one; a failed or killed writer leaves the
destination untouched.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["atomic_path", "atomic_write", "lock_path", "writer_lock"]


def lock_path(path: str | os.PathLike) -> Path:
    """The lock file of ``path``: ``path`` with ``.lock`` appended to its name."""
    path = Path(path)
    return path.with_name(path.name + ".lock")


def atomic_write(
    path: str | os.PathLike, data: bytes | str | Callable[[IO[bytes]], None],
) -> Path:
    """Write ``path`` so that it appears complete or not at all; return it as a Path.

    Args:
        path: destination; missing parent directories are created.
        data: the contents (``str`` is written as UTF-8), or a callable given a binary
            file object open on the temporary file, which it writes.

    Raises:
        Exception: whatever ``data`` or the file system raises; the temporary file is
            removed and an existing file at ``path`` is left untouched.
    """
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        if callable(data):
            data(f)
        else:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
    return Path(path)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A new empty file beside ``path`` to write in the block, then renamed over ``path``.

    The temporary file, ``.NAME.XXXXXXXX.tmp``, is unique to this call and has the mode
    ``open()`` would give. When the block ends normally it is fsynced, renamed over
    ``path`` and the directory fsynced; when the block raises it is removed and ``path``
    left untouched. The file must be closed by the end of the block.
    """
    path = Path(path)
    tmp = _temp_path(path)
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync(path.parent)


def _temp_path(path: Path) -> Path:
    """A new empty file ``.NAME.XXXXXXXX.tmp`` beside ``path``, unique to this call.

    Created with the mode ``open()`` would give (``mkstemp`` makes it private), so the file
    renamed over ``path`` later has the usual permissions.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    mask = os.umask(0o022)
    os.umask(mask)
    os.chmod(name, 0o666 & ~mask)
    return Path(name)


def _fsync(path: Path) -> None:
    """Flush a file's data, or a directory's entries (a rename), to disk; a no-op where
    the file system or OS does not allow it (directories cannot be opened on Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def writer_lock(
    path: str | os.PathLike, *, lock: str | os.PathLike | None = None,
    fix: str = "wait for it to finish, or choose another --out",
) -> Iterator[Path]:
    """Hold the lock of ``path`` (the file ``lock``, default :func:`lock_path`) inside the block.

    Raises:
        ValueError: another process (or another thread of this one) holds it; the
            message names ``path``, the lock file, the holder's pid and ``fix``.
    """
    path = Path(path)
    lock = lock_path(path) if lock is None else Path(lock)
    if fcntl is None:  # pragma: no cover - Windows
        yield lock
        return
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = _acquire(lock, path, fix)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield lock
    finally:
        # removed while still held: a writer waiting on this file sees it gone and retries
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock)
        os.close(fd)


def _acquire(lock: Path, path: Path, fix: str) -> int:
    """Open and flock ``lock``; return its descriptor."""
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _owner(fd)
            os.close(fd)
            raise ValueError(
                f"another process is writing {path} (lock file {lock} held by {owner}); {fix}"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        # the previous owner may have removed the file between our open and our flock:
        # then we hold a lock on a file nobody else can see; start over on the new one
        try:
            current = os.stat(lock)
        except FileNotFoundError:
            current = None
        mine = os.fstat(fd)
        if current is not None and (current.st_dev, current.st_ino) == (mine.st_dev, mine.st_ino):
            return fd
        os.close(fd)


def _owner(fd: int) -> str:
    """``pid N`` as written in the lock file (the holder writes it right after taking the
    lock: wait a moment for it), or a vaguer phrase if it does not come."""
    for _ in range(100):
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        if text.isdigit():
            return f"pid {text}"
        time.sleep(0.01)
    return "another process (its pid is not in the file)"
