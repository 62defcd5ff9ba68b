"""Demo part ``ot``, the OT test problems it shares with the example and benchmark, and the
peer importer the benchmark needs."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch

from sciml_recipes.benchtools import import_peer
from sciml_recipes.demo import PARTS
from sciml_recipes.demo.ot_problems import (
    barycentric_map,
    gaussian_mixture_density,
    grid_densities,
    grid_points,
    marginal_error,
    random_assignment,
    random_points,
)

BUILDERS = [
    lambda: random_points(30, seed=3),
    lambda: random_assignment(30, seed=3),
    lambda: grid_densities(6, power=1, seed=3),
    lambda: grid_densities(6, power=2, seed=3),
]


@pytest.mark.parametrize("build", BUILDERS)
def test_problems_are_balanced_positive_scaled_and_seeded(build):
    p = build()
    n, m = p.M.shape
    assert p.a.shape == (n,) and p.b.shape == (m,)
    assert p.a.dtype == p.b.dtype == p.M.dtype == torch.float64
    assert bool((p.a > 0).all()) and bool((p.b > 0).all())
    assert abs(float(p.a.sum()) - 1) < 1e-14 and abs(float(p.b.sum()) - 1) < 1e-14
    assert float(p.M.min()) >= 0 and float(p.M.max()) <= 1 + 1e-15
    q = build()
    assert torch.equal(p.M, q.M) and torch.equal(p.a, q.a) and torch.equal(p.b, q.b)


def test_geometric_costs_are_the_scaled_distances():
    p = random_points(20, seed=1)
    assert float(p.M.max()) == 1.0
    torch.testing.assert_close(p.M * p.scale, torch.cdist(p.x, p.y).square())
    g = grid_densities(5, power=1)
    torch.testing.assert_close(g.M * g.scale, torch.cdist(g.x, g.y))
    # grid point i * size + j sits at ((i + 1/2) / size, (j + 1/2) / size)
    assert grid_points(4)[1 * 4 + 2].tolist() == [1.5 / 4, 2.5 / 4]


def test_seeds_change_the_problem_and_the_two_densities_differ():
    assert not torch.equal(random_points(10, seed=0).M, random_points(10, seed=1).M)
    g = grid_densities(8, seed=0)
    assert not torch.allclose(g.a, g.b)
    d = gaussian_mixture_density(8, seed=0)
    assert d.shape == (8, 8) and abs(float(d.sum()) - 1) < 1e-14


def test_marginal_error_is_the_l1_error_for_torch_and_numpy():
    a = np.array([0.5, 0.5])
    b = np.array([0.25, 0.75])
    P = np.array([[0.25, 0.25], [0.0, 0.5]])  # row sums exact, columns exact
    assert marginal_error(P, a, b) == 0.0
    P2 = P + np.array([[0.1, 0.0], [0.0, 0.0]])
    assert marginal_error(P2, a, b) == pytest.approx(0.2)
    assert marginal_error(torch.from_numpy(P2), torch.from_numpy(a), b) == pytest.approx(0.2)
    with pytest.raises(ValueError, match="expected P of shape"):
        marginal_error(P.T[:1], a, b)


def test_barycentric_map_of_a_permutation_plan_is_the_permutation():
    y = torch.rand(5, 2, dtype=torch.float64)
    perm = torch.tensor([3, 0, 4, 1, 2])
    P = torch.zeros(5, 5, dtype=torch.float64)
    P[torch.arange(5), perm] = 0.2
    torch.testing.assert_close(barycentric_map(P, y), y[perm])
    with pytest.raises(ValueError, match="one point per target"):
        barycentric_map(P, y[:3])


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_bad_sizes_are_rejected(bad):
    with pytest.raises(ValueError, match="must be an int"):
        random_points(bad)
    with pytest.raises(ValueError, match="power must be"):
        grid_densities(4, power=3)


def test_import_peer_skips_a_script_that_shadows_the_peer(tmp_path, monkeypatch):
    scripts, site = tmp_path / "scripts", tmp_path / "site"
    scripts.mkdir()
    site.mkdir()
    (scripts / "sciml_fake_peer.py").write_text("WHO = 'script'\n")
    (site / "sciml_fake_peer.py").write_text("WHO = 'peer'\n")
    main = types.ModuleType("__main__")
    main.__file__ = str(scripts / "sciml_fake_peer.py")
    monkeypatch.setitem(sys.modules, "__main__", main)
    monkeypatch.setattr(sys, "path", [str(scripts), str(site), *sys.path])
    monkeypatch.setitem(sys.modules, "sciml_fake_peer", None)  # removed again afterwards
    assert import_peer("sciml_fake_peer").WHO == "peer"
    assert sys.path[0] == str(scripts)  # left as it was
    with pytest.raises(ImportError, match="not installed"):
        import_peer("sciml_no_such_peer_xyz")


def test_demo_ot_quick_converges_agrees_and_draws(tmp_path):
    res = PARTS["ot"](tmp_path, quick=True, seed=0)
    v = {(r["case"], r["metric"]): float(r["value"]) for r in res.rows}
    assert all(f.exists() and f.stat().st_size > 0 for f in res.figures)
    for key, err in v.items():
        if key[1].endswith("marginal_error"):
            assert err <= 1e-8, key
    # sns needs far fewer iterations than Sinkhorn at reg 1e-3, and the plans agree
    pts = "points-n300-reg1e-3"
    assert v[pts, "sns_iterations"] < v[pts, "sinkhorn_iterations"] / 10
    assert v[pts, "plan_l1_diff_sinkhorn_vs_sns"] < 1e-6
    diff = [x for (c, m), x in v.items() if m.startswith("plan_l1_diff_sns_vs_")]
    assert len(diff) == 1 and diff[0] < 1e-8
    assert 0 < v["w2-16x16-reg1e-3", "w2_entropic"] < 2**0.5
