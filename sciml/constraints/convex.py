"""A differentiable weighted projection of 1D profiles onto convex sets (cvxpylayers).

ProbConserv (Hansen et al. 2023) makes a predicted profile satisfy a linear conservation
law ``G u = b`` exactly, but a linear update cannot also keep the profile nonnegative or
monotone; the authors post-process with NNLS, which is not differentiable. This layer
solves, for each profile ``y`` (one row of a batch),

.. math::

    u^\\star = \\arg\\min_u \\sum_i w_i (u_i - y_i)^2 \\quad \\text{s.t.} \\quad
    u \\ge 0,\\ \\ u_{i+1} \\ge u_i \\ (\\text{or} \\le),\\ \\
    \\ell \\le u \\le h,\\ \\ G u = b,

each constraint optional: the projection of ``y`` onto a polyhedron in the metric
``||v||_W^2 = sum_i w_i v_i^2``. With ``w = 1 / variance`` it is the nearest point to a
posterior mean in the posterior's own metric.

How it is computed:

1. A DPP-parametrised cvxpy problem, built once, is solved by
   :class:`cvxpylayers.torch.CvxpyLayer` (Agrawal et al. 2019) with the Clarabel
   interior-point method.
2. *Polishing* (as in OSQP, Stellato et al. 2020). Where a constraint is weakly active
   (``y_i`` at a bound, near-ties of a monotone profile) an interior-point solution is
   only accurate to about the square root of its last barrier parameter: ~1e-5 on
   201-point profiles at tolerance 1e-10. So the active face is read off it (runs of
   equal values, runs at a bound), the weighted least-squares problem on that face's
   affine hull is solved in closed form (one ``n_eq x n_eq`` solve), and the result is
   kept only if it passes a KKT certificate (primal feasibility; nonnegative
   multipliers, which for a chain ``u_i <= u_{i+1}`` are signs of partial sums inside
   each run, as in pool-adjacent-violators). A failed certificate moves to a better
   face, as a primal-dual active-set method does. A certified answer is exact to
   rounding, and autograd through the closed form gives the exact derivative of the
   projection wherever it is differentiable (the active set locally constant). A row
   that is never certified keeps the cvxpylayers solution and its implicit (diffcp)
   derivative.

References: Hansen, Maddix, Alizadeh, Gupta, Mahoney, *Learning physical models that can
respect conservation laws*, ICML 2023 (ProbConserv). Agrawal, Amos, Barratt, Boyd,
Diamond, Kolter, *Differentiable convex optimization layers*, NeurIPS 2019.
Stellato et al., *OSQP: an operator splitting solver for quadratic programs*, 2020
(solution polishing).
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from .._frozen import frozen_settings
from .._validation import (
    as_tensors,
    check_bool,
    check_choice,
    check_finite,
    check_int,
    check_tensor,
)
from ._convex_common import (
    _KKT_RTOL,
    _SOLVER_ARGS,
    ConvexResult,
    _codes,
    _cvxpy,
    _lp_feasible,
    _raise,
    _RebuiltOnLoad,
    _result,
)

if TYPE_CHECKING:
    from cvxpylayers.torch import CvxpyLayer

__all__ = ["ConvexProjection", "project_convex"]


_ACTIVE_RTOLS = (1e-7, 1e-10, 1e-4)  # starting faces: slacks below rtol * scale count as active
_MAX_MOVES = 30  # active-set moves from a starting face before giving up
_MONOTONE = ("increasing", "decreasing")


def _bound(name: str, v: object) -> float | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ValueError(f"{name} must be a finite number or None, got {v!r}")
    return float(v)


@frozen_settings(("n", "nonneg", "monotone", "n_eq", "lower", "upper", "polish",
                  "solver_args", "_lo", "_hi", "_unconstrained", "_layer"))
class ConvexProjection(_RebuiltOnLoad, nn.Module):
    """Differentiable weighted projection of profiles onto a convex set (order, bounds, G u = b).

    Solves, independently for each row ``y`` of a batch,

    .. math::

        \\min_u \\sum_i w_i (u_i - y_i)^2 \\quad \\text{s.t.} \\quad
        u \\ge 0 \\ (\\texttt{nonneg}),\\ \\
        u_{i+1} \\ge u_i \\ (\\texttt{"increasing"}) \\text{ or } \\le
        \\ (\\texttt{"decreasing"}),\\ \\
        \\texttt{lower} \\le u \\le \\texttt{upper},\\ \\ G u = b \\ (\\texttt{n\\_eq} > 0),

    the Euclidean projection of ``y`` onto that convex set in the metric weighted by
    ``w`` (unique, as the objective is strictly convex). Gradients flow to ``y``,
    ``weight``, ``G`` and ``b``. The solve runs on the CPU in float64; the result has
    ``y``'s dtype and device. See the module docstring for the method (cvxpylayers with
    Clarabel, then a certified polishing step).

    Equivalent to an NNLS post-processing (``scipy.optimize.nnls`` with the identity
    matrix, i.e. ``max(y, 0)``) when only ``nonneg`` is set and weights are 1; to
    isotonic regression (pool-adjacent-violators) with ``monotone="increasing"`` and
    ``nonneg=False``; to the HardC projection (:func:`~sciml.constraints.project_mean`)
    with only ``G u = b`` and weights 1.

    Args:
        n: length of a profile.
        nonneg: require ``u >= 0``.
        monotone: ``None``, ``"increasing"`` or ``"decreasing"`` (non-strict).
        n_eq: number of equality rows of ``G`` (0: no equality constraint).
        lower, upper: optional bounds on every entry.
        polish: certify and polish the interior-point solution (see the module
            docstring); ``False`` returns the cvxpylayers solution as is (accurate to
            ~1e-5 where constraints are weakly active).
        solver_args: extra Clarabel settings for diffcp, overriding the tight defaults
            (e.g. ``{"max_iter": 500}``).

    The settings are read-only: assigning one (``layer.nonneg = False``) raises
    ``AttributeError``; build a new projection instead.

    Raises:
        ValueError: ``n < 1``, ``n_eq`` not in ``[0, n]``, an unknown ``monotone``, or
            bounds that no profile can meet (``lower > upper``, ``upper < 0`` with
            ``nonneg``).

    References: Hansen et al., ICML 2023 (ProbConserv); Agrawal et al., NeurIPS 2019
    (differentiable convex optimization layers).
    """

    def __init__(
        self,
        n: int,
        *,
        nonneg: bool = True,
        monotone: str | None = None,
        n_eq: int = 0,
        lower: float | None = None,
        upper: float | None = None,
        polish: bool = True,
        solver_args: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        n = check_int("n", n, minimum=1)
        n_eq = check_int("n_eq", n_eq, minimum=0)
        if n_eq > n:
            raise ValueError(
                f"n_eq={n_eq} equality rows on n={n} unknowns leave no freedom "
                "to project; use n_eq <= n"
            )
        if monotone is not None:
            check_choice("monotone", monotone, _MONOTONE)
        for name, flag in (("nonneg", nonneg), ("polish", polish)):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be True or False, got {flag!r}")
        if solver_args is not None and not isinstance(solver_args, Mapping):
            raise TypeError(f"solver_args must be a dict of Clarabel settings or None, "
                            f"got {type(solver_args).__name__}")
        lower = _bound("lower", lower)
        upper = _bound("upper", upper)
        if lower is not None and upper is not None and lower > upper:
            raise ValueError(
                f"lower={lower} > upper={upper}: no profile fits; swap them"
            )
        if nonneg and upper is not None and upper < 0:
            raise ValueError(
                f"upper={upper} < 0 with nonneg=True: no profile fits; raise upper to "
                ">= 0 or pass nonneg=False"
            )
        # effective entrywise bounds lo <= u <= hi (nonneg folded into lo)
        lo = -math.inf if lower is None else lower
        lo = max(lo, 0.0) if nonneg else lo
        hi = math.inf if upper is None else upper
        unconstrained = monotone is None and n_eq == 0 and math.isinf(lo) and math.isinf(hi)
        # read-only settings (see frozen_settings): set once, here; the derived bounds
        # and the cvxpy problem follow from them
        for key, value in (("n", n), ("n_eq", n_eq), ("nonneg", nonneg),
                           ("monotone", monotone), ("polish", polish), ("lower", lower),
                           ("upper", upper), ("_lo", lo), ("_hi", hi),
                           ("solver_args", {**_SOLVER_ARGS, **(solver_args or {})}),
                           ("_unconstrained", unconstrained)):
            object.__setattr__(self, key, value)
        self._build()

    def _build(self) -> None:
        # Kept out of nn.Module's registry (object.__setattr__): the layer's canonical
        # matrices are fixed problem data, not state, and must not enter state_dict()
        # or be converted by .to()/.half().
        object.__setattr__(self, "_layer", None if self._unconstrained else _make_layer(self))

    def extra_repr(self) -> str:
        return (
            f"n={self.n}, nonneg={self.nonneg}, monotone={self.monotone!r}, "
            f"n_eq={self.n_eq}, lower={self.lower}, upper={self.upper}, polish={self.polish}"
        )

    def forward(
        self,
        y: Tensor,
        weight: Tensor | None = None,
        G: Tensor | None = None,
        b: Tensor | None = None,
        *,
        throw: bool = False,
    ) -> ConvexResult:
        """Project ``y``.

        Args:
            y: profiles, shape ``(n,)`` or ``(batch, n)``, real floating point.
            weight: positive weights ``w``, shape ``(n,)`` or ``y``'s shape (default 1;
                ``1 / variance`` gives the posterior's metric).
            G: equality matrix, ``(n_eq, n)`` or ``(batch, n_eq, n)`` (only if
                ``n_eq > 0``).
            b: right-hand side, ``(n_eq,)`` or ``(batch, n_eq)``.
            throw: raise :class:`~sciml.constraints.ConvexError` instead of returning a
                status other than ``CONVERGED``.

        Returns:
            A :class:`~sciml.constraints.ConvexResult`: ``solution`` ``u`` with ``y``'s
            shape, dtype and device (differentiable), ``status`` measured on the answer
            (the polish's KKT certificate, or the interior-point answer's constraint
            violation within 1e-6 and KKT residual within 1e-5; ``INFEASIBLE`` when a
            linear program confirms that no profile meets the constraints, ``MAX_ITER``
            when the solver stopped short), ``stats`` and ``converged``.

        Raises:
            TypeError: a non-tensor or non-real-floating input.
            ValueError: wrong shapes, non-positive or non-finite values, ``G``/``b``
                missing or unexpected.
            ConvexError: ``throw=True`` and a status other than ``CONVERGED`` (raised
                before any differentiable re-solve).
        """
        throw = check_bool("throw", throw)
        # numpy arrays and numbers follow the first tensor (the answer takes y's dtype)
        y, weight, G, b = as_tensors(y, weight, G, b)
        y64, w64, G64, b64, unbatched = self._prepare(y, weight, G, b)
        B = y64.shape[0]
        if self._unconstrained or B == 0:  # the projection onto R^n (exact); no rows
            zero = torch.zeros(B, dtype=torch.float64)
            return _result(y.clone(), torch.zeros(B, dtype=torch.long), zero,
                           torch.full((B,), math.nan, dtype=torch.float64),
                           torch.ones(B, dtype=torch.bool))
        needs_grad = torch.is_grad_enabled() and any(
            t is not None and t.requires_grad for t in (y, weight, G, b)
        )
        sw = w64.sqrt()
        rows: list[Tensor | None] = [None] * B
        ipm = None
        if self.polish:
            with torch.no_grad():
                ipm = self._solve(sw, sw * y64, G64, b64)
            for i in range(B):
                rows[i] = self._polish_row(
                    ipm[0][i].numpy(), y64[i], w64[i], _row(G64, i, 3), _row(b64, i, 2)
                )
        polished = torch.tensor([r is not None for r in rows])
        kkt = torch.full((B,), math.nan, dtype=torch.float64)
        failed = [i for i, r in enumerate(rows) if r is None]
        if failed:  # the interior-point answer, with diffcp's derivative if wanted
            idx = torch.tensor(failed)
            G_f = None if G64 is None else (G64[idx] if G64.ndim == 3 else G64)
            b_f = None if b64 is None else (b64[idx] if b64.ndim == 2 else b64)
            if ipm is None:
                with torch.set_grad_enabled(needs_grad):
                    u_f, duals = self._solve(sw[idx], (sw * y64)[idx], G_f, b_f)
            else:
                u_f, duals = ipm[0][idx], {k: v[idx] for k, v in ipm[1].items()}
            kkt[idx] = self._kkt_residual(
                u_f.detach(), duals, y64.detach()[idx], w64.detach()[idx],
                None if G_f is None else G_f.detach())
            for j, i in enumerate(failed):
                rows[i] = u_f[j]
        u = torch.stack(rows)  # type: ignore[arg-type]
        with torch.no_grad():
            ud = u.detach()
            Gd = None if G64 is None else G64.detach()
            bd = None if b64 is None else b64.detach()
            violation = self._violation(ud, y64.detach(), Gd, bd)
            codes = _codes(torch.isfinite(ud).all(-1), polished, violation, kkt,
                           self._feasible(Gd, bd))
        if throw and bool((codes != 0).any()):
            _raise(codes, violation, kkt, "profile(s)")
        redo = [i for i in failed if int(codes[i]) == 0]
        if needs_grad and ipm is not None and redo:
            # the status is known: solve the converged rows again, differentiably
            idx = torch.tensor(redo)
            G_r = None if G64 is None else (G64[idx] if G64.ndim == 3 else G64)
            b_r = None if b64 is None else (b64[idx] if b64.ndim == 2 else b64)
            u_r = self._solve(sw[idx], (sw * y64)[idx], G_r, b_r)[0]
            u = u.index_put((idx,), u_r)
        if unbatched:
            u = u[0]
        return _result(u.to(dtype=y.dtype, device=y.device), codes, violation, kkt, polished)

    # ---------------------------------------------------------------- validation
    def _prepare(
        self, y: object, weight: object, G: object, b: object
    ) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None, bool]:
        """Check the inputs; return float64 CPU tensors with a batch axis."""
        n, k = self.n, self.n_eq
        y = check_tensor("y", y, real=True)
        if y.ndim not in (1, 2) or y.shape[-1] != n:
            raise ValueError(
                f"y has shape {tuple(y.shape)}; expected ({n},) or (batch, {n})"
            )
        unbatched = y.ndim == 1
        batch = 1 if unbatched else y.shape[0]
        y64 = _cpu64(y).reshape(batch, n)
        check_finite("y", y64)
        if weight is None:
            w64 = torch.ones_like(y64)
        else:
            weight = check_tensor("weight", weight, real=True)
            if weight.shape not in (y.shape, (n,)):
                raise ValueError(
                    f"weight has shape {tuple(weight.shape)}; expected y's shape "
                    f"{tuple(y.shape)} or ({n},)"
                )
            w64 = _cpu64(weight).expand(batch, n)
            check_finite("weight", w64)
            if not bool((w64 > 0).all()):
                raise ValueError(
                    f"weight must be > 0 everywhere, got min {w64.min().item():.3g}; pass "
                    "1 / variance with the variance floored at a small positive value"
                )
        if k == 0:
            if G is not None or b is not None:
                raise ValueError(
                    "G/b given but this projection was built with n_eq=0; build it with "
                    "ConvexProjection(n, n_eq=G.shape[-2]) to keep G u = b"
                )
            return y64, w64, None, None, unbatched
        if G is None or b is None:
            raise ValueError(f"n_eq={k}: pass G of shape ({k}, {n}) and b of shape ({k},)")
        G = check_tensor("G", G, real=True)
        b = check_tensor("b", b, real=True)
        G_ok = [(k, n)] + ([] if unbatched else [(batch, k, n)])
        b_ok = [(k,)] + ([] if unbatched else [(batch, k)])
        if tuple(G.shape) not in G_ok:
            raise ValueError(
                f"G has shape {tuple(G.shape)}; expected "
                f"{' or '.join(str(s) for s in G_ok)} for y of shape {tuple(y.shape)}"
            )
        if tuple(b.shape) not in b_ok:
            raise ValueError(
                f"b has shape {tuple(b.shape)}; expected "
                f"{' or '.join(str(s) for s in b_ok)} for y of shape {tuple(y.shape)}"
            )
        G64, b64 = _cpu64(G), _cpu64(b)
        check_finite("G", G64)
        check_finite("b", b64)
        return y64, w64, G64, b64, unbatched

    def _violation(self, u: Tensor, y: Tensor, G: Tensor | None, b: Tensor | None
                   ) -> Tensor:
        """Largest constraint violation per row, relative to ``1 + |u| + |y| (+ |b|)``
        (NaN where ``u`` is not finite)."""
        lo, hi = self._lo, self._hi
        scale = 1.0 + u.abs().amax(-1) + y.abs().amax(-1)
        viol = torch.zeros(u.shape[0], dtype=u.dtype)
        if math.isfinite(lo):
            viol = torch.maximum(viol, (lo - u).amax(-1))
        if math.isfinite(hi):
            viol = torch.maximum(viol, (u - hi).amax(-1))
        if self.monotone is not None and self.n > 1:
            d = u.diff(dim=-1) if self.monotone == "increasing" else -u.diff(dim=-1)
            viol = torch.maximum(viol, -d.amin(-1))
        if G is not None and b is not None:
            viol = torch.maximum(viol, ((G @ u[..., None])[..., 0] - b).abs().amax(-1))
            scale = scale + b.abs().amax(-1)
        return viol / scale

    def _kkt_residual(self, u: Tensor, duals: dict[str, Tensor], y: Tensor, w: Tensor,
                      G: Tensor | None) -> Tensor:
        """Relative KKT residual of ``u`` with the solver's multipliers: the largest of
        stationarity ``|2 w (u - y) - a + c -+ D^T d + G^T nu|`` (signs by constraint)
        over the size of its terms ``s``, complementarity ``|lambda_k slack_k|`` over
        ``max s * max |terms of slack_k|``, and ``max(-lambda, 0)`` over ``max s``."""
        tiny = torch.finfo(u.dtype).tiny
        grad = 2 * w * (u - y)
        size = 2 * w * (u.abs() + y.abs())
        pairs = []  # (multipliers, slacks, size of the slacks' terms)
        if "lo" in duals:  # u >= lo: -a
            a = duals["lo"].detach()
            grad, size = grad - a, size + a.abs()
            pairs.append((a, u - self._lo, u.abs() + abs(self._lo)))
        if "hi" in duals:  # u <= hi: +c
            c = duals["hi"].detach()
            grad, size = grad + c, size + c.abs()
            pairs.append((c, self._hi - u, u.abs() + abs(self._hi)))
        if "order" in duals:  # diff(u) >= 0: -D^T d; diff(u) <= 0: +D^T d
            d = duals["order"].detach()
            sgn = 1.0 if self.monotone == "increasing" else -1.0
            pad = torch.nn.functional.pad
            grad = grad - sgn * (pad(d, (1, 0)) - pad(d, (0, 1)))
            size = size + pad(d.abs(), (1, 0)) + pad(d.abs(), (0, 1))
            pairs.append((d, sgn * u.diff(dim=-1), u.abs()[..., 1:] + u.abs()[..., :-1]))
        if "eq" in duals and G is not None:  # G u = b: +G^T nu
            nu = duals["eq"].detach()
            grad = grad + (nu.unsqueeze(-2) @ G).squeeze(-2)
            size = size + (nu.abs().unsqueeze(-2) @ G.abs()).squeeze(-2)
        smax = size.amax(-1).clamp_min(tiny)
        worst = grad.abs().amax(-1) / smax
        for lam, slack, terms in pairs:
            comp = (lam * slack).abs().amax(-1) / (smax * terms.amax(-1)).clamp_min(tiny)
            neg = (-lam).clamp_min(0).amax(-1) / smax
            worst = torch.maximum(worst, torch.maximum(comp, neg))
        return worst

    def _feasible(self, G: Tensor | None, b: Tensor | None) -> Callable[[int], bool]:
        """``feasible(i)``: whether row ``i``'s constraints admit any profile (an LP)."""
        n = self.n

        def feasible(i: int) -> bool:
            A_ub = None
            if self.monotone is not None and n > 1:
                D = np.diff(np.eye(n), axis=0)  # (D u)_i = u_{i+1} - u_i
                A_ub = -D if self.monotone == "increasing" else D
            Gi, bi = _row(G, i, 3), _row(b, i, 2)
            return _lp_feasible(A_ub, None if A_ub is None else np.zeros(n - 1),
                                None if Gi is None else Gi.numpy(),
                                None if bi is None else bi.numpy(), n, (self._lo, self._hi))
        return feasible

    # ------------------------------------------------------------------- solving
    def _solve(
        self,
        sw: Tensor,
        swy: Tensor,
        G: Tensor | None,
        b: Tensor | None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """``(u, multipliers)``: the multipliers by constraint (``lo``, ``hi``, ``order``,
        ``eq``; those present)."""
        params = [sw, swy] + ([] if G is None else [G, b])
        with warnings.catch_warnings():
            # diffcp calls np.array() on torch tensors; NumPy 2 then warns about the
            # copy keyword of Tensor.__array__ (harmless: a copy is what it wants).
            warnings.filterwarnings("ignore", message=".*__array__ implementation.*")
            u, *duals = self._layer(*params,  # type: ignore[misc]
                                    solver_args=dict(self.solver_args))
        return u, dict(zip(_dual_names(self), duals))

    def _polish_row(
        self, u0: np.ndarray, y: Tensor, w: Tensor, G: Tensor | None, b: Tensor | None
    ) -> Tensor | None:
        """The exact projection, found from the face ``u0`` suggests; ``None`` if none is."""
        flip = self.monotone == "decreasing"
        if flip:  # a decreasing profile read backwards is increasing
            u0 = u0[::-1].copy()
            y, w = y.flip(0), w.flip(0)
            G = None if G is None else G.flip(-1)
        chain = self.monotone is not None
        # starting faces: read off u0 at a few thresholds (relative to the solution's own
        # size: it may be far smaller than y), then the face of no active inequality
        scale = float(np.abs(u0).max())
        starts = [_face_of(u0, self._lo, self._hi, chain, r * scale) for r in _ACTIVE_RTOLS]
        starts.append((np.ones(self.n - 1, dtype=bool), np.zeros(self.n, dtype=np.int64)))
        for face in starts:
            u = _polish(y, w, G, b, face, self._lo, self._hi, chain)
            if u is not None:
                return u.flip(0) if flip else u
        return None


def _row(t: Tensor | None, i: int, batched_ndim: int) -> Tensor | None:
    """Row ``i`` of a batched ``G`` or ``b``; a shared one as is."""
    return t[i] if t is not None and t.ndim == batched_ndim else t


def _cpu64(t: Tensor) -> Tensor:
    return t.to(device="cpu", dtype=torch.float64)


def _dual_names(p: ConvexProjection) -> list[str]:
    """The constraints of :func:`_make_layer`, in order, by name."""
    return [name for name, on in (("lo", math.isfinite(p._lo)), ("hi", math.isfinite(p._hi)),
                                  ("order", p.monotone is not None and p.n > 1),
                                  ("eq", p.n_eq > 0)) if on]


def _make_layer(p: ConvexProjection) -> CvxpyLayer:
    """The DPP-parametrised problem: parameters sw = sqrt(w), swy = sqrt(w) * y, G, b."""
    cp, layer_cls = _cvxpy()
    u = cp.Variable(p.n)
    sw = cp.Parameter(p.n, nonneg=True)
    swy = cp.Parameter(p.n)
    params: list[Any] = [sw, swy]  # cvxpy Parameters
    cons: list[Any] = []  # cvxpy Constraints
    if math.isfinite(p._lo):
        cons.append(u >= p._lo)
    if math.isfinite(p._hi):
        cons.append(u <= p._hi)
    if p.monotone is not None and p.n > 1:
        cons.append(cp.diff(u) >= 0 if p.monotone == "increasing" else cp.diff(u) <= 0)
    if p.n_eq > 0:
        G = cp.Parameter((p.n_eq, p.n))
        b = cp.Parameter(p.n_eq)
        params += [G, b]
        cons.append(G @ u == b)
    # multiply(parameter, variable) - parameter is affine in u and parameter-affine, so
    # the problem is DPP: cvxpylayers canonicalises it once, not at every call.
    problem = cp.Problem(cp.Minimize(cp.sum_squares(cp.multiply(sw, u) - swy)), cons)
    # the multipliers come back too: the KKT residual of an unpolished answer needs them
    duals = [con.dual_variables[0] for con in cons]
    return layer_cls(problem, parameters=params, variables=[u, *duals])


def _face_of(
    u0: np.ndarray, lo: float, hi: float, chain: bool, tau: float
) -> tuple[np.ndarray, np.ndarray]:
    """The face near ``u0``: ``brk`` (n - 1 bools: a run ends at i) and ``pin`` per entry.

    With an order constraint, neighbours closer than ``tau`` share a run (their link
    ``u_i <= u_{i+1}`` is active); without, every entry is its own run. ``pin`` is 1 for
    runs within ``tau`` of ``lo``, 2 for runs within ``tau`` of ``hi``, else 0 (free).
    """
    brk = np.diff(u0) > tau if chain else np.ones(u0.shape[0] - 1, dtype=bool)
    label = np.concatenate([[0], np.cumsum(brk)])
    mean = (np.bincount(label, u0) / np.bincount(label))[label]
    return brk, np.where(mean <= lo + tau, 1, np.where(mean >= hi - tau, 2, 0))


def _polish(
    y: Tensor,
    w: Tensor,
    G: Tensor | None,
    b: Tensor | None,
    face: tuple[np.ndarray, np.ndarray],
    lo: float,
    hi: float,
    chain: bool,
) -> Tensor | None:
    """Solve on a face, certify, and move to a better face until certified.

    The moves are those of a primal-dual active-set method: pin a run that leaves its
    bounds, merge two runs that leave the order, release a pinned run or split a run
    where its multiplier has the wrong sign. From an interior-point guess one or two
    moves suffice; the certificate, not the moves, guarantees the answer.
    """
    seen: set[bytes] = set()
    for _ in range(_MAX_MOVES):
        brk, pin = face
        key = brk.tobytes() + pin.tobytes()
        if key in seen:  # a cycle: give up, keep the interior-point answer
            return None
        seen.add(key)
        label = np.concatenate([[0], np.cumsum(brk)])
        starts = np.concatenate([[0], np.flatnonzero(brk) + 1])
        kind = pin[starts]
        solved = _solve_face(y, w, G, b, label, kind, lo, hi)
        if solved is None:
            return None
        u, g, size = solved
        ok, moved = _kkt_moves(u.detach().numpy(), g, size, label, starts, kind, lo, hi, chain)
        if ok:
            return u
        if moved is None:
            return None
        face = moved
    return None


def _solve_face(
    y: Tensor,
    w: Tensor,
    G: Tensor | None,
    b: Tensor | None,
    label: np.ndarray,
    kind: np.ndarray,
    lo: float,
    hi: float,
) -> tuple[Tensor, np.ndarray, np.ndarray] | None:
    """The projection onto the affine hull of a face, differentiably; ``(u, g, size)``.

    On the face, free run ``j`` takes one value ``theta_j`` and pinned runs sit at their
    bound (``f``). Minimising ``sum w (u - y)^2`` subject to ``G u = b`` gives

        theta = theta0 + D^-1 P^T G^T nu,   (G P D^-1 P^T G^T) nu = b - G f - G P theta0,

    with ``P`` the indicator matrix of free runs, ``D = P^T w`` and ``theta0`` the
    weighted run means of ``y``. ``g = W (u - y) - G^T nu`` (the multipliers' side of
    stationarity) and the size of its terms, ``|W y| + |W u| + |G^T nu|`` (its rounding
    level), come back for the certificate. ``None`` when the face leaves ``G u = b`` no
    freedom.
    """
    nb = kind.shape[0]
    lab = torch.from_numpy(label)
    free = torch.from_numpy(kind[label] == 0)
    f = torch.from_numpy(np.where(kind == 1, lo, np.where(kind == 2, hi, 0.0))[label])
    wf = torch.where(free, w, torch.zeros_like(w))
    D = torch.zeros(nb, dtype=w.dtype).index_add(0, lab, wf)
    D = torch.where(torch.from_numpy(kind == 0), D, torch.ones_like(D))
    theta = torch.zeros(nb, dtype=w.dtype).index_add(0, lab, wf * y) / D
    Gtnu = torch.zeros_like(y)
    if G is not None and b is not None:
        GP = torch.zeros(G.shape[0], nb, dtype=G.dtype).index_add(
            1, lab, torch.where(free, G, torch.zeros_like(G))
        )
        S = (GP / D) @ GP.T
        with torch.no_grad():
            ev = torch.linalg.eigvalsh(S)
        if not ev[0] > 1e-12 * ev[-1]:
            return None
        nu = torch.linalg.solve(S, b - G @ f - GP @ theta)
        theta = theta + (GP.T @ nu) / D
        Gtnu = G.T @ nu
    u = torch.where(free, theta[lab], f)
    with torch.no_grad():
        g = w * (u - y) - Gtnu
        size = (w * y).abs() + (w * u).abs() + Gtnu.abs()
        if G is not None and b is not None:
            res = float((G @ u - b).abs().max())
            if not res <= _KKT_RTOL * (1.0 + float(b.abs().max())):
                return None
    return u, g.numpy(), size.numpy()


def _kkt_moves(
    u: np.ndarray,
    g: np.ndarray,
    size: np.ndarray,
    label: np.ndarray,
    starts: np.ndarray,
    kind: np.ndarray,
    lo: float,
    hi: float,
    chain: bool,
) -> tuple[bool, tuple[np.ndarray, np.ndarray] | None]:
    """``(True, None)`` if ``u`` is the projection (KKT certificate); else a better face.

    Stationarity ``g = sum_k lambda_k a_k`` over the active inequalities ``a_k^T u >= c_k``
    needs ``lambda >= 0``. Take zero multipliers on the links between runs; inside a run
    ``[s, e]`` the link multipliers are then minus the prefix sums
    ``P_i = g_s + ... + g_i`` and the bound multipliers absorb the rest, so: free run:
    ``P_i <= 0`` (``P_e = 0`` by construction); run at ``hi``: ``P_i <= 0``; run at
    ``lo``: every suffix sum ``g_i + ... + g_e >= 0``; a run at ``lo == hi``: nothing.
    Entries without an order constraint are runs of length 1. With primal feasibility
    these conditions are sufficient for optimality. Each partial sum is tested against
    ``_KKT_RTOL`` times the sum of its terms' sizes, so a violation of the tolerance is a
    relative error of ``_KKT_RTOL`` in ``u`` whatever the weights. ``(False, None)``: no
    move left.
    """
    n = u.shape[0]
    if not np.isfinite(u).all():
        return False, None
    ptol = _KKT_RTOL * float(np.abs(u).max())
    ends = np.concatenate([starts[1:], [n]]) - 1
    theta = u[starts]
    brk = np.zeros(n - 1, dtype=bool)
    brk[ends[:-1]] = True
    pin = kind[label].copy()
    # primal moves first: pin runs that leave the bounds, merge runs that leave the order
    low = (kind == 0) & (theta < lo - ptol)
    high = (kind == 0) & (theta > hi + ptol)
    links = np.flatnonzero(theta[1:] < theta[:-1] - ptol) if chain else np.zeros(0, int)
    if low.any() or high.any() or links.size:
        pin[low[label]] = 1
        pin[high[label]] = 2
        for j in links:
            brk[ends[j]] = False
            both = (label == j) | (label == j + 1)
            if not (kind[j] == kind[j + 1] != 0):
                pin[both] = 0
        return False, (brk, pin)
    # dual moves: release or split a run where a multiplier is negative
    prefix, suffix = _run_sums(g, label, starts, ends)
    tol_p, tol_s = (_KKT_RTOL * t for t in _run_sums(size, label, starts, ends))
    k = kind[label]
    inner = np.ones(n, dtype=bool)
    inner[ends] = False
    bad = np.where(
        k == 1, (suffix < -tol_s) & (lo != hi), (prefix > tol_p) & (inner | (k == 2))
    )
    if not bad.any():
        return True, None
    for j in np.unique(label[bad]):
        s, e = starts[j], ends[j]
        if kind[j] == 1:  # the tail [i, e] wants to rise off lo
            i = s + int(np.argmin(suffix[s : e + 1]))
            if i > s:
                brk[i - 1] = True
            pin[i : e + 1] = 0
        else:  # the head [s, i] wants to drop (off hi, or below the rest of the run)
            i = s + int(np.argmax(np.where(bad[s : e + 1], prefix[s : e + 1], -np.inf)))
            if i < e:
                brk[i] = True
            pin[s : i + 1] = 0
    return False, (brk, pin)


def _run_sums(
    v: np.ndarray, label: np.ndarray, starts: np.ndarray, ends: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Sums of ``v`` within each run: from the run's start to i, and from i to its end."""
    cs = np.cumsum(v)
    prefix = cs - np.concatenate([[0.0], cs])[starts][label]
    return prefix, prefix[ends][label] - prefix + v


@functools.lru_cache(maxsize=32)
def _cached(
    n: int,
    nonneg: bool,
    monotone: str | None,
    n_eq: int,
    lower: float | None,
    upper: float | None,
    solver_args: tuple[tuple[str, Any], ...] | None,
) -> ConvexProjection:
    return ConvexProjection(
        n, nonneg=nonneg, monotone=monotone, n_eq=n_eq, lower=lower, upper=upper,
        solver_args=None if solver_args is None else dict(solver_args),
    )


def project_convex(
    y: Tensor,
    *,
    weight: Tensor | None = None,
    nonneg: bool = True,
    monotone: str | None = None,
    G: Tensor | None = None,
    b: Tensor | None = None,
    lower: float | None = None,
    upper: float | None = None,
    solver_args: Mapping[str, Any] | None = None,
    throw: bool = False,
) -> ConvexResult:
    """Functional form of :class:`ConvexProjection` (layers are cached by their settings).

    ``n`` is read from ``y`` and ``n_eq`` from ``G``; a ``G`` of shape ``(n,)`` is one
    row, and then ``b`` may be a scalar or hold one value per profile.
    Equivalent to ``np.maximum(y, 0)`` (NNLS post-processing) with the defaults.

    Returns a :class:`~sciml.constraints.ConvexResult` (``.solution`` is ``u``);
    ``throw=True`` raises :class:`~sciml.constraints.ConvexError` on a status other than
    ``CONVERGED``.

    Example::

        u = project_convex(mu, weight=1 / var, monotone="decreasing", G=G, b=mass).solution
    """
    y, weight, G, b = as_tensors(y, weight, G, b)  # numpy arrays and numbers as tensors
    y = check_tensor("y", y, min_ndim=1, real=True)
    throw = check_bool("throw", throw)
    if solver_args is not None and not isinstance(solver_args, Mapping):
        raise TypeError(f"solver_args must be a dict of Clarabel settings or None, "
                        f"got {type(solver_args).__name__}")
    if G is not None:
        G = check_tensor("G", G, min_ndim=1, real=True)
        if G.ndim == 1:  # one constraint row: b may be a scalar or one value per profile
            G = G.unsqueeze(0)
            if isinstance(b, Tensor) and b.ndim == 0:
                b = b.reshape(1)
            elif isinstance(b, Tensor) and y.ndim == 2 and b.shape == (y.shape[0],):
                b = b.unsqueeze(-1)
    n_eq = 0 if G is None else int(G.shape[-2])
    args = None if solver_args is None else tuple(sorted(solver_args.items()))
    layer = _cached(int(y.shape[-1]), nonneg, monotone, n_eq, lower, upper, args)
    return layer(y, weight, G, b, throw=throw)
