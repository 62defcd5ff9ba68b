"""Write benchmarks/README.md from benchmarks/results/*.json.

Every number in the generated file comes from the result files: the tables list each
file's rows, and the sentences fill their numbers in from the same rows (a missing or
duplicated row is an error, so a stale sentence cannot survive a new result file).

    python benchmarks/make_readme.py           # rewrite benchmarks/README.md
    python benchmarks/make_readme.py --check   # exit 1 if it differs from the JSON
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
README = HERE / "README.md"
KEYS = ("case", "impl", "method")
SKIP = {"case", "impl", "method", "metric", "value"}


class Results:
    """One result file: its metadata and a strict lookup of single values."""

    def __init__(self, data: dict):
        self.data = data
        self.rows: list[dict] = data["rows"]

    def __getitem__(self, key: str):
        return self.data[key]

    def v(self, case: str, metric: str, method: str | None = None, impl: str = "sciml",
          **extra) -> float:
        hits = [r for r in self.rows
                if r["case"] == case and r["metric"] == metric and r["impl"] == impl
                and r.get("method") == method
                and all(r.get(k) == val for k, val in extra.items())]
        if len(hits) != 1:
            raise KeyError(f"{self.data['benchmark']}: {len(hits)} rows for case={case!r} "
                           f"metric={metric!r} method={method!r} impl={impl!r} {extra}")
        return hits[0]["value"]


# -- number formats used in sentences and tables -----------------------------------------

def g(v: float, sig: int = 3) -> str:
    """``sig`` significant digits, integers as integers."""
    if float(v).is_integer() and abs(v) < 1e7:
        return str(int(v))
    return f"{v:.{sig}g}"


def pct(v: float, digits: int = 1) -> str:
    return f"{100 * v:.{digits}f}%"


def x(a: float, b: float, digits: int = 2) -> str:
    """The ratio ``a / b`` as ``1.23x``."""
    return f"{a / b:.{digits}f}x"


def cell(v) -> str:
    return g(v, 4) if isinstance(v, (int, float)) else str(v)


# -- tables ------------------------------------------------------------------------------

def table(rows: list[dict]) -> str:
    """One line per (case, impl, method, extra keys), one column per metric."""
    extras: list[str] = []
    metrics: list[str] = []
    lines: dict[tuple, dict] = {}
    for r in rows:
        for k in r:
            if k not in SKIP and k not in extras:
                extras.append(k)
        if r["metric"] not in metrics:
            metrics.append(r["metric"])
    for r in rows:
        key = tuple(r.get(k, "") for k in (*KEYS, *extras))
        lines.setdefault(key, {})[r["metric"]] = r["value"]
    cols = [k for i, k in enumerate((*KEYS, *extras)) if any(key[i] != "" for key in lines)]
    idx = [(*KEYS, *extras).index(c) for c in cols]
    head = [*cols, *metrics]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, vals in lines.items():
        out.append("| " + " | ".join([*(cell(key[i]) for i in idx),
                                      *(cell(vals[m]) if m in vals else "" for m in metrics)])
                   + " |")
    return "\n".join(out)


def machine(r: Results) -> str:
    m = r["machine"]
    return (f"Machine: {m['cpu']}, {m['threads']} threads, {m['device']}, torch "
            f"{m['torch']}, Python {m['python']}; file written {r['created']}.")


# -- the sections: a hand-written text around numbers taken from the rows ----------------

def spectral_conv(r: Results) -> str:
    def sp(c):
        return x(r.v(c, "fwd_bwd_ms", impl="neuraloperator"), r.v(c, "fwd_bwd_ms"))
    return (
        "`python benchmarks/spectral_conv.py` compares `SpectralConv` with neuraloperator's "
        "on a 2D and a 3D (x, y, t) layer, forward and forward+backward, beside the FFT "
        "floor (the transforms alone) and the roofline; `fft-path` and `dft-path` force one "
        "of the two execution paths, the unlabelled sciml row is `method=\"auto\"`. Forward+"
        f"backward, sciml is {sp('2d')} faster than neuraloperator in 2D and {sp('3d')} in 3D.")


def navier_stokes(r: Results) -> str:
    return (
        "`python benchmarks/navier_stokes.py` runs sciml's Navier-Stokes solver and "
        "torch-cfd's side by side: throughput of the same RK4-CN scheme at the same step "
        "(with each code's FFT floor and the relative difference of the two trajectories "
        "after 20 steps), and the time to reach a final-time error no worse than "
        "torch-cfd's at its default step, where sciml may pick its integrating-factor "
        "Dormand-Prince scheme (`ifdp5`) and a larger step. Same scheme, on `256-fp32-b4`: "
        f"{x(r.v('256-fp32-b4', 'speedup', 'rk4cn'), 1)} torch-cfd's throughput; "
        "to the same accuracy, "
        f"{x(r.v('kolmogorov-256', 'speedup', 'ifdp5'), 1)} faster on Kolmogorov flow and "
        f"{x(r.v('decaying-256', 'speedup', 'ifdp5'), 1)} on decaying turbulence.")


def ot(r: Results) -> str:
    s = r["settings"]
    c = "points-n2000-reg1e-3"
    return (
        "`python benchmarks/ot.py` solves entropic OT problems with sciml's `sinkhorn` and "
        "`sns`, POT's `sinkhorn_log` and RegOT's `sinkhorn_ssns` in one process on the same "
        "float64 data: random point clouds with a squared-distance cost (`points-n*-reg*`, "
        "the largest sizes for `sns` alone), a random assignment cost solved to machine "
        "accuracy and W1/W2 between two densities on a grid. It reports iterations (for "
        "`sns` split into its Sinkhorn and Newton stages), time and the L1 marginal error "
        "of every returned plan, measured the same way for all (the peers stop on their "
        "own error norms), and draws the error against iteration and time for one case in "
        "`results/ot_convergence.png`. `--quick` runs tiny sizes; `--threads 1` keeps "
        f"timings steady on a busy machine. Iteration caps: POT {s['pot_max_iter']}, "
        f"sinkhorn {s['sinkhorn_max_iter']}, sns {s['sns_max_iter']}, RegOT "
        f"{s['regot_max_iter']}. On `{c}`, `sns` took "
        f"{g(r.v(c, 'iterations', 'sns'))} iterations in {g(r.v(c, 'time_s', 'sns'))} s, "
        f"{x(r.v(c, 'speedup_vs_pot', 'sns'), 1, 1)} faster than POT and "
        f"{x(r.v(c, 'speedup_vs_regot', 'sns'), 1, 1)} faster than RegOT.")


def sfno_vs_fno(r: Results) -> str:
    s = r["settings"]
    c = "test-64"

    def drop(method):
        return pct(1 - r.v(c, "rel_l2", method) / r.v(c, "rel_l2_before", method), 0)
    return (
        f"`python benchmarks/sfno_vs_fno.py --data {s['data']}` trains sciml's SFNO and "
        "neuraloperator's FNO-3D (same modes and width, "
        f"{r.v(c, 'parameters', 'sfno'):,} parameters each) through the same `Trainer` on "
        f"the same data for the same wall-clock budget ({g(s['budget_s'])} s each), "
        "evaluates both on held-out trajectories (true relative L2, and the H^-1 norm of "
        "the Navier-Stokes residual), runs the Spectral-Refiner on them with the H^-1 and "
        "the L2 residual, repeats the evaluation zero-shot at 128^2 (`test-128`), and times "
        "one training step of sciml's `FNO` configured exactly like neuraloperator's. The "
        "data: `sciml generate ns2d --preset fno --samples 64 --resolution 128 "
        "--solver-resolution 256 --dtype float32` "
        f"({s['train_trajectories']} trajectories to train on, {s['test_trajectories']} "
        f"held out). SFNO {pct(r.v(c, 'rel_l2', 'sfno'), 2)} test error against "
        f"neuraloperator's FNO {pct(r.v(c, 'rel_l2', 'fno', 'neuraloperator'), 2)}; the "
        f"FNO step {x(r.v(c, 'step_speedup', 'fno'), 1)} faster than neuraloperator's; "
        f"refinement ({s['refine_steps']} steps, no ground truth) lowered the H^-1 residual "
        f"{x(r.v(c, 'residual_h-1_before', 'sfno+refiner'), r.v(c, 'residual_h-1', 'sfno+refiner'), 0)} "  # noqa: E501
        f"and the true error {drop('sfno+refiner')} (H^-1 residual) or "
        f"{drop('sfno+refiner-l2')} (L2 residual). Curves in `results/sfno_vs_fno.png`.")


def refiner_convergence(r: Results) -> str:
    best = min((row for row in r.rows if row["metric"] == "rel_l2_after"),
               key=lambda row: row["value"])
    before = r.v(best["case"], "rel_l2_before", best["method"])
    return (
        "`python benchmarks/refiner_convergence.py` follows the Spectral-Refiner further "
        f"on {r['trajectories']} of the held-out trajectories of the SFNO benchmark, for "
        "each residual norm (`h-1`, `l2`), step count and learning rate in the case name. "
        f"The lowest true error, {pct(best['value'], 2)} from {pct(before, 2)}, came from "
        f"`{best['case']}`.")


def hard_constraints(r: Results) -> str:
    s = r["settings"]
    c = "diffusion-sorption"
    big = max((row["case"] for row in r.rows if row["case"].startswith("points-")),
              key=lambda k: float(k.split("-")[1]))
    small = min((row["case"] for row in r.rows if row["case"].startswith("points-")),
                key=lambda k: float(k.split("-")[1]))
    fit = s["fit_points"]
    return (
        "`python benchmarks/hard_constraints.py` trains the soft / single hard / MoE / "
        "chained-MoE basis networks on diffusion-sorption (the same as `sciml train "
        f"hardc`: {s['steps']} Adam steps each, {s['points']} collocation points, physics "
        "loss only) and scores them against the finite-volume reference, then times the "
        f"single and the MoE layer (K = {s['experts']} time slabs, equal total points) per "
        f"training step and per inference from `{small}` to `{big}` collocation points. "
        f"Relative L2 error: soft {pct(r.v(c, 'rel_l2', 'soft'))}, single hard "
        f"{pct(r.v(c, 'rel_l2', 'single'))}, MoE {pct(r.v(c, 'rel_l2', 'moe'))}, chained "
        f"MoE {pct(r.v(c, 'rel_l2', 'moe-chain'))}. The independent MoE trails the single "
        "constraint because experts on later time slabs have no initial condition of their "
        "own (a parabolic problem needs one) and are tied to their neighbours only through "
        "the training loss; the slab faces stay visible in the prediction. The chained MoE "
        "(`\"moe-chain\"`) solves the slabs one after the other, each slab's initial rows "
        "targeting the previous slab's end state, with the gradient flowing back through "
        "the chain; its experts no longer run in parallel. Fitted exponents of the time "
        f"per step over {g(fit[0])}-{g(fit[-1])} points: single "
        f"{r.v('scaling', 'scaling_exponent', 'single'):.2f}, MoE "
        f"{r.v('scaling', 'scaling_exponent', 'moe'):.2f}; at `{big}` the MoE is "
        f"{x(r.v(big, 'step_s', 'single'), r.v(big, 'step_s', 'moe'))} faster per training "
        f"step ({r.v(big, 'step_s', 'moe'):.2f} s against "
        f"{r.v(big, 'step_s', 'single'):.2f} s) and "
        f"{x(r.v(big, 'inference_s', 'single'), r.v(big, 'inference_s', 'moe'))} per "
        "inference. Figures `results/hard_constraints.png` (fields and profiles) and "
        "`results/hard_constraints_scaling.png`.")


def poisson(r: Results) -> str:
    def it(c, m, impl="sciml"):
        return g(r.v(c, "iterations", m, impl))

    def solve(c, m, impl="sciml"):
        return r.v(c, "time_s", m, impl)

    def total(c, m, impl="sciml"):
        return r.v(c, "setup_s", m, impl) + r.v(c, "time_s", m, impl)

    def mg(c):
        gmg, lmg = total(c, "gmg"), total(c, "learned-mg")
        return (
            f"on `{c}` GMG-PCG took {it(c, 'gmg')} iterations and {g(total(c, 'gmg'))} s "
            f"(setup {g(r.v(c, 'setup_s', 'gmg'))} s) against PyAMG's "
            f"{it(c, 'sa-pcg', 'pyamg')} iterations and {g(total(c, 'sa-pcg', 'pyamg'))} s "
            f"({total(c, 'sa-pcg', 'pyamg') / gmg:.1f}x) and CG's {it(c, 'cg')} iterations "
            f"and {g(solve(c, 'cg'))} s ({solve(c, 'cg') / gmg:.1f}x; scipy's CG "
            f"{g(solve(c, 'cg', 'scipy'))} s); the learned multigrid took "
            f"{it(c, 'learned-mg')} iterations, {g(solve(c, 'learned-mg'))} s of solve "
            f"({solve(c, 'gmg') / solve(c, 'learned-mg'):.2f}x less than GMG's) and "
            f"{g(lmg)} s with its setup ({gmg / lmg:.2f}x GMG's total)")

    def cycle(c):
        vc, fl = r.v(c, "vcycle_s", "gmg"), r.v(c, "vcycle_floor_s", "gmg")
        return f"{vc * 1e3:.1f} ms against {fl * 1e3:.1f} ms ({vc / fl:.1f}x) on `{c}`"

    others = ", ".join(f"`{c}` {it(c, 'gmg')} / {it(c, 'learned-mg')}"
                       for c in ("fluid2d-256", "fluid2d-1024", "rect-64x96x128",
                                 "coef1e3-64", "dirichlet-64"))
    return (
        "`python benchmarks/poisson.py` solves pressure Poisson systems to a relative "
        f"residual of {g(r['rtol'])}: the 3D fluid proxy `fluid-*` and an unseen random "
        "obstacle set `unseen-*` at 64^3 and 128^3, the 2D proxy at 256^2 and 1024^2, a "
        "rectangular 64 x 96 x 128 scene, coefficients of contrast 1e3 and Dirichlet walls "
        "on every side (the last two seen by no network), with our CG, scipy's CG, our "
        "IC(0)-PCG, PyAMG's smoothed-aggregation PCG, our geometric multigrid (GMG), our "
        "learned multigrid and DCDM; medians of "
        f"{r['repeats']} alternating runs (one run for the slow solvers from "
        f"{r['slow_methods_one_round_from_unknowns']:,} unknowns), and draws "
        f"`results/poisson_convergence.png`. O{mg('fluid-128')[1:]}; "
        f"{mg('unseen-128')}. Iterations of GMG / learned MG elsewhere: {others}. One "
        f"V-cycle takes {cycle('fluid-128')} and {cycle('fluid2d-1024')}, the floor being "
        "the bytes a fused cycle must move over the bandwidth of a fused streaming kernel "
        "on arrays of that size. DCDM (the paper's method, its shipped networks) took "
        f"{it('fluid-128', 'dcdm')} iterations and {g(solve('fluid-128', 'dcdm'))} s on "
        f"`fluid-128` and {it('dirichlet-64', 'dcdm')} on `dirichlet-64`; the column "
        "`break_even_iterations_vs_cg` is the iteration count at which it would match CG's "
        "time.")


def mppde(r: Results) -> str:
    cases = list(dict.fromkeys(row["case"] for row in r.rows))

    def nx(c):
        return int(c.split("-")[1][2:])

    def wins(start):
        out = []
        for c in cases:
            w = r.v(c, "accumulated_mse", "weno5", solver_nx=nx(c), start=start,
                    samples=r.rows[0]["samples"])
            for m, name in (("mppde", "MP-PDE"), ("fno", "FNO")):
                v = r.v(c, "accumulated_mse", m, samples=r.rows[0]["samples"])
                if v < w:
                    out.append(f"{name} on `{c}` ({v:.2f} against {w:.2f})")
        return "; ".join(out) if out else "none"
    steps = sorted({row["value"] for row in r.rows if row["metric"] == "train_steps"})
    return (
        "`sciml train mppde --out runs/mppde --results benchmarks/results/mppde.json` (the "
        "recipe `sciml_recipes.mppde`) generates E1/E2/E3 Burgers data in both grid "
        "conventions (`paper` and `conservative`), trains an MP-PDE and a temporally "
        "bundled FNO per case with the pushforward trick, and scores them and WENO5 at the "
        "same nx by the paper's accumulated MSE over "
        f"{r.rows[0]['samples']} test trajectories. WENO5 runs from the label window "
        "(`start=label`) or, like the original baseline, from t = 0 on its own coarse grid "
        "(`start=t0`); coarser WENO5 grids in the `conservative` convention give "
        "`equal_accuracy_nx`, the coarsest nx at which WENO5 is still as accurate as the "
        f"learned models. Training ran {g(steps[0])}-{g(steps[-1])} steps per model, far "
        "below the paper's. Learned models that beat WENO5 at equal nx, against WENO5 from "
        f"the label: {wins('label')}. Against WENO5 from t = 0: {wins('t0')}. Every other "
        "case goes to WENO5. One rollout in `results/mppde_rollout.png`.")


def message_passing(r: Results) -> str:
    c = "16x100-h128"
    return (
        "`python benchmarks/message_passing.py` times our message-passing layer against "
        "torch-geometric's `MessagePassing` with the same math and weights (case "
        f"`{c}`: graphs x nodes, hidden width), with a roofline floor from the measured "
        "matmul rate "
        f"({r.v(c, 'matmul_gflops'):.0f} GFLOP/s): forward "
        f"{r.v(c, 'fwd_ms'):.1f} ms against {r.v(c, 'fwd_ms', impl='torch-geometric'):.1f} ms "
        f"({x(r.v(c, 'fwd_ms', impl='torch-geometric'), r.v(c, 'fwd_ms'))}), forward+backward "
        f"{r.v(c, 'fwd_bwd_ms'):.1f} ms against "
        f"{r.v(c, 'fwd_bwd_ms', impl='torch-geometric'):.1f} ms "
        f"({x(r.v(c, 'fwd_bwd_ms', impl='torch-geometric'), r.v(c, 'fwd_bwd_ms'))}); ours is "
        f"{x(r.v(c, 'fwd_ms'), r.v(c, 'floor_fwd_ms'), 1)} / "
        f"{x(r.v(c, 'fwd_bwd_ms'), r.v(c, 'floor_fwd_bwd_ms'), 1)} the floor. With a fast "
        "matmul the per-edge elementwise passes dominate.")


def inverse(r: Results) -> str:
    ns, sur, w = r["setup"]["navier_stokes"], r["setup"]["surrogate"], r["setup"]["w2_vs_l2"]

    def par(m, k):
        return r.v("ns-viscosity", k, m)
    return (
        "`python benchmarks/inverse.py` runs every inverse case (the Navier-Stokes ones are "
        f"the recipe `sciml_recipes.ns_inverse`): the FNO setting at {ns['n']}^2 (nu = "
        f"{g(ns['viscosity'])}) observed at T = {g(ns['time'])} at {pct(ns['fraction'], 0)} "
        f"of the grid points ({ns['observations']}) with noise of {pct(ns['noise'], 0)} of "
        "the field's rms. The initial vorticity is recovered through the pseudo-spectral "
        f"solver to a relative L2 error of {r.v('ns-ic-solver', 'rel_l2', 'l2'):.3f} (MAP "
        f"{r.v('ns-ic-solver', 'map_s', 'l2'):.0f} s, "
        f"{g(r.v('ns-ic-solver', 'iterations', 'l2'))} L-BFGS iterations, + low-rank "
        f"Laplace {r.v('ns-ic-solver', 'laplace_s', 'l2'):.0f} s), and through an SFNO "
        f"surrogate (trained for {sur['train_s']:.0f} s on {sur['samples']} solver pairs, "
        f"{pct(sur['test_rel_l2'])} test error) to {r.v('ns-ic-sfno', 'rel_l2', 'l2'):.3f} "
        f"in {r.v('ns-ic-sfno', 'time_s', 'l2'):.0f} s; "
        f"{pct(r.v('ns-ic-solver', 'calibration_2sd', 'l2'))} (solver) and "
        f"{pct(r.v('ns-ic-sfno', 'calibration_2sd', 'l2'))} (SFNO) of the grid points have "
        "their error within two Laplace standard deviations. With the initial field known, "
        "the viscosity and the forcing amplitude come out of repeated noise draws with "
        f"biases of {pct(par('viscosity', 'relative_bias'))} and "
        f"{pct(par('amplitude', 'relative_bias'))} ({abs(par('viscosity', 'z')):.1f} and "
        f"{abs(par('amplitude', 'z')):.1f} standard errors) and spreads of "
        f"{g(par('viscosity', 'spread'), 2)} and {g(par('amplitude', 'spread'), 2)} against "
        f"Laplace standard deviations of {g(par('viscosity', 'laplace_std'), 2)} and "
        f"{g(par('amplitude', 'laplace_std'), 2)}. Cycle skipping: from "
        f"{w['n_starts']} random starts within {g(w['start_radius'])} of the true pulse "
        f"position (wavelength {g(w['wavelength'])}), L2 converges from "
        f"{pct(r.v('w2-vs-l2', 'converged_fraction', 'l2'), 0)} and W2 from "
        f"{pct(r.v('w2-vs-l2', 'converged_fraction', 'w2'), 0)}. Figures "
        "`results/inverse_navier_stokes.png` and `results/inverse_w2_vs_l2.png`.")


def probconserv(r: Results) -> str:
    s = r["settings"]
    cases = [c for c in dict.fromkeys(row["case"] for row in r.rows) if c != "update-1000x201"]
    base = [r.v(c, "ce", "base") for c in cases]
    cons = [r.v(c, "ce", m) for c in cases for m in ("hardc", "probconserv")]
    better = [c for c in cases if r.v(c, "mse", "probconserv") < r.v(c, "mse", "base")]
    worse = [c for c in cases if r.v(c, "mse", "probconserv") > r.v(c, "mse", "base")]

    def arrow(c):
        return f"`{c}` {g(r.v(c, 'mse', 'base'), 5)} -> {g(r.v(c, 'mse', 'probconserv'), 5)}"
    train = sum(r["train_seconds_first_run_1_thread_shared"].values())
    return (
        "`sciml train probconserv --out runs/pc --results "
        "benchmarks/results/probconserv.json` (the recipe `sciml_recipes.gpme`) "
        f"trains {s['members']}-member deep ensembles of conditional neural processes "
        f"({s['steps']} steps each, with and without a PDE-residual penalty) per GPME "
        "problem and scores base / soft / HardC / ProbConserv (and ProbConserv followed by "
        f"the convex projection) at t* = {g(s['t_final'])} over {s['n_eval']} context draws "
        "per test parameter: conservation error `ce`, `mse`, log-likelihood `ll` and, for "
        f"Stefan, `shock_error`. Training took {train / 60:.0f} minutes (1 thread). The "
        f"conservation error of HardC and ProbConserv is at most {g(max(cons), 2)} on every "
        f"case, against {g(min(base), 2)} to {g(max(base), 2)} for the base model. "
        f"ProbConserv's MSE is below the base model's on {len(better)} of the {len(cases)} "
        f"cases ({', '.join(arrow(c) for c in better)})"
        + (f" and above it on {', '.join(arrow(c) for c in worse)}" if worse else "")
        + ". The update on `update-1000x201` (profiles x grid points) takes "
        f"{r.v('update-1000x201', 'ms', 'probconserv'):.0f} ms on the CPU. Profiles in "
        "`results/probconserv_profiles.png`.")


def amp_accuracy(r: Results) -> str:
    s = r["settings"]
    methods = ("fp32", "bf16", "fp16")

    def err(case: str) -> str:
        return ", ".join(f"{m} {g(r.v(case, 'rel_l2', m), 4)}" for m in methods)
    heat = [r.v("heat", "rel_l2", m) for m in methods]
    same = max(heat) - min(heat) <= 1e-6 * max(heat)
    return (
        "`python benchmarks/amp_accuracy.py` trains the demo's two operator problems through "
        "the `Trainer` in float32 and with `TrainConfig(amp=\"bf16\")` and `amp=\"fp16\"` "
        "(autocast; fp16 with a GradScaler), from the same initial weights with the same seed "
        f"and step count ({s['heat_steps']} steps on `heat`, the heat semigroup learned by one "
        f"`SpectralConv`; {s['ns_steps']} on `ns`, the SFNO on Navier-Stokes), and reports the "
        "held-out relative L2 error of the weights evaluated in float32 (`rel_l2`) and under "
        f"the run's own autocast (`rel_l2_amp_eval`). `ns`: {err('ns')}; `heat`: "
        f"{err('heat')}"
        + (" (equal to 6 digits: autocast keeps the spectral convolution in float32, and "
           "the layer has no other operation)." if same else "."))


def _prefix(row: dict) -> str:
    return row["case"].split("-")[0]


# name -> (title, text, how to split the rows into tables: a row -> table caption)
SECTIONS: dict[str, tuple[str, Callable[[Results], str], Callable[[dict], str] | None]] = {
    "spectral_conv": ("Spectral convolution", spectral_conv, None),
    "navier_stokes": ("Navier-Stokes solver", navier_stokes, None),
    "ot": ("Entropic optimal transport", ot, _prefix),
    "sfno_vs_fno": ("SFNO against neuraloperator's FNO", sfno_vs_fno, None),
    "refiner_convergence": ("Spectral-Refiner convergence", refiner_convergence, None),
    "hard_constraints": ("Hard constraints", hard_constraints,
                         lambda row: {"points": "timing", "scaling": "scaling"}.get(
                             _prefix(row), "accuracy")),
    "poisson": ("Poisson systems: multigrid, learned multigrid and DCDM", poisson, None),
    "mppde": ("Neural PDE solvers on Burgers (MP-PDE)", mppde, _prefix),
    "message_passing": ("Message passing", message_passing, None),
    "inverse": ("Inverse problems", inverse, None),
    "probconserv": ("ProbConserv", probconserv, None),
    "amp_accuracy": ("Mixed precision and accuracy", amp_accuracy, None),
}

HEADER = """\
# Benchmarks

Generated by `python benchmarks/make_readme.py` from `benchmarks/results/*.json`; do not
edit by hand (`python benchmarks/make_readme.py --check` fails when this file and the
results disagree). Every result file holds rows of `case`, `impl`, `method`, `metric`,
`value`; the tables below list them, one line per case and implementation, one column per
metric (times in the unit the metric names: `_s`, `_ms`). Peer libraries for the
side-by-side runs: `pip install -e '.[bench]'`.
"""


def render(results: Path = RESULTS) -> str:
    # the --quick smoke runs write <name>_quick.json beside the real results: not tabulated
    files = {p.stem: p for p in sorted(results.glob("*.json")) if not p.stem.endswith("_quick")}
    unknown = sorted(set(files) - set(SECTIONS))
    if unknown:
        raise SystemExit(f"make_readme: no section for {', '.join(unknown)}; add one to "
                         "SECTIONS in benchmarks/make_readme.py")
    parts = [HEADER]
    for name, (title, text, split) in SECTIONS.items():
        if name not in files:
            continue
        r = Results(json.loads(files[name].read_text()))
        para = textwrap.fill(f"{text(r)}\n\n", width=90, break_long_words=False,
                             break_on_hyphens=False)
        tail = textwrap.fill(f"{machine(r)} Numbers in `results/{name}.json`.", width=90,
                             break_long_words=False, break_on_hyphens=False)
        parts.append(f"## {title}\n\n{para}\n\n{tail}\n")
        groups: dict[str, list[dict]] = {}
        for row in r.rows:
            groups.setdefault(split(row) if split else "", []).append(row)
        for caption, rows in groups.items():
            parts.append((f"**{caption}**\n\n" if caption else "") + table(rows) + "\n")
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true",
                   help="exit 1 if the README differs from what the results give")
    p.add_argument("--results", type=Path, default=RESULTS, help="folder of result files")
    p.add_argument("--readme", type=Path, default=README, help="the file to write or check")
    a = p.parse_args(argv)
    text = render(a.results)
    if a.check:
        old = a.readme.read_text() if a.readme.exists() else ""
        if old == text:
            return 0
        diff = difflib.unified_diff(old.splitlines(), text.splitlines(), str(a.readme),
                                    "generated", lineterm="", n=0)
        print("\n".join(list(diff)[:40]), file=sys.stderr)
        print(f"{a.readme} is stale: run python benchmarks/make_readme.py", file=sys.stderr)
        return 1
    a.readme.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
