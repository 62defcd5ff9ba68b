"""Input checks shared by every public entry point.

Each helper raises ``TypeError`` (wrong kind of object) or ``ValueError`` (right kind,
bad value) with a message that names the argument, shows the offending value and says
how to fix it. Checks that need a host synchronisation (finiteness) can be switched
off for speed with :func:`sciml.checks` once a pipeline is known to be sound.
"""

from __future__ import annotations

import contextlib
import math
import numbers
from collections.abc import Iterator, Sequence

import numpy as np
import torch

_FINITE_CHECKS = True


@contextlib.contextmanager
def checks(finite: bool = True) -> Iterator[None]:
    """Turn the finiteness checks (which synchronise with the device) on or off.

    Example::

        with sciml.checks(finite=False):
            model(x)  # no NaN/Inf scan, no host sync per layer
    """
    global _FINITE_CHECKS
    old = _FINITE_CHECKS
    _FINITE_CHECKS = bool(finite)
    try:
        yield
    finally:
        _FINITE_CHECKS = old


def _is_numeric_input(x: object) -> bool:
    """Whether ``x`` is a numpy array/scalar of numbers or a Python number (not a bool)."""
    if isinstance(x, bool):
        return False
    if isinstance(x, (np.ndarray, np.generic)):
        return np.asarray(x).dtype.kind in "biufc"
    return isinstance(x, (int, float, complex))


def reference_tensor(*xs: object) -> torch.Tensor | None:
    """The first floating-point or complex tensor among ``xs`` (``None`` if there is none):
    the one whose dtype and device numpy inputs and Python numbers are converted to."""
    return next((x for x in xs if isinstance(x, torch.Tensor)
                 and (x.is_floating_point() or x.is_complex())), None)


def as_tensor(x: object, *, like: torch.Tensor | None = None, integers: bool = False
              ) -> object:
    """A numpy array or Python number as a tensor; anything else is returned unchanged.

    The one conversion at the library's boundary (the checks that follow, such as
    :func:`check_tensor`, then name any argument that is still not a tensor). Tensors pass
    through untouched.

    Args:
        x: the argument as the user passed it.
        like: a floating-point or complex tensor among the other inputs. When given,
            ``x`` takes its device and precision (real values its real dtype, complex
            values the complex dtype of that precision). Without it ``x`` stays on the
            CPU: float32 stays float32 and complex64 complex64, other complex values become
            complex128 and every other real (float64, float16, integers, bools, Python
            floats) float64, as the solvers do.
        integers: keep integer and bool numpy arrays (and Python ints) as ``int64`` and
            ``bool`` tensors, on ``like``'s device: for indices and masks, and for data
            handed on to a user's function that may index with it.

    Returns:
        A tensor for a numpy array/scalar of numbers or a Python ``int``/``float``/
        ``complex`` (not a ``bool``), else ``x`` itself.
    """
    if not _is_numeric_input(x):
        return x
    arr = np.asarray(x)
    if any(st < 0 for st in arr.strides) or not arr.flags.writeable:
        arr = arr.copy()  # torch refuses negative strides and warns on read-only memory
    cplx = arr.dtype.kind == "c"
    if integers and arr.dtype.kind in "biu":
        dtype = torch.bool if arr.dtype.kind == "b" else torch.int64
        return torch.as_tensor(arr, dtype=dtype,
                               device=None if like is None else like.device)
    if like is not None:
        real = like.real.dtype if like.is_complex() else like.dtype
        if real not in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
            real = torch.float64
        dtype = ((torch.complex64 if real != torch.float64 else torch.complex128) if cplx
                 else real)
        return torch.as_tensor(arr, dtype=dtype, device=like.device)
    if cplx:
        dtype = torch.complex64 if arr.dtype == np.complex64 else torch.complex128
    else:
        dtype = torch.float32 if arr.dtype == np.float32 else torch.float64
    return torch.as_tensor(arr, dtype=dtype)


def as_tensors(*xs: object, like: torch.Tensor | None = None, integers: bool = False
               ) -> list[object]:
    """:func:`as_tensor` for each of ``xs``, all following one reference tensor.

    The reference is ``like`` if given, else the first floating-point or complex tensor
    among ``xs`` (:func:`reference_tensor`): numpy inputs mixed with a CUDA float32 tensor
    become CUDA float32 tensors. Pass the arguments in signature order, then check them in
    that order, so that an error names the first bad one.
    """
    ref = like if like is not None else reference_tensor(*xs)
    return [as_tensor(x, like=ref, integers=integers) for x in xs]


def check_tensor(
    name: str,
    x: object,
    *,
    ndim: int | None = None,
    min_ndim: int | None = None,
    floating: bool = False,
    real: bool = False,
    complex_: bool = False,
    fft_dtype: bool = False,
) -> torch.Tensor:
    """Check that ``x`` is a tensor of the expected rank and kind; return it.

    ``fft_dtype`` restricts to float32/float64 (complex64/complex128): the precisions
    every spectral routine supports on every device.
    """
    if isinstance(x, np.ndarray) and x.dtype.kind not in "biufc":
        raise TypeError(
            f"{name} must be a torch.Tensor or a numpy array of numbers, got a numpy array "
            f"of dtype {x.dtype}; convert it with {name}.astype(float)"
        )
    if not isinstance(x, torch.Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor, got {type(x).__name__}; "
            f"convert it with torch.as_tensor({name})"
        )
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(x.shape)}")
    if min_ndim is not None and x.ndim < min_ndim:
        raise ValueError(
            f"{name} must have at least {min_ndim} dimensions, got shape {tuple(x.shape)}"
        )
    if floating and not (x.is_floating_point() or x.is_complex()):
        raise TypeError(
            f"{name} must be a floating-point tensor, got dtype {x.dtype}; "
            f"use {name}.float() or {name}.double()"
        )
    if real and not x.is_floating_point():
        raise TypeError(
            f"{name} must be a real floating-point tensor, got dtype {x.dtype}; "
            f"use {name}.real, {name}.float() or {name}.double()"
        )
    if complex_ and not x.is_complex():
        raise TypeError(
            f"{name} must be a complex tensor, got dtype {x.dtype}; "
            f"build it with torch.complex(re, im) or {name}.to(torch.complex64)"
        )
    if fft_dtype and x.dtype not in (
        torch.float32, torch.float64, torch.complex64, torch.complex128
    ):
        raise TypeError(
            f"{name} has dtype {x.dtype}; spectral routines take float32/float64 "
            f"(complex64/complex128): use {name}.float() or {name}.double()"
        )
    return x


def check_finite(name: str, x: torch.Tensor) -> None:
    """Raise if ``x`` holds NaN or Inf (skipped inside ``sciml.checks(finite=False)``)."""
    if not _FINITE_CHECKS:
        return
    if not bool(torch.isfinite(x).all()):
        bad = (~torch.isfinite(x)).sum().item()
        raise ValueError(
            f"{name} contains {bad} non-finite value(s) (NaN or Inf); "
            "check the data or the step that produced it"
        )


def check_int(name: str, v: object, *, minimum: int | None = None, fix: str | None = None
              ) -> int:
    """``v`` as an int (numpy and torch integer scalars too; never a bool or a float).

    Args:
        name: the argument's name, as the caller spells it.
        minimum: require ``v >= minimum``.
        fix: appended to the range message (``"; fix"``): how to choose a valid value.

    Raises:
        TypeError: ``v`` is not an integer.
        ValueError: ``v < minimum``.
    """
    if isinstance(v, bool) or not isinstance(v, int):
        # accept numpy / torch integer scalars
        if hasattr(v, "__index__") and not isinstance(v, bool):
            try:
                v = int(v)  # type: ignore[arg-type]
            except (TypeError, ValueError, RuntimeError):  # e.g. a tensor of several entries
                raise TypeError(f"{name} must be an int, got {v!r} ({type(v).__name__})"
                                ) from None
        else:
            raise TypeError(f"{name} must be an int, got {v!r} ({type(v).__name__})")
    if minimum is not None and v < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {v}" + (f"; {fix}" if fix else ""))
    return v


def check_bool(name: str, v: object) -> bool:
    """``v`` must be ``True`` or ``False`` (numpy's bool too); a string or a number is refused,
    since ``bool("no")`` is True."""
    if isinstance(v, bool):
        return v
    if type(v).__name__ == "bool_":  # numpy.bool_
        return bool(v)
    raise TypeError(f"{name} must be True or False, got {v!r} ({type(v).__name__})")


def check_real(
    name: str, v: object, *, positive: bool = False, minimum: float | None = None,
    strict: bool = False, finite: bool = True, fix: str | None = None,
) -> float:
    """``v`` as a float, checked to be a real number (not a bool, not NaN).

    Args:
        name: the argument's name, as the caller spells it.
        positive: require ``v > 0``.
        minimum: require ``v >= minimum`` (``v > minimum`` with ``strict``).
        finite: require ``v`` finite (``inf`` passes with ``finite=False``).
        fix: appended to every message (``"; fix"``): how to choose a valid value.

    Raises:
        ValueError: naming ``name`` and the offending value (also for a non-number, so
            that every bad setting is one kind of error).
    """
    tail = f"; {fix}" if fix else ""
    kind = "a finite number" if finite else "a number"
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise ValueError(f"{name} must be {kind}, got {v!r} ({type(v).__name__}){tail}")
    x = float(v)
    if math.isnan(x) or (finite and math.isinf(x)):
        raise ValueError(f"{name} must be {kind}, got {v!r}{tail}")
    if positive and not x > 0:
        raise ValueError(f"{name} must be > 0, got {v!r}{tail}")
    if minimum is not None and (x < minimum or (strict and x == minimum)):
        raise ValueError(f"{name} must be {'>' if strict else '>='} {minimum}, got {v!r}{tail}")
    return x


def check_positive(name: str, v: object, *, allow_zero: bool = False, fix: str | None = None
                   ) -> float:
    """``v`` as a float, checked to be finite and ``> 0`` (``>= 0`` with ``allow_zero``).

    The common case of a step size, a length, a weight, a regularisation or a tolerance.

    Args:
        name: the argument's name, as the caller spells it.
        allow_zero: accept 0 (a weight or a shift that may be switched off).
        fix: appended to the message (``"; fix"``): how to choose a valid value.

    Raises:
        TypeError: ``v`` is not a real number (a bool, a string, a tensor, None).
        ValueError: ``v`` is NaN, infinite or out of range; the message shows the value.
    """
    tail = f"; {fix}" if fix else ""
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise TypeError(f"{name} must be a number, got {v!r} ({type(v).__name__}){tail}")
    x = float(v)
    if not math.isfinite(x) or x < 0 or (x == 0 and not allow_zero):
        raise ValueError(
            f"{name} must be finite and {'>=' if allow_zero else '>'} 0, got {v!r}{tail}"
        )
    return x


def check_tolerances(rtol: object, atol: object, *, fix: str | None = None
                     ) -> tuple[float, float]:
    """A relative and an absolute tolerance, each finite and ``>= 0``; return them as floats.

    Raises:
        TypeError: a tolerance is not a real number.
        ValueError: a tolerance is NaN, infinite or negative (the message names which).
    """
    return (check_positive("rtol", rtol, allow_zero=True, fix=fix),
            check_positive("atol", atol, allow_zero=True, fix=fix))


def plain(v: object) -> object:
    """A numpy or torch scalar as a Python number, a 1D numpy array or tensor as a list;
    anything else unchanged: for settings given as sequences (shapes, mode counts, box
    lengths), so ``np.array([8, 8])`` works where ``(8, 8)`` does."""
    if isinstance(v, (np.ndarray, torch.Tensor)) and v.ndim <= 1:
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    return v


def check_int_tuple(
    name: str, v: object, *, length: int | None = None, minimum: int | None = None
) -> tuple[int, ...]:
    """Accept an int or a sequence of ints (numpy ones too); return a tuple (an int is
    broadcast)."""
    v = plain(v)
    if isinstance(v, int) and not isinstance(v, bool):
        if length is None:
            raise TypeError(f"{name} must be a sequence of ints, got {v!r}")
        v = (v,) * length
    if not isinstance(v, Sequence) or isinstance(v, (str, bytes)):
        raise TypeError(f"{name} must be an int or a sequence of ints, got {v!r}")
    out = tuple(check_int(f"{name}[{i}]", e, minimum=minimum) for i, e in enumerate(v))
    if length is not None and len(out) != length:
        raise ValueError(f"{name} must have {length} entries, got {len(out)}: {out}")
    return out


def check_choice(name: str, v: object, choices: Sequence[str]) -> str:
    if v not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {v!r}")
    return str(v)
