#!/usr/bin/env bash
# Every GPU test and benchmark in one call, for a machine with a CUDA device
# (the device tool runs this from the repository root). Results land under
# benchmarks/results/gpu/ and, when $OUT is set, are copied there too.
set -uo pipefail
cd "$(dirname "$0")/.."
python3 -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" || {
  echo "gpu_suite: no CUDA device visible to torch" >&2; exit 1; }
mkdir -p benchmarks/results/gpu
status=0
python3 -m pytest -m gpu -q -p no:cacheprovider 2>&1 | tee benchmarks/results/gpu/pytest_gpu.log
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
python3 benchmarks/spectral_conv.py --device cuda || status=1
python3 benchmarks/navier_stokes.py --device cuda || status=1
# the OT peers run on the CPU (POT takes minutes at reg 1e-3), so the quick cases here
python3 benchmarks/ot.py --device cuda --quick || status=1
python3 benchmarks/message_passing.py --device cuda || status=1
python3 benchmarks/poisson.py --device cuda --sizes 64 128 --repeats 3 || status=1
# full SFNO run: generate the 256^2-solved file on the GPU (minutes), then train both models
python3 -m sciml_recipes generate ns2d --preset fno --samples 64 --resolution 128 \
  --solver-resolution 256 --dtype float32 --batch-size 16 --device cuda \
  --out /tmp/ns_fno_128.h5 --no-progress || status=1
python3 benchmarks/sfno_vs_fno.py --device cuda --data /tmp/ns_fno_128.h5 --budget 300 || status=1
if [ -n "${OUT:-}" ]; then cp -r benchmarks/results/gpu "$OUT/" 2>/dev/null || true; fi
exit $status
