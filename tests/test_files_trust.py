"""Files sciml writes can be trusted (issue 17, items 10-14).

* a resumed run refuses data whose content differs from the data it was trained on
  (a fingerprint stored in the checkpoint), and a model built with other settings (each
  differing setting named);
* a checkpoint whose weights are not finite is refused when loaded;
* one flipped byte in a checkpoint's tensors or in an HDF5 data chunk is detected when
  the file is read (checksums stored by the writers); files from before the checksums
  still load;
* two writers of one file never interleave: the second stops with a clear message naming
  the first one's pid, never a raw traceback.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import struct
import subprocess
import sys
import threading
import zipfile
import zlib
from pathlib import Path

import h5py
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from sciml._files import writer_lock
from sciml.data import BurgersDataset, NS2DDataset, fingerprint, generate_burgers, generate_ns2d
from sciml.train import TrainConfig, Trainer, load_checkpoint
from sciml.train._checkpoint import save
from sciml_recipes.cli import main
from sciml_recipes.sfno.pipeline import load_sfno

NS = {"preset": "fno", "samples": 4, "resolution": 16, "solver_resolution": 32,
      "t_start": 0.0, "t_end": 1.2, "snapshots": 13, "progress": False}
NS_CLI = ["generate", "ns2d", "--preset", "fno", "--samples", "4", "--resolution", "16",
          "--solver-resolution", "32", "--t-start", "0", "--t-end", "1.2", "--snapshots", "13",
          "--no-progress"]


# ------------------------------------------------------------------ data files (items 13, 14)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> tuple[Path, Path]:
    """Two data sets of the same shape (other seeds): a.h5 and b.h5."""
    d = tmp_path_factory.mktemp("data")
    return (generate_ns2d(d / "a.h5", seed=0, **NS), generate_ns2d(d / "b.h5", seed=1, **NS))


def _flip(path: Path, offset: int) -> None:
    """Flip one bit of the byte at ``offset``."""
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([byte ^ 0x10]))


def _chunk(path: Path, name: str, sample: int) -> tuple[int, int]:
    with h5py.File(path, "r") as f:
        d = f[name]
        info = d.id.get_chunk_info_by_coord((sample,) + (0,) * (d.ndim - 1))
        return info.byte_offset, info.size


def test_stored_checksums_are_the_crc32_of_each_sample(data):
    for path in data:
        with h5py.File(path, "r") as f:
            v = f["vorticity"]
            assert [zlib.crc32(v[i].tobytes()) for i in range(v.shape[0])] == list(
                f["vorticity_crc32"][:])


def test_a_flipped_byte_in_an_ns2d_chunk_is_detected_when_read(data, tmp_path):
    a, _ = data
    bad = Path(shutil.copy(a, tmp_path / "bad.h5"))
    start, size = _chunk(bad, "vorticity", 2)
    _flip(bad, start + size // 2)
    ds = NS2DDataset(bad, input_steps=4, output_steps=5)
    w = ds.windows_per_sample
    good = NS2DDataset(a, input_steps=4, output_steps=5)
    for k in (0, w, 3 * w):  # the other samples read as before
        assert all(torch.equal(x, y) for x, y in zip(ds[k], good[k]))
    with pytest.raises(ValueError, match=r"is corrupt: sample 2 of /vorticity") as e:
        ds[2 * w + 1]
    assert str(bad) in str(e.value)


def test_ns2d_files_from_before_the_checksums_still_load(data, tmp_path):
    a, _ = data
    old = Path(shutil.copy(a, tmp_path / "old.h5"))
    with h5py.File(old, "r+") as f:
        del f["vorticity_crc32"]
    ds, ref = NS2DDataset(old, input_steps=4, output_steps=5), NS2DDataset(a, input_steps=4,
                                                                            output_steps=5)
    assert all(torch.equal(ds[k][0], ref[k][0]) for k in range(len(ds)))


def test_a_flipped_byte_in_a_burgers_chunk_is_detected_when_read(tmp_path):
    path = generate_burgers(tmp_path / "b.h5", family="E1", samples=3, resolutions=(40, 20),
                            nt=20, progress=False)
    with h5py.File(path, "r") as f:
        u = f["nx40/u"]
        assert [zlib.crc32(u[i].tobytes()) for i in range(3)] == list(f["nx40/u_crc32"][:])
    start, size = _chunk(path, "nx40/u", 1)
    _flip(path, start + size // 2)
    ds = BurgersDataset(path, 40)
    ds[0], ds[2], BurgersDataset(path, 20)[1]  # the other chunks read as before
    with pytest.raises(ValueError, match=r"is corrupt: sample 1 of /nx40/u") as e:
        ds[1]
    assert str(path) in str(e.value)


def test_fingerprint_follows_the_content_not_the_name(data, tmp_path):
    a, _ = data
    copy = Path(shutil.copy(a, tmp_path / "copy.h5"))
    assert fingerprint(copy) == fingerprint(a)
    with h5py.File(copy, "r+") as f:  # a rewritten sample, with its checksum updated
        w = f["vorticity"][1] + 1.0
        f["vorticity"][1] = w
        f["vorticity_crc32"][1] = zlib.crc32(w.tobytes())
    assert fingerprint(copy) != fingerprint(a)
    # a file from before the checksums is fingerprinted by its whole content
    old = Path(shutil.copy(a, tmp_path / "old.h5"))
    with h5py.File(old, "r+") as f:
        del f["vorticity_crc32"]
    old_fp = fingerprint(old)
    with h5py.File(old, "r+") as f:
        f["vorticity"][3, 0, 0, 0] += 1.0
    assert fingerprint(old) != old_fp


def test_two_writers_started_together_one_writes_the_other_is_told_who(tmp_path):
    out = tmp_path / "same.h5"
    start = threading.Barrier(2)
    results: list[object] = [None, None]

    def write(i: int) -> None:
        start.wait()
        try:
            results[i] = generate_ns2d(out, seed=0, **NS)
        except Exception as e:
            results[i] = e

    threads = [threading.Thread(target=write, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done = [r for r in results if isinstance(r, Path)]
    failed = [r for r in results if isinstance(r, BaseException)]
    assert len(done) == 1 and len(failed) == 1, results
    assert type(failed[0]) is ValueError
    msg = str(failed[0])
    assert f"another process is writing {out} (lock file {out}.lock held by pid " in msg
    assert "delete" not in msg  # the file is being written: deleting it is wrong advice
    assert sorted(p.name for p in tmp_path.iterdir()) == ["same.h5"]  # no temp or lock file
    assert len(NS2DDataset(out, input_steps=4, output_steps=5)) > 0


def test_a_cli_writer_finding_the_file_locked_exits_with_the_holders_pid(tmp_path):
    out = tmp_path / "x.h5"
    with writer_lock(out):  # as a running writer holds it
        r = subprocess.run([sys.executable, "-m", "sciml_recipes", *NS_CLI, "--out", str(out)],
                           capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr
    assert f"another process is writing {out} (lock file {out}.lock held by pid {os.getpid()})" \
        in r.stderr
    assert "Traceback" not in r.stderr and not out.exists()


def test_a_lock_left_by_a_killed_writer_is_taken_over(tmp_path):
    out = tmp_path / "x.h5"
    Path(f"{out}.lock").write_text("999999999\n")  # its owner is gone: the lock is not held
    assert generate_ns2d(out, seed=0, **NS) == out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.h5"]


# ------------------------------------------------------------------ checkpoints (item 13)


def _tensor_entries(path: Path) -> dict[str, tuple[int, int]]:
    """Offset and size of each tensor storage in a torch zip file (stored uncompressed)."""
    out = {}
    with zipfile.ZipFile(path) as z, open(path, "rb") as f:
        for info in z.infolist():
            if re.search(r"/data/\d+$", info.filename) and info.file_size:
                f.seek(info.header_offset + 26)
                name_len, extra_len = struct.unpack("<HH", f.read(4))
                out[info.filename] = (info.header_offset + 30 + name_len + extra_len,
                                      info.file_size)
    return out


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 3, generator=g)
    Trainer(nn.Linear(3, 2), nn.functional.mse_loss,
            TrainConfig(epochs=1, batch_size=4, progress=False), out_dir=out
            ).fit(TensorDataset(x, x[:, :2]))
    return out


@pytest.mark.parametrize("name", ["checkpoint.pt", "model.pt"])
def test_a_flipped_byte_in_any_tensor_of_a_checkpoint_is_detected(run_dir, tmp_path, name):
    entries = _tensor_entries(run_dir / name)
    assert len(entries) >= 2  # the weight and the bias at least
    for entry, (start, size) in entries.items():
        bad = Path(shutil.copy(run_dir / name, tmp_path / "bad.pt"))
        _flip(bad, start + size // 2)
        with pytest.raises(ValueError, match=r"is corrupt: tensor '\S+'") as e:
            load_checkpoint(bad)
        assert str(bad) in str(e.value), entry


def test_a_flipped_byte_in_a_weights_file_is_detected(tmp_path):
    from sciml.operators import DCDMNet
    from sciml.solvers.linear import load_pretrained
    from sciml_recipes.dcdm.pipeline import save_pretrained

    torch.manual_seed(0)
    path = save_pretrained(DCDMNet(2, channels=3), tmp_path / "dcdm_2d.pt", {"steps": 0})
    load_pretrained(2, path=path)
    start, size = next(iter(_tensor_entries(path).values()))
    _flip(path, start + size // 2)
    with pytest.raises(ValueError, match=r"is corrupt: tensor 'state/") as e:
        load_pretrained(2, path=path)
    assert str(path) in str(e.value)


def test_changed_values_beside_the_tensors_are_detected(run_dir, tmp_path):
    ckpt = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    ckpt["config"]["lr"] = 0.5  # as a flipped byte of the stored float would
    torch.save(ckpt, tmp_path / "bad.pt")  # the stored checksums are kept as they were
    with pytest.raises(ValueError, match="is corrupt"):
        load_checkpoint(tmp_path / "bad.pt")


def test_checkpoints_from_before_the_checksums_still_load(run_dir, tmp_path):
    ckpt = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    del ckpt["checksums"]
    torch.save(ckpt, tmp_path / "old.pt")
    got = load_checkpoint(tmp_path / "old.pt")
    assert all(torch.equal(got["model"][k], ckpt["model"][k]) for k in ckpt["model"])


# ------------------------------------------------------------ non-finite weights (item 12)


def _train_args(data: Path, out: Path, epochs: int = 2) -> list[str]:
    return ["train", "sfno", "--data", str(data), "--out", str(out), "--input-steps", "4",
            "--output-steps", "5", "--stride", "2", "--test-stride", "4", "--test-samples", "1",
            "--modes", "4", "--modes-t", "3", "--width", "6", "--layers", "2", "--epochs",
            str(epochs), "--lr", "3e-3", "--no-progress"]


def test_non_finite_weights_are_refused_with_the_file_named(data, tmp_path, capsys):
    a, _ = data
    out = tmp_path / "run"
    assert main(_train_args(a, out, epochs=1)) == 0
    for name in ("checkpoint.pt", "model.pt"):
        ckpt = torch.load(out / name, weights_only=True)
        for v in ckpt["model"].values():
            v.fill_(math.nan)
        save(ckpt, out / name)  # well-formed files (valid checksums) holding NaN weights
    model_bytes = (out / "model.pt").read_bytes()
    capsys.readouterr()
    assert main([*_train_args(a, out, epochs=1), "--resume"]) == 2
    err = capsys.readouterr().err
    assert str(out / "checkpoint.pt") in err and "not finite" in err
    assert (out / "model.pt").read_bytes() == model_bytes  # no all-NaN model written again
    with pytest.raises(ValueError, match="not finite") as e:
        load_sfno(out / "model.pt")
    assert str(out / "model.pt") in str(e.value)


def test_a_single_infinite_weight_is_refused(tmp_path):
    net = nn.Linear(3, 2)
    state = net.state_dict()
    state["bias"][1] = math.inf
    save({"format": "sciml.train", "format_version": 1, "model": state}, tmp_path / "m.pt")
    with pytest.raises(ValueError, match=r"'bias' has 1 of 2 values not finite"):
        load_checkpoint(tmp_path / "m.pt")


def test_a_weights_file_with_non_finite_weights_is_refused(tmp_path):
    from sciml.operators import DCDMNet
    from sciml.solvers.linear import load_pretrained
    from sciml_recipes.dcdm.pipeline import save_pretrained

    net = DCDMNet(2, channels=3)
    with torch.no_grad():
        next(iter(net.parameters())).fill_(math.nan)
    path = save_pretrained(net, tmp_path / "dcdm_2d.pt", {"steps": 0})
    with pytest.raises(ValueError, match="not finite") as e:
        load_pretrained(2, path=path)
    assert str(path) in str(e.value)


# ----------------------------------------------------- resuming another run (items 10, 11, 14)


def _stopped_run(data: Path, out: Path) -> None:
    """A run stopped at once by a tiny time budget (a checkpoint to resume)."""
    assert main([*_train_args(data, out), "--time-budget", "1e-6"]) == 0
    assert load_checkpoint(out / "checkpoint.pt")["progress"]["global_step"] < 12


def test_resume_on_other_data_is_refused_by_its_fingerprint(data, tmp_path, capsys):
    a, b = data
    out = tmp_path / "run"
    _stopped_run(a, out)
    before = (out / "checkpoint.pt").read_bytes()
    capsys.readouterr()
    assert main([*_train_args(b, out), "--resume"]) == 2
    err = capsys.readouterr().err
    fa, fb = fingerprint(a), fingerprint(b)
    assert fa != fb
    assert f"fingerprint {fa} (file {a})" in err and f"{b}, has fingerprint {fb}" in err
    assert "pass the original data" in err
    assert (out / "checkpoint.pt").read_bytes() == before  # nothing was overwritten
    # the same content under another name (a moved or copied file) resumes
    moved = Path(shutil.copy(a, tmp_path / "moved.h5"))
    assert main([*_train_args(moved, out), "--resume"]) == 0
    assert load_sfno(out / "model.pt")[1].path == str(moved)


def test_resume_with_another_architecture_names_each_changed_setting(data, tmp_path, capsys):
    a, _ = data
    out = tmp_path / "run"
    _stopped_run(a, out)
    capsys.readouterr()
    args = _train_args(a, out)
    args[args.index("--width") + 1] = "8"
    args[args.index("--layers") + 1] = "3"
    assert main([*args, "--resume"]) == 2
    err = capsys.readouterr().err
    assert "model.width = 6 in the checkpoint but 8 now" in err
    assert "model.layers = 2 in the checkpoint but 3 now" in err
    assert "model.modes" not in err and "Traceback" not in err  # only what differs


def test_two_trainers_on_one_out_dir_are_kept_apart(tmp_path):
    x = torch.randn(8, 3)
    trainer = Trainer(nn.Linear(3, 2), nn.functional.mse_loss,
                      TrainConfig(epochs=1, batch_size=4, progress=False), out_dir=tmp_path)
    with writer_lock(tmp_path, lock=tmp_path / "train.lock"):
        with pytest.raises(ValueError, match=rf"another process is writing {tmp_path} "
                                             rf"\(lock file .*train.lock held by pid "
                                             rf"{os.getpid()}\)"):
            trainer.fit(TensorDataset(x, x[:, :2]))
    trainer.fit(TensorDataset(x, x[:, :2]))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt", "metrics.jsonl",
                                                         "model.pt"]
