"""The ProbConserv pipeline: models, residual penalty, constraints, metrics, CLI, demo."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from sciml.operators import ConditionalNP, DeepEnsemble, gaussian_nll
from sciml.pdes import make_problem
from sciml_recipes.cli import main
from sciml_recipes.gpme.pipeline import (
    constraint,
    evaluate_case,
    make_tasks,
    pde_residual,
    shock_position,
    train_ensemble,
)


def test_conditional_np_is_a_set_function_and_every_parameter_learns() -> None:
    torch.manual_seed(0)
    net = ConditionalNP(width=16, depth=2, code=8)
    ctx = torch.randn(3, 7, 3)
    q = torch.rand(3, 5, 2)
    mean, var = net(ctx, q)
    assert mean.shape == var.shape == (3, 5) and (var > 0).all()
    perm = torch.randperm(7)
    m2, v2 = net(ctx[:, perm], q)
    torch.testing.assert_close(m2, mean)
    torch.testing.assert_close(v2, var)
    (mean.sum() + var.sum()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())
    with pytest.raises(ValueError, match="rows \\(t, x, u\\)"):
        net(torch.randn(3, 7, 2), q)
    with pytest.raises(ValueError, match="Nc = 0"):
        net(torch.randn(3, 0, 3), q)
    with pytest.raises(ValueError, match="query"):
        net(ctx, torch.rand(2, 5, 2))


class _Fixed(nn.Module):
    def __init__(self, m: float, v: float) -> None:
        super().__init__()
        self.m, self.v = m, v

    def forward(self, x: torch.Tensor):
        return torch.full_like(x, self.m), torch.full_like(x, self.v)


def test_deep_ensemble_moments_match_the_mixture() -> None:
    ms, vs = [0.0, 1.0, 3.0], [0.5, 0.1, 2.0]
    ens = DeepEnsemble([_Fixed(m, v) for m, v in zip(ms, vs)])
    mean, var = ens(torch.zeros(4))
    # Monte Carlo of the equal mixture (independent of the closed form)
    g = np.random.default_rng(0)
    k = g.integers(0, 3, 400_000)
    s = g.normal(np.array(ms)[k], np.sqrt(np.array(vs)[k]))
    assert float(mean[0]) == pytest.approx(s.mean(), abs=0.01)
    assert float(var[0]) == pytest.approx(s.var(), rel=0.01)
    with pytest.raises(ValueError, match="non-empty"):
        DeepEnsemble([])


def test_gaussian_nll_matches_torch() -> None:
    g = torch.Generator().manual_seed(0)
    m, y = torch.randn(10, generator=g), torch.randn(10, generator=g)
    v = torch.rand(10, generator=g) + 0.1
    ref = nn.functional.gaussian_nll_loss(m, y, v, full=True)
    torch.testing.assert_close(gaussian_nll(m, v, y), ref)


class _Exact(nn.Module):
    """A 'model' whose mean is an exact solution, to check the residual's chain rule."""

    def __init__(self, problem, L: float) -> None:
        super().__init__()
        self.problem, self.L = problem, L

    def decode(self, r, q):
        t, xs = q[..., 0], q[..., 1] * self.L
        if self.problem.name == "diffusion":
            u = torch.exp(-self.problem.param * t) * torch.sin(xs)
        else:  # PME, smooth where x < t
            m = self.problem.param
            u = (m * (t - xs)).clamp_min(1e-30) ** (1 / m)
        return u, torch.ones_like(u)


@pytest.mark.parametrize(("name", "param"), [("diffusion", 3.0), ("pme", 2.0)])
def test_pde_residual_vanishes_on_exact_solutions(name: str, param: float) -> None:
    prob = make_problem(name, param)
    a, b = prob.domain
    g = torch.Generator().manual_seed(0)
    t = 0.2 + 0.3 * torch.rand(2, 16, generator=g, dtype=torch.float64)
    x = torch.rand(2, 16, generator=g, dtype=torch.float64)
    if name == "pme":
        x = 0.9 * x * t  # behind the front x = t
    q = torch.stack([t, (x - a) / (b - a)], -1)
    r = pde_residual(name, _Exact(prob, b - a), None, q,
                     torch.full((2,), param, dtype=torch.float64))
    assert r.abs().max() < 1e-9
    # a wrong solution is caught: k = 1 decay under k = 3 leaves r = (3 - 1) u
    if name == "diffusion":
        bad = _Exact(make_problem("diffusion", 1.0), b - a)
        r = pde_residual(name, bad, None, q, torch.full((2,), param, dtype=torch.float64))
        expect = (param - 1.0) * torch.exp(-t) * torch.sin(x)
        torch.testing.assert_close(r, expect, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(("name", "param"), [("diffusion", 5.0), ("pme", 3.0),
                                             ("stefan", 0.5)])
def test_constraint_rhs_is_the_closed_form_mass(name: str, param: float) -> None:
    prob = make_problem(name, param)
    x = prob.grid(201)
    G, b = constraint(prob, x, 0.5)
    assert float(b) == pytest.approx(float(prob.mass(0.5)), rel=1e-10, abs=1e-12)
    # the trapezoid mass of the exact profile is close (quadrature error only)
    tol = 1e-12 if name == "diffusion" else 5e-3
    assert abs(float(G @ prob.solution(0.5, x)) - float(b)) < tol


def test_shock_position_interpolates_the_crossing() -> None:
    x = torch.linspace(0, 1, 11, dtype=torch.float64)
    u = torch.where(x < 0.45, torch.ones_like(x), torch.zeros_like(x))
    u[4] = 0.5  # at x = 0.4; u = 0 from x = 0.5 on
    pos = shock_position(x, u.unsqueeze(0), 0.25)
    assert float(pos) == pytest.approx(0.45, abs=1e-12)  # between x=0.4 (0.5) and 0.5 (0)
    assert float(shock_position(x, torch.ones(1, 11, dtype=torch.float64), 0.5)) == 1.0


def test_make_tasks_shapes_ranges_and_seeding() -> None:
    ds = make_tasks("pme", 6, n_context=10, n_target=7, seed=3)
    ctx, q, y, p = ds.tensors
    assert ctx.shape == (6, 10, 3) and q.shape == (6, 7, 2) and y.shape == (6, 7)
    assert ((p >= 1) & (p <= 6)).all()
    assert (q[..., 0] > 0).all() and (q[..., 0] <= 0.5).all()
    assert ((q[..., 1] >= 0) & (q[..., 1] <= 1)).all()
    torch.testing.assert_close(make_tasks("pme", 6, n_context=10, n_target=7, seed=3).tensors[0],
                               ctx)
    with pytest.raises(ValueError, match="name"):
        make_tasks("heat", 2)


def test_train_update_and_resume(tmp_path) -> None:
    kw = dict(members=2, steps=30, tasks=64, batch_size=16, width=16, progress=False)
    base = train_ensemble("stefan", out_dir=tmp_path / "base", **kw)
    soft = train_ensemble("stefan", soft=1e-3, out_dir=tmp_path / "soft", **kw)
    assert (tmp_path / "base" / "member1" / "model.pt").exists()
    again = train_ensemble("stefan", out_dir=tmp_path / "base", **kw)  # reloads, no training
    for a, b in zip(base.parameters(), again.parameters()):
        assert torch.equal(a, b)
    res = evaluate_case("stefan", 0.5, base, soft, n_eval=3)
    assert set(res.metrics) == {"base", "soft", "hardc", "probconserv", "probconserv-convex"}
    for m in ("hardc", "probconserv", "probconserv-convex"):
        tol = 1e-7 if m.endswith("convex") else 1e-12  # the convex solve is iterative
        assert res.metrics[m]["ce"] < tol, m
    u = res.profiles["probconserv-convex"][0]
    assert (u > -1e-7).all() and (torch.diff(u, dim=-1) < 1e-7).all()
    assert all(math.isfinite(v) for ms in res.metrics.values() for v in ms.values())
    with pytest.raises(ValueError, match="soft"):
        train_ensemble("stefan", soft=-1.0, **kw)


def test_cli_train_probconserv_writes_results(tmp_path, capsys) -> None:
    out = tmp_path / "pc"
    assert main(["train", "probconserv", "--out", str(out), "--problems", "pme",
                 "--members", "1", "--steps", "10", "--tasks", "16", "--n-eval", "2",
                 "--no-progress"]) == 0
    data = json.loads((out / "probconserv.json").read_text())
    cases = {r["case"] for r in data["rows"]}
    assert {"pme-m1", "pme-m3", "pme-m6", "update-1000x201"} <= cases
    assert (out / "probconserv_profiles.png").stat().st_size > 0
    assert "probconserv" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:  # refused by argparse, naming the option
        main(["train", "probconserv", "--out", str(out), "--members", "0"])
    assert e.value.code == 2
    assert "--members" in capsys.readouterr().err


def test_demo_probconserv_quick(tmp_path) -> None:
    assert main(["demo", "probconserv", "--quick", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "probconserv_stefan.png").exists()
