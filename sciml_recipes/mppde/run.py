"""The MP-PDE benchmark end to end: data, training, rollouts, WENO5, JSON and a figure.

Shared by ``sciml train mppde`` and the demo. Every case
is a family (E1, E2, E3), a grid convention (``paper`` or ``conservative``, see
:mod:`sciml.pdes.burgers`) and a resolution ``nx``; per case it trains an MP-PDE and the
FNO baseline with pushforward (resumable runs under ``OUT/runs``), scores them and WENO5
at the same ``nx`` with the paper's accumulated MSE, and in the conservative convention
finds the coarsest WENO5 grid that is at least as accurate as MP-PDE (time to equal
accuracy). Training and scoring are separate phases (``train_only``) so that several
training processes can share a machine while the timings are taken on a quiet one.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from sciml.utils import check_bool, check_choice, check_device, check_int
from sciml_recipes._figures import save_figure
from sciml_recipes.benchtools import format_table, write_results

from .._checks import check_choices, check_instance, check_mapping, check_path, check_seed

__all__ = ["CONVENTIONS", "FAMILIES", "case_name", "plot_rollout", "run_mppde"]

FAMILIES = ("E1", "E2", "E3")
CONVENTIONS = ("paper", "conservative")
MODELS = ("mppde", "fno")


def case_name(family: str, nx: int, convention: str) -> str:
    """``"E1-nx50-paper"``: the case label of the result rows."""
    family = check_choice("family", family, FAMILIES)
    nx = check_int("nx", nx, minimum=1)
    convention = check_choice("convention", convention, CONVENTIONS)
    return f"{family}-nx{nx}-{convention}"


def _data(out: Path, family: str, convention: str, split: str, samples: int, seed: int,
          progress: bool, device: torch.device | None) -> Path:
    from sciml.data.burgers import generate_burgers

    path = out / "data" / f"{family}-{convention}-{split}.h5"
    path.parent.mkdir(parents=True, exist_ok=True)
    return generate_burgers(path, family=family, convention=convention, samples=samples,
                            seed=seed, progress=progress, device=device)


def _divisors(n: int, smallest: int = 5) -> list[int]:
    return [d for d in range(n, smallest - 1, -1) if n % d == 0]


def run_mppde(
    out: str | os.PathLike,
    *,
    families: Sequence[str] = FAMILIES,
    conventions: Sequence[str] = CONVENTIONS,
    nxs: Sequence[int] = (50, 40),
    models: Sequence[str] = MODELS,
    train_samples: int = 512,
    test_samples: int = 128,
    steps: int = 100_000,
    time_budget: float | None = 600.0,
    batch_size: int = 16,
    lr: float = 1e-3,
    max_unroll: int = 2,
    hidden: int = 128,
    fno_width: int = 64,
    seed: int = 0,
    train_only: bool = False,
    results_json: str | os.PathLike | None = None,
    progress: bool = True,
    device: str | torch.device | None = None,
) -> list[dict]:
    """Train (or resume, or reuse) and score every case; return the result rows.

    Args:
        out: folder for ``data/``, ``runs/``, ``mppde.json`` and ``mppde_rollout.png``.
        families, conventions, nxs, models: the cases to run.
        train_samples, test_samples: trajectories per family and convention (the paper:
            2048 / 128).
        steps, time_budget: per model, the most optimiser steps and seconds of training
            (both summed over resumed segments; a finished run is reused as it is).
        batch_size, lr, max_unroll: pushforward training (:func:`train_stepper`).
        hidden: MP-PDE width; fno_width: the FNO's.
        train_only: train and stop (no scoring, no timings): for background training.
        results_json: where to write the rows (default ``OUT/mppde.json``).
        device: where to generate the data, train and roll out (default: the data where
            :func:`~sciml.data.generate_burgers` picks, the GPU if any; the models on the
            CPU, or ``cuda:LOCAL_RANK`` under torchrun on a CUDA machine; see
            :func:`sciml.utils.check_device` with ``resolve=True``). WENO5 runs on the CPU.

    Returns:
        rows in the shared benchmark shape: case, impl "sciml", method (mppde / fno /
        weno5), metric (accumulated_mse, rollout_s, train_s, train_steps), value.
    """
    from sciml.data.burgers import BurgersDataset
    from sciml_recipes.mppde.pipeline import (
        build_stepper,
        load_stepper,
        rollout_error,
        train_stepper,
        weno5_error,
    )

    out = check_path("out", out)
    families = check_choices("families", families, FAMILIES)
    conventions = check_choices("conventions", conventions, CONVENTIONS)
    models = check_choices("models", models, MODELS)
    if isinstance(nxs, (str, bytes)) or not isinstance(nxs, Sequence) or not nxs:
        raise TypeError(f"nxs must be a non-empty list of grid sizes dividing 200, such as "
                        f"[50, 40], got {nxs!r}")
    for i, nx in enumerate(nxs):
        check_int(f"nxs[{i}]", nx, minimum=8)
        if 200 % nx:
            raise ValueError(f"nxs[{i}] must divide the base resolution 200, got {nx}")
    # checked before any data is generated (train_stepper checks them again, much later)
    for name, v, low in (("train_samples", train_samples, 1), ("test_samples", test_samples, 1),
                         ("steps", steps, 1), ("batch_size", batch_size, 1),
                         ("max_unroll", max_unroll, 0), ("hidden", hidden, 1),
                         ("fno_width", fno_width, 1)):
        check_int(name, v, minimum=low)
    if "mppde" in models and hidden < 25:
        raise ValueError(f"hidden must be >= 25 (the time window) for MP-PDE's decoder CNN, "
                         f"got {hidden}")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not 0 < lr < math.inf:
        raise ValueError(f"lr must be a finite number > 0, got {lr!r}; a typical value is 1e-3")
    if time_budget is not None and (isinstance(time_budget, bool)
                                    or not isinstance(time_budget, (int, float))
                                    or not 0 < time_budget < math.inf):
        raise ValueError(f"time_budget must be a finite number of seconds > 0 or None (no "
                         f"limit), got {time_budget!r}")
    check_seed(seed)
    check_bool("train_only", train_only)
    check_path("results_json", results_json, optional=True)
    check_bool("progress", progress)
    # without a device the data are generated where generate_burgers picks (the GPU if
    # any) and the models trained where the Trainer picks (the CPU unless torchrun)
    data_device = None if device is None else check_device(device, "device", resolve=True)
    device = check_device(device, "device", resolve=True)
    rows: list[dict] = []
    rollouts: dict[str, dict] = {}
    for family in families:
        for conv in conventions:
            train_path = _data(out, family, conv, "train", train_samples, seed, progress,
                               data_device)
            test_path = _data(out, family, conv, "test", test_samples, seed + 10**6, progress,
                              data_device)
            for nx in nxs:
                case = case_name(family, nx, conv)
                train = BurgersDataset(train_path, nx)
                test = BurgersDataset(test_path, nx)
                for kind in models:
                    run = out / "runs" / f"{case}-{kind}"
                    if (run / "model.pt").exists():
                        model = load_stepper(run, device=device)
                    else:
                        torch.manual_seed(seed)
                        opts = {"hidden": hidden} if kind == "mppde" else {"width": fno_width}
                        model = build_stepper(kind, train, **opts)
                        t0 = time.perf_counter()
                        train_stepper(model, train, steps=steps, lr=lr, batch_size=batch_size,
                                      max_unroll=max_unroll, time_budget=time_budget,
                                      out_dir=run, seed=seed, progress=progress,
                                      device=device)
                        print(f"{case} {kind}: trained in {time.perf_counter() - t0:.0f} s")
                    if train_only:
                        continue
                    res = rollout_error(model, test)
                    info = torch.load(run / "model.pt", map_location="cpu", weights_only=True)
                    hist = _train_seconds(run)
                    for metric, value in (("accumulated_mse", res["accumulated_mse"]),
                                          ("rollout_s", res["rollout_s"]),
                                          ("train_steps", float(info["steps"])),
                                          ("train_s", hist)):
                        rows.append({"case": case, "impl": "sciml", "method": kind,
                                     "metric": metric, "value": value,
                                     "samples": res["samples"]})
                    rollouts.setdefault(case, {})[kind] = model
                if train_only:
                    continue
                # WENO5 at the same nx from the label a learned model reads last, and
                # (the original pipeline's baseline) from t = 0 on its own initial state
                for start in ("label", "t0"):
                    res = weno5_error(test, start=start)
                    for metric in ("accumulated_mse", "rollout_s"):
                        rows.append({"case": case, "impl": "sciml", "method": "weno5",
                                     "metric": metric, "value": res[metric], "solver_nx": nx,
                                     "start": start, "samples": res["samples"]})
                if conv == "conservative" and "mppde" in models:
                    rows += _equal_accuracy(case, test, rows)
                rollouts[case]["data"] = test
    if train_only:
        return rows
    _print(rows)
    path = write_results(results_json or out / "mppde.json", "mppde", rows)
    print(f"wrote {path}")
    first = next(iter(rollouts))
    fig = plot_rollout(rollouts[first], out / "mppde_rollout.png", title=first)
    print(f"wrote {fig}")
    return rows


def _train_seconds(run: Path) -> float:
    """Seconds of training the run's checkpoint records (summed over resumed segments)."""
    ck = run / "checkpoint.pt"
    if not ck.exists():
        return float("nan")
    blob = torch.load(ck, map_location="cpu", weights_only=True)
    prog = blob.get("progress", {})
    return float(prog.get("elapsed", float("nan")))


def _equal_accuracy(case: str, test, rows: list[dict]) -> list[dict]:
    """WENO5 on coarser grids: the coarsest at least as accurate as MP-PDE, and its time."""
    from sciml_recipes.mppde.pipeline import weno5_error

    target = next(r["value"] for r in rows if r["case"] == case and r["method"] == "mppde"
                  and r["metric"] == "accumulated_mse")
    extra = []
    match = None
    for n in _divisors(test.nx)[1:]:
        res = weno5_error(test, nx=n)
        for metric in ("accumulated_mse", "rollout_s"):
            extra.append({"case": case, "impl": "sciml", "method": "weno5", "metric": metric,
                          "value": res[metric], "solver_nx": n, "start": "label",
                          "samples": res["samples"]})
        if res["accumulated_mse"] <= target:
            match = (n, res)
    if match is not None:
        extra.append({"case": case, "impl": "sciml", "method": "weno5",
                      "metric": "equal_accuracy_nx", "value": match[0]})
    return extra


def _print(rows: list[dict]) -> None:
    table: dict[str, dict] = {}
    for r in rows:
        nx = int(r["case"].split("-nx")[1].split("-")[0])
        if r["metric"] not in ("accumulated_mse", "rollout_s") or \
                r.get("solver_nx", nx) != nx:
            continue
        name = r["method"] if r.get("start", "label") == "label" else "weno5-t0"
        table.setdefault(r["case"], {})[(name, r["metric"])] = r["value"]
    cols = [("mppde", "accumulated_mse"), ("mppde", "rollout_s"), ("fno", "accumulated_mse"),
            ("fno", "rollout_s"), ("weno5", "accumulated_mse"), ("weno5", "rollout_s"),
            ("weno5-t0", "accumulated_mse")]
    lines = [[case] + [v.get(c, float("nan")) for c in cols] for case, v in table.items()]
    print(format_table(lines, ["case", "mppde mse", "mppde s", "fno mse", "fno s",
                               "weno5 mse", "weno5 s", "weno5 from t0 mse"]))
    for r in rows:
        if r["metric"] == "equal_accuracy_nx":
            print(f"{r['case']}: WENO5 at nx = {r['value']} is as accurate as MP-PDE")


def plot_rollout(models: dict, path: str | os.PathLike, *, sample: int = 0,
                 title: str = "") -> Path:
    """x-t pictures of one test trajectory from step 2K on: the label, each model's
    rollout, WENO5 at the data's grid (started from the same label) and their errors.

    ``models`` maps ``"mppde"`` / ``"fno"`` to trained models and ``"data"`` to the
    :class:`~sciml.data.BurgersDataset` the trajectory comes from; ``sample`` indexes its
    trajectories.

    Raises:
        TypeError, ValueError: an argument of the wrong kind (named), before any rollout.
    """
    from sciml_recipes.mppde.pipeline import _check_data, _check_long_enough

    check_mapping("models", models, ("data",),
                  hint='{"data": BurgersDataset, "mppde": model, "fno": model}')
    data = _check_data("models['data']", models["data"])
    unknown = [k for k in models if k not in (*MODELS, "data")]
    if unknown:
        raise ValueError(f"models has unknown key(s) {unknown}; use 'data', "
                         f"{', '.join(map(repr, MODELS))}")
    for k in MODELS:
        if k in models:
            check_instance(f"models[{k!r}]", models[k], torch.nn.Module)
    path = check_path("path", path)
    check_int("sample", sample, minimum=0)
    if sample >= len(data):
        raise ValueError(f"sample = {sample} but models['data'] holds {len(data)} "
                         f"trajectories; use 0 to {len(data) - 1}")
    check_instance("title", title, str)
    K = next((m.time_window for k, m in models.items() if k in MODELS), 25)
    _check_long_enough(data, K)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sciml.pdes.burgers import solve_combined
    from sciml.train.rollout import rollout
    from sciml_recipes.mppde.pipeline import _stack

    u, theta = _stack(data, sample + 1)
    u, theta = u[sample:sample + 1], theta[sample:sample + 1]
    t = torch.as_tensor(data.t, dtype=torch.float64)
    panels = [("label", u[0])]
    for kind in MODELS:
        if kind in models:
            m = models[kind]
            w0 = next(m.parameters())
            dtype, dev = w0.dtype, w0.device  # roll out where the model is
            with torch.no_grad():
                p = rollout(m, u[:, K:2 * K].to(dev, dtype), t[2 * K - 1:2 * K].to(dev, dtype),
                            theta.to(dev, dtype), u.shape[1] - 2 * K)
            panels.append((kind, torch.cat([u[0, :2 * K], p[0].float().cpu()])))
    w = solve_combined(u[:, 2 * K - 1].double(), data.parameters([sample]), t[2 * K:],
                       length=data.length, convention=data.convention, t0=float(t[2 * K - 1]))
    panels.append(("weno5", torch.cat([u[0, :2 * K], w[0].float()])))
    cols = 2 * len(panels) - 1
    fig, axes = plt.subplots(1, cols, figsize=(2.9 * cols, 3.2), squeeze=False)
    lim = float(u.abs().max())
    extent = [0, data.length, float(t[-1]), 0]
    for j, (name, field) in enumerate(panels):
        ax = axes[0, j]
        ax.imshow(field.numpy(), cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto",
                  extent=extent)
        ax.axhline(float(t[2 * K]), color="k", lw=0.6, ls="--")
        ax.set_title(name)
        ax.set_xlabel("x")
        if j == 0:
            ax.set_ylabel("t (rollout below the dashed line)")
    err_max = max(float((f - u[0]).abs().max()) for _, f in panels[1:]) or 1.0
    for j, (name, field) in enumerate(panels[1:]):
        ax = axes[0, len(panels) + j]
        ax.imshow((field - u[0]).abs().numpy(), cmap="magma", vmin=0, vmax=err_max,
                  aspect="auto", extent=extent)
        ax.set_title(f"|{name} - label|")
        ax.set_xlabel("x")
    fig.suptitle(title)
    path = Path(path)
    save_figure(fig, path, dpi=100)
    return path
