#!/bin/bash
# A throwaway class hub on 127.0.0.1 (what `make hub-demo` runs), as root:
#
#   deploy/hub/demo.sh start [STATE]   build PREFIX if needed (setup.sh), create the demo accounts,
#                                      pre-create the course, start JupyterHub; print URL and logins
#   deploy/hub/demo.sh stop  [STATE]   stop every process it started, delete the accounts and STATE
#
# STATE defaults to /tmp/tdl-hub-demo; PREFIX (TDL_HUB_PREFIX) to /opt/tdl-hub; the port (TDL_HUB_PORT)
# to 8000. Two courses: "tdl" (students 1..N, N = TDL_HUB_STUDENTS, default 3; hw01 released) and
# "tdl2" (one student, "other"), one instructor for both, a grader account (and Formgrader service)
# per course. Accounts are named tdldemo-* (TDL_HUB_USER_PREFIX), with random passwords written to
# STATE/logins.txt; each course's Unix group (who may enter its exchange folder) is <prefix>-<course>.
# The graders' sudo rule for tdl grade's sandbox is /etc/sudoers.d/<prefix>-sandbox. Nothing else on
# the machine changes.
set -Eeuo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cmd=${1:-}
state=${2:-/tmp/tdl-hub-demo}
prefix=${TDL_HUB_PREFIX:-/opt/tdl-hub}
port=${TDL_HUB_PORT:-8000}
up=${TDL_HUB_USER_PREFIX:-tdldemo}
course=${TDL_HUB_COURSE:-tdl}
nstudents=${TDL_HUB_STUDENTS:-3}
case "$nstudents" in ''|*[!0-9]*) echo "deploy/hub/demo.sh: TDL_HUB_STUDENTS=$nstudents must be a whole number" >&2; exit 1;; esac

die() { echo "deploy/hub/demo.sh: $*" >&2; exit 1; }
[ "$cmd" = start ] || [ "$cmd" = stop ] || die "usage: demo.sh start|stop [STATE]"
[ "$(id -u)" = 0 ] || die "needs root: it creates Linux accounts ($up-*) and starts servers as them (try: sudo make hub-demo)"

users="$up-instructor $up-grader $up-grader2 $up-other $(for i in $(seq 1 "$nstudents"); do printf '%s ' "$up-student$i"; done)"

stop() {
  hub_pid=$(cat "$state/jupyterhub.pid" 2>/dev/null || true)
  [ -n "$hub_pid" ] && kill "$hub_pid" 2>/dev/null || true
  # the hub stops its proxy, services and servers; whatever is left after 30 s is killed
  for i in $(seq 1 150); do
    left=0
    for u in $users; do pgrep -u "$u" >/dev/null 2>&1 && left=1; done
    [ -n "$hub_pid" ] && kill -0 "$hub_pid" 2>/dev/null && left=1
    [ $left = 0 ] && break
    sleep 0.2
  done
  if [ -n "$hub_pid" ] && kill -0 "$hub_pid" 2>/dev/null; then
    echo "deploy/hub/demo.sh: the hub did not stop in 30 s; killing it and its process group" >&2
    kill -KILL -- "-$hub_pid" 2>/dev/null || kill -KILL "$hub_pid" 2>/dev/null || true
  fi
  for u in $users; do pkill -KILL -u "$u" 2>/dev/null || true; done
  [ -f "$state/hub/jupyterhub-proxy.pid" ] && kill "$(cat "$state/hub/jupyterhub-proxy.pid")" 2>/dev/null || true
  for u in $users; do id "$u" >/dev/null 2>&1 && userdel -r "$u" >/dev/null 2>&1 || true; done
  for g in "$up-$course" "$up-${course}2"; do getent group "$g" >/dev/null && groupdel "$g" >/dev/null 2>&1 || true; done
  rm -f "/etc/sudoers.d/$up-sandbox"
  rm -rf "$state"
}

if [ "$cmd" = stop ]; then
  stop
  echo "deploy/hub/demo.sh: stopped; accounts $up-* and $state removed"
  exit 0
fi

for p in "$port" $((port + 81)) $((port + 1)) $((port + 1001)) $((port + 1002)); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    die "port $p on 127.0.0.1 is taken (the hub needs $port, $((port + 81)), $((port + 1)), $((port + 1001)), $((port + 1002))): set TDL_HUB_PORT"
  fi
done
[ -e "$state" ] && die "$state exists: a demo may be running (deploy/hub/demo.sh stop $state)"
for u in $users; do id "$u" >/dev/null 2>&1 && die "account $u exists already (deploy/hub/demo.sh stop, or TDL_HUB_USER_PREFIX)"; done
for g in "$up-$course" "$up-${course}2"; do getent group "$g" >/dev/null && die "group $g exists already (deploy/hub/demo.sh stop, or TDL_HUB_USER_PREFIX)"; done

trap 'echo "deploy/hub/demo.sh: start failed; undoing" >&2; stop' ERR
"$here/setup.sh" "$prefix"
mkdir -p "$state"
chmod 755 "$state"
: > "$state/logins.txt"
chmod 600 "$state/logins.txt"
for u in $users; do
  useradd --create-home --shell /bin/bash "$u"
  pw=$(head -c 12 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 12)
  echo "$u:$pw" | chpasswd
  echo "$u $pw" >> "$state/logins.txt"
done
python3 - "$state" "$prefix" "$port" "$up" "$course" "$nstudents" <<'PY'
import json, os, secrets, sys
state, prefix, port, up, course = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
n = int(sys.argv[6])
site = {"prefix": prefix, "state_dir": f"{state}/hub", "exchange": f"{state}/exchange", "ip": "127.0.0.1",
        "port": port, "hub_port": port + 81, "proxy_api_port": port + 1, "admins": [f"{up}-instructor"],
        "cull_idle_s": 3600, "spawn_timeout_s": 180, "sudoers": f"/etc/sudoers.d/{up}-sandbox",
        "courses": [{"id": course, "root": f"{state}/courses/{course}", "home": f"/home/{up}-grader",
                     "grader": f"{up}-grader", "port": port + 1001, "unix_group": f"{up}-{course}", "instructors": [f"{up}-instructor"],
                     "students": [f"{up}-student{i}" for i in range(1, n + 1)],
                     "api_token": secrets.token_hex(32)},
                    {"id": f"{course}2", "root": f"{state}/courses/{course}2", "home": f"/home/{up}-grader2",
                     "grader": f"{up}-grader2", "port": port + 1002, "unix_group": f"{up}-{course}2", "instructors": [f"{up}-instructor"],
                     "students": [f"{up}-other"], "api_token": secrets.token_hex(32)}]}
fd = os.open(f"{state}/site.json", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it holds a token
os.write(fd, json.dumps(site, indent=2).encode())
os.close(fd)
PY
mkdir -p "$state/courses"
chmod 755 "$state/courses"
"$prefix/env/bin/python" "$here/courses.py" "$state/site.json"
cd "$state/hub"
# Job control on: a script's background job otherwise starts with SIGINT ignored, the hub's services
# inherit that, and JupyterHub (which stops them with SIGINT) then waits for them forever on shutdown.
set -m
TDL_HUB_SITE="$state/site.json" nohup "$prefix/env/bin/jupyterhub" -f "$prefix/jupyterhub_config.py" \
  > "$state/jupyterhub.log" 2>&1 &
echo $! > "$state/jupyterhub.pid"
set +m
for i in $(seq 1 300); do
  if "$prefix/env/bin/python" -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$port/hub/health', timeout=1)" 2>/dev/null; then
    break
  fi
  kill -0 "$(cat "$state/jupyterhub.pid")" 2>/dev/null || { tail -40 "$state/jupyterhub.log" >&2; false; }
  sleep 0.5
done
"$prefix/env/bin/python" -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/hub/health', timeout=2)" \
  || { tail -40 "$state/jupyterhub.log" >&2; false; }
# The grader of course "$course" takes the roster and releases hw01, as an instructor would from a
# terminal of the course's Formgrader service: with the service's token, so that nbgrader's hub
# authenticator and `tdl roster import`'s group sync reach the hub.
printf 'id,first_name,last_name,email\n' > "$state/roster.csv"
for i in $(seq 1 "$nstudents"); do printf '%s,Student,%s,\n' "$up-student$i" "$i" >> "$state/roster.csv"; done
chmod 644 "$state/roster.csv"
token=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['courses'][0]['api_token'])" "$state/site.json")
as_grader() {  # from /: the grader cannot read the hub's state folder (alembic reads its working directory)
  cd / && runuser -u "$up-grader" -- env -i HOME="/home/$up-grader" PATH="$prefix/env/bin:/usr/bin:/bin" \
    TDL_EXCHANGE="$state/exchange" TDL_COURSE_ID="$course" JUPYTERHUB_USER="$up-grader" \
    JUPYTERHUB_API_URL="http://127.0.0.1:$((port + 81))/hub/api" JUPYTERHUB_API_TOKEN="$token" \
    "$prefix/env/bin/tdl" --course "$state/courses/$course" "$@"
}
as_grader roster import "$state/roster.csv" > "$state/release.log" 2>&1 || { cat "$state/release.log" >&2; false; }
as_grader release hw01 --no-check >> "$state/release.log" 2>&1 || { cat "$state/release.log" >&2; false; }
trap - ERR
cat <<EOF
The class hub is up: http://127.0.0.1:$port/
Logins (user password), also in $state/logins.txt:
$(sed 's/^/  /' "$state/logins.txt")
Courses "$course" (hw01 released to $nstudents students) and "${course}2"; the instructor's Formgraders:
  http://127.0.0.1:$port/services/$course/formgrader and http://127.0.0.1:$port/services/${course}2/formgrader
Log: $state/jupyterhub.log
Stop it (and delete the accounts): deploy/hub/demo.sh stop $state   (or: make hub-demo-stop)
EOF
