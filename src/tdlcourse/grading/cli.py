"""tdl: run notebooks at a scale, and a whole term of nbgrader from the command line.

    tdl roster import roster.csv        add/update students (idempotent; prints what changed); with
                                        nbgrader's JupyterHubAuthPlugin, also the hub group
                                        nbgrader-<course> ([--no-hub] [--hub-create-users])
    tdl release hw01 [--due DATE]       check hidden tests and run at scale="ci", generate, release
    tdl release lab01                   the same for a lab, from labs/01_*.ipynb
    tdl collect hw01                    collect submissions from the exchange
    tdl grade hw01 [--jobs N] [--timeout S]   autograde in parallel, isolated; verdicts reached outside
                                        the kernel; tampering flagged in the summary
    tdl feedback hw01 [--with-solutions] [--partial]
                                        generate and release feedback (refused while manual
                                        grading is unfinished, unless --partial)
    tdl exam import exam.csv            oral exam scores (id, score, note; idempotent)
    tdl export grades.csv               every score of every student
    tdl export grades.csv --final [--weights labs=0.2,assignments=0.3,exam=0.5]
                                        per-component and final grades, one row per student
    tdl report hw01                     HTML report with a histogram per autograded cell
    tdl run NOTEBOOK [--scale ci]       execute a notebook at a scale (parameters injected as papermill does)
    tdl lab [--instructor] [-- ARGS]    JupyterLab on the course from any folder (--instructor: the Formgrader)

The course is found from ``--course``, ``$TDL_COURSE``, or the current directory (or its
``assignments/`` folder). Only ``roster import`` and ``release`` create a course's gradebook (and
``release`` its default exchange); every other command refuses a missing one, naming the
configuration it read. Bad input prints one clear message and exits with status 2, having written
nothing; ``tdl grade`` exits 1 when some submission could not be graded (a grader failure, not a
student's error) or the gradebook fails its integrity check; ``tdl roster import`` exits 1 when,
on a course with nbgrader's JupyterHubAuthPlugin, some roster students are not in the hub group
nbgrader-<course> (unknown to the hub: listed; the gradebook has them).
"""

from __future__ import annotations

import argparse
import sys

from .. import __version__

EXIT_BAD_INPUT = 2


def _course(args):
    from .course import load_course

    return load_course(args.course)


def cmd_roster(args) -> int:
    from .course import CourseError, import_roster, read_roster
    from .hub import check_hub, plugin_name, sync_group, uses_hub

    course = _course(args)
    on_hub = uses_hub(course)
    if args.hub_create_users and (args.no_hub or not on_hub):
        raise CourseError("--hub-create-users needs the hub groups: the course's Authenticator.plugin_class is "
                          f"{plugin_name(course) or 'not set'} ({course.where_configured()}), expected "
                          "nbgrader.auth.JupyterHubAuthPlugin" + (", and --no-hub was given" if args.no_hub else "")
                          + "; nothing was imported")
    hub = unknown = None
    ids = []
    if on_hub and not args.no_hub:
        # before the gradebook changes: the roster is valid, and the hub answers with this token
        ids = [row["id"] for row in read_roster(args.csv)]
        hub, unknown = check_hub(course, ids)
    status = _print_change(import_roster(course, args.csv), f"in the gradebook, not in {args.csv}")
    if on_hub and args.no_hub:
        print(f"hub group nbgrader-{course.course_id} not touched (--no-hub)")
    if hub is None:
        return status
    sync = sync_group(course, hub, ids, unknown, create_users=args.hub_create_users)
    for sid in sync.created_users:
        print(f"hub user  {sid} (created: --hub-create-users)")
    for sid in sync.added:
        print(f"hub group {sid} (added to {sync.group})")
    for sid in sync.not_on_roster:
        print(f"hub group {sid} (in {sync.group}, not in {args.csv}; kept)")
    why_not = dict(sync.not_created)
    for sid in sync.unknown:
        print(f"not in the hub {sid} (no hub user: not added to {sync.group}"
              + (f"; --hub-create-users: {why_not[sid]}" if sid in why_not else "") + ")")
    for sid, why in sync.failed:
        print(f"hub failed {sid} (not added to {sync.group}: {why})")
    print(f"hub group {sync.group} at {sync.api_url}: {len(sync.added)} added, {len(sync.already)} already "
          f"members, {len(sync.not_on_roster)} not on the roster (kept), {len(sync.unknown)} unknown to the hub"
          + (f", {len(sync.failed)} failed" if sync.failed else ""))
    if sync.complete:
        return status
    if sync.unknown:
        print(f"tdl roster: error: {len(sync.unknown)} roster student(s) have no user on the hub and are not in "
              f"{sync.group} (they cannot see the course): {', '.join(sync.unknown)}. They are in the gradebook. "
              "Check the ids; give them their accounts (on a hub of Linux accounts: the account first), "
              "then rerun" + ("" if args.hub_create_users else " with --hub-create-users to create their hub users"),
              file=sys.stderr)
    if sync.failed:
        print(f"tdl roster: error: {len(sync.failed)} roster student(s) could not be added to {sync.group}: "
              f"{', '.join(s for s, _ in sync.failed)}", file=sys.stderr)
    return 1


def _print_change(change, kept: str) -> int:
    """What an import (roster, exam) changed, one line per id, then the counts."""
    for what in getattr(change, "created", ()):
        print(f"created {what} (a new course)")
    for sid in change.added:
        print(f"added     {sid}")
    for sid, fields in change.updated:
        print(f"updated   {sid} ({', '.join(fields)})")
    for sid in change.not_in_file:
        print(f"kept      {sid} ({kept}; never deleted)")
    print(f"{len(change.added)} added, {len(change.updated)} updated, {len(change.unchanged)} unchanged"
          + ("" if change.changed else ": nothing changed"))
    return 0


def cmd_release(args) -> int:
    from .release import release

    course = _course(args)
    if not args.no_check:
        print(f"checking {args.assignment} at scale='ci'...", file=sys.stderr)
    r = release(course, args.assignment, due=args.due, check=not args.no_check)
    for what in r.created:
        print(f"created {what} (a new course)")
    due = f"due {r.duedate:%Y-%m-%d %H:%M} UTC" if r.duedate else "no due date"
    print(f"released {r.assignment} ({', '.join(r.notebooks)}; {due}) to {r.exchange}")
    return 0


def cmd_collect(args) -> int:
    from .release import collect

    r = collect(_course(args), args.assignment)
    print(f"{len(r.collected)} submission(s) of {r.assignment}: {', '.join(r.collected) or '-'}")
    if r.late:
        print(f"late: {', '.join(r.late)}")
    if r.missing:
        print(f"no submission from: {', '.join(r.missing)}")
    if r.unknown:
        print(f"not on the roster (collected anyway): {', '.join(r.unknown)}")
    return 0


def cmd_grade(args) -> int:
    from .autograde import format_run, grade
    from .course import load_course
    from .execute import Limits

    course = load_course(args.course)
    cell_timeout = args.cell_timeout
    if cell_timeout is None:
        cell_timeout = float(course.config.get("Execute", {}).get("timeout", 120) or 120)
    limits = Limits(notebook_timeout=args.timeout, cell_timeout=min(cell_timeout, args.timeout),
                    max_output_bytes=args.max_output)
    run = grade(course, args.assignment, jobs=args.jobs, limits=limits, students=args.student, force=args.force,
                sandbox_mode=args.sandbox, memory_mb=args.memory_mb, progress=not args.no_progress)
    print(format_run(run))
    return 0 if run.ok else 1


def cmd_feedback(args) -> int:
    from .release import feedback

    r = feedback(_course(args), args.assignment, with_solutions=args.with_solutions, partial=args.partial)
    print(f"feedback for {r.assignment} released to {len(r.students)} student(s)"
          + (" with the model solution" if r.with_solutions else ""))
    if r.partial:
        n = sum(p.student in r.partial for p in r.pending)
        print(f"partial feedback (manual grading unfinished, {n} cell(s)): {', '.join(r.partial)}")
    return 0


def _warn_pending(who: dict[str, str]) -> None:
    """One warning line on stderr naming the students whose manual grading is unfinished
    (``who``: student -> what is pending)."""
    if who:
        print(f"tdl export: warning: manual grading unfinished (scores may still rise; column "
              f"needs_manual_grading) for {len(who)} student(s): "
              + ", ".join(f"{s} ({what})" for s, what in sorted(who.items())), file=sys.stderr)


def cmd_exam(args) -> int:
    from .term import import_exam

    return _print_change(import_exam(_course(args), args.csv), f"imported before, not in {args.csv}")


def cmd_export(args) -> int:
    from .reports import export_grades

    if args.final or args.weights is not None:
        from .term import export_final

        course = _course(args)
        r = export_final(course, args.csv, weights=args.weights)
        formula = " + ".join(f"{w:g} {c}" for c, w in r.grades.weights.items())
        print(f"wrote the final grades of {len(r.rows)} student(s) to {args.csv} (final = {formula})")
        if r.grades.ignored:
            print(f"not counted (no component matches): {', '.join(r.grades.ignored)}")
        for sid, items in r.missing:
            print(f"missing   {sid}: {'; '.join(items)} (counted 0)")
        _warn_pending({row["student_id"]: row["needs_manual_grading"] for row in r.rows
                       if row["needs_manual_grading"]})
        return 0
    from .manual import pending_manual

    course = _course(args)
    n = export_grades(course, args.csv)
    print(f"wrote {n} rows to {args.csv}")
    who: dict[str, set[str]] = {}
    for p in pending_manual(course):
        who.setdefault(p.student, set()).add(p.assignment)
    _warn_pending({s: ", ".join(sorted(a)) for s, a in who.items()})
    return 0


def cmd_report(args) -> int:
    from .reports import write_report

    path = write_report(_course(args), args.assignment, args.out)
    print(f"wrote {path}")
    return 0


def cmd_run(args) -> int:
    from .release import run_notebook

    run_notebook(args.notebook, scale=args.scale, output=args.output)
    print(f"{args.notebook}: ran at scale={args.scale!r}" + (f", wrote {args.output}" if args.output else ""))
    return 0


def cmd_lab(args) -> int:
    from .lab import lab_command, start

    extra = tuple(args.jupyter_args[1:] if args.jupyter_args[:1] == ["--"] else args.jupyter_args)
    course = _course(args)
    cmd = lab_command(course, instructor=args.instructor, extra=extra)
    if args.dry_run:
        print(cmd.shell())
        return 0
    print(f"tdl lab: course {course.course_id} at {course.root}, serving {cmd.root_dir} "
          f"({', '.join(f'{k}={v}' for k, v in cmd.env.items())})", file=sys.stderr)
    sys.stderr.flush()
    sys.stdout.flush()
    start(cmd)
    return 0  # not reached: the server replaced this process


def _positive(kind):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {kind.__name__}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{text!r} must be positive")
        return value
    return parse


def parser() -> argparse.ArgumentParser:
    from .autograde import SANDBOX_CHOICES

    p = argparse.ArgumentParser(prog="tdl", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n".join(__doc__.split("\n\n")[1].splitlines()))
    p.add_argument("--version", action="version", version=f"tdl {__version__}")
    p.add_argument("--course", help="course root (holds nbgrader_config.py); default $TDL_COURSE, ., ./assignments")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    r = sub.add_parser("roster", help="manage the student roster")
    rs = r.add_subparsers(dest="action", metavar="ACTION", required=True)
    ri = rs.add_parser("import", help="add or update students from a CSV (id, first name, last name, email)")
    ri.add_argument("csv")
    ri.add_argument("--no-hub", action="store_true",
                    help="with nbgrader's JupyterHubAuthPlugin configured: import into the gradebook only, "
                         "leave the hub groups as they are")
    ri.add_argument("--hub-create-users", action="store_true",
                    help="create the roster's students the hub does not know as hub users (else they are "
                         "listed, left out of nbgrader-<course>, and the command exits 1)")
    ri.set_defaults(func=cmd_roster)

    r = sub.add_parser("release", help="check the hidden tests and run at scale='ci', generate and release "
                                       "an assignment or a lab (labNN: from labs/)")
    r.add_argument("assignment")
    r.add_argument("--due", help="due date, e.g. '2026-12-01 17:00' (UTC) or '2026-12-01T17:00+01:00'")
    r.add_argument("--no-check", action="store_true", help="skip running the source at scale='ci'")
    r.set_defaults(func=cmd_release)

    r = sub.add_parser("collect", help="collect submissions from the exchange")
    r.add_argument("assignment")
    r.set_defaults(func=cmd_collect)

    r = sub.add_parser("grade", help="autograde collected submissions in parallel")
    r.add_argument("assignment")
    r.add_argument("--jobs", "-j", type=_positive(int), default=2, help="worker processes (default 2)")
    r.add_argument("--timeout", type=_positive(float), default=600.0,
                   help="wall-clock limit per notebook in seconds (default 600)")
    r.add_argument("--cell-timeout", type=_positive(float), default=None,
                   help="limit per cell in seconds (default: Execute.timeout of the course config, else 120)")
    r.add_argument("--max-output", type=_positive(int), default=1_000_000,
                   help="bytes of output a cell may print before it is stopped (default 1000000)")
    r.add_argument("--memory-mb", type=_positive(int), default=None, help="address-space limit of a kernel (MiB)")
    r.add_argument("--student", action="append", help="grade only this student (repeatable)")
    r.add_argument("--force", action="store_true", help="regrade submissions that were already graded")
    r.add_argument("--sandbox", choices=SANDBOX_CHOICES, default="auto",
                   help="kernel isolation: auto (best available, warn otherwise), require (fail "
                        "without isolation), sudo (the root-owned helper through a sudo rule, for a "
                        "grader that is not root; auto and require use it when the rule exists), off")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    r.set_defaults(func=cmd_grade)

    r = sub.add_parser("feedback", help="generate and release feedback")
    r.add_argument("assignment")
    r.add_argument("--with-solutions", action="store_true", help="append the model solution (after the due date)")
    r.add_argument("--partial", action="store_true",
                   help="release even though some manual grading is unfinished (lists the students concerned)")
    r.set_defaults(func=cmd_feedback)

    r = sub.add_parser("exam", help="manage the oral exam's scores")
    rs = r.add_subparsers(dest="action", metavar="ACTION", required=True)
    ri = rs.add_parser("import", help="add or update exam scores from a CSV (id, score, note)")
    ri.add_argument("csv")
    ri.set_defaults(func=cmd_exam)

    r = sub.add_parser("export", help="export all grades to a CSV file")
    r.add_argument("csv")
    r.add_argument("--final", action="store_true",
                   help="one row per student: component and final grades, weighted by TdlGrades.weights")
    r.add_argument("--weights", metavar="NAME=W,...",
                   help="final grades with these weights (summing to 1), e.g. labs=0.2,assignments=0.3,exam=0.5")
    r.set_defaults(func=cmd_export)

    r = sub.add_parser("report", help="write an HTML report with score histograms per autograded cell")
    r.add_argument("assignment")
    r.add_argument("--out", help="output file (default <course>/reports/<assignment>.html)")
    r.set_defaults(func=cmd_report)

    r = sub.add_parser("run", help="execute a notebook at a scale")
    r.add_argument("notebook")
    r.add_argument("--scale", default="ci", help="ci, cpu or gpu (default ci)")
    r.add_argument("--output", help="write the executed notebook here")
    r.set_defaults(func=cmd_run)

    r = sub.add_parser("lab", help="JupyterLab on the course, from any folder (--instructor: the Formgrader)",
                       description="Start JupyterLab with the course's nbgrader configuration whatever the "
                                   "current folder: the course root goes first on JUPYTER_CONFIG_PATH and the "
                                   "server serves the folder holding the course and the labs. Arguments after "
                                   "-- go to `jupyter lab` (e.g. -- --no-browser --port 8890).")
    r.add_argument("--instructor", action="store_true",
                   help="open the Formgrader (the course's gradebook must exist: `tdl roster import` creates it)")
    r.add_argument("--dry-run", action="store_true", help="print the command and its environment, start nothing")
    r.add_argument("jupyter_args", nargs=argparse.REMAINDER, help="arguments for `jupyter lab`, after --")
    r.set_defaults(func=cmd_lab)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``tdl`` console script; returns the exit status."""
    import os

    from .course import CourseError

    # nbgrader runs `alembic` by name: the environment's bin must be on PATH even when not activated.
    bindir = os.path.dirname(sys.executable)
    if bindir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except (CourseError, ValueError) as e:
        print(f"tdl {args.command}: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except RuntimeError as e:
        print(f"tdl {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"tdl {args.command}: interrupted; nothing half-recorded (rerun to finish)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
