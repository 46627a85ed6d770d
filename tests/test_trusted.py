"""Trusted checking, piece by piece (no kernel): the kernel-side encoding (tdlcheck), the grader's
reading of a test cell from trusted source, the verdict on every kind of record a hostile kernel
can emit, the static scan and the probe comparison, and `tdl release` refusing broken hidden tests.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import tdlcheck
from conftest import ROOT
from tdlcourse import capacity
from tdlcourse.grading import trusted

TEST_CELL = '''
assert abs(vc_gap(100, 1797, 0.05) - 0.686746) < 1e-6
### BEGIN HIDDEN TESTS
from tdlcheck import check
import numpy as _np
_rng = _np.random.default_rng(1)
_cases = [(int(_rng.integers(1, 50)), 100, 0.05) for _ in range(4)]
check("q1", vc_gap, cases=_cases, against="tdlcourse.capacity.vc_gap", rtol=1e-9)
check("q2", d_vacuous, against="tdlcourse.capacity.vc_vacuous_dimension", args=(1258, 0.05), rtol=0)
### END HIDDEN TESTS
'''


def _record(spec, outputs, **over):
    rec = {"name": spec.name, "inputs": spec.digest, "n": len(spec.cases), "outputs": outputs}
    rec.update(over)
    return {"output_type": "display_data", "data": {tdlcheck.MIME: rec, "text/plain": ""}, "metadata": {}}


def _ok(value):
    return {"ok": tdlcheck.encode(value)}


@pytest.fixture(scope="module")
def specs():
    return trusted.extract_checks(TEST_CELL)


def test_encode_decode_round_trip_is_exact():
    values = [0.1, 1 / 3, -0.0, float("inf"), 7, True, None, "x", (1, 2.5), [np.float32(0.1), np.int64(3)],
              np.arange(6, dtype=np.float64).reshape(2, 3) / 7, {"a": 1.5}, 1 + 2j]
    for v in values:
        back = tdlcheck.decode(tdlcheck.encode(v))
        if isinstance(v, np.ndarray):
            assert back.dtype == v.dtype and np.array_equal(back, v)
        else:
            assert tdlcheck.encode(back) == tdlcheck.encode(v)


def test_decode_refuses_what_is_not_plain_data():
    with pytest.raises(ValueError):
        tdlcheck.decode({"array": "|O", "shape": [1], "hex": "00" * 8})
    with pytest.raises(ValueError):
        tdlcheck.decode({"array": "<f8", "shape": [3], "hex": "00" * 8})
    with pytest.raises(ValueError):
        tdlcheck.decode({"pickle": "..."})
    with pytest.raises(TypeError):
        tdlcheck.encode(object())


def test_digest_depends_on_every_input_bit():
    a = [(np.array([1.0, 2.0]),)]
    b = [(np.array([1.0, np.nextafter(2.0, 3.0)]),)]
    assert tdlcheck.digest(a) != tdlcheck.digest(b)
    assert tdlcheck.digest([(1, 2)]) != tdlcheck.digest([(1.0, 2)])


def test_compare_tolerances():
    assert tdlcheck.compare(1.0 + 1e-12, 1.0, 1e-9, 0.0)[0]
    assert not tdlcheck.compare(1.0 + 1e-6, 1.0, 1e-9, 0.0)[0]
    assert not tdlcheck.compare([1.0, 2.0], [1.0, 2.0, 3.0], 1e-9, 0)[0]
    assert not tdlcheck.compare(float("nan"), 1.0, 1e-9, 0)[0]
    assert tdlcheck.compare(211, 211, 0, 0)[0] and not tdlcheck.compare(212, 211, 0, 0)[0]
    assert not tdlcheck.compare("0.5", 0.5, 1e-9, 0)[0]


def test_in_kernel_fallback_asserts(monkeypatch):
    monkeypatch.delenv(tdlcheck.MODE_ENV, raising=False)
    tdlcheck.check("q", capacity.vc_gap, cases=[(10, 100, 0.05)], against="tdlcourse.capacity.vc_gap")
    with pytest.raises(AssertionError, match="1 of 2 case"):
        tdlcheck.check("q", lambda d, m, delta: 0.5 if d == 10 else capacity.vc_gap(d, m, delta),
                       cases=[(10, 100, 0.05), (20, 100, 0.05)], against="tdlcourse.capacity.vc_gap")


def test_extract_checks_evaluates_trusted_inputs_only(specs):
    assert [s.name for s in specs] == ["q1", "q2"]
    rng = np.random.default_rng(1)
    assert specs[0].cases == tuple((int(rng.integers(1, 50)), 100, 0.05) for _ in range(4))
    assert specs[1].cases == ((1258, 0.05),) and specs[1].rtol == 0
    assert specs[0].digest == tdlcheck.digest(list(specs[0].cases))


@pytest.mark.parametrize("source, message", [
    ("from tdlcheck import check\ncheck('q', f, cases=[(1,)], against='tdlcourse.capacity.nope')", "names no function"),
    ("from tdlcheck import check\ncheck('q', f, cases=[(1,)], against='nomodule.f')", "names no function"),
    ("from tdlcheck import check\ncheck('q', f, cases=[(student_value,)], against='math.sqrt')", "student's code"),
    ("from tdlcheck import check\ncheck('q', f, cases=[], against='math.sqrt')", "no cases"),
    ("from tdlcheck import check\ncheck('q', f, cases=[(1,)], against='math.sqrt')\n"
     "check('q', g, cases=[(2,)], against='math.sqrt')", "used twice"),
    ("from tdlcheck import check\ncheck('q', f, cases=[(1,)], against='math.sqrt', rtol=-1)", "rtol"),
])
def test_broken_hidden_tests_are_refused(source, message):
    with pytest.raises(trusted.TrustedCheckError, match=message):
        trusted.extract_checks(source, "hw/q")


def _refs(specs):
    return {s.name: trusted.references(s) for s in specs}


def test_verdict_scores_cases_passed(specs):
    q1, q2 = specs
    right = [_ok(capacity.vc_gap(*c)) for c in q1.cases]
    cell = {"outputs": [_record(q1, right[:3] + [_ok(0.5)]), _record(q2, [_ok(211)])]}
    v = trusted.verdict("t", 5.0, specs, _refs(specs), cell)
    assert (v.passed, v.total) == (4, 5) and math.isclose(v.score, 4.0) and not v.flags
    assert "case 3" in " ".join(v.checks[0].problems)


@pytest.mark.parametrize("kind", ["missing", "duplicated", "other_inputs", "wrong_count", "malformed", "stray"])
def test_forged_or_missing_records_score_zero(specs, kind):
    q1, q2 = specs
    right = [_ok(capacity.vc_gap(*c)) for c in q1.cases]
    good2 = _record(q2, [_ok(capacity.vc_vacuous_dimension(1258, 0.05))])
    outputs = {
        "missing": [good2],
        "duplicated": [_record(q1, right), _record(q1, right), good2],
        "other_inputs": [_record(q1, right, inputs="0" * 64), good2],
        "wrong_count": [_record(q1, right[:2], n=2), good2],
        "malformed": [_record(q1, "everything passed"), good2],
        "stray": [_record(q1, right), good2, _record(q1, right, name="bonus")],
    }[kind]
    v = trusted.verdict("t", 5.0, specs, _refs(specs), {"outputs": outputs})
    if kind == "stray":
        assert v.score == 5.0 and v.flags
    else:
        assert v.checks[0].passed == 0 and v.score == 1.0
        assert bool(v.flags) == (kind != "missing")


def test_printed_numbers_and_errors_are_not_credit(specs):
    q1, q2 = specs
    cell = {"outputs": [{"output_type": "execute_result", "data": {"text/plain": "5.0"}, "metadata": {}},
                        _record(q1, [{"error": "ZeroDivisionError: x"}] * 4)]}
    v = trusted.verdict("t", 5.0, specs, _refs(specs), cell)
    assert v.score == 0.0 and "raised ZeroDivisionError" in v.checks[0].problems[0]


@pytest.mark.parametrize("code, finding", [
    ("get_ipython().input_transformers_cleanup.append(f)", "input transformer"),
    ("import math\nmath.isclose = lambda *a: True", "replaces math.isclose"),
    ("import numpy as np\nnp.allclose = f", "replaces np.allclose"),
    ("import sys\nsys.modules['x'] = y", "sys.modules"),
    ("exec(base64.b64decode(s))", "exec"),
    ("from tdlcourse.capacity import vc_gap", "tdlcourse"),
    ("ip = get_ipython()\nip.set_custom_exc((Exception,), h)", "custom exception"),
    ("%env NBGRADER_EXECUTION", "IPython"),
    ("get_ipython().events.register('pre_run_cell', hook)", "event callbacks"),
    ("import builtins\nbuiltins.abs = f", "builtins"),
])
def test_scan_finds_tampering(code, finding):
    assert any(finding in f for f in trusted.scan_source(code)), trusted.scan_source(code)


def test_scan_leaves_honest_answers_alone():
    import nbformat

    nb = nbformat.read(ROOT / "assignments" / "source" / "hw01" / "hw01.ipynb", as_version=4)
    assert trusted.scan(nb) == []
    lab = nbformat.read(next((ROOT / "labs").glob("01_*.ipynb")), as_version=4)
    graded = [i for i, c in enumerate(lab.cells) if c.metadata.get("nbgrader", {}).get("solution")]
    assert trusted.scan(lab, graded) == []


def _snap(**over):
    snap = {"modules": {"math": [1, "module"]}, "attrs": {"math": {"isclose": 5}}, "foreign": [],
            "hooks": {"input_transformers_cleanup": ["IPython.core.x"], "input_transformers_post": [],
                      "ast_transformers": [], "events": {"pre_run_cell": []}, "custom_exceptions": [],
                      "CustomTB": None, "showtraceback": "IPython.a", "displayhook": "ipykernel.D",
                      "displayhook_id": 1, "ip_displayhook": 2, "display_pub": 3, "excepthook": "ipykernel.e",
                      "trace": "None", "profile": "None"}}
    for k, v in over.items():
        section, _, key = k.partition("__")
        if key:
            snap[section] = dict(snap[section], **{key: v})
        else:
            snap[section] = v
    return snap


@pytest.mark.parametrize("after, finding", [
    (_snap(hooks__input_transformers_cleanup=["IPython.core.x", "__main__._skip"]), "input transformers"),
    (_snap(hooks__events={"pre_run_cell": ["__main__._credit"]}), "pre_run_cell"),
    (_snap(hooks__custom_exceptions=["<class 'Exception'>"]), "custom exception"),
    (_snap(hooks__displayhook_id=9), "sys.displayhook"),
    (_snap(hooks__excepthook="__main__.hook"), "excepthook"),
    (_snap(modules={"math": [7, "module"]}), "replaces sys.modules['math']"),
    (_snap(modules={"math": [1, "module"], "tdlcourse": [8, "module"]}), "tdlcourse"),
    (_snap(modules={}), "removes"),
    (_snap(attrs={"math": {"isclose": 6}}), "replaces math.isclose"),
    (_snap(foreign=["numpy.isclose"]), "numpy.isclose"),
    (None, "did not report"),
    ({"garbage": 1}, "malformed"),
])
def test_probe_findings(after, finding):
    found = trusted.probe_findings(_snap(), after)
    assert any(finding in f for f in found), found


def test_probe_of_an_untouched_kernel_finds_nothing():
    assert trusted.probe_findings(_snap(), _snap()) == []
    assert trusted.probe_findings(_snap(), None, kernel_died=True) == []


def test_release_refuses_a_hidden_test_with_an_unknown_reference(course_copy, capsys):
    import json

    from tdlcourse.grading.cli import main

    course = course_copy("badref")
    path = course / "source" / "hw01" / "hw01.ipynb"
    nb = json.loads(path.read_text())
    for c in nb["cells"]:
        c["source"] = [s.replace("tdlcourse.capacity.vc_gap", "tdlcourse.capacity.vc_gapp") for s in c["source"]]
    path.write_text(json.dumps(nb))
    assert main(["--course", str(course), "release", "hw01", "--no-check"]) == 2
    err = capsys.readouterr().err
    assert "vc_gapp" in err and "names no function" in err
    assert not (course / "release").exists() and not (course / "gradebook.db").exists()
    assert not (course / "exchange").exists()


def test_asserts_on_student_values_inside_a_check_statement_are_dropped():
    source = ("from tdlcheck import check\n"
              "for _m in (100, 200):\n"
              "    assert vc_gap(1, _m, 0.05) > 0\n"
              "    check(f'q{_m}', vc_gap, cases=[(1, _m, 0.05)], against='tdlcourse.capacity.vc_gap')\n")
    assert [s.name for s in trusted.extract_checks(source)] == ["q100", "q200"]


def test_term_secret_changes_the_hidden_inputs(monkeypatch):
    source = ("from tdlcheck import check, rng\nimport tdlcheck as t\n_r = rng('q')\n"
              "check('q', f, cases=[(float(_r.normal()), t.rng('q2').integers(9))], against='math.hypot')\n")
    monkeypatch.delenv(tdlcheck.SECRET_ENV, raising=False)
    public = trusted.extract_checks(source)[0]
    assert public.cases[0][0] == float(tdlcheck.rng("q").normal())
    monkeypatch.setenv(tdlcheck.SECRET_ENV, "spring-2027")
    secret = trusted.extract_checks(source)[0]
    assert secret.digest != public.digest and secret.cases[0][0] == float(tdlcheck.rng("q").normal())
    with pytest.raises(ValueError, match="name="):
        tdlcheck.rng("")


def test_sandbox_plan_keeps_the_reference_hidden_in_a_checkout_under_tmp(monkeypatch, tmp_path):
    """A checkout under /tmp (CI's clean clone): /tmp is private, its src/ is kept, and the
    reference library inside src/ must stay in the hidden list (it once fell out of it)."""
    from tdlcourse.grading import sandbox as sb

    src = tmp_path / "clone" / "src"
    (src / "tdlcourse").mkdir(parents=True)
    (src / "tdlcheck").mkdir()
    monkeypatch.setattr(sb, "python_paths", lambda: [str(src)])
    monkeypatch.setattr(sb, "reference_paths", lambda: [str(src / "tdlcourse")])
    plan = sb.default_plan([str(tmp_path / "course")], str(tmp_path / "scratch"))
    assert str(src / "tdlcourse") in plan.hide and str(src) in plan.keep and plan.reference_hidden
    assert str(src / "tdlcourse") not in sb.default_plan([], str(tmp_path), hide_reference=False).hide


def test_compare_tuples_of_arrays_and_numbers():
    """A reference may return a tuple (e.g. hw03's SVM direction and margin): compared item by item,
    after the same encoding round trip a student's output takes."""
    import numpy as np

    import tdlcheck

    w = np.array([0.6, 0.8])
    want = tdlcheck._plain((w, 0.5))
    assert tdlcheck.compare(tdlcheck.decode(tdlcheck.encode(tdlcheck._plain((w, 0.5)))), want, 1e-9, 0)[0]
    assert tdlcheck.compare([w, 0.5], want, 1e-9, 0)[0]  # a list of the two is accepted too
    assert not tdlcheck.compare((w, 0.6), want, 1e-9, 0)[0]
    ok, why = tdlcheck.compare((w + 1e-3, 0.5), want, 1e-9, 0)
    assert not ok and why.startswith("item 0")
    assert not tdlcheck.compare(0.5, want, 1e-9, 0)[0]
    assert not tdlcheck.compare((w,), want, 1e-9, 0)[0]
