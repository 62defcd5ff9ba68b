"""Spectral convolution: sciml vs neuraloperator, with the FFT floor and the roofline.

Runs both layers in one process on the same inputs (float32, CPU), interleaving the
runs, and reports medians of forward and forward+backward. Also times the FFT floor
(one rfftn + one irfftn of the same tensors) and prints the roofline bound: bytes that
must move (input read once, output written once, weights) over the measured memory
bandwidth, and the pruned transform's flops over the measured matmul throughput.

    python benchmarks/spectral_conv.py            # full (>= 10 timed runs each)
    python benchmarks/spectral_conv.py --quick    # smoke test

Writes benchmarks/results/spectral_conv.json (or results/gpu/ with --device cuda).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

from sciml.spectral import SpectralConv
from sciml.spectral._paths import best_order, choose_method, dft_flops
from sciml_recipes.benchtools import (
    format_table,
    measure_bandwidth,
    measure_matmul,
    time_alternating,
    write_results,
)

# (case, batch, channels, grid, neuraloperator n_modes); sciml's per-sign modes are
# n/2 on full axes and n//2 + 1 on the halved axis (the same kept frequencies)
CASES = [
    ("2d", 16, 32, (64, 64), (16, 16)),
    ("3d", 4, 20, (64, 64, 16), (12, 12, 6)),
]


def sciml_modes(n_modes: tuple[int, ...]) -> tuple[int, ...]:
    return (*(m // 2 for m in n_modes[:-1]), n_modes[-1] // 2 + 1)


def pruned_flops(batch: int, ch: int, grid, modes) -> tuple[int, int]:
    """Real flops of the pruned layer: (forward, forward + backward)."""
    d = len(grid)
    kept = tuple(2 * m if i < d - 1 else m for i, m in enumerate(modes))
    lead = batch * ch
    o_f, _ = best_order(lead, grid, kept, True)
    o_i, _ = best_order(lead, grid, kept, False)
    transforms = dft_flops(lead, grid, kept, o_f, True) + dft_flops(lead, grid, kept, o_i, False)
    mix = 8 * math.prod(kept) * batch * ch * ch
    # backward: the adjoint transforms (same sizes) and two products per mode (dx, dW)
    return transforms + mix, 2 * transforms + 3 * mix


def run_case(case, batch, ch, grid, n_modes, device, repeats, neuralop_conv, bw, mm):
    """Time every implementation on one configuration; return result rows and table rows."""
    d = len(grid)
    modes = sciml_modes(n_modes)
    x = torch.randn(batch, ch, *grid, device=device)
    xg = x.clone().requires_grad_()
    impls = {"sciml": SpectralConv(ch, ch, modes).to(device)}
    for m in ("fft", "dft"):
        impls[f"sciml[{m}]"] = SpectralConv(ch, ch, modes, method=m).to(device)
    if neuralop_conv is not None:
        impls["neuraloperator"] = neuralop_conv(ch, ch, n_modes).to(device)
    dims = tuple(range(-d, 0))
    spec = torch.fft.rfftn(x, dim=dims)

    def fwd(layer):
        def f():
            with torch.no_grad():
                layer(x)
        return f

    def fwd_bwd(layer):
        def f():
            layer(xg).sum().backward()
        return f

    fns = {}
    for name, layer in impls.items():
        fns[(name, "fwd_ms")] = fwd(layer)
        fns[(name, "fwd_bwd_ms")] = fwd_bwd(layer)
    fns[("floor", "fft_ms")] = lambda: torch.fft.irfftn(
        torch.fft.rfftn(x, dim=dims), s=grid, dim=dims)
    fns[("floor", "rfftn_ms")] = lambda: torch.fft.rfftn(x, dim=dims)
    fns[("floor", "irfftn_ms")] = lambda: torch.fft.irfftn(spec, s=grid, dim=dims)
    t = time_alternating(fns, repeats=repeats, warmup=3, device=device)

    rows: list[dict] = []
    kept = impls["sciml"].kept
    if bw and mm:
        bytes_fwd = 4 * (x.numel() * 2 + 2 * ch * ch * math.prod(kept))
        fl_f, fl_fb = pruned_flops(batch, ch, grid, modes)
        roof_f = max(bytes_fwd / bw, fl_f / mm) * 1e3
        roof_fb = max(2 * bytes_fwd / bw, fl_fb / mm) * 1e3
        rows += [{"case": case, "impl": "floor", "metric": "roofline_ms", "value": roof_f},
                 {"case": case, "impl": "floor", "metric": "roofline_fwd_bwd_ms",
                  "value": roof_fb}]
        rule = (choose_method(device, batch * ch, grid, kept, True),
                choose_method(device, batch * ch, grid, kept, False))
        print(f"{case}: roofline fwd {roof_f:.2f} ms (bytes {bytes_fwd / bw * 1e3:.2f} ms, "
              f"pruned flops {fl_f / 1e6:.0f} M -> {fl_f / mm * 1e3:.2f} ms); fwd+bwd "
              f"{roof_fb:.2f} ms; the rule picks {rule[0]} (analysis) / {rule[1]} (synthesis)")
    for (impl, metric), v in t.items():
        row = {"case": case, "impl": impl.split("[")[0], "metric": metric, "value": v}
        if "[" in impl:
            row["method"] = impl[impl.index("[") + 1 : -1] + "-path"
        rows.append(row)
    floor = t[("floor", "fft_ms")]
    table = []
    for name in impls:
        f, fb = t[(name, "fwd_ms")], t[(name, "fwd_bwd_ms")]
        table.append((case, name, f, fb, f / floor, fb / (2 * floor)))
    table.append((case, "floor: rfftn+irfftn", floor, 2 * floor, 1.0, 1.0))
    if neuralop_conv is not None:
        speed = t[("neuraloperator", "fwd_bwd_ms")] / t[("sciml", "fwd_bwd_ms")]
        table.append((case, "fwd+bwd speed-up vs neuraloperator", "", speed, "", ""))
    return rows, table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats (CI smoke test)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--repeats", type=int, default=None)
    args = ap.parse_args()
    device = torch.device(args.device)
    repeats = args.repeats or (3 if args.quick else 15)
    try:
        from neuralop.layers.spectral_convolution import SpectralConv as NeuralopConv
    except ImportError:
        NeuralopConv = None
        print("neuraloperator is not installed (pip install -e '.[bench]'): sciml only")

    bw = measure_bandwidth() if device.type == "cpu" else None
    mm = measure_matmul() if device.type == "cpu" else None
    if bw and mm:
        print(f"measured: memory bandwidth {bw / 1e9:.1f} GB/s, sgemm {mm / 1e9:.0f} GFLOP/s")
    rows, table = [], []
    torch.manual_seed(0)
    for case, batch, ch, grid, n_modes in CASES:
        r, tb = run_case(case, batch, ch, grid, n_modes, device, repeats, NeuralopConv, bw, mm)
        rows += r
        table += tb

    print(format_table(table, ("case", "impl", "fwd ms", "fwd+bwd ms", "fwd/floor",
                               "fwd+bwd/(2 floor)")))
    sub = "gpu/" if device.type == "cuda" else ""
    name = "spectral_conv_quick.json" if args.quick else "spectral_conv.json"
    path = write_results(Path(__file__).parent / "results" / sub / name, "spectral_conv",
                         rows, device=device,
                         extra={"repeats": repeats, "dtype": "float32"})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
