"""B13: the Docker API's cost, ``docker run --rm IMG /bin/true`` through `sbx system service` vs `sbx run` directly,
and vs rootless podman's own service (``podman system service``), with the same image (B1's busybox root).

Columns, each run as the bench user by B1's timer (spawn + wait, rotating order):

* ``sbx``: ``sbx run --rm --network none IMG /bin/true`` (as B1);
* ``docker>sbx``: the real docker CLI, ``DOCKER_HOST`` = sbx's service (started once, ``--time 0``);
* ``docker>podman``: the same docker command against ``podman system service`` (runc, cgroupfs, overlay);
* ``podman``: ``podman run --rm --network none IMG /bin/true`` directly, for scale.

``docker>sbx`` − ``sbx`` is what the API adds (the CLI's start, its five requests, the server's work). Without the
docker CLI (scripts/bench-setup.sh does not install it) the two docker columns are reported unavailable. The summary's
figures: ``docker>sbx`` beside ``docker>podman`` and beside ``sbx`` run directly.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.common import (
    BenchError,
    Figure,
    User,
    columns_table,
    compare,
    drop_tree,
    exclusive,
    log,
    machine_facts,
    ratios_line,
    run,
    tail,
    timed_column,
)
from bench.start import IMAGE_REF, PODMAN_REF, WORK, Podman, Sbx, base_env, build_root, time_columns

TITLE = "B13: docker CLI -> sbx system service vs sbx run vs docker CLI -> podman system service"
ORDER = 23  # place in `python -m bench` and its summary

COLUMNS = ("sbx", "docker>sbx", "docker>podman", "podman")
MIN_ITERATIONS = 20
MIN_WARMUP = 2


def measure(iterations: int, warmup: int, only: list[str] | None = None) -> dict[str, Any]:
    del only  # the figures are pairs of these four columns: all of them always run
    with exclusive():
        return _bench_api(max(MIN_ITERATIONS, iterations), max(MIN_WARMUP, warmup))


def _service(user: User, argv: list[str], env: dict[str, str], sock: Path,
             docker_env: dict[str, str]) -> subprocess.Popen:
    """Start a service as the bench user and wait until the docker CLI gets an answer from it."""
    process = subprocess.Popen(user.wrap(argv, env), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchError(f"{argv[0]} service exited {process.returncode}: {tail(process.stderr.read().decode())}")
        if sock.exists():
            probe = run(user.wrap(["docker", "-H", f"unix://{sock}", "version"], docker_env), check=False,
                        timeout=30)
            if probe.returncode == 0:
                return process
        time.sleep(0.2)
    process.kill()
    raise BenchError(f"the service on {sock} did not answer within 60 s")


def _stop(process: subprocess.Popen | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _bench_api(iterations: int, warmup: int) -> dict[str, Any]:
    t_start = time.monotonic()
    user = User.resolve()
    drop_tree(WORK)
    user.mkdir(WORK)
    _root, tar = build_root(user)
    archive = WORK / "busybox-image.tar"
    docker_env = base_env(user, {"DOCKER_CONFIG": str(user.mkdir(WORK / "docker-config", 0o700))})
    status = {column: "ok" for column in COLUMNS}
    have_docker = shutil.which("docker") is not None
    if not have_docker:
        status["docker>sbx"] = status["docker>podman"] = "unavailable: the docker CLI is not installed"
        log("docker: unavailable: the docker CLI is not installed")
    argvs: dict[str, list[str]] = {}
    envs: dict[str, dict[str, str]] = {}
    services: list[subprocess.Popen] = []
    sbx, podman = Sbx(user), Podman(user)
    try:
        sbx.prepare(tar, archive)
        argvs["sbx"], envs["sbx"] = sbx.argv(), base_env(user, sbx.env)
        if have_docker:
            sbx_sock = WORK / "sbx-api.sock"
            services.append(_service(user, [*sbx.cmd, "system", "service", "--time", "0", f"unix://{sbx_sock}"],
                                     sbx.env, sbx_sock, docker_env))
            argvs["docker>sbx"] = ["docker", "-H", f"unix://{sbx_sock}", "run", "--rm", "--network", "none",
                                   IMAGE_REF, "/bin/true"]
            envs["docker>sbx"] = docker_env
        try:
            podman.prepare(archive)
            argvs["podman"], envs["podman"] = podman.argv(), base_env(user, podman.env)
            if have_docker:
                podman_sock = WORK / "podman-api.sock"
                services.append(_service(user, [*podman.base(), "system", "service", "--time", "0",
                                                f"unix://{podman_sock}"], podman.env, podman_sock, docker_env))
                argvs["docker>podman"] = ["docker", "-H", f"unix://{podman_sock}", "run", "--rm", "--network",
                                          "none", PODMAN_REF, "/bin/true"]
                envs["docker>podman"] = docker_env
        except BenchError as error:
            for column in ("podman", "docker>podman"):
                if column not in argvs and status[column] == "ok":
                    status[column] = f"unavailable: {error}"
            log(f"podman: unavailable: {error}")
        out = time_columns(user, {c: {"argv": argvs[c], "env": envs[c]} for c in COLUMNS if c in argvs}, warmup,
                           iterations, "B13")
        status.update(out["status"])
        samples = out["samples"]
    finally:
        for process in services:
            _stop(process)
        podman.cleanup()
    tools = {c: timed_column(c, argvs.get(c), status[c], samples.get(c, []) if status[c] == "ok" else [])
             for c in COLUMNS}
    median = {c: e["median_s"] for c, e in tools.items() if "median_s" in e}
    ratios: dict[str, Any] = {}
    if "sbx" in median and "docker>sbx" in median:
        ratios["API overhead (ms): docker>sbx - sbx"] = round((median["docker>sbx"] - median["sbx"]) * 1000, 1)
    if "docker>sbx" in median and "docker>podman" in median:
        ratios["docker>sbx / docker>podman"] = round(median["docker>sbx"] / median["docker>podman"], 3)
    drop_tree(WORK)
    return {
        "benchmark": "B13",
        "what": "docker run --rm --network none IMG /bin/true through the API services vs sbx run directly",
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine_facts(),
        "protocol": {"warmup": warmup, "iterations": iterations, "order": "rotating",
                     "timing": "B1's timer: perf_counter around spawn + wait, as the bench user"},
        "docker": run(["docker", "--version"], check=False).stdout.strip() if have_docker else None,
        "tools": tools,
        "ratios": ratios,
        "wall_s": round(time.monotonic() - t_start, 1),
    }


def render(result: dict[str, Any]) -> str:
    p = result["protocol"]
    lines = [f"B13 api: {p['warmup']} warm-up + {p['iterations']} iterations; rotating order "
             f"({result['docker'] or 'no docker CLI'})",
             columns_table(result["tools"], "column"),
             ratios_line(result["ratios"]),
             f"wall time {result['wall_s']} s"]
    return "\n".join(lines)


def figures(result: dict[str, Any]) -> list[Figure]:
    """docker run through sbx's service beside the same through podman's, and beside sbx run without the API."""
    return compare("B13 docker run via API", result["tools"], "docker>sbx", ["docker>podman", "sbx"])
