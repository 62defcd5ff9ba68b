"""The command line, the demo runner, the result files and the README's commands."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from sciml_recipes.benchtools import (
    format_table,
    time_alternating,
    write_json_atomic,
    write_results,
)
from sciml_recipes.cli import main
from sciml_recipes.demo import PARTS, run_demo

ROOT = Path(__file__).resolve().parents[1]


def test_demo_unknown_part_is_a_clear_error(tmp_path, capsys):
    assert main(["demo", "no-such-part", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no-such-part" in err and "spectral" in err
    with pytest.raises(ValueError, match="unknown demo part"):
        run_demo(["nope"], tmp_path, echo=lambda s: None)


def test_demo_spectral_quick_writes_table_figure_and_results(tmp_path, capsys):
    assert main(["demo", "spectral", "--quick", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "test_rel_l2" in out and "results:" in out
    assert (tmp_path / "spectral_heat_operator.png").stat().st_size > 10_000
    data = json.loads((tmp_path / "results.json").read_text())
    rows = {r["metric"]: r["value"] for r in data["rows"]}
    # the layer learns the heat operator: far better than doing nothing (error ~1)
    assert rows["test_rel_l2"] < 0.05
    # and the learned layer transfers to a 2x finer grid
    assert rows["test_rel_l2_on_2x_grid"] < 0.05
    # both execution paths compute the same layer
    assert rows["paths_rel_diff"] < 1e-5


def test_every_demo_part_is_registered_with_a_runner():
    assert "spectral" in PARTS
    assert all(callable(f) for f in PARTS.values())


def test_results_file_has_the_shared_shape(tmp_path):
    rows = [{"case": "c", "impl": "sciml", "metric": "m", "value": 1.5}]
    p = write_results(tmp_path / "r.json", "bench", rows)
    d = json.loads(p.read_text())
    assert d["benchmark"] == "bench" and d["rows"] == rows
    assert {"cpu", "threads", "torch", "device"} <= set(d["machine"])
    with pytest.raises(ValueError, match="value"):
        write_results(tmp_path / "bad.json", "b", [{"case": "c", "impl": "i", "metric": "m",
                                                    "value": "fast"}])
    with pytest.raises(ValueError, match="lacks"):
        write_results(tmp_path / "bad.json", "b", [{"case": "c"}])
    assert not (tmp_path / "bad.json").exists()


def test_atomic_write_leaves_no_partial_file(tmp_path):
    class Boom:
        pass

    with pytest.raises(TypeError):
        write_json_atomic(tmp_path / "x.json", {"a": Boom()})
    assert list(tmp_path.iterdir()) == []


def test_time_alternating_and_table():
    calls = []
    t = time_alternating({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
                         repeats=3, warmup=1)
    assert set(t) == {"a", "b"} and all(v >= 0 for v in t.values())
    assert calls == ["a", "b"] * 4  # interleaved, warm-up included
    with pytest.raises(ValueError, match="repeats"):
        time_alternating({"a": lambda: None}, repeats=0)
    table = format_table([("x", 1.23456)], ("name", "v"))
    assert "1.23" in table and "name" in table


def _readme_command(name: str) -> str:
    text = (ROOT / "README.md").read_text()
    m = re.search(rf"<!-- {name} -->\s*```\n(.*?)\n```\s*<!-- /{name} -->", text, re.S)
    assert m, f"README.md has no {name} block"
    return m.group(1).strip()


def test_readme_commands_are_what_ci_runs():
    demo = _readme_command("demo-command")
    test = _readme_command("test-command")
    assert demo.endswith("sciml demo") and "pip install torch==2.13.0" in demo
    assert "pytest" in test and "pip install torch==2.13.0" in test
    ci = (ROOT / ".ci" / "run").read_text()
    assert "test-command" in ci and "demo-command" in ci


def test_console_script_entry_point():
    # the installed `sciml` entry point (beside this interpreter) resolves to sciml_recipes.cli:main
    script = Path(sys.executable).parent / "sciml"
    if not script.exists():
        pytest.skip(f"no console script at {script}: the package is not pip-installed here")
    out = subprocess.run([str(script), "demo", "--help"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and "spectral" in out.stdout


@pytest.mark.parametrize("bad", [["demo", "--seed", "x"]])
def test_cli_rejects_bad_arguments(bad):
    with pytest.raises(SystemExit) as e:
        main(bad)
    assert e.value.code == 2


def test_torch_threads_not_changed_by_import():
    # in a fresh interpreter: here sciml is already imported, so the import is a no-op
    code = ("import torch; torch.set_num_threads(1); before = torch.get_num_threads(); "
            "import sciml, sciml_recipes.cli, sciml.solvers.linear, sciml.pdes, sciml.operators; "
            "assert torch.get_num_threads() == before == 1, torch.get_num_threads()")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
