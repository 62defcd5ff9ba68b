"""Neural operators: FNO against neuraloperator's, the SFNO's structure, and the losses."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sciml.operators import (
    FNO,
    SFNO,
    NSResidualLoss,
    Pointwise,
    RelativeLpLoss,
    SobolevLoss,
    fourier_resample,
    relative_lp,
    relative_sobolev,
)
from sciml.pdes import NavierStokes2D, taylor_green_vorticity


def _their_fno(width: int, modes: tuple[int, ...], layers: int):
    neuralop = pytest.importorskip("neuralop")
    n_modes = (*(2 * m for m in modes[:-1]), 2 * modes[-1] - 1)
    return neuralop.models.FNO(n_modes=n_modes, in_channels=1, out_channels=1,
                               hidden_channels=width, n_layers=layers)


def _copy_from_neuralop(ours: FNO, theirs) -> None:
    """Load neuraloperator's FNO weights into ours (their modes are fftshifted)."""
    with torch.no_grad():
        for i, block in enumerate(ours.blocks):
            w = theirs.fno_blocks.convs[i].weight.to_tensor()  # (in, out, kx, ky, kt) complex
            d = w.ndim - 2
            for ax in range(2, 2 + d - 1):
                w = w.roll(-(w.shape[ax] // 2), dims=ax)  # shifted order -> 0..m-1, -m..-1
            w = w.permute(*range(2, 2 + d), 0, 1)
            block.conv.weight.copy_(torch.view_as_real(w.contiguous()))
            block.conv.bias.copy_(theirs.fno_blocks.convs[i].bias.reshape(-1))
            block.skip.weight.copy_(theirs.fno_blocks.fno_skips[i].conv.weight[..., 0])
            mlp = theirs.fno_blocks.channel_mlp[i].fcs
            for mine, fc in ((block.mlp.fc1, mlp[0]), (block.mlp.fc2, mlp[1])):
                mine.weight.copy_(fc.weight[..., 0])
                mine.bias.copy_(fc.bias)
            block.gate.copy_(theirs.fno_blocks.channel_mlp_skips[i].weight.reshape(-1))
        for mine, fcs in ((ours.lifting, theirs.lifting.fcs), (ours.projection,
                                                                theirs.projection.fcs)):
            for layer, fc in ((mine.fc1, fcs[0]), (mine.fc2, fcs[1])):
                layer.weight.copy_(fc.weight[..., 0])
                layer.bias.copy_(fc.bias)


def test_fno_matches_neuraloperator_with_the_same_weights():
    torch.manual_seed(0)
    modes, width = (4, 4, 3), 6
    theirs = _their_fno(width, modes, 3)
    ours = FNO(1, 1, width, modes, layers=3)
    assert sum(p.numel() for p in ours.parameters()) == sum(
        p.numel() * (2 if p.is_complex() else 1) for p in theirs.parameters())
    _copy_from_neuralop(ours, theirs)
    x = torch.randn(2, 1, 16, 12, 8)
    ref = theirs(x)
    got = ours(x)
    assert got.shape == ref.shape
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("make", [
    lambda: (FNO(2, 3, 5, (3, 2), layers=2), torch.randn(2, 2, 8, 6)),
    lambda: (SFNO(3, 2, 6, layers=2, out_steps=5), torch.randn(2, 4, 8, 8)),
])
def test_every_parameter_receives_a_gradient(make):
    torch.manual_seed(1)
    model, x = make()
    model(x).square().sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_pointwise_is_a_1x1_convolution():
    torch.manual_seed(2)
    layer = Pointwise(3, 5)
    x = torch.randn(2, 3, 4, 6, 7)
    ref = torch.einsum("oc,bcxyz->boxyz", layer.weight, x) + layer.bias.view(1, -1, 1, 1, 1)
    torch.testing.assert_close(layer(x), ref)
    nobias = Pointwise(3, 5, bias=False)
    torch.testing.assert_close(nobias(x), torch.einsum("oc,bcxyz->boxyz", nobias.weight, x))


@pytest.mark.parametrize("n_old,n_new", [(8, 16), (9, 20), (16, 10), (12, 12)])
def test_fourier_resample_reproduces_band_limited_fields(n_old, n_new):
    def field(n):
        t = torch.arange(n, dtype=torch.float64) / n
        return 0.3 + torch.cos(2 * math.pi * t) - 0.5 * torch.sin(2 * math.pi * 2 * t)
    x = field(n_old).reshape(1, 1, n_old).repeat(2, 3, 1)
    y = fourier_resample(x, (n_new,))
    torch.testing.assert_close(y, field(n_new).reshape(1, 1, n_new).expand(2, 3, n_new))


def test_sfno_shapes_output_length_and_superresolution():
    torch.manual_seed(3)
    model = SFNO(4, 3, 8, layers=2, out_steps=6)
    x = torch.randn(2, 5, 16, 16)
    assert model(x).shape == (2, 6, 16, 16)
    assert model(x, out_steps=9).shape == (2, 9, 16, 16)
    fine = model(torch.randn(1, 5, 32, 32))  # zero-shot on a finer grid
    assert fine.shape == (1, 6, 32, 32) and torch.isfinite(fine).all()
    rebuilt = SFNO(**{**model.config(), "modes": tuple(model.config()["modes"])})
    rebuilt.load_state_dict(model.state_dict())
    torch.testing.assert_close(rebuilt(x), model(x))


def test_sfno_predicts_an_increment_on_the_last_frame():
    torch.manual_seed(4)
    model = SFNO(3, 2, 6, layers=2, out_steps=4)
    with torch.no_grad():
        model.projection.fc2.weight.zero_()
        model.projection.fc2.bias.zero_()
    x = torch.randn(2, 5, 8, 8)
    torch.testing.assert_close(model(x), x[:, -1:].expand(2, 4, 8, 8))


def test_sfno_latent_and_head_compose_to_forward():
    torch.manual_seed(5)
    model = SFNO(3, 2, 6, layers=3, out_steps=7)
    x = torch.randn(2, 5, 8, 8)
    torch.testing.assert_close(model.head(model.latent(x), x, 7), model(x))


@pytest.mark.parametrize("bad,match", [
    (lambda: SFNO(0, 2), "modes"),
    (lambda: SFNO(3, 2, 0), "width"),
    (lambda: FNO(1, 1, 4, 3), "tuple"),
    (lambda: FNO(1, 1, 4, (2, 2, 2, 2)), "1 to 3"),
    (lambda: SFNO(6, 2)(torch.randn(1, 4, 8, 8)), "too large"),
    (lambda: SFNO(2, 4)(torch.randn(1, 4, 8, 8)), "too large"),
    (lambda: SFNO(2, 2)(torch.randn(4, 8, 8)), "batch, T_in"),
    (lambda: FNO(2, 1, 4, (2, 2))(torch.randn(1, 1, 8, 8)), "shape"),
])
def test_bad_inputs_raise(bad, match):
    with pytest.raises((ValueError, TypeError), match=match):
        bad()


# ---------------------------------------------------------------------------------------
# losses


def test_relative_lp_against_numpy():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((3, 4, 5)), rng.standard_normal((3, 4, 5))
    for p in (1.0, 2.0, 3.5):
        ref = [np.sum(np.abs(a[i] - b[i]) ** p) ** (1 / p) / np.sum(np.abs(b[i]) ** p) ** (1 / p)
               for i in range(3)]
        np.testing.assert_allclose(relative_lp(torch.tensor(a), torch.tensor(b), p).numpy(), ref)
    loss = RelativeLpLoss()(torch.tensor(a), torch.tensor(b))
    assert float(loss) == pytest.approx(float(relative_lp(torch.tensor(a),
                                                          torch.tensor(b)).mean()))


def test_sobolev_loss_with_s_zero_is_the_relative_l2_error():
    torch.manual_seed(6)
    p, t = torch.randn(2, 3, 16, 16, dtype=torch.float64), torch.randn(2, 3, 16, 16,
                                                                          dtype=torch.float64)
    torch.testing.assert_close(relative_sobolev(p, t, 0.0), relative_lp(p, t))
    assert float(SobolevLoss(0.0)(p, t)) == pytest.approx(float(relative_lp(p, t).mean()))


def test_relative_sobolev_of_single_modes_is_analytic():
    n = 32
    x = torch.arange(n, dtype=torch.float64) / n
    k1, k2 = 1, 3
    target = torch.cos(2 * math.pi * k1 * x)[:, None].expand(n, n)
    err = 0.1 * torch.cos(2 * math.pi * k2 * x)[None, :].expand(n, n)
    pred = (target + err).reshape(1, 1, n, n)
    for s in (-1.0, 0.0, 1.0, 2.0):
        ref = 0.1 * ((1 + 4 * math.pi**2 * k2**2) / (1 + 4 * math.pi**2 * k1**2)) ** (s / 2)
        got = float(relative_sobolev(pred, target.reshape(1, 1, n, n), s))
        assert got == pytest.approx(ref, rel=1e-10)


def _taylor_green(nu: float, n: int, times: torch.Tensor) -> torch.Tensor:
    w0 = taylor_green_vorticity(n, wavenumber=2, dtype=torch.float64)
    decay = torch.exp(-nu * 2 * (2 * math.pi * 2) ** 2 * times)
    return w0.reshape(1, 1, n, n) * decay.reshape(1, -1, 1, 1)


def test_ns_residual_loss_is_small_for_an_exact_solution_and_not_for_a_wrong_one():
    nu, n, dt = 0.01, 32, 0.05
    times = torch.arange(8, dtype=torch.float64) * dt
    w = _taylor_green(nu, n, times)
    ns = NavierStokes2D(viscosity=nu)
    right = NSResidualLoss(ns, dt, s=-1.0)(w)
    wrong = NSResidualLoss(ns, dt, s=-1.0)(_taylor_green(2 * nu, n, times))
    assert float(right) < 1e-4 * float(wrong)
    # normalisation: the loss of the normalised trajectory with (mean, std) is the same
    mean, std = 0.3, 2.0
    same = NSResidualLoss(NavierStokes2D(viscosity=2 * nu), dt, s=0.0, mean=mean, std=std)
    plain = NSResidualLoss(NavierStokes2D(viscosity=2 * nu), dt, s=0.0)
    torch.testing.assert_close(same((w - mean) / std), plain(w))


@pytest.mark.parametrize("bad,match", [
    (lambda: relative_lp(torch.zeros(2, 3), torch.zeros(2, 4)), "must match"),
    (lambda: RelativeLpLoss(p=0), "p must be"),
    (lambda: SobolevLoss(s=float("nan")), "s must be"),
    (lambda: NSResidualLoss(NavierStokes2D(viscosity=1e-3), 0.0), "dt must be"),
    (lambda: NSResidualLoss("ns", 0.1), "NavierStokes2D"),
    (lambda: NSResidualLoss(NavierStokes2D(viscosity=1e-3), 0.1)(torch.zeros(1, 4, 8, 8)),
     "T >= 5"),
])
def test_loss_bad_inputs_raise(bad, match):
    with pytest.raises((ValueError, TypeError), match=match):
        bad()


def test_fno_modes_must_be_a_tuple_and_dtypes_are_named() -> None:
    """FNO(..., modes=16) and a float64 input to a float32 FNO used to give raw errors."""
    import inspect

    assert str(inspect.signature(FNO).parameters["modes"].annotation) == "tuple[int, ...]"
    with pytest.raises(TypeError, match=r"\(16, 16\) for 2D"):
        FNO(1, 1, width=8, modes=16)
    fno = FNO(1, 1, width=8, modes=(4, 4), layers=1)
    with pytest.raises(TypeError, match=r"x is torch.float64 but the model's weights are"):
        fno(torch.zeros(1, 1, 16, 16, dtype=torch.float64))
    assert fno.double()(torch.zeros(1, 1, 16, 16, dtype=torch.float64)).dtype == torch.float64
    sfno = SFNO(4, modes_t=2, width=8, layers=1)
    with pytest.raises(TypeError, match=r"x is torch.float64 but the model's weights are"):
        sfno(torch.zeros(1, 4, 16, 16, dtype=torch.float64))
