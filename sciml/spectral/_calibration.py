"""Per-machine calibration of the spectral layer's path choice: one small JSON store.

Two kinds of record live in the store:

* ``"cpu"``: the measurements behind the CPU cost model of :mod:`sciml.spectral._paths`
  (float32 matmul throughput, copy bandwidth, FFT time per element), taken once per
  machine by a short micro-benchmark (:func:`measure_cpu`, about a quarter second) the
  first time the model is used, and read back after. A machine is its CPU model, torch's
  intra-op thread count and the torch version (:func:`machine_key`); a new thread count
  is a new machine. A measurement taken while the machine is busy (load average above
  its CPU count) serves the process that took it but is not stored.
* ``"gpu"``: :class:`~sciml.spectral.SpectralConv` timings measured on a GPU by the GPU
  suite and written with :func:`record_gpu_timings`, per GPU model and torch version.
  ``SpectralConv(method="auto")`` on CUDA asks :func:`gpu_method`, which answers a path
  other than the FFT (``"triton"`` or ``"dft"``) only where a recorded measurement of a
  matching case says it is faster than the FFT path; with no such record the FFT path
  is kept. Nothing is assumed about a GPU that was not measured.

Where the store is: the file named by the environment variable ``SCIML_CALIBRATION``;
``SCIML_CALIBRATION=off`` (or ``0``, ``none``, ``false``) reads and writes nothing: the
built-in CPU constants (:data:`BUILTIN_CPU`, one reference machine) and no GPU records,
which is what a test suite wants. Unset, it is ``$XDG_CACHE_HOME/sciml/calibration.json``
(``~/.cache/sciml/calibration.json``). The store is never inside the package. Writes are
atomic (a temporary file renamed over the old one); a store that cannot be read or
written is reported once (a warning) and the process goes on with what it measured.

File format (``"format": 1``)::

    {"format": 1,
     "cpu": {"<machine key>": {"sgemm_flops": 1.5e11, "copy_bytes_per_s": 2.9e10,
                               "rfftn_s": 8e-11, "irfftn_s": 1.5e-10,
                               "measured": "2026-12-01T10:00:00Z"}},
     "gpu": {"<GPU name> | torch <version>": [
         {"batch": 16, "in_channels": 32, "out_channels": 32, "modes": [16, 16],
          "grid": [64, 64], "out_grid": [64, 64], "dtype": "float32",
          "method": "triton", "metric": "fwd_bwd_ms", "value": 0.41}, ...]}}
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import torch

from .._files import atomic_write

__all__ = [
    "BUILTIN_CPU",
    "ENV",
    "cpu_constants",
    "gpu_key",
    "gpu_method",
    "machine_key",
    "measure_cpu",
    "record_gpu_timings",
    "reset",
    "store_path",
]

ENV = "SCIML_CALIBRATION"
_OFF = {"off", "0", "none", "false", "no"}
FORMAT = 1

#: The measurements of the reference machine the cost model was fitted on (2-core AMD
#: EPYC, AVX2/FMA, 2 threads, float32): sgemm of 2048^3 at 155 GFLOP/s, a large copy at
#: 29 GB/s (read + write), rfftn at 0.08 ns and the multi-axis irfftn at 0.15 ns per
#: element * log2(grid size).
BUILTIN_CPU: dict[str, float] = {
    "sgemm_flops": 155e9,
    "copy_bytes_per_s": 29e9,
    "rfftn_s": 0.08e-9,
    "irfftn_s": 0.15e-9,
}

# plausible ranges: a measurement outside (a broken timer, a machine under heavy load)
# is replaced by the built-in value rather than trusted
_RANGES: dict[str, tuple[float, float]] = {
    "sgemm_flops": (1e8, 1e15),
    "copy_bytes_per_s": (1e8, 1e14),
    "rfftn_s": (1e-14, 1e-6),
    "irfftn_s": (1e-14, 1e-6),
}
_METHODS = ("fft", "dft", "triton")
_METRICS = ("fwd_ms", "fwd_bwd_ms")

_LOCK = threading.RLock()
_CPU_MEMO: dict[tuple[str, str], dict[str, float]] = {}
_GPU_MEMO: dict[tuple, str | None] = {}
_FILES: dict[str, dict] = {}
_WARNED: set[str] = set()
_CPU_MODEL: list[str] = []
_GPU_NAMES: dict[int | None, str] = {}


# ---------------------------------------------------------------------------------------
# where, and which machine


def store_path() -> Path | None:
    """The calibration file, or ``None`` when ``SCIML_CALIBRATION=off``.

    Returns:
        ``$SCIML_CALIBRATION`` as a path if set (and not ``off``), else
        ``$XDG_CACHE_HOME/sciml/calibration.json`` or ``~/.cache/sciml/calibration.json``.
    """
    env = os.environ.get(ENV)
    if env is not None:
        if env.strip().lower() in _OFF:
            return None
        if env.strip():
            return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "sciml" / "calibration.json"


def _cpu_model() -> str:
    if not _CPU_MODEL:
        name = platform.processor() or platform.machine() or "unknown cpu"
        try:
            with open("/proc/cpuinfo") as f:
                for line in f:
                    if line.startswith("model name"):
                        name = line.split(":", 1)[1].strip()
                        break
        except OSError:
            pass
        _CPU_MODEL.append(name)
    return _CPU_MODEL[0]


def machine_key() -> str:
    """This machine as the store names it: CPU model, torch threads, torch version."""
    return f"{_cpu_model()} | {torch.get_num_threads()} threads | torch {torch.__version__}"


def gpu_key(device: torch.device) -> str:
    """A GPU as the store names it: its model name and the torch version."""
    idx = device.index
    name = _GPU_NAMES.get(idx)
    if name is None:
        name = _GPU_NAMES[idx] = str(torch.cuda.get_device_name(device))
    return f"{name} | torch {torch.__version__}"


# ---------------------------------------------------------------------------------------
# the file


def _warn_once(what: str, message: str) -> None:
    if what not in _WARNED:
        _WARNED.add(what)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


def _load(path: Path) -> dict:
    """The store's contents (``{}`` when absent; read once per process and path)."""
    key = str(path)
    data = _FILES.get(key)
    if data is not None:
        return data
    data = {}
    try:
        with open(path, encoding="utf-8") as f:
            loaded = json.load(f)
        if not isinstance(loaded, dict):
            raise ValueError("the top level is not an object")
        data = loaded
    except FileNotFoundError:
        pass
    except (OSError, ValueError) as err:
        _warn_once(f"read {key}", f"sciml: the calibration store {key} cannot be read "
                   f"({err}); using fresh measurements in memory and leaving the file as is. "
                   f"Delete it to let sciml rewrite it, or set {ENV}=off")
        data = {"_unwritable": True}
    _FILES[key] = data
    return data


def _save(path: Path, data: dict) -> None:
    if data.get("_unwritable"):
        return
    out = {k: v for k, v in data.items() if not k.startswith("_")}
    out["format"] = FORMAT
    try:
        atomic_write(path, json.dumps(out, indent=1, sort_keys=True))
    except OSError as err:
        _warn_once(f"write {path}", f"sciml: cannot write the calibration store {path} "
                   f"({err}); the measurement is kept for this process only. Set {ENV} to "
                   "a writable file, or to off for the built-in constants")


def reset() -> None:
    """Forget what this process read or measured (after editing the store by hand)."""
    with _LOCK:
        _CPU_MEMO.clear()
        _GPU_MEMO.clear()
        _FILES.clear()
        _WARNED.clear()


# ---------------------------------------------------------------------------------------
# CPU: measured once per machine


def _clean(measured: Mapping[str, object]) -> dict[str, float]:
    """The four constants, each measured one if plausible, else the built-in one."""
    out = {}
    for name, default in BUILTIN_CPU.items():
        v = measured.get(name) if isinstance(measured, Mapping) else None
        lo, hi = _RANGES[name]
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        out[name] = float(v) if ok and lo <= v <= hi else default
    return out


def cpu_constants(*, measure: Callable[[], Mapping[str, float]] | None = None
                  ) -> dict[str, float]:
    """This machine's measurements for the CPU cost model (see :data:`BUILTIN_CPU`).

    The first call on a machine runs ``measure`` (default :func:`measure_cpu`) and stores
    the result; later calls, in this process or another, read it back. With
    ``SCIML_CALIBRATION=off``, while ``torch.compile`` traces, or when ``measure`` fails,
    the built-in constants are returned.

    Args:
        measure: the measurement (tests pass a fake one); it returns a mapping with the
            keys of :data:`BUILTIN_CPU` (missing or implausible values fall back to the
            built-in ones).

    Returns:
        ``{"sgemm_flops", "copy_bytes_per_s", "rfftn_s", "irfftn_s"}`` as floats.
    """
    path = store_path()
    if path is None:
        return dict(BUILTIN_CPU)
    mkey = machine_key()
    memo = _CPU_MEMO.get((str(path), mkey))
    if memo is not None:
        return memo
    if torch.compiler.is_compiling():
        return dict(BUILTIN_CPU)
    with _LOCK:
        memo = _CPU_MEMO.get((str(path), mkey))
        if memo is not None:
            return memo
        data = _load(path)
        entry = data.get("cpu", {}).get(mkey) if isinstance(data.get("cpu"), dict) else None
        if isinstance(entry, dict) and all(k in entry for k in BUILTIN_CPU):
            consts = _clean(entry)
        else:
            try:
                raw = (measure or measure_cpu)()
            except Exception as err:  # a failed timing must not stop a forward pass
                _warn_once("measure", f"sciml: the CPU calibration failed ({err!r}); "
                           "using the built-in cost-model constants")
                raw = {}
            consts = _clean(raw)
            if raw and not _busy():
                stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
                if not isinstance(data.get("cpu"), dict):
                    data["cpu"] = {}
                data["cpu"][mkey] = {**consts, "measured": stamp}
                _save(path, data)
        _CPU_MEMO[(str(path), mkey)] = consts
        return consts


def _best_time(fn: Callable[[], object], reps: int, deadline: float) -> float:
    """Least seconds of ``fn`` over up to ``reps`` runs after one warm-up (two timed runs
    at least; no further run started past ``deadline``). The least, not the median: other
    work on the machine only ever adds time, and the constants describe the machine."""
    fn()
    times: list[float] = []
    while len(times) < reps:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if len(times) >= 2 and time.perf_counter() > deadline:
            break
    return min(times)


def _busy() -> bool:
    """Whether the machine is loaded (1-minute load average above its CPU count): a
    measurement taken then is used by this process but not stored."""
    try:
        return os.getloadavg()[0] > (os.cpu_count() or 1)
    except (AttributeError, OSError):  # no load average on this platform
        return False


def measure_cpu(budget_s: float = 0.25) -> dict[str, float]:
    """Measure the CPU cost model's constants on this machine (about ``budget_s`` seconds).

    float32 on torch's intra-op threads, deterministic data (no random stream is used),
    gradients and autocast off:

    * ``sgemm_flops``: a 1024^3 matrix product (the reference figure is for 2048^3; the
      smaller product keeps the measurement short and may read somewhat lower on machines
      with many cores, as the spectral layer's own products do);
    * ``copy_bytes_per_s``: a 32 MiB copy, bytes read + written per second;
    * ``rfftn_s`` / ``irfftn_s``: a 2D ``rfftn`` / ``irfftn`` of (4, 16, 64, 64) values,
      seconds per element * log2(64 * 64).

    Each is the least time of a few runs after a warm-up (other work only adds time).

    Args:
        budget_s: time to spend; each measurement gets a share and stops repeating when
            its share is spent (a warm-up and two timed runs always happen).

    Returns:
        The four measurements (keys of :data:`BUILTIN_CPU`).
    """
    start = time.perf_counter()
    with torch.no_grad(), torch.autocast("cpu", enabled=False):
        return {
            "sgemm_flops": _time_sgemm(start + 0.45 * budget_s),
            "copy_bytes_per_s": _time_copy(start + 0.75 * budget_s),
            **_time_fft(start + 0.85 * budget_s, start + budget_s),
        }


def _time_sgemm(deadline: float, n: int = 1024) -> float:
    a = torch.linspace(-1.0, 1.0, n * n).reshape(n, n)
    b = a.T.contiguous()
    return 2.0 * n**3 / _best_time(lambda: a @ b, 3, deadline)


def _time_copy(deadline: float) -> float:
    src = torch.full((8 * 2**20,), 1.0)  # 32 MiB (64 MiB touched): past most L2/L3 caches
    dst = torch.empty_like(src)
    return 2.0 * src.numel() * 4 / _best_time(lambda: dst.copy_(src), 3, deadline)


def _time_fft(deadline_fwd: float, deadline_inv: float) -> dict[str, float]:
    x = torch.linspace(-1.0, 1.0, 4 * 16 * 64 * 64).reshape(4, 16, 64, 64)
    per = x.numel() * math.log2(64 * 64)
    spec = torch.fft.rfftn(x, dim=(-2, -1))
    fwd = _best_time(lambda: torch.fft.rfftn(x, dim=(-2, -1)), 5, deadline_fwd)
    inv = _best_time(lambda: torch.fft.irfftn(spec, s=(64, 64), dim=(-2, -1)), 5,
                       deadline_inv)
    return {"rfftn_s": fwd / per, "irfftn_s": inv / per}


# ---------------------------------------------------------------------------------------
# GPU: timings recorded by the GPU suite


def _ints(name: str, v: object, i: int) -> tuple[int, ...]:
    if isinstance(v, int) and not isinstance(v, bool):
        v = (v,)
    if not isinstance(v, (list, tuple)) or not v or not all(
            isinstance(e, int) and not isinstance(e, bool) and e >= 1 for e in v):
        raise ValueError(f"rows[{i}][{name!r}] must be a list of positive ints, got {v!r}")
    return tuple(v)


def _row(r: object, i: int) -> dict:
    """One timing row, validated and normalised (lists of ints, a dtype name)."""
    if not isinstance(r, Mapping):
        raise TypeError(f"rows[{i}] must be a dict, got {type(r).__name__}")
    need = {"batch", "in_channels", "out_channels", "modes", "grid", "method", "metric",
            "value"}
    missing = need - set(r)
    if missing:
        raise ValueError(f"rows[{i}] lacks {sorted(missing)}: {dict(r)}; each row names the "
                         "case (batch, in_channels, out_channels, modes, grid), the method "
                         "and the metric it timed")
    if r["method"] not in _METHODS:
        raise ValueError(f"rows[{i}]['method'] must be one of {_METHODS}, got {r['method']!r}")
    if r["metric"] not in _METRICS:
        raise ValueError(f"rows[{i}]['metric'] must be one of {_METRICS}, got {r['metric']!r}")
    v = r["value"]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
        raise ValueError(f"rows[{i}]['value'] must be a positive time in ms, got {v!r}")
    grid = _ints("grid", r["grid"], i)
    modes = _ints("modes", r["modes"], i)
    out_grid = _ints("out_grid", r.get("out_grid") or grid, i)
    if not len(modes) == len(grid) == len(out_grid):
        raise ValueError(f"rows[{i}]: modes {modes}, grid {grid} and out_grid {out_grid} must "
                         "name the same number of axes")
    dtype = str(r.get("dtype", "float32")).removeprefix("torch.")
    return {"batch": _ints("batch", r["batch"], i)[0],
            "in_channels": _ints("in_channels", r["in_channels"], i)[0],
            "out_channels": _ints("out_channels", r["out_channels"], i)[0],
            "modes": list(modes), "grid": list(grid), "out_grid": list(out_grid),
            "dtype": dtype, "method": r["method"], "metric": r["metric"], "value": float(v)}


def record_gpu_timings(rows: Iterable[Mapping[str, object]], *, device: torch.device | str,
                       path: str | os.PathLike | None = None) -> Path | None:
    """Add SpectralConv timings measured on a GPU to the calibration store.

    A row replaces an earlier one of the same case, method and metric on the same GPU.

    Args:
        rows: dicts with ``batch``, ``in_channels``, ``out_channels``, ``modes``, ``grid``
            (and ``out_grid`` if it differs from ``grid``; ``dtype``, default
            ``"float32"``), ``method`` (``"fft"``, ``"dft"`` or ``"triton"``), ``metric``
            (``"fwd_ms"`` or ``"fwd_bwd_ms"``) and ``value`` (milliseconds).
        device: the CUDA device they were measured on.
        path: the store (default :func:`store_path`).

    Returns:
        The store's path, or ``None`` when ``SCIML_CALIBRATION=off`` (nothing written).

    Raises:
        ValueError: ``device`` is not a CUDA device, or a row is malformed.
    """
    dev = torch.device(device)
    if dev.type != "cuda":
        raise ValueError(f"device must be the CUDA device the timings were measured on, got "
                         f"{dev}: CPU choices come from the CPU cost model")
    clean = [_row(r, i) for i, r in enumerate(rows)]
    target = Path(path).expanduser() if path is not None else store_path()
    if target is None:
        return None
    with _LOCK:
        _FILES.pop(str(target), None)  # re-read: another process may have written
        data = _load(target)
        gpu = data.get("gpu") if isinstance(data.get("gpu"), dict) else {}
        key = gpu_key(dev)
        old = gpu.get(key) if isinstance(gpu.get(key), list) else []

        def ident(r: Mapping) -> tuple:
            return tuple((k, json.dumps(r.get(k))) for k in (
                "batch", "in_channels", "out_channels", "modes", "grid", "out_grid", "dtype",
                "method", "metric"))

        merged = {ident(r): r for r in old if isinstance(r, Mapping)}
        merged.update({ident(r): r for r in clean})
        gpu[key] = list(merged.values())
        data["gpu"] = gpu
        _save(target, data)
        _GPU_MEMO.clear()
    return target


def gpu_method(device: torch.device, *, batch: int, in_channels: int, out_channels: int,
               modes: tuple[int, ...], grid: tuple[int, ...], out_grid: tuple[int, ...],
               dtype: torch.dtype, backward: bool) -> str | None:
    """The recorded-fastest SpectralConv path for a case on this GPU, or ``None``.

    A record matches when the GPU model and torch version, the dtype, the channel counts,
    the modes, the input grid and the output grid are the same, and its batch is within a
    factor of two of ``batch`` (the nearest recorded batch is used). The metric is
    ``fwd_bwd_ms`` when ``backward`` (a gradient will be taken) else ``fwd_ms``. The
    answer is the method with the least recorded time, considered only when the FFT path
    was timed in the same case (it is the default a faster path must beat); ``None``
    means "no measurement: keep the default".

    Returns:
        ``"fft"``, ``"dft"``, ``"triton"`` or ``None``.
    """
    path = store_path()
    if path is None or device.type != "cuda":
        return None
    key = (str(path), gpu_key(device), batch, in_channels, out_channels, tuple(modes),
           tuple(grid), tuple(out_grid), str(dtype).removeprefix("torch."), bool(backward))
    if key in _GPU_MEMO:
        return _GPU_MEMO[key]
    with _LOCK:
        data = _load(path)
        gpu = data.get("gpu") if isinstance(data.get("gpu"), dict) else {}
        rows = gpu.get(key[1]) if isinstance(gpu.get(key[1]), list) else []
        metric = "fwd_bwd_ms" if backward else "fwd_ms"
        by_batch: dict[int, dict[str, float]] = {}
        for i, r in enumerate(rows):
            try:
                r = _row(r, i)
            except (TypeError, ValueError):
                continue  # a malformed row written by hand: ignored
            if (r["metric"] == metric and r["in_channels"] == in_channels
                    and r["out_channels"] == out_channels and tuple(r["modes"]) == key[5]
                    and tuple(r["grid"]) == key[6] and tuple(r["out_grid"]) == key[7]
                    and r["dtype"] == key[8] and abs(math.log2(r["batch"] / batch)) <= 1):
                by_batch.setdefault(r["batch"], {})[r["method"]] = r["value"]
        best = None
        if by_batch:
            near = min(by_batch, key=lambda b: (abs(math.log2(b / batch)), -b))
            times = by_batch[near]
            if "fft" in times:
                best = min(times, key=times.__getitem__)
        _GPU_MEMO[key] = best
        return best
