#!/usr/bin/env bash
# Fill .device/ (git-ignored) with what bench/device-cgroups.sh installs offline on the device machine
# (Ubuntu 24.04, Python 3.12, x86_64, no network):
#   .device/debs/    uidmap (newuidmap/newgidmap) and busybox-static, as Debian .debs (apt-get download)
#   .device/wheels/  sbx's runtime dependencies as x86_64 wheels for CPython 3.12 (pip download)
# Run it here, with network, before handing the tree over; carry ".device" with it (about 10 MiB).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
DEV=.device
PIP=${PIP:-.venv/bin/pip}
[[ -x $PIP ]] || PIP="python3 -m pip"
rm -rf "$DEV"
mkdir -p "$DEV/debs" "$DEV/wheels"
(cd "$DEV/debs" && apt-get download uidmap busybox-static)
# the runtime dependencies as pyproject.toml names them (their own dependencies come along)
deps=$(python3 - <<'PY'
import tomllib
print(" ".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))
PY
)
# shellcheck disable=SC2086
$PIP download --quiet --dest "$DEV/wheels" --only-binary=:all: --python-version 3.12 --implementation cp \
  --abi cp312 --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
  $deps
du -sh "$DEV"
ls "$DEV/debs" "$DEV/wheels"
