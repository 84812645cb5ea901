#!/usr/bin/env bash
# Debian's Chromium, for the dashboard's browser test (tests/gateway/test_dashboard_browser.py).
# Playwright's Python package drives /usr/bin/chromium; no browser is downloaded from
# anywhere but the system's package manager. Does nothing when Chromium is already there.
set -euo pipefail

CHROMIUM=/usr/bin/chromium
if [ -x "$CHROMIUM" ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "error: $CHROMIUM is missing and there is no apt-get here: install Chromium" >&2
    exit 2
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
echo "installing Debian's chromium for the dashboard's browser test"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium
test -x "$CHROMIUM"
