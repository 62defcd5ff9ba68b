"""Issue 21, item 3: numpy arrays and Python scalars wherever a tensor is, across the library
(sciml.spectral, sciml.operators, sciml.constraints, sciml.inverse, sciml.pdes).

Every case is one public call on tensors; the tests run it again with each tensor replaced
by ``tensor.numpy()`` and require the same answer (the tensor call is the reference), the
same dtypes (float64 stays float64, float32 stays float32), and an error naming the first
argument when that argument is garbage. To cover a new entry point, add a :class:`Case`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

from sciml import constraints, inverse, operators, pdes, spectral
from sciml._validation import as_tensor, as_tensors


def _rand(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype)


# ------------------------------------------------------------------------------- the cases


@dataclasses.dataclass(frozen=True)
class Case:
    """``fn(*args, **kwargs)`` with ``make(dtype) -> (args, kwargs)``; ``first`` names the
    first tensor argument of the signature (the one a bad-input error must name)."""

    id: str
    fn: Callable[..., Any]
    make: Callable[[torch.dtype], tuple[tuple, dict]]
    first: str
    float32: bool = True  # the call also runs in float32


def _problem(dtype: torch.dtype = torch.float64) -> inverse.InverseProblem:
    """A small linear inverse problem: denoise an 8 x 8 periodic field under an H^2 prior."""
    truth = _rand(1, 8, 8, seed=3, dtype=dtype)
    obs = inverse.FullObservation((8, 8), noise_std=0.1)
    data = truth + 0.1 * _rand(1, 8, 8, seed=4, dtype=dtype)
    return inverse.InverseProblem(lambda x: x, obs, data,
                                  prior=inverse.SobolevPrior(s=2.0, lengths=(1.0, 1.0)))


def _lin_residual(c: torch.Tensor, Phi: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (Phi @ c.unsqueeze(-1)).squeeze(-1) - y


def _poisson_op(x: object) -> pdes.PoissonOperator:
    """The stencil of a 6 x 6 box in the precision of ``x`` (an operator has one dtype)."""
    dt = x.dtype if isinstance(x, torch.Tensor) else (
        torch.float32 if getattr(x, "dtype", None) == np.float32 else torch.float64)
    return pdes.box_scene(6, 2).operator(dtype=dt)


def _combined(dtype: torch.dtype):
    params = pdes.sample_parameters("E1", 2, generator=torch.Generator().manual_seed(0))
    params = params.to(dtype=dtype)
    return params, pdes.initial_condition(params, 40)


_G1 = torch.full((1, 6), 1.0 / 6, dtype=torch.float64)

CASES = [
    # sciml.spectral
    Case("spectral.gradient", spectral.gradient, lambda dt: ((_rand(2, 16, 16, dtype=dt),), {}),
         "u"),
    Case("spectral.laplacian", spectral.laplacian,
         lambda dt: ((_rand(2, 16, 16, dtype=dt), (1.0, 2.0)), {}), "u"),
    Case("spectral.inverse_laplacian", spectral.inverse_laplacian,
         lambda dt: ((_rand(16, 16, dtype=dt),), {}), "u"),
    Case("spectral.dealias", spectral.dealias, lambda dt: ((_rand(3, 12, 12, dtype=dt),), {}),
         "u"),
    Case("spectral.sobolev_norm", spectral.sobolev_norm,
         lambda dt: ((_rand(2, 16, 16, dtype=dt), -1.0), {"alpha": 0.5}), "u"),
    Case("spectral.rfftn_truncated", spectral.rfftn_truncated,
         lambda dt: ((_rand(2, 3, 16, 16, dtype=dt), (4, 4)), {}), "x"),
    Case("spectral.irfftn_truncated", spectral.irfftn_truncated,
         lambda dt: ((spectral.rfftn_truncated(_rand(2, 16, 16, dtype=dt), (4, 4)), (20, 20)),
                     {}), "c"),
    Case("spectral.fourier_resample", spectral.fourier_resample,
         lambda dt: ((_rand(2, 16, 16, dtype=dt), (24, 10)), {}), "x"),
    Case("spectral.cell_average_resample", spectral.cell_average_resample,
         lambda dt: ((_rand(3, 16, dtype=dt), 40), {}), "v"),
    Case("spectral.shell_spectrum", spectral.shell_spectrum,
         lambda dt: ((_rand(2, 16, 16, dtype=dt),), {}), "u"),
    Case("spectral.error_spectrum", spectral.error_spectrum,
         lambda dt: ((_rand(2, 16, 16, dtype=dt), _rand(2, 16, 16, seed=1, dtype=dt)), {}),
         "pred"),
    # sciml.operators (functions and the loss modules' forward)
    Case("operators.relative_lp", operators.relative_lp,
         lambda dt: ((_rand(4, 10, dtype=dt), _rand(4, 10, seed=1, dtype=dt), 1.5), {}), "pred"),
    Case("operators.relative_sobolev", operators.relative_sobolev,
         lambda dt: ((_rand(2, 3, 16, 16, dtype=dt), _rand(2, 3, 16, 16, seed=1, dtype=dt),
                      1.0), {}), "pred"),
    Case("operators.gaussian_nll", operators.gaussian_nll,
         lambda dt: ((_rand(5, dtype=dt), _rand(5, seed=1, dtype=dt).exp(),
                      _rand(5, seed=2, dtype=dt)), {}), "mean"),
    Case("operators.RelativeLpLoss", operators.RelativeLpLoss(),
         lambda dt: ((_rand(4, 10, dtype=dt), _rand(4, 10, seed=1, dtype=dt)), {}), "pred"),
    Case("operators.SobolevLoss", operators.SobolevLoss(s=-1.0),
         lambda dt: ((_rand(2, 3, 16, 16, dtype=dt), _rand(2, 3, 16, 16, seed=1, dtype=dt)),
                     {}), "pred"),
    # sciml.constraints
    Case("constraints.probconserv", constraints.probconserv,
         lambda dt: ((_rand(2, 6, dtype=dt), _rand(2, 6, seed=1, dtype=dt).exp(),
                      _G1.to(dt), torch.tensor([0.3], dtype=dt)), {"noise": 0.01}), "mean"),
    Case("constraints.project_mean", constraints.project_mean,
         lambda dt: ((_rand(2, 6, dtype=dt), _G1.to(dt), torch.tensor([0.3], dtype=dt)), {}),
         "mean"),
    Case("constraints.trapezoid_weights", constraints.trapezoid_weights,
         lambda dt: ((torch.linspace(0, 1, 7, dtype=dt) ** 2,), {}), "x"),
    Case("constraints.box_weights", constraints.box_weights,
         lambda dt: ((torch.linspace(0, 1, 5, dtype=dt), torch.linspace(0, 2, 4, dtype=dt)),
                     {}), "x"),
    Case("constraints.levenberg_marquardt",
         lambda c0, data: constraints.levenberg_marquardt(_lin_residual, c0, data),
         lambda dt: ((torch.zeros(3, 2, dtype=dt),
                      [_rand(3, 5, 2, dtype=dt), _rand(3, 5, seed=1, dtype=dt)]), {}), "c0"),
    Case("constraints.HardConstraint", constraints.HardConstraint(_lin_residual),
         lambda dt: ((_rand(3, 5, 2, dtype=dt), _rand(3, 5, seed=1, dtype=dt)),
                     {"c0": torch.zeros(3, 2, dtype=dt)}), "data[0]"),
    Case("constraints.assemble", constraints.assemble,
         lambda dt: ((_rand(2, 4, 3, dtype=dt), _rand(2, 2, 3, seed=1, dtype=dt),
                      torch.tensor([0, 1, 1, 0])), {}), "values"),
    Case("constraints.project_convex", constraints.project_convex,
         lambda dt: ((_rand(2, 6, dtype=dt),), {"G": _G1.to(dt),
                                                "b": torch.tensor([0.5], dtype=dt)}), "y"),
    # sciml.inverse
    Case("inverse.L2Misfit", inverse.L2Misfit(0.1),
         lambda dt: ((_rand(2, 7, dtype=dt), _rand(2, 7, seed=1, dtype=dt)), {}), "pred"),
    Case("inverse.SobolevMisfit", inverse.SobolevMisfit(lengths=(1.0, 1.0)),
         lambda dt: ((_rand(2, 8, 8, dtype=dt), _rand(2, 8, 8, seed=1, dtype=dt)), {}), "pred"),
    Case("inverse.SobolevPrior.energy", inverse.SobolevPrior(lengths=(1.0, 1.0)).energy,
         lambda dt: ((_rand(2, 8, 8, dtype=dt),), {}), "x"),
    Case("inverse.ScalarPrior.energy", inverse.ScalarPrior((1.0, 2.0), (0.5, 3.0)).energy,
         lambda dt: ((_rand(4, 2, dtype=dt),), {}), "x"),
    Case("inverse.PointObservation", inverse.PointObservation(np.array([3, 17, 40]), (8, 8)),
         lambda dt: ((_rand(2, 8, 8, dtype=dt),), {}), "u"),
    Case("inverse.calibration", inverse.calibration,
         lambda dt: ((_rand(50, dtype=dt), _rand(50, seed=1, dtype=dt).abs()), {}), "error"),
    Case("inverse.gauss_newton_hvp",
         lambda x, v: inverse.gauss_newton_hvp(_problem(), x, v),
         lambda dt: ((_rand(1, 8, 8, seed=5), _rand(1, 8, 8, seed=6)), {}), "x", float32=False),
    Case("inverse.solve_map", lambda x0: inverse.solve_map(_problem(), x0),
         lambda dt: ((torch.zeros(1, 8, 8, dtype=torch.float64),), {}), "x0", float32=False),
    Case("inverse.laplace",
         lambda x: inverse.laplace(_problem(), x, method="dense"),
         lambda dt: ((_rand(1, 8, 8, seed=7),), {}), "x_map", float32=False),
    # sciml.pdes
    Case("pdes.solve_navier_stokes",
         lambda w0: pdes.solve_navier_stokes(w0, [0.0, 0.02], viscosity=1e-2, dt=0.01),
         lambda dt: ((pdes.taylor_green_vorticity(16, dtype=dt) + 0.1 * _rand(16, 16, dtype=dt),),
                     {}), "w0"),
    Case("pdes.time_derivative", pdes.time_derivative,
         lambda dt: ((_rand(2, 6, 4, 4, dtype=dt), 0.1), {}), "w"),
    Case("pdes.coarsen", pdes.coarsen, lambda dt: ((_rand(2, 32, dtype=dt), 8), {}), "u"),
    Case("pdes.solve_combined",
         lambda u0: pdes.solve_combined(u0, _combined(u0.dtype if isinstance(u0, torch.Tensor)
                                                      else torch.float64)[0], [0.0, 0.05]),
         lambda dt: ((_combined(dt)[1],), {}), "u0"),
    Case("pdes.poisson.gradient", lambda p: pdes.gradient(pdes.box_scene(6, 2), p),
         lambda dt: ((_rand(2, 36, dtype=dt),), {}), "p"),
    Case("pdes.poisson.divergence",
         lambda u: pdes.divergence(pdes.box_scene(6, 2), u),
         lambda dt: (([_rand(2, 7, 6, dtype=dt), _rand(2, 6, 7, seed=1, dtype=dt)],), {}),
         "u[0]"),
    Case("pdes.PoissonOperator.matvec", lambda x: _poisson_op(x).matvec(x),
         lambda dt: ((_rand(3, 36, dtype=dt),), {}), "x"),
    Case("pdes.PoissonOperator.grid_matvec", lambda x: _poisson_op(x).grid_matvec(x),
         lambda dt: ((_rand(2, 6, 6, dtype=dt),), {}), "x"),
    Case("pdes.gpme.solution", lambda x: pdes.make_problem("pme", 2.0).solution(0.3, x),
         lambda dt: ((torch.linspace(0, 1, 9, dtype=dt),), {}), "x"),
]

_BY_ID = {c.id: c for c in CASES}


# ------------------------------------------------------------------------------- helpers


def _numpy(v: Any) -> Any:
    """Every tensor in ``v`` (through lists, tuples and dicts) as a numpy array."""
    if isinstance(v, torch.Tensor):
        return v.numpy()
    if isinstance(v, (list, tuple)):
        return type(v)(_numpy(x) for x in v)
    if isinstance(v, dict):
        return {k: _numpy(x) for k, x in v.items()}
    return v


def _leaves(out: Any) -> list[torch.Tensor]:
    """The tensors (numpy arrays and numbers as tensors) of a result, in a fixed order."""
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, np.ndarray):
        return [torch.from_numpy(out)]
    if isinstance(out, float):
        return [torch.tensor(out, dtype=torch.float64)]
    if isinstance(out, (list, tuple)):
        return [t for x in out for t in _leaves(x)]
    if dataclasses.is_dataclass(out):
        return [t for f in dataclasses.fields(out)
                if isinstance(t := getattr(out, f.name), torch.Tensor)]
    raise AssertionError(f"unexpected result type {type(out).__name__}")


def _first_tensor_key(args: tuple, kwargs: dict) -> tuple[str, int | str]:
    """Where the case's first tensor argument sits: ("args", i) or ("kwargs", key)."""
    for i, a in enumerate(args):
        if isinstance(a, (torch.Tensor, list)):
            return "args", i
    for k, a in kwargs.items():
        if isinstance(a, torch.Tensor):
            return "kwargs", k
    raise AssertionError("the case has no tensor argument")


# ------------------------------------------------------------------------------- tests


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_numpy_input_gives_the_tensor_answer(case: Case, dtype: torch.dtype):
    if dtype == torch.float32 and not case.float32:
        pytest.skip("this entry point works in float64")
    args, kwargs = case.make(dtype)
    ref = _leaves(case.fn(*args, **kwargs))
    got = _leaves(case.fn(*_numpy(args), **_numpy(kwargs)))
    assert len(got) == len(ref)
    for g, r in zip(got, ref):
        assert isinstance(g, torch.Tensor)
        assert g.dtype == r.dtype, f"{case.id}: numpy input gave {g.dtype}, tensors {r.dtype}"
        torch.testing.assert_close(g, r, rtol=0, atol=0, equal_nan=True)
    # float64 stays float64: every floating output of the float64 inputs is float64
    if dtype == torch.float64:
        for g in got:
            if g.is_floating_point():
                assert g.dtype == torch.float64, f"{case.id}: float64 input gave {g.dtype}"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_a_bad_first_argument_is_named(case: Case):
    args, kwargs = case.make(torch.float64)
    where, key = _first_tensor_key(args, kwargs)

    def with_bad(bad: Any) -> tuple[tuple, dict]:
        a, k = list(args), dict(kwargs)
        if where == "args":
            if isinstance(a[key], list):  # a list argument: spoil its first entry
                a[key] = [bad, *a[key][1:]]
            else:
                a[key] = bad
        else:
            k[key] = bad
        return tuple(a), k

    for bad in (["a", "b"], np.array(["a", "b"]), "u"):
        a, k = with_bad(bad)
        with pytest.raises((TypeError, ValueError), match=rf"^{case.first.replace('[', '.')}"):
            case.fn(*a, **k)
    # the rest as numpy arrays: the error still names the first argument
    a, k = with_bad(["a", "b"])
    a = tuple(x if i == key and where == "args" else _numpy(x) for i, x in enumerate(a))
    with pytest.raises((TypeError, ValueError), match=rf"^{case.first.replace('[', '.')}"):
        case.fn(*a, **{n: (x if n == key else _numpy(x)) for n, x in k.items()})


def test_mixed_inputs_follow_the_tensor():
    """A numpy argument takes the dtype of the tensor beside it (float32 here)."""
    p32, t64 = _rand(4, 10, dtype=torch.float32), _rand(4, 10, seed=1)
    r = operators.relative_lp(p32, t64.numpy())
    assert r.dtype == torch.float32
    torch.testing.assert_close(r, operators.relative_lp(p32, t64.float()))
    r = operators.relative_lp(p32.double().numpy(), t64.float())
    assert r.dtype == torch.float32
    e, s = inverse.calibration(t64.numpy(), p32.abs()), inverse.calibration(t64.float(),
                                                                               p32.abs())
    assert e == s
    # a numpy field with a float32 trajectory's time derivative
    w = _rand(1, 6, 16, 16, dtype=torch.float32)
    ns = pdes.NavierStokes2D(viscosity=1e-2)
    wt = pdes.time_derivative(w, 0.1)
    torch.testing.assert_close(ns.residual(w, w_t=wt.double().numpy()), ns.residual(w, w_t=wt))


def test_python_scalars_where_a_scalar_tensor_is():
    mean, var = _rand(2, 6), _rand(2, 6, seed=1).exp()
    ref = constraints.probconserv(mean, var, _G1, torch.tensor([0.3], dtype=torch.float64))
    for b in (0.3, np.float64(0.3), np.array([0.3])):
        got = constraints.probconserv(mean, var, _G1, b)
        torch.testing.assert_close(got.mean, ref.mean, rtol=0, atol=0)
        assert got.mean.dtype == torch.float64
        # the constraint holds to float64 rounding: the scalar was not rounded to float32
        assert float((got.mean @ _G1.T - 0.3).abs().max()) < 1e-14
    # one constraint row and a scalar right-hand side
    y = _rand(2, 6)
    res = constraints.project_convex(y, G=_G1[0].numpy(), b=0.5)
    torch.testing.assert_close(res.solution, constraints.project_convex(
        y, G=_G1[0], b=torch.tensor(0.5, dtype=torch.float64)).solution, rtol=0, atol=0)
    assert float((res.solution @ _G1[0] - 0.5).abs().max()) < 1e-8
    # a time as a numpy scalar, and per sample as a numpy array
    params, _ = _combined(torch.float64)
    x = torch.linspace(0, 16, 11, dtype=torch.float64)
    ref = pdes.forcing(params, 0.7, x)
    for t in (np.float64(0.7), np.array(0.7), np.array([0.7, 0.7])):
        torch.testing.assert_close(pdes.forcing(params, t, x.numpy()), ref, rtol=0, atol=0)
    # a scalar where a tensor is: a 0-d tensor in the other input's dtype and device
    f32 = torch.ones(3, dtype=torch.float32)
    assert as_tensor(0.5, like=f32).dtype == torch.float32
    assert as_tensor(0.5).dtype == torch.float64
    assert as_tensor(2).dtype == torch.float64
    assert as_tensor(1 + 2j).dtype == torch.complex128
    assert as_tensor(np.float32(1.5)).dtype == torch.float32
    s = as_tensors(0.25, f32)[0]
    assert s.ndim == 0 and s.dtype == torch.float32 and float(s) == 0.25


def test_the_converter_keeps_what_the_user_gave():
    """float64 stays float64, float32 float32, complex keeps its precision; integers become
    float64 (as in the solvers) unless kept as indices; other objects pass unchanged."""
    a = np.linspace(0, 1, 5)
    assert as_tensor(a).dtype == torch.float64
    assert as_tensor(a.astype(np.float32)).dtype == torch.float32
    assert as_tensor(a.astype(np.complex64)).dtype == torch.complex64
    assert as_tensor(a + 1j).dtype == torch.complex128
    assert as_tensor(np.arange(3)).dtype == torch.float64
    assert as_tensor(np.arange(3), integers=True).dtype == torch.int64
    assert as_tensor(np.array([True, False]), integers=True).dtype == torch.bool
    c32 = torch.zeros(2, dtype=torch.complex64)
    assert as_tensor(a, like=c32).dtype == torch.float32
    assert as_tensor(a + 1j, like=torch.zeros(1, dtype=torch.float64)).dtype == torch.complex128
    # read-only and reversed (negative-stride) arrays convert (torch refuses the latter)
    ro = np.linspace(0, 1, 4)
    ro.flags.writeable = False
    torch.testing.assert_close(as_tensor(ro), torch.from_numpy(ro.copy()))
    torch.testing.assert_close(as_tensor(a[::-1]), torch.from_numpy(a[::-1].copy()))
    for other in (None, "x", [1.0], True, torch.ones(2)):
        assert as_tensor(other) is other
    # numpy input equals the tensor answer for a reversed array too
    u = _rand(16, 16)
    torch.testing.assert_close(spectral.laplacian(u.numpy()[::-1]),
                               spectral.laplacian(u.flip(0)), rtol=0, atol=0)


def test_error_messages_for_numpy_garbage():
    with pytest.raises(TypeError, match=r"^u must be a torch.Tensor or a numpy array of numbers"
                                        r", got a numpy array of dtype <U1"):
        spectral.laplacian(np.array([["a", "b"], ["c", "d"]]))
    with pytest.raises(TypeError, match=r"^pred must be a torch.Tensor, got list"):
        operators.relative_lp(["a"], np.ones((2, 3)))
    # the first bad argument is named even when a later one is bad as well
    with pytest.raises(TypeError, match=r"^mean must be"):
        operators.gaussian_nll("m", "v", np.ones(3))
    with pytest.raises(TypeError, match=r"^var must be"):
        operators.gaussian_nll(np.ones(3), "v", "t")
    with pytest.raises(ValueError, match=r"^u must have at least 2 grid axes"):
        spectral.laplacian(1.5)  # a number where a field is: converted, then refused by rank


@pytest.mark.gpu
def test_numpy_inputs_follow_a_cuda_tensor():
    dev = torch.device("cuda")
    p = _rand(4, 10).to(dev)
    t = _rand(4, 10, seed=1)
    r = operators.relative_lp(p, t.numpy())
    assert r.device.type == "cuda" and r.dtype == torch.float64
    torch.testing.assert_close(r.cpu(), operators.relative_lp(p.cpu(), t))
    x = torch.linspace(0, 1, 5, dtype=torch.float64)
    w = constraints.box_weights(x.numpy(), x.to(dev))
    assert w.device.type == "cuda"
    torch.testing.assert_close(w.cpu(), constraints.box_weights(x, x))
    m = _rand(2, 6)
    res = constraints.probconserv(m.to(dev), m.exp().numpy(), _G1.numpy(), 0.3)
    assert res.mean.device.type == "cuda"
    torch.testing.assert_close(res.mean.cpu(), constraints.probconserv(m, m.exp(), _G1, 0.3).mean)


def test_every_case_has_a_unique_id_and_each_subpackage_three():
    assert len(_BY_ID) == len(CASES)
    for pkg in ("spectral", "operators", "constraints", "inverse", "pdes"):
        assert sum(c.id.startswith(pkg + ".") for c in CASES) >= 3, pkg


def test_one_profile_with_several_right_hand_sides():
    """``b`` batched over right-hand sides beside a single profile broadcasts (the update of
    each equals the update with that ``b`` alone); it used to fail inside the update."""
    mean, var = _rand(6), _rand(6, seed=1).exp()
    bs = torch.tensor([0.1, 0.3, -0.2], dtype=torch.float64)
    got = constraints.probconserv(mean, var, _G1[0], bs.numpy())
    assert got.mean.shape == (3, 6)
    for i, bi in enumerate(bs):
        one = constraints.probconserv(mean, var, _G1[0], float(bi))
        torch.testing.assert_close(got.mean[i], one.mean[0] if one.mean.ndim == 2 else one.mean)
        torch.testing.assert_close(got.cov[i], one.cov[0] if one.cov.ndim == 2 else one.cov)


# ------------------------------------------------------- settings given as numpy sequences


@pytest.mark.parametrize("make", [
    lambda seq, num: inverse.SobolevPrior(s=num(2.0), lengths=seq([1.0, 2.0])),
    lambda seq, num: inverse.FullObservation(seq([8, 8]), noise_std=num(0.1)),
    lambda seq, num: operators.SFNO(modes=num(4), modes_t=num(2), width=num(8),
                                    out_steps=num(2)),
    lambda seq, num: operators.FNO(1, 1, width=num(8), modes=seq([4, 4])),
], ids=["SobolevPrior", "FullObservation", "SFNO", "FNO"])
def test_settings_accept_numpy_sequences_and_scalars(make) -> None:
    """Shapes, mode counts and box lengths as numpy arrays and numpy scalars build the same
    object as the Python tuples and numbers."""
    def num(v):
        return np.int64(v) if isinstance(v, int) else np.float64(v)

    ref = make(list, lambda v: v)
    got = make(np.array, num)
    if isinstance(ref, torch.nn.Module):
        assert repr(got) == repr(ref)
        assert [p.shape for p in got.parameters()] == [p.shape for p in ref.parameters()]
    else:
        assert got == ref


def test_spectral_lengths_as_numpy() -> None:
    u = _rand(2, 8, 8)
    ref = spectral.laplacian(u, lengths=(1.0, 2.0))
    torch.testing.assert_close(spectral.laplacian(u, lengths=np.array([1.0, 2.0])), ref,
                               rtol=0, atol=0)
    with pytest.raises(TypeError, match="lengths"):
        spectral.laplacian(u, lengths=np.ones((1, 2)))
    with pytest.raises(TypeError, match=r"shape\[0\] must be an int"):
        inverse.FullObservation(np.array([8.5, 8.0]), noise_std=0.1)
