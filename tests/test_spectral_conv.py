"""SpectralConv against the dense numpy reference of test_spectral_transforms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import GRADCHECK, REAL_DTYPES, TOL
from test_spectral_transforms import ref_irfftn, ref_rfftn, to_np

from sciml.spectral import SpectralConv


def ref_spectral_conv(x: np.ndarray, weight: np.ndarray, bias, modes, out_shape) -> np.ndarray:
    """Analysis, per-mode complex channel mixing, bias on the DC coefficient, synthesis.

    ``weight`` is the layer's real parameter ``(*kept, in, out, 2)``.
    """
    d = len(modes)
    w = weight[..., 0] + 1j * weight[..., 1]  # (*kept, in, out)
    c = ref_rfftn(x, modes)  # (B, in, *kept)
    y = np.einsum("bi...,...io->bo...", c, w)
    if bias is not None:
        y[(slice(None), slice(None)) + (0,) * d] += bias  # a constant is its DC coefficient
    return ref_irfftn(y, modes, out_shape)


def make_layer(cin, cout, modes, *, method, dtype, gen, bias=True, out_shape=None):
    layer = SpectralConv(cin, cout, modes, out_shape=out_shape, bias=bias, method=method,
                         dtype=dtype)
    with torch.no_grad():  # random (not the zero-initialised) bias, seeded weights
        layer.weight.copy_(torch.randn(layer.weight.shape, generator=gen, dtype=dtype))
        if layer.bias is not None:
            layer.bias.copy_(torch.randn(layer.bias.shape, generator=gen, dtype=dtype))
    return layer


LAYER_CASES = [
    ((16,), (5,)),
    ((15,), (8,)),  # all modes, odd
    ((12, 10), (4, 6)),  # halved axis at its maximum (Nyquist kept)
    ((9, 8), (4, 5)),  # full odd axis at its maximum, halved Nyquist
    ((6, 8, 10), (2, 3, 4)),
]


@pytest.mark.parametrize("bias", (True, False))
@pytest.mark.parametrize("dtype", REAL_DTYPES, ids=str)
@pytest.mark.parametrize("method", ("fft", "dft", "auto"))
@pytest.mark.parametrize("case", LAYER_CASES, ids=str)
def test_spectral_conv_matches_reference(case, method, dtype, bias, gen, close):
    grid, modes = case
    layer = make_layer(3, 2, modes, method=method, dtype=dtype, gen=gen, bias=bias)
    x = torch.randn(4, 3, *grid, generator=gen, dtype=torch.float64)
    y = layer(x.to(dtype))
    assert y.dtype == dtype and tuple(y.shape) == (4, 2, *grid)
    b = to_np(layer.bias).astype(np.float64) if bias else None
    expected = ref_spectral_conv(to_np(x), to_np(layer.weight).astype(np.float64), b, modes,
                                 grid)
    close(y, expected, dtype)


@pytest.mark.parametrize("case", LAYER_CASES, ids=str)
def test_methods_agree(case, gen, close):
    grid, modes = case
    layer = make_layer(2, 3, modes, method="fft", dtype=torch.float64, gen=gen)
    x = torch.randn(2, 2, *grid, generator=gen, dtype=torch.float64)
    y_fft = layer(x)
    layer.method = "dft"
    y_dft = layer(x)
    close(y_dft, y_fft, torch.float64)


@pytest.mark.parametrize("method", ("fft", "dft"))
def test_bias_is_a_constant_field(method, gen, close):
    layer = make_layer(2, 3, (3, 4), method=method, dtype=torch.float64, gen=gen)
    y = layer(torch.zeros(2, 2, 8, 9, dtype=torch.float64))
    expected = np.broadcast_to(to_np(layer.bias)[None, :, None, None], (2, 3, 8, 9))
    close(y, expected, torch.float64)


@pytest.mark.parametrize("method", ("fft", "dft"))
def test_out_shape_in_time(method, gen, close):
    """3D (x, y, t): a different output length in t resamples; constructor and forward."""
    grid, modes = (6, 8, 10), (2, 3, 4)
    x = torch.randn(2, 2, *grid, generator=gen, dtype=torch.float64)
    for out in [(6, 8, 16), (6, 8, 6), (8, 10, 7)]:
        layer = make_layer(2, 3, modes, method=method, dtype=torch.float64, gen=gen,
                           out_shape=out)
        expected = ref_spectral_conv(to_np(x), to_np(layer.weight), to_np(layer.bias), modes,
                                     out)
        y = layer(x)
        assert tuple(y.shape) == (2, 3, *out)
        close(y, expected, torch.float64)
        # the forward argument overrides the constructor's default
        other = (6, 8, 12)
        y2 = layer(x, out_shape=other)
        assert tuple(y2.shape) == (2, 3, *other)
        close(y2, ref_spectral_conv(to_np(x), to_np(layer.weight), to_np(layer.bias), modes,
                                    other), torch.float64)
        # and a layer built without out_shape resamples through the forward argument
        plain = make_layer(2, 3, modes, method=method, dtype=torch.float64, gen=gen)
        close(plain(x, out_shape=out),
              ref_spectral_conv(to_np(x), to_np(plain.weight), to_np(plain.bias), modes, out),
              torch.float64)


@pytest.mark.parametrize("method", ("fft", "dft"))
@pytest.mark.parametrize(
    "grid,modes,out",
    [((4, 5), (2, 3), None), ((5, 4), (2, 3), (6, 6)), ((4, 3, 4), (1, 1, 3), (4, 3, 5))],
    ids=str,
)
def test_gradcheck_layer(grid, modes, out, method, gen):
    """Gradients with respect to the input, the weight and the bias (float64)."""
    layer = make_layer(2, 2, modes, method=method, dtype=torch.float64, gen=gen)
    x = torch.randn(2, 2, *grid, generator=gen, dtype=torch.float64, requires_grad=True)
    w = layer.weight.detach().clone().requires_grad_(True)
    b = layer.bias.detach().clone().requires_grad_(True)

    def f(x_, w_, b_):
        return torch.func.functional_call(layer, {"weight": w_, "bias": b_}, (x_,),
                                          {"out_shape": out})

    assert torch.autograd.gradcheck(f, (x, w, b), **GRADCHECK)


@pytest.mark.parametrize("method", ("fft", "dft"))
def test_every_parameter_gets_a_gradient(method, gen):
    # no Nyquist bin is kept (full axis 8 keeps -3..2, halved axis 9 is odd): the only
    # coefficient that is real for every real input is the DC one
    layer = make_layer(3, 2, (3, 4), method=method, dtype=torch.float64, gen=gen)
    x = torch.randn(4, 3, 8, 9, generator=gen, dtype=torch.float64)
    g = torch.randn(4, 2, 8, 9, generator=gen, dtype=torch.float64)
    (layer(x) * g).sum().backward()
    for name, p in layer.named_parameters():
        assert p.grad is not None, name
        assert float(p.grad.abs().sum()) > 0, name
    assert bool((layer.bias.grad != 0).all())
    gw = layer.weight.grad
    dead = torch.zeros_like(gw, dtype=torch.bool)
    dead[0, 0, :, :, 1] = True  # Im of the DC weights: Re(W c) with c real ignores it
    assert bool((gw[~dead] != 0).all())
    assert float(gw[dead].abs().max()) <= TOL[torch.float64] * float(gw.abs().max())


def test_fits_a_known_spectral_multiplier():
    """Adam drives a SpectralConv to the smoothing operator 1 / (1 + |k|^2) on 16 x 16."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(7)
    n = 16
    k1 = np.fft.fftfreq(n, 1.0 / n)[:, None]
    k2 = np.arange(n // 2 + 1)[None, :]
    mult = 1.0 / (1.0 + k1**2 + k2**2)

    def target(x: torch.Tensor) -> torch.Tensor:
        xs = to_np(x).astype(np.float64)
        out = np.fft.irfft2(mult * np.fft.rfft2(xs), s=(n, n))
        return torch.from_numpy(out).to(x.dtype)

    x_train = torch.randn(32, 1, n, n, generator=g)
    y_train = target(x_train)
    layer = SpectralConv(1, 1, (n // 2, n // 2 + 1), method="fft")
    opt = torch.optim.Adam(layer.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=300)
    losses = []
    for _ in range(300):
        opt.zero_grad()
        loss = ((layer(x_train) - y_train) ** 2).mean()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
    x_test = torch.randn(16, 1, n, n, generator=g)
    with torch.no_grad():
        y_test = target(x_test)
        rel = float((layer(x_test) - y_test).norm() / y_test.norm())
    # the operator is exactly representable (all 16 x 9 modes kept, real weights 1/(1+|k|^2));
    # 300 steps reach ~5e-6 on a few seeds: the bound leaves a wide margin
    assert rel < 1e-3, f"relative test error {rel:.3g}; losses {losses[0]:.3g} -> {losses[-1]:.3g}"
