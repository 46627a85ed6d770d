"""Release, collect and feedback: nbgrader's generate/release/collect/feedback with the checks an
instructor needs before anything is written (``CourseError``, nothing written, on bad input)."""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field
from pathlib import Path

from .files import atomic_write_text
from .course import Course, CourseError, api, check_assignment, check_exchange, course_lock, creates_gradebook, \
    nbgrader_result
from .manual import PendingGrade, describe, pending_manual



@dataclass(frozen=True)
class ReleaseResult:
    assignment: str
    notebooks: tuple[str, ...]
    duedate: dt.datetime | None
    checked: bool
    exchange: Path
    created: tuple[str, ...] = ()  # what this release created: the gradebook, the default exchange


def parse_due(value: str) -> dt.datetime:
    """A due date as nbgrader stores it (naive UTC). Accepts ISO dates with an optional time zone
    (``2026-12-01 17:00``, ``2026-12-01T17:00+01:00``; no zone means UTC)."""
    from nbgrader.utils import parse_utc

    try:
        return parse_utc(value)
    except (ValueError, OverflowError, TypeError) as e:
        raise CourseError(f"due={value!r} is not a date; use e.g. '2026-12-01 17:00' (UTC) or "
                          f"'2026-12-01T17:00+01:00' ({e})") from None


def run_notebook(path: str | os.PathLike, *, scale: str = "ci", timeout: float = 600,
                 output: str | os.PathLike | None = None) -> None:
    """Execute a (trusted) notebook in its own folder at ``scale``: like papermill, ``scale = ...``
    is injected after the cell tagged ``parameters`` (if any), and ``TDL_SCALE`` is set for the
    kernel, with ``TDL_STATIC=1`` (widgets render their static fallback: there is no frontend). Raises ``CourseError`` naming the first cell that fails; ``output`` receives the
    executed notebook."""
    import nbformat

    from ..device import SCALES
    from . import execute as gx

    if scale not in SCALES:
        raise CourseError(f"scale={scale!r} is not a scale; allowed: {', '.join(SCALES)}")
    path = Path(path)
    if not path.is_file():
        raise CourseError(f"notebook={str(path)!r} does not exist")
    nb = nbformat.read(path, as_version=4)
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    if tagged:
        cell = nbformat.v4.new_code_cell(f"# Parameters injected by tdl\nscale = {scale!r}")
        cell.metadata["tags"] = ["injected-parameters"]
        nb.cells.insert(tagged[0] + 1, cell)
    # Headless: no frontend will ever answer a live widget (nbclient can block on one), so the
    # labs' explorers render their static fallback, as in the book.
    env = dict(os.environ, TDL_SCALE=scale, TDL_STATIC="1")
    task = gx.Task(("", "", path.stem), nbformat.writes(nb), "", gx.Limits(timeout, timeout, 50_000_000),
                   cwd=str(path.parent.resolve()), env=tuple(env.items()))
    result = gx.execute(task)
    if result.error:
        raise CourseError(f"{path.name}: {result.error}")
    out = nbformat.reads(result.notebook, as_version=4)
    if output is not None:
        nbformat.write(out, str(output))
    for i, c in enumerate(out.cells):
        errors = [o for o in c.get("outputs", []) if o.get("output_type") == "error"]
        if errors:
            gid = c.metadata.get("nbgrader", {}).get("grade_id")
            where = f"cell {i}" + (f" ({gid})" if gid else "")
            raise CourseError(f"{path.name} fails at scale={scale!r} in {where}: "
                              f"{errors[0].get('ename')}: {errors[0].get('evalue')}")


LAB_RE = r"lab(\d+)"


def labs_dir(course: Course) -> Path:
    """Where the labs live: ``$TDL_LABS``, else ``TdlGrades.labs_dir`` of the course config, else
    the ``labs/`` folder next to the course root (the repository's)."""
    configured = os.environ.get("TDL_LABS") or course.config.get("TdlGrades", {}).get("labs_dir")
    return Path(configured).expanduser() if configured else course.root.parent / "labs"


def lab_notebook(course: Course, assignment: str) -> Path | None:
    """The lab notebook behind assignment ``labNN`` (``labs/NN_<name>.ipynb``), or ``None`` when
    ``assignment`` is not a lab name. A lab name with no lab, or with two, is a ``CourseError``."""
    import re

    m = re.fullmatch(LAB_RE, str(assignment))
    if m is None:
        return None
    found = sorted(labs_dir(course).glob(f"{int(m.group(1)):02d}_*.ipynb"))
    if len(found) != 1:
        have = sorted(p.name for p in labs_dir(course).glob("[0-9][0-9]_*.ipynb"))
        raise CourseError(f"assignment={assignment!r} names lab {int(m.group(1)):02d}, but {labs_dir(course)} holds "
                          + (f"{len(found)} such notebooks" if found else "none")
                          + (f"; labs there: {', '.join(have)}" if have else "") + " (set TDL_LABS to the labs folder)")
    return found[0]


def check_hidden_tests(path: Path, where: str) -> int:
    """Refuse (``CourseError``) a notebook whose hidden tests name a reference that does not exist
    or whose trusted inputs cannot be computed; returns the number of checks."""
    import nbformat

    from .trusted import check_notebook_source

    return check_notebook_source(nbformat.read(path, as_version=4), where)


def release(course: Course, assignment: str, *, due: str | None = None, check: bool = True) -> ReleaseResult:
    """Check, generate and release an assignment (``hwNN``) or a lab (``labNN``, from
    ``labs/NN_<name>.ipynb``, copied to ``source/labNN/labNN.ipynb`` at each release) to the
    exchange.

    Refuses (``CourseError``, nothing written) when the assignment has no source, the exchange is
    missing, a hidden test names a reference that does not exist (``check_hidden_tests``), or a
    source notebook fails when run at ``scale="ci"`` (``check=False`` skips that run).
    Then adds or updates the assignment in the gradebook (``due``, see ``parse_due``), runs
    ``generate_assignment`` and releases the student version to the exchange (replacing an earlier
    release of the same assignment).
    """
    lab = lab_notebook(course, assignment)
    if lab is None:
        check_assignment(course, assignment, in_gradebook=False)
    duedate = parse_due(due) if due is not None else None
    creates_gradebook(course)  # refuses a gradebook file that is not one before anything is written
    check_exchange(course, create_default=False, default_may_be_missing=True)
    src = course.path("source", ".", assignment)
    originals = {f"{assignment}.ipynb": lab} if lab is not None else {p.name: p for p in src.glob("*.ipynb")}
    notebooks = tuple(sorted(originals))
    # Before anything is written: every hidden test names a reference that exists and gets its
    # inputs from trusted code, and the notebook runs at scale="ci".
    for name, path in sorted(originals.items()):
        check_hidden_tests(path, f"{assignment}/{name}")
    if check:
        for name, path in sorted(originals.items()):
            run_notebook(path, scale="ci")
    # A release may start a course: the first one creates the gradebook and the default exchange
    # (inside the course root), and says so; a configured exchange is never created.
    created = creates_gradebook(course)
    if not course.exchange_root.is_dir():
        created += (f"the exchange {course.exchange_root}",)
    check_exchange(course, create_default=True)
    with course_lock(course):
        if lab is not None:  # the course's source is a generated copy of the lab: one source, labs/
            src.mkdir(parents=True, exist_ok=True)
            atomic_write_text(src / f"{assignment}.ipynb", lab.read_text(encoding="utf-8"))
        with course.gradebook(create=True) as gb:
            kw = {"duedate": duedate} if duedate is not None else {}
            gb.update_or_create_assignment(assignment, **kw)
            duedate = gb.find_assignment(assignment).duedate
        nbgrader_result(api(course).generate_assignment(assignment, force=True, create=True),
                         f"generate_assignment {assignment}")
        from nbgrader.apps.api import capture_log
        from nbgrader.exchange.default.release_assignment import ExchangeReleaseAssignment

        app = ExchangeReleaseAssignment(coursedir=course.coursedir(assignment_id=assignment), config=course.config)
        app.force = True
        nbgrader_result(capture_log(app), f"release_assignment {assignment}")
    return ReleaseResult(assignment, notebooks, duedate, check, course.exchange_root, created)


@dataclass(frozen=True)
class CollectResult:
    """Who submitted (``collected``), who on the roster did not (``missing``), who submitted but is
    not on the roster (``unknown``) and who submitted after the due date (``late``)."""

    assignment: str
    collected: tuple[str, ...]
    missing: tuple[str, ...]
    unknown: tuple[str, ...]
    late: tuple[str, ...]
    log: str = field(default="", repr=False)


def collect(course: Course, assignment: str) -> CollectResult:
    """Collect the newest submission of every student from the exchange (nbgrader's collect)."""
    check_assignment(course, assignment)
    check_exchange(course, create_default=False)
    inbound = course.exchange_root / course.course_id / "inbound"
    if not inbound.is_dir():
        raise CourseError(f"nothing was ever submitted to course {course.course_id!r} in this exchange: {inbound} "
                          f"does not exist (Exchange.root, {course.where_configured('TDL_EXCHANGE', 'TDL_COURSE_ID')}). "
                          f"Release an assignment first with `tdl release {assignment}`, or point TDL_EXCHANGE at "
                          "the exchange the students submitted to; nothing was created")
    with course_lock(course):
        log = nbgrader_result(api(course).collect(assignment, update=True), f"collect {assignment}")
    return _submission_status(course, assignment, log)


def _submission_status(course: Course, assignment: str, log: str = "") -> CollectResult:
    cd = course.coursedir()
    submitted = course.student_dirs("submitted", assignment)
    with course.gradebook() as gb:
        roster = {s.id for s in gb.students}
        duedate = gb.find_assignment(assignment).duedate
    late = []
    for sid in submitted:
        ts = cd.get_existing_timestamp(str(course.path("submitted", sid, assignment)))
        if duedate is not None and ts is not None and ts > duedate:
            late.append(sid)
    return CollectResult(assignment, tuple(submitted), tuple(sorted(roster - set(submitted))),
                         tuple(s for s in submitted if s not in roster), tuple(late), log)


# ---------------------------------------------------------------------------------------------
# Feedback


@dataclass(frozen=True)
class FeedbackResult:
    """Who got feedback; ``partial``: those of them whose feedback was released (``--partial``)
    while some of their manual grading was unfinished (``pending``)."""

    assignment: str
    students: tuple[str, ...]
    with_solutions: bool
    partial: tuple[str, ...] = ()
    pending: tuple[PendingGrade, ...] = ()


SOLUTION_MARK = "tdl-model-solution"


def _solution_html(course: Course, assignment: str) -> str:
    """The model solution (source notebooks with solutions and tests, outputs cleared) as HTML."""
    import nbformat
    from nbconvert import HTMLExporter
    from nbgrader.preprocessors import ClearMarkScheme, ClearOutput

    parts = []
    for path in sorted(course.path("source", ".", assignment).glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        resources = {"nbgrader": {"assignment": assignment, "notebook": path.stem}}
        for pp in (ClearOutput(config=course.config), ClearMarkScheme(config=course.config)):
            nb, resources = pp.preprocess(nb, resources)
        for cell in nb.cells:
            if cell.cell_type == "code":
                cell.source = "\n".join(line for line in cell.source.splitlines()
                                        if line.strip() not in ("### BEGIN SOLUTION", "### END SOLUTION",
                                                                "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"))
        body, _ = HTMLExporter(template_name="basic").from_notebook_node(nb)
        parts.append(f"<h2>{path.name}</h2>\n{body}")
    return (f'<section id="{SOLUTION_MARK}"><hr><h1>Model solution</h1>'
            "<p>Released after the due date.</p>" + "\n".join(parts) + "</section>")


def check_offline_math(course: Course) -> None:
    """Refuse (``CourseError``, before anything is written) feedback whose math would need the
    internet: the course's configuration must use ``tdlcourse.grading.offline`` (nbgrader's own
    feedback template loads MathJax from a CDN; offline, students see raw TeX) and the local MathJax
    must be there."""
    from . import offline

    filters = course.config.get("HTMLExporter", {}).get("filters", {}) or {}
    if offline.FILTER not in filters:
        read = ", ".join(map(str, course.config_files)) or "no nbgrader_config.py"
        raise CourseError(f"the course configuration ({read}) does not render math offline: nbgrader's feedback "
                          "would load MathJax from a CDN and students offline would see raw TeX; add "
                          "`from tdlcourse.grading.offline import configure; configure(c)` to its "
                          "nbgrader_config.py (as assignments/nbgrader_config.py does); nothing was released")
    try:
        offline.check()
    except offline.MathJaxMissing as e:
        raise CourseError(f"feedback would show math as raw TeX: {e}; nothing was released") from None


def feedback(course: Course, assignment: str, *, with_solutions: bool = False, partial: bool = False,
             now: dt.datetime | None = None) -> FeedbackResult:
    """Generate feedback (nbgrader's HTML) for every graded submission and release it to the
    exchange. ``with_solutions`` appends the model solution to every feedback page; it is refused
    before the assignment's due date (and when it has none). Refused (``CourseError`` listing the
    student, notebook and cell of each) while manual grading is unfinished (``manual.pending_manual``:
    a student would read 0 for an answer nobody graded), unless ``partial``; then the result names
    the students whose feedback is partial. Refused too when its math would need the internet
    (``check_offline_math``). ``now`` (naive UTC) is for tests."""
    check_assignment(course, assignment)
    now = now or dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    if with_solutions:
        with course.gradebook() as gb:
            duedate = gb.find_assignment(assignment).duedate
        if duedate is None:
            raise CourseError(f"{assignment} has no due date, so solutions cannot be released with feedback; "
                              f"set one with `tdl release {assignment} --due 'YYYY-MM-DD HH:MM'`")
        if now < duedate:
            raise CourseError(f"solutions of {assignment} are released only after the due date ({duedate} UTC); "
                              f"it is now {now:%Y-%m-%d %H:%M} UTC")
    check_exchange(course, create_default=False)
    graded = course.student_dirs("autograded", assignment, "*.ipynb")
    if not graded:
        raise CourseError(f"no graded submission of {assignment}; run `tdl grade {assignment}` first")
    check_offline_math(course)
    pending = tuple(p for p in pending_manual(course, assignment) if p.student in graded)
    if pending and not partial:
        who = sorted({p.student for p in pending})
        raise CourseError(f"manual grading of {assignment} is unfinished: {len(pending)} cell(s) of {len(who)} "
                          f"student(s) have no manual score yet, so their feedback would show 0 for them; "
                          f"nothing was released:\n{describe(pending)}\nGrade them in the Formgrader "
                          f"(Manage Submissions > {assignment}), or release anyway with `tdl feedback {assignment} "
                          "--partial` (those students' feedback is then partial)")
    with course_lock(course):
        nbgrader_result(api(course).generate_feedback(assignment), f"generate_feedback {assignment}")
        if with_solutions:
            section = _solution_html(course, assignment)
            for html in (course.root / course.coursedir().feedback_directory).glob(f"*/{assignment}/*.html"):
                text = html.read_text()
                if SOLUTION_MARK not in text:
                    i = text.rfind("</body>")
                    atomic_write_text(html, text[:i] + section + text[i:] if i >= 0 else text + section)
        nbgrader_result(api(course).release_feedback(assignment), f"release_feedback {assignment}")
    students = course.student_dirs("feedback", assignment, "*.html")
    partial_students = tuple(sorted({p.student for p in pending} & set(students)))
    return FeedbackResult(assignment, tuple(students), with_solutions, partial_students, pending)


