"""The CPU path choice measured per shape: timed once, kept, and off with calibration off."""

from __future__ import annotations

import torch

from sciml.spectral import _paths, best_order, choose_method

CPU = torch.device("cpu")


def test_a_large_shape_is_timed_once_and_its_answer_used(monkeypatch, tmp_path):
    monkeypatch.setenv("SCIML_CALIBRATION", str(tmp_path / "cal.json"))
    calls = []

    def fake(lead, grid, kept, r2c):
        calls.append((lead, grid, kept, r2c))
        return ("fft", (1, 0)) if r2c else ("dft", (1, 0))

    monkeypatch.setattr(_paths, "_MEASURED", {})
    monkeypatch.setattr(_paths, "_time_paths", fake)
    lead, grid, kept = 64, (64, 64), (16, 9)
    assert choose_method(CPU, lead, grid, kept, True) == "fft"
    assert choose_method(CPU, lead, grid, kept, False) == "dft"
    assert best_order(lead, grid, kept, False, measured=True)[0] == (1, 0)
    assert choose_method(CPU, lead, grid, kept, True) == "fft"
    assert len(calls) == 2  # one timing per (shape, direction)
    # a small transform is left to the cost model
    choose_method(CPU, 1, (16, 16), (4, 3), True)
    assert len(calls) == 2


def test_real_timing_returns_a_valid_plan(monkeypatch, tmp_path):
    monkeypatch.setenv("SCIML_CALIBRATION", str(tmp_path / "cal.json"))
    monkeypatch.setattr(_paths, "_MEASURED", {})
    for r2c in (True, False):
        method, order = _paths.measured_plan(8, (64, 64, 8), (8, 8, 3), r2c)
        assert method in ("fft", "dft") and sorted(order) == [0, 1, 2]


def test_nothing_is_timed_with_calibration_off(monkeypatch):
    monkeypatch.setenv("SCIML_CALIBRATION", "off")
    monkeypatch.setattr(_paths, "_MEASURED", {})
    assert _paths.measured_plan(512, (64, 64), (16, 9), True) is None
    assert choose_method(CPU, 512, (64, 64), (16, 9), True) in ("fft", "dft")
    assert _paths._MEASURED == {}
