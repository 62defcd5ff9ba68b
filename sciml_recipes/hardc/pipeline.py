"""Hard-constrained basis networks on 1D diffusion-sorption (Chalapathi et al., ICLR 2024).

A network maps ``(x, tau, u0)`` to ``N`` basis functions (``tau = t / T``, ``u0`` the
sample's constant initial state, PDEBench's family). The prediction is
``u = sum_i c_i phi_i``, and the four methods differ only in where ``c`` comes from:

* ``"soft"``: ``c`` is a trained linear head (with a bias): a PINN whose loss is the
  residual penalty;
* ``"single"``: one :class:`~sciml.constraints.HardConstraint` per sample makes the PDE,
  initial and boundary residuals vanish in least squares at ``m`` collocation points;
* ``"moe-chain"``: the same four slabs in time solved one after the other by
  :class:`~sciml.constraints.ChainedHardConstraint`: slab ``k`` has initial rows at its
  start time whose target is slab ``k - 1``'s state there. Every
  slab then has an initial condition (a parabolic problem needs one), at the price of
  sequential solves: the experts no longer run in parallel.
* ``"moe"``: :class:`~sciml.constraints.MoEHardConstraint` with the domain cut into
  ``K`` pieces (four slabs in time by default), ``m / K`` points each; expert ``k``
  sees the initial/boundary rows that lie in its piece. The experts solve independently,
  so a piece without initial rows is pinned only by the training loss, which adds the
  jump of ``u`` (and of ``u_x`` across faces in ``x``) between neighbouring pieces.
  On this problem slabs in time train best (prototype, 200 steps: rel L2 0.15 against
  0.32 for slabs in ``x`` and 0.57 for 2 x 2).

All three are trained on physics alone (no solution data), as in the paper: the loss is
the mean squared residual of the PDE in the form ``R(u) u_tau - D T u_xx`` plus the
initial and boundary residuals, at fresh random points each step (not the collocation
points the constraint was solved on). The error is measured against the finite-volume
reference solver :func:`~sciml.pdes.solve_diffusion_sorption`.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn
from torch.func import jvp

from sciml.constraints.chain import ChainedHardConstraint
from sciml.constraints.hard import HardConstraint
from sciml.constraints.moe import MoEHardConstraint, Partition, assemble
from sciml.pdes.diffusion_sorption import DiffusionSorption, solve_diffusion_sorption
from sciml.utils import check_choice, check_int, check_real, check_tensor

from .._checks import check_instance, check_seed

__all__ = ["METHODS", "DiffSorpModel", "HardCConfig", "reference", "relative_l2"]

METHODS = ("soft", "single", "moe", "moe-chain")


@dataclass(frozen=True)
class HardCConfig:
    """Sizes of the diffusion-sorption experiment (defaults: a 2-core CPU scale).

    The paper used a 1024 x 101 state grid and 20k collocation points per expert; here
    ``points`` is the total over experts (the MoE gives each ``points / experts``).
    """

    n_basis: int = 16
    width: int = 64
    depth: int = 3
    experts: int = 4
    split: str = "t"  # "t": K slabs in time; "x": in space; "xt": sqrt(K) x sqrt(K)
    points: int = 512
    ic_points: int = 128
    bc_points: int = 64
    loss_points: int = 512
    t_final: float = 500.0
    ridge: float = 1e-6
    max_iter: int = 20
    u0_max: float = 0.2
    bc_weight: float = 1.0
    ic_weight: float = 1.0
    interface_weight: float = 1.0

    def __post_init__(self) -> None:
        for name in ("n_basis", "width", "depth", "experts", "points", "ic_points",
                     "bc_points", "loss_points", "max_iter"):
            check_int(f"HardCConfig.{name}", getattr(self, name), minimum=1)
        check_choice("HardCConfig.split", self.split, ("x", "t", "xt"))
        if self.split == "xt" and math.isqrt(self.experts) ** 2 != self.experts:
            raise ValueError(f"split='xt' needs a square number of experts, got "
                             f"{self.experts}")
        for name in ("t_final", "u0_max", "bc_weight", "ic_weight", "interface_weight"):
            check_real(f"HardCConfig.{name}", getattr(self, name), positive=True)
        check_real("HardCConfig.ridge", self.ridge, minimum=0.0, fix="use 0 for none")

    def partition(self, method: str) -> Partition:
        k = self.experts if method.startswith("moe") else 1
        splits = {"x": (k, 1), "t": (1, k), "xt": (math.isqrt(k), math.isqrt(k))}[self.split]
        return Partition([0.0, 0.0], [1.0, 1.0], splits)


class _Physics:
    """The residual pieces in ``(x, tau)`` units: ``R(u) u_tau - D T u_xx``."""

    def __init__(self, eq: DiffusionSorption, t_final: float) -> None:
        self.eq, self.kappa = eq, eq.D * t_final

    def retardation(self, u: Tensor) -> Tensor:
        # R blows up as u -> 0 (n_f < 1) and has no meaning for u < 0: evaluate it at a
        # smooth floor of u (max(u, 0) smoothed over 1e-3; within 0.3 % of u for u > 0.01)
        # so that the least-squares objective stays smooth for Levenberg-Marquardt
        return self.eq.retardation(0.5 * (u + torch.sqrt(u * u + 1e-6)))

    def pde(self, u: Tensor, ut: Tensor, uxx: Tensor) -> Tensor:
        return self.retardation(u) * ut - self.kappa * uxx

    def right(self, u: Tensor, ux: Tensor) -> Tensor:
        return u + self.eq.D * ux  # PDEBench's outflow ghost: u = -D u_x at x = 1


def _target(u0: Tensor, I: Tensor) -> Tensor:
    """The initial rows' target: a constant state per sample ``(B,)``, or per point
    ``(B, n_ic)`` (a chained slab starts from its predecessor's end state)."""
    return u0[:, None] if u0.ndim == I.ndim - 2 else u0


def _residual(phys: _Physics):
    """``residual(c, *data)`` of the hard constraint, rows scaled as a mean square."""

    def residual(c, P, Pt, Pxx, wp, I, u0, wi, L, wl, Rv, Rx, wr):
        cc = c.unsqueeze(-1)
        u, ut, uxx = (P @ cc)[..., 0], (Pt @ cc)[..., 0], (Pxx @ cc)[..., 0]
        rows = [wp * phys.pde(u, ut, uxx), wi * ((I @ cc)[..., 0] - _target(u0, I)),
                wl * ((L @ cc)[..., 0] - 1.0), wr * phys.right((Rv @ cc)[..., 0],
                                                              (Rx @ cc)[..., 0])]
        return torch.cat(rows, -1)

    return residual


def _jacobian(phys: _Physics):
    """Closed-form ``(r, J)`` of :func:`_residual`: the residual is linear in ``c`` except
    through ``R(u)``, so ``J = wp (R'(u) u_tau P + R(u) P_tau - kappa P_xx)`` on the PDE
    rows and the (weighted) basis rows elsewhere. One pass instead of N forward-mode
    products."""
    D = phys.eq.D

    def jacobian(c, P, Pt, Pxx, wp, I, u0, wi, L, wl, Rv, Rx, wr):
        cc = c.unsqueeze(-1)
        u, ut, uxx = (P @ cc)[..., 0], (Pt @ cc)[..., 0], (Pxx @ cc)[..., 0]
        R, dR = jvp(phys.retardation, (u,), (torch.ones_like(u),))
        Ri = Rv + D * Rx
        r = torch.cat([wp * (R * ut - phys.kappa * uxx), wi * ((I @ cc)[..., 0] - _target(u0, I)),
                       wl * ((L @ cc)[..., 0] - 1.0), wr * (Ri @ cc)[..., 0]], -1)
        # written into one buffer, block by block: at 1e5 points the PDE block is tens of
        # MB, and building it from temporaries and a concatenation took 10x the residual
        m, ni, nl = P.shape[-2], I.shape[-2], L.shape[-2]
        J = torch.empty(*P.shape[:-2], r.shape[-1], P.shape[-1], dtype=P.dtype,
                        device=P.device)
        Ju = J[..., :m, :]
        torch.mul(P, (wp * dR * ut)[..., None], out=Ju)
        Ju.addcmul_(Pt, (wp * R)[..., None]).addcmul_(Pxx, (-phys.kappa * wp)[..., None])
        torch.mul(I, wi[..., None], out=J[..., m:m + ni, :])
        torch.mul(L, wl[..., None], out=J[..., m + ni:m + ni + nl, :])
        torch.mul(Ri, wr[..., None], out=J[..., m + ni + nl:, :])
        return r, J

    return jacobian


class DiffSorpModel(nn.Module):
    """Basis network plus the coefficient rule of ``method`` (one of :data:`METHODS`)."""

    def __init__(self, method: str, config: HardCConfig | None = None,
                 eq: DiffusionSorption | None = None) -> None:
        super().__init__()
        self.method = check_choice("method", method, METHODS)
        self.cfg = check_instance("config", config, HardCConfig, optional=True) or HardCConfig()
        self.eq = check_instance("eq", eq, DiffusionSorption, optional=True
                                 ) or DiffusionSorption()
        self.phys = _Physics(self.eq, self.cfg.t_final)
        c = self.cfg
        layers: list[nn.Module] = [nn.Linear(3, c.width), nn.Tanh()]
        for _ in range(c.depth - 1):
            layers += [nn.Linear(c.width, c.width), nn.Tanh()]
        layers.append(nn.Linear(c.width, c.n_basis))
        self.net = nn.Sequential(*layers)
        self.head = nn.Linear(c.n_basis, 1) if method == "soft" else None
        self.part = c.partition(method)
        # constants of every step, as buffers: they follow the model to its device once
        # (non-persistent: the weights files hold the weights alone)
        K = self.part.n_pieces
        self.register_buffer("_scale", torch.tensor([2.0, 2.0, 2.0 / c.u0_max]),
                             persistent=False)
        self.register_buffer("_lo", torch.tensor([self.part.bounds(k)[0] for k in range(K)]),
                             persistent=False)
        self.register_buffer("_hi", torch.tensor([self.part.bounds(k)[1] for k in range(K)]),
                             persistent=False)
        if method == "moe-chain" and self.cfg.split != "t":
            raise ValueError(f"method 'moe-chain' chains slabs in time; it needs split='t', "
                             f"got split={self.cfg.split!r}")
        if method == "soft":
            self.layer = None
        elif method == "single":
            self.layer = HardConstraint(_residual(self.phys), ridge=c.ridge,
                                        max_iter=c.max_iter, jacobian=_jacobian(self.phys))
        elif method == "moe-chain":
            # data[4] holds the basis at each slab's initial rows, data[5] their target
            self.layer = ChainedHardConstraint(_residual(self.phys), self.part.n_pieces,
                                               start_basis=4, start_target=5, ridge=c.ridge,
                                               max_iter=c.max_iter,
                                               jacobian=_jacobian(self.phys))
        else:
            self.layer = MoEHardConstraint(_residual(self.phys), self.part.n_pieces,
                                           ridge=c.ridge, max_iter=c.max_iter,
                                           jacobian=_jacobian(self.phys))
        self.last_solve = None

    def config(self) -> dict:
        return {"method": self.method, **asdict(self.cfg)}

    # -- basis and its derivatives ---------------------------------------------------
    def basis(self, xt: Tensor, u0: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``phi, phi_tau, phi_x, phi_xx``, each ``(B, M, N)``, at ``xt (M, 2)`` for each u0."""
        B, M = u0.shape[0], xt.shape[0]
        w = next(self.net.parameters())
        dt, dev = w.dtype, w.device
        p = torch.cat([xt.to(dev, dt).expand(B, M, 2),
                       u0.to(dev, dt)[:, None, None].expand(B, M, 1)], -1).reshape(B * M, 3)
        scale = self._scale.to(dt)

        def f(q):
            return self.net(q * scale - 1.0)

        ex = torch.zeros_like(p)
        ex[:, 0] = 1.0
        et = torch.zeros_like(p)
        et[:, 1] = 1.0
        (phi, phix), (_, phixx) = jvp(lambda q: jvp(f, (q,), (ex,)), (p,), (ex,))
        _, phit = jvp(f, (p,), (et,))
        return tuple(a.reshape(B, M, -1) for a in (phi, phit, phix, phixx))  # type: ignore

    # -- the collocation problem -------------------------------------------------------
    def _device(self) -> torch.device:
        return self._scale.device

    def _rand(self, *size: int, gen: torch.Generator | None) -> Tensor:
        """Uniform float32 draws on the model's device: from ``gen`` where it lives (a
        seeded CPU generator gives the same points on every device: they are copied
        over), else from the device's own generator (the global one for ``None``)."""
        dev = self._device()
        if gen is not None and gen.device.type != dev.type:
            return torch.rand(*size, generator=gen).to(dev, non_blocking=True)
        return torch.rand(*size, generator=gen, device=dev)

    def _collocation(self, u0: Tensor, gen: torch.Generator | None):
        """Per-piece data ``(B, K, ...)`` for the constraint, on the model's device."""
        c, part = self.cfg, self.part
        K, B = part.n_pieces, u0.shape[0]
        dev, f64 = self._device(), torch.float64
        u0 = u0.to(dev)
        n_pde = max(c.points // K, 1)
        # n uniform points per piece, (K, n, 2) (as Partition.sample, on the device)
        pts = self._lo[:, None] + self._rand(K, n_pde, 2, gen=gen) * (self._hi - self._lo)[:, None]
        ic, left, right, wi, wl, wr = [], [], [], [], [], []
        n_ic = max(c.ic_points // (part.splits[0]), 1)
        n_bc = max(c.bc_points // part.splits[1], 1)
        chain = self.method == "moe-chain"
        for k in range(K):
            lo, hi = part.bounds(k)
            xi = lo[0] + (hi[0] - lo[0]) * self._rand(n_ic, gen=gen)
            # a chained slab has initial rows at its own start time (its target is the
            # previous slab's end state); otherwise only pieces at t = 0 have them
            t_ic = lo[1] if chain else 0.0
            ic.append(torch.stack([xi, torch.full((n_ic,), float(t_ic), device=dev)], -1))
            tb = lo[1] + (hi[1] - lo[1]) * self._rand(n_bc, gen=gen)
            left.append(torch.stack([torch.zeros(n_bc, device=dev), tb], -1))
            right.append(torch.stack([torch.ones(n_bc, device=dev), tb], -1))
            wi.append(float(chain or lo[1] == 0.0) * math.sqrt(c.ic_weight / n_ic))
            wl.append(float(lo[0] == 0.0) * math.sqrt(c.bc_weight / n_bc))
            wr.append(float(hi[0] == 1.0) * math.sqrt(c.bc_weight / n_bc))
        allpts = torch.cat([pts, torch.stack(ic), torch.stack(left), torch.stack(right)], 1)
        n_all = allpts.shape[1]
        phi, phit, phix, phixx = self.basis(allpts.reshape(K * n_all, 2), u0)
        N = phi.shape[-1]

        def piece(a, start, n):
            return a.reshape(B, K, n_all, N)[:, :, start:start + n].to(f64)

        s_ic, s_l, s_r = n_pde, n_pde + n_ic, n_pde + n_ic + n_bc

        def w(vals, n):
            # one fill per piece on the device (no host-to-device copy of the weights)
            return torch.stack([torch.full((n,), v, dtype=f64, device=dev) for v in vals]
                               )[None].expand(B, K, n)

        u0k = u0.to(f64)[:, None].expand(B, K)
        data = (piece(phi, 0, n_pde), piece(phit, 0, n_pde), piece(phixx, 0, n_pde),
                torch.full((B, K, n_pde), 1 / math.sqrt(n_pde), dtype=f64, device=dev),
                piece(phi, s_ic, n_ic), u0k, w(wi, n_ic),
                piece(phi, s_l, n_bc), w(wl, n_bc),
                piece(phi, s_r, n_bc), piece(phix, s_r, n_bc), w(wr, n_bc))
        return data

    def coefficients(self, u0: Tensor, gen: torch.Generator | None = None) -> Tensor | None:
        """Coefficients ``(B, K, N)`` from the constraint (None for ``soft``)."""
        if self.method == "soft":
            return None
        data = self._collocation(u0, gen)
        B, K, N = u0.shape[0], self.part.n_pieces, self.cfg.n_basis
        c0 = torch.zeros(B, K, N, dtype=torch.float64, device=self._device())
        max_iter = self.cfg.max_iter if self.training else 50
        if self.method == "single":
            flat = [d.reshape(B * K, *d.shape[2:]) for d in data]
            res = self.layer(*flat, c0=c0.reshape(B, N), max_iter=max_iter)
            self.last_solve = res
            return res.coeffs.reshape(B, K, N)
        res = self.layer(*data, c0=c0, max_iter=max_iter)
        self.last_solve = res
        return res.coeffs

    def field(self, u0: Tensor, xt: Tensor, coeffs: Tensor | None):
        """``u, u_tau, u_x, u_xx`` at ``xt (M, 2)``: ``(B, M)`` each, on the model's
        device (``u0`` and ``xt`` are moved there)."""
        xt = xt.to(self._device())
        vals = self.basis(xt, u0)
        if coeffs is None:
            w, b = self.head.weight[0], self.head.bias[0]  # type: ignore[union-attr]
            return tuple((v * w).sum(-1) + (b if i == 0 else 0.0) for i, v in enumerate(vals))
        piece = self.part.index(xt.to(torch.float64))
        return tuple(assemble(v, coeffs, piece) for v in vals)

    def forward(self, u0: Tensor, xt: Tensor, gen: torch.Generator | None = None) -> Tensor:
        """The prediction ``(B, M)`` at points ``xt (M, 2)`` for initial states ``u0 (B,)``."""
        return self.field(u0, xt, self.coefficients(u0, gen))[0]

    # -- the physics loss --------------------------------------------------------------
    def loss(self, u0: Tensor, gen: torch.Generator | None = None) -> Tensor:
        """Mean squared PDE residual + initial + boundary residuals at fresh points."""
        c = self.cfg
        dev = self._device()
        coeffs = self.coefficients(u0, gen)
        xt = self._rand(c.loss_points, 2, gen=gen)
        nb = max(c.loss_points // 8, 1)
        tb = self._rand(nb, gen=gen)
        xi = self._rand(nb, gen=gen)
        ic = torch.stack([xi, torch.zeros(nb, device=dev)], -1)
        lb = torch.stack([torch.zeros(nb, device=dev), tb], -1)
        rb = torch.stack([torch.ones(nb, device=dev) - 1e-7, tb], -1)
        allpts = torch.cat([xt, ic, lb, rb])
        u, ut, ux, uxx = self.field(u0, allpts, coeffs)
        M = c.loss_points
        pde = self.phys.pde(u[:, :M], ut[:, :M], uxx[:, :M])
        ic_r = u[:, M:M + nb] - u0.to(u.device, u.dtype)[:, None]
        l_r = u[:, M + nb:M + 2 * nb] - 1.0
        r_r = self.phys.right(u[:, M + 2 * nb:], ux[:, M + 2 * nb:])
        loss = (pde.pow(2).mean() + c.ic_weight * ic_r.pow(2).mean()
                + c.bc_weight * (l_r.pow(2).mean() + r_r.pow(2).mean()))
        if coeffs is not None and self.part.n_pieces > 1:
            loss = loss + c.interface_weight * self._interface(u0, coeffs, nb, gen)
        return loss

    def _interface(self, u0: Tensor, coeffs: Tensor, n: int,
                   gen: torch.Generator | None) -> Tensor:
        """Mean squared jump of ``u`` (and ``u_x`` across faces normal to x) between
        neighbouring pieces: the experts solve independently, so only the training loss,
        acting on the assembled field, can make their pieces meet."""
        terms = []
        dev = self._device()
        for axis in (0, 1):
            s = self.part.splits[axis]
            for j in range(1, s):
                face = j / s
                other = self._rand(n, gen=gen)
                pts = torch.stack([torch.full((n,), face, device=dev), other], -1)
                if axis == 1:
                    pts = pts.flip(-1)
                shift = torch.zeros(2, device=dev)
                shift[axis] = 1e-4
                lo = self.field(u0, pts - shift, coeffs)
                hi = self.field(u0, pts + shift, coeffs)
                terms.append((hi[0] - lo[0]).pow(2).mean())
                if axis == 0:
                    terms.append((hi[2] - lo[2]).pow(2).mean())
        return torch.stack(terms).sum() if terms else torch.zeros(())


def _check_u0(u0: object) -> Tensor:
    """``u0``: the initial states ``(B,)``, finite and >= 0 (concentrations)."""
    u0 = check_tensor("u0", u0, ndim=1, real=True)
    if u0.numel() == 0 or not bool(torch.isfinite(u0).all()) or bool((u0 < 0).any()):
        raise ValueError(f"u0 must hold at least one finite initial state >= 0, got "
                         f"{u0.tolist()[:6]}")
    return u0


def reference(u0: Tensor, n: int = 256, nt: int = 26, t_final: float = 500.0,
              eq: DiffusionSorption | None = None) -> tuple[Tensor, Tensor]:
    """Reference states ``(B, nt, n)`` and the grid points ``(nt * n, 2)`` in ``(x, tau)``."""
    u0 = _check_u0(u0)
    n = check_int("n", n, minimum=4)
    nt = check_int("nt", nt, minimum=2)
    t_final = check_real("t_final", t_final, positive=True)
    check_instance("eq", eq, DiffusionSorption, optional=True)
    tau = torch.linspace(0.0, 1.0, nt, dtype=torch.float64)
    x = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    ref = torch.stack([solve_diffusion_sorption(float(v), tau * t_final, n=n, eq=eq)
                       for v in u0.tolist()])
    grid = torch.stack(torch.meshgrid(x, tau, indexing="xy"), -1).reshape(-1, 2)
    return ref, grid


def relative_l2(model: DiffSorpModel, u0: Tensor, ref: Tensor, grid: Tensor,
                *, seed: int = 1234) -> dict[str, float]:
    """Mean per-sample relative L2 error on the reference grid, LM iterations, time.

    The constraint is solved on a fixed seeded set of collocation points with the
    model's own sizes (``max_iter`` raised to 50 for inference), on the model's device
    (the points are drawn on the CPU, so they do not depend on the device); the error is
    measured on the CPU, where ``ref`` is.
    """
    check_instance("model", model, DiffSorpModel)
    u0 = _check_u0(u0)
    ref = check_tensor("ref", ref, ndim=3, real=True)
    grid = check_tensor("grid", grid, ndim=2, real=True)
    if ref.shape[0] != u0.shape[0] or ref.numel() == 0:
        raise ValueError(f"ref must be (B, nt, n) with B = {u0.shape[0]} (one per u0), got "
                         f"shape {tuple(ref.shape)}: pass reference(u0)[0]")
    if grid.shape != (ref.shape[1] * ref.shape[2], 2):
        raise ValueError(f"grid must be ({ref.shape[1] * ref.shape[2]}, 2), the points of "
                         f"ref, got shape {tuple(grid.shape)}: pass reference(u0)[1]")
    check_seed(seed)
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    with torch.no_grad():
        coeffs = model.coefficients(u0, gen)
        pred = model.field(u0, grid.to(torch.float32), coeffs)[0]
        pred = pred.to("cpu", torch.float64)  # waits for the device: inside the clock
    seconds = time.perf_counter() - t0
    B, nt, n = ref.shape
    pred = pred.reshape(B, nt, n)
    ref = ref.to("cpu", torch.float64)
    err = ((pred - ref).norm(dim=(1, 2)) / ref.norm(dim=(1, 2))).mean()
    out = {"rel_l2": float(err), "inference_s": seconds}
    if model.last_solve is not None and model.method != "soft":
        out["lm_iterations"] = float(model.last_solve.iterations.double().mean())
        out["status"] = model.last_solve.status.name
    return out
