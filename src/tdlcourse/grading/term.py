"""The end of a term: the oral exam's scores and the final grades.

Configuration (``assignments/nbgrader_config.py``, section ``TdlGrades``):

- ``components``: component name -> fnmatch pattern of the gradebook's assignment names
  (default ``{"labs": "lab*", "assignments": "hw*"}``); ``exam`` is the oral exam, always a component;
- ``weights``: component -> weight (default ``{"labs": 0.2, "assignments": 0.3, "exam": 0.5}``):
  every component has one, none is negative, they sum to 1;
- ``exam_max_score``: the exam's maximum (default 100).

For a student, with ``A_c`` the assignments in the gradebook whose names match component ``c``:

    points_a  = max(0, score_a - late_penalty_a)              (0 without a submission)
    c         = (1 / |A_c|) * sum over a in A_c of points_a / max_score_a
    exam      = exam_score / exam_max_score                   (0 without an exam score)
    final     = sum over components c of weight_c * c

Every component is a fraction (in [0, 1]; above 1 only through nbgrader's extra credit). Missing
work (no submission of an assignment, no exam score) counts 0 and is listed per student. A
component with a positive weight but nothing to grade (no matching assignment in the gradebook, or
no exam score imported at all) is an error; with weight 0 it counts 0 and lists nothing.
Assignments that match no component are not counted (``FinalGrades.ignored``).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

from .course import Course, CourseError, RosterChange, course_lock, read_csv_table
from .files import atomic_write_text

EXAM = "exam"
DEFAULT_COMPONENTS = {"labs": "lab*", "assignments": "hw*"}
DEFAULT_WEIGHTS = {"labs": 0.2, "assignments": 0.3, "exam": 0.5}
DEFAULT_EXAM_MAX = 100.0
EXAM_COLUMNS = ("id", "score", "note")
_EXAM_ALIASES = {"student_id": "id", "student": "id", "examiner_note": "note", "comment": "note", "comments": "note",
                 "notes": "note"}
WEIGHT_TOLERANCE = 1e-9


def _settings(course: Course) -> dict:
    return dict(course.config.get("TdlGrades", {}) or {})


def components(course: Course) -> dict[str, str]:
    """The graded components of the course (name -> assignment-name pattern), exam excluded."""
    comps = _settings(course).get("components", DEFAULT_COMPONENTS)
    if not isinstance(comps, dict) or not comps or not all(
            isinstance(k, str) and k and isinstance(v, str) and v for k, v in comps.items()):
        raise CourseError(f"TdlGrades.components={comps!r} must be a non-empty dict of name -> pattern, "
                          f"e.g. {DEFAULT_COMPONENTS!r}")
    if EXAM in comps:
        raise CourseError(f"TdlGrades.components names {EXAM!r}: that name is the oral exam's (tdl exam import)")
    return dict(comps)


def exam_max_score(course: Course) -> float:
    value = _settings(course).get("exam_max_score", DEFAULT_EXAM_MAX)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise CourseError(f"TdlGrades.exam_max_score={value!r} must be a positive number")
    return float(value)


def check_weights(weights, allowed) -> dict[str, float]:
    """Validate ``weights`` (component -> weight): one per component of ``allowed``, none negative,
    summing to 1 (within 1e-9). Returns them as floats in the order of ``allowed``."""
    allowed = tuple(allowed)
    what = f"allowed components: {', '.join(allowed)}"
    if not isinstance(weights, dict):
        raise CourseError(f"weights={weights!r} must map each component to a weight ({what})")
    unknown = [k for k in weights if k not in allowed]
    if unknown:
        raise CourseError(f"weights name unknown component(s) {', '.join(map(repr, unknown))}; {what}")
    lacking = [k for k in allowed if k not in weights]
    if lacking:
        raise CourseError(f"weights lack component(s) {', '.join(lacking)}; give every component a weight "
                          f"(0 leaves one out); {what}")
    out = {}
    for k in allowed:
        v = weights[k]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise CourseError(f"weight {k}={v!r} is not a number")
        if v < 0:
            raise CourseError(f"weight {k}={v!r} is negative; weights are >= 0 and sum to 1")
        out[k] = float(v)
    total = math.fsum(out.values())
    if abs(total - 1.0) > WEIGHT_TOLERANCE:
        raise CourseError(f"weights {', '.join(f'{k}={v:g}' for k, v in out.items())} sum to {total:g}, "
                          "not 1; the final grade is their weighted sum of fractions")
    return out


def parse_weights(text: str, allowed=(*DEFAULT_COMPONENTS, EXAM)) -> dict[str, float]:
    """``"labs=0.2,assignments=0.3,exam=0.5"`` -> ``{"labs": 0.2, ...}``, validated by ``check_weights``."""
    weights = {}
    for part in (text or "").split(","):
        name, sep, value = part.partition("=")
        name = name.strip()
        try:
            if not sep or not name:
                raise ValueError
            number = float(value)
        except ValueError:
            raise CourseError(f"weights={text!r}: {part.strip()!r} is not NAME=NUMBER; expected e.g. "
                              f"{','.join(f'{k}={v:g}' for k, v in DEFAULT_WEIGHTS.items())}") from None
        if name in weights:
            raise CourseError(f"weights={text!r} give {name!r} twice")
        weights[name] = number
    return check_weights(weights, allowed)


def course_weights(course: Course) -> dict[str, float]:
    """The weights of the course configuration (``TdlGrades.weights``), validated."""
    w = _settings(course).get("weights", DEFAULT_WEIGHTS)
    try:
        return check_weights(dict(w) if isinstance(w, dict) else w, (*components(course), EXAM))
    except CourseError as e:
        raise CourseError(f"TdlGrades.weights in the course config: {e}") from None


# ---------------------------------------------------------------------------------------------
# The oral exam


# What ``import_exam`` changed: ids added, ids updated with the fields that changed (score, note),
# ids unchanged, and ids stored before that the file does not list (kept): the roster's record.
ExamChange = RosterChange


def exam_path(course: Course) -> Path:
    return course.state_dir / "exam.json"


def read_exam(path: str | os.PathLike, *, known=None, max_score: float = DEFAULT_EXAM_MAX) -> dict[str, dict]:
    """Read and validate an exam CSV with columns student id (``id``/``student_id``), ``score`` and
    an optional examiner note (``note``/``examiner_note``/``comment``); header names are matched
    case-insensitively, extra columns ignored. Returns ``{id: {"score": float, "note": str}}``.

    The file is refused as a whole (``CourseError`` naming the lines) for a missing file or column,
    an empty file, an id not in ``known`` (when given), an id given twice, or a score that is not a
    number in [0, ``max_score``]."""
    known = None if known is None else set(known)
    scores, seen, problems = {}, {}, []
    for line, row in read_csv_table(path, "exam", EXAM_COLUMNS, EXAM_COLUMNS[:2], _EXAM_ALIASES):
        sid, value = row.get("id", ""), row.get("score", "")
        if not sid:
            problems.append(f"line {line}: empty id")
        elif sid in seen:
            problems.append(f"line {line}: duplicate id {sid!r} (first on line {seen[sid]})")
        else:
            seen[sid] = line
            if known is not None and sid not in known:
                problems.append(f"line {line}: unknown student {sid!r} (not in the gradebook; "
                                "import them with `tdl roster import roster.csv`)")
        try:
            score = float(value)
            if not math.isfinite(score):
                raise ValueError
        except ValueError:
            problems.append(f"line {line}: score={value!r} is not a number")
            continue
        if not 0 <= score <= max_score:
            problems.append(f"line {line}: score={value!r} is out of range [0, {max_score:g}] "
                            "(TdlGrades.exam_max_score)")
            continue
        scores[sid] = {"score": score, "note": row.get("note", "")}
    if problems:
        raise CourseError(f"exam file {path} has errors; nothing was imported:\n  " + "\n  ".join(problems))
    if not scores:
        raise CourseError(f"exam file {path} lists no score")
    return scores


def stored_exam(course: Course) -> dict[str, dict]:
    """The exam scores imported so far: ``{id: {"score": float, "note": str}}``."""
    path = exam_path(course)
    if not path.is_file():
        return {}
    try:
        return dict(json.loads(path.read_text())["scores"])
    except (ValueError, KeyError, TypeError) as e:
        raise CourseError(f"{path} is not a tdl exam store ({e}); re-import the exam CSV after removing it") from None


def import_exam(course: Course, path: str | os.PathLike) -> ExamChange:
    """Store the scores of an exam CSV (``read_exam``) in ``<root>/.tdl/exam.json``.

    Idempotent: importing the same file twice changes nothing the second time (the store is not
    rewritten). Students stored before but missing from the file are kept and reported."""
    with course.gradebook() as gb:
        known = {s.id for s in gb.students}
    rows = read_exam(path, known=known, max_score=exam_max_score(course))
    added, updated, unchanged = [], [], []
    with course_lock(course):
        store = stored_exam(course)
        for sid, new in rows.items():
            old = store.get(sid)
            if old is None:
                added.append(sid)
            else:
                diff = tuple(k for k in ("score", "note") if old.get(k) != new[k])
                (updated.append((sid, diff)) if diff else unchanged.append(sid))
            store[sid] = new
        if added or updated:
            text = json.dumps({"scores": dict(sorted(store.items()))}, indent=1) + "\n"
            atomic_write_text(exam_path(course), text, mode=0o600)
        not_in_file = tuple(sorted(sid for sid in store if sid not in rows))
    return ExamChange(tuple(added), tuple(updated), tuple(unchanged), not_in_file)


# ---------------------------------------------------------------------------------------------
# Final grades


@dataclass(frozen=True)
class GradedAssignment:
    name: str
    component: str
    max_score: float


@dataclass(frozen=True)
class StudentGrade:
    """One student's term: ``points`` per assignment (after the late penalty, ``None`` without a
    submission), the exam's points (``None`` without a score), the component fractions, the final
    fraction and the missing work (assignment names, ``exam``)."""

    student_id: str
    last_name: str | None
    first_name: str | None
    email: str | None
    points: tuple[float | None, ...]
    exam_points: float | None
    components: dict[str, float]
    final: float
    missing: tuple[str, ...]


@dataclass(frozen=True)
class FinalGrades:
    weights: dict[str, float]
    assignments: tuple[GradedAssignment, ...]
    exam_max_score: float
    students: tuple[StudentGrade, ...]
    ignored: tuple[str, ...] = ()  # assignments in the gradebook that match no component

    @property
    def missing(self) -> tuple[tuple[str, tuple[str, ...]], ...]:
        """``(student id, missing work)`` of the students with missing work."""
        return tuple((s.student_id, s.missing) for s in self.students if s.missing)


def final_grades(course: Course, weights=None) -> FinalGrades:
    """Every student's component fractions and final grade (formulas in the module docstring).
    ``weights``: a dict or a ``parse_weights`` string; default the course's ``TdlGrades.weights``."""
    from nbgrader.api import MissingEntry

    from .course import gradebook_problem

    problem = gradebook_problem(course)  # first: a missing gradebook explains every later problem
    if problem is not None:
        raise CourseError(problem)
    comps = components(course)
    names = (*comps, EXAM)
    if weights is None:
        weights = course_weights(course)
    elif isinstance(weights, str):
        weights = parse_weights(weights, names)
    else:
        weights = check_weights(weights, names)
    exam_max = exam_max_score(course)
    exam = stored_exam(course)
    if weights[EXAM] > 0 and not exam:
        raise CourseError(f"the exam has weight {weights[EXAM]:g} but no exam score was imported "
                          "(`tdl exam import exam.csv`); to grade without it give it weight 0 (--weights)")
    over = sorted(sid for sid, e in exam.items() if not 0 <= e["score"] <= exam_max)
    if over:
        raise CourseError(f"exam score(s) of {', '.join(over)} exceed TdlGrades.exam_max_score={exam_max:g}; "
                          "fix the config or re-import the exam")
    with course.gradebook() as gb:
        graded, ignored = [], []
        for a in sorted(gb.assignments, key=lambda a: a.name):
            matches = [c for c, pattern in comps.items() if fnmatchcase(a.name, pattern)]
            if len(matches) > 1:
                raise CourseError(f"assignment {a.name!r} matches components {', '.join(matches)} "
                                  "(TdlGrades.components); make the patterns disjoint")
            if not matches:
                ignored.append(a.name)
            elif not a.max_score > 0:
                raise CourseError(f"assignment {a.name!r} has max_score={a.max_score!r} (no graded cell); "
                                  "it cannot be counted as a fraction")
            else:
                graded.append(GradedAssignment(a.name, matches[0], float(a.max_score)))
        empty = [c for c in comps if weights[c] > 0 and not any(g.component == c for g in graded)]
        if empty:
            raise CourseError(f"component(s) {', '.join(empty)} have a weight but no assignment in the gradebook "
                              f"(patterns {', '.join(f'{c}={comps[c]!r}' for c in empty)}); release one, "
                              "or give the component weight 0")
        students = []
        for s in sorted(gb.students, key=lambda s: s.id):
            points, missing = [], []
            for g in graded:
                try:
                    sub = gb.find_submission(g.name, s.id)
                except MissingEntry:
                    points.append(None)
                    missing.append(g.name)
                else:
                    points.append(max(0.0, float(sub.score) - float(sub.late_submission_penalty or 0.0)))
            fractions = {}
            for c in comps:
                parts = [(p or 0.0) / g.max_score for g, p in zip(graded, points) if g.component == c]
                fractions[c] = math.fsum(parts) / len(parts) if parts else 0.0
            exam_points = exam[s.id]["score"] if s.id in exam else None
            if exam_points is None and weights[EXAM] > 0:
                missing.append(EXAM)
            fractions[EXAM] = (exam_points or 0.0) / exam_max
            final = math.fsum(weights[c] * fractions[c] for c in names)
            students.append(StudentGrade(s.id, s.last_name, s.first_name, s.email, tuple(points), exam_points,
                                         fractions, final, tuple(missing)))
    return FinalGrades(weights, tuple(graded), exam_max, tuple(students), tuple(ignored))


@dataclass(frozen=True)
class FinalExport:
    path: Path
    grades: FinalGrades
    header: tuple[str, ...]
    rows: tuple[dict[str, str], ...]

    @property
    def missing(self) -> tuple[tuple[str, tuple[str, ...]], ...]:
        return self.grades.missing


def _num(x: float | None) -> str:
    return "" if x is None else f"{round(x, 6):g}"


def export_final(course: Course, path: str | os.PathLike, weights=None) -> FinalExport:
    """Write ``final_grades`` to a CSV, one row per student: student_id, last_name, first_name,
    email; the points of each counted assignment after the late penalty (column ``hw01 (of 6)``,
    empty without a submission) and of the exam; the component fractions; ``final`` (fraction),
    ``final_percent`` (100 * final), ``missing`` (``"lab01; exam"``) and ``needs_manual_grading``
    (the counted assignments whose manual grading is unfinished for the student, with the cells:
    ``"hw01: hw01/q4-answer"``; see ``manual.pending_manual``). Fractions are rounded to 6
    decimals."""
    from .manual import pending_manual

    path = Path(path)
    if not path.parent.is_dir():
        raise CourseError(f"cannot write {path}: folder {path.parent} does not exist")
    grades = final_grades(course, weights)
    counted = {g.name for g in grades.assignments}
    pending: dict[str, dict[str, list[str]]] = {}
    for p in pending_manual(course):
        if p.assignment in counted:
            pending.setdefault(p.student, {}).setdefault(p.assignment, []).append(f"{p.notebook}/{p.cell}")
    comps = tuple(grades.weights)
    point_cols = [f"{g.name} (of {g.max_score:g})" for g in grades.assignments]
    exam_col = f"exam (of {grades.exam_max_score:g})"
    header = ("student_id", "last_name", "first_name", "email", *point_cols, exam_col, *comps,
              "final", "final_percent", "missing", "needs_manual_grading")
    rows = []
    for s in grades.students:
        row = {"student_id": s.student_id, "last_name": s.last_name or "", "first_name": s.first_name or "",
               "email": s.email or "", **{c: _num(p) for c, p in zip(point_cols, s.points)},
               exam_col: _num(s.exam_points), **{c: _num(s.components[c]) for c in comps},
               "final": _num(s.final), "final_percent": f"{100 * s.final:.2f}", "missing": "; ".join(s.missing),
               "needs_manual_grading": "; ".join(f"{a}: {', '.join(cells)}"
                                                 for a, cells in pending.get(s.student_id, {}).items())}
        rows.append(row)
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=header)
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())
    return FinalExport(path, grades, header, tuple(rows))
