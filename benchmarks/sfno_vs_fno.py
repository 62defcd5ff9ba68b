"""SFNO + Spectral-Refiner (sciml) against neuraloperator's FNO on the FNO Navier-Stokes data.

One process, one data set, one Trainer: both models are trained on the same windows with
the same loss, optimiser and schedule for the same wall-clock budget, then evaluated on
held-out trajectories (true relative L2 of the vorticity and the H^-1 norm of the
Navier-Stokes residual). The SFNO is then refined per trajectory (H^-1 residual, the
paper's, and L2), and the 64^2-trained models are evaluated zero-shot at 128^2 against
solver data at 128^2, before and after refinement. Also times one training step of
sciml's plain ``FNO`` configured exactly like neuraloperator's (alternating runs,
medians).

Data: ``sciml generate ns2d --preset fno --resolution 128 --solver-resolution 256`` (the
solve at 256^2, stored at 128^2; the models train at 64^2 on every second point, which
are exactly the points a 64^2 file of the same solve would hold).

    python benchmarks/sfno_vs_fno.py --data ns_fno_128.h5 --budget 600
    python benchmarks/sfno_vs_fno.py --quick        # smoke test on a tiny generated file

Writes benchmarks/results/sfno_vs_fno.json (results/gpu/ with --device cuda) and
sfno_vs_fno.png.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from sciml._malloc import tune_malloc
from sciml.data import generate_ns2d
from sciml.operators import FNO, SFNO, NSResidualLoss, RelativeLpLoss, SpectralRefiner, relative_lp
from sciml.train import TrainConfig, Trainer
from sciml_recipes.benchtools import format_table, import_peer, time_alternating, write_results
from sciml_recipes.sfno.pipeline import NSData, evaluate_model, refine_model, summary


class FramesToFNO3d(nn.Module):
    """The FNO-3D of Li et al. on frame sequences: ``(B, T_in, n, n) -> (B, T_out, n, n)``.

    The input frames become channels, repeated over the output time grid, and a 3D FNO
    over (x, y, t) maps them to one channel there.
    """

    def __init__(self, net: nn.Module, out_steps: int) -> None:
        super().__init__()
        self.net = net
        self.out_steps = out_steps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, nx, ny = x.shape
        y = self.net(x.unsqueeze(-1).expand(b, t, nx, ny, self.out_steps))
        return y[:, 0].permute(0, 3, 1, 2)


def neuralop_fno(width: int, modes: tuple[int, int, int], in_channels: int) -> nn.Module:
    neuralop = import_peer("neuralop")
    n_modes = (2 * modes[0], 2 * modes[1], 2 * modes[2] - 1)
    return neuralop.models.FNO(n_modes=n_modes, in_channels=in_channels, out_channels=1,
                               hidden_channels=width, n_layers=4)


def n_params(m: nn.Module) -> int:
    return sum(p.numel() * (2 if p.is_complex() else 1) for p in m.parameters())


def step_fn(model: nn.Module, x: torch.Tensor, y: torch.Tensor):
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    loss = RelativeLpLoss()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss(model(x), y).backward()
        opt.step()
    return step


def residual_h1(ds, pred: torch.Tensor) -> list[float]:
    ns = ds.equation(dtype=torch.float64)
    res = NSResidualLoss(ns, ds.frame_dt, s=-1.0, mean=ds.mean, std=ds.std)
    return res.per_sample(pred.double()).tolist()


@torch.no_grad()
def predict(model: nn.Module, ds, idx) -> tuple[torch.Tensor, torch.Tensor]:
    items = [ds[i] for i in idx]
    x = torch.stack([a for a, _ in items])
    y = torch.stack([b for _, b in items])
    dev = next(model.parameters()).device
    out = torch.cat([model(x[i:i + 4].to(dev)).cpu() for i in range(0, len(x), 4)])
    return out, y


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=None, help="HDF5 file stored at 128^2 (see above)")
    ap.add_argument("--budget", type=float, default=600.0, help="training seconds per model")
    ap.add_argument("--test-samples", type=int, default=16)
    ap.add_argument("--lr", type=float, default=3e-3, help="OneCycle peak, both models")
    ap.add_argument("--refine-steps", type=int, default=100)
    ap.add_argument("--refine-windows", type=int, default=16)
    ap.add_argument("--sr-windows", type=int, default=4)
    ap.add_argument("--quick", action="store_true", help="tiny data and budget (smoke test)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--work", default=None, help="folder for checkpoints (default: a temp dir)")
    args = ap.parse_args()
    tune_malloc()
    torch.manual_seed(0)
    tmp = tempfile.TemporaryDirectory()
    work = Path(args.work or tmp.name)
    if args.quick:
        args.budget, args.test_samples, args.refine_steps = 8.0, 2, 3
        args.refine_windows, args.sr_windows = 2, 1
        if args.data is None:
            args.data = str(generate_ns2d(
                work / "tiny.h5", preset="fno", samples=6, resolution=64,
                solver_resolution=64, t_start=0.0, t_end=2.0, snapshots=24, progress=False))
    if args.data is None:
        ap.error("--data is required (or --quick)")
    dev = args.device
    t_in, t_out = 5, 10
    data = NSData(args.data, input_steps=t_in, output_steps=t_out, stride=4, test_stride=40,
                  subsample=2, test_samples=args.test_samples)
    train, test = data.dataset("train"), data.dataset("test")
    test_fine = data.dataset("test", subsample=1)
    n = train.resolution
    print(f"data: {len(train.samples)} train trajectories ({len(train)} windows), "
          f"{len(test.samples)} test ({len(test)} windows) at {n}^2; "
          f"{data.input_steps} frames in -> {data.output_steps} out")
    # temporal modes: 3 is all the 5 input frames hold (the SFNO's hidden layers live on
    # the input time grid); neuraloperator's FNO gets the same modes on its output grid
    modes = (min(12, n // 4), min(12, n // 4), 3)
    width = 20

    # -- one training step: sciml FNO (neuraloperator's configuration) vs neuraloperator
    xb = torch.randn(4, t_in, n, n, t_out, device=dev)
    yb = torch.randn(4, 1, n, n, t_out, device=dev)
    ours_fno = FNO(t_in, 1, width, modes).to(dev)
    their_fno = neuralop_fno(width, modes, t_in).to(dev)
    sfno = SFNO(modes[:2], modes[2], width, out_steps=t_out).to(dev)
    xs, ys = xb[..., 0], yb[:, 0].permute(0, 3, 1, 2)
    t = time_alternating({
        "sciml-fno": step_fn(ours_fno, xb, yb), "neuraloperator-fno": step_fn(their_fno, xb, yb),
        "sciml-sfno": step_fn(sfno, xs, ys)},
        repeats=3 if args.quick else 15, warmup=2, device=dev)
    case = f"test-{n}"
    rows: list[dict] = []
    for key, impl, method, model in (("sciml-fno", "sciml", "fno", ours_fno),
                                     ("neuraloperator-fno", "neuraloperator", "fno", their_fno),
                                     ("sciml-sfno", "sciml", "sfno", sfno)):
        rows.append({"case": case, "impl": impl, "method": method, "metric": "step_ms",
                     "value": t[key]})
        rows.append({"case": case, "impl": impl, "method": method, "metric": "parameters",
                     "value": n_params(model)})
    speedup = t["neuraloperator-fno"] / t["sciml-fno"]
    print(format_table([(k, v) for k, v in t.items()], ["training step (batch 4)", "ms"]))
    print(f"sciml FNO step is {speedup:.2f}x faster than neuraloperator's (same configuration)")
    rows.append({"case": case, "impl": "sciml", "method": "fno", "metric": "step_speedup",
                 "value": speedup})

    # -- training, same budget, same Trainer
    torch.manual_seed(0)
    models = {"sfno": (SFNO(modes[:2], modes[2], width, out_steps=t_out), "sciml",
                       t["sciml-sfno"]),
              "fno": (FramesToFNO3d(neuralop_fno(width, modes, t_in), t_out), "neuraloperator",
                      t["neuraloperator-fno"])}
    curves = {}
    trained = {}
    for name, (model, impl, ms) in models.items():
        # the OneCycle schedule spans the steps the budget should hold (the model's step
        # plus about 60 ms of reading a batch); the budget stops the run in any case
        steps = max(1, int(0.95 * args.budget / (ms / 1e3 + 0.06)))
        cfg = TrainConfig(epochs=10_000, lr=args.lr, batch_size=4, schedule="onecycle",
                          max_steps=steps, time_budget=args.budget, seed=0,
                          eval_every=1, progress=not args.quick)
        trainer = Trainer(model, RelativeLpLoss(), cfg, out_dir=work / name,
                          metrics={"rel_l2": relative_lp}, device=dev)
        t0 = time.perf_counter()
        result = trainer.fit(train, test)
        wall = time.perf_counter() - t0
        curves[name] = [(h["elapsed"], h.get("eval_rel_l2", math.nan)) for h in result.history]
        trained[name] = trainer.model.eval()
        print(f"{name} ({impl}): {result.global_step} steps in {result.elapsed:.0f} s of "
              f"training ({wall:.0f} s with evaluation), stopped by {result.stopped}")
        rows.append({"case": case, "impl": impl, "method": name, "metric": "train_steps",
                     "value": result.global_step})
        rows.append({"case": case, "impl": impl, "method": name, "metric": "train_s",
                     "value": result.elapsed})

    # -- held-out errors at 64^2 and zero-shot at 128^2
    table = []
    for res_case, ds in ((case, test), (f"test-{test_fine.resolution}", test_fine)):
        for name, (_, impl, _) in models.items():
            ev = evaluate_model(trained[name], ds, device=dev)
            pred, _ = predict(trained[name], ds, range(len(ds)))
            r = float(np.mean(residual_h1(ds, pred)))
            rows += [{"case": res_case, "impl": impl, "method": name, "metric": "rel_l2",
                      "value": ev["rel_l2"]},
                     {"case": res_case, "impl": impl, "method": name, "metric": "rel_h1",
                      "value": ev["rel_h1"]},
                     {"case": res_case, "impl": impl, "method": name, "metric": "residual_h-1",
                      "value": r}]
            table.append((res_case, impl, name, ev["rel_l2"], ev["rel_h1"], r))
        _, y = predict(trained["sfno"], ds, range(len(ds)))
        truth = float(np.mean(residual_h1(ds, y)))
        rows.append({"case": res_case, "impl": "solver-data", "metric": "residual_h-1",
                     "value": truth})
        table.append((res_case, "solver data", "-", 0.0, 0.0, truth))
    print(format_table(table, ["case", "impl", "method", "rel_l2", "rel_h1", "residual_h-1"]))

    # -- Spectral-Refiner on held-out trajectories (one window per trajectory)
    per_traj = test.windows_per_sample
    refine_rows = {}
    for res_case, ds, count, norms in ((case, test, args.refine_windows, ("h-1", "l2")),
                                       (f"test-{test_fine.resolution}", test_fine,
                                        args.sr_windows, ("h-1", "l2"))):
        idx = list(range(0, len(ds), per_traj))[:count]
        for norm in norms:
            refiner = SpectralRefiner(steps=args.refine_steps, lr=1e-3, batch_size=2,
                                      progress=not args.quick)
            t0 = time.perf_counter()
            out = refine_model(trained["sfno"], ds, refiner, norm=norm, windows=idx, device=dev)
            secs = time.perf_counter() - t0
            s = summary(out)
            refine_rows[(res_case, norm)] = out
            method = "sfno+refiner" if norm == "h-1" else "sfno+refiner-l2"
            for metric, key in (("rel_l2", "rel_l2_after"), ("residual_h-1", "residual_h-1_after"),
                                ("rel_l2_before", "rel_l2_before"),
                                ("residual_h-1_before", "residual_h-1_before"),
                                ("truth_residual_h-1", "truth_residual_h-1")):
                rows.append({"case": res_case, "impl": "sciml", "method": method,
                             "metric": metric, "value": s[key]})
            improved = sum(a < b for a, b in zip(out["rel_l2_after"], out["rel_l2_before"]))
            rows += [{"case": res_case, "impl": "sciml", "method": method,
                      "metric": "refine_s_per_trajectory", "value": secs / len(idx)},
                     {"case": res_case, "impl": "sciml", "method": method,
                      "metric": "trajectories_improved", "value": improved},
                     {"case": res_case, "impl": "sciml", "method": method,
                      "metric": "trajectories", "value": len(idx)}]
            cut = 100 * (1 - s["rel_l2_after"] / s["rel_l2_before"])
            print(f"{res_case} refine ({norm}, {len(idx)} trajectories, {args.refine_steps} "
                  f"steps, {secs / len(idx):.1f} s each): true rel L2 {s['rel_l2_before']:.4g} "
                  f"-> {s['rel_l2_after']:.4g} ({cut:.0f}% lower, "
                  f"{improved}/{len(idx)} improved); H^-1 residual "
                  f"{s['residual_h-1_before']:.3g} -> {s['residual_h-1_after']:.3g} "
                  f"(solver data {s['truth_residual_h-1']:.3g})")

    sub = "gpu" if torch.device(dev).type == "cuda" else ""
    name = "sfno_vs_fno.json" if not args.quick else "sfno_vs_fno_quick.json"
    out_dir = Path(__file__).parent / "results" / sub
    path = write_results(out_dir / name, "sfno_vs_fno", rows, device=dev, extra={
        "settings": {"budget_s": args.budget, "lr": args.lr, "width": width,
                     "modes": list(modes), "train_trajectories": len(train.samples),
                     "train_windows": len(train), "test_trajectories": len(test.samples),
                     "data": Path(args.data).name, "refine_steps": args.refine_steps,
                     "refine_lr": 1e-3},
        "curves": curves})
    print(f"wrote {path}")
    if not args.quick:
        plot(curves, refine_rows, out_dir / "sfno_vs_fno.png")


def plot(curves, refine_rows, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for name, pts in curves.items():
        if pts:
            xs, ys = zip(*pts)
            a.semilogy(xs, ys, "o-", label={"sfno": "SFNO (sciml)",
                                            "fno": "FNO (neuraloperator)"}[name])
    a.set_xlabel("training seconds")
    a.set_ylabel("test relative L2")
    a.legend()
    a.set_title("same data, same budget")
    labels, before, after = [], [], []
    for (case, norm), out in refine_rows.items():
        labels.append(f"{case}\n{norm}")
        before.append(np.mean(out["rel_l2_before"]))
        after.append(np.mean(out["rel_l2_after"]))
    x = np.arange(len(labels))
    b.bar(x - 0.2, before, 0.4, label="SFNO")
    b.bar(x + 0.2, after, 0.4, label="SFNO + refiner")
    b.set_xticks(x, labels)
    b.set_ylabel("true relative L2")
    b.legend()
    b.set_title("Spectral-Refiner (residual only)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
