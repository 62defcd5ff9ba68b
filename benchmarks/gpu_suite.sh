#!/usr/bin/env bash
# The GPU suite in one command (see benchmarks/gpu_suite.py for the steps and budgets).
#
#   bash benchmarks/gpu_suite.sh             # a CUDA machine: install, test, time (< 10 min)
#   bash benchmarks/gpu_suite.sh --dry-run   # any machine: the same steps, toy sizes, on
#                                            # the CPU under simulated CUDA
#
# On a GPU it installs what it needs from the package registry (a CUDA torch if the one
# present cannot see the GPU, then this package with its test, peer and Triton extras),
# runs every step with its own time limit and writes benchmarks/results/gpu/*.json,
# copying results to $OUT after every step when $OUT is set.
set -uo pipefail
cd "$(dirname "$0")/.."
py="${PYTHON:-python3}"
for arg in "$@"; do
  if [ "$arg" = "--dry-run" ]; then exec "$py" benchmarks/gpu_suite.py "$@"; fi
done
start=$(date +%s)
if ! "$py" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null
then
  echo "gpu_suite: installing a CUDA build of torch" >&2
  "$py" -m pip install -q torch || exit 1
fi
"$py" -m pip install -q -e '.[dev,bench,gpu]' || echo "gpu_suite: some extras failed to install; the steps that need them say so" >&2
installed=$(( $(date +%s) - start ))
echo "gpu_suite: set-up took ${installed} s"
# whatever the install left of the 9.5 minutes goes to the steps (at most 480 s)
left=$(( 570 - installed )); [ "$left" -gt 480 ] && left=480
exec "$py" benchmarks/gpu_suite.py --budget "$left" "$@"
