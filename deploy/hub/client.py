"""A small client of the class hub, for its tests and its load benchmark (standard library only).

It does over HTTP what a student's browser does: the hub's login form (PAM), the spawn button,
JupyterLab's page (whose OAuth redirects give the browser the server's cookie), then the calls the
Assignment List makes to nbgrader's server extension (`/assignments`, `/assignments/fetch`,
`/assignments/validate`, `/assignments/submit`, `/assignments/fetch_feedback`) and the contents API.
"""

from __future__ import annotations

import http.cookiejar
import json
import time
import urllib.error
import urllib.parse
import urllib.request


class HubError(RuntimeError):
    pass


class Student:
    """One user's browser session on the hub: a cookie jar, redirects followed."""

    def __init__(self, base: str, user: str, password: str, timeout: float = 120):
        self.base, self.user, self.password, self.timeout = base.rstrip("/"), user, password, timeout
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    # --- plumbing
    def request(self, path: str, *, method: str = "GET", data: bytes | None = None,
                headers: dict | None = None) -> tuple[int, str, str]:
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=headers or {})
        try:
            with self.opener.open(req, timeout=self.timeout) as r:
                return r.status, r.geturl(), r.read().decode(errors="replace")
        except urllib.error.HTTPError as e:
            return e.code, e.geturl(), e.read().decode(errors="replace")

    def cookie(self, name: str, path_prefix: str = "/") -> str:
        for c in self.jar:
            if c.name == name and c.path.startswith(path_prefix):
                return c.value
        raise HubError(f"{self.user}: no {name} cookie under {path_prefix}")

    def _server_post(self, path: str, fields: dict) -> tuple[int, str]:
        xsrf = self.cookie("_xsrf", f"/user/{self.user}")
        status, _, body = self.request(f"/user/{self.user}{path}", method="POST",
                                       data=urllib.parse.urlencode(fields).encode(),
                                       headers={"X-XSRFToken": xsrf,
                                                "Content-Type": "application/x-www-form-urlencoded"})
        return status, body

    # --- the hub
    def login(self) -> None:
        status, _, page = self.request("/hub/login")
        if status != 200:
            raise HubError(f"GET /hub/login: {status}")
        fields = {"username": self.user, "password": self.password, "_xsrf": self.cookie("_xsrf", "/hub")}
        status, url, _ = self.request("/hub/login?next=%2Fhub%2Fhome", method="POST",
                                      data=urllib.parse.urlencode(fields).encode())
        if status != 200 or "/hub/home" not in url:
            raise HubError(f"{self.user}: login failed ({status}, {url})")

    def spawn(self, timeout: float = 300) -> float:
        """Start the server as the home page's button does; seconds until JupyterLab answers."""
        t0 = time.monotonic()
        self.request("/hub/spawn")
        while time.monotonic() - t0 < timeout:
            status, url, _ = self.request(f"/user/{self.user}/lab")
            if status == 200 and f"/user/{self.user}/lab" in url:
                return time.monotonic() - t0
            time.sleep(0.5)
        raise HubError(f"{self.user}: the server did not start in {timeout} s")

    # --- nbgrader, as the Assignment List calls it
    def assignments(self, course: str) -> list[dict]:
        status, _, body = self.request(f"/user/{self.user}/assignments?course_id={urllib.parse.quote(course)}")
        if status != 200:
            raise HubError(f"{self.user}: assignment list {status}: {body[:300]}")
        out = json.loads(body)
        if not out.get("success", False):
            raise HubError(f"{self.user}: assignment list failed: {out.get('value')!r}"[:500])
        return out["value"]

    def action(self, action: str, course: str, assignment: str) -> dict:
        """POST /assignments/<action>. nbgrader 0.9 answers fetch and fetch_feedback with the
        course's assignment list whatever became of them ("success" is the list's): whether a fetch
        worked shows in the student's files (``exists``), not here. Submit reports its own failure."""
        status, body = self._server_post(f"/assignments/{action}", {"course_id": course, "assignment_id": assignment})
        if status != 200:
            raise HubError(f"{self.user}: {action} {status}: {body[:300]}")
        return json.loads(body)

    def validate(self, path: str) -> dict:
        status, body = self._server_post("/assignments/validate", {"path": path})
        if status != 200:
            raise HubError(f"{self.user}: validate {status}: {body[:300]}")
        return json.loads(body)

    # --- files, through the contents API
    def exists(self, path: str) -> bool:
        status, _, _ = self.request(f"/user/{self.user}/api/contents/{urllib.parse.quote(path)}?content=0")
        if status not in (200, 404):
            raise HubError(f"{self.user}: contents {path}: {status}")
        return status == 200

    def read_notebook(self, path: str) -> dict:
        status, _, body = self.request(f"/user/{self.user}/api/contents/{urllib.parse.quote(path)}?content=1")
        if status != 200:
            raise HubError(f"{self.user}: read {path}: {status}")
        return json.loads(body)["content"]

    def write_notebook(self, path: str, nb: dict) -> None:
        xsrf = self.cookie("_xsrf", f"/user/{self.user}")
        data = json.dumps({"type": "notebook", "format": "json", "content": nb}).encode()
        status, _, body = self.request(f"/user/{self.user}/api/contents/{urllib.parse.quote(path)}", method="PUT",
                                       data=data, headers={"X-XSRFToken": xsrf, "Content-Type": "application/json"})
        if status not in (200, 201):
            raise HubError(f"{self.user}: write {path}: {status}: {body[:300]}")


def fill_in(nb: dict, answers: dict[str, str], written: str) -> dict:
    """The student's notebook with ``answers`` (grade_id -> source) in its solution cells."""
    for cell in nb["cells"]:
        gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if gid in answers:
            cell["source"] = answers[gid] if cell["cell_type"] == "code" else written
    return nb
