"""B9: seccomp. The filter's cost inside sbx, and the start-up delta it makes, beside podman's.

Two parts, both as the bench user:

* in-process, in sbx's own interpreter (``$SBX_BENCH_CMD``'s python): importing ``pyseccomp``; building the default
  profile into BPF (``sandbox.security.compiler.build``, native arch + i386 + x32); the same for Podman's profile
  (``/usr/share/containers/seccomp.json``) when installed; reading a cached filter (``compile_cached``, what a start
  does once the profile was compiled); and loading it (no_new_privs + seccomp(2) in a forked child, timed there);
* start-up, B1's command with and without the policy, interleaved by B1's timer: ``sbx run --rm --network none IMG
  /bin/true`` with the default profile and with ``--security-opt seccomp=unconfined``; rootless podman the same way
  with and without ``--security-opt seccomp=unconfined``.

Targets (BENCHMARKS.md): build + load ≤ 2 ms; start-up delta ≤ 3 ms. The summary's figures: sbx beside podman
(both with their default policy) and sbx beside itself unconfined (the filter's whole cost in a start).
"""

from __future__ import annotations

import json
import os
import shlex
import time
from typing import Any

from bench.common import (
    BenchError,
    Figure,
    Table,
    User,
    columns_table,
    compare,
    drop_tree,
    exclusive,
    interpreter_of,
    log,
    machine_facts,
    run,
    tail,
    timed_column,
)
from bench.start import MIN_ITERATIONS, MIN_WARMUP, WORK, Podman, Sbx, base_env, build_root, time_columns

TITLE = "B9: seccomp filter build + load in sbx; run --rm true with vs without the default policy, sbx and podman"
ORDER = 22  # place in `python -m bench` and its summary

COLUMNS = ("sbx", "sbx_unconfined", "podman", "podman_unconfined")

# Runs in sbx's interpreter as the bench user; prints one JSON object.
INPROCESS_SOURCE = r'''
import json, os, statistics, sys, tempfile, time

def median_ms(fn, n):
    xs = []
    for _ in range(n):
        t0 = time.perf_counter(); fn(); xs.append((time.perf_counter() - t0) * 1000)
    return {"median_ms": round(statistics.median(xs), 3), "min_ms": round(min(xs), 3), "n": n}

t0 = time.perf_counter()
import pyseccomp  # noqa: F401
import_ms = (time.perf_counter() - t0) * 1000
from sandbox.kernel import Kernel
from sandbox.kernel import constants as k
from sandbox.security import cache, capabilities, compiler, profile, sources

caps = capabilities.container_set()
out = {"import_pyseccomp_ms": round(import_ms, 2)}
default = profile.load(sources.locate("default"))
out["build_default"] = median_ms(lambda: compiler.build(default, caps), int(sys.argv[1]))
bpf = compiler.build(default, caps).bpf
out["default_instructions"] = len(bpf) // 8
podman_path = "/usr/share/containers/seccomp.json"
if os.path.exists(podman_path):
    podman = profile.load(podman_path)
    out["build_podman_profile"] = median_ms(lambda: compiler.build(podman, caps), int(sys.argv[1]))
    out["podman_profile_instructions"] = len(compiler.build(podman, caps).bpf) // 8
with tempfile.TemporaryDirectory() as cache_dir:
    from pathlib import Path
    def cached():
        return cache.compile_cached(sources.read_limited(sources.locate("default")), "default", caps, Path(cache_dir))
    cached()
    out["cached_read"] = median_ms(cached, 200)

def load_once():
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        kernel = Kernel()
        kernel.prctl(k.PR_SET_NO_NEW_PRIVS, 1)
        t = time.perf_counter(); kernel.seccomp_filter(bpf); ms = (time.perf_counter() - t) * 1000
        os.write(w, repr(ms).encode()); os._exit(0)
    os.close(w); value = float(os.read(r, 64)); os.close(r); os.waitpid(pid, 0)
    return value
loads = sorted(load_once() for _ in range(50))
out["load"] = {"median_ms": round(statistics.median(loads), 3), "min_ms": round(loads[0], 3), "n": len(loads)}
json.dump(out, sys.stdout)
'''


def measure(iterations: int, warmup: int, only: list[str] | None = None) -> dict[str, Any]:
    del only  # each column is half of a pair (with and without the policy): all four always run
    with exclusive():
        return _bench(max(MIN_ITERATIONS, iterations), max(MIN_WARMUP, warmup))


def _bench(iterations: int, warmup: int) -> dict[str, Any]:
    t_start = time.monotonic()
    user = User.resolve()
    drop_tree(WORK)
    user.mkdir(WORK)
    _root, tar = build_root(user)
    archive = WORK / "busybox-image.tar"
    sbx = Sbx(user)
    sbx.prepare(tar, archive)
    script = WORK / "inprocess.py"
    script.write_text(INPROCESS_SOURCE)
    os.chmod(script, 0o644)
    cp = run(user.wrap([interpreter_of(sbx.cmd), "-P", str(script), "20"], sbx.env), check=False, timeout=600)
    inprocess = json.loads(cp.stdout) if cp.returncode == 0 else {"status": f"failed: {cp.stderr[-400:]}"}

    argvs = {"sbx": sbx.argv()}
    argvs["sbx_unconfined"] = [*sbx.cmd, "run", "--rm", "--network", "none", "--security-opt", "seccomp=unconfined",
                               *sbx.argv()[len(sbx.cmd) + 4:]]
    envs = {"sbx": base_env(user, sbx.env), "sbx_unconfined": base_env(user, sbx.env)}
    status = {name: "ok" for name in COLUMNS}
    podman = Podman(user)
    try:
        podman.prepare(archive)
        argvs["podman"] = podman.argv()
        base = podman.base()
        argvs["podman_unconfined"] = [*base, "run", "--rm", "--network", "none", "--security-opt",
                                      "seccomp=unconfined", *podman.argv()[len(base) + 4:]]
        envs["podman"] = envs["podman_unconfined"] = base_env(user, podman.env)
    except BenchError as error:
        status["podman"] = status["podman_unconfined"] = f"unavailable: {error}"
        log(f"podman: unavailable: {error}")
    columns = {c: {"argv": argvs[c], "env": envs[c]} for c in COLUMNS if status[c] == "ok"}
    timed = time_columns(user, columns, warmup, iterations, "B9")
    status.update(timed["status"])
    tools = {c: timed_column(c, argvs.get(c), status[c], timed["samples"].get(c, [])) for c in COLUMNS}
    podman.cleanup()
    drop_tree(WORK)

    def delta(a: str, b: str) -> float | None:
        if "median_ms" in tools[a] and "median_ms" in tools[b]:
            return round(tools[a]["median_ms"] - tools[b]["median_ms"], 2)
        return None

    return {
        "benchmark": "B9",
        "what": "seccomp: the filter's build, cached read and load inside sbx; run --rm true with and without it",
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "protocol": {"warmup": warmup, "iterations": iterations, "order": "rotating",
                     "timing": "B1's timer: perf_counter around spawn + wait, as the bench user"},
        "inprocess": inprocess,
        "tools": tools,
        "sbx_seccomp_delta_ms": delta("sbx", "sbx_unconfined"),
        "podman_seccomp_delta_ms": delta("podman", "podman_unconfined"),
        "machine": machine_facts(),
        "commands": {c: shlex.join(argv) for c, argv in argvs.items()},
        "wall_s": round(time.monotonic() - t_start, 1),
    }


INPROCESS_ROWS = (
    ("build_default", "compile sbx's default.json (x86_64 + i386 + x32)"),
    ("build_podman_profile", "compile Podman's seccomp.json"),
    ("cached_read", "read default.json, hash it, read the cached BPF (a start's cost)"),
    ("load", "seccomp(2) of the default filter"),
)


def render(result: dict[str, Any]) -> str:
    p = result["protocol"]
    lines = [f"B9 seccomp: {p['warmup']} warm-up + {p['iterations']} iterations; rotating order"]
    inprocess = result["inprocess"]
    if "status" in inprocess:
        lines.append(f"in-process: {tail(inprocess['status'], 2)}")
    else:
        table = Table(["in sbx's interpreter", "median ms", "note"])
        for key, note in INPROCESS_ROWS:
            if isinstance(inprocess.get(key), dict):
                table.add(key, f"{inprocess[key]['median_ms']:.3f}", note)
        if "import_pyseccomp_ms" in inprocess:
            table.add("import pyseccomp", f"{inprocess['import_pyseccomp_ms']:.2f}",
                      "avoided when the filter is cached")
        lines.append(table.render())
    lines.append(columns_table(result["tools"], "run --rm true"))
    lines.append(f"start-up delta (default - unconfined): sbx {result['sbx_seccomp_delta_ms']} ms, "
                 f"podman {result['podman_seccomp_delta_ms']} ms")
    lines.append(f"wall time {result['wall_s']} s")
    return "\n".join(lines)


def figures(result: dict[str, Any]) -> list[Figure]:
    """sbx beside podman, both with their default policy, and beside itself without one (the filter's cost)."""
    tools = result["tools"]
    return (compare("B9 run, default seccomp", tools, "sbx", ["podman"])
            + compare("B9 seccomp on/off (sbx)", tools, "sbx", ["sbx_unconfined"]))
