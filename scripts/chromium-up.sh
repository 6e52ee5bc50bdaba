#!/usr/bin/env bash
# Make sure a headless Chromium is on this machine for tests/test_report_browser.py (which
# loads the HTML report of `git exp report` in a real browser), and print its path.
# Uses what is there (chromium, chromium-browser, google-chrome, or $GITEXP_CHROMIUM); else,
# as root, installs Debian's `chromium` package. Safe to run again: with a browser present it
# installs nothing. Exit 1 (and a line on stderr) when none is there and none can be installed.
set -euo pipefail
find_browser() {
  if [ -n "${GITEXP_CHROMIUM:-}" ] && [ -x "$GITEXP_CHROMIUM" ]; then echo "$GITEXP_CHROMIUM"; return 0; fi
  local name
  for name in chromium chromium-browser google-chrome google-chrome-stable; do
    if command -v "$name" >/dev/null 2>&1; then command -v "$name"; return 0; fi
  done
  return 1
}
if found=$(find_browser); then
  echo "$found"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "chromium-up.sh: no chromium here, and installing Debian's chromium needs root (sudo $0)" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "chromium-up.sh: no chromium here and no apt-get to install it with" >&2
  exit 1
fi
# apt-get update only when the package lists do not know chromium yet (it takes a while).
if ! apt-cache show chromium >/dev/null 2>&1; then
  apt-get update -q >&2
fi
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium >&2
if found=$(find_browser); then
  echo "$found"
  exit 0
fi
echo "chromium-up.sh: installed Debian's chromium but found no chromium command on the PATH" >&2
exit 1
