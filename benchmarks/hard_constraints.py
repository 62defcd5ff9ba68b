"""Hard constraints on 1D diffusion-sorption: errors of soft / single / MoE, and layer timings.

1. Errors (case ``diffusion-sorption``): trains the four methods of
   :mod:`sciml_recipes.hardc.pipeline` (or reuses them from ``--runs``) and scores them against the
   finite-volume reference (``rel_l2``, ``lm_iterations``).
2. Timings (cases ``points-1e2`` ... ``points-1e5``): the single hard constraint and the
   MoE (K experts, ``m / K`` points each, the same total ``m``) on the same basis data,
   taken from the trained single model's network at ``m`` random collocation points for
   four initial states. ``step_s`` is one training step of the layer (the
   Levenberg-Marquardt solve at the training ``max_iter`` plus the implicit backward to
   the basis values), ``inference_s`` one solve at the inference ``max_iter`` without
   gradients; ``lm_iterations`` the mean iterations of the timed solves. Single and MoE
   alternate in one process; medians of ``--repeats`` runs after a warm-up. Both start
   from zero coefficients. The basis network is not part of the timed work (its cost is
   the same for both and linear in m).
3. ``scaling_exponent`` (case ``scaling``): the least-squares slope of log time against
   log points over 1e3 ... 1e5 (1e2 is overhead-bound), for the step and for inference
   (``scaling_exponent_inference``).

    python benchmarks/hard_constraints.py             # about 15 minutes on 2 cores
    python benchmarks/hard_constraints.py --quick     # smoke test (1e2, 1e3; few steps)

Writes benchmarks/results/hard_constraints.json and hard_constraints_scaling.png (and the
error figure hard_constraints.png) beside it.
"""

from __future__ import annotations

import argparse
import math
import shutil
from pathlib import Path

import numpy as np
import torch

from sciml.constraints import HardConstraint, MoEHardConstraint
from sciml_recipes.benchtools import format_table, time_alternating, write_results
from sciml_recipes.hardc.pipeline import DiffSorpModel, HardCConfig, _jacobian, _residual
from sciml_recipes.hardc.run import error_rows, run_hardc, train_hardc

RESULTS = Path(__file__).parent / "results"
_BASIS = (0, 1, 2, 4, 7, 9, 10)  # the basis-value tensors among the constraint's data


def layer_problem(model: DiffSorpModel, points: int, experts: int, seed: int = 0):
    """Basis data for ``points`` collocation points split over ``experts`` pieces.

    Returns ``data`` with shape ``(B, K, ...)`` (``K = experts``); the single layer sees
    the same rows with K flattened into the row dimension.
    """
    cfg = HardCConfig(**{**model.cfg.__dict__, "points": points, "experts": experts,
                         "ic_points": max(points // 8, experts),
                         "bc_points": max(points // 16, experts)})
    m = DiffSorpModel("moe" if experts > 1 else "single", cfg)
    m.net.load_state_dict(model.net.state_dict())
    u0 = torch.tensor([0.03, 0.08, 0.13, 0.18])
    with torch.no_grad():
        data = m._collocation(u0, torch.Generator().manual_seed(seed))
    return data


def merge_pieces(data):
    """The MoE problem's rows as one problem per sample (``(B, K, r, ...) -> (B, K r, ...)``).

    ``u0`` (``(B, K)``) keeps one column. Rows keep their weights, so the single
    constraint solves exactly the union of the experts' least-squares problems.
    """
    out = []
    for i, d in enumerate(data):
        if i == 5:  # u0, (B, K): the same value in every piece
            out.append(d[:, 0])
        else:
            B, K, r = d.shape[:3]
            out.append(d.reshape(B, K * r, *d.shape[3:]))
    return out


def time_layers(model: DiffSorpModel, points: int, experts: int, repeats: int,
                train_iter: int, infer_iter: int) -> dict[str, dict[str, float]]:
    phys = model.phys
    data = layer_problem(model, points, experts)
    single_data = merge_pieces(data)
    N = model.cfg.n_basis
    B = data[0].shape[0]
    ridge = model.cfg.ridge
    single = HardConstraint(_residual(phys), ridge=ridge, max_iter=train_iter,
                            jacobian=_jacobian(phys))
    moe = MoEHardConstraint(_residual(phys), experts, ridge=ridge, max_iter=train_iter,
                            jacobian=_jacobian(phys))
    iters: dict[str, list[float]] = {}

    def step(layer, d, c0, name):
        def go():
            # gradients flow to the basis values (P, P_tau, P_xx, I, L, R, R_x)
            dd = [x.clone().requires_grad_(True) if i in _BASIS else x
                  for i, x in enumerate(d)]
            res = layer(*dd, c0=c0, max_iter=train_iter)
            res.coeffs.pow(2).sum().backward()
            iters.setdefault(name, []).append(float(res.iterations.double().mean()))
        return go

    def infer(layer, d, c0, name):
        def go():
            with torch.no_grad():
                res = layer(*d, c0=c0, max_iter=infer_iter)
            iters.setdefault(name, []).append(float(res.iterations.double().mean()))
        return go

    c_single = torch.zeros(B, N, dtype=torch.float64)
    c_moe = torch.zeros(B, experts, N, dtype=torch.float64)
    out: dict[str, dict[str, float]] = {"single": {}, "moe": {}}
    t = time_alternating({"single": step(single, single_data, c_single, "single_step"),
                          "moe": step(moe, data, c_moe, "moe_step")},
                         repeats=repeats, warmup=1)
    for k in out:
        out[k]["step_s"] = t[k] / 1e3  # time_alternating reports milliseconds
    t = time_alternating({"single": infer(single, single_data, c_single, "single_inf"),
                          "moe": infer(moe, data, c_moe, "moe_inf")},
                         repeats=repeats, warmup=1)
    for k in out:
        out[k]["inference_s"] = t[k] / 1e3
        out[k]["lm_iterations"] = float(np.mean(iters[f"{k}_step"]))
        out[k]["lm_iterations_inference"] = float(np.mean(iters[f"{k}_inf"]))
    return out


def fit_exponent(points: list[int], seconds: list[float]) -> float:
    x, y = np.log(points), np.log(seconds)
    return float(np.polyfit(x, y, 1)[0])


def plot(points: list[int], timings: dict[int, dict], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for ax, metric, title in ((axes[0], "step_s", "training step (solve + backward)"),
                              (axes[1], "inference_s", "inference (solve)")):
        for method, style in (("single", "o-"), ("moe", "s-")):
            ax.loglog(points, [timings[p][method][metric] for p in points], style,
                      label=method)
        p0 = points[1] if len(points) > 1 else points[0]
        t0 = timings[p0]["single"][metric]
        ax.loglog(points, [t0 * p / p0 for p in points], "k:", lw=1, label="linear")
        ax.set_xlabel("collocation points (total)")
        ax.set_ylabel("seconds (median)")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8)
    fig.suptitle("Hard-constraint layers on diffusion-sorption (4 samples, 16 basis functions)",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--runs", default="runs/hardc", help="trained models (reused if present)")
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", default=None, help="JSON path")
    args = p.parse_args(argv)
    torch.manual_seed(0)
    out = Path(args.out) if args.out else RESULTS / (
        "hard_constraints_quick.json" if args.quick else "hard_constraints.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    cfg = HardCConfig()
    steps = 5 if args.quick else args.steps
    runs = Path(args.runs + ("_quick" if args.quick else ""))
    scores = run_hardc(runs, config=cfg, steps=steps, results_json=runs / "errors.json",
                       progress=not args.quick)
    rows = error_rows(scores)
    trained = train_hardc("single", cfg, steps=steps, out_dir=runs / "single", progress=False)
    points = [100, 1000] if args.quick else [100, 1000, 10_000, 100_000]
    timings = {}
    for m in points:
        timings[m] = time_layers(trained, m, cfg.experts, 2 if args.quick else args.repeats,
                                 cfg.max_iter, 50)
        for method, vals in timings[m].items():
            for metric, v in vals.items():
                rows.append({"case": f"points-1e{round(math.log10(m))}", "impl": "sciml",
                             "method": method, "metric": metric, "value": v})
        print(f"m = {m}: " + ", ".join(f"{k} step {v['step_s']:.4f} s inf "
                                        f"{v['inference_s']:.4f} s" for k, v in
                                        timings[m].items()), flush=True)
    fit_pts = [m for m in points if m >= 1000] if len(points) > 2 else points
    exps = {}
    for method in ("single", "moe"):
        for metric, name in (("step_s", "scaling_exponent"),
                             ("inference_s", "scaling_exponent_inference")):
            e = fit_exponent(fit_pts, [timings[m][method][metric] for m in fit_pts])
            exps[(method, name)] = e
            rows.append({"case": "scaling", "impl": "sciml", "method": method,
                         "metric": name, "value": e})
    fig = plot(points, timings, out.parent / out.name.replace(".json", "_scaling.png"))
    shutil.copyfile(runs / "hard_constraints.png",
                    out.parent / out.name.replace(".json", ".png"))
    write_results(out, "hard_constraints", rows,
                  extra={"settings": {"steps": steps, **cfg.__dict__,
                                      "timing_samples": 4, "train_max_iter": cfg.max_iter,
                                      "inference_max_iter": 50, "repeats": args.repeats,
                                      "fit_points": fit_pts}})
    table = [(f"{m:.0e}", meth, f"{v['step_s']:.4f}", f"{v['inference_s']:.4f}",
              f"{v['step_s'] / timings[m]['single']['step_s']:.2f}",
              f"{v['lm_iterations']:.1f}", f"{v['lm_iterations_inference']:.1f}")
             for m in points for meth, v in timings[m].items()]
    print(format_table(table, ["points", "method", "step s", "infer s", "step / single",
                               "LM its (train)", "LM its (infer)"]))
    print(format_table([(m, n, f"{e:.2f}") for (m, n), e in exps.items()],
                       ["method", "metric", "exponent"]))
    print(f"results: {out}\nfigure: {fig}")


if __name__ == "__main__":
    main()
