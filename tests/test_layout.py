"""The layout the grader's guarantees rest on: the student-facing library never imports the
grading stack (nor nbgrader), and tdlcheck, the only module a grading kernel may import, needs
neither tdlcourse nor anything beyond numpy and the standard library."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import tdlcourse

STUDENT_MODULES = sorted(m.name for m in pkgutil.iter_modules(tdlcourse.__path__) if m.name != "grading")


def _loaded_after(code: str) -> set[str]:
    r = subprocess.run([sys.executable, "-c", code + "\nimport sys; print(' '.join(sorted(sys.modules)))"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return set(r.stdout.split())


def test_student_modules_do_not_import_the_grader():
    assert {"capacity", "meanfield", "train", "plots", "widgets"} <= set(STUDENT_MODULES)
    loaded = _loaded_after("\n".join(f"import tdlcourse.{m}" for m in STUDENT_MODULES))
    assert not {m for m in loaded if m.startswith(("tdlcourse.grading", "nbgrader"))}


def test_tdlcheck_needs_no_reference_library():
    loaded = _loaded_after("import tdlcheck\ntdlcheck.digest([(1, 2.0)])\ntdlcheck.rng('x')")
    assert not {m for m in loaded if m.split(".")[0] in ("tdlcourse", "torch", "scipy", "sklearn", "IPython")}
