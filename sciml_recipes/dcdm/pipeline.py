"""Training the DCDM network (Kaneda et al., ICML 2023) on Poisson systems.

Two losses, both scale invariant, both 0 exactly when ``q = f(r)`` is a multiple of
``A^-1 r``:

* ``"paper"`` (:func:`dcdm_loss`): ``|r - alpha A q|^2 / |r|^2`` with the A-optimal step
  ``alpha = q^T r / q^T A q``;
* ``"energy"`` (:func:`dcdm_energy_loss`, the default):
  ``1 - (q^T r)^2 / (q^T A q * r^T A^-1 r)``, the fraction of the A-norm of the error
  that the step along ``q`` leaves; it lies in [0, 1].

Why the default departs from the paper: the step DCDM takes minimises the A-norm of the
error, and the energy loss measures exactly that progress. The paper's loss measures the
2-norm of the new residual, which an A-optimal step can *raise*: on 2D fluid-proxy
systems the identity ``q = r`` (CG's first step) scores 16 on it, while any ``q``
orthogonal to ``r`` (no step at all) scores 1; trained with it (Adam 1e-3 or 1e-4, 600
steps) the network settled on that useless minimum (loss 1.00) every time, while the
energy loss fell from 0.95 to 0.2-0.3 (the identity: 0.56-0.72).

Training right-hand sides are built from Ritz vectors of ``A`` (the ``k`` smallest
eigenpairs, by shift-invert Lanczos in scipy's ARPACK), weighted towards the low end of
the spectrum, the part conjugate gradients handle worst, mixed with divergence right-hand
sides of the pressure projection (the first residual of a real solve) and white noise;
each is normalised to unit length and stored with ``r^T A^-1 r`` (a sparse LU solve).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from sciml.operators.dcdm import DCDMNet
from sciml.pdes.poisson import PoissonOperator, PoissonSystem
from sciml.utils import (
    check_bool,
    check_choice,
    check_device,
    check_finite,
    check_int,
    check_real,
    check_tensor,
)

from .._checks import (
    check_instance,
    check_instances,
    check_path,
    check_seed,
    check_time_budget,
)

__all__ = [
    "DCDMData",
    "dcdm_energy_loss",
    "dcdm_loss",
    "ritz_rhs",
    "save_pretrained",
    "train_dcdm",
    "training_scenes",
]


def _check_loss_args(net: object, op: object, r: object, mask: object) -> None:
    """The arguments the losses share, checked by name (the training loop skips this)."""
    check_instance("net", net, torch.nn.Module,
                   hint="a DCDMNet, or any module computing q = net(r, mask)")
    check_instance("op", op, PoissonOperator, hint="such as system.operator(torch.float32)")
    grid = tuple(op.grid_shape)
    for name, x, shape in (("r", r, "(B, " + ", ".join(map(str, grid)) + ")"),
                           ("mask", mask, "(" + ", ".join(map(str, grid)) + ")")):
        check_tensor(name, x, real=True)
        want = x.ndim == len(grid) + (name == "r") and tuple(x.shape[x.ndim - len(grid):]) == grid
        if not want or x.numel() == 0:
            raise ValueError(f"{name} must have shape {shape} (the grid of op), got "
                             f"{tuple(x.shape)}")
        check_finite(name, x)
    if isinstance(net, DCDMNet) and net.dim != len(grid):
        raise ValueError(f"net is a {net.dim}D DCDMNet but op is on a {len(grid)}D grid; "
                         f"use DCDMNet({len(grid)})")


def dcdm_loss(net: DCDMNet, op: PoissonOperator, r: Tensor, mask: Tensor) -> Tensor:
    """Mean over the batch of ``|r - alpha A q|^2 / |r|^2`` with ``q = net(r)`` and the
    optimal ``alpha = q^T r / q^T A q``. ``r`` is ``(B, *grid)``; ``op.grid_matvec``
    applies ``A`` to grid-shaped input; ``mask`` ``(*grid)`` marks the fluid cells;
    ``net`` is a :class:`~sciml.operators.DCDMNet` or any module ``q = net(r, mask)``.

    Raises:
        TypeError, ValueError: an argument of the wrong kind or shape (named).
    """
    _check_loss_args(net, op, r, mask)
    return _paper_loss(net, op, r, mask)


def _paper_loss(net: DCDMNet, op: PoissonOperator, r: Tensor, mask: Tensor) -> Tensor:
    q = net(r, mask)
    Aq = op.grid_matvec(q.to(op.dtype)).to(q.dtype)
    dims = tuple(range(1, r.ndim))
    qr = (q * r).sum(dims)
    qAq = (q * Aq).sum(dims).clamp_min(1e-30)
    res = r - (qr / qAq).view(-1, *([1] * (r.ndim - 1))) * Aq
    return (res.pow(2).sum(dims) / r.pow(2).sum(dims).clamp_min(1e-30)).mean()


def dcdm_energy_loss(net: DCDMNet, op: PoissonOperator, r: Tensor, mask: Tensor,
                     energy: Tensor) -> Tensor:
    """Mean over the batch of ``1 - (q^T r)^2 / (q^T A q * r^T A^-1 r)``, ``q = net(r)``;
    ``energy`` ``(B,)`` holds ``r^T A^-1 r`` (> 0); the rest as :func:`dcdm_loss`.

    Raises:
        TypeError, ValueError: an argument of the wrong kind or shape (named).
    """
    _check_loss_args(net, op, r, mask)
    check_tensor("energy", energy, ndim=1, real=True)
    if energy.shape[0] != r.shape[0]:
        raise ValueError(f"energy must have shape ({r.shape[0]},) (r^T A^-1 r per row of r), "
                         f"got {tuple(energy.shape)}")
    check_finite("energy", energy)
    if not bool((energy > 0).all()):
        raise ValueError("energy must be > 0 (r^T A^-1 r of a nonzero r); recompute it")
    return _energy_loss(net, op, r, mask, energy)


def _energy_loss(net: DCDMNet, op: PoissonOperator, r: Tensor, mask: Tensor,
                 energy: Tensor) -> Tensor:
    q = net(r, mask)
    Aq = op.grid_matvec(q.to(op.dtype)).to(q.dtype)
    dims = tuple(range(1, r.ndim))
    qr = (q * r).sum(dims)
    qAq = (q * Aq).sum(dims).clamp_min(1e-30)
    return (1 - qr.pow(2) / (qAq * energy.to(q.dtype))).mean()


def ritz_rhs(system, n: int, *, k: int = 64, power: float = 1.0, generator=None,
             seed: int = 0) -> Tensor:
    """``n`` unit right-hand sides ``(n, N^d)`` from the ``k`` smallest eigenvectors of
    ``A``, coefficient ``i`` drawn ``N(0, 1) * (lambda_1 / lambda_i)^power`` (power 0:
    uniform over the ``k`` vectors)."""
    from scipy.sparse.linalg import eigsh

    check_instance("system", system, PoissonSystem, hint="build one with fluid_proxy(N)")
    n = check_int("n", n, minimum=1)
    check_int("k", k, minimum=1)
    _check_power(power)
    if generator is not None:
        raise TypeError(f"generator is not used by ritz_rhs (it draws from numpy with seed); "
                        f"pass seed=..., got generator={type(generator).__name__}")
    check_seed(seed)
    A = system.csr(reduced=True)
    k = min(k, A.shape[0] - 2)
    rng = np.random.default_rng(seed)
    v0 = rng.standard_normal(A.shape[0])
    lam, V = eigsh(A, k=k, sigma=0.0, which="LM", v0=v0)
    order = np.argsort(lam)
    lam, V = lam[order], V[:, order]
    w = (lam[0] / lam) ** power
    coeffs = rng.standard_normal((n, k)) * w
    B = coeffs @ V.T
    B /= np.linalg.norm(B, axis=1, keepdims=True)
    return system.from_fluid(torch.from_numpy(B))


def _check_systems(systems: object) -> list:
    return check_instances("systems", systems, PoissonSystem,
                           hint="pass a list of PoissonSystems, e.g. [fluid_proxy(N)]")


def _check_power(power: object) -> None:
    if isinstance(power, bool) or not isinstance(power, (int, float)) or not math.isfinite(power):
        raise ValueError(f"power must be a finite number (Ritz vector i gets the weight "
                         f"(lambda_1 / lambda_i)^power; 0: uniform), got {power!r}")


class DCDMData(Dataset):
    """Right-hand sides on several systems: item ``i`` is ``(rhs grid, system index,
    r^T A^-1 r)``.

    Per system: ``per_system`` unit vectors, a ``divergence_fraction`` of them divergence
    right-hand sides, a ``noise_fraction`` white noise on the fluid cells, the rest from
    :func:`ritz_rhs`.
    """

    def __init__(self, systems: Sequence, per_system: int, *, k: int = 64,
                 power: float = 1.0, divergence_fraction: float = 0.2,
                 noise_fraction: float = 0.1, seed: int = 0) -> None:
        from scipy.sparse.linalg import splu

        from sciml.pdes.poisson import divergence_rhs, random_rhs

        self.systems = _check_systems(systems)
        check_int("per_system", per_system, minimum=1)
        check_int("k", k, minimum=1)
        _check_power(power)
        for name, v in (("divergence_fraction", divergence_fraction),
                        ("noise_fraction", noise_fraction)):
            if check_real(name, v, minimum=0.0) > 1:
                raise ValueError(f"{name} must be in [0, 1], got {v!r}")
        check_seed(seed)
        if divergence_fraction + noise_fraction > 1:
            raise ValueError(f"divergence_fraction + noise_fraction must be <= 1, got "
                             f"{divergence_fraction} + {noise_fraction}")
        items = []
        for i, s in enumerate(self.systems):
            n_div = round(divergence_fraction * per_system)
            n_noise = round(noise_fraction * per_system)
            parts = [ritz_rhs(s, per_system - n_div - n_noise, k=k, power=power,
                              seed=seed + i)]
            g = torch.Generator().manual_seed(seed + 1000 + i)
            for n, make in ((n_div, divergence_rhs), (n_noise, random_rhs)):
                if n:
                    v = make(s, n, generator=g)
                    parts.append(v / v.norm(dim=-1, keepdim=True))
            rhs = torch.cat(parts)
            lu = splu(s.csr(reduced=True).tocsc())
            rf = s.to_fluid(rhs).numpy()
            energy = (rf * lu.solve(rf.T).T).sum(1)
            grids = rhs.reshape(-1, *s.shape)
            items += [(r.float(), i, float(e)) for r, e in zip(grids, energy)]
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        return self.items[i]


class _ShapeBatches(Dataset):
    """The items of a :class:`DCDMData` grouped into batches of one grid shape: item ``j``
    is a whole batch ``(rhs (b, *shape), system index (b,), energy (b,))``."""

    def __init__(self, data: DCDMData, batch_size: int, *, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        groups: dict[tuple, list[int]] = {}
        for j, (r, _, _) in enumerate(data.items):
            groups.setdefault(tuple(r.shape), []).append(j)
        self.batches = []
        for idx in groups.values():
            idx = [idx[k] for k in torch.randperm(len(idx), generator=g).tolist()]
            for start in range(0, len(idx), batch_size):
                part = [data.items[k] for k in idx[start:start + batch_size]]
                self.batches.append((torch.stack([p[0] for p in part]),
                                     torch.tensor([p[1] for p in part]),
                                     torch.tensor([p[2] for p in part], dtype=torch.float64)))

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, j: int):
        return self.batches[j]


@dataclass
class _Objective:
    systems: list
    kind: str = "energy"

    def __post_init__(self) -> None:
        # the operators and masks of each device the batches come on, built once there
        self._on: dict[torch.device, tuple[list, list]] = {}

    def _tables(self, device: torch.device) -> tuple[list, list]:
        if device not in self._on:
            self._on[device] = ([s.operator(dtype=torch.float32, device=device)
                                 for s in self.systems],
                                [s.fluid_mask.to(device).float() for s in self.systems])
        return self._on[device]

    def forward(self, net, batch):
        r, idx, energy = batch
        if idx.ndim == 2:  # a ready-made batch of one shape (_ShapeBatches), collated to 1
            r, idx, energy = r[0], idx[0], energy[0]
        ops, masks = self._tables(r.device)
        # a batch may mix systems: one loss term per system present, weighted by count.
        # The rows are grouped by system on the device (a stable sort keeps their order,
        # so each group is the rows idx == i in order) and the group sizes read in one
        # host sync per step: the only one, since the Python loop needs them
        order = torch.argsort(idx, stable=True)
        ids = torch.arange(len(self.systems), device=idx.device)
        # (not bincount: on a GPU it syncs once more to size its output)
        sizes = (idx[None, :] == ids[:, None]).sum(1).tolist()
        rs, es = r[order].split(sizes), energy[order].split(sizes)
        total, count = 0.0, 0
        for i, n in enumerate(sizes):
            if not n:
                continue
            if self.kind == "energy":
                term = _energy_loss(net, ops[i], rs[i], masks[i], es[i])
            else:
                term = _paper_loss(net, ops[i], rs[i], masks[i])
            total = total + term * n
            count += n
        return total / count, None

    @staticmethod
    def loss(pred, target):
        return pred


def train_dcdm(systems: Sequence, *, net: DCDMNet | None = None, per_system: int = 256,
               k: int = 64, power: float = 0.5, loss: str = "energy", steps: int = 500,
               lr: float = 1e-3,
               batch_size: int = 8, seed: int = 0, time_budget: float | None = None,
               out_dir: str | os.PathLike | None = None, progress: bool = True,
               device: str | torch.device | None = None) -> DCDMNet:
    """Train a :class:`DCDMNet` with the DCDM loss on right-hand sides of ``systems``
    (systems of several grid sizes are fine: each batch holds one size).

    Through :class:`~sciml.train.Trainer` (Adam, cosine schedule; resumable with
    ``out_dir``). The right-hand sides are made on the CPU (scipy), the training runs
    on ``device`` (default: the CPU, or ``cuda:LOCAL_RANK`` under torchrun on a CUDA
    machine; see :func:`sciml.utils.check_device` with ``resolve=True``), with each
    system's operator and mask built there once. Returns the trained network in eval
    mode, on ``device``.
    """
    from sciml.train import TrainConfig, Trainer

    loss = check_choice("loss", loss, ("energy", "paper"))
    if isinstance(systems, Sequence) and not isinstance(systems, str) and not systems:
        raise ValueError("systems is empty: pass at least one PoissonSystem")
    systems = _check_systems(systems)
    check_instance("net", net, DCDMNet, optional=True)
    check_int("per_system", per_system, minimum=1)
    check_int("k", k, minimum=1)
    _check_power(power)
    check_real("lr", lr, positive=True, fix="a typical value is 1e-3")
    check_seed(seed)
    check_time_budget(time_budget)
    out_dir = check_path("out_dir", out_dir, optional=True)
    check_bool("progress", progress)
    device = check_device(device, "device", resolve=True)
    dims = {s.ndim for s in systems}
    if len(dims) != 1:
        raise ValueError(f"systems mix {sorted(dims)}-dimensional grids; train 2D and 3D "
                         f"networks separately")
    steps = check_int("steps", steps, minimum=1)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    torch.manual_seed(seed)
    net = net if net is not None else DCDMNet(dims.pop())
    for s in systems:
        if net.levels(tuple(s.shape)) < 2 and net.max_levels != 1:
            side = 2 * net.coarsest
            raise ValueError(
                f"a {'x'.join(map(str, s.shape))} grid is too small for the network: DCDMNet "
                f"halves a grid while its sides are even and stay >= coarsest = "
                f"{net.coarsest}, so it would run a single level; use sides that are even and "
                f">= {side} (sciml train dcdm --size {side} or more), or pass a DCDMNet with "
                "max_levels=1 for a single-level network"
            )
    data = DCDMData(systems, per_system, k=k, power=power, seed=seed)
    obj = _Objective(systems, loss)
    loader_batch = batch_size
    if len({s.shape for s in systems}) > 1:
        # grids of several sizes cannot share a tensor: train on ready-made batches of
        # one shape each (shuffled as wholes every epoch)
        data, loader_batch = _ShapeBatches(data, batch_size, seed=seed), 1
    epochs = math.ceil(steps / math.ceil(len(data) / loader_batch))
    cfg = TrainConfig(epochs=epochs, max_steps=steps, lr=lr, batch_size=loader_batch,
                      time_budget=time_budget, seed=seed, progress=progress,
                      schedule="cosine")
    run = None if out_dir is None else Path(out_dir)
    trainer = Trainer(net, obj.loss, cfg, out_dir=run, forward=obj.forward, device=device,
                      model_config={"kind": "DCDMNet", **net.config()})
    trainer.fit(data, resume=run is not None and (run / "checkpoint.pt").exists())
    return net.eval()


def training_scenes(dim: int, size: int, n: int, *, seed: int = 0) -> list:
    """The training geometries: the fluid proxy and ``n - 1`` random obstacle scenes
    (seeds ``seed ... seed + n - 2``; evaluate on other seeds for unseen geometries)."""
    from sciml.pdes.poisson import fluid_proxy, random_obstacles

    dim = check_int("dim", dim)
    if dim not in (2, 3):
        raise ValueError(f"dim must be 2 or 3, got {dim}")
    check_int("size", size, minimum=4)
    check_int("n", n, minimum=1)
    check_seed(seed)
    return [fluid_proxy(size, d=dim)] + [random_obstacles(size, d=dim, seed=seed + i)
                                         for i in range(n - 1)]


def save_pretrained(net: DCDMNet, path: str | os.PathLike, settings: dict) -> Path:
    """Write ``{config, state, settings}`` (weights only, loadable without pickle), with
    per-tensor checksums (see :func:`sciml.train.save_weights`); read back by
    :func:`sciml.solvers.linear.load_pretrained`."""
    from sciml.train import save_weights

    check_instance("net", net, DCDMNet)
    path = check_path("path", path)
    if not isinstance(settings, dict):
        raise TypeError(f"settings must be a dict of the training settings, got "
                        f"{type(settings).__name__}")
    path.parent.mkdir(parents=True, exist_ok=True)
    # stored from the CPU, whatever device the network trained on
    state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    save_weights({"config": net.config(), "state": state, "settings": settings}, path)
    return path
