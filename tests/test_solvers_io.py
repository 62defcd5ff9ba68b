"""Reading linear systems from files: equal to what scipy / numpy wrote, scene round trips,
and clear errors on bad files."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io
import scipy.sparse as sp
import torch

from sciml.pdes import PoissonSystem
from sciml.solvers.linear import (
    LoadedSystem,
    load_matrix,
    load_scene,
    load_system,
    load_vector,
    save_scene,
)


def _spd(n: int, seed: int) -> sp.csr_matrix:
    """A random sparse SPD matrix with non-integer entries (Matrix Market keeps them all)."""
    rng = np.random.default_rng(seed)
    B = sp.random(n, n, density=0.1, random_state=rng, format="csr")
    return (B @ B.T + sp.identity(n) * n).tocsr()


def _same(A: sp.spmatrix, B: sp.spmatrix) -> None:
    assert A.shape == B.shape
    np.testing.assert_array_equal(A.toarray(), B.toarray())


def test_matrix_market_round_trip(tmp_path):
    A = _spd(40, 0)
    scipy.io.mmwrite(str(tmp_path / "A.mtx"), A, precision=17)
    B = load_matrix(tmp_path / "A.mtx")
    assert isinstance(B, sp.csr_matrix) and B.dtype == np.float64
    _same(B, A)
    sys_ = load_system(str(tmp_path / "A.mtx"))
    assert isinstance(sys_, LoadedSystem) and sys_.kind == "matrix" and sys_.scene is None
    _same(sys_.matrix, A)


def test_matrix_market_dense_and_integer(tmp_path):
    """A dense ('array') Matrix Market file and integer entries both come back float64."""
    A = np.array([[4, 1, 0], [1, 3, 1], [0, 1, 2]])
    scipy.io.mmwrite(str(tmp_path / "dense.mtx"), A)
    B = load_matrix(tmp_path / "dense.mtx")
    assert sp.issparse(B) and B.dtype == np.float64
    np.testing.assert_array_equal(B.toarray(), A.astype(np.float64))


@pytest.mark.parametrize("fmt", ["csr", "csc", "coo"])
def test_save_npz_round_trip(tmp_path, fmt):
    A = _spd(30, 1).asformat(fmt)
    sp.save_npz(tmp_path / "A.npz", A)
    B = load_matrix(tmp_path / "A.npz")
    assert isinstance(B, sp.csr_matrix) and B.dtype == np.float64
    _same(B, A.tocsr())
    _same(load_system(tmp_path / "A.npz").matrix, A.tocsr())


def test_float32_matrix_read_as_float64(tmp_path):
    A = _spd(20, 2).astype(np.float32)
    sp.save_npz(tmp_path / "A.npz", A)
    B = load_matrix(tmp_path / "A.npz")
    assert B.dtype == np.float64
    np.testing.assert_array_equal(B.toarray(), A.toarray().astype(np.float64))


def test_non_symmetric_read_on_request(tmp_path):
    A = sp.csr_matrix(np.array([[2.0, 1.0], [0.0, 2.0]]))
    scipy.io.mmwrite(str(tmp_path / "A.mtx"), A)
    with pytest.raises(ValueError, match=r"not symmetric.*gmres"):
        load_matrix(tmp_path / "A.mtx")
    with pytest.raises(ValueError, match=r"not symmetric"):
        load_system(tmp_path / "A.mtx")
    _same(load_matrix(tmp_path / "A.mtx", symmetric=False), A)


def _scene(seed: int, boundary=None, coefficients: bool = True) -> PoissonSystem:
    rng = np.random.default_rng(seed)
    cells = np.zeros((12, 9), np.int8)
    cells[3:6, 2:7] = 1  # SOLID
    cells[0, :3] = 2  # AIR
    k = torch.from_numpy(np.exp(rng.standard_normal(cells.shape))) if coefficients else None
    return PoissonSystem(torch.from_numpy(cells), boundary=boundary, coefficients=k)


@pytest.mark.parametrize("boundary,coefficients", [
    (None, True),
    ([("dirichlet", "neumann"), ("neumann", "dirichlet")], True),
    ("dirichlet", False),
])
def test_scene_round_trip(tmp_path, boundary, coefficients):
    system = _scene(3, boundary, coefficients)
    path = save_scene(tmp_path / "scene.npz", system)
    back = load_scene(path)
    assert torch.equal(back.cells, system.cells)
    assert back.boundary == system.boundary
    if coefficients:
        assert torch.equal(back.coefficients, system.coefficients)
    else:
        assert back.coefficients is None
    _same(back.csr(), system.csr())
    loaded = load_system(path)
    assert loaded.kind == "scene" and loaded.scene.boundary == system.boundary
    _same(loaded.matrix, system.csr())  # the fluid-cell matrix


def test_scene_written_by_numpy(tmp_path):
    """A scene a user writes with numpy.savez (no boundary: the default, open top)."""
    cells = np.zeros((10, 10), np.uint8)
    cells[4:6, 4:6] = 1
    k = np.linspace(1.0, 2.0, 100).reshape(10, 10)
    np.savez(tmp_path / "s.npz", cells=cells, coefficients=k)
    ref = PoissonSystem(torch.from_numpy(cells.astype(np.int64)),
                        coefficients=torch.from_numpy(k))
    back = load_scene(tmp_path / "s.npz")
    assert back.boundary == ref.boundary and back.open_top
    _same(back.csr(), ref.csr())


def test_load_vector(tmp_path):
    v = np.random.default_rng(4).standard_normal(17)
    np.save(tmp_path / "v.npy", v)
    np.savetxt(tmp_path / "v.txt", v)
    np.save(tmp_path / "col.npy", v.reshape(-1, 1))  # a column vector
    np.save(tmp_path / "i.npy", np.arange(5))
    np.testing.assert_array_equal(load_vector(tmp_path / "v.npy"), v)
    np.testing.assert_array_equal(load_vector(tmp_path / "col.npy"), v)
    np.testing.assert_allclose(load_vector(str(tmp_path / "v.txt")), v, rtol=1e-15)
    i = load_vector(tmp_path / "i.npy")
    assert i.dtype == np.float64 and i.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_matrix_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.mtx does not exist"):
        load_system(tmp_path / "nope.mtx")
    with pytest.raises(TypeError, match=r"file path"):
        load_matrix(np.eye(3))
    (tmp_path / "A.csv").write_text("1,2\n3,4\n")
    with pytest.raises(ValueError, match=r"unknown matrix format \.csv.*\.mtx"):
        load_system(tmp_path / "A.csv")
    (tmp_path / "bad.mtx").write_text("not a matrix market file\n")
    with pytest.raises(ValueError, match=r"cannot read Matrix Market file.*mmwrite"):
        load_matrix(tmp_path / "bad.mtx")
    (tmp_path / "bad.npz").write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"cannot read NPZ file.*bad.npz"):
        load_system(tmp_path / "bad.npz")
    np.savez(tmp_path / "other.npz", foo=np.ones(3))
    with pytest.raises(ValueError, match=r"\['foo'\].*save_npz"):
        load_system(tmp_path / "other.npz")
    scipy.io.mmwrite(str(tmp_path / "rect.mtx"), sp.random(4, 6, density=0.5, random_state=0))
    with pytest.raises(ValueError, match=r"4x6, not square"):
        load_matrix(tmp_path / "rect.mtx")
    scipy.io.mmwrite(str(tmp_path / "c.mtx"), sp.csr_matrix(np.eye(2) * (1 + 1j)))
    with pytest.raises(ValueError, match=r"real matrix"):
        load_matrix(tmp_path / "c.mtx")
    A = sp.csr_matrix(np.diag([1.0, np.nan]))
    sp.save_npz(tmp_path / "nan.npz", A)
    with pytest.raises(ValueError, match=r"NaN or Inf"):
        load_matrix(tmp_path / "nan.npz")
    save_scene(tmp_path / "scene.npz", _scene(5))
    with pytest.raises(ValueError, match=r"Poisson scene.*load_scene"):
        load_matrix(tmp_path / "scene.npz")


def test_scene_errors(tmp_path):
    sp.save_npz(tmp_path / "A.npz", _spd(5, 6))
    with pytest.raises(ValueError, match=r"no array 'cells'.*load_matrix"):
        load_scene(tmp_path / "A.npz")
    np.savez(tmp_path / "float.npz", cells=np.zeros((4, 4)))
    with pytest.raises(ValueError, match=r"'cells' must be an integer array"):
        load_scene(tmp_path / "float.npz")
    np.savez(tmp_path / "seven.npz", cells=np.full((8, 8), 7, np.int8))
    with pytest.raises(ValueError, match=r"scene .*seven.npz.*outside CellType"):
        load_system(tmp_path / "seven.npz")
    np.savez(tmp_path / "k.npz", cells=np.zeros((4, 4), np.int8), coefficients=np.ones((3, 3)))
    with pytest.raises(ValueError, match=r"coefficients has shape"):
        load_scene(tmp_path / "k.npz")
    np.savez(tmp_path / "b.npz", cells=np.zeros((4, 4), np.int8), boundary=np.array(["x"]))
    with pytest.raises(ValueError, match=r"'boundary' must be a string array of shape \(2, 2\)"):
        load_scene(tmp_path / "b.npz")
    with pytest.raises(ValueError, match=r"must end in \.npz"):
        save_scene(tmp_path / "s.txt", _scene(7))
    with pytest.raises(TypeError, match=r"PoissonSystem"):
        save_scene(tmp_path / "s.npz", np.zeros((4, 4)))


def test_vector_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"RHS .*nope.npy does not exist"):
        load_vector(tmp_path / "nope.npy", name="RHS")
    (tmp_path / "v.csv").write_text("1\n2\n")
    with pytest.raises(ValueError, match=r"unknown RHS format \.csv"):
        load_vector(tmp_path / "v.csv", name="RHS")
    np.save(tmp_path / "m.npy", np.ones((3, 2)))
    with pytest.raises(ValueError, match=r"one real vector, got shape \(3, 2\)"):
        load_vector(tmp_path / "m.npy")
    np.save(tmp_path / "inf.npy", np.array([1.0, np.inf]))
    with pytest.raises(ValueError, match=r"1 NaN or Inf"):
        load_vector(tmp_path / "inf.npy")
    np.save(tmp_path / "obj.npy", np.array([1, "a"], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match=r"cannot read vector"):
        load_vector(tmp_path / "obj.npy")
    (tmp_path / "bad.txt").write_text("1\nabc\n")
    with pytest.raises(ValueError, match=r"cannot read vector"):
        load_vector(tmp_path / "bad.txt")


def test_scene_missing_file_and_suffix(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"scene .*none\.npz does not exist"):
        load_scene(tmp_path / "none.npz")
    (tmp_path / "s.txt").write_text("0 0\n0 0\n")
    with pytest.raises(ValueError, match=r"must be an \.npz file"):
        load_scene(tmp_path / "s.txt")
