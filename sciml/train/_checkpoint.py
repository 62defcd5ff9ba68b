"""Checkpoint and metrics files, written so that a kill at any moment leaves them usable.

Every file is written with :func:`sciml._files.atomic_write` (a temporary name in its
destination directory, fsynced, then renamed over the destination): a reader sees either
the previous complete file or the new complete file, never a partial one. The metrics log
is appended one JSON line at a time; a line cut short by a kill is ignored when the log is
read back.

A checkpoint holds only tensors and plain Python values, so it loads with
``torch.load(path, weights_only=True)`` (no arbitrary code is run when reading it).
Every file written by :func:`save` also holds a crc32 of each tensor and one of all the
other values (torch does not check the CRCs of its zip files), verified on load: a byte
changed on disk or in transfer is an error naming the file and the tensor.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._files import atomic_write
from .._weights import CHECKSUMS, check_finite, checksums, verify_checksums

#: Tag and version stored in every file the Trainer writes.
FORMAT = "sciml.train"
FORMAT_VERSION = 1
CHECKPOINT = "checkpoint.pt"
MODEL = "model.pt"
METRICS = "metrics.jsonl"


def save(obj: Mapping[str, Any], path: str | os.PathLike) -> None:
    """``torch.save(obj, path)``, atomically (see :func:`atomic_write`), with the
    :func:`checksums` of ``obj`` under ``"checksums"`` (replacing any stored there)."""
    blob = {k: v for k, v in obj.items() if k != CHECKSUMS}
    blob[CHECKSUMS] = checksums(blob)
    # torch.save is looked up at call time (tests replace it to simulate a failed write)
    atomic_write(path, lambda f: torch.save(blob, f))


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Read a checkpoint (or final ``model.pt``) written by :class:`Trainer`.

    Equivalent to ``torch.load(path, map_location, weights_only=True)`` plus checks.

    Args:
        path: the file, e.g. ``out_dir / "checkpoint.pt"``.
        map_location: where to put the tensors (as in :func:`torch.load`).

    Returns:
        The stored dict: ``model`` (state dict), ``config`` (``TrainConfig.to_dict()``),
        ``model_config`` and ``format``/``format_version``; a checkpoint also has
        ``optimizer``, ``scheduler``, ``rng``, ``progress`` and ``history``.

    Raises:
        FileNotFoundError: there is no file at ``path``.
        ValueError: the file is corrupt (a tensor or value does not match its stored
            checksum), truncated or not written by the Trainer, or its weights (``model``)
            hold NaN or Inf.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"no checkpoint at {path}: train with Trainer(..., out_dir={str(path.parent)!r}) "
            "first, or check the path"
        )
    if isinstance(map_location, (str, torch.device)):
        from .._device import check_device

        # a device this machine lacks is not a damaged file: say so before reading it
        check_device(map_location, "map_location")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        raise ValueError(
            f"cannot read checkpoint {path} ({type(e).__name__}: {e}); the file is corrupt or "
            "not a sciml checkpoint: delete it and train again (resume=False)"
        ) from None
    if isinstance(ckpt, dict):
        verify_checksums(path, ckpt)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ValueError(f"{path} is not a sciml.train checkpoint (no format tag {FORMAT!r})")
    if ckpt.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{path} has format_version {ckpt.get('format_version')!r}; this version of sciml "
            f"reads version {FORMAT_VERSION}: train again with this version"
        )
    if "model" not in ckpt:
        raise ValueError(f"{path} has no 'model' entry: the file is damaged")
    check_finite(path, ckpt["model"])
    return ckpt


def load_model_state(model: nn.Module, path: str | os.PathLike) -> nn.Module:
    """Load the weights stored in a checkpoint (or ``model.pt``) into ``model``.

    Args:
        model: a module built like the trained one (see the file's ``model_config``).
        path: a file written by :class:`Trainer`.

    Returns:
        ``model``, with the weights loaded (on the device it was on).

    Raises:
        FileNotFoundError, ValueError: as :func:`load_checkpoint`.
        RuntimeError: the weights do not fit ``model`` (from ``load_state_dict``).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module built like the trained one, got "
                        f"{type(model).__name__}")
    model.load_state_dict(load_checkpoint(path)["model"])
    return model


def check_resumable(
    path: Path, ckpt: Mapping[str, Any], config: Mapping[str, Any], fields: Sequence[str],
    setup: Mapping[str, int], *, model_config: Mapping[str, Any] | None = None,
    data_files: Mapping[str, Mapping[str, str]] | None = None,
) -> None:
    """Raise unless a run with ``config``, ``setup``, ``model_config`` and ``data_files`` may
    continue from ``ckpt``.

    Args:
        path: the checkpoint's path (for the message).
        ckpt: the loaded checkpoint.
        config: the new run's ``TrainConfig.to_dict()``.
        fields: the settings that must agree (they change the sequence of steps).
        setup: ``world_size`` and ``n_train`` of the new run.
        model_config: the new run's model description; every entry must equal the
            checkpoint's, except the name of a data file whose content is the same.
        data_files: the new run's ``{name: {"file": ..., "fingerprint": ...}}``; each one
            the checkpoint also records must have the same fingerprint (a checkpoint from
            before fingerprints is not checked).

    Raises:
        ValueError: naming the data file whose content differs (both files and both
            fingerprints), else every model setting that differs (both values), else the
            first run setting that differs.
    """
    moved = _check_data_files(path, ckpt.get("data_files") or {}, data_files or {})
    diffs = [(k, old, new) for k, old, new in _differences(ckpt.get("model_config"), model_config)
             if not (isinstance(old, str) and isinstance(new, str) and (old, new) in moved)]
    if diffs:
        listed = "; ".join(f"{k} = {_shown(old)} in the checkpoint but {_shown(new)} now"
                           for k, old, new in diffs)
        raise ValueError(
            f"{path} was written for another model: {listed}; resume with the checkpoint's "
            "settings, or start a new run (resume=False, or another out_dir / --out)"
        )
    saved = ckpt["config"]
    for name in fields:
        have, want = saved.get(name), config[name]
        if have != want:
            raise ValueError(
                f"{path} was written with {name}={have!r} but this run has {name}={want!r}; "
                f"resume with {name}={have!r}, or start a new run (resume=False, or another "
                "out_dir)"
            )
    what = {"world_size": "processes", "n_train": "training samples"}
    for name, want in setup.items():
        have = ckpt["progress"][name]
        if have != want:
            raise ValueError(
                f"{path} was written by a run with {have} {what.get(name, name)} but this run "
                f"has {want}; resume with the same setup, or start a new run (resume=False)"
            )


def _check_data_files(
    path: Path, saved: Mapping[str, Mapping[str, str]], now: Mapping[str, Mapping[str, str]]
) -> set[tuple[str, str]]:
    """Raise if a data file named in both differs in content; return the ``(old, new)`` file
    names of those that agree (a file moved or copied elsewhere may resume)."""
    same = set()
    for name, have in saved.items():
        want = now.get(name)
        if want is None:
            continue
        if have["fingerprint"] != want["fingerprint"]:
            raise ValueError(
                f"{path} was trained on {name} with fingerprint {have['fingerprint']} (file "
                f"{have['file']}) but the {name} given now, {want['file']}, has fingerprint "
                f"{want['fingerprint']}: their contents differ; pass the original {name}, or "
                "start a new run (resume=False, or another out_dir / --out)"
            )
        same.add((have["file"], want["file"]))
    return same


_ABSENT = object()


def _differences(old: Any, new: Any, key: str = "") -> Iterator[tuple[str, Any, Any]]:
    """``(dotted key, old, new)`` for every entry of two nested dicts that differs."""
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        for k in [*old, *(k for k in new if k not in old)]:
            yield from _differences(old.get(k, _ABSENT), new.get(k, _ABSENT),
                                    f"{key}.{k}" if key else str(k))
    elif old != new:
        yield key or "model_config", old, new


def _shown(v: Any) -> str:
    return "(absent)" if v is _ABSENT else repr(v)


def rng_state() -> dict[str, Any]:
    """This process's torch RNG states (CPU, and each CUDA device once CUDA is in use)."""
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else []
    return {"cpu": torch.get_rng_state(), "cuda": cuda}


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["cpu"].cpu())
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


# ----------------------------------------------------------------------- metrics log


def append_record(path: Path, record: Mapping[str, Any]) -> None:
    """Append one JSON line (flushed and fsynced) to the metrics log."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, allow_nan=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_records(path: Path) -> list[dict[str, Any]]:
    """The records of a metrics log; lines that do not parse (cut by a kill) are skipped."""
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out


def rewrite_records(path: Path, records: list[Mapping[str, Any]]) -> None:
    """Replace the metrics log by ``records``, atomically."""
    text = "".join(json.dumps(r, allow_nan=True) + "\n" for r in records)
    atomic_write(path, text)


def truncate_records(path: Path, step: int) -> None:
    """Keep only the records with ``step <= step`` (those the checkpoint knows about)."""
    kept = [r for r in read_records(path) if int(r.get("step", 0)) <= step]
    rewrite_records(path, kept)


def check_json(name: str, value: Any) -> dict[str, Any] | None:
    """Return ``dict(value)`` if it serialises to JSON, else raise a ValueError."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise TypeError(f"{name} must be a mapping (dict) or None, got {type(value).__name__}")
    try:
        json.dumps(dict(value), allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ValueError(
            f"{name} must be JSON-safe (str, int, float, bool, None, lists and dicts of "
            f"them) so that the checkpoint can be read back without pickle: {e}"
        ) from None
    # a JSON round trip yields plain dicts/lists (no tuples or subclasses) for weights_only
    return json.loads(json.dumps(dict(value)))
