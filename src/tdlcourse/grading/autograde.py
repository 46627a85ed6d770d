"""Parallel autograding that gives the same scores as ``nbgrader autograde`` and never corrupts
the gradebook.

Stock nbgrader grades one notebook after another in one process. ``grade`` splits nbgrader's own
``Autograde`` converter at its ``Execute`` step:

1. **prepare** (main process): for every submission, nbgrader's bookkeeping (student and
   submission rows, files copied from ``source/``, missing notebooks scored 0) and its sanitize
   preprocessors (``ClearOutput``, ``DeduplicateIds``, ``OverwriteKernelspec``, ``OverwriteCells``:
   locked and test cells restored by checksum, deleted test cells re-added;
   ``CheckCellMetadata``), exactly as configured for ``Autograde``;
2. **execute** (a pool of warm worker processes, ``--jobs``): each notebook runs in a fresh kernel
   in a scratch directory, isolated and limited (``execute``, ``sandbox``); the
   workers never open the gradebook;
3. **record** (main process, the only gradebook writer): nbgrader's post-execution preprocessors
   (``LimitOutput``, ``SaveAutoGrades``, ``AssignLatePenalties``...); the autograded folder is
   built aside (``<course>/.tdl/staging``) and swapped in when every notebook of the submission is
   recorded; a record under ``<course>/.tdl/grading/<assignment>/<student>.json`` is written last.

A submission whose record matches its files (and the assignment's source) is skipped, so running
``grade`` twice changes nothing; ``force=True`` regrades. A run that is killed half-way leaves
the unrecorded submissions to be graded next time. Broken submissions (corrupted JSON, a renamed
or missing notebook, a timeout, a crashed kernel, runaway output) are scored as nbgrader would
score what remains and listed with their reasons; only a failure of the grader itself (a kernel
that cannot start) leaves a submission ungraded, with its previous grades and files untouched.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

from . import execute as gx
from . import sandbox
from . import trusted
from .files import atomic_write_text
from .pool import WorkerPool
from .course import Course, CourseError, check_assignment, check_students, course_lock, private_paths, \
    WarningCollector, restrict_permissions

SANDBOX_CHOICES = ("auto", "require", "sudo", "off")
RECORD_VERSION = 2  # 2: trusted verdicts and tampering flags
LAB_TAG = "tdl-graded"


@dataclass(frozen=True)
class NotebookOutcome:
    """How one notebook of a submission went: ``status`` is ``graded``, ``missing`` (not
    submitted, scored 0), ``unreadable`` (not a valid notebook, scored 0) or ``error`` (the grader
    could not run it; grades untouched)."""

    notebook: str
    status: str
    events: tuple[gx.CellEvent, ...] = ()
    notes: tuple[str, ...] = ()
    seconds: float = 0.0
    verdicts: tuple = ()  # trusted.CellVerdict of every autograded cell with checks
    flags: tuple[str, ...] = ()  # tampering found, for a human look (never changes a score)


@dataclass(frozen=True)
class SubmissionOutcome:
    """One student's submission: ``status`` is ``graded``, ``skipped`` (already graded, unchanged)
    or ``error``; ``reasons`` lists every problem in words; scores come from the gradebook."""

    student: str
    status: str
    notebooks: tuple[NotebookOutcome, ...] = ()
    reasons: tuple[str, ...] = ()
    cell_scores: tuple[tuple[str, float | None], ...] = ()
    score: float | None = None
    max_score: float = 0.0
    flags: tuple[str, ...] = ()


@dataclass(frozen=True)
class IntegrityReport:
    """Gradebook checks after grading: SQLite's own checks and nbgrader's invariants (every
    submitted notebook has one grade per grade cell, scores within [0, max])."""

    ok: bool
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class GradeRun:
    """The result of ``grade``."""

    assignment: str
    submissions: tuple[SubmissionOutcome, ...]
    sandbox: str
    warnings: tuple[str, ...]
    jobs: int
    seconds: float
    integrity: IntegrityReport
    grade_cells: tuple[str, ...] = field(default=())

    @property
    def graded(self) -> tuple[str, ...]:
        return tuple(s.student for s in self.submissions if s.status == "graded")

    @property
    def skipped(self) -> tuple[str, ...]:
        return tuple(s.student for s in self.submissions if s.status == "skipped")

    @property
    def errors(self) -> tuple[str, ...]:
        return tuple(s.student for s in self.submissions if s.status == "error")

    @property
    def ok(self) -> bool:
        return not self.errors and self.integrity.ok


# ---------------------------------------------------------------------------------------------
# The pieces of nbgrader's Autograde converter.


class _Nbgrader:
    """nbgrader's Autograde converter, split at its Execute step."""

    def __init__(self, course: Course):
        from nbgrader.converters import Autograde
        from nbgrader.preprocessors import Execute

        self.course = course
        self.coursedir = course.coursedir()
        self.converter = Autograde(coursedir=self.coursedir, config=course.config)
        self.collector = WarningCollector()
        self.log = logging.getLogger(f"tdl.grading.{id(self)}")
        self.log.propagate = False
        self.log.addHandler(self.collector)
        self.log.setLevel(logging.WARNING)
        self.sanitize = [cls(config=course.config, log=self.log) for cls in self.converter.sanitize_preprocessors]
        post = list(self.converter.autograde_preprocessors)
        if Execute in post:
            post = post[post.index(Execute) + 1:]
        self.post = [cls(config=course.config, log=self.log) for cls in post]
        # Trusted verdicts replace the in-kernel scores right after nbgrader saved them, before
        # the late penalty (computed from the scores) and the rest.
        from nbgrader.preprocessors import SaveAutoGrades

        cut = next((i + 1 for i, pp in enumerate(self.post) if isinstance(pp, SaveAutoGrades)), len(self.post))
        self.post_save, self.post_rest = self.post[:cut], self.post[cut:]
        self.permissions = int(str(self.converter.permissions), 8)

    def resources(self, student: str, assignment: str, notebook: str, path: str) -> dict:
        return {"unique_key": notebook, "output_files_dir": f"{notebook}_files", "metadata": {"path": path},
                "nbgrader": {"student": student, "assignment": assignment, "notebook": notebook,
                             "db_url": self.course.db_url}}

    def run(self, preprocessors, nb, resources):
        self.collector.messages = []
        for pp in preprocessors:
            nb, resources = pp(nb, resources)
        return nb, resources, tuple(dict.fromkeys(self.collector.messages))


def _sha(paths: list[Path], base: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(paths):
        h.update(str(p.relative_to(base)).encode() + b"\0")
        h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


def _files(directory: Path, ignore: list[str]) -> list[Path]:
    from nbgrader.utils import find_all_files

    return [Path(p) for p in find_all_files(str(directory), ignore)] if directory.is_dir() else []


@dataclass
class _Submission:
    student: str
    sha: str
    stage: Path
    notebooks: list[NotebookOutcome] = field(default_factory=list)
    pending: int = 0
    reasons: list[str] = field(default_factory=list)


def _prepare(nbg: _Nbgrader, course: Course, assignment: str, student: str, sha: str, limits: gx.Limits,
             tasks: list, subs: dict) -> None:
    """Stage 1 for one submission: nbgrader's bookkeeping and sanitizing; queues the notebooks."""
    import shutil

    import nbformat
    from nbgrader.api import MissingEntry

    cd = nbg.coursedir
    src_dir = course.path("submitted", student, assignment)
    dest = course.path("autograded", student, assignment)
    # Built aside and swapped in by _finish: a submission the grader fails on keeps its old files.
    stage = _stage_path(course, assignment, student)
    source = course.path("source", ".", assignment)
    sub = subs[student] = _Submission(student, sha, stage)
    with course.gradebook() as gb:
        try:
            gb.find_student(student)
        except MissingEntry:
            if not nbg.converter.create_student:
                sub.reasons.append("not on the roster (Autograde.create_student is False): not graded")
                sub.notebooks.append(NotebookOutcome("*", "error"))
                return
            gb.update_or_create_student(student)
            sub.reasons.append("not on the roster: added to the gradebook")
        timestamp = cd.get_existing_timestamp(str(src_dir))
        if timestamp:
            gb.update_or_create_submission(assignment, student, timestamp=timestamp)
        else:
            gb.update_or_create_submission(assignment, student)
        expected = [nb.name for nb in gb.find_assignment(assignment).notebooks]
    # Files as nbgrader's converter lays them out: the student's, then the source's over them.
    _rmtree(stage)
    stage.mkdir(parents=True)
    for f in _files(src_dir, cd.ignore + ["*.ipynb"]):
        (stage / f.relative_to(src_dir)).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(f, stage / f.relative_to(src_dir))
    excluded = {source / x for x in nbg.converter.exclude_overwriting.get(assignment, [])}
    for f in _files(source, cd.ignore + ["*.ipynb"]):
        if f in excluded:
            continue
        target = stage / f.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            target.unlink()
        shutil.copy(f, target)
    submitted = sorted(p.stem for p in src_dir.glob("*.ipynb"))
    for extra in sorted(set(submitted) - set(expected)):
        sub.reasons.append(f"{extra}.ipynb is not a notebook of {assignment} (renamed?); ignored")
    for name in expected:
        if name not in submitted:
            _zero(course, assignment, student, name, needs_manual=False)
            sub.notebooks.append(NotebookOutcome(name, "missing"))
            sub.reasons.append(f"{name}.ipynb was not submitted: scored 0"
                               + (f" (found {', '.join(e + '.ipynb' for e in set(submitted) - set(expected))})"
                                  if set(submitted) - set(expected) else ""))
            continue
        path = src_dir / f"{name}.ipynb"
        resources = nbg.resources(student, assignment, name, str(dest))
        try:
            nb = nbformat.read(path, as_version=4)
            edited = _edited_locked_cells(course, assignment, name, nb)
            nb, resources, notes = nbg.run(nbg.sanitize, nb, resources)
            # A test cell's checksum always differs from the released one (hidden tests): say
            # "edited" only when the student's text differs from what was released.
            notes = tuple(n for n in notes if not n.startswith("Attribute 'checksum'"))
            notes += tuple(f"locked cell {gid} was edited: restored from the gradebook" for gid in edited)
        except Exception as e:  # noqa: BLE001 - any unreadable notebook is the student's problem
            _zero(course, assignment, student, name, needs_manual=True)
            why = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
            sub.notebooks.append(NotebookOutcome(name, "unreadable"))
            sub.reasons.append(f"{name}.ipynb is not a valid notebook ({type(e).__name__}: {why}): scored 0, "
                               "flagged for manual grading")
            continue
        for note in notes:
            sub.reasons.append(f"{name}: {note}")
        only = _graded_cells(course, assignment, name, nb)
        on = nbg.trusted
        task = gx.Task((student, assignment, name), nbformat.writes(nb), str(stage), limits,
                       probe=trusted.PROBE_CODE if on else None, only=only, check_mode="emit" if on else None)
        tasks.append((task, (notes, tuple(trusted.scan(nb, only)) if on else ())))
        sub.pending += 1


def _graded_cells(course: Course, assignment: str, notebook: str, nb) -> tuple[int, ...] | None:
    """For a lab (its source has a cell tagged ``tdl-graded``): the indices of the cells to run,
    the graded ones (nbgrader solution and grade cells) and the tagged ones, matched by grade_id
    against the source, so that a student's edit of tags changes nothing. ``None``: run all."""
    import nbformat

    try:
        src = nbformat.read(course.path("source", ".", assignment) / f"{notebook}.ipynb", as_version=4)
    except (OSError, ValueError):
        return None
    if not any(LAB_TAG in c.metadata.get("tags", []) for c in src.cells):
        return None
    run = {c.metadata["nbgrader"]["grade_id"] for c in src.cells if c.cell_type == "code"
           and c.metadata.get("nbgrader", {}).get("grade_id")
           and (c.metadata["nbgrader"].get("solution") or c.metadata["nbgrader"].get("grade")
                or LAB_TAG in c.metadata.get("tags", []))}
    return tuple(i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade_id") in run)


def _edited_locked_cells(course: Course, assignment: str, notebook: str, nb) -> list[str]:
    """grade_ids of locked cells whose text differs from the released notebook's."""
    import nbformat

    path = course.path("release", ".", assignment) / f"{notebook}.ipynb"
    try:
        released = nbformat.read(path, as_version=4)
    except (OSError, ValueError):
        return []
    text = {c.metadata.get("nbgrader", {}).get("grade_id"): c.source.strip() for c in released.cells
            if c.metadata.get("nbgrader", {}).get("locked")}
    return [gid for c in nb.cells if (gid := c.get("metadata", {}).get("nbgrader", {}).get("grade_id")) in text
            and c.get("source", "").strip() != text[gid]]


def _expected_notebooks(course: Course, assignment: str) -> list[str]:
    with course.gradebook() as gb:
        return [nb.name for nb in gb.find_assignment(assignment).notebooks]


def _stage_path(course: Course, assignment: str, student: str) -> Path:
    return course.state_dir / "staging" / assignment / student


def _rmtree(path: Path) -> None:
    import shutil

    if path.exists():
        for p in [path, *path.rglob("*")]:
            if not p.is_symlink():
                p.chmod(0o700 if p.is_dir() else 0o600)  # graded files are read-only
        shutil.rmtree(path)


def _swap(stage: Path, dest: Path) -> None:
    """Replace ``dest`` by ``stage`` (two renames on one file system)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    old = stage.with_name(stage.name + ".old")
    _rmtree(old)
    if dest.exists():
        os.rename(dest, old)
    os.rename(stage, dest)
    _rmtree(old)


def _zero(course: Course, assignment: str, student: str, notebook: str, *, needs_manual: bool) -> None:
    # As nbgrader does for a missing notebook: every grade of it scores 0.
    with course.gradebook() as gb:
        sub = gb.find_submission_notebook(notebook, assignment, student)
        for grade in sub.grades:
            grade.auto_score = 0
            grade.needs_manual_grade = needs_manual
        gb.db.commit()


def _record(nbg: _Nbgrader, course: Course, result: gx.Result, notes: tuple, tests: trusted.TrustedTests) \
        -> NotebookOutcome:
    """Stage 3 for one executed notebook: nbgrader's post-execution preprocessors (grades saved to
    the gradebook), then the trusted verdicts over the in-kernel scores, the tampering report, and
    the autograded notebook, written atomically and read-only."""
    import nbformat

    notes, scanned = notes
    student, assignment, name = result.key
    if result.error is not None:
        return NotebookOutcome(name, "error", notes=(result.error,), seconds=result.kernel_start_s)
    dest = course.path("autograded", student, assignment)
    stage = _stage_path(course, assignment, student)
    nb = nbformat.reads(result.notebook, as_version=4)
    res = nbg.resources(student, assignment, name, str(dest))
    tests.disarm(name, nb)
    nb, res, _ = nbg.run(nbg.post_save, nb, res)
    verdicts = tests.verdicts(name, nb)
    before, after = (trusted.probe_snapshot({"outputs": o or []}) for o in result.probe)
    died = any(e.kind in ("kernel_died", "unresponsive") for e in result.events)
    flags = [*scanned, *trusted.probe_findings(before, after, kernel_died=died), *(f for v in verdicts for f in v.flags)]
    _save_verdicts(course, assignment, student, name, nb, verdicts, flags)
    nb, res, _ = nbg.run(nbg.post_rest, nb, res)
    atomic_write_text(stage / f"{name}.ipynb", nbformat.writes(nb), mode=nbg.permissions)
    return NotebookOutcome(name, "graded", result.events, notes, result.kernel_start_s + result.run_s,
                           tuple(verdicts), tuple(dict.fromkeys(flags)))


FLAG_NOTE = "tdl: FLAGGED for a human look (the score is the trusted one):"


def _save_verdicts(course: Course, assignment: str, student: str, notebook: str, nb, verdicts, flags) -> None:
    """The trusted scores into the gradebook (over nbgrader's in-kernel ones), the verdict into
    the test cell's output (the feedback shows it), and the flags into the comments."""
    import nbformat

    by_id = {c.metadata.get("nbgrader", {}).get("grade_id"): c for c in nb.cells}
    with course.gradebook() as gb:
        for v in verdicts:
            g = gb.find_grade(v.grade_id, notebook, assignment, student)
            g.auto_score = v.score
            g.needs_manual_grade = False
            cell = by_id.get(v.grade_id)
            if cell is not None:
                cell.outputs.append(nbformat.v4.new_output("stream", name="stdout", text=v.summary()))
        if flags:
            note = FLAG_NOTE + "\n" + "\n".join(f"- {f}" for f in dict.fromkeys(flags))
            for c in nb.cells:
                meta = c.metadata.get("nbgrader", {})
                if meta.get("solution") or meta.get("task"):
                    comment = gb.find_comment(meta["grade_id"], notebook, assignment, student)
                    comment.auto_comment = ((comment.auto_comment or "") + "\n\n" + note).strip()
        gb.db.commit()


def _event_reason(name: str, e: gx.CellEvent, nb_cells: dict[int, str]) -> str:
    where = nb_cells.get(e.index, f"cell {e.index}")
    return f"{name}/{where}: {e.kind.replace('_', ' ')}: {e.detail}"



# ---------------------------------------------------------------------------------------------
# The run.


def _record_path(course: Course, assignment: str, student: str) -> Path:
    return course.state_dir / "grading" / assignment / f"{student}.json"


def _read_record(course: Course, assignment: str, student: str) -> dict | None:
    try:
        return json.loads(_record_path(course, assignment, student).read_text())
    except (OSError, ValueError):
        return None


def _write_record(course: Course, assignment: str, student: str, data: dict) -> None:
    path = _record_path(course, assignment, student)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    atomic_write_text(path, json.dumps(data, indent=1, sort_keys=True), mode=0o600)


def make_plan(course: Course, mode: str, jobs: int, scratch_root: str, memory_mb: int | None = None,
              uid_base: int | None = sandbox.DEFAULT_UID_BASE, hide_reference: bool = True):
    """The sandbox plan of a run: probed once (``mode``: ``auto`` falls back with warnings,
    ``require`` raises when no isolation is possible, ``sudo`` uses the root-owned helper through
    sudo (``sandbox_helper``; what ``auto`` and ``require`` use when not root and a sudo rule allows
    it), ``off`` runs kernels in a scratch copy only).
    ``uid_base``: the first of the run's uids (see ``sandbox.reserve_uids``)."""
    if mode not in SANDBOX_CHOICES:
        raise ValueError(f"sandbox={mode!r} is not allowed; allowed: {', '.join(SANDBOX_CHOICES)}")
    sudo_failed = ()
    if mode != "off" and (mode == "sudo" or os.geteuid() != 0):
        plan = _sudo_plan(course, mode, memory_mb)
        if isinstance(plan, str):
            sudo_failed = (plan,)
        elif plan is not None:
            return plan
    base = uid_base if uid_base is not None else sandbox.DEFAULT_UID_BASE
    hide = [str(course.root), str(course.exchange_root)]
    db = course.sqlite_path()
    if db is not None:
        hide.append(str(db.parent))
    plan = sandbox.default_plan(hide, scratch_root, uid_base=base, memory_mb=memory_mb, hide_reference=hide_reference)
    if mode == "off":
        return sandbox.SandboxPlan("none", warnings=("isolation turned off (--sandbox off): kernels run as "
                                                     "the grader's user in a scratch copy",))
    sandbox.check_uids(plan, jobs)
    secrets = [str(p) for p in private_paths(course) if p.exists()]
    plan = sandbox.probe(plan, scratch_root, secrets, require=(mode == "require"))
    return replace(plan, warnings=sudo_failed + plan.warnings) if sudo_failed else plan


def _sudo_plan(course: Course, mode: str, memory_mb: int | None):
    """The ``sudo`` plan when the helper's sudo rule allows it and its probe passes. Otherwise, for
    ``auto``: ``None`` (no rule) or the reason the probe failed, a warning; for ``sudo`` and
    ``require``: ``RuntimeError`` naming the sudoers line to add."""
    from . import sandbox_helper

    helper = sandbox_helper.helper_path()
    allowed, why = sandbox_helper.sudo_allowed(helper)
    if not allowed:
        if mode == "auto":
            return None
        raise RuntimeError(
            f"--sandbox {mode}: {why}. As root, install the helper (deploy/sandbox/install.sh, see "
            "assignments/README.md, 'Isolation') and allow it in /etc/sudoers.d/tdl-sandbox:\n  "
            + sandbox_helper.sudoers_line(helper))
    hide = [str(course.root), str(course.exchange_root)]
    db = course.sqlite_path()
    if db is not None:
        hide.append(str(db.parent))
    hide = [os.path.realpath(h) for h in hide if os.path.isdir(h)]
    secrets = [str(p) for p in private_paths(course) if p.exists()]
    try:
        return sandbox_helper.probe_plan(helper, hide, secrets, memory_mb)
    except sandbox_helper.HelperError as e:
        if mode == "auto":
            return f"the sudo sandbox helper is allowed but does not work: {e}"
        raise RuntimeError(f"--sandbox {mode}: {e}") from None


def grade(course: Course, assignment: str, *, jobs: int = 2, limits: gx.Limits | None = None,
          students=None, force: bool = False, sandbox_mode: str = "auto", memory_mb: int | None = None,
          progress: bool = True, trusted_checks: bool = True) -> GradeRun:
    """Autograde every collected submission of ``assignment`` (or only ``students``) with ``jobs``
    worker processes; see the module docstring. Raises ``CourseError`` for an unknown assignment
    or student and ``ValueError`` for bad limits; returns a ``GradeRun``. ``trusted_checks=False``
    grades the way ``tdl grade`` did before trusted checking (in-kernel hidden tests, the reference
    library visible, no probe): only for ``benchmarks/grading.py``'s same-run baseline."""
    if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1:
        raise ValueError(f"jobs={jobs!r} must be a positive integer")
    if memory_mb is not None and (not isinstance(memory_mb, int) or memory_mb < 256):
        raise ValueError(f"memory_mb={memory_mb!r} must be an integer >= 256 (MiB) or None")
    limits = limits or gx.Limits()
    check_assignment(course, assignment)
    submitted = course.student_dirs("submitted", assignment)
    if students:
        students = list(dict.fromkeys(students))
        check_students(course, [s for s in students if s not in submitted])
        missing = [s for s in students if s not in submitted]
        if missing:
            raise CourseError(f"no collected submission of {assignment} for {', '.join(missing)}; "
                              f"run `tdl collect {assignment}` first")
        submitted = [s for s in submitted if s in students]
    t0 = time.monotonic()
    with course_lock(course), warnings.catch_warnings():
        # nbgrader's add_submission trips a harmless SQLAlchemy 2 autoflush warning per submission.
        warnings.filterwarnings("ignore", message=r"Object of type <\w+> not in session")
        return _grade_locked(course, assignment, submitted, jobs, limits, force, sandbox_mode, memory_mb, progress, t0,
                             trusted_checks)


def _grade_locked(course, assignment, submitted, jobs, limits, force, sandbox_mode, memory_mb, progress, t0,
                  trusted_checks=True):
    import shutil

    from tqdm import tqdm

    nbg = _Nbgrader(course)
    nbg.trusted = trusted_checks
    cd = nbg.coursedir
    try:  # the trusted inputs and references, from the gradebook's copy of the tests, once per run
        tests = trusted.TrustedTests.from_gradebook(course, assignment) if trusted_checks else trusted.TrustedTests()
    except trusted.TrustedCheckError as e:
        raise CourseError(f"the hidden tests of {assignment} in the gradebook cannot be checked: {e}") from None
    source_sha = _sha(_files(course.path("source", ".", assignment), cd.ignore), course.root)
    todo, skipped = [], []
    for student in submitted:
        src = course.path("submitted", student, assignment)
        sha = _sha(_files(src, cd.ignore), course.root)
        rec = _read_record(course, assignment, student)
        done = (rec is not None and rec.get("submission_sha") == sha and rec.get("source_sha") == source_sha
                and rec.get("version") == RECORD_VERSION
                and all((course.path("autograded", student, assignment) / f"{n}.ipynb").exists()
                        for n in rec.get("graded_notebooks", [])))
        (skipped if done and not force else todo).append((student, sha))
    outcomes: dict[str, SubmissionOutcome] = {}
    plan_desc, plan_warnings = "not needed (nothing to grade)", ()
    if todo:
        scratch_root = tempfile.mkdtemp(prefix="tdl-grade-")
        os.chmod(scratch_root, 0o711)
        # Workers start (and import) while the sandbox is probed and the first submissions prepared.
        n_notebooks = max(1, len(_expected_notebooks(course, assignment)))
        pool = WorkerPool(min(jobs, len(todo) * n_notebooks), None, scratch_root)
        env_base = os.environ.get("TDL_SANDBOX_UID_BASE")
        held = contextlib.ExitStack()
        try:
            uid_base = held.enter_context(sandbox.reserve_uids(jobs, int(env_base) if env_base else None))
            pool.plan = plan = make_plan(course, sandbox_mode, jobs, scratch_root, memory_mb, uid_base,
                                         hide_reference=trusted_checks)
            if plan.uid_base is not None or plan.mode == sandbox.SUDO_MODE:
                restrict_permissions(course)
            plan_desc, plan_warnings = plan.describe(), plan.warnings
            for w in plan.warnings:
                print(f"warning: {w}", file=sys.stderr)
            subs, notes = {}, {}
            bar = tqdm(total=len(todo), desc=f"grading {assignment}", unit="submission", file=sys.stderr,
                       disable=not progress, dynamic_ncols=True)

            def stream():
                # Stage 1, lazily: a submission is prepared only when a worker is about to need it.
                for student, sha in todo:
                    batch: list = []
                    try:
                        _prepare(nbg, course, assignment, student, sha, limits, batch, subs)
                    except Exception as e:  # noqa: BLE001 - one broken submission must not stop the class
                        sub = subs.setdefault(student, _Submission(student, sha, _stage_path(course, assignment, student)))
                        sub.notebooks.append(NotebookOutcome("*", "error", notes=(f"could not prepare: {e}",)))
                        sub.pending, batch = 0, []
                    if not batch:  # nothing to run: every notebook missing or unreadable
                        outcomes[student] = _finish(course, assignment, subs[student], source_sha)
                        bar.update(1)
                    for task, n in batch:
                        notes[task.key] = n
                        yield task

            try:
                for task, result in pool.run(stream()):
                    student = task.key[0]
                    sub = subs[student]
                    try:
                        outcome = _record(nbg, course, result, notes[task.key], tests)
                    except Exception as e:  # noqa: BLE001 - a grade we could not save is an error, said loudly
                        outcome = NotebookOutcome(task.key[2], "error", notes=(f"could not record: {e}",))
                    sub.notebooks.append(outcome)
                    sub.pending -= 1
                    if sub.pending == 0:
                        outcomes[student] = _finish(course, assignment, sub, source_sha)
                        bar.update(1)
            finally:
                bar.close()
        finally:
            pool.close()
            held.close()
            shutil.rmtree(scratch_root, ignore_errors=True)
    for student, _ in skipped:
        rec = _read_record(course, assignment, student) or {}
        outcomes[student] = SubmissionOutcome(student, "skipped", reasons=tuple(rec.get("reasons", ())),
                                              flags=tuple(rec.get("flags", ())))
    ordered = tuple(_with_scores(course, assignment, outcomes[s]) for s in sorted(outcomes))
    integrity = check_gradebook(course, assignment)
    cells = ordered[0].cell_scores if ordered else ()
    return GradeRun(assignment, ordered, plan_desc, tuple(plan_warnings), jobs, time.monotonic() - t0, integrity,
                    tuple(c for c, _ in cells))


def _finish(course, assignment, sub: _Submission, source_sha: str) -> SubmissionOutcome:
    import nbformat

    status = "error" if any(n.status == "error" for n in sub.notebooks) else "graded"
    dest = course.path("autograded", sub.student, assignment)
    if status == "graded":
        _swap(sub.stage, dest)
    else:
        _rmtree(sub.stage)
    reasons = list(sub.reasons)
    for nbo in sub.notebooks:
        if nbo.status == "error":
            reasons.extend(f"{nbo.notebook}: NOT GRADED: {n}" for n in nbo.notes)
        elif nbo.events:
            ids = {}
            try:
                nb = nbformat.read(dest / f"{nbo.notebook}.ipynb", as_version=4)
                ids = {i: c.metadata.get("nbgrader", {}).get("grade_id", f"cell {i}") for i, c in enumerate(nb.cells)}
            except (OSError, ValueError):
                pass
            reasons.extend(_event_reason(nbo.notebook, e, ids) for e in nbo.events)
    flags = [f"{nbo.notebook}: {f}" for nbo in sub.notebooks for f in nbo.flags]
    reasons.extend(f"FLAGGED: {f}" for f in flags)
    if status == "graded":
        _write_record(course, assignment, sub.student, {
            "version": RECORD_VERSION, "submission_sha": sub.sha, "source_sha": source_sha,
            "graded_notebooks": sorted(n.notebook for n in sub.notebooks if n.status == "graded"),
            "reasons": reasons, "graded_at": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "events": {n.notebook: [[e.index, e.kind, e.detail] for e in n.events] for n in sub.notebooks},
            "flags": flags,
            "verdicts": {n.notebook: [trusted.jsonable(v) for v in n.verdicts] for n in sub.notebooks},
        })
    return SubmissionOutcome(sub.student, status, tuple(sub.notebooks), tuple(reasons), flags=tuple(flags))


def _with_scores(course: Course, assignment: str, out: SubmissionOutcome) -> SubmissionOutcome:
    from dataclasses import replace

    from nbgrader.api import MissingEntry

    with course.gradebook() as gb:
        try:
            sub = gb.find_submission(assignment, out.student)
        except MissingEntry:
            return out
        a = gb.find_assignment(assignment)
        cells = []
        for nb in a.notebooks:
            order = {c.name: i for i, c in enumerate(nb.source_cells)}
            for cell in sorted(nb.grade_cells, key=lambda c: order.get(c.name, 1e9)):
                g = gb.find_grade(cell.name, nb.name, assignment, out.student)
                graded = g.auto_score is not None or g.manual_score is not None
                cells.append((cell.name, float(g.score) if graded else None))
        return replace(out, cell_scores=tuple(cells), score=float(sub.score), max_score=float(a.max_score))


def check_gradebook(course: Course, assignment: str | None = None) -> IntegrityReport:
    """Check the gradebook: SQLite ``PRAGMA integrity_check`` and ``foreign_key_check`` (for a
    SQLite gradebook), then for every submission (of ``assignment``, or all): one submitted notebook
    per notebook of the assignment, one grade per grade cell, every score finite and within
    [0, max_score]."""
    import math
    import sqlite3

    problems = []
    db = course.sqlite_path()
    if db is not None and db.exists():
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            res = [r[0] for r in con.execute("PRAGMA integrity_check")]
            if res != ["ok"]:
                problems.append("sqlite integrity_check: " + "; ".join(res[:5]))
            fk = con.execute("PRAGMA foreign_key_check").fetchall()
            if fk:
                problems.append(f"sqlite foreign_key_check: {len(fk)} dangling rows")
        finally:
            con.close()
    with course.gradebook() as gb:
        for a in gb.assignments:
            if assignment is not None and a.name != assignment:
                continue
            for sub in a.submissions:
                names = {nb.notebook.name: nb for nb in sub.notebooks}
                for nb in a.notebooks:
                    snb = names.get(nb.name)
                    if snb is None:
                        problems.append(f"{sub.student.id}/{a.name}: no submitted notebook {nb.name}")
                        continue
                    have = {g.cell.name: g for g in snb.grades}
                    for cell in nb.grade_cells:
                        g = have.get(cell.name)
                        if g is None:
                            problems.append(f"{sub.student.id}/{a.name}/{nb.name}: no grade for {cell.name}")
                            continue
                        for what in ("auto_score", "manual_score"):
                            v = getattr(g, what)
                            if v is not None and not (math.isfinite(v) and -1e-9 <= v <= cell.max_score + 1e-9):
                                problems.append(f"{sub.student.id}/{a.name}/{nb.name}/{cell.name}: {what}={v} "
                                                f"outside [0, {cell.max_score}]")
    return IntegrityReport(not problems, tuple(problems))


def format_run(run: GradeRun) -> str:
    """The summary table of a run: one row per submission with the score of every grade cell, the
    total and the status, then every problem with its reason."""
    cells = list(run.grade_cells)
    head = ["student", *cells, "total", "status"]
    rows = []
    for s in run.submissions:
        scores = dict(s.cell_scores)
        fmt = lambda v: "-" if v is None else f"{v:g}"  # noqa: E731
        total = "-" if s.score is None else f"{s.score:g}/{s.max_score:g}"
        status = s.status if not s.reasons or s.status != "graded" else "graded*"
        if s.flags:
            status += " FLAGGED"
        rows.append([s.student, *(fmt(scores.get(c)) for c in cells), total, status])
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    line = lambda r: "  ".join(str(x).ljust(w) for x, w in zip(r, widths)).rstrip()  # noqa: E731
    out = [line(head), line(["-" * w for w in widths]), *map(line, rows)]
    problems = [(s.student, r) for s in run.submissions for r in s.reasons]
    out.append("")
    flagged = [s.student for s in run.submissions if s.flags]
    if flagged:
        out.append(f"FLAGGED for a human look (scores are the trusted ones): {', '.join(flagged)}")
    out.append(f"{len(run.graded)} graded, {len(run.skipped)} unchanged (skipped), {len(run.errors)} NOT graded; "
               f"{run.jobs} job(s), {run.seconds:.1f} s; sandbox: {run.sandbox}")
    if problems:
        out.append("* problems:")
        out.extend(f"  {s}: {r}" for s, r in problems)
    out.append("gradebook integrity: " + ("ok" if run.integrity.ok else "FAILED\n  " + "\n  ".join(run.integrity.problems)))
    return "\n".join(out)


__all__ = ["NotebookOutcome", "SubmissionOutcome", "IntegrityReport", "GradeRun", "WorkerPool", "SANDBOX_CHOICES",
           "make_plan", "grade", "check_gradebook", "format_run"]
