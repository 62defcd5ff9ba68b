"""The message-passing neural PDE solver (MP-PDE) on a periodic 1D grid.

Brandstetter, Worrall & Welling, "Message Passing Neural PDE Solvers", ICLR 2022. The
nodes are the grid points; each is joined to its ``neighbours`` nearest points on either
side. An MLP encodes every node from its last ``K`` values, its position and the PDE
parameters; ``layers`` message-passing layers follow (eq. 8-9 of the paper)

.. math::

    m_i = \\frac{1}{|N(i)|} \\sum_{j \\in N(i)}
          \\phi(h_i, h_j, u_i - u_j, x_i - x_j, \\theta), \\qquad
    h_i \\leftarrow \\mathrm{IN}\\big(h_i + \\psi(h_i, m_i, \\theta)\\big),

with two-layer Swish MLPs ``phi`` and ``psi`` and an instance norm ``IN`` over the nodes
of each graph; a small 1D CNN reads the ``K`` increments ``d_k`` off each node's hidden
vector and the next ``K`` steps are ``u_last + k dt d_k`` (temporal bundling, eq. 10).

**The fast layer.** The message MLP's first linear map acts on
``[h_i, h_j, u_i - u_j, x_i - x_j, theta]``, so it splits into per-node terms plus a term
that depends only on the edge's offset::

    W [h_i; h_j; u_i - u_j; dx; v] + b
        = (A_i h_i + A_u u_i + A_v v + b)  +  (A_j h_j - A_u u_j)  +  a_x dx
        =           P_i                    +         Q_j            +  C_o

``P`` and ``Q`` are computed once per node (one ``(N, H) @ (H, 3H)`` product also gives the
update MLP's ``h`` term), and on a regular periodic grid the minimum-image offsets
``x_i - x_j`` take only ``2 neighbours`` values, so ``C`` is a ``(2 neighbours, H)`` table.
The only per-edge product left is the message MLP's second, hidden-to-hidden layer. Every
node has the same ``2 neighbours`` incoming edges, so the edges are laid out node-major as
``(B, nx, 2 neighbours, H)`` and the mean aggregation is a mean over one axis (no scatter).
The arithmetic is that of the authors' per-edge ``torch_geometric`` layer (the tests check
both against a per-edge reference in float64).

Departures from the authors' code (``MP-Neural-PDE-Solvers``, ``experiments/models_gnn.py``):
the graph is periodic (theirs is a radius graph on an open interval, so the end nodes
have fewer neighbours and the wrap-around is unseen); node positions are cell centres
``(i + 1/2) L / nx``; ``t`` is the time of the last input step (theirs: the first output
step, ``dt`` later). The decoder CNN of the paper is used where it exists (``hidden = 128``,
``K`` in 20/25/50); other sizes get a CNN of the same form whose kernel sizes give ``K``
outputs.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._validation import check_int, check_tensor
from ._layers import _ratio

__all__ = ["MPPDE", "MPPDELayer", "periodic_graph"]

# instance-norm epsilon of torch_geometric.nn.InstanceNorm (the authors' choice)
_NORM_EPS = 1e-5

# the decoder of the paper for hidden 128: (first kernel, stride, second kernel) by K
_PAPER_DECODER = {(128, 20): (15, 4, 10), (128, 25): (16, 3, 14), (128, 50): (12, 2, 10)}


def _offsets(neighbours: int) -> tuple[int, ...]:
    """Source offsets ``j - i`` of a node's incoming edges: ``-n..-1, 1..n``."""
    return (*range(-neighbours, 0), *range(1, neighbours + 1))


def _check_grid(nx: int, neighbours: int) -> None:
    if nx <= 2 * neighbours:
        raise ValueError(
            f"the periodic graph with neighbours={neighbours} needs more than "
            f"{2 * neighbours} grid points, got nx={nx}; use a finer grid or fewer neighbours"
        )


@functools.lru_cache(maxsize=64)
def periodic_graph(
    nx: int, neighbours: int, device: torch.device | str | None = None, *, graphs: int = 1
) -> tuple[Tensor, Tensor]:
    """Edge index ``(src, dst)`` of ``graphs`` periodic 1D grids of ``nx`` nodes each.

    Node ``b nx + i`` receives an edge from ``b nx + (i + o) mod nx`` for every offset
    ``o`` in ``-neighbours..-1, 1..neighbours``; edges are listed node-major (edge
    ``e = (b nx + i) 2 neighbours + k`` ends at node ``b nx + i``), so every node has
    exactly ``2 neighbours`` incoming edges and the graph is symmetric. ``src``/``dst``
    are rows 0/1 of a ``torch_geometric`` ``edge_index`` (flow source to target).

    The result is cached per argument set: treat the tensors as read-only.

    Raises:
        ValueError: ``nx <= 2 neighbours`` (an edge would repeat or join a node to itself).
    """
    nx = check_int("nx", nx, minimum=1)
    neighbours = check_int("neighbours", neighbours, minimum=1)
    graphs = check_int("graphs", graphs, minimum=1)
    _check_grid(nx, neighbours)
    off = torch.tensor(_offsets(neighbours), device=device)
    i = torch.arange(nx, device=device)
    src = (i[:, None] + off).remainder(nx)  # (nx, 2n)
    dst = i[:, None].expand_as(src)
    shift = (torch.arange(graphs, device=device) * nx)[:, None, None]
    return (src + shift).reshape(-1), (dst + shift).reshape(-1)


@functools.lru_cache(maxsize=64)
def _edge_offsets(nx: int, neighbours: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """``(x_i - x_j) / L`` of a node's incoming edges (minimum image): ``-o / nx``."""
    return torch.tensor([-o / nx for o in _offsets(neighbours)], device=device, dtype=dtype)


@functools.lru_cache(maxsize=64)
def _positions(nx: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """Cell centres over the domain length, ``(i + 1/2) / nx``."""
    return (torch.arange(nx, device=device, dtype=dtype) + 0.5) / nx


class _PeriodicEdgeSum(torch.autograd.Function):
    """``Z[b, i, k] = P[b, i] + Q[b, (i + o_k) mod nx] + C[k]`` on a periodic grid.

    The gather is a shifted slice of a periodically padded ``Q`` per offset; the backward
    adds the shifted slices of ``dZ`` back (vectorised strided adds instead of an
    ``index_add_`` that walks the edges one by one).
    """

    @staticmethod
    def forward(ctx, p: Tensor, q: Tensor, c: Tensor, offsets: tuple[int, ...]) -> Tensor:
        b, n, h = q.shape
        r = max(abs(o) for o in offsets)
        qpad = torch.cat([q[:, n - r:], q, q[:, :r]], dim=1)
        z = q.new_empty(b, n, len(offsets), h)
        for k, o in enumerate(offsets):
            torch.add(qpad[:, r + o: r + o + n], p + c[k], out=z[:, :, k])
        ctx.offsets = offsets
        return z

    @staticmethod
    def backward(ctx, gz: Tensor) -> tuple[Tensor | None, ...]:
        offsets = ctx.offsets
        b, n, _, h = gz.shape
        r = max(abs(o) for o in offsets)
        gp = gz.sum(2) if ctx.needs_input_grad[0] else None
        gc = gz.sum((0, 1)) if ctx.needs_input_grad[2] else None
        gq = None
        if ctx.needs_input_grad[1]:
            gpad = gz.new_zeros(b, n + 2 * r, h)
            for k, o in enumerate(offsets):
                gpad[:, r + o: r + o + n] += gz[:, :, k]
            gq = gpad[:, r: r + n].clone()
            gq[:, n - r:] += gpad[:, :r]
            gq[:, :r] += gpad[:, r + n:]
        return gp, gq, gc, None


def _instance_norm(h: Tensor) -> Tensor:
    """Normalise ``(B, nx, H)`` over the nodes of each graph, per feature (no affine)."""
    # two passes (mean, then the mean square of the deviation) instead of var_mean: the
    # same value, and elementwise passes over the contiguous inner axis are several times
    # faster on CPU than var_mean's reduction over the middle axis
    d = h - h.mean(1, keepdim=True)
    return d * torch.rsqrt(d.square().mean(1, keepdim=True) + _NORM_EPS)


class MPPDELayer(nn.Module):
    """One MP-PDE message-passing layer on periodic 1D grids (eq. 8-9 of the paper).

    .. math::

        m_{ij} = \\sigma(W_2\\, \\sigma(W_1 [h_i, h_j, u_i - u_j, x_i - x_j, v] + b_1) + b_2),
        \\quad h_i \\leftarrow \\mathrm{IN}\\Big(h_i + \\sigma\\big(U_2\\,
        \\sigma(U_1 [h_i, \\mathrm{mean}_j\\, m_{ij}, v] + c_1) + c_2\\big)\\Big)

    with Swish ``sigma`` (``x sigmoid(x)``, i.e. SiLU) and ``x_i - x_j`` the minimum-image
    difference over the domain length. The weights have the layout of the authors'
    ``GNN_Layer`` (``message1`` / ``message2`` / ``update1`` / ``update2`` are their
    ``message_net_1`` ... ``update_net_2``), so weights copy across one to one.

    Args:
        hidden: width ``H`` of the node features.
        time_window: ``K``, the number of ``u`` values per node.
        n_variables: width of ``v``, the per-graph variables (time and PDE parameters).
        neighbours: edges from this many nodes on either side.

    Call ``layer(h, u, v)`` with ``h`` ``(B, nx, H)``, ``u`` ``(B, nx, K)`` and ``v``
    ``(B, n_variables)``; returns the new ``h``, ``(B, nx, H)``.
    """

    def __init__(self, hidden: int, time_window: int, n_variables: int, neighbours: int) -> None:
        super().__init__()
        self.hidden = check_int("hidden", hidden, minimum=1)
        self.time_window = check_int("time_window", time_window, minimum=1)
        self.n_variables = check_int("n_variables", n_variables, minimum=0)
        self.neighbours = check_int("neighbours", neighbours, minimum=1)
        self.message1 = nn.Linear(2 * hidden + time_window + 1 + n_variables, hidden)
        self.message2 = nn.Linear(hidden, hidden)
        self.update1 = nn.Linear(2 * hidden + n_variables, hidden)
        self.update2 = nn.Linear(hidden, hidden)

    def extra_repr(self) -> str:
        return (f"hidden={self.hidden}, time_window={self.time_window}, "
                f"n_variables={self.n_variables}, neighbours={self.neighbours}")

    def forward(self, h: Tensor, u: Tensor, v: Tensor) -> Tensor:
        b, nx, hid = h.shape
        if hid != self.hidden or u.shape != (b, nx, self.time_window) or v.shape != (
                b, self.n_variables):
            raise ValueError(
                f"expected h (B, nx, {self.hidden}), u (B, nx, {self.time_window}) and v "
                f"(B, {self.n_variables}), got {tuple(h.shape)}, {tuple(u.shape)}, "
                f"{tuple(v.shape)}"
            )
        _check_grid(nx, self.neighbours)
        n, k = b * nx, self.time_window
        w1 = self.message1.weight  # columns: h_i | h_j | u_i - u_j | x_i - x_j | v
        a_i, a_j = w1[:, :hid], w1[:, hid: 2 * hid]
        a_u, a_x, a_v = w1[:, 2 * hid: 2 * hid + k], w1[:, 2 * hid + k], w1[:, 2 * hid + k + 1:]
        c1 = self.update1.weight  # columns: h | m | v
        c_h, c_m, c_v = c1[:, :hid], c1[:, hid: 2 * hid], c1[:, 2 * hid:]

        # per-node terms: [P_h | Q_h | update's h term] in one product
        hw = torch.mm(h.reshape(n, hid), torch.cat([a_i, a_j, c_h]).t())
        uw = torch.mm(u.reshape(n, k), a_u.t()).view(b, nx, hid)
        vm = torch.addmm(self.message1.bias, v, a_v.t())  # (B, H), per graph
        vu = torch.addmm(self.update1.bias, v, c_v.t())
        p = hw[:, :hid].view(b, nx, hid) + uw + vm[:, None]
        q = hw[:, hid: 2 * hid].view(b, nx, hid) - uw
        c = _edge_offsets(nx, self.neighbours, h.device, h.dtype)[:, None] * a_x

        # per-edge: the only product over the edges is the hidden-to-hidden second layer
        offsets = _offsets(self.neighbours)
        z = F.silu(_PeriodicEdgeSum.apply(p, q, c, offsets))  # (B, nx, 2n, H)
        msg = F.silu(torch.addmm(self.message2.bias, z.view(-1, hid), self.message2.weight.t()))
        m = msg.view(n, len(offsets), hid).mean(1)

        upd = torch.addmm(hw[:, 2 * hid:], m, c_m.t()).view(b, nx, hid) + vu[:, None]
        upd = F.silu(upd).view(n, hid)
        upd = F.silu(torch.addmm(self.update2.bias, upd, self.update2.weight.t()))
        return _instance_norm(h + upd.view(b, nx, hid))


def _decoder_shape(hidden: int, k: int) -> tuple[int, int, int]:
    """(first kernel, stride, second kernel) of a decoder CNN mapping ``hidden`` to ``k``."""
    if (hidden, k) in _PAPER_DECODER:
        return _PAPER_DECODER[(hidden, k)]
    stride = max(1, math.floor(hidden / (1.5 * k)))
    k1 = max(1, min(16, hidden - stride * (k - 1)))
    length = (hidden - k1) // stride + 1
    return k1, stride, length - k + 1


class MPPDE(nn.Module):
    """Message-passing neural PDE solver (Brandstetter et al., ICLR 2022), periodic 1D.

    Maps the last ``K`` steps of a trajectory to the next ``K`` (temporal bundling):

    .. math:: u(t + k\\,dt) = u(t) + k\\,dt\\, d_k(x), \\qquad k = 1..K,

    where ``d`` is decoded per node from ``layers`` message-passing layers
    (:class:`MPPDELayer`) over a periodic graph joining each grid point to its
    ``neighbours`` nearest on either side. The encoder MLP sees the node's ``K`` values,
    its position ``x / L`` (cell centres), the time ``t / tmax`` and the PDE parameters
    ``theta``; the messages and updates see ``v = [t / tmax, theta]`` too. Pass ``theta``
    scaled to order one (the authors divide each parameter by its largest value).

    With the defaults (``K = 25``, ``hidden = 128``, 6 layers, 3 parameters) the model has
    639,737 parameters (the paper: about 0.63M); :meth:`num_parameters` counts them.

    Args:
        time_window: ``K``, steps in and out.
        dt: time between stored steps.
        length: length ``L`` of the periodic domain.
        n_params: number of PDE parameters in ``theta`` (may be 0).
        hidden: width of the node features.
        layers: number of message-passing layers.
        neighbours: edges from this many grid points on either side.
        tmax: time scale of the time feature (``None``: ``t`` is used as it is).

    Call ``model(u, t, theta)`` with ``u`` ``(B, K, nx)`` (oldest step first), ``t``
    ``(B,)`` (the time of ``u[:, -1]``; a number is broadcast) and ``theta``
    ``(B, n_params)``; returns the next ``K`` steps, ``(B, K, nx)``. ``t`` and ``theta``
    follow the device and dtype of ``u``.

    Equivalent to the authors' ``MP_PDE_Solver`` on a periodic graph (see the module
    docstring for the differences).
    """

    def __init__(
        self,
        time_window: int = 25,
        *,
        dt: float,
        length: float = 16.0,
        n_params: int = 3,
        hidden: int = 128,
        layers: int = 6,
        neighbours: int = 3,
        tmax: float | None = None,
    ) -> None:
        super().__init__()
        self.time_window = check_int("time_window", time_window, minimum=1)
        self.dt = _ratio("dt", dt)
        self.length = _ratio("length", length)
        self.n_params = check_int("n_params", n_params, minimum=0)
        self.hidden = check_int("hidden", hidden, minimum=1)
        if hidden < time_window:
            raise ValueError(
                f"hidden must be >= time_window for the decoder CNN, got hidden={hidden} and "
                f"time_window={time_window}"
            )
        self.layers = check_int("layers", layers, minimum=1)
        self.neighbours = check_int("neighbours", neighbours, minimum=1)
        self.tmax = None if tmax is None else _ratio("tmax", tmax)
        nv = n_params + 1  # the time is one more variable, as in the authors' code
        self.encoder = nn.Sequential(
            nn.Linear(time_window + 1 + nv, hidden), nn.SiLU(),
            nn.Linear(hidden, hidden), nn.SiLU(),
        )
        self.processor = nn.ModuleList(
            MPPDELayer(hidden, time_window, nv, neighbours) for _ in range(layers)
        )
        k1, stride, k2 = _decoder_shape(hidden, time_window)
        self.decoder = nn.Sequential(
            nn.Conv1d(1, 8, k1, stride=stride), nn.SiLU(), nn.Conv1d(8, 1, k2),
        )

    def config(self) -> dict[str, object]:
        """The constructor arguments (JSON-safe): ``MPPDE(**model.config())`` rebuilds it."""
        return {"time_window": self.time_window, "dt": self.dt, "length": self.length,
                "n_params": self.n_params, "hidden": self.hidden, "layers": self.layers,
                "neighbours": self.neighbours, "tmax": self.tmax}

    def num_parameters(self) -> int:
        """Number of trainable scalars."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def _check(self, u: object, t: object, theta: object) -> tuple[Tensor, Tensor, Tensor]:
        u = check_tensor("u", u, real=True)
        if u.ndim != 3 or u.shape[1] != self.time_window:
            raise ValueError(
                f"u must have shape (batch, time_window={self.time_window}, nx), got "
                f"{tuple(u.shape)}"
            )
        _check_grid(u.shape[2], self.neighbours)
        b = u.shape[0]
        if isinstance(t, (int, float)) and not isinstance(t, bool):
            t = torch.full((b,), float(t), device=u.device, dtype=u.dtype)
        t = check_tensor("t", t, real=True)
        if t.ndim == 0:
            t = t.expand(b)
        if t.shape != (b,):
            raise ValueError(f"t must have shape (batch,) = ({b},), got {tuple(t.shape)}")
        if theta is None and self.n_params == 0:
            theta = u.new_zeros(b, 0)
        theta = check_tensor("theta", theta, real=True)
        if theta.shape != (b, self.n_params):
            raise ValueError(
                f"theta must have shape (batch, n_params) = ({b}, {self.n_params}), got "
                f"{tuple(theta.shape)}"
            )
        # t and theta follow u's device and dtype (no copy when they are there already)
        return u, t.to(u.device, u.dtype), theta.to(u.device, u.dtype)

    def forward(self, u: Tensor, t: Tensor | float, theta: Tensor | None = None) -> Tensor:
        u, t, theta = self._check(u, t, theta)
        b, k, nx = u.shape
        un = u.transpose(1, 2).contiguous()  # (B, nx, K): node features
        tn = t if self.tmax is None else t / self.tmax
        v = torch.cat([tn[:, None], theta], dim=1)  # (B, n_params + 1)
        x = _positions(nx, u.device, u.dtype)
        enc_in = torch.cat([un, x[None, :, None].expand(b, nx, 1),
                            v[:, None].expand(b, nx, v.shape[1])], dim=2)
        h = self.encoder(enc_in)
        for layer in self.processor:
            h = layer(h, un, v)
        d = self.decoder(h.reshape(b * nx, 1, self.hidden)).view(b, nx, k).transpose(1, 2)
        steps = self.dt * torch.arange(1, k + 1, device=u.device, dtype=u.dtype)
        return u[:, -1:] + steps[:, None] * d
