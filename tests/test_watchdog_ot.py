"""The hang class for the OT solvers: extreme inputs return within seconds, or are refused.

Every OT solver exported from ``sciml.solvers.ot`` is called on extreme inputs (a tiny and
a huge ``reg``, costs near overflow in float64 and float32, zero costs, float32 at small
``reg``) in a forked child process that the test kills at a deadline. The child must
return an :class:`~sciml.solvers.ot.OTResult` whose status is its plan's (checked in the
child) or raise a clear ``ValueError`` / ``TypeError``; a hang, a crash or any other
exception fails. Most cases run on small budgets: a loop that never advances its counter
hangs on any budget, and the cases stay fast. ``test_watchdog_catches_a_hang`` shows that
the harness does fail on a call that never returns.
"""

from __future__ import annotations

import inspect
import math
import multiprocessing as mp
import time
import traceback

import pytest
import torch

import sciml.solvers.ot as ot
from sciml._tolerances import default_tol

DEADLINE = 20.0  # seconds; each case takes well under one on an idle machine
SOLVERS = sorted(n for n in ot.__all__ if inspect.isfunction(getattr(ot, n)))
SMALL = {"sinkhorn": {"max_iter": 2000}, "sns": {"max_iter": 20, "max_sinkhorn_iter": 2000}}
D, S = torch.float64, torch.float32


def _points(n: int, dtype: torch.dtype, scale: float = 1.0, offset: float = 0.0):
    g = torch.Generator().manual_seed(n)
    x, y = torch.rand(n, 2, generator=g, dtype=D), torch.rand(n, 2, generator=g, dtype=D)
    M = torch.cdist(x, y) ** 2
    a = torch.rand(n, generator=g, dtype=D) + 0.5
    b = torch.rand(n, generator=g, dtype=D) + 0.5
    return (a / a.sum()).to(dtype), (b / b.sum()).to(dtype), (offset + scale * M).to(dtype)


def _forbidden(n: int):
    """Unit costs with one forbidden pair per row (cost 1e300): a fine problem."""
    a, b, M = _points(n, D)
    M[torch.arange(n), torch.arange(n)] = 1e300
    return a, b, M


# Sinkhorn with rare checks, so that its scalings overflow between two of them
RARE = {**SMALL, "sinkhorn": {"max_iter": 3000, "check_every": 100}}

# name: (problem, reg, budgets (None: the defaults), a refusal acceptable?)
CASES = {
    "tiny-reg-1e-8-f64": (lambda: _points(30, D), 1e-8, SMALL, True),
    "tiny-reg-1e-8-f32": (lambda: _points(30, S), 1e-8, SMALL, True),
    "huge-reg-1e8-f64": (lambda: _points(30, D), 1e8, None, False),
    "huge-reg-1e8-f32": (lambda: _points(30, S), 1e8, SMALL, False),
    "costs-1e300-f64": (lambda: _points(30, D, scale=1e300), 1.0, SMALL, True),
    "costs-1e300-f64-reg-1e-8": (lambda: _points(30, D, scale=1e300), 1e-8, SMALL, True),
    "costs-offset-1e300-f64": (lambda: _points(30, D, offset=1e300), 1e-2, SMALL, True),
    "costs-1e30-f32": (lambda: _points(30, S, scale=1e30), 1.0, SMALL, True),
    "forbidden-pairs-1e300-f64": (lambda: _forbidden(30), 1e-3, SMALL, False),
    "zero-costs-f64": (lambda: _points(30, D, scale=0.0), 1e-3, None, False),
    "zero-costs-f32": (lambda: _points(30, S, scale=0.0), 1e-3, SMALL, False),
    # the reported hangs: float32 at reg <= 1e-4, n = 50 to 200, on the default budgets
    "reg-1e-4-f32-n50-defaults": (lambda: _points(50, S), 1e-4, None, False),
    "reg-1e-4-f32-n200": (lambda: _points(200, S), 1e-4, SMALL, False),
    "reg-1e-5-f32": (lambda: _points(50, S), 1e-5, SMALL, False),
    "reg-1e-3-f32-n100": (lambda: _points(100, S), 1e-3, SMALL, False),
    "reg-1e-5-f64": (lambda: _points(50, D), 1e-5, SMALL, False),
    "reg-1e-4-f32-rare-checks": (lambda: _points(50, S), 1e-4, RARE, False),
}


def _hang() -> None:
    while True:
        pass


def _run(name: str, case: str) -> dict:
    """Call solver ``name`` on ``case``; check its word against its plan (in the child)."""
    build, reg, budgets, _ = CASES[case]
    a, b, M = build()
    res = getattr(ot, name)(a, b, M, reg, **(budgets or {}).get(name, {}))
    # the default tol depends on the dtype (one table); the result records the one used
    tol = default_tol("ot", a.dtype)
    if res.stats["tol"] != tol:
        raise AssertionError(f"stats['tol'] = {res.stats['tol']} but the {a.dtype} default "
                             f"is {tol}")
    P, a64, b64 = res.plan.double(), a.double(), b.double()
    err = float((P.sum(-1) - a64).abs().sum() + (P.sum(-2) - b64).abs().sum())
    return {"status": res.status.name, "error": err, "reported": res.stats["marginal_error"],
            "tol": tol, "iterations": res.stats["iterations"],
            "history": len(res.stats["history"])}


def _sinkhorn_breakdown() -> dict:
    a, b, M = CASES["reg-1e-4-f32-rare-checks"][0]()
    res = ot.sinkhorn(a, b, M, 1e-4, **RARE["sinkhorn"])
    P = res.plan.double()
    err = float((P.sum(-1) - a.double()).abs().sum() + (P.sum(-2) - b.double()).abs().sum())
    return {"checks": [(it, e) for it, _, e in res.stats["history"]], "error": err,
            "iterations": res.stats["iterations"], "status": res.status.name,
            "finite": bool(torch.isfinite(res.plan).all())}


def _child(target, args, out) -> None:
    torch.set_num_threads(1)
    try:
        out.put(("returned", target(*args)))
    except (ValueError, TypeError) as e:
        out.put(("refused", f"{type(e).__name__}: {e}"))
    except BaseException as e:  # reported to the parent as a failure
        out.put(("crashed", f"{type(e).__name__}\n{traceback.format_exc()[-1500:]}"))


def _watch(target, args, deadline: float) -> tuple[str, object]:
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    proc = ctx.Process(target=_child, args=(target, args, out))
    proc.start()
    proc.join(deadline)
    if proc.is_alive():
        proc.kill()
        proc.join()
        return "hung", None
    if out.empty():
        return "died", proc.exitcode
    return out.get(timeout=5)


@pytest.fixture(scope="module", autouse=True)
def _warm():
    """Solve a 2 x 2 problem here first: each forked child then inherits the lazy imports
    of a first call (about 0.7 s) instead of repeating them."""
    u = torch.full((2,), 0.5, dtype=D)
    for name in SOLVERS:
        getattr(ot, name)(u, u, torch.eye(2, dtype=D), 1.0)


def test_watchdog_catches_a_hang():
    t0 = time.monotonic()
    assert _watch(_hang, (), deadline=1.0) == ("hung", None)
    assert time.monotonic() - t0 < 10


def test_sinkhorn_goes_on_in_the_log_domain_after_a_breakdown():
    # float32 at reg 1e-4, checked every 100 iterations: the scalings overflow between two
    # checks. The loop used to restart without counting the restart and hang; now it goes
    # back to the last finite state and on by log-domain sweeps, each one counted
    kind, r = _watch(_sinkhorn_breakdown, (), DEADLINE)
    assert kind == "returned", (kind, r)
    its = [it for it, _ in r["checks"]]
    errs = [e for _, e in r["checks"]]
    bad = [k for k, e in enumerate(errs) if not math.isfinite(e)]
    assert bad, "the case no longer breaks down: pick a harder one"
    assert its == sorted(its) and its[-1] == r["iterations"] <= 3000
    last_finite = max([e for e in errs[:bad[0]] if math.isfinite(e)], default=math.inf)
    assert math.isfinite(r["error"]) and r["finite"]
    assert r["error"] == errs[-1] < last_finite  # progress after the breakdown
    assert r["status"] == "MAX_ITER" and r["iterations"] == 3000


def test_every_exported_solver_is_watched():
    assert {"sinkhorn", "sns"} <= set(SOLVERS), SOLVERS


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("name", SOLVERS)
def test_returns_with_an_honest_status_or_refuses(name, case):
    kind, what = _watch(_run, (name, case), DEADLINE)
    assert kind != "hung", f"{name} on {case} did not return within {DEADLINE:.0f} s (a hang)"
    assert kind != "died", f"{name} on {case}: the child died with exit code {what}"
    assert kind != "crashed", f"{name} on {case} raised (not a clear refusal):\n{what}"
    if kind == "refused":
        assert CASES[case][3], f"{name} refused a well-posed problem ({case}): {what}"
        # a refusal names the argument and says what to do
        assert "reg" in what and "M" in what and len(what) > 80, what
        return
    r = what
    assert r["status"] in ot.OTStatus.__members__, r
    assert r["history"] <= 2 * r["iterations"] + 2, r  # no check without an iteration
    err, reported, tol = r["error"], r["reported"], r["tol"]
    if math.isfinite(err):
        assert abs(reported - err) <= 1e-13 + 1e-9 * err, r
        # not converged: out of iterations, or stopped early at the float rounding floor
        if err <= tol:
            assert r["status"] == "CONVERGED", r
        else:
            assert r["status"] in ("MAX_ITER", "STALLED"), r
    else:
        assert r["status"] == "BREAKDOWN" and not math.isfinite(reported), r
