"""B13: the Docker API's cost, ``docker run --rm IMG /bin/true`` through `sbx system service` vs `sbx run` directly,
and vs rootless podman's own service (``podman system service``), with the same image (B1's busybox root).

Columns, each run as the bench user by B1's timer (spawn + wait, rotating order):

* ``sbx``: ``sbx run --rm --network none IMG /bin/true`` (as B1);
* ``docker>sbx``: the real docker CLI, ``DOCKER_HOST`` = sbx's service (started once, ``--time 0``);
* ``docker>podman``: the same docker command against ``podman system service`` (runc, cgroupfs, overlay);
* ``podman``: ``podman run --rm --network none IMG /bin/true`` directly, for scale.

``docker>sbx`` − ``sbx`` is what the API adds (the CLI's start, its five requests, the server's work).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from typing import Any

from bench.common import BenchError, Table, User, drop_tree, exclusive, log, machine_facts, run, tail, write_json
from bench.start import (
    CMD_TIMEOUT,
    IMAGE_REF,
    PODMAN_REF,
    TIMER_SOURCE,
    WORK,
    Podman,
    Sbx,
    _entry,
    base_env,
    build_root,
)

COLUMNS = ("sbx", "docker>sbx", "docker>podman", "podman")


def bench_api(iterations: int, warmup: int) -> dict[str, Any]:
    with exclusive():
        return _bench_api(iterations, warmup)


def _service(user: User, argv: list[str], env: dict[str, str], sock, docker_env: dict[str, str]) -> subprocess.Popen:
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
    if shutil.which("docker") is None:
        raise BenchError("the docker CLI is not installed")
    t_start = time.monotonic()
    user = User.resolve()
    drop_tree(WORK)
    user.mkdir(WORK)
    _root, tar = build_root(user)
    archive = WORK / "busybox-image.tar"
    docker_env = base_env(user, {"DOCKER_CONFIG": str(user.mkdir(WORK / "docker-config", 0o700))})
    status = {column: "ok" for column in COLUMNS}
    argvs: dict[str, list[str]] = {}
    envs: dict[str, dict[str, str]] = {}
    services: list[subprocess.Popen] = []
    sbx, podman = Sbx(user), Podman(user)
    try:
        sbx.prepare(tar, archive)
        argvs["sbx"], envs["sbx"] = sbx.argv(), base_env(user, sbx.env)
        sbx_sock = WORK / "sbx-api.sock"
        services.append(_service(user, [*sbx.cmd, "system", "service", "--time", "0", f"unix://{sbx_sock}"],
                                 sbx.env, sbx_sock, docker_env))
        argvs["docker>sbx"] = ["docker", "-H", f"unix://{sbx_sock}", "run", "--rm", "--network", "none", IMAGE_REF,
                               "/bin/true"]
        envs["docker>sbx"] = docker_env
        try:
            podman.prepare(archive)
            argvs["podman"], envs["podman"] = podman.argv(), base_env(user, podman.env)
            podman_sock = WORK / "podman-api.sock"
            services.append(_service(user, [*podman.base(), "system", "service", "--time", "0",
                                            f"unix://{podman_sock}"], podman.env, podman_sock, docker_env))
            argvs["docker>podman"] = ["docker", "-H", f"unix://{podman_sock}", "run", "--rm", "--network", "none",
                                      PODMAN_REF, "/bin/true"]
            envs["docker>podman"] = docker_env
        except BenchError as error:
            for column in ("podman", "docker>podman"):
                if column not in argvs:
                    status[column] = f"unavailable: {error}"
            log(f"podman: unavailable: {error}")
        timer = WORK / "timer.py"
        timer.write_text(TIMER_SOURCE)
        timer.chmod(0o644)
        plan = {"columns": {c: {"argv": argvs[c], "env": envs[c]} for c in COLUMNS if c in argvs},
                "warmup": warmup, "iterations": iterations, "timeout": CMD_TIMEOUT}
        import json

        log(f"B13: {warmup} warm-up + {iterations} iterations of {', '.join(plan['columns'])} (rotating order)")
        cp = run(user.wrap(["/usr/bin/python3", "-I", "-S", str(timer)]), input=json.dumps(plan),
                 timeout=CMD_TIMEOUT * 3 + (warmup + iterations) * len(plan["columns"]) * 10, what="B13 timer")
        out = json.loads(cp.stdout)
        status.update(out["status"])
        samples = out["samples"]
    finally:
        for process in services:
            _stop(process)
        podman.cleanup()
    tools = {c: _entry(c, argvs.get(c), status[c], samples.get(c, []) if status[c] == "ok" else []) for c in COLUMNS}
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
        "docker": run(["docker", "--version"], check=False).stdout.strip(),
        "tools": tools,
        "ratios": ratios,
        "wall_s": round(time.monotonic() - t_start, 1),
    }


def render(result: dict[str, Any]) -> str:
    p = result["protocol"]
    lines = [f"B13 api: {p['warmup']} warm-up + {p['iterations']} iterations; rotating order ({result['docker']})"]
    table = Table(["column", "median ms", "p90 ms", "status"])
    for name, entry in result["tools"].items():
        table.add(name, entry.get("median_ms"), entry.get("p90_ms"), tail(entry["status"], 1)[:100])
    lines.append(table.render())
    lines.append("ratios: " + (", ".join(f"{k} = {v}" for k, v in result["ratios"].items()) or "none"))
    lines.append(f"wall time {result['wall_s']} s")
    return "\n".join(lines)


def main(iterations: int = 20, warmup: int = 2) -> dict[str, Any]:
    result = bench_api(iterations, warmup)
    path = write_json("api", result)
    print(render(result))
    print(f"wrote {path}")
    return result
