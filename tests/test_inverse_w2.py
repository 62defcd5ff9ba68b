"""The cycle-skipping experiment (sciml_recipes.cycle_skipping) and its demo part.

References: the forward map against an exact grid translation (``np.roll``) and central
finite differences; the W2 misfit of grid-translated pulses against the squared shift
(exact for the debiased Sinkhorn divergence of a translation). Defining criteria: W2
converges where L2 is trapped, a start at the truth stays there, the L2 landscape has
several local minima and the W2 landscape one.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sciml.inverse import InverseStatus
from sciml_recipes.cycle_skipping import (
    ShiftedPulse,
    cycle_skipping,
    cycle_skipping_problems,
    plot_cycle_skipping,
    recover_positions,
)
from sciml_recipes.demo import PARTS

DT = torch.float64
P_TRUE = 0.3


@pytest.fixture(scope="module")
def small():
    return cycle_skipping(8, seed=0, true_position=P_TRUE, n_landscape=41)


def _local_minima(v: np.ndarray) -> int:
    return int(((v[1:-1] < v[:-2]) & (v[1:-1] < v[2:])).sum())


def test_forward_map_is_an_exact_translation_with_the_right_gradient():
    pulse = ShiftedPulse()
    h = 1.0 / pulse.n
    p = torch.tensor([[0.2]], dtype=DT)
    base = pulse(p)[0].numpy()
    for k in (1, 5, -7):
        moved = pulse(p + k * h)[0].numpy()
        np.testing.assert_allclose(moved, np.roll(base, k), atol=1e-12)
    pr = p.clone().requires_grad_(True)
    v = torch.linspace(-1, 1, pulse.n, dtype=DT)
    (g,) = torch.autograd.grad((pulse(pr) * v).sum(), pr)
    eps = 1e-6
    fd = ((pulse(p + eps) - pulse(p - eps)) * v).sum() / (2 * eps)
    assert abs(float(g) - float(fd)) < 1e-6 * max(1.0, abs(float(fd)))
    with pytest.raises(ValueError, match=r"\(B, 1\)"):
        pulse(torch.zeros(3, dtype=DT))


def test_w2_of_translated_pulses_is_the_squared_shift():
    pulse = ShiftedPulse()
    w2 = cycle_skipping_problems(pulse, true_position=P_TRUE)["w2"].misfit
    h = 1.0 / pulse.n
    shifts = torch.tensor([-20, -6, 3, 15], dtype=DT) * h
    ref = pulse(torch.tensor([[P_TRUE]], dtype=DT))
    value = w2(pulse(P_TRUE + shifts[:, None]), ref)
    torch.testing.assert_close(value, shifts**2, rtol=1e-5, atol=1e-9)


def test_w2_converges_where_l2_is_trapped(small):
    s = small["setup"]
    assert s["tolerance"] == pytest.approx(s["wavelength"] / 4)
    assert small["w2"]["converged_fraction"] > small["l2"]["converged_fraction"]
    assert small["w2"]["converged_fraction"] == 1.0
    far = small["signals"]["far_index"]
    start = small["starts"][far]
    assert abs(start - P_TRUE) == pytest.approx(np.abs(small["starts"] - P_TRUE).max())
    assert abs(start - P_TRUE) > 3 * s["wavelength"]  # several cycles away
    assert small["w2"]["converged"][far]
    assert abs(small["w2"]["final"][far] - P_TRUE) < s["tolerance"]
    # from there L2 ends in a local minimum at least one wavelength-ish from the truth
    assert abs(small["l2"]["final"][far] - P_TRUE) > 0.5 * s["wavelength"]
    # the landscapes behind it: many local minima for L2, one basin for W2
    land = small["landscape"]
    assert _local_minima(land["l2"]) >= 4
    assert _local_minima(land["w2"]) == 1
    assert abs(land["position"][np.argmin(land["w2"])] - P_TRUE) < s["tolerance"]


def test_every_reported_value_is_finite_and_rows_have_the_shared_shape(small):
    starts = small["starts"]
    assert starts.shape == (8,)
    assert np.all(np.abs(starts - P_TRUE) <= small["setup"]["start_radius"])
    names = {st.name for st in InverseStatus}
    for k in ("l2", "w2"):
        r = small[k]
        assert r["final"].shape == (8,) and np.all(np.isfinite(r["final"]))
        assert np.all((r["final"] >= 0) & (r["final"] < 1))
        assert len(r["codes"]) == 8 and set(r["codes"]) <= names
        assert r["time_s"] > 0
    for v in small["landscape"].values():
        assert np.all(np.isfinite(v))
    rows = small["rows"]
    assert {(r["method"], r["metric"]) for r in rows} == {
        (m, k) for m in ("l2", "w2") for k in ("converged_fraction", "time_s", "n_starts")}
    assert all(r["case"] == "w2-vs-l2" and r["impl"] == "sciml" for r in rows)
    assert all(isinstance(r["value"], (int, float)) for r in rows)


def test_a_start_at_the_truth_stays_there():
    problems = cycle_skipping_problems(true_position=P_TRUE)
    for k, problem in problems.items():
        r = recover_positions(problem, [P_TRUE])
        assert abs(float(r["final"][0]) - P_TRUE) < 0.01, (k, r["final"])
        assert r["codes"] == ["CONVERGED"]


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="n_starts"):
        cycle_skipping(0)
    with pytest.raises(ValueError, match="start_radius"):
        cycle_skipping(2, start_radius=0.6)
    with pytest.raises(ValueError, match="noise_std"):
        cycle_skipping_problems(noise_std=0.0)
    with pytest.raises(ValueError, match="starts is empty"):
        recover_positions(cycle_skipping_problems()["l2"], [])
    with pytest.raises(ValueError, match="wavelength"):
        ShiftedPulse(wavelength=-1.0)


def test_figure(small, tmp_path):
    fig = plot_cycle_skipping(small, tmp_path / "cs.png")
    assert fig.exists() and fig.stat().st_size > 0


def test_demo_part_inverse_quick(tmp_path):
    res = PARTS["inverse"](tmp_path, quick=True, seed=0)
    assert res.name == "inverse" and all(f.exists() for f in res.figures)
    frac = {row["case"].split()[1]: row["value"] for row in res.rows
            if row["metric"] == "converged_fraction"}
    assert set(frac) == {"l2", "w2"}
    assert frac["w2"] == 1.0 and frac["w2"] > frac["l2"]
    # the Navier-Stokes part: better than the prior mean (rel L2 1) and calibrated
    ns = {row["metric"]: row["value"] for row in res.rows if row["case"].startswith("ns ")}
    assert ns["rel_l2"] < 0.8
    assert 0.8 <= ns["calibration_2sd"] <= 1.0
    assert len(res.figures) == 2


def test_w2_misfit_default_tol_follows_the_dtype():
    """tol=None takes the dtype's Sinkhorn default, so a float32 misfit converges; the
    float64 tolerance asked of float32 stalls at the rounding floor and raises."""
    from sciml.inverse import W2Misfit
    from sciml.solvers.ot import OTError

    x = torch.linspace(0, 1, 64, dtype=torch.float64)
    p = torch.exp(-(x - 0.4) ** 2 / 0.01)[None]
    d = torch.exp(-(x - 0.6) ** 2 / 0.01)[None]
    ref = W2Misfit(grid=x, reg=1e-2)(p, d)
    got = W2Misfit(grid=x, reg=1e-2)(p.float(), d.float())
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), ref, rtol=1e-3, atol=1e-6)
    with pytest.raises(OTError, match=r"STALLED|MAX_ITER"):
        W2Misfit(grid=x, reg=1e-2, tol=1e-9)(p.float(), d.float())
