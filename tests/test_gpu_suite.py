"""The GPU suite's dry run: every timed step at toy sizes under simulated CUDA.

The gpu-marked tests (the suite's first step) already run under simulated CUDA in the
default test run (tests/conftest.py), so the dry run here covers the timed steps and the
driver: per-step processes, result files in the shared shape, the summary.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STEPS = ["spectral", "navier_stokes", "ot", "poisson", "train_step"]


def test_gpu_suite_dry_run(tmp_path):
    out = tmp_path / "gpu"
    run = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_suite.py"), "--dry-run", "--out",
         str(out), "--only", *STEPS], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dry_run"] is True
    assert [s["step"] for s in summary["steps"]] == STEPS
    assert all(s["status"] == "ok" for s in summary["steps"]), summary
    for step in STEPS:
        res = json.loads((out / f"{step}.json").read_text())
        assert res["benchmark"] == f"gpu_{step}" and res["rows"], step
        assert res["machine"]["device"] == "cuda"  # it ran the CUDA path (simulated)
        for row in res["rows"]:
            assert {"case", "impl", "metric", "value"} <= set(row)
