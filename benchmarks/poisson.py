"""Pressure Poisson systems: our CG, scipy CG, IC(0)-PCG, PyAMG SA-PCG, GMG-PCG,
learned-MG-PCG and DCDM.

Cases (relative residual 1e-6, float64 for the classical solvers), each with a divergence
right-hand side: the fluid proxy (Neumann walls, a solid sphere, Dirichlet top) at 64^3
and 128^3 (``fluid-64``, ``fluid-128``) and a random obstacle set the networks never saw
(``unseen-64``, ``unseen-128``); in 2D the fluid proxy at 256^2 and 1024^2
(``fluid2d-256``, ``fluid2d-1024``); a rectangular obstacle scene 64 x 96 x 128
(``rect-64x96x128``); an obstacle scene with cell coefficients of contrast 1e3
(``coef1e3-64``); and one with Dirichlet walls on every side (``dirichlet-64``), which no
network saw in training. The 3D cases use the shipped 3D DCDM network, the 2D ones the 2D
network. Solvers, each on the form it is built for:

* sciml ``cg``: matrix-free 7-point stencil on the full grid (a fused CPU kernel);
* scipy ``cg``: ``scipy.sparse.linalg.cg`` on the reduced CSR matrix (fluid cells);
* sciml ``icpcg``: our CG with IC(0) on the reduced CSR (``setup_s``: the factorisation);
* pyamg ``sa-pcg``: ``smoothed_aggregation_solver`` + its own ``solve(accel="cg")``
  (``setup_s``: the hierarchy);
* sciml ``gmg``: our CG (float64) with the geometric-multigrid V-cycle (float32,
  red-black Gauss-Seidel) on the full grid (``setup_s``: the coarse levels);
* sciml ``learned-mg``: the same CG and cycle with the per-cell weights of the shipped
  learned multigrid network (``setup_s``: the coarse levels and the network);
* sciml ``dcdm``: the shipped 3D network (trained at 32^3, run at its 4 training
  levels) in our flexible conjugate-direction loop with the safeguard, k = 16.

``time_s`` is the solve alone (setup excluded and reported as ``setup_s``); runs
alternate between solvers, ``--repeats`` rounds (setups included), medians; on cases of
half a million unknowns or more the slow solvers (CG, scipy CG, IC(0)-PCG, DCDM) run one round.
For GMG and the learned MG also ``vcycle_s``, the median time of one V-cycle on one
right-hand side, beside ``vcycle_floor_s``, the bytes an ideal (fused) implementation of
that cycle must move divided by the bandwidth a fused streaming kernel reaches on arrays
of the fine grid's size (7 reads, 1 write; measured per grid size, since a 128^3 level
fits in this CPU's large last-level cache and a copy of 256 MB does not). The
break-even line: how many DCDM iterations would match CG's and PyAMG's (setup + solve)
time at DCDM's measured cost per iteration. Writes benchmarks/results/poisson.json and
poisson_convergence.png (relative residual against iteration and against time; time
per iteration taken as the solve's mean).

    python benchmarks/poisson.py                 # every case (about 30 minutes)
    python benchmarks/poisson.py --cases unseen  # the cases whose name contains "unseen"
    python benchmarks/poisson.py --sizes 64      # the 3D fluid/unseen cases at 64^3 only
    python benchmarks/poisson.py --quick         # 16^3 and 24^3 smoke test
    python benchmarks/poisson.py --device cuda   # our CG and DCDM on the GPU
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from sciml.pdes.poisson import (
    PoissonSystem,
    divergence_rhs,
    fluid_proxy,
    random_coefficients,
    random_obstacles,
)
from sciml.solvers.linear import (
    GeometricMultigrid,
    IncompleteCholesky,
    LearnedMultigrid,
    cg,
    dcdm,
    load_learned_multigrid,
    load_pretrained,
)
from sciml_recipes.benchtools import (
    format_table,
    import_peer,
    measure_bandwidth,
    write_results,
)

RESULTS = Path(__file__).parent / "results"
RTOL = 1e-6
CPU = torch.device("cpu")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def solvers(system, b, net, lmg_net, device: torch.device = CPU):
    """name -> (impl, method, setup() -> state, solve(state) -> (iterations, history)).

    Our matrix-free CG and DCDM run on ``device`` (float64 CG, the network in float32);
    scipy, IC(0) and PyAMG are CPU solvers and stay there."""
    from scipy.sparse.linalg import cg as scipy_cg

    op = system.operator(device=device)
    bd = b.to(device)
    A = system.csr(reduced=True)
    bf = system.to_fluid(b)
    bn = bf.numpy()
    nb = float(np.linalg.norm(bn))

    def ours_cg(_):
        s = cg(op, bd, rtol=RTOL, max_iter=20000)
        _sync(device)
        return s.stats["iterations"], (s.stats["history"].reshape(-1).cpu() / nb).tolist()

    def scipy_solve(_):
        hist = []

        def cb(xk):
            hist.append(float(np.linalg.norm(bn - A @ xk)) / nb)

        scipy_cg(A, bn, rtol=RTOL, maxiter=20000, callback=cb)
        return len(hist), [1.0, *hist]

    def ic_setup():
        return IncompleteCholesky(A)

    def ic_solve(ic):
        s = cg(A, bf, rtol=RTOL, M=ic, max_iter=20000)
        return s.stats["iterations"], (s.stats["history"].reshape(-1) / nb).tolist()

    def amg_setup():
        pyamg = import_peer("pyamg")
        return pyamg.smoothed_aggregation_solver(A)

    def amg_solve(ml):
        res: list[float] = []
        ml.solve(bn, tol=RTOL, accel="cg", maxiter=500, residuals=res)
        return len(res) - 1, [r / nb for r in res]

    def gmg_setup():
        return GeometricMultigrid(system, device=device)

    def lmg_setup():
        return LearnedMultigrid(system, net=lmg_net, device=device)

    def gmg_solve(mg):
        s = cg(op, bd, rtol=RTOL, M=mg, max_iter=2000)
        _sync(device)
        return s.stats["iterations"], (s.stats["history"].reshape(-1).cpu() / nb).tolist()

    def dcdm_solve(_):
        s = dcdm(op, bd, net=net, system=system, rtol=RTOL, max_iter=2000)
        _sync(device)
        return s.stats["iterations"], (s.stats["history"].reshape(-1).cpu() / nb).tolist()

    out = {"cg": ("sciml", "cg", None, ours_cg),
           "scipy-cg": ("scipy", "cg", None, scipy_solve),
           "icpcg": ("sciml", "icpcg", ic_setup, ic_solve),
           "sa-pcg": ("pyamg", "sa-pcg", amg_setup, amg_solve),
           "gmg": ("sciml", "gmg", gmg_setup, gmg_solve),
           "learned-mg": ("sciml", "learned-mg", lmg_setup, gmg_solve),
           "dcdm": ("sciml", "dcdm", None, dcdm_solve)}
    return out


SLOW = ("cg", "scipy-cg", "icpcg", "dcdm")


def run_case(system, net, lmg_net, repeats: int, device: torch.device = CPU
             ) -> dict[str, dict]:
    b = divergence_rhs(system, 1, seed=0)[0]
    table = solvers(system, b, net, lmg_net, device)
    setups: dict[str, list[float]] = {k: [] for k in table}
    times: dict[str, list[float]] = {k: [] for k in table}
    result: dict[str, tuple] = {}
    state: dict[str, object] = {}
    big = system.n_fluid >= 500_000
    for rnd in range(repeats):
        for name, (_, _, mk, solve) in table.items():
            if rnd and big and name in SLOW:
                continue
            t0 = time.perf_counter()
            state[name] = mk() if mk is not None else None
            setups[name].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            its, hist = solve(state[name])
            times[name].append(time.perf_counter() - t0)
            result[name] = (its, hist)
    out = {name: {"impl": table[name][0], "method": table[name][1],
                  "iterations": result[name][0], "history": result[name][1],
                  "time_s": statistics.median(times[name]),
                  "setup_s": statistics.median(setups[name])}
           for name in table}
    out["gmg"]["cycle"] = state["gmg"]
    out["learned-mg"]["cycle"] = state["learned-mg"]
    return out


def vcycle_bytes(mg: GeometricMultigrid) -> float:
    """Bytes an ideal fused implementation of one V-cycle moves (one right-hand side).

    Per level of ``n`` cells (element size ``e``, ``d`` axes): a smoothing step reads
    ``r, x``, the inverse diagonal, the diagonal and ``d`` link arrays and writes ``x``
    (``5 + d`` arrays); a residual ``4 + d``; restriction reads the residual and the
    weights (2) and prolongation reads the weights and ``x`` and writes ``x`` (3), the
    coarse arrays counted on their own level. Red-black sweeps count two steps each."""
    e = torch.finfo(mg.dtype).bits // 8
    d = len(mg.grid_shape)
    steps = mg.smoothing * (2 if mg.smoother == "rbgs" else 1) * 2
    total = 0.0
    for i, lev in enumerate(mg._levels):
        n = lev.mask.numel()
        if i == mg.levels - 1:
            m = mg._coarse_index.numel()
            total += (m * m + 2 * m) * e  # the dense coarsest solve
        else:
            total += n * e * (steps * (5 + d) + (4 + d) + 2 + 3)
    return total


def fused_bandwidth(cells: int, repeats: int = 15) -> float:
    """Bytes/s of a fused streaming kernel (numba, parallel) that reads 7 float32 arrays
    of ``cells`` entries and writes one: what a fused stencil pass on a grid of this size
    can reach (the arrays of a 128^3 grid fit in a large last-level cache)."""
    from numba import njit, prange

    @njit(parallel=True, fastmath=True)
    def stream(out, a, b, c, d, e, f, g):
        for i in prange(out.shape[0]):
            out[i] = a[i] * b[i] + c[i] * d[i] + e[i] * f[i] + g[i]

    arrays = [np.random.default_rng(i).random(cells, dtype=np.float32) for i in range(8)]
    stream(*arrays)
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        stream(*arrays)
        ts.append(time.perf_counter() - t0)
    return 8 * cells * 4 / statistics.median(ts)


def warm_up(device: torch.device) -> None:
    """Compile (or load from the cache) the fused kernels before anything is timed."""
    for d in (2, 3):
        s = random_obstacles(16, d=d, seed=0)
        b = divergence_rhs(s, 1, seed=0)[0].to(device)
        for M in (GeometricMultigrid(s, device=device), LearnedMultigrid(s, device=device)):
            cg(s.operator(device=device), b, M=M, rtol=RTOL)


def time_vcycle(mg: GeometricMultigrid, repeats: int) -> float:
    r = torch.randn(1, mg.shape[0], dtype=torch.float64, device=mg.device)
    mg.matvec(r)
    ts = []
    for _ in range(max(repeats, 3)):
        _sync(mg.device)
        t0 = time.perf_counter()
        mg.matvec(r)
        _sync(mg.device)
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def cases(sizes: list[int], quick: bool, select: list[str] | None):
    """(name, system) of every case (names filtered by ``select`` substrings)."""
    def coef(n: int) -> PoissonSystem:
        base = random_obstacles(n, d=3, seed=20_000 + n)
        return PoissonSystem(base.cells, open_top=True,
                             coefficients=random_coefficients((n,) * 3, 1e3, seed=n))

    def dirichlet(n: int) -> PoissonSystem:
        return PoissonSystem(random_obstacles(n, d=3, seed=30_000 + n).cells,
                             dirichlet_walls=True)

    if quick:
        out = [("fluid-16", fluid_proxy(16, d=3)),
               ("unseen-16", random_obstacles(16, d=3, seed=10_016)),
               ("fluid2d-64", fluid_proxy(64, d=2)),
               ("rect-16x24x32", random_obstacles((16, 24, 32), seed=40_000)),
               ("coef1e3-16", coef(16)), ("dirichlet-16", dirichlet(16))]
    else:
        out = []
        for n in sizes:
            out += [(f"fluid-{n}", fluid_proxy(n, d=3)),
                    (f"unseen-{n}", random_obstacles(n, d=3, seed=10_000 + n))]
        out += [("fluid2d-256", fluid_proxy(256, d=2)), ("fluid2d-1024", fluid_proxy(1024, d=2)),
                ("rect-64x96x128", random_obstacles((64, 96, 128), seed=40_000)),
                ("coef1e3-64", coef(64)), ("dirichlet-64", dirichlet(64))]
    return [(k, v) for k, v in out if not select or any(s in k for s in select)]


def plot(all_results: dict[str, dict], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = list(all_results)
    fig, axes = plt.subplots(2, len(cases), figsize=(4.2 * len(cases), 6.4), squeeze=False)
    for j, case in enumerate(cases):
        for name, r in all_results[case].items():
            h = np.asarray(r["history"])
            its = np.arange(len(h))
            per = r["time_s"] / max(r["iterations"], 1)
            axes[0, j].semilogy(its, h, label=f"{name} ({r['iterations']})")
            axes[1, j].semilogy(r["setup_s"] + its * per, h, label=name)
        axes[0, j].set_title(case, fontsize=10)
        axes[0, j].set_xlabel("iteration")
        axes[1, j].set_xlabel("seconds (setup + solve)")
        for ax in axes[:, j]:
            ax.axhline(RTOL, color="k", lw=0.8, ls=":")
            ax.set_ylabel("relative residual")
        axes[0, j].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 128],
                   help="sides of the 3D fluid/unseen cases")
    p.add_argument("--cases", nargs="+", default=None,
                   help="run only the cases whose name contains one of these")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default=None)
    p.add_argument("--device", default="cpu",
                   help="where our CG and DCDM run (cuda: results under results/gpu/)")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    name = "poisson_quick.json" if args.quick else "poisson.json"
    out = Path(args.out) if args.out else (
        RESULTS / "gpu" / name if device.type == "cuda" else RESULTS / name)
    out.parent.mkdir(parents=True, exist_ok=True)
    nets = {d: load_pretrained(d).to(device) for d in (2, 3)}
    lmg_nets = {d: load_learned_multigrid(d) for d in (2, 3)}
    warm_up(device)
    bandwidth = measure_bandwidth()
    print(f"copy bandwidth (256 MB): {bandwidth / 1e9:.1f} GB/s", flush=True)
    fused_bw: dict[int, float] = {}
    rows, all_results = [], {}
    for case, system in cases(args.sizes, args.quick, args.cases):
        print(f"{case}: {system.n_fluid} unknowns", flush=True)
        repeats = 1 if args.quick else args.repeats
        res = run_case(system, nets[system.ndim], lmg_nets[system.ndim], repeats, device)
        cycles = {m: res[m].pop("cycle") for m in ("gmg", "learned-mg")}
        mg = cycles["gmg"]
        cells = mg._levels[0].mask.numel()
        if cells not in fused_bw:
            fused_bw[cells] = fused_bandwidth(cells)
        bw = fused_bw[cells]
        floor = vcycle_bytes(mg) / bw
        vcs = {}
        for m, cyc in cycles.items():
            vcs[m] = time_vcycle(cyc, repeats)
            rows += [{"case": case, "impl": "sciml", "method": m, "metric": "vcycle_s",
                      "value": vcs[m]},
                     {"case": case, "impl": "sciml", "method": m,
                      "metric": "vcycle_floor_s", "value": floor},
                     {"case": case, "impl": "sciml", "method": m, "metric": "levels",
                      "value": float(cyc.levels)},
                     {"case": case, "impl": "sciml", "method": m,
                      "metric": "fused_bandwidth_bytes_s", "value": bw}]
        vc = vcs["gmg"]
        all_results[case] = res
        for r in res.values():
            for metric in ("iterations", "time_s", "setup_s"):
                rows.append({"case": case, "impl": r["impl"], "method": r["method"],
                             "metric": metric, "value": float(r[metric])})
        d = res["dcdm"]
        per = d["time_s"] / max(d["iterations"], 1)
        even_cg = res["cg"]["time_s"] / per
        even_amg = (res["sa-pcg"]["time_s"] + res["sa-pcg"]["setup_s"]) / per
        rows.append({"case": case, "impl": "sciml", "method": "dcdm",
                     "metric": "break_even_iterations_vs_cg", "value": even_cg})
        rows.append({"case": case, "impl": "sciml", "method": "dcdm",
                     "metric": "break_even_iterations_vs_pyamg", "value": even_amg})
        print(format_table([(k, r["iterations"], f"{r['setup_s']:.3f}",
                             f"{r['time_s']:.3f}") for k, r in res.items()],
                           ["solver", "iterations", "setup s", "solve s"]))
        print(f"DCDM: {per * 1e3:.1f} ms per iteration; it would match CG with "
              f"{even_cg:.1f} iterations and PyAMG (setup + solve) with {even_amg:.1f}",
              flush=True)
        print(f"GMG: {mg.levels} levels; one V-cycle {vc * 1e3:.1f} ms (learned MG "
              f"{vcs['learned-mg'] * 1e3:.1f} ms) against a bandwidth floor of "
              f"{floor * 1e3:.1f} ms ({vc / floor:.1f}x; fused streaming at "
              f"{bw / 1e9:.1f} GB/s)", flush=True)
    fig = plot(all_results, out.parent / out.name.replace(".json", "_convergence.png"))
    write_results(out, "poisson", rows, device=device,
                  extra={"rtol": RTOL, "repeats": args.repeats,
                         "threads": torch.get_num_threads(), "bandwidth_bytes_s": bandwidth,
                         "slow_methods_one_round_from_unknowns": 500_000})
    print(f"results: {out}\nfigure: {fig}")


if __name__ == "__main__":
    main()
