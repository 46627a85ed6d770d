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

Nothing is created as a side effect of reading: only the commands that start a course (``tdl
roster import``, ``tdl release``) create the gradebook, and only ``tdl release`` creates the
default exchange (inside the course root). Every other command, given a course whose gradebook,
exchange or root folder is missing, raises ``CourseError`` naming the configuration it read (the
``nbgrader_config.py`` files, the resolved URL or path, the variables that would change it).
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import os
import re
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
    config_files: tuple[Path, ...] = field(default=(), compare=False)  # the nbgrader_config.py files read

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

    def gradebook(self, *, create: bool = False):
        """nbgrader's ``Gradebook`` of the course. Unless ``create`` (the commands that start a
        course), a gradebook that does not exist is a ``CourseError`` (``missing_gradebook``), never
        an empty one created on the spot: nbgrader's ``Gradebook`` creates whatever it opens."""
        from nbgrader.api import Gradebook

        state, problem = _gradebook_state(self)
        if problem is not None and not (create and state == "missing"):
            raise CourseError(problem)  # with create: a file or database that exists but is no gradebook
        return Gradebook(self.db_url, self.course_id)

    def gradebook_exists(self) -> bool:
        return gradebook_problem(self) is None

    def where_configured(self, *variables: str) -> str:
        """Where the settings came from, for messages: the configuration files read and the state of
        the environment ``variables`` that the course's ``nbgrader_config.py`` reads."""
        files = ", ".join(map(str, self.config_files)) or f"no {CONFIG_NAME} (nbgrader's defaults)"
        env = "; ".join(f"{v}={_redact(os.environ[v])!r}" if os.environ.get(v) else f"{v} is not set"
                        for v in variables)
        return f"read from {files}" + (f"; {env}" if env else "")

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


def _redact(url: str) -> str:
    """A database URL without its password (messages may be shown to others)."""
    return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", str(url))


def gradebook_problem(course: Course) -> str | None:
    """Why the course's gradebook cannot be opened without creating it (``None``: it exists).

    SQLite: the file must exist (opening a missing one creates it) and be an SQLite database with
    nbgrader's tables. Any other SQLAlchemy URL: the database must be reachable and hold nbgrader's
    tables (``Gradebook`` would create them)."""
    return _gradebook_state(course)[1]


def _gradebook_state(course: Course) -> tuple[str, str | None]:
    """``("ok", None)``; ``("missing", why)``: a starting command may create it (no SQLite file, or a
    reachable database without nbgrader's tables); ``("bad", why)``: never touched."""
    url = course.db_url
    where = course.where_configured("TDL_GRADEBOOK")
    hint = (f"Nothing was created. If the course's gradebook is elsewhere, set TDL_GRADEBOOK to its URL "
            f"(or CourseDirectory.db_url in {course.root / CONFIG_NAME}); a new course starts with "
            "`tdl roster import roster.csv` or `tdl release hwNN`, which create it.")
    path = course.sqlite_path()
    if path is not None:
        if str(path) in ("", ":memory:"):
            return "ok", None
        if not path.exists():
            return "missing", f"no gradebook at {url} (CourseDirectory.db_url, {where}). {hint}"
        bad = "is not a file" if not path.is_file() else _sqlite_problem(path)
        return ("ok", None) if bad is None else \
            ("bad", f"the gradebook {path} {bad} (CourseDirectory.db_url, {where}); it was left as it is. "
                    "Point TDL_GRADEBOOK (or CourseDirectory.db_url) at the course's gradebook, or move the file away")
    if url in _REACHABLE:
        return "ok", None
    try:
        from sqlalchemy import create_engine, inspect

        engine = create_engine(url, future=True)
        try:
            tables = set(inspect(engine).get_table_names())
        finally:
            engine.dispose()
    except Exception as e:  # noqa: BLE001 - a missing driver, a refused connection, a bad URL
        return "bad", (f"cannot open the gradebook {_redact(url)} (CourseDirectory.db_url, {where}): "
                       f"{type(e).__name__}: {_redact(str(e).splitlines()[0]) if str(e) else ''}. Nothing was "
                       "created; check the URL, the database server and its driver, or set TDL_GRADEBOOK")
    if "assignment" not in tables or "grade" not in tables:
        return "missing", (f"the database {_redact(url)} holds no nbgrader gradebook (CourseDirectory.db_url, "
                           f"{where}). {hint}")
    _REACHABLE.add(url)
    return "ok", None


_REACHABLE: set[str] = set()  # database URLs (not SQLite) seen holding a gradebook in this process


def _sqlite_problem(path: Path) -> str | None:
    """Why the SQLite file ``path`` is not a gradebook (read only: SQLite would turn an empty file
    into a database and nbgrader would fill it), or ``None``."""
    import sqlite3

    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError as e:
        return f"cannot be read ({e.strerror})"
    if head != b"SQLite format 3\x00":
        return "is an empty file, not a database" if not head else "is not an SQLite database"
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        finally:
            con.close()
    except sqlite3.Error as e:
        if "locked" in str(e):  # a database in use (the Formgrader, `tdl grade` writing): it exists
            return None
        return f"cannot be read ({e})"
    return None if {"assignment", "grade"} <= tables else "holds no nbgrader gradebook (no assignment and grade tables)"


def creates_gradebook(course: Course) -> tuple[str, ...]:
    """For the commands that start a course: ``("the gradebook <url>",)`` when opening it will
    create it, ``()`` when it exists; ``CourseError`` (before anything is written) when the file or
    database exists but is no gradebook, or cannot be reached."""
    state, problem = _gradebook_state(course)
    if state == "bad":
        raise CourseError(problem)
    return () if state == "ok" else (f"the gradebook {_redact(course.db_url)}",)


def find_course_root(path: str | os.PathLike | None = None) -> Path:
    """The course root: ``path``, else ``$TDL_COURSE``, else the current directory or its
    ``assignments/`` folder; it must hold ``nbgrader_config.py``."""
    if path is not None or os.environ.get("TDL_COURSE"):
        origin = "--course" if path is not None else "$TDL_COURSE"
        root = Path(path if path is not None else os.environ["TDL_COURSE"]).expanduser().resolve()
        if not (root / CONFIG_NAME).is_file():
            state = "" if root.is_dir() else "; that folder does not exist"
            raise CourseError(f"course={str(root)!r} is not a course: it has no {CONFIG_NAME} "
                              f"(the folder came from {origin}{state}); nothing was created")
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
    read = []
    # Lowest priority first: system, user, then the course's own file.
    for directory in [*reversed(jupyter_config_path()), str(root)]:
        if os.path.isfile(os.path.join(directory, CONFIG_NAME)):
            try:
                config.merge(PyFileConfigLoader(CONFIG_NAME, path=directory).load_config())
            except Exception as e:  # noqa: BLE001 - a broken config file is the user's to fix
                raise CourseError(f"cannot read {os.path.join(directory, CONFIG_NAME)}: {e}") from e
            read.append(Path(directory).resolve() / CONFIG_NAME)
    from nbgrader.coursedir import CourseDirectory

    cd = CourseDirectory(config=config)
    if "root" not in config.get("CourseDirectory", {}):
        cd.root = str(root)
    course_id = cd.course_id or ""
    if not course_id:
        raise CourseError(f"{root / CONFIG_NAME} sets no CourseDirectory.course_id")
    if not Path(cd.root).is_dir():
        raise CourseError(f"the course folder {cd.root} does not exist (CourseDirectory.root, read from "
                          f"{', '.join(map(str, read))}); create it or fix CourseDirectory.root; nothing was created")
    exchange = Exchange(config=config)
    return Course(root=Path(cd.root).resolve(), course_id=course_id, db_url=cd.db_url,
                  exchange_root=Path(exchange.root), config=config, config_files=tuple(dict.fromkeys(read)))


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


class WarningCollector(logging.Handler):
    """Keeps the warnings nbgrader logs (restored cells, missing cells, hub refusals) as text."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def nbgrader_result(result: dict, what: str) -> str:
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
        problem = gradebook_problem(course)
        if problem is not None:
            raise CourseError(f"assignment {assignment!r} was never released with this configuration: {problem}")
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
    inside the course root) is created by ``tdl release`` (``create_default``); a configured one (a
    shared mount) never is. ``default_may_be_missing`` only checks that it could be created."""
    root = course.exchange_root
    where = f"Exchange.root, {course.where_configured('TDL_EXCHANGE')}"
    if not root.is_dir():
        inside = root.resolve().is_relative_to(course.root)
        if inside and default_may_be_missing:
            return root
        if create_default and inside:
            root.mkdir(parents=True)
            root.chmod(0o1777 if os.geteuid() == 0 else 0o755)
            return root
        made = ("`tdl release` creates this default exchange (inside the course); "
                if inside else f"on a shared server: `mkdir -p {root} && chmod 1777 {root}`, see assignments/README.md; ")
        raise CourseError(f"the exchange directory {root} does not exist ({where}); nothing was created. "
                          f"Create it ({made}) or point TDL_EXCHANGE / Exchange.root at the right place")
    if not os.access(root, os.W_OK | os.X_OK):
        # A class hub pre-creates each course's folder, owned by its grader, under a root-owned
        # exchange (deploy/hub/courses.py): then the course's own folder is what must be writable.
        mine = root / course.course_id
        if mine.is_dir() and os.access(mine, os.W_OK | os.X_OK):
            return root
        raise CourseError(f"the exchange directory {root} is not writable by this user ({where}), and "
                          f"neither is a pre-created course folder {mine}")
    return root


# ---------------------------------------------------------------------------------------------
# Roster


@dataclass(frozen=True)
class RosterChange:
    """What an import (``import_roster``, ``import_exam``) changed: ids added, ids updated with the fields that changed, ids
    unchanged, and ids in the gradebook that the file does not list (never deleted)."""

    added: tuple[str, ...] = ()
    updated: tuple[tuple[str, tuple[str, ...]], ...] = ()
    unchanged: tuple[str, ...] = ()
    not_in_file: tuple[str, ...] = ()

    created: tuple[str, ...] = ()  # what the import created (the gradebook of a new course)

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated)


def read_csv_table(path: str | os.PathLike, what: str, columns, required, aliases: dict) -> list[tuple[int, dict]]:
    """The rows of a CSV file an instructor wrote (a roster, exam scores), as ``(line, row)`` with
    ``row`` keyed by ``columns``: header names matched case-insensitively, spaces, dashes and
    underscores equivalent, ``aliases`` mapped, other columns and blank lines dropped, values
    stripped. Raises ``CourseError`` for a missing, non-UTF-8 or empty file, or a missing
    ``required`` column; checking the values is the caller's (naming the lines)."""
    path = Path(path)
    if not path.is_file():
        raise CourseError(f"{what} file {str(path)!r} does not exist")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise CourseError(f"{what} file {path} is not UTF-8 text: {e}") from None
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames:
        raise CourseError(f"{what} file {path} is empty; expected a header with columns {', '.join(columns)}")
    names = {}
    for raw in reader.fieldnames:
        key = re.sub(r"[\s\-]+", "_", (raw or "").strip().lower())
        names[raw] = aliases.get(key, key)
    missing = [c for c in required if c not in names.values()]
    if missing:
        raise CourseError(f"{what} file {path} lacks column(s) {', '.join(missing)}; found "
                          f"{', '.join(map(repr, reader.fieldnames))}; expected {', '.join(columns)}")
    out = []
    for line, raw in enumerate(reader, start=2):
        row = {names[k]: (v or "").strip() for k, v in raw.items() if k in names and names[k] in columns}
        if any(row.values()):
            out.append((line, row))
    return out


def read_roster(path: str | os.PathLike) -> list[dict[str, str]]:
    """Read and validate a roster CSV with columns id, first name, last name, email (header names
    are matched case-insensitively; spaces, dashes and underscores are equivalent; extra columns
    are ignored). Raises ``CourseError`` for a missing file or column, an empty or invalid id, or
    an id given twice, naming the lines."""
    rows, seen, problems = [], {}, []
    for line, row in read_csv_table(path, "roster", ROSTER_COLUMNS, ROSTER_COLUMNS, _ALIASES):
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
    # The roster starts a course: its first import creates the gradebook (and says so).
    created = creates_gradebook(course)
    with course_lock(course), course.gradebook(create=True) as gb:
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
    return RosterChange(tuple(added), tuple(updated), tuple(unchanged), tuple(missing), created)



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


