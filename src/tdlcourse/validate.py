"""One way to check arguments: every message names the parameter, the value given and what is
allowed, e.g. ``ValueError: depth=0 must be an integer >= 1``.

Each checker returns the value (normalized: a Python ``int`` or ``float``) so that a function can
write ``n = positive_int("n", n)``. Booleans are never accepted as numbers (``True`` is an ``int``
in Python, and ``depth=True`` is always a mistake).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from numbers import Integral, Real

__all__ = ["integer", "positive_int", "nonnegative_int", "number", "positive", "nonnegative", "in_interval",
           "probability", "one_of", "boolean", "int_sequence"]


def _show(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def integer(name: str, value, *, lo: int | None = None, hi: int | None = None) -> int:
    """An integer (numpy integers included, not bools) with ``lo <= value <= hi`` where given."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise ValueError(f"{name}={_show(value)} must be an integer" + _range_text(lo, hi))
    value = int(value)
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ValueError(f"{name}={value} must be an integer" + _range_text(lo, hi))
    return value


def _range_text(lo, hi) -> str:
    if lo is not None and hi is not None:
        return f" in [{lo}, {hi}]"
    if lo is not None:
        return f" >= {lo}"
    if hi is not None:
        return f" <= {hi}"
    return ""


def positive_int(name: str, value) -> int:
    """An integer >= 1."""
    return integer(name, value, lo=1)


def nonnegative_int(name: str, value) -> int:
    """An integer >= 0."""
    return integer(name, value, lo=0)


def number(name: str, value, *, finite: bool = True) -> float:
    """A real number (not a bool), finite unless ``finite=False``."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ValueError(f"{name}={_show(value)} must be a {'finite ' if finite else ''}real number")
    value = float(value)
    if finite and not math.isfinite(value):
        raise ValueError(f"{name}={value} must be a finite real number")
    return value


def in_interval(name: str, value, lo: float = -math.inf, hi: float = math.inf, *, closed: str = "both") -> float:
    """A finite number in the interval from ``lo`` to ``hi``; ``closed`` is ``both``, ``left``,
    ``right`` or ``neither`` (which ends belong to it)."""
    if closed not in ("both", "left", "right", "neither"):
        raise ValueError(f"closed={closed!r} is not allowed; allowed: 'both', 'left', 'right', 'neither'")
    left, right = closed in ("both", "left"), closed in ("both", "right")
    text = f"{'[' if left else '('}{lo:g}, {hi:g}{']' if right else ')'}"
    v = number(name, value)
    if not ((v >= lo if left else v > lo) and (v <= hi if right else v < hi)):
        raise ValueError(f"{name}={v:g} must lie in {text}")
    return v


def positive(name: str, value) -> float:
    """A finite number > 0."""
    return in_interval(name, value, 0.0, math.inf, closed="neither")


def nonnegative(name: str, value) -> float:
    """A finite number >= 0."""
    return in_interval(name, value, 0.0, math.inf, closed="left")


def probability(name: str, value, *, open_: bool = False) -> float:
    """A number in [0, 1], or in (0, 1) with ``open_=True``."""
    return in_interval(name, value, 0.0, 1.0, closed="neither" if open_ else "both")


def one_of(name: str, value, allowed: Iterable):
    """``value`` if it is one of ``allowed`` (compared with ==), else a message listing them."""
    allowed = tuple(allowed)
    if isinstance(value, bool) and not any(isinstance(a, bool) for a in allowed):
        ok = False
    else:
        try:
            ok = value in allowed
        except TypeError:
            ok = False
    if not ok:
        raise ValueError(f"{name}={_show(value)} is not allowed; allowed: {', '.join(map(repr, allowed))}")
    return value


def boolean(name: str, value) -> bool:
    """A bool (numpy bools included)."""
    if not isinstance(value, bool) and type(value).__name__ not in ("bool_", "bool"):
        raise ValueError(f"{name}={_show(value)} must be True or False")
    return bool(value)


def int_sequence(name: str, value, *, lo: int = 1, min_len: int = 1) -> tuple[int, ...]:
    """A non-string sequence of at least ``min_len`` integers, each >= ``lo``."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise ValueError(f"{name}={_show(value)} must be a sequence of integers >= {lo}")
    out = tuple(value)
    if len(out) < min_len:
        raise ValueError(f"{name}={_show(value)} must hold at least {min_len} integer(s) >= {lo}")
    for i, v in enumerate(out):
        integer(f"{name}[{i}]", v, lo=lo)
    return tuple(int(v) for v in out)
