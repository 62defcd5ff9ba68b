"""ProbConserv on the GPME family: train probabilistic models, update them, score them.

The pipeline of Hansen et al. (ICML 2023), section 4, at laptop scale:

1. **Tasks.** For a PDE parameter drawn from the training range
   (:data:`TRAIN_RANGES`), ``n_context`` observations ``(t, x, u)`` of
   the exact solution at random times in ``(0, t*]`` and ``n_target`` more to predict.
2. **Base model.** A :class:`~sciml.operators.neural_process.DeepEnsemble` of
   :class:`~sciml.operators.neural_process.ConditionalNP` members, each trained through
   the one :class:`~sciml.train.Trainer` on the Gaussian negative log-likelihood.
   The model never sees the parameter: it infers it from the observations.
3. **Soft constraint** ("PINN-penalty" in the paper): the same ensemble trained with the
   added penalty ``soft * mean(r^2)``, ``r = u_t - (k(u) u_x)_x`` at the target points
   (by autograd; the parameter is known during training). The Stefan step ``k`` is
   smoothed by a sigmoid of width 0.02 for it.
4. **At test time** (parameters of :data:`TEST_VALUES`, some outside the
   training range), the prediction on a 201-point grid at ``t*`` is updated with the
   conservation constraint ``G u = b`` (``G``: trapezoid weights, ``b``: the initial mass
   plus the integrated boundary fluxes): HardC projects the mean, ProbConserv conditions
   the Gaussian. ``probconserv-convex`` adds the cvxpylayers projection onto
   nonnegative, nonincreasing profiles (PME and Stefan) that keeps ``G u = b``.

Metrics per case (averaged over ``n_eval`` context draws): conservation error
``CE = |G mean - b|``, ``MSE`` against the exact solution on the grid, the mean
pointwise Gaussian log-likelihood ``LL`` of the exact solution, and for Stefan the shock
position error ``|x_hat - x*(t*)|`` where ``x_hat`` is where the mean first falls below
``p*/2`` (linear interpolation between grid points).
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import TensorDataset

from sciml.constraints import (
    mass_from_fluxes,
    probconserv,
    project_convex,
    project_mean,
    trapezoid_weights,
)
from sciml.operators.neural_process import ConditionalNP, DeepEnsemble, gaussian_nll
from sciml.pdes.gpme import (
    T_FINAL,
    GPMEProblem,
    make_problem,
    sample_points,
)
from sciml.train import TrainConfig, Trainer, load_model_state
from sciml.utils import (
    check_bool,
    check_choice,
    check_device,
    check_int,
    check_real,
    check_tensor,
)

from .._checks import (
    check_choices,
    check_instance,
    check_instances,
    check_path,
    check_reals,
    check_seed,
    check_time_budget,
)

__all__ = [
    "METHODS",
    "PROBLEMS",
    "TEST_VALUES",
    "TRAIN_RANGES",
    "CaseResult",
    "constraint",
    "evaluate_case",
    "make_tasks",
    "pde_residual",
    "result_rows",
    "shock_position",
    "test_cases",
    "train_ensemble",
]

#: Parameter ranges sampled for training (uniformly), per problem name (the paper's).
TRAIN_RANGES: dict[str, tuple[float, float]] = {
    "diffusion": (1.0, 5.0),
    "pme": (1.0, 6.0),
    "stefan": (0.55, 0.7),
}
#: Parameter values of the test problems (Stefan's are outside the training range).
TEST_VALUES: dict[str, tuple[float, ...]] = {
    "diffusion": (1.0, 5.0),
    "pme": (1.0, 3.0, 6.0),
    "stefan": (0.5, 0.6),
}

PROBLEMS = ("diffusion", "pme", "stefan")
METHODS = ("base", "soft", "hardc", "probconserv", "probconserv-convex")
STEFAN_SMOOTH = 0.02


@functools.cache
def _domain(name: str) -> tuple[float, float]:
    lo = TRAIN_RANGES[name][0]
    return make_problem(name, lo).domain


def _scale_x(name: str, x: Tensor) -> Tensor:
    a, b = _domain(name)
    return (x - a) / (b - a)


def make_tasks(
    name: str,
    n_tasks: int,
    *,
    params: Sequence[float] | None = None,
    n_context: int = 100,
    n_target: int = 128,
    noise: float = 0.0,
    t_final: float = T_FINAL,
    seed: int = 0,
) -> TensorDataset:
    """Sampled tasks: ``(context (Nc, 3), query (Nq, 2), target (Nq,), param ())`` each.

    Parameters are uniform in the training range unless ``params`` fixes them (one per
    task, cycled). Times are uniform in ``(0, t_final]``, ``x`` uniform in the domain and
    scaled to ``[0, 1]`` in ``context`` and ``query``; ``noise`` is the standard deviation
    of Gaussian noise on the observed ``u`` (not on the targets).
    """
    name = check_choice("name", name, PROBLEMS)
    n_tasks = check_int("n_tasks", n_tasks, minimum=1)
    check_int("n_context", n_context, minimum=1)
    check_int("n_target", n_target, minimum=1)
    if params is not None:
        params = check_reals("params", params, positive=True,
                             fix="pass None to draw them from the training range")
        for p in params:  # the problem's own range check, named here
            try:
                make_problem(name, p)
            except (TypeError, ValueError) as e:
                raise ValueError(f"params holds {p!r}, not a valid {name} parameter: {e}"
                                 ) from None
    noise = check_real("noise", noise, minimum=0.0, fix="use 0 for exact observations")
    t_final = check_real("t_final", t_final, positive=True,
                         fix=f"observation times are drawn in (0, t_final]; T_FINAL = {T_FINAL}")
    check_seed(seed)
    g = torch.Generator().manual_seed(seed)
    lo, hi = TRAIN_RANGES[name]
    if params is None:
        ps = (lo + (hi - lo) * torch.rand(n_tasks, generator=g, dtype=torch.float64)).tolist()
    else:
        ps = [params[i % len(params)] for i in range(n_tasks)]
    ctx, qry, tgt = [], [], []
    for p in ps:
        prob = make_problem(name, p)
        t, x, u = sample_points(prob, n_context, t_range=(0.0, t_final), noise=noise,
                                generator=g)
        ctx.append(torch.stack([t, _scale_x(name, x), u], -1))
        t, x, u = sample_points(prob, n_target, t_range=(0.0, t_final), generator=g)
        qry.append(torch.stack([t, _scale_x(name, x)], -1))
        tgt.append(u)
    f32 = torch.float32
    return TensorDataset(torch.stack(ctx).to(f32), torch.stack(qry).to(f32),
                         torch.stack(tgt).to(f32), torch.tensor(ps, dtype=f32))


def _diffusivity(name: str, u: Tensor, p: Tensor) -> Tensor:
    p = p.reshape(-1, *([1] * (u.ndim - 1)))
    if name == "diffusion":
        return p.expand_as(u)
    if name == "pme":
        return u.clamp_min(0.0) ** p
    return torch.sigmoid((u - p) / STEFAN_SMOOTH)


def pde_residual(name: str, model: ConditionalNP, r: Tensor | None, query: Tensor,
                 param: Tensor) -> Tensor:
    """``u_t - (k(u) u_x)_x`` of the predicted mean at ``query`` (autograd, graph kept).

    ``r`` is the model's representation of the context (:meth:`ConditionalNP.encode`;
    None for a model whose ``decode`` needs none); ``query`` rows are ``(t, x / L)``, so
    ``d/dx = (1/L) d/dx'``.
    """
    name = check_choice("name", name, PROBLEMS)
    if not callable(getattr(model, "decode", None)):
        raise TypeError(f"model must be a ConditionalNP (anything with decode(r, query) -> "
                        f"(mean, var)), got {type(model).__name__}")
    query = check_tensor("query", query, ndim=3, floating=True)
    B = query.shape[0]
    if r is not None:
        r = check_tensor("r", r, ndim=2, floating=True)
        B = r.shape[0]
        if not bool(torch.isfinite(r).all()):
            raise ValueError("r contains NaN or Inf; pass model.encode(context) of finite data")
    param = check_tensor("param", param, ndim=1, floating=True)
    if query.shape[0] != B or query.shape[-1] != 2 or query.shape[1] == 0:
        raise ValueError(f"query must be (B={B}, Nq >= 1, 2) rows (t, x / L), got "
                         f"shape {tuple(query.shape)}")
    if param.shape != (B,) or not bool(torch.isfinite(param).all()):
        raise ValueError(f"param must hold one finite parameter per task, shape ({B},), got "
                         f"shape {tuple(param.shape)}")
    return _pde_residual(name, model, r, query, param)


def _pde_residual(name: str, model: ConditionalNP, r: Tensor | None, query: Tensor,
                  param: Tensor) -> Tensor:
    """:func:`pde_residual` without the checks (the training step's, every step: the
    finiteness scans would each wait for the device)."""
    a, b = _domain(name)
    L = b - a
    q = query.detach().requires_grad_(True)
    mean, _ = model.decode(r, q)
    du = torch.autograd.grad(mean.sum(), q, create_graph=True)[0]
    flux = _diffusivity(name, mean, param) * du[..., 1] / L
    dflux = torch.autograd.grad(flux.sum(), q, create_graph=True)[0][..., 1] / L
    return du[..., 0] - dflux


class _Objective:
    """Gaussian NLL, plus ``soft * mean(r^2)`` while gradients are on (training)."""

    def __init__(self, name: str, soft: float, n_colloc: int = 32) -> None:
        self.name, self.soft, self.n_colloc = name, soft, n_colloc

    def forward(self, model: ConditionalNP, batch):
        ctx, q, y, p = batch
        r = model.encode(ctx)
        mean, var = model.decode(r, q)
        res = None
        if self.soft > 0 and torch.is_grad_enabled():
            # the penalty at the first n_colloc target points (random already): the
            # double backward costs 4x a plain step per point
            res = _pde_residual(self.name, model, r, q[:, :self.n_colloc], p)
        return (mean, var, res), y

    def loss(self, pred, target: Tensor) -> Tensor:
        mean, var, r = pred
        nll = gaussian_nll(mean, var, target)
        return nll if r is None else nll + self.soft * (r**2).mean()


def train_ensemble(
    name: str,
    *,
    members: int = 4,
    soft: float = 0.0,
    tasks: int = 2048,
    steps: int = 3000,
    time_budget: float | None = None,
    width: int = 64,
    lr: float = 2e-3,
    batch_size: int = 32,
    seed: int = 0,
    out_dir: str | os.PathLike | None = None,
    progress: bool = True,
    device: str | torch.device | None = None,
) -> DeepEnsemble:
    """Train a deep ensemble of conditional neural processes on one GPME problem.

    Each member has its own initialisation (``seed + i``) and sample order, and trains
    through :class:`~sciml.train.Trainer` (OneCycle Adam) on the same tasks. With
    ``out_dir``, member ``i`` writes ``out_dir/member<i>/`` and a finished member
    (``model.pt`` present) is loaded instead of retrained, an unfinished one resumes
    from its checkpoint: a killed run picks up where it stopped.

    Args:
        name: ``"diffusion"``, ``"pme"`` or ``"stefan"``.
        members: ensemble size.
        soft: weight of the PDE-residual penalty (0: the base model).
        tasks: training tasks (parameters drawn from the training range).
        steps, lr, batch_size: optimiser steps, peak learning rate (OneCycle) and
            tasks per batch, per member.
        time_budget: a cap in seconds per member (None: none); the schedule is planned
            for ``steps``, so a member stopped by the cap ends before its annealing.
        width: hidden width of the conditional neural process.
        seed: seeds tasks, initialisations and sample orders.
        out_dir: where members write their checkpoints (None: nothing is written).
        progress: show a progress bar per member.
        device: where to train (default: the CPU, or ``cuda:LOCAL_RANK`` under torchrun
            on a CUDA machine; see :func:`sciml.utils.check_device` with
            ``resolve=True``); the ensemble is returned there.
    """
    name = check_choice("name", name, PROBLEMS)
    check_int("members", members, minimum=1)
    soft = check_real("soft", soft, minimum=0.0, fix="a weight; use 0 for no penalty")
    check_int("tasks", tasks, minimum=1)
    check_int("steps", steps, minimum=1)
    check_time_budget(time_budget)
    check_int("width", width, minimum=1)
    check_real("lr", lr, positive=True, fix="a typical value is 2e-3")
    check_int("batch_size", batch_size, minimum=1)
    check_seed(seed)
    out_dir = check_path("out_dir", out_dir, optional=True)
    check_bool("progress", progress)
    device = check_device(device, "device", resolve=True)
    data = make_tasks(name, tasks, seed=seed)
    objective = _Objective(name, float(soft))
    nets = []
    for i in range(members):
        torch.manual_seed(seed * 1000 + i)
        net = ConditionalNP(width=width)
        run = None if out_dir is None else Path(out_dir) / f"member{i}"
        if run is not None and (run / "model.pt").exists():
            load_model_state(net, run / "model.pt")
            nets.append(net.to(device).eval())
            continue
        epochs = math.ceil(steps / math.ceil(tasks / batch_size))
        config = TrainConfig(epochs=epochs, max_steps=steps, lr=lr, batch_size=batch_size,
                             time_budget=time_budget, seed=seed * 1000 + i,
                             progress=progress, schedule="onecycle")
        trainer = Trainer(net, objective.loss, config, out_dir=run, forward=objective.forward,
                          device=device, model_config={"kind": "ConditionalNP", **net.config(),
                                        "problem": name, "soft": float(soft)})
        trainer.fit(data, resume=run is not None)
        nets.append(trainer.model.eval())
    return DeepEnsemble(nets).eval()


def constraint(problem: GPMEProblem, x: Tensor, t: float) -> tuple[Tensor, Tensor]:
    """``(G, b)`` of the conservation law at time ``t`` on grid ``x``.

    ``G``: trapezoid weights ``(1, n)``; ``b``: the initial mass plus the integrated
    boundary fluxes up to ``t`` (not the closed-form mass, which is only a check).
    """
    check_instance("problem", problem, GPMEProblem, hint="build one with make_problem")
    x = check_tensor("x", x, ndim=1, real=True)
    if x.numel() < 2 or not bool(torch.isfinite(x).all()):
        raise ValueError(f"x must be a finite grid of at least 2 points, got shape "
                         f"{tuple(x.shape)}; use problem.grid(n)")
    t = check_real("t", t, minimum=0.0, fix=f"a time in [0, {problem.exit_time}]")
    G = trapezoid_weights(x).unsqueeze(0)
    b = mass_from_fluxes(float(problem.mass(0.0)), lambda s: float(problem.flux_in(s)),
                         lambda s: float(problem.flux_out(s)), t)
    return G, b.reshape(1)


def shock_position(x: Tensor, u: Tensor, level: float) -> Tensor:
    """Where each profile ``u (..., n)`` first falls below ``level`` (linear interpolation).

    Returns ``x[-1]`` for a profile that never does.
    """
    x = check_tensor("x", x, ndim=1, real=True)
    u = check_tensor("u", u, min_ndim=1, real=True)
    if x.numel() < 2 or u.shape[-1] != x.shape[0]:
        raise ValueError(f"u must be profiles (..., n) on the grid x of n = {x.numel()} >= 2 "
                         f"points, got u {tuple(u.shape)} and x {tuple(x.shape)}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError("x contains NaN or Inf; pass a finite grid")
    level = check_real("level", level)
    below = u < level
    idx = torch.where(below.any(-1), below.float().argmax(-1), torch.full_like(
        below[..., 0], u.shape[-1] - 1, dtype=torch.long))
    i1 = idx.clamp(min=1)
    i0 = i1 - 1
    u0, u1 = u.gather(-1, i0[..., None])[..., 0], u.gather(-1, i1[..., None])[..., 0]
    x0, x1 = x[i0], x[i1]
    frac = ((u0 - level) / (u0 - u1).clamp_min(1e-300)).clamp(0, 1)
    pos = x0 + frac * (x1 - x0)
    return torch.where(below.any(-1), pos, x[-1].expand_as(pos))


@dataclass
class CaseResult:
    """Metrics per method for one test case and the profiles behind them."""

    case: str
    param: float
    metrics: dict[str, dict[str, float]]
    x: Tensor
    exact: Tensor
    profiles: dict[str, tuple[Tensor, Tensor]] = field(default_factory=dict)
    front: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.case, str) or not self.case:
            raise TypeError(f"case must be a non-empty str, got {self.case!r}")
        self.param = check_real("param", self.param, positive=True)
        if not isinstance(self.metrics, dict):
            raise TypeError(f"metrics must be a dict of method: {{metric: value}}, got "
                            f"{type(self.metrics).__name__}")
        check_tensor("x", self.x, ndim=1, real=True)
        check_tensor("exact", self.exact, ndim=1, real=True)
        if self.x.numel() < 2 or self.exact.shape != self.x.shape:
            raise ValueError(f"x and exact must be profiles of the same n >= 2 points, got x "
                             f"{tuple(self.x.shape)} and exact {tuple(self.exact.shape)}")
        for name in ("x", "exact"):
            if not bool(torch.isfinite(getattr(self, name)).all()):
                raise ValueError(f"{name} contains NaN or Inf")
        if not isinstance(self.profiles, dict):
            raise TypeError(f"profiles must be a dict of method: (mean, var), got "
                            f"{type(self.profiles).__name__}")
        if self.front is not None:
            self.front = check_real("front", self.front, minimum=0.0,
                                    fix="the true front position, or None")


def _metrics(mean: Tensor, var: Tensor, exact: Tensor, G: Tensor, b: Tensor,
             x: Tensor, level: float | None, front: float | None) -> dict[str, float]:
    var = var.clamp_min(1e-12)
    out = {
        "ce": float((mean @ G.T - b).abs().mean()),
        "mse": float(((mean - exact) ** 2).mean()),
        "ll": float((-0.5 * torch.log(2 * math.pi * var)
                     - (exact - mean) ** 2 / (2 * var)).mean()),
    }
    if level is not None and front is not None:
        out["shock_error"] = float((shock_position(x, mean, level) - front).abs().mean())
    return out


@torch.no_grad()
def _predict(model: DeepEnsemble, context: Tensor, query: Tensor) -> tuple[Tensor, Tensor]:
    """The ensemble's ``(mean, var)`` on the CPU in float64, computed on its device."""
    dev = next(model.parameters()).device
    mean, var = model(context.to(dev), query.to(dev))
    return mean.to("cpu", torch.float64), var.to("cpu", torch.float64)


def evaluate_case(
    name: str,
    param: float,
    base: DeepEnsemble,
    soft: DeepEnsemble | None = None,
    *,
    n_eval: int = 50,
    n_context: int = 100,
    n_grid: int = 201,
    convex: bool = True,
    seed: int = 1,
) -> CaseResult:
    """Score base / soft / HardC / ProbConserv (/ convex) on one test parameter.

    ``n_eval`` context sets are drawn (seeded); each model predicts the profile on
    ``n_grid`` points at ``t*`` on its own device; the constraint is applied and the
    metrics are averaged on the CPU.
    """
    name = check_choice("name", name, PROBLEMS)
    param = check_real("param", param, positive=True)
    try:
        problem = make_problem(name, param)
    except (TypeError, ValueError) as e:
        raise ValueError(f"param={param!r} is not a valid {name} parameter: {e}") from None
    check_instance("base", base, DeepEnsemble, hint="train one with train_ensemble")
    check_instance("soft", soft, DeepEnsemble, optional=True,
                   hint="train one with train_ensemble(soft=...)")
    check_int("n_eval", n_eval, minimum=1)
    check_int("n_context", n_context, minimum=1)
    check_int("n_grid", n_grid, minimum=2)
    check_bool("convex", convex)
    check_seed(seed)
    x = problem.grid(n_grid)
    exact = problem.solution(T_FINAL, x)
    G, b = constraint(problem, x, T_FINAL)
    tasks = make_tasks(name, n_eval, params=[param], n_context=n_context, n_target=1,
                       seed=seed)
    ctx = tasks.tensors[0]
    query = torch.stack([torch.full_like(x, T_FINAL), _scale_x(name, x)], -1).float()
    query = query.expand(n_eval, -1, -1)
    level = front = None
    if name == "stefan":
        level, front = 0.5 * param, float(problem.front(T_FINAL))
    profiles: dict[str, tuple[Tensor, Tensor]] = {}
    mu, var = _predict(base, ctx, query)
    profiles["base"] = (mu, var)
    if soft is not None:
        profiles["soft"] = _predict(soft, ctx, query)
    profiles["hardc"] = (project_mean(mu, G, b), var)
    post = probconserv(mu, var, G, b)
    profiles["probconserv"] = (post.mean, post.cov)
    if convex and name in ("pme", "stefan"):
        # The nearest nonnegative, nonincreasing profile in the posterior's metric that
        # keeps G u = b; the posterior variance is kept (the projection moves the mean).
        w = 1.0 / post.cov.clamp_min(1e-10)
        u = project_convex(post.mean, weight=w, nonneg=True, monotone="decreasing", throw=True,
                           G=G.expand(n_eval, -1, -1), b=b.expand(n_eval, -1)).solution
        profiles["probconserv-convex"] = (u.double(), post.cov)
    metrics = {m: _metrics(mean, v, exact, G, b, x, level, front)
               for m, (mean, v) in profiles.items()}
    return CaseResult(f"{name}-{_tag(name)}{_fmt(param)}", float(param), metrics, x, exact,
                      profiles, front)


def _tag(name: str) -> str:
    return {"diffusion": "k", "pme": "m", "stefan": "p"}[name]


def _fmt(p: float) -> str:
    return f"{p:g}"


def test_cases(names: Sequence[str] = PROBLEMS) -> list[tuple[str, float]]:
    """The (problem, parameter) pairs of the test set, ``TEST_VALUES`` per problem."""
    names = check_choices("names", names, PROBLEMS)
    return [(n, float(p)) for n in names for p in TEST_VALUES[n]]


def result_rows(results: Sequence[CaseResult]) -> list[dict]:
    """Rows in the shared benchmark shape (impl ``sciml``, a ``method`` per row)."""
    results = check_instances("results", results, CaseResult,
                              hint="pass the CaseResults of evaluate_case")
    return [{"case": r.case, "impl": "sciml", "method": m, "metric": k, "value": v}
            for r in results for m, ms in r.metrics.items() for k, v in ms.items()]
