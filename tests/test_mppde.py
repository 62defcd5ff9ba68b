"""MP-PDE: the fast layer against a per-edge reference, bundling, the periodic graph, checks."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from conftest import GRADCHECK, assert_close_rel

from sciml.operators import MPPDE, MPPDELayer, periodic_graph
from sciml.operators.mppde import _decoder_shape, _PeriodicEdgeSum

F64 = torch.float64


def _brute_force_graph(nx: int, neighbours: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(src, dst, (x_dst - x_src) / L) of one periodic grid, from all pairs within range."""
    x = (torch.arange(nx, dtype=F64) + 0.5) / nx
    d = x[:, None] - x[None, :]  # d[i, j] = x_i - x_j
    d = d - torch.round(d)  # minimum image on the unit circle
    near = (d.abs() <= neighbours / nx + 1e-9) & ~torch.eye(nx, dtype=torch.bool)
    dst, src = near.nonzero(as_tuple=True)
    return src, dst, d[dst, src]


def _message_passing_reference(layer: MPPDELayer, h, u, v):
    """The layer written per edge: concat, MLP on every edge, ``index_add_`` mean."""
    b, nx, hid = h.shape
    src1, dst1, dx1 = _brute_force_graph(nx, layer.neighbours)
    shift = torch.arange(b).repeat_interleave(len(src1)) * nx
    src, dst = src1.repeat(b) + shift, dst1.repeat(b) + shift
    dx = dx1.repeat(b).to(h.dtype)
    hf, uf = h.reshape(b * nx, hid), u.reshape(b * nx, -1)
    vf = v.repeat_interleave(nx, 0)
    feats = torch.cat([hf[dst], hf[src], uf[dst] - uf[src], dx[:, None], vf[dst]], dim=1)
    msg = F.silu(layer.message2(F.silu(layer.message1(feats))))
    total = torch.zeros_like(hf).index_add_(0, dst, msg)
    count = torch.zeros(b * nx, dtype=h.dtype).index_add_(0, dst, torch.ones_like(dx))
    agg = total / count[:, None]
    upd = F.silu(layer.update2(F.silu(layer.update1(torch.cat([hf, agg, vf], dim=1)))))
    out = (hf + upd).view(b, nx, hid)
    return F.instance_norm(out.transpose(1, 2), eps=1e-5).transpose(1, 2)


def _model_reference(model: MPPDE, u, t, theta):
    """The whole model from its modules, with the per-edge reference layers."""
    b, k, nx = u.shape
    un = u.transpose(1, 2)
    v = torch.cat([(t / model.tmax if model.tmax else t)[:, None], theta], dim=1)
    x = ((torch.arange(nx, dtype=u.dtype) + 0.5) / nx)[None, :, None].expand(b, nx, 1)
    h = model.encoder(torch.cat([un, x, v[:, None].expand(b, nx, v.shape[1])], dim=2))
    for layer in model.processor:
        h = _message_passing_reference(layer, h, un, v)
    d = model.decoder(h.reshape(b * nx, 1, -1)).view(b, nx, k).transpose(1, 2)
    return torch.stack([u[:, -1] + (i + 1) * model.dt * d[:, i] for i in range(k)], dim=1)


def _inputs(b, k, nx, n_params, gen, dtype=F64):
    u = torch.randn(b, k, nx, generator=gen, dtype=dtype)
    t = torch.rand(b, generator=gen, dtype=dtype)
    theta = torch.rand(b, n_params, generator=gen, dtype=dtype)
    return u, t, theta


@pytest.mark.parametrize("nx, neighbours", [(20, 3), (7, 3), (9, 1), (16, 5)])
def test_fast_layer_matches_per_edge_reference(nx, neighbours, gen):
    torch.manual_seed(0)
    layer = MPPDELayer(16, 5, 3, neighbours).to(F64)
    h = torch.randn(3, nx, 16, generator=gen, dtype=F64)
    u = torch.randn(3, nx, 5, generator=gen, dtype=F64)
    v = torch.randn(3, 3, generator=gen, dtype=F64)
    assert_close_rel(layer(h, u, v), _message_passing_reference(layer, h, u, v), F64,
                     factor=100)


def test_model_matches_per_edge_reference(gen):
    torch.manual_seed(0)
    model = MPPDE(25, dt=0.05, length=16.0, n_params=3, layers=2, tmax=4.0).to(F64)
    u, t, theta = _inputs(2, 25, 24, 3, gen)
    assert_close_rel(model(u, t, theta), _model_reference(model, u, t, theta), F64,
                     factor=100)


def test_default_model_size_and_shapes(gen):
    model = MPPDE(dt=0.16)
    # the paper reports about 0.63M parameters for this configuration
    assert model.num_parameters() == 639_737
    assert _decoder_shape(128, 25) == (16, 3, 14)
    u, t, theta = _inputs(2, 25, 40, 3, gen, dtype=torch.float32)
    out = model(u, t, theta)
    assert out.shape == (2, 25, 40) and out.dtype == torch.float32


@pytest.mark.parametrize("hidden, k", [(128, 20), (128, 25), (128, 50), (64, 25), (25, 25),
                                       (32, 7), (200, 10), (48, 1)])
def test_decoder_gives_time_window_outputs(hidden, k):
    k1, stride, k2 = _decoder_shape(hidden, k)
    assert k1 >= 1 and stride >= 1 and k2 >= 1
    assert ((hidden - k1) // stride + 1) - k2 + 1 == k


def test_temporal_bundling(gen):
    """Step k of the output is u_last + k dt d_k, with d the decoder's output."""
    torch.manual_seed(0)
    dt = 0.3
    model = MPPDE(25, dt=dt, hidden=32, layers=1).to(F64)
    seen = {}
    model.decoder.register_forward_hook(lambda mod, inp, out: seen.update(d=out))
    u, t, theta = _inputs(2, 25, 12, 3, gen)
    out = model(u, t, theta)
    d = seen["d"].view(2, 12, 25).transpose(1, 2)
    assert_close_rel(out[:, 0], u[:, -1] + dt * d[:, 0], F64)
    k = torch.arange(1, 26, dtype=F64)[None, :, None]
    assert_close_rel(out, u[:, -1:] + k * dt * d, F64)


def test_every_parameter_gets_a_gradient(gen):
    torch.manual_seed(0)
    model = MPPDE(25, dt=0.1, hidden=32, layers=2)
    u, t, theta = _inputs(2, 25, 16, 3, gen, dtype=torch.float32)
    model(u, t, theta).square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_periodic_edge_sum_gradcheck(gen):
    p = torch.randn(2, 7, 3, generator=gen, dtype=F64, requires_grad=True)
    q = torch.randn(2, 7, 3, generator=gen, dtype=F64, requires_grad=True)
    c = torch.randn(4, 3, generator=gen, dtype=F64, requires_grad=True)
    offsets = (-2, -1, 1, 2)
    z = _PeriodicEdgeSum.apply(p, q, c, offsets)
    for k, o in enumerate(offsets):
        assert_close_rel(z[:, :, k], p + q.roll(-o, dims=1) + c[k], F64)
    assert torch.autograd.gradcheck(lambda a, b_, c_: _PeriodicEdgeSum.apply(a, b_, c_, offsets),
                                    (p, q, c), **GRADCHECK)


@pytest.mark.parametrize("nx, neighbours", [(10, 3), (7, 3), (5, 1), (12, 2)])
def test_periodic_graph(nx, neighbours):
    src, dst = periodic_graph(nx, neighbours, graphs=2)
    assert src.shape == dst.shape == (2 * nx * 2 * neighbours,)
    # every node sends and receives exactly 2 neighbours edges, no self loops, no repeats
    assert torch.equal(torch.bincount(dst, minlength=2 * nx),
                       torch.full((2 * nx,), 2 * neighbours))
    assert torch.equal(torch.bincount(src, minlength=2 * nx),
                       torch.full((2 * nx,), 2 * neighbours))
    assert not (src == dst).any()
    assert ((src // nx) == (dst // nx)).all()  # graphs stay separate
    pairs = set(zip(src.tolist(), dst.tolist()))
    assert len(pairs) == len(src) and pairs == set(zip(dst.tolist(), src.tolist()))
    # the same edges as all pairs within neighbours spacings on the circle (wrap included)
    bs, bd, dx = _brute_force_graph(nx, neighbours)
    assert set(zip(src[: nx * 2 * neighbours].tolist(), dst[: nx * 2 * neighbours].tolist())) \
        == set(zip(bs.tolist(), bd.tolist()))
    # the minimum-image offsets of each node are symmetric: +-1..+-n spacings
    for i in range(nx):
        offs = sorted(round(float(o) * nx) for o in dx[bd == i])
        assert offs == [*range(-neighbours, 0), *range(1, neighbours + 1)]


def test_layer_is_translation_equivariant(gen):
    """The processor sees only differences: rolling the nodes rolls its output (periodicity)."""
    layer = MPPDELayer(8, 4, 2, 3).to(F64)
    h = torch.randn(2, 11, 8, generator=gen, dtype=F64)
    u = torch.randn(2, 11, 4, generator=gen, dtype=F64)
    v = torch.randn(2, 2, generator=gen, dtype=F64)
    out = layer(h, u, v)
    for s in (1, 4, -2):
        assert_close_rel(layer(h.roll(s, 1), u.roll(s, 1), v), out.roll(s, 1), F64, factor=100)


def test_config_round_trip(gen):
    model = MPPDE(20, dt=0.02, length=8.0, n_params=2, hidden=48, layers=2, neighbours=2,
                  tmax=2.0)
    cfg = json.loads(json.dumps(model.config()))
    clone = MPPDE(**cfg)
    assert clone.config() == model.config()
    clone.load_state_dict(model.state_dict())
    u, t, theta = _inputs(2, 20, 10, 2, gen, dtype=torch.float32)
    assert torch.equal(clone(u, t, theta), model(u, t, theta))


def test_scalar_time_and_no_parameters(gen):
    model = MPPDE(5, dt=0.1, n_params=0, hidden=16, layers=1)
    u = torch.randn(3, 5, 9, generator=gen)
    out = model(u, 0.5)
    assert torch.equal(out, model(u, torch.full((3,), 0.5), torch.zeros(3, 0)))


@pytest.mark.parametrize("kwargs, match", [
    ({"dt": -0.1}, "dt must be a positive number, got -0.1"),
    ({"dt": 0.1, "length": 0}, "length must be a positive number, got 0"),
    ({"dt": 0.1, "tmax": -1.0}, "tmax must be a positive number, got -1.0"),
    ({"dt": 0.1, "neighbours": 0}, "neighbours must be >= 1, got 0"),
    ({"dt": 0.1, "hidden": 10}, "hidden=10 and time_window=25"),
])
def test_bad_constructor_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MPPDE(**kwargs)


def test_bad_inputs(gen):
    model = MPPDE(5, dt=0.1, n_params=3, hidden=16, layers=1, neighbours=3)
    u, t, theta = _inputs(2, 5, 10, 3, gen, dtype=torch.float32)
    with pytest.raises(ValueError, match=r"time_window=5, nx\), got \(2, 4, 10\)"):
        model(u[:, 1:], t, theta)
    with pytest.raises(ValueError, match=r"\(2, 3\), got \(2, 2\)"):
        model(u, t, theta[:, :2])
    with pytest.raises(ValueError, match=r"\(batch,\) = \(2,\), got \(3,\)"):
        model(u, torch.zeros(3), theta)
    with pytest.raises(ValueError, match="more than 6 grid points, got nx=6"):
        model(u[..., :6], t, theta)
    with pytest.raises(TypeError, match=r"u must be a torch\.Tensor"):
        model(u.numpy(), t, theta)
    with pytest.raises(ValueError, match="more than 4 grid points, got nx=3"):
        periodic_graph(3, 2)


@pytest.mark.gpu
def test_cuda_matches_cpu(gen):
    torch.manual_seed(0)
    model = MPPDE(25, dt=0.1, hidden=32, layers=2).to(F64)
    u, t, theta = _inputs(2, 25, 20, 3, gen)
    ref = model(u, t, theta)
    out = model.cuda()(u.cuda(), t.cuda(), theta.cuda())
    assert_close_rel(out, ref, F64, factor=100)
