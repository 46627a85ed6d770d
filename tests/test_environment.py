"""The pins: constraints.txt pins every dependency exactly; environment.yml agrees with it; the
project never lets a resolver pick an unpinned torch; the pins install on every Python 3.11 of the
machine (a pip dry run against the package index, as a user without this machine's pip configuration
would run it); ``make`` checks requires-python before it creates anything and passes TORCH_INDEX to
the torch install only."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from conftest import IN_CI, ROOT

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
    assert "-c constraints.txt" in pip, "environment.yml must install with constraints.txt (the transitive pins)"
    for line in pip:
        if line.startswith(("-e", "-c")):
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



# --- the floor: requires-python, and make's check of it -------------------------------------------

def requires_python() -> str:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]


def floor() -> str:
    """The lower bound of requires-python (``>=3.11`` -> ``3.11``)."""
    m = re.fullmatch(r"\s*>=\s*([0-9]+(?:\.[0-9]+)*)\s*(?:,.*)?", requires_python())
    assert m, f"requires-python {requires_python()!r} must start with a floor >=X.Y"
    return m.group(1)


def make_check_source() -> str:
    m = re.search(r"^define TDL_CHECK_PYTHON\n(.*?)\nendef$", (ROOT / "Makefile").read_text(), re.S | re.M)
    assert m, "the Makefile lost its TDL_CHECK_PYTHON check (requires-python, before .venv is created)"
    return m.group(1)


def test_claims_agree_on_the_floor():
    low = floor()
    assert low.startswith("3.11"), "the pins are for Python 3.11 (torch, numpy wheels); see constraints.txt"
    readme = (ROOT / "README.md").read_text()
    assert f"Python {low}" in readme or f"Python >= {low}" in readme, f"README.md must name the floor {low}"
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert f"python={'.'.join(low.split('.')[:2])}" in env["dependencies"]


def test_make_checks_requires_python_before_creating_the_venv(tmp_path):
    """The Makefile's check (plain Python, any 3.x) accepts this interpreter and refuses one below a
    higher floor with a message that names requires-python."""
    code = make_check_source()
    (tmp_path / "pyproject.toml").write_text(f'requires-python = "{requires_python()}"\n')
    ok = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    above = f"{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro + 1}"
    for spec in (f">={above}", f">=3.11,<{sys.version_info.major}.{sys.version_info.minor}"):
        (tmp_path / "pyproject.toml").write_text(f'requires-python = "{spec}"\n')
        bad = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
        assert bad.returncode != 0 and "requires-python" in bad.stderr and spec in bad.stderr, bad.stderr
    stamp_rule = (ROOT / "Makefile").read_text().split("$(STAMP): pyproject.toml constraints.txt\n", 1)[1]
    lines = [ln.strip() for ln in stamp_rule.split("\n\n", 1)[0].splitlines()]
    check = next(i for i, ln in enumerate(lines) if 'TDL_CHECK_PYTHON' in ln and "$(PYTHON)" in ln)
    create = next(i for i, ln in enumerate(lines) if "-m venv" in ln)
    assert check < create, "make must check requires-python before it creates .venv"


@pytest.mark.skipif(shutil.which("make") is None, reason="no make on PATH")
def test_make_passes_torch_index_to_the_torch_install_only(tmp_path):
    index = "https://download.pytorch.org/whl/cpu"
    venv = tmp_path / "venv"  # absent, so `make -n` lists the whole rule; -n runs nothing
    def dry(*args):
        r = subprocess.run(["make", "-n", "env", f"VENV={venv}", f"PYTHON={sys.executable}", *args],
                           cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        return [ln for ln in r.stdout.splitlines() if " -m pip install" in ln]
    installs = dry(f"TORCH_INDEX={index}")
    torch_line = next(ln for ln in installs if '"torch==2.13.0"' in ln)
    assert f'--index-url "{index}"' in torch_line and "--no-deps" in torch_line, torch_line
    assert all(index not in ln for ln in installs if ln is not torch_line), installs
    assert all("index-url" not in ln for ln in dry()), "without TORCH_INDEX pip's own index is used"


# --- the pins resolve on every Python 3.11 of the machine (slow: asks the package index) -----------

# Interpreters to resolve for: Debian's own (the stock system Python of the machine) and the default
# python3.11 on PATH. A missing one is skipped; the same interpreter reached twice is resolved once.
INTERPRETERS = {"system": "/usr/bin/python3.11", "default": shutil.which("python3.11") or sys.executable}
# pip settings kept from the caller: which index to use and how to reach it. Everything else (the
# machine's pip.conf files, PIP_FIND_LINKS, PIP_EXTRA_INDEX_URL, PIP_CONSTRAINT...) is dropped, so
# that local wheel folders of root's configuration cannot make an unavailable pin look available.
KEEP_PIP = {"PIP_INDEX_URL", "PIP_CERT", "PIP_CLIENT_CERT", "PIP_PROXY", "PIP_TRUSTED_HOST",
            "PIP_DEFAULT_TIMEOUT", "PIP_RETRIES"}
NETWORK_ERRORS = ("NewConnectionError", "Failed to establish a new connection", "Network is unreachable",
                  "Temporary failure in name resolution", "Max retries exceeded", "No route to host")


def _interpreter(path: str) -> tuple[str, str]:
    """(sys.executable resolved, full version) of the interpreter at ``path``."""
    out = subprocess.run([path, "-c", "import os, platform, sys; "
                          "print(os.path.realpath(sys.executable)); print(platform.python_version())"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    exe, version = out.stdout.split()
    return exe, version


def _pip_messages(output: str) -> list[str]:
    """pip's output without its progress lines (each backtracking step downloads another wheel)."""
    noise = re.compile(r"\s*(Collecting|Downloading|Using cached|Obtaining|Installing build|Checking if|"
                       r"Getting requirements|Preparing|Requirement already|Would install|\u2501|$)")
    return [ln for ln in output.splitlines() if not noise.match(ln)]


def pip_env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_") or k in KEEP_PIP}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    env.setdefault("PIP_DEFAULT_TIMEOUT", "60")
    return env


@pytest.mark.slow
@pytest.mark.parametrize("which", sorted(INTERPRETERS))
def test_the_pins_resolve_on_each_python_3_11(which, tmp_path):
    """``pip install --dry-run --ignore-installed -c constraints.txt -e .[course,dev]`` for the
    interpreter (this venv's pip, run with ``--python``, as ``make`` upgrades pip first), without the
    machine's pip configuration; with TORCH_INDEX set, torch may come from that index as in ``make``.
    Then: every pinned package resolves at its pin, and every resolved package admits both this
    interpreter and the floor of requires-python (so the floor is true)."""
    from packaging.specifiers import SpecifierSet
    from packaging.version import Version

    path = INTERPRETERS[which]
    if not Path(path).exists() and not shutil.which(path):
        pytest.skip(f"{path} is not on this machine")
    exe, version = _interpreter(path)
    if not version.startswith("3.11."):
        pytest.skip(f"{path} is Python {version}, not a 3.11")
    if which == "default" and Path("/usr/bin/python3.11").exists() and _interpreter("/usr/bin/python3.11")[0] == exe:
        pytest.skip("the default python3.11 is /usr/bin/python3.11, resolved by the 'system' case")
    report = tmp_path / "report.json"
    cmd = [sys.executable, "-m", "pip", "--python", exe, "install", "--dry-run", "--ignore-installed",
           "--report", str(report), "-c", str(ROOT / "constraints.txt"), "-e", f"{ROOT}[course,dev]"]
    if os.environ.get("TORCH_INDEX"):
        cmd[cmd.index("--dry-run"):cmd.index("--dry-run")] = ["--extra-index-url", os.environ["TORCH_INDEX"]]
    r = subprocess.run(cmd, cwd=tmp_path, env=pip_env(), capture_output=True, text=True, timeout=900)
    if r.returncode != 0 and any(e in r.stderr for e in NETWORK_ERRORS):
        reason = f"the package index is unreachable from here:\n{r.stderr[-1500:]}"
        if IN_CI:
            pytest.fail(reason + "\n(an unreachable index is a failure under CI=true)")
        pytest.skip(reason)
    assert r.returncode == 0, (
        f"the pins do not install on {exe} (Python {version}). A pin whose Requires-Python excludes this "
        "Python shows up as ResolutionImpossible or resolution-too-deep; read the Requires-Python of the "
        "packages named below (`pip download --no-deps PKG==VERSION`, then the wheel's METADATA):\n"
        + "\n".join(_pip_messages(r.stdout + "\n" + r.stderr)[-60:]))

    resolved = json.loads(report.read_text())
    assert resolved["environment"]["python_full_version"] == version
    pins = constraints()
    low = Version(floor())
    wrong, excludes = [], []
    for item in resolved["install"]:
        meta = item["metadata"]
        name, got = _norm(meta["name"]), meta["version"]
        if name in pins and got.split("+")[0] != pins[name]:
            wrong.append(f"{name} {got} (pinned {pins[name]})")
        spec = SpecifierSet(meta.get("requires_python") or "")
        for v in {version, str(low)}:
            if not spec.contains(v, prereleases=True):
                excludes.append(f"{name}=={got} has Requires-Python {spec}, excluding {v}")
    assert not wrong, "resolved off the pins: " + ", ".join(wrong)
    assert not excludes, ("requires-python (pyproject.toml) claims what a pin does not install on; pin a "
                          "version that does, or raise the floor:\n" + "\n".join(sorted(excludes)))
    missing = direct_dependencies() - {_norm(i["metadata"]["name"]) for i in resolved["install"]}
    assert not missing, f"not resolved: {sorted(missing)}"


def test_xdist_groups_keep_their_tests_on_one_worker(tmp_path):
    """`make test` runs `-n 2 --dist loadgroup`: tests that share a costly module fixture or the
    machine's accounts (the hub, the book, JupyterLab) are kept on one worker by `xdist_group`.
    pytest-xdist 3.8.0 ignores the marks under pytest 9 (it renames a node id pytest 9 no longer
    reads), hence the pin; this fails if a bump breaks it again."""
    (tmp_path / "test_grouped.py").write_text(
        "import os, pytest\n"
        "@pytest.mark.xdist_group('g')\n"
        "@pytest.mark.parametrize('i', range(8))\n"
        "def test_g(i):\n"
        "    open(os.path.join(os.path.dirname(__file__), f'w{i}'), 'w').write(os.environ['PYTEST_XDIST_WORKER'])\n"
        "@pytest.mark.parametrize('i', range(8))\n"
        "def test_free(i):\n"
        "    pass\n")
    r = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-n", "2", "--dist", "loadgroup",
                        "-c", os.devnull, "--rootdir", str(tmp_path), str(tmp_path / "test_grouped.py")],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    workers = {(tmp_path / f"w{i}").read_text() for i in range(8)}
    assert len(workers) == 1, f"the group's tests ran on workers {sorted(workers)}"
