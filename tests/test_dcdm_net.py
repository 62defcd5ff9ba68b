"""DCDMNet: scale equivariance, obstacles, any grid size, every parameter learns."""

from __future__ import annotations

import pytest
import torch

from sciml.operators.dcdm import DCDMNet


@pytest.mark.parametrize("dim,grid", [(2, (32, 32)), (3, (16, 16, 16))])
def test_scale_equivariant_and_zero_off_fluid(dim, grid) -> None:
    torch.manual_seed(0)
    net = DCDMNet(dim, channels=4).double()
    r = torch.randn(3, *grid, dtype=torch.float64)
    mask = (torch.rand(*grid) > 0.2).double()
    y = net(r, mask)
    for s in (1e-8, 0.5, 1e6):
        torch.testing.assert_close(net(s * r, mask), s * y, rtol=1e-10, atol=0)
    assert float((y * (1 - mask)).detach().abs().max()) == 0.0
    assert torch.equal(net(torch.zeros_like(r), mask), torch.zeros_like(r))
    # values on non-fluid cells of the input do not matter
    r2 = r + 5 * (1 - mask) * torch.randn_like(r)
    torch.testing.assert_close(net(r2, mask), y)


def test_depth_follows_the_grid_and_parameters_do_not() -> None:
    net = DCDMNet(2, channels=4, coarsest=4)
    assert [net.levels((n, n)) for n in (8, 16, 64, 256)] == [2, 3, 5, 7]
    assert net.levels((24, 24)) == 3  # 24 -> 12 -> 6: halving 6 would give 3 < 4
    n_params = sum(p.numel() for p in net.parameters())
    for n in (16, 64, 128):
        assert net(torch.randn(1, n, n)).shape == (1, n, n)
    assert sum(p.numel() for p in net.parameters()) == n_params
    assert net.macs((64, 64)) > 3.9 * net.macs((32, 32))


def test_every_parameter_receives_a_gradient() -> None:
    torch.manual_seed(0)
    net = DCDMNet(3, channels=4, smoothing=2)
    net(torch.randn(2, 16, 16, 16)).pow(2).sum().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and float(p.grad.abs().sum()) > 0, name


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="dim"):
        DCDMNet(4)
    net = DCDMNet(2, channels=2)
    with pytest.raises(ValueError, match="grid"):
        net(torch.randn(2, 3, 16, 16))
    with pytest.raises(ValueError, match="mask"):
        net(torch.randn(2, 16, 16), torch.ones(8, 8))


def test_max_levels_caps_the_depth_and_equals_a_coarser_stop() -> None:
    torch.manual_seed(0)
    capped = DCDMNet(2, channels=4, max_levels=3)
    assert capped.levels((64, 64)) == 3 and capped.levels((8, 8)) == 2
    assert DCDMNet(2, channels=4).levels((64, 64)) == 5
    # the same weights with the coarsening stopped at 16 cells run the same three levels
    stopped = DCDMNet(2, channels=4, coarsest=16)
    stopped.load_state_dict(capped.state_dict())
    r = torch.randn(2, 64, 64)
    mask = (torch.rand(64, 64) > 0.2).double()
    assert torch.allclose(capped(r, mask.to(r)), stopped(r, mask.to(r)), atol=1e-6)
    assert DCDMNet(**capped.config()).max_levels == 3
    with pytest.raises(ValueError, match="max_levels"):
        DCDMNet(2, max_levels=0)


def test_shipped_3d_network_keeps_its_training_depth() -> None:
    from sciml.solvers.linear import load_pretrained

    net = load_pretrained(3)
    assert net.max_levels == 4 and net.levels((128, 128, 128)) == 4
    assert load_pretrained(2).max_levels is None
