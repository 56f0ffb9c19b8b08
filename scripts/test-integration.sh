#!/usr/bin/env bash
# Run tests/integration as an unprivileged user (sbx is rootless; so must its tests be).
#
# As a normal user: runs them from .venv as that user.
# As root: the checkout may sit where the test user cannot enter (/root/...), so it is copied
# (without .git, .venv, caches) to $SBX_TEST_ROOT/src (default /var/tmp/sbx-test), a second venv
# $SBX_TEST_ROOT/venv gets it installed editable (reinstalled only when pyproject.toml changes),
# and pytest runs as $SBX_TEST_USER (default sbxtest, made by scripts/setup.sh) with a clean
# environment (pytest's tmp dirs and hypothesis' database in $SBX_TEST_ROOT/work, wiped at the start
# of every run).
#
# Arguments are passed to pytest: scripts/test-integration.sh -k token -x
# or name what to run: scripts/test-integration.sh tests/integration/test_fixtures.py
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
CHECKOUT=$PWD
TEST_USER=${SBX_TEST_USER:-sbxtest}
TEST_ROOT=${SBX_TEST_ROOT:-/var/tmp/sbx-test}

# run all of tests/integration unless the arguments name test files or directories themselves
targets=(tests/integration)
for arg in "$@"; do
  if [[ $arg != -* && -e ${arg%%::*} ]]; then targets=(); break; fi
done

if [[ $(id -u) -ne 0 ]]; then
  exec .venv/bin/python -m pytest -p no:cacheprovider "${targets[@]}" "$@"
fi

if ! id -u "$TEST_USER" >/dev/null 2>&1; then
  echo "test-integration: user $TEST_USER does not exist; run make setup (as root) first" >&2
  exit 1
fi
TEST_HOME=$(getent passwd "$TEST_USER" | cut -d: -f6)
PYTHON=/usr/bin/python3
[[ -x $PYTHON ]] || PYTHON=$(command -v python3)

mkdir -p "$TEST_ROOT"
chmod 0755 "$TEST_ROOT"
exec 9>"$TEST_ROOT/.lock"
flock 9

# 1. a world-readable copy of the checkout
rm -rf "$TEST_ROOT/src.new"
mkdir "$TEST_ROOT/src.new"
tar -C "$CHECKOUT" \
  --exclude=./.git --exclude=./.venv --exclude=__pycache__ --exclude='*.egg-info' \
  --exclude=.pytest_cache --exclude=.ruff_cache --exclude=.hypothesis --exclude=./build \
  --exclude=./bench/results \
  -cf - . | tar -C "$TEST_ROOT/src.new" -xf -
rm -rf "$TEST_ROOT/src"
mv "$TEST_ROOT/src.new" "$TEST_ROOT/src"
# compiled now: the test user cannot write __pycache__ here, and recompiling sbx on every command would cost it
# ~40 ms each (and make every timing in bench/, which runs this copy, a measure of the compiler)
"$PYTHON" -m compileall -q "$TEST_ROOT/src/sandbox"
chown -R root:root "$TEST_ROOT/src"
chmod -R u+rwX,go+rX,go-w "$TEST_ROOT/src"

# 2. the test venv (editable, so the fresh copy is what it imports)
VENV=$TEST_ROOT/venv
want=$( { sha256sum "$TEST_ROOT/src/pyproject.toml" | cut -d' ' -f1; "$PYTHON" -c 'import sys; print(sys.version)'; echo compat; } | sha256sum | cut -d' ' -f1)
if [[ ! -x $VENV/bin/python ]] || [[ ! -f $VENV/.sbx-stamp ]] || [[ $(cat "$VENV/.sbx-stamp") != "$want" ]] \
    || ! "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
  echo "test-integration: installing sbx into $VENV"
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
  # compat mode: a plain path in a .pth file; the default import-hook finder costs every sbx command ~10 ms
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e "$TEST_ROOT/src[test]" \
    --config-settings editable_mode=compat
  echo "$want" >"$VENV/.sbx-stamp"
fi
# the editable install left an egg-info in src; it is not needed at run time
rm -rf "$TEST_ROOT"/src/*.egg-info
chmod -R go+rX,go-w "$VENV"

# the Debian nginx image some tests run (debootstrap needs root; cached in /var/cache/sbx-demo, so only the first
# run on a machine builds it)
if [[ -z ${SBX_INSTALL_ONLY:-} ]] && command -v debootstrap >/dev/null; then
  (cd "$TEST_ROOT/src" && "$PYTHON" -m tests.fixtures.debian_image build) ||
    echo "test-integration: the nginx image could not be built; the tests that need it skip (fail in CI)" >&2
fi

# SBX_INSTALL_ONLY=1: stop here, with a world-readable install in $TEST_ROOT (what `make demo` runs sbx from)
[[ ${SBX_INSTALL_ONLY:-} == 1 ]] && exit 0

# 3. a fresh work dir owned by the test user (pytest's tmp dirs, hypothesis' database)
WORK=$TEST_ROOT/work
rm -rf "$WORK"
mkdir -p "$WORK/tmp"
chown -R "$TEST_USER:" "$WORK"
chmod 0700 "$WORK"

# 4. a small tmpfs the test user owns, for the disk-full case (TESTPLAN 53): a user cannot mount one on the host,
#    and the pull must meet ENOSPC from a real file system. Unmounted when the run ends.
SMALL_FS=$TEST_ROOT/small-fs
mkdir -p "$SMALL_FS"
if ! mountpoint -q "$SMALL_FS"; then
  mount -t tmpfs -o "size=24m,mode=0700,uid=$(id -u "$TEST_USER"),gid=$(id -g "$TEST_USER")" sbx-test-small \
    "$SMALL_FS" || echo "test-integration: cannot mount a tmpfs at $SMALL_FS: the disk-full test cannot run" >&2
fi
trap 'umount "$SMALL_FS" 2>/dev/null || true' EXIT


# 4. what another local user plants (tests/integration/test_hostile.py): made here, as that user, because the
# suite's own user cannot act as another one
FOREIGN_USER=${SBX_TEST_FOREIGN_USER:-sbxtest2}
FOREIGN=$TEST_ROOT/foreign
rm -rf "$FOREIGN"
if id -u "$FOREIGN_USER" >/dev/null 2>&1; then
  install -d -m 0755 -o "$FOREIGN_USER" -g "$FOREIGN_USER" "$FOREIGN"
  runuser -u "$FOREIGN_USER" -- sh -c 'cd "$1" && mkdir open private && chmod 0777 open && chmod 0700 private &&
    ln -s /tmp link' sh "$FOREIGN"
else
  FOREIGN=
fi

# from the copy, so paths given as arguments read as they do in the checkout
cd "$TEST_ROOT/src"
echo "test-integration: running as $TEST_USER from $TEST_ROOT/src"
set +e
runuser -u "$TEST_USER" -- env -i \
  PATH=/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin \
  HOME="$TEST_HOME" USER="$TEST_USER" LOGNAME="$TEST_USER" SHELL=/bin/bash \
  LANG=C.UTF-8 TERM="${TERM:-dumb}" CI="${CI:-}" \
  XDG_RUNTIME_DIR= TMPDIR="$WORK/tmp" PYTHONDONTWRITEBYTECODE=1 \
  HYPOTHESIS_STORAGE_DIRECTORY="$WORK/hypothesis" SBX_TEST_SMALL_FS="$SMALL_FS" SBX_TEST_FOREIGN="$FOREIGN" \
  "$VENV/bin/python" -m pytest -p no:cacheprovider --basetemp="$WORK/pytest" \
  --rootdir="$TEST_ROOT/src" "${targets[@]}" "$@"
status=$?
set -e
exit $status
