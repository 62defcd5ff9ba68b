"""The combined Burgers/KdV family: WENO5 solver, conventions, data generator, Dataset.

Every check is against an independent reference: exact derivatives and cell averages
(Gauss-Legendre quadrature), the Rankine-Hugoniot shock speed, conservation of the mean,
a fine-grid solve, the original pipeline's filter written out by hand, and one
uninterrupted generator run.
"""

from __future__ import annotations

import itertools
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from sciml.data import BurgersDataset, generate_burgers, sample_seed
from sciml.pdes import (
    FAMILIES,
    CombinedParameters,
    coarsen,
    forcing,
    forcing_cell_average,
    generate_trajectories,
    grid,
    initial_condition,
    sample_parameters,
    solve_combined,
)
from sciml.pdes._weno import weno5_flux_difference
from sciml_recipes.cli import main

L = 16.0
F64 = torch.float64
GAUSS = [torch.from_numpy(a) for a in np.polynomial.legendre.leggauss(12)]


def _cell_average(f, nx: int) -> torch.Tensor:
    """Averages of ``f`` over the cells ``[i dx, (i+1) dx)`` by 12-point Gauss-Legendre."""
    dx = L / nx
    xc = (torch.arange(nx, dtype=F64) + 0.5) * dx
    nodes, weights = GAUSS
    return (f(xc[:, None] + nodes * dx / 2) * weights / 2).sum(-1)


def _params(n: int, *, alpha: float = 1.0, beta: float = 0.0, gamma: float = 0.0,
            scale: float = 1.0, seed: int = 0) -> CombinedParameters:
    p = sample_parameters("E1", n, generator=torch.Generator().manual_seed(seed))
    full = lambda v: torch.full((n,), v, dtype=F64)  # noqa: E731
    return CombinedParameters(alpha=full(alpha), beta=full(beta), gamma=full(gamma),
                              amplitude=scale * p.amplitude, omega=p.omega, phase=p.phase,
                              l=p.l)


def _orders(errs: list[float]) -> list[float]:
    return [math.log2(a / b) for a, b in itertools.pairwise(errs)]


# ---------------------------------------------------------------------- the spatial operator

def test_weno5_flux_difference_is_fifth_order_on_smooth_data():
    # u > 0 everywhere: no sonic point, so the Godunov flux is the upwind one
    k = 2 * math.pi / L
    u = lambda x: 1 + 0.5 * torch.sin(k * x) + 0.1 * torch.cos(2 * k * x)  # noqa: E731
    errs = []
    for nx in (50, 100, 200, 400):
        dx = L / nx
        faces = torch.arange(nx + 1, dtype=F64) * dx
        exact = (0.5 * u(faces[1:]) ** 2 - 0.5 * u(faces[:-1]) ** 2) / dx  # cell avg of (u^2/2)_x
        approx = weno5_flux_difference(_cell_average(u, nx)[None], dx)[0]
        errs.append(float((approx - exact).abs().max()))
    assert errs[-1] < 1e-9
    assert min(_orders(errs)) > 4.5, errs


def test_full_solve_converges_before_the_shock():
    """Viscous Burgers with forcing (fourth-order u_xx, RK3 with dt ~ dx): order ~4;
    with dispersion the second-order u_xxx stencil sets order 2."""
    for (alpha, beta, gamma, T, scale, fine, ns, lowest) in [
        (1.0, 0.02, 0.0, 0.5, 0.4, 800, (25, 50, 100), 3.5),
        (2.0, 0.2, 0.3, 0.05, 1.0, 400, (25, 50, 100), 1.8),
    ]:
        p = _params(3, alpha=alpha, beta=beta, gamma=gamma, scale=scale, seed=3)
        ref = solve_combined(initial_condition(p, fine), p, [T])[:, -1]
        errs = []
        for nx in ns:
            u = solve_combined(initial_condition(p, nx), p, [T])[:, -1]
            errs.append(float((u - coarsen(ref, nx)).abs().max()))
        assert min(_orders(errs)) > lowest, (alpha, beta, gamma, errs)


def test_shock_moves_at_the_rankine_hugoniot_speed():
    """A periodic step uL = 1.5 on [0, 8), uR = 0.5 on [8, 16): the shock at 8 moves at
    (uL + uR)/2 = 1; the rarefaction from x = 0 stays in [0.5 t, 1.5 t]."""
    nx, ul, ur, T = 200, 1.5, 0.5, 2.0
    p = _params(1, scale=0.0)  # no forcing
    u0 = torch.where(torch.arange(nx) < nx // 2, ul, ur).to(F64)[None]
    u = solve_combined(u0, p, [T])[0, -1]
    dx = L / nx
    # conservation makes the shock position exact: in a window [a, b) of constant states
    # at its ends, int u = uL (s - a) + uR (b - s)
    a, b = 6.0, 14.0
    window = u[round(a / dx):round(b / dx)]
    s = (float(window.sum()) * dx - ur * b + ul * a) / (ul - ur)
    assert s == pytest.approx(8.0 + T * (ul + ur) / 2, abs=1e-10)
    # pointwise: the steepest drop lies within a cell of it, and the states are exact
    x = grid(nx)
    drop = int(torch.argmin(u[1:] - u[:-1]))
    assert abs(float(x[drop] + dx / 2) - s) <= dx
    # the end cells of the window hold the states to rounding (which the exact position
    # above relies on); upstream of the shock WENO leaves a tail below 1e-8
    assert float((window[:3] - ul).abs().max()) < 1e-11
    assert float((window[-3:] - ur).abs().max()) < 1e-11
    assert float((window[:20] - ul).abs().max()) < 1e-8
    assert float((window[-20:] - ur).abs().max()) < 1e-8
    # essentially non-oscillatory (not TVD: a 1e-4 dip at the foot of the rarefaction)
    assert float(u.max()) <= ul + 1e-3 and float(u.min()) >= ur - 1e-3


@pytest.mark.parametrize("forced", [False, True])
def test_the_mean_is_conserved_to_machine_precision(forced):
    nx = 64
    p = _params(4, alpha=2.0, beta=0.1, gamma=0.05, scale=1.0 if forced else 0.0, seed=5)
    x = grid(nx)
    u0 = _cell_average(lambda y: torch.sin(2 * math.pi * y / L) + 0.5, nx)[None].repeat(4, 1)
    u0 = u0 * torch.linspace(0.5, 2.0, 4, dtype=F64)[:, None]
    u = solve_combined(u0, p, torch.linspace(0, 1.0, 6, dtype=F64))
    drift = (u.mean(-1) - u0.mean(-1)[:, None]).abs().max()
    assert float(drift) < 1e-13
    assert float((u[:, -1] - u0).abs().max()) > 0.1  # and the solution changed
    assert x.shape == (nx,)


def test_float32_matches_float64_and_the_batch_does_not_matter():
    p = _params(3, alpha=1.0, beta=0.1, gamma=0.0, seed=7)
    t = torch.linspace(0, 1.0, 11, dtype=F64)
    u64 = solve_combined(initial_condition(p, 50), p, t)
    u32 = solve_combined(initial_condition(p, 50).float(), p, t)
    assert u32.dtype == torch.float32 and u32.shape == (3, 11, 50)
    assert float((u32.double() - u64).abs().max()) < 1e-4
    one = solve_combined(initial_condition(p[1], 50), p[1], t)
    assert torch.equal(one[0], u64[1])  # each sample steps on its own clock


@pytest.mark.gpu
def test_cuda_matches_cpu():
    p = _params(4, alpha=1.0, beta=0.1, gamma=0.1, seed=8)
    t = torch.linspace(0, 0.5, 5, dtype=F64)
    cpu = solve_combined(initial_condition(p, 50), p, t)
    pc = p.to("cuda")
    gpu = solve_combined(initial_condition(pc, 50), pc, t)
    assert gpu.device.type == "cuda"
    assert float((gpu.cpu() - cpu).abs().max()) < 1e-12


# ---------------------------------------------------------------------- forcing and grids

def test_cell_average_forcing_equals_quadrature():
    p = _params(3, seed=11)
    nx = 40
    t = torch.tensor([0.0, 1.3, 3.7], dtype=F64)
    got = forcing_cell_average(p, t, nx)
    for i in range(3):
        want = _cell_average(lambda y, i=i: forcing(p[i], float(t[i]), y.reshape(-1))
                             .reshape(y.shape), nx)
        np.testing.assert_allclose(got[i].numpy(), want.numpy(), rtol=0, atol=1e-13)
    # the conservative initial condition is the cell-averaged forcing at t = 0 ...
    torch.testing.assert_close(initial_condition(p, nx), forcing_cell_average(p, 0.0, nx),
                               rtol=0, atol=1e-15)
    # ... and the paper's samples the points of linspace(0, L, nx), endpoint included
    xs = torch.linspace(0, L, nx, dtype=F64)
    torch.testing.assert_close(initial_condition(p, nx, convention="paper"),
                               forcing(p, 0.0, xs), rtol=0, atol=1e-14)
    assert float(grid(nx, convention="paper")[-1]) == L
    torch.testing.assert_close(grid(4), torch.tensor([2.0, 6.0, 10.0, 14.0], dtype=F64))


def test_block_averages_are_exact_coarse_cell_averages():
    p = _params(2, seed=12)
    fine = initial_condition(p, 200)
    for n in (100, 50, 40):
        torch.testing.assert_close(coarsen(fine, n), initial_condition(p, n), rtol=0,
                                   atol=1e-14)
    torch.testing.assert_close(coarsen(coarsen(fine, 100), 50), coarsen(fine, 50))
    u = torch.arange(12.0)
    torch.testing.assert_close(coarsen(u, 4), torch.tensor([1.0, 4.0, 7.0, 10.0]))


def test_paper_filter_is_the_original_five_point_stride_filter():
    u = torch.arange(200, dtype=F64) ** 1.5
    # the original: np.concatenate((u[-3:-1], u, u[1:3])), weights 0.2 x 5, stride r
    padded = np.concatenate((u[-3:-1].numpy(), u.numpy(), u[1:3].numpy()))
    for n in (100, 50, 40):
        r = 200 // n
        want = [padded[j * r:j * r + 5].mean() for j in range(n)]
        np.testing.assert_allclose(coarsen(u, n, convention="paper").numpy(), want,
                                   rtol=1e-15)
    p = _params(2, seed=13)
    data = generate_trajectories(p, family="E1", convention="paper", resolutions=(40, 20),
                                 nt=5)
    assert data[40].shape == (2, 5, 40) and data[20].shape == (2, 5, 20)
    torch.testing.assert_close(data[20], coarsen(data[40], 20, convention="paper"))
    torch.testing.assert_close(data[40][:, 0], initial_condition(p, 40, convention="paper"))


def test_families_hold_the_published_ranges():
    e1, e2, e3 = (FAMILIES[k] for k in ("E1", "E2", "E3"))
    assert (e1.T, e1.alpha, e1.beta, e1.gamma) == (4.0, (1.0, 1.0), (0.0, 0.0), (0.0, 0.0))
    assert (e2.T, e2.alpha, e2.beta, e2.gamma) == (4.0, (1.0, 1.0), (0.0, 0.2), (0.0, 0.0))
    assert (e3.T, e3.alpha, e3.beta, e3.gamma) == (2.0, (0.0, 6.0), (0.1, 0.4), (0.0, 1.0))
    p = sample_parameters("E3", 4000, generator=torch.Generator().manual_seed(0))
    th = p.theta()
    assert th.shape == (4000, 3) and th.dtype == F64
    for col, (lo, hi) in enumerate((e3.alpha, e3.beta, e3.gamma)):
        assert lo <= float(th[:, col].min()) < lo + 0.02 * (hi - lo)
        assert hi - 0.02 * (hi - lo) < float(th[:, col].max()) <= hi
    for name, (lo, hi) in {"amplitude": (-0.5, 0.5), "omega": (-0.4, 0.4),
                           "phase": (0.0, 2 * math.pi)}.items():
        v = getattr(p, name)
        assert v.shape == (4000, 5) and lo <= float(v.min()) and float(v.max()) <= hi
        assert float(v.max() - v.min()) > 0.98 * (hi - lo)
    assert set(p.l.unique().tolist()) == {1, 2}  # randint(1, 3): l in {1, 2}
    e1p = sample_parameters("E1", 10, generator=torch.Generator().manual_seed(0)).theta()
    assert (e1p == torch.tensor([1.0, 0.0, 0.0], dtype=F64)).all()
    # a batch draw is reproducible and per-sample draws can be redrawn alone
    again = sample_parameters("E3", 4000, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again.amplitude, p.amplitude) and torch.equal(again.l, p.l)


def test_bad_input_is_a_clear_error():
    p = _params(2)
    u0 = initial_condition(p, 50)
    with pytest.raises(ValueError, match="unknown family 'E4'"):
        sample_parameters("E4", 3)
    with pytest.raises(ValueError, match="n must be >= 0, got -1"):
        sample_parameters("E1", -1)
    with pytest.raises(ValueError, match=r"convention must be one of .* got 'pap'"):
        solve_combined(u0, p, [0.1], convention="pap")
    with pytest.raises(ValueError, match=r"convention must be one of .* got 'pap'"):
        initial_condition(p, 50, convention="pap")
    with pytest.raises(ValueError, match="nx = 60 does not divide the fine resolution 200"):
        coarsen(torch.zeros(3, 200), 60)
    with pytest.raises(ValueError, match=r"resolution\(s\) \[60\] do not divide .* 200"):
        generate_trajectories(p, family="E1", resolutions=(200, 60))
    with pytest.raises(ValueError, match="params hold 2 samples but u0 has 3"):
        solve_combined(torch.zeros(3, 50, dtype=F64), p, [0.1])
    with pytest.raises(ValueError, match="non-decreasing"):
        solve_combined(u0, p, [0.2, 0.1])
    with pytest.raises(ValueError, match=r"times\[0\] = 0.5 is before t0 = 1.0"):
        solve_combined(u0, p, [0.5], t0=1.0)
    with pytest.raises(ValueError, match="beta must be >= 0"):
        solve_combined(u0, _params(2, beta=-0.1), [0.1])
    with pytest.raises(ValueError, match="cfl must be in"):
        solve_combined(u0, p, [0.1], cfl=1.5)
    with pytest.raises(ValueError, match="amplitude has shape"):
        CombinedParameters(p.alpha, p.beta, p.gamma, p.amplitude[:, :4], p.omega, p.phase,
                           p.l)


# ---------------------------------------------------------------------- the WENO5 baseline

def _accumulated_mse(data: dict[int, torch.Tensor], p: CombinedParameters, n: int,
                     convention: str, start: int = 50) -> float:
    """WENO5 on the coarse grid from the coarse label at ``start``; the MP-PDE metric:
    sum over steps ``start ... nt-1`` of the mean over x and samples of the squared error."""
    label = data[n]
    t = torch.linspace(0, FAMILIES["E1"].T, label.shape[1], dtype=F64)
    pred = solve_combined(label[:, start], p, t[start:], t0=float(t[start]),
                          convention=convention)
    return float(((pred - label[:, start:]) ** 2).mean(dim=(0, 2)).sum())


def test_coarse_weno5_is_accurate_under_the_conservative_convention(capsys):
    p = sample_parameters("E1", 6, generator=torch.Generator().manual_seed(42))
    mse = {}
    for conv in ("conservative", "paper"):
        data = generate_trajectories(p, family="E1", convention=conv, resolutions=(200, 50))
        mse[conv] = _accumulated_mse(data, p, 50, conv)
    with capsys.disabled():
        print(f"\n  WENO5 nx=50 accumulated MSE on 6 E1 samples: conservative "
              f"{mse['conservative']:.4f}, paper {mse['paper']:.3f}")
    assert mse["conservative"] < 0.5
    assert mse["paper"] > 10 * mse["conservative"]


# ---------------------------------------------------------------------- the data set

SMALL = {"family": "E1", "samples": 5, "seed": 3, "resolutions": (40, 20), "nt": 50,
         "progress": False}


@pytest.fixture(scope="module")
def ref_file(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("burgers") / "ref.h5"
    return generate_burgers(out, batch_size=3, **SMALL)


def _content(path: Path) -> dict[str, object]:
    with h5py.File(path, "r") as f:
        d: dict[str, object] = {}
        f.visititems(lambda k, v: d.__setitem__(k, v[:]) if isinstance(v, h5py.Dataset)
                     else None)
        d["attrs"] = {k: f.attrs[k] for k in f.attrs}
        for g in ("nx40", "nx20"):
            d[f"{g}.attrs"] = {k: f[g].attrs[k] for k in f[g].attrs}
    return d


def _assert_identical(path: Path, ref: Path) -> None:
    a, b = _content(path), _content(ref)
    assert a.keys() == b.keys()
    for k in b:
        if k.endswith("attrs"):
            assert a[k].keys() == b[k].keys(), k
            for kk in b[k]:
                assert np.array_equal(a[k][kk], b[k][kk]), f"{k}[{kk}] differs"
        else:
            assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), f"{k} differs"
    assert a["attrs"]["complete"]


def test_file_round_trips_through_the_dataset(ref_file):
    with h5py.File(ref_file, "r") as f:
        assert f["nx40/u"].shape == (5, 50, 40) and f["nx40/u"].dtype == np.float32
        assert f["nx20/u"].shape == (5, 50, 20) and f["nx40/u"].chunks == (1, 50, 40)
        a = dict(f.attrs)
        assert (a["family"], a["convention"], a["length"], a["T"], a["seed"]) == (
            "E1", "conservative", 16.0, 4.0, 3)
        assert a["resolutions"] == "40,20" and a["complete"] and a["format"] == "sciml.burgers"
        assert f["theta"].shape == (5, 3) and f["l"].dtype == np.int64
    # every sample equals a direct solve from its own seeded parameters
    parts = []
    for i in range(5):
        g = torch.Generator().manual_seed(sample_seed(3, i))
        parts.append(sample_parameters("E1", 1, generator=g))
    p = CombinedParameters.cat(parts)
    direct = generate_trajectories(p, family="E1", resolutions=(40, 20), nt=50)
    for nx in (40, 20):
        ds = BurgersDataset(ref_file, nx)
        assert len(ds) == 5 and (ds.family, ds.convention, ds.length) == ("E1",
                                                                          "conservative", L)
        np.testing.assert_array_equal(ds.t, np.linspace(0, 4.0, 50))
        assert ds.dt == pytest.approx(4.0 / 49)
        np.testing.assert_allclose(ds.x, (np.arange(nx) + 0.5) * L / nx, rtol=1e-15)
        for i in range(5):
            u, theta = ds[i]
            assert u.shape == (50, nx) and u.dtype == theta.dtype == torch.float32
            assert torch.equal(u, direct[nx][i].float())
            assert torch.equal(theta, p.theta()[i].float())
    ds = BurgersDataset(ref_file, 20, samples=[4, 1])
    q = ds.parameters()
    assert torch.equal(q.amplitude, p.amplitude[[4, 1]]) and torch.equal(q.l, p.l[[4, 1]])
    assert torch.equal(ds[-1][0], direct[20][1].float())
    loader = DataLoader(BurgersDataset(ref_file, 20), batch_size=2, num_workers=2)
    us = torch.cat([u for u, _ in loader])
    assert torch.equal(us, direct[20].float())


def test_bad_dataset_and_generator_arguments(tmp_path, ref_file):
    with pytest.raises(ValueError, match=r"no resolution nx = 50; it holds \[40, 20\]"):
        BurgersDataset(ref_file, 50)
    with pytest.raises(FileNotFoundError):
        BurgersDataset(tmp_path / "none.h5", 40)
    with pytest.raises(ValueError, match=r"samples \[7\] are out of range"):
        BurgersDataset(ref_file, 40, samples=[7])
    out = tmp_path / "x.h5"
    with pytest.raises(ValueError, match="samples must be >= 1, got -2"):
        generate_burgers(out, **{**SMALL, "samples": -2})
    with pytest.raises(ValueError, match="unknown family 'E7'"):
        generate_burgers(out, **{**SMALL, "family": "E7"})
    with pytest.raises(ValueError, match="convention must be one of"):
        generate_burgers(out, convention="exact", **SMALL)
    with pytest.raises(ValueError, match=r"\[30\] do not divide"):
        generate_burgers(out, **{**SMALL, "resolutions": (40, 30)})
    assert not out.exists()


def test_existing_files_with_other_settings_are_refused_and_complete_ones_untouched(
        tmp_path, ref_file):
    before = ref_file.read_bytes()
    assert generate_burgers(ref_file, batch_size=2, **SMALL) == ref_file
    assert ref_file.read_bytes() == before
    for change, name in [({"seed": 4}, "seed"), ({"family": "E2"}, "family"),
                         ({"nt": 40}, "nt"), ({"resolutions": (40, 10)}, "resolutions")]:
        with pytest.raises(ValueError, match=rf"exists with other settings: {name} = "):
            generate_burgers(ref_file, **{**SMALL, **change})
    with pytest.raises(ValueError, match="exists with other settings: convention = "):
        generate_burgers(ref_file, convention="paper", **SMALL)
    assert ref_file.read_bytes() == before


def _run_killed(out: Path, kill: str | None, batch_size: int) -> subprocess.CompletedProcess:
    code = (f"from sciml.data import generate_burgers; generate_burgers({str(out)!r}, "
            f"batch_size={batch_size}, **{SMALL!r})")
    env = {**os.environ}
    if kill:
        env["SCIML_BURGERS_TEST_KILL"] = kill
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env=env)


def test_a_killed_run_resumes_to_the_uninterrupted_file(tmp_path, ref_file):
    out = tmp_path / "resumed.h5"
    ref40 = _content(ref_file)["nx40/u"]
    r = _run_killed(out, "done:1", 2)  # killed once samples 0, 1 are flagged
    assert r.returncode == -signal.SIGKILL, r.stderr
    with h5py.File(out, "r") as f:
        np.testing.assert_array_equal(f["done"][:], [1, 1, 0, 0, 0])
        assert not f.attrs["complete"]
        np.testing.assert_array_equal(f["nx40/u"][:2], ref40[:2])
    with pytest.raises(ValueError, match="incomplete"):
        BurgersDataset(out, 40)
    r = _run_killed(out, "data:1", 2)  # samples 2, 3 written but not flagged
    assert r.returncode == -signal.SIGKILL, r.stderr
    with h5py.File(out, "r+") as f:
        np.testing.assert_array_equal(f["done"][:], [1, 1, 0, 0, 0])
        f["nx40/u"][2:] = np.nan  # unflagged data are never trusted
    generate_burgers(out, batch_size=4, **SMALL)  # another batch size: the same file
    _assert_identical(out, ref_file)
    # no temporary or lock file is left beside it
    assert sorted(q.name for q in out.parent.iterdir()) == [out.name]


def test_cli_generates_burgers(tmp_path, capsys):
    out = tmp_path / "cli.h5"
    args = ["generate", "burgers", "--family", "E2", "--samples", "2", "--out", str(out),
            "--seed", "1", "--no-progress"]
    assert main([*args[:5], "0", *args[6:]]) == 2
    assert "sciml generate: error: samples must be >= 1, got 0" in capsys.readouterr().err
    assert main(args) == 0
    assert "wrote" in capsys.readouterr().out
    for n in (200, 100, 50, 40):
        ds = BurgersDataset(out, n)
        assert len(ds) == 2 and ds[0][0].shape == (250, n) and ds.family == "E2"
    assert 0.0 <= float(ds[1][1][1]) <= 0.2
    with pytest.raises(SystemExit):
        main(["generate", "burgers", "--family", "E9", "--samples", "2", "--out", str(out)])
    assert main([*args, "--convention", "paper"]) == 2
    assert "exists with other settings: convention" in capsys.readouterr().err
