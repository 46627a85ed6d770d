"""The layout the grader's guarantees rest on: the student-facing library never imports the
grading stack (nor nbgrader), and tdlcheck, the only module a grading kernel may import, needs
neither tdlcourse nor anything beyond numpy and the standard library."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import tdlcourse

STUDENT_MODULES = sorted(m.name for m in pkgutil.iter_modules(tdlcourse.__path__) if m.name != "grading")


def _loaded_after(code: str) -> set[str]:
    r = subprocess.run([sys.executable, "-c", code + "\nimport sys; print(' '.join(sorted(sys.modules)))"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return set(r.stdout.split())


def test_student_modules_do_not_import_the_grader():
    assert {"capacity", "meanfield", "train", "plots", "widgets"} <= set(STUDENT_MODULES)
    loaded = _loaded_after("\n".join(f"import tdlcourse.{m}" for m in STUDENT_MODULES))
    assert not {m for m in loaded if m.startswith(("tdlcourse.grading", "nbgrader"))}


def test_tdlcheck_needs_no_reference_library():
    loaded = _loaded_after("import tdlcheck\ntdlcheck.digest([(1, 2.0)])\ntdlcheck.rng('x')")
    assert not {m for m in loaded if m.split(".")[0] in ("tdlcourse", "torch", "scipy", "sklearn", "IPython")}


def test_every_chapter_is_in_the_toc_with_its_lab_and_assignment_and_on_the_front_page():
    """A chapter NN is a page book/NN_x.md, a lab labs/NN_x.ipynb (its section in _toc.yml) and an
    assignment hwNN; the front page's table links every chapter of the toc, and a part is called
    complete only when all its chapters are."""
    import yaml

    from conftest import ROOT

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    intro = (ROOT / "book" / "intro.md").read_text()
    pages = sorted(p.stem for p in (ROOT / "book").glob("[0-9][0-9]_*.md"))
    labs = sorted(p.stem for p in (ROOT / "labs").glob("[0-9][0-9]_*.ipynb"))
    assert pages == labs, f"pages {pages} and labs {labs} differ"
    listed = []
    for part in toc["parts"]:
        for ch in part["chapters"]:
            name = ch["file"].removeprefix("book/")
            listed.append(name)
            assert [s["file"] for s in ch.get("sections", [])] == [f"labs/{name}"], f"{name}: its lab is not its section"
            assert (ROOT / "assignments" / "source" / f"hw{name[:2]}").is_dir(), f"{name}: no assignment hw{name[:2]}"
            assert f"]({name}.md)" in intro, f"the front page does not link {name}"
        if "(complete)" in part["caption"]:
            assert all((ROOT / "book" / f"{c['file'].removeprefix('book/')}.md").is_file() for c in part["chapters"])
    assert listed == pages, f"_toc.yml lists {listed}, book/ has {pages}"


def test_the_module_map_names_every_module():
    """The map in tdlcourse's docstring and in CONTRIBUTING.md names every student-facing module,
    so a newcomer finds the chapter, lab and tests of a module (and a new module is added to it)."""
    from conftest import ROOT

    contributing = (ROOT / "CONTRIBUTING.md").read_text()
    public = [m for m in STUDENT_MODULES if not m.startswith("_")]
    missing = [m for m in public if f"``{m}``" not in tdlcourse.__doc__]
    assert not missing, f"modules missing from the map in src/tdlcourse/__init__.py: {missing}"
    missing = [m for m in public if f"`{m}`" not in contributing]
    assert not missing, f"modules missing from the map in CONTRIBUTING.md: {missing}"
