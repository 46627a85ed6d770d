"""The course an instructor runs with ``tdl``: configuration, roster, release, collect, feedback,
export and the HTML grade report.

Everything here wraps nbgrader 0.9's Python API (``CourseDirectory``, ``Gradebook``, the converters
and the exchange classes) with the checks an instructor needs before anything is written: a
command that gets bad input (an unknown assignment or student, a roster with missing columns or
duplicate ids, a missing exchange directory) raises ``CourseError`` with a message that says what
to do, and leaves the course as it was.

Course configuration is nbgrader's: the ``nbgrader_config.py`` of the course root (``--course``,
else ``$TDL_COURSE``, else the current directory or its ``assignments/`` folder), on top of the
user's and system's Jupyter configuration. The gradebook is any SQLAlchemy URL
(``CourseDirectory.db_url``; SQLite ``gradebook.db`` by default); the exchange is
``Exchange.root``. The course's own ``nbgrader_config.py`` reads ``TDL_EXCHANGE`` and
``TDL_GRADEBOOK``. ``tdl``'s own state (grading records, the lock) lives in ``<root>/.tdl``.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import io
import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

CONFIG_NAME = "nbgrader_config.py"
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]*$")
ROSTER_COLUMNS = ("id", "first_name", "last_name", "email")
_ALIASES = {"student_id": "id", "first": "first_name", "firstname": "first_name", "given_name": "first_name",
            "last": "last_name", "lastname": "last_name", "surname": "last_name", "family_name": "last_name",
            "e_mail": "email", "mail": "email"}


class CourseError(ValueError):
    """Bad input or a course that is not in a state to do what was asked (message says why)."""


@dataclass(frozen=True)
class Course:
    """A loaded course: its root, nbgrader configuration and the settings ``tdl`` uses."""

    root: Path
    course_id: str
    db_url: str
    exchange_root: Path
    config: object = field(repr=False, compare=False)  # traitlets Config

    @property
    def state_dir(self) -> Path:
        return self.root / ".tdl"

    def coursedir(self, **traits):
        """A fresh nbgrader ``CourseDirectory`` for this course (``traits`` override config)."""
        from nbgrader.coursedir import CourseDirectory

        cd = CourseDirectory(config=self.config)
        cd.root = str(self.root)
        for k, v in traits.items():
            setattr(cd, k, v)
        return cd

    def gradebook(self):
        from nbgrader.api import Gradebook

        return Gradebook(self.db_url, self.course_id)

    def sqlite_path(self) -> Path | None:
        """The gradebook's file when it is SQLite, else ``None``."""
        if self.db_url.startswith("sqlite:///"):
            return Path(self.db_url[len("sqlite:///"):])
        return None

    def source_assignments(self) -> list[str]:
        src = self.root / self.coursedir().source_directory
        return sorted(p.name for p in src.iterdir() if p.is_dir() and any(p.glob("*.ipynb"))) if src.is_dir() else []

    def student_dirs(self, kind: str, assignment: str, pattern: str = "*") -> list[str]:
        """Ids of the students with a ``<kind>/<student>/<assignment>`` folder holding ``pattern``."""
        base = self.root / getattr(self.coursedir(), f"{kind}_directory")
        return sorted(p.parent.name for p in base.glob(f"*/{assignment}") if p.is_dir() and any(p.glob(pattern)))

    def path(self, kind: str, student: str = ".", assignment: str = ".") -> Path:
        """``<root>/<kind directory>/<student>/<assignment>`` as nbgrader lays it out."""
        cd = self.coursedir()
        directory = getattr(cd, f"{kind}_directory")
        return Path(cd.format_path(directory, student, assignment))


def find_course_root(path: str | os.PathLike | None = None) -> Path:
    """The course root: ``path``, else ``$TDL_COURSE``, else the current directory or its
    ``assignments/`` folder; it must hold ``nbgrader_config.py``."""
    if path is not None or os.environ.get("TDL_COURSE"):
        root = Path(path if path is not None else os.environ["TDL_COURSE"]).expanduser().resolve()
        if not (root / CONFIG_NAME).is_file():
            raise CourseError(f"course={str(root)!r} is not a course: it has no {CONFIG_NAME}")
        return root
    for root in (Path.cwd(), Path.cwd() / "assignments"):
        if (root / CONFIG_NAME).is_file():
            return root.resolve()
    raise CourseError(f"no course here: neither {Path.cwd()} nor ./assignments holds {CONFIG_NAME}; "
                      "pass --course DIR or set TDL_COURSE")


def load_course(path: str | os.PathLike | None = None) -> Course:
    """Load the course configuration (see the module docstring for where it is looked for)."""
    from jupyter_core.paths import jupyter_config_path
    from nbgrader.exchange.default.exchange import Exchange
    from traitlets.config import Config
    from traitlets.config.loader import PyFileConfigLoader

    root = find_course_root(path)
    config = Config()
    # Lowest priority first: system, user, then the course's own file.
    for directory in [*reversed(jupyter_config_path()), str(root)]:
        if os.path.isfile(os.path.join(directory, CONFIG_NAME)):
            try:
                config.merge(PyFileConfigLoader(CONFIG_NAME, path=directory).load_config())
            except Exception as e:  # noqa: BLE001 - a broken config file is the user's to fix
                raise CourseError(f"cannot read {os.path.join(directory, CONFIG_NAME)}: {e}") from e
    from nbgrader.coursedir import CourseDirectory

    cd = CourseDirectory(config=config)
    if "root" not in config.get("CourseDirectory", {}):
        cd.root = str(root)
    course_id = cd.course_id or ""
    if not course_id:
        raise CourseError(f"{root / CONFIG_NAME} sets no CourseDirectory.course_id")
    exchange = Exchange(config=config)
    return Course(root=Path(cd.root).resolve(), course_id=course_id, db_url=cd.db_url,
                  exchange_root=Path(exchange.root), config=config)


@contextlib.contextmanager
def course_lock(course: Course) -> Iterator[None]:
    """Hold the course's lock: two ``tdl`` commands that write never run at once on one course."""
    import fcntl

    course.state_dir.mkdir(mode=0o700, exist_ok=True)
    fh = open(course.state_dir / "lock", "a+")
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            raise CourseError(f"another tdl command is running on {course.root} ({fh.read().strip()}); "
                              "wait for it to finish") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()}")
        fh.flush()
        yield
    finally:
        fh.close()


def _nbgrader_result(result: dict, what: str) -> str:
    """Raise ``CourseError`` with nbgrader's log when an NbGraderAPI call failed."""
    if not result.get("success"):
        log = (result.get("log") or "").strip()
        raise CourseError(f"{what} failed:\n{log}\n{result.get('error', '')}".strip())
    return result.get("log") or ""


def api(course: Course):
    """nbgrader's ``NbGraderAPI`` for the course (the layer its formgrader uses)."""
    from nbgrader.apps.api import NbGraderAPI

    return NbGraderAPI(coursedir=course.coursedir(), config=course.config)


def check_assignment(course: Course, assignment: str, *, in_gradebook: bool = True) -> None:
    """Raise ``CourseError`` unless ``assignment`` has a source folder (and is in the gradebook)."""
    from nbgrader.api import MissingEntry

    known = course.source_assignments()
    if not isinstance(assignment, str) or assignment not in known:
        hint = f"; known: {', '.join(known)}" if known else "; source/ holds no assignment"
        raise CourseError(f"assignment={assignment!r} is not an assignment of this course{hint}")
    if in_gradebook:
        with course.gradebook() as gb:
            try:
                gb.find_assignment(assignment)
            except MissingEntry:
                raise CourseError(f"assignment {assignment!r} was never released (it is not in the gradebook); "
                                  f"run `tdl release {assignment}` first") from None


def check_students(course: Course, students) -> None:
    """Raise ``CourseError`` naming every id that is not in the gradebook."""
    with course.gradebook() as gb:
        known = {s.id for s in gb.students}
    unknown = [s for s in students if s not in known]
    if unknown:
        raise CourseError(f"unknown student id(s): {', '.join(map(repr, unknown))}; "
                          "import them with `tdl roster import roster.csv`")


def check_exchange(course: Course, *, create_default: bool, default_may_be_missing: bool = False) -> Path:
    """The exchange root, which must exist and be writable. The default local exchange (a folder
    inside the course root) is created on first use; a configured one (a shared mount) never is.
    ``default_may_be_missing`` only checks that it could be created."""
    root = course.exchange_root
    if not root.is_dir():
        inside = root.resolve().is_relative_to(course.root)
        if inside and default_may_be_missing:
            return root
        if create_default and inside:
            root.mkdir(parents=True)
            root.chmod(0o1777 if os.geteuid() == 0 else 0o755)
            return root
        raise CourseError(f"the exchange directory {root} does not exist. Create it (on a shared server: "
                          f"`mkdir -p {root} && chmod 1777 {root}`, see assignments/README.md) or point "
                          "TDL_EXCHANGE / Exchange.root at the right place")
    if not os.access(root, os.W_OK | os.X_OK):
        raise CourseError(f"the exchange directory {root} is not writable by this user")
    return root


# ---------------------------------------------------------------------------------------------
# Roster


@dataclass(frozen=True)
class RosterChange:
    """What ``import_roster`` changed: ids added, ids updated with the fields that changed, ids
    unchanged, and ids in the gradebook that the file does not list (never deleted)."""

    added: tuple[str, ...] = ()
    updated: tuple[tuple[str, tuple[str, ...]], ...] = ()
    unchanged: tuple[str, ...] = ()
    not_in_file: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated)


def read_roster(path: str | os.PathLike) -> list[dict[str, str]]:
    """Read and validate a roster CSV with columns id, first name, last name, email (header names
    are matched case-insensitively; spaces, dashes and underscores are equivalent; extra columns
    are ignored). Raises ``CourseError`` for a missing file or column, an empty or invalid id, or
    an id given twice, naming the lines."""
    path = Path(path)
    if not path.is_file():
        raise CourseError(f"roster file {str(path)!r} does not exist")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise CourseError(f"roster file {path} is not UTF-8 text: {e}") from None
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames:
        raise CourseError(f"roster file {path} is empty; expected a header with columns {', '.join(ROSTER_COLUMNS)}")
    names = {}
    for raw in reader.fieldnames:
        key = re.sub(r"[\s\-]+", "_", (raw or "").strip().lower())
        names[raw] = _ALIASES.get(key, key)
    missing = [c for c in ROSTER_COLUMNS if c not in names.values()]
    if missing:
        raise CourseError(f"roster file {path} lacks column(s) {', '.join(missing)}; found "
                          f"{', '.join(map(repr, reader.fieldnames))}; expected {', '.join(ROSTER_COLUMNS)}")
    rows, seen, problems = [], {}, []
    for line, raw in enumerate(reader, start=2):
        row = {names[k]: (v or "").strip() for k, v in raw.items() if k in names and names[k] in ROSTER_COLUMNS}
        if not any(row.values()):
            continue  # a blank line
        sid = row["id"]
        if not sid:
            problems.append(f"line {line}: empty id")
        elif not ID_RE.match(sid):
            problems.append(f"line {line}: id {sid!r} may only hold letters, digits and _ . @ - "
                            "(it names folders and exchange files)")
        elif sid in seen:
            problems.append(f"line {line}: duplicate id {sid!r} (first on line {seen[sid]})")
        else:
            seen[sid] = line
        rows.append(row)
    if problems:
        raise CourseError(f"roster file {path} has errors; nothing was imported:\n  " + "\n  ".join(problems))
    if not rows:
        raise CourseError(f"roster file {path} lists no student")
    return rows


def import_roster(course: Course, path: str | os.PathLike) -> RosterChange:
    """Add or update the students of a roster CSV in the gradebook, in one transaction.

    Idempotent: importing the same file twice changes nothing the second time. Students missing
    from the file are reported, never deleted (that would delete their grades).
    """
    from nbgrader.api import Student

    rows = read_roster(path)
    added, updated, unchanged = [], [], []
    with course_lock(course), course.gradebook() as gb:
        existing = {s.id: s for s in gb.db.query(Student).all()}
        try:
            for row in rows:
                student = existing.get(row["id"])
                fields = {k: row[k] or None for k in ROSTER_COLUMNS[1:]}
                if student is None:
                    gb.db.add(Student(id=row["id"], **fields))
                    added.append(row["id"])
                    continue
                diff = tuple(k for k, v in fields.items() if getattr(student, k) != v)
                for k in diff:
                    setattr(student, k, fields[k])
                (updated.append((row["id"], diff)) if diff else unchanged.append(row["id"]))
            gb.db.commit()
        except Exception:
            gb.db.rollback()
            raise
        in_file = {r["id"] for r in rows}
        missing = sorted(sid for sid in existing if sid not in in_file)
    return RosterChange(tuple(added), tuple(updated), tuple(unchanged), tuple(missing))


# ---------------------------------------------------------------------------------------------
# Release and collect


@dataclass(frozen=True)
class ReleaseResult:
    assignment: str
    notebooks: tuple[str, ...]
    duedate: dt.datetime | None
    checked: bool
    exchange: Path


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
    kernel. Raises ``CourseError`` naming the first cell that fails; ``output`` receives the
    executed notebook."""
    import nbformat

    from . import grading_execute as gx
    from .device import SCALES

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
    env = dict(os.environ, TDL_SCALE=scale)
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


def release(course: Course, assignment: str, *, due: str | None = None, check: bool = True) -> ReleaseResult:
    """Check, generate and release an assignment to the exchange.

    Refuses (``CourseError``, nothing written) when the assignment has no source, the exchange is
    missing, or a source notebook fails when run at ``scale="ci"`` (``check=False`` skips that run).
    Then adds or updates the assignment in the gradebook (``due``, see ``parse_due``), runs
    ``generate_assignment`` and releases the student version to the exchange (replacing an earlier
    release of the same assignment).
    """
    check_assignment(course, assignment, in_gradebook=False)
    duedate = parse_due(due) if due is not None else None
    check_exchange(course, create_default=False, default_may_be_missing=True)
    src = course.path("source", ".", assignment)
    notebooks = tuple(sorted(p.name for p in src.glob("*.ipynb")))
    if check:  # before anything is written
        for name in notebooks:
            run_notebook(src / name, scale="ci")
    check_exchange(course, create_default=True)
    with course_lock(course):
        with course.gradebook() as gb:
            kw = {"duedate": duedate} if duedate is not None else {}
            gb.update_or_create_assignment(assignment, **kw)
            duedate = gb.find_assignment(assignment).duedate
        _nbgrader_result(api(course).generate_assignment(assignment, force=True, create=True),
                         f"generate_assignment {assignment}")
        from nbgrader.apps.api import capture_log
        from nbgrader.exchange.default.release_assignment import ExchangeReleaseAssignment

        app = ExchangeReleaseAssignment(coursedir=course.coursedir(assignment_id=assignment), config=course.config)
        app.force = True
        _nbgrader_result(capture_log(app), f"release_assignment {assignment}")
    return ReleaseResult(assignment, notebooks, duedate, check, course.exchange_root)


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
        raise CourseError(f"nothing was ever submitted to this course: {inbound} does not exist "
                          f"(release an assignment first with `tdl release {assignment}`)")
    with course_lock(course):
        log = _nbgrader_result(api(course).collect(assignment, update=True), f"collect {assignment}")
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
    assignment: str
    students: tuple[str, ...]
    with_solutions: bool


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


def feedback(course: Course, assignment: str, *, with_solutions: bool = False,
             now: dt.datetime | None = None) -> FeedbackResult:
    """Generate feedback (nbgrader's HTML) for every graded submission and release it to the
    exchange. ``with_solutions`` appends the model solution to every feedback page; it is refused
    before the assignment's due date (and when it has none). ``now`` (naive UTC) is for tests."""
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
    with course_lock(course):
        _nbgrader_result(api(course).generate_feedback(assignment), f"generate_feedback {assignment}")
        if with_solutions:
            section = _solution_html(course, assignment)
            for html in (course.root / course.coursedir().feedback_directory).glob(f"*/{assignment}/*.html"):
                text = html.read_text()
                if SOLUTION_MARK not in text:
                    i = text.rfind("</body>")
                    html.chmod(0o644)
                    html.write_text(text[:i] + section + text[i:] if i >= 0 else text + section)
        _nbgrader_result(api(course).release_feedback(assignment), f"release_feedback {assignment}")
    students = course.student_dirs("feedback", assignment, "*.html")
    return FeedbackResult(assignment, tuple(students), with_solutions)


# ---------------------------------------------------------------------------------------------
# Export and report

EXPORT_COLUMNS = ("assignment", "duedate", "timestamp", "student_id", "last_name", "first_name", "email",
                  "raw_score", "late_submission_penalty", "score", "max_score")


def export_grades(course: Course, path: str | os.PathLike) -> int:
    """Write every student's score on every assignment to a CSV file; returns the number of rows.

    The columns are those of nbgrader's ``CsvExportPlugin`` (a student with no submission scores
    0), but fields are quoted by the ``csv`` module (the plugin does not quote, so a comma in a
    name would shift the columns). The file is written to a temporary name and renamed: a
    failure leaves no partial file.
    """
    from nbgrader.api import MissingEntry

    path = Path(path)
    if not path.parent.is_dir():
        raise CourseError(f"cannot write {path}: folder {path.parent} does not exist")
    rows = []
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
                rows.append({k: "" if v is None else str(v) for k, v in row.items()})
    fd, tmp = tempfile.mkstemp(prefix=".grades-", suffix=".csv", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=EXPORT_COLUMNS)
            w.writeheader()
            w.writerows(rows)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
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

    from .plots import TEMPLATE

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
    tmp = path.with_name("." + path.name + ".tmp")
    tmp.write_text(html)
    os.replace(tmp, path)
    return path


def private_paths(course: Course) -> list[Path]:
    """Paths a grading kernel must never read: sources, submissions, grading output, feedback,
    ``tdl``'s state, the configuration and the SQLite gradebook."""
    cd = course.coursedir()
    paths = [course.root / getattr(cd, f"{k}_directory") for k in ("source", "submitted", "autograded", "feedback")]
    paths += [course.state_dir, course.root / CONFIG_NAME]
    db = course.sqlite_path()
    if db is not None:
        paths += [db, db.with_name(db.name + "-journal"), db.with_name(db.name + "-wal")]
    return paths


def restrict_permissions(course: Course) -> list[Path]:
    """Remove "other" permissions from ``private_paths`` (a kernel running as another user, and the
    students on a shared server, must not read them). Returns the paths it changed."""
    changed = []
    for p in private_paths(course):
        if p.exists() and not p.is_symlink() and p.stat().st_mode & 0o007:
            p.chmod(p.stat().st_mode & ~0o007)
            changed.append(p)
    return changed


__all__ = ["Course", "CourseError", "RosterChange", "ReleaseResult", "CollectResult", "FeedbackResult", "CellScores",
           "find_course_root", "load_course", "course_lock", "check_assignment", "check_students", "check_exchange",
           "read_roster", "import_roster", "parse_due", "run_notebook", "release", "collect", "feedback",
           "export_grades", "cell_scores", "report_html", "write_report", "private_paths", "restrict_permissions"]
