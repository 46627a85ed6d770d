"""Sphinx extension: the book shows the student version of graded notebooks.

A lab ends with a graded "Your turn" section written as an nbgrader source (cell metadata
``nbgrader``, solution regions, hidden tests, model answers). The book must show what a student
gets from ``nbgrader generate_assignment``, never the instructor's version. Before myst-nb parses
(and executes) a notebook, a ``source-read`` handler rewrites the text of every ``.ipynb`` that has
nbgrader metadata, as nbgrader's ClearSolutions, ClearHiddenTests and ClearMarkScheme do, with the
same markers (a line containing the marker text) and the course's stubs
(``assignments/nbgrader_config.py``):

- in every cell, each ``BEGIN SOLUTION`` .. ``END SOLUTION`` region (both lines included) becomes
  the stub, indented like the ``BEGIN`` line: ``# YOUR CODE HERE`` / ``raise NotImplementedError()``
  in code, ``YOUR ANSWER HERE`` in markdown; a solution cell without a region becomes the stub;
- each ``BEGIN HIDDEN TESTS`` .. ``END HIDDEN TESTS`` and ``BEGIN MARK SCHEME`` .. ``END MARK
  SCHEME`` region is removed, and the outputs of solution and test cells are cleared;
- every code cell that is a solution or an autograded test gets the tag ``skip-execution``, which
  nbclient (myst-nb's executor) honours: the stub raises, and a test fails without the solution.

myst-nb executes the notebook it parses from this text (execution mode ``force``: no execution
cache is involved), so the executed notebook, the page, its search index and the executed copy in
``jupyter_execute/`` all hold the student version. Sphinx copies the file on disk to
``_sources/`` for the page's download button; at the end of the build that copy is replaced by the
student version (without the skip tags). A region that is not closed, is nested, or (for a solution) sits
in a cell that is not a solution cell fails the build, as it fails ``nbgrader generate_assignment``.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
from sphinx.errors import ExtensionError

CODE_STUB = "# YOUR CODE HERE\nraise NotImplementedError()"
TEXT_STUB = "YOUR ANSWER HERE"
SKIP_TAG = "skip-execution"
SOLUTION = ("BEGIN SOLUTION", "END SOLUTION")
HIDDEN_TESTS = ("BEGIN HIDDEN TESTS", "END HIDDEN TESTS")
MARK_SCHEME = ("BEGIN MARK SCHEME", "END MARK SCHEME")


def _meta(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {}) or {}


def _replace_regions(source: str, markers: tuple[str, str], stub: str | None, where: str) -> tuple[str, bool]:
    """``source`` with each ``markers`` region replaced by ``stub`` (None: removed), and whether
    there was one."""
    begin, end = markers
    out, inside, found = [], False, False
    for line in source.split("\n"):
        if begin in line:
            if inside:
                raise ExtensionError(f"{where}: nested {begin!r}")
            inside = found = True
            if stub is not None:
                indent = re.match(r"\s*", line).group(0)
                out.extend(indent + s for s in stub.split("\n"))
        elif end in line:  # as nbgrader: the line goes, a stray one too
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ExtensionError(f"{where}: {begin!r} is never closed by {end!r}")
    return "\n".join(out), found


def is_graded(nb) -> bool:
    return any(_meta(c) for c in nb.cells)


def student_version(nb, name: str = "notebook", skip_tag: str | None = SKIP_TAG):
    """Make ``nb`` (an nbformat v4 notebook, changed in place and returned) the student version."""
    for i, cell in enumerate(nb.cells):
        meta, where = _meta(cell), f"{name}, cell {i}"
        solution, grade = bool(meta.get("solution")), bool(meta.get("grade"))
        stub = CODE_STUB if cell.cell_type == "code" else TEXT_STUB
        source, replaced = _replace_regions(cell.source, SOLUTION, stub, where)
        if replaced and not solution:
            raise ExtensionError(f"{where}: a solution region in a cell that is not an nbgrader solution cell")
        if solution and not replaced:
            source = stub
        source, _ = _replace_regions(source, HIDDEN_TESTS, None, where)
        source, _ = _replace_regions(source, MARK_SCHEME, None, where)
        cell.source = source
        if cell.cell_type == "code" and (solution or grade):
            cell.outputs, cell.execution_count = [], None
            if skip_tag:
                tags = cell.metadata.setdefault("tags", [])
                if skip_tag not in tags:
                    tags.append(skip_tag)
    return nb


def _is_notebook(env, docname: str) -> bool:
    return str(env.doc2path(docname)).endswith(".ipynb")


def _on_source_read(app, docname: str, source: list[str]) -> None:
    if not _is_notebook(app.env, docname):
        return
    nb = nbformat.reads(source[0], as_version=4)
    if is_graded(nb):
        source[0] = nbformat.writes(student_version(nb, docname))


def _on_build_finished(app, exception) -> None:
    """Replace the copies of graded notebooks under ``_sources/`` (the download button)."""
    if exception is not None or app.builder.format != "html":
        return
    env = app.env
    for docname in sorted(env.found_docs):
        if not _is_notebook(env, docname):
            continue
        path = Path(env.doc2path(docname))
        nb = nbformat.read(path, as_version=4)
        if not is_graded(nb):
            continue
        copy = Path(app.outdir) / "_sources" / (docname + path.suffix)
        if copy.exists():
            copy.write_text(nbformat.writes(student_version(nb, docname, skip_tag=None)), encoding="utf-8")


def setup(app):
    app.connect("source-read", _on_source_read)
    app.connect("build-finished", _on_build_finished)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
