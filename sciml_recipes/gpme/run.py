"""The ProbConserv experiment end to end: train, update, score, write JSON and figures.

Shared by ``sciml train probconserv`` and the demo.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from sciml.constraints import probconserv, trapezoid_weights
from sciml.utils import check_bool, check_device, check_int
from sciml_recipes._figures import save_figure
from sciml_recipes.benchtools import format_table, write_results
from sciml_recipes.gpme.pipeline import (
    PROBLEMS,
    CaseResult,
    evaluate_case,
    result_rows,
    test_cases,
    train_ensemble,
)

from .._checks import (
    check_callable,
    check_choices,
    check_instances,
    check_path,
    check_seed,
)

__all__ = ["plot_cases", "run_probconserv", "update_cost_ms"]


def update_cost_ms(batch: int = 1000, n: int = 201, repeats: int = 21) -> float:
    """Median milliseconds of one ProbConserv update (diagonal covariance) of ``batch``
    profiles of ``n`` points with one conservation constraint, on the CPU."""
    check_int("batch", batch, minimum=1)
    check_int("n", n, minimum=2)
    check_int("repeats", repeats, minimum=1)
    g = torch.Generator().manual_seed(0)
    mean = torch.randn(batch, n, generator=g, dtype=torch.float64)
    var = torch.rand(batch, n, generator=g, dtype=torch.float64) + 0.01
    G = trapezoid_weights(torch.linspace(0, 1, n, dtype=torch.float64))
    b = torch.randn(batch, generator=g, dtype=torch.float64)
    times = []
    for _ in range(repeats + 3):
        t0 = time.perf_counter()
        probconserv(mean, var, G, b)
        times.append(time.perf_counter() - t0)
    times = sorted(times[3:])
    return 1000 * times[len(times) // 2]


def plot_cases(results: Sequence[CaseResult], path: str | os.PathLike) -> Path:
    """Profiles at t* for each case: exact, base and ProbConserv means with 2-sigma bands.

    The first context draw of each case is shown; for Stefan the true front is marked.
    """
    results = check_instances("results", results, CaseResult,
                              hint="pass the CaseResults of evaluate_case")
    for i, r in enumerate(results):
        if "base" not in r.profiles or "probconserv" not in r.profiles:
            raise ValueError(f"results[{i}] has no 'base' and 'probconserv' profiles; pass "
                             "the CaseResults of evaluate_case")
    path = check_path("path", path)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(results)
    cols = min(n, 4)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.9 * rows), squeeze=False)
    for ax, r in zip(axes.flat, results):
        x = r.x.numpy()
        ax.plot(x, r.exact.numpy(), "k-", lw=1.5, label="exact")
        for method, color in (("base", "tab:blue"), ("probconserv", "tab:red")):
            mean, var = r.profiles[method]
            m, s = mean[0].numpy(), 2 * var[0].clamp_min(0).sqrt().numpy()
            ax.plot(x, m, color=color, lw=1.2, label=method)
            ax.fill_between(x, m - s, m + s, color=color, alpha=0.2, lw=0)
        if "probconserv-convex" in r.profiles:
            ax.plot(x, r.profiles["probconserv-convex"][0][0].numpy(), color="tab:green",
                    lw=1, ls="--", label="+convex")
        if r.front is not None:
            ax.axvline(r.front, color="k", ls=":", lw=1, label="true front")
        ms = r.metrics
        ax.set_title(f"{r.case}: MSE {ms['base']['mse']:.2g} -> "
                     f"{ms['probconserv']['mse']:.2g}", fontsize=9)
        ax.set_xlabel("x")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle("ProbConserv on the GPME family at t* = 0.5 (bands: 2 sigma)", fontsize=10)
    save_figure(fig, path, dpi=110)
    return path


def run_probconserv(
    out_dir: str | os.PathLike,
    *,
    problems: Sequence[str] = PROBLEMS,
    members: int = 4,
    steps: int = 2000,
    soft: float = 1e-3,
    tasks: int = 2048,
    n_eval: int = 50,
    seed: int = 0,
    results_json: str | os.PathLike | None = None,
    progress: bool = True,
    echo: Callable[[str], None] = print,
    device: str | torch.device | None = None,
) -> list[CaseResult]:
    """Train base and soft ensembles per problem, evaluate every test case, report.

    Trained members go to ``out_dir/<problem>/{base,soft}/member<i>`` (a rerun resumes
    or reuses them). Writes ``results_json`` (default ``out_dir/probconserv.json``) in the
    shared benchmark shape (including the cost of the update for 1,000 profiles of 201
    points) and ``out_dir/probconserv_profiles.png``, and prints the table. ``device``:
    where the ensembles train and predict (as :func:`train_ensemble`); the constraints
    and the metrics run on the CPU.
    """
    out = check_path("out_dir", out_dir)
    problems = check_choices("problems", problems, PROBLEMS)
    check_int("members", members, minimum=1)
    check_int("steps", steps, minimum=1)
    if isinstance(soft, bool) or not isinstance(soft, (int, float)) or not 0 <= soft < math.inf:
        # a negative or NaN weight must not pass for "no soft baseline" (the test soft > 0)
        raise ValueError(f"soft must be a finite weight >= 0, got {soft!r}; use 0 to skip the "
                         "soft baseline")
    check_int("tasks", tasks, minimum=1)
    check_int("n_eval", n_eval, minimum=1)
    check_seed(seed)
    check_path("results_json", results_json, optional=True)
    check_bool("progress", progress)
    check_callable("echo", echo)
    device = check_device(device, "device", resolve=True)
    results: list[CaseResult] = []
    seconds: dict[str, float] = {}
    for name in problems:
        t0 = time.perf_counter()
        echo(f"probconserv: training the {name} ensembles ({members} members x {steps} steps)")
        base = train_ensemble(name, members=members, steps=steps, tasks=tasks, seed=seed,
                              out_dir=out / name / "base", progress=progress, device=device)
        soft_model = None
        if soft > 0:
            soft_model = train_ensemble(name, members=members, steps=steps, tasks=tasks,
                                        soft=soft, seed=seed, out_dir=out / name / "soft",
                                        progress=progress, device=device)
        seconds[name] = time.perf_counter() - t0
        for case, p in test_cases([name]):
            results.append(evaluate_case(case, p, base, soft_model, n_eval=n_eval,
                                         seed=seed + 1))
    rows = result_rows(results)
    cost = update_cost_ms()
    rows.append({"case": "update-1000x201", "impl": "sciml", "method": "probconserv",
                 "metric": "ms", "value": cost})
    path = write_results(
        results_json or out / "probconserv.json", "probconserv", rows,
        extra={"settings": {"members": members, "steps": steps, "soft": soft, "tasks": tasks,
                            "n_eval": n_eval, "seed": seed, "t_final": 0.5, "grid": 201},
               "train_or_load_seconds": seconds})
    fig = plot_cases(results, out / "probconserv_profiles.png")
    table = []
    for r in results:
        for m, ms in r.metrics.items():
            table.append((r.case, m, f"{ms['ce']:.2e}", f"{ms['mse']:.3e}", f"{ms['ll']:.3f}",
                          f"{ms['shock_error']:.4f}" if "shock_error" in ms else "-"))
    echo(format_table(table, ["case", "method", "CE", "MSE", "LL", "shock err"]))
    echo(f"update of 1000 profiles x 201 points: {cost:.2f} ms")
    echo(f"results: {path}\nfigure: {fig}")
    return results
