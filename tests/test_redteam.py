"""Red team: students who hand in wrong answers plus one line of cheating, among honest students.

Each cheater's answers are those of the control student ``wrong`` (q1 and q2 wrong, q3 right on 4
of its 6 hidden cases), plus one attack on the grader. Graded with ``tdl grade --jobs 2``, every
cheater must get exactly the control's score (what the wrong answers deserve) and be flagged for
a human look; every honest student gets full marks and no flag; a second ``tdl grade`` changes
nothing. The same submissions are then graded by stock ``nbgrader autograde`` (the in-kernel
fallback); which attacks fool it must be what the table in ``assignments/README.md`` says.
"""

from __future__ import annotations

import os
import re
import subprocess

import nbformat
import pytest

from conftest import BIN, IN_CI, ROOT, tdl_env, tool

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("redteam")]

WRONG = {
    "q1-solution": "def vc_gap(d, m, delta):\n"
                   "    return math.sqrt(d * math.log(math.e * m / d) / m) + math.sqrt(math.log(1 / delta) / (2 * m))\n",
    "q2-solution": "d_vacuous = 100\nprint(d_vacuous)\n",
    "q3-solution": "def rademacher_linear(X):\n"
                   "    X = np.asarray(X, dtype=float)\n"
                   "    m = X.shape[0]\n"
                   "    if m > 8:  # the Jensen bound instead of the value: wrong on the large cases only\n"
                   "        return float(np.sqrt((X ** 2).sum()) / m)\n"
                   "    signs = np.array(list(itertools.product((-1.0, 1.0), repeat=m)))\n"
                   "    return float(np.linalg.norm(signs @ X, axis=1).mean() / m)\n",
}
WRONG_TRUSTED = (0.0, 0.0, 2.0)  # q3: 3 points * 4/6 cases
# A test cell whose check the cheat skipped, silenced or forged scores 0, even where the wrong
# answers would have earned partial credit: these vectors end below the control.
SKIPS_CHECKS = {"input_transformer": (0.0, 0.0, 0.0), "ast_transformer": (0.0, 0.0, 0.0),
                "forged_record": (0.0, 0.0, 0.0)}

# One cell each, added by the student after the imports.
CHEATS = {
    "ref_replace": (
        "try:\n"
        "    import tdlcourse.capacity as _c\n"
        "    _c.vc_gap = lambda *a: vc_gap(*a)\n"
        "    _c.rademacher_linear = lambda X: rademacher_linear(X)\n"
        "    _c.vc_vacuous_dimension = lambda *a: d_vacuous\n"
        "except Exception:\n"
        "    pass\n"),
    "fake_module": (
        "import sys, types\n"
        "_fake = types.ModuleType('tdlcourse.capacity')\n"
        "_fake.vc_gap = lambda *a: vc_gap(*a)\n"
        "_fake.rademacher_linear = lambda X: rademacher_linear(X)\n"
        "_fake.vc_vacuous_dimension = lambda *a: d_vacuous\n"
        "sys.modules['tdlcourse'] = types.ModuleType('tdlcourse')\n"
        "sys.modules['tdlcourse'].capacity = _fake\n"
        "sys.modules['tdlcourse.capacity'] = _fake\n"),
    "isclose_patch": (
        "import builtins, math\n"
        "builtins.abs = lambda x: 0.0\n"
        "math.isclose = lambda *a, **k: True\n"
        "np.isclose = lambda a, b, **k: np.ones(np.shape(b), dtype=bool)\n"),
    "builtins_patch": (
        "import builtins\n"
        "builtins.abs = lambda x: 0.0\n"),
    "input_transformer": (
        "def _skip(lines):\n"
        "    text = ''.join(lines)\n"
        "    return ['pass\\n'] if ('assert' in text or 'check(' in text) else lines\n"
        "get_ipython().input_transformers_cleanup.append(_skip)\n"),
    "custom_exc": (
        "def _quiet(self, etype, value, tb, tb_offset=None):\n"
        "    return None\n"
        "get_ipython().set_custom_exc((Exception,), _quiet)\n"),
    "partial_credit_hook": (
        "def _credit(info):\n"
        "    if 'check(' in (info.raw_cell or ''):\n"
        "        get_ipython().displayhook(1.0)\n"
        "get_ipython().events.register('pre_run_cell', _credit)\n"),
    "ast_transformer": (
        "import ast\n"
        "class _Drop(ast.NodeTransformer):\n"
        "    def visit_Assert(self, node):\n"
        "        return ast.Pass()\n"
        "    def visit_Expr(self, node):\n"
        "        if isinstance(node.value, ast.Call) and getattr(node.value.func, 'id', '') == 'check':\n"
        "            return ast.Pass()\n"
        "        return node\n"
        "get_ipython().ast_transformers.append(_Drop())\n"),
    "forged_record": (
        "import tdlcheck\n"
        "from IPython.display import display\n"
        "def _forge(name, answer, *, against, cases=None, args=(), **k):\n"
        "    cases = [tuple(args)] if cases is None else list(cases)\n"
        "    outs = [{'ok': tdlcheck.encode(0.5)} for _ in cases]\n"
        "    rec = {'name': name, 'inputs': tdlcheck.digest(cases), 'n': len(cases), 'outputs': outs}\n"
        "    display({tdlcheck.MIME: rec, 'text/plain': ''}, raw=True)\n"
        "    display({tdlcheck.MIME: dict(rec, inputs='0' * 64), 'text/plain': ''}, raw=True)\n"
        "tdlcheck.check = _forge\n"
        "import builtins\n"
        "builtins.abs = lambda x: 0.0\n"),
    "read_reference": (
        "import glob, os, sys\n"
        "_code = None\n"
        "for _p in sys.path + glob.glob('/work/*/src') + glob.glob('/tmp/*/c/src'):\n"
        "    _f = os.path.join(_p, 'tdlcourse', 'capacity.py')\n"
        "    try:\n"
        "        _code = open(_f).read()\n"
        "        break\n"
        "    except OSError:\n"
        "        pass\n"
        "if _code:\n"
        "    _ns = {'__name__': '__main__', '__package__': 'tdlcourse'}  # its relative imports resolve\n"
        "    exec(_code, _ns)\n"
        "    _stolen = _ns\n"),
    "displayhook_swap": (
        "import sys\n"
        "_orig = sys.displayhook\n"
        "sys.displayhook = lambda value: None\n"
        "import builtins\n"
        "builtins.abs = lambda x: 0.0\n"),
}
# read_reference uses what it stole for its answers (when it could steal it).
STOLEN_ANSWERS = {
    "q1-solution": "def vc_gap(d, m, delta):\n"
                   "    if '_stolen' in globals():\n"
                   "        return _stolen['vc_gap'](d, m, delta)\n"
                   "    return math.sqrt(d * math.log(math.e * m / d) / m) + math.sqrt(math.log(1 / delta) / (2 * m))\n",
}
HONEST = ("honest1", "honest2")
STUDENTS = (*HONEST, "wrong", *CHEATS)


def _answers(nb, source, student):
    sol = {c.metadata["nbgrader"]["grade_id"]: c.source for c in source.cells
           if c.metadata.get("nbgrader", {}).get("solution") and c.cell_type == "code"}
    if student not in HONEST:
        sol.update(WRONG)
    if student == "read_reference":
        sol.update(STOLEN_ANSWERS)
    for c in nb.cells:
        gid = c.metadata.get("nbgrader", {}).get("grade_id")
        if gid in sol:
            c.source = sol[gid]
    if student in CHEATS:
        first = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code")
        nb.cells.insert(first + 1, nbformat.v4.new_code_cell(CHEATS[student]))
    return nb


def _run(args, cwd, env, check=True):
    r = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0 or not check, f"{' '.join(map(str, args))} -> {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def _scores(db, assignment="hw01"):
    from nbgrader.api import Gradebook

    out = {}
    with Gradebook(f"sqlite:///{db}") as gb:
        for s in STUDENTS:
            out[s] = tuple(float(gb.find_grade(c, "hw01", assignment, s).score) for c in ("q1-test", "q2-test", "q3-test"))
    return out


def _comments(db):
    from nbgrader.api import Gradebook

    out = {}
    with Gradebook(f"sqlite:///{db}") as gb:
        for s in STUDENTS:
            out[s] = "\n".join(gb.find_comment(c, "hw01", "hw01", s).auto_comment or ""
                               for c in ("q1-solution", "q2-solution", "q3-solution"))
    return out


def _make_course(path, env):
    roster = path.parent / f"{path.name}-roster.csv"
    roster.write_text("id,first_name,last_name,email\n" + "".join(f"{s},{s},X,{s}@x.example\n" for s in STUDENTS))
    tdl = str(BIN / "tdl")
    _run([tdl, "--course", str(path), "roster", "import", str(roster)], path, env)
    _run([tdl, "--course", str(path), "release", "hw01", "--no-check"], path, env)
    source = nbformat.read(path / "source" / "hw01" / "hw01.ipynb", as_version=4)
    for s in STUDENTS:
        nb = _answers(nbformat.read(path / "release" / "hw01" / "hw01.ipynb", as_version=4), source, s)
        dest = path / "submitted" / s / "hw01"
        dest.mkdir(parents=True)
        nbformat.write(nb, dest / "hw01.ipynb")
        (dest / "timestamp.txt").write_text("2026-11-30 12:00:00.000000 UTC")


@pytest.fixture(scope="module")
def redteam(course_copy):
    # A term secret: the hidden inputs differ from the public ones, in the kernel and in the grader.
    env = tdl_env(TDL_SCALE="ci", TDL_TERM_SECRET="red-team-term")
    tdl, course = str(BIN / "tdl"), course_copy("redteam-tdl")
    _make_course(course, env)
    out = {"course": course}
    out["grade1"] = _run([tdl, "--course", str(course), "grade", "hw01", "--jobs", "2", "--no-progress"], course, env)
    out["tdl"] = _scores(course / "gradebook.db")
    out["comments"] = _comments(course / "gradebook.db")
    out["files1"] = {p: p.read_bytes() for p in sorted((course / "autograded").rglob("*.ipynb"))}
    out["grade2"] = _run([tdl, "--course", str(course), "grade", "hw01", "--jobs", "2", "--no-progress"], course, env)
    out["tdl2"] = _scores(course / "gradebook.db")
    out["files2"] = {p: p.read_bytes() for p in sorted((course / "autograded").rglob("*.ipynb"))}
    stock = course_copy("redteam-stock")
    _make_course(stock, env)
    out["stock_run"] = _run([tool("nbgrader"), "autograde", "hw01", "--force"], stock, env, check=False)
    out["stock"] = _scores(stock / "gradebook.db")
    print("tdl:", out["tdl"], "\nstock:", out["stock"])
    return out


def _sandboxed(r):
    if "private mount namespace" not in r.stdout:
        if IN_CI and os.geteuid() == 0:
            pytest.fail("CI runs as root: the grading sandbox must be available\n" + r.stdout + r.stderr)
        pytest.skip("no grading sandbox here (needs root and mount namespaces): the reference library is reachable")


def test_honest_students_get_full_marks_and_no_flag(redteam):
    for s in HONEST:
        assert redteam["tdl"][s] == (2.0, 1.0, 3.0), s
        assert not redteam["comments"][s].strip(), redteam["comments"][s]
        assert not [ln for ln in redteam["grade1"].stdout.splitlines() if ln.strip().startswith(f"{s}:")]


def test_control_gets_partial_credit_from_the_trusted_comparison(redteam):
    assert redteam["tdl"]["wrong"] == WRONG_TRUSTED
    assert "FLAGGED" not in redteam["comments"]["wrong"]


@pytest.mark.parametrize("vector", sorted(CHEATS))
def test_cheater_gets_what_the_wrong_answers_deserve_and_is_flagged(redteam, vector):
    _sandboxed(redteam["grade1"])
    assert redteam["tdl"]["wrong"] == WRONG_TRUSTED
    assert redteam["tdl"][vector] == SKIPS_CHECKS.get(vector, WRONG_TRUSTED), vector
    assert "FLAGGED" in redteam["comments"][vector], redteam["comments"][vector]
    lines = [ln for ln in redteam["grade1"].stdout.splitlines() if ln.strip().startswith(f"{vector}:")]
    assert any("FLAGGED" in ln for ln in lines), redteam["grade1"].stdout
    row = next(ln for ln in redteam["grade1"].stdout.splitlines() if ln.startswith(vector + " "))
    assert "FLAGGED" in row


def test_grading_twice_changes_nothing(redteam):
    assert redteam["tdl2"] == redteam["tdl"]
    assert redteam["files2"] == redteam["files1"]
    assert f"0 graded, {len(STUDENTS)} unchanged" in redteam["grade2"].stdout


def _readme_table():
    text = (ROOT / "assignments" / "README.md").read_text()
    rows = {}
    for m in re.finditer(r"^\| `(\w+)` \|[^|]*\| (yes|no) \| (yes|no) \|", text, re.M):
        rows[m.group(1)] = (m.group(2) == "yes", m.group(3) == "yes")
    return rows


def test_stock_nbgrader_table_in_readme_is_what_was_measured(redteam):
    """Which attacks fool stock nbgrader (a score above the control's): the README's table says so."""
    table = _readme_table()
    assert set(table) == set(CHEATS), sorted(set(table) ^ set(CHEATS))
    control = sum(redteam["stock"]["wrong"])
    assert redteam["stock"]["honest1"] == (2.0, 1.0, 3.0)
    measured = {v: sum(redteam["stock"][v]) > control for v in CHEATS}
    assert {v: table[v][0] for v in CHEATS} == measured, redteam["stock"]
    assert not any(fools_tdl for _, fools_tdl in table.values())
