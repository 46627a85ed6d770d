#!/usr/bin/env bash
# Install Debian's chromium for the browser tests when it is missing and we can (root + apt-get).
# Never downloads a browser build of its own (no `playwright install`).
set -u
if [ -x /usr/bin/chromium ]; then exit 0; fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing Debian's chromium for the browser tests (once, ~3 min)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq chromium >/dev/null && exit 0
  echo "apt-get could not install chromium: browser tests will be skipped (failed under CI=true)"
  exit 1
fi
echo "chromium is missing and cannot be installed here (needs root and apt-get): browser tests will be skipped (failed under CI=true)"
exit 1
