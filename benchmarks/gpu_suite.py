"""The GPU suite: correctness first, then small timed comparisons, within one budget.

    bash benchmarks/gpu_suite.sh            # on a CUDA machine: install, test, time
    python benchmarks/gpu_suite.py --dry-run  # the same steps on the CPU, simulated CUDA

Steps, each in its own process with its own time limit, so one slow or failing step
cannot eat the others' time (``--budget`` bounds the whole run; a step that would not fit
in what is left is skipped and says so):

1. ``pytest``: every ``gpu``-marked test (device agreement CUDA vs CPU, a float64
   gradcheck of SpectralConv on the device, a Trainer step with resume, the pipelines).
2. ``spectral``: SpectralConv forward and forward+backward, sciml's torch paths (fft,
   dft), its fused Triton kernel and neuraloperator, 2D and 3D.
3. ``navier_stokes``: RK4-CN steps of sciml and torch-cfd at 256^2 and 1024^2.
4. ``ot``: ``sinkhorn`` and ``sns`` (and POT's log-domain Sinkhorn on the same device)
   at n = 1e4 and 3e4 points.
5. ``poisson``: CG, and CG preconditioned by the geometric and the learned multigrid,
   at 128^3 and 256^3.
6. ``train_step``: one FNO training step in float32, bf16 autocast and fp16 autocast.

Each timed step writes ``<out>/<step>.json`` in the shared result shape and the driver
writes ``<out>/summary.json`` after every step; with ``$OUT`` set, everything is copied
there after every step too, so a run cut short keeps what it measured. ``--dry-run``
runs every step at toy sizes under :class:`sciml.testing.SimCuda` (tensors report
``cuda`` on the CPU) into a temporary folder: it proves the script and the CUDA code
paths run, and measures nothing.

A single step can be run alone: ``python benchmarks/gpu_suite.py --step spectral``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results" / "gpu"

# step -> time limit (s) on a GPU; the sum with the install stays under 10 minutes
LIMITS = {"pytest": 150, "spectral": 60, "navier_stokes": 60, "ot": 75, "poisson": 90,
          "train_step": 45}
DRY_LIMITS = {"pytest": 600, "spectral": 120, "navier_stokes": 120, "ot": 120,
              "poisson": 120, "train_step": 120}


# ---------------------------------------------------------------------------------------
# timed steps (each runs in its own process: ``--step NAME``)


def _timer(device: str, repeats: int) -> Callable[[dict[str, Callable[[], object]]], dict]:
    from sciml_recipes.benchtools import time_alternating

    def t(fns):
        return time_alternating(fns, repeats=repeats, warmup=2, device=device)

    return t


def step_spectral(device: str, tiny: bool) -> list[dict]:
    """SpectralConv forward and forward+backward: torch paths, Triton, neuraloperator."""
    import torch

    from sciml.spectral import SpectralConv, record_gpu_timings

    cases = ([("2d", 2, 4, (16, 16), (4, 4)), ("3d", 1, 3, (8, 8, 8), (3, 3, 3))] if tiny else
             [("2d", 16, 32, (64, 64), (16, 16)), ("3d", 4, 20, (64, 64, 16), (12, 12, 6))])
    try:
        from neuralop.layers.spectral_convolution import SpectralConv as NeuralopConv
    except ImportError:
        NeuralopConv = None
        print("neuraloperator is not installed: sciml only")
    time_it = _timer(device, 3 if tiny else 15)
    rows = []
    for case, batch, ch, grid, n_modes in cases:
        modes = (*(m // 2 for m in n_modes[:-1]), n_modes[-1] // 2 + 1)
        x = torch.randn(batch, ch, *grid, device=device)
        xg = x.clone().requires_grad_()
        impls = {f"sciml[{m}]": SpectralConv(ch, ch, modes, method=m).to(device)
                 for m in ("fft", "dft")}
        if torch.device(device).type == "cuda" and not tiny:
            try:  # the fused kernel needs Triton and a real GPU
                layer = SpectralConv(ch, ch, modes, method="triton").to(device)
                layer(x)
                impls["sciml[triton]"] = layer
            except (ImportError, RuntimeError) as e:
                print(f"{case}: no triton path ({e})")
        if NeuralopConv is not None:
            impls["neuraloperator"] = NeuralopConv(ch, ch, n_modes).to(device)
        fns: dict[tuple[str, str], Callable[[], object]] = {}
        for name, layer in impls.items():
            def fwd(layer=layer, x=x):
                with torch.no_grad():
                    layer(x)

            def fwd_bwd(layer=layer, xg=xg):
                layer(xg).sum().backward()

            fns[(name, "fwd_ms")] = fwd
            fns[(name, "fwd_bwd_ms")] = fwd_bwd
        shape = {"batch": batch, "in_channels": ch, "out_channels": ch, "modes": list(modes),
                 "grid": list(grid), "dtype": "float32"}
        for (impl, metric), v in time_it(fns).items():
            row = {"case": case, "impl": impl.split("[")[0], "metric": metric, "value": v}
            if "[" in impl:
                row["method"] = impl[impl.index("[") + 1: -1]
            rows.append({**row, **shape})
    if not tiny:
        # method="auto" on this GPU model picks triton or dft only from these records
        path = record_gpu_timings([r for r in rows if r["impl"] == "sciml"], device=device)
        print(f"recorded the sciml timings for method='auto' in {path}")
    return rows


def step_navier_stokes(device: str, tiny: bool) -> list[dict]:
    """RK4-CN steps per second, sciml vs torch-cfd, float32."""
    import torch

    from sciml.pdes import NavierStokes2D, mcwilliams_vorticity
    from sciml.pdes._steppers import STEPPERS

    sizes = [(32, 2, 2)] if tiny else [(256, 16, 20), (1024, 2, 10)]  # (n, batch, steps)
    try:
        sys.path.insert(0, str(HERE))
        import navier_stokes as nsb  # the torch-cfd set-up of benchmarks/navier_stokes.py

        nsb._tcfd(8, 1.0, 1e-3, 0.0, None, torch.float32, device)
    except ImportError:
        nsb = None
        print("torch-cfd is not installed: sciml only")
    time_it = _timer(device, 3 if tiny else 7)
    rows = []
    for n, batch, steps in sizes:
        w0 = mcwilliams_vorticity(batch, n, max_velocity=1.0, length=1.0,
                                  generator=torch.Generator().manual_seed(0))
        ops = NavierStokes2D(viscosity=1e-3)._ops(n, torch.float32, torch.device(device))
        state = ops.to_compact(w0.to(dtype=torch.float32, device=device))
        rk = STEPPERS["rk4cn"]
        dt = 0.5 / n
        fac = rk.factors(ops.linear, dt)

        def ours(state=state, fac=fac, dt=dt, steps=steps, ops=ops, rk=rk):
            s = state
            for _ in range(steps):
                s, _ = rk.step(s, ops.nonlinear, fac, dt)
            return s

        fns = {"sciml": ours}
        if nsb is not None:
            eq = nsb._tcfd(n, 1.0, 1e-3, 0.0, None, torch.float32, device)
            w_hat = torch.fft.rfft2(ops.from_compact(state))

            def theirs(eq=eq, w_hat=w_hat, dt=dt, steps=steps):
                with torch.no_grad():
                    return eq(w_hat, dt, steps=steps)[0]

            fns["torch-cfd"] = theirs
        for impl, ms in time_it(fns).items():
            rows += [{"case": f"{n}-fp32-b{batch}", "impl": impl, "method": "rk4cn",
                      "metric": "ms_per_step", "value": ms / steps},
                     {"case": f"{n}-fp32-b{batch}", "impl": impl, "method": "rk4cn",
                      "metric": "sample_steps_per_s", "value": batch * steps * 1e3 / ms}]
    return rows


def step_ot(device: str, tiny: bool) -> list[dict]:
    """Entropic OT between uniform point clouds: sinkhorn and sns (and POT) on the device."""
    import torch

    from sciml.solvers.ot import sinkhorn, sns
    from sciml_recipes.demo.ot_problems import random_points

    sizes = [200] if tiny else [10_000, 30_000]
    try:
        from sciml_recipes.benchtools import import_peer

        pot = import_peer("ot")
    except ImportError:
        pot = None
        print("POT is not installed: sciml only")
    rows = []
    reg, tol = 1e-2, 1e-6
    for n in sizes:
        p = random_points(n, seed=0, device=device)
        a, b, M = p.a, p.b, p.M
        runs: dict[str, Callable[[], object]] = {
            "sinkhorn": lambda a=a, b=b, M=M: sinkhorn(a, b, M, reg, tol=tol, max_iter=5000),
            "sns": lambda a=a, b=b, M=M: sns(a, b, M, reg, tol=tol),
        }
        if pot is not None:
            runs["pot"] = lambda a=a, b=b, M=M: pot.sinkhorn(
                a, b, M, reg, method="sinkhorn_log", numItermax=5000, stopThr=tol)
        for name, fn in runs.items():
            fn()  # warm-up (kernels, caches)
            ts = []
            for _ in range(1 if tiny or n > 20_000 else 3):
                _sync(device)
                t0 = time.perf_counter()
                out = fn()
                _sync(device)
                ts.append(time.perf_counter() - t0)
            plan = out if name == "pot" else out.plan
            err = float((plan.sum(-1) - a).abs().sum() + (plan.sum(-2) - b).abs().sum())
            impl, method = ("pot", "sinkhorn_log") if name == "pot" else ("sciml", name)
            rows += [{"case": f"points-n{n}-reg{reg:g}", "impl": impl, "method": method,
                      "metric": "time_s", "value": statistics.median(ts)},
                     {"case": f"points-n{n}-reg{reg:g}", "impl": impl, "method": method,
                      "metric": "l1_marginal_error", "value": err}]
        del p, a, b, M, runs
        if torch.device(device).type == "cuda":
            torch.cuda.empty_cache()
    return rows


def step_poisson(device: str, tiny: bool) -> list[dict]:
    """CG, and CG with the geometric and the learned multigrid, on the 3D fluid proxy."""
    import torch

    from sciml.pdes import divergence_rhs, fluid_proxy
    from sciml.solvers.linear import GeometricMultigrid, LearnedMultigrid, cg

    sizes = [16] if tiny else [128, 256]
    rows = []
    for n in sizes:
        system = fluid_proxy(n, d=3)
        op = system.operator(device=device)
        b = divergence_rhs(system, 1, seed=n)[0].to(device)
        setups: dict[str, Callable[[], object]] = {
            "cg": lambda: None,
            "gmg": lambda s=system: GeometricMultigrid(s, device=device),
            "learned-mg": lambda s=system: LearnedMultigrid(s, device=device),
        }
        for name, setup in setups.items():
            setup()  # warm-up
            _sync(device)
            t0 = time.perf_counter()
            M = setup()
            _sync(device)
            t_setup = time.perf_counter() - t0
            max_iter = 20 if tiny and name == "cg" else 20_000
            cg(op, b, M=M, rtol=1e-6, max_iter=max_iter)  # warm-up
            ts, its = [], 0
            for _ in range(1 if tiny or n > 128 else 3):
                _sync(device)
                t0 = time.perf_counter()
                s = cg(op, b, M=M, rtol=1e-6, max_iter=max_iter)
                _sync(device)
                ts.append(time.perf_counter() - t0)
                its = int(s.stats["iterations"])
            for metric, v in (("setup_s", t_setup), ("time_s", statistics.median(ts)),
                              ("iterations", float(its))):
                rows.append({"case": f"fluid-{n}", "impl": "sciml", "method": name,
                             "metric": metric, "value": v})
        del op, b
        if torch.device(device).type == "cuda":
            torch.cuda.empty_cache()
    return rows


def step_train_step(device: str, tiny: bool) -> list[dict]:
    """One FNO training step (forward, loss, backward, Adam) in fp32, bf16 and fp16."""
    import torch

    from sciml.operators import FNO

    batch, n, width, modes = (2, 16, 8, (4, 4)) if tiny else (16, 64, 32, (16, 16))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 1, n, n, generator=g).to(device)
    y = torch.randn(batch, 1, n, n, generator=g).to(device)
    dev_type = torch.device(device).type
    fns: dict[str, Callable[[], object]] = {}
    for prec in ("fp32", "bf16", "fp16"):
        torch.manual_seed(0)
        model = FNO(1, 1, width, modes).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(prec)
        scaler = torch.amp.GradScaler(dev_type) if prec == "fp16" else None

        def step(model=model, opt=opt, dtype=dtype, scaler=scaler):
            opt.zero_grad(set_to_none=True)
            with torch.autocast(dev_type, dtype=dtype or torch.float32, enabled=dtype is not None):
                loss = (model(x) - y).square().mean()
            if scaler is None:
                loss.backward()
                opt.step()
            else:
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()

        fns[prec] = step
    rows = []
    for prec, ms in _timer(device, 3 if tiny else 20)(fns).items():
        rows.append({"case": f"fno2d-b{batch}-{n}x{n}-w{width}", "impl": "sciml",
                     "method": prec, "metric": "step_ms", "value": ms})
    return rows


STEPS: dict[str, Callable[[str, bool], list[dict]]] = {
    "spectral": step_spectral,
    "navier_stokes": step_navier_stokes,
    "ot": step_ot,
    "poisson": step_poisson,
    "train_step": step_train_step,
}


def _sync(device: str) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def run_step(name: str, device: str, tiny: bool, out: Path) -> None:
    """Run one timed step in this process and write ``out/<name>.json``."""
    from sciml_recipes.benchtools import format_table, write_results

    t0 = time.perf_counter()
    rows = STEPS[name](device, tiny)
    print(format_table([[r["case"], r["impl"], r.get("method", ""), r["metric"],
                         f"{r['value']:.4g}"] for r in rows],
                       ["case", "impl", "method", "metric", "value"]))
    path = write_results(out / f"{name}.json", f"gpu_{name}", rows, device=device,
                         extra={"dry_run": tiny, "seconds": time.perf_counter() - t0})
    print(f"wrote {path}")


# ---------------------------------------------------------------------------------------
# the driver


def _copy_out(src: Path) -> None:
    dest = os.environ.get("OUT")
    if dest and Path(dest).resolve() != src.resolve():
        shutil.copytree(src, Path(dest) / src.name, dirs_exist_ok=True)


def drive(steps: list[str], *, dry_run: bool, out: Path, budget: float) -> int:
    """Run ``steps`` one process each; write the summary and copy out after every one."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "logs").mkdir(exist_ok=True)
    limits = DRY_LIMITS if dry_run else LIMITS
    start = time.monotonic()
    summary: list[dict] = []
    failed = 0
    for name in steps:
        left = budget - (time.monotonic() - start)
        limit = limits[name]
        if left < min(limit, 20):
            summary.append({"step": name, "status": "skipped", "reason": "budget spent"})
            print(f"gpu_suite: {name} skipped ({left:.0f} s of the budget left)", flush=True)
            continue
        if name == "pytest":
            cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider",
                   "-x" if dry_run else "-q", str(ROOT / "tests")]
        else:
            base = [str(HERE / "gpu_suite.py"), "--step", name, "--out", str(out)]
            cmd = [sys.executable, *(["-m", "sciml.testing"] if dry_run else []),
                   *base, *(["--tiny"] if dry_run else [])]
        print(f"gpu_suite: {name} (limit {min(limit, left):.0f} s): {' '.join(cmd)}",
              flush=True)
        t0 = time.monotonic()
        with open(out / "logs" / f"{name}.log", "w") as log:
            try:
                rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                                    timeout=min(limit, left)).returncode
                status = "ok" if rc == 0 else f"failed (exit {rc})"
            except subprocess.TimeoutExpired:
                status = f"timed out after {min(limit, left):.0f} s"
        secs = time.monotonic() - t0
        failed += status != "ok"
        summary.append({"step": name, "status": status, "seconds": round(secs, 1)})
        print(f"gpu_suite: {name}: {status} in {secs:.0f} s", flush=True)
        if status != "ok":
            print((out / "logs" / f"{name}.log").read_text()[-3000:], flush=True)
        (out / "summary.json").write_text(json.dumps(
            {"dry_run": dry_run, "budget_s": budget, "steps": summary}, indent=1))
        _copy_out(out)
    total = time.monotonic() - start
    print(f"gpu_suite: {len(steps) - failed}/{len(steps)} steps ok in {total:.0f} s", flush=True)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true",
                    help="toy sizes on the CPU under simulated CUDA (no GPU needed)")
    ap.add_argument("--step", choices=sorted(STEPS), help="run one timed step in-process")
    ap.add_argument("--only", nargs="+", choices=["pytest", *STEPS], default=None,
                    help="run these steps only (default: all)")
    ap.add_argument("--tiny", action="store_true", help="toy sizes (used by --dry-run)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--out", type=Path, default=None,
                    help="result folder (default: benchmarks/results/gpu; a temporary "
                         "folder with --dry-run)")
    ap.add_argument("--budget", type=float, default=None,
                    help="seconds for all steps (default 480 on a GPU, 900 dry)")
    a = ap.parse_args(argv)
    if a.step:
        run_step(a.step, a.device, a.tiny, a.out or RESULTS)
        return 0
    if not a.dry_run:
        # the spectral step's GPU timings go to a store inside the results folder, so they
        # come back with the results (set SCIML_CALIBRATION to that file to reuse them)
        os.environ.setdefault("SCIML_CALIBRATION", str((a.out or RESULTS) / "calibration.json"))
    if not a.dry_run:
        import torch

        if not torch.cuda.is_available():
            print("gpu_suite: no CUDA device visible to torch (use --dry-run on a CPU machine)",
                  file=sys.stderr)
            return 1
    out = a.out or (Path(tempfile.mkdtemp(prefix="gpu_suite_dry_")) if a.dry_run else RESULTS)
    steps = a.only or ["pytest", *STEPS]
    budget = a.budget or (900.0 if a.dry_run else 480.0)
    print(f"gpu_suite: results in {out}", flush=True)
    return drive(steps, dry_run=a.dry_run, out=out, budget=budget)


if __name__ == "__main__":
    raise SystemExit(main())
