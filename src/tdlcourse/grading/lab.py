"""``tdl lab``: JupyterLab on the course, with nbgrader's configuration found whatever folder the
command (or the server) starts in.

nbgrader's server extensions (the Formgrader, the Assignment List) read ``nbgrader_config.py``
from the server's working directory and from Jupyter's configuration path, nowhere else: a server
started in another folder finds no course, and the Formgrader then works on an empty course in that
folder (creating a ``gradebook.db`` there). ``tdl lab`` puts the course root first on
``JUPYTER_CONFIG_PATH`` (the course's ``nbgrader_config.py`` sets ``CourseDirectory.root`` from its
own location, so nothing else depends on the working directory) and serves the folder that holds
the course root and the labs, which the Formgrader needs (it refuses a course outside the server
root). ``--instructor`` opens the Formgrader and first checks that the course has a gradebook
(the Formgrader would create an empty one).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from .course import Course, CourseError, gradebook_problem
from .release import labs_dir


@dataclass(frozen=True)
class LabCommand:
    """The server to start: its command line, the environment variables ``tdl`` sets, and the
    folder it serves."""

    argv: tuple[str, ...]
    env: dict[str, str]
    root_dir: Path

    def shell(self) -> str:
        import shlex

        return " ".join([*(f"{k}={shlex.quote(v)}" for k, v in self.env.items()), *map(shlex.quote, self.argv)])


def server_root(course: Course) -> Path:
    """The folder the server serves: the deepest one holding both the course root and the labs
    folder (the repository root for this repository's ``assignments/``), else the course root."""
    labs = labs_dir(course).resolve()
    if labs.is_dir():
        return Path(os.path.commonpath([course.root, labs]))
    return course.root


def lab_command(course: Course, *, instructor: bool = False, extra: tuple[str, ...] = ()) -> LabCommand:
    """How ``tdl lab`` starts JupyterLab on ``course`` (``extra``: more ``jupyter lab`` arguments).
    ``instructor`` opens the Formgrader and needs the course's gradebook (``CourseError`` if it
    does not exist; nothing is created)."""
    if instructor:
        problem = gradebook_problem(course)
        if problem is not None:
            raise CourseError(f"the Formgrader needs the course's gradebook: {problem}")
    root = server_root(course)
    labs = labs_dir(course).resolve()
    if instructor:
        url = "/formgrader"
    elif labs.is_dir() and labs.is_relative_to(root):
        url = "/lab/tree/" + labs.relative_to(root).as_posix()
    else:
        url = "/lab"
    paths = [str(course.root), *[p for p in os.environ.get("JUPYTER_CONFIG_PATH", "").split(os.pathsep) if p]]
    env = {"JUPYTER_CONFIG_PATH": os.pathsep.join(dict.fromkeys(paths))}
    argv = [sys.executable, "-m", "jupyterlab", f"--ServerApp.root_dir={root}", f"--ServerApp.default_url={url}"]
    if os.geteuid() == 0 and "--allow-root" not in extra:
        argv.append("--allow-root")
    return LabCommand(tuple(argv) + tuple(extra), env, root)


def start(cmd: LabCommand) -> None:
    """Replace this process by the server (its signals and exit status are the server's)."""
    os.execve(cmd.argv[0], list(cmd.argv), {**os.environ, **cmd.env})
