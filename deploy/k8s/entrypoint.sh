#!/bin/sh
# The image's entrypoint: gives the running uid a name when the image does not know it, then execs "$@".
#
# With per-user uids (values.yaml) a student's server runs as a uid that /etc/passwd does not list, and
# nbgrader names the submitter by pwd.getpwuid(os.getuid()) (nbgrader.utils.get_username): without an
# entry it fails. nss_wrapper (libnss-wrapper) serves a private passwd file instead, written here under
# $TMPDIR (the root filesystem may be read-only). Names:
#   - the own uid: $TDL_USER, else $JUPYTERHUB_USER (set by the hub), else "tdl-<uid>";
#   - with $TDL_UIDS (a JSON file {"name": uid, ...}, the ConfigMap tdl-uids): every name in it, so that
#     `nbgrader collect` in a Formgrader or grading pod can check that a submission's owner is the student
#     it claims to be ("claims to be submitted by ... but is owned by ..."), as on one machine.
# Not run in this repository's tests (tests/test_k8s_files.py runs it only through `sh -n`).
set -eu
uid=$(id -u)
gid=$(id -g)
if [ -n "${TDL_UIDS:-}" ] || ! getent passwd "$uid" >/dev/null 2>&1; then
  dir=$(mktemp -d "${TMPDIR:-/tmp}/tdl-nss.XXXXXX")
  cp /etc/passwd "$dir/passwd"
  cp /etc/group "$dir/group"
  if [ -n "${TDL_UIDS:-}" ]; then
    python - "$TDL_UIDS" >>"$dir/passwd" <<'PY'
import json, sys
for name, uid in sorted(json.load(open(sys.argv[1])).items(), key=lambda kv: kv[1]):
    print(f"{name}:x:{int(uid)}:100:{name}:/home/jovyan:/usr/sbin/nologin")  # group users, as jovyan
PY
  fi
  if ! grep -q "^[^:]*:[^:]*:$uid:" "$dir/passwd"; then
    name=${TDL_USER:-${JUPYTERHUB_USER:-tdl-$uid}}
    echo "$name:x:$uid:$gid:$name:${HOME:-/home/jovyan}:/bin/bash" >>"$dir/passwd"
  fi
  export LD_PRELOAD=libnss_wrapper.so NSS_WRAPPER_PASSWD="$dir/passwd" NSS_WRAPPER_GROUP="$dir/group"
fi
exec "$@"
