"""JupyterHub for the course on one machine: real Linux accounts (PAM), one Formgrader service per
course run as that course's grader account, nbgrader's groups, the idle culler, per-user limits.

Everything that differs between classes is in a site file, JSON, named by TDL_HUB_SITE (default
/etc/tdl-hub/site.json); see site.example.json. One course or several: each entry of "courses"
gets the groups nbgrader-<id> (its students) and formgrade-<id> (its instructors and grader), a
Formgrader at /services/<id>/ that only formgrade-<id> may open, and its own exchange folder.
"""

import json
import os
from pathlib import Path

c = get_config()  # noqa: F821  (provided by JupyterHub when it loads this file)

SITE_FILE = Path(os.environ.get("TDL_HUB_SITE", "/etc/tdl-hub/site.json"))
site = json.loads(SITE_FILE.read_text())
prefix = Path(site.get("prefix", "/opt/tdl-hub"))
state = Path(site.get("state_dir", "/var/lib/tdl-hub"))
exchange = site.get("exchange", "/srv/nbgrader/exchange")
courses = site.get("courses", [])
env_bin = prefix / "env" / "bin"
instructor_config = str(prefix / "instructor" / "etc" / "jupyter")
# TDL_SANDBOX_HELPER: tdl grade's sandbox for the graders, through the sudo rule courses.py writes
base_env = {"TDL_EXCHANGE": exchange, "PATH": f"{env_bin}:/usr/local/bin:/usr/bin:/bin",
            "TDL_SANDBOX_HELPER": str(prefix / "bin" / "tdl-sandbox")}

c.JupyterHub.ip = site.get("ip", "127.0.0.1")
c.JupyterHub.port = int(site.get("port", 8000))
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = int(site.get("hub_port", 8081))
c.JupyterHub.db_url = f"sqlite:///{state / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(state / "jupyterhub_cookie_secret")
c.JupyterHub.pid_file = str(state / "jupyterhub.pid")
c.ConfigurableHTTPProxy.command = [str(prefix / "proxy" / "node_modules" / ".bin" / "configurable-http-proxy")]
c.ConfigurableHTTPProxy.pid_file = str(state / "jupyterhub-proxy.pid")
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{int(site.get('proxy_api_port', 8001))}"

# --- who may log in: PAM accounts that are instructors, graders or (through the groups) students
staff = {u for course in courses for u in (*course.get("instructors", []), course["grader"])}
c.Authenticator.admin_users = set(site.get("admins", []))
c.Authenticator.allowed_users = staff | set(site.get("admins", []))
c.Authenticator.allow_existing_users = True  # students enter through the groups (tdl roster import)
c.JupyterHub.load_groups = {}
for course in courses:
    cid = course["id"]
    c.JupyterHub.load_groups[f"nbgrader-{cid}"] = {"users": list(course.get("students", []))}
    c.JupyterHub.load_groups[f"formgrade-{cid}"] = {"users": [*course.get("instructors", []), course["grader"]]}

# --- single-user servers
systemd = Path("/run/systemd/system").is_dir()
limits = site.get("limits", {})
if systemd:
    c.JupyterHub.spawner_class = "systemdspawner.SystemdSpawner"
    c.SystemdSpawner.mem_limit = limits.get("mem", "2G")
    c.SystemdSpawner.cpu_limit = float(limits.get("cpu", 1.0))
    c.SystemdSpawner.isolate_tmp = True
    c.SystemdSpawner.isolate_devices = True
    c.SystemdSpawner.disable_user_sudo = True
else:
    # No systemd (a container, this project's CI): servers run as the user's own processes, and the
    # memory and CPU limits are NOT enforced. deploy/hub/README.md says how to add them (cgroups).
    c.JupyterHub.spawner_class = "jupyterhub.spawner.LocalProcessSpawner"
c.Spawner.cmd = [str(env_bin / "jupyterhub-singleuser")]
c.Spawner.default_url = "/lab"
c.Spawner.environment = dict(base_env)
c.Spawner.http_timeout = int(site.get("spawn_timeout_s", 120))
c.Spawner.start_timeout = int(site.get("spawn_timeout_s", 120))
# The course list (nbgrader's JupyterHub authenticator) reads the hub's services and the user's own
# groups with the server's token: without list:services / read:services it answers 403.
c.Spawner.server_token_scopes = ["users:activity!user", "access:servers!server", "read:users:groups!user",
                                 "read:users:name!user", "list:services", "read:services"]


def unix_group(course: dict) -> str:
    """The Unix group that may read the course's exchange folder (courses.py creates it)."""
    return course.get("unix_group", f"nbgrader-{course['id']}")


def _sync_unix_groups(name: str, hub_groups: set[str]) -> None:
    """Make the user's membership of each course's Unix group match the hub's groups.

    Enrollment is enforced by the file system: exchange/<id> is 0750, group unix_group(course), so
    only members can fetch, submit or fetch feedback (nbgrader's own check runs in the student's
    server, where the student can bypass it, e.g. with `cp` in a terminal). The hub's groups are
    the roster (`tdl roster import` keeps them in step); this runs as root before every spawn, and
    the server gets the groups /etc/group gives at that moment: a student enrolled (or dropped)
    while their server runs gets (or loses) access when it next starts."""
    import grp
    import subprocess

    if os.geteuid() != 0:
        return  # a hub that is not root cannot start servers as other users either
    for course in courses:
        cid, group = course["id"], unix_group(course)
        want = bool({f"nbgrader-{cid}", f"formgrade-{cid}"} & hub_groups)
        try:
            has = name in grp.getgrnam(group).gr_mem
        except KeyError:
            raise RuntimeError(f"the Unix group {group!r} of course {cid!r} does not exist: run "
                               f"deploy/hub/courses.py {SITE_FILE}") from None
        if want != has:
            subprocess.run(["gpasswd", "-a" if want else "-d", name, group], check=True,
                           capture_output=True, text=True)


def _pre_spawn(spawner):
    """Course access as Unix groups, and the instructor tools for instructors and graders only."""
    groups = {g.name for g in spawner.user.orm_user.groups}
    _sync_unix_groups(spawner.user.name, groups)
    env = dict(base_env)
    if any(g.startswith("formgrade-") for g in groups):
        env["JUPYTER_CONFIG_PATH"] = instructor_config
    spawner.environment = env


c.Spawner.pre_spawn_hook = _pre_spawn

# --- roles: every user may list the services (the course list); formgrade-<id> may open its Formgrader
c.JupyterHub.load_roles = [
    {"name": "user", "scopes": ["self", "list:services", "read:services"]},
    {"name": "tdl-idle-culler", "services": ["idle-culler"],
     "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"]},
]
services = []
for course in courses:
    cid, port = course["id"], int(course["port"])
    services.append({
        "name": cid,
        "url": f"http://127.0.0.1:{port}",
        "user": course["grader"],
        "cwd": course["root"],
        "command": [str(env_bin / "jupyterhub-singleuser"), f"--ServerApp.root_dir={course['root']}",
                    "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}"],
        "environment": {**base_env, "TDL_COURSE_ID": cid, "JUPYTER_CONFIG_PATH": instructor_config,
                        "JUPYTERHUB_DEFAULT_URL": "/lab", "HOME": course.get("home", course["root"]),
                        **({"TDL_GRADEBOOK": course["gradebook"]} if course.get("gradebook") else {})},
        "oauth_no_confirm": True,
        # a fixed token (site file, root only) lets the grader's own `tdl` commands reach the hub API
        **({"api_token": course["api_token"]} if course.get("api_token") else {}),
    })
    c.JupyterHub.load_roles.append({"name": f"formgrade-{cid}", "groups": [f"formgrade-{cid}"],
                                    "scopes": [f"access:services!service={cid}"]})
    # the Formgrader adds and removes students (nbgrader's authenticator keeps nbgrader-<id> in step)
    c.JupyterHub.load_roles.append({"name": f"grader-service-{cid}", "services": [cid],
                                    "scopes": ["read:users", "list:users", "read:groups", "list:groups",
                                               f"groups!group=nbgrader-{cid}", "admin:users"]})
services.append({
    "name": "idle-culler",
    "command": [str(env_bin / "python"), "-m", "jupyterhub_idle_culler",
                f"--timeout={int(site.get('cull_idle_s', 3600))}", "--cull-every=300"],
})
c.JupyterHub.services = services
