"""The diffusion-sorption hard-constraint experiment: Jacobian, training, CLI, demo.

References: the forward-mode Jacobian of the residual (the closed form must equal it),
the finite-volume reference solver (errors), and the defining criterion of the
constraint (its residual at the solution is small for a trained basis).
"""

from __future__ import annotations

import json

import pytest
import torch

from sciml.constraints.hard import _jacobian as forward_mode_jacobian
from sciml_recipes.cli import main
from sciml_recipes.hardc.pipeline import DiffSorpModel, HardCConfig, _jacobian, _residual, reference

SMALL = dict(n_basis=6, width=16, depth=2, points=64, ic_points=16, bc_points=8,
             loss_points=64, max_iter=5)


@pytest.mark.parametrize("method", ["single", "moe", "moe-chain"])
def test_closed_form_jacobian_equals_forward_mode(method) -> None:
    torch.manual_seed(0)
    m = DiffSorpModel(method, HardCConfig(**SMALL))
    with torch.no_grad():
        data = m._collocation(torch.tensor([0.01, 0.1, 0.19]), torch.Generator().manual_seed(0))
    B, K = data[0].shape[:2]
    flat = [d.reshape(B * K, *d.shape[2:]) for d in data]
    # coefficients that make u cross zero, where the smooth floor of R matters
    c = torch.randn(B * K, 6, dtype=torch.float64)
    r1, J1 = _jacobian(m.phys)(c, *flat)
    r2, J2 = forward_mode_jacobian(_residual(m.phys), c, flat)
    torch.testing.assert_close(r1, r2, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(J1, J2, rtol=1e-10, atol=1e-10)


def test_single_constraint_beats_an_untrained_head() -> None:
    # at initialisation the hard constraint already fits the PDE, u(x, 0) = u0 and the
    # boundary conditions in least squares over the random basis; the soft head does not
    cfg = HardCConfig(points=256, loss_points=64, ic_points=64, bc_points=32, max_iter=30)
    u0 = torch.tensor([0.05, 0.15])
    ref, grid = reference(u0, n=64, nt=6)
    errs = {}
    for method in ("soft", "single"):
        torch.manual_seed(0)
        m = DiffSorpModel(method, cfg).eval()
        gen = torch.Generator().manual_seed(0)
        with torch.no_grad():
            c = m.coefficients(u0, gen)
            pred = m.field(u0, grid.float(), c)[0].reshape(2, 6, 64).double()
        errs[method] = float(((pred - ref).norm(dim=(1, 2)) / ref.norm(dim=(1, 2))).mean())
        if method == "single":
            # the solve lowered its objective well below that of zero coefficients
            data = m._collocation(u0, torch.Generator().manual_seed(0))
            flat = [d[:, 0] for d in data]
            r0 = _residual(m.phys)(torch.zeros(2, cfg.n_basis, dtype=torch.float64), *flat)
            assert (m.last_solve.residual_norm < 0.5 * r0.norm(dim=-1)).all()
    assert errs["single"] < 0.5 < errs["soft"]


def test_train_hardc_resumes_and_reuses(tmp_path) -> None:
    from sciml_recipes.hardc.run import train_hardc

    cfg = HardCConfig(**SMALL)
    m1 = train_hardc("single", cfg, steps=3, tasks=16, out_dir=tmp_path / "a", progress=False)
    assert (tmp_path / "a" / "model.pt").exists()
    m2 = train_hardc("single", cfg, steps=3, tasks=16, out_dir=tmp_path / "a", progress=False)
    for p, q in zip(m1.parameters(), m2.parameters()):
        torch.testing.assert_close(p, q)
    with pytest.raises(ValueError, match="method"):
        train_hardc("hard", cfg, steps=1)
    with pytest.raises(ValueError, match="steps"):
        train_hardc("soft", cfg, steps=0)


def test_cli_train_hardc_writes_results(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    assert main(["train", "hardc", "--out", str(out), "--steps", "2", "--points", "64",
                 "--n-basis", "6", "--no-progress"]) == 0
    data = json.loads((out / "hard_constraints.json").read_text())
    rows = {(r["method"], r["metric"]): r["value"] for r in data["rows"]}
    # the reported errors are those of the saved models, recomputed here against the
    # finite-volume reference with the same seeded collocation points
    from dataclasses import fields

    from sciml_recipes.hardc.run import TEST_U0, train_hardc

    names = {f.name for f in fields(HardCConfig)}
    cfg = HardCConfig(**{k: v for k, v in data["settings"].items() if k in names})
    u = torch.tensor(list(TEST_U0), dtype=torch.float64)
    ref, grid = reference(u, n=256, nt=26)
    for method in ("soft", "single", "moe"):
        model = train_hardc(method, cfg, steps=2, out_dir=out / method, progress=False)
        with torch.no_grad():
            c = model.coefficients(u, torch.Generator().manual_seed(1234))
            pred = model.field(u, grid.float(), c)[0].reshape(ref.shape).double()
        err = ((pred - ref).norm(dim=(1, 2)) / ref.norm(dim=(1, 2))).mean()
        assert rows[(method, "rel_l2")] == pytest.approx(float(err), rel=1e-6)
    assert rows[("single", "lm_iterations")] >= 1
    assert (out / "hard_constraints.png").stat().st_size > 0
    assert "rel L2" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:  # refused by argparse, naming the option
        main(["train", "hardc", "--out", str(out), "--steps", "0"])
    assert e.value.code == 2


def test_demo_hardc_quick(tmp_path) -> None:
    assert main(["demo", "hardc", "--quick", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "hardc_diffusion_sorption.png").exists()


def test_chained_slabs_start_where_the_previous_one_ends() -> None:
    # the defining criterion of the chain: slab k's state at its start time matches slab
    # k - 1's there (to the least-squares fit), far better than independent experts do
    cfg = HardCConfig(points=256, loss_points=64, ic_points=64, bc_points=32, max_iter=30)
    u0 = torch.tensor([0.05, 0.15])
    x = torch.linspace(0.02, 0.98, 25)
    jumps = {}
    for method in ("moe", "moe-chain"):
        torch.manual_seed(0)
        m = DiffSorpModel(method, cfg).eval()
        with torch.no_grad():
            c = m.coefficients(u0, torch.Generator().manual_seed(0))
            j = []
            for k in range(1, cfg.experts):
                face = k / cfg.experts
                lo = m.field(u0, torch.stack([x, torch.full_like(x, face - 1e-4)], -1), c)[0]
                hi = m.field(u0, torch.stack([x, torch.full_like(x, face + 1e-4)], -1), c)[0]
                j.append((hi - lo).abs().max())
            jumps[method] = float(torch.stack(j).max())
    assert jumps["moe-chain"] < 0.2 * jumps["moe"]
    # gradients reach the basis network through every link of the chain
    torch.manual_seed(0)
    m = DiffSorpModel("moe-chain", HardCConfig(**SMALL))
    m.loss(torch.tensor([0.1]), torch.Generator().manual_seed(0)).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.net.parameters())
    with pytest.raises(ValueError, match="split='t'"):
        DiffSorpModel("moe-chain", HardCConfig(split="x"))
