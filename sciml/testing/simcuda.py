"""Simulated CUDA: run a CUDA code path on the CPU, catch device mistakes, count host syncs.

Inside ``with SimCuda() as sim:`` tensors created on (or moved to) ``"cuda"`` are ordinary
CPU tensors that *report* ``cuda:0`` (``x.device``, ``x.is_cuda``, ``x.get_device()``), and
``torch.cuda.is_available()`` is ``True``. Everything computes on the CPU, so a script that
runs here runs its real CUDA branch (``if x.device.type == "cuda"``), and the mistakes that
would crash or stall a GPU are caught without one:

* **device mixing**: an operation that combines a cuda tensor with a CPU tensor of one or
  more dimensions raises :class:`SimCudaError` (0-dim CPU tensors are allowed, as on a
  GPU); advanced indexing of a cuda tensor with CPU indices is allowed but counted as a
  blocking host-to-device copy, as CUDA does;
* **host round trips**: ``numpy()`` of a cuda tensor raises, as on a GPU; a CPU
  ``torch.Generator`` passed to a cuda factory raises;
* **host synchronisations** are counted (``sim.syncs``): ``item()``, ``bool()``, ``float()``,
  ``tolist()``, ``nonzero``, boolean-mask indexing, ``unique``, ``masked_select``, copies to
  the CPU and ``torch.cuda.synchronize()``;
* **blocking host-to-device copies** are counted (``sim.h2d``): ``.to("cuda")`` or
  ``.cuda()`` of a CPU tensor without ``non_blocking=True``, ``torch.tensor(data,
  device="cuda")``, a CPU tensor copied into a cuda one, CPU index tensors.

Each counted event keeps the first frame of the caller's code (``sim.events``), so a
failing budget says where the sync happened. ``sim.count()`` measures one block::

    with SimCuda() as sim:
        model = model.to("cuda")
        with sim.count() as c:
            loss = model(x.cuda()).square().mean()
        assert c.syncs == 0, c.report()

How it works: a :class:`~torch.overrides.TorchFunctionMode` answers the Python-level
calls (device queries, factories with ``device=``, ``.to``/``.cuda``/``.cpu``, ``numpy``),
and a :class:`~torch.utils._python_dispatch.TorchDispatchMode` sees every ATen operation,
including those of the autograd backward, to propagate the "on cuda" mark from inputs to
outputs, check mixing and count syncs. The mark lives on tensor storages (so views,
``param.data = t`` and in-place updates keep it). The two modes slow every operation by
tens of microseconds: use small problems.

Not simulated: streams and events (``torch.cuda.Event`` times on the host), memory limits,
kernels of other libraries (Triton, numba) and numerical differences of GPU kernels.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import traceback
import types
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map

__all__ = ["Counts", "SimCuda", "SimCudaError", "active"]

_CUDA = torch.device("cuda", 0)
_CPU = torch.device("cpu")
_aten = torch.ops.aten

# ATen operations that wait for the device before they can return (their result's size or
# value lives on the host)
_SYNC_OPS = {
    _aten._local_scalar_dense.default,
    _aten.nonzero.default,
    _aten.nonzero_static.default if hasattr(_aten, "nonzero_static") else None,
    _aten.masked_select.default,
    _aten._unique2.default,
    _aten.unique_dim.default,
    _aten.unique_consecutive.default,
    _aten.equal.default,
    _aten.repeat_interleave.Tensor,
    # torch.linalg.solve / cholesky / inv read their error flag on the host
    _aten._linalg_check_errors.default,
}
_SYNC_OPS.discard(None)
# indexing ops that accept CPU index tensors for cuda data (the indices are copied over)
_INDEX_OPS = {
    _aten.index.Tensor,
    _aten.index_put.default,
    _aten.index_put_.default,
    _aten._index_put_impl_.default,
}
_COPY_OPS = {_aten.copy_.default, _aten.copy.default}
# factories that copy host data to the device when asked for cuda
_DATA_FACTORIES = {torch.tensor, torch.as_tensor, torch.asarray, torch.Tensor.new_tensor}

_HERE = os.path.dirname(os.path.abspath(__file__))
_TORCH_DIR = os.path.dirname(os.path.abspath(torch.__file__))


class SimCudaError(RuntimeError):
    """A device mistake that would fail on a real GPU (message says which and where)."""


@dataclass
class Event:
    """One counted event: ``kind`` ("sync" or "h2d"), the operation, the caller's frame."""

    kind: str
    op: str
    where: str


@dataclass
class Counts:
    """Syncs and blocking host-to-device copies counted in one block (see ``SimCuda.count``)."""

    syncs: int = 0
    h2d: int = 0
    events: list[Event] = field(default_factory=list)

    def report(self) -> str:
        lines = [f"{self.syncs} host sync(s), {self.h2d} blocking host-to-device copy(ies)"]
        lines += [f"  {e.kind:4s} {e.op:40s} at {e.where}" for e in self.events]
        return "\n".join(lines)


def _caller() -> str:
    """The innermost frame outside torch and this module: where the user code asked."""
    for frame in reversed(traceback.extract_stack()):
        f = os.path.abspath(frame.filename)
        if f.startswith(_TORCH_DIR) or f.startswith(_HERE) or "contextlib" in f:
            continue
        return f"{os.path.relpath(f)}:{frame.lineno} ({frame.name})"
    return "?"


def _storage(t: torch.Tensor):
    try:
        return t.untyped_storage()
    except (RuntimeError, NotImplementedError, TypeError):
        return None  # sparse or other storage-less layouts: marked by object instead


class _SimGenerator(torch.Generator):
    """A CPU generator that reports the device it was asked for."""

    def __new__(cls, device: object = "cpu"):
        return super().__new__(cls, "cpu")

    def __init__(self, device: object = "cpu") -> None:
        dev = torch.device(device) if not isinstance(device, int) else torch.device("cuda", device)
        self._sim_device = _CUDA if dev.type == "cuda" else dev

    @property
    def device(self) -> torch.device:  # type: ignore[override]
        return self._sim_device


class _FakeEvent:
    """``torch.cuda.Event`` stand-in: host timestamps; ``elapsed_time`` counts as a sync."""

    def __init__(self, enable_timing: bool = False, **_: object) -> None:
        self.t: float | None = None

    def record(self, stream: object = None) -> None:
        self.t = time.perf_counter()

    def synchronize(self) -> None:
        _ACTIVE[-1]._event("sync", "cuda.Event.synchronize") if _ACTIVE else None

    def query(self) -> bool:
        return True

    def elapsed_time(self, end: _FakeEvent) -> float:
        if _ACTIVE:
            _ACTIVE[-1]._event("sync", "cuda.Event.elapsed_time")
        return 1e3 * ((end.t or 0.0) - (self.t or 0.0))


_ACTIVE: list[SimCuda] = []
# storages (by their StorageImpl address) and storage-less tensors (by id) marked cuda,
# each dropped by a weakref callback when it dies
_MARKED_STORAGES: dict[int, weakref.ref] = {}
_MARKED_OBJECTS: dict[int, weakref.ref] = {}


def active() -> SimCuda | None:
    """The innermost active :class:`SimCuda`, or ``None``."""
    return _ACTIVE[-1] if _ACTIVE else None


class _Functions(TorchFunctionMode):
    def __init__(self, sim: SimCuda) -> None:
        super().__init__()
        self.sim = sim

    def __torch_function__(self, func, types_, args=(), kwargs=None):
        sim = self.sim
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        owner = getattr(func, "__self__", None)
        if name == "__get__" and owner is not None:  # property getters
            prop = getattr(owner, "__name__", "")
            t = args[0]
            if prop == "device":
                return _CUDA if sim.is_cuda(t) else func(*args)
            if prop == "is_cuda":
                return sim.is_cuda(t)
            if prop == "is_cpu":
                return not sim.is_cuda(t) and func(*args)
            return func(*args, **kwargs)
        if func is torch.Tensor.get_device:
            return 0 if sim.is_cuda(args[0]) else func(*args, **kwargs)
        if func in (torch.Tensor.numpy, torch.Tensor.__array__) and sim.is_cuda(args[0]):
            raise SimCudaError(
                f"{name}() of a cuda tensor (at {_caller()}): a GPU tensor has no host "
                "memory; call .cpu() first (once, outside any hot loop)")
        if func is torch.Tensor.tolist and sim.is_cuda(args[0]):
            sim._event("sync", "Tensor.tolist")
            return func(*args, **kwargs)
        if func is torch.Tensor.pin_memory:
            return args[0]
        if func is torch.Tensor.cuda:
            return self._move(args[0], _CUDA, bool(kwargs.get("non_blocking", False)))
        if func is torch.Tensor.cpu:
            return self._move(args[0], _CPU, False)
        if func is torch.Tensor.to:
            return self._to(args, kwargs)
        dev = kwargs.get("device")
        if dev is not None:
            dev = torch.device(dev) if not isinstance(dev, int) else torch.device("cuda", dev)
            if dev.type == "cuda":
                return self._factory(func, args, kwargs, dev)
        with sim._context(self._touches_cuda(args, kwargs) if dev is None else False):
            return func(*args, **kwargs)

    def _touches_cuda(self, args, kwargs) -> bool:
        flat, _ = tree_flatten((args, kwargs))
        return any(isinstance(a, torch.Tensor) and self.sim.is_cuda(a) for a in flat)

    def _factory(self, func, args, kwargs, dev: torch.device):
        sim = self.sim
        sim._check_index(dev)
        gen = kwargs.get("generator")
        if gen is not None and getattr(gen, "device", _CPU).type != "cuda":
            raise SimCudaError(
                f"{getattr(func, '__name__', func)}(device='cuda', generator=<cpu generator>) "
                f"at {_caller()}: a cuda factory needs a cuda generator, "
                "torch.Generator(device=x.device)")
        if func in _DATA_FACTORIES:
            data = args[1] if func is torch.Tensor.new_tensor else (args[0] if args else None)
            if not (isinstance(data, torch.Tensor) and sim.is_cuda(data)):
                sim._event("h2d", f"{func.__name__}(host data, device=cuda)")
        kwargs = dict(kwargs, device="cpu")
        with sim._context(True), sim._moving("cuda"):
            out = func(*args, **kwargs)
        return sim._mark_all(out)

    def _to(self, args, kwargs):
        t = args[0]
        rest = args[1:]
        if rest and isinstance(rest[0], torch.Tensor):  # t.to(other): other's device and dtype
            other = rest[0]
            target = _CUDA if self.sim.is_cuda(other) else other.device
            return self._move(t, target, bool(kwargs.get("non_blocking", False)),
                              dtype=other.dtype)
        parse = {k: v for k, v in kwargs.items() if k != "copy"}
        dev, dtype, non_blocking, memory_format = torch._C._nn._parse_to(*rest, **parse)
        extra = {} if memory_format is None else {"memory_format": memory_format}
        if dev is None:
            with self.sim._context(self.sim.is_cuda(t)):
                return t.to(*rest, **kwargs)
        return self._move(t, dev, non_blocking, dtype=dtype, copy=bool(kwargs.get("copy")),
                          **extra)

    def _move(self, t, dev: torch.device, non_blocking: bool, *, dtype=None, copy=False,
              **extra):
        sim = self.sim
        src_cuda = sim.is_cuda(t)
        dst_cuda = dev.type == "cuda"
        if dst_cuda:
            sim._check_index(dev)
        kw = dict(extra)
        if dtype is not None:
            kw["dtype"] = dtype
        if src_cuda == dst_cuda:  # no device change: whatever .to would do on its own
            with sim._context(src_cuda):
                return t.to(copy=copy, **kw)
        if dst_cuda and not non_blocking:
            sim._event("h2d", "Tensor.to(cuda)")
        if src_cuda and not dst_cuda:
            sim._event("sync", "Tensor.to(cpu)")
        with sim._moving("cuda" if dst_cuda else "cpu"):
            try:
                out = t.to(copy=True, **kw)  # a fresh storage: the source keeps its device
            except RuntimeError:  # sparse layouts take no copy=
                out = t.to(**kw)
                out = out.clone() if out is t else out
        return sim._mark_all(out) if dst_cuda else out


class _Dispatch(TorchDispatchMode):
    def __init__(self, sim: SimCuda) -> None:
        super().__init__()
        self.sim = sim

    def __torch_dispatch__(self, func, types_, args=(), kwargs=None):
        sim = self.sim
        kwargs = kwargs or {}
        moving = sim._move_state()
        if moving is not None:  # a device move the function layer already accounted for
            out = func(*args, **kwargs)
            return sim._mark_all(out) if moving == "cuda" else out
        flat, _ = tree_flatten((args, kwargs))
        tensors = [a for a in flat if isinstance(a, torch.Tensor)]
        cuda_in = [a for a in tensors if sim.is_cuda(a)]
        if func in _COPY_OPS:
            dst, src = args[0], args[1]
            dcuda, scuda = sim.is_cuda(dst), sim.is_cuda(src)
            if dcuda and not scuda:
                if not (len(args) > 2 and args[2]) and not kwargs.get("non_blocking", False):
                    sim._event("h2d", "copy_(cuda <- cpu)")
            elif scuda and not dcuda:
                sim._event("sync", "copy_(cpu <- cuda)")
            out = func(*args, **kwargs)
            return sim._mark_all(out) if func is _aten.copy.default and dcuda else out
        if cuda_in:
            cpu_in = [a for a in tensors if not sim.is_cuda(a) and a.dim() > 0]
            if cpu_in:
                if func in _INDEX_OPS and sim.is_cuda(args[0]):
                    sim._event("h2d", f"{func} with CPU indices")
                else:
                    shapes = ", ".join(str(tuple(a.shape)) for a in cpu_in)
                    raise SimCudaError(
                        f"{func} mixes cuda tensors with CPU tensor(s) of shape {shapes} "
                        f"(at {_caller()}): build them on the data's device "
                        "(device=x.device) or move them once with .to(x.device)")
            if func in _SYNC_OPS or (func in _INDEX_OPS and _bool_index(args)):
                sim._event("sync", str(func))
            out = func(*args, **kwargs)
            return sim._mark_all(out)
        out = func(*args, **kwargs)
        if not tensors and sim._context_cuda():
            return sim._mark_all(out)
        return out


def _bool_index(args) -> bool:
    idx = args[1] if len(args) > 1 else None
    if not isinstance(idx, (list, tuple)):
        return False
    return any(isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8) for i in idx)


class SimCuda:
    """Context manager: CUDA simulated on the CPU (see the module docstring).

    Args:
        device_count: how many GPUs ``torch.cuda.device_count()`` reports (cuda:N with N
            below it is accepted; every one computes on the CPU and reports ``cuda:0``).

    Attributes:
        syncs, h2d: totals since entry; ``events`` the counted events.
    """

    def __init__(self, *, device_count: int = 1) -> None:
        if not isinstance(device_count, int) or device_count < 1:
            raise ValueError(f"device_count must be a positive int, got {device_count!r}")
        self.device_count = device_count
        self.syncs = 0
        self.h2d = 0
        self.events: list[Event] = []
        # the marks outlive one session on purpose: a tensor made on cuda in one session
        # and cached by a library (a device-keyed cache of constants) is still a cuda
        # tensor in the next one
        self._storages = _MARKED_STORAGES
        self._objects = _MARKED_OBJECTS
        self._tls = threading.local()
        self._counters: list[Counts] = []
        self._saved: list[tuple[object, str, object]] = []
        self._stack = contextlib.ExitStack()

    # -- marks -----------------------------------------------------------------------------
    def is_cuda(self, t: object) -> bool:
        """Whether tensor ``t`` is (simulated) on cuda."""
        if not isinstance(t, torch.Tensor):
            return False
        st = _storage(t)
        if st is None:
            ref = self._objects.get(id(t))
            return ref is not None and ref() is t
        return st._cdata in self._storages

    def _mark(self, t: torch.Tensor) -> None:
        st = _storage(t)
        if st is None:
            objs, key = self._objects, id(t)
            objs[key] = weakref.ref(t, lambda _r, k=key: objs.pop(k, None))
            return
        key = st._cdata
        if key not in self._storages:
            store = self._storages
            self._storages[key] = weakref.ref(st, lambda _r, k=key: store.pop(k, None))

    def _mark_all(self, out):
        def mark(a):
            if isinstance(a, torch.Tensor):
                self._mark(a)
            return a

        tree_map(mark, out)
        return out

    # -- per-thread state ------------------------------------------------------------------
    def _ctx_stack(self) -> list:
        s = getattr(self._tls, "ctx", None)
        if s is None:
            s = self._tls.ctx = []
        return s

    @contextlib.contextmanager
    def _context(self, cuda: bool) -> Iterator[None]:
        s = self._ctx_stack()
        s.append(cuda)
        try:
            yield
        finally:
            s.pop()

    def _context_cuda(self) -> bool:
        s = self._ctx_stack()
        return bool(s and s[-1])

    @contextlib.contextmanager
    def _moving(self, where: str) -> Iterator[None]:
        prev = getattr(self._tls, "moving", None)
        self._tls.moving = where
        try:
            yield
        finally:
            self._tls.moving = prev

    def _move_state(self) -> str | None:
        return getattr(self._tls, "moving", None)

    # -- events ----------------------------------------------------------------------------
    def _event(self, kind: str, op: str) -> None:
        ev = Event(kind, op, _caller())
        self.events.append(ev)
        if kind == "sync":
            self.syncs += 1
        else:
            self.h2d += 1
        for c in self._counters:
            c.events.append(ev)
            if kind == "sync":
                c.syncs += 1
            else:
                c.h2d += 1

    @contextlib.contextmanager
    def count(self) -> Iterator[Counts]:
        """Count the syncs and blocking copies of one block: ``with sim.count() as c:``."""
        c = Counts()
        self._counters.append(c)
        try:
            yield c
        finally:
            self._counters.remove(c)

    def _check_index(self, dev: torch.device) -> None:
        if dev.index is not None and dev.index >= self.device_count:
            raise SimCudaError(f"CUDA error: invalid device ordinal ({dev}; this simulated "
                               f"machine has {self.device_count} device(s))")

    # -- torch.cuda stand-ins --------------------------------------------------------------
    def _patch(self, obj: object, name: str, value: object) -> None:
        self._saved.append((obj, name, getattr(obj, name, None)))
        setattr(obj, name, value)

    def _install(self) -> None:
        cuda = torch.cuda
        sim = self
        current = {"index": 0}

        def set_device(device: object) -> None:
            from torch.cuda._utils import _get_device_index

            i = _get_device_index(device)  # raises ValueError for "cuda" without an index
            sim._check_index(torch.device("cuda", i))
            current["index"] = i

        props = types.SimpleNamespace(name="simulated CUDA (CPU)", total_memory=16 << 30,
                                      multi_processor_count=1, major=9, minor=0)
        self._patch(cuda, "is_available", lambda: True)
        self._patch(cuda, "is_initialized", lambda: True)
        self._patch(cuda, "device_count", lambda: sim.device_count)
        self._patch(cuda, "current_device", lambda: current["index"])
        self._patch(cuda, "set_device", set_device)
        self._patch(cuda, "synchronize", lambda device=None: sim._event("sync", "synchronize"))
        self._patch(cuda, "get_device_name", lambda device=None: props.name)
        self._patch(cuda, "get_device_properties", lambda device=None: props)
        self._patch(cuda, "get_device_capability", lambda device=None: (9, 0))
        self._patch(cuda, "is_bf16_supported", lambda *a, **k: True)
        self._patch(cuda, "mem_get_info", lambda device=None: (props.total_memory,) * 2)
        for name in ("memory_allocated", "max_memory_allocated", "memory_reserved",
                     "max_memory_reserved"):
            self._patch(cuda, name, lambda device=None: 0)
        for name in ("reset_peak_memory_stats", "empty_cache", "manual_seed", "manual_seed_all",
                     "seed", "seed_all", "init"):
            self._patch(cuda, name, lambda *a, **k: None)
        self._patch(cuda, "get_rng_state_all", lambda: [])
        self._patch(cuda, "set_rng_state_all", lambda states: None)
        self._patch(cuda, "Event", _FakeEvent)
        self._patch(torch, "Generator", _SimGenerator)
        base = torch.autocast

        class _Autocast(base):  # type: ignore[misc, valid-type]
            """torch.autocast with "cuda" run as CPU autocast (same dtype rules on bf16)."""

            def __init__(self, device_type: str, *a: object, **k: object) -> None:
                super().__init__("cpu" if device_type == "cuda" else device_type, *a, **k)

        self._patch(torch, "autocast", _Autocast)
        self._patch(torch.amp, "autocast", _Autocast)

    def __enter__(self) -> SimCuda:
        if _ACTIVE:
            raise RuntimeError("SimCuda is already active: nest count() blocks instead")
        self._install()
        functions = _Functions(self)
        import torch.autograd.graph as graph

        engine = graph._engine_run_backward

        def run_backward(*args: object, **kwargs: object):
            # the autograd engine runs the backward under the function modes active when it
            # was called; `loss.backward()` reaches it from inside this mode's own handler,
            # where the mode is off, so put it back: a hand-written backward then sees
            # cuda devices too
            with functions:
                return engine(*args, **kwargs)

        self._patch(graph, "_engine_run_backward", run_backward)
        self._patch(torch.autograd, "_engine_run_backward", run_backward)
        self._stack.enter_context(_Dispatch(self))
        self._stack.enter_context(functions)
        _ACTIVE.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        _ACTIVE.remove(self)
        self._stack.close()
        for obj, name, value in reversed(self._saved):
            setattr(obj, name, value)
        self._saved.clear()
