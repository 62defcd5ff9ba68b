"""HardConstraint: batched Levenberg-Marquardt with an implicit-function backward.

References: the closed-form ridge least-squares solution (float64 dense solve) and its
autograd gradient, finite differences (gradcheck), and the optimality condition.
"""

from __future__ import annotations

import pytest
import torch

from sciml.constraints import HardConstraintError
from sciml.constraints.hard import HardConstraint, LMStatus

_ORDER = [LMStatus.CONVERGED, LMStatus.MAX_ITER, LMStatus.STALLED, LMStatus.BREAKDOWN]


def _linear(c, Phi, y):
    return (Phi @ c.unsqueeze(-1)).squeeze(-1) - y


def _cubic(c, Phi, y):
    u = (Phi @ c.unsqueeze(-1)).squeeze(-1)
    return u + 0.3 * u**3 - y


def _data(B=3, R=12, N=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    Phi = torch.randn(B, R, N, generator=g, dtype=torch.float64)
    y = torch.randn(B, R, generator=g, dtype=torch.float64)
    return Phi, y


def test_linear_problem_matches_the_closed_form_and_its_gradient() -> None:
    Phi, y = _data()
    ridge = 1e-3
    P1, y1 = Phi.clone().requires_grad_(), y.clone().requires_grad_()
    res = HardConstraint(_linear, ridge=ridge)(P1, y1, c0=torch.zeros(3, 4))
    assert res.status is LMStatus.CONVERGED
    P2, y2 = Phi.clone().requires_grad_(), y.clone().requires_grad_()
    A = P2.transpose(-1, -2) @ P2 + ridge * torch.eye(4, dtype=torch.float64)
    ref = torch.linalg.solve(A, (P2.transpose(-1, -2) @ y2.unsqueeze(-1))).squeeze(-1)
    torch.testing.assert_close(res.coeffs, ref, rtol=1e-10, atol=1e-12)
    w = torch.randn(3, 4, dtype=torch.float64)
    (res.coeffs * w).sum().backward()
    (ref * w).sum().backward()
    torch.testing.assert_close(P1.grad, P2.grad, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(y1.grad, y2.grad, rtol=1e-8, atol=1e-10)


def test_nonlinear_solution_is_stationary_and_gradchecks() -> None:
    Phi, _ = _data(B=1, R=6, N=3, seed=1)
    c_true = torch.tensor([[0.5, -0.2, 0.1]], dtype=torch.float64)
    y = _cubic(c_true, Phi, torch.zeros(1, 6, dtype=torch.float64))  # consistent data
    layer = HardConstraint(_cubic, ridge=1e-6, tol=1e-13, max_iter=100)
    res = layer(Phi, y, c0=torch.zeros(1, 3))
    assert res.status is LMStatus.CONVERGED
    assert res.residual_norm.max() < 1e-5  # only the ridge keeps it from 0
    # the defining criterion: grad f = J^T r + ridge c = 0 at the solution
    c = res.coeffs.detach().requires_grad_()
    f = 0.5 * _cubic(c, Phi, y).pow(2).sum() + 0.5e-6 * c.pow(2).sum()
    (g,) = torch.autograd.grad(f, c)
    assert g.abs().max() < 1e-12

    def fn(P, yy):
        return layer(P, yy, c0=torch.zeros(1, 3)).coeffs

    assert torch.autograd.gradcheck(fn, (Phi.clone().requires_grad_(),
                                         y.clone().requires_grad_()), atol=1e-6)


def test_gradient_with_a_nonzero_residual_uses_the_exact_hessian() -> None:
    """Away from zero residual Gauss-Newton's Hessian is wrong; the implicit gradient is not
    (central differences, eps 1e-4: O(eps^2) agreement)."""
    Phi, y = _data(B=2, R=8, N=3, seed=1)
    layer = HardConstraint(_cubic, ridge=1e-4, tol=1e-14, max_iter=300)
    P = Phi.clone().requires_grad_()
    res = layer(P, y, c0=torch.zeros(2, 3))
    assert res.residual_norm.min() > 0.5
    res.coeffs[0, 0].backward()
    eps = 1e-4
    for k in (0, 7, 17):
        d = torch.zeros_like(Phi)
        d.view(2, -1)[0, k] = eps
        num = (layer(Phi + d, y, c0=torch.zeros(2, 3)).coeffs[0, 0]
               - layer(Phi - d, y, c0=torch.zeros(2, 3)).coeffs[0, 0]) / (2 * eps)
        assert abs(float(num) - float(P.grad.view(2, -1)[0, k])) < 2e-5


def test_batch_samples_are_independent() -> None:
    Phi, y = _data(B=4, seed=2)
    layer = HardConstraint(_cubic, ridge=1e-6, tol=1e-12)
    both = layer(Phi, y, c0=torch.zeros(4, 4)).coeffs
    for b in range(4):
        one = layer(Phi[b:b + 1], y[b:b + 1], c0=torch.zeros(1, 4)).coeffs
        torch.testing.assert_close(both[b:b + 1], one, rtol=1e-9, atol=1e-11)


def test_stopped_samples_leave_the_batch() -> None:
    # sample 0 sits at its solution from the start, sample 1 needs many iterations: once
    # sample 0 stops, the residual is evaluated on sample 1 alone, with the same result
    Phi, y = _data(B=2, seed=3)
    y = 3 * y
    sizes: list[int] = []

    def counted(c, Phi, y):
        sizes.append(c.shape[0])
        return _cubic(c, Phi, y)

    layer = HardConstraint(counted, ridge=0.0, tol=1e-12)
    c_exact = torch.tensor([0.3, -0.2, 0.1, 0.4], dtype=torch.float64)
    u = (Phi[0] @ c_exact)
    y[0] = u + 0.3 * u**3  # sample 0: zero residual at c_exact
    c0 = torch.stack([c_exact, torch.zeros(4, dtype=torch.float64)])
    res = layer(Phi, y, c0=c0)
    assert res.iterations[0] == 0 and res.iterations[1] >= 4
    # fails on the LM without compaction (every call then sees batch 2; checked against
    # the commit before it): the residual must run on sample 1 alone once sample 0 stops
    assert 1 in sizes and sizes[0] == 2
    one = layer(Phi[1:], y[1:], c0=c0[1:]).coeffs
    torch.testing.assert_close(res.coeffs[1:], one, rtol=0, atol=1e-12)
    torch.testing.assert_close(res.coeffs[0], c_exact, rtol=0, atol=1e-12)


def test_max_iter_is_reported_not_hidden() -> None:
    Phi, y = _data(seed=3)
    res = HardConstraint(_cubic, max_iter=1, tol=1e-14)(Phi, 5 * y, c0=torch.zeros(3, 4))
    assert res.status is LMStatus.MAX_ITER
    assert "max_iter" in res.status.value


def test_result_skeleton_stats_converged_and_throw() -> None:
    Phi, y = _data(seed=3)
    c0 = torch.zeros(3, 4)
    layer = HardConstraint(_cubic)
    bad = layer(Phi, 5 * y, c0=c0, max_iter=1)
    good = HardConstraint(_linear)(Phi, y, c0=c0, throw=True)  # converges: no error
    for res in (bad, good):
        assert res.converged == (res.status is LMStatus.CONVERGED)
        for name in ("iterations", "grad_norm", "residual_norm"):
            assert torch.equal(res.stats[name], getattr(res, name))
        assert len(res.stats["member_status"]) == 3
        worst = max(_ORDER.index(s) for s in res.stats["member_status"])
        assert _ORDER[worst] is res.status
    assert good.converged and not bad.converged
    assert all(s is LMStatus.CONVERGED for s in good.stats["member_status"])
    n_bad = sum(s is not LMStatus.CONVERGED for s in bad.stats["member_status"])
    assert n_bad >= 1
    with pytest.raises(HardConstraintError, match=f"MAX_ITER: .*max_iter.*{n_bad} of 3"):
        layer(Phi, 5 * y, c0=c0, max_iter=1, throw=True)
    assert issubclass(HardConstraintError, RuntimeError)


def test_bad_input() -> None:
    Phi, y = _data()
    with pytest.raises(ValueError, match="batch size"):
        HardConstraint(_linear)(Phi, y[:2], c0=torch.zeros(3, 4))
    with pytest.raises(ValueError, match="ridge"):
        HardConstraint(_linear, ridge=-1.0)
    with pytest.raises(TypeError, match="callable"):
        HardConstraint(3)  # type: ignore[arg-type]


def test_non_finite_data_is_refused_and_a_non_finite_residual_is_a_breakdown() -> None:
    """An Inf in the data used to come back CONVERGED with residual_norm = inf."""
    import sciml

    Phi, y = _data()
    y[1, 2] = float("inf")
    layer = HardConstraint(_linear)
    with pytest.raises(ValueError, match=r"data\[1\] contains 1 non-finite"):
        layer(Phi, y, c0=torch.zeros(3, 4))
    with sciml.checks(finite=False):  # past the boundary check, the solve says so itself
        res = layer(Phi, y, c0=torch.zeros(3, 4))
    assert res.status is LMStatus.BREAKDOWN and not torch.isfinite(res.residual_norm[1])

    def blows_up(c, Phi_, y_):  # finite data, a residual that overflows for these c
        return torch.exp(1e3 * _linear(c, Phi_, y_))

    res = HardConstraint(blows_up)(*_data(), c0=torch.ones(3, 4))
    assert res.status is LMStatus.BREAKDOWN


def test_a_residual_that_mixes_the_batch_is_refused() -> None:
    """Used to come back CONVERGED with coefficients wrong by ~0.8."""
    Phi, y = _data()

    def first_only(c, Phi_, y_):  # every sample uses c[0]
        return (Phi_ @ c[0]) - y_

    def centred(c, Phi_, y_):  # a mean over the batch
        return _linear(c - c.mean(0), Phi_, y_)

    for bad in (first_only, centred):
        with pytest.raises(ValueError, match="mixes the samples"):
            HardConstraint(bad)(Phi, y, c0=torch.zeros(3, 4))
    with pytest.raises(ValueError, match=r"must return \(B, R\)"):
        HardConstraint(lambda c, P, yy: _linear(c, P, yy).sum(0))(Phi, y, c0=torch.zeros(3, 4))
    # a single sample cannot mix, and an independent residual passes the check
    assert HardConstraint(first_only)(Phi[:1], y[:1], c0=torch.zeros(1, 4)).status is \
        LMStatus.CONVERGED


@pytest.mark.parametrize("name", ["ridge", "tol"])
@pytest.mark.parametrize("value", [float("inf"), float("nan"), -1.0, True])
def test_non_finite_settings_are_refused(name, value) -> None:
    with pytest.raises(ValueError, match=f"{name} must be a finite number"):
        HardConstraint(_linear, **{name: value})


def test_the_docstring_shows_c0_as_required() -> None:
    """The docstring used to show ``c0=None`` though c0 has no default."""
    import inspect

    assert inspect.signature(HardConstraint.__call__).parameters["c0"].default is \
        inspect.Parameter.empty
    assert "c0=None" not in HardConstraint.__doc__
    with pytest.raises(TypeError, match="c0"):
        HardConstraint(_linear)(*_data())
