#!/usr/bin/env bash
# Prove sbx's cgroup v2 limits for real, as an unprivileged user with a delegated subtree, on a machine with pure
# cgroup v2 (the device machine: Ubuntu 24.04, Python 3.12, root, controllers cpu memory pids io, no network).
#
#   here, with network:   bash scripts/device-prepare.sh     # fills .device/ (git-ignored, ~10 MiB): carry it
#   there, as root:       bash bench/device-cgroups.sh       # PASS/FAIL lines; the log goes to $OUT (else /tmp)
#
# It installs offline what it needs (newuidmap/newgidmap and a static busybox from .device/debs, sbx's runtime
# dependencies from .device/wheels), creates the user (sbxdev, with /etc/subuid and /etc/subgid ranges), delegates
# $CGROUP/sbx-device to it as an administrator would (chown of the directory and its cgroup.procs,
# cgroup.subtree_control, cgroup.threads; the user's processes in a child, sbx-device/shell, for the
# no-internal-process rule), builds a busybox image with `sbx import`, and proves, as that user: the container's own
# /sys/fs/cgroup, OOM kill under --memory (OOMKilled true, exit 137), the fork limit under --pids-limit, throttling
# under --cpus, the other limits' files, stats, pause/unpause, and cleanup by `rm -f` after the monitor was killed.
# Everything it made is removed at the end (SBX_DEVICE_KEEP=1 keeps it). Exit status: the number of FAILs.
#
# Knobs (for a dry run elsewhere): SBX_DEVICE_USER (default sbxdev), SBX_DEVICE_PYTHON (default python3 with the
# carried wheels), SBX_DEVICE_CGROUP (default /sys/fs/cgroup), SBX_DEVICE_ROOT (default /var/tmp/sbx-device).
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CARRIED=$REPO/.device
USER_NAME=${SBX_DEVICE_USER:-sbxdev}
CGROUP=${SBX_DEVICE_CGROUP:-/sys/fs/cgroup}
ROOT=${SBX_DEVICE_ROOT:-/var/tmp/sbx-device}
DELEGATED=$CGROUP/sbx-device
SHELL_CG=$DELEGATED/shell
IMAGE=sbxdev/busybox:1
LOG=${OUT:-/tmp}/device-cgroups.log
mkdir -p "$(dirname "$LOG")"
exec > >(tee "$LOG") 2>&1

FAILS=0
PASSES=0
pass() { PASSES=$((PASSES + 1)); echo "PASS: $*"; }
fail() { FAILS=$((FAILS + 1)); echo "FAIL: $*"; }
check() { local what=$1; shift; if "$@"; then pass "$what"; else fail "$what"; fi; }
verdict() { if [[ $1 == 0 ]]; then pass "$2"; else fail "$2"; fi; }  # verdict $? WHAT, after a [[ ]] or (( ))
note() { echo "---- $*"; }
START=$(date +%s)

note "environment"
uname -r
grep PRETTY_NAME /etc/os-release 2>/dev/null
echo "cgroup fs: $(stat -fc %T "$CGROUP") at $CGROUP; root controllers: $(cat "$CGROUP/cgroup.controllers")"
nproc

# -- offline installation ------------------------------------------------------------------------------------------
note "install"
mkdir -p "$ROOT"
chmod 0755 "$ROOT"
if ! command -v newuidmap >/dev/null || ! command -v newgidmap >/dev/null; then
  deb=$(ls "$CARRIED"/debs/uidmap_*.deb 2>/dev/null | head -1)
  if [[ -n $deb ]]; then
    # the binaries only: Debian's package would drag its libsubid4 over Ubuntu's; newuidmap needs libaudit,
    # libselinux, libcap-ng and libpcre2, which every Ubuntu has
    dpkg-deb -x "$deb" "$ROOT/uidmap"
    install -o root -g root -m 4755 "$ROOT/uidmap/usr/bin/newuidmap" "$ROOT/uidmap/usr/bin/newgidmap" /usr/local/bin/
    INSTALLED_UIDMAP=1
  fi
fi
command -v newuidmap && newuidmap 2>&1 | head -1
BUSYBOX=""
deb=$(ls "$CARRIED"/debs/busybox-static_*.deb 2>/dev/null | head -1)
if [[ -n $deb ]]; then
  dpkg-deb -x "$deb" "$ROOT/busybox-deb" && BUSYBOX=$ROOT/busybox-deb/bin/busybox
fi
[[ -z $BUSYBOX ]] && BUSYBOX=$(command -v busybox || true)
echo "busybox: ${BUSYBOX:-none}"
PYTHON=${SBX_DEVICE_PYTHON:-}
rm -rf "$ROOT/src" "$ROOT/site"
mkdir -p "$ROOT/src" "$ROOT/site"
cp -r "$REPO/sandbox" "$REPO/pyproject.toml" "$ROOT/src/"
[[ -d $REPO/policies ]] && cp -r "$REPO/policies" "$ROOT/src/"
if [[ -z $PYTHON ]]; then
  PYTHON=$(command -v python3)
  for wheel in "$CARRIED"/wheels/*.whl; do
    [[ -e $wheel ]] && "$PYTHON" -m zipfile -e "$wheel" "$ROOT/site/"
  done
fi
chmod -R a+rX "$ROOT"
cd "$ROOT" || exit 1  # the user's commands run from here: the checkout may sit where the user cannot enter
"$PYTHON" --version

# Ubuntu 24.04 keeps unprivileged user namespaces from having capabilities (AppArmor): lift that for the test
RESTORE_SYSCTLS=()
for setting in kernel/apparmor_restrict_unprivileged_userns:0 kernel/unprivileged_userns_clone:1; do
  file=/proc/sys/${setting%%:*}
  if [[ -w $file ]]; then
    RESTORE_SYSCTLS+=("$file:$(cat "$file")")
    echo "${setting##*:}" > "$file"
  fi
done

# -- the user and the delegation -----------------------------------------------------------------------------------
note "user $USER_NAME and the delegated cgroup $DELEGATED"
CREATED_USER=0
if ! id -u "$USER_NAME" >/dev/null 2>&1; then
  useradd -M -d "$ROOT/home" -s /bin/sh "$USER_NAME" && CREATED_USER=1
fi
for file in /etc/subuid /etc/subgid; do
  touch "$file"
  grep -q "^$USER_NAME:" "$file" || echo "$USER_NAME:300000:65536" >> "$file"
done
USER_ID=$(id -u "$USER_NAME")
GROUP_ID=$(id -g "$USER_NAME")
HOME_DIR=$ROOT/home
mkdir -p "$HOME_DIR"
chown "$USER_ID:$GROUP_ID" "$HOME_DIR"
ORIGINAL_CG=$(sed -n 's/^0:://p' /proc/self/cgroup)

if [[ ! -w $CGROUP/cgroup.subtree_control ]]; then
  fail "$CGROUP is not writable here (a container without its own cgroup mount?): nothing can be delegated"
  exit 1
fi
# The real root cgroup may hold processes and enable controllers. The root of a cgroup namespace (this machine being
# a container) may not: there an available controller is refused (EBUSY) while it holds processes, so they move
# into a child first, as docker-in-docker does. Only for the default mount, and only on that refusal.
MOVED_TO_INIT=0
if [[ -z ${SBX_DEVICE_CGROUP:-} ]] && grep -qw pids "$CGROUP/cgroup.controllers" \
    && ! grep -qw pids "$CGROUP/cgroup.subtree_control" \
    && ! echo "+pids" > "$CGROUP/cgroup.subtree_control" 2>/dev/null && [[ -n $(cat "$CGROUP/cgroup.procs") ]]; then
  mkdir -p "$CGROUP/init"
  while read -r pid; do echo "$pid" > "$CGROUP/init/cgroup.procs" 2>/dev/null; done < "$CGROUP/cgroup.procs"
  MOVED_TO_INIT=1
  echo "moved the processes of $CGROUP into $CGROUP/init (no-internal-process rule)"
  ORIGINAL_CG=${ORIGINAL_CG%/}/init
fi
for controller in cpu cpuset io memory pids; do
  echo "+$controller" > "$CGROUP/cgroup.subtree_control" 2>/dev/null || echo "(cannot enable $controller here)"
done
mkdir -p "$SHELL_CG"
for dir in "$DELEGATED" "$SHELL_CG"; do
  chown "$USER_ID:$GROUP_ID" "$dir" "$dir/cgroup.procs" "$dir/cgroup.subtree_control" "$dir/cgroup.threads"
done
# this script (so every sbx it starts) runs in the delegated shell cgroup, as a login under Delegate= would
echo $$ > "$SHELL_CG/cgroup.procs"

cleanup() {
  note "cleanup"
  [[ -n ${SBX_DEVICE_KEEP:-} ]] && return
  sbx rm -f $(sbx ps -aq 2>/dev/null) >/dev/null 2>&1
  echo $$ > "$CGROUP${ORIGINAL_CG%/}/cgroup.procs" 2>/dev/null || echo "could not leave $SHELL_CG"
  for dir in "$DELEGATED"/sbx/*; do  # containers only: nothing else is killed
    [[ -d $dir ]] && { echo 1 > "$dir/cgroup.kill" 2>/dev/null; sleep 0.2; }
  done
  for dir in "$DELEGATED"/sbx/* "$DELEGATED/sbx" "$SHELL_CG" "$DELEGATED"; do
    [[ -d $dir ]] && { rmdir "$dir" 2>/dev/null || echo "left: $dir"; }
  done
  if [[ $MOVED_TO_INIT == 1 ]]; then
    echo "the processes moved to $CGROUP/init stay there"
  fi
  for entry in "${RESTORE_SYSCTLS[@]}"; do echo "${entry##*:}" > "${entry%:*}"; done
  [[ $CREATED_USER == 1 ]] && { userdel "$USER_NAME"; sed -i "/^$USER_NAME:300000:65536\$/d" /etc/subuid /etc/subgid; }
  [[ -n ${INSTALLED_UIDMAP:-} ]] && rm -f /usr/local/bin/newuidmap /usr/local/bin/newgidmap
  rm -rf "$ROOT"
}
trap cleanup EXIT

sbx() {  # sbx as the user, in the delegated cgroup, with a clean environment (no PAM session: no new scope)
  timeout 90 setpriv --reuid="$USER_ID" --regid="$GROUP_ID" --init-groups \
    env -i HOME="$HOME_DIR" PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 PYTHONPATH="$ROOT/src:$ROOT/site" \
    "$PYTHON" -m sandbox "$@"
}
as_user_python() {
  setpriv --reuid="$USER_ID" --regid="$GROUP_ID" --init-groups \
    env -i HOME="$HOME_DIR" PYTHONPATH="$ROOT/src:$ROOT/site" "$PYTHON" -c "$1"
}
container_cgroup() { cat "$HOME_DIR/.local/share/sbx/containers/$1/cgroup" 2>/dev/null; }
inspect_field() {  # inspect_field NAME 'python expression over i (the inspect object)'
  sbx inspect "$1" | "$PYTHON" -c "import json,sys; i=json.load(sys.stdin)[0]; print($2)"
}
usage_usec() { number "$(sed -n 's/^usage_usec //p' "$1/cpu.stat" 2>/dev/null)"; }
number() { if [[ ${1:-} =~ ^[0-9]+$ ]]; then echo "$1"; else echo -1; fi; }  # for (( )): -1 when not a number
STDERR=$ROOT/stderr

# -- the test image ------------------------------------------------------------------------------------------------
# this machine has no slirp4netns (and no network to reach): the containers get only lo, as --network none
install -d -o "$USER_ID" -g "$GROUP_ID" -m 0700 "$HOME_DIR/.config" "$HOME_DIR/.config/sbx"
printf 'network = "none"\n' > "$HOME_DIR/.config/sbx/config.toml"
chown "$USER_ID:$GROUP_ID" "$HOME_DIR/.config/sbx/config.toml"

note "image"
rootfs=$ROOT/rootfs
mkdir -p "$rootfs/bin" "$rootfs/etc" "$rootfs/tmp" "$rootfs/proc" "$rootfs/sys" "$rootfs/dev"
cp "$BUSYBOX" "$rootfs/bin/busybox"
for applet in $("$BUSYBOX" --list); do [[ $applet == busybox ]] || ln -sf busybox "$rootfs/bin/$applet"; done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n' > "$rootfs/etc/passwd"
printf 'root:x:0:\nnobody:x:65534:\n' > "$rootfs/etc/group"
chmod 1777 "$rootfs/tmp"
tar -C "$rootfs" -cf "$ROOT/rootfs.tar" .
chmod a+r "$ROOT/rootfs.tar"
check "sbx import of a busybox rootfs" sbx import "$ROOT/rootfs.tar" "$IMAGE" --change 'CMD ["/bin/sh"]'
sbx info 2>/dev/null | grep -i -e driver -e cgroup

# -- the proofs ----------------------------------------------------------------------------------------------------
note "discovery"
found=$(as_user_python "from sandbox.cgroups.delegation import discover; d = discover(); \
print(d.parent, '|', ' '.join(sorted(d.controllers)), '|', d.reason)")
echo "$found"
[[ $found == "$DELEGATED | "*cpu*memory*pids*" | "* ]]; verdict $? "sbx finds $DELEGATED with cpu, memory and pids"

note "the container's own /sys/fs/cgroup (cgroup namespace, read-only)"
inside=$(sbx run --rm --memory 64m "$IMAGE" sh -c \
  'cat /sys/fs/cgroup/memory.max; grep ^0:: /proc/self/cgroup; (echo 1 > /sys/fs/cgroup/memory.max) 2>/dev/null && echo WRITABLE' \
  2>"$STDERR")
echo "$inside"
cat "$STDERR"
[[ $inside == $'67108864\n0::/' && ! -s $STDERR ]]; verdict $? "memory.max inside is the limit, its cgroup is / and read-only, no warning"

hosted=$(sbx run --rm --network host --memory 64m "$IMAGE" cat /sys/fs/cgroup/memory.max)
[[ $hosted == 67108864 ]]; verdict $? "with --network host too, /sys/fs/cgroup is the container's own"

note "OOM kill under --memory"
sbx run --name oom --memory 32m --memory-swap 32m "$IMAGE" sh -c 'dd if=/dev/zero of=/dev/null bs=128M count=1'
code=$?
echo "exit code $code"
oom=$(inspect_field oom 'i["State"]["OOMKilled"], i["State"]["ExitCode"], i["HostConfig"]["Memory"]')
echo "OOMKilled, ExitCode, Memory: $oom"
[[ $code == 137 && $oom == "True 137 33554432" ]]; verdict $? "exit 137 and OOMKilled true"
sbx rm oom >/dev/null

note "fork limit under --pids-limit"
pids=$(sbx run --rm --pids-limit 10 "$IMAGE" sh -c \
  '(for i in $(seq 40); do sleep 30 & done) 2>/dev/null; set -- /proc/[0-9]*; echo $#; cat /sys/fs/cgroup/pids.max;
   sed -n "s/^max //p" /sys/fs/cgroup/pids.events')
echo "processes, pids.max, pids.events max: $(echo $pids)"
read -r count limit refused <<< "$(echo $pids)"
count=$(number "$count"); limit=$(number "$limit"); refused=$(number "$refused")
(( count >= 0 && count <= 10 && limit == 10 && refused > 0 )); verdict $? "at most 10 processes, pids.max 10, forks refused"

note "throttling under --cpus 0.25, stats"
burn=$(sbx run -d --name burn --cpus 0.25 "$IMAGE" sh -c 'while :; do :; done')
cg=$(container_cgroup "$burn")
echo "cgroup: $cg; cpu.max: $(cat "$cg/cpu.max" 2>/dev/null)"
before=$(usage_usec "$cg"); sleep 3; after=$(usage_usec "$cg")
share=$(( (after - before) / 30000 ))
throttled=$(number "$(sed -n 's/^nr_throttled //p' "$cg/cpu.stat" 2>/dev/null)")
echo "cpu share over 3 s: ${share}% of one cpu; nr_throttled $throttled"
(( throttled > 0 && share >= 10 && share <= 35 )); verdict $? "throttled: nr_throttled > 0 and the share near 25%"
sbx stats --no-stream
row=$(sbx stats --no-stream --format json burn)
echo "$row"
check "stats: CPU % near 25 and the columns Docker has" "$PYTHON" -c "
import json, sys
row = json.loads(sys.argv[1])
assert set(row) >= {'BlockIO', 'CPUPerc', 'MemPerc', 'MemUsage', 'NetIO', 'PIDs', 'Name', 'ID'}, row
assert 10 <= float(row['CPUPerc'].rstrip('%')) <= 35, row" "$row"
sbx rm -f burn >/dev/null
[[ -n $cg && ! -e $cg ]]; verdict $? "rm -f removed the container's cgroup"

note "pause/unpause (cgroup.freeze)"
spin=$(sbx run -d --name spin "$IMAGE" sh -c 'while :; do :; done')
cg=$(container_cgroup "$spin")
check "sbx pause" sbx pause spin
frozen=$(sed -n 's/^frozen //p' "$cg/cgroup.events" 2>/dev/null)
status=$(inspect_field spin 'i["State"]["Status"], i["State"]["Paused"]')
before=$(usage_usec "$cg"); sleep 1; after=$(usage_usec "$cg")
echo "frozen $frozen; inspect: $status; cpu used while paused: $((after - before)) us"
[[ $frozen == 1 && $status == "paused True" ]] && (( after - before < 20000 )); verdict $? "paused: frozen, inspect says paused, no cpu used"
check "sbx unpause" sbx unpause spin
before=$(usage_usec "$cg"); sleep 1; after=$(usage_usec "$cg")
echo "cpu used after unpause: $((after - before)) us"
(( after - before > 50000 )); verdict $? "running again after unpause"
joined=$(sbx exec spin cat /proc/self/cgroup | grep "^0::")
[[ $joined == "0::/" ]]; verdict $? "sbx exec runs in the container's own cgroup (0::/)"
sbx pause spin >/dev/null
sbx stop -t 2 spin >/dev/null
stopped=$(inspect_field spin 'i["State"]["Status"]')
[[ $stopped == exited && ! -e $cg ]]; verdict $? "stop of a paused container: exited, its cgroup gone"
sbx rm -f spin >/dev/null

note "the other limits' files"
files=$(sbx run --rm --cpuset-cpus 0 --cpu-shares 512 --memory-reservation 16m --pids-limit 99 "$IMAGE" sh -c \
  'cd /sys/fs/cgroup && cat cpuset.cpus cpu.weight memory.low pids.max')
echo "$(echo $files)"
[[ $(echo $files) == "0 20 16777216 99" ]]; verdict $? "cpuset.cpus 0, cpu.weight 20, memory.low 16m, pids.max 99"
blkio=$(sbx run --rm --blkio-weight 300 "$IMAGE" sh -c \
  'cat /sys/fs/cgroup/io.bfq.weight 2>/dev/null || cat /sys/fs/cgroup/io.weight')
echo "blkio-weight 300 → $(echo $blkio)"
[[ $(echo $blkio) == 300 || $(echo $blkio) == *2930* ]]; verdict $? "--blkio-weight written (io.bfq.weight 300 or io.weight default 2930)"

note "rm -f after the monitor was killed"
victim=$(sbx run -d "$IMAGE" sleep 300)
cg=$(container_cgroup "$victim")
monitor=$("$PYTHON" -c "import json; print(json.load(open('$HOME_DIR/.local/share/sbx/containers/$victim/config.json'))['monitor_pid'])")
kill -9 "$monitor"
sbx rm -f "$victim" >/dev/null
[[ -n $cg && ! -e $cg ]]; verdict $? "the cgroup of a container whose monitor was killed is gone after rm -f"
left=$(number "$(ls "$DELEGATED/sbx" 2>/dev/null | grep -c '^[0-9a-f]\{64\}$')")
(( left == 0 )); verdict $? "no container cgroup left under $DELEGATED/sbx"

note "done in $(( $(date +%s) - START )) s: $PASSES passed, $FAILS failed"
exit "$FAILS"
