"""The two execution paths of the truncated real transform, and the rule that picks one.

* ``fft``: ``torch.fft.rfftn`` / ``irfftn`` (pocketfft on CPU, cuFFT on CUDA) followed by
  a gather of the kept corners, or preceded by a zero-padding scatter.
* ``dft``: the *pruned* transform: the truncated DFT as one dense matrix product per
  axis, over the kept modes only. It skips the work an FFT does on modes that are
  thrown away and maps onto BLAS (and GPU tensor cores).

Both paths are written as two generic separable kernels, real -> complex (``r2c``) and
complex -> real (``c2r``); the forward transform, the inverse and both adjoints are these
kernels with different per-axis matrices, so the backward costs what the forward costs.
"""

from __future__ import annotations

import itertools
import math
from functools import lru_cache
from typing import NamedTuple

import torch

from .._validation import check_int, check_int_tuple
from . import _calibration
from .modes import hermitian_weights, kept_frequencies

# ---------------------------------------------------------------------------------------
# per-axis matrices (built in float64 on the CPU once, then cached per device and dtype)


@lru_cache(maxsize=256)
def _mat64(kind: str, n: int, m: int, halved: bool) -> torch.Tensor:
    """Complex128 matrix of one axis.

    kind ``"fwd"``: (K, n), ``exp(-2 pi i k j / n) / n``   (analysis, forward norm)
    kind ``"inv"``: (n, K), ``h_k exp(2 pi i k j / n)``     (synthesis, Hermitian weights)
    """
    k = torch.tensor(kept_frequencies(n, m, halved), dtype=torch.float64)
    j = torch.arange(n, dtype=torch.float64)
    # reduce k*j mod n in integers first: keeps the phase exact for large n
    kj = torch.remainder(torch.outer(k, j), n)
    phase = 2 * math.pi * kj / n
    if kind == "fwd":
        return torch.polar(torch.full_like(phase, 1.0 / n), -phase)
    mat = torch.polar(torch.ones_like(phase), phase).T.contiguous()
    if halved:
        mat = mat * hermitian_weights(n, m)
    return mat


_DEVICE_CACHE: dict[tuple, torch.Tensor] = {}


def axis_matrix(
    kind: str, n: int, m: int, halved: bool, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """The cached complex matrix of one axis on ``device`` in complex ``dtype``.

    kinds: ``fwd`` (K, n); ``inv`` (n, K); their adjoints ``fwd_adj`` = fwd^H (n, K) and
    ``inv_adj`` = inv^H (K, n).
    """
    key = (kind, n, m, halved, str(device), dtype)
    mat = _DEVICE_CACHE.get(key)
    if mat is None:
        base = kind.removesuffix("_adj")
        mat = _mat64(base, n, m, halved)
        if kind.endswith("_adj"):
            mat = mat.conj().T
        mat = mat.to(device=device, dtype=dtype).contiguous()
        _remember(key, mat)
    return mat


def halved_weights(n: int, m: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """The Hermitian weights of :func:`~sciml.spectral.hermitian_weights`, cached on ``device``
    in real ``dtype``: built on the device itself (1 for the mean and, for even ``n``, the
    Nyquist bin, 2 elsewhere), so not even the first call copies host data over."""
    key = ("halved", n, m, False, str(device), dtype)
    h = _DEVICE_CACHE.get(key)
    if h is None:
        k = torch.arange(m, device=device)
        h = torch.where((k == 0) | (2 * k == n), 1.0, 2.0).to(dtype)
        _remember(key, h)
    return h


def _remember(key: tuple, t: torch.Tensor) -> None:
    if len(_DEVICE_CACHE) > 512:
        _DEVICE_CACHE.clear()
    _DEVICE_CACHE[key] = t


# ---------------------------------------------------------------------------------------
# the pruned transform: separable matrix products, no transposes of the data


def _apply_axis(x: torch.Tensor, mat: torch.Tensor, axis: int) -> torch.Tensor:
    """Contract ``x`` along ``axis`` with ``mat`` of shape (out, in): y = mat @ x."""
    shape = x.shape
    pre = math.prod(shape[:axis])
    post = math.prod(shape[axis + 1 :])
    n = shape[axis]
    if post == 1:
        y = x.reshape(pre, n) @ mat.T
    else:
        y = torch.matmul(mat, x.reshape(pre, n, post))
    return y.reshape(*shape[:axis], mat.shape[0], *shape[axis + 1 :])


def dft_r2c(x: torch.Tensor, mats: list[torch.Tensor], order: tuple[int, ...]) -> torch.Tensor:
    """Complex ``y = (M_1 x M_2 x ... M_d) x`` for real ``x``; ``mats[i]`` is (out_i, in_i).

    ``order`` lists the grid axes (0..d-1) in the order they are contracted. The first
    step runs on real data with the real and imaginary parts of its matrix stacked.
    """
    d = len(mats)
    lead = x.ndim - d
    first = order[0]
    mat = mats[first]
    if first == d - 1:
        # right-multiply by an interleaved (re, im) real matrix: the result *is* complex
        n = x.shape[-1]
        real_mat = torch.stack([mat.real, mat.imag], dim=1).reshape(-1, n)
        y = (x.reshape(-1, n) @ real_mat.T).reshape(*x.shape[:-1], mat.shape[0], 2)
        z = torch.view_as_complex(y)
    else:
        ax = lead + first
        k = mat.shape[0]
        y = _apply_axis(x, torch.cat([mat.real, mat.imag], dim=0), ax)
        z = torch.complex(y.narrow(ax, 0, k), y.narrow(ax, k, k))
    for i in order[1:]:
        z = _apply_axis(z, mats[i], lead + i)
    return z


def dft_c2r(z: torch.Tensor, mats: list[torch.Tensor], order: tuple[int, ...]) -> torch.Tensor:
    """Real ``Re((M_1 x ... M_d) z)`` for complex ``z``; ``mats[i]`` is (out_i, in_i).

    The last axis in ``order`` is contracted last, with a real matrix product on the
    stacked real and imaginary parts, so the complex result is never formed in full.
    """
    d = len(mats)
    lead = z.ndim - d
    for i in order[:-1]:
        z = _apply_axis(z, mats[i], lead + i)
    last = order[-1]
    mat = mats[last]
    if last == d - 1:
        k = mat.shape[1]
        # Re(M z) = Re(M) Re(z) - Im(M) Im(z), with z stored interleaved (re, im)
        real_mat = torch.stack([mat.real, -mat.imag], dim=2).reshape(mat.shape[0], 2 * k)
        zr = torch.view_as_real(z.contiguous()).reshape(-1, 2 * k)
        return (zr @ real_mat.T).reshape(*z.shape[:-1], mat.shape[0])
    ax = lead + last
    planes = torch.cat([z.real, z.imag], dim=ax)
    return _apply_axis(planes, torch.cat([mat.real, -mat.imag], dim=1), ax)


# ---------------------------------------------------------------------------------------
# the FFT path: full transform, then gather / scatter of the kept corners


def _corner_slices(kept: tuple[int, ...], full: tuple[int, ...], lead: int):
    """Pairs of index tuples (compact block, full-spectrum block) of the +/- corners."""
    d = len(kept)
    pairs = []
    for signs in itertools.product((0, 1), repeat=d - 1):
        src: list[slice] = [slice(None)] * lead
        dst: list[slice] = [slice(None)] * lead
        for i, s in enumerate(signs):
            m = kept[i] // 2
            if s == 0:
                src.append(slice(0, m))
                dst.append(slice(0, m))
            else:
                src.append(slice(full[i] - m, full[i]))
                dst.append(slice(m, 2 * m))
        src.append(slice(0, kept[-1]))
        dst.append(slice(0, kept[-1]))
        pairs.append((tuple(dst), tuple(src)))
    return pairs


def fft_gather(spec: torch.Tensor, kept: tuple[int, ...]) -> torch.Tensor:
    """Copy the kept corners of a half spectrum into a compact tensor."""
    d = len(kept)
    lead = spec.ndim - d
    out = spec.new_empty(*spec.shape[:lead], *kept)
    for dst, src in _corner_slices(kept, tuple(spec.shape[lead:]), lead):
        out[dst] = spec[src]
    return out


def fft_scatter(z: torch.Tensor, half_shape: tuple[int, ...]) -> torch.Tensor:
    """Zero-pad a compact spectrum into a half spectrum of shape ``half_shape``."""
    d = len(half_shape)
    lead = z.ndim - d
    out = z.new_zeros(*z.shape[:lead], *half_shape)
    for dst, src in _corner_slices(tuple(z.shape[lead:]), half_shape, lead):
        out[src] = z[dst]
    return out


# ---------------------------------------------------------------------------------------
# the rule: a small cost model fitted on measurements (benchmarks/spectral_conv.py)
#
# Fitted on a 2-core AMD EPYC (AVX2/FMA, 2 threads), float32, median of 15:
#   sgemm 2048^3 ~155 GFLOP/s; copy ~29 GB/s (read + write).
#   rfftn (16,32,64,64) 1.74 ms, irfftn 3.8 ms; rfftn (4,20,64,64,16) 7.1 ms, irfftn 11.6 ms
#   -> forward FFT ~0.07-0.085 ns per element*log2(grid), inverse ~0.14-0.15 ns.
#   GEMM efficiency drops with a narrow output: (327680 x 16) @ (16 x 8) ran at 21 GFLOP/s,
#   (24 x 64) @ (64 x 1024) x 80 at 103, (32768 x 64) @ (64 x 18) at 82; batched products
#   of many tiny matrices pay a per-matrix overhead (~0.2 us).
# Of several efficiency terms fitted to every axis order of 6 configurations (2D 64^2 and
# 128^2, 3D 64x64x16 and 32^3, 1D 256, 2D at full modes; both directions), the one below,
# sqrt(min(1, narrow side / 32)), picked the measured-fastest order in all 12 cases; the
# FFT is picked once the kept modes approach the grid (an n^2 DFT loses to n log n).
#
# Other machines differ (sgemm measured 81-230 GFLOP/s on the machines tried), so the
# throughputs come from sciml.spectral._calibration: measured once per machine and stored,
# or the reference machine's values above with SCIML_CALIBRATION=off. The fitted data
# rate of the model is 20 GB/s where the reference copy ran at 29 GB/s: it is scaled by
# the measured copy bandwidth over 29 GB/s. The efficiency term and the per-matrix
# overhead are kept as fitted.

_BATCH_OVERHEAD = 2e-7
_FITTED_BYTES = 20e9  # the model's data rate on the reference machine ...
_REFERENCE_COPY = 29e9  # ... where a large copy ran at this rate


class _Model(NamedTuple):
    """The cost model's throughputs: flop/s, bytes/s, FFT seconds per element*log2(n)."""

    flops: float
    bytes: float
    fft_fwd: float
    fft_inv: float


def _model() -> _Model:
    c = _calibration.cpu_constants()
    return _Model(c["sgemm_flops"], c["copy_bytes_per_s"] * _FITTED_BYTES / _REFERENCE_COPY,
                  c["rfftn_s"], c["irfftn_s"])


def _gemm_time(rows: int, inner: int, cols: int, batches: int, real: bool,
               model: _Model | None = None) -> float:
    """Modelled seconds of ``batches`` products (rows x inner) @ (inner x cols)."""
    model = model or _model()
    eff = max(min(1.0, min(rows, cols) / 32), 1e-3) ** 0.5
    elem = 4 if real else 8
    # the operand that is data (not the small matrix) is read once, the result written once
    moved = elem * batches * (inner * cols + rows * cols)
    return _gemm_flops(rows, inner, cols, batches, real) / (model.flops * eff) + (
        moved / model.bytes + batches * _BATCH_OVERHEAD
    )


def _gemm_flops(rows: int, inner: int, cols: int, batches: int, real: bool) -> int:
    return (2 if real else 8) * batches * rows * inner * cols


def _step_gemm(
    shape: list[int], axis: int, k_out: int, real_in: bool, real_out: bool
) -> tuple[int, int, int, int, bool]:
    """(rows, inner, cols, batches, real) of one contraction as ``_apply_axis`` runs it.

    A real-input step multiplies by the stacked (re, im) matrix, so its output is 2*k_out
    reals; a real-output step reads 2*n reals (stacked planes) per output point.
    """
    pre = math.prod(shape[:axis])
    post = math.prod(shape[axis + 1 :])
    n = shape[axis]
    if real_in:
        n_in, n_out = n, 2 * k_out
    elif real_out:
        n_in, n_out = 2 * n, k_out
    else:
        n_in, n_out = n, k_out
    real = real_in or real_out
    if post == 1:  # one product (pre x n_in) @ (n_in x n_out), counted transposed
        return n_out, n_in, pre, 1, real
    return n_out, n_in, post, pre, real


def _steps(lead: int, grid: tuple[int, ...], kept: tuple[int, ...], order, r2c: bool):
    """The GEMM shapes of the pruned transform in a given axis order."""
    if r2c:
        shape, target = [lead, *grid], kept
    else:
        shape, target = [lead, *kept], grid
    out = []
    for step, i in enumerate(order):
        out.append(
            _step_gemm(shape, i + 1, target[i], real_in=r2c and step == 0,
                       real_out=not r2c and step == len(order) - 1)
        )
        shape[i + 1] = target[i]
    return out


def dft_cost(
    lead: int, grid: tuple[int, ...], kept: tuple[int, ...], order: tuple[int, ...], r2c: bool
) -> float:
    """Modelled seconds of the pruned transform for one axis order."""
    model = _model()
    return sum(_gemm_time(*g, model=model) for g in _steps(lead, grid, kept, order, r2c))


def dft_flops(
    lead: int, grid: tuple[int, ...], kept: tuple[int, ...], order: tuple[int, ...], r2c: bool
) -> int:
    """Real floating-point operations of the pruned transform for one axis order."""
    return sum(_gemm_flops(*g) for g in _steps(lead, grid, kept, order, r2c))


@lru_cache(maxsize=1024)
def _check_plan(lead: object, grid: object, kept: object, r2c: object
                ) -> tuple[int, tuple[int, ...], tuple[int, ...]]:
    """The cost model's arguments: a batch size, a grid and the kept lengths per axis."""
    lead = check_int("lead", lead, minimum=0)  # an empty batch is fine
    grid = check_int_tuple("grid", grid, minimum=1)
    if not grid:
        raise ValueError("grid is empty: give the grid shape, one size per axis")
    kept = check_int_tuple("kept", kept, length=len(grid), minimum=1)
    if not isinstance(r2c, bool):
        raise TypeError(f"r2c must be True (analysis) or False (synthesis), got {r2c!r}")
    return lead, grid, kept


@lru_cache(maxsize=1024)
def _best_order(lead: int, grid: tuple[int, ...], kept: tuple[int, ...], r2c: bool,
                model: _Model) -> tuple[tuple[int, ...], float]:
    # cached per model: a layer asks the same question every forward
    orders = list(itertools.permutations(range(len(grid))))
    costs = [sum(_gemm_time(*g, model=model) for g in _steps(lead, grid, kept, o, r2c))
             for o in orders]
    i = min(range(len(orders)), key=costs.__getitem__)
    return orders[i], costs[i]


def best_order(
    lead: int, grid: tuple[int, ...], kept: tuple[int, ...], r2c: bool, *,
    measured: bool = False,
) -> tuple[tuple[int, ...], float]:
    """Axis order of least modelled cost, and that cost (seconds).

    ``measured=True`` (the CPU paths): the order that ran fastest when this shape was
    first timed on this machine (see :func:`measured_plan`), when there is one.
    """
    lead, grid, kept = _check_plan(lead, grid, kept, r2c)
    order, cost = _best_order(lead, grid, kept, r2c, _model())
    if measured:
        plan = measured_plan(lead, grid, kept, r2c)
        if plan is not None:
            order = plan[1]
    return order, cost


# ---------------------------------------------------------------------------------------
# the choice measured per shape: the model's constants come from a micro-benchmark, but
# its fft-vs-dft line and its axis order were fitted on one machine; on another (other
# caches, another BLAS) both can be wrong by tens of percent, so on the CPU each shape is
# timed once on first use, every candidate alternating, the least of three runs each

_MEASURED: dict[tuple, tuple[str, tuple[int, ...]]] = {}
# below this many elements a transform takes microseconds either way: the model decides
MEASURE_MIN_ELEMENTS = 1 << 15


def measured_plan(lead: int, grid: tuple[int, ...], kept: tuple[int, ...], r2c: bool
                  ) -> tuple[str, tuple[int, ...]] | None:
    """``(method, fastest dft axis order)`` timed on this machine for one CPU transform.

    Measured on the first request of a shape in a process (about 0.01-0.5 s, float32, at
    the torch thread count of the moment) and kept for the process. ``None`` (the cost
    model decides) for small transforms and with ``SCIML_CALIBRATION=off``.
    """
    if lead * math.prod(grid) < MEASURE_MIN_ELEMENTS or _calibration.store_path() is None:
        return None
    key = (lead, tuple(grid), tuple(kept), r2c, torch.get_num_threads())
    plan = _MEASURED.get(key)
    if plan is None:
        plan = _MEASURED[key] = _time_paths(lead, tuple(grid), tuple(kept), r2c)
    return plan


def _time_paths(lead: int, grid: tuple[int, ...], kept: tuple[int, ...], r2c: bool
                ) -> tuple[str, tuple[int, ...]]:
    import time

    d = len(grid)
    modes = tuple(k if i == d - 1 else k // 2 for i, k in enumerate(kept))
    cpu = torch.device("cpu")
    mats = [axis_matrix("fwd" if r2c else "inv", grid[i], modes[i], i == d - 1, cpu,
                        torch.complex64) for i in range(d)]
    dims = tuple(range(-d, 0))
    gen = torch.Generator().manual_seed(0)
    cands: dict[tuple[str, tuple[int, ...]], object] = {}
    with torch.no_grad():
        if r2c:
            x = torch.randn(lead, *grid, generator=gen)
            cands["fft", ()] = lambda: fft_gather(torch.fft.rfftn(x, dim=dims, norm="forward"),
                                                  kept)
            for o in itertools.permutations(range(d)):
                cands["dft", o] = lambda o=o: dft_r2c(x, mats, o)
        else:
            z = torch.randn(lead, *kept, dtype=torch.complex64, generator=gen)
            half = (*grid[:-1], grid[-1] // 2 + 1)
            cands["fft", ()] = lambda: torch.fft.irfftn(fft_scatter(z, half), s=grid,
                                                        dim=dims, norm="forward")
            for o in itertools.permutations(range(d)):
                cands["dft", o] = lambda o=o: dft_c2r(z, mats, o)
        best = dict.fromkeys(cands, math.inf)
        for _ in range(3):
            for k, fn in cands.items():
                t0 = time.perf_counter()
                fn()
                best[k] = min(best[k], time.perf_counter() - t0)
    dft = min((k for k in best if k[0] == "dft"), key=best.__getitem__)
    return ("fft" if best["fft", ()] < best[dft] else "dft"), dft[1]


def fft_cost(lead: int, grid: tuple[int, ...], inverse: bool) -> float:
    """Modelled seconds of rfftn (or irfftn) plus the gather (or scatter) of the corners.

    The multi-axis c2r transform measured ~2x its forward (it copies its input); in 1D
    the two cost the same.
    """
    model = _model()
    n = math.prod(grid)
    per = model.fft_inv if inverse and len(grid) > 1 else model.fft_fwd
    return per * lead * n * max(1.0, math.log2(n))


def choose_method(
    device: torch.device, lead: int, grid: tuple[int, ...], kept: tuple[int, ...], r2c: bool
) -> str:
    """``"dft"`` where the pruned transform is modelled faster, else ``"fft"``.

    On the CPU a transform of 2^15 elements or more takes the path that ran fastest when
    its shape was first timed in this process (:func:`measured_plan`); smaller ones take
    the cost model's answer, whose throughputs are this machine's, measured once and
    stored (see :mod:`sciml.spectral._calibration`; ``SCIML_CALIBRATION=off`` keeps the
    built-in ones and measures nothing). On CUDA a single transform takes the FFT: cuFFT
    is memory-bound and fast, and nothing is assumed about a GPU that was not measured
    (``method="dft"`` forces the pruned path; :class:`~sciml.spectral.SpectralConv` picks
    a layer's path on CUDA from recorded GPU timings).
    """
    if not isinstance(device, torch.device):
        raise TypeError(f"device must be a torch.device, got {device!r}: e.g. x.device")
    if device.type != "cpu":
        return "fft"
    lead, grid, kept = _check_plan(lead, grid, kept, r2c)
    plan = measured_plan(lead, grid, kept, r2c)
    if plan is not None:
        return plan[0]
    _, t_dft = best_order(lead, grid, kept, r2c)
    return "dft" if t_dft < fft_cost(lead, grid, inverse=not r2c) else "fft"
