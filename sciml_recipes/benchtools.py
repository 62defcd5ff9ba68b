"""Timing and result-file helpers shared by ``benchmarks/`` and ``sciml demo``.

Results are written in one shape (see the design brief) so any of them can be read back
and compared by a script::

    {"benchmark": ..., "created": ..., "machine": {...},
     "rows": [{"case": ..., "impl": ..., "metric": ..., "value": ...}, ...]}
"""

from __future__ import annotations

import datetime as _dt
import importlib.machinery
import importlib.util
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType

import torch

from sciml.utils import atomic_write
from sciml_recipes._checks import check_path


def _sync(device: torch.device | str | None) -> None:
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def time_alternating(
    fns: dict[str, Callable[[], object]],
    *,
    repeats: int = 15,
    warmup: int = 3,
    device: torch.device | str | None = None,
) -> dict[str, float]:
    """Median wall time (ms) of each callable, runs interleaved so drift hits all alike.

    Each round runs every callable once, in turn; after ``warmup`` rounds, ``repeats``
    rounds are timed and the median of each is returned.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, got {repeats}, {warmup}")
    times: dict[str, list[float]] = {k: [] for k in fns}
    for r in range(warmup + repeats):
        for name, fn in fns.items():
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            if r >= warmup:
                times[name].append((time.perf_counter() - t0) * 1e3)
    return {k: statistics.median(v) for k, v in times.items()}


def import_peer(name: str) -> ModuleType:
    """Import a peer library by its module name, skipping the running script's folder.

    ``python benchmarks/ot.py`` puts ``benchmarks/`` first on ``sys.path``, so a plain
    ``import ot`` would import the script itself instead of POT. This finds ``name`` on
    the rest of the path (``sys.path`` is left as it is).

    Raises:
        ImportError: the peer is not installed (the message names the extra to install).
    """
    main = sys.modules.get("__main__")
    script = getattr(main, "__file__", None)
    here = Path(script).resolve().parent if script else None
    mod = sys.modules.get(name)
    if mod is not None and (here is None or Path(getattr(mod, "__file__", "") or "").resolve()
                            .parent != here):
        return mod
    path = [p for p in sys.path if here is None or Path(p or ".").resolve() != here]
    spec = importlib.machinery.PathFinder.find_spec(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"peer library {name!r} is not installed: pip install -e '.[bench]'")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    try:
        spec.loader.exec_module(mod)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return mod


def machine_info(device: torch.device | str = "cpu") -> dict[str, object]:
    dev = torch.device(device)
    info: dict[str, object] = {
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__.split("+")[0],
        "device": dev.type,
        "python": platform.python_version(),
    }
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    if dev.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(dev)
    return info


def write_json_atomic(path: str | os.PathLike, payload: object) -> Path:
    """Write JSON to ``path`` whole or not at all (:func:`sciml.utils.atomic_write`).

    Raises:
        TypeError: ``path`` is not a path, or ``payload`` holds something JSON cannot write.
    """
    return atomic_write(check_path("path", path), json.dumps(payload, indent=1))


def write_results(
    path: str | os.PathLike,
    benchmark: str,
    rows: Sequence[dict[str, object]],
    *,
    device: torch.device | str = "cpu",
    extra: dict[str, object] | None = None,
) -> Path:
    """Write benchmark rows in the shared result shape (validated) and return the path."""
    for i, r in enumerate(rows):
        missing = {"case", "impl", "metric", "value"} - set(r)
        if missing:
            raise ValueError(f"rows[{i}] lacks {sorted(missing)}: {r}")
        if not isinstance(r["value"], (int, float)):
            raise ValueError(f"rows[{i}]['value'] must be a number, got {r['value']!r}")
    payload: dict[str, object] = {
        "benchmark": benchmark,
        "created": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": machine_info(device),
        "rows": list(rows),
    }
    if extra:
        payload.update(extra)
    return write_json_atomic(path, payload)


def format_table(rows: Sequence[Sequence[object]], header: Sequence[str]) -> str:
    """A plain fixed-width text table."""
    cells = [[str(h) for h in header]] + [
        [f"{c:.3g}" if isinstance(c, float) else str(c) for c in r] for r in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def measure_bandwidth(mbytes: int = 256, repeats: int = 7) -> float:
    """Memory bandwidth (bytes/s) of a large tensor copy (read + write counted)."""
    x = torch.empty(mbytes * 2**20 // 4)
    x.uniform_()
    y = torch.empty_like(x)
    t = time_alternating({"copy": lambda: y.copy_(x)}, repeats=repeats, warmup=2)["copy"]
    return 2 * x.numel() * 4 / (t * 1e-3)


def measure_matmul(n: int = 2048, repeats: int = 5, dtype: torch.dtype = torch.float32) -> float:
    """Dense matmul throughput (flop/s) of an n x n x n product."""
    a = torch.randn(n, n, dtype=dtype)
    b = torch.randn(n, n, dtype=dtype)
    t = time_alternating({"mm": lambda: a @ b}, repeats=repeats, warmup=1)["mm"]
    return 2 * n**3 / (t * 1e-3)
