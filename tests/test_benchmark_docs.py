"""benchmarks/README.md is generated from benchmarks/results/*.json and must match them."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "make_readme.py"


@pytest.fixture(scope="module")
def make_readme():
    spec = importlib.util.spec_from_file_location("make_readme", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["make_readme"] = mod
    spec.loader.exec_module(mod)
    yield mod
    sys.modules.pop("make_readme", None)


def test_benchmarks_readme_matches_results(make_readme, capsys):
    rc = make_readme.main(["--check"])
    assert rc == 0, ("benchmarks/README.md disagrees with benchmarks/results/*.json; run "
                     "python benchmarks/make_readme.py\n" + capsys.readouterr().err)


def test_every_result_file_has_a_section(make_readme):
    # --quick smoke runs write <name>_quick.json (not tracked, not tabulated)
    names = {p.stem for p in (ROOT / "benchmarks" / "results").glob("*.json")
             if not p.stem.endswith("_quick")}
    assert names <= set(make_readme.SECTIONS)
    text = (ROOT / "benchmarks" / "README.md").read_text()
    for name in names:
        assert f"`results/{name}.json`" in text


@pytest.mark.parametrize("name, case, metric", [
    ("hard_constraints", "diffusion-sorption", "rel_l2"),   # a number in a sentence
    ("spectral_conv", "2d", "irfftn_ms"),                    # a number in a table only
])
def test_check_fails_when_a_result_changes(make_readme, tmp_path, capsys, name, case,
                                           metric):
    results = tmp_path / "results"
    shutil.copytree(ROOT / "benchmarks" / "results", results,
                    ignore=shutil.ignore_patterns("*.png"))
    path = results / f"{name}.json"
    data = json.loads(path.read_text())
    row = next(r for r in data["rows"] if r["case"] == case and r["metric"] == metric)
    row["value"] *= 1.37
    path.write_text(json.dumps(data))
    rc = make_readme.main(["--check", "--results", str(results),
                           "--readme", str(ROOT / "benchmarks" / "README.md")])
    assert rc == 1
    assert "stale" in capsys.readouterr().err


def test_sentences_refuse_a_missing_row(make_readme):
    r = make_readme.Results({"benchmark": "x", "rows": [
        {"case": "a", "impl": "sciml", "metric": "m", "value": 1.0}]})
    assert r.v("a", "m") == 1.0
    with pytest.raises(KeyError, match="0 rows"):
        r.v("a", "other")
