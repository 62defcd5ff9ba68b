"""The figure of ``sciml evaluate`` for a model of the user's arrays: the error of every test
item at every resolution, and the worst item's truth, prediction and error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from sciml.data import ArrayData, Normalization
from sciml.utils import check_device
from sciml_recipes._checks import check_instance, check_mapping, check_path
from sciml_recipes._figures import save_figure


def _field(v: torch.Tensor) -> np.ndarray:
    """One channel (the last: the last predicted frame) of an item, 3D cut in the middle."""
    a = v[-1].detach().cpu().double().numpy()
    while a.ndim > 2:
        a = a[..., a.shape[-1] // 2]
    return a


@torch.no_grad()
def plot_operator_evaluation(
    model: nn.Module, data: ArrayData, normalization: Normalization, res: dict[str, object],
    out_dir: str | Path, *, device: str | torch.device = "cpu",
) -> Path:
    """Write ``out_dir/evaluate.png``: the relative L2 error of each test item, sorted, at
    each resolution of ``res`` (from :func:`~.pipeline.evaluate_operator`), and the truth,
    prediction and error of the worst item at the training resolution (the last output
    channel; a 3D field is cut through its middle along the last axis)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    check_instance("model", model, nn.Module)
    check_instance("data", data, ArrayData)
    check_mapping("res", res, ("resolutions",))
    out = check_path("out_dir", out_dir)
    device = check_device(device, "device", resolve=True)
    first = res["resolutions"][0]
    ds = data.dataset(first["part"], normalization=normalization,
                      subsample=first["subsample"])
    worst = int(first["worst_item"])
    x, y = ds[worst]
    param = next(model.parameters())
    p = model.eval()(x[None].to(device, param.dtype))[0].cpu().double()
    y, p = ds.denormalize(y.double()), ds.denormalize(p)
    truth, pred = _field(y), _field(p)

    fig, axes = plt.subplots(1, 4, figsize=(15, 3.6))
    ax = axes[0]
    for r in res["resolutions"]:
        e = np.sort(np.asarray(r["rel_l2_per_item"]))
        grid = "x".join(str(n) for n in r["grid"])
        ax.plot(np.arange(1, len(e) + 1), e, marker=".", label=f"{r['name']} {grid}")
    ax.set_yscale("log")
    ax.set_xlabel("test items, sorted")
    ax.set_ylabel("relative L2 error")
    ax.set_title("error per test item")
    ax.legend(fontsize=8)
    sample, start = first["items"][worst]
    where = f"sample {sample}" + (f", frame {start}" if data.layout == "trajectories" else "")
    if truth.ndim == 1:
        axes[1].plot(truth, label="truth")
        axes[1].plot(pred, "--", label="prediction")
        axes[1].legend(fontsize=8)
        axes[1].set_title(f"worst item ({where})")
        axes[2].plot(pred - truth, color="C3")
        axes[2].set_title("prediction - truth")
        axes[3].axis("off")
    else:
        lim = float(np.abs(truth).max()) or 1.0
        for a, v, title in ((axes[1], truth, f"truth ({where})"),
                            (axes[2], pred, "prediction")):
            im = a.imshow(v.T, origin="lower", cmap="RdBu_r", vmin=-lim, vmax=lim)
            a.set_title(title)
            fig.colorbar(im, ax=a, shrink=0.8)
        err = pred - truth
        im = axes[3].imshow(err.T, origin="lower", cmap="magma")
        axes[3].set_title(f"|error| (rel L2 {first['rel_l2_per_item'][worst]:.3g})")
        im.set_data(np.abs(err).T)
        im.autoscale()
        fig.colorbar(im, ax=axes[3], shrink=0.8)
        for a in axes[1:]:
            a.set_xticks([])
            a.set_yticks([])
    return save_figure(fig, out / "evaluate.png")
