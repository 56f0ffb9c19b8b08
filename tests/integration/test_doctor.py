"""`sbx doctor` on the real machine, as the unprivileged test user; and a run that cannot start points at it."""

from __future__ import annotations

import json


def test_doctor_says_this_machine_can_run_containers(sbx) -> None:
    result = sbx("doctor", "--format", "json", check=False)
    report = json.loads(result.stdout)
    assert result.returncode == 0, result.stdout
    assert report["can_run"] is True
    assert report["storage_driver"] in ("overlay", "fuse-overlayfs", "copy")
    assert report["network_tools"]["slirp4netns"] == "/usr/bin/slirp4netns"
    checks = {check["name"]: check for check in report["checks"]}
    assert checks["user namespaces"]["status"] == "ok"
    assert checks["subuid range"]["status"] == "ok"  # setup gives the test user a range
    assert checks["newuidmap"]["status"] == "ok"
    table = sbx("doctor")
    assert "sbx can run containers here" in table.stdout


def test_missing_id_helper_fails_doctor_and_run_points_at_it(busybox) -> None:
    """With newuidmap out of PATH (and a subordinate range to map), doctor exits 1 naming the fix, and the failing
    run's hint sends the user to doctor."""
    no_helpers = {"PATH": "/nonexistent"}
    doctor = busybox("doctor", env=no_helpers, check=False)
    assert doctor.returncode == 1
    assert "missing  newuidmap" in doctor.stdout
    assert "fix: sudo apt-get install uidmap" in doctor.stdout
    run = busybox("run", "--rm", "busybox", "true", env=no_helpers, check=False)
    assert run.returncode == 125
    assert "newuidmap not found" in run.stderr and "sbx doctor" in run.stderr
