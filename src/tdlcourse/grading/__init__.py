"""The instructor application behind the ``tdl`` command (not imported by the student-facing
library, and never importable from a grading kernel).

One module per stage of a term:

- ``course``: the course (nbgrader configuration, gradebook, exchange), its lock and the roster;
- ``release``: release (after a check run at ``scale="ci"``), collect, feedback;
- ``autograde``: ``tdl grade``: nbgrader's Autograde split at its Execute step (prepare, execute
  in the pool, record), the integrity check and the summary;
- ``pool``: the warm worker processes; ``execute``: one notebook in a fresh, limited kernel;
- ``sandbox``: the isolation of the kernels that run student code; ``sandbox_helper``: the same for
  a grader that is not root, through one sudo rule to a root-owned helper;
- ``hub``: ``tdl roster import``'s sync of the JupyterHub group ``nbgrader-<course>``;
- ``offline``: MathJax inlined from a local copy in the Formgrader and the feedback pages;
- ``trusted``: verdicts reached outside the student's kernel (``tdlcheck`` records, references
  computed by the grader) and the report of tampering;
- ``reports``: the CSV export and the HTML report; ``term``: the oral exam and final grades;
- ``manual``: manual grading that is unfinished (what ``tdl feedback`` waits for, what the export flags);
- ``lab``: ``tdl lab``, JupyterLab and the Formgrader on the course from any working directory;
- ``files``: atomic writes; ``cli``: the ``tdl`` command.
"""
