"""The Kubernetes (Zero to JupyterHub) files of deploy/k8s, linted: no cluster, no helm, no docker here.

These tests parse every file and check the values that matter (the image matches the pins, the exchange
is ReadWriteMany, per-user uids, the GPU profile, PostgreSQL, the grading Job's isolation and its
NetworkPolicies), run hub.extraConfig against a stand-in JupyterHub config and compare it with the
one-machine deploy/hub/jupyterhub_config.py, and run the image's entrypoint script. They do NOT show that
the chart installs, the image builds or anything runs on a cluster (deploy/k8s/README.md says so).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest
import yaml
from traitlets.config import Config
from traitlets.config.loader import LazyConfigValue

REPO = Path(__file__).resolve().parents[1]
K8S = REPO / "deploy" / "k8s"
FILES = ("values.yaml", "course.yaml", "grade-job.yaml")


def _pin(name: str) -> str:
    m = re.search(rf"^{re.escape(name)}==(\S+)", (REPO / "constraints.txt").read_text(), re.M)
    assert m, f"{name} is not pinned in constraints.txt"
    return m.group(1)


def _version() -> str:
    return re.search(r'^version\s*=\s*"([^"]+)"', (REPO / "pyproject.toml").read_text(), re.M).group(1)


def _docs(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((K8S / name).read_text()) if d is not None]


def _manifests() -> list[dict]:
    return [d for name in ("course.yaml", "grade-job.yaml") for d in _docs(name)]


def _one(kind: str, name: str, docs=None) -> dict:
    found = [d for d in (docs or _manifests()) if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def _values() -> dict:
    (values,) = _docs("values.yaml")
    return values


def _uids() -> dict[str, int]:
    return json.loads(_one("ConfigMap", "tdl-uids")["data"]["uids.json"])


def _job() -> dict:
    return _one("Job", "tdl-grade-__ASSIGNMENT__")


def _pod_specs():
    for d in _manifests():
        if d["kind"] in ("Job", "Deployment"):
            yield d["metadata"]["name"], d["spec"]["template"]["spec"]


# --- every file parses, every manifest is complete ------------------------------------------------

@pytest.mark.parametrize("name", FILES)
def test_yaml_parses(name):
    docs = _docs(name)
    assert docs, f"{name} is empty"
    if name != "values.yaml":
        for d in docs:
            assert {"apiVersion", "kind", "metadata"} <= set(d), d
            assert d["metadata"].get("name"), d


def test_every_configmap_json_parses():
    for d in _manifests():
        if d["kind"] == "ConfigMap":
            for key, text in d["data"].items():
                if key.endswith(".json"):
                    json.loads(text)


# --- the image --------------------------------------------------------------------------------------

def _images() -> list[str]:
    v = _values()["singleuser"]
    out = [f"{v['image']['name']}:{v['image']['tag']}"]
    out += [p["kubespawner_override"]["image"] for p in v["profileList"] if "image" in p.get("kubespawner_override", {})]
    out += [c["image"] for _, spec in _pod_specs() for c in spec["containers"]]
    return out


def test_image_tags_match_the_pins():
    torch = _pin("torch")
    assert torch == "2.13.0"
    name = _values()["singleuser"]["image"]["name"]
    assert _values()["singleuser"]["image"]["tag"] == f"{_version()}-torch{torch}-cpu"
    for image in _images():
        repo, tag = image.rsplit(":", 1)
        assert repo == name, image
        assert re.fullmatch(rf"{re.escape(_version())}-torch{re.escape(torch)}-(cpu|cuda)", tag), image


def test_dockerfile_installs_from_the_pins():
    text = (K8S / "Dockerfile").read_text()
    runs = " ".join(text.replace("\\\n", " ").splitlines())
    torch_install = re.search(r"pip install[^&]*-c \S*constraints\.txt[^&]*\"torch==([0-9.]+)\"", runs)
    assert torch_install and torch_install.group(1) == _pin("torch") == "2.13.0"
    project = re.search(r"pip install[^&]*-c \S*constraints\.txt[^&]*-r \S*deploy/hub/requirements-hub\.txt[^&]*\[course,postgres\]", runs)
    assert project, "the project and the hub's pins are installed with -c constraints.txt"
    assert "nbgitpuller==" in (REPO / "deploy/hub/requirements-hub.txt").read_text()
    # CPU torch by default; the CUDA build through the build argument
    assert re.search(r"^ARG TORCH_INDEX=https://download\.pytorch\.org/whl/cpu$", text, re.M)
    assert '${TORCH_INDEX:+--no-deps --index-url "$TORCH_INDEX"}' in text
    # a Debian python:3.11 base pinned by an exact tag (or a digest)
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.M).group(1)
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", base), base
    assert re.search(r"^FROM \$\{PYTHON_IMAGE\}$", text, re.M)
    # uid 1000 jovyan, as z2jh expects, and it is the user the image runs as
    assert "useradd --uid 1000 --gid 100" in text and "jovyan" in text
    assert re.findall(r"^USER (\S+)$", text, re.M)[-1] == "1000:100"
    assert "deploy/hub/nbgrader_config.py /opt/tdl/env/etc/jupyter/nbgrader_config.py" in text


def _copied() -> list[str]:
    out = []
    for line in (K8S / "Dockerfile").read_text().splitlines():
        m = re.match(r"COPY (?:--chmod=\S+ )?(?!<<)(.+) (\S+)$", line)
        if m:
            out += m.group(1).split()
    return out


def test_dockerfile_copies_only_what_exists_and_the_context_lets_through():
    ignore = [line for line in (K8S / "Dockerfile.dockerignore").read_text().splitlines()
              if line and not line.startswith("#")]
    assert ignore[0] == "*", "the context starts from nothing"
    allowed = {line[1:] for line in ignore if line.startswith("!")}
    assert _copied()
    for src in _copied():
        assert (REPO / src).exists(), f"Dockerfile copies {src}, which is not in the repository"
        assert any(src == a or src.startswith(a + "/") for a in allowed), f"{src} is not in Dockerfile.dockerignore"


def test_the_image_holds_no_solutions():
    """Every student's server runs this image: no assignment source (solutions, hidden tests) in it."""
    for src in _copied():
        assert not (src == "assignments" or src.startswith("assignments/source")), src
    assert not any(a.startswith("assignments/source") or a == "assignments" for a in
                   (line[1:] for line in (K8S / "Dockerfile.dockerignore").read_text().splitlines() if line.startswith("!")))


def _heredocs(text: str, pattern: str) -> dict[str, dict]:
    return {m.group(1): json.loads(m.group(2)) for m in re.finditer(pattern, text, re.S)}


def test_dockerfile_jupyter_config_is_setup_sh_s():
    """The image's student/instructor Jupyter configuration is the one deploy/hub/setup.sh writes."""
    docker = _heredocs((K8S / "Dockerfile").read_text(), r"COPY <<'JSON' /opt/tdl/(\S+)\n(.*?)\nJSON\n")
    setup = {}
    for m in re.finditer(r'cat > "\$(\w+)/(\S+)" <<\'JSON\'\n(.*?)\nJSON\n', (REPO / "deploy/hub/setup.sh").read_text(), re.S):
        base = {"etc": "env/etc/jupyter", "inst": "instructor/etc/jupyter", "env_dir": "env"}[m.group(1)]
        setup[f"{base}/{m.group(2)}"] = json.loads(m.group(3))
    assert len(setup) == 5 and docker == setup


def test_entrypoint_names_the_uids(tmp_path):
    script = K8S / "entrypoint.sh"
    assert subprocess.run(["sh", "-n", str(script)]).returncode == 0
    uids = tmp_path / "uids.json"
    uids.write_text(json.dumps(_uids()))
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "TMPDIR": str(tmp_path), "TDL_UIDS": str(uids),
           "JUPYTERHUB_USER": "student-z"}
    out = subprocess.run(["sh", str(script), "sh", "-c", 'cat "$NSS_WRAPPER_PASSWD"; echo "LD_PRELOAD=$LD_PRELOAD"'],
                         env=env, capture_output=True, text=True, check=True).stdout
    lines = {line.split(":")[0]: line.split(":") for line in out.splitlines() if ":" in line}
    for name, uid in _uids().items():
        assert lines[name][2] == str(uid) and lines[name][3] == "100", lines.get(name)
    me = [fields for fields in lines.values() if fields[2] == str(os.getuid())]
    assert me, "the running uid has a name"
    assert "LD_PRELOAD=libnss_wrapper.so" in out


# --- values.yaml: storage, uids, profiles, PostgreSQL, limits, culler -------------------------------

def test_exchange_is_read_write_many_and_mounted_in_every_user_pod():
    for claim in ("tdl-exchange", "tdl-courses"):
        assert _one("PersistentVolumeClaim", claim)["spec"]["accessModes"] == ["ReadWriteMany"]
    s = _values()["singleuser"]
    exchange = _values()["custom"]["tdl"]["exchange"]
    (vol,) = [v for v in s["storage"]["extraVolumes"] if v["name"] == "tdl-exchange"]
    assert vol["persistentVolumeClaim"]["claimName"] == "tdl-exchange"
    (mount,) = [m for m in s["storage"]["extraVolumeMounts"] if m["name"] == "tdl-exchange"]
    assert mount["mountPath"] == exchange == s["extraEnv"]["TDL_EXCHANGE"]
    # students never mount the course roots (hidden tests, the gradebook)
    assert not any(v.get("persistentVolumeClaim", {}).get("claimName") == "tdl-courses" for v in s["storage"]["extraVolumes"])


def test_uid_strategy_is_per_user():
    tdl = _values()["custom"]["tdl"]
    hub = _values()["hub"]
    (vol,) = [v for v in hub["extraVolumes"] if v.get("configMap", {}).get("name") == "tdl-uids"]
    (mount,) = [m for m in hub["extraVolumeMounts"] if m["name"] == vol["name"]]
    assert str(Path(tdl["uidFile"]).parent) == mount["mountPath"]
    uids = _uids()
    assert len(set(uids.values())) == len(uids) and min(uids.values()) >= tdl["uidMin"] > 1000
    grader = {c["id"]: c["grader"] for c in tdl["courses"]}["tdl"]
    for name, spec in _pod_specs():
        if name != "tdl-course-folders":
            assert spec["securityContext"]["runAsUser"] == uids[grader], name
            assert spec["securityContext"]["runAsGroup"] == tdl["gid"], name


def test_gpu_profile_beside_the_cpu_one():
    from tdlcourse import device

    profiles = {p["slug"]: p for p in _values()["singleuser"]["profileList"]}
    assert set(profiles) == {"cpu", "gpu"} <= set(device.SCALES)
    assert profiles["cpu"].get("default") is True
    gpu = profiles["gpu"]["kubespawner_override"]
    assert gpu["extra_resource_limits"] == {"nvidia.com/gpu": "1"}
    assert gpu["image"].endswith("-cuda")
    # a profile's environment would replace the per-user one set in extraConfig
    assert all("environment" not in p.get("kubespawner_override", {}) for p in profiles.values())


def test_postgresql_for_the_hub_and_the_gradebook():
    db = _values()["hub"]["db"]
    assert db["type"] == "postgres" and db["url"].startswith("postgresql")
    assert "@" in db["url"] and ":" not in db["url"].split("://", 1)[1].split("@")[0], "no password in the URL"
    assert _values()["hub"]["extraEnv"]["PGPASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "tdl-postgres"
    for name, spec in _pod_specs():
        env = {e["name"]: e for e in spec["containers"][0].get("env", [])}
        if name != "tdl-course-folders":
            assert env["TDL_GRADEBOOK"]["valueFrom"]["secretKeyRef"] == {"name": "tdl-postgres", "key": "gradebook-url"}


def test_limits_and_culler():
    s = _values()["singleuser"]
    assert s["memory"]["limit"] and s["cpu"]["limit"] > 0
    cull = _values()["cull"]
    assert cull["enabled"] is True and cull["timeout"] == 3600


# --- hub.extraConfig: compiles, and does what deploy/hub/jupyterhub_config.py does -------------------

def _extra_config() -> dict[str, str]:
    return _values()["hub"]["extraConfig"]


def test_extra_config_compiles():
    for name, code in _extra_config().items():
        compile(code, f"values.yaml:hub.extraConfig.{name}", "exec")


def _run_extra_config(monkeypatch, tmp_path, uids: dict | None = None):
    custom = json.loads(json.dumps(_values()["custom"]))
    uid_file = tmp_path / "uids.json"
    uid_file.write_text(json.dumps(_uids() if uids is None else uids))
    custom["tdl"]["uidFile"] = str(uid_file)

    def get_config(key, default=None):
        node = {"custom": custom}
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return node

    monkeypatch.setitem(sys.modules, "z2jh", types.SimpleNamespace(get_config=get_config))
    for course in custom["tdl"]["courses"]:
        monkeypatch.setenv(course["tokenEnv"], "token-" + course["id"])
    c = Config()
    # what the chart itself sets before extraConfig
    c.KubeSpawner.environment = dict(_values()["singleuser"]["extraEnv"])
    c.JupyterHub.services = []
    ns = {"c": c}
    for name, code in _extra_config().items():
        exec(compile(code, f"values.yaml:hub.extraConfig.{name}", "exec"), ns)
    return c


def _spawner(name, groups=(), profile="cpu"):
    user = types.SimpleNamespace(name=name, orm_user=types.SimpleNamespace(groups=[types.SimpleNamespace(name=g) for g in groups]))
    return types.SimpleNamespace(user=user, user_options={"profile": profile})


def test_extra_config_gives_each_user_their_uid(monkeypatch, tmp_path):
    c = _run_extra_config(monkeypatch, tmp_path)
    uid = c.KubeSpawner.uid
    assert callable(uid)
    assert uid(_spawner("student-a")) == _uids()["student-a"]
    assert uid(_spawner("student-b")) != uid(_spawner("student-a"))
    with pytest.raises(ValueError, match="'nobody-here' has no uid"):
        uid(_spawner("nobody-here"))


@pytest.mark.parametrize("bad, match", [({"a": 30001, "b": 30001}, "same uid"), ({"a": 1000}, "reserved")])
def test_extra_config_refuses_a_bad_uid_map(monkeypatch, tmp_path, bad, match):
    c = _run_extra_config(monkeypatch, tmp_path, uids=bad)
    with pytest.raises(ValueError, match=match):
        c.KubeSpawner.uid(_spawner("a"))


def test_extra_config_environment(monkeypatch, tmp_path):
    env = _run_extra_config(monkeypatch, tmp_path).KubeSpawner.environment
    student, staff = _spawner("student-a", ["nbgrader-tdl"], "gpu"), _spawner("instructor1", ["formgrade-tdl"])
    assert env["TDL_SCALE"](student) == "gpu" and env["TDL_SCALE"](staff) == "cpu"
    assert env["JUPYTER_CONFIG_PATH"](student) == ""
    assert env["JUPYTER_CONFIG_PATH"](staff) == "/opt/tdl/instructor/etc/jupyter"
    assert env["TDL_USER"](student) == "student-a"
    assert env["TDL_EXCHANGE"] == _values()["custom"]["tdl"]["exchange"]


def _resolved(value, initial):
    """A config value as the trait will hold it (.update/.extend on an unset trait stay lazy)."""
    return value.get_value(initial) if isinstance(value, LazyConfigValue) else value


def _one_machine(monkeypatch, tmp_path) -> Config:
    """deploy/hub/jupyterhub_config.py run on a site with the same courses."""
    tdl = _values()["custom"]["tdl"]
    site = {"admins": tdl["admins"], "state_dir": str(tmp_path), "courses": [
        {"id": c["id"], "root": f"/srv/nbgrader/courses/{c['id']}", "grader": c["grader"], "port": 9001 + i,
         "instructors": c["instructors"], "students": c["students"]} for i, c in enumerate(tdl["courses"])]}
    (tmp_path / "site.json").write_text(json.dumps(site))
    monkeypatch.setenv("TDL_HUB_SITE", str(tmp_path / "site.json"))
    c = Config()
    path = REPO / "deploy/hub/jupyterhub_config.py"
    exec(compile(path.read_text(), str(path), "exec"), {"get_config": lambda: c})
    return c


def test_extra_config_matches_the_one_machine_hub(monkeypatch, tmp_path):
    k8s = _run_extra_config(monkeypatch, tmp_path)
    one = _one_machine(monkeypatch, tmp_path)
    assert k8s.Spawner.server_token_scopes == one.Spawner.server_token_scopes
    assert "list:services" in k8s.Spawner.server_token_scopes and "read:services" in k8s.Spawner.server_token_scopes
    assert _resolved(k8s.JupyterHub.load_groups, {}) == one.JupyterHub.load_groups
    roles = {r["name"]: r for r in one.JupyterHub.load_roles if r["name"] != "tdl-idle-culler"}  # the chart's culler
    assert {r["name"]: r for r in _resolved(k8s.JupyterHub.load_roles, [])} == roles
    assert k8s.Authenticator.allowed_users == one.Authenticator.allowed_users
    assert k8s.Authenticator.admin_users == one.Authenticator.admin_users
    k8s_services = {s["name"]: s for s in k8s.JupyterHub.services}
    one_services = {s["name"] for s in one.JupyterHub.services} - {"idle-culler"}
    assert set(k8s_services) == one_services
    for cid, service in k8s_services.items():
        assert service["api_token"] == f"token-{cid}" and service["oauth_no_confirm"] is True
        # the Formgrader Deployment of course.yaml answers there
        host, port = re.fullmatch(r"http://([^:/]+):(\d+)", service["url"]).groups()
        svc = _one("Service", host)
        assert int(port) in [p["port"] for p in svc["spec"]["ports"]]
        env = {e["name"]: e.get("value") for e in _one("Deployment", host)["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["JUPYTERHUB_SERVICE_PREFIX"] == f"/services/{cid}/"
        assert env["JUPYTERHUB_CLIENT_ID"] == service["oauth_client_id"]
        assert env["JUPYTERHUB_OAUTH_CALLBACK_URL"] == service["oauth_redirect_uri"]


# --- the grading Job: pod isolation -----------------------------------------------------------------

def test_grade_job_is_isolated():
    job = _job()
    spec = job["spec"]
    assert 0 < spec["activeDeadlineSeconds"] <= 24 * 3600
    assert spec["backoffLimit"] == 0
    pod = spec["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False and pod["enableServiceLinks"] is False
    assert not any(pod.get(k) for k in ("hostNetwork", "hostPID", "hostIPC"))
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    (box,) = pod["containers"]
    sc = box["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False and sc["runAsNonRoot"] is True
    assert sc["capabilities"]["drop"] == ["ALL"] and "add" not in sc["capabilities"]
    assert not sc.get("privileged")
    limits = box["resources"]["limits"]
    assert limits["cpu"] and limits["memory"] and limits["ephemeral-storage"]
    # the writable places: the course root, and an emptyDir /tmp (HOME, TMPDIR); the exchange read-only
    mounts = {m["mountPath"]: m for m in box["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert mounts["/srv/nbgrader/exchange"]["readOnly"] is True
    assert volumes[mounts["/srv/nbgrader/exchange"]["name"]]["persistentVolumeClaim"]["claimName"] == "tdl-exchange"
    assert volumes[mounts["/srv/nbgrader/courses/tdl"]["name"]]["persistentVolumeClaim"]["claimName"] == "tdl-courses"
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]
    env = {e["name"]: e.get("value") for e in box["env"]}
    assert env["HOME"].startswith("/tmp/") and env["TMPDIR"] == "/tmp"


def test_grade_job_runs_tdl_grade():
    from tdlcourse.grading.cli import parser

    args = [a.replace("__ASSIGNMENT__", "hw01") for a in _job()["spec"]["template"]["spec"]["containers"][0]["args"]]
    assert args[0] == "tdl"
    ns = parser().parse_args(args[1:])
    assert ns.command == "grade" and ns.assignment == "hw01" and ns.course == "/srv/nbgrader/courses/tdl"
    assert ns.timeout * 1 <= _job()["spec"]["activeDeadlineSeconds"]


def _selects(policy: dict, labels: dict) -> bool:
    want = policy["spec"]["podSelector"].get("matchLabels", {})
    return all(labels.get(k) == v for k, v in want.items())


def test_network_policies_deny_the_grade_job_egress():
    labels = _job()["spec"]["template"]["metadata"]["labels"]
    policies = [d for d in _docs("grade-job.yaml") if d["kind"] == "NetworkPolicy"]
    mine = [p for p in policies if _selects(p, labels)]
    deny = _one("NetworkPolicy", "tdl-grade-deny-all", policies)
    assert deny in mine
    assert set(deny["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    assert deny["spec"]["egress"] == [] and deny["spec"]["ingress"] == []
    # every other rule that applies opens only the gradebook (PostgreSQL) and the cluster DNS
    allowed = set()
    for p in mine:
        assert not p["spec"].get("ingress"), p["metadata"]["name"]
        for rule in p["spec"].get("egress", []):
            assert rule.get("to") and rule.get("ports"), f"{p['metadata']['name']}: a rule open to everything"
            for peer in rule["to"]:
                assert "ipBlock" not in peer, p["metadata"]["name"]
                assert peer.get("podSelector", {}).get("matchLabels"), p["metadata"]["name"]
                allowed |= {(json.dumps(peer, sort_keys=True), port["port"]) for port in rule["ports"]}
    assert {port for _, port in allowed} <= {5432, 53}
    for peer, port in allowed:
        sel = json.loads(peer)["podSelector"]["matchLabels"]
        assert sel == ({"app.kubernetes.io/name": "postgresql"} if port == 5432 else {"k8s-app": "kube-dns"}), peer


@pytest.mark.skipif(os.geteuid() != 0 or not Path("/usr/bin/setpriv").exists(),
                    reason="needs root and setpriv to run the entrypoint as a uid that /etc/passwd lacks")
def test_entrypoint_names_an_unknown_uid():
    import shutil
    import tempfile

    work = Path(tempfile.mkdtemp(prefix="tdl-k8s-entry-", dir="/tmp"))
    try:
        work.chmod(0o777)
        script = work / "entrypoint.sh"
        shutil.copy(K8S / "entrypoint.sh", script)
        script.chmod(0o755)
        uid = 54321
        assert subprocess.run(["getent", "passwd", str(uid)], capture_output=True).returncode != 0
        env = {"PATH": "/usr/bin:/bin", "TMPDIR": str(work), "JUPYTERHUB_USER": "student-z", "HOME": "/home/jovyan"}
        out = subprocess.run(["setpriv", f"--reuid={uid}", "--regid=100", "--clear-groups", "sh", str(script),
                              "sh", "-c", 'grep "^student-z:" "$NSS_WRAPPER_PASSWD"'],
                             env=env, capture_output=True, text=True, check=True).stdout
        assert out.strip() == f"student-z:x:{uid}:100:student-z:/home/jovyan:/bin/bash"
    finally:
        shutil.rmtree(work, ignore_errors=True)
