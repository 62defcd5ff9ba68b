"""The ``sciml`` command line."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Sequence

# one example per command, shown at the end of its --help
EXAMPLES = {
    "sciml": "sciml demo spectral ot --out tour",
    "sciml demo": "sciml demo navier_stokes",
    "sciml generate": "sciml generate ns2d --preset fno --show",
    "sciml generate ns2d": "sciml generate ns2d --preset fno --samples 8 --out ns.h5",
    "sciml generate burgers": "sciml generate burgers --family E1 --samples 16 --out e1.h5",
    "sciml train": "sciml train fno --data mine.npz --inputs a --targets u --out runs/mine",
    "sciml train fno": "sciml train fno --data mine.npz --inputs a --targets u --out runs/mine",
    "sciml train sfno": "sciml train sfno --data ns.h5 --out runs/sfno --device cuda",
    "sciml train probconserv": "sciml train probconserv --help",
    "sciml train hardc": "sciml train hardc --help",
    "sciml train dcdm": "sciml train dcdm --help",
    "sciml train learned-mg": "sciml train learned-mg --dim 2",
    "sciml train mppde": "sciml train mppde --help",
    "sciml refine": "sciml refine --model runs/sfno/model.pt --steps 100 --out runs/refine",
    "sciml evaluate": "sciml evaluate --model runs/mine/model.pt --out runs/mine/eval",
}


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions as written, and every option's default in its help (unless the help
    already says it)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if ("default" in text or default is None or default is False
                or default is argparse.SUPPRESS or not action.option_strings):
            return text
        return f"{text} (default: %(default)s)" if text else "(default: %(default)s)"


def _teach(parser: argparse.ArgumentParser) -> None:
    """Give ``parser`` and every sub-command the formatter above and its example."""
    parser.formatter_class = _HelpFormatter
    example = EXAMPLES.get(parser.prog)
    if example and not parser.epilog:
        parser.epilog = f"example:\n  {example}"
    for action in parser._actions:
        # argparse prints no help line at all for an option without help text, so the
        # formatter above never sees it: give such options their default as the text
        if (action.help is None and action.option_strings and action.default is not None
                and action.default is not False and action.default is not argparse.SUPPRESS):
            action.help = "(default: %(default)s)"
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _teach(child)


def _build_parser() -> argparse.ArgumentParser:
    p = _build_parser_plain()
    _teach(p)
    return p


def _build_parser_plain() -> argparse.ArgumentParser:
    from sciml_recipes.demo import PARTS

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
    _add_generate(sub)
    from sciml_recipes._cli_train import add_parsers

    add_parsers(sub)
    from sciml_recipes._cli_solve import add_parser as add_solve

    add_solve(sub)
    return p


def _add_generate(sub: argparse._SubParsersAction) -> None:
    from sciml.data import PRESETS
    from sciml_recipes._cli_types import add_device

    g = sub.add_parser("generate", help="generate a PDE data set into an HDF5 file (resumable)")
    kinds = g.add_subparsers(dest="dataset", required=True, metavar="DATASET")
    ns = kinds.add_parser(
        "ns2d",
        help="2D Navier-Stokes vorticity trajectories",
        description="2D Navier-Stokes vorticity trajectories. Rerun the same command to resume "
        "an interrupted run; launch under `torchrun --nproc_per_node K -m sciml_recipes generate "
        "ns2d ...` to split the samples over K processes.",
    )
    ns.add_argument("--preset", required=True, choices=sorted(PRESETS),
                    help="physics, forcing, initial fields and stored times (see --show)")
    ns.add_argument("--show", action="store_true",
                    help="print the preset's settings and exit")
    ns.add_argument("--samples", type=int, default=None,
                    help="number of trajectories (required unless --show)")
    ns.add_argument("--out", default=None,
                    help="the HDF5 file to write or resume (required unless --show)")
    ns.add_argument("--resolution", type=int, default=64, help="stored grid size (default 64)")
    ns.add_argument("--solver-resolution", type=int, default=256,
                    help="grid size of the solve, a multiple of --resolution (default 256)")
    ns.add_argument("--seed", type=int, default=0)
    ns.add_argument("--batch-size", type=int, default=4, help="samples solved together")
    preset_default = "(default: the preset's, see --show)"
    ns.add_argument("--t-start", type=float, default=None,
                    help=f"first stored time {preset_default}")
    ns.add_argument("--t-end", type=float, default=None, help=f"last stored time {preset_default}")
    ns.add_argument("--snapshots", type=int, default=None,
                    help=f"stored times {preset_default}")
    ns.add_argument("--dt", type=float, default=None,
                    help="time step (default 0.5 dx / the preset's velocity bound)")
    ns.add_argument("--dtype", default="float64", choices=["float32", "float64"],
                    help="precision of the solve (the file stores float32)")
    add_device(ns, "auto")
    ns.add_argument("--no-progress", action="store_true", help="no progress bar")
    bu = kinds.add_parser(
        "burgers",
        help="1D combined Burgers/KdV trajectories (MP-PDE's E1, E2, E3)",
        description="1D combined Burgers/KdV trajectories (MP-PDE's E1, E2, E3), solved by "
        "WENO5 at the finest resolution and stored at every one. Rerun the same command to "
        "resume an interrupted run.",
    )
    bu.add_argument("--family", required=True, choices=["E1", "E2", "E3"])
    bu.add_argument("--convention", default="conservative", choices=["conservative", "paper"],
                    help="cell averages throughout (default) or the original pipeline's grids")
    bu.add_argument("--samples", type=int, required=True, help="number of trajectories")
    bu.add_argument("--out", required=True, help="the HDF5 file to write (or resume)")
    bu.add_argument("--seed", type=int, default=0)
    bu.add_argument("--batch-size", type=int, default=64, help="samples solved together")
    add_device(bu, "auto")
    bu.add_argument("--no-progress", action="store_true", help="no progress bar")


def _generate(args: argparse.Namespace) -> int:
    if args.dataset == "burgers":
        return _generate_burgers(args)
    from sciml.data import PRESETS, generate_ns2d
    from sciml.pdes import NavierStokesBlowUp

    if args.show:
        preset = PRESETS[args.preset]
        print(f"preset {args.preset!r} (each setting below can be overridden where an option "
              "exists: --t-start, --t-end, --snapshots, --dt):")
        for field in dataclasses.fields(preset):
            print(f"  {field.name:16s} {getattr(preset, field.name)!r}")
        return 0
    missing = [o for o, v in (("--samples", args.samples), ("--out", args.out)) if v is None]
    if missing:
        print(f"sciml generate ns2d: error: {' and '.join(missing)} required (or --show to "
              "print the preset)", file=sys.stderr)
        return 2

    # under torchrun every process sees its place in the job in the environment
    rank = int(os.environ.get("RANK", "0"))
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    try:
        path = generate_ns2d(
            args.out, preset=args.preset, samples=args.samples, resolution=args.resolution,
            solver_resolution=args.solver_resolution, seed=args.seed,
            batch_size=args.batch_size, t_start=args.t_start, t_end=args.t_end,
            snapshots=args.snapshots, dt=args.dt, dtype=args.dtype,
            progress=not args.no_progress, rank=rank, world_size=world_size,
            device=args.device,
        )
    except (ValueError, TypeError) as e:
        print(f"sciml generate: error: {e}", file=sys.stderr)
        return 2
    except NavierStokesBlowUp as e:
        print(f"sciml generate: the solver blew up: {e}", file=sys.stderr)
        return 1
    if rank == 0:
        print(f"wrote {path}")
    return 0


def _generate_burgers(args: argparse.Namespace) -> int:
    from sciml.data import generate_burgers

    try:
        path = generate_burgers(
            args.out, family=args.family, convention=args.convention, samples=args.samples,
            seed=args.seed, batch_size=args.batch_size, progress=not args.no_progress,
            device=args.device,
        )
    except (ValueError, TypeError) as e:
        print(f"sciml generate: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


def _expected_errors() -> tuple[tuple[type[BaseException], ...], tuple[type[BaseException], ...]]:
    """The failures the library raises on purpose, with a message for the user: bad input
    (exit status 2) and runs that failed (status 1). Anything else is a bug and keeps its
    traceback."""
    from sciml.inverse import InverseError
    from sciml.pdes import NavierStokesBlowUp
    from sciml.solvers.linear import LinearSolveError
    from sciml.solvers.ot import OTError

    bad_input = (ValueError, TypeError, OSError)
    failed = (FloatingPointError, NavierStokesBlowUp, InverseError, LinearSolveError, OTError)
    return bad_input, failed


def _run(args: argparse.Namespace) -> int:
    from sciml_recipes._cli_types import check_writable

    if args.command == "solve":  # --out is optional there; it checks its own
        from sciml_recipes._cli_solve import run as run_solve

        return run_solve(args)
    if args.out is not None:  # `generate ns2d --show` writes nothing
        check_writable(args.out, file=args.command == "generate")
    if args.command == "demo":
        from sciml_recipes.demo import run_demo

        run_demo(args.parts or None, args.out, quick=args.quick, seed=args.seed)
        return 0
    if args.command == "generate":
        return _generate(args)
    if args.command in ("train", "refine", "evaluate"):
        from sciml_recipes._cli_train import run

        return run(args)
    return 2  # pragma: no cover - argparse rejects unknown commands


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status.

    Bad arguments make argparse exit with status 2; an error the library raises on purpose
    (a bad value, a missing or foreign file, a folder that cannot be written, a run that
    diverged) prints ``sciml COMMAND: error: <message>`` to stderr and returns 2 (bad
    input) or 1 (the run failed), without a traceback. Set ``SCIML_TRACEBACK=1`` to see
    the traceback anyway.
    """
    args = _build_parser().parse_args(argv)
    bad_input, failed = _expected_errors()
    try:
        return _run(args)
    except (*bad_input, *failed) as e:
        if os.environ.get("SCIML_TRACEBACK"):
            raise
        msg = " ".join(str(e).split()) or type(e).__name__
        print(f"sciml {args.command}: error: {msg}", file=sys.stderr)
        return 1 if isinstance(e, failed) else 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
