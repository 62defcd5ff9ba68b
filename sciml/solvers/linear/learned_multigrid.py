"""A learned multigrid preconditioner: the geometric V-cycle with per-cell smoothing and
transfer weights predicted from the local stencil by a small convolutional network.

**Where the learning sits.** On obstacle scenes the classical cycle
(:class:`~sciml.solvers.linear.GeometricMultigrid`) loses most where its fixed choices
are poorest: next to walls, air cells and coefficient jumps, where one Gauss-Seidel
weight and plain linear interpolation are not what the local operator asks for. The
network reads the stencil of every level (the conductance of each face over the
diagonal, the Dirichlet share of the diagonal, the unknown mask: ``2d + 2`` numbers per
cell, invariant to the scale of the coefficients) and returns two numbers per cell:

- ``omega`` in ``(0, 2)``, a red-black over-relaxation weight: the sweep updates a cell
  by ``omega / diag`` times its residual;
- ``beta`` in ``(e^{-1/4}, e^{1/4})``, a scale of that cell's row of the prolongation and,
  the same number, its column of the restriction.

**Cost.** The network runs once per level at setup; the cycle then does exactly the work
of the classical one (the weights only change numbers in arrays it already reads), so
every iteration saved is wall-clock saved. The fine-grid convolution, the expensive part
of a neural preconditioner applied at every iteration (as DCDM is), is paid once.

**SPD by construction.** A red-black half-sweep updates cells that do not couple, a
diagonal block ``D_c`` of ``A``, with weights ``omega D_c^{-1}``: it contracts in the
``A``-norm for every ``omega`` in ``(0, 2)``; post-smoothing is its adjoint (reverse
colour order, same weights). The coarse correction ``B P A_c^+ P^T B`` (``B`` the
diagonal of the ``beta``) is symmetric positive semidefinite for any positive ``beta``.
A symmetric V-cycle built of a convergent smoother and its adjoint around a positive
semidefinite coarse correction is symmetric positive definite, whatever the weights, so
plain :func:`~sciml.solvers.linear.cg` applies, trained or not.

**Training** (:func:`train_learned_multigrid`) is unsupervised: for right-hand sides
``b = A e`` of random errors ``e`` on generated scenes it minimises
``log(||r_k|| / ||b||)``, the residual after ``k`` unrolled steps of conjugate gradients
preconditioned by the weighted cycle, through :class:`~sciml.train.Trainer`. The shipped
networks (:func:`load_learned_multigrid`) were trained by ``sciml train learned-mg``.

References: D. Greenfeld, M. Galun, R. Kimmel, I. Yavneh, R. Basri, "Learning to
optimize multigrid PDE solvers", ICML 2019 (an unsupervised spectral-radius loss for
learned transfers); I. Yavneh, "On red-black SOR smoothing in multigrid", SIAM J. Sci.
Comput. 17 (1996) (over-relaxed red-black smoothing).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from ..._device import check_device
from ..._validation import check_int, check_real, check_tensor
from .multigrid import GeometricMultigrid, _Level

__all__ = ["LearnedMultigrid", "LearnedMultigridNet", "learned_multigrid_loss",
           "load_learned_multigrid", "save_learned_multigrid", "train_learned_multigrid"]

_BETA_RANGE = 0.25  # beta = exp(0.25 tanh(.)): a gentle change of the transfers
_OMEGA0 = 1.3  # the untrained network's weight, a good constant (measured)


def _features(lev: _Level, d: int) -> Tensor:
    """``(2d + 2, *shape)`` scale-free stencil features of a level (float32)."""
    diag = lev.diag.double()
    inv = torch.where(diag > 0, 1.0 / diag.clamp_min(1e-300), 0.0)
    chans = [lev.mask.double()]
    around = torch.zeros_like(diag)
    for a, k in enumerate(lev.links):
        k = k.double()
        n = diag.shape[a]
        lo = torch.zeros_like(diag)  # the face towards i - e_a
        hi = torch.zeros_like(diag)  # towards i + e_a
        lo.narrow(a, 1, n - 1).copy_(k)
        hi.narrow(a, 0, n - 1).copy_(k)
        chans += [lo * inv, hi * inv]
        around += lo + hi
    chans.append(((diag - around) * inv).clamp_min(0))  # the Dirichlet share
    return torch.stack(chans).float()


class LearnedMultigridNet(nn.Module):
    """Per-cell ``(omega, beta)`` from the stencil features of a level.

    Two 3-wide convolutions of ``width`` channels with GELU and a 1x1 output layer,
    initialised to zero so that an untrained network gives the constant ``omega = 1.3``,
    ``beta = 1``. ``dim`` is 2 or 3.
    """

    def __init__(self, dim: int = 3, width: int = 8) -> None:
        super().__init__()
        if isinstance(dim, bool) or dim not in (2, 3):
            raise ValueError(f"dim must be 2 or 3, got {dim!r}")
        self.dim = dim
        self.width = check_int("width", width, minimum=1)
        conv = nn.Conv3d if dim == 3 else nn.Conv2d
        c = 2 * dim + 2
        self.body = nn.Sequential(conv(c, width, 3, padding=1), nn.GELU(),
                                  conv(width, width, 3, padding=1), nn.GELU())
        self.head = conv(width, 2, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def config(self) -> dict:
        return {"dim": self.dim, "width": self.width}

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """``features`` ``(C, *shape)`` -> ``omega, beta`` each ``shape``."""
        z = self.head(self.body(features.unsqueeze(0)))[0]
        omega = 2.0 * torch.sigmoid(z[0] + math.log(_OMEGA0 / (2.0 - _OMEGA0)))
        beta = torch.exp(_BETA_RANGE * torch.tanh(z[1]))
        return omega, beta


def _weighted_levels(base: GeometricMultigrid, net: LearnedMultigridNet) -> list[_Level]:
    """The levels of ``base`` with the network's weights applied (differentiable in the
    network's parameters; the coarsest level is kept)."""
    out = []
    d = len(base.grid_shape)
    for lev in base._levels[:-1]:
        dev_dt = {"device": lev.diag.device, "dtype": torch.float32}
        omega, beta = net(_features(lev, d).to(**dev_dt))
        dt = base.dtype
        omega, beta = omega.to(dt), beta.to(dt)
        out.append(dataclasses.replace(
            lev, red=lev.red * omega, black=lev.black * omega, weight=lev.weight * beta,
            fast=None))
    out.append(base._levels[-1])
    return out


class LearnedMultigrid(GeometricMultigrid):
    """The geometric V-cycle with learned per-cell smoothing and transfer weights (see the
    module docstring); a drop-in SPD preconditioner for :func:`~sciml.solvers.linear.cg`.

    Args:
        system: a :class:`~sciml.pdes.PoissonSystem` or a ``(mask, diag, links)`` stencil,
            as for :class:`~sciml.solvers.linear.GeometricMultigrid`.
        net: a :class:`LearnedMultigridNet` of the grid's dimension; default the shipped
            one (:func:`load_learned_multigrid`).
        smoothing, max_coarse, max_levels, dtype, device: as for
            :class:`~sciml.solvers.linear.GeometricMultigrid` (red-black smoothing).

    Attributes:
        setup_seconds: the whole setup, the network's evaluation included.
        network_seconds: the network's part of it.

    Example::

        M = LearnedMultigrid(system)
        sol = cg(system.operator(), b, M=M, rtol=1e-6)
    """

    def __init__(self, system: object, net: LearnedMultigridNet | None = None, *,
                 smoothing: int = 2, max_coarse: int = 1000, max_levels: int | None = None,
                 dtype: torch.dtype = torch.float32,
                 device: torch.device | str | None = None) -> None:
        t0 = time.perf_counter()
        super().__init__(system, smoothing=smoothing, smoother="rbgs", max_coarse=max_coarse,
                         max_levels=max_levels, dtype=dtype, device=device)
        d = len(self.grid_shape)
        if net is None:
            net = load_learned_multigrid(d)
        if not isinstance(net, LearnedMultigridNet):
            raise TypeError(f"net must be a LearnedMultigridNet, got {type(net).__name__}")
        if net.dim != d:
            raise ValueError(f"net is for {net.dim}D grids but the system is {d}D; pass "
                             f"load_learned_multigrid({d}) or a {d}D LearnedMultigridNet")
        t1 = time.perf_counter()
        net = copy.deepcopy(net).to(self.device).eval()
        with torch.no_grad():
            self._levels = _weighted_levels(self, net)
        self.network_seconds = time.perf_counter() - t1
        if self._fast:
            self._prepare_fast()
        self.setup_seconds = time.perf_counter() - t0

    def __repr__(self) -> str:
        return (f"LearnedMultigrid(grid={self.grid_shape}, levels={self.levels}, "
                f"smoothing={self.smoothing}, dtype={self.dtype}, device={self.device})")


def _random_errors(mask: Tensor, count: int, generator: torch.Generator) -> Tensor:
    """``count`` random errors on the unknowns of ``mask``: half white noise, half smooth
    (noise on a grid 4x coarser, interpolated), each of unit norm."""
    d = mask.ndim
    shape = tuple(mask.shape)
    noise = torch.randn(count, *shape, generator=generator)
    coarse = torch.randn(count, 1, *[max(n // 4, 1) for n in shape], generator=generator)
    mode = "trilinear" if d == 3 else "bilinear"
    smooth = nn.functional.interpolate(coarse, size=shape, mode=mode, align_corners=False)[:, 0]
    half = count // 2
    e = torch.cat([noise[:half], smooth[half:]]) * mask
    return e / e.reshape(count, -1).norm(dim=1).clamp_min(1e-30).reshape(-1, *[1] * d)


def learned_multigrid_loss(net: LearnedMultigridNet, base: GeometricMultigrid, A: object,
                           rhs: Tensor, iterations: int = 4) -> Tensor:
    """The training loss: the mean over right-hand sides ``rhs`` ``(B, n)`` of
    ``log(||r_k|| / ||b||)``, ``r_k`` the residual after ``iterations`` steps of
    conjugate gradients preconditioned by the cycle of ``base`` (a
    :class:`~sciml.solvers.linear.GeometricMultigrid` in float32) weighted by ``net``:
    what the benchmark measures, unrolled so that it is differentiable in ``net``'s
    parameters. ``A`` is the system's float32 operator.

    (A stationary loss, the error reduction of ``I - M A``, rewards pushing the spectrum
    of ``M A`` towards 2 as much as towards 0, which conjugate gradients do not care for:
    measured, it trains weights that take more PCG iterations than the untrained ones.)"""
    if not isinstance(net, LearnedMultigridNet):
        raise TypeError(f"net must be a LearnedMultigridNet, got {type(net).__name__}")
    if not isinstance(base, GeometricMultigrid):
        raise TypeError(f"base must be a GeometricMultigrid (the system's classical cycle), "
                        f"got {type(base).__name__}")
    if net.dim != len(base.grid_shape):
        raise ValueError(f"net is for {net.dim}D grids but base is {len(base.grid_shape)}D")
    if not callable(getattr(A, "matvec", None)):
        raise TypeError(f"A must be a linear operator with matvec (system.operator(torch."
                        f"float32)), got {type(A).__name__}")
    rhs = check_tensor("rhs", rhs, ndim=2, real=True, floating=True)
    if rhs.shape[1] != base.shape[0]:
        raise ValueError(f"rhs has shape {tuple(rhs.shape)}; it needs (B, {base.shape[0]}), "
                         f"one full-grid vector per row")
    iterations = check_int("iterations", iterations, minimum=1)
    cyc = copy.copy(base)
    cyc._levels = _weighted_levels(base, net)
    cyc._fast = False  # autograd runs through the torch cycle

    def dot(u: Tensor, v: Tensor) -> Tensor:
        return (u * v).sum(-1, keepdim=True)

    r = rhs
    r0 = r.norm(dim=-1)
    x = torch.zeros_like(r)
    z = cyc.matvec(r)
    p, rz = z, dot(r, z)
    for k in range(iterations):
        Ap = A.matvec(p)
        alpha = rz / dot(p, Ap).clamp_min(1e-30)
        x = x + alpha * p
        r = r - alpha * Ap
        if k == iterations - 1:
            break
        z = cyc.matvec(r)
        rz_new = dot(r, z)
        p = z + (rz_new / rz.clamp_min(1e-30)) * p
        rz = rz_new
    return torch.log(r.norm(dim=-1).clamp_min(1e-30) / r0.clamp_min(1e-30)).mean()


class _Errors(torch.utils.data.Dataset):
    """Item ``i``: (scene index, errors ``(per, n)``), fixed by the seed."""

    def __init__(self, systems: Sequence, per: int, repeats: int, seed: int) -> None:
        self.items = []
        g = torch.Generator().manual_seed(seed)
        for _ in range(repeats):
            for i, s in enumerate(systems):
                e = _random_errors(s.fluid_mask, per, g)
                self.items.append((i, e.reshape(per, -1)))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        return self.items[i]


def train_learned_multigrid(systems: Sequence, *, net: LearnedMultigridNet | None = None,
                            steps: int = 300, lr: float = 3e-3, errors_per_step: int = 8,
                            iterations: int = 4, seed: int = 0,
                            time_budget: float | None = None,
                            out_dir: str | os.PathLike | None = None,
                            progress: bool = True,
                            device: torch.device | str | None = None) -> LearnedMultigridNet:
    """Train a :class:`LearnedMultigridNet` on ``systems`` (PoissonSystems of one
    dimension, any shapes): one scene per step, the right-hand sides of
    ``errors_per_step`` random errors, the loss :func:`learned_multigrid_loss` over
    ``iterations`` PCG steps; through :class:`~sciml.train.Trainer` (Adam, cosine
    schedule; checkpoints and resume with ``out_dir``). Returns it in eval mode, on
    ``device``, where the cycles, the operators and the network train (default the CPU,
    or ``cuda:LOCAL_RANK`` under torchrun on a CUDA machine: the Trainer's rule).

    Raises:
        TypeError, ValueError: a bad argument, named.
    """
    from ...train import TrainConfig, Trainer

    if isinstance(systems, (str, bytes)) or not isinstance(systems, Sequence) or not systems:
        raise ValueError("systems must be a non-empty list of PoissonSystems")
    for s in systems:
        if not hasattr(s, "stencil") or not hasattr(s, "fluid_mask"):
            raise TypeError(f"systems must hold PoissonSystems, got {type(s).__name__}")
    dims = {len(s.shape) for s in systems}
    if len(dims) != 1:
        raise ValueError(f"systems mix {sorted(dims)}-dimensional grids; train 2D and 3D "
                         "networks separately")
    dim = dims.pop()
    steps = check_int("steps", steps, minimum=1)
    check_real("lr", lr, positive=True, fix="a typical value is 3e-3")
    per = check_int("errors_per_step", errors_per_step, minimum=2)
    iterations = check_int("iterations", iterations, minimum=1)
    if net is None:
        torch.manual_seed(seed)
        net = LearnedMultigridNet(dim)
    elif not isinstance(net, LearnedMultigridNet) or net.dim != dim:
        raise ValueError(f"net must be a {dim}D LearnedMultigridNet")
    dev = check_device(device, resolve=True)  # the Trainer's rule: CPU unless torchrun
    net = net.to(dev)
    bases = [GeometricMultigrid(s, smoother="rbgs", device=dev) for s in systems]
    for i, b in enumerate(bases):
        if b.levels < 2:
            raise ValueError(
                f"systems[{i}] ({'x'.join(map(str, b.grid_shape))}) has {b.n_unknowns} "
                f"unknowns, few enough for the exact coarsest solve alone (max_coarse = "
                f"{b.max_coarse}): nothing to learn; use larger scenes (48^2 or 16^3 and up)")
    ops = [s.operator(torch.float32, device=dev) for s in systems]
    data = _Errors(systems, per, repeats=max(1, math.ceil(steps / len(systems))), seed=seed)

    def forward(model, batch):
        i, e = batch
        i = int(i.reshape(-1)[0])
        rhs = ops[i].matvec(e.reshape(per, -1))  # of a random error: b in the range of A
        return learned_multigrid_loss(model, bases[i], ops[i], rhs, iterations), None

    cfg = TrainConfig(epochs=1, max_steps=steps, lr=lr, batch_size=1, seed=seed,
                      time_budget=time_budget, progress=progress, schedule="cosine")
    trainer = Trainer(net, lambda pred, target: pred, cfg,
                      out_dir=None if out_dir is None else Path(out_dir), forward=forward,
                      device=dev,
                      model_config={"kind": "LearnedMultigridNet", **net.config()})
    run = None if out_dir is None else Path(out_dir)
    trainer.fit(data, resume=run is not None and (run / "checkpoint.pt").exists())
    return net.eval()


def load_learned_multigrid(dim: int, *, path: str | os.PathLike | None = None,
                           device: torch.device | str | None = None) -> LearnedMultigridNet:
    """The shipped :class:`LearnedMultigridNet` for ``dim``-dimensional grids (trained by
    ``sciml train learned-mg --dim DIM``), or the one at ``path``, in eval mode on
    ``device`` (default the CPU; the file is read on the CPU whatever device wrote it).

    Raises:
        FileNotFoundError: no file.
        ValueError: ``dim`` not 2 or 3; a file that is not a sciml weights file, is
            corrupt, or holds a network of another dimension.
    """
    from .pretrained import load_network

    return load_network(dim, path, device, make=LearnedMultigridNet, stem="learned_mg",
                        command="learned-mg")


def save_learned_multigrid(net: LearnedMultigridNet, path: str | os.PathLike,
                           settings: dict) -> Path:
    """Write ``net`` with the training ``settings`` (read back by
    :func:`load_learned_multigrid`), atomically, with per-tensor checksums."""
    from ...train import save_weights

    if not isinstance(net, LearnedMultigridNet):
        raise TypeError(f"net must be a LearnedMultigridNet, got {type(net).__name__}")
    if not isinstance(settings, dict):
        raise TypeError(f"settings must be a dict of the training settings (JSON-like "
                        f"values), got {type(settings).__name__}")
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    path = Path(path)
    save_weights({"config": net.config(), "state": net.state_dict(), "settings": settings},
                 path)
    return path
