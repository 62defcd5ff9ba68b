"""Spectral convolution as pruned DFTs in Triton: the TurboFNO idea on tensor cores.

The layer of :class:`sciml.spectral.SpectralConv`,

.. math:: v = \\mathrm{Re}\\, G_1 \\cdots G_d \\big[\\, W_k\\,
          (F_1 \\cdots F_d\\, u)_k + b\\,\\delta_{k0} \\big],

is computed with the matrices of the ``dft`` path of :mod:`sciml.spectral._paths`: per
axis, the analysis matrix ``F_a = axis_matrix("fwd", n_a, m_a, ...)`` (kept modes x grid,
``1/n_a`` inside) and the synthesis matrix ``G_a = axis_matrix("inv", n'_a, m_a, ...)``
(target grid x kept modes, Hermitian weights on the halved last axis). Every product is
a ``tl.dot`` over tiles padded to multiples of 16 (masked loads), accumulated in float32.

Launches (``d`` = number of grid axes, 1 to 3):

* forward, ``2d + 1``: one kernel per analysis axis (real input -> complex, then
  complex -> complex), one per-mode channel-mixing kernel that also adds the bias to the
  DC mode, one kernel per synthesis axis (the last one keeps only the real part and
  stores in the input dtype). 3 launches in 1D, 5 in 2D, 7 in 3D, against about 7 and
  several full-size copies on the FFT path: every intermediate holds only the kept
  modes on the axes already contracted (the first analysis step shrinks its axis at
  once), and the last synthesis step is the only one that writes a target-size tensor.
* backward, ``2d + 1`` as well: the adjoint of the synthesis is an analysis of the
  output gradient with the conjugate-transposed synthesis matrices (``inv_adj``, the
  Hermitian weights included); one kernel computes both adjoint mixings
  (``gC_k = gY_k W_k^H`` and ``gW_k = C_k^H gY_k``, plus the bias gradient, the real part
  of the DC coefficients summed over the batch) in disjoint program ranges; the adjoint
  of the analysis is a synthesis with the conjugate-transposed analysis matrices
  (``fwd_adj``, no Hermitian weights). Steps whose gradient is not needed are skipped.

Why the mixing has a launch of its own: the spectra between the transforms hold only the
kept modes (``K/N`` of the grid), so writing and reading them back is small next to the
grid-size traffic of the first and last steps (an argument, not a GPU measurement),
while fusing the mixing into the last analysis step (or the first synthesis step) would
need a three-index register tile (batch x channel x mode) or a recomputation of the
transform step once per output-channel tile. Kept apart, the mixing is a plain
per-mode GEMM ``(B x Cin) @ (Cin x Cout)`` and every transform step is a plain GEMM
``(rows x n_a) @ (n_a x K_a)`` with full tiles, which is what maps onto tensor cores.

Complex intermediates are stored as two float32 planes ``(2, ...)`` (real, imaginary);
the weight ``(*kept, Cin, Cout, 2)`` and the cached complex axis matrices are read in
place through their interleaved real views. float32 products use ``tf32x3`` on the GPU
(tensor cores, about float32 accuracy; see :data:`DOT_PRECISION`).

Triton is imported only when a kernel is first needed: ``import sciml`` works without it.
Under ``TRITON_INTERPRET=1`` the same kernels run (slowly) on CPU tensors, which is how
the test suite checks them on machines without a GPU.
"""

from __future__ import annotations

import math
import os
from typing import Any

import torch

from .._validation import check_int_tuple
from ._paths import axis_matrix, best_order
from .modes import check_modes, kept_length

__all__ = ["DOT_PRECISION", "available", "spectral_conv_triton"]

#: ``input_precision`` of the float32 ``tl.dot`` products on the GPU: ``"tf32x3"`` (three
#: TF32 tensor-core products, about float32 accuracy), ``"ieee"`` (exact float32, no
#: tensor cores) or ``"tf32"`` (fastest, about 1e-3 relative error). The interpreter
#: always computes in float32.
DOT_PRECISION = "tf32x3"

_DTYPES = (torch.float32, torch.bfloat16)

# set by _kernels() on first use; the kernels below resolve them as module globals, which
# works on every Triton 3.x (closure capture inside @triton.jit came later)
triton: Any = None
tl: Any = None
_mode_tile: Any = None
_KERNELS: dict[str, Any] | None = None


def _interpret() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def available() -> bool:
    """Whether the Triton kernels can run here.

    True when ``triton`` imports and either a CUDA device is present or the Triton
    interpreter is switched on (``TRITON_INTERPRET=1``, CPU tensors, slow).

    Returns:
        ``True`` if :func:`spectral_conv_triton` can be called on this machine.
    """
    try:
        import triton as _triton  # noqa: F401
    except ImportError:
        return False
    return _interpret() or torch.cuda.is_available()


def _kernels() -> dict[str, Any]:
    """Import Triton and define the kernels once (lazily: sciml imports without Triton)."""
    global triton, tl, _mode_tile, _KERNELS
    if _KERNELS is not None:
        return _KERNELS
    try:
        import triton as _triton_mod
        import triton.language as _tl
    except ImportError as err:
        raise ImportError(
            "spectral_conv_triton needs Triton: pip install triton (or pip install "
            "'sciml[gpu]'); without it use SpectralConv(method='fft')"
        ) from err
    triton, tl = _triton_mod, _tl

    @triton.jit
    def _axis_kernel(
        x_ptr, m_ptr, y_ptr,
        R, J, K, Q,
        x_plane, y_plane,
        X_COMPLEX: tl.constexpr, Y_COMPLEX: tl.constexpr,
        BR: tl.constexpr, BK: tl.constexpr, BJ: tl.constexpr, PREC: tl.constexpr,
    ):
        # One contraction along a grid axis of a contiguous tensor viewed as (P, J, Q):
        #     y[p, k, q] = sum_j M[k, j] x[p, j, q]        (M complex, (K, J) interleaved)
        # The rows of the GEMM are the R = P*Q pairs (p, q), so a step on the last axis
        # (Q = 1) and a step on an inner axis (Q > 1) both run with full row tiles and
        # need no transpose of the data. Complex operands are two planes `*_plane` apart;
        # a real output keeps Re(M x) only (the last synthesis step).
        pid_r = tl.program_id(0)
        pid_k = tl.program_id(1)
        r = pid_r.to(tl.int64) * BR + tl.arange(0, BR).to(tl.int64)
        kk = pid_k * BK + tl.arange(0, BK)
        p = r // Q
        q = r - p * Q
        x_row = p * J * Q + q  # offset of x[p, 0, q]
        y_row = p * K * Q + q  # offset of y[p, 0, q]
        r_ok = r < R
        k_ok = kk < K
        acc_re = tl.zeros((BR, BK), dtype=tl.float32)
        acc_im = tl.zeros((BR, BK), dtype=tl.float32)
        for j0 in range(0, J, BJ):
            jj = j0 + tl.arange(0, BJ)
            j_ok = jj < J
            x_off = x_row[:, None] + (jj * Q)[None, :]
            x_mask = r_ok[:, None] & j_ok[None, :]
            # M^T tile (BJ, BK): M[k, j] at 2 * (k * J + j) (+1 for the imaginary part)
            m_off = 2 * (kk[None, :] * J + jj[:, None])
            m_mask = j_ok[:, None] & k_ok[None, :]
            m_re = tl.load(m_ptr + m_off, mask=m_mask, other=0.0)
            m_im = tl.load(m_ptr + m_off + 1, mask=m_mask, other=0.0)
            x_re = tl.load(x_ptr + x_off, mask=x_mask, other=0.0).to(tl.float32)
            acc_re = tl.dot(x_re, m_re, acc_re, input_precision=PREC)
            if Y_COMPLEX:
                acc_im = tl.dot(x_re, m_im, acc_im, input_precision=PREC)
            if X_COMPLEX:
                x_im = tl.load(x_ptr + x_plane + x_off, mask=x_mask, other=0.0).to(tl.float32)
                acc_re = tl.dot(-x_im, m_im, acc_re, input_precision=PREC)
                if Y_COMPLEX:
                    acc_im = tl.dot(x_im, m_re, acc_im, input_precision=PREC)
        y_off = y_row[:, None] + (kk * Q)[None, :]
        y_mask = r_ok[:, None] & k_ok[None, :]
        tl.store(y_ptr + y_off, acc_re.to(y_ptr.dtype.element_ty), mask=y_mask)
        if Y_COMPLEX:
            tl.store(y_ptr + y_plane + y_off, acc_im.to(y_ptr.dtype.element_ty), mask=y_mask)

    @triton.jit
    def _mode_tile_fn(
        a_ptr, b_ptr, o_ptr, bias_ptr, gb_ptr,
        k, pid, M, N, T,
        sak, sam, sat, sap,
        sbk, sbt, sbn, sbp,
        sok, som, son, sop,
        CONJ_A: tl.constexpr, CONJ_B: tl.constexpr,
        ADD_BIAS: tl.constexpr, BIAS_GRAD: tl.constexpr,
        BM: tl.constexpr, BN: tl.constexpr, BT: tl.constexpr, PREC: tl.constexpr,
    ):
        # One (BM x BN) tile of the complex product of mode k:
        #     out_k[m, n] = sum_t op(A_k)[m, t] op(B_k)[t, n],   op = conj or identity,
        # every operand addressed by (mode, row, column, plane) strides, so the forward
        # mixing, both adjoint mixings and the interleaved weight layout are one routine.
        # ADD_BIAS: out[m, n] += bias[n] on mode 0 (the DC coefficient of a constant).
        # BIAS_GRAD: gb[n] = sum_t Re B_0[t, n] (written by the first row tile of mode 0).
        n_tiles = tl.cdiv(N, BN)
        pid_m = pid // n_tiles
        pid_n = pid - pid_m * n_tiles
        mm = pid_m * BM + tl.arange(0, BM)
        nn = pid_n * BN + tl.arange(0, BN)
        m_ok = mm < M
        n_ok = nn < N
        k64 = k.to(tl.int64)
        a_base = a_ptr + k64 * sak
        b_base = b_ptr + k64 * sbk
        acc_re = tl.zeros((BM, BN), dtype=tl.float32)
        acc_im = tl.zeros((BM, BN), dtype=tl.float32)
        gb = tl.zeros((BN,), dtype=tl.float32)
        for t0 in range(0, T, BT):
            tt = t0 + tl.arange(0, BT)
            t_ok = tt < T
            a_off = mm[:, None] * sam + tt[None, :] * sat
            a_mask = m_ok[:, None] & t_ok[None, :]
            b_off = tt[:, None] * sbt + nn[None, :] * sbn
            b_mask = t_ok[:, None] & n_ok[None, :]
            a_re = tl.load(a_base + a_off, mask=a_mask, other=0.0)
            a_im = tl.load(a_base + sap + a_off, mask=a_mask, other=0.0)
            b_re = tl.load(b_base + b_off, mask=b_mask, other=0.0)
            b_im = tl.load(b_base + sbp + b_off, mask=b_mask, other=0.0)
            if CONJ_A:
                a_im = -a_im
            if CONJ_B:
                b_im = -b_im
            acc_re = tl.dot(a_re, b_re, acc_re, input_precision=PREC)
            acc_re = tl.dot(-a_im, b_im, acc_re, input_precision=PREC)
            acc_im = tl.dot(a_re, b_im, acc_im, input_precision=PREC)
            acc_im = tl.dot(a_im, b_re, acc_im, input_precision=PREC)
            if BIAS_GRAD:
                gb += tl.sum(b_re, axis=0)
        # the "this program owns the DC mode" condition as a vector (a scalar-and-vector
        # mask is mistyped by the Triton interpreter; compiled, both forms are the same)
        on_dc = (nn * 0 + k) == 0
        if ADD_BIAS:
            bias = tl.load(bias_ptr + nn, mask=n_ok & on_dc, other=0.0)
            acc_re += bias[None, :]
        o_off = k64 * sok + mm[:, None] * som + nn[None, :] * son
        o_mask = m_ok[:, None] & n_ok[None, :]
        tl.store(o_ptr + o_off, acc_re, mask=o_mask)
        tl.store(o_ptr + sop + o_off, acc_im, mask=o_mask)
        if BIAS_GRAD:
            tl.store(gb_ptr + nn, gb, mask=n_ok & on_dc & ((nn * 0 + pid_m) == 0))

    _mode_tile = _mode_tile_fn

    @triton.jit
    def _mix_kernel(
        c_ptr, w_ptr, y_ptr, bias_ptr,
        B, CI, CO, KT,
        HAS_BIAS: tl.constexpr,
        BM: tl.constexpr, BN: tl.constexpr, BT: tl.constexpr, PREC: tl.constexpr,
    ):
        # y[b, o, k] = sum_i c[b, i, k] w[k, i, o] (+ bias[o] at k = 0); one mode per
        # program row, c and y as planes (2, B, C, KT), w interleaved (KT, CI, CO, 2).
        _mode_tile(
            c_ptr, w_ptr, y_ptr, bias_ptr, bias_ptr,
            tl.program_id(0), tl.program_id(1), B, CO, CI,
            1, CI * KT, KT, B * CI * KT,
            2 * CI * CO, 2 * CO, 2, 1,
            1, CO * KT, KT, B * CO * KT,
            False, False, HAS_BIAS, False, BM, BN, BT, PREC,
        )

    @triton.jit
    def _mix_backward_kernel(
        gy_ptr, c_ptr, w_ptr, gc_ptr, gw_ptr, gb_ptr,
        B, CI, CO, KT, GC_TILES,
        BIAS_GRAD: tl.constexpr,
        BM1: tl.constexpr, BN1: tl.constexpr, BT1: tl.constexpr,
        BM2: tl.constexpr, BN2: tl.constexpr, BT2: tl.constexpr, PREC: tl.constexpr,
    ):
        # programs [0, GC_TILES): gc[b, i, k] = sum_o gy[b, o, k] conj(w[k, i, o])
        # programs [GC_TILES, ...): gw[k, i, o] = sum_b conj(c[b, i, k]) gy[b, o, k]
        # (and the bias gradient sum_b Re gy[b, o, 0]); one launch for both adjoints.
        k = tl.program_id(0)
        pid = tl.program_id(1)
        if pid < GC_TILES:
            _mode_tile(
                gy_ptr, w_ptr, gc_ptr, gb_ptr, gb_ptr,
                k, pid, B, CI, CO,
                1, CO * KT, KT, B * CO * KT,
                2 * CI * CO, 2, 2 * CO, 1,
                1, CI * KT, KT, B * CI * KT,
                False, True, False, False, BM1, BN1, BT1, PREC,
            )
        else:
            _mode_tile(
                c_ptr, gy_ptr, gw_ptr, gb_ptr, gb_ptr,
                k, pid - GC_TILES, CI, CO, B,
                1, KT, CI * KT, B * CI * KT,
                1, CO * KT, KT, B * CO * KT,
                2 * CI * CO, 2 * CO, 2, 1,
                True, False, False, BIAS_GRAD, BM2, BN2, BT2, PREC,
            )

    _KERNELS = {
        "axis": _axis_kernel,
        "mix": _mix_kernel,
        "mix_backward": _mix_backward_kernel,
    }
    return _KERNELS


# ---------------------------------------------------------------------------------------
# launchers


# Tile caps and warps: the largest tiles that compile without register spills for
# sm_80 and sm_90 with tf32x3 products (checked offline with ptxas, see the tests): a
# transform step (64 rows x 32 modes, 16 contraction steps), a mixing tile (32 x 64, 16
# steps); 8 warps per program. Not tuned on hardware.
_ROWS, _COLS, _INNER, _WARPS = 64, 32, 16, 8
_MIX_ROWS, _MIX_COLS = 32, 64


def _block(n: int, hi: int) -> int:
    """A power-of-two tile length for ``n`` elements, at least 16 (``tl.dot``'s minimum)."""
    return max(16, min(hi, triton.next_power_of_2(max(n, 1))))


def _precision() -> str:
    return "ieee" if _interpret() else DOT_PRECISION


def _separable(
    src: torch.Tensor,
    complex_in: bool,
    mats: list[torch.Tensor],
    order: tuple[int, ...],
    real_out_dtype: torch.dtype | None,
) -> torch.Tensor:
    """Apply ``mats[a]`` (out_a x in_a complex) along grid axis ``a`` in ``order``.

    ``src`` is a real ``(B, C, *grid)`` tensor or complex planes ``(2, B, C, *grid)``.
    Every step is one launch; the result is complex planes, or (``real_out_dtype``) the
    real part of the last step in that dtype.
    """
    k = _kernels()
    lead_shape = tuple(src.shape[1:3]) if complex_in else tuple(src.shape[:2])
    shape = list(src.shape[3:] if complex_in else src.shape[2:])
    lead = math.prod(lead_shape)
    cur, cur_complex = src, complex_in
    for step, a in enumerate(order):
        mat = mats[a]
        real_out = real_out_dtype is not None and step == len(order) - 1
        j, kk = shape[a], mat.shape[0]
        q = math.prod(shape[a + 1 :])
        r = lead * math.prod(shape[:a]) * q
        shape[a] = kk
        if real_out:
            out = torch.empty(*lead_shape, *shape, device=src.device, dtype=real_out_dtype)
        else:
            out = torch.empty(2, *lead_shape, *shape, device=src.device, dtype=torch.float32)
        if out.numel():
            br, bk = _block(r, _ROWS), _block(kk, _COLS)
            grid = (triton.cdiv(r, br), triton.cdiv(kk, bk))
            k["axis"][grid](
                cur, torch.view_as_real(mat), out,
                r, j, kk, q,
                cur.numel() // 2 if cur_complex else 0, 0 if real_out else out.numel() // 2,
                X_COMPLEX=cur_complex, Y_COMPLEX=not real_out,
                BR=br, BK=bk, BJ=_INNER, PREC=_precision(), num_warps=_WARPS,
            )
        cur, cur_complex = out, not real_out
    return cur


def _mats(kind: str, grid: tuple[int, ...], modes: tuple[int, ...], device) -> list[torch.Tensor]:
    d = len(modes)
    return [
        axis_matrix(kind, grid[i], modes[i], i == d - 1, device, torch.complex64)
        for i in range(d)
    ]


def _mix(c: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Planes ``y (2, B, Cout, K)`` from planes ``c (2, B, Cin, K)`` and the weight."""
    k = _kernels()
    _, b, ci, kt = c.shape
    co = weight.shape[-2]
    y = torch.empty(2, b, co, kt, device=c.device, dtype=torch.float32)
    if y.numel():
        bm, bn = _block(b, _MIX_ROWS), _block(co, _MIX_COLS)
        grid = (kt, triton.cdiv(b, bm) * triton.cdiv(co, bn))
        k["mix"][grid](
            c, weight, y, weight if bias is None else bias,
            b, ci, co, kt,
            HAS_BIAS=bias is not None, BM=bm, BN=bn, BT=_INNER,
            PREC=_precision(), num_warps=_WARPS,
        )
    return y


def _mix_backward(
    gy: torch.Tensor, c: torch.Tensor | None, weight: torch.Tensor, need_gc: bool,
    need_gw: bool, need_gb: bool,
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """Adjoint mixing: ``gc`` planes, ``gw`` like ``weight``, ``gb (Cout,)``, in one launch."""
    k = _kernels()
    _, b, co, kt = gy.shape
    ci = weight.shape[-3]
    dev = gy.device
    need_w_pass = need_gw or need_gb
    gc = torch.empty(2, b, ci, kt, device=dev, dtype=torch.float32) if need_gc else None
    gw = torch.empty(weight.shape, device=dev, dtype=torch.float32) if need_w_pass else None
    gb = torch.zeros(co, device=dev, dtype=torch.float32) if need_gb else None
    bm1, bn1 = _block(b, _MIX_ROWS), _block(ci, _MIX_COLS)
    bm2, bn2 = _block(ci, _MIX_ROWS), _block(co, _MIX_COLS)
    gc_tiles = triton.cdiv(b, bm1) * triton.cdiv(ci, bn1) if need_gc and b else 0
    gw_tiles = triton.cdiv(ci, bm2) * triton.cdiv(co, bn2) if need_w_pass else 0
    if gc_tiles + gw_tiles and kt:
        dummy = gy
        k["mix_backward"][(kt, gc_tiles + gw_tiles)](
            gy, dummy if c is None else c, weight,
            dummy if gc is None else gc, dummy if gw is None else gw,
            dummy if gb is None else gb,
            b, ci, co, kt, gc_tiles,
            BIAS_GRAD=need_gb, BM1=bm1, BN1=bn1, BT1=_INNER, BM2=bm2, BN2=bn2,
            BT2=_INNER, PREC=_precision(), num_warps=_WARPS,
        )
    return gc, (gw if need_gw else None), gb


class _SpectralConvTriton(torch.autograd.Function):
    """Forward and backward of the fused layer; both are ``2d + 1`` kernel launches."""

    @staticmethod
    def forward(ctx, x, weight, bias, modes, out_shape):  # type: ignore[override]
        d = len(modes)
        grid = tuple(x.shape[2:])
        b, ci = x.shape[:2]
        co = weight.shape[-2]
        kept = tuple(weight.shape[:d])
        kt = math.prod(kept)
        # axis orders from the dft path's cost model (FLOP-driven, calibrated on a CPU)
        order_a, _ = best_order(b * ci, grid, kept, True)
        order_s, _ = best_order(b * co, out_shape, kept, False)
        c = _separable(x, False, _mats("fwd", grid, modes, x.device), order_a, None)
        c = c.reshape(2, b, ci, kt)
        y = _mix(c, weight, bias).reshape(2, b, co, *kept)
        v = _separable(y, True, _mats("inv", out_shape, modes, x.device), order_s, x.dtype)
        ctx.modes, ctx.grid, ctx.out_shape, ctx.x_dtype = modes, grid, out_shape, x.dtype
        # c feeds the weight gradient; the bias-only pass reads it as well (its program
        # range is the weight's), so it is kept whenever either asks for a gradient
        keep_c = ctx.needs_input_grad[1] or ctx.needs_input_grad[2]
        ctx.save_for_backward(c if keep_c else None, weight)
        return v

    @staticmethod
    def backward(ctx, gv):  # type: ignore[override]
        c, weight = ctx.saved_tensors
        need_gx, need_gw, need_gb = ctx.needs_input_grad[:3]
        if gv is None or not (need_gx or need_gw or need_gb):
            return None, None, None, None, None
        modes, grid, out_shape = ctx.modes, ctx.grid, ctx.out_shape
        d = len(modes)
        gv = gv.contiguous()
        b, co = gv.shape[:2]
        ci = weight.shape[-3]
        kept = tuple(weight.shape[:d])
        kt = math.prod(kept)
        # adjoint of the synthesis: an analysis with inv^H (Hermitian weights included)
        order, _ = best_order(b * co, out_shape, kept, True)
        gy = _separable(gv, False, _mats("inv_adj", out_shape, modes, gv.device), order, None)
        gc, gw, gb = _mix_backward(gy.reshape(2, b, co, kt), c, weight, need_gx, need_gw,
                                   need_gb)
        gx = None
        if need_gx:
            # adjoint of the analysis: a synthesis with fwd^H (no Hermitian weights)
            order, _ = best_order(b * ci, grid, kept, False)
            gx = _separable(gc.reshape(2, b, ci, *kept), True,
                            _mats("fwd_adj", grid, modes, gv.device), order, ctx.x_dtype)
        return gx, gw, gb, None, None


# ---------------------------------------------------------------------------------------
# the entry point


def _check_args(x, weight, bias, modes, out_shape) -> tuple[tuple[int, ...], tuple[int, ...]]:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in _DTYPES:
        raise TypeError(
            f"x has dtype {x.dtype}; the Triton spectral convolution runs float32 or "
            f"bfloat16 inputs: use x.float(), or SpectralConv(method='fft') for float64"
        )
    modes_t = check_int_tuple("modes", modes, minimum=1)
    d = len(modes_t)
    if not 1 <= d <= 3:
        raise ValueError(f"modes must name 1 to 3 grid axes, got {modes!r}")
    if x.ndim != 2 + d:
        raise ValueError(
            f"x must have shape (batch, channels, {', '.join(f'n{i + 1}' for i in range(d))})"
            f" for modes {modes_t}, got shape {tuple(x.shape)}"
        )
    grid = tuple(x.shape[2:])
    target = check_int_tuple("out_shape", out_shape, length=d, minimum=1)
    check_modes(modes_t, grid, grid_name="the grid of x")
    check_modes(modes_t, target, grid_name="out_shape")
    kept = tuple(kept_length(m, i == d - 1) for i, m in enumerate(modes_t))
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"weight must be a torch.Tensor, got {type(weight).__name__}")
    if weight.dtype != torch.float32:
        raise TypeError(
            f"weight has dtype {weight.dtype}; the Triton path needs float32 weights: "
            f"use weight.float() (or layer.float())"
        )
    cin = x.shape[1]
    if (weight.ndim != d + 3 or tuple(weight.shape[:d]) != kept or weight.shape[d] != cin
            or weight.shape[-1] != 2):
        raise ValueError(
            f"weight must have shape (*kept, in_channels, out_channels, 2) = "
            f"({', '.join(map(str, kept))}, {cin}, out_channels, 2) for modes {modes_t} and "
            f"x of shape {tuple(x.shape)}, got {tuple(weight.shape)}"
        )
    cout = weight.shape[-2]
    if bias is not None:
        if not isinstance(bias, torch.Tensor):
            raise TypeError(f"bias must be a torch.Tensor or None, got {type(bias).__name__}")
        if bias.dtype != torch.float32 or tuple(bias.shape) != (cout,):
            raise ValueError(
                f"bias must be a float32 tensor of shape ({cout},) (out_channels), got "
                f"dtype {bias.dtype} and shape {tuple(bias.shape)}"
            )
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and t.device != x.device:
            raise ValueError(
                f"{name} is on {t.device} but x is on {x.device}: move them to one device"
            )
    if x.device.type != "cuda" and not _interpret():
        raise ValueError(
            f"x is on {x.device}: the Triton kernels need a CUDA tensor (or "
            f"TRITON_INTERPRET=1 for the slow CPU interpreter); on the CPU use "
            f"SpectralConv(method='fft') or method='dft'"
        )
    return modes_t, target


def spectral_conv_triton(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    modes: tuple[int, ...],
    out_shape: tuple[int, ...],
) -> torch.Tensor:
    """Spectral convolution (truncated analysis, per-mode mixing, synthesis) in Triton.

    .. math:: v(x') = \\mathrm{Re} \\sum_{k \\in K} h_k\\, e^{2\\pi i\\, k\\cdot x'/N'}
              \\Big[ \\sum_i W_{k,i,o}\\, \\frac{1}{N} \\sum_x u_i(x)\\,
              e^{-2\\pi i\\, k\\cdot x/N} + b_o\\,\\delta_{k0} \\Big]

    The same layer as :class:`sciml.spectral.SpectralConv` (kept modes, forward
    normalisation, Hermitian weights ``h`` on the halved last axis, bias folded into the
    DC mode), computed as pruned DFTs: ``2d + 1`` kernel launches forward and backward
    (see the module docstring). Differentiable in ``x``, ``weight`` and ``bias``.

    Args:
        x: real input ``(batch, in_channels, n_1, ..., n_d)``, float32 or bfloat16
            (bfloat16 is read as such, every product accumulates in float32, the output
            is bfloat16 again). Any strides (made contiguous here).
        weight: real view of the complex weights ``(*kept, in_channels, out_channels, 2)``,
            float32, ``kept = (2 m_1, ..., 2 m_{d-1}, m_d)``.
        bias: ``(out_channels,)`` float32, or ``None``.
        modes: modes kept per grid axis, ``d = len(modes)`` in 1..3.
        out_shape: the target grid ``(n'_1, ..., n'_d)`` (may differ from the input grid).

    Returns:
        ``(batch, out_channels, *out_shape)`` in the dtype of ``x``.

    Raises:
        ImportError: Triton is not installed (``pip install triton``).
        TypeError: ``x`` is not float32/bfloat16, ``weight``/``bias`` not float32 tensors.
        ValueError: shapes that do not match ``modes``, too many modes for a grid,
            tensors on different devices, or a CPU tensor without ``TRITON_INTERPRET=1``.
    """
    modes_t, target = _check_args(x, weight, bias, modes, out_shape)
    _kernels()
    return _SpectralConvTriton.apply(
        x.contiguous(), weight.contiguous(), None if bias is None else bias.contiguous(),
        modes_t, target,
    )
