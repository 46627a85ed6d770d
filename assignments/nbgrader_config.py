"""nbgrader configuration of the course (the course root is this folder).

Works on one machine out of the box: the gradebook is SQLite in this folder and the exchange is a
local directory. For a shared server set TDL_EXCHANGE to a directory all users can write (nbgrader's
multi-user exchange needs it world-writable with the sticky bit, e.g. /srv/nbgrader/exchange,
mode 1777) and TDL_GRADEBOOK to any SQLAlchemy URL (e.g. postgresql://...). The `tdl` command
(`tdl --help`) reads this file too; see assignments/README.md.
"""

import os

here = os.path.dirname(os.path.abspath(__file__))
c = get_config()  # noqa: F821  (provided by nbgrader when it loads this file)

c.CourseDirectory.course_id = os.environ.get("TDL_COURSE_ID", "tdl")
c.CourseDirectory.root = here
c.CourseDirectory.db_url = os.environ.get("TDL_GRADEBOOK", "sqlite:///" + os.path.join(here, "gradebook.db"))
c.Exchange.root = os.environ.get("TDL_EXCHANGE", os.path.join(here, "exchange"))
c.Exchange.path_includes_course = True

# Assignments enter the gradebook when released (`tdl release`, or `nbgrader db assignment add`).
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"
# Autograding never waits forever on a student's infinite loop (per cell; `tdl grade` also has a
# per-notebook limit, --timeout).
c.ExecutePreprocessor.timeout = 120
c.Execute.timeout = 120
# A student who deletes a test cell gets it back (from the gradebook) and graded, not a free pass.
c.OverwriteCells.add_missing_cells = True

# Final grades (`tdl export grades.csv --final`; read by tdl only, nbgrader ignores this section).
# Components are groups of gradebook assignments by name pattern (fnmatch); "exam" is the oral exam
# (`tdl exam import exam.csv`, scores out of exam_max_score). final = sum of weight * fraction of
# each component; the weights sum to 1 (`--weights labs=...,assignments=...,exam=...` overrides).
c.TdlGrades.components = {"labs": "lab*", "assignments": "hw*"}
c.TdlGrades.weights = {"labs": 0.2, "assignments": 0.3, "exam": 0.5}
c.TdlGrades.exam_max_score = 100

# Offline math: the Formgrader's grading page and the feedback HTML render math with MathJax 3
# inlined from a local copy (nbgrader's own templates load MathJax 2 from a CDN: raw TeX offline).
# See tdlcourse.grading.offline (`make vendor` provides MathJax, or set TDL_MATHJAX).
try:
    from tdlcourse.grading.offline import configure as _offline_math
except ImportError as e:
    raise ImportError(f"{__file__} needs the tdlcourse package (pip install -e . in the repository) "
                      f"in the Python that runs nbgrader ({e})") from e
_offline_math(c)
