"""sciml.data: the Navier-Stokes presets, the resumable and sharded writer, the Dataset.

Every stored trajectory is checked against a direct solve with :class:`NavierStokes2D`,
the physics written out here (not read from the presets); interrupted, resumed and
sharded runs are checked bit for bit against one uninterrupted run.
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from sciml.data import PRESETS, NS2DDataset, NS2DPreset, generate_ns2d, sample_seed, shard_path
from sciml.pdes import (
    NavierStokes2D,
    fno_forcing,
    gaussian_random_field,
    kolmogorov_forcing,
    mcwilliams_vorticity,
)
from sciml_recipes.cli import main

# small runs: 32^2 solves stored on 16^2, 4 snapshots up to t = 0.2
SMALL = {"resolution": 16, "solver_resolution": 32, "t_start": 0.0, "t_end": 0.2,
         "snapshots": 4, "progress": False}
CLI_SMALL = ["--resolution", "16", "--solver-resolution", "32", "--t-start", "0",
             "--t-end", "0.2", "--snapshots", "4", "--no-progress"]
SEED = 3
SAMPLES = 5
TWO_PI = 2 * math.pi


def _cli(*args: str, env: dict[str, str] | None = None, module: str = "sciml_recipes.cli"):
    cmd = [sys.executable, "-m", module, *args]
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=full_env)


def _generate_cmd(out: Path, batch_size: int) -> list[str]:
    return ["generate", "ns2d", "--preset", "fno", "--samples", str(SAMPLES), "--seed",
            str(SEED), "--batch-size", str(batch_size), "--out", str(out), *CLI_SMALL]


@pytest.fixture(scope="module")
def ref_file(tmp_path_factory) -> Path:
    """One uninterrupted single-process run: the reference of every other run."""
    out = tmp_path_factory.mktemp("ns2d") / "ref.h5"
    return generate_ns2d(out, preset="fno", samples=SAMPLES, seed=SEED, batch_size=2, **SMALL)


def _content(path: Path) -> dict[str, object]:
    with h5py.File(path, "r") as f:
        d: dict[str, object] = {k: f[k][:] for k in ("vorticity", "vorticity_crc32", "times",
                                                     "x", "y", "done", "sample_index")}
        d["attrs"] = {k: f.attrs[k] for k in f.attrs}
    return d


def _assert_identical(path: Path, ref: Path) -> None:
    a, b = _content(path), _content(ref)
    for k in ("vorticity", "vorticity_crc32", "times", "x", "y", "done", "sample_index"):
        assert a[k].dtype == b[k].dtype, k
        assert np.array_equal(a[k], b[k]), f"{k} differs from the reference run"
    assert a["attrs"].keys() == b["attrs"].keys()
    for k in b["attrs"]:
        assert np.array_equal(a["attrs"][k], b["attrs"][k]), f"attribute {k} differs"
    assert a["attrs"]["complete"]


# ---------------------------------------------------------------------- presets and values

def test_presets_hold_the_published_settings():
    fno, kol, mcw = PRESETS["fno"], PRESETS["kolmogorov"], PRESETS["mcwilliams"]
    assert (fno.length, fno.viscosity, fno.drag, fno.forcing) == (1.0, 1e-3, 0.0, "fno")
    assert dict(fno.forcing_params) == {"amplitude": 0.1}
    assert (fno.initial, dict(fno.initial_params)) == (
        "gaussian_random_field", {"alpha": 2.5, "tau": 7.0})
    assert (fno.t_start, fno.t_end, fno.snapshots, fno.method, fno.velocity_bound) == (
        30.0, 50.0, 100, "ifrk4", 0.4)
    assert (kol.length, kol.viscosity, kol.drag, kol.forcing) == (TWO_PI, 1e-3, 0.1,
                                                                   "kolmogorov")
    assert dict(kol.forcing_params) == {"wavenumber": 4, "amplitude": 1.0}
    assert (kol.initial, dict(kol.initial_params)) == (
        "mcwilliams", {"peak_wavenumber": 4.0, "max_velocity": 1.0})
    assert (kol.t_start, kol.t_end, kol.snapshots, kol.velocity_bound) == (0.0, 10.0, 50, 6.0)
    assert (mcw.length, mcw.viscosity, mcw.drag, mcw.forcing) == (TWO_PI, 1e-3, 0.0, "none")
    assert dict(mcw.initial_params) == {"peak_wavenumber": 4.0, "max_velocity": 7.0}
    assert (mcw.t_start, mcw.t_end, mcw.snapshots, mcw.velocity_bound) == (0.0, 10.0, 50, 7.0)
    assert PRESETS["fno"].default_dt(256) == 0.5 * (1.0 / 256) / 0.4


def _direct(preset: str, n: int, seed: int, i: int, dtype: torch.dtype) -> torch.Tensor:
    """Sample ``i`` solved directly: the physics of each preset written out by hand."""
    g = torch.Generator()
    g.manual_seed(int(np.random.SeedSequence([seed, i]).generate_state(1, np.uint64)[0]) >> 1)
    if preset == "fno":
        w0 = gaussian_random_field(1, n, alpha=2.5, tau=7.0, length=1.0, generator=g)
        ns = NavierStokes2D(1e-3, length=1.0, forcing=fno_forcing(n, amplitude=0.1, dtype=dtype),
                            method="ifrk4")
        dt = 0.5 * (1.0 / n) / 0.4
    elif preset == "kolmogorov":
        w0 = mcwilliams_vorticity(1, n, peak_wavenumber=4.0, max_velocity=1.0, generator=g)
        ns = NavierStokes2D(1e-3, length=TWO_PI, drag=0.1, method="ifrk4",
                            forcing=kolmogorov_forcing(n, wavenumber=4, amplitude=1.0,
                                                       dtype=dtype))
        dt = 0.5 * (TWO_PI / n) / 6.0
    else:
        w0 = mcwilliams_vorticity(1, n, peak_wavenumber=4.0, max_velocity=7.0, generator=g)
        ns = NavierStokes2D(1e-3, length=TWO_PI, method="ifrk4")
        dt = 0.5 * (TWO_PI / n) / 7.0
    return ns.solve(w0.to(dtype), np.linspace(0.0, 0.2, 4).tolist(), dt=dt)[0]


@pytest.mark.parametrize("preset,dtype", [("fno", "float64"), ("fno", "float32"),
                                          ("kolmogorov", "float64"), ("mcwilliams", "float64")])
def test_stored_trajectories_equal_a_direct_solve(tmp_path, preset, dtype):
    out = generate_ns2d(tmp_path / "d.h5", preset=preset, samples=3, seed=7, batch_size=2,
                        dtype=dtype, **SMALL)
    length = 1.0 if preset == "fno" else TWO_PI
    with h5py.File(out, "r") as f:
        v = f["vorticity"]
        assert v.shape == (3, 4, 16, 16) and v.dtype == np.float32 and v.chunks == (1, 4, 16, 16)
        np.testing.assert_array_equal(f["times"][:], np.linspace(0.0, 0.2, 4))
        np.testing.assert_allclose(f["x"][:], np.arange(16) * length / 16, rtol=1e-15)
        np.testing.assert_array_equal(f["x"][:], f["y"][:])
        np.testing.assert_array_equal(f["done"][:], 1)
        np.testing.assert_array_equal(f["sample_index"][:], np.arange(3))
        a = dict(f.attrs)
        data = v[:]
    assert a["format"] == "sciml.ns2d" and a["format_version"] == 1 and a["complete"]
    assert a["preset"] == preset and a["length"] == length and a["viscosity"] == 1e-3
    assert (a["solver_resolution"], a["resolution"], a["method"], a["seed"], a["dtype"]) == (
        32, 16, "ifrk4", 7, dtype)
    assert a["dt"] == 0.5 * (length / 32) / PRESETS[preset].velocity_bound
    assert ("kolmogorov_forcing" in a["forcing"]) == (preset == "kolmogorov")
    for i in range(3):
        ref = _direct(preset, 32, 7, i, getattr(torch, dtype))[:, ::2, ::2].float().numpy()
        # the same float operations in the same order: equal to the last bit
        np.testing.assert_array_equal(data[i], ref)
        assert sample_seed(7, i) == int(
            np.random.SeedSequence([7, i]).generate_state(1, np.uint64)[0]) >> 1
    assert not np.array_equal(data[0], data[1])  # each sample has its own initial condition
    assert np.abs(data[:, -1] - data[:, 0]).max() > 1e-3  # and the flow evolves
    flat = data.astype(np.float64)
    assert a["mean"] == pytest.approx(flat.mean(), abs=1e-12 * np.abs(flat).max())
    assert a["std"] == pytest.approx(flat.std(), rel=1e-12)


def test_batching_does_not_change_the_data(tmp_path, ref_file):
    out = generate_ns2d(tmp_path / "b.h5", preset="fno", samples=SAMPLES, seed=SEED,
                        batch_size=3, **SMALL)
    _assert_identical(out, ref_file)


def test_a_complete_file_is_returned_untouched(ref_file):
    before = hashlib.sha256(ref_file.read_bytes()).hexdigest()
    assert generate_ns2d(ref_file, preset="fno", samples=SAMPLES, seed=SEED, batch_size=4,
                         **SMALL) == ref_file
    assert hashlib.sha256(ref_file.read_bytes()).hexdigest() == before


# ---------------------------------------------------------------------- resume after SIGKILL

def test_killed_runs_resume_to_the_uninterrupted_result(tmp_path, ref_file):
    out = tmp_path / "resumed.h5"
    ref = _content(ref_file)["vorticity"]
    # 1) killed right after the first batch (samples 0, 1) is flagged done
    r = _cli(*_generate_cmd(out, 2), env={"SCIML_NS2D_TEST_KILL": "done:1"})
    assert r.returncode == -signal.SIGKILL, r.stderr
    with h5py.File(out, "r") as f:
        np.testing.assert_array_equal(f["done"][:], [1, 1, 0, 0, 0])
        assert not f.attrs["complete"]
        np.testing.assert_array_equal(f["vorticity"][:2], ref[:2])
    with pytest.raises(ValueError, match="incomplete"):
        NS2DDataset(out, input_steps=1, output_steps=1)
    # 2) the restart is killed after writing samples 2, 3 but before flagging them
    r = _cli(*_generate_cmd(out, 2), env={"SCIML_NS2D_TEST_KILL": "data:1"})
    assert r.returncode == -signal.SIGKILL, r.stderr
    with h5py.File(out, "r+") as f:
        np.testing.assert_array_equal(f["done"][:], [1, 1, 0, 0, 0])
        np.testing.assert_array_equal(f["vorticity"][2:4], ref[2:4])  # written, not flagged
        # an unflagged batch must not be trusted: spoil it (as a torn write would)
        f["vorticity"][2:5] = np.nan
    # 3) a restart with another batch size finishes the file
    r = _cli(*_generate_cmd(out, 3))
    assert r.returncode == 0, r.stderr
    _assert_identical(out, ref_file)
    # no temporary or lock file is left beside it
    assert sorted(q.name for q in out.parent.iterdir()) == [out.name]


def test_resume_trusts_flagged_samples_only(tmp_path, ref_file):
    out = shutil.copy(ref_file, tmp_path / "r.h5")
    with h5py.File(out, "r+") as f:
        f.attrs["complete"] = False
        f["done"][3] = 0
        f["vorticity"][3] = np.nan  # a torn write of an unflagged sample: recomputed
        f["vorticity"][0] = 1.0  # a flagged sample is kept as it is (not recomputed)
    generate_ns2d(out, preset="fno", samples=SAMPLES, seed=SEED, batch_size=2, **SMALL)
    got, ref = _content(out), _content(ref_file)
    np.testing.assert_array_equal(got["vorticity"][1:], ref["vorticity"][1:])
    assert (got["vorticity"][0] == 1.0).all()
    np.testing.assert_array_equal(got["done"], 1)
    a = got["attrs"]
    assert a["complete"]
    # the statistics are those of the finished file
    flat = got["vorticity"].astype(np.float64)
    assert a["mean"] == pytest.approx(flat.mean(), rel=1e-12)
    assert a["std"] == pytest.approx(flat.std(), rel=1e-12)


# ---------------------------------------------------------------------- torchrun shards

def test_torchrun_two_processes_merge_to_the_single_process_file(tmp_path, ref_file):
    out = tmp_path / "merged.h5"
    r = _cli("--standalone", "--nproc_per_node", "2", "-m", "sciml_recipes",
             *_generate_cmd(out, 2), module="torch.distributed.run")
    assert r.returncode == 0, r.stderr[-3000:]
    _assert_identical(out, ref_file)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["merged.h5"]  # shards removed


def test_shard_paths():
    assert shard_path("/d/data.h5", 1, 4) == Path("/d/data.rank1-of-4.h5")


# ---------------------------------------------------------------------- Dataset

def test_dataset_windows_and_normalisation_match_the_raw_file(ref_file, close):
    raw = _content(ref_file)
    v, mean, std = raw["vorticity"], raw["attrs"]["mean"], raw["attrs"]["std"]
    ds = NS2DDataset(ref_file, input_steps=2, output_steps=1)
    assert ds.windows_per_sample == 2 and len(ds) == SAMPLES * 2
    for k in range(len(ds)):
        x, y = ds[k]
        s, t = divmod(k, 2)
        assert x.shape == (2, 16, 16) and y.shape == (1, 16, 16)
        assert x.dtype == y.dtype == torch.float32
        want = ((v[s, t:t + 3].astype(np.float64) - mean) / std).astype(np.float32)
        np.testing.assert_array_equal(torch.cat([x, y]).numpy(), want)
        close(ds.denormalize(torch.cat([x, y])), v[s, t:t + 3], torch.float32)
    # windows (0,1) and (2,3) with stride 2 cover every frame once: standardised data
    ds2 = NS2DDataset(ref_file, input_steps=1, output_steps=1, stride=2)
    assert len(ds2) == SAMPLES * 2
    allv = torch.stack([torch.cat(ds2[k]) for k in range(len(ds2))]).double()
    assert abs(float(allv.mean())) < 1e-6 and float(allv.std(correction=0)) == pytest.approx(
        1.0, rel=1e-6)
    # raw values, a subset of the samples, windows counted with a stride
    ds3 = NS2DDataset(ref_file, input_steps=1, output_steps=2, stride=3, normalize=False,
                      samples=[4, 1])
    assert ds3.windows_per_sample == 1 and len(ds3) == 2
    np.testing.assert_array_equal(torch.cat(ds3[0]).numpy(), v[4, 0:3])
    np.testing.assert_array_equal(torch.cat(ds3[-1]).numpy(), v[1, 0:3])
    assert torch.equal(ds3.denormalize(ds3[0][0]), ds3[0][0])
    with pytest.raises(IndexError):
        ds3[2]


def test_dataset_works_with_dataloader_workers(ref_file):
    ds = NS2DDataset(ref_file, input_steps=2, output_steps=2)
    expected = [ds[k] for k in range(len(ds))]  # opens the file in this process first
    loader = DataLoader(ds, batch_size=2, num_workers=2, shuffle=False)
    xs, ys = zip(*loader)
    assert torch.equal(torch.cat(xs), torch.stack([e[0] for e in expected]))
    assert torch.equal(torch.cat(ys), torch.stack([e[1] for e in expected]))
    ds.close()


def _copy_with(ref: Path, dest: Path, **attrs: object) -> Path:
    shutil.copy(ref, dest)
    with h5py.File(dest, "r+") as f:
        for k, v in attrs.items():
            if v is None:
                del f.attrs[k]
            else:
                f.attrs[k] = v
    return dest


def test_dataset_rejects_foreign_incomplete_and_corrupt_files(tmp_path, ref_file):
    with pytest.raises(FileNotFoundError, match=r"missing\.h5"):
        NS2DDataset(tmp_path / "missing.h5")
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["u"] = np.zeros(3)
    cases = {
        foreign: "no 'format' attribute",
        _copy_with(ref_file, tmp_path / "other.h5", format="pdebench"): "format 'pdebench'",
        _copy_with(ref_file, tmp_path / "v2.h5", format_version=2): "format_version 2",
        _copy_with(ref_file, tmp_path / "part.h5", complete=False): "incomplete",
    }
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not an hdf5 file" * 100)
    cases[junk] = "cannot open"
    cut = tmp_path / "cut.h5"
    cut.write_bytes(ref_file.read_bytes()[:4000])
    cases[cut] = "cannot open"
    for path, msg in cases.items():
        with pytest.raises(ValueError, match=msg) as e:
            NS2DDataset(path, input_steps=1, output_steps=1)
        assert str(path) in str(e.value)
    with pytest.raises(ValueError, match="exceeds the 4 snapshots"):
        NS2DDataset(ref_file, input_steps=3, output_steps=2)
    with pytest.raises(ValueError, match=r"samples \[5\] are out of range"):
        NS2DDataset(ref_file, input_steps=1, output_steps=1, samples=[0, 5])
    with pytest.raises(ValueError, match="stride"):
        NS2DDataset(ref_file, stride=0)


# ---------------------------------------------------------------------- invalid arguments

def test_invalid_arguments_are_clear_errors(tmp_path):
    out = tmp_path / "x.h5"
    kw = {"preset": "fno", "samples": 2, **SMALL}
    with pytest.raises(ValueError, match=r"unknown preset 'fn'.*fno"):
        generate_ns2d(out, **{**kw, "preset": "fn"})
    with pytest.raises(ValueError, match="not a multiple of resolution = 12"):
        generate_ns2d(out, **{**kw, "resolution": 12})
    with pytest.raises(ValueError, match="samples must be >= 1, got 0"):
        generate_ns2d(out, **{**kw, "samples": 0})
    with pytest.raises(ValueError, match="dtype must be one of"):
        generate_ns2d(out, **kw, dtype="float16")
    with pytest.raises(ValueError, match="dt must be > 0"):
        generate_ns2d(out, **kw, dt=-0.1)
    with pytest.raises(ValueError, match=r"t_end = 0\.1 is before t_start = 0\.5"):
        generate_ns2d(out, **{**kw, "t_start": 0.5, "t_end": 0.1})
    with pytest.raises(ValueError, match="rank = 2 must be < world_size = 2"):
        generate_ns2d(out, **kw, rank=2, world_size=2)
    with pytest.raises(ValueError, match="samples = 2 < world_size = 3"):
        generate_ns2d(out, **kw, rank=0, world_size=3)
    with pytest.raises(ValueError, match="forcing 'fno' takes no parameter 'wavenumber'"):
        NS2DPreset(**{**PRESETS["fno"].__dict__, "forcing_params": (("wavenumber", 2),)})
    with pytest.raises(ValueError, match="method must be one of"):
        NS2DPreset(**{**PRESETS["fno"].__dict__, "method": "euler"})
    with pytest.raises(ValueError, match="initial must be one of"):
        NS2DPreset(**{**PRESETS["fno"].__dict__, "initial": "zeros"})
    assert not out.exists()


def test_world_size_without_torchrun_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    with pytest.raises(ValueError, match="torchrun --nproc_per_node 2"):
        generate_ns2d(tmp_path / "x.h5", preset="fno", samples=2, rank=0, world_size=2,
                      **SMALL)


def test_an_existing_file_with_other_settings_is_never_overwritten(tmp_path, ref_file):
    out = shutil.copy(ref_file, tmp_path / "mine.h5")
    before = Path(out).read_bytes()
    base = {"preset": "fno", "samples": SAMPLES, "seed": SEED, **SMALL}
    for change, name in [({"seed": 4}, "seed"), ({"snapshots": 5}, "snapshots"),
                         ({"preset": "kolmogorov"}, "preset"), ({"samples": 6}, "samples"),
                         ({"dt": 0.01}, "dt")]:
        with pytest.raises(ValueError, match=rf"exists with other settings: {name} = .*"
                                             r"delete the file"):
            generate_ns2d(out, **{**base, **change})
    foreign = tmp_path / "notes.h5"
    foreign.write_bytes(b"precious notes")
    with pytest.raises(ValueError, match="cannot open the existing output"):
        generate_ns2d(foreign, **base)
    assert Path(out).read_bytes() == before and foreign.read_bytes() == b"precious notes"


def test_cli_generate_errors(tmp_path, capsys):
    out = tmp_path / "c.h5"
    with pytest.raises(SystemExit) as e:
        main(["generate", "ns2d", "--preset", "nope", "--samples", "2", "--out", str(out)])
    assert e.value.code == 2
    args = ["generate", "ns2d", "--preset", "fno", "--samples", "2", "--out", str(out)]
    assert main([*args, "--resolution", "12", *CLI_SMALL[2:]]) == 2
    assert "not a multiple of resolution = 12" in capsys.readouterr().err
    assert main([*args, *CLI_SMALL]) == 0
    assert "wrote" in capsys.readouterr().out
    assert len(NS2DDataset(out, input_steps=1, output_steps=1)) == 2 * 3
