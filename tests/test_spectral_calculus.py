"""Spectral calculus on periodic boxes against exact derivatives and scipy.fft."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import scipy.fft as sfft
import torch
from conftest import REAL_DTYPES, TOL

from sciml.spectral import (
    cell_average_resample,
    dealias,
    dealias_mask,
    error_spectrum,
    gradient,
    integer_wavenumbers,
    inverse_laplacian,
    laplacian,
    shell_spectrum,
    sobolev_norm,
    wavenumbers,
)

# ---------------------------------------------------------------------------------------
# trigonometric polynomials on [0, L_1) x ... x [0, L_d)


def coords(shape, lengths):
    return np.meshgrid(*[np.arange(n) * (L / n) for n, L in zip(shape, lengths)],
                       indexing="ij")


def trig(shape, lengths, waves):
    """u = sum a cos(2 pi k.x / L + phi), its gradient and Laplacian, exactly."""
    x = coords(shape, lengths)
    u = np.zeros(shape)
    grad = [np.zeros(shape) for _ in shape]
    lap = np.zeros(shape)
    for a, k, phi in waves:
        kappa = [2 * np.pi * ki / L for ki, L in zip(k, lengths)]
        arg = sum(kk * xi for kk, xi in zip(kappa, x)) + phi
        u += a * np.cos(arg)
        for i, kk in enumerate(kappa):
            grad[i] += -a * kk * np.sin(arg)
        lap += -a * sum(kk**2 for kk in kappa) * np.cos(arg)
    return u, grad, lap


# (shape, lengths, waves strictly below the Nyquist frequency of every axis)
TRIG_CASES = [
    ((12, 9), (2.0, 3.0), [(1.0, (1, 2), 0.3), (0.5, (-3, 4), 1.1), (0.25, (5, 0), -0.4),
                           (2.0, (0, 0), 0.0)]),
    ((11, 10), (2.0, 3.0), [(1.0, (5, -4), 0.0), (0.7, (2, 1), 2.0), (0.1, (0, 3), 0.5)]),
    ((8, 7, 6), (2.0, 3.0, 1.5), [(1.0, (1, 2, 1), 0.2), (0.5, (-3, 3, 2), -1.0),
                                  (0.3, (2, 0, -2), 0.7)]),
    ((9, 8, 5), (0.5, 3.0, 7.0), [(1.0, (4, -3, 2), 0.2), (0.4, (0, 1, 0), 0.0)]),
]


def case_id(case):
    return "x".join(map(str, case[0])) + "-L" + "x".join(map(str, case[1]))


@pytest.mark.parametrize("dtype", REAL_DTYPES, ids=str)
@pytest.mark.parametrize("case", TRIG_CASES, ids=case_id)
def test_gradient_of_trig_polynomial(case, dtype, close):
    shape, lengths, waves = case
    u, grad, _ = trig(shape, lengths, waves)
    # leading batch dims: a scaled copy
    ub = torch.from_numpy(np.stack([u, -2.0 * u])).to(dtype)
    out = gradient(ub, lengths)
    assert len(out) == len(shape)
    for i, g in enumerate(out):
        assert g.dtype == dtype and g.shape == ub.shape
        close(g, np.stack([grad[i], -2.0 * grad[i]]), dtype, factor=10)


@pytest.mark.parametrize("dtype", REAL_DTYPES, ids=str)
@pytest.mark.parametrize("case", TRIG_CASES, ids=case_id)
def test_laplacian_of_trig_polynomial(case, dtype, close):
    shape, lengths, waves = case
    u, _, lap = trig(shape, lengths, waves)
    out = laplacian(torch.from_numpy(u).to(dtype), lengths)
    assert out.dtype == dtype
    close(out, lap, dtype, factor=10)


@pytest.mark.parametrize("shape,lengths", [((12, 10), (2.0, 3.0)), ((6, 8, 4), (2.0, 3.0, 1.5))])
def test_laplacian_is_exact_on_nyquist_modes(shape, lengths, close):
    """Even derivatives of the Nyquist mode are real: no mode is dropped."""
    waves = [(1.0, (shape[0] // 2, *(1,) * (len(shape) - 1)), 0.0),
             (0.5, (1, *(0,) * (len(shape) - 2), shape[-1] // 2), 0.0)]
    u, _, lap = trig(shape, lengths, waves)
    close(laplacian(torch.from_numpy(u), lengths), lap, torch.float64, factor=10)


@pytest.mark.parametrize("case", TRIG_CASES, ids=case_id)
def test_inverse_laplacian_of_trig_polynomial(case, close):
    shape, lengths, waves = case
    x = coords(shape, lengths)
    u = np.zeros(shape)
    psi = np.zeros(shape)
    for a, k, phi in waves:
        kappa2 = sum((2 * np.pi * ki / L) ** 2 for ki, L in zip(k, lengths))
        mode = a * np.cos(sum(2 * np.pi * ki / L * xi for ki, L, xi in zip(k, lengths, x)) + phi)
        u += mode
        if kappa2 > 0:
            psi += -mode / kappa2  # the mean (k = 0) is dropped
    out = inverse_laplacian(torch.from_numpy(u), lengths)
    close(out, psi, torch.float64, factor=10)
    assert abs(float(out.mean())) < TOL[torch.float64] * np.abs(psi).max()


RANDOM_GRIDS = [((12, 10), (2.0, 3.0)), ((9, 11), (2.0, 3.0)), ((6, 7, 8), (2.0, 3.0, 0.5)),
                ((5, 4, 3), (1.0, 2.0, 3.0))]


@pytest.mark.parametrize("dtype", REAL_DTYPES, ids=str)
@pytest.mark.parametrize("shape,lengths", RANDOM_GRIDS, ids=str)
def test_inverse_laplacian_inverts_laplacian(shape, lengths, dtype, gen, close):
    u = torch.randn(2, 3, *shape, generator=gen, dtype=dtype)
    dims = tuple(range(-len(shape), 0))
    centred = u - u.mean(dim=dims, keepdim=True)
    close(inverse_laplacian(laplacian(u, lengths), lengths), centred, dtype, factor=100)
    close(laplacian(inverse_laplacian(u, lengths), lengths), centred, dtype, factor=100)


def scipy_derivative(u: np.ndarray, axis: int, length: float) -> np.ndarray:
    """d/dx_axis by a 1D FFT along that axis; its own Nyquist bin (even n) is zeroed."""
    n = u.shape[axis]
    k = sfft.fftfreq(n, 1.0 / n)
    mult = 2j * np.pi * k / length
    if n % 2 == 0:
        mult[n // 2] = 0.0
    shape = [1] * u.ndim
    shape[axis] = n
    return sfft.ifft(sfft.fft(u, axis=axis) * mult.reshape(shape), axis=axis).real


def scipy_laplacian(u: np.ndarray, lengths) -> np.ndarray:
    d = len(lengths)
    axes = tuple(range(-d, 0))
    ks = np.meshgrid(*[2 * np.pi * sfft.fftfreq(n, 1.0 / n) / L
                       for n, L in zip(u.shape[-d:], lengths)], indexing="ij")
    return sfft.ifftn(-sum(k**2 for k in ks) * sfft.fftn(u, axes=axes), axes=axes).real


@pytest.mark.parametrize("shape,lengths", [((9, 11), (2.0, 3.0)), ((5, 7, 3), (2.0, 3.0, 0.5))],
                         ids=str)
def test_gradient_matches_scipy_on_odd_grids(shape, lengths, np_rng, close):
    u = np_rng.standard_normal((2, *shape))
    out = gradient(torch.from_numpy(u), lengths)
    d = len(shape)
    for i in range(d):
        close(out[i], scipy_derivative(u, i - d, lengths[i]), torch.float64, factor=10)


@pytest.mark.parametrize("shape,lengths", RANDOM_GRIDS, ids=str)
def test_laplacian_matches_scipy(shape, lengths, np_rng, close):
    u = np_rng.standard_normal((3, *shape))
    close(laplacian(torch.from_numpy(u), lengths), scipy_laplacian(u, lengths), torch.float64,
          factor=10)


@pytest.mark.parametrize(
    "shape,lengths,axis",
    [((12, 10), (2.0, 3.0), 0), ((12, 10), (2.0, 3.0), 1), ((6, 8, 4), (2.0, 3.0, 1.5), 2),
     ((6, 8, 4), (2.0, 3.0, 1.5), 0)],
    ids=str,
)
def test_gradient_keeps_nyquist_content_of_the_other_axes(shape, lengths, axis, np_rng, close):
    """d/dx_i [f(x_i) g(rest)] = f'(x_i) g(rest) for ANY sampled g.

    Only the Nyquist bin of the differentiated axis i is ambiguous (odd derivative of a
    real field); the Nyquist content of the other (even) axes is a real cosine
    (-1)^j that the derivative along x_i leaves alone. Here f = sin(2 pi k x_i / L_i), k < n_i / 2,
    and g is white noise over the other axes, Nyquist content included.
    """
    d = len(shape)
    x = coords(shape, lengths)
    freq = 2 if shape[axis] > 4 else 1  # strictly below the axis' Nyquist frequency
    kappa = 2 * np.pi * freq / lengths[axis]
    f = np.sin(kappa * x[axis])
    df = kappa * np.cos(kappa * x[axis])
    g_shape = [1 if j == axis else n for j, n in enumerate(shape)]
    g = np.broadcast_to(np_rng.standard_normal(g_shape), shape)
    u = f * g
    out = gradient(torch.from_numpy(u), lengths)
    close(out[axis], df * g, torch.float64, factor=10)
    for j in range(d):  # and the scipy per-axis rule agrees on every axis
        close(out[j], scipy_derivative(u, j, lengths[j]), torch.float64, factor=10)


# ---------------------------------------------------------------------------------------
# the 2/3 rule


def loop_mask(shape) -> np.ndarray:
    """Explicit loop over the rfftn layout: keep iff 3 |k_i| < n_i on every axis."""
    d = len(shape)
    half = (*shape[:-1], shape[-1] // 2 + 1)
    mask = np.zeros(half, dtype=bool)
    for idx in itertools.product(*(range(n) for n in half)):
        keep = True
        for i, j in enumerate(idx):
            n = shape[i]
            k = j if (i == d - 1 or j <= n // 2) else j - n  # FFT order; |k| as fftfreq
            if not abs(k) * 3 < n:
                keep = False
        mask[idx] = keep
    return mask


@pytest.mark.parametrize("shape", [(12,), (10,), (9, 10), (12, 12), (3, 3), (6, 7, 8), (9, 6, 5)],
                         ids=str)
def test_dealias_mask_is_the_two_thirds_rule(shape):
    mask = dealias_mask(shape)
    assert mask.dtype == torch.bool
    np.testing.assert_array_equal(mask.numpy(), loop_mask(shape))


@pytest.mark.parametrize("shape", [(24, 18), (16, 12, 9)], ids=str)
def test_dealias_removes_high_and_keeps_low_modes(shape, close):
    d = len(shape)
    lengths = (1.0,) * d
    low = trig(shape, lengths, [(1.0, (1,) * d, 0.3), (0.5, (0,) * (d - 1) + (2,), 0.0)])[0]
    # above n/3 on the first axis (but below Nyquist) and on the last axis
    high = trig(shape, lengths, [(0.8, (-(-shape[0] // 3),) + (0,) * (d - 1), 0.2),
                                 (0.6, (1,) * (d - 1) + (shape[-1] // 3 + 1,), 1.0)])[0]
    out = dealias(torch.from_numpy(np.stack([low + high, high])), ndim=d)
    assert out.shape == (2, *shape)
    # (one comparison: its tolerance is relative to max|low|, the high-only field -> 0)
    close(out, np.stack([low, np.zeros(shape)]), torch.float64, factor=10)


# ---------------------------------------------------------------------------------------
# Sobolev norms


def ref_sobolev(u: np.ndarray, s: float, alpha: float, lengths) -> np.ndarray:
    """Parseval over the FULL spectrum (no half-spectrum bookkeeping)."""
    d = len(lengths)
    axes = tuple(range(-d, 0))
    N = math.prod(u.shape[-d:])
    c = np.fft.fftn(u, axes=axes) / N
    ks = np.meshgrid(*[2 * np.pi * np.fft.fftfreq(n, 1.0 / n) / L
                       for n, L in zip(u.shape[-d:], lengths)], indexing="ij")
    base = alpha + sum(k**2 for k in ks)
    if alpha == 0 and s < 0:
        w = np.where(base > 0, np.where(base > 0, base, 1.0) ** s, 0.0)
    else:
        w = base**s
    return np.sqrt(math.prod(lengths) * np.sum(w * np.abs(c) ** 2, axis=axes))


@pytest.mark.parametrize("shape,lengths", RANDOM_GRIDS, ids=str)
def test_sobolev_l2_is_the_discrete_l2_norm(shape, lengths, gen, close):
    u = torch.randn(2, 3, *shape, generator=gen, dtype=torch.float64)
    d = len(shape)
    N = math.prod(shape)
    expected = torch.sqrt(math.prod(lengths) / N * (u**2).sum(dim=tuple(range(-d, 0))))
    out = sobolev_norm(u, 0.0, alpha=1.0, lengths=lengths)
    assert out.shape == (2, 3)
    close(out, expected, torch.float64)


@pytest.mark.parametrize("alpha", (1.0, 0.5, 0.0))
@pytest.mark.parametrize("s", (-1.0, -0.5, 0.0, 1.0, 2.0))
@pytest.mark.parametrize("shape,lengths", RANDOM_GRIDS, ids=str)
def test_sobolev_matches_full_spectrum_parseval(shape, lengths, s, alpha, np_rng, close):
    u = np_rng.standard_normal((3, *shape))
    out = sobolev_norm(torch.from_numpy(u), s, alpha=alpha, lengths=lengths)
    close(out, ref_sobolev(u, s, alpha, lengths), torch.float64)


@pytest.mark.parametrize("trig_fn", ("cos", "sin"))
@pytest.mark.parametrize("alpha", (1.0, 0.25))
@pytest.mark.parametrize("s", (-1.0, -0.5, 1.0, 2.0))
@pytest.mark.parametrize(
    "shape,lengths,k",
    [((12, 9), (2.0, 3.0), (1, 2)), ((12, 9), (2.0, 3.0), (-3, 0)), ((12, 9), (2.0, 3.0), (0, 4)),
     ((8, 7, 6), (2.0, 3.0, 1.5), (1, -2, 2)), ((16,), (5.0,), (3,)), ((16,), (0.3,), (7,))],
    ids=str,
)
def test_sobolev_single_mode(shape, lengths, k, s, alpha, trig_fn, close):
    x = coords(shape, lengths)
    arg = sum(2 * np.pi * ki / L * xi for ki, L, xi in zip(k, lengths, x))
    u = np.cos(arg) if trig_fn == "cos" else np.sin(arg)
    kappa2 = sum((2 * np.pi * ki / L) ** 2 for ki, L in zip(k, lengths))
    expected = math.sqrt(math.prod(lengths) / 2) * (alpha + kappa2) ** (s / 2)
    out = sobolev_norm(torch.from_numpy(u), s, alpha=alpha, lengths=lengths)
    assert out.shape == ()
    close(out, expected, torch.float64)


def test_sobolev_dims_equals_moving_axes(gen, close):
    u = torch.randn(4, 12, 3, 9, generator=gen, dtype=torch.float64)
    lengths = (2.0, 3.0)
    for dims in [(1, 3), (-3, -1)]:
        out = sobolev_norm(u, 1.5, alpha=0.5, lengths=lengths, dims=dims)
        assert out.shape == (4, 3)
        moved = u.movedim((1, 3), (-2, -1))
        expected = ref_sobolev(moved.numpy(), 1.5, 0.5, lengths)
        close(out, expected, torch.float64)
    # the order of dims pairs with the order of lengths
    swapped = sobolev_norm(u, 1.5, alpha=0.5, lengths=(3.0, 2.0), dims=(3, 1))
    expected = ref_sobolev(u.movedim((3, 1), (-2, -1)).numpy(), 1.5, 0.5, (3.0, 2.0))
    close(swapped, expected, torch.float64)


def test_sobolev_one_norm_per_leading_index(gen, close):
    u = torch.randn(3, 2, 6, 7, generator=gen, dtype=torch.float64)
    out = sobolev_norm(u, -0.5, lengths=(2.0, 3.0))
    assert out.shape == (3, 2)
    for i, j in itertools.product(range(3), range(2)):
        single = sobolev_norm(u[i, j], -0.5, lengths=(2.0, 3.0))
        close(out[i, j], single, torch.float64)


@pytest.mark.parametrize("s", (-1.0, -0.5))
def test_sobolev_alpha_zero_negative_s_drops_the_mean(s, gen, close):
    u = torch.randn(2, 8, 9, generator=gen, dtype=torch.float64)
    u = u - u.mean(dim=(-2, -1), keepdim=True)
    base = sobolev_norm(u, s, alpha=0.0, lengths=(2.0, 3.0))
    shifted = sobolev_norm(u + 5.0, s, alpha=0.0, lengths=(2.0, 3.0))
    assert bool(torch.isfinite(shifted).all())
    close(shifted, base, torch.float64)
    # with alpha > 0 the mean counts
    assert bool((sobolev_norm(u + 5.0, s, alpha=1.0, lengths=(2.0, 3.0))
                 > sobolev_norm(u, s, alpha=1.0, lengths=(2.0, 3.0))).all())


def test_sobolev_float32(gen, close):
    u = torch.randn(2, 10, 9, generator=gen, dtype=torch.float64)
    out = sobolev_norm(u.float(), 1.0, lengths=(2.0, 3.0))
    assert out.dtype == torch.float32
    close(out, ref_sobolev(u.numpy(), 1.0, 1.0, (2.0, 3.0)), torch.float32, factor=10)


# ---------------------------------------------------------------------------------------
# wavenumbers


@pytest.mark.parametrize("real", (True, False))
@pytest.mark.parametrize("shape,lengths", [((8, 9), (2.0, 3.0)), ((5, 6, 7), (1.0, 0.5, 4.0))],
                         ids=str)
def test_wavenumbers(shape, lengths, real, close):
    ks = wavenumbers(shape, lengths, real=real)
    d = len(shape)
    assert len(ks) == d
    for i, (n, L) in enumerate(zip(shape, lengths)):
        if real and i == d - 1:
            ints = np.arange(n // 2 + 1)
        else:
            ints = np.fft.fftfreq(n, 1.0 / n)
        view = [1] * d
        view[i] = ints.size
        assert tuple(ks[i].shape) == tuple(view)
        close(ks[i].ravel(), 2 * np.pi * ints / L, torch.float64)
        np.testing.assert_array_equal(integer_wavenumbers(n, halved=real and i == d - 1).numpy(),
                                      ints)


@pytest.mark.parametrize("n, length", [(24, 1.0), (25, 2 * math.pi)])
def test_navier_stokes_operators_are_the_calculus_ones(n, length):
    """The solver keeps its packed transforms (its speed), but its wavenumbers, 2/3 mask,
    velocity, advection and linear terms are those of sciml.spectral."""
    from sciml.pdes import NavierStokes2D

    g = torch.Generator().manual_seed(3)
    w = torch.randn(2, n, n, generator=g, dtype=torch.float64)
    ns = NavierStokes2D(viscosity=1e-2, length=length, drag=0.1)
    ops = ns._ops(n, torch.float64, w.device)
    kx, ky = wavenumbers((n, n), (length, length), real=False)
    torch.testing.assert_close(ops.k2_full, (kx**2 + ky**2).expand(n, n), rtol=0, atol=0)
    assert torch.equal(ops.mask.bool(), dealias_mask((n, n), real=False))
    # the rfftn-layout mask is the full one's halved last axis
    assert torch.equal(dealias_mask((n, n)), dealias_mask((n, n), real=False)[:, : n // 2 + 1])
    L = (length, length)
    wd = dealias(w)
    psi = -inverse_laplacian(wd, L)  # -lap(psi) = w
    dpsi = gradient(psi, L)
    u, v = ns.velocity(w)
    torch.testing.assert_close(u, dpsi[1], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(v, -dpsi[0], rtol=1e-12, atol=1e-12)
    # w_t = -P(u.grad w) + nu lap(w) - mu w on the kept modes (no forcing)
    dw = gradient(wd, L)
    rhs = -dealias(u * dw[0] + v * dw[1]) + 1e-2 * laplacian(wd, L) - 0.1 * wd
    torch.testing.assert_close(ns.rhs(w), rhs, rtol=1e-11, atol=1e-11)


def test_shell_spectrum_places_a_mode_on_its_shell_and_keeps_parseval():
    n = 32
    x = torch.arange(n, dtype=torch.float64) / n
    X, Y = torch.meshgrid(x, x, indexing="ij")
    u = 3.0 * torch.cos(2 * math.pi * (3 * X + 4 * Y))  # |k| = 5, mean square 4.5
    e = shell_spectrum(u[None])
    assert e.shape == (n // 2 + 1,)
    np.testing.assert_allclose(e[5], 4.5, rtol=1e-12)
    np.testing.assert_allclose(np.delete(e, 5), 0.0, atol=1e-20)
    g = torch.randn(3, n, n, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    np.testing.assert_allclose(shell_spectrum(g).sum(), float((g**2).mean()), rtol=1e-12)
    err, tru = error_spectrum(g + u, g)
    np.testing.assert_allclose(err, e, rtol=1e-12, atol=1e-20)
    np.testing.assert_allclose(tru, shell_spectrum(g), rtol=1e-12)
    with pytest.raises(ValueError, match="square"):
        shell_spectrum(torch.zeros(4, 5))
    with pytest.raises(ValueError, match="shape"):
        error_spectrum(g, g[:2])


def test_cell_average_resample_matches_exact_cell_averages_and_keeps_the_mean():
    def averages(n, k, phase):  # exact averages of cos(2 pi k x + phase) on n cells of [0, 1)
        a = torch.arange(n + 1, dtype=torch.float64) / n
        s = torch.sin(2 * math.pi * k * a + phase) / (2 * math.pi * k)
        return (s[1:] - s[:-1]) * n

    for m, n in ((12, 30), (30, 12), (16, 48)):
        for k in (1, 2, 5):  # below both grids' Nyquist modes
            got = cell_average_resample(averages(m, k, 0.3)[None], n)[0]
            torch.testing.assert_close(got, averages(n, k, 0.3), rtol=0, atol=1e-12)
    v = torch.rand(2, 20, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    torch.testing.assert_close(cell_average_resample(v, 35).mean(-1), v.mean(-1))
    assert cell_average_resample(v, 20) is v
    with pytest.raises(ValueError, match="n must be >= 1"):
        cell_average_resample(v, 0)
