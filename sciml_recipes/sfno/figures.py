"""Figures for trained Navier-Stokes operators: prediction / truth / error, errors, spectra."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from sciml.data import NS2DDataset
from sciml.utils import check_device
from sciml_recipes._checks import check_index, check_instance, check_mapping, check_path
from sciml_recipes._figures import save_figure

#: the keys of :func:`~sciml_recipes.sfno.pipeline.evaluate_model` the figures read
_EVALUATION = ("rel_l2_per_frame", "rel_h1_per_frame", "error_spectrum", "truth_spectrum")
#: the keys of :func:`~sciml_recipes.sfno.pipeline.refine_model` the figures read
_REFINEMENT = ("norm", "history", "rel_l2_before", "rel_l2_after")


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@torch.no_grad()
def plot_evaluation(
    model: nn.Module, ds: NS2DDataset, res: dict[str, object], out_dir: str | Path, *,
    window: int = 0, device: str | torch.device = "cpu",
) -> list[Path]:
    """Write ``prediction.png`` (prediction, truth, error at three times of one window) and
    ``errors.png`` (relative L2/H1 error per output frame, error and truth spectra).

    Raises:
        TypeError, ValueError: an argument of the wrong kind (named), before any file is
            written; ``res`` must be the dict of :func:`~sciml_recipes.sfno.evaluate_model`.
    """
    check_instance("model", model, nn.Module)
    check_instance("ds", ds, NS2DDataset, hint="such as NSData(path).dataset('test')")
    check_mapping("res", res, _EVALUATION, hint="pass the dict of evaluate_model(model, ds)")
    out = check_path("out_dir", out_dir)
    check_index("window", window, len(ds), what="windows in ds")
    device = check_device(device, "device", resolve=True)
    plt = _plt()
    out.mkdir(parents=True, exist_ok=True)
    x, y = ds[window]
    p = ds.denormalize(model.to(device)(x[None].to(device))[0].cpu().double())
    y = ds.denormalize(y.double())
    t = y.shape[0]
    frames = sorted({0, t // 2, t - 1})
    fig, axes = plt.subplots(3, len(frames), figsize=(3.2 * len(frames), 9), squeeze=False)
    lim = float(y.abs().max())
    elim = float((p - y).abs().max())
    for j, f in enumerate(frames):
        for i, (field, title, v) in enumerate((
            (p[f], "prediction", lim), (y[f], "truth", lim), (p[f] - y[f], "error", elim))):
            ax = axes[i][j]
            im = ax.imshow(field.T.numpy(), origin="lower", cmap="RdBu_r", vmin=-v, vmax=v)
            ax.set_title(f"{title}, frame {f + 1}/{t}")
            ax.set_xticks([])
            ax.set_yticks([])
            fig.colorbar(im, ax=ax, fraction=0.046)
    fig.suptitle(f"test window {window} at {ds.resolution}^2")
    paths = [out / "prediction.png"]
    save_figure(fig, paths[0], dpi=90)

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    l2 = np.asarray(res["rel_l2_per_frame"])
    h1 = np.asarray(res["rel_h1_per_frame"])
    steps = np.arange(1, l2.shape[1] + 1)
    a.plot(steps, l2.mean(0), "o-", label="relative L2")
    a.plot(steps, h1.mean(0), "s-", label="relative H1")
    a.set_xlabel("output frame")
    a.set_ylabel("mean relative error")
    a.set_yscale("log")
    a.legend()
    a.set_title("error against lead time")
    err, tru = np.asarray(res["error_spectrum"]), np.asarray(res["truth_spectrum"])
    k = np.arange(len(err))
    b.loglog(k[1:], tru[1:], label="truth")
    b.loglog(k[1:], err[1:], label="error")
    b.set_xlabel("wavenumber |k|")
    b.set_ylabel("shell energy")
    b.legend()
    b.set_title("spectra")
    paths.append(out / "errors.png")
    save_figure(fig, paths[1], dpi=90)
    return paths


def plot_refinement(rows: dict[str, object], path: str | Path) -> Path:
    """Residual against refinement step (each trajectory) and true error before / after.

    Raises:
        TypeError, ValueError: ``rows`` is not the dict of
            :func:`~sciml_recipes.sfno.refine_model`, or ``path`` is not a path.
    """
    check_mapping("rows", rows, _REFINEMENT,
                  hint="pass the dict of refine_model(model, ds, refiner)")
    path = check_path("path", path)
    plt = _plt()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    hist = np.asarray(rows["history"])
    for h in hist:
        a.semilogy(h, color="C0", alpha=0.5)
    a.set_xlabel("refinement step")
    a.set_ylabel(f"{rows['norm']} residual")
    a.set_title("residual of each trajectory")
    before, after = np.asarray(rows["rel_l2_before"]), np.asarray(rows["rel_l2_after"])
    idx = np.arange(len(before))
    b.bar(idx - 0.2, before, 0.4, label="before")
    b.bar(idx + 0.2, after, 0.4, label="after")
    b.set_xlabel("test trajectory")
    b.set_ylabel("true relative L2 error")
    b.legend()
    b.set_title("true error (never seen by the refiner)")
    save_figure(fig, path, dpi=90)
    return path
