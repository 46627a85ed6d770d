"""The class hub's groups, kept in step with the roster (``tdl roster import``).

nbgrader's ``JupyterHubAuthPlugin`` (``Authenticator.plugin_class``, set by ``deploy/hub``'s
system-wide ``nbgrader_config.py``) shows a student the courses of their hub groups
``nbgrader-<course>``. When the course's configuration uses that plugin, ``tdl roster import``
puts every roster student the hub knows into ``nbgrader-<course>`` through nbgrader's own
``Authenticator.add_student_to_course`` (what ``nbgrader db student add`` and the Formgrader do),
then reads the group back and reports what it holds:

- the hub's API and token are JupyterHub's ``JUPYTERHUB_API_URL`` and ``JUPYTERHUB_API_TOKEN``
  (set in every hub-started server and service: the course's Formgrader service has the scopes
  it needs). With the plugin configured but no token, the import is refused before anything is
  written (``--no-hub`` imports into the gradebook only, and says the groups were not touched);
- a roster id the hub does not know (``GET /users/<id>`` answers 404) is listed and NOT put in
  the group (JupyterHub refuses unknown names), and the command exits 1. tdl does not create hub
  users on its own: a hub user is a login name the hub lets in (``allow_existing_users``), so a
  typo on the roster would become an account. ``--hub-create-users`` creates them
  (``POST /users/<id>``, scope ``admin:users``) when the roster is known to be right; a hub on
  Linux accounts (PAM, deploy/hub) creates a hub user only for an existing Linux account (it
  answers 400 "Failed to create user"), which is reported for that id;
- group members who are not on the roster are kept (as the gradebook keeps its students) and
  listed.

Without the plugin nothing of this runs and ``tdl roster import`` is unchanged.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from urllib.parse import quote

from .course import Course, CourseError, WarningCollector

HUB_PLUGIN = "nbgrader.auth.JupyterHubAuthPlugin"
DEFAULT_API_URL = "http://127.0.0.1:8081/hub/api"  # nbgrader's own default
TIMEOUT_S = 20


def plugin_name(course: Course) -> str:
    """``Authenticator.plugin_class`` of the course's configuration, as a dotted name ('' if unset)."""
    value = course.config.get("Authenticator", {}).get("plugin_class", "")
    if isinstance(value, type):
        return f"{value.__module__}.{value.__qualname__}"
    return str(value or "")


def uses_hub(course: Course) -> bool:
    name = plugin_name(course)
    return name in (HUB_PLUGIN, "nbgrader.auth.jupyterhub.JupyterHubAuthPlugin")


@dataclass(frozen=True)
class HubSync:
    """What ``sync_group`` did to the hub group ``group`` of the hub at ``api_url``."""

    group: str
    api_url: str
    added: tuple[str, ...] = ()          # roster students put in the group now
    already: tuple[str, ...] = ()        # roster students that were members already
    unknown: tuple[str, ...] = ()        # roster ids the hub has no user for (not in the group)
    not_created: tuple[tuple[str, str], ...] = ()  # (id, the hub's reason) --hub-create-users could not create
    created_users: tuple[str, ...] = ()  # hub users created (--hub-create-users)
    not_on_roster: tuple[str, ...] = ()  # members not on the roster (kept)
    failed: tuple[tuple[str, str], ...] = ()  # (id, why) roster students still not members
    group_created: bool = False

    @property
    def complete(self) -> bool:
        return not (self.unknown or self.failed)


class Hub:
    """A small client of the hub's REST API with the token of this server or service."""

    def __init__(self, course: Course):
        self.course = course
        self.api_url = (os.environ.get("JUPYTERHUB_API_URL") or DEFAULT_API_URL).rstrip("/")
        self.token = os.environ.get("JUPYTERHUB_API_TOKEN", "")
        self.group = f"nbgrader-{course.course_id}"
        if not self.token:
            raise CourseError(
                f"the course uses nbgrader's hub groups (Authenticator.plugin_class = {plugin_name(course)}, "
                f"{course.where_configured()}) but JUPYTERHUB_API_TOKEN is not set, so the hub group "
                f"{self.group} cannot be kept in step with the roster. Nothing was imported. Run it in the "
                "course's Formgrader service or a hub-started server (they set JUPYTERHUB_API_TOKEN and "
                "JUPYTERHUB_API_URL), or set both to a token with the scopes list:users, read:users, "
                f"read:groups, groups!group={self.group}; or pass --no-hub to import into the gradebook "
                "only (the hub groups are then left as they are)")

    def request(self, method: str, path: str, body: dict | None = None, ok=(200, 201, 204)):
        """``(status, json or None)``; a hub that cannot be reached is a ``CourseError``."""
        import requests

        try:
            r = requests.request(method, self.api_url + path, json=body, timeout=TIMEOUT_S,
                                 headers={"Authorization": f"token {self.token}"})
        except requests.RequestException as e:
            raise CourseError(f"cannot reach the hub's API at {self.api_url} (JUPYTERHUB_API_URL"
                              f"{'' if os.environ.get('JUPYTERHUB_API_URL') else ' is not set; nbgrader default'}): "
                              f"{str(e).splitlines()[0]}") from None
        try:
            data = r.json() if r.content else None
        except ValueError:
            data = None
        return r.status_code, data

    def _refused(self, what: str, status: int, data) -> CourseError:
        msg = (data or {}).get("message", "") if isinstance(data, dict) else ""
        return CourseError(f"the hub at {self.api_url} refused {what} (HTTP {status}{': ' + msg if msg else ''}). "
                           "The token (JUPYTERHUB_API_TOKEN) needs the scopes list:users, read:users, read:groups "
                           f"and groups!group={self.group} (admin:users for --hub-create-users); the course's "
                           "Formgrader service of deploy/hub has them")

    def whoami(self) -> dict:
        status, data = self.request("GET", "/user")
        if status != 200:
            raise self._refused("the token (GET /user)", status, data)
        return data

    def user_exists(self, name: str) -> bool:
        status, data = self.request("GET", f"/users/{quote(name, safe='')}")
        if status == 404:
            return False
        if status != 200:
            raise self._refused(f"reading user {name!r}", status, data)
        return True

    def members(self) -> set[str] | None:
        """Members of the course's group, ``None`` when the group does not exist."""
        status, data = self.request("GET", f"/groups/{quote(self.group, safe='')}")
        if status == 404:
            return None
        if status != 200:
            raise self._refused(f"reading group {self.group}", status, data)
        return set(data.get("users", []))

    def create_user(self, name: str) -> str | None:
        """Create the hub user ``name``; ``None`` when done, else the hub's reason (a hub on Linux
        accounts, PAM, creates users only for existing accounts: "does not exist on the system")."""
        status, data = self.request("POST", f"/users/{quote(name, safe='')}")
        if status in (200, 201, 409):
            return None
        if status in (401, 403):
            raise self._refused(f"creating user {name!r} (--hub-create-users)", status, data)
        msg = (data or {}).get("message", "") if isinstance(data, dict) else ""
        return (f"the hub did not create it (HTTP {status}{': ' + msg if msg else ''}); a hub of Linux "
                "accounts (PAM) creates hub users only for existing accounts")


def check_hub(course: Course, roster_ids) -> tuple[Hub, tuple[str, ...]]:
    """Before anything is written: the hub answers with this token, and which roster ids it does
    not know. Raises ``CourseError`` (nothing imported) when the token is missing or refused."""
    hub = Hub(course)
    hub.whoami()
    hub.members()  # a token that may not read the group fails here, before the gradebook changes
    unknown = tuple(sid for sid in roster_ids if not hub.user_exists(sid))
    return hub, unknown


def sync_group(course: Course, hub: Hub, roster_ids, unknown, *, create_users: bool = False) -> HubSync:
    """Put every roster student the hub knows into ``nbgrader-<course>`` through nbgrader's
    ``Authenticator.add_student_to_course``, then read the group back (nbgrader's plugin only logs
    its failures: the group's members are the proof)."""
    from nbgrader.auth import Authenticator

    roster_ids = list(roster_ids)
    created, not_created = [], {}
    if create_users:
        for sid in unknown:
            why = hub.create_user(sid)
            if why is None:
                created.append(sid)
            else:
                not_created[sid] = why
        unknown = tuple(sid for sid in unknown if sid in not_created)
    before = hub.members()
    group_created = before is None
    before = before or set()
    todo = [sid for sid in roster_ids if sid not in unknown and sid not in before]

    log = logging.getLogger("tdl.hub")
    log.propagate = False
    collect = WarningCollector()
    log.addHandler(collect)
    saved = {k: os.environ.get(k) for k in ("JUPYTERHUB_API_URL", "JUPYTERHUB_USER")}
    try:
        os.environ["JUPYTERHUB_API_URL"] = hub.api_url
        if not os.environ.get("JUPYTERHUB_USER"):
            # nbgrader's client wants the token's owner (it formats it into paths it does not use here)
            os.environ["JUPYTERHUB_USER"] = hub.whoami().get("name", "")
        auth = Authenticator(config=course.config, log=log)
        for sid in todo:
            auth.add_student_to_course(sid, course.course_id)
    finally:
        log.removeHandler(collect)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    after = hub.members() or set()
    why = "; ".join(collect.messages) or "the hub did not add it"
    failed = tuple((sid, why) for sid in todo if sid not in after)
    added = tuple(sid for sid in todo if sid in after)
    in_roster = set(roster_ids)
    return HubSync(group=hub.group, api_url=hub.api_url, added=added,
                   already=tuple(sid for sid in roster_ids if sid in before), unknown=tuple(unknown),
                   created_users=tuple(created), not_created=tuple(not_created.items()),
                   not_on_roster=tuple(sorted(after - in_roster)),
                   failed=failed, group_created=group_created and bool(after))
