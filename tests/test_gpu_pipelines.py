"""Every pipeline of the recipes on a GPU: smoke runs on device "cuda" at tiny sizes.

Marked ``gpu``: on a machine without one they run under :class:`sciml.testing.SimCuda`,
which raises on any device mix (a tensor built on the CPU meeting one on the GPU), on
``numpy()`` of a GPU tensor and on a CPU generator handed to a GPU factory, exactly the
failures a real GPU would have. Each run is compared with the same run on the CPU where
the two are deterministic: to float rounding on a real GPU, and (under the simulation,
which computes on the CPU) to the last bit for runs whose random draws the device takes
from its own generator.

Also here: every ``torch.load`` in sciml/ and sciml_recipes/ names ``map_location``.
"""

from __future__ import annotations

import ast
import copy
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from sciml.testing.simcuda import active

ROOT = Path(__file__).resolve().parents[1]
CUDA = "cuda"
REAL_CUDA = torch.cuda.is_available() and active() is None


def _simulated() -> bool:
    """Whether the GPU is SimCuda (the CPU underneath: the device's draws equal the CPU's)."""
    return active() is not None


def _close(a, b, rtol: float = 1e-4, atol: float = 1e-6, msg: str = "") -> None:
    """``a`` (any device) equals ``b`` to float32 rounding (exactly under the simulation,
    up to summation order on a real GPU)."""
    a = torch.as_tensor(a).detach().to("cpu", torch.float64)
    b = torch.as_tensor(b).detach().to("cpu", torch.float64)
    torch.testing.assert_close(a, b, rtol=rtol, atol=atol, msg=msg or None)


def _on_cuda(x: torch.Tensor | torch.nn.Module) -> bool:
    if isinstance(x, torch.nn.Module):
        x = next(x.parameters())
    return x.device.type == "cuda"


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}


# --------------------------------------------------------------------- hard constraints


def _jvp_by_double_backward(f, primals, tangents):
    """``torch.func.jvp`` computed by reverse mode (the double-vjp trick), graph kept."""
    out, tangent = torch.autograd.functional.jvp(f, primals, tangents, create_graph=True)
    return out, tangent


@pytest.fixture
def hardc_jvp(monkeypatch):
    """Work around a false alarm of the simulation: under ``torch.func.jvp`` an operation
    of a (simulated) cuda tensor with a Python number (``q - 1.0``, ``0.5 * q``) is
    reported as mixing devices, because functorch's wrappers hide the device mark of the
    tensor it unwraps (``jvp(lambda q: q - 1.0, (x,), (t,))`` on a real GPU is fine).
    Under the simulation the recipe's forward-mode derivatives are taken by reverse mode
    instead (the same derivatives, on every device alike); on a real GPU nothing changes."""
    if active() is not None:
        import sciml_recipes.hardc.pipeline as pipeline

        monkeypatch.setattr(pipeline, "jvp", _jvp_by_double_backward)


def _hardc_config():
    from sciml_recipes.hardc import HardCConfig

    return HardCConfig(n_basis=4, width=8, depth=1, experts=2, points=16, ic_points=4,
                       bc_points=4, loss_points=16, max_iter=3)


@pytest.mark.gpu
@pytest.mark.parametrize("method", ["soft", "single", "moe", "moe-chain"])
def test_hard_constraint_step_on_cuda_equals_the_cpu(method, hardc_jvp) -> None:
    """One training step's loss and gradients, with seeded points: same on both devices
    (the seeded CPU generator's points are copied to the GPU)."""
    from sciml_recipes.hardc import DiffSorpModel

    torch.manual_seed(0)
    cpu = DiffSorpModel(method, _hardc_config())
    gpu = copy.deepcopy(cpu).to(CUDA)
    u0 = torch.tensor([0.05, 0.15])
    losses, grads = [], []
    for m, u in ((cpu, u0), (gpu, u0.to(CUDA))):
        loss = m.loss(u, torch.Generator().manual_seed(3))
        loss.backward()
        losses.append(loss)
        grads.append([p.grad for p in m.parameters()])
    assert _on_cuda(losses[1])
    _close(losses[1], losses[0], msg=f"{method} loss")
    for g1, g0 in zip(*grads[::-1]):
        _close(g1, g0, rtol=1e-3, atol=1e-5, msg=f"{method} gradient")


@pytest.mark.gpu
def test_hard_constraint_training_and_scoring_on_cuda(hardc_jvp) -> None:
    """train_hardc + evaluate_hardc on "cuda": the Trainer, the device's own draws in
    training and the CPU-seeded evaluation points."""
    from sciml_recipes.hardc import evaluate_hardc, train_hardc

    runs = {}
    for device in ("cpu", CUDA):
        runs[device] = {m: train_hardc(m, _hardc_config(), steps=2, batch_size=2, tasks=4,
                                       seed=0, progress=False, device=device)
                        for m in ("soft", "moe")}
    assert all(_on_cuda(m) for m in runs[CUDA].values())
    scores = {d: evaluate_hardc(models, (0.05, 0.1), n=8, nt=3)[0] for d, models in runs.items()}
    for m in ("soft", "moe"):
        assert np.isfinite(scores[CUDA][m]["rel_l2"])
        if _simulated():  # on a real GPU the training draws differ from the CPU's
            for k, v in _state(runs[CUDA][m]).items():
                _close(v, _state(runs["cpu"][m])[k], msg=f"{m} {k}")
            _close(scores[CUDA][m]["rel_l2"], scores["cpu"][m]["rel_l2"])
    # the same weights score the same on either device (CPU-seeded evaluation points)
    moved = {m: copy.deepcopy(runs["cpu"][m]).to(CUDA) for m in runs["cpu"]}
    again = evaluate_hardc(moved, (0.05, 0.1), n=8, nt=3)[0]
    for m in moved:
        _close(again[m]["rel_l2"], scores["cpu"][m]["rel_l2"], rtol=1e-3)


# ------------------------------------------------------------------------------- DCDM


def _dcdm_systems():
    from sciml_recipes.dcdm.pipeline import training_scenes

    return training_scenes(2, 8, 2, seed=0)


@pytest.mark.gpu
def test_dcdm_training_step_and_solve_on_cuda() -> None:
    from sciml.operators import DCDMNet
    from sciml.pdes.poisson import divergence_rhs
    from sciml.solvers.linear import dcdm
    from sciml_recipes.dcdm.pipeline import train_dcdm

    systems = _dcdm_systems()
    nets = {}
    for device in ("cpu", CUDA):
        torch.manual_seed(0)
        nets[device] = train_dcdm(systems, net=DCDMNet(2, channels=4), per_system=4, k=3,
                                  steps=2, batch_size=4, seed=0, progress=False,
                                  device=device)
    assert _on_cuda(nets[CUDA])
    for k, v in _state(nets[CUDA]).items():  # no random draws in a step: deterministic
        _close(v, _state(nets["cpu"])[k], rtol=1e-4, atol=1e-5, msg=k)
    s = systems[0]
    b = divergence_rhs(s, 1, seed=0)[0]
    sols = {}
    for device, net in nets.items():
        op = s.operator(torch.float64, device=device)
        sols[device] = dcdm(op, b.to(device), net=net, system=s, rtol=1e-2, max_iter=20)
    assert sols[CUDA].x.device.type == "cuda"
    assert sols[CUDA].status == sols["cpu"].status
    assert sols[CUDA].stats["iterations"] == sols["cpu"].stats["iterations"]
    _close(sols[CUDA].x, sols["cpu"].x, rtol=1e-4, atol=1e-7)


@pytest.mark.gpu
def test_dcdm_objective_reads_the_host_once_per_step() -> None:
    """The training step groups rows by system on the device: one host sync (the group
    sizes), whatever the number of systems in the batch."""
    sim = active()
    if sim is None:
        pytest.skip("counts need the simulation")
    from sciml.operators import DCDMNet
    from sciml_recipes.dcdm.pipeline import DCDMData, _Objective

    systems = _dcdm_systems()
    data = DCDMData(systems, 4, k=3, seed=0)
    obj = _Objective(systems)
    items = data.items[:3] + data.items[-3:]  # both systems
    batch = (torch.stack([r for r, _, _ in items]).to(CUDA),
             torch.tensor([i for _, i, _ in items]).to(CUDA),
             torch.tensor([e for _, _, e in items], dtype=torch.float64).to(CUDA))
    net = DCDMNet(2, channels=4).to(CUDA)
    obj.forward(net, batch)  # builds the operators on the device
    with sim.count() as c:
        loss, _ = obj.forward(net, batch)
    assert _on_cuda(loss)
    assert c.syncs == 1 and c.h2d == 0, c.report()


# ------------------------------------------------------- MP-PDE, bundled FNO, rollouts


@pytest.fixture(scope="module")
def burgers_file(tmp_path_factory) -> Path:
    from sciml.data import generate_burgers

    path = tmp_path_factory.mktemp("burgers") / "E1.h5"
    return generate_burgers(path, family="E1", samples=3, resolutions=(20,), nt=12,
                            progress=False, device="cpu")


def _stepper(kind: str, data):
    from sciml_recipes.mppde.pipeline import build_stepper

    torch.manual_seed(0)
    opts = {"hidden": 8, "layers": 1} if kind == "mppde" else {"width": 4, "layers": 1,
                                                                "modes": 4}
    return build_stepper(kind, data, time_window=2, **opts)


@pytest.mark.gpu
@pytest.mark.parametrize("kind", ["mppde", "fno"])
def test_pushforward_training_rollout_and_error_on_cuda(kind, burgers_file) -> None:
    from sciml.data import BurgersDataset
    from sciml.train.rollout import Pushforward, rollout
    from sciml_recipes.mppde.pipeline import rollout_error, train_stepper

    data = BurgersDataset(burgers_file, 20)
    cpu = _stepper(kind, data)
    gpu = copy.deepcopy(cpu).to(CUDA)
    u, theta = (torch.stack(x) for x in zip(*(data[i] for i in range(len(data)))))
    # the evaluation batch of the objective (fixed starts): same on both devices
    push = Pushforward(max_unroll=1)
    outs = []
    for m in (cpu, gpu):
        m.eval()
        dev = next(m.parameters()).device
        outs.append(push.forward(m, (u.to(dev), theta.to(dev))))
    assert _on_cuda(outs[1][0]) and _on_cuda(outs[1][1])
    _close(outs[1][0], outs[0][0], msg="pushforward prediction")
    _close(outs[1][1], outs[0][1], msg="pushforward target")
    # a training step with unrolls (the starts come from the device's generator)
    gpu.train()
    torch.manual_seed(1)
    pred, target = push.forward(gpu, (u.to(CUDA), theta.to(CUDA)))
    push.loss(pred, target).backward()
    assert all(p.grad is None or _on_cuda(p.grad) for p in gpu.parameters())
    # rollouts: theta and t may come from the CPU (moved to the window's device)
    gpu.zero_grad()
    with torch.no_grad():
        r1 = rollout(gpu.eval(), u[:, :2].to(CUDA), torch.zeros(()), theta, 5)
        r0 = rollout(cpu.eval(), u[:, :2], torch.zeros(()), theta, 5)
    assert _on_cuda(r1)
    _close(r1, r0, msg="rollout")
    # the Trainer, then the paper's protocol, on both devices
    models = {}
    for device in ("cpu", CUDA):
        models[device] = _stepper(kind, data)
        train_stepper(models[device], data, steps=2, batch_size=2, max_unroll=1,
                      progress=False, device=device)
    assert _on_cuda(models[CUDA])
    errs = {d: rollout_error(m, data) for d, m in models.items()}
    assert np.isfinite(errs[CUDA]["accumulated_mse"]) and errs[CUDA]["samples"] == 3
    if _simulated():  # the device draws the starts: equal to the CPU's only when simulated
        _close(errs[CUDA]["accumulated_mse"], errs["cpu"]["accumulated_mse"])
    same = rollout_error(copy.deepcopy(models["cpu"]).to(CUDA), data)
    _close(same["accumulated_mse"], errs["cpu"]["accumulated_mse"], rtol=1e-4)


@pytest.mark.gpu
def test_pushforward_step_makes_no_host_sync_and_a_rollout_one(burgers_file) -> None:
    sim = active()
    if sim is None:
        pytest.skip("counts need the simulation")
    from sciml.data import BurgersDataset
    from sciml.train.rollout import Pushforward, rollout

    data = BurgersDataset(burgers_file, 20)
    model = _stepper("fno", data).to(CUDA).train()
    u, theta = (torch.stack(x).to(CUDA) for x in zip(*(data[i] for i in range(len(data)))))
    for _ in range(4):  # unrolled or not
        with sim.count() as c:
            Pushforward(max_unroll=1).forward(model, (u, theta))
        assert c.syncs == 0 and c.h2d == 0, c.report()
    # a rollout scans its input once, not the model's own windows
    with sim.count() as c, torch.no_grad():
        rollout(model.eval(), u[:, :2], torch.zeros((), device=CUDA), theta, 8)
    assert c.syncs == 1 and c.h2d == 0, c.report()


@pytest.mark.gpu
def test_trained_stepper_reloads_onto_cuda_and_plots(burgers_file, tmp_path) -> None:
    """What run_mppde does with a finished run: load_stepper onto the device, the
    rollout figure from there (the full recipe generates data at nx = 200: too slow for
    the simulation)."""
    from sciml.data import BurgersDataset
    from sciml_recipes.mppde import plot_rollout
    from sciml_recipes.mppde.pipeline import load_stepper, rollout_error, train_stepper

    data = BurgersDataset(burgers_file, 20)
    model = _stepper("mppde", data)
    train_stepper(model, data, steps=1, batch_size=2, out_dir=tmp_path / "run", progress=False,
                  device=CUDA)
    back = load_stepper(tmp_path / "run", device=CUDA)
    assert _on_cuda(back)
    for k, v in _state(back).items():
        _close(v, _state(model)[k], rtol=0, atol=0, msg=k)
    _close(rollout_error(back, data)["accumulated_mse"],
           rollout_error(load_stepper(tmp_path / "run"), data)["accumulated_mse"])
    fig = plot_rollout({"mppde": back, "data": data}, tmp_path / "r.png")
    assert fig.exists()


# ------------------------------------------------------------------------ data writers


@pytest.mark.gpu
def test_burgers_generation_on_cuda_equals_the_cpu(tmp_path) -> None:
    from sciml.data import generate_burgers

    files = {d: generate_burgers(tmp_path / f"{d}.h5", family="E2", samples=2,
                                 resolutions=(20, 10), nt=6, progress=False, device=d)
             for d in ("cpu", CUDA)}
    with h5py.File(files["cpu"]) as a, h5py.File(files[CUDA]) as b:
        for n in (20, 10):
            np.testing.assert_allclose(b[f"nx{n}/u"][:], a[f"nx{n}/u"][:], rtol=1e-5,
                                       atol=1e-6)


@pytest.mark.gpu
def test_ns2d_generation_on_cuda_equals_the_cpu(tmp_path) -> None:
    from sciml.data import generate_ns2d

    files = {d: generate_ns2d(tmp_path / f"{d}.h5", preset="fno", samples=2, resolution=8,
                              solver_resolution=16, t_start=0.0, t_end=0.2, snapshots=3,
                              batch_size=2, progress=False, device=d)
             for d in ("cpu", CUDA)}
    with h5py.File(files["cpu"]) as a, h5py.File(files[CUDA]) as b:
        assert bool(b.attrs["complete"])
        np.testing.assert_allclose(b["vorticity"][:], a["vorticity"][:], rtol=1e-5,
                                   atol=1e-6)


# ------------------------------------------------------------------------- ProbConserv


@pytest.mark.gpu
def test_probconserv_training_and_update_on_cuda() -> None:
    from sciml_recipes.gpme import evaluate_case, train_ensemble

    ens = {d: train_ensemble("diffusion", members=1, soft=1e-3, tasks=4, steps=2, width=4,
                             batch_size=2, seed=0, progress=False, device=d)
           for d in ("cpu", CUDA)}
    assert _on_cuda(ens[CUDA])
    for k, v in _state(ens[CUDA]).items():  # no random draws in a step: deterministic
        _close(v, _state(ens["cpu"])[k], rtol=1e-4, atol=1e-5, msg=k)
    cases = {d: evaluate_case("diffusion", 1.0, e, e, n_eval=2, n_context=4, n_grid=8,
                              convex=False) for d, e in ens.items()}
    for method, metrics in cases["cpu"].metrics.items():
        for name, value in metrics.items():
            _close(cases[CUDA].metrics[method][name], value, rtol=1e-3, atol=1e-6,
                   msg=f"{method} {name}")


# ------------------------------------------------------- torch.load names map_location


def _torch_load_calls(tree: ast.AST) -> list[ast.Call]:
    """The calls of ``torch.load`` (or of ``load`` imported from torch) in ``tree``."""
    local = {a.asname or a.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
             and node.module == "torch" for a in node.names if a.name == "load"}
    calls = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        if (isinstance(f, ast.Attribute) and f.attr == "load" and isinstance(f.value, ast.Name)
                and f.value.id == "torch") or (isinstance(f, ast.Name) and f.id in local):
            calls.append(node)
    return calls


def test_the_scan_finds_torch_load_calls() -> None:
    tree = ast.parse("import torch\nfrom torch import load as ld\n"
                     "torch.load(p)\nld(p, map_location='cpu')\nnp.load(p)\n")
    calls = _torch_load_calls(tree)
    assert [c.lineno for c in calls] == [3, 4]


def test_every_torch_load_names_map_location() -> None:
    """A checkpoint saved on a GPU loads onto that GPU unless told otherwise: on a CPU
    machine (or another GPU) that fails. Every read names where the tensors go."""
    bad = []
    for folder in ("sciml", "sciml_recipes"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for call in _torch_load_calls(tree):
                named = any(k.arg == "map_location" for k in call.keywords)
                if not named and len(call.args) < 2:
                    bad.append(f"{path.relative_to(ROOT)}:{call.lineno}")
    assert not bad, f"torch.load without map_location at {bad}"


@pytest.mark.gpu
def test_cli_trains_and_scores_hardc_on_cuda(tmp_path, hardc_jvp, capsys) -> None:
    """``sciml train hardc --device cuda`` in-process: training, scoring, JSON, figure."""
    import json

    from sciml_recipes.cli import main

    code = main(["train", "hardc", "--out", str(tmp_path), "--methods", "soft", "single",
                 "--steps", "1", "--points", "8", "--n-basis", "4", "--device", "cuda",
                 "--no-progress"])
    assert code == 0, capsys.readouterr().err
    rows = json.loads((tmp_path / "hard_constraints.json").read_text())["rows"]
    assert {r["method"] for r in rows} == {"soft", "single"}
    assert all(np.isfinite(r["value"]) for r in rows)
    assert (tmp_path / "hard_constraints.png").exists()


# ------------------------------------------------------------------ learned multigrid


@pytest.mark.gpu
def test_learned_multigrid_training_and_solve_on_cuda() -> None:
    """train_learned_multigrid(device=...) trains where it is told, with the CPU's numbers,
    and the trained network preconditions a CUDA solve as it does a CPU one."""
    from sciml.pdes.poisson import divergence_rhs
    from sciml.solvers.linear import (
        LearnedMultigrid,
        LearnedMultigridNet,
        cg,
        train_learned_multigrid,
    )
    from sciml_recipes.dcdm.pipeline import training_scenes

    systems = training_scenes(2, 48, 1, seed=0)
    nets = {}
    for device in ("cpu", CUDA):
        torch.manual_seed(0)
        nets[device] = train_learned_multigrid(systems, net=LearnedMultigridNet(2, 4),
                                               steps=2, errors_per_step=2, progress=False,
                                               device=device)
    assert _on_cuda(nets[CUDA])
    for k, v in _state(nets[CUDA]).items():
        _close(v, _state(nets["cpu"])[k], rtol=1e-4, atol=1e-5, msg=k)
    s = systems[0]
    b = divergence_rhs(s, 1, seed=0)[0]
    sols = {}
    for device, net in nets.items():
        M = LearnedMultigrid(s, net, dtype=torch.float32, device=device)
        sols[device] = cg(s.operator(torch.float32, device=device), b.float().to(device),
                          M=M, rtol=1e-4)
    assert sols[CUDA].x.device.type == "cuda" and sols[CUDA].converged
    assert sols[CUDA].stats["iterations"] == sols["cpu"].stats["iterations"]
    # the CPU runs the fused numba stencil, the device the torch one: float32 rounding
    # differs, so the two answers agree to the solve's tolerance, not bit for bit
    x_gpu, x_cpu = sols[CUDA].x.cpu().double(), sols["cpu"].x.double()
    assert float((x_gpu - x_cpu).norm() / x_cpu.norm()) < 1e-3
