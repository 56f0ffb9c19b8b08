#!/usr/bin/env bash
# Prepare this machine for `python -m bench` (make bench). Idempotent: safe to run again and again.
#
# As root it installs what is missing (podman runc debootstrap bubblewrap), creates the unprivileged user the baselines run
# as (sbxtest, with subordinate ids), opens /dev/fuse and /dev/net/tun, and makes the user's XDG_RUNTIME_DIR and
# the bench work dir. As anyone else it only checks and prints the exact commands a root shell should run.
set -euo pipefail

BENCH_USER="${SBX_BENCH_USER:-sbxtest}"
BENCH_DIR="${SBX_BENCH_DIR:-/var/tmp/sbx-bench}"
SUBID_START=200000
SUBID_COUNT=65536
PKGS=(podman runc debootstrap bubblewrap)
# Already expected on the machine; checked, installed too when missing.
BASE_PKGS=(docker-registry skopeo umoci uidmap busybox-static)

missing_pkgs=()
for p in "${BASE_PKGS[@]}" "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
    missing_pkgs+=("$p")
  fi
done

if [ "$(id -u)" -ne 0 ]; then
  todo=()
  [ "${#missing_pkgs[@]}" -gt 0 ] &&
    todo+=("apt-get update && apt-get install -y --no-install-recommends ${missing_pkgs[*]}")
  id "$BENCH_USER" >/dev/null 2>&1 || todo+=("useradd -m $BENCH_USER")
  grep -q "^$BENCH_USER:" /etc/subuid 2>/dev/null || todo+=("echo $BENCH_USER:$SUBID_START:$SUBID_COUNT >> /etc/subuid")
  grep -q "^$BENCH_USER:" /etc/subgid 2>/dev/null || todo+=("echo $BENCH_USER:$SUBID_START:$SUBID_COUNT >> /etc/subgid")
  for d in /dev/fuse /dev/net/tun; do
    [ -e "$d" ] && [ "$(stat -c %a "$d")" != 666 ] && todo+=("chmod 0666 $d")
  done
  uid="$(id -u "$BENCH_USER" 2>/dev/null || echo '$(id -u '"$BENCH_USER"')')"
  [ -d "/run/user/$uid" ] || todo+=("install -d -m 0700 -o $BENCH_USER -g $BENCH_USER /run/user/$uid")
  [ -d "$BENCH_DIR" ] || todo+=("install -d -m 0755 $BENCH_DIR")
  if [ "${#todo[@]}" -eq 0 ]; then
    echo "bench-setup: not root, and nothing is missing. Run the benchmarks as root: python -m bench"
  else
    echo "bench-setup: not root; nothing changed. Run these as root:"
    printf '  %s\n' "${todo[@]}"
  fi
  exit 0
fi

if [ "${#missing_pkgs[@]}" -gt 0 ]; then
  echo "bench-setup: installing ${missing_pkgs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing_pkgs[@]}" >/dev/null
fi

if ! id "$BENCH_USER" >/dev/null 2>&1; then
  echo "bench-setup: creating user $BENCH_USER"
  useradd -m "$BENCH_USER" 2>/dev/null || id "$BENCH_USER" >/dev/null  # another setup may have raced us
fi
for f in /etc/subuid /etc/subgid; do
  touch "$f"
  grep -q "^$BENCH_USER:" "$f" || echo "$BENCH_USER:$SUBID_START:$SUBID_COUNT" >>"$f"
done

for d in /dev/fuse /dev/net/tun; do
  [ -e "$d" ] && chmod 0666 "$d"
done

uid="$(id -u "$BENCH_USER")"
install -d -m 0755 /run/user
[ -d "/run/user/$uid" ] || install -d -m 0700 -o "$BENCH_USER" -g "$BENCH_USER" "/run/user/$uid"
install -d -m 0755 "$BENCH_DIR"

# the chart of `make bench` (bench/chart.py): matplotlib (pyproject's bench extra) in the venv that runs the harness
venv_py="${SBX_BENCH_VENV:-$(dirname "$0")/../.venv}/bin/python"
if [ -x "$venv_py" ] && ! "$venv_py" -c 'import matplotlib' 2>/dev/null; then
  echo "bench-setup: installing matplotlib into $(dirname "$(dirname "$venv_py")")"
  "$venv_py" -m pip install --quiet --disable-pip-version-check 'matplotlib>=3.6'
fi

echo "bench-setup: ok (user $BENCH_USER uid $uid, work dir $BENCH_DIR)"
