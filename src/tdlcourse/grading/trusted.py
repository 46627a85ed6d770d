"""Verdicts no submission can fake: hidden tests scored by the grader, outside the student's kernel.

A hidden test calls ``tdlcheck.check(name, answer, against=..., cases=...)``. In the grading kernel
that call only evaluates the student's ``answer`` on the cases and emits the outputs as data
(``tdlcheck.MIME``). Here, in the grader's own process:

1. ``extract_checks`` reads the test cell's source **from the gradebook** (the copy nbgrader
   stored at release, never the submission), drops what needs the student's names (``assert``
   statements, the ``answer`` argument of ``check``), runs the rest to get the trusted inputs, and
   returns one ``CheckSpec`` per ``check`` call: the cases, their digest, the reference's dotted
   name and the tolerances;
2. ``references`` computes the reference outputs by importing ``against`` here (the kernel cannot
   import it: the sandbox hides ``tdlcourse``);
3. ``verdict`` reads the records in the executed test cell's outputs and scores
   ``points * (cases passed) / (cases)``. A record that is missing (the cell was skipped, silenced
   or raised first), duplicated, or made for other inputs (its digest differs) gives 0 for that
   check; nothing the kernel prints is read as a score.

``scan`` (static, on the submitted source) and ``probe_findings`` (a snapshot of the kernel's
hooks and module attributes taken before any student code runs, compared with one taken after
the last cell) report tampering for a human look; they never change a score. See
``assignments/README.md`` (threat model) for what this guarantees and what it does not.
"""

from __future__ import annotations

import ast
import importlib
from dataclasses import dataclass, field
from types import SimpleNamespace

import tdlcheck

from .course import CourseError

PROBE_MIME = "application/vnd.tdl.probe+json"
# Modules whose attributes a submission has no reason to replace; their ids are compared.
WATCHED_MODULES = ("builtins", "math", "itertools", "functools", "json", "operator", "numpy", "numpy.linalg",
                   "numpy.random", "tdlcheck")
# Hooks a library may legitimately add (plotting backends, widgets): their module names.
TRUSTED_HOOK_MODULES = ("IPython", "ipykernel", "matplotlib", "matplotlib_inline", "plotly", "ipywidgets", "comm",
                        "tqdm", "traitlets")


class TrustedCheckError(CourseError):
    """A hidden test whose trusted part cannot run (an unknown reference, inputs that need the
    student's names, a check without cases...): ``tdl release`` refuses the assignment."""


@dataclass(frozen=True)
class CheckSpec:
    """One ``check`` call as the grader sees it: trusted inputs and how to compare."""

    name: str
    against: str
    cases: tuple
    digest: str
    rtol: float
    atol: float


@dataclass(frozen=True)
class CheckResult:
    name: str
    passed: int
    total: int
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class CellVerdict:
    """The trusted score of one autograded cell: ``points * passed / total`` over its checks;
    ``problems`` says what failed (for the feedback), ``flags`` what looks forged."""

    grade_id: str
    points: float
    score: float
    checks: tuple[CheckResult, ...]
    flags: tuple[str, ...] = ()

    @property
    def passed(self) -> int:
        return sum(c.passed for c in self.checks)

    @property
    def total(self) -> int:
        return sum(c.total for c in self.checks)

    def summary(self) -> str:
        lines = [f"trusted check ({self.grade_id}): {self.passed}/{self.total} case(s) match the reference "
                 f"-> {self.score:g}/{self.points:g} point(s)"]
        for c in self.checks:
            lines += [f"  {c.name}: {p}" for p in c.problems[:5]]
        return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# 1. The trusted inputs, from the gradebook's copy of the test cell.


def _is_check(func: ast.expr) -> bool:
    return (isinstance(func, ast.Name) and func.id == "check") or \
        (isinstance(func, ast.Attribute) and func.attr == "check")


class _Trusted(ast.NodeTransformer):
    """The test cell without what needs the student's names: asserts become ``pass``, the answer
    argument of ``check`` becomes ``None``, imports of ``tdlcheck`` go (the recorder is bound)."""

    def visit_Assert(self, node):
        return ast.copy_location(ast.Pass(), node)

    def visit_Import(self, node):
        # ``import tdlcheck [as t]`` binds the trusted stand-in (``check`` records, the rest is tdlcheck's)
        out = [ast.Assign([ast.Name(a.asname or "tdlcheck", ast.Store())], ast.Name("__tdl_module", ast.Load()))
               for a in node.names if a.name == "tdlcheck"]
        keep = [a for a in node.names if a.name.split(".")[0] != "tdlcheck"]
        if keep:
            node.names = keep
            out.append(node)
        return [ast.copy_location(n, node) for n in out] or ast.copy_location(ast.Pass(), node)

    def visit_ImportFrom(self, node):
        if (node.module or "").split(".")[0] != "tdlcheck":
            return node
        return [ast.copy_location(ast.Assign([ast.Name(a.asname or a.name, ast.Store())],
                                             ast.Attribute(ast.Name("__tdl_module", ast.Load()), a.name, ast.Load())),
                                  node) for a in node.names]

    def visit_Call(self, node):
        self.generic_visit(node)
        if _is_check(node.func):
            if len(node.args) >= 2:
                node.args[1] = ast.Constant(None)
            node.keywords = [k if k.arg != "answer" else ast.keyword("answer", ast.Constant(None))
                             for k in node.keywords]
        return node


def _contains_check(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Call) and _is_check(n.func) for n in ast.walk(node))


def resolve(dotted: str):
    """The object a dotted name such as ``tdlcourse.capacity.vc_gap`` names, or ``TrustedCheckError``."""
    module, _, attr = str(dotted).rpartition(".")
    try:
        obj = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError, ValueError) as e:
        raise TrustedCheckError(f"against={dotted!r} names no function ({type(e).__name__}: {e})") from None
    if not callable(obj):
        raise TrustedCheckError(f"against={dotted!r} is not callable")
    return obj


def extract_checks(source: str, where: str = "test cell") -> tuple[CheckSpec, ...]:
    """The ``check`` calls of a (trusted) test cell with their inputs evaluated here. Statements
    without a ``check`` call that fail (visible tests using the student's names) are skipped; a
    failing statement with a ``check`` call raises ``TrustedCheckError`` naming ``where``."""
    import math

    import numpy as np

    try:
        tree = ast.parse(source)
    except SyntaxError as e:
        raise TrustedCheckError(f"{where}: the test does not parse: {e}") from None
    if not _contains_check(tree):
        return ()
    tree = ast.fix_missing_locations(_Trusted().visit(tree))
    specs: list[CheckSpec] = []

    def record(name, answer=None, *, against, cases=None, args=(), rtol=1e-9, atol=0.0):
        if not isinstance(name, str) or not name:
            raise TrustedCheckError(f"{where}: check name={name!r} must be a non-empty string")
        resolve(against)
        cases = [tuple(args)] if cases is None else list(cases)
        if not cases:
            raise TrustedCheckError(f"{where}: check {name!r} has no cases")
        for what, v in (("rtol", rtol), ("atol", atol)):
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise TrustedCheckError(f"{where}: check {name!r}: {what}={v!r} must be a number >= 0")
        specs.append(CheckSpec(name, against, tuple(cases), tdlcheck.digest(cases), float(rtol), float(atol)))

    stand_in = SimpleNamespace(**{k: getattr(tdlcheck, k) for k in tdlcheck.__all__ if k != "check"}, check=record)
    ns = {"__name__": "__tdl_trusted__", "np": np, "numpy": np, "math": math, "check": record,
          "tdlcheck": stand_in, "__tdl_module": stand_in}
    for stmt in tree.body:
        code = compile(ast.Module([stmt], []), where, "exec")
        try:
            exec(code, ns)  # noqa: S102 - the instructor's own test code, from the gradebook
        except TrustedCheckError:
            raise
        except Exception as e:  # noqa: BLE001
            if _contains_check(stmt):
                raise TrustedCheckError(f"{where}: the inputs of a check cannot be computed without the "
                                        f"student's code ({type(e).__name__}: {e}); build cases from "
                                        "trusted code only (numpy, a local rng)") from None
    names = [s.name for s in specs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise TrustedCheckError(f"{where}: check name(s) {', '.join(dup)} used twice")
    return tuple(specs)


# ---------------------------------------------------------------------------------------------
# 2. The references, computed by the grader.


def references(spec: CheckSpec) -> tuple:
    """``against`` evaluated on every case of ``spec``, in the grader's process."""
    ref = resolve(spec.against)
    return tuple(tdlcheck._plain(ref(*c) if isinstance(c, tuple) else ref(c)) for c in spec.cases)


# ---------------------------------------------------------------------------------------------
# 3. The verdict.


def records(cell) -> list:
    """The check records a cell's outputs hold (display data of type ``tdlcheck.MIME``)."""
    out = []
    for o in cell.get("outputs", []):
        if o.get("output_type") in ("display_data", "execute_result"):
            data = o.get("data", {}).get(tdlcheck.MIME)
            if data is not None:
                out.append(data)
    return out


def _check_result(spec: CheckSpec, refs: tuple, found: list) -> tuple[CheckResult, list[str]]:
    n = len(spec.cases)
    if not found:
        return CheckResult(spec.name, 0, n, ("no result: the check did not run (the cell raised before it, "
                                             "was skipped, or its output was suppressed)",)), []
    if len(found) > 1:
        return CheckResult(spec.name, 0, n, (f"{len(found)} results for one check: scored 0",)), \
            [f"{spec.name}: {len(found)} results emitted for one check (forged output?)"]
    rec = found[0]
    outputs = rec.get("outputs") if isinstance(rec, dict) else None
    if not isinstance(outputs, list) or rec.get("inputs") != spec.digest or rec.get("n") != n or len(outputs) != n:
        return CheckResult(spec.name, 0, n, ("the result was not computed on the trusted inputs: scored 0",)), \
            [f"{spec.name}: a result for other inputs than the trusted ones (forged or rewritten test?)"]
    passed, problems = 0, []
    for i, (out, want) in enumerate(zip(outputs, refs)):
        if not isinstance(out, dict) or "ok" not in out:
            why = out.get("error") if isinstance(out, dict) else None
            problems.append(f"case {i}: raised {str(why)[:200]}" if why else f"case {i}: no output")
            continue
        try:
            ok, why = tdlcheck.compare(tdlcheck.decode(out["ok"]), want, spec.rtol, spec.atol)
        except (ValueError, TypeError, KeyError) as e:
            ok, why = False, f"unreadable output ({e})"
        if ok:
            passed += 1
        else:
            problems.append(f"case {i}: {why}")
    return CheckResult(spec.name, passed, n, tuple(problems)), []


def verdict(grade_id: str, points: float, specs: tuple[CheckSpec, ...], refs: dict, cell) -> CellVerdict:
    """Score one executed test cell from its records (see the module docstring). ``refs`` maps a
    check's name to ``references(spec)``."""
    found = records(cell)
    names = {s.name for s in specs}
    results, flags = [], []
    for spec in specs:
        r, f = _check_result(spec, refs[spec.name], [x for x in found if isinstance(x, dict) and x.get("name") == spec.name])
        results.append(r)
        flags += f
    strays = [x for x in found if not (isinstance(x, dict) and x.get("name") in names)]
    if strays:
        flags.append(f"{grade_id}: {len(strays)} check result(s) that no trusted check asked for (forged output?)")
    total = sum(r.total for r in results)
    score = float(points) * sum(r.passed for r in results) / total if total else 0.0
    return CellVerdict(grade_id, float(points), round(score, 9), tuple(results), tuple(flags))


# ---------------------------------------------------------------------------------------------
# Tampering: a static scan of the submitted code and a runtime probe.

_SUSPECT_ATTRS = {
    "input_transformers_cleanup": "installs an IPython input transformer",
    "input_transformers_post": "installs an IPython input transformer",
    "ast_transformers": "installs an IPython AST transformer",
    "set_custom_exc": "installs a custom exception handler",
    "showtraceback": "replaces IPython's traceback display",
    "displayhook": "replaces the display hook",
    "display_pub": "replaces the display publisher",
    "display_formatter": "changes the display formatter",
    "excepthook": "replaces sys.excepthook",
    "settrace": "installs a trace function",
    "setprofile": "installs a profile function",
    "_getframe": "inspects interpreter frames",
    "modules": None,  # only sys.modules, see below
    "register_magic_function": "registers an IPython magic",
    "run_cell": "runs code through IPython",
    "run_line_magic": "runs an IPython magic",
    "run_cell_magic": "runs an IPython magic",
    "environ": "reads or changes environment variables",
    "getenv": "reads environment variables",
    "__dict__": "touches an object's __dict__",
    "__globals__": "reaches a function's globals",
    "__builtins__": "touches __builtins__",
    "__subclasses__": "walks the class hierarchy",
    "__code__": "rewrites a function's code",
}
_SUSPECT_CALLS = {"exec": "runs dynamic code (exec)", "eval": "runs dynamic code (eval)",
                  "compile": "compiles dynamic code", "__import__": "imports dynamically (__import__)",
                  "get_ipython": "uses the IPython shell (get_ipython)", "setattr": "sets attributes dynamically",
                  "delattr": "deletes attributes dynamically", "globals": "reads or changes globals()",
                  "vars": "uses vars()", "breakpoint": "calls breakpoint()"}
_SUSPECT_IMPORTS = {"tdlcourse": "imports the reference library tdlcourse",
                    "tdlcheck": "imports the checking module tdlcheck", "IPython": "imports IPython",
                    "ipykernel": "imports ipykernel", "builtins": "imports builtins", "importlib": "imports importlib",
                    "ctypes": "imports ctypes", "gc": "imports gc", "inspect": "imports inspect",
                    "nbgrader": "imports nbgrader", "subprocess": "starts processes", "socket": "opens sockets"}


def _python(source: str) -> str:
    try:
        from IPython.core.inputtransformer2 import TransformerManager

        return TransformerManager().transform_cell(source)
    except Exception:  # noqa: BLE001 - IPython missing or odd input: scan the text as it is
        return source


def scan_source(source: str) -> list[str]:
    """What a (student's) cell does that an answer has no reason to do, in words."""
    try:
        tree = ast.parse(_python(source))
    except SyntaxError:
        return []
    found: list[str] = []
    modules: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                modules.add(a.asname or a.name.split(".")[0])
                why = _SUSPECT_IMPORTS.get(a.name.split(".")[0])
                if why:
                    found.append(why)
        elif isinstance(node, ast.ImportFrom):
            why = _SUSPECT_IMPORTS.get((node.module or "").split(".")[0])
            if why:
                found.append(why)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _SUSPECT_CALLS:
            found.append(_SUSPECT_CALLS[node.func.id])
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr" \
                and len(node.args) >= 2 and not isinstance(node.args[1], ast.Constant):
            found.append("reads attributes by computed names (getattr)")
        elif isinstance(node, ast.Attribute):
            why = _SUSPECT_ATTRS.get(node.attr)
            base = node.value.id if isinstance(node.value, ast.Name) else ""
            if node.attr == "modules" and base == "sys":
                why = "reads or edits sys.modules"
            elif node.attr == "register" and isinstance(node.value, ast.Attribute) and node.value.attr == "events":
                why = "registers IPython event callbacks"
            if why:
                found.append(why)
        elif isinstance(node, ast.Name) and node.id == "__builtins__":
            found.append("touches __builtins__")
    # Assignments to attributes of imported modules: math.isclose = ..., np.allclose = ...
    for node in ast.walk(tree):
        targets = node.targets if isinstance(node, ast.Assign) else \
            [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else \
            node.targets if isinstance(node, ast.Delete) else []
        for t in targets:
            if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id in modules:
                found.append(f"replaces {t.value.id}.{t.attr} (an attribute of an imported module)")
    return list(dict.fromkeys(found))


def scan(nb, only=None) -> list[str]:
    """``scan_source`` over the cells a student could write that the grader runs (every code cell
    that is not locked, within ``only`` when given: locked cells were restored from the
    gradebook, and a lab's experiment cells do not run), each finding with its cell."""
    out = []
    for i, cell in enumerate(nb.cells):
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if cell.get("cell_type") != "code" or meta.get("locked") or (only is not None and i not in only):
            continue
        where = meta.get("grade_id") or f"cell {i}"
        out += [f"{where}: {why}" for why in scan_source(cell.get("source", ""))]
    return out


# The probe runs in the kernel: before the first cell (no student code has run: its snapshot is
# trusted) and after the last (a student who defeats it needs code the static scan reports).
PROBE_CODE = r"""
def __tdl_probe(mime=%(mime)r, watched=%(watched)r):
    import sys
    from types import ModuleType
    from IPython.display import display
    ip = get_ipython()
    def name(f):
        f = getattr(f, "__func__", f)
        return (getattr(f, "__module__", None) or type(f).__module__ or "?") + "." + \
            (getattr(f, "__qualname__", None) or type(f).__qualname__)
    # Only modules already loaded (importing numpy here would cost every notebook 0.1 s): the
    # ids of their attributes, and for every watched module loaded by now the attributes that are
    # functions written in the notebook (a patch needs no baseline to be seen).
    mods, foreign = {}, []
    for m in watched:
        mod = sys.modules.get(m)
        if mod is None:
            continue
        mods[m] = {k: id(v) for k, v in vars(mod).items() if not k.startswith("_") or k in ("__import__", "__build_class__")}
        for k, v in vars(mod).items():
            owner = getattr(v, "__module__", "") if callable(v) else ""
            if owner == "__main__" or getattr(v, "__qualname__", "") == "<lambda>":
                foreign.append(m + "." + k)
    snap = {
        "modules": {k: [id(v), "module" if v is None or isinstance(v, ModuleType) else type(v).__name__]
                    for k, v in list(sys.modules.items())},
        "attrs": mods,
        "foreign": foreign,
        "hooks": {
            "input_transformers_cleanup": [name(f) for f in ip.input_transformers_cleanup],
            "input_transformers_post": [name(f) for f in ip.input_transformers_post],
            "ast_transformers": [name(f) for f in ip.ast_transformers],
            "events": {k: [name(f) for f in v] for k, v in ip.events.callbacks.items()},
            "custom_exceptions": [str(e) for e in ip.custom_exceptions],
            "CustomTB": name(ip.CustomTB) if getattr(ip, "CustomTB", None) else None,
            "showtraceback": name(ip.showtraceback),
            "displayhook": name(type(sys.displayhook)), "displayhook_id": id(sys.displayhook),
            "ip_displayhook": id(ip.displayhook), "display_pub": id(ip.display_pub),
            "excepthook": name(sys.excepthook), "trace": repr(sys.gettrace()), "profile": repr(sys.getprofile()),
        },
    }
    display({mime: snap, "text/plain": ""}, raw=True)
__tdl_probe()
del __tdl_probe
""" % {"mime": PROBE_MIME, "watched": WATCHED_MODULES}


_VOLATILE = {("builtins", "input"), ("builtins", "raw_input")}  # ipykernel rebinds them per execution


def probe_snapshot(cell) -> dict | None:
    for o in cell.get("outputs", []):
        data = o.get("data", {}).get(PROBE_MIME) if o.get("output_type") == "display_data" else None
        if isinstance(data, dict):
            return data
    return None


def _trusted_hook(name: str) -> bool:
    return name.split(".")[0] in TRUSTED_HOOK_MODULES


def probe_findings(before: dict | None, after: dict | None, *, kernel_died: bool = False) -> list[str]:
    """Differences between the kernel's snapshots before the first and after the last cell that a
    submission has no reason to cause, in words (``kernel_died``: no second snapshot is expected)."""
    if before is None:
        return ["the integrity probe could not run before the first cell"]
    if after is None and kernel_died:
        return []
    if after is None:
        return ["the integrity probe after the last cell did not report (the kernel died, or its output "
                "was suppressed or rewritten)"]
    out = []
    try:
        hb, ha = before["hooks"], after["hooks"]
        for key in ("input_transformers_cleanup", "input_transformers_post", "ast_transformers"):
            new = [f for f in ha.get(key, []) if f not in hb.get(key, []) and not _trusted_hook(f)]
            if new:
                out.append(f"installs {key.replace('_', ' ')}: {', '.join(new)}")
        for ev, cbs in ha.get("events", {}).items():
            new = [f for f in cbs if f not in hb.get("events", {}).get(ev, []) and not _trusted_hook(f)]
            if new:
                out.append(f"registers IPython {ev} callback(s): {', '.join(new)}")
        if ha.get("custom_exceptions") != hb.get("custom_exceptions") or ha.get("CustomTB") != hb.get("CustomTB"):
            out.append("installs a custom exception handler (set_custom_exc)")
        for key, what in (("showtraceback", "IPython's traceback display"), ("displayhook", "sys.displayhook"),
                          ("displayhook_id", "sys.displayhook"), ("ip_displayhook", "IPython's display hook"),
                          ("display_pub", "IPython's display publisher"), ("trace", "the trace function"),
                          ("profile", "the profile function")):
            if ha.get(key) != hb.get(key):
                out.append(f"replaces {what}")
        # ipykernel swaps sys.excepthook and builtins.input around every execution: judge by owner
        if ha.get("excepthook") != hb.get("excepthook") and not _trusted_hook(str(ha.get("excepthook"))):
            out.append(f"replaces sys.excepthook ({ha.get('excepthook')})")
        mb, ma = before["modules"], after["modules"]
        for k, (ident, kind) in ma.items():
            if k in mb and mb[k][0] != ident:
                out.append(f"replaces sys.modules[{k!r}]")
            elif kind != "module" and k not in mb:
                out.append(f"puts a {kind} into sys.modules[{k!r}]")
            elif k.split(".")[0] == "tdlcourse":
                out.append(f"puts a module tdlcourse into sys.modules[{k!r}] (the library is not installed here)")
        gone = [k for k in mb if k not in ma]
        if gone:
            out.append(f"removes {len(gone)} module(s) from sys.modules ({', '.join(sorted(gone)[:3])}...)")
        foreign = [a for a in after.get("foreign", []) if a not in before.get("foreign", [])]
        if foreign:
            out.append(f"replaces {', '.join(foreign[:5])} by code from the notebook"
                       + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else ""))
        for m, attrs in before["attrs"].items():
            now = after["attrs"].get(m, {})
            changed = sorted(k for k, v in attrs.items() if k in now and now[k] != v and (m, k) not in _VOLATILE)
            if changed:
                out.append(f"replaces {', '.join(f'{m}.{k}' for k in changed[:5])}"
                           + (f" and {len(changed) - 5} more" if len(changed) > 5 else ""))
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        out.append(f"the integrity probe's report is malformed ({type(e).__name__}): forged?")
    return list(dict.fromkeys(out))


@dataclass
class TrustedTests:
    """The trusted checks of one assignment's notebooks (from the gradebook), with references,
    computed once per grading run: ``specs[notebook][grade_id]``."""

    specs: dict = field(default_factory=dict)
    refs: dict = field(default_factory=dict)

    @classmethod
    def from_gradebook(cls, course, assignment: str) -> "TrustedTests":
        out = cls()
        with course.gradebook() as gb:
            a = gb.find_assignment(assignment)
            for nb in a.notebooks:
                cells = {}
                for gc in nb.grade_cells:
                    if gc.cell_type != "code":
                        continue
                    src = gb.find_source_cell(gc.name, nb.name, assignment).source or ""
                    specs = extract_checks(src, f"{assignment}/{nb.name}/{gc.name}")
                    if specs:
                        cells[gc.name] = (float(gc.max_score), specs)
                out.specs[nb.name] = cells
        for cells in out.specs.values():
            for gid, (_, specs) in cells.items():
                for s in specs:
                    out.refs[(gid, s.name)] = references(s)
        return out

    def disarm(self, notebook: str, nb) -> None:
        """In the cells the grader scores, turn results (``execute_result``) into plain display data:
        nbgrader would read a number there as partial credit (and fail on one above the cell's
        points), and the kernel's word counts for nothing here."""
        cells = self.specs.get(notebook, {})
        for c in nb.cells:
            if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") in cells:
                for o in c.get("outputs", []):
                    if o.get("output_type") == "execute_result":
                        o["output_type"] = "display_data"
                        o.pop("execution_count", None)

    def verdicts(self, notebook: str, nb) -> list[CellVerdict]:
        cells = self.specs.get(notebook, {})
        by_id = {c.get("metadata", {}).get("nbgrader", {}).get("grade_id"): c for c in nb.cells}
        out = []
        for gid, (points, specs) in cells.items():
            refs = {s.name: self.refs[(gid, s.name)] for s in specs}
            out.append(verdict(gid, points, specs, refs, by_id.get(gid, {"outputs": []})))
        return out


def check_notebook_source(nb, where: str) -> int:
    """Validate every hidden test of a (source) notebook before release: returns the number of
    checks; raises ``TrustedCheckError`` for a reference that does not exist, inputs that cannot
    be computed, or duplicate names."""
    n = 0
    names: dict[str, str] = {}
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if cell.get("cell_type") != "code" or not meta.get("grade"):
            continue
        specs = extract_checks(cell.get("source", ""), f"{where}/{meta.get('grade_id')}")
        for s in specs:
            if s.name in names:
                raise TrustedCheckError(f"{where}: check name {s.name!r} is used in {names[s.name]} and "
                                        f"{meta.get('grade_id')}")
            names[s.name] = meta.get("grade_id")
            references(s)  # a reference that fails on its own cases is the instructor's bug
        n += len(specs)
    return n


def jsonable(v: CellVerdict) -> dict:
    return {"grade_id": v.grade_id, "score": v.score, "points": v.points, "passed": v.passed, "total": v.total,
            "flags": list(v.flags), "problems": {c.name: list(c.problems[:5]) for c in v.checks}}


__all__ = ["CheckSpec", "CheckResult", "CellVerdict", "TrustedTests", "TrustedCheckError", "extract_checks",
           "references", "verdict", "records", "scan", "scan_source", "probe_findings", "probe_snapshot",
           "check_notebook_source", "PROBE_CODE", "PROBE_MIME", "resolve", "jsonable"]
