"""The Spectral-Refiner: the full-mode rebuild, per-trajectory independence, the residual."""

from __future__ import annotations

import pytest
import torch

from sciml.operators import SFNO, NSResidualLoss
from sciml.operators.refiner import SpectralRefiner, _full_weights, refine
from sciml.pdes import NavierStokes2D, fno_forcing, gaussian_random_field
from sciml.spectral import SpectralConv


def _setup(seed: int = 0, n: int = 16, batch: int = 3):
    torch.manual_seed(seed)
    model = SFNO(4, 3, 6, layers=2, out_steps=6).double()
    gen = torch.Generator().manual_seed(seed)
    ns = NavierStokes2D(viscosity=1e-3, forcing=fno_forcing(n))
    w0 = gaussian_random_field(batch, n, generator=gen)
    frames = ns.solve(w0, torch.linspace(0, 1.0, 6))  # (B, 6, n, n): the inputs
    return model, frames, NSResidualLoss(ns, 0.2, s=-1.0)


def test_full_mode_layer_with_copied_weights_reproduces_the_trained_layer():
    torch.manual_seed(0)
    conv = SpectralConv(3, 4, (3, 2, 2)).double()
    grid = (12, 10, 6)
    full = (6, 5, 4)
    big = SpectralConv(3, 4, full).double()
    with torch.no_grad():
        big.weight.copy_(_full_weights(conv.weight, conv.modes, full, 1)[0])
        big.bias.copy_(conv.bias)
    x = torch.randn(2, 3, *grid, dtype=torch.float64)
    torch.testing.assert_close(big(x), conv(x))
    # everything outside the copied corners is zero
    w = _full_weights(conv.weight, conv.modes, full, 1)[0]
    assert int((w != 0).any(-1).any(-1).any(-1).sum()) == 2 * 3 * 2 * 2 * 2


def test_refiner_starts_from_the_frozen_prediction_and_lowers_every_residual():
    model, x, res = _setup()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    r = SpectralRefiner(steps=15, lr=1e-2, batch_size=2, progress=False)(model, x, res)
    with torch.no_grad():
        torch.testing.assert_close(r.initial, model(x))
        torch.testing.assert_close(r.residual_before, res.per_sample(model(x)))
        torch.testing.assert_close(r.residual_after, res.per_sample(r.prediction))
    assert r.history.shape == (16, 3)
    assert (r.residual_after < 0.9 * r.residual_before).all(), r.history
    # the trained network is untouched and trainable again
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, before[k])
    assert all(p.requires_grad for p in model.parameters())


def test_trajectories_are_refined_independently():
    model, x, res = _setup(seed=1)
    together = refine(model, x, res, steps=5, batch_size=3, progress=False)
    alone = refine(model, x[1:2], res, steps=5, batch_size=1, progress=False)
    torch.testing.assert_close(together.prediction[1:2], alone.prediction, rtol=1e-9,
                               atol=1e-11)


@pytest.mark.parametrize("bad,match", [
    (lambda m, x, r: SpectralRefiner(steps=0), "steps"),
    (lambda m, x, r: SpectralRefiner(lr=-1.0), "lr"),
    (lambda m, x, r: SpectralRefiner()(torch.nn.Linear(2, 2), x, r), "SFNO"),
    (lambda m, x, r: SpectralRefiner()(m, x, "res"), "NSResidualLoss"),
    (lambda m, x, r: SpectralRefiner()(m, x, r, out_steps=4), "at least 5"),
])
def test_bad_inputs_raise(bad, match):
    model, x, res = _setup(batch=1)
    with pytest.raises((ValueError, TypeError), match=match):
        bad(model, x, res)
