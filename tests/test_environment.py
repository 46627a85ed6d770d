"""The pins: constraints.txt pins every dependency exactly; environment.yml agrees with it; the
project never lets a resolver pick an unpinned torch."""

from __future__ import annotations

import re
import tomllib

import yaml

from conftest import ROOT

PIN = re.compile(r"^([A-Za-z0-9_.\-\[\]]+)==([^\s;#]+)")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name.split("[")[0]).lower()


def constraints() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = PIN.match(line)
        assert m, f"constraints.txt: {line!r} is not an exact pin (name==version)"
        assert _norm(m.group(1)) not in pins, f"constraints.txt pins {m.group(1)} twice"
        pins[_norm(m.group(1))] = m.group(2)
    return pins


def direct_dependencies() -> set[str]:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(meta["dependencies"]) + [r for extra in meta["optional-dependencies"].values() for r in extra]
    return {_norm(re.split(r"[<>=!~ ;\[]", r, maxsplit=1)[0]) for r in reqs}


def test_every_direct_dependency_is_pinned_exactly():
    pins = constraints()
    missing = direct_dependencies() - set(pins)
    assert not missing, f"constraints.txt lacks exact pins for {sorted(missing)}"
    assert pins["torch"] == "2.13.0"
    assert pins["jupyter-book"].startswith("1."), "the book needs Jupyter Book 1.x (2.x cannot build offline)"


def test_pyproject_pins_torch_itself():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "torch==2.13.0" in meta["dependencies"]
    assert not any(_norm(r).startswith("torchvision") for r in meta["dependencies"])


def test_environment_yml_agrees_with_constraints():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    deps = env["dependencies"]
    assert "python=3.11" in deps
    pip = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    pins = constraints()
    env_pins = {}
    for line in pip:
        if line.startswith("-e"):
            continue
        m = PIN.match(line)
        assert m, f"environment.yml: {line!r} is not an exact pin"
        env_pins[_norm(m.group(1))] = m.group(2)
    for name, version in env_pins.items():
        assert pins.get(name) == version, f"environment.yml pins {name}=={version}, constraints.txt {pins.get(name)}"
    missing = direct_dependencies() - set(env_pins)
    assert not missing, f"environment.yml lacks {sorted(missing)}"


def test_installed_versions_match_the_pins():
    from importlib.metadata import PackageNotFoundError, version

    pins = constraints()
    wrong = []
    for name in sorted(direct_dependencies()):
        try:
            got = version(name).split("+")[0]
        except PackageNotFoundError:
            wrong.append(f"{name} not installed")
            continue
        if got != pins[name]:
            wrong.append(f"{name} {got} (pinned {pins[name]})")
    assert not wrong, "the environment drifted from constraints.txt: " + ", ".join(wrong)
