"""Operator learning on the user's own arrays: ArrayData (HDF5 and NPZ, pairs and
trajectories), evaluate_samples, and `sciml train fno|sfno --data FILE` / `sciml evaluate`."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch

from sciml.data import ArrayData, Normalization
from sciml.operators import relative_lp
from sciml.train import evaluate_samples
from sciml_recipes import cli


def _helmholtz_pairs(n: int, points: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Periodic fields a (a few Fourier modes) and the exact solution u of -u'' + u = a."""
    rng = np.random.default_rng(seed)
    x = np.arange(points) / points
    a = np.zeros((n, 1, points))
    u = np.zeros((n, 1, points))
    for k in range(1, 5):
        c, s = rng.normal(size=(2, n, 1, 1)) / k
        wave_c, wave_s = np.cos(2 * np.pi * k * x), np.sin(2 * np.pi * k * x)
        a += c * wave_c + s * wave_s
        u += (c * wave_c + s * wave_s) / (1 + (2 * np.pi * k) ** 2)
    return a + 0.5, u + 0.5  # a mean: the normalisation has something to remove


def _heat_trajectories(n: int, frames: int, points: int, seed: int) -> np.ndarray:
    """Exact solutions of the 2D periodic heat equation, sampled at ``frames`` times."""
    rng = np.random.default_rng(seed)
    x = np.arange(points) / points
    t = np.linspace(0.0, 0.02, frames)
    w = np.zeros((n, frames, points, points))
    for kx in range(1, 3):
        for ky in range(1, 3):
            amp = rng.normal(size=(n, 1, 1, 1))
            decay = np.exp(-4 * np.pi**2 * (kx**2 + ky**2) * t)[None, :, None, None]
            w += amp * decay * np.sin(2 * np.pi * kx * x)[:, None] * np.cos(
                2 * np.pi * ky * x)[None, :]
    return w


@pytest.fixture(scope="module")
def pairs_npz(tmp_path_factory):
    d = tmp_path_factory.mktemp("pairs")
    a, u = _helmholtz_pairs(60, 64, seed=0)
    path = d / "mine.npz"
    # stored at 32 points; the same fields at 64 points for zero-shot evaluation
    np.savez(path, a=a[:, :, ::2], u=u[:, :, ::2], a_fine=a, u_fine=u)
    return path


@pytest.fixture(scope="module")
def traj_h5(tmp_path_factory):
    d = tmp_path_factory.mktemp("traj")
    path = d / "heat.h5"
    with h5py.File(path, "w") as f:
        f["w"] = _heat_trajectories(10, 8, 16, seed=1).astype(np.float32)
    return path


# -- ArrayData --------------------------------------------------------------------------

def test_pairs_items_statistics_and_split_match_numpy(pairs_npz):
    raw = np.load(pairs_npz)
    data = ArrayData(pairs_npz, inputs="a", targets="u", test_samples=10)
    train, test = data.split()
    assert train == list(range(50)) and test == list(range(50, 60))
    norm = data.statistics()
    a_train, u_train = raw["a"][:50], raw["u"][:50]
    np.testing.assert_allclose(norm.input_mean, a_train.mean(axis=(0, 2)), rtol=1e-12)
    np.testing.assert_allclose(norm.input_std, a_train.std(axis=(0, 2)), rtol=1e-9)
    np.testing.assert_allclose(norm.target_std, u_train.std(axis=(0, 2)), rtol=1e-9)
    ds = data.dataset("test")
    assert len(ds) == 10 and ds.grid == (32,)
    x, y = ds[3]
    assert x.dtype == torch.float32 and x.shape == (1, 32) and y.shape == (1, 32)
    want = (raw["a"][53] - norm.input_mean[0]) / norm.input_std[0]
    np.testing.assert_allclose(x.numpy(), want, rtol=1e-5, atol=1e-6)
    # denormalize undoes the target map
    np.testing.assert_allclose(ds.denormalize(y.double()).numpy(), raw["u"][53], rtol=1e-5,
                               atol=1e-6)
    with pytest.raises(ValueError, match="no fine arrays"):
        data.dataset("fine")


def test_fine_arrays_of_the_same_samples_use_only_the_test_ones(pairs_npz):
    data = ArrayData(pairs_npz, inputs="a", targets="u", fine_inputs="a_fine",
                     fine_targets="u_fine", test_samples=10)
    fine = data.dataset("fine")
    assert fine.samples == tuple(range(50, 60)) and fine.grid == (64,)
    raw = np.load(pairs_npz)
    x, _ = fine[0]
    n = data.statistics()
    np.testing.assert_allclose(x.numpy()[0], (raw["a_fine"][50, 0] - n.input_mean[0])
                               / n.input_std[0], rtol=1e-5, atol=1e-6)


def test_trajectory_windows_match_slicing_in_hdf5_and_npz(traj_h5, tmp_path):
    with h5py.File(traj_h5) as f:
        w = f["w"][:]
    npz = tmp_path / "heat.npz"
    np.savez(npz, w=w)
    sets = []
    for path in (traj_h5, npz):
        data = ArrayData(path, trajectories="w", input_steps=3, output_steps=2, stride=2,
                         test_samples=2, normalize=False)
        ds = data.dataset("train")
        assert len(ds) == 8 * 2  # (8 - 5) // 2 + 1 = 2 windows per sample
        sets.append(ds)
        x, y = ds[3]  # sample 1, second window: frames 2..4 in, 5..6 out
        np.testing.assert_array_equal(x.numpy(), w[1, 2:5])
        np.testing.assert_array_equal(y.numpy(), w[1, 5:7])
    for k in range(len(sets[0])):
        torch.testing.assert_close(sets[0][k], sets[1][k])
    # one mean and std for every frame of a trajectory
    n = ArrayData(traj_h5, trajectories="w", test_samples=2).statistics()
    assert len(n.input_mean) == 1
    np.testing.assert_allclose(n.input_std[0], w[:8].astype(np.float64).std(), rtol=1e-9)


def test_subsample_reads_every_kth_point(traj_h5):
    data = ArrayData(traj_h5, trajectories="w", input_steps=2, output_steps=2, subsample=2,
                     normalize=False)
    x, _ = data.dataset("train")[0]
    with h5py.File(traj_h5) as f:
        np.testing.assert_array_equal(x.numpy(), f["w"][0, :2, ::2, ::2])
    assert data.grid() == (8, 8) and data.grid(1) == (16, 16)


def test_bad_files_and_settings_are_named(tmp_path, pairs_npz, traj_h5):
    with pytest.raises(FileNotFoundError, match="no data file"):
        ArrayData(tmp_path / "missing.npz")
    with pytest.raises(ValueError, match=r"holds no array 'x'.*\['a', 'a_fine', 'u', 'u_fine'\]"):
        ArrayData(pairs_npz)
    text = tmp_path / "notes.txt"
    text.write_text("not data")
    with pytest.raises(ValueError, match="neither an HDF5 file nor an NPZ"):
        ArrayData(text)
    with pytest.raises(ValueError, match="leaves nothing to train on"):
        ArrayData(pairs_npz, inputs="a", targets="u", test_samples=60)
    with pytest.raises(ValueError, match="does not divide"):
        ArrayData(pairs_npz, inputs="a", targets="u", subsample=3)
    with pytest.raises(ValueError, match="exceeds the 8 frames"):
        ArrayData(traj_h5, trajectories="w", input_steps=5, output_steps=4)
    with pytest.raises(ValueError, match="fine_inputs and fine_targets go together"):
        ArrayData(pairs_npz, inputs="a", targets="u", fine_inputs="a_fine")
    with pytest.raises(TypeError, match="inputs must be the name"):
        ArrayData(pairs_npz, inputs=3)
    with pytest.raises(ValueError, match="input_steps must be >= 1"):
        ArrayData(traj_h5, trajectories="w", input_steps=0)
    flat = tmp_path / "flat.npz"
    np.savez(flat, x=np.zeros((4, 8)), y=np.zeros((4, 8)))
    with pytest.raises(ValueError, match=r"a\[:, None\]"):
        ArrayData(flat)
    mismatch = tmp_path / "mismatch.npz"
    np.savez(mismatch, x=np.zeros((4, 1, 8)), y=np.zeros((5, 1, 8)))
    with pytest.raises(ValueError, match="same samples on the same grid"):
        ArrayData(mismatch)


def test_a_nan_training_sample_is_named(tmp_path):
    x = np.random.default_rng(0).normal(size=(10, 1, 8))
    x[3, 0, 5] = np.nan
    path = tmp_path / "nan.npz"
    np.savez(path, x=x, y=x)
    with pytest.raises(ValueError, match="sample 3 of 'x'"):
        ArrayData(path).statistics()


def test_normalization_checks_its_values():
    with pytest.raises(ValueError, match="input_std must be > 0"):
        Normalization((0.0,), (0.0,), (0.0,), (1.0,))
    n = Normalization((1.0, 2.0), (2.0, 4.0), (0.0,), (1.0,))
    x = torch.ones(3, 2, 5)
    torch.testing.assert_close(n.inputs(x, 1)[:, 1], torch.full((3, 5), -0.25))
    assert Normalization(**n.to_dict()) == n


# -- evaluate_samples --------------------------------------------------------------------

def test_evaluate_samples_matches_a_loop_and_checks_its_metric():
    torch.manual_seed(0)
    model = torch.nn.Conv1d(1, 1, 3, padding=1).double()
    data = [(torch.randn(1, 16, dtype=torch.float64), torch.randn(1, 16, dtype=torch.float64))
            for _ in range(7)]
    got = evaluate_samples(model, data, {"rel_l2": relative_lp}, batch_size=3)
    with torch.no_grad():
        want = torch.stack([relative_lp(model(x[None]), y[None])[0] for x, y in data])
    torch.testing.assert_close(got["rel_l2"], want)
    with pytest.raises(ValueError, match="one value per sample"):
        evaluate_samples(model, data, {"mean": lambda p, y: (p - y).abs().mean()})
    with pytest.raises(ValueError, match="holds no items"):
        evaluate_samples(model, [], {"rel_l2": relative_lp})
    with pytest.raises(TypeError, match="metrics must be"):
        evaluate_samples(model, data, {})


# -- the command line ------------------------------------------------------------------

def _read(path):
    return json.loads(path.read_text())


def test_train_fno_on_pairs_then_evaluate_per_sample_and_zero_shot(pairs_npz, tmp_path, capsys):
    out = tmp_path / "run"
    rc = cli.main(["train", "fno", "--data", str(pairs_npz), "--inputs", "a", "--targets", "u",
                   "--fine-inputs", "a_fine", "--fine-targets", "u_fine", "--test-samples",
                   "10", "--modes", "8", "--width", "16", "--layers", "2", "--epochs", "40",
                   "--lr", "5e-3", "--batch-size", "10", "--out", str(out), "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    assert (out / "model.pt").is_file() and (out / "metrics.jsonl").is_file()
    ev = tmp_path / "eval"
    assert cli.main(["evaluate", "--model", str(out / "model.pt"), "--out", str(ev),
                     "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "training" in printed and "fine" in printed
    res = _read(ev / "evaluate.json")
    assert (ev / "evaluate.png").stat().st_size > 0
    coarse, fine = res["resolutions"]
    assert coarse["grid"] == [32] and fine["grid"] == [64]
    assert len(coarse["rel_l2_per_item"]) == 10 and len(fine["rel_l2_per_item"]) == 10
    # a linear periodic operator: the FNO learns it well, and on the finer grid zero-shot
    assert coarse["rel_l2"] < 0.05, coarse["rel_l2"]
    assert fine["rel_l2"] < 0.1, fine["rel_l2"]

    # the per-sample errors, recomputed independently from the raw arrays in numpy
    from sciml_recipes.own_data import load_operator

    model, _, norm = load_operator(out / "model.pt")
    raw = np.load(pairs_npz)
    a = (raw["a"][50:] - norm.input_mean[0]) / norm.input_std[0]
    with torch.no_grad():
        p = model(torch.from_numpy(a).float()).double().numpy()
    p = p * norm.target_std[0] + norm.target_mean[0]
    u = raw["u"][50:]
    rel = np.linalg.norm((p - u).reshape(10, -1), axis=1) / np.linalg.norm(
        u.reshape(10, -1), axis=1)
    np.testing.assert_allclose(coarse["rel_l2_per_item"], rel, rtol=1e-3, atol=1e-6)


def test_train_sfno_on_own_hdf5_trajectories_resume_and_evaluate(traj_h5, tmp_path, capsys):
    out = tmp_path / "sfno"
    args = ["train", "sfno", "--data", str(traj_h5), "--trajectories", "w",
            "--input-steps", "4", "--output-steps", "4", "--test-samples", "2",
            "--modes", "4", "--modes-t", "2", "--width", "8", "--layers", "2",
            "--epochs", "4", "--batch-size", "4", "--out", str(out), "--no-progress"]
    assert cli.main(args) == 0, capsys.readouterr().err
    assert "trained 8 steps, 4 epochs (every epoch done)" in capsys.readouterr().out  # 2 per epoch
    # --resume reads the checkpoint back (the run is complete: nothing is retrained)
    metrics = (out / "metrics.jsonl").read_text()
    assert cli.main([*args, "--resume"]) == 0, capsys.readouterr().err
    assert "trained 8 steps" in capsys.readouterr().out
    assert (out / "metrics.jsonl").read_text().startswith(metrics)
    ev = tmp_path / "ev"
    assert cli.main(["evaluate", "--model", str(out / "model.pt"), "--out", str(ev)]) == 0
    res = _read(ev / "evaluate.json")
    (only,) = res["resolutions"]
    assert only["grid"] == [16, 16] and len(only["rel_l2_per_item"]) == 2  # 1 window each
    assert all(np.isfinite(only["rel_l2_per_item"]))
    # the Spectral-Refiner needs the Navier-Stokes residual: refused with the reason
    assert cli.main(["refine", "--model", str(out / "model.pt"), "--out", str(ev)]) == 2
    assert "your own arrays" in capsys.readouterr().err


def test_train_fno_on_subsampled_trajectories_scores_the_stored_grid(traj_h5, tmp_path, capsys):
    out = tmp_path / "fno"
    assert cli.main(["train", "fno", "--data", str(traj_h5), "--trajectories", "w",
                     "--input-steps", "2", "--output-steps", "1", "--stride", "3",
                     "--subsample", "2", "--modes", "3", "--width", "8", "--layers", "1",
                     "--epochs", "1", "--out", str(out), "--no-progress"]) == 0
    capsys.readouterr()
    assert cli.main(["evaluate", "--model", str(out / "model.pt"), "--out",
                     str(tmp_path / "ev")]) == 0
    res = _read(tmp_path / "ev" / "evaluate.json")
    assert [r["name"] for r in res["resolutions"]] == ["training", "stored"]
    assert [r["grid"] for r in res["resolutions"]] == [[8, 8], [16, 16]]


def test_own_data_errors_exit_2_with_the_reason(pairs_npz, tmp_path, capsys):
    rc = cli.main(["train", "fno", "--data", str(pairs_npz), "--out", str(tmp_path / "r")])
    assert rc == 2 and "holds no array 'x'" in capsys.readouterr().err
    rc = cli.main(["train", "sfno", "--data", str(pairs_npz), "--out", str(tmp_path / "r")])
    assert rc == 2 and "--trajectories KEY" in capsys.readouterr().err
    line = tmp_path / "line.npz"
    np.savez(line, w=np.random.default_rng(0).normal(size=(10, 8, 16)))
    rc = cli.main(["train", "sfno", "--data", str(line), "--trajectories", "w",
                   "--input-steps", "4", "--output-steps", "4", "--out", str(tmp_path / "r")])
    # (samples, time, 16) are 1D trajectories: the SFNO needs a 2D grid
    assert rc == 2 and "2D trajectories" in capsys.readouterr().err
