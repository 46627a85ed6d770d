#!/bin/bash
# Install the grading sandbox's helper for a grader that is not root (tdl grade --sandbox sudo), as root:
#
#   deploy/sandbox/install.sh PREFIX [GRADER...]
#
# PREFIX/env is a root-owned environment with tdlcourse installed (the hub's: deploy/hub/setup.sh
# builds /opt/tdl-hub/env). Writes HELPER (default /usr/local/libexec/tdl-sandbox, root:root 0755),
# a script that runs PREFIX/env/bin/python -I (no PYTHONPATH, no user site, no working directory on
# sys.path) on tdlcourse.grading.sandbox_helper, after checking that nothing in PREFIX/env, the
# interpreter or what it imports is writable by anyone but root. With GRADERs, also writes SUDOERS
# (default /etc/sudoers.d/tdl-sandbox, 0440) from sudoers.tdl-sandbox, checked with visudo -cf:
# one line per grader, allowing that program only. Re-running replaces both.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
die() { echo "deploy/sandbox/install.sh: $*" >&2; exit 1; }
[ $# -ge 1 ] || die "usage: install.sh PREFIX [GRADER...] (env: HELPER, SUDOERS)"
prefix=$1; shift
helper=${HELPER:-/usr/local/libexec/tdl-sandbox}
sudoers=${SUDOERS:-/etc/sudoers.d/tdl-sandbox}
[ "$(id -u)" = 0 ] || die "run it as root (the helper and the sudo rule are root's)"
env_dir=$prefix/env
python=$env_dir/bin/python
[ -x "$python" ] || die "PREFIX=$prefix has no env/bin/python (build it with deploy/hub/setup.sh $prefix)"
case $helper in /*) ;; *) die "HELPER=$helper must be an absolute path" ;; esac
case $helper in *[!A-Za-z0-9/._-]*) die "HELPER=$helper: only letters, digits and / . _ - (it goes into sudoers)" ;; esac

# Everything the helper runs must be root's and writable by no one else (the helper checks what it
# imports at each start; this checks the whole environment once).
bad=$(find "$env_dir" ! -type l \( ! -user root -o -perm /022 \) -print -quit)
[ -z "$bad" ] || die "$bad is not root's or is writable by others: the helper would run code others can change"
"$python" -I -m tdlcourse.grading.sandbox_helper check >/dev/null \
  || die "$python -I -m tdlcourse.grading.sandbox_helper check failed (see above)"

dir=$(dirname "$helper")
mkdir -p "$dir"
d=$dir
while :; do
  [ "$(stat -c %u "$d")" = 0 ] || die "$d is not root's: the helper's folder must be root's all the way up"
  [ $(( 0$(stat -c %a "$d") & 022 )) = 0 ] || die "$d is writable by others"
  [ "$d" = / ] && break
  d=$(dirname "$d")
done
tmp=$(mktemp "$dir/.tdl-sandbox.XXXXXX")
cat > "$tmp" <<SCRIPT
#!/bin/sh
# tdl grade's sandbox helper (deploy/sandbox/install.sh). Run through sudo by the course's grader;
# python -I ignores the caller's environment, and sudo resets it.
exec $python -I -m tdlcourse.grading.sandbox_helper "\$@"
SCRIPT
chown root:root "$tmp"
chmod 0755 "$tmp"
mv -f "$tmp" "$helper"
echo "deploy/sandbox/install.sh: $helper -> $python"

if [ $# -gt 0 ]; then
  command -v visudo >/dev/null || die "visudo is missing (Debian: apt-get install sudo)"
  tmp=$(mktemp)
  trap 'rm -f "$tmp"' EXIT
  for grader in "$@"; do
    id -u "$grader" >/dev/null 2>&1 || die "no such user: $grader"
    case $grader in *[!A-Za-z0-9._-]*) die "GRADER=$grader: only letters, digits and . _ -" ;; esac
    [ "$(id -u "$grader")" != 0 ] || die "GRADER=$grader is root: root needs no rule"
  done
  { sed -n '/^#/p' "$here/sudoers.tdl-sandbox"
    sed -n "s|@HELPER@|$helper|g; /^Defaults/p" "$here/sudoers.tdl-sandbox"
    for grader in "$@"; do
      sed -n "s|@HELPER@|$helper|g; s|@GRADER@|$grader|g; /^@\\{0,1\\}[A-Za-z0-9._-]* ALL=/p" "$here/sudoers.tdl-sandbox"
    done; } > "$tmp"
  visudo -cf "$tmp" >/dev/null || die "visudo -cf rejects the rule: $(cat "$tmp")"
  chmod 0440 "$tmp"
  chown root:root "$tmp"
  mv -f "$tmp" "$sudoers"
  trap - EXIT
  echo "deploy/sandbox/install.sh: $sudoers allows $* to run $helper"
fi
