"""MP-PDE message passing: sciml's layer vs a torch-geometric ``MessagePassing`` layer.

Both layers compute the same thing (the MP-PDE layer of Brandstetter et al., ICLR 2022:
message MLP on ``[h_i, h_j, u_i - u_j, x_i - x_j, theta]``, mean aggregation, residual
update MLP, instance norm per graph) with the same weights, on 16 periodic graphs of 100
nodes with 3 neighbours on either side (9,600 edges), hidden width 128, K = 25 and three
PDE parameters. The torch-geometric layer is written the way the authors wrote theirs:
gather both end points of every edge, concatenate, apply the MLP per edge, scatter-mean.

The outputs and input gradients are checked to agree (float64) before anything is timed.
Forward and forward+backward are timed interleaved in one process (medians after
warm-up). The floor is the layer's matrix-product flops (per-node projections, the
per-edge hidden-to-hidden product, the update MLP; backward counted as twice forward)
over the measured throughput of a matmul of the per-edge shape, ``(E, H) @ (H, H)``.

    python benchmarks/message_passing.py            # full
    python benchmarks/message_passing.py --quick    # smoke test

Writes benchmarks/results/message_passing.json (results/gpu/ with --device cuda).
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from sciml.operators import MPPDELayer, periodic_graph
from sciml_recipes.benchtools import format_table, time_alternating, write_results

# (case, graphs, nodes per graph, neighbours per side, hidden, K, PDE parameters)
CASES = [("16x100-h128", 16, 100, 3, 128, 25, 3)]
QUICK_CASES = [("2x20-h32", 2, 20, 3, 32, 25, 3)]


def pyg_layer_class() -> type[nn.Module] | None:
    """The authors' per-edge layer as a torch-geometric ``MessagePassing`` (None if absent)."""
    try:
        from torch_geometric.nn import InstanceNorm, MessagePassing
    except ImportError:
        return None

    class PygMPPDELayer(MessagePassing):
        def __init__(self, hidden: int, k: int, n_variables: int) -> None:
            super().__init__(aggr="mean", node_dim=0)
            # the same parameter names as sciml's MPPDELayer, so state dicts load across
            self.message1 = nn.Linear(2 * hidden + k + 1 + n_variables, hidden)
            self.message2 = nn.Linear(hidden, hidden)
            self.update1 = nn.Linear(2 * hidden + n_variables, hidden)
            self.update2 = nn.Linear(hidden, hidden)
            self.norm = InstanceNorm(hidden)

        def forward(self, h, u, dx, v, edge_index, batch, batch_size: int):
            out = self.propagate(edge_index, h=h, u=u, dx=dx, v=v)
            return self.norm(out, batch, batch_size=batch_size)

        def message(self, h_i, h_j, u_i, u_j, dx, v_i):
            m = self.message1(torch.cat([h_i, h_j, u_i - u_j, dx, v_i], dim=-1))
            return F.silu(self.message2(F.silu(m)))

        def update(self, aggr_out, h, v):
            upd = self.update1(torch.cat([h, aggr_out, v], dim=-1))
            return h + F.silu(self.update2(F.silu(upd)))

    return PygMPPDELayer


def layer_flops(graphs: int, nx: int, neighbours: int, hidden: int, k: int) -> tuple[int, int]:
    """Matrix-product flops of sciml's layer: (forward, per-edge product alone)."""
    n, e = graphs * nx, graphs * nx * 2 * neighbours
    edge = 2 * e * hidden * hidden
    node = 2 * n * hidden * 3 * hidden + 2 * n * k * hidden + 2 * 2 * n * hidden * hidden
    return edge + node, edge


def run_case(case, graphs, nx, neighbours, hidden, k, n_params, device, repeats, warmup,
             pyg_cls):
    torch.manual_seed(0)
    ours = MPPDELayer(hidden, k, n_params, neighbours).to(device)
    n = graphs * nx
    h = torch.randn(graphs, nx, hidden, device=device)
    u = torch.randn(graphs, nx, k, device=device)
    v = torch.rand(graphs, n_params, device=device)

    fns = {}
    h_ours = h.clone().requires_grad_()

    def ours_fwd():
        with torch.no_grad():
            ours(h, u, v)

    def ours_fwd_bwd():
        ours.zero_grad(set_to_none=True)
        ours(h_ours, u, v).sum().backward()

    fns[("sciml", "fwd_ms")] = ours_fwd
    fns[("sciml", "fwd_bwd_ms")] = ours_fwd_bwd

    if pyg_cls is not None:
        theirs = pyg_cls(hidden, k, n_params).to(device)
        theirs.load_state_dict(ours.state_dict())
        src, dst = periodic_graph(nx, neighbours, device, graphs=graphs)
        edge_index = torch.stack([src, dst])
        x = (torch.arange(n, device=device) % nx + 0.5) / nx  # positions over L
        dx = x[dst] - x[src]
        dx = (dx - torch.round(dx))[:, None]  # minimum image: the graph is periodic
        batch = torch.arange(graphs, device=device).repeat_interleave(nx)
        hf, uf, vf = h.reshape(n, hidden), u.reshape(n, k), v.repeat_interleave(nx, 0)
        check_agreement(ours, theirs, (h, u, v), (hf, uf, dx, vf, edge_index, batch, graphs))
        h_theirs = hf.clone().requires_grad_()

        def theirs_fwd():
            with torch.no_grad():
                theirs(hf, uf, dx, vf, edge_index, batch, graphs)

        def theirs_fwd_bwd():
            theirs.zero_grad(set_to_none=True)
            theirs(h_theirs, uf, dx, vf, edge_index, batch, graphs).sum().backward()

        fns[("torch-geometric", "fwd_ms")] = theirs_fwd
        fns[("torch-geometric", "fwd_bwd_ms")] = theirs_fwd_bwd

    e = n * 2 * neighbours
    a = torch.randn(e, hidden, device=device)
    w = torch.randn(hidden, hidden, device=device)
    fns[("floor", "matmul_ms")] = lambda: torch.mm(a, w)
    t = time_alternating(fns, repeats=repeats, warmup=warmup, device=device)

    fwd_flops, edge_flops = layer_flops(graphs, nx, neighbours, hidden, k)
    rate = 2 * e * hidden * hidden / (t[("floor", "matmul_ms")] * 1e-3)  # flop/s
    floor_f = fwd_flops / rate * 1e3
    floor_fb = 3 * fwd_flops / rate * 1e3
    print(f"{case}: {e} edges; matmul ({e} x {hidden}) @ ({hidden} x {hidden}) runs at "
          f"{rate / 1e9:.1f} GFLOP/s; layer forward {fwd_flops / 1e6:.0f} MFLOP "
          f"({100 * edge_flops / fwd_flops:.0f}% in the per-edge product)")

    rows = [{"case": case, "impl": impl, "metric": metric, "value": val}
            for (impl, metric), val in t.items() if impl != "floor"]
    rows += [{"case": case, "impl": "sciml", "metric": "floor_fwd_ms", "value": floor_f},
             {"case": case, "impl": "sciml", "metric": "floor_fwd_bwd_ms", "value": floor_fb},
             {"case": case, "impl": "sciml", "metric": "matmul_gflops", "value": rate / 1e9}]
    table = []
    for impl in ("sciml", "torch-geometric"):
        if (impl, "fwd_ms") in t:
            f, fb = t[(impl, "fwd_ms")], t[(impl, "fwd_bwd_ms")]
            table.append((case, impl, f, fb, f / floor_f, fb / floor_fb))
    table.append((case, "floor (matmul flops)", floor_f, floor_fb, 1.0, 1.0))
    if pyg_cls is not None:
        sf = t[("torch-geometric", "fwd_ms")] / t[("sciml", "fwd_ms")]
        sfb = t[("torch-geometric", "fwd_bwd_ms")] / t[("sciml", "fwd_bwd_ms")]
        table.append((case, "speed-up vs torch-geometric", sf, sfb, "", ""))
    return rows, table


def check_agreement(ours: nn.Module, theirs: nn.Module, ours_args, theirs_args) -> None:
    """Raise unless both layers give the same output and input gradient (float64)."""
    o, th = copy.deepcopy(ours).double(), copy.deepcopy(theirs).double()
    oa = [a.double() if a.is_floating_point() else a for a in ours_args]
    ta = [a.double() if isinstance(a, torch.Tensor) and a.is_floating_point() else a
          for a in theirs_args]
    h_o = oa[0].clone().requires_grad_()
    h_t = ta[0].clone().requires_grad_()
    out_o = o(h_o, *oa[1:])
    out_t = th(h_t, *ta[1:])
    g = torch.randn_like(out_t)
    out_o.backward(g.view_as(out_o))
    out_t.backward(g)
    err = (out_o.reshape_as(out_t) - out_t).abs().max().item()
    gerr = (h_o.grad.reshape_as(h_t.grad) - h_t.grad).abs().max().item()
    if not (err < 1e-9 and gerr < 1e-9):
        raise RuntimeError(
            f"sciml and torch-geometric layers disagree: max |output diff| {err:.3g}, "
            f"max |grad diff| {gerr:.3g} (float64, same weights); not timing"
        )
    print(f"agreement with torch-geometric (float64): output {err:.1e}, gradient {gerr:.1e}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny case, few repeats (smoke test)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--repeats", type=int, default=None)
    args = ap.parse_args()
    device = torch.device(args.device)
    repeats = args.repeats or (2 if args.quick else 20)
    warmup = 1 if args.quick else 5
    pyg_cls = pyg_layer_class()
    if pyg_cls is None:
        print("torch-geometric is not installed (pip install -e '.[bench]'): sciml only")

    rows, table = [], []
    for spec in QUICK_CASES if args.quick else CASES:
        r, tb = run_case(*spec, device, repeats, warmup, pyg_cls)
        rows += r
        table += tb
    print(format_table(table, ("case", "impl", "fwd ms", "fwd+bwd ms", "fwd/floor",
                               "fwd+bwd/floor")))
    sub = "gpu/" if device.type == "cuda" else ""
    name = "message_passing_quick.json" if args.quick else "message_passing.json"
    path = write_results(Path(__file__).parent / "results" / sub / name, "message_passing",
                         rows, device=device,
                         extra={"repeats": repeats, "warmup": warmup, "dtype": "float32"})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
