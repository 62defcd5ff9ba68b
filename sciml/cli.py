"""The ``sciml`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _build_parser() -> argparse.ArgumentParser:
    from .demo import PARTS

    p = argparse.ArgumentParser(
        prog="sciml", description="Scientific machine learning for PDEs and inverse problems."
    )
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser(
        "demo",
        help="a tour of every method: results table and figures (under 5 min on 2 cores)",
    )
    d.add_argument("parts", nargs="*", metavar="NAME",
                   help=f"parts to run (default all): {', '.join(PARTS)}")
    d.add_argument("--out", default="sciml-demo", help="folder for figures and results.json")
    d.add_argument("--quick", action="store_true", help="a shorter run (smoke test)")
    d.add_argument("--seed", type=int, default=0)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    if args.command == "demo":
        from .demo import run_demo

        try:
            run_demo(args.parts, args.out, quick=args.quick, seed=args.seed)
        except ValueError as e:
            print(f"sciml demo: error: {e}", file=sys.stderr)
            return 2
        return 0
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
