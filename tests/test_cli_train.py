"""``sciml train sfno``, ``sciml evaluate`` and ``sciml refine`` on a tiny generated file."""

from __future__ import annotations

import json

import pytest
import torch

from sciml.data import generate_ns2d
from sciml.train import load_checkpoint
from sciml_recipes.cli import main
from sciml_recipes.sfno.pipeline import NSData, evaluate_model, load_sfno


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("ns")
    return generate_ns2d(d / "ns.h5", preset="fno", samples=4, resolution=16,
                         solver_resolution=32, t_start=0.0, t_end=1.2, snapshots=13,
                         progress=False)


def _train_args(data, out, epochs=2):
    return ["train", "sfno", "--data", str(data), "--out", str(out), "--input-steps", "4",
            "--output-steps", "5", "--stride", "2", "--test-stride", "4", "--test-samples", "1",
            "--modes", "4", "--modes-t", "3", "--width", "6", "--layers", "2", "--epochs",
            str(epochs), "--lr", "3e-3", "--no-progress"]


@pytest.fixture(scope="module")
def trained(tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    assert main(_train_args(tiny, out)) == 0
    return out


def test_train_writes_a_loadable_model_and_metrics(trained, tiny):
    ckpt = torch.load(trained / "model.pt", weights_only=True)
    assert ckpt["model_config"]["kind"] == "sfno"
    lines = [json.loads(s) for s in (trained / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines][-1] == 2
    model, data = load_sfno(trained / "model.pt")
    assert data == NSData(str(tiny), input_steps=4, output_steps=5, stride=2, test_stride=4,
                          test_samples=1)
    # the recorded test error is the model's error on the held-out trajectory
    ev = evaluate_model(model, data.dataset("test"))
    assert lines[-1]["eval_rel_l2"] == pytest.approx(ev["rel_l2"], rel=1e-4)


def test_train_stopped_early_and_resumed_matches_an_uninterrupted_run(tiny, tmp_path):
    whole = tmp_path / "whole"
    assert main(_train_args(tiny, whole, epochs=3)) == 0
    split = tmp_path / "split"
    # a tiny time budget stops the run after its first step, with a checkpoint
    assert main([*_train_args(tiny, split, epochs=3), "--time-budget", "1e-6"]) == 0
    assert load_checkpoint(split / "checkpoint.pt")["progress"]["global_step"] < 9
    assert main([*_train_args(tiny, split, epochs=3), "--resume"]) == 0
    a = load_checkpoint(whole / "model.pt")["model"]
    b = load_checkpoint(split / "model.pt")["model"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)  # deterministic on CPU


def test_evaluate_writes_errors_and_figures(trained, tmp_path, capsys):
    assert main(["evaluate", "--model", str(trained / "model.pt"), "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "evaluate.json").read_text())
    assert len(res["rel_l2_per_frame"][0]) == 5 and len(res["error_spectrum"]) == 9
    model, data = load_sfno(trained / "model.pt")
    assert res["rel_l2"] == pytest.approx(evaluate_model(model, data.dataset("test"))["rel_l2"])
    assert (tmp_path / "prediction.png").stat().st_size > 5_000
    assert (tmp_path / "errors.png").stat().st_size > 5_000
    assert "rel L2" in capsys.readouterr().out


def test_refine_lowers_the_residual_it_fits(trained, tmp_path):
    args = ["refine", "--model", str(trained / "model.pt"), "--out", str(tmp_path), "--steps",
            "4", "--lr", "1e-2", "--norm", "l2", "--no-progress"]
    assert main(args) == 0
    res = json.loads((tmp_path / "refine_l2.json").read_text())
    assert all(a < b for a, b in zip(res["residual_after"], res["residual_before"]))
    assert len(res["history"][0]) == 5
    assert (tmp_path / "refine_l2.png").stat().st_size > 5_000


def test_bad_arguments_are_clear_errors(trained, tmp_path, capsys):
    assert main(["evaluate", "--model", str(tmp_path / "none.pt"), "--out", str(tmp_path)]) == 2
    assert "none.pt" in capsys.readouterr().err
    assert main(_train_args(tmp_path / "missing.h5", tmp_path / "o")) == 2
    assert "missing.h5" in capsys.readouterr().err
    bad = _train_args(trained, tmp_path / "o")
    bad[bad.index("--test-samples") + 1] = "9"
    assert main(["train", "sfno", "--data", str(trained / "model.pt"), "--out",
                 str(tmp_path / "o")]) == 2


def test_demo_sfno_quick_trains_refines_and_draws(tmp_path, capsys):
    assert main(["demo", "sfno", "--quick", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "results.json").read_text())
    rows = {(r["case"], r["metric"]): r["value"] for r in data["rows"]}
    assert rows[("sfno/train", "steps")] >= 1
    # the trained model beats predicting nothing, and refinement lowers the residual it fits
    assert rows[("sfno/test-32", "rel_l2")] < 1.0
    # refining the H^-1 residual lowers it (the criterion it minimises)
    assert rows[("sfno/refine-h-1", "residual_h-1_after")] < rows[
        ("sfno/refine-h-1", "residual_h-1_before")]
    for name in ("sfno_prediction.png", "sfno_errors.png", "sfno_refine_h-1.png"):
        assert (tmp_path / name).stat().st_size > 5_000
