"""2D Navier-Stokes: sciml vs torch-cfd, throughput and time to solution.

Part 1, same scheme: both run RK4-CN (5-stage low-storage RK4 + Crank-Nicolson) with the
same step, viscosity and initial condition (no forcing), in one process, runs interleaved;
reports sample-steps per second, the trajectories' agreement, and each solver's FFT floor
(its transforms per stage times the measured time of one transform).

Part 2, time to solution at equal accuracy: a Kolmogorov and a decaying case at 256^2
(float64, one sample). torch-cfd runs its scheme at its default step (CFL 0.5 on the
largest speed of the run); sciml runs its integrating-factor Dormand-Prince (5th order)
at the largest step, from
a ladder of multiples of that step, whose final-time error against a fine reference is
not above torch-cfd's. Reports simulated time per wall-clock second and the errors.

    python benchmarks/navier_stokes.py            # full
    python benchmarks/navier_stokes.py --quick    # smoke test (small grids)

Writes benchmarks/results/navier_stokes.json (results/gpu/ with --device cuda).
Needs the bench extra (``pip install -e '.[bench]'``) for torch-cfd.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch

from sciml._malloc import tune_malloc
from sciml.pdes import (
    NavierStokes2D,
    kolmogorov_forcing,
    mcwilliams_vorticity,
)
from sciml.pdes._steppers import STEPPERS
from sciml_recipes.benchtools import format_table, time_alternating, write_results

# (case, n, dtype, batch, steps timed per run)
PART1 = [
    ("256-fp32-b4", 256, torch.float32, 4, 5),
    ("256-fp64-b4", 256, torch.float64, 4, 5),
    ("64-fp64-b64", 64, torch.float64, 64, 5),
]
PART1_QUICK = [("64-fp32-b4", 64, torch.float32, 4, 3)]


def _tcfd(n: int, length: float, viscosity: float, drag: float, forcing, dtype, device):
    """torch-cfd's spectral Navier-Stokes with its RK4-CN stepper."""
    import torch_cfd.grids as grids
    from torch_cfd.spectral import NavierStokes2DSpectral, RK4CrankNicolsonStepper

    grid = grids.Grid((n, n), domain=((0, length), (0, length)), device=device)
    fn = None
    if forcing is not None:
        fn = _VorticityForcing(forcing.to(dtype=dtype, device=device))
    eq = NavierStokes2DSpectral(viscosity=viscosity, grid=grid, drag=drag, smooth=True,
                                forcing_fn=fn, step_fn=RK4CrankNicolsonStepper())
    return eq.to(dtype=dtype, device=device)


class _VorticityForcing:
    """A time-independent vorticity forcing in torch-cfd's calling convention."""

    vorticity = True

    def __init__(self, f: torch.Tensor):
        self.data = f

    def __call__(self, grid, field, t):
        return self


def _tcfd_run(eq, w: torch.Tensor, dt: float, steps: int) -> torch.Tensor:
    n = w.shape[-1]
    with torch.no_grad():
        w_hat, _ = eq(torch.fft.rfft2(w), dt, steps=steps)
    return torch.fft.irfft2(w_hat, s=(n, n))


def _fft_floor(n: int, dtype, batch: int, device) -> dict[str, float]:
    """Milliseconds of one transform of each kind the two solvers use."""
    c = torch.complex64 if dtype == torch.float32 else torch.complex128
    x = torch.randn(batch, n, n, dtype=dtype, device=device)
    xh = torch.fft.rfft2(x)
    z = torch.randn(batch, 2, n, n, dtype=c, device=device)
    t = time_alternating({
        "rfft2": lambda: torch.fft.rfft2(x),
        "irfft2": lambda: torch.fft.irfft2(xh, s=(n, n)),
        "ifft2_pair": lambda: torch.fft.ifft2(z),
    }, repeats=21, warmup=3, device=device)
    return t


def part1(cases, device, repeats: int) -> tuple[list[dict], list[list[object]]]:
    rows, table = [], []
    nu = 1e-3
    for case, n, dtype, batch, steps in cases:
        w0 = mcwilliams_vorticity(batch, n, max_velocity=1.0, length=1.0, dtype=torch.float64,
                                  generator=torch.Generator().manual_seed(0))
        ns = NavierStokes2D(viscosity=nu, length=1.0)
        ops = ns._ops(n, dtype, torch.device(device))
        state = ops.to_compact(w0.to(dtype=dtype, device=device))
        w_phys = ops.from_compact(state)  # the same (dealiased) field for both
        dt = 0.5 * (1.0 / n) / 1.0
        rk = STEPPERS["rk4cn"]
        fac = rk.factors(ops.linear, dt)
        eq = _tcfd(n, 1.0, nu, 0.0, None, dtype, device)
        w_tcfd_hat = torch.fft.rfft2(w_phys)

        def ours(state=state, rk=rk, ops=ops, fac=fac, dt=dt, steps=steps):
            return _advance(state, rk, ops, fac, dt, steps)

        def theirs(eq=eq, w=w_tcfd_hat, dt=dt, steps=steps):
            with torch.no_grad():
                return eq(w, dt, steps=steps)[0]

        ms = time_alternating({"sciml": ours, "torch-cfd": theirs}, repeats=repeats,
                              warmup=2, device=device)
        # agreement after 20 steps from the same field
        a = ops.from_compact(_advance(state, rk, ops, fac, dt, 20))
        b = _tcfd_run(eq, w_phys, dt, 20)
        agree = ((a - b).norm() / b.norm()).item()
        fl = _fft_floor(n, dtype, batch, device)
        stages = rk.nonlinear_evals  # 5 for both: the same scheme
        floor = {
            "sciml": stages * (fl["ifft2_pair"] + fl["rfft2"]),
            "torch-cfd": stages * (4 * fl["irfft2"] + fl["rfft2"]),
        }
        for impl in ("sciml", "torch-cfd"):
            per_step = ms[impl] / steps
            sps = batch * 1e3 / per_step
            rows += [
                {"case": case, "impl": impl, "method": "rk4cn", "metric": "sample_steps_per_s",
                 "value": sps},
                {"case": case, "impl": impl, "method": "rk4cn", "metric": "ms_per_step",
                 "value": per_step},
                {"case": case, "impl": impl, "method": "rk4cn", "metric": "fft_floor_ms_per_step",
                 "value": floor[impl]},
            ]
            table.append([case, impl, f"{sps:,.0f}", f"{per_step:.2f}", f"{floor[impl]:.2f}",
                          f"{floor[impl] / per_step:.0%}", f"{agree:.1e}"])
        rows.append({"case": case, "impl": "sciml", "method": "rk4cn",
                     "metric": "relative_difference_vs_torch-cfd_20_steps", "value": agree})
        ratio = ms["torch-cfd"] / ms["sciml"]
        rows.append({"case": case, "impl": "sciml", "method": "rk4cn", "metric": "speedup",
                     "value": ratio})
        table.append([case, "speedup", f"{ratio:.2f}x", "", "", "", ""])
    return rows, table


def _advance(state, rk, ops, fac, dt, steps):
    s = state
    for _ in range(steps):
        s, _ = rk.step(s, ops.nonlinear, fac, dt)
    return s


def _part2_case(name: str, n: int, t_end: float, device) -> dict:
    L, nu = 2 * math.pi, 1e-3
    g = torch.Generator().manual_seed(1)
    if name.startswith("kolmogorov"):
        drag, forcing = 0.1, kolmogorov_forcing(n, wavenumber=4, length=L)
        w0 = mcwilliams_vorticity(1, n, max_velocity=2.0, length=L, generator=g)
    else:
        drag, forcing = 0.0, None
        w0 = mcwilliams_vorticity(1, n, max_velocity=2.0, length=L, generator=g)
    return {"L": L, "nu": nu, "drag": drag, "forcing": forcing, "w0": w0.to(device),
            "t_end": t_end}


def part2(n: int, t_end: float, device, ladder) -> tuple[list[dict], list[list[object]]]:
    from torch_cfd.spectral import stable_time_step

    rows, table = [], []
    dtype = torch.float64
    for case in (f"kolmogorov-{n}", f"decaying-{n}"):
        c = _part2_case(case, n, t_end, device)
        f = None if c["forcing"] is None else c["forcing"].to(device)
        ref_solver = NavierStokes2D(viscosity=c["nu"], length=c["L"], drag=c["drag"],
                                    forcing=f, method="ifdp5")
        w0 = ref_solver._ops(n, dtype, torch.device(device)).from_compact(
            ref_solver._ops(n, dtype, torch.device(device)).to_compact(c["w0"]))
        # largest speed of the run, from a coarse pass, fixes torch-cfd's default step
        coarse = ref_solver.solve(w0, torch.linspace(0, t_end, 11).tolist())
        u, v = ref_solver.velocity(coarse[0])
        umax = float((u * u + v * v).sqrt().amax())
        dx = c["L"] / n
        dt_t = stable_time_step(dx=dx, max_velocity=umax, max_courant_number=0.5,
                                viscosity=c["nu"])
        steps_t = math.ceil(t_end / dt_t)
        dt_t = t_end / steps_t
        ref = ref_solver.solve(w0, [t_end], dt=dt_t / 8)[0, -1]

        def err(w, ref=ref):
            return ((w - ref).norm() / ref.norm()).item()

        eq = _tcfd(n, c["L"], c["nu"], c["drag"], f, dtype, device)
        e_t = err(_tcfd_run(eq, w0, dt_t, steps_t)[0])
        # sciml: the largest ladder step whose error stays at or below torch-cfd's
        best = None
        for mult in ladder:
            try:
                w = ref_solver.solve(w0, [t_end], dt=mult * dt_t)[0, -1]
            except RuntimeError:
                break
            e = err(w)
            if e <= e_t:
                best = (mult, e)
        if best is None:
            raise RuntimeError(f"{case}: no sciml step matched torch-cfd's error {e_t:.2e}")
        mult, e_s = best
        ms = time_alternating({
            "sciml": lambda s=ref_solver, w=w0, h=mult * dt_t: s.solve(w, [t_end], dt=h),
            "torch-cfd": lambda e=eq, w=w0, h=dt_t, k=steps_t: _tcfd_run(e, w, h, k),
        }, repeats=3, warmup=1, device=device)
        for impl, method, e, dt in (("sciml", "ifdp5", e_s, mult * dt_t),
                                    ("torch-cfd", "rk4cn", e_t, dt_t)):
            rate = t_end / (ms[impl] / 1e3)
            rows += [
                {"case": case, "impl": impl, "method": method, "metric": "sim_time_per_s",
                 "value": rate},
                {"case": case, "impl": impl, "method": method, "metric": "final_error",
                 "value": e},
                {"case": case, "impl": impl, "method": method, "metric": "dt", "value": dt},
            ]
            table.append([case, impl, method, f"{dt:.2e}", f"{e:.2e}", f"{rate:.3f}"])
        sp = ms["torch-cfd"] / ms["sciml"]
        rows.append({"case": case, "impl": "sciml", "method": "ifdp5", "metric": "speedup",
                     "value": sp})
        table.append([case, "speedup", "", "", "", f"{sp:.2f}x"])
    return rows, table


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small grids, few repeats")
    p.add_argument("--device", default="cpu")
    p.add_argument("--part", choices=["1", "2", "both"], default="both")
    p.add_argument("--out", type=Path, default=None)
    a = p.parse_args(argv)
    torch.manual_seed(0)
    # sciml's solver raises glibc's malloc thresholds on first use (sciml/_malloc.py); do it
    # up front so both implementations run under the same allocator settings
    tuned = tune_malloc()
    print(f"malloc thresholds raised: {tuned}")
    rows: list[dict] = []
    t0 = time.perf_counter()
    if a.part in ("1", "both"):
        r, table = part1(PART1_QUICK if a.quick else PART1, a.device, 3 if a.quick else 15)
        rows += r
        print("Part 1: RK4-CN, same step (sample-steps/s; floor = FFT time alone)")
        print(format_table(table, ["case", "impl", "sample-steps/s", "ms/step", "floor ms",
                                   "floor/actual", "rel. diff"]))
    if a.part in ("2", "both"):
        n, t_end = (64, 0.5) if a.quick else (256, 2.0)
        ladder = (1.0, 1.5, 2.0) if a.quick else tuple(1.0 + 0.125 * i for i in range(13))
        r, table = part2(n, t_end, a.device, ladder)
        rows += r
        print("\nPart 2: time to solution at equal final-time error (float64, 1 sample)")
        print(format_table(table, ["case", "impl", "method", "dt", "final error",
                                   "sim time / s"]))
    sub = "gpu/" if str(a.device).startswith("cuda") else ""
    out = a.out or Path(__file__).parent / "results" / f"{sub}navier_stokes.json"
    path = write_results(out, "navier_stokes", rows, device=a.device,
                         extra={"quick": a.quick, "malloc_tuned": tuned,
                                "seconds": time.perf_counter() - t0})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
