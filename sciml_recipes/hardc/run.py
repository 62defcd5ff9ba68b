"""The hard-constraint experiment end to end: train soft / single / MoE, score, write JSON.

Shared by ``sciml train hardc``, ``benchmarks/hard_constraints.py`` and the demo.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

import torch
from torch.utils.data import Dataset

from sciml.train import TrainConfig, Trainer, load_model_state
from sciml.utils import check_bool, check_choice, check_device, check_int, check_real
from sciml_recipes._figures import save_figure
from sciml_recipes.benchtools import format_table, write_results
from sciml_recipes.hardc.pipeline import METHODS, DiffSorpModel, HardCConfig, reference, relative_l2

from .._checks import check_callable, check_choices, check_instance, check_path, check_seed

__all__ = ["TEST_U0", "error_rows", "evaluate_hardc", "plot_hardc", "run_hardc", "train_hardc"]

#: The initial states of the test set (PDEBench's range is [0, 0.2]).
TEST_U0 = (0.02, 0.06, 0.1, 0.14, 0.18)


class _U0(Dataset):
    """``n`` initial states drawn uniformly in ``[0, u0_max]`` (seeded): the training tasks."""

    def __init__(self, n: int, u0_max: float, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.u0 = torch.rand(n, generator=g) * u0_max

    def __len__(self) -> int:
        return len(self.u0)

    def __getitem__(self, i: int):
        return self.u0[i]


def _forward(model: DiffSorpModel, u0):
    # the loss is the physics residual itself; the Trainer's target slot is unused
    return model.loss(u0), None


def _loss(pred, target):
    return pred


def train_hardc(
    method: str,
    config: HardCConfig | None = None,
    *,
    steps: int = 400,
    lr: float = 2e-3,
    batch_size: int = 4,
    tasks: int = 4096,
    seed: int = 0,
    time_budget: float | None = None,
    out_dir: str | os.PathLike | None = None,
    progress: bool = True,
    device: str | torch.device | None = None,
) -> DiffSorpModel:
    """Train one :class:`~sciml_recipes.hardc.pipeline.DiffSorpModel` on the physics loss alone.

    Adam with a cosine schedule through :class:`~sciml.train.Trainer`; each batch is
    ``batch_size`` initial states from ``tasks`` seeded draws. With ``out_dir`` a
    finished run (``model.pt`` present) is loaded instead of retrained and an unfinished
    one resumes from its checkpoint. ``device``: where to train (default: the CPU, or
    ``cuda:LOCAL_RANK`` under torchrun on a CUDA machine; see
    :func:`sciml.utils.check_device` with ``resolve=True``); the model is returned there.
    On a GPU the training points come from its generator, so the run differs from a CPU
    one by the draws (the evaluation points of :func:`relative_l2` do not).
    """
    method = check_choice("method", method, METHODS)
    config = check_instance("config", config, HardCConfig, optional=True) or HardCConfig()
    check_int("steps", steps, minimum=1)
    check_real("lr", lr, positive=True, fix="a typical value is 2e-3")
    check_int("batch_size", batch_size, minimum=1)
    check_int("tasks", tasks, minimum=1)
    check_seed(seed)
    if time_budget is not None:
        check_real("time_budget", time_budget, positive=True, fix="seconds, or None")
    run = check_path("out_dir", out_dir, optional=True)
    check_bool("progress", progress)
    device = check_device(device, "device", resolve=True)
    torch.manual_seed(seed)
    model = DiffSorpModel(method, config)
    if run is not None and (run / "model.pt").exists():
        load_model_state(model, run / "model.pt")
        return model.to(device).eval()
    epochs = -(-steps // -(-tasks // batch_size))
    tc = TrainConfig(epochs=epochs, max_steps=steps, lr=lr, batch_size=batch_size,
                     time_budget=time_budget, seed=seed, progress=progress,
                     schedule="cosine")
    trainer = Trainer(model, _loss, tc, out_dir=run, forward=_forward, device=device,
                      model_config={"kind": "DiffSorpModel", **model.config()})
    trainer.fit(_U0(tasks, config.u0_max, seed), resume=run is not None)
    return model.eval()


def evaluate_hardc(models: dict[str, DiffSorpModel], u0: Sequence[float] = TEST_U0, *,
                   n: int = 256, nt: int = 26) -> tuple[dict[str, dict], tuple]:
    """Relative L2 error of each model against the finite-volume reference on an
    ``nt x n`` grid, with the constraint's LM iterations and the inference time (each
    model runs on its own device; the reference is solved on the CPU)."""
    _check_models(models)
    if isinstance(u0, (str, bytes)) or not isinstance(u0, Sequence) or not u0:
        raise TypeError(f"u0 must be a non-empty sequence of initial states, got {u0!r}")
    u = torch.tensor([check_real(f"u0[{i}]", v, minimum=0.0) for i, v in enumerate(u0)],
                     dtype=torch.float64)
    ref, grid = reference(u, n=n, nt=nt)
    out = {name: relative_l2(m, u, ref, grid) for name, m in models.items()}
    return out, (u, ref, grid)


def _check_models(models: object) -> None:
    if not isinstance(models, dict) or not models:
        raise TypeError(f"models must be a non-empty dict of name: DiffSorpModel, got "
                        f"{type(models).__name__}")
    for k, m in models.items():
        check_instance(f"models[{k!r}]", m, DiffSorpModel)


def plot_hardc(models: dict[str, DiffSorpModel], test, path: str | os.PathLike,
               sample: int = -1) -> Path:
    """Reference and predictions of one test sample in ``(x, t)``, and profiles at 3 times."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    _check_models(models)
    if not (isinstance(test, tuple) and len(test) == 3):
        raise TypeError("test must be the (u0, ref, grid) tuple evaluate_hardc returns, got "
                        f"{type(test).__name__}")
    u, ref, grid = test
    nt, n = ref.shape[1:]
    check_path("path", path)
    sample = check_int("sample", sample)
    if not -len(u) <= sample < len(u):
        raise ValueError(f"sample must index one of the {len(u)} test states, got {sample}")
    preds = {}
    for name, m in models.items():
        m.eval()
        with torch.no_grad():  # on the model's device; the picture is drawn from the CPU
            c = m.coefficients(u[sample:][:1], torch.Generator().manual_seed(1234))
            f = m.field(u[sample:][:1], grid.float(), c)[0]
            preds[name] = f.to("cpu", torch.float64).reshape(nt, n)
    cols = 1 + len(preds)
    fig, axes = plt.subplots(1, cols + 1, figsize=(3.3 * (cols + 1), 3.0))
    r = ref[sample]
    vmin, vmax = float(r.min()), float(r.max())
    for ax, (title, f) in zip(axes, [("reference (finite volume)", r), *preds.items()]):
        im = ax.imshow(f.numpy(), origin="lower", aspect="auto", extent=(0, 1, 0, 1),
                       vmin=vmin, vmax=vmax, cmap="viridis")
        if title in preds:
            e = float((f - r).norm() / r.norm())
            title = f"{title}: rel L2 {e:.3f}"
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("x")
    axes[0].set_ylabel("t / T")
    fig.colorbar(im, ax=axes[cols - 1], fraction=0.046)
    ax = axes[cols]
    x = (torch.arange(n) + 0.5) / n
    for j, ls in zip((nt // 10, nt // 2, nt - 1), ("-", "--", ":")):
        ax.plot(x, r[j], "k", ls=ls, lw=1.5, label=f"ref t/T={j / (nt - 1):.2f}")
        colours = ("tab:blue", "tab:orange", "tab:green", "tab:red")
        for (name, f), col in zip(preds.items(), colours):
            ax.plot(x, f[j], color=col, ls=ls, lw=1, label=name if j == nt - 1 else None)
    ax.set_xlabel("x")
    ax.set_title(f"profiles, u0 = {float(u[sample]):.2f}", fontsize=9)
    ax.legend(fontsize=6)
    path = Path(path)
    save_figure(fig, path, dpi=110)
    return path


def error_rows(scores: dict[str, dict]) -> list[dict]:
    """Result rows (case ``diffusion-sorption``) of :func:`evaluate_hardc`'s scores."""
    if not isinstance(scores, dict):
        raise TypeError(f"scores must be the dict evaluate_hardc returns, got "
                        f"{type(scores).__name__}")
    rows = []
    for m, sc in scores.items():
        for metric in ("rel_l2", "lm_iterations"):
            if metric in sc:
                rows.append({"case": "diffusion-sorption", "impl": "sciml", "method": m,
                             "metric": metric, "value": sc[metric]})
    return rows


def run_hardc(
    out_dir: str | os.PathLike,
    *,
    methods: Sequence[str] = METHODS,
    config: HardCConfig | None = None,
    steps: int = 400,
    lr: float = 2e-3,
    seed: int = 0,
    results_json: str | os.PathLike | None = None,
    progress: bool = True,
    echo: Callable[[str], None] = print,
    device: str | torch.device | None = None,
) -> dict[str, dict]:
    """Train each method (reusing finished runs in ``out_dir/<method>``), score it on
    :data:`TEST_U0`, write ``results_json`` (default ``out_dir/hard_constraints.json``)
    and ``out_dir/hard_constraints.png``, and print the table. ``device``: where to train
    and evaluate (as :func:`train_hardc`)."""
    methods = check_choices("methods", methods, METHODS)
    config = check_instance("config", config, HardCConfig, optional=True) or HardCConfig()
    out = check_path("out_dir", out_dir)
    check_int("steps", steps, minimum=1)
    check_real("lr", lr, positive=True, fix="a typical value is 2e-3")
    check_seed(seed)
    check_path("results_json", results_json, optional=True)
    check_bool("progress", progress)
    check_callable("echo", echo)
    device = check_device(device, "device", resolve=True)
    models, seconds = {}, {}
    for m in methods:
        echo(f"hardc: training {m} ({steps} steps)")
        t0 = time.perf_counter()
        models[m] = train_hardc(m, config, steps=steps, lr=lr, seed=seed, out_dir=out / m,
                                progress=progress, device=device)
        seconds[m] = time.perf_counter() - t0
    scores, test = evaluate_hardc(models)
    rows = error_rows(scores)
    path = write_results(results_json or out / "hard_constraints.json", "hard_constraints",
                         rows, extra={"settings": {"steps": steps, "lr": lr, "seed": seed,
                                                   **asdict(config)},
                                      "test_u0": list(TEST_U0),
                                      "train_or_load_seconds": seconds})
    fig = plot_hardc(models, test, out / "hard_constraints.png")
    table = [(m, f"{s['rel_l2']:.4f}", f"{s.get('lm_iterations', float('nan')):.1f}",
              s.get("status", "-"), f"{seconds[m]:.0f}") for m, s in scores.items()]
    echo(format_table(table, ["method", "rel L2", "LM iters", "LM status", "train s"]))
    echo(f"results: {path}\nfigure: {fig}")
    return scores
