"""Truncated real FFT pair against an independent dense-DFT reference written in numpy.

The reference below is written from the conventions stated in ``sciml/spectral/modes.py``
and never calls sciml or ``torch.fft``:

* kept frequencies: full axes ``0..m-1, -m..-1``; the halved (last) axis ``0..m-1``;
* analysis ``c_k = (1/N) sum_x u(x) exp(-2 pi i k.x / N)``;
* synthesis on an output grid ``N'``: ``v(x) = Re sum_k h_k c_k exp(2 pi i k.x / N')``,
  ``h = 1`` on the DC and (even ``n'``) Nyquist bins of the halved axis, else 2.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from conftest import GRADCHECK, REAL_DTYPES, TOL, assert_close_rel

from sciml.spectral import (
    best_order,
    choose_method,
    hermitian_weights,
    irfftn_truncated,
    kept_frequencies,
    modes_from_kept_shape,
    rfftn_truncated,
)
from sciml.spectral._paths import axis_matrix, dft_c2r, dft_cost, dft_r2c

METHODS = ("fft", "dft", "auto")
CDTYPE = {torch.float32: torch.complex64, torch.float64: torch.complex128}

# ---------------------------------------------------------------------------------------
# the independent reference


def ref_freqs(m: int, halved: bool) -> np.ndarray:
    if halved:
        return np.arange(m)
    return np.concatenate([np.arange(m), np.arange(-m, 0)])


def ref_analysis_matrix(n: int, m: int, halved: bool) -> np.ndarray:
    """(K, n): exp(-2 pi i k j / n) / n over the kept k."""
    k = ref_freqs(m, halved)
    j = np.arange(n)
    return np.exp(-2j * np.pi * np.mod(np.outer(k, j), n) / n) / n


def ref_hermitian(n_out: int, m: int, halved: bool) -> np.ndarray:
    k = ref_freqs(m, halved)
    if not halved:
        return np.ones(k.size)
    return np.where((k == 0) | (2 * k == n_out), 1.0, 2.0)


def ref_synthesis_matrix(n_out: int, m: int, halved: bool) -> np.ndarray:
    """(n', K): h_k exp(2 pi i k j / n') over the kept k, on an output axis of n' points."""
    k = ref_freqs(m, halved)
    j = np.arange(n_out)
    mat = np.exp(2j * np.pi * np.mod(np.outer(j, k), n_out) / n_out)
    return mat * ref_hermitian(n_out, m, halved)[None, :]


def apply_axes(x: np.ndarray, mats: list[np.ndarray]) -> np.ndarray:
    """Contract the trailing ``len(mats)`` axes of ``x`` with (out, in) matrices."""
    d = len(mats)
    y = x
    for i, mat in enumerate(mats):
        ax = y.ndim - d + i
        y = np.moveaxis(np.tensordot(mat, y, axes=([1], [ax])), 0, ax)
    return y


def ref_rfftn(x: np.ndarray, modes) -> np.ndarray:
    d = len(modes)
    grid = x.shape[-d:]
    mats = [ref_analysis_matrix(grid[i], modes[i], i == d - 1) for i in range(d)]
    return apply_axes(x.astype(np.complex128), mats)


def ref_irfftn(c: np.ndarray, modes, out_shape) -> np.ndarray:
    d = len(modes)
    mats = [ref_synthesis_matrix(out_shape[i], modes[i], i == d - 1) for i in range(d)]
    return apply_axes(c.astype(np.complex128), mats).real


def dense(mats: list[np.ndarray]) -> np.ndarray:
    """The full matrix of a separable map on C-order flattened arrays."""
    out = mats[0]
    for mat in mats[1:]:
        out = np.kron(out, mat)
    return out


def kept_shape(modes) -> tuple[int, ...]:
    d = len(modes)
    return tuple(m if i == d - 1 else 2 * m for i, m in enumerate(modes))


def to_np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


# (grid, modes, out_shape or None). Modes at the maximum are full m = n // 2 and halved
# m = n // 2 + 1; down-sampled outputs only where the kept modes fit the smaller grid.
CASES = [
    ((16,), (9,), None),  # 1D, even, halved Nyquist kept
    ((15,), (8,), None),  # 1D, odd, all modes
    ((16,), (5,), (27,)),  # up-sample to an odd grid
    ((16,), (5,), (8,)),  # down-sample
    ((16,), (9,), (17,)),  # input Nyquist bin on an odd output grid (h = 2 there)
    ((8, 12), (4, 7), None),  # 2D maximal modes, Nyquist on both axes
    ((9, 11), (4, 6), None),  # 2D maximal modes, odd sizes
    ((10, 7), (3, 2), (12, 16)),  # non-square, up
    ((10, 7), (3, 2), (6, 5)),  # non-square, down
    ((8, 12), (4, 7), (10, 14)),  # maximal modes, up
    ((8, 12), (4, 7), (8, 13)),  # maximal modes, odd output on the halved axis
    ((6, 8, 10), (3, 4, 6), None),  # 3D maximal, even
    ((5, 7, 9), (2, 3, 5), None),  # 3D maximal, odd
    ((6, 5, 8), (2, 2, 3), (8, 9, 12)),  # 3D up
    ((6, 5, 8), (2, 2, 3), (4, 4, 4)),  # 3D down
    ((4, 4, 3, 6), (2, 1, 1, 4), (5, 4, 3, 7)),  # 4D
]


def case_id(case) -> str:
    grid, modes, out = case
    s = "x".join(map(str, grid)) + "-m" + "x".join(map(str, modes))
    return s + ("" if out is None else "-to" + "x".join(map(str, out)))


# ---------------------------------------------------------------------------------------
# the reference itself


def test_reference_analysis_is_the_brute_force_sum(np_rng):
    """The separable reference equals the literal triple sum of the docstring formula."""
    grid, modes = (4, 3, 5), (2, 1, 3)
    x = np_rng.standard_normal(grid)
    c = ref_rfftn(x, modes)
    N = math.prod(grid)
    ks = [ref_freqs(m, i == 2) for i, m in enumerate(modes)]
    for a, b, e in itertools.product(*(range(len(k)) for k in ks)):
        k = (ks[0][a], ks[1][b], ks[2][e])
        total = 0j
        for p in itertools.product(*(range(n) for n in grid)):
            phase = sum(k[i] * p[i] / grid[i] for i in range(3))
            total += x[p] * np.exp(-2j * np.pi * phase)
        assert_close_rel(c[a, b, e], total / N, torch.complex128)


def test_reference_synthesis_is_the_brute_force_sum(np_rng):
    modes, out = (2, 3), (5, 4)
    c = np_rng.standard_normal((4, 3)) + 1j * np_rng.standard_normal((4, 3))
    v = ref_irfftn(c, modes, out)
    k1, k2 = ref_freqs(2, False), ref_freqs(3, True)
    for p in itertools.product(range(5), range(4)):
        total = 0j
        for a, b in itertools.product(range(4), range(3)):
            h = 1.0 if k2[b] == 0 or 2 * k2[b] == out[1] else 2.0
            total += h * c[a, b] * np.exp(2j * np.pi * (k1[a] * p[0] / 5 + k2[b] * p[1] / 4))
        assert_close_rel(v[p], total.real, torch.float64)


def test_kept_frequencies_follow_the_documented_order():
    for n, m in [(8, 4), (9, 4), (7, 1), (10, 3)]:
        assert kept_frequencies(n, m, False) == ref_freqs(m, False).tolist()
        assert kept_frequencies(n, m + 1, True) == ref_freqs(m + 1, True).tolist()
    # odd full axis at the maximum keeps -n//2 but not +n//2 (a documented loss)
    assert kept_frequencies(5, 2, False) == [0, 1, -2, -1]


@pytest.mark.parametrize("n", [1, 2, 7, 8, 9, 16])
def test_hermitian_weights_and_kept_shape(n):
    for m in range(1, n // 2 + 2):
        np.testing.assert_array_equal(hermitian_weights(n, m).numpy(), ref_hermitian(n, m, True))
    for modes in [(3,), (2, 5), (1, 4, 2), (3, 1, 2, 6)]:
        assert modes_from_kept_shape(kept_shape(modes)) == modes


# ---------------------------------------------------------------------------------------
# forward and inverse against the reference, every path


@pytest.mark.parametrize("dtype", REAL_DTYPES, ids=str)
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_rfftn_truncated_matches_reference(case, method, dtype, gen, close):
    grid, modes, _ = case
    x = torch.randn(2, 3, *grid, generator=gen, dtype=torch.float64)
    c = rfftn_truncated(x.to(dtype), modes, method=method)
    assert c.dtype == CDTYPE[dtype]
    assert tuple(c.shape) == (2, 3, *kept_shape(modes))
    close(c, ref_rfftn(to_np(x), modes), CDTYPE[dtype])


@pytest.mark.parametrize("dtype", REAL_DTYPES, ids=str)
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_irfftn_truncated_matches_reference(case, method, dtype, gen, close):
    grid, modes, out = case
    out = grid if out is None else out
    shape = (2, 3, *kept_shape(modes))
    c = torch.complex(
        torch.randn(shape, generator=gen, dtype=torch.float64),
        torch.randn(shape, generator=gen, dtype=torch.float64),
    )
    v = irfftn_truncated(c.to(CDTYPE[dtype]), out, method=method)
    assert v.dtype == dtype
    assert tuple(v.shape) == (2, 3, *out)
    close(v, ref_irfftn(to_np(c), modes, out), dtype)


@pytest.mark.parametrize("dtype", REAL_DTYPES, ids=str)
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_fft_and_dft_paths_agree(case, dtype, gen, close):
    grid, modes, out = case
    out = grid if out is None else out
    x = torch.randn(3, *grid, generator=gen, dtype=dtype)
    c_fft = rfftn_truncated(x, modes, method="fft")
    c_dft = rfftn_truncated(x, modes, method="dft")
    close(c_dft, c_fft, CDTYPE[dtype])
    v_fft = irfftn_truncated(c_fft, out, method="fft")
    v_dft = irfftn_truncated(c_fft, out, method="dft")
    close(v_dft, v_fft, dtype)


def test_int_modes_and_ndim(gen, close):
    x = torch.randn(2, 8, 10, generator=gen, dtype=torch.float64)
    # an int applies to every axis; ndim says how many trailing axes are grid axes
    c = rfftn_truncated(x, 3, ndim=2)
    close(c, ref_rfftn(to_np(x), (3, 3)), torch.complex128)
    c1 = rfftn_truncated(x, 4)  # int without ndim: one axis
    close(c1, ref_rfftn(to_np(x), (4,)), torch.complex128)
    v = irfftn_truncated(c1, 12)  # int shape: one axis
    close(v, ref_irfftn(to_np(c1), (4,), (12,)), torch.float64)


@pytest.mark.parametrize("method", ("fft", "dft"))
def test_non_contiguous_input(method, gen, close):
    base = torch.randn(9, 2, 8, generator=gen, dtype=torch.float64)
    x = base.permute(1, 2, 0)  # (2, 8, 9), not contiguous
    assert not x.is_contiguous()
    c = rfftn_truncated(x, (3, 4), method=method)
    close(c, ref_rfftn(to_np(x), (3, 4)), torch.complex128)
    ct = c.transpose(-1, -2).contiguous().transpose(-1, -2)
    v = irfftn_truncated(ct, (8, 9), method=method)
    close(v, ref_irfftn(to_np(c), (3, 4), (8, 9)), torch.float64)


@pytest.mark.parametrize("method", METHODS)
def test_empty_batch(method):
    """A batch of zero fields is a valid input: an empty spectrum of the right shape."""
    x = torch.zeros(0, 3, 8, 8)
    c = rfftn_truncated(x, (2, 3), method=method)
    assert tuple(c.shape) == (0, 3, 4, 3)
    v = irfftn_truncated(c, (8, 8), method=method)
    assert tuple(v.shape) == (0, 3, 8, 8)


# ---------------------------------------------------------------------------------------
# round trips and resampling


ROUND_TRIP_EXACT = [(16,), (15,), (8, 12), (8, 11), (6, 4, 9), (4, 6, 8, 5)]


def max_modes(grid):
    d = len(grid)
    return tuple(n // 2 + 1 if i == d - 1 else n // 2 for i, n in enumerate(grid))


@pytest.mark.parametrize("method", ("fft", "dft"))
@pytest.mark.parametrize("grid", ROUND_TRIP_EXACT, ids=str)
def test_round_trip_is_exact_with_all_modes_and_even_full_axes(grid, method, gen, close):
    """Every full axis even (the halved axis may be odd): all frequencies are kept."""
    x = torch.randn(2, *grid, generator=gen, dtype=torch.float64)
    modes = max_modes(grid)
    y = irfftn_truncated(rfftn_truncated(x, modes, method=method), grid, method=method)
    close(y, x, torch.float64)


@pytest.mark.parametrize("method", ("fft", "dft"))
@pytest.mark.parametrize("grid", [(9, 8), (5, 7, 6), (6, 7, 4)], ids=str)
def test_round_trip_on_odd_full_axes(grid, method, gen, close):
    """An odd full axis keeps -n//2 but not +n//2: exact only without that content."""
    d = len(grid)
    modes = max_modes(grid)
    x = torch.randn(2, *grid, generator=gen, dtype=torch.float64)
    y = irfftn_truncated(rfftn_truncated(x, modes, method=method), grid, method=method)
    # the round trip is the reference projection ...
    close(y, ref_irfftn(ref_rfftn(to_np(x), modes), modes, grid), torch.float64)
    # ... which is not the identity on a generic field (the lost frequency has content)
    assert float((y - x).abs().max()) > 1e-3
    # a field without content at |k_i| = n_i // 2 on its odd full axes comes back exactly
    spec = np.fft.fftn(to_np(x), axes=tuple(range(-d, 0)))
    for i, n in enumerate(grid[:-1]):
        if n % 2:
            k = np.fft.fftfreq(n, 1.0 / n)
            shape = [1] * (d + 1)
            shape[i + 1] = n
            spec = spec * (np.abs(k) != n // 2).reshape(shape)
    x_band = np.fft.ifftn(spec, axes=tuple(range(-d, 0)))
    assert np.abs(x_band.imag).max() < TOL[torch.float64] * np.abs(x_band.real).max()
    xb = torch.from_numpy(np.ascontiguousarray(x_band.real))
    yb = irfftn_truncated(rfftn_truncated(xb, modes, method=method), grid, method=method)
    close(yb, xb, torch.float64)


def band_limited(points, waves):
    """sum_j a_j cos(2 pi k_j . t + phi_j) on the grid t_i = p_i / n_i of the unit box."""
    axes = np.meshgrid(*[np.arange(n) / n for n in points], indexing="ij")
    out = np.zeros(points)
    for amp, k, phi in waves:
        out += amp * np.cos(2 * np.pi * sum(ki * t for ki, t in zip(k, axes)) + phi)
    return out


# (grid, modes, finer or coarser grid, waves): every wave is kept (|k_i| <= m_i - 1) and
# strictly below the Nyquist frequency of both grids (|k_i| < n_i / 2)
RESAMPLE = [
    ((16,), (9,), (40,), [(1.0, (3,), 0.2), (0.5, (7,), -1.0), (0.3, (0,), 0.0)]),
    ((16,), (4,), (7,), [(1.0, (3,), 0.2), (0.2, (1,), 1.0)]),
    ((12, 10), (6, 6), (20, 17), [(1.0, (2, 3), 0.1), (0.7, (-5, 4), 1.3), (0.4, (5, 0), 0.0)]),
    ((9, 11), (4, 6), (14, 11), [(1.0, (-3, 5), 0.4), (0.3, (3, 1), 2.0)]),
    ((8, 6, 10), (4, 3, 6), (8, 6, 24), [(1.0, (1, -2, 4), 0.3), (0.5, (-3, 2, 2), 1.0)]),
    ((8, 6, 10), (4, 3, 4), (8, 6, 7), [(1.0, (1, -2, 3), 0.3), (0.5, (-3, 2, 1), 1.0)]),
]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("case", RESAMPLE, ids=lambda c: f"{c[0]}->{c[2]}")
def test_band_limited_field_resamples_to_the_analytic_function(case, method, close):
    grid, modes, out, waves = case
    u = torch.from_numpy(band_limited(grid, waves))
    v = irfftn_truncated(rfftn_truncated(u, modes, method=method), out, method=method)
    close(v, band_limited(out, waves), torch.float64)


# ---------------------------------------------------------------------------------------
# derivatives: gradcheck and the adjoint identity against the dense reference

GRAD_CASES = [
    ((5,), (3,), (5,)),  # odd, all modes
    ((6,), (4,), (9,)),  # halved Nyquist, up-sampled to odd
    ((4, 6), (2, 4), (4, 6)),  # Nyquist on both axes
    ((5, 3), (2, 2), (6, 4)),  # odd sizes, synthesis onto even grids (Nyquist weight 1)
    ((4, 3, 4), (2, 1, 3), (4, 3, 4)),
]


@pytest.mark.parametrize("method", ("fft", "dft"))
@pytest.mark.parametrize("case", GRAD_CASES, ids=case_id)
def test_gradcheck_rfftn_truncated(case, method, gen):
    grid, modes, _ = case
    x = torch.randn(2, *grid, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda t: rfftn_truncated(t, modes, method=method), (x,), **GRADCHECK
    )


@pytest.mark.parametrize("method", ("fft", "dft"))
@pytest.mark.parametrize("case", GRAD_CASES, ids=case_id)
def test_gradcheck_irfftn_truncated(case, method, gen):
    _, modes, out = case
    shape = (2, *kept_shape(modes))
    c = torch.complex(
        torch.randn(shape, generator=gen, dtype=torch.float64),
        torch.randn(shape, generator=gen, dtype=torch.float64),
    ).requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda t: irfftn_truncated(t, out, method=method), (c,), **GRADCHECK
    )


@pytest.mark.parametrize("method", ("fft", "dft"))
def test_gradgradcheck_pair(method, gen):
    x = torch.randn(2, 4, 5, generator=gen, dtype=torch.float64, requires_grad=True)

    def f(t):
        return irfftn_truncated(rfftn_truncated(t, (2, 3), method=method), (6, 4), method=method)

    assert torch.autograd.gradgradcheck(f, (x,), **GRADCHECK)


ADJ_CASES = [c for c in CASES if math.prod(c[0]) <= 500]


@pytest.mark.parametrize("method", ("fft", "dft"))
@pytest.mark.parametrize("case", ADJ_CASES, ids=case_id)
def test_analysis_adjoint_against_dense_reference(case, method, np_rng, close):
    """<F x, g>_R = <x, F^* g>, with F^* g = Re(F^H g) from the dense reference matrix."""
    grid, modes, _ = case
    d = len(grid)
    F = dense([ref_analysis_matrix(grid[i], modes[i], i == d - 1) for i in range(d)])
    K = kept_shape(modes)
    x = torch.tensor(np_rng.standard_normal((2, *grid)), requires_grad=True)
    g_np = np_rng.standard_normal((2, *K)) + 1j * np_rng.standard_normal((2, *K))
    y = rfftn_truncated(x, modes, method=method)
    (gx,) = torch.autograd.grad(y, x, torch.from_numpy(g_np))
    expected = (g_np.reshape(2, -1) @ F.conj()).real.reshape(2, *grid)  # rows: Re(F^H g)
    close(gx, expected, torch.float64)
    lhs = np.real(np.vdot(to_np(y), g_np))
    rhs = float(np.sum(to_np(x) * to_np(gx)))
    close(lhs, rhs, torch.float64, factor=10)


@pytest.mark.parametrize("method", ("fft", "dft"))
@pytest.mark.parametrize("case", ADJ_CASES, ids=case_id)
def test_synthesis_adjoint_against_dense_reference(case, method, np_rng, close):
    """v = Re(S c): the vector-Jacobian product is S^H g (real g)."""
    grid, modes, out = case
    out = grid if out is None else out
    d = len(grid)
    S = dense([ref_synthesis_matrix(out[i], modes[i], i == d - 1) for i in range(d)])
    K = kept_shape(modes)
    c_np = np_rng.standard_normal((2, *K)) + 1j * np_rng.standard_normal((2, *K))
    c = torch.from_numpy(c_np).requires_grad_(True)
    g_np = np_rng.standard_normal((2, *out))
    v = irfftn_truncated(c, out, method=method)
    (gc,) = torch.autograd.grad(v, c, torch.from_numpy(g_np))
    expected = (g_np.reshape(2, -1) @ S.conj()).reshape(2, *K)  # rows: S^H g
    close(gc, expected, torch.complex128)
    lhs = float(np.sum(to_np(v) * g_np))
    rhs = np.real(np.vdot(to_np(gc), c_np))
    close(lhs, rhs, torch.float64, factor=10)


# ---------------------------------------------------------------------------------------
# the pruned kernels: axis matrices, every axis order, the order rule


@pytest.mark.parametrize("n,m,halved", [(8, 4, False), (7, 3, False), (8, 5, True), (9, 3, True)])
def test_axis_matrices_match_reference(n, m, halved, close):
    dev, dt = torch.device("cpu"), torch.complex128
    fwd = ref_analysis_matrix(n, m, halved)
    inv = ref_synthesis_matrix(n, m, halved)
    close(axis_matrix("fwd", n, m, halved, dev, dt), fwd, dt)
    close(axis_matrix("inv", n, m, halved, dev, dt), inv, dt)
    close(axis_matrix("fwd_adj", n, m, halved, dev, dt), fwd.conj().T, dt)
    close(axis_matrix("inv_adj", n, m, halved, dev, dt), inv.conj().T, dt)
    c64 = axis_matrix("fwd", n, m, halved, dev, torch.complex64)
    assert c64.dtype == torch.complex64
    close(c64, fwd, torch.complex64)


ORDER_CASES = [
    ((6, 8, 10), (3, 4, 6), (7, 9, 10)),
    ((5, 7, 9), (2, 3, 5), (5, 7, 9)),
    ((8, 12), (4, 7), (9, 12)),
    ((4, 3, 4, 5), (2, 1, 2, 3), (4, 3, 4, 5)),
]


@pytest.mark.parametrize("dtype", REAL_DTYPES, ids=str)
@pytest.mark.parametrize("case", ORDER_CASES, ids=case_id)
def test_dft_kernels_agree_for_every_axis_order(case, dtype, gen, close):
    grid, modes, out = case
    d = len(grid)
    cdt = CDTYPE[dtype]
    dev = torch.device("cpu")
    x = torch.randn(2, 3, *grid, generator=gen, dtype=torch.float64)
    fwd = [axis_matrix("fwd", grid[i], modes[i], i == d - 1, dev, cdt) for i in range(d)]
    inv = [axis_matrix("inv", out[i], modes[i], i == d - 1, dev, cdt) for i in range(d)]
    c_ref = ref_rfftn(to_np(x), modes)
    v_ref = ref_irfftn(c_ref, modes, out)
    c_in = torch.from_numpy(c_ref).to(cdt)
    for order in itertools.permutations(range(d)):
        c = dft_r2c(x.to(dtype), fwd, order)
        close(c, c_ref, cdt, msg=f"r2c order {order}")
        v = dft_c2r(c_in, inv, order)
        assert v.dtype == dtype
        close(v, v_ref, dtype, msg=f"c2r order {order}")


@pytest.mark.parametrize(
    "lead,grid,kept",
    [(1, (64,), (17,)), (8, (32, 32), (16, 9)), (4, (16, 8, 12), (8, 4, 7)),
     (2, (8, 4, 6, 10), (4, 2, 4, 5))],
)
@pytest.mark.parametrize("r2c", (True, False))
def test_best_order_is_a_least_cost_permutation(lead, grid, kept, r2c):
    order, cost = best_order(lead, grid, kept, r2c)
    d = len(grid)
    assert sorted(order) == list(range(d))
    assert len(order) == d
    assert math.isfinite(cost) and cost > 0
    costs = [dft_cost(lead, grid, kept, o, r2c) for o in itertools.permutations(range(d))]
    assert cost == min(costs)
    assert choose_method(torch.device("cpu"), lead, grid, kept, r2c) in ("fft", "dft")


# ---------------------------------------------------------------------------------------
# CUDA


@pytest.mark.gpu
@pytest.mark.parametrize("method", METHODS)
def test_cuda_matches_reference(method, gen, close):
    grid, modes, out = (6, 5, 8), (2, 2, 3), (8, 9, 12)
    x = torch.randn(2, *grid, generator=gen, dtype=torch.float64)
    c = rfftn_truncated(x.cuda(), modes, method=method)
    assert c.is_cuda
    close(c, ref_rfftn(to_np(x), modes), torch.complex128)
    v = irfftn_truncated(c, out, method=method)
    assert v.is_cuda
    close(v, ref_irfftn(to_np(c), modes, out), torch.float64)
    assert choose_method(torch.device("cuda"), 2, grid, kept_shape(modes), True) == "fft"
