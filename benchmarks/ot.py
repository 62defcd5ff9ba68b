"""Entropic optimal transport: sciml (Sinkhorn, SNS) vs POT and RegOT on the same problems.

All solvers get the same float64 data in one process and solve the same problem,
``min <P, M> + reg sum P (log P - 1)`` over plans with marginals ``a``, ``b`` (POT's and
RegOT's ``reg``, which is ``1/eta`` in Tang et al., ICLR 2024). Cases:

- ``points-n{n}-reg{reg}``: ``n`` uniform points in the unit square on each side,
  squared Euclidean cost scaled to a maximum of 1, uniform masses, target L1 marginal
  error 1e-8; ``n`` = 500, 1000, 2000 at reg 1e-2 and 1e-3, and n = 5000, 10000 at reg
  1e-3 for sciml ``sns`` alone (POT's numpy Sinkhorn would take most of an hour per
  solve at n = 5000, and the n x n float64 copies the peers need grow to 800 MB each);
- ``assignment-n500-eta1200``: i.i.d. uniform cost on [0, 1], reg = 1/1200, solved to
  machine accuracy (target 1e-12; each solver reports what it reached);
- ``w1-28x28``, ``w2-28x28``: two seeded Gaussian-mixture densities on a 28 x 28 grid of
  [0, 1]^2, cost = distance (W1) or squared distance (W2) scaled to a maximum of 1,
  reg = 1e-3, target 1e-8.

Every plan's L1 marginal error ``||P 1 - a||_1 + ||P^T 1 - b||_1`` is computed here, the
same way for all. The peers stop on their own error measures, so their tolerances are set
to imply the L1 target: POT's ``stopThr`` bounds the L2 norm of the column error (rows are
exact after its last half-step), so it gets ``tol / sqrt(m)``; RegOT's ``tol`` bounds its
own L2-type error of both marginals, so it gets ``tol / sqrt(n + m)``. A RegOT run that stalls
above its tolerance is timed up to the iteration of its best error (not to ``max_iter``).

Timing: the slow first-order solvers (POT ``sinkhorn_log`` and sciml ``sinkhorn``) run once
each per case, alternating; POT is capped at ``POT_MAX_ITER`` iterations (then the
``reached_tol`` row says so). The Newton-type solvers (sciml ``sns``, RegOT
``sinkhorn_ssns``) run after one untimed warm-up call, alternating, and report medians.
Times include everything each call does (sciml's input checks, building the plan).
POT runs numpy (one thread for its element-wise work), RegOT its C++ core; sciml uses
torch's threads.

    python benchmarks/ot.py            # full (tens of minutes: POT at reg 1e-3)
    python benchmarks/ot.py --quick    # smoke test, tiny sizes (under a minute)

Writes benchmarks/results/ot.json (results/gpu/ot.json with --device cuda) and
ot_convergence.png beside it. Needs the bench extra (``pip install -e '.[bench]'``).
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from sciml.solvers.ot import OTStatus, sinkhorn, sns
from sciml_recipes.benchtools import (
    format_table,
    import_peer,
    machine_info,
    time_alternating,
    write_results,
)
from sciml_recipes.demo.ot_problems import (
    OTProblem,
    grid_densities,
    marginal_error,
    random_assignment,
    random_points,
)

POT_MAX_ITER = 5000        # POT's numpy log-domain sweep costs ~10-100 ms at n = 1000-2000
SINKHORN_MAX_ITER = 20000  # sciml's sweep is two matrix-vector products
SNS_MAX_ITER = 300
REGOT_MAX_ITER = 500


@dataclass(frozen=True)
class Case:
    name: str
    problem: Callable[[], OTProblem]
    reg: float
    tol: float
    peers: bool = True  # False: sciml sns only


@dataclass
class Run:
    """What one solve returned, in a form common to all implementations."""

    plan: object                     # torch tensor or numpy array, (n, m)
    iterations: int
    history: list[tuple[int, float, float]]  # (iteration, seconds, the solver's own error)
    reached: bool                    # the solver's own verdict
    extra: dict[str, float] = field(default_factory=dict)


def cases(quick: bool) -> list[Case]:
    if quick:
        return [
            Case("points-n100-reg1e-2", lambda: random_points(100, seed=0), 1e-2, 1e-8),
            Case("points-n200-reg1e-3", lambda: random_points(200, seed=0), 1e-3, 1e-8),
            Case("points-n1000-reg1e-3", lambda: random_points(1000, seed=0), 1e-3, 1e-8,
                 peers=False),
            Case("assignment-n100-eta1200", lambda: random_assignment(100, seed=0),
                 1 / 1200, 1e-12),
            Case("w1-10x10", lambda: grid_densities(10, power=1, seed=0), 1e-3, 1e-8),
            Case("w2-10x10", lambda: grid_densities(10, power=2, seed=0), 1e-3, 1e-8),
        ]
    out = [Case(f"points-n{n}-reg{r}", lambda n=n: random_points(n, seed=0), float(r), 1e-8)
           for r in ("1e-2", "1e-3") for n in (500, 1000, 2000)]
    out += [Case(f"points-n{n}-reg1e-3", lambda n=n: random_points(n, seed=0), 1e-3, 1e-8,
                 peers=False) for n in (5000, 10000)]
    out.append(Case("assignment-n500-eta1200", lambda: random_assignment(500, seed=0),
                    1 / 1200, 1e-12))
    out += [Case(f"w{p}-28x28", lambda p=p: grid_densities(28, power=p, seed=0), 1e-3, 1e-8)
            for p in (1, 2)]
    return out


# --- the implementations, each returning a Run -------------------------------------------

def _sciml(res) -> Run:
    s = res.stats
    extra = {k: float(s[k]) for k in ("sinkhorn_iterations", "newton_iterations",
                                       "cg_iterations") if k in s}
    return Run(res.plan, int(s["iterations"]), list(s.get("history", [])),
               res.status is OTStatus.CONVERGED, extra)


def run_sinkhorn(p: OTProblem, case: Case) -> Run:
    return _sciml(sinkhorn(p.a, p.b, p.M, case.reg, max_iter=SINKHORN_MAX_ITER, tol=case.tol))


def run_sns(p: OTProblem, case: Case) -> Run:
    return _sciml(sns(p.a, p.b, p.M, case.reg, max_iter=SNS_MAX_ITER, tol=case.tol))


def run_pot(a: np.ndarray, b: np.ndarray, M: np.ndarray, case: Case) -> Run:
    ot = import_peer("ot")  # not plain ``import ot``: that would find this script
    t0 = time.perf_counter()
    P, log = ot.sinkhorn(a, b, M, case.reg, method="sinkhorn_log",
                         stopThr=case.tol / math.sqrt(len(b)), numItermax=POT_MAX_ITER,
                         log=True, warn=False)
    secs = time.perf_counter() - t0
    its = int(log["niter"]) + 1
    # POT logs its error at iterations 1, 11, 21, ...; no times, so spread the run's
    # time evenly over its (equal-cost) iterations
    hist = [(10 * k + 1, secs * (10 * k + 1) / its, float(e)) for k, e in enumerate(log["err"])]
    return Run(P, its, hist, its < POT_MAX_ITER)


def run_regot(a: np.ndarray, b: np.ndarray, M_f: np.ndarray, case: Case, max_iter: int) -> Run:
    regot = import_peer("regot")
    tol = case.tol / math.sqrt(len(a) + len(b))
    r = regot.sinkhorn_ssns(M_f, a, b, case.reg, tol=tol, max_iter=max_iter, verbose=0)
    hist = [(k + 1, t / 1e3, float(e)) for k, (t, e) in enumerate(zip(r.run_times, r.mar_errs))]
    reached = bool(r.mar_errs) and r.mar_errs[-1] < tol
    return Run(r.plan, int(r.niter), hist, reached)


def _regot_cut(run: Run) -> int:
    """The iteration at which a stalled RegOT run reached its best error."""
    errs = [e for _, _, e in run.history]
    return int(np.argmin(errs)) + 1 if errs else REGOT_MAX_ITER


# --- one case -------------------------------------------------------------------------------

def run_case(case: Case, device: str, repeats: int) -> tuple[list[dict], list[list], dict]:
    """Solve one case with every implementation; return rows, table lines and the runs."""
    p = case.problem()
    pd = OTProblem(p.a.to(device), p.b.to(device), p.M.to(device), p.scale)
    a, b = p.a.numpy(), p.b.numpy()
    if case.peers:  # numpy copies only where the peers run (n = 10000: 800 MB each)
        M = p.M.numpy()
        M_f = np.asfortranarray(M)  # RegOT wants column-major; convert outside the timing
    runs: dict[str, Run] = {}
    seconds: dict[str, float] = {}

    def keep(name: str, fn: Callable[[], Run]) -> Callable[[], None]:
        def call() -> None:
            runs[name] = fn()
        return call

    # Newton-type: an untimed first call each (warm-up, and RegOT's stall check), then medians
    fast = {"sns": keep("sns", lambda: run_sns(pd, case))}
    if case.peers:
        regot_iter = REGOT_MAX_ITER
        first = run_regot(a, b, M_f, case, regot_iter)
        if not first.reached:
            regot_iter = _regot_cut(first)
        fast["regot"] = keep("regot", lambda: run_regot(a, b, M_f, case, regot_iter))
    fast["sns"]()
    seconds.update({k: v / 1e3 for k, v in time_alternating(
        fast, repeats=repeats, warmup=0, device=device).items()})
    # first-order: one alternating run each
    if case.peers:
        slow = {"sinkhorn": keep("sinkhorn", lambda: run_sinkhorn(pd, case)),
                "pot": keep("pot", lambda: run_pot(a, b, M, case))}
        seconds.update({k: v / 1e3 for k, v in time_alternating(
            slow, repeats=1, warmup=0, device=device).items()})

    impls = {"sinkhorn": ("sciml", "sinkhorn"), "sns": ("sciml", "sns"),
             "pot": ("pot", "sinkhorn_log"), "regot": ("regot", "sinkhorn_ssns")}
    rows, table = [], []
    for key in ("sinkhorn", "sns", "pot", "regot"):
        impl, method = impls[key]
        if key not in runs:
            table.append([case.name, impl, method, "not run*", "", "", "", ""])
            continue
        r = runs[key]
        err = marginal_error(r.plan, a, b)
        P = r.plan.detach().cpu() if isinstance(r.plan, torch.Tensor) else torch.from_numpy(
            np.array(r.plan))  # a copy: the peers may return read-only arrays
        cost = float((P * p.M).sum())
        metrics = {"iterations": r.iterations, "time_s": seconds[key], "marginal_error": err,
                   "reached_tol": float(err <= case.tol), "converged": float(r.reached),
                   "transport_cost": cost}
        its = str(r.iterations)
        if key == "sns":
            s, n = int(r.extra.get("sinkhorn_iterations", 0)), int(r.extra.get(
                "newton_iterations", 0))
            metrics |= {"iterations_sinkhorn_stage": s, "iterations_newton_stage": n,
                        "cg_iterations": r.extra.get("cg_iterations", 0.0)}
            its = f"{r.iterations} ({s}+{n})"
        rows += [{"case": case.name, "impl": impl, "method": method, "metric": k,
                  "value": float(v)} for k, v in metrics.items()]
        table.append([case.name, impl, method, its, f"{seconds[key]:.3g}", f"{err:.1e}",
                      "yes" if err <= case.tol else "no", f"{cost:.6g}"])
    for peer in ("pot", "regot"):
        if peer in seconds:
            sp = seconds[peer] / seconds["sns"]
            rows.append({"case": case.name, "impl": "sciml", "method": "sns",
                         "metric": f"speedup_vs_{peer}", "value": sp})
            table.append([case.name, f"speedup sns vs {peer}", "", "", f"{sp:.2f}x", "", "",
                          ""])
    return rows, table, runs


# --- the convergence figure -----------------------------------------------------------------

def convergence_figure(path: Path, case: str, runs: dict[str, Run], a, b) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    labels = {"sinkhorn": "sciml sinkhorn (L1)", "sns": "sciml sns (L1)",
              "pot": "POT sinkhorn_log (L2, columns)", "regot": "RegOT sinkhorn_ssns (own L2)"}
    colors = {"sinkhorn": "C0", "sns": "C1", "pot": "C2", "regot": "C3"}
    fig, ax = plt.subplots(1, 2, figsize=(11, 4.2))
    for key in (k for k in labels if k in runs):
        r = runs[key]
        err = marginal_error(r.plan, a, b)
        h = r.history
        if h:
            it, t, e = zip(*h)
            ax[0].semilogy(it, e, color=colors[key], label=labels[key])
            ax[1].semilogy(t, e, color=colors[key], label=labels[key])
            end_it, end_t = h[-1][0], h[-1][1]
        else:
            end_it, end_t = r.iterations, float("nan")
        # the final plan's L1 error, measured here the same way for all
        ax[0].semilogy([max(end_it, 1)], [max(err, 1e-18)], "o", color=colors[key])
        ax[1].semilogy([end_t], [max(err, 1e-18)], "o", color=colors[key])
    ax[0].set_xscale("log")
    ax[1].set_xscale("log")
    for x in ax:
        x.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax[0].set_xlabel("iteration")
    ax[1].set_xlabel("seconds (POT: run time spread evenly over its iterations)")
    for x in ax:
        x.set_ylabel("marginal error")
        x.grid(True, which="both", alpha=0.3)
    ax[0].legend(fontsize=8)
    fig.suptitle(f"{case}: each solver's own error measure (lines), final L1 error (dots)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny sizes, few repeats")
    p.add_argument("--device", default="cpu", help="sciml's device (the peers run on CPU)")
    p.add_argument("--out", type=Path, default=None, help="result JSON path")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: torch's; use 1 on a busy machine, where "
                        "waiting for a descheduled thread stalls every small operation)")
    args = p.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print("machine:", ", ".join(f"{k}={v}" for k, v in machine_info(args.device).items()))
    sub = "gpu/" if str(args.device).startswith("cuda") else ""
    out = args.out or Path(__file__).parent / "results" / f"{sub}ot.json"
    figure_case = "points-n200-reg1e-3" if args.quick else "points-n1000-reg1e-3"
    repeats = 3 if args.quick else 7
    # load and exercise every library once on a tiny problem (imports, first-call costs)
    tiny = Case("warmup", lambda: random_points(20, seed=1), 1e-1, 1e-6)
    run_case(tiny, args.device, 1)

    rows: list[dict] = []
    table: list[list] = []
    figure = None
    t0 = time.perf_counter()
    for case in cases(args.quick):
        print(f"  {case.name} ...", flush=True)
        r, t, runs = run_case(case, args.device, repeats)
        rows += r
        table += t
        if case.name == figure_case:
            a, b, _ = case.problem().numpy()
            figure = convergence_figure(out.parent / "ot_convergence.png", case.name, runs,
                                        a, b)
    print("\nEntropic OT, float64: iterations, time, achieved L1 marginal error")
    print(format_table(table, ["case", "impl", "method", "iterations", "time s",
                               "L1 marg. err", "reached tol", "<P, M>"]))
    print("* sns-only cases: at this size the first-order solvers take (POT: most of an "
          "hour) per solve and the peers' dense float64 copies grow large")
    path = write_results(out, "ot", rows, device=args.device, extra={
        "quick": args.quick, "seconds": time.perf_counter() - t0,
        "settings": {"pot_max_iter": POT_MAX_ITER, "sinkhorn_max_iter": SINKHORN_MAX_ITER,
                     "sns_max_iter": SNS_MAX_ITER, "regot_max_iter": REGOT_MAX_ITER,
                     "repeats_newton_type": repeats, "repeats_first_order": 1}})
    print(f"\nwrote {path}" + (f" and {figure}" if figure else ""))


if __name__ == "__main__":
    main()
