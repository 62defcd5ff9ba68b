"""Hard constraints for linear PDEs as a convex layer: constrained ridge least squares.

For a *linear* PDE the hard-constraint problem of :mod:`sciml.constraints.hard` is
convex: with ``N`` basis functions the residual is ``r(c) = A c - b``, where the rows of
``A`` are the PDE operator applied to each basis function at collocation points plus
initial/boundary rows. Being convex, it can take constraints Levenberg-Marquardt
cannot::

    c* = argmin_c  1/2 |A c - b|^2 + ridge/2 |c|^2   s.t.   G c <= h,   E c = f

e.g. bounds ``u = Phi c >= 0`` at chosen points (``G = -Phi``, ``h = 0``), monotone
profiles, or conserved quantities. Gradients flow to ``A, b, G, h, E, f``.

How it is computed:

1. A DPP-parametrised cvxpy problem, built once, is solved per sample by
   :class:`cvxpylayers.torch.CvxpyLayer` (Agrawal et al. 2019) with the Clarabel
   interior-point method (through diffcp, on the CPU, in float64).
2. *Polishing* (as in OSQP, Stellato et al. 2020). An interior-point answer is only
   1e-7..1e-5 accurate here (the squared norm becomes a second-order cone). The active
   set is read off its primal slacks and duals (active where ``lambda_i > slack_i``), and the
   KKT system of that face, ``[H, G_a^T, E^T; G_a, 0, 0; E, 0, 0] [c; lambda_a; nu] =
   [A^T b; h_a; f]`` with ``H = A^T A + ridge I``, is solved densely in torch. The result
   is kept only if it passes a KKT certificate (linear-solve residual, primal
   feasibility, ``lambda_a >= 0``); it is then exact to rounding, and autograd through
   the dense solve is the exact derivative wherever the active set is locally constant
   (strict complementarity). A sample that is not certified keeps the cvxpylayers
   solution and its implicit (diffcp) derivative. With no inequality rows the KKT system
   *is* the answer (an equality-constrained ridge regression), so the conic solve is
   skipped unless the KKT matrix is singular.

References: Chalapathi, Du, Krishnapriyan, *Scaling physics-informed hard constraints
with mixture-of-experts*, ICLR 2024. Agrawal et al., *Differentiable convex optimization
layers*, NeurIPS 2019. Stellato et al., *OSQP*, 2020 (solution polishing).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import KW_ONLY, dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from .._frozen import frozen_settings
from .._validation import as_tensors, check_bool, check_finite, check_int, check_tensor
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

__all__ = ["ConvexHardConstraint"]

_ACTIVE_RTOL = 1e-6  # second guess at the active set: slack below this times the scale
_NAMES = ("A", "b", "G", "h", "E", "f")


@frozen_settings()
@dataclass(frozen=True, eq=False)
class ConvexHardConstraint(_RebuiltOnLoad):
    """Differentiable constrained ridge least squares for basis coefficients (cvxpylayers).

    Solves, independently for each sample of a batch,

    .. math::

        c^\\star = \\arg\\min_c \\tfrac12 \\|A c - b\\|^2 + \\tfrac{\\lambda}{2}\\|c\\|^2
        \\quad \\text{s.t.} \\quad G c \\le h, \\ \\ E c = f,

    each constraint present only if ``n_ineq > 0`` / ``n_eq > 0``. See the module
    docstring for the method (Clarabel through cvxpylayers, then a certified KKT polish).

    Which tool: use this layer for *linear* residuals with inequality constraints or
    other convex sets (bounds, positivity, monotonicity), at the cost of one conic solve
    per sample on the CPU. Use :class:`~sciml.constraints.HardConstraint`
    (Levenberg-Marquardt) for nonlinear residuals, and for speed (batched dense float64
    solves on CPU or GPU, small ``N``). For a linear problem without constraints both give
    the same answer (LM in one to a few damped steps; here a closed-form KKT solve).

    Accuracy: polished answers (the default; always for ``n_ineq == 0``) pass a KKT
    certificate at 1e-9 relative and are in practice exact to rounding times the
    problem's conditioning, with the exact derivative of the solution map (1e-10 from
    :class:`~sciml.constraints.HardConstraint` in values and gradients on a heat-equation
    system with ``cond(A^T A + ridge I) ~ 1e6``). Unpolished ones (``polish=False``, or a
    sample whose certificate fails, e.g. degenerate active constraints) are the
    interior-point solution, 1e-7..1e-5 relative depending on conditioning (2e-6 on
    that system), with diffcp's derivative about as accurate (4e-6 there).

    Equivalent to ``scipy.optimize.lsq_linear`` on ``[A; sqrt(ridge) I] c ~ [b; 0]``
    when ``G = [I; -I]`` encodes bounds on ``c``.

    Args:
        n_rows: ``R``, residual rows (PDE, initial and boundary rows together).
        n_coeffs: ``N``, basis coefficients.
        ridge: ``lambda >= 0``; a small ridge keeps nearly dependent bases well posed.
        n_ineq: rows of ``G`` (0: no inequality constraint).
        n_eq: rows of ``E`` (0: no equality constraint), at most ``n_coeffs``.
        solver_args: extra Clarabel settings for diffcp, overriding the tight defaults of
            :mod:`sciml.constraints.convex` (e.g. ``{"max_iter": 500}``).
        polish: certify and polish the interior-point answer (see above).

    The settings are read-only: assigning one raises ``AttributeError`` (build a new
    layer, or ``dataclasses.replace(layer, ridge=...)``).

    Call ``layer(A, b, G=None, h=None, E=None, f=None, *, throw=False)`` with ``A``
    ``(B, R, N)`` or ``(R, N)``, ``b`` ``(B, R)`` or ``(R,)``, ``G`` ``([B,] n_ineq, N)``,
    ``h`` ``([B,] n_ineq)``, ``E`` ``([B,] n_eq, N)``, ``f`` ``([B,] n_eq)``; an unbatched
    argument is shared by the batch. Returns a :class:`~sciml.constraints.ConvexResult`:
    ``solution`` (alias ``coeffs``) ``c*`` ``(B, N)`` (``(N,)`` if every argument is
    unbatched) in float64 on ``A``'s device, differentiable; ``status`` (a
    :class:`~sciml.constraints.ConvexStatus` measured on the answer: KKT certificate of
    the polish, or constraint violation within 1e-6 and KKT residual within 1e-5 of the
    interior-point answer; ``INFEASIBLE`` when a linear program confirms that no ``c``
    meets ``G c <= h, E c = f``, ``MAX_ITER`` when the solver stopped short, e.g. a small
    ``solver_args["max_iter"]``), ``stats`` and ``converged``.

    Raises:
        ValueError: bad settings; wrong shapes, missing or unexpected ``G/h/E/f``,
            non-finite values.
        TypeError: a non-tensor or non-real-floating argument.
        ConvexError: ``throw=True`` and a status other than ``CONVERGED`` (raised before
            any differentiable re-solve).
    """

    n_rows: int
    n_coeffs: int
    _: KW_ONLY
    ridge: float = 1e-8
    n_ineq: int = 0
    n_eq: int = 0
    solver_args: Mapping[str, Any] | None = None
    polish: bool = True
    _layer: CvxpyLayer = field(init=False, repr=False)

    def __post_init__(self) -> None:
        check_int("n_rows", self.n_rows, minimum=1)
        check_int("n_coeffs", self.n_coeffs, minimum=1)
        check_int("n_ineq", self.n_ineq, minimum=0)
        check_int("n_eq", self.n_eq, minimum=0)
        if self.n_eq > self.n_coeffs:
            raise ValueError(f"n_eq={self.n_eq} equality rows on n_coeffs={self.n_coeffs} "
                             "unknowns over-determine c; use n_eq <= n_coeffs")
        r = self.ridge
        if isinstance(r, bool) or not isinstance(r, (int, float)) or not (
                math.isfinite(r) and r >= 0):
            raise ValueError(f"ridge must be a finite number >= 0, got {r!r}; "
                             "a typical value is 1e-8")
        if not isinstance(self.polish, bool):
            raise TypeError(f"polish must be True or False, got {self.polish!r}")
        if self.solver_args is not None and not isinstance(self.solver_args, Mapping):
            raise TypeError(f"solver_args must be a dict of Clarabel settings or None, "
                            f"got {type(self.solver_args).__name__}")
        object.__setattr__(self, "ridge", float(r))
        # diffcp's default derivative (LSQR) was only ~1e-4 accurate on a heat-equation
        # system; a dense factorisation of its (small) derivative system gives ~1e-6.
        args = {**_SOLVER_ARGS, "mode": "dense", **(self.solver_args or {})}
        object.__setattr__(self, "solver_args", args)
        self._build()

    def _build(self) -> None:
        object.__setattr__(self, "_layer", self._make_layer())

    def _make_layer(self) -> CvxpyLayer:
        """The DPP problem: ``A @ c`` is parameter times variable, so cvxpy canonicalises
        it once and each call only refills the parameters (cvxpy is imported here, on
        first use, not with the module)."""
        cp, layer_cls = _cvxpy()
        N = self.n_coeffs
        c = cp.Variable(N)
        A, b = cp.Parameter((self.n_rows, N)), cp.Parameter(self.n_rows)
        objective = 0.5 * cp.sum_squares(A @ c - b)
        if self.ridge > 0:
            objective = objective + 0.5 * self.ridge * cp.sum_squares(c)
        params, cons, out = [A, b], [], [c]
        if self.n_ineq:
            G, h = cp.Parameter((self.n_ineq, N)), cp.Parameter(self.n_ineq)
            params += [G, h]
            cons.append(G @ c <= h)
            out.append(cons[-1].dual_variables[0])  # lambda >= 0, to read the active set
        if self.n_eq:
            E, f = cp.Parameter((self.n_eq, N)), cp.Parameter(self.n_eq)
            params += [E, f]
            cons.append(E @ c == f)
            out.append(cons[-1].dual_variables[0])  # nu, for the KKT residual
        return layer_cls(cp.Problem(cp.Minimize(objective), cons), parameters=params,
                         variables=out)

    def __call__(self, A: Tensor, b: Tensor, G: Tensor | None = None,
                 h: Tensor | None = None, E: Tensor | None = None,
                 f: Tensor | None = None, *, throw: bool = False) -> ConvexResult:
        throw = check_bool("throw", throw)
        data, unbatched, device = self._prepare(A, b, G, h, E, f)
        B, N = data[0].shape[0], self.n_coeffs
        c = torch.zeros(B, N, dtype=torch.float64)
        polished = torch.zeros(B, dtype=torch.bool)
        kkt = torch.full((B,), math.nan, dtype=torch.float64)
        needs_grad = torch.is_grad_enabled() and any(
            isinstance(x, Tensor) and x.requires_grad for x in (A, b, G, h, E, f))
        ipm = None
        if self.polish:
            guesses: list[Tensor | None] = [None]
            if self.n_ineq and B:
                with torch.no_grad():
                    ipm = self._solve(data)
                    slack = self._slack(ipm[0], data)
                guesses = [ipm[1] > slack,
                           slack <= _ACTIVE_RTOL * _scale(ipm[0], data)[:, None]]
            for active in guesses if B else []:
                c_p, ok = self._kkt(data, active)
                c = torch.where((ok & ~polished)[:, None], c_p, c)
                polished = polished | ok
        idx = (~polished).nonzero()[:, 0]
        if idx.numel():  # the interior-point answer, with diffcp's derivative if wanted
            sub = [d[idx] for d in data]
            if ipm is None:
                with torch.set_grad_enabled(needs_grad):
                    ipm_i = self._solve(sub)
            else:
                ipm_i = tuple(None if t is None else t[idx] for t in ipm)
            c = c.index_put((idx,), ipm_i[0])
            kkt[idx] = self._kkt_residual(ipm_i[0].detach(), ipm_i[1], ipm_i[2],
                                          [d.detach() for d in sub])
        with torch.no_grad():
            cd = c.detach()
            finite = torch.isfinite(cd).all(-1)
            violation = self._violation(cd, [d.detach() for d in data])
            codes = _codes(finite, polished, violation, kkt, self._feasible(data))
        if throw and bool((codes != 0).any()):
            _raise(codes, violation, kkt, "sample(s)")
        redo = (~polished & (codes == 0)).nonzero()[:, 0]
        if needs_grad and ipm is not None and redo.numel():
            # the status is known: solve the converged rows again, differentiably
            c = c.index_put((redo,), self._solve([d[redo] for d in data])[0])
        return _result((c[0] if unbatched else c).to(device), codes, violation, kkt,
                       polished)

    def _feasible(self, data: list[Tensor]) -> Callable[[int], bool]:
        """``feasible(i)``: whether row ``i``'s constraints admit any ``c`` (an LP)."""
        def feasible(i: int) -> bool:
            d = [x[i].detach().numpy() for x in data]
            G, h = (d[2], d[3]) if self.n_ineq else (None, None)
            E, f = (d[-2], d[-1]) if self.n_eq else (None, None)
            return _lp_feasible(G, h, E, f, self.n_coeffs)
        return feasible

    # ---------------------------------------------------------------- validation
    def _prepare(self, *args: Tensor | None) -> tuple[list[Tensor], bool, torch.device]:
        """Check the arguments; return float64 CPU tensors expanded to one batch size.

        numpy arrays are taken at float64 (the solve's precision) on the first tensor's
        device."""
        ref = next((x for x in args if isinstance(x, Tensor)), None)
        f64 = torch.empty(0, dtype=torch.float64, device=None if ref is None else ref.device)
        args = tuple(as_tensors(*args, like=f64))
        R, N, m, p = self.n_rows, self.n_coeffs, self.n_ineq, self.n_eq
        shapes = {"A": (R, N), "b": (R,), "G": (m, N), "h": (m,), "E": (p, N), "f": (p,)}
        fixes = {"A": "n_rows={0}, n_coeffs={1}", "b": "n_rows={0}",
                 "G": "n_ineq={0}, n_coeffs={1}", "h": "n_ineq={0}",
                 "E": "n_eq={0}, n_coeffs={1}", "f": "n_eq={0}"}
        for name, x in zip(_NAMES, args):
            used = name in "Ab" or (m if name in "Gh" else p) > 0
            if used and x is None:
                raise ValueError(f"{name} is missing: the layer was built with n_ineq={m}, "
                                 f"n_eq={p}; pass G ({m}, {N}), h ({m},), E ({p}, {N}) "
                                 f"and f ({p},) as those settings require")
            if not used and x is not None:
                key = "n_ineq" if name in "Gh" else "n_eq"
                raise ValueError(f"{name} was given but the layer was built with {key}=0; "
                                 f"build ConvexHardConstraint(..., {key}={name}.shape[-"
                                 f"{2 if name in 'GE' else 1}]) to use it")
        named = [(n, x) for n, x in zip(_NAMES, args) if x is not None]
        batch, where = None, ""
        for name, x in named:
            x = check_tensor(name, x, real=True)
            want = shapes[name]
            if x.ndim not in (len(want), len(want) + 1) or tuple(x.shape[-len(want):]) != want:
                got = tuple(x.shape[-len(want):]) if x.ndim >= len(want) else ("?", "?")
                raise ValueError(f"{name} has shape {tuple(x.shape)} but the layer was built "
                                 f"for {want} (or batched (B, *{want})); build "
                                 f"ConvexHardConstraint(..., {fixes[name].format(*got)}) "
                                 f"for this {name}")
            if x.ndim > len(want):
                if batch is not None and x.shape[0] != batch:
                    raise ValueError(f"{name} has batch size {x.shape[0]} but {where} has "
                                     f"{batch}; batched arguments must share dim 0")
                batch, where = x.shape[0], name
        out = []
        for name, x in named:
            x64 = x.to(device="cpu", dtype=torch.float64)
            check_finite(name, x64)
            out.append(x64 if x.ndim > len(shapes[name])
                       else x64.expand(1 if batch is None else batch, *x64.shape))
        return out, batch is None, args[0].device  # type: ignore[union-attr]

    def _violation(self, c: Tensor, data: list[Tensor]) -> Tensor:
        """Largest violation of ``G c <= h`` and ``E c = f`` per row, relative to the size
        of the terms (0 without constraints; NaN where ``c`` is not finite)."""
        viol = torch.zeros(c.shape[0], dtype=c.dtype)
        if self.n_ineq:
            viol = torch.maximum(viol, (-self._slack(c, data)).amax(-1))
        if self.n_eq:
            E, f = data[-2:]
            viol = torch.maximum(viol, ((E @ c[..., None])[..., 0] - f).abs().amax(-1))
        return viol / _scale(c, data)

    def _kkt_residual(self, c: Tensor, lam: Tensor | None, nu: Tensor | None,
                      data: list[Tensor]) -> Tensor:
        """Relative KKT residual of ``(c, lambda, nu)``: the largest of stationarity
        ``|H c - A^T b + G^T lambda + E^T nu|``, complementarity ``|lambda_i slack_i|``
        and ``max(-lambda, 0)``: stationarity over the size ``s`` of its terms,
        complementarity over ``max s * max (|G| |c| + |h|)``, ``-lambda`` over ``max s``."""
        tiny = torch.finfo(c.dtype).tiny
        A, b = data[:2]
        At, cv = A.transpose(-1, -2), c[..., None]
        grad = (At @ (A @ cv) - At @ b[..., None])[..., 0] + self.ridge * c
        size = (At.abs() @ (A.abs() @ cv.abs()) + At.abs() @ b.abs()[..., None])[..., 0]
        size = size + self.ridge * c.abs()
        pair = None
        if self.n_ineq and lam is not None:
            G, h = data[2:4]
            lam = lam.detach()
            grad = grad + (G.transpose(-1, -2) @ lam[..., None])[..., 0]
            size = size + (G.abs().transpose(-1, -2) @ lam.abs()[..., None])[..., 0]
            pair = (lam, (G.abs() @ cv.abs())[..., 0] + h.abs())
        if self.n_eq and nu is not None:
            E = data[-2]
            nu = nu.detach()
            grad = grad + (E.transpose(-1, -2) @ nu[..., None])[..., 0]
            size = size + (E.abs().transpose(-1, -2) @ nu.abs()[..., None])[..., 0]
        smax = size.amax(-1).clamp_min(tiny)
        worst = grad.abs().amax(-1) / smax
        if pair is not None:
            lam, terms = pair
            comp = (lam * self._slack(c, data)).abs().amax(-1)
            worst = torch.maximum(worst, comp / (smax * terms.amax(-1)).clamp_min(tiny))
            worst = torch.maximum(worst, (-lam).clamp_min(0).amax(-1) / smax)
        return worst

    # ------------------------------------------------------------------- solving
    def _solve(self, data: list[Tensor]) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """``(c, lambda, nu)`` from Clarabel (``None`` for an absent constraint)."""
        with warnings.catch_warnings():
            # diffcp calls np.array() on torch tensors; NumPy 2 then warns about the
            # copy keyword of Tensor.__array__ (harmless: a copy is what it wants).
            warnings.filterwarnings("ignore", message=".*__array__ implementation.*")
            args = dict(self.solver_args)  # type: ignore[arg-type]
            if not (torch.is_grad_enabled() and any(d.requires_grad for d in data)):
                args.pop("mode", None)  # diffcp's solve-only path hands it to Clarabel
            out = self._layer(*data, solver_args=args)
        lam = out[1] if self.n_ineq else None
        nu = out[-1] if self.n_eq else None
        return out[0], lam, nu

    def _slack(self, c: Tensor, data: list[Tensor]) -> Tensor:
        G, h = data[2], data[3]
        return h - (G @ c[..., None])[..., 0]

    def _kkt(self, data: list[Tensor], active: Tensor | None) -> tuple[Tensor, Tensor]:
        """Solve the KKT system of the face ``active`` for the whole batch; certify it.

        One square system for every sample: inactive inequality ``i`` contributes the row
        ``lambda_i = 0`` instead of ``G_i c = h_i``, so faces of different sizes batch.
        Returns ``(c, certified (B,))``.
        """
        A, b = data[:2]
        B, N, m, p = A.shape[0], self.n_coeffs, self.n_ineq, self.n_eq
        At = A.transpose(-1, -2)
        eye = torch.eye(N, dtype=A.dtype)
        top, rhs = [At @ A + self.ridge * eye], [(At @ b[..., None])[..., 0]]
        rows = []
        if m:
            G, h = data[2:4]
            d = active.to(A.dtype)
            top.append(G.transpose(-1, -2))
            rows.append(torch.cat([d[..., None] * G, torch.diag_embed(1 - d)]
                                  + ([G.new_zeros(B, m, p)] if p else []), -1))
            rhs.append(d * h)
        if p:
            E, f = data[-2:]
            top.append(E.transpose(-1, -2))
            rows.append(torch.cat([E, E.new_zeros(B, p, m + p)], -1))
            rhs.append(f)
        K = torch.cat([torch.cat(top, -1), *rows], -2)
        r = torch.cat(rhs, -1)
        x, info = torch.linalg.solve_ex(K, r[..., None])
        x = x[..., 0]
        with torch.no_grad():
            # certificate: the linear solve (stationarity, active rows, E c = f) to
            # rounding, then feasibility of the inactive rows and lambda_a >= 0
            res = (K @ x[..., None])[..., 0] - r
            size = (K.abs() @ x.abs()[..., None])[..., 0] + r.abs()
            ok = (info == 0) & (res.abs() <= _KKT_RTOL * size.amax(-1, keepdim=True)).all(-1)
            if m:
                lam = x[:, N:N + m]
                tol = _KKT_RTOL * _scale(x[:, :N], data)[:, None]
                ok &= (self._slack(x[:, :N], data) >= -tol).all(-1)
                ok &= (lam >= -_KKT_RTOL * (1 + lam.abs().amax(-1, keepdim=True))).all(-1)
        return x[:, :N], ok


def _scale(c: Tensor, data: list[Tensor]) -> Tensor:
    """Size of the constraint terms ``|G| |c| + |h|`` (and ``E``, ``f``), for tolerances."""
    s = 1.0 + c.abs().amax(-1)
    for M, v in zip(data[2::2], data[3::2]):
        s = s + M.abs().amax((-1, -2)) * c.abs().amax(-1) + v.abs().amax(-1)
    return s
