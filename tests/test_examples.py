"""Every gallery script in examples/ runs to the end and writes its figure.

Each script runs in a fresh interpreter in a temporary folder (its ``examples_out/``
goes there), with the Agg backend, as a user would run it: ``python examples/NAME.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.py"))


def test_there_are_examples() -> None:
    assert len(EXAMPLES) >= 9, [p.name for p in EXAMPLES]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_runs_and_writes_its_figure(path: Path, tmp_path: Path) -> None:
    env = {**os.environ, "MPLBACKEND": "Agg"}
    proc = subprocess.run([sys.executable, str(path)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-4000:]
    figure = tmp_path / "examples_out" / f"{path.stem}.png"
    assert figure.exists() and figure.stat().st_size > 0, proc.stdout[-2000:]
    assert [p.name for p in tmp_path.glob("examples_out/*")] == [figure.name]
