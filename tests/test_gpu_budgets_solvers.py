"""Host-sync and copy budgets of the solvers' hot loops on CUDA, checked under SimCuda.

Each budget is counted over a run on ``cuda`` tensors (simulated: :class:`sciml.testing.
SimCuda`) and divided by the iterations the solver reports in its stats; each result is
compared with the same run on the CPU without the simulation (the references, computed
once per module before any test enters SimCuda). Budgets:

* ``sns``: no sync per inner CG iteration (the CG's stopping test stays on the device; the
  host looks every ``_PCG_CHECK`` = 8 iterations and once at the end of each solve); per
  Newton step, besides its CG, one sync for the sparsity pattern and one per line-search
  trial (plus one read of the error when the Newton phase starts);
* ``sinkhorn`` (0.2 per iteration: two reads per check every 10) and ``cg`` (a look every
  8 iterations) no worse than before the GPU work;
* Levenberg-Marquardt (:class:`HardConstraint`, :class:`MoEHardConstraint`): at most 1 per
  iteration over the whole forward (input checks included);
* MAP: one read per L-BFGS trial step (so at most 2 per iteration over the whole solve
  where the unit step is mostly accepted) or per Adam iteration, plus the entry checks;
* DCDM: no sync and no host-to-device copy per network call (the mask is copied once per
  solve);
* ``NavierStokes2D.residual``: no host-to-device copy per call (the one sync is the
  finiteness check of its input, at the public boundary).

SimCuda does not see the error-flag reads of ``torch.linalg.solve``/``cholesky``/``inv``
(``aten._linalg_check_errors``, a real sync on a GPU): :class:`_CheckErrors` counts them
in the Levenberg-Marquardt loop, its backward and the MAP loop.

The gpu-marked smoke tests run the layers and solvers on ``"cuda"`` end to end (forward
and backward): any device mix or ``numpy()`` of a device tensor raises.
"""

from __future__ import annotations

import importlib
import math

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from sciml.constraints import HardConstraint, MoEHardConstraint
from sciml.inverse import (
    InverseProblem,
    Laplace,
    LinearConstraint,
    SobolevPrior,
    random_points,
    solve_map,
)
from sciml.operators import DCDMNet
from sciml.pdes import NavierStokes2D
from sciml.pdes.poisson import divergence_rhs, fluid_proxy
from sciml.solvers.linear import cg, dcdm
from sciml.solvers.ot import sinkhorn, sns
from sciml.testing.simcuda import active as simcuda_active

SNS = importlib.import_module("sciml.solvers.ot.sns")
SINKHORN = importlib.import_module("sciml.solvers.ot.sinkhorn")
HARD = importlib.import_module("sciml.constraints.hard")
DCDM = importlib.import_module("sciml.solvers.linear.dcdm")

F64 = torch.float64


class _CheckErrors(TorchDispatchMode):
    """Counts ``aten._linalg_check_errors`` (the host read of a factorisation's flag)."""

    def __init__(self) -> None:
        super().__init__()
        self.n = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._linalg_check_errors.default:
            self.n += 1
        return func(*args, **(kwargs or {}))


def _cuda(*ts: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return tuple(t.cuda() for t in ts)


# ------------------------------------------------------------------------------- problems
def _ot_problem(n: int = 40, seed: int = 7):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 2, generator=g, dtype=F64)
    y = torch.rand(n, 2, generator=g, dtype=F64)
    M = torch.cdist(x, y) ** 2
    a = torch.full((n,), 1 / n, dtype=F64)
    return a, a.clone(), M / M.max()


def _cubic(c, Phi, y):
    u = (Phi @ c.unsqueeze(-1)).squeeze(-1)
    return u + 0.3 * u**3 - y


def _lm_problem():
    """An ill-conditioned cubic least-squares problem: the LM loop runs to max_iter."""
    g = torch.Generator().manual_seed(3)
    Phi = torch.randn(4, 10, 4, generator=g, dtype=F64)
    y = torch.randn(4, 10, generator=g, dtype=F64)
    c0 = torch.randn(4, 4, generator=g, dtype=F64)
    return Phi, y, c0


_LM = {"ridge": 1e-4, "tol": 1e-14, "max_iter": 24}
_N = 32
_PRIOR = SobolevPrior(s=2.0, weight=2e-3, lengths=(1.0,), alpha=25.0)


def _smooth(u: torch.Tensor) -> torch.Tensor:
    k = 2 * math.pi * torch.arange(u.shape[-1] // 2 + 1, dtype=u.dtype, device=u.device)
    v = torch.fft.irfft(torch.fft.rfft(u) * torch.exp(-1e-3 * k**2), n=u.shape[-1])
    return v + 0.5 * v**3


def _inverse_problem(device: str, constraint: bool = False) -> InverseProblem:
    """A fresh problem (its observation caches its indices per device) with data on
    ``device``."""
    g = torch.Generator().manual_seed(0)
    obs = random_points((_N,), 0.25, noise_std=0.05, generator=g)
    truth = _PRIOR.sample(2, (_N,), generator=g)
    data = obs.add_noise(obs(_smooth(truth)), generator=g).to(device)
    con = None
    if constraint:
        con = LinearConstraint(torch.full((_N,), 1.0 / _N, dtype=F64, device=device),
                               torch.zeros(1, dtype=F64, device=device))
    return InverseProblem(_smooth, obs, data, prior=_PRIOR, constraint=con)


def _dcdm_scene():
    s = fluid_proxy(16, d=2)
    torch.manual_seed(0)
    net = DCDMNet(dim=2, channels=4).double()
    return s, net, divergence_rhs(s, 1, seed=0)


_DCDM = {"rtol": 1e-6, "max_iter": 40}


def _vorticity() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randn(1, 6, 16, 16, generator=g, dtype=F64)


@pytest.fixture(scope="module")
def ref():
    """Every CPU reference, computed without SimCuda (module scope: before any test's
    ``simcuda`` fixture)."""
    assert simcuda_active() is None
    a, b, M = _ot_problem()
    out = {"sns": sns(a, b, M, 1e-2, tol=1e-9),
           "sinkhorn": sinkhorn(a, b, M, 5e-2, tol=1e-9),
           "sinkhorn_loop": sinkhorn(a, b, M, 5e-2, tol=0.0, max_iter=60)}
    n = 64
    A = 2 * torch.eye(n, dtype=F64) - torch.diag(torch.ones(n - 1, dtype=F64), 1) \
        - torch.diag(torch.ones(n - 1, dtype=F64), -1)
    out["cg_A"] = A
    out["cg_b"] = torch.randn(3, n, generator=torch.Generator().manual_seed(1), dtype=F64)
    out["cg"] = cg(A, out["cg_b"], rtol=1e-10)
    Phi, y, c0 = _lm_problem()
    out["lm"] = HardConstraint(_cubic, **_LM)(Phi, y, c0=c0)
    out["moe"] = MoEHardConstraint(_cubic, 2, **_LM)(
        Phi.reshape(2, 2, 10, 4), y.reshape(2, 2, 10), c0=c0.reshape(2, 2, 4))
    x0 = torch.zeros(2, _N, dtype=F64)
    out["map"] = solve_map(_inverse_problem("cpu"), x0)
    out["map_con"] = solve_map(_inverse_problem("cpu", True), x0)
    out["adam"] = solve_map(_inverse_problem("cpu"), x0, method="adam", max_iter=30, lr=0.05)
    out["laplace"] = Laplace()(_inverse_problem("cpu"), out["map"].estimate)
    s, net, rhs = _dcdm_scene()
    out["dcdm"] = dcdm(s.operator(), rhs, net=net, system=s, **_DCDM)
    out["ns"] = NavierStokes2D(viscosity=1e-3).residual(_vorticity(), 0.1)
    return out


# -------------------------------------------------------------------------- optimal transport
def test_sns_inner_cg_and_newton_steps(simcuda, monkeypatch, ref) -> None:
    pcg_calls, newton_calls = [], []
    pcg, newton = SNS._pcg, SNS._newton

    def counted_pcg(*args, **kwargs):
        with simcuda.count() as c:
            x, its = pcg(*args, **kwargs)
        pcg_calls.append((c.syncs, c.h2d, its))
        return x, its

    def counted_newton(*args, stats, **kwargs):
        with simcuda.count() as c:
            out = newton(*args, stats=stats, **kwargs)
        newton_calls.append((c.syncs, c.h2d))
        return out

    monkeypatch.setattr(SNS, "_pcg", counted_pcg)
    monkeypatch.setattr(SNS, "_newton", counted_newton)
    a, b, M = _cuda(*_ot_problem())
    res = sns(a, b, M, 1e-2, tol=1e-9)
    cpu = ref["sns"]
    st = res.stats
    assert res.plan.device.type == "cuda" and res.converged
    for key in ("newton_iterations", "cg_iterations", "sinkhorn_iterations"):
        assert st[key] == cpu.stats[key], key
    torch.testing.assert_close(res.plan.cpu(), cpu.plan, rtol=1e-9, atol=1e-14)
    assert st["cg_iterations"] == sum(its for _, _, its in pcg_calls) > 3 * len(pcg_calls)
    # inner CG: a look every 8 iterations and one at the end, none per iteration
    for syncs, h2d, its in pcg_calls:
        assert syncs <= 1 + its // SNS._PCG_CHECK and h2d == 0, (syncs, its)
    per_cg = sum(s for s, _, _ in pcg_calls) / st["cg_iterations"]
    assert per_cg <= 1 / SNS._PCG_CHECK + len(pcg_calls) / st["cg_iterations"]
    # Newton step besides its CG: the sparsity pattern and one read per line-search trial
    # (trials: 1 + log2(1 / t)), and one read of the error on entering the Newton phase
    steps = st["line_search_steps"]
    assert len(steps) == st["newton_iterations"]  # no stalled step in this problem
    trials = sum(1 + round(math.log2(1 / t)) for t in steps)
    outer = sum(s for s, _ in newton_calls) - sum(s for s, _, _ in pcg_calls)
    assert outer <= len(newton_calls) + len(steps) + trials, (outer, len(steps), trials)
    assert sum(h for _, h in newton_calls) == 0


def test_sinkhorn_per_iteration_no_worse(simcuda, monkeypatch, ref) -> None:
    loops = []
    potentials = SINKHORN.sinkhorn_potentials

    def counted(*args, **kwargs):
        with simcuda.count() as c:
            out = potentials(*args, **kwargs)
        loops.append((c.syncs, c.h2d, out[2]))
        return out

    monkeypatch.setattr(SINKHORN, "sinkhorn_potentials", counted)
    a, b, M = _cuda(*_ot_problem())
    for kw, cpu in (({"tol": 1e-9}, ref["sinkhorn"]),
                    ({"tol": 0.0, "max_iter": 60}, ref["sinkhorn_loop"])):
        res = sinkhorn(a, b, M, 5e-2, **kw)
        syncs, h2d, it = loops[-1]
        assert it == res.stats["iterations"] == cpu.stats["iterations"]
        # two reads per check (every 10 iterations), one more to confirm convergence
        assert syncs <= 0.2 * it + 2 and h2d == 0, (syncs, it)
        torch.testing.assert_close(res.plan.cpu(), cpu.plan, rtol=1e-9, atol=1e-14)


def test_cg_per_iteration_no_worse(simcuda, ref) -> None:
    A, b = _cuda(ref["cg_A"], ref["cg_b"])
    with simcuda.count() as c:
        sol = cg(A, b, rtol=1e-10)
    it = sol.stats["iterations"]
    assert it == ref["cg"].stats["iterations"] > 16
    # a look every 8 iterations (at most 4 reads each) and the checks at entry and exit
    assert c.syncs <= 4 * math.ceil(it / 8) + 6 and c.h2d == 0, c.report()
    torch.testing.assert_close(sol.x.cpu(), ref["cg"].x, rtol=1e-9, atol=1e-12)


# ---------------------------------------------------------------------- hard constraints
def test_levenberg_marquardt_one_sync_per_iteration(simcuda, ref) -> None:
    Phi, y, c0 = _cuda(*_lm_problem())
    P = Phi.clone().requires_grad_()
    checks = _CheckErrors()
    with simcuda.count() as c, checks:
        res = HardConstraint(_cubic, **_LM)(P, y, c0=c0)
    cpu = ref["lm"]
    iters = int(res.iterations.max())
    assert iters >= 20 and torch.equal(res.iterations.cpu(), cpu.iterations)
    assert c.syncs <= iters and c.h2d == 0, c.report()
    assert checks.n == 0  # no torch.linalg.solve error-flag read either
    assert res.status is cpu.status and res.stats["member_status"] == cpu.stats["member_status"]
    torch.testing.assert_close(res.coeffs.detach().cpu(), cpu.coeffs.detach(), rtol=1e-10,
                               atol=1e-12)
    with simcuda.count() as c, checks:
        res.coeffs.square().sum().backward()
    assert c.syncs == 0 and c.h2d == 0 and checks.n == 0, c.report()
    assert P.grad is not None and P.grad.device.type == "cuda"


def test_moe_one_sync_per_iteration(simcuda, ref) -> None:
    Phi, y, c0 = _cuda(*_lm_problem())
    with simcuda.count() as c:
        res = MoEHardConstraint(_cubic, 2, **_LM)(
            Phi.reshape(2, 2, 10, 4), y.reshape(2, 2, 10), c0=c0.reshape(2, 2, 4))
    cpu = ref["moe"]
    iters = int(res.iterations.max())
    assert iters >= 20 and torch.equal(res.iterations.cpu(), cpu.iterations)
    assert c.syncs <= iters and c.h2d == 0, c.report()
    torch.testing.assert_close(res.coeffs.detach().cpu(), cpu.coeffs.detach(), rtol=1e-10,
                               atol=1e-12)


# ----------------------------------------------------------------------------- inverse
@pytest.mark.parametrize("case", ["map", "map_con", "adam"])
def test_map_syncs_per_iteration(simcuda, ref, case) -> None:
    problem = _inverse_problem("cuda", constraint=case == "map_con")
    x0 = torch.zeros(2, _N, dtype=F64, device="cuda")
    kw = {"method": "adam", "max_iter": 30, "lr": 0.05} if case == "adam" else {}
    checks = _CheckErrors()
    with simcuda.count() as c, checks:
        res = solve_map(problem, x0, **kw)
    cpu = ref[case]
    it = res.stats["iterations"]
    assert it == cpu.stats["iterations"] and res.stats["codes"] == cpu.stats["codes"]
    assert res.stats["evaluations"] == cpu.stats["evaluations"]
    # one read per L-BFGS trial step or Adam iteration (each an evaluation of J and its
    # gradient), plus the checks at the entry and the statuses at the exit
    assert c.syncs <= res.stats["evaluations"] + 4, c.report()
    if case == "map":
        # the unit step is mostly accepted: at most 2 per iteration over the whole run
        # (the constrained problem backtracks ~1 trial per iteration, mostly in its first
        # iterations, and sits at 2.0)
        assert c.syncs <= 2 * it, c.report()
    assert c.h2d <= 1, c.report()  # the observation's indices, once per device
    assert checks.n == 0
    torch.testing.assert_close(res.estimate.cpu(), cpu.estimate, rtol=1e-9, atol=1e-12)


def test_laplace_copies_nothing_per_lanczos_step(simcuda, ref) -> None:
    problem = _inverse_problem("cuda")
    x = ref["map"].estimate.cuda()
    with simcuda.count() as c:
        post = Laplace()(problem, x)
    steps = post.stats["lanczos_steps"]
    assert c.h2d <= 1, c.report()  # restart vectors come through pinned memory
    assert c.syncs <= steps + 4, c.report()  # one look per Lanczos step (restarts)
    assert post.stats["codes"] == ref["laplace"].stats["codes"]
    torch.testing.assert_close(post.std.cpu(), ref["laplace"].std, rtol=1e-8, atol=1e-12)


# ------------------------------------------------------------------------ DCDM, Navier-Stokes
def test_dcdm_network_calls_copy_and_sync_nothing(simcuda, monkeypatch, ref) -> None:
    calls = []
    call = DCDM.NetworkPreconditioner.__call__

    def counted(self, r):
        with simcuda.count() as c:
            out = call(self, r)
        calls.append((c.syncs, c.h2d))
        return out

    monkeypatch.setattr(DCDM.NetworkPreconditioner, "__call__", counted)
    s, net, rhs = _dcdm_scene()
    net = net.cuda()
    op = s.operator(device="cuda")
    b = rhs.cuda()
    with simcuda.count() as c:
        sol = dcdm(op, b, net=net, system=s, **_DCDM)
    cpu = ref["dcdm"]
    it = sol.stats["iterations"]
    assert it == cpu.stats["iterations"] and len(calls) == sol.stats["network_applications"]
    assert sum(s_ for s_, _ in calls) == 0
    assert sum(h for _, h in calls) <= 1  # the fluid mask, once per solve
    assert c.syncs <= 0.5 * it + 4, c.report()  # the Krylov loop's looks (every 8)
    torch.testing.assert_close(sol.x.cpu(), cpu.x, rtol=1e-8, atol=1e-12)


def test_navier_stokes_residual_copies_nothing(simcuda, ref) -> None:
    ns = NavierStokes2D(viscosity=1e-3)
    w = _vorticity().cuda()
    ns.residual(w, 0.1)  # builds the operators and the time stencil on the device
    with simcuda.count() as c:
        for _ in range(3):
            r = ns.residual(w, 0.1)
    assert c.h2d == 0, c.report()
    assert c.syncs <= 3, c.report()  # the finiteness check of the input, once per call
    torch.testing.assert_close(r.cpu(), ref["ns"], rtol=1e-10, atol=1e-12)


# ------------------------------------------------------------- gpu smoke: forward + backward
@pytest.mark.gpu
def test_gpu_hard_constraint_and_moe_forward_backward() -> None:
    Phi, y, c0 = _lm_problem()
    Phi, y, c0 = Phi.to("cuda"), y.to("cuda"), c0.to("cuda")
    P = Phi.clone().requires_grad_()
    res = HardConstraint(_cubic, ridge=1e-4, max_iter=10)(P, y, c0=c0)
    res.coeffs.square().sum().backward()
    assert res.coeffs.device.type == "cuda" and P.grad.device.type == "cuda"
    assert bool(torch.isfinite(P.grad).all())
    Q = Phi.reshape(2, 2, 10, 4).clone().requires_grad_()
    moe = MoEHardConstraint(_cubic, 2, ridge=1e-4, max_iter=10)(
        Q, y.reshape(2, 2, 10), c0=c0.reshape(2, 2, 4))
    moe.coeffs.sum().backward()
    assert Q.grad.device.type == "cuda" and bool(torch.isfinite(Q.grad).all())


@pytest.mark.gpu
def test_gpu_map_and_laplace() -> None:
    for constraint in (False, True):
        problem = _inverse_problem("cuda", constraint)
        res = solve_map(problem, torch.zeros(2, _N, dtype=F64, device="cuda"), max_iter=20,
                        uncertainty=Laplace(method="lowrank" if not constraint else "dense"))
        assert res.estimate.device.type == "cuda" and res.std.device.type == "cuda"
        assert bool(torch.isfinite(res.std).all())


@pytest.mark.gpu
def test_gpu_dcdm_solve() -> None:
    s, net, rhs = _dcdm_scene()
    sol = dcdm(s.operator(device="cuda"), rhs.to("cuda"), net=net.to("cuda"), system=s,
               rtol=1e-4, max_iter=30)
    assert sol.x.device.type == "cuda" and bool(torch.isfinite(sol.x).all())
