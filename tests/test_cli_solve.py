"""``sciml solve``: solutions against scipy's direct solve, the scene path, the error paths."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

from sciml.pdes import PoissonSystem
from sciml.solvers.linear import LinearSolveError
from sciml_recipes._cli_solve import SolveSettings, solve_file
from sciml_recipes.cli import main


def _laplacian(m: int) -> sp.csr_matrix:
    T = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(m, m))
    I = sp.identity(m)
    return (sp.kron(T, I) + sp.kron(I, T)).tocsr()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("solve")
    A = _laplacian(30)
    b = np.random.default_rng(0).standard_normal(A.shape[0])
    scipy.io.mmwrite(str(d / "lap.mtx"), A)
    sp.save_npz(d / "lap.npz", A)
    np.save(d / "b.npy", b)
    np.savetxt(d / "b.txt", b)
    x_ref = spla.spsolve(A.tocsc(), b)
    return d, A, b, x_ref


def _rel_err(x: np.ndarray, ref: np.ndarray) -> float:
    return float(np.linalg.norm(x - ref) / np.linalg.norm(ref))


@pytest.mark.parametrize("method", ["cg", "jacobi", "ic0"])
def test_mtx_matches_spsolve(files, method, capsys):
    d, A, b, x_ref = files
    out = d / f"x_{method}.npy"
    rc = main(["solve", str(d / "lap.mtx"), "--rhs", str(d / "b.npy"), "--method", method,
               "--rtol", "1e-10", "--out", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "status: CONVERGED" in text and "iterations:" in text and "setup:" in text
    x = np.load(out)
    assert _rel_err(x, x_ref) < 1e-8
    # the printed relative residual is the defining criterion, recomputed here
    printed = float(text.split("||b - A x|| / ||b||:")[1].split()[0])
    rel = np.linalg.norm(b - A @ x) / np.linalg.norm(b)
    assert printed <= 1e-10 and rel == pytest.approx(printed, rel=1e-2)


def test_pyamg_when_installed(files, capsys):
    d, _, _, x_ref = files
    out = d / "x_amg.npy"
    rc = main(["solve", str(d / "lap.mtx"), "--rhs", str(d / "b.npy"), "--method", "pyamg",
               "--rtol", "1e-10", "--out", str(out)])
    try:
        import pyamg  # noqa: F401
    except ImportError:
        assert rc == 2
        assert "pip install pyamg" in capsys.readouterr().err
        return
    assert rc == 0
    assert _rel_err(np.load(out), x_ref) < 1e-8


def test_npz_matrix_txt_rhs_float32(files, capsys):
    d, _, _, x_ref = files
    out = d / "x_npz.npy"
    rc = main(["solve", str(d / "lap.npz"), "--rhs", str(d / "b.txt"), "--method", "ic0",
               "--dtype", "float32", "--rtol", "1e-5", "--out", str(out)])
    assert rc == 0
    assert _rel_err(np.load(out), x_ref) < 1e-3


@pytest.mark.parametrize("method", ["gmg", "learned-mg", "dcdm"])
def test_scene_multigrid(tmp_path, method, capsys):
    cells = np.zeros((48, 48), np.int8)
    cells[15:20, 10:30] = 1  # a SOLID obstacle
    k = np.exp(np.random.default_rng(1).standard_normal((48, 48)))
    np.savez(tmp_path / "scene.npz", cells=cells, coefficients=k)
    system = PoissonSystem(torch.from_numpy(cells), coefficients=torch.from_numpy(k))
    rng = np.random.default_rng(2)
    b_full = rng.standard_normal(system.n) * system.fluid_mask.reshape(-1).numpy()
    np.save(tmp_path / "b.npy", b_full)
    out = tmp_path / "x.npy"
    rc = main(["solve", str(tmp_path / "scene.npz"), "--rhs", str(tmp_path / "b.npy"),
               "--method", method, "--rtol", "1e-10", "--out", str(out)])
    assert rc == 0
    assert "status: CONVERGED" in capsys.readouterr().out
    x = np.load(out)
    assert x.shape == (system.n,)
    A = system.csr()
    bf = system.to_fluid(torch.from_numpy(b_full)).numpy()
    xf_ref = spla.spsolve(A.tocsc(), bf)
    assert _rel_err(system.to_fluid(torch.from_numpy(x)).numpy(), xf_ref) < 1e-8
    assert np.all(x[~system.fluid_mask.reshape(-1).numpy()] == 0)


def test_scene_default_rhs(tmp_path, capsys):
    np.savez(tmp_path / "scene.npz", cells=np.zeros((24, 24), np.int8))
    assert main(["solve", str(tmp_path / "scene.npz"), "--method", "gmg"]) == 0
    assert "status: CONVERGED" in capsys.readouterr().out


def test_singular_scene(tmp_path, capsys):
    """A fluid pocket walled in by SOLID cells floats (A singular): the RHS's mean over it
    is removed, and A x = P b holds to the tolerance."""
    cells = np.zeros((20, 20), np.int8)
    cells[4:12, 4:12] = 1
    cells[5:11, 5:11] = 0  # the pocket
    np.savez(tmp_path / "scene.npz", cells=cells)
    system = PoissonSystem(torch.from_numpy(cells))
    assert system.has_null_space()
    b = np.random.default_rng(3).standard_normal(system.n)
    np.save(tmp_path / "b.npy", b)
    out = tmp_path / "x.npy"
    assert main(["solve", str(tmp_path / "scene.npz"), "--rhs", str(tmp_path / "b.npy"),
                 "--method", "gmg", "--rtol", "1e-10", "--out", str(out)]) == 0
    assert "A is singular" in capsys.readouterr().out
    pb = system.to_fluid(system.project_range(torch.from_numpy(b))).numpy()
    xf = system.to_fluid(torch.from_numpy(np.load(out))).numpy()
    assert np.linalg.norm(pb - system.csr() @ xf) / np.linalg.norm(pb) < 1e-9


def _err(argv, capsys) -> str:
    assert main(argv) == 2
    return capsys.readouterr().err


def test_errors(files, tmp_path, capsys):
    d = files[0]
    mtx, b = str(d / "lap.mtx"), str(d / "b.npy")
    assert "does not exist" in _err(["solve", str(tmp_path / "nope.mtx"), "--rhs", b], capsys)
    assert "does not exist" in _err(["solve", mtx, "--rhs", str(tmp_path / "nope.npy")], capsys)
    np.save(tmp_path / "short.npy", np.ones(5))
    msg = _err(["solve", mtx, "--rhs", str(tmp_path / "short.npy")], capsys)
    assert "length 5" in msg and "900" in msg
    scipy.io.mmwrite(str(tmp_path / "rect.mtx"), sp.random(4, 6, density=0.5, random_state=0))
    assert "not square" in _err(["solve", str(tmp_path / "rect.mtx"), "--rhs", b], capsys)
    (tmp_path / "A.csv").write_text("1,2\n3,4\n")
    assert "unknown matrix format" in _err(["solve", str(tmp_path / "A.csv"), "--rhs", b],
                                           capsys)
    np.savez(tmp_path / "other.npz", foo=np.ones(3))
    assert "save_npz" in _err(["solve", str(tmp_path / "other.npz"), "--rhs", b], capsys)
    msg = _err(["solve", mtx, "--rhs", b, "--method", "gmg"], capsys)
    assert "only to a Poisson scene" in msg and "--method ic0" in msg
    assert "--rhs" in _err(["solve", mtx], capsys)
    assert ".npy" in _err(["solve", mtx, "--rhs", b, "--out", str(tmp_path / "x.txt")], capsys)
    assert "unknown RHS format" in _err(["solve", mtx, "--rhs", str(tmp_path / "A.csv")], capsys)
    np.savez(tmp_path / "badscene.npz", cells=np.full((8, 8), 7, np.int8))
    assert "scene" in _err(["solve", str(tmp_path / "badscene.npz")], capsys)
    scipy.io.mmwrite(str(tmp_path / "nonsym.mtx"), sp.csr_matrix(np.array([[2.0, 1], [0, 2]])))
    assert "gmres" in _err(["solve", str(tmp_path / "nonsym.mtx"), "--rhs", b], capsys)
    with pytest.raises(SystemExit) as e:
        main(["solve", mtx, "--rhs", b, "--method", "lu"])
    assert e.value.code == 2


def test_not_converged_exit_1(files, capsys):
    d = files[0]
    rc = main(["solve", str(d / "lap.mtx"), "--rhs", str(d / "b.npy"), "--method", "cg",
               "--max-iter", "3"])
    assert rc == 1
    assert "MAX_ITER" in capsys.readouterr().out
    settings = SolveSettings(method="cg", max_iter=3)
    assert not solve_file(d / "lap.mtx", d / "b.npy", settings).converged
    with pytest.raises(LinearSolveError, match="MAX_ITER"):
        solve_file(d / "lap.mtx", d / "b.npy", settings, throw=True)


def test_help_shows_defaults_and_example(capsys):
    with pytest.raises(SystemExit):
        main(["solve", "--help"])
    raw = capsys.readouterr().out
    assert any(line.startswith("example: sciml solve ") for line in raw.splitlines())
    text = " ".join(raw.split())
    for default in ("(default: ic0)", "1e-05 in float64, 0.0001 in float32)", "(default: float64)",
                    "(default: 10 n)", "(default: not written)", "(default: the CPU)",
                    "(default: 0)", "(default: none;"):
        assert default in text


@pytest.mark.parametrize("method", ["jacobi", "ic0"])
def test_device_cuda_simulated(files, method, simcuda, capsys):
    """--device cuda under sciml.testing.SimCuda: the operator, Jacobi's diagonal and the
    IC(0) round trips all follow the device."""
    d, _, _, x_ref = files
    out = d / f"x_cuda_{method}.npy"
    assert main(["solve", str(d / "lap.mtx"), "--rhs", str(d / "b.npy"), "--method", method,
                 "--device", "cuda", "--rtol", "1e-10", "--out", str(out)]) == 0
    assert "on cuda:0" in capsys.readouterr().out
    assert _rel_err(np.load(out), x_ref) < 1e-8


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_default_rtol_follows_dtype(files, capsys, dtype):
    """Without --rtol the solve takes the library's default for --dtype and says so."""
    from sciml._tolerances import default_tol

    d, _, _, x_ref = files
    xfile = d / f"x_default_{dtype}.npy"
    rc = main(["solve", str(d / "lap.npz"), "--rhs", str(d / "b.txt"), "--method", "jacobi",
               "--dtype", dtype, "--out", str(xfile)])
    assert rc == 0
    want = default_tol("linear", getattr(torch, dtype))
    out = capsys.readouterr().out
    assert f"rtol: {want:g} (the default for this dtype)" in out
    rel = float(out.split("relative residual ||b - A x|| / ||b||:")[1].split()[0])
    assert rel <= 2 * want  # true float64 residual, float32 iteration may drift slightly
    assert _rel_err(np.load(xfile), x_ref) < 100 * want  # against spsolve
