"""Reports: the CSV export of every score and the HTML grade report of an assignment."""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path

from .course import Course, CourseError, check_assignment
from .files import atomic_write_text


EXPORT_COLUMNS = ("assignment", "duedate", "timestamp", "student_id", "last_name", "first_name", "email",
                  "raw_score", "late_submission_penalty", "score", "max_score", "needs_manual_grading")


def export_grades(course: Course, path: str | os.PathLike) -> int:
    """Write every student's score on every assignment to a CSV file; returns the number of rows.

    The columns are those of nbgrader's ``CsvExportPlugin`` (a student with no submission scores
    0), but fields are quoted by the ``csv`` module (the plugin does not quote, so a comma in a
    name would shift the columns), plus ``needs_manual_grading``: the cells of that submission whose
    manual grading is unfinished (``notebook/cell; ...``, see ``manual.pending_manual``; their score
    may still rise). The file is written to a temporary name and renamed: a failure leaves no
    partial file.
    """
    from nbgrader.api import MissingEntry

    from .manual import pending_by_student, pending_manual

    path = Path(path)
    if not path.parent.is_dir():
        raise CourseError(f"cannot write {path}: folder {path.parent} does not exist")
    rows = []
    pending = pending_by_student(pending_manual(course))
    with course.gradebook() as gb:
        for a in gb.assignments:
            for s in gb.students:
                row = {"assignment": a.name, "duedate": a.duedate, "student_id": s.id, "last_name": s.last_name,
                       "first_name": s.first_name, "email": s.email, "max_score": a.max_score}
                try:
                    sub = gb.find_submission(a.name, s.id)
                except MissingEntry:
                    row.update(timestamp="", raw_score=0.0, late_submission_penalty=0.0, score=0.0)
                else:
                    penalty = sub.late_submission_penalty or 0.0
                    row.update(timestamp=sub.timestamp, raw_score=sub.score, late_submission_penalty=penalty,
                               score=max(0.0, sub.score - penalty))
                row["needs_manual_grading"] = "; ".join(f"{p.notebook}/{p.cell}" for p in pending.get((a.name, s.id), ()))
                rows.append({k: "" if v is None else str(v) for k, v in row.items()})
    import io

    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=EXPORT_COLUMNS)
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())
    return len(rows)


@dataclass(frozen=True)
class CellScores:
    """Scores of one graded cell over the class (``None``: not graded yet)."""

    name: str
    max_score: float
    autograded: bool
    scores: tuple[float | None, ...]


def cell_scores(course: Course, assignment: str) -> tuple[tuple[str, ...], tuple[CellScores, ...]]:
    """Students with a submission and, per grade cell (in notebook order), their scores."""
    check_assignment(course, assignment)
    with course.gradebook() as gb:
        a = gb.find_assignment(assignment)
        subs = sorted(a.submissions, key=lambda s: s.student.id)
        students = tuple(s.student.id for s in subs)
        out = []
        for nb in a.notebooks:
            order = {c.name: i for i, c in enumerate(nb.source_cells)}
            for cell in sorted(nb.grade_cells, key=lambda c: order.get(c.name, 1e9)):
                scores = []
                for sub in subs:
                    grade = gb.find_grade(cell.name, nb.name, assignment, sub.student.id)
                    graded = grade.auto_score is not None or grade.manual_score is not None
                    scores.append(float(grade.score) if graded else None)
                out.append(CellScores(cell.name, float(cell.max_score), cell.cell_type == "code", tuple(scores)))
    return students, tuple(out)


def report_html(course: Course, assignment: str) -> str:
    """A self-contained HTML page (plotly.js inlined, works offline): one histogram of scores per
    autograded cell, one of the autograded total, and a table of the grading problems."""
    import plotly.graph_objects as go

    from ..plots import TEMPLATE

    students, cells = cell_scores(course, assignment)
    auto = [c for c in cells if c.autograded]
    figures = []
    for c in auto:
        vals = [v for v in c.scores if v is not None]
        fig = go.Figure(go.Histogram(x=vals, xbins=dict(start=-0.25, end=c.max_score + 0.25, size=0.5), name=c.name))
        fig.update_layout(template=TEMPLATE, title=f"{c.name}: score out of {c.max_score:g} "
                          f"({len(vals)} graded, mean {sum(vals) / len(vals) if vals else float('nan'):.2f})",
                          xaxis_title="score", yaxis_title="students", bargap=0.05, height=320)
        figures.append(fig)
    totals = [sum(v or 0.0 for v in col) for col in zip(*(c.scores for c in auto))] if auto else []
    fig = go.Figure(go.Histogram(x=totals, name="total"))
    fig.update_layout(template=TEMPLATE, title=f"autograded total out of {sum(c.max_score for c in auto):g}",
                      xaxis_title="score", yaxis_title="students", height=320)
    figures.append(fig)
    problems = []
    records = course.state_dir / "grading" / assignment
    for sid in students:
        rec = records / f"{sid}.json"
        if rec.is_file():
            for reason in json.loads(rec.read_text()).get("reasons", []):
                problems.append((sid, reason))
    divs = [f.to_html(full_html=False, include_plotlyjs=(i == 0)) for i, f in enumerate(figures)]
    from html import escape

    rows = "".join(f"<tr><td>{escape(s)}</td><td>{escape(r)}</td></tr>" for s, r in problems) or \
        "<tr><td colspan=2>none</td></tr>"
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{escape(assignment)}: grade report</title>"
            "<style>body{font-family:sans-serif;max-width:60em;margin:auto}td{padding:2px 8px;"
            "border-bottom:1px solid #ddd}</style></head><body>"
            f"<h1>{escape(assignment)}: grade report</h1><p>{len(students)} submissions, course "
            f"{escape(course.course_id)}.</p>" + "\n".join(divs)
            + f"<h2>Grading problems</h2><table><tr><th>student</th><th>problem</th></tr>{rows}</table></body></html>")


def write_report(course: Course, assignment: str, path: str | os.PathLike | None = None) -> Path:
    """Write ``report_html`` to ``path`` (default ``<root>/reports/<assignment>.html``)."""
    html = report_html(course, assignment)
    path = Path(path) if path is not None else course.root / "reports" / f"{assignment}.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(path, html)


