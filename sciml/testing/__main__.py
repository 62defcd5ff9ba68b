"""``python -m sciml.testing SCRIPT.py [ARGS...]`` (or ``-m MODULE [ARGS...]``): run a script
under simulated CUDA (:class:`sciml.testing.SimCuda`) and print its host-sync count."""

from __future__ import annotations

import os
import runpy
import sys

from .simcuda import SimCuda


def _main(argv: list[str]) -> int:
    """``python -m sciml.testing script.py [args]``: run a script under SimCuda."""
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: python -m sciml.testing SCRIPT.py [ARGS...] | -m MODULE [ARGS]")
        return 0 if argv else 2
    with SimCuda() as sim:
        if argv[0] == "-m":
            sys.argv = argv[1:]
            runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
        else:
            sys.argv = argv
            # as `python script.py` does: the script's folder first on the import path
            sys.path.insert(0, os.path.dirname(os.path.abspath(argv[0])))
            runpy.run_path(argv[0], run_name="__main__")
    print(f"simcuda: {sim.syncs} host syncs, {sim.h2d} blocking host-to-device copies",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
