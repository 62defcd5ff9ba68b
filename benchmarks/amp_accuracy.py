"""Mixed precision and accuracy: the demo's two operator problems in fp32, bf16 and fp16.

Each problem is trained through the library's ``Trainer`` three times from the same
initial weights with the same seed and the same number of steps, once per
``TrainConfig.amp`` setting (``None``: float32; ``"bf16"``: autocast to bfloat16;
``"fp16"``: autocast to float16 with a GradScaler), and the held-out relative L2 error of
each is reported twice: with the trained weights evaluated in float32 (``rel_l2``: what the
training precision did to the weights) and evaluated under the run's own autocast
(``rel_l2_amp_eval``: mixed precision end to end). The problems and their settings are
those of ``sciml demo``:

* ``heat``: one single-channel ``SpectralConv`` (12 x 12 modes) learns the heat semigroup
  ``exp(t lap)``, ``t = 2e-3``, on 64^2 Gaussian random fields (64 to train on, 32 held
  out), full-batch Adam at lr 5e-2 with the one-cycle schedule, relative MSE loss; the error
  is the relative L2 norm over the whole test set (demo part ``spectral``);
* ``ns``: the SFNO (8 modes, 3 in time, width 12, 4 layers) on FNO-forcing Navier-Stokes
  trajectories solved at 64^2 and stored at 32^2, 5 frames in and 10 out, batch 4, lr 5e-3,
  relative L2 loss; the error is that of ``evaluate_model`` on the held-out trajectories
  (demo part ``sfno``, which trains for a time budget rather than a step count).

    python benchmarks/amp_accuracy.py                 # CPU, the demo's full sizes
    python benchmarks/amp_accuracy.py --device cuda
    python benchmarks/amp_accuracy.py --quick         # smoke test (< 60 s on a CPU):
                                                      # fewer steps, smaller NS data

Writes benchmarks/results/amp_accuracy.json (``amp_accuracy_quick.json`` with --quick).
Accuracy only: nothing is timed (CPU autocast says nothing about GPU speed).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import tempfile
from pathlib import Path

import torch
from torch.utils.data import TensorDataset

from sciml.data import generate_ns2d
from sciml.operators import SFNO
from sciml.spectral import SpectralConv, wavenumbers
from sciml.train import TrainConfig, Trainer
from sciml.utils import check_device
from sciml_recipes.benchtools import format_table, write_results
from sciml_recipes.sfno.pipeline import NSData, evaluate_model, train_sfno

METHODS = {"fp32": None, "bf16": "bf16", "fp16": "fp16"}
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(method: str, device: torch.device) -> contextlib.AbstractContextManager:
    """The autocast a run with ``method`` trains under (nothing for fp32)."""
    if method == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=DTYPES[method])


# -------------------------------------------------------------------------- heat


def random_fields(n: int, count: int, generator: torch.Generator) -> torch.Tensor:
    """``(count, 1, n, n)`` float32 fields with spectrum ``(1 + |k|^2 / 4 pi^2)^-2``, unit std
    (the demo's inputs)."""
    kx, ky = wavenumbers((n, n), (1.0, 1.0), real=False)
    amp = (1.0 + (kx**2 + ky**2) / (2 * math.pi) ** 2) ** -1.0
    noise = torch.randn(count, n, n, generator=generator, dtype=torch.float64)
    f = torch.fft.ifft2(torch.fft.fft2(noise) * amp).real
    return (f / f.std(dim=(-2, -1), keepdim=True)).float().unsqueeze(1)


def heat(u0: torch.Tensor, t: float) -> torch.Tensor:
    """The exact heat semigroup ``exp(t lap) u0`` on the unit torus (spectral, float64)."""
    n = u0.shape[-1]
    kx, ky = wavenumbers((n, n), (1.0, 1.0), dtype=torch.float64)
    uh = torch.fft.rfft2(u0.double()) * torch.exp(-t * (kx**2 + ky**2))
    return torch.fft.irfft2(uh, s=(n, n)).to(u0.dtype)


def relative_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The demo's loss: mean squared error over the target's mean square."""
    return ((pred - target) ** 2).mean() / (target**2).mean()


def run_heat(methods: list[str], *, steps: int, seed: int, device: torch.device
             ) -> list[dict]:
    gen = torch.Generator().manual_seed(seed)
    n, modes, t = 64, 12, 2e-3
    train_x, test_x = random_fields(n, 64, gen), random_fields(n, 32, gen)
    train = TensorDataset(train_x, heat(train_x, t))
    test_y = heat(test_x, t)
    rows = []
    for method in methods:
        torch.manual_seed(seed)  # the same initial weights for every precision
        layer = SpectralConv(1, 1, (modes, modes), bias=False)
        # full batch: one optimiser step per epoch, as the demo's loop
        config = TrainConfig(epochs=steps, lr=5e-2, batch_size=len(train), seed=seed,
                             progress=False, amp=METHODS[method])
        trainer = Trainer(layer, relative_mse, config, device=device)
        result = trainer.fit(train)
        errors = []
        for ctx in (contextlib.nullcontext(), autocast(method, device)):
            with torch.no_grad(), ctx:
                pred = trainer.model(test_x.to(device)).float().cpu()
            errors.append(float((pred - test_y).norm() / test_y.norm()))
        rows += _rows("heat", method, result, *errors)
    return rows


# ---------------------------------------------------------------------------- ns


def run_ns(methods: list[str], *, quick: bool, steps: int, seed: int, device: torch.device,
           work: Path) -> list[dict]:
    # the demo's data; --quick: fewer, shorter trajectories, solved at 32^2, stored at 16^2
    samples = 6 if quick else 32
    path = generate_ns2d(
        work / "ns.h5", preset="fno", samples=samples, resolution=16 if quick else 32,
        solver_resolution=32 if quick else 64, seed=seed, batch_size=samples,
        dtype="float32", t_start=1.0 if quick else 30.0, t_end=3.0 if quick else 36.0,
        snapshots=16 if quick else 31, progress=False, device=device)
    data = NSData(str(path), input_steps=5, output_steps=10, stride=2, test_stride=16,
                  test_samples=2 if quick else 4)
    test = data.dataset("test")
    rows = []
    try:
        for method in methods:
            torch.manual_seed(seed)
            model = SFNO(8, 3, 12, layers=4, out_steps=10)
            config = TrainConfig(epochs=10_000, max_steps=steps, lr=5e-3, batch_size=4,
                                 seed=seed, progress=False, eval_every=10_000,
                                 amp=METHODS[method])
            model, result = train_sfno(data, work / f"run-{method}", config, model=model,
                                       device=device)
            fp32 = evaluate_model(model, test, device=device)["rel_l2"]
            with autocast(method, device):
                amp = evaluate_model(model, test, device=device)["rel_l2"]
            rows += _rows("ns", method, result, float(fp32), float(amp))
    finally:
        test.close()
    return rows


def _rows(case: str, method: str, result, rel_l2: float, rel_l2_amp: float) -> list[dict]:
    last = result.history[-1]["train_loss"]
    return [{"case": case, "impl": "sciml", "method": method, "metric": metric,
             "value": value}
            for metric, value in (("rel_l2", rel_l2), ("rel_l2_amp_eval", rel_l2_amp),
                                  ("train_loss", float(last)),
                                  ("steps", result.global_step))]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="the demo's quick sizes and few steps (smoke test)")
    ap.add_argument("--device", default="cpu", help="where to train (cpu, cuda)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS))
    ap.add_argument("--out", type=Path, default=None,
                    help="result file (default benchmarks/results/amp_accuracy[_quick].json)")
    args = ap.parse_args(argv)
    device = check_device(args.device, "--device", resolve=True)
    heat_steps = 40 if args.quick else 400
    ns_steps = 10 if args.quick else 300
    rows = run_heat(args.methods, steps=heat_steps, seed=args.seed, device=device)
    with tempfile.TemporaryDirectory() as tmp:
        rows += run_ns(args.methods, quick=args.quick, steps=ns_steps, seed=args.seed,
                       device=device, work=Path(tmp))
    table = [(r["case"], r["method"], r["value"],
              next(s["value"] for s in rows if s["case"] == r["case"]
                   and s["method"] == r["method"] and s["metric"] == "rel_l2_amp_eval"))
             for r in rows if r["metric"] == "rel_l2"]
    print(format_table(table, ["case", "training", "rel_l2 (fp32 eval)",
                               "rel_l2 (eval as trained)"]))
    name = "amp_accuracy_quick.json" if args.quick else "amp_accuracy.json"
    out = args.out or Path(__file__).parent / "results" / name
    path = write_results(out, "amp_accuracy", rows, device=device, extra={"settings": {
        "quick": args.quick, "seed": args.seed, "heat_steps": heat_steps,
        "ns_steps": ns_steps}})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
