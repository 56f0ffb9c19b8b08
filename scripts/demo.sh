#!/usr/bin/env bash
# make demo: nginx served by a rootless sbx container, offline (package mirrors and loopback only). Run as root,
# after `make setup`; idempotent (a second run replaces the container and reuses the image and the registry).
#
# 1. builds a small nginx image from Debian packages (debootstrap minbase + nginx-light), cached in
#    $SBX_DEMO_CACHE (default /var/cache/sbx-demo; tests/fixtures/debian_image.py);
# 2. serves it from a docker-registry on 127.0.0.1:$SBX_DEMO_REGISTRY_PORT (default 5055; left running, data in
#    $SBX_DEMO_ROOT/registry) as library/nginx:latest;
# 3. installs sbx world-readable in $SBX_DEMO_ROOT (default /var/tmp/sbx-demo) and writes the demo user's
#    ~/.config/sbx/config.toml with that registry as docker.io's mirror;
# 4. as the unprivileged demo user (sbxtest): `sbx run -d --name web -p 8080:80 nginx`, `sbx ps`, then fetches
#    http://127.0.0.1:8080/ and prints the page's title. The container keeps serving.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
DEMO_USER=${SBX_DEMO_USER:-sbxtest}
DEMO_ROOT=${SBX_DEMO_ROOT:-/var/tmp/sbx-demo}
PORT=${SBX_DEMO_REGISTRY_PORT:-5055}
PY=.venv/bin/python
export SBX_DEMO_CACHE=${SBX_DEMO_CACHE:-/var/cache/sbx-demo}

say() { printf '\n== %s\n' "$*"; }

if [[ $(id -u) -ne 0 ]]; then
  echo "make demo: run it as root (it builds an image with debootstrap, then runs sbx as the unprivileged $DEMO_USER)" >&2
  exit 1
fi
if ! id -u "$DEMO_USER" >/dev/null 2>&1; then
  echo "make demo: user $DEMO_USER does not exist; run make setup first" >&2
  exit 1
fi
DEMO_UID=$(id -u "$DEMO_USER")
DEMO_HOME=$(getent passwd "$DEMO_USER" | cut -d: -f6)

say "nginx image (Debian bookworm, nginx-light), cached in $SBX_DEMO_CACHE"
"$PY" -m tests.fixtures.debian_image build

say "local registry on 127.0.0.1:$PORT, serving library/nginx:latest"
registry_up() { "$PY" -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$PORT/v2/', timeout=2)" 2>/dev/null; }
install -d -m 0755 "$DEMO_ROOT"
install -d -m 0700 -o "$DEMO_USER" -g "$DEMO_USER" "$DEMO_ROOT/registry"
if registry_up; then
  echo "already running"
else
  cat >"$DEMO_ROOT/registry.yml" <<YAML
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $DEMO_ROOT/registry/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$PORT
YAML
  chmod 0644 "$DEMO_ROOT/registry.yml"
  # the demo user's own process, in its own session, so it outlives this script
  setsid runuser -u "$DEMO_USER" -- docker-registry serve "$DEMO_ROOT/registry.yml" \
    </dev/null >>"$DEMO_ROOT/registry/registry.log" 2>&1 &
  for _ in $(seq 100); do registry_up && break; sleep 0.1; done
  registry_up || { echo "make demo: docker-registry did not start:"; tail -5 "$DEMO_ROOT/registry/registry.log"; exit 1; } >&2
  echo "started (log: $DEMO_ROOT/registry/registry.log)"
fi
"$PY" -m tests.fixtures.debian_image push "http://127.0.0.1:$PORT"

say "sbx installed for $DEMO_USER in $DEMO_ROOT"
SBX_TEST_ROOT="$DEMO_ROOT" SBX_TEST_USER="$DEMO_USER" SBX_INSTALL_ONLY=1 bash scripts/test-integration.sh
CONFIG="$DEMO_HOME/.config/sbx/config.toml"
MARK="# written by make demo"
if [[ ! -e $CONFIG ]] || head -1 "$CONFIG" | grep -qx "$MARK"; then
  runuser -u "$DEMO_USER" -- mkdir -p "$(dirname "$CONFIG")"
  printf '%s\n[registries."docker.io"]\nmirrors = ["127.0.0.1:%s"]\n' "$MARK" "$PORT" |
    runuser -u "$DEMO_USER" -- tee "$CONFIG" >/dev/null
  echo "$CONFIG: docker.io mirror = 127.0.0.1:$PORT"
else
  echo "$CONFIG exists and is not the demo's: leaving it; it needs mirrors = [\"127.0.0.1:$PORT\"] for docker.io"
fi
RUNTIME_DIR=/run/user/$DEMO_UID
[[ -d $RUNTIME_DIR && $(stat -c %u "$RUNTIME_DIR") == "$DEMO_UID" ]] || RUNTIME_DIR=
# the demo user's sbx, usable from a root shell afterwards too
cat >"$DEMO_ROOT/sbx" <<SH
#!/bin/sh
# sbx as $DEMO_USER (written by make demo)
cd / && exec runuser -u $DEMO_USER -- env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=$DEMO_HOME USER=$DEMO_USER \\
  LOGNAME=$DEMO_USER LANG=C.UTF-8 XDG_RUNTIME_DIR=$RUNTIME_DIR $DEMO_ROOT/venv/bin/sbx "\$@"
SH
chmod 0755 "$DEMO_ROOT/sbx"
SBX=$DEMO_ROOT/sbx

say "as $DEMO_USER: sbx run -d --name web -p 8080:80 nginx"
if "$SBX" inspect web >/dev/null 2>&1; then
  "$SBX" rm -f web >/dev/null
  echo "(removed the previous demo's container web)"
fi
"$SBX" run -d --name web -p 8080:80 nginx
echo
"$SBX" ps

say "GET http://127.0.0.1:8080/"
"$PY" - <<'PY'
import re, sys, time, urllib.request

deadline = time.monotonic() + 30
while True:
    try:
        with urllib.request.urlopen("http://127.0.0.1:8080/", timeout=5) as response:
            page = response.read().decode("utf-8", "replace")
        break
    except OSError as error:
        if time.monotonic() > deadline:
            sys.exit(f"make demo: nothing answers on 127.0.0.1:8080: {error}")
        time.sleep(0.2)
match = re.search(r"<title>(.*?)</title>", page, re.S | re.I)
print(f"title: {match.group(1).strip() if match else '(no title)'}")
PY

cat <<TXT

nginx keeps serving on http://127.0.0.1:8080/ in the rootless container "web" of $DEMO_USER.
  $SBX logs web         # nginx's access log
  $SBX stop web         # stop it ($SBX rm -f web removes it)
$SBX runs sbx as $DEMO_USER; with internet access the same \`sbx run -d -p 8080:80 nginx\` pulls from Docker Hub.
TXT
