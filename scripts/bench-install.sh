#!/usr/bin/env bash
# sbx installed as its users install it, for `make bench`: `pip install .` (a built wheel, byte-compiled by pip, not
# editable) into its own world-readable venv made from Debian's /usr/bin/python3, so that the unprivileged bench
# user runs the `sbx` console script as a user would. Idempotent; reinstalls sbx itself on every call (same version
# number, new code), its dependencies only when missing.
#
# Installs from $SBX_TEST_ROOT/src, the copy `SBX_INSTALL_ONLY=1 scripts/test-integration.sh` makes of this checkout
# (run that first: `make bench` does).
set -euo pipefail
umask 022

TEST_ROOT="${SBX_TEST_ROOT:-/var/tmp/sbx-test}"
SRC="$TEST_ROOT/src"
VENV="$TEST_ROOT/bench-venv"
PYTHON=/usr/bin/python3

if [[ ! -f $SRC/pyproject.toml ]]; then
  echo "bench-install: $SRC has no checkout; run SBX_INSTALL_ONLY=1 scripts/test-integration.sh first" >&2
  exit 1
fi
[[ -x $VENV/bin/python ]] || "$PYTHON" -m venv "$VENV"
pip=("$VENV/bin/python" -m pip --quiet --disable-pip-version-check)
"${pip[@]}" install "$SRC"                                  # dependencies, the first time
"${pip[@]}" install --no-deps --force-reinstall "$SRC"      # this checkout's sbx, every time
chmod -R a+rX "$VENV"
echo "bench-install: $("$VENV/bin/sbx" --version) in $VENV (pip install ., not editable)"
