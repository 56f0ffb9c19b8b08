#!/usr/bin/env bash
# Prepare this machine and checkout for sbx development and tests. Idempotent; `make setup` runs it.
#
# As root: installs the Debian packages sbx and its tests need (only when one is missing), creates
# the unprivileged test user (sbxtest) with subordinate uid/gid ranges, opens /dev/net/tun and
# /dev/fuse to users (0666). As any user: checks the same and names the exact commands an
# administrator must run, then creates .venv (from Debian's /usr/bin/python3) with the project
# installed editable with its test extras.
#
#   scripts/setup.sh              everything
#   scripts/setup.sh --venv-only  only .venv (enough for unit tests and lint)
#
# Environment: SBX_TEST_USER (default sbxtest), SBX_SUBID_START (default: first free id >= 200000).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

VENV_ONLY=0
case "${1:-}" in
  --venv-only) VENV_ONLY=1 ;;
  "") ;;
  *) echo "usage: $0 [--venv-only]" >&2; exit 2 ;;
esac

PACKAGES=(uidmap slirp4netns fuse-overlayfs libseccomp2 docker-registry busybox-static skopeo umoci
          apache2-utils python3-venv passt tini
          gcc libc6-dev)  # gcc, libc6-dev: the seccomp probe of the integration tests is built static at test time
PACKAGES+=(debootstrap)  # the nginx image of make demo and the integration tests (tests/fixtures/debian_image.py)
TEST_USER=${SBX_TEST_USER:-sbxtest}
FOREIGN_USER=${SBX_TEST_FOREIGN_USER:-sbxtest2}  # plays the other local user in the hostile-user tests
SUBID_COUNT=65536
VENV=.venv
PROBLEMS=()

say() { echo "setup: $*"; }
warn() { echo "setup: warning: $*" >&2; }
is_root() { [[ $(id -u) -eq 0 ]]; }

installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

missing_packages() {
  local package
  for package in "${PACKAGES[@]}"; do
    installed "$package" || echo "$package"
  done
}

has_subids() {  # has_subids FILE USER UID
  grep -qE "^($2|$3):" "$1" 2>/dev/null
}

next_subid_start() {
  # first id >= 200000 after every range already in /etc/subuid and /etc/subgid
  local start=${SBX_SUBID_START:-200000}
  local end
  end=$(cat /etc/subuid /etc/subgid 2>/dev/null | awk -F: 'NF >= 3 { e = $2 + $3; if (e > m) m = e } END { print m + 0 }')
  if (( end > start )); then start=$end; fi
  echo "$start"
}

# -- system (root) ------------------------------------------------------------

install_packages() {
  local missing
  mapfile -t missing < <(missing_packages)
  if (( ${#missing[@]} == 0 )); then
    say "packages present: ${PACKAGES[*]}"
    return
  fi
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null
}

create_test_user() {
  if ! id -u "$TEST_USER" >/dev/null 2>&1; then
    say "creating user $TEST_USER"
    useradd --create-home --home-dir "/home/$TEST_USER" --shell /bin/bash --user-group "$TEST_USER"
  fi
  mkdir -p "/home/$TEST_USER"
  chown "$TEST_USER:" "/home/$TEST_USER"
  local uid start
  uid=$(id -u "$TEST_USER")
  touch /etc/subuid /etc/subgid
  start=$(next_subid_start)  # one start for both, so uids and gids map alike
  if ! has_subids /etc/subuid "$TEST_USER" "$uid"; then
    say "adding subordinate uids $start-$((start + SUBID_COUNT - 1)) for $TEST_USER"
    usermod --add-subuids "$start-$((start + SUBID_COUNT - 1))" "$TEST_USER"
  fi
  if ! has_subids /etc/subgid "$TEST_USER" "$uid"; then
    say "adding subordinate gids $start-$((start + SUBID_COUNT - 1)) for $TEST_USER"
    usermod --add-subgids "$start-$((start + SUBID_COUNT - 1))" "$TEST_USER"
  fi
  if ! id -u "$FOREIGN_USER" >/dev/null 2>&1; then
    say "creating user $FOREIGN_USER (the other local user of the hostile-user tests)"
    useradd --no-create-home --shell /usr/sbin/nologin --user-group "$FOREIGN_USER"
  fi
}

open_devices() {
  if [[ ! -e /dev/net/tun ]]; then
    mkdir -p /dev/net
    mknod /dev/net/tun c 10 200 || warn "cannot create /dev/net/tun: slirp4netns networking will not work"
  fi
  if [[ ! -e /dev/fuse ]]; then
    mknod /dev/fuse c 10 229 || warn "cannot create /dev/fuse: fuse-overlayfs will not work"
  fi
  local device
  for device in /dev/net/tun /dev/fuse; do
    [[ -e $device ]] || continue
    if [[ $(stat -c %a "$device") != 666 ]]; then
      chmod 0666 "$device" && say "chmod 0666 $device" || warn "cannot chmod $device"
    fi
  done
}

enable_user_namespaces() {
  # Debian before 11 and some hardened kernels switch unprivileged user namespaces off
  if [[ -r /proc/sys/kernel/unprivileged_userns_clone ]] && [[ $(cat /proc/sys/kernel/unprivileged_userns_clone) == 0 ]]; then
    sysctl -q -w kernel.unprivileged_userns_clone=1 || warn "unprivileged user namespaces are disabled"
  fi
  if [[ -r /proc/sys/user/max_user_namespaces ]] && [[ $(cat /proc/sys/user/max_user_namespaces) == 0 ]]; then
    sysctl -q -w user.max_user_namespaces=15000 || warn "user.max_user_namespaces is 0"
  fi
}

# -- system (not root): say what an administrator must do -----------------------

check_as_user() {
  local missing user uid device
  mapfile -t missing < <(missing_packages)
  if (( ${#missing[@]} > 0 )); then
    PROBLEMS+=("missing Debian packages: ${missing[*]}"$'\n'"    sudo apt-get install -y ${missing[*]}")
  fi
  user=$(id -un)
  uid=$(id -u)
  if ! has_subids /etc/subuid "$user" "$uid" || ! has_subids /etc/subgid "$user" "$uid"; then
    local start range
    start=$(next_subid_start)
    range="$start-$((start + SUBID_COUNT - 1))"
    PROBLEMS+=("no subordinate uid/gid range for $user in /etc/subuid and /etc/subgid"$'\n'"    sudo usermod --add-subuids $range --add-subgids $range $user")
  fi
  for device in /dev/net/tun /dev/fuse; do
    if [[ ! -e $device ]]; then
      warn "$device is missing (networking / fuse-overlayfs tests will fail); as root: scripts/setup.sh"
    elif [[ ! -r $device || ! -w $device ]]; then
      warn "$device is not read-writable for $user; fix with: sudo chmod 0666 $device"
    fi
  done
}

# -- the virtual environment ------------------------------------------------------

base_python() {
  if [[ -x /usr/bin/python3 ]]; then
    echo /usr/bin/python3
  else
    command -v python3
  fi
}

make_venv() {
  local python stamp want
  python=$(base_python)
  want=$( { sha256sum pyproject.toml; "$python" -c 'import sys; print(sys.version)'; echo "$python [test]"; } | sha256sum | cut -d' ' -f1)
  stamp="$VENV/.sbx-setup-stamp"
  if [[ -x $VENV/bin/python ]] && "$VENV/bin/python" -c 'import sys' 2>/dev/null \
      && [[ -f $stamp && $(cat "$stamp") == "$want" ]]; then
    say "$VENV up to date"
    return
  fi
  if [[ ! -f pyproject.toml ]]; then
    echo "setup: error: pyproject.toml not found in $PWD" >&2
    exit 1
  fi
  if ! "$python" -c 'import ensurepip, venv' 2>/dev/null; then
    echo "setup: error: $python cannot create virtual environments; install python3-venv:" >&2
    echo "    sudo apt-get install -y python3-venv" >&2
    exit 1
  fi
  if [[ ! -x $VENV/bin/python ]] || ! "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
    say "creating $VENV from $python"
    rm -rf "$VENV"
    "$python" -m venv "$VENV"
  fi
  say "installing sbx (editable) with test extras into $VENV"
  if ! "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e '.[test]'; then
    echo "setup: error: pip install -e '.[test]' failed (is PyPI reachable?)" >&2
    exit 1
  fi
  echo "$want" >"$stamp"
}

# -- main -------------------------------------------------------------------------

if (( ! VENV_ONLY )); then
  if is_root; then
    install_packages
    create_test_user
    open_devices
    enable_user_namespaces
  else
    check_as_user
  fi
fi

make_venv

if (( ${#PROBLEMS[@]} > 0 )); then
  echo >&2
  echo "setup: this machine is not ready for the sbx tests; an administrator must run:" >&2
  for problem in "${PROBLEMS[@]}"; do
    echo "  - $problem" >&2
  done
  echo "  (or run scripts/setup.sh as root, which does all of it)" >&2
  exit 1
fi
say "done"
