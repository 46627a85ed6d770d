"""Load on the class hub (deploy/hub): N students at once log in, spawn, fetch, fill in, submit, and
later fetch their feedback, on this machine (2 cores here). Root only: it starts `demo.sh` with N
throwaway accounts and removes them afterwards.

    sudo .venv/bin/python benchmarks/hub.py [--students 30] [--concurrency 30] [--out benchmarks/hub.md]

Printed (figures, not assertions; the machine is shared, so the load average is printed too):
- p50 / p95 / max of the spawn time (click to JupyterLab answering) and of the round trip
  (fetch + write the answers + submit);
- the memory of one idle server (median over the students of the resident memory of all their
  processes, after the round trip) and of the hub's own processes;
- the checks that nothing was lost: every student's submission is collected exactly once
  (`tdl collect` as the grader), graded, and its feedback fetched by that student.
The whole run is bounded: each student's steps have a timeout, and the script fails (exit 1) if any
student's round trip fails or a submission is missing.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import os
import pwd
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "deploy" / "hub"))
from client import Student, fill_in  # noqa: E402

PREFIX = os.environ.get("TDL_HUB_PREFIX", "/opt/tdl-hub")


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def rss_mb(user: str) -> float:
    uid = pwd.getpwnam(user).pw_uid
    total = 0
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            if p.stat().st_uid != uid:
                continue
            for line in (p / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return total / 1024


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--students", type=int, default=30)
    ap.add_argument("--concurrency", type=int, default=30)
    ap.add_argument("--timeout", type=float, default=600, help="seconds per student step")
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("benchmarks/hub.py: needs root (it creates throwaway Linux accounts)", file=sys.stderr)
        return 1
    import nbformat

    up, port = "tdlb", int(os.environ.get("TDL_HUB_PORT", "18200"))
    state = Path(f"/tmp/tdl-hub-bench-{os.getpid()}")
    env = dict(os.environ, TDL_HUB_PREFIX=PREFIX, TDL_HUB_PORT=str(port), TDL_HUB_USER_PREFIX=up,
               TDL_HUB_STUDENTS=str(args.students))
    demo = ROOT / "deploy" / "hub" / "demo.sh"
    load0 = os.getloadavg()
    t_start = time.monotonic()
    r = subprocess.run([str(demo), "start", str(state)], env=env, capture_output=True, text=True, timeout=3600)
    if r.returncode != 0:
        print(r.stdout[-3000:], r.stderr[-3000:], file=sys.stderr)
        return 1
    t_up = time.monotonic() - t_start
    try:
        logins = dict(line.split() for line in (state / "logins.txt").read_text().splitlines())
        site = json.loads((state / "site.json").read_text())
        course = site["courses"][0]
        cid = course["id"]
        url = f"http://127.0.0.1:{port}"
        source = nbformat.read(ROOT / "assignments" / "source" / "hw01" / "hw01.ipynb", as_version=4)
        answers = {c.metadata["nbgrader"]["grade_id"]: c.source for c in source.cells
                   if c.metadata.get("nbgrader", {}).get("solution")}
        students = [f"{up}-student{i}" for i in range(1, args.students + 1)]

        def round_trip(user: str) -> dict:
            s = Student(url, user, logins[user], timeout=args.timeout)
            s.login()
            spawn = s.spawn(timeout=args.timeout)
            t0 = time.monotonic()
            s.action("fetch", cid, "hw01")  # its answer is the assignment list: the file is the check
            path = f"{cid}/hw01/hw01.ipynb"
            assert s.exists(path), "fetch"
            s.write_notebook(path, fill_in(s.read_notebook(path), answers, f"{user}: vacuous."))
            assert s.action("submit", cid, "hw01")["success"], "submit"
            return {"user": user, "spawn": spawn, "trip": time.monotonic() - t0, "session": s}

        results, failures = [], []
        with cf.ThreadPoolExecutor(args.concurrency) as pool:
            for fut in cf.as_completed([pool.submit(round_trip, u) for u in students]):
                try:
                    results.append(fut.result())
                except Exception as e:  # noqa: BLE001  (counted and reported)
                    failures.append(repr(e)[:300])
        idle = [rss_mb(r["user"]) for r in results]
        hub_mb = rss_mb("root")  # includes every root process: an upper bound for the hub and proxy

        def grader(*a):
            e = ["env", "-i", f"HOME={course['home']}", f"PATH={PREFIX}/env/bin:/usr/bin:/bin",
                 f"TDL_EXCHANGE={site['exchange']}", f"TDL_COURSE_ID={cid}", f"JUPYTERHUB_USER={course['grader']}",
                 f"JUPYTERHUB_API_TOKEN={course['api_token']}",
                 f"JUPYTERHUB_API_URL=http://127.0.0.1:{site['hub_port']}/hub/api"]
            return subprocess.run(["runuser", "-u", course["grader"], "--", *e, f"{PREFIX}/env/bin/tdl",
                                   "--course", course["root"], *a], capture_output=True, text=True, timeout=3600, cwd="/")

        t0 = time.monotonic()
        steps = [grader("collect", "hw01"),
                 grader("grade", "hw01", "--jobs", "2", "--sandbox", "off", "--no-progress"),
                 grader("feedback", "hw01", "--partial")]
        t_grade = time.monotonic() - t0
        for st in steps:
            if st.returncode != 0:
                failures.append(f"{st.args[-3:]}: {st.stdout[-500:]} {st.stderr[-500:]}")
        collected = sorted(p.name for p in (Path(course["root"]) / "submitted").iterdir())
        fetched = 0
        for res in results:
            try:
                if res["session"].action("fetch_feedback", cid, "hw01")["success"]:
                    home = Path(pwd.getpwnam(res["user"]).pw_dir)
                    fetched += len(list((home / cid / "hw01" / "feedback").glob("*/hw01.html"))) == 1
            except Exception as e:  # noqa: BLE001
                failures.append(f"{res['user']} fetch_feedback: {e!r}"[:300])
    finally:
        subprocess.run([str(demo), "stop", str(state)], env=env, capture_output=True, timeout=600)
    load1 = os.getloadavg()
    spawns, trips = [r["spawn"] for r in results], [r["trip"] for r in results]
    lines = [
        f"# The class hub under load ({args.students} students at once, {os.cpu_count()} cores)",
        "",
        f"`python benchmarks/hub.py --students {args.students} --concurrency {args.concurrency}` on "
        f"{time.strftime('%Y-%m-%d')}; load average {load0[0]:.1f} before, {load1[0]:.1f} after "
        "(a shared machine: figures, not limits).",
        "",
        "| | p50 | p95 | max |",
        "|---|---|---|---|",
    ]
    if results:
        lines += [f"| spawn (s) | {pct(spawns, .5):.1f} | {pct(spawns, .95):.1f} | {max(spawns):.1f} |",
                  f"| fetch + answer + submit (s) | {pct(trips, .5):.1f} | {pct(trips, .95):.1f} | {max(trips):.1f} |"]
    lines += [
        "",
        f"- hub up (demo.sh start, environment already built): {t_up:.0f} s; collect + grade "
        f"(2 jobs) + feedback of all submissions: {t_grade:.0f} s",
        f"- memory of one idle server (median RSS of a student's processes): "
        f"{statistics.median(idle) if idle else float('nan'):.0f} MB; all root processes (hub, proxy, ...): {hub_mb:.0f} MB",
        f"- round trips that succeeded: {len(results)} / {args.students}; submissions collected: "
        f"{len(collected)} (distinct: {len(set(collected))}); feedback fetched: {fetched} / {len(results)}",
    ]
    if failures:
        lines += ["", "Failures:"] + [f"- {f}" for f in failures]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    ok = not failures and len(results) == args.students and collected == sorted(students) and fetched == len(results)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
