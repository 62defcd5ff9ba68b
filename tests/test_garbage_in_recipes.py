"""Garbage in, clear error out: the public entry points of the recipes, fuzzed.

Every name in ``__all__`` of the recipe packages (functions and settings classes) is
called with ONE bad argument among otherwise good (tiny) ones, for every argument it
takes: wrong types, NaN/Inf, negative or zero sizes, empty tensors, wrong shapes, bad
choices. Each call must raise ``TypeError`` or ``ValueError`` (``FileNotFoundError`` for a
file that is not there) whose message names the argument; any other exception, or a
call that goes through, fails. The good arguments are tiny, so that a missing check shows
as a failure rather than a long run, and every bad input must be refused before any
training or solving starts.

The bad values are chosen from the argument's annotation (an ``int`` gets a string, a
float, a bool, None and -1; a ``float`` gets NaN, Inf, a string and -1; a choice gets an
unknown name; ...), with the exceptions listed per entry point (``ok``: a value that is
valid there, such as ``sample=-1`` for the last sample).
"""

from __future__ import annotations

import importlib
import inspect
import math
import re
from pathlib import Path

import pytest
import torch

MODULES = ["hardc", "gpme", "mppde", "dcdm", "sfno", "ns_inverse", "cycle_skipping", "demo"]
NAN, INF = float("nan"), float("inf")
EMPTY = torch.zeros(0)


def _bad_for(annotation: str, default: object) -> list:
    """Bad values for an argument of this annotation (default: its default value)."""
    a = annotation.replace(" ", "")
    optional = "None" in a or default is None
    none = [] if optional else [None]
    if a in ("int", "int|None"):
        return ["x", 1.5, True, -1, NAN, *none]
    if a in ("float", "float|None"):
        return ["x", True, NAN, INF, -1.0, torch.ones(2), *none]
    if a == "bool":
        return ["yes", 2, None]
    if a == "str":
        return ["bogus", 3, *none]
    if a.startswith("Sequence[str]"):
        return [["bogus"], [], 3, *none]
    if a.startswith("Sequence[int]"):
        return [[], ["x"], [1.5], [-1], 3, *none]
    if a.startswith(("Sequence[float]", "tuple[float,float]")):
        return [[], ["x"], [NAN], 3, *none]
    if a.startswith(("Tensor", "torch.Tensor")):
        return ["x", EMPTY, torch.full((3,), NAN), torch.zeros(2, 3, 4, 5, 6), *none]
    if "PathLike" in a or a in ("str|Path", "Path"):
        return [3, 1.5, *none]
    if a.startswith("Callable"):
        return [3, "x", *none]
    if a.startswith("dict"):
        return ["x", 3, *none]
    if a.startswith("torch.dtype"):
        return ["float64", 3, torch.int64]
    if "device" in a:
        return ["bogus", 3]
    return ["x", 3, *none]  # an object of the library or of the recipe


# ------------------------------------------------------------------ tiny good arguments


def _hardc_config():
    from sciml_recipes.hardc import HardCConfig

    return HardCConfig(n_basis=2, width=4, depth=1, experts=2, points=16, ic_points=4,
                       bc_points=4, loss_points=8, max_iter=2)


def _hardc_model():
    from sciml_recipes.hardc import DiffSorpModel

    torch.manual_seed(0)
    return DiffSorpModel("soft", _hardc_config())


def _hardc_test():
    from sciml_recipes.hardc import evaluate_hardc

    return evaluate_hardc({"soft": _hardc_model()}, (0.05,), n=8, nt=3)[1]


def _hardc_reference():
    from sciml_recipes.hardc import reference

    return reference(torch.tensor([0.05]), n=8, nt=3)


def _gpme_ensemble():
    from sciml.operators.neural_process import ConditionalNP, DeepEnsemble

    torch.manual_seed(0)
    return DeepEnsemble([ConditionalNP(width=4, depth=1, code=4)])


def _gpme_case():
    from sciml_recipes.gpme import evaluate_case

    return evaluate_case("diffusion", 1.0, _gpme_ensemble(), n_eval=1, n_context=4, n_grid=8,
                         convex=False)


def _gpme_residual_args() -> dict:
    from sciml_recipes.gpme import make_tasks

    ctx, q, _, p = make_tasks("diffusion", 2, n_context=4, n_target=3)[:]
    model = _gpme_ensemble().members[0]
    return {"name": "diffusion", "model": model, "r": model.encode(ctx), "query": q,
            "param": p}


def _dcdm_net():
    from sciml.operators.dcdm import DCDMNet

    return DCDMNet(2, channels=2)


def _dcdm_loss_args() -> dict:
    from sciml.pdes.poisson import fluid_proxy

    system = fluid_proxy(8, d=2)
    return {"net": _dcdm_net(), "op": system.operator(torch.float32),
            "r": torch.randn(2, 8, 8), "mask": system.fluid_mask.float()}


@pytest.fixture(scope="module")
def burgers(tmp_path_factory) -> dict:
    """Two tiny Burgers trajectories (20 steps at 40 cells) and an FNO stepper (window 5)."""
    from sciml.data import BurgersDataset, generate_burgers
    from sciml_recipes.mppde import build_stepper

    d = tmp_path_factory.mktemp("burgers")
    p = generate_burgers(d / "b.h5", family="E1", samples=2, resolutions=(40,), nt=20,
                         progress=False)
    data = BurgersDataset(p, 40)
    torch.manual_seed(0)
    model = build_stepper("fno", data, time_window=5, width=2, modes=2, layers=1)
    return {"data": data, "model": model}


def _inverse_setup():
    from sciml_recipes.ns_inverse import NSInverseSetup

    return NSInverseSetup(n=16, time=0.05, fraction=0.2)


@pytest.fixture(scope="module")
def ns_run(tmp_path_factory) -> dict:
    """A tiny Navier-Stokes file, its NSData and an SFNO trained one step on it."""
    from sciml.data import generate_ns2d
    from sciml.operators import SFNO
    from sciml.train import TrainConfig
    from sciml_recipes.sfno import NSData, train_sfno

    d = tmp_path_factory.mktemp("ns")
    path = generate_ns2d(d / "ns.h5", preset="fno", samples=3, resolution=16,
                         solver_resolution=32, t_start=0.0, t_end=1.2, snapshots=13,
                         progress=False)
    # five output frames: the fewest the Spectral Refiner's residual takes
    data = NSData(str(path), input_steps=4, output_steps=5, stride=4, test_stride=4,
                  test_samples=1)
    torch.manual_seed(0)
    model, _ = train_sfno(data, d / "run", TrainConfig(epochs=1, max_steps=1, progress=False),
                          model=SFNO(3, 2, 4, layers=1, out_steps=5))
    test = data.dataset("test")
    return {"path": path, "data": data, "model": model, "file": d / "run" / "model.pt",
            "test": test}


def _sfno_eval(ns: dict) -> dict:
    from sciml_recipes.sfno import evaluate_model

    return evaluate_model(ns["model"], ns["test"])


def _inverse_fields() -> dict:
    from dataclasses import fields

    d = _inverse_setup().build()
    return {f.name: getattr(d, f.name) for f in fields(d)}


def _inverse_data():
    return _inverse_setup().build(draws=2)


def _pulse():
    from sciml_recipes.cycle_skipping import ShiftedPulse

    return ShiftedPulse(n=32)


def _cycle_problem():
    from sciml_recipes.cycle_skipping import cycle_skipping_problems

    return cycle_skipping_problems(_pulse())["l2"]


def _cycle_result():
    from sciml_recipes.cycle_skipping import cycle_skipping

    return cycle_skipping(2, pulse=_pulse(), max_iter=1, n_landscape=3)


# Each entry: name -> (good keyword arguments (a callable taking tmp_path), {argument:
# values that are valid there and so not bad}). The arguments not listed keep their
# defaults, and are fuzzed too.
def _specs(tmp: Path, fixture) -> dict:
    from sciml.operators import SpectralRefiner
    from sciml.pdes.gpme import make_problem
    from sciml.pdes.poisson import fluid_proxy
    from sciml.train import TrainConfig
    from sciml_recipes.demo import PARTS

    return {
        "hardc.DiffSorpModel": (lambda: {"method": "soft", "config": _hardc_config()}, {}),
        "hardc.error_rows": (lambda: {"scores": {}}, {}),
        "hardc.evaluate_hardc": (lambda: {"models": {"soft": _hardc_model()}, "u0": (0.05,),
                                          "n": 8, "nt": 3}, {}),
        "hardc.plot_hardc": (lambda: {"models": {"soft": _hardc_model()},
                                      "test": _hardc_test(), "path": tmp / "h.png"},
                             {"sample": [-1]}),
        "hardc.reference": (lambda: {"u0": torch.tensor([0.05]), "n": 8, "nt": 3}, {}),
        "hardc.relative_l2": (lambda: {"model": _hardc_model(), "u0": torch.tensor([0.05]),
                                       "ref": _hardc_reference()[0],
                                       "grid": _hardc_reference()[1]}, {}),
        "hardc.run_hardc": (lambda: {"out_dir": tmp / "hardc", "methods": ("soft",),
                                     "config": _hardc_config(), "steps": 1,
                                     "progress": False, "echo": lambda s: None}, {}),
        "hardc.train_hardc": (lambda: {"method": "soft", "config": _hardc_config(),
                                       "steps": 1, "tasks": 4, "progress": False}, {}),
        "gpme.constraint": (lambda: {"problem": make_problem("diffusion", 1.0),
                                     "x": make_problem("diffusion", 1.0).grid(8), "t": 0.5},
                            {}),
        "gpme.CaseResult": (lambda: {"case": "diffusion-k1", "param": 1.0, "metrics": {},
                                     "x": torch.linspace(0, 1, 8),
                                     "exact": torch.zeros(8)}, {"case": ["bogus"]}),
        "gpme.evaluate_case": (lambda: {"name": "diffusion", "param": 1.0,
                                        "base": _gpme_ensemble(), "n_eval": 1, "n_context": 4,
                                        "n_grid": 8, "convex": False}, {}),
        "gpme.pde_residual": (_gpme_residual_args, {}),
        "gpme.plot_cases": (lambda: {"results": [_gpme_case()], "path": tmp / "pc.png"}, {}),
        "gpme.result_rows": (lambda: {"results": [_gpme_case()]}, {}),
        "gpme.shock_position": (lambda: {"x": torch.linspace(0, 1, 8),
                                         "u": torch.linspace(1, 0, 8)[None], "level": 0.5},
                                {"level": [-1.0]}),
        "hardc.HardCConfig": (lambda: {}, {}),
        # a negative forcing amplitude turns the forcing round: still a flow
        "ns_inverse.NSInverseSetup": (lambda: {}, {"amplitude": [-1.0]}),
        "ns_inverse.NSInverseData": (_inverse_fields, {}),
        "ns_inverse.recover_initial_condition": (lambda: {"data": _inverse_data(),
                                                          "max_iter": 1, "rank": 2}, {}),
        "ns_inverse.recover_parameters": (lambda: {"data": _inverse_data(), "max_iter": 1},
                                          {}),
        "ns_inverse.plot_ns_inverse": (lambda: {"data": _inverse_data(), "results": {},
                                                "path": tmp / "nsi.png"}, {}),
        "ns_inverse.run_ns_inverse": (lambda: {"out_dir": tmp / "nsi",
                                               "setup": _inverse_setup(), "surrogate": False,
                                               "draws": 1, "max_iter": 1, "rank": 2,
                                               "progress": False}, {}),
        "cycle_skipping.ShiftedPulse": (lambda: {}, {"speed": [-1.0]}),
        "cycle_skipping.recover_positions": (
            lambda: {"problem": _cycle_problem(), "starts": [0.3], "max_iter": 1}, {}),
        "cycle_skipping.plot_cycle_skipping": (lambda: {"result": _cycle_result(),
                                                        "path": tmp / "cs.png"}, {}),
        "sfno.NSData": (lambda: {"path": str(fixture("ns_run")["path"])}, {}),
        "sfno.train_sfno": (lambda: {"data": fixture("ns_run")["data"], "out_dir": tmp / "sf",
                                     "config": TrainConfig(epochs=1, max_steps=1,
                                                           progress=False),
                                     "model": fixture("ns_run")["model"]}, {}),
        "sfno.evaluate_model": (lambda: {"model": fixture("ns_run")["model"],
                                         "ds": fixture("ns_run")["test"]}, {}),
        "sfno.refine_model": (lambda: {"model": fixture("ns_run")["model"],
                                       "ds": fixture("ns_run")["test"],
                                       "refiner": SpectralRefiner(steps=1, progress=False)},
                              {"windows": [[-1]]}),
        "sfno.plot_evaluation": (lambda: {"model": fixture("ns_run")["model"],
                                          "ds": fixture("ns_run")["test"],
                                          "res": _sfno_eval(fixture("ns_run")),
                                          "out_dir": tmp / "ev"}, {"window": [-1]}),
        "sfno.plot_refinement": (lambda: {"rows": {"norm": "h-1", "history": [[1.0, 0.5]],
                                                   "rel_l2_before": [0.2],
                                                   "rel_l2_after": [0.1]},
                                          "path": tmp / "rf.png"}, {}),
        # any JSON value is a payload
        "sfno.write_json": (lambda: {"path": tmp / "x.json", "payload": {"a": 1}},
                            {"payload": ["x", 3, None]}),
        "dcdm.DCDMData": (lambda: {"systems": [fluid_proxy(8, d=2)], "per_system": 2,
                                   "k": 2}, {"power": [-1.0]}),
        "dcdm.ritz_rhs": (lambda: {"system": fluid_proxy(8, d=2), "n": 2, "k": 2},
                          {"power": [-1.0]}),
        "dcdm.train_dcdm": (lambda: {"systems": [fluid_proxy(8, d=2)], "per_system": 2,
                                     "k": 2, "steps": 1, "progress": False},
                            {"power": [-1.0]}),
        "dcdm.dcdm_loss": (lambda: _dcdm_loss_args(), {}),
        "dcdm.dcdm_energy_loss": (lambda: {**_dcdm_loss_args(), "energy": torch.ones(2)}, {}),
        "dcdm.training_scenes": (lambda: {"dim": 2, "size": 8, "n": 1}, {}),
        "dcdm.save_pretrained": (lambda: {"net": _dcdm_net(), "path": tmp / "w.pt",
                                          "settings": {}}, {}),
        "cycle_skipping.cycle_skipping": (lambda: {"n_starts": 2, "pulse": _pulse(),
                                                   "max_iter": 1, "n_landscape": 3},
                                          {"true_position": [-1.0]}),
        "cycle_skipping.cycle_skipping_problems": (lambda: {"pulse": _pulse()},
                                                   {"true_position": [-1.0]}),
        "demo.run_demo": (lambda: {"names": ["spectral"], "out_dir": tmp / "demo",
                                   "quick": True, "echo": lambda s: None}, {}),
        # a part's name is any label
        "demo.DemoResult": (lambda: {"name": "spectral",
                                     "rows": [{"case": "c", "metric": "m", "value": 1.0}],
                                     "figures": [tmp / "f.png"], "seconds": 1.0},
                            {"name": ["bogus"]}),
        **{f"demo.PARTS[{name}]": (lambda: {"out_dir": tmp / "part", "quick": True}, {})
           for name in PARTS},
        "ns_inverse.experiment_settings": (lambda: {}, {}),
        "ns_inverse.train_surrogate": (lambda: {"out_dir": tmp / "sur",
                                                "setup": _inverse_setup(), "samples": 2,
                                                "test_samples": 1, "width": 2, "modes": 2,
                                                "steps": 1, "progress": False}, {}),
        "gpme.make_tasks": (lambda: {"name": "diffusion", "n_tasks": 2, "n_context": 4,
                                     "n_target": 4}, {}),
        "gpme.test_cases": (lambda: {}, {}),
        "gpme.train_ensemble": (lambda: {"name": "diffusion", "members": 1, "tasks": 4,
                                         "steps": 1, "width": 4, "progress": False}, {}),
        "gpme.run_probconserv": (lambda: {"out_dir": tmp / "pc", "problems": ["diffusion"],
                                          "members": 1, "steps": 1, "tasks": 4, "n_eval": 1,
                                          "progress": False, "echo": lambda s: None}, {}),
        "gpme.update_cost_ms": (lambda: {"batch": 2, "n": 8, "repeats": 1}, {}),
        "mppde.case_name": (lambda: {"family": "E1", "nx": 40, "convention": "paper"}, {}),
        "mppde.run_mppde": (lambda: {"out": tmp / "mppde", "families": ["E1"],
                                     "conventions": ["paper"], "nxs": [40],
                                     "models": ["mppde"], "train_samples": 2,
                                     "test_samples": 2, "steps": 1, "hidden": 25,
                                     "fno_width": 2,
                                     "progress": False}, {}),
        "mppde.load_stepper": (lambda: {"run": tmp}, {}),
        "mppde.build_stepper": (lambda: {"kind": "fno", "data": fixture("burgers")["data"],
                                         "time_window": 5, "width": 2, "modes": 2,
                                         "layers": 1}, {}),
        "mppde.train_stepper": (lambda: {"model": fixture("burgers")["model"],
                                         "train": fixture("burgers")["data"], "steps": 1,
                                         "batch_size": 2, "progress": False}, {}),
        "mppde.rollout_error": (lambda: {"model": fixture("burgers")["model"],
                                         "data": fixture("burgers")["data"], "samples": 1},
                                {}),
        "mppde.weno5_error": (lambda: {"data": fixture("burgers")["data"], "samples": 1,
                                       "time_window": 5}, {}),
        # any title
        "mppde.plot_rollout": (lambda: {"models": {"data": fixture("burgers")["data"],
                                                   "fno": fixture("burgers")["model"]},
                                        "path": tmp / "r.png", "title": "t"},
                               {"title": ["bogus"]}),
        "sfno.load_sfno": (lambda: {"path": fixture("ns_run")["file"]}, {}),
    }


def _cases():
    for m in MODULES:
        mod = importlib.import_module(f"sciml_recipes.{m}")
        for name in mod.__all__:
            f = getattr(mod, name)
            if not callable(f) or isinstance(f, dict):
                continue
            yield pytest.param(f"{m}.{name}", id=f"{m}.{name}")
    # the demo parts are public through the PARTS registry: each run(out_dir, quick, seed)
    from sciml_recipes.demo import PARTS

    for name in PARTS:
        yield pytest.param(f"demo.PARTS[{name}]", id=f"demo.PARTS[{name}]")


def _entry(key: str):
    m, name = key.split(".", 1)
    mod = importlib.import_module(f"sciml_recipes.{m}")
    if name.startswith("PARTS["):
        return mod.PARTS[name[len("PARTS["):-1]]
    return getattr(mod, name)


ENTRY_POINTS = list(_cases())
#: recipe packages whose entry points already check every argument; the others have
#: (some) tiny good arguments above but are not yet brought to this standard
CHECKED = {"hardc", "gpme", "mppde", "cycle_skipping", "dcdm", "sfno", "ns_inverse", "demo"}


def _fuzz(key: str, f, good: dict, ok: dict) -> tuple[list[str], int]:
    """Call ``f`` once per (argument, bad value); return the failures and the count."""
    problems = []
    count = 0
    sig = inspect.signature(f)
    for p in sig.parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        ann = p.annotation if isinstance(p.annotation, str) else getattr(
            p.annotation, "__name__", str(p.annotation))
        default = good.get(p.name, p.default)
        for bad in _bad_for(ann, default):
            if any(_same(bad, v) for v in ok.get(p.name, [])):
                continue
            count += 1
            kwargs = {**good, p.name: bad}
            try:
                f(**kwargs)
            except (TypeError, ValueError, FileNotFoundError) as e:
                if not re.search(rf"(?<![\w-]){re.escape(p.name)}(?![\w-])", str(e)):
                    problems.append(f"{p.name}={_show(bad)}: {type(e).__name__} does not "
                                    f"name it: {str(e)[:120]}")
            except Exception as e:  # anything else is a crash
                problems.append(f"{p.name}={_show(bad)}: {type(e).__name__}: {str(e)[:120]}")
            else:
                problems.append(f"{p.name}={_show(bad)}: accepted")
    return problems, count


def _same(a, b) -> bool:
    return type(a) is type(b) and not isinstance(a, torch.Tensor) and (
        a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b)))


def _show(v) -> str:
    if isinstance(v, torch.Tensor):
        return f"tensor{tuple(v.shape)}"
    return repr(v)[:30]


@pytest.mark.parametrize("key", [p.values[0] for p in ENTRY_POINTS])
def test_each_argument_is_checked_by_name(key, tmp_path, request):
    specs = _specs(tmp_path, request.getfixturevalue)
    m = key.split(".")[0]
    if m not in CHECKED:
        pytest.skip(f"sciml_recipes.{m} does not check all its arguments yet")
    if key not in specs or specs[key][0] is None:
        pytest.skip("no tiny good arguments for this entry point yet")
    f = _entry(key)
    make, ok = specs[key]
    problems, count = _fuzz(key, f, make(), ok)
    assert count > 0
    assert not problems, "\n".join(problems)

