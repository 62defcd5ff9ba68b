"""Bad input on the command line and in the loaders it uses: one clear line, no traceback.

Every command here must stop before any training (a few tiny settings keep the runs short
should a check ever be missing, so that the test fails instead of hanging).
"""

from __future__ import annotations

import builtins
import pickle
import re
import shutil

import h5py
import numpy as np
import pytest
import torch

from sciml.data import generate_ns2d
from sciml.solvers.linear import load_pretrained
from sciml.train import load_checkpoint
from sciml_recipes.cli import main
from sciml_recipes.dcdm.pipeline import DCDMData, train_dcdm
from sciml_recipes.gpme.run import run_probconserv
from sciml_recipes.mppde.pipeline import load_stepper, train_stepper
from sciml_recipes.mppde.run import run_mppde
from sciml_recipes.sfno.pipeline import load_sfno

NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
#: a GPU index this machine does not have (with or without CUDA)
MISSING_GPU = f"cuda:{max(7, torch.cuda.device_count())}"


def _cli(argv: list[str], capsys) -> tuple[int, str]:
    """Exit status and stdout + stderr of ``sciml argv`` (argparse's exit included)."""
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out + out.err


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("ns")
    return generate_ns2d(d / "ns.h5", preset="fno", samples=3, resolution=16,
                         solver_resolution=32, t_start=0.0, t_end=0.8, snapshots=9,
                         progress=False)


def _train_sfno(data, out) -> list[str]:
    return ["train", "sfno", "--data", str(data), "--out", str(out), "--input-steps", "3",
            "--output-steps", "3", "--stride", "3", "--test-stride", "3", "--test-samples",
            "1", "--modes", "3", "--modes-t", "2", "--width", "4", "--layers", "1",
            "--epochs", "1", "--no-progress"]


@pytest.fixture(scope="module")
def model(tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    assert main(_train_sfno(tiny, out)) == 0
    return out / "model.pt"


DCDM = ["train", "dcdm", "--size", "16", "--scenes", "1", "--per-scene", "4", "--ritz", "4",
        "--steps", "1", "--channels", "2", "--no-progress"]
MPPDE = ["train", "mppde", "--families", "E1", "--conventions", "paper", "--nx", "40",
         "--models", "mppde", "--train-samples", "2", "--test-samples", "2", "--steps", "1",
         "--hidden", "4", "--no-progress"]
PROBCONSERV = ["train", "probconserv", "--problems", "diffusion", "--members", "1",
               "--steps", "1", "--tasks", "4", "--n-eval", "1", "--no-progress"]
SFNO = ["train", "sfno", "--data", "x.h5", "--epochs", "1", "--no-progress"]
HARDC = ["train", "hardc", "--methods", "soft", "--steps", "1", "--no-progress"]

# (arguments after the command's own, the option the message must name, words it must hold)
CASES = {
    "dcdm-batch-size-0": ([*DCDM, "--batch-size", "0"], "--batch-size", [">= 1", "0"]),
    "dcdm-power-nan": ([*DCDM, "--power", "nan"], "--power", ["finite", "nan"]),
    "dcdm-size-3": ([*DCDM, "--size", "3"], "--size", [">= 8", "3"]),
    "mppde-max-unroll-neg": ([*MPPDE, "--max-unroll", "-1"], "--max-unroll", [">= 0", "-1"]),
    "probconserv-soft-neg": ([*PROBCONSERV, "--soft", "-1"], "--soft", [">= 0", "-1"]),
    "sfno-epochs-0": ([*SFNO, "--epochs", "0"], "--epochs", [">= 1", "0"]),
    "sfno-lr-nan": ([*SFNO, "--lr", "nan"], "--lr", ["finite", "nan"]),
    "sfno-time-budget-nan": ([*SFNO, "--time-budget", "nan"], "--time-budget", ["nan"]),
    "sfno-max-steps-0": ([*SFNO, "--max-steps", "0"], "--max-steps", [">= 1", "0"]),
    "sfno-seed-neg": ([*SFNO, "--seed", "-1"], "--seed", [">= 0", "-1"]),
    "hardc-steps-0": ([*HARDC, "--steps", "0"], "--steps", [">= 1", "0"]),
    "hardc-lr-nan": ([*HARDC, "--lr", "nan"], "--lr", ["nan"]),
    "hardc-experts-0": ([*HARDC, "--experts", "0"], "--experts", [">= 1", "0"]),
    "probconserv-members-0": ([*PROBCONSERV, "--members", "0"], "--members", [">= 1", "0"]),
    "mppde-train-samples-neg": ([*MPPDE, "--train-samples", "-4"], "--train-samples",
                                [">= 1", "-4"]),
    "generate-ns2d-preset-bogus": (["generate", "ns2d", "--preset", "bogus", "--samples", "1"],
                                   "--preset", ["invalid choice", "bogus", "fno"]),
    "sfno-device-bogus": (["train", "sfno", "--data", "x.h5", "--device", "bogus"],
                          "--device", ["bogus", "cpu, cuda or cuda:N"]),
    "generate-device-missing-gpu": (
        ["generate", "burgers", "--family", "E1", "--samples", "1", "--device", MISSING_GPU],
        "--device", [MISSING_GPU, "--device cpu"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_arguments_are_refused_with_the_option_named(case, tmp_path, capsys):
    argv, option, words = CASES[case]
    out = tmp_path / "out.h5" if argv[0] == "generate" else tmp_path / "out"
    code, text = _cli([*argv, "--out", str(out)], capsys)
    assert code == 2, text
    assert "Traceback" not in text
    err = text.splitlines()[-1]
    assert f"argument {option}:" in err and all(w in err for w in words), err
    assert not out.exists()  # refused before anything ran


@pytest.mark.parametrize("device", [pytest.param("cuda", marks=NO_CUDA), MISSING_GPU])
def test_evaluate_on_a_device_this_machine_lacks_says_so(model, device, tmp_path, capsys):
    code, text = _cli(["evaluate", "--model", str(model), "--out", str(tmp_path),
                       "--device", device], capsys)
    assert code == 2 and "Traceback" not in text
    assert "argument --device:" in text and "--device cpu" in text
    if device == "cuda":
        assert "CUDA is not available" in text
    # the valid model file is not blamed
    assert "corrupt" not in text and "delete" not in text


@pytest.mark.parametrize("device", [pytest.param("cuda", marks=NO_CUDA), MISSING_GPU])
def test_loading_onto_a_missing_device_does_not_blame_the_file(model, device):
    for load in (lambda: load_sfno(model, device=device),
                 lambda: load_checkpoint(model, map_location=device)):
        with pytest.raises(ValueError) as e:
            load()
        msg = str(e.value)
        assert device in msg and "'cpu'" in msg
        assert "corrupt" not in msg and "delete" not in msg
        assert "CUDA is not available" in msg or "CUDA device(s)" in msg


def test_unwritable_out_is_a_clear_error(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    out = blocker / "run"
    code, text = _cli([*DCDM, "--out", str(out)], capsys)
    assert code == 2 and "Traceback" not in text
    assert text.strip() == (f"sciml train: error: cannot write --out {out}: {blocker} is a "
                            "file, not a folder; pass an --out folder you can write to")
    code, text = _cli(["generate", "burgers", "--family", "E1", "--samples", "1", "--out",
                       str(out / "b.h5")], capsys)
    assert code == 2 and "Traceback" not in text and f"--out {out / 'b.h5'}" in text


def test_library_errors_of_other_kinds_print_one_line(tmp_path, capsys, monkeypatch):
    """An OSError deep in a run (here a PermissionError on writing) is one line too."""
    import sciml_recipes.gpme.run as gpme_run

    def denied(*a, **k):
        raise PermissionError(13, "Permission denied", str(tmp_path / "o" / "probconserv.json"))

    monkeypatch.setattr(gpme_run, "train_ensemble", denied)
    code, text = _cli([*PROBCONSERV, "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "Traceback" not in text
    assert text.splitlines()[-1] == ("sciml train: error: [Errno 13] Permission denied: "
                            f"'{tmp_path / 'o' / 'probconserv.json'}'")
    # a genuine bug (an exception the library does not raise on purpose) keeps its traceback
    monkeypatch.setattr(gpme_run, "train_ensemble", lambda *a, **k: {}["bug"])
    with pytest.raises(KeyError):
        main([*PROBCONSERV, "--out", str(tmp_path / "o")])


# ------------------------------------------------------------- the library functions


def test_library_functions_check_what_the_command_line_checks(tmp_path):
    from sciml.pdes.poisson import fluid_proxy

    systems = [fluid_proxy(8, d=2)]
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        train_dcdm(systems, batch_size=0, per_system=4, k=4, steps=1, progress=False)
    with pytest.raises(ValueError, match=r"power must be a finite number.*nan"):
        DCDMData(systems, 4, k=4, power=float("nan"))
    with pytest.raises(ValueError, match=r"a 7x7 grid is too small.*>= 8"):
        train_dcdm([fluid_proxy(7, d=2)], per_system=4, k=4, steps=1, progress=False)
    with pytest.raises(ValueError, match="max_unroll must be >= 0, got -1"):
        train_stepper(torch.nn.Linear(1, 1), None, max_unroll=-1, steps=4)
    with pytest.raises(ValueError, match="max_unroll must be >= 0, got -1"):
        run_mppde(tmp_path / "m", max_unroll=-1, train_samples=2, test_samples=2, steps=1)
    assert not (tmp_path / "m").exists()  # refused before generating any data
    for soft in (-1.0, float("nan")):
        with pytest.raises(ValueError, match="soft must be a finite weight >= 0"):
            run_probconserv(tmp_path / "p", soft=soft, members=1, steps=1, tasks=4,
                            progress=False, echo=lambda s: None)
    assert not (tmp_path / "p").exists()


# ------------------------------------------------------------- normalisation statistics


def _with_vorticity(src, dst, change) -> None:
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as f:
        v = f["vorticity"][...].astype(np.float64)
        change(v)
        f["vorticity"][...] = v
        f.attrs.modify("mean", float(v.mean()))
        f.attrs.modify("std", float(v.std()))


def test_nan_std_in_the_data_file_is_named(tiny, model, tmp_path, capsys):
    bad = tmp_path / "blown-up.h5"
    _with_vorticity(tiny, bad, lambda v: v.__setitem__((0, 2, 3, 3), np.nan))
    for argv in (_train_sfno(bad, tmp_path / "run"),
                 ["evaluate", "--model", str(model), "--data", str(bad), "--out",
                  str(tmp_path / "ev")]):
        code, text = _cli(argv, capsys)
        assert code == 2 and "Traceback" not in text, text
        assert "JSON-safe" not in text
        assert f"normalisation std stored in the data file {bad} is nan" in text
        assert "NaN or Inf" in text and "regenerate the file" in text


def test_zero_std_in_the_data_file_is_named(tiny, model, tmp_path, capsys):
    flat = tmp_path / "flat.h5"
    _with_vorticity(tiny, flat, lambda v: v.__setitem__(..., 0.25))
    for argv in (["evaluate", "--model", str(model), "--data", str(flat), "--out",
                  str(tmp_path / "ev")],
                 _train_sfno(flat, tmp_path / "run")):
        code, text = _cli(argv, capsys)
        assert code == 2 and "Traceback" not in text, text
        assert "non-finite" not in text
        assert f"normalisation std stored in the data file {flat} is 0.0" in text
        assert "zero variance" in text and "degenerate" in text


def test_nan_std_in_a_model_file_is_named(model, tmp_path):
    from sciml.train._checkpoint import save

    ckpt = load_checkpoint(model)
    ckpt["model_config"]["std"] = float("nan")
    bad = tmp_path / "model.pt"
    save(ckpt, bad)  # as the Trainer writes files (a NaN there was refused only as JSON)
    with pytest.raises(ValueError, match=re.escape(f"std stored in the model file {bad} is nan")):
        load_sfno(bad)


# ------------------------------------------------------------- foreign weights files


class _Runs:
    """Unpickling this with plain pickle would create ``marker`` (it must never run)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (builtins.open, (self.marker, "w"))


def _foreign(kind: str, path, marker) -> None:
    if kind == "pickle":
        with open(path, "wb") as f:
            pickle.dump({"a": 1}, f)
    elif kind == "code":
        torch.save({"config": _Runs(marker), "state": {}}, path)
    else:  # loads with weights_only, but is not a weights file
        torch.save({"a": torch.zeros(2)}, path)


@pytest.mark.parametrize("kind", ["pickle", "code", "other-dict"])
def test_loaders_refuse_a_foreign_file_by_name(kind, tmp_path):
    marker = tmp_path / "ran"
    dcdm = tmp_path / "dcdm_2d.pt"
    _foreign(kind, dcdm, marker)
    with pytest.raises(ValueError, match=re.escape(f"{dcdm} is not a sciml weights file")):
        load_pretrained(2, path=dcdm)
    run = tmp_path / "run"
    run.mkdir()
    _foreign(kind, run / "model.pt", marker)
    stored = run / "model.pt"
    with pytest.raises(ValueError, match=re.escape(f"{stored} is not a sciml weights file")):
        load_stepper(run)
    assert not marker.exists()


def test_load_pretrained_reads_a_trained_file(tmp_path):
    from sciml.operators import DCDMNet
    from sciml_recipes.dcdm.pipeline import save_pretrained

    torch.manual_seed(0)
    net = DCDMNet(2, channels=3)
    path = save_pretrained(net, tmp_path / "dcdm_2d.pt", {"steps": 0})
    back = load_pretrained(2, path=path)
    x = torch.randn(1, 8, 8)
    torch.testing.assert_close(back(x), net.eval()(x))
    with pytest.raises(ValueError, match="holds a 2D network, not 3D"):
        load_pretrained(3, path=path)
