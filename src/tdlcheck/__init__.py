"""tdlcheck: hidden tests written as data, whose verdict is reached outside the student's kernel.

A hidden test of an assignment or a lab calls ``check`` instead of asserting::

    ### BEGIN HIDDEN TESTS
    from tdlcheck import check
    _rng = np.random.default_rng(1)
    _cases = [(int(d), int(m), float(delta)) for d, m, delta in ...]    # trusted inputs
    check("q1", vc_gap, cases=_cases, against="tdlcourse.capacity.vc_gap", rtol=1e-9)
    ### END HIDDEN TESTS

What ``check`` does depends on who runs the notebook:

- under ``tdl grade`` (``TDL_CHECK_MODE=emit`` in the grading kernel) it only evaluates the
  student's ``answer`` on each case and emits the outputs, with a digest of the inputs, as data
  (MIME type ``application/vnd.tdl.check+json``). The grader re-computes the inputs from the
  gradebook's copy of the test, computes ``against`` itself (the reference library is not
  reachable from the kernel), compares and scores ``points * cases passed / cases``. A record
  that is missing, duplicated, or made for other inputs scores 0;
- anywhere else (stock ``nbgrader autograde``, an instructor running the source) it imports
  ``against`` in the kernel and raises ``AssertionError`` naming the failing cases: the in-kernel
  fallback, which a student's code can fool (see ``assignments/README.md``, threat model).

This module is imported inside grading kernels, so it depends on numpy and the standard library
only and holds no reference values.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import math
import os

MIME = "application/vnd.tdl.check+json"
MODE_ENV = "TDL_CHECK_MODE"
SECRET_ENV = "TDL_TERM_SECRET"
__all__ = ["check", "rng", "encode", "decode", "digest", "compare", "MIME"]


def rng(name: str):
    """The random generator of a hidden test's inputs: numpy's ``default_rng`` seeded from ``name``
    and the term's secret (``$TDL_TERM_SECRET``; unset: a public seed, the same every term). With a
    secret only the instructor knows, the public solutions in the repository do not reveal the
    term's hidden inputs. ``tdl grade`` passes the secret to the grading kernels and uses it for
    the trusted inputs; for stock nbgrader, export it before ``nbgrader autograde``."""
    import numpy as np

    if not isinstance(name, str) or not name:
        raise ValueError(f"name={name!r} must be a non-empty string")
    secret = os.environ.get(SECRET_ENV, "")
    return np.random.default_rng(int.from_bytes(hashlib.sha256(f"{secret}\0{name}".encode()).digest()[:16], "little"))


def encode(value):
    """A JSON-able, exact and canonical form of ``value`` (numbers, strings, None, bools, tuples,
    lists, dicts with string keys, numpy arrays and scalars). Floats are stored with
    ``float.hex`` so that nothing is lost; arrays by dtype, shape and bytes."""
    import numpy as np

    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        return {"int": str(int(value))}
    if isinstance(value, (float, np.floating)):
        return {"float": float(value).hex()}
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (complex, np.complexfloating)):
        return {"complex": [float(value.real).hex(), float(value.imag).hex()]}
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biufc":
            raise TypeError(f"arrays of dtype {value.dtype} cannot be checked; use numbers")
        a = np.ascontiguousarray(value)
        return {"array": a.dtype.str, "shape": list(a.shape), "hex": a.tobytes().hex()}
    if isinstance(value, tuple):
        return {"tuple": [encode(v) for v in value]}
    if isinstance(value, list):
        return [encode(v) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {"dict": {k: encode(v) for k, v in sorted(value.items())}}
    raise TypeError(f"a value of type {type(value).__name__} cannot be checked; return numbers or arrays")


_DTYPE_KINDS = set("biufc")


def decode(data):
    """The inverse of ``encode``. Safe on untrusted data: only plain numbers, strings and numeric
    arrays are ever built (never objects), and malformed input raises ``ValueError``."""
    import numpy as np

    if data is None or isinstance(data, (bool, str)):
        return data
    if isinstance(data, list):
        return [decode(v) for v in data]
    if not isinstance(data, dict) or len(data) not in (1, 3):
        raise ValueError(f"not an encoded value: {str(data)[:80]}")
    if "int" in data:
        return int(data["int"])
    if "float" in data:
        return float.fromhex(data["float"])
    if "complex" in data:
        re_, im = data["complex"]
        return complex(float.fromhex(re_), float.fromhex(im))
    if "tuple" in data:
        return tuple(decode(v) for v in data["tuple"])
    if "dict" in data:
        return {str(k): decode(v) for k, v in data["dict"].items()}
    if "array" in data:
        dtype = np.dtype(str(data["array"]))
        if dtype.kind not in _DTYPE_KINDS:
            raise ValueError(f"array dtype {dtype} is not numeric")
        shape = tuple(int(s) for s in data["shape"])
        raw = bytes.fromhex(data["hex"])
        if math.prod(shape) * dtype.itemsize != len(raw):
            raise ValueError("array shape and data do not agree")
        return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()
    raise ValueError(f"not an encoded value: {str(data)[:80]}")


def digest(cases) -> str:
    """sha256 of the canonical encoding of the inputs: what the grader compares with its own."""
    text = json.dumps(encode(list(cases)), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _call(answer, case):
    return answer(*case) if isinstance(case, tuple) else answer(case)


def _as_number(value):
    """What a student's output is compared as: a float64 array (numbers, bools, sequences), or a
    plain value for anything else. ``.value`` of a result object is used, as the library's
    estimators return result objects."""
    import numpy as np

    value = getattr(value, "value", value)
    if isinstance(value, (str, bytes)) or value is None:
        return value
    try:
        out = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return value
    return out


def compare(got, want, rtol: float, atol: float) -> tuple[bool, str]:
    """Whether ``got`` matches ``want`` (shapes equal, every entry within ``atol + rtol*|want|``,
    NaN only where the reference is NaN); with a short reason when not."""
    import numpy as np

    if isinstance(want, tuple):
        # a tuple of results (e.g. a direction and its margin): item by item
        if not isinstance(got, (tuple, list)) or len(got) != len(want):
            return False, f"got {str(got)[:60]}, expected a tuple of {len(want)} values"
        for i, (g_i, w_i) in enumerate(zip(got, want)):
            ok, why = compare(g_i, w_i, rtol, atol)
            if not ok:
                return False, f"item {i}: {why}"
        return True, ""
    g, w = _as_number(got), _as_number(want)
    if not isinstance(w, np.ndarray):
        return (g == w, "" if g == w else f"got {str(got)[:60]}, expected {str(want)[:60]}")
    if not isinstance(g, np.ndarray):
        return False, f"got a {type(got).__name__}, expected a number or an array"
    if g.shape != w.shape:
        return False, f"shape {g.shape}, expected {w.shape}"
    ok = np.isclose(g, w, rtol=rtol, atol=atol, equal_nan=True) & (np.isnan(g) == np.isnan(w))
    if bool(ok.all()):
        return True, ""
    i = int(np.flatnonzero(~ok.reshape(-1))[0])
    return False, f"got {g.reshape(-1)[i]!r}, expected {w.reshape(-1)[i]!r}"


def check(name: str, answer, *, against: str, cases=None, args=(), rtol: float = 1e-9,
          atol: float = 0.0) -> None:
    """A hidden test: ``answer`` (a student's function, evaluated at every case of ``cases``, or
    a value, compared with ``against(*args)``) against the reference ``against``, a dotted name
    such as ``"tdlcourse.capacity.vc_gap"``. A case is a tuple of positional arguments (anything
    else is a single argument). Outputs match when ``|got - want| <= atol + rtol * |want|``
    entrywise (integers and strings: equal). See the module docstring for who decides."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"name={name!r} must be a non-empty string")
    if not isinstance(against, str) or "." not in against:
        raise ValueError(f"against={against!r} must be a dotted name such as 'tdlcourse.capacity.vc_gap'")
    if cases is None:
        cases = [tuple(args)]
        call = lambda case: answer  # noqa: E731 - a value, the same for its one case
    else:
        cases = list(cases)
        if not callable(answer):
            raise AssertionError(f"{name}: the answer must be a function, got {type(answer).__name__}")
        call = lambda case: _call(answer, case)  # noqa: E731
    outputs = []
    for case in cases:
        try:
            outputs.append({"ok": encode(_plain(call(case)))})
        except Exception as e:  # noqa: BLE001 - a student's error is that case's result
            outputs.append({"error": f"{type(e).__name__}: {str(e)[:200]}"})
    if os.environ.get(MODE_ENV) == "emit":
        record = {"name": name, "inputs": digest(cases), "n": len(cases), "outputs": outputs}
        from IPython.display import display

        display({MIME: record, "text/plain": f"check {name}: {len(cases)} case(s) evaluated; "
                 "the grader compares them with the reference"}, raw=True)
        return
    module, _, attr = against.rpartition(".")
    ref = getattr(importlib.import_module(module), attr)
    failures = []
    for i, (case, out) in enumerate(zip(cases, outputs)):
        want = ref(*case) if isinstance(case, tuple) else ref(case)
        if "error" in out:
            failures.append(f"case {i}: raised {out['error']}")
            continue
        ok, why = compare(decode(out["ok"]), _plain(want), rtol, atol)
        if not ok:
            failures.append(f"case {i}: {why}")
    if failures:
        raise AssertionError(f"{name}: {len(failures)} of {len(cases)} case(s) wrong; " + "; ".join(failures[:3]))


def _plain(value):
    """Numbers as numbers: result objects give their ``value``; sequences become arrays."""
    import numpy as np

    value = getattr(value, "value", value)
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, (int, float, np.number)) for v in value):
        return np.asarray(value, dtype=np.float64)
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    return value
