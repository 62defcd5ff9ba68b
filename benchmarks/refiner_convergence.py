"""How far the Spectral-Refiner is from converged: true error and residual against steps.

A diagnostic beside ``sfno_vs_fno.py``: it reloads the SFNO that script trained (``--work``
of that run) and refines the first window of a few held-out trajectories for more steps
and at other learning rates, reporting the true relative L2 error and the H^-1 residual
after each setting. It explains the benchmark's number; it does not replace it (the
benchmark keeps the paper's 100 steps at lr 1e-3).

    python benchmarks/sfno_vs_fno.py --data ns_fno_128.h5 --work runs
    python benchmarks/refiner_convergence.py --data ns_fno_128.h5 --work runs

Writes benchmarks/results/refiner_convergence.json.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from sciml._malloc import tune_malloc
from sciml.operators import SFNO, SpectralRefiner
from sciml.train import load_model_state
from sciml_recipes.benchtools import format_table, write_results
from sciml_recipes.sfno.pipeline import NSData, refine_model, summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--work", required=True, help="the --work folder of sfno_vs_fno.py")
    ap.add_argument("--trajectories", type=int, default=4)
    args = ap.parse_args()
    tune_malloc()
    data = NSData(args.data, input_steps=5, output_steps=10, stride=4, test_stride=40,
                  subsample=2, test_samples=16)
    test = data.dataset("test")
    model = load_model_state(SFNO(12, 3, 20, out_steps=10), Path(args.work) / "sfno" / "model.pt")
    idx = list(range(0, len(test), test.windows_per_sample))[:args.trajectories]
    rows, table = [], []
    for norm in ("h-1", "l2"):
        for steps, lr in ((100, 1e-3), (400, 1e-3), (100, 4e-3), (400, 4e-3)):
            t0 = time.perf_counter()
            out = refine_model(model, test, SpectralRefiner(steps=steps, lr=lr, batch_size=2,
                                                            progress=False),
                               norm=norm, windows=idx)
            secs = time.perf_counter() - t0
            s = summary(out)
            case = f"{norm}-steps{steps}-lr{lr:g}"
            for metric in ("rel_l2_before", "rel_l2_after", "residual_h-1_before",
                           "residual_h-1_after", "truth_residual_h-1"):
                rows.append({"case": case, "impl": "sciml", "method": "sfno+refiner",
                             "metric": metric, "value": s[metric]})
            table.append((norm, steps, lr, s["rel_l2_before"], s["rel_l2_after"],
                          s["residual_h-1_after"], secs / len(idx)))
            print(format_table(table[-1:], ["norm", "steps", "lr", "rel_l2 before",
                                            "after", "H^-1 residual after", "s/trajectory"]))
    print(format_table(table, ["norm", "steps", "lr", "rel_l2 before", "after",
                               "H^-1 residual after", "s/trajectory"]))
    path = write_results(Path(__file__).parent / "results" / "refiner_convergence.json",
                         "refiner_convergence", rows,
                         extra={"trajectories": len(idx), "windows": idx})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
