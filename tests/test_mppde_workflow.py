"""MP-PDE / FNO training, scoring and the end-to-end benchmark run on tiny settings."""

from __future__ import annotations

import json
import math

import pytest
import torch

from sciml.data.burgers import BurgersDataset, generate_burgers
from sciml.spectral import cell_average_resample
from sciml.train.rollout import Pushforward
from sciml_recipes.mppde.pipeline import (
    build_stepper,
    load_stepper,
    rollout_error,
    train_stepper,
    weno5_error,
)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("burgers")
    kw = {"family": "E1", "convention": "conservative", "resolutions": (200, 40),
          "progress": False}
    train = generate_burgers(root / "train.h5", samples=12, seed=0, **kw)
    test = generate_burgers(root / "test.h5", samples=4, seed=99, **kw)
    return BurgersDataset(train, 40), BurgersDataset(test, 40)


def test_cell_average_resample_is_exact_for_a_sine() -> None:
    L = 16.0

    def cell_avg(n, k):
        # exact cell averages of sin(2 pi k x / L) on n cells
        a = torch.arange(n, dtype=torch.float64) * L / n
        w = 2 * math.pi * k / L
        return (torch.cos(w * a) - torch.cos(w * (a + L / n))) / (w * L / n)

    for k in (1, 3, 4):  # all below the Nyquist mode of every grid
        for m, n in ((10, 40), (8, 40), (20, 50)):
            got = cell_average_resample(cell_avg(m, k)[None], n)[0]
            torch.testing.assert_close(got, cell_avg(n, k), rtol=0, atol=1e-12)


@pytest.mark.parametrize("kind", ["mppde", "fno"])
def test_training_lowers_the_one_step_loss(data, kind) -> None:
    train, _ = data
    torch.manual_seed(0)
    opts = {"hidden": 32, "layers": 2} if kind == "mppde" else {"width": 16, "layers": 2}
    model = build_stepper(kind, train, **opts)
    pf = Pushforward()
    batch = tuple(torch.stack(x) for x in zip(*(train[i] for i in range(len(train)))))

    def loss() -> float:
        model.eval()
        with torch.no_grad():
            return float(pf.loss(*pf.forward(model, batch)))

    before = loss()
    train_stepper(model, train, steps=40, lr=3e-3, batch_size=6, max_unroll=1,
                  progress=False)
    assert loss() < 0.85 * before


def test_scores_and_resume(data, tmp_path) -> None:
    train, test = data
    torch.manual_seed(0)
    model = build_stepper("mppde", train, hidden=32, layers=1)
    run = tmp_path / "run"
    # a run stopped early (here by its time budget) continues where it stopped
    res = train_stepper(model, train, steps=9, batch_size=4, out_dir=run, progress=False,
                        time_budget=1e-9)
    assert res.global_step < 9 and res.stopped == "time_budget"
    again = load_stepper(run)
    for a, b in zip(model.state_dict().values(), again.state_dict().values()):
        torch.testing.assert_close(a, b)
    more = train_stepper(again, train, steps=9, batch_size=4, out_dir=run, progress=False)
    assert more.global_step == 9
    assert torch.load(run / "model.pt", weights_only=True)["steps"] == 9
    score = rollout_error(again, test)
    assert score["samples"] == 4 and math.isfinite(score["accumulated_mse"])
    we = weno5_error(test)
    # WENO5 at the data's own grid from the label: small but not zero (the labels are
    # block averages of the nx = 200 solve)
    assert 0 < we["accumulated_mse"] < 0.5
    coarse = weno5_error(test, nx=20)
    assert coarse["accumulated_mse"] > we["accumulated_mse"]
    t0 = weno5_error(test, start="t0")
    assert math.isfinite(t0["accumulated_mse"])
    with pytest.raises(ValueError, match="divisor"):
        weno5_error(test, nx=30)
    with pytest.raises(FileNotFoundError, match=r"model\.pt"):
        load_stepper(tmp_path / "nothing")


def test_run_mppde_end_to_end_and_cli_errors(tmp_path, capsys) -> None:
    from sciml_recipes.cli import main

    out = tmp_path / "bench"
    args = ["train", "mppde", "--out", str(out), "--families", "E1", "--conventions",
            "paper", "conservative", "--nx", "40", "--train-samples", "6", "--test-samples",
            "3", "--steps", "3", "--hidden", "32", "--fno-width", "8", "--batch-size", "3",
            "--no-progress"]
    assert main(args) == 0
    blob = json.loads((out / "mppde.json").read_text())
    rows = blob["rows"]
    got = {(r["case"], r["method"], r["metric"]) for r in rows}
    for case in ("E1-nx40-paper", "E1-nx40-conservative"):
        for method in ("mppde", "fno", "weno5"):
            assert (case, method, "accumulated_mse") in got
            assert (case, method, "rollout_s") in got
    assert any(r["method"] == "weno5" and r.get("start") == "t0" for r in rows)
    # the conservative case also scores WENO5 on coarser grids
    assert {r.get("solver_nx") for r in rows if r["case"] == "E1-nx40-conservative"
            and r["method"] == "weno5"} >= {40, 20, 10}
    assert (out / "mppde_rollout.png").stat().st_size > 0
    # a rerun reuses the finished runs
    stamp = (out / "runs" / "E1-nx40-paper-mppde" / "model.pt").stat().st_mtime_ns
    assert main([*args, "--train-only"]) == 0
    assert (out / "runs" / "E1-nx40-paper-mppde" / "model.pt").stat().st_mtime_ns == stamp
    assert main(["train", "mppde", "--out", str(out), "--nx", "30"]) == 2
    assert "divide" in capsys.readouterr().err


def test_demo_mppde_quick(tmp_path) -> None:
    from sciml_recipes.demo import run_demo

    res = run_demo(["mppde"], tmp_path, quick=True, echo=lambda s: None)[0]
    values = {(r["case"], r["metric"]): r["value"] for r in res.rows}
    weno = values[("E1 nx=50 conservative weno5", "accumulated_mse")]
    assert 0 < weno < 0.5
    assert all(math.isfinite(float(v)) for v in values.values())
    assert res.figures[0].stat().st_size > 0
