"""Manual grading that is not finished: what ``tdl feedback`` refuses to release (unless
``--partial``) and what ``tdl export`` flags.

A grade of a submitted notebook is *pending* when nbgrader marks it "needs manual grade" (a
written answer after autograding, a regraded cell that had a manual score, a notebook ``tdl grade``
could not read), or when it belongs to a hand-graded cell (a markdown grade cell, i.e. a written
answer, or a task) that has neither a manual nor an automatic score. A written answer left blank
is scored 0 by nbgrader itself (``needs_manual_grade`` false) and is not pending. Scoring a cell in
the Formgrader clears the flag.
"""

from __future__ import annotations

from dataclasses import dataclass

from .course import Course


@dataclass(frozen=True)
class PendingGrade:
    """One graded cell of one student's submission that still waits for a human."""

    assignment: str
    student: str
    notebook: str
    cell: str
    reason: str  # "needs manual grading" or "no score"

    def __str__(self) -> str:
        return f"{self.student}: {self.assignment}/{self.notebook}.ipynb, cell {self.cell} ({self.reason})"


def pending_manual(course: Course, assignment: str | None = None) -> tuple[PendingGrade, ...]:
    """Every pending grade (see the module docstring) of ``assignment`` (default: all assignments),
    sorted by assignment, student, notebook and cell order."""
    from nbgrader.api import Assignment, Grade, SubmittedAssignment, SubmittedNotebook
    from sqlalchemy import and_, or_

    out = []
    with course.gradebook() as gb:
        # Candidates in SQL (a class has 10^5 grades; few are pending), the cell kind below.
        query = (gb.db.query(Grade).join(SubmittedNotebook).join(SubmittedAssignment).join(Assignment)
                 .filter(or_(Grade.needs_manual_grade.is_(True),
                             and_(Grade.manual_score.is_(None), Grade.auto_score.is_(None)))))
        if assignment is not None:
            query = query.filter(Assignment.name == assignment)
        for g in query.all():
            a = g.notebook.assignment.name
            manual_cell = g.cell.cell_type != "code" or type(g.cell).__name__ == "TaskCell"
            if g.needs_manual_grade:
                reason = "needs manual grading"
            elif manual_cell and g.manual_score is None and g.auto_score is None:
                reason = "no score"
            else:
                continue
            nb = g.notebook.notebook
            order = {c.name: i for i, c in enumerate(nb.source_cells)}
            out.append((a, g.notebook.student.id, nb.name, order.get(g.cell.name, 1 << 30),
                        PendingGrade(a, g.notebook.student.id, nb.name, g.cell.name, reason)))
    return tuple(p for *_, p in sorted(out, key=lambda t: t[:4]))


def pending_by_student(pending) -> dict[tuple[str, str], tuple[PendingGrade, ...]]:
    """``pending`` grouped by ``(assignment, student)``."""
    groups: dict[tuple[str, str], list[PendingGrade]] = {}
    for p in pending:
        groups.setdefault((p.assignment, p.student), []).append(p)
    return {k: tuple(v) for k, v in groups.items()}


def describe(pending, limit: int = 40) -> str:
    """One line per pending grade (at most ``limit``, then a count)."""
    lines = [f"  {p}" for p in pending[:limit]]
    if len(pending) > limit:
        lines.append(f"  ... and {len(pending) - limit} more")
    return "\n".join(lines)
