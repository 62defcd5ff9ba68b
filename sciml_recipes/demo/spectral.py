"""Demo part ``spectral``: a spectral convolution learns a known solution operator.

The operator is the periodic heat semigroup ``u0 -> u(t) = exp(t lap) u0`` on the unit
torus (a diagonal Fourier multiplier), applied to Gaussian random fields. One
:class:`~sciml.spectral.SpectralConv` with a single channel can represent it exactly on
its kept modes, so the test error measures what truncation and training leave. The
trained layer is then applied on a finer grid (resolution transfer through
``out_shape``-free evaluation on a 2x grid) and the two execution paths are compared.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch

from sciml.spectral import SpectralConv, irfftn_truncated, rfftn_truncated, wavenumbers
from sciml_recipes._figures import save_figure
from sciml_recipes.benchtools import time_alternating
from sciml_recipes.demo._common import DemoResult, check_part, progress


def _random_fields(n: int, count: int, generator: torch.Generator) -> torch.Tensor:
    """Gaussian random fields with spectrum (1 + |k|^2)^-2 (smooth, O(1) amplitude)."""
    kx, ky = wavenumbers((n, n), (1.0, 1.0), real=False)
    k2 = (kx**2 + ky**2) / (2 * math.pi) ** 2
    amp = (1.0 + k2) ** -1.0
    noise = torch.randn(count, n, n, generator=generator, dtype=torch.float64)
    f = torch.fft.ifft2(torch.fft.fft2(noise) * amp).real
    return (f / f.std(dim=(-2, -1), keepdim=True)).float().unsqueeze(1)


def _heat(u0: torch.Tensor, t: float) -> torch.Tensor:
    n = u0.shape[-1]
    kx, ky = wavenumbers((n, n), (1.0, 1.0), device=u0.device, dtype=torch.float64)
    mult = torch.exp(-t * (kx**2 + ky**2))
    uh = torch.fft.rfft2(u0.double()) * mult
    return torch.fft.irfft2(uh, s=(n, n)).to(u0.dtype)


def _rel_l2(pred: torch.Tensor, true: torch.Tensor) -> float:
    return float(((pred - true).norm() / true.norm()).item())


def run(out_dir: str | Path, *, quick: bool = False, seed: int = 0) -> DemoResult:
    out_dir = check_part(out_dir, quick, seed)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    n, modes, t = 64, 12, 2e-3
    steps = 200 if quick else 400
    train_x = _random_fields(n, 64, gen)
    test_x = _random_fields(n, 32, gen)
    train_y, test_y = _heat(train_x, t), _heat(test_x, t)

    layer = SpectralConv(1, 1, (modes, modes), bias=False)
    opt = torch.optim.Adam(layer.parameters(), lr=5e-2)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 5e-2, total_steps=steps)
    t0 = time.perf_counter()
    losses = []
    for _ in progress(range(steps), desc="spectral: fit heat operator"):
        opt.zero_grad()
        loss = ((layer(train_x) - train_y) ** 2).mean() / (train_y**2).mean()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    train_s = time.perf_counter() - t0

    with torch.no_grad():
        pred = layer(test_x)
        err = _rel_l2(pred, test_y)
        # the best a layer with these modes can do: the exact multiplier, truncated
        c = rfftn_truncated(test_x.double(), (modes, modes))
        kx, ky = wavenumbers((n, n), (1.0, 1.0))
        idx = torch.tensor(list(range(modes)) + list(range(-modes, 0))) % n
        mult = torch.exp(-t * (kx[idx] ** 2 + ky[:, :modes] ** 2))
        floor = _rel_l2(irfftn_truncated(c * mult, (n, n)), test_y.double())
        # resolution transfer: the same layer on a 2x finer grid
        fine_x = _random_fields(2 * n, 16, gen)
        fine_err = _rel_l2(layer(fine_x), _heat(fine_x, t))

    # the two execution paths on the benchmark's 2D layer size
    x = torch.randn(16, 32, 64, 64, generator=gen)
    paths = {m: SpectralConv(32, 32, (8, 9), method=m) for m in ("fft", "dft")}
    paths["dft"].load_state_dict(paths["fft"].state_dict())
    with torch.no_grad():
        agree = _rel_l2(paths["dft"](x), paths["fft"](x))
        ms = time_alternating(
            {m: (lambda m=m: paths[m](x)) for m in paths}, repeats=5 if quick else 10, warmup=2
        )

    fig_path = _figure(out_dir, test_x, test_y, pred, losses, layer, t)
    rows = [
        {"case": "heat-64", "metric": "test_rel_l2", "value": err},
        {"case": "heat-64", "metric": "truncation_floor_rel_l2", "value": floor},
        {"case": "heat-128", "metric": "test_rel_l2_on_2x_grid", "value": fine_err},
        {"case": "heat-64", "metric": "train_s", "value": train_s},
        {"case": "conv2d-b16-c32", "metric": "fwd_ms_fft_path", "value": ms["fft"]},
        {"case": "conv2d-b16-c32", "metric": "fwd_ms_pruned_path", "value": ms["dft"]},
        {"case": "conv2d-b16-c32", "metric": "paths_rel_diff", "value": agree},
    ]
    return DemoResult("spectral", rows, [fig_path])


def _figure(out_dir, test_x, test_y, pred, losses, layer, t) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 5, figsize=(19, 3.6))
    panels = [(test_x[0, 0], "input u0"), (test_y[0, 0], f"exact exp({t:g} lap) u0"),
              (pred[0, 0], "SpectralConv"), ((pred - test_y)[0, 0], "error")]
    for a, (img, title) in zip(ax, panels):
        im = a.imshow(img.numpy(), cmap="RdBu_r", origin="lower")
        a.set_title(title)
        a.axis("off")
        fig.colorbar(im, ax=a, shrink=0.8)
    ax[4].semilogy(losses)
    ax[4].set_xlabel("Adam step")
    ax[4].set_title("relative MSE (train)")
    fig.suptitle("sciml.spectral: one spectral convolution learns the heat semigroup")
    path = out_dir / "spectral_heat_operator.png"
    save_figure(fig, path, dpi=90)
    return path
