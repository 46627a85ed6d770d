"""Every notebook in labs/ and assignments/source/ runs under papermill at scale="ci"."""

from __future__ import annotations

import os

import nbformat
import pytest

from conftest import ROOT

NOTEBOOKS = sorted(ROOT.glob("labs/*.ipynb")) + sorted(ROOT.glob("assignments/source/*/*.ipynb"))


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[str(p.relative_to(ROOT)) for p in NOTEBOOKS])
def test_notebook_runs_at_ci_scale(path, tmp_path, monkeypatch):
    import papermill as pm

    # Static mode: the lab renders its widget as the book does (no kernel round trip needed).
    monkeypatch.setenv("TDL_STATIC", "1")
    monkeypatch.delenv("TDL_SCALE", raising=False)
    params = {"scale": "ci"} if _has_parameters_cell(path) else {}
    try:
        pm.execute_notebook(str(path), str(tmp_path / path.name), parameters=params, cwd=str(path.parent),
                            kernel_name="python3", progress_bar=False, request_save_on_cell_execute=False)
    except pm.PapermillExecutionError as e:
        pytest.fail(f"{path.relative_to(ROOT)}: cell {e.exec_count} (index {e.cell_index}) raised "
                    f"{e.ename}: {e.evalue}", pytrace=False)


def _has_parameters_cell(path) -> bool:
    nb = nbformat.read(path, as_version=4)
    return any("parameters" in c.metadata.get("tags", []) for c in nb.cells)


@pytest.mark.parametrize("path", sorted(ROOT.glob("labs/*.ipynb")), ids=lambda p: p.name)
def test_lab_first_code_cell_is_parameters_with_auto_scale(path):
    nb = nbformat.read(path, as_version=4)
    first = next(c for c in nb.cells if c.cell_type == "code")
    assert "parameters" in first.metadata.get("tags", []), f"{path.name}: first code cell is not tagged 'parameters'"
    assert 'scale = "auto"' in first.source, f"{path.name}: the parameters cell must set scale = \"auto\""


@pytest.mark.parametrize("path", NOTEBOOKS + sorted(ROOT.glob("book/*.ipynb")), ids=lambda p: p.name)
def test_notebook_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
    assert not dirty, f"{path.name}: cells {dirty} have outputs or execution counts; strip them before committing"


@pytest.mark.slow
@pytest.mark.xdist_group("lab01-cpu")
def test_lab01_stated_results_hold_at_cpu_scale(tmp_path, monkeypatch):
    """The lab's text states what happens at `cpu` scale (the scale of the book); its check cell
    asserts those statements, so they are tested here rather than assumed (~1.5 min)."""
    import papermill as pm

    monkeypatch.setenv("TDL_STATIC", "1")
    path = ROOT / "labs" / "01_generalization_puzzle.ipynb"
    try:
        out = pm.execute_notebook(str(path), str(tmp_path / path.name), parameters={"scale": "cpu"},
                                  cwd=str(path.parent), kernel_name="python3", progress_bar=False)
    except pm.PapermillExecutionError as e:
        pytest.fail(f"{path.name} at scale=cpu: cell {e.exec_count} raised {e.ename}: {e.evalue}", pytrace=False)
    text = "".join(o.get("text", "") for c in out.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert text.count("[ok]") == 4 and "FAILS" not in text
