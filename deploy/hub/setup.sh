#!/bin/bash
# Build the class hub's environment on one machine (the Littlest-JupyterHub shape), as root:
#
#   deploy/hub/setup.sh [PREFIX]          (default /opt/tdl-hub; PYTHON=/usr/bin/python3.11)
#
# - PREFIX/env: a venv every user can read and run, from a Python every user can read (Debian's
#   python3.11: a venv of root's own pyenv Python cannot start other users' servers, "Permission
#   denied: .../jupyterhub-singleuser"), with the course's pins (constraints.txt, torch==2.13.0),
#   the project itself (not editable: nothing points back into this checkout) and the hub's pins
#   (requirements-hub.txt: JupyterHub, SystemdSpawner, the idle culler, nbgitpuller);
# - PREFIX/proxy: configurable-http-proxy from proxy/package-lock.json (npm ci);
# - the environment's Jupyter configuration (PREFIX/env/etc/jupyter, read by every user's server):
#   the system-wide nbgrader_config.py, the instructor extensions (Formgrader, Create Assignment,
#   course list) off, and a 20 s autosave (JupyterLab's default is 120 s: submit sends the file on
#   disk); PREFIX/instructor/etc/jupyter turns them back on for instructors and graders
#   (jupyterhub_config.py puts it first on their JUPYTER_CONFIG_PATH).
# Re-running is cheap: the packages are reinstalled only when a pin changed, the project when its
# source did.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
prefix=${1:-/opt/tdl-hub}
python=${PYTHON:-/usr/bin/python3.11}

die() { echo "deploy/hub/setup.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run it as root (it installs into $prefix for every user)"
[ -x "$python" ] || die "PYTHON=$python is not an executable (Debian: apt-get install python3.11 python3.11-venv)"
runuser -u nobody -- "$python" -c "import venv" 2>/dev/null \
  || die "PYTHON=$python cannot be run by other users (or lacks venv): the hub starts servers as each student"
command -v npm >/dev/null || die "npm is missing (Debian: apt-get install npm)"

umask 022
mkdir -p "$prefix"
# one build at a time (two demos, or a demo and a test, starting together would both rebuild env/)
exec 9> "$prefix/.setup.lock"
flock 9
env_dir=$prefix/env
pins=$(cat "$repo/constraints.txt" "$here/requirements-hub.txt" "$repo/pyproject.toml" | sha256sum | cut -c1-16)
src=$(cd "$repo" && find src \( -name '*.py' -o -name '*.j2' \) -print0 | sort -z | xargs -0 cat | sha256sum | cut -c1-16)
if [ "$(cat "$env_dir/.tdl-pins" 2>/dev/null)" != "$pins" ]; then
  rm -rf "$env_dir"
  "$python" -m venv "$env_dir"
  "$env_dir/bin/python" -m pip install -q --upgrade "pip>=24"
  "$env_dir/bin/python" -m pip install -q -c "$repo/constraints.txt" "torch==2.13.0"
  "$env_dir/bin/python" -m pip install -q -c "$repo/constraints.txt" -r "$here/requirements-hub.txt" "$repo[course]"
  echo "$pins" > "$env_dir/.tdl-pins"
  echo "$src" > "$env_dir/.tdl-src"
elif [ "$(cat "$env_dir/.tdl-src" 2>/dev/null)" != "$src" ]; then
  "$env_dir/bin/python" -m pip install -q --no-deps --force-reinstall "$repo"
  echo "$src" > "$env_dir/.tdl-src"
fi

mkdir -p "$prefix/proxy"
cp "$here/proxy/package.json" "$here/proxy/package-lock.json" "$prefix/proxy/"
if ! cmp -s "$here/proxy/package-lock.json" "$prefix/proxy/node_modules/.package-lock.json.tdl" 2>/dev/null; then
  (cd "$prefix/proxy" && npm ci --ignore-scripts --omit=dev --no-audit --no-fund --loglevel=error)
  cp "$here/proxy/package-lock.json" "$prefix/proxy/node_modules/.package-lock.json.tdl"
fi

# MathJax for the Formgrader and the feedback pages, inlined from a local copy (grading/offline.py):
# the environment is not the repository, so it gets its own copy (from `make vendor`'s js/ or _vendor/)
mj=""
for f in "$repo/js/node_modules/mathjax/es5/tex-svg-full.js" "$repo/_vendor/mathjax/tex-svg-full.js"; do
  [ -f "$f" ] && { mj=$f; break; }
done
[ -n "$mj" ] || die "no local MathJax (tex-svg-full.js): run 'make vendor' in $repo first"
mkdir -p "$env_dir/share/tdlcourse/mathjax"
cp "$mj" "$env_dir/share/tdlcourse/mathjax/tex-svg-full.js"

etc=$env_dir/etc/jupyter
mkdir -p "$etc/labconfig" "$etc/jupyter_server_config.d" "$env_dir/share/jupyter/lab/settings"
cp "$here/nbgrader_config.py" "$etc/nbgrader_config.py"
cat > "$etc/labconfig/page_config.json" <<'JSON'
{
  "disabledExtensions": {
    "@jupyter/nbgrader:formgrader": true,
    "@jupyter/nbgrader:create-assignment": true,
    "@jupyter/nbgrader:course-list": true
  }
}
JSON
cat > "$etc/jupyter_server_config.d/zz-tdl-students.json" <<'JSON'
{
  "ServerApp": {
    "jpserver_extensions": {
      "nbgrader.server_extensions.formgrader": false,
      "nbgrader.server_extensions.course_list": false
    }
  }
}
JSON
cat > "$env_dir/share/jupyter/lab/settings/overrides.json" <<'JSON'
{
  "@jupyterlab/docmanager-extension:plugin": {
    "autosaveInterval": 20
  }
}
JSON
inst=$prefix/instructor/etc/jupyter
mkdir -p "$inst/labconfig" "$inst/jupyter_server_config.d"
cat > "$inst/labconfig/page_config.json" <<'JSON'
{
  "disabledExtensions": {
    "@jupyter/nbgrader:formgrader": false,
    "@jupyter/nbgrader:create-assignment": false,
    "@jupyter/nbgrader:course-list": false
  }
}
JSON
cat > "$inst/jupyter_server_config.d/zz-tdl-instructors.json" <<'JSON'
{
  "ServerApp": {
    "jpserver_extensions": {
      "nbgrader.server_extensions.formgrader": true,
      "nbgrader.server_extensions.course_list": true
    }
  }
}
JSON
cp "$here/jupyterhub_config.py" "$prefix/jupyterhub_config.py"
chmod -R a+rX "$prefix"

# tdl grade's sandbox for the graders (not root): a root-owned helper that courses.py's sudo rule
# names (deploy/sandbox/install.sh; assignments/README.md, "Without root").
if ! command -v sudo >/dev/null || ! command -v visudo >/dev/null; then
  command -v apt-get >/dev/null || die "sudo is missing: tdl grade's sandbox needs it for the graders"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends sudo >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null 2>&1; DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends sudo >/dev/null; } \
    || die "apt-get install sudo failed: tdl grade's sandbox needs it for the graders"
fi
HELPER="$prefix/bin/tdl-sandbox" "$repo/deploy/sandbox/install.sh" "$prefix" >/dev/null
echo "deploy/hub/setup.sh: $prefix ready (env: $env_dir, proxy: $prefix/proxy)"
