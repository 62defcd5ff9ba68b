"""``sciml train``, ``sciml refine`` and ``sciml evaluate``: argument parsing and dispatch."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import inspect
from pathlib import Path

from sciml_recipes._cli_types import (
    add_device,
    finite_float,
    int_at_least,
    nonnegative_float,
    nonnegative_int,
    positive_float,
    positive_int,
)


def _default(owner: object, name: str) -> object:
    """The default of ``name`` in a settings dataclass or a function signature, so that each
    default is written once, where the recipe defines it, and the command line follows."""
    if dataclasses.is_dataclass(owner):
        f = {f.name: f for f in dataclasses.fields(owner)}[name]
        if f.default is dataclasses.MISSING:
            raise LookupError(f"{owner.__name__}.{name} has no default")
        return f.default
    return inspect.signature(owner).parameters[name].default


def add_parsers(sub: argparse._SubParsersAction) -> None:
    from sciml.data import ArrayData
    from sciml.operators import SFNO, SpectralRefiner
    from sciml.train import TrainConfig
    from sciml_recipes.gpme.run import run_probconserv
    from sciml_recipes.hardc.pipeline import HardCConfig
    from sciml_recipes.hardc.run import run_hardc
    from sciml_recipes.mppde.run import run_mppde
    from sciml_recipes.sfno.pipeline import NSData, evaluate_model, refine_model

    # one partial per place a default is defined: <prefix>_("name") reads it from there
    pc_ = functools.partial(_default, run_probconserv)
    hc_ = functools.partial(_default, run_hardc)
    mp_ = functools.partial(_default, run_mppde)
    tc_ = functools.partial(_default, TrainConfig)
    ns_ = functools.partial(_default, NSData)
    hcc_ = functools.partial(_default, HardCConfig)
    sr_ = functools.partial(_default, SpectralRefiner)
    ev_ = functools.partial(_default, evaluate_model)
    rf_ = functools.partial(_default, refine_model)
    sf_ = functools.partial(_default, SFNO)
    ad_ = functools.partial(_default, ArrayData)

    t = sub.add_parser("train", help="train a neural operator on a data set (resumable, torchrun)")
    models = t.add_subparsers(dest="model", required=True, metavar="MODEL")
    f = models.add_parser(
        "fno", help="an FNO on your own arrays (HDF5 or NPZ): pairs or trajectories",
        description="Train an FNO on your own arrays with the relative L2 loss on normalised "
        "fields: input and target arrays (samples, channels, *grid) on 1 to 3 grid axes "
        "(--inputs/--targets), or trajectories (samples, time, *grid) whose windows of "
        "--input-steps frames predict the next --output-steps (--trajectories). The last "
        "--test-samples samples are held out. Writes OUT/model.pt (weights, data settings, "
        "normalisation), OUT/checkpoint.pt and OUT/metrics.jsonl; `sciml evaluate --model "
        "OUT/model.pt --out DIR` scores it per sample. Rerun with --resume to continue a "
        "killed run; launch under `torchrun --nproc_per_node K -m sciml_recipes train fno "
        "...` for data parallel training.")
    f.add_argument("--data", required=True, help="the HDF5 or NPZ file of your arrays")
    f.add_argument("--out", required=True, help="folder for checkpoint.pt, model.pt, metrics")
    _own_data_args(f, pairs=True)
    f.add_argument("--input-steps", type=positive_int, default=ad_("input_steps"),
                   help="frames in (trajectories)")
    f.add_argument("--output-steps", type=positive_int, default=ad_("output_steps"),
                   help="frames out (trajectories)")
    f.add_argument("--stride", type=positive_int, default=ad_("stride"),
                   help="steps between training windows (trajectories)")
    f.add_argument("--test-stride", type=positive_int, default=None,
                   help="steps between test windows (default: --stride)")
    f.add_argument("--test-samples", type=positive_int, default=None,
                   help="samples held out for testing, the last ones in the file "
                   "(default: a fifth)")
    f.add_argument("--subsample", type=positive_int, default=ad_("subsample"),
                   help="spatial stride: 2 trains at half the stored resolution (evaluate "
                   "then also scores the stored one, zero-shot)")
    f.add_argument("--modes", type=positive_int, default=None,
                   help="Fourier modes per grid axis (default: 12, at most half the "
                   "training grid)")
    f.add_argument("--width", type=positive_int, default=32)
    f.add_argument("--layers", type=positive_int, default=4)
    _train_args(f, epochs=50, tc_=tc_)

    s = models.add_parser(
        "sfno", help="the spatiotemporal FNO on Navier-Stokes data or your own trajectories",
        description="Train an SFNO with the relative L2 loss on a file from `sciml generate "
        "ns2d`, or on your own 2D trajectories (samples, time, n_x, n_y) in an HDF5 or NPZ "
        "file (--trajectories KEY). Rerun with --resume to continue a killed run; launch "
        "under `torchrun --nproc_per_node K -m sciml_recipes train sfno ...` for data "
        "parallel training.")
    s.add_argument("--data", required=True,
                   help="the HDF5 file of `sciml generate ns2d`, or your HDF5/NPZ file")
    _own_data_args(s, pairs=False)
    s.add_argument("--out", required=True, help="folder for checkpoint.pt, model.pt, metrics")
    s.add_argument("--input-steps", type=int, default=ns_("input_steps"))
    s.add_argument("--output-steps", type=int, default=ns_("output_steps"))
    s.add_argument("--stride", type=int, default=ns_("stride"),
                   help="steps between training windows")
    s.add_argument("--test-stride", type=int, default=ns_("test_stride"),
                   help="steps between test windows")
    s.add_argument("--test-samples", type=positive_int, default=None,
                   help="trajectories held out for testing, the last ones in the file "
                   f"(default: {ns_('test_samples')} on a `sciml generate ns2d` file, else a "
                   "fifth)")
    s.add_argument("--subsample", type=int, default=ns_("subsample"),
                   help="spatial stride: 2 trains at 64^2 on a file stored at 128^2")
    s.add_argument("--modes", type=int, default=12,
                   help="spatial Fourier modes (at most half the training grid)")
    s.add_argument("--modes-t", type=int, default=5, help="temporal Fourier modes")
    s.add_argument("--width", type=int, default=sf_("width"))
    s.add_argument("--layers", type=int, default=sf_("layers"))
    _train_args(s, epochs=10, tc_=tc_)

    pc = models.add_parser(
        "probconserv", help="ProbConserv on the GPME family (diffusion, PME, Stefan)",
        description="Train deep ensembles of conditional neural processes (base, and with a "
        "PDE-residual penalty) on each GPME problem, apply HardC and the ProbConserv update "
        "at t* = 0.5 on the test parameters, and write OUT/probconserv.json and "
        "OUT/probconserv_profiles.png. A rerun reuses or resumes the trained members.")
    pc.add_argument("--out", required=True, help="folder for the members, JSON and figure")
    pc.add_argument("--problems", nargs="+", default=list(pc_("problems")),
                    choices=["diffusion", "pme", "stefan"])
    pc.add_argument("--members", type=positive_int, default=pc_("members"), help="ensemble size")
    pc.add_argument("--steps", type=positive_int, default=pc_("steps"),
                    help="optimiser steps per member")
    pc.add_argument("--tasks", type=positive_int, default=pc_("tasks"),
                    help="training tasks per problem")
    pc.add_argument("--soft", type=nonnegative_float, default=pc_("soft"),
                    help="weight of the PDE-residual penalty of the soft baseline (0: skip it)")
    pc.add_argument("--n-eval", type=positive_int, default=pc_("n_eval"),
                    help="context draws per test case")
    pc.add_argument("--results", default=None, help="JSON path (default OUT/probconserv.json)")
    pc.add_argument("--seed", type=nonnegative_int, default=pc_("seed"))
    add_device(pc, "train")
    pc.add_argument("--no-progress", action="store_true")

    hc = models.add_parser(
        "hardc", help="soft / hard / MoE hard constraints on 1D diffusion-sorption",
        description="Train basis networks on the diffusion-sorption physics loss alone with "
        "the coefficients from a trained head (soft), one hard-constraint solve (single) or "
        "K experts (moe), score them against the finite-volume reference and write "
        "OUT/hard_constraints.json and OUT/hard_constraints.png. A rerun reuses finished "
        "runs and resumes unfinished ones.")
    hc.add_argument("--out", required=True, help="folder for the runs, JSON and figure")
    hc.add_argument("--methods", nargs="+", default=list(hc_("methods")),
                    choices=["soft", "single", "moe", "moe-chain"])
    hc.add_argument("--steps", type=positive_int, default=hc_("steps"),
                    help="optimiser steps per method")
    hc.add_argument("--lr", type=positive_float, default=hc_("lr"))
    hc.add_argument("--points", type=positive_int, default=hcc_("points"),
                    help="collocation points of the constraint (total over experts)")
    hc.add_argument("--experts", type=positive_int, default=hcc_("experts"))
    hc.add_argument("--split", default=hcc_("split"), choices=["x", "t", "xt"],
                    help="how the MoE cuts the (x, t) domain")
    hc.add_argument("--n-basis", type=positive_int, default=hcc_("n_basis"))
    hc.add_argument("--results", default=None,
                    help="JSON path (default OUT/hard_constraints.json)")
    hc.add_argument("--seed", type=nonnegative_int, default=hc_("seed"))
    add_device(hc, "train")
    hc.add_argument("--no-progress", action="store_true")

    dc = models.add_parser(
        "dcdm", help="the DCDM network on Poisson systems with obstacles",
        description="Train a DCDMNet (scale-equivariant multilevel network) with the "
        "energy-norm loss on right-hand sides from Ritz vectors, divergence fields and noise "
        "of the fluid proxy and random obstacle scenes, and write OUT/dcdm_<dim>d.pt "
        "(config, weights, settings). Rerun to resume from OUT/checkpoint.pt.")
    dc.add_argument("--out", required=True, help="folder for the checkpoint and weights")
    # the defaults here are the settings the shipped 2D network was trained with (stored in
    # sciml/solvers/linear/weights/dcdm_2d.pt), not train_dcdm's general-purpose ones
    dc.add_argument("--dim", type=int, default=2, choices=[2, 3])
    dc.add_argument("--size", type=int_at_least(8, " (DCDMNet needs two levels at least: "
                                                 "it halves grids whose sides stay >= 4)"),
                    nargs="+", default=[64],
                    help="grid side(s) of the training scenes: several sizes train one "
                    "network on all of them (--scenes scenes at each)")
    dc.add_argument("--scenes", type=positive_int, default=8,
                    help="training geometries: the fluid proxy and random obstacle sets")
    dc.add_argument("--per-scene", type=positive_int, default=128,
                    help="right-hand sides per scene")
    dc.add_argument("--ritz", type=positive_int, default=96, help="Ritz vectors per scene")
    dc.add_argument("--power", type=finite_float, default=0.0,
                    help="weight (lambda_1/lambda_i)^power on Ritz vector i")
    dc.add_argument("--channels", type=positive_int, default=16)
    dc.add_argument("--max-levels", type=positive_int, default=None,
                    help="cap the network's depth (levels, finest included) at run time; "
                    "the shipped 3D network uses 4, its training depth at 32^3")
    dc.add_argument("--steps", type=positive_int, default=2000)
    dc.add_argument("--lr", type=positive_float, default=1e-3)
    dc.add_argument("--batch-size", type=positive_int, default=8)
    dc.add_argument("--seed", type=nonnegative_int, default=0)
    add_device(dc, "train")
    dc.add_argument("--no-progress", action="store_true")

    lm = models.add_parser(
        "learned-mg", help="the learned multigrid preconditioner on Poisson obstacle scenes",
        description="Train a LearnedMultigridNet (per-cell smoothing and transfer weights "
        "of the geometric V-cycle, from the local stencil) without labels on the fluid "
        "proxy and random obstacle scenes, and write OUT/learned_mg_<dim>d.pt (config, "
        "weights, settings). Rerun to resume from OUT/checkpoint.pt. The defaults are the "
        "settings of the shipped networks.")
    lm.add_argument("--out", required=True, help="folder for the checkpoint and weights")
    lm.add_argument("--dim", type=int, default=3, choices=[2, 3])
    lm.add_argument("--size", type=int_at_least(8), default=None,
                    help="grid side of the training scenes (default 32 in 3D, 64 in 2D)")
    lm.add_argument("--scenes", type=positive_int, default=8,
                    help="training geometries: the fluid proxy and random obstacle sets")
    lm.add_argument("--width", type=positive_int, default=8, help="hidden channels")
    lm.add_argument("--errors", type=int_at_least(2), default=8,
                    help="random errors per step")
    lm.add_argument("--steps", type=positive_int, default=400)
    lm.add_argument("--lr", type=positive_float, default=3e-3)
    lm.add_argument("--seed", type=nonnegative_int, default=0)
    add_device(lm, "train")
    lm.add_argument("--no-progress", action="store_true")

    mp = models.add_parser(
        "mppde", help="MP-PDE and the FNO baseline on the 1D Burgers family, against WENO5",
        description="Generate the E1/E2/E3 data (both grid conventions), train an MP-PDE "
        "and a temporally bundled FNO per case with the pushforward trick, score them and "
        "WENO5 at the same nx by the paper's accumulated MSE, and write OUT/mppde.json and "
        "OUT/mppde_rollout.png. A rerun reuses finished runs and resumes unfinished ones; "
        "--train-only trains without scoring (for background training).")
    mp.add_argument("--out", required=True, help="folder for data, runs, JSON and figure")
    mp.add_argument("--families", nargs="+", default=list(mp_("families")),
                    choices=["E1", "E2", "E3"])
    mp.add_argument("--conventions", nargs="+", default=list(mp_("conventions")),
                    choices=["paper", "conservative"])
    mp.add_argument("--nx", type=int, nargs="+", default=list(mp_("nxs")))
    mp.add_argument("--models", nargs="+", default=list(mp_("models")), choices=["mppde", "fno"])
    mp.add_argument("--train-samples", type=positive_int, default=mp_("train_samples"))
    mp.add_argument("--test-samples", type=positive_int, default=mp_("test_samples"))
    mp.add_argument("--steps", type=positive_int, default=mp_("steps"),
                    help="most optimiser steps per model")
    mp.add_argument("--time-budget", type=nonnegative_float, default=mp_("time_budget"),
                    help="seconds of training per model (0: none, --steps alone decides)")
    mp.add_argument("--batch-size", type=positive_int, default=mp_("batch_size"))
    mp.add_argument("--lr", type=positive_float, default=mp_("lr"))
    mp.add_argument("--max-unroll", type=nonnegative_int, default=mp_("max_unroll"),
                    help="most pushforward unrolls")
    mp.add_argument("--hidden", type=positive_int, default=mp_("hidden"), help="MP-PDE width")
    mp.add_argument("--fno-width", type=positive_int, default=mp_("fno_width"))
    mp.add_argument("--train-only", action="store_true", help="train, do not score")
    mp.add_argument("--results", default=None, help="JSON path (default OUT/mppde.json)")
    mp.add_argument("--seed", type=nonnegative_int, default=mp_("seed"))
    add_device(mp, "train")
    mp.add_argument("--no-progress", action="store_true")

    r = sub.add_parser(
        "refine", help="Spectral-Refiner: fine-tune a trained SFNO per trajectory on the residual",
        description="Freeze a trained SFNO, rebuild its last spectral layer with all modes and "
        "fit it to each test trajectory's Navier-Stokes residual (no ground truth; the truth "
        "is read only to report the true error before and after).")
    _model_args(r)
    r.add_argument("--steps", type=positive_int, default=sr_("steps"))
    r.add_argument("--lr", type=positive_float, default=sr_("lr"))
    r.add_argument("--norm", default=rf_("norm"), choices=["h-1", "l2"],
                   help="spatial norm of the residual (h-1: the paper's)")
    r.add_argument("--windows", type=int, default=None,
                   help="refine the first N test windows (default all)")
    r.add_argument("--batch-size", type=positive_int, default=sr_("batch_size"),
                   help="trajectories refined together")

    e = sub.add_parser(
        "evaluate", help="errors of a trained model per test sample, and figures",
        description="Score a model of `sciml train`: for an SFNO of Navier-Stokes data, the "
        "relative L2 and H1 errors per window and frame, spectra and figures; for an FNO or "
        "SFNO of your own arrays, the relative L2 error and RMSE of every test item at the "
        "training resolution, and zero-shot at the stored one (a model trained with "
        "--subsample) and at the fine arrays (--fine-inputs), with OUT/evaluate.json and "
        "OUT/evaluate.png.")
    _model_args(e)
    e.add_argument("--batch-size", type=positive_int, default=ev_("batch_size"))


def _own_data_args(p: argparse.ArgumentParser, *, pairs: bool) -> None:
    """The keys and normalisation of a file of the user's own arrays."""
    if pairs:
        p.add_argument("--inputs", default="x", metavar="KEY",
                       help="key of the input array (samples, channels, *grid)")
        p.add_argument("--targets", default="y", metavar="KEY",
                       help="key of the target array (samples, channels, *grid)")
    p.add_argument("--trajectories", default=None, metavar="KEY",
                   help="key of a trajectory array (samples, time, *grid)"
                   + ("; replaces --inputs/--targets" if pairs else
                      " in your own file (needed unless the file is from `sciml generate "
                      "ns2d`)"))
    p.add_argument("--fine-inputs", default=None, metavar="KEY",
                   help="key of the test inputs at a finer resolution, for zero-shot "
                   "evaluation" + ("" if pairs else " (your own trajectories)"))
    if pairs:
        p.add_argument("--fine-targets", default=None, metavar="KEY",
                       help="key of the fine targets (with --fine-inputs)")
    p.add_argument("--no-normalize", action="store_true",
                   help="train on the raw values (default: standardised with the training "
                   "samples' mean and std)")


def _train_args(p: argparse.ArgumentParser, *, epochs: int, tc_) -> None:
    """The training loop's options, shared by the models trained through the Trainer."""
    p.add_argument("--epochs", type=positive_int, default=epochs)
    p.add_argument("--lr", type=positive_float, default=tc_("lr"))
    p.add_argument("--batch-size", type=positive_int, default=tc_("batch_size"),
                   help="per process")
    p.add_argument("--schedule", default=tc_("schedule"),
                   choices=["onecycle", "cosine", "constant"])
    p.add_argument("--max-steps", type=positive_int, default=None,
                   help="stop after this many optimiser steps (default: run every epoch)")
    p.add_argument("--time-budget", type=positive_float, default=None,
                   help="seconds of training (default: no limit)")
    p.add_argument("--checkpoint-every", type=positive_int, default=None,
                   help="optimiser steps between checkpoints (default: at each epoch end)")
    p.add_argument("--seed", type=nonnegative_int, default=tc_("seed"))
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    add_device(p, "train")
    p.add_argument("--no-progress", action="store_true")


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="model.pt (or checkpoint.pt) of `sciml train`")
    p.add_argument("--data", default=None,
                   help="data file (default: the model's training file)")
    p.add_argument("--subsample", type=int, default=None,
                   help="spatial stride on the file (default: the model's; 1 on a finer file "
                   "evaluates zero-shot super-resolution)")
    p.add_argument("--out", required=True, help="folder for the JSON results and figures")
    add_device(p, "cpu")
    p.add_argument("--no-progress", action="store_true")


def _test_set(args: argparse.Namespace):
    from sciml_recipes.sfno.pipeline import load_sfno

    model, data = load_sfno(args.model, data=args.data, device=args.device)
    ds = data.dataset("test", subsample=args.subsample)
    return model, ds


def run(args: argparse.Namespace) -> int:
    """Run ``sciml train``, ``refine`` or ``evaluate`` (:func:`sciml_recipes.cli.main` reports the
    library's errors)."""
    if args.command == "train":
        return _train(args)
    if args.command == "refine":
        return _refine(args)
    return _evaluate(args)


def _train(args: argparse.Namespace) -> int:
    if args.model == "probconserv":
        from sciml_recipes.gpme.run import run_probconserv

        run_probconserv(args.out, problems=args.problems, members=args.members,
                        steps=args.steps, soft=args.soft, tasks=args.tasks, n_eval=args.n_eval,
                        seed=args.seed, results_json=args.results,
                        progress=not args.no_progress, device=args.device)
        return 0
    if args.model == "dcdm":
        from sciml.operators import DCDMNet
        from sciml_recipes.dcdm.pipeline import save_pretrained, train_dcdm, training_scenes

        settings = {k: getattr(args, k) for k in ("dim", "size", "scenes", "per_scene", "ritz",
                                                  "power", "channels", "max_levels", "steps",
                                                  "lr", "batch_size", "seed")}
        scenes = [sc for j, size in enumerate(args.size)
                  for sc in training_scenes(args.dim, size, args.scenes,
                                            seed=args.seed + 1000 * j)]
        import torch

        torch.manual_seed(args.seed)
        net = train_dcdm(scenes, net=DCDMNet(args.dim, channels=args.channels,
                                             max_levels=args.max_levels),
                         per_system=args.per_scene, k=args.ritz, power=args.power,
                         steps=args.steps, lr=args.lr, batch_size=args.batch_size,
                         seed=args.seed, out_dir=args.out, progress=not args.no_progress,
                         device=args.device)
        path = save_pretrained(net, Path(args.out) / f"dcdm_{args.dim}d.pt", settings)
        print(f"trained DCDMNet ({sum(p.numel() for p in net.parameters())} parameters); "
              f"wrote {path}")
        return 0
    if args.model == "learned-mg":
        import torch

        from sciml.solvers.linear import (
            LearnedMultigridNet,
            save_learned_multigrid,
            train_learned_multigrid,
        )
        from sciml_recipes.dcdm.pipeline import training_scenes

        size = args.size or (32 if args.dim == 3 else 64)
        settings = {"dim": args.dim, "size": size, "scenes": args.scenes,
                    "width": args.width, "errors": args.errors, "steps": args.steps,
                    "lr": args.lr, "seed": args.seed}
        scenes = training_scenes(args.dim, size, args.scenes, seed=args.seed)
        torch.manual_seed(args.seed)
        net = train_learned_multigrid(scenes, net=LearnedMultigridNet(args.dim, args.width),
                                      steps=args.steps, lr=args.lr,
                                      errors_per_step=args.errors, seed=args.seed,
                                      out_dir=args.out, progress=not args.no_progress,
                                      device=args.device)
        path = save_learned_multigrid(net, Path(args.out) / f"learned_mg_{args.dim}d.pt",
                                      settings)
        print(f"trained LearnedMultigridNet ({sum(p.numel() for p in net.parameters())} "
              f"parameters); wrote {path}")
        return 0
    if args.model == "mppde":
        from sciml_recipes.mppde.run import run_mppde

        run_mppde(args.out, families=args.families, conventions=args.conventions,
                  nxs=args.nx, models=args.models, train_samples=args.train_samples,
                  test_samples=args.test_samples, steps=args.steps,
                  time_budget=args.time_budget or None, batch_size=args.batch_size,
                  lr=args.lr,
                  max_unroll=args.max_unroll, hidden=args.hidden, fno_width=args.fno_width,
                  seed=args.seed, train_only=args.train_only, results_json=args.results,
                  progress=not args.no_progress, device=args.device)
        return 0
    if args.model == "hardc":
        from sciml_recipes.hardc.pipeline import HardCConfig
        from sciml_recipes.hardc.run import run_hardc

        cfg = HardCConfig(points=args.points, experts=args.experts, split=args.split,
                          n_basis=args.n_basis)
        run_hardc(args.out, methods=args.methods, config=cfg, steps=args.steps, lr=args.lr,
                  seed=args.seed, results_json=args.results, progress=not args.no_progress,
                  device=args.device)
        return 0
    from sciml.operators import SFNO
    from sciml.train import TrainConfig
    from sciml_recipes.sfno.pipeline import NSData, train_sfno

    config = TrainConfig(
        epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, schedule=args.schedule,
        max_steps=args.max_steps, time_budget=args.time_budget,
        checkpoint_every=args.checkpoint_every, seed=args.seed,
        progress=not args.no_progress)
    import torch

    if args.model == "fno" or args.trajectories is not None or not _is_ns_file(args.data):
        return _train_own(args, config)
    data = NSData(args.data, input_steps=args.input_steps, output_steps=args.output_steps,
                  stride=args.stride, test_stride=args.test_stride, subsample=args.subsample,
                  test_samples=(_default(NSData, "test_samples") if args.test_samples is None
                                else args.test_samples))
    torch.manual_seed(args.seed)  # the initial weights follow --seed too
    model = SFNO(args.modes, args.modes_t, args.width, layers=args.layers,
                 out_steps=args.output_steps)
    _, result = train_sfno(data, args.out, config, model=model, resume=args.resume,
                           device=args.device)
    _report(result, args.out)
    return 0


def _report(result, out: str, normalized: bool = True) -> None:
    last = result.history[-1] if result.history else {}
    why = {"epochs": "every epoch done", "max_steps": "--max-steps reached",
           "time_budget": "time budget reached"}.get(result.stopped, result.stopped)
    on = " on the normalised fields" if normalized else ""
    print(f"trained {result.global_step} steps, {result.epochs_done:g} epochs ({why}); "
          f"test rel_l2{on} {last.get('eval_rel_l2', float('nan')):.4g}; wrote {Path(out)}")


def _is_ns_file(path: str) -> bool:
    """Whether ``path`` is a Navier-Stokes file of `sciml generate ns2d` (by its format)."""
    import h5py

    from sciml.data import NS2DDataset

    if not Path(path).is_file() or not h5py.is_hdf5(path):
        return False
    with h5py.File(path, "r") as f:
        found = f.attrs.get("format")
    return (found.decode() if isinstance(found, bytes) else found) == NS2DDataset.FORMAT


def _train_own(args: argparse.Namespace, config) -> int:
    """``train fno``, or ``train sfno`` on the user's own trajectories."""
    import torch

    from sciml.data import ArrayData
    from sciml_recipes.own_data import build_model, train_operator

    if args.model == "sfno" and args.trajectories is None:
        raise ValueError(f"{args.data} is not a file of `sciml generate ns2d`: name the array "
                         "of your trajectories (samples, time, n_x, n_y) with --trajectories "
                         "KEY, or train an FNO on input/target arrays with `sciml train fno`")
    pairs = args.model == "fno"
    data = ArrayData(
        args.data,
        inputs=args.inputs if pairs else "x", targets=args.targets if pairs else "y",
        trajectories=args.trajectories, input_steps=args.input_steps,
        output_steps=args.output_steps, stride=args.stride, test_stride=args.test_stride,
        test_samples=args.test_samples, subsample=args.subsample,
        normalize=not args.no_normalize, fine_inputs=args.fine_inputs,
        fine_targets=args.fine_targets if pairs else None)
    torch.manual_seed(args.seed)  # the initial weights follow --seed too
    model = build_model(args.model, data, modes=args.modes,
                        modes_t=getattr(args, "modes_t", None), width=args.width,
                        layers=args.layers)
    train, test = data.split()
    print(f"{data.path}: {data.layout}, {data.samples} samples ({len(train)} train, "
          f"{len(test)} test) on a {'x'.join(map(str, data.grid()))} grid; "
          f"{type(model).__name__} with {sum(p.numel() for p in model.parameters())} "
          "parameters")
    _, result = train_operator(data, args.out, config, model=model, resume=args.resume,
                               device=args.device)
    _report(result, args.out, normalized=data.normalize)
    print("score it (errors in your units): sciml evaluate --model "
          f"{Path(args.out) / 'model.pt'} --out {Path(args.out) / 'evaluate'}")
    return 0


def _refine(args: argparse.Namespace) -> int:
    from sciml_recipes.own_data import KIND, model_kind

    if model_kind(args.model) == KIND:
        raise ValueError(f"{args.model} was trained on your own arrays: the Spectral-Refiner "
                         "fine-tunes on the Navier-Stokes residual, which needs a model of a "
                         "`sciml generate ns2d` file; from Python, pass your own residual loss "
                         "to sciml.operators.SpectralRefiner")
    from sciml.operators import SpectralRefiner
    from sciml_recipes.sfno.figures import plot_refinement
    from sciml_recipes.sfno.pipeline import refine_model, summary, write_json

    model, ds = _test_set(args)
    windows = None if args.windows is None else list(range(min(args.windows, len(ds))))
    refiner = SpectralRefiner(steps=args.steps, lr=args.lr, batch_size=args.batch_size,
                              progress=not args.no_progress)
    rows = refine_model(model, ds, refiner, norm=args.norm, windows=windows,
                        device=args.device)
    out = Path(args.out)
    write_json(out / f"refine_{args.norm}.json", {"summary": summary(rows), **rows})
    plot_refinement(rows, out / f"refine_{args.norm}.png")
    s = summary(rows)
    print(f"refined {len(rows['windows'])} trajectories ({args.norm} residual, {args.steps} "
          f"steps): true rel L2 {s['rel_l2_before']:.4g} -> {s['rel_l2_after']:.4g}; H^-1 "
          f"residual {s['residual_h-1_before']:.3g} -> {s['residual_h-1_after']:.3g} "
          f"(solver data: {s['truth_residual_h-1']:.3g}); wrote {out}")
    return 0


def _evaluate_own(args: argparse.Namespace) -> int:
    from sciml_recipes.own_data import evaluate_operator, load_operator, plot_operator_evaluation
    from sciml_recipes.sfno.pipeline import write_json

    model, data, norm = load_operator(args.model, data=args.data, device=args.device)
    res = evaluate_operator(model, data, norm, subsample=args.subsample,
                            batch_size=args.batch_size, device=args.device)
    out = Path(args.out)
    write_json(out / "evaluate.json", res)
    fig = plot_operator_evaluation(model, data, norm, res, out, device=args.device)
    what = "windows" if data.layout == "trajectories" else "samples"
    print(f"{'resolution':>10s} {'grid':>10s} {what:>8s} {'rel L2 mean':>12s} "
          f"{'median':>8s} {'max':>8s} {'RMSE':>10s}")
    for r in res["resolutions"]:
        grid = "x".join(map(str, r["grid"]))
        print(f"{r['name']:>10s} {grid:>10s} {len(r['rel_l2_per_item']):8d} "
              f"{r['rel_l2']:12.4g} {r['rel_l2_median']:8.4g} {r['rel_l2_max']:8.4g} "
              f"{r['rmse']:10.4g}")
    print(f"wrote {out / 'evaluate.json'} (errors per test item) and {fig}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from sciml_recipes.own_data import KIND, model_kind

    if model_kind(args.model) == KIND:
        return _evaluate_own(args)
    from sciml_recipes.sfno.figures import plot_evaluation
    from sciml_recipes.sfno.pipeline import evaluate_model, write_json

    model, ds = _test_set(args)
    res = evaluate_model(model, ds, batch_size=args.batch_size, device=args.device)
    out = Path(args.out)
    write_json(out / "evaluate.json", res)
    figs = plot_evaluation(model, ds, res, out, device=args.device)
    print(f"{len(ds)} test windows at {ds.resolution}^2: rel L2 {res['rel_l2']:.4g}, "
          f"rel H1 {res['rel_h1']:.4g}; wrote {out / 'evaluate.json'} and "
          f"{', '.join(f.name for f in figs)}")
    return 0
