"""The spectral layer on (simulated) CUDA: host syncs, host-to-device copies, method choice.

* SpectralConv (1D/2D/3D, fft and dft paths) forward + backward on cuda: after a warm-up
  call no blocking host-to-device copy and no host sync (besides the one documented
  boundary scan of a direct call), results equal to the CPU run;
* FNO / SFNO forward + backward: one sync per forward (the boundary finiteness scan),
  none in the backward, no copies;
* ``method="triton"`` wiring and ``method="auto"`` on CUDA: Triton (or the dft path) only
  where a GPU timing recorded for a matching case says it is faster;
* the calibration store: CPU constants measured once per machine (a fake measurement
  here), stored atomically, reused, ``SCIML_CALIBRATION=off``.

Every test runs with ``SCIML_CALIBRATION`` pointing at a temporary file or ``off``: the
suite never reads or writes the user's store and never depends on this machine's speed.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import assert_close_rel

import sciml
from sciml.operators import FNO, SFNO, FourierBlock
from sciml.spectral import SpectralConv, _calibration, _paths, choose_method, record_gpu_timings

F32 = torch.float32


@pytest.fixture(autouse=True)
def _builtin_calibration(monkeypatch):
    """Built-in cost-model constants and no GPU records unless a test says otherwise."""
    monkeypatch.setenv(_calibration.ENV, "off")
    _calibration.reset()
    yield
    _calibration.reset()


@pytest.fixture
def store(monkeypatch, tmp_path):
    """A fresh calibration store in a temporary folder (``SCIML_CALIBRATION`` set to it)."""
    path = tmp_path / "cal" / "calibration.json"
    monkeypatch.setenv(_calibration.ENV, str(path))
    monkeypatch.setattr(_calibration, "_busy", lambda: False)  # whatever else runs here
    _calibration.reset()
    return path


CASES = [((12,), (4,), None), ((8, 10), (3, 4), None), ((6, 8, 6), (2, 3, 2), (8, 8, 5))]
IDS = ["1d", "2d", "3d-resampled"]


def _pair(modes, out_shape, method):
    """The same float32 layer on the CPU and on (simulated) cuda."""
    torch.manual_seed(0)
    cpu = SpectralConv(3, 2, modes, out_shape=out_shape, method=method)
    with torch.no_grad():
        cpu.bias.normal_()
    gpu = SpectralConv(3, 2, modes, out_shape=out_shape, method=method).cuda()
    gpu.load_state_dict(cpu.state_dict())
    return cpu, gpu


@pytest.mark.parametrize("method", ["fft", "dft"])
@pytest.mark.parametrize("grid, modes, out_shape", CASES, ids=IDS)
def test_spectral_conv_on_cuda_copies_nothing_and_syncs_only_at_its_boundary(
        simcuda, grid, modes, out_shape, method):
    cpu, gpu = _pair(modes, out_shape, method)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, *grid, generator=gen)
    w = torch.randn(2, 2, *(out_shape or grid), generator=gen)
    xg, wg = x.cuda().requires_grad_(), w.cuda()
    (gpu(xg) * wg).sum().backward()  # warm-up: the device constants are built and cached
    xg.grad = None
    gpu.zero_grad()

    with simcuda.count() as c, sciml.checks(finite=False):
        y = gpu(xg)
        (y * wg).sum().backward()
    assert (c.syncs, c.h2d) == (0, 0), c.report()
    # a direct call is a public boundary: its NaN/Inf scan is the one sync, nothing else
    with simcuda.count() as c:
        with torch.no_grad():
            gpu(xg)
    assert (c.syncs, c.h2d) == (1, 0), c.report()
    # the models' path: no scan at all
    with simcuda.count() as c:
        with torch.no_grad():
            gpu._forward(xg, None, check_values=False)
    assert (c.syncs, c.h2d) == (0, 0), c.report()

    xc = x.clone().requires_grad_()
    yc = cpu(xc)
    (yc * w).sum().backward()
    assert y.is_cuda and xg.grad.is_cuda and gpu.weight.grad.is_cuda
    assert_close_rel(y, yc, F32)
    assert_close_rel(xg.grad, xc.grad, F32)
    assert_close_rel(gpu.weight.grad, cpu.weight.grad, F32)
    assert_close_rel(gpu.bias.grad, cpu.bias.grad, F32)


def test_transforms_and_calculus_copy_nothing_after_the_first_call(simcuda):
    from sciml.spectral import irfftn_truncated, rfftn_truncated, sobolev_norm

    u = torch.randn(2, 3, 8, 10, generator=torch.Generator().manual_seed(0)).cuda()
    u.requires_grad_()

    def run():
        for method in ("fft", "dft"):
            c = rfftn_truncated(u, (3, 4), method=method)
            irfftn_truncated(c, (8, 12), method=method).square().sum().backward()
        sobolev_norm(u.detach(), -1.0)

    run()
    with simcuda.count() as c, sciml.checks(finite=False):
        run()
    assert (c.syncs, c.h2d) == (0, 0), c.report()


def _fno_pair():
    torch.manual_seed(0)
    cpu = FNO(2, 1, 8, (3, 4), layers=4)
    gpu = FNO(2, 1, 8, (3, 4), layers=4).cuda()
    gpu.load_state_dict(cpu.state_dict())
    return cpu, gpu, torch.randn(2, 2, 10, 12, generator=torch.Generator().manual_seed(2))


def _sfno_pair(out_steps):
    torch.manual_seed(0)
    cpu = SFNO(3, 3, 8, layers=4, out_steps=out_steps)
    gpu = SFNO(3, 3, 8, layers=4, out_steps=out_steps).cuda()
    gpu.load_state_dict(cpu.state_dict())
    return cpu, gpu, torch.randn(2, 6, 10, 10, generator=torch.Generator().manual_seed(2))


@pytest.mark.parametrize("make", [_fno_pair, lambda: _sfno_pair(None), lambda: _sfno_pair(8)],
                         ids=["fno", "sfno", "sfno-out-steps"])
def test_model_forward_syncs_once_and_backward_never(simcuda, make):
    cpu, gpu, x = make()
    xg = x.cuda()
    gpu(xg).square().mean().backward()  # warm-up
    gpu.zero_grad()

    with simcuda.count() as fwd:
        y = gpu(xg)
    loss = y.square().mean()
    with simcuda.count() as bwd:
        loss.backward()
    assert (fwd.syncs, fwd.h2d) == (1, 0), fwd.report()  # the boundary scan of x
    assert "check_finite" in fwd.events[0].where
    assert (bwd.syncs, bwd.h2d) == (0, 0), bwd.report()
    with simcuda.count() as c, sciml.checks(finite=False):
        gpu(xg).square().mean().backward()
    assert (c.syncs, c.h2d) == (0, 0), c.report()

    yc = cpu(x)
    yc.square().mean().backward()
    assert_close_rel(y, yc, F32, factor=10)
    grads = dict(cpu.named_parameters())
    for name, p in gpu.named_parameters():
        assert p.grad is not None and p.grad.is_cuda, name
        # the second fwd+bwd above accumulated onto the first
        assert_close_rel(p.grad, 2 * grads[name].grad, F32, factor=100, msg=name)


def test_value_scans_stay_at_every_public_boundary():
    bad = torch.randn(1, 4, 8, 8)
    bad[0, 1, 2, 3] = float("nan")
    layer = SpectralConv(4, 4, (3, 3))
    block = FourierBlock(4, (3, 3))
    fno = FNO(4, 1, 4, (3, 3), layers=2)
    sfno = SFNO(3, 2, 4, layers=2)
    for f in (layer, block, fno, sfno, sfno.latent):
        with pytest.raises(ValueError, match="non-finite"):
            f(bad)
        with sciml.checks(finite=False):
            assert torch.isnan(f(bad)).any()


# ---------------------------------------------------------------------------------------
# method="triton" and the GPU choice of method="auto"


class _FakeTriton:
    """Stands in for sciml.spectral._triton (no Triton kernels run under SimCuda)."""

    def __init__(self, available=True):
        self.calls = []
        self._available = available

    def available(self):
        return self._available

    def spectral_conv_triton(self, x, weight, bias, modes, out_shape):
        self.calls.append((tuple(x.shape), weight, bias, modes, out_shape))
        return torch.zeros(x.shape[0], weight.shape[-2], *out_shape, dtype=x.dtype,
                           device=x.device)


@pytest.fixture
def fake_triton(monkeypatch):
    from sciml.spectral import _triton

    fake = _FakeTriton()
    monkeypatch.setattr(_triton, "available", fake.available)
    monkeypatch.setattr(_triton, "spectral_conv_triton", fake.spectral_conv_triton)
    return fake


def test_method_triton_calls_the_fused_kernel_with_the_fixed_signature(simcuda, fake_triton):
    layer = SpectralConv(3, 5, (3, 4), method="triton").cuda()
    x = torch.randn(2, 3, 8, 10).cuda()
    y = layer(x, (9, 10))
    assert y.is_cuda and tuple(y.shape) == (2, 5, 9, 10)
    (shape, weight, bias, modes, target), = fake_triton.calls
    assert shape == (2, 3, 8, 10) and weight is layer.weight and bias is layer.bias
    assert modes == (3, 4) and target == (9, 10)


def test_method_triton_without_triton_or_a_gpu_says_so(fake_triton):
    fake_triton._available = False
    layer = SpectralConv(2, 2, (3,), method="triton")
    with pytest.raises(RuntimeError, match=r"method='triton'\) needs Triton.*method='fft'"):
        layer(torch.randn(1, 2, 8))


def _rows(grid=(8, 10), batch=2, **times):
    """Timing rows of one case: ``times`` maps "method" or "method_metric" to ms."""
    rows = []
    for key, ms in times.items():
        method, _, metric = key.partition("_")
        for m in ((metric + "_ms",) if metric else ("fwd_ms", "fwd_bwd_ms")):
            rows.append({"batch": batch, "in_channels": 3, "out_channels": 5,
                         "modes": [3, 4], "grid": list(grid), "dtype": "float32",
                         "method": method, "metric": m.replace("fwdbwd", "fwd_bwd"),
                         "value": ms})
    return rows


def _choice(layer, x, *, grad=False):
    with torch.set_grad_enabled(grad):
        return layer._method_for(x.requires_grad_(grad), tuple(x.shape[2:]))


def test_auto_on_cuda_takes_triton_only_from_a_recorded_faster_measurement(
        simcuda, store, fake_triton):
    layer = SpectralConv(3, 5, (3, 4)).cuda()
    x = torch.randn(2, 3, 8, 10).cuda()
    dev = x.device
    assert _choice(layer, x) == "fft"  # nothing measured: the FFT path, never an assumption

    record_gpu_timings(_rows(triton=1.0), device=dev)  # no FFT timing to beat
    assert _choice(layer, x) == "fft"
    record_gpu_timings(_rows(fft=2.0, dft=3.0), device=dev)
    assert _choice(layer, x) == "triton"
    saved = json.loads(store.read_text())
    assert saved["format"] == 1 and len(saved["gpu"][_calibration.gpu_key(dev)]) == 6

    # the batch may differ by a factor of two; the grid, channels and modes must match
    assert _choice(layer, torch.randn(4, 3, 8, 10).cuda()) == "triton"
    assert _choice(layer, torch.randn(8, 3, 8, 10).cuda()) == "fft"
    assert _choice(layer, torch.randn(2, 3, 8, 12).cuda()) == "fft"
    assert _choice(SpectralConv(3, 4, (3, 4)).cuda(), x) == "fft"
    assert _choice(SpectralConv(3, 5, (3, 3)).cuda(), x) == "fft"

    # training compares forward + backward, inference the forward alone
    record_gpu_timings(_rows(triton_fwdbwd=9.0), device=dev)
    assert _choice(layer, x, grad=True) == "fft"
    assert _choice(layer, x, grad=False) == "triton"

    # a faster pruned path is taken the same way
    record_gpu_timings(_rows(dft_fwd=0.5), device=dev)
    assert _choice(layer, x) == "dft"

    # measured faster, but this process cannot run Triton: the FFT path
    record_gpu_timings(_rows(dft=5.0), device=dev)
    fake_triton._available = False
    assert _choice(layer, x) == "fft"
    fake_triton._available = True

    # the forward really goes through the fused kernel
    with torch.no_grad():
        layer(x)
    assert len(fake_triton.calls) == 1
    # another GPU model's timings do not count
    monkey_key = _calibration._GPU_NAMES
    monkey_key[dev.index] = "another GPU"
    try:
        _calibration.reset()
        assert _choice(layer, x) == "fft"
    finally:
        monkey_key.pop(dev.index)
    # on the CPU "auto" stays the per-transform cost model
    assert SpectralConv(3, 5, (3, 4))._method_for(torch.randn(2, 3, 8, 10), (8, 10)) == "auto"


def test_gpu_records_are_refused_when_malformed_and_ignored_when_off(store, monkeypatch):
    dev = torch.device("cuda")
    with pytest.raises(ValueError, match="CUDA device"):
        record_gpu_timings(_rows(fft=1.0), device="cpu")
    with pytest.raises(ValueError, match="lacks"):
        record_gpu_timings([{"method": "fft", "metric": "fwd_ms", "value": 1.0}], device=dev)
    with pytest.raises(ValueError, match="method"):
        record_gpu_timings(_rows(cufft=1.0), device=dev)
    with pytest.raises(ValueError, match="positive time"):
        record_gpu_timings(_rows(fft=-1.0), device=dev)
    with pytest.raises(TypeError, match="dict"):
        record_gpu_timings(["fft"], device=dev)
    assert not store.exists()
    monkeypatch.setenv(_calibration.ENV, "off")
    assert record_gpu_timings(_rows(fft=1.0), device=dev) is None


# ---------------------------------------------------------------------------------------
# CPU calibration: measured once per machine, stored, reused


class _FakeMeasure:
    def __init__(self, **values):
        self.calls = 0
        self.values = {**_calibration.BUILTIN_CPU, **values}

    def __call__(self):
        self.calls += 1
        return dict(self.values)


def test_cpu_constants_are_measured_once_and_stored_per_machine(store):
    fake = _FakeMeasure(sgemm_flops=81e9)
    consts = _calibration.cpu_constants(measure=fake)
    assert fake.calls == 1 and consts["sgemm_flops"] == 81e9
    saved = json.loads(store.read_text())
    entry = saved["cpu"][_calibration.machine_key()]
    assert entry["sgemm_flops"] == 81e9 and "measured" in entry
    assert [p.name for p in store.parent.iterdir()] == ["calibration.json"]  # no temp left

    assert _calibration.cpu_constants(measure=fake) == consts  # memo
    _calibration.reset()  # a new process: read back from the file, not measured again
    assert _calibration.cpu_constants(measure=fake) == consts
    assert fake.calls == 1

    # another thread count is another machine
    n = torch.get_num_threads()
    torch.set_num_threads(n + 1)
    try:
        assert _calibration.cpu_constants(measure=_FakeMeasure(sgemm_flops=230e9)
                                          )["sgemm_flops"] == 230e9
    finally:
        torch.set_num_threads(n)
    assert len(json.loads(store.read_text())["cpu"]) == 2


def test_a_measurement_on_a_busy_machine_is_used_but_not_stored(store, monkeypatch):
    monkeypatch.setattr(_calibration, "_busy", lambda: True)
    fake = _FakeMeasure(sgemm_flops=90e9)
    assert _calibration.cpu_constants(measure=fake)["sgemm_flops"] == 90e9
    assert not store.exists()
    _calibration.reset()  # the next process measures again
    _calibration.cpu_constants(measure=fake)
    assert fake.calls == 2


def test_cpu_calibration_off_keeps_the_builtin_constants(monkeypatch, tmp_path):
    fake = _FakeMeasure(sgemm_flops=1e9)
    for value in ("off", "OFF", "0", "none"):
        monkeypatch.setenv(_calibration.ENV, value)
        _calibration.reset()
        assert _calibration.store_path() is None
        assert _calibration.cpu_constants(measure=fake) == _calibration.BUILTIN_CPU
    assert fake.calls == 0
    monkeypatch.delenv(_calibration.ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert _calibration.store_path() == tmp_path / "sciml" / "calibration.json"


def test_implausible_or_failed_measurements_fall_back_to_the_builtins(store):
    fake = _FakeMeasure(sgemm_flops=float("nan"), copy_bytes_per_s=-1.0, rfftn_s=3e-11)
    consts = _calibration.cpu_constants(measure=fake)
    builtin = _calibration.BUILTIN_CPU
    assert consts == {**builtin, "rfftn_s": 3e-11}

    _calibration.reset()
    store.unlink()

    def broken():
        raise RuntimeError("no timer")

    with pytest.warns(RuntimeWarning, match="CPU calibration failed"):
        assert _calibration.cpu_constants(measure=broken) == builtin
    assert not store.exists()


def test_an_unreadable_store_is_left_alone(store):
    store.parent.mkdir(parents=True)
    store.write_text("{not json")
    fake = _FakeMeasure(sgemm_flops=100e9)
    with pytest.warns(RuntimeWarning, match="cannot be read"):
        assert _calibration.cpu_constants(measure=fake)["sgemm_flops"] == 100e9
    assert store.read_text() == "{not json"


def test_the_cost_model_uses_this_machines_constants(store, monkeypatch):
    case = (32, (64, 64), (16, 9), True)
    # the model's own answer (large shapes are otherwise timed: test_spectral_measured_choice)
    monkeypatch.setattr(_paths, "MEASURE_MIN_ELEMENTS", 1 << 62)
    monkeypatch.setenv(_calibration.ENV, "off")
    builtin_choice = choose_method(torch.device("cpu"), *case)
    monkeypatch.setenv(_calibration.ENV, str(store))
    _calibration.cpu_constants(measure=_FakeMeasure(sgemm_flops=1e15, copy_bytes_per_s=1e14,
                                                    rfftn_s=1e-6, irfftn_s=1e-6))
    assert choose_method(torch.device("cpu"), *case) == "dft"
    _, cost = _paths.best_order(32, (64, 64), (16, 9), True)
    monkeypatch.setenv(_calibration.ENV, str(store.with_name("other.json")))
    _calibration.cpu_constants(measure=_FakeMeasure(sgemm_flops=1e8, copy_bytes_per_s=1e8,
                                                    rfftn_s=1e-14, irfftn_s=1e-14))
    assert choose_method(torch.device("cpu"), *case) == "fft"
    assert _paths.best_order(32, (64, 64), (16, 9), True)[1] > 1000 * cost
    monkeypatch.setenv(_calibration.ENV, "off")
    assert choose_method(torch.device("cpu"), *case) == builtin_choice


def test_measure_cpu_returns_plausible_constants():
    # functional only (the values depend on the machine): four positive finite numbers
    # inside the plausible ranges, with no random stream consumed
    state = torch.get_rng_state()
    got = _calibration.measure_cpu(budget_s=0.05)
    assert torch.equal(state, torch.get_rng_state())
    assert set(got) == set(_calibration.BUILTIN_CPU)
    for k, v in got.items():
        lo, hi = _calibration._RANGES[k]
        assert math.isfinite(v) and lo <= v <= hi, (k, v)
