"""python -m bench [start|pull|unpack|rootfs|lifecycle|api|all|list] [-n ITERATIONS] [--warmup N]
[--tools sbx,podman,...]

Runs the benchmarks present in this package, writes bench/results/<name>.json and prints a short table for each.
Exits 0 when a tool (sbx included) is missing or fails: it is reported as unavailable/failed in the table and JSON.
Exits 1 only when the harness itself cannot run (for instance no registry or no image could be built).
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback

from bench.common import BenchError

BENCHMARKS = {
    "start": "B1: sbx run --rm --network none IMG /bin/true vs rootless podman run vs bwrap, and the floor",
    "pull": "B4: sbx pull vs rootless podman pull vs skopeo copy + umoci unpack --rootless",
    "unpack": "B5: unpack the image's layers (and 20,000 small files) from local blobs: sbx vs tar -xzf",
    "rootfs": "B6: image present -> root filesystem ready, per driver: overlay, fuse-overlayfs, copy vs cp -a, podman",
    "lifecycle": "B2 exec, B3 ps -a/--version, B10 helper memory, B11 rm + leaks, B12 50 parallel run -d vs podman",
    "api": "B13: docker run --rm IMG true through sbx's API service vs sbx run vs podman's service",
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description="sbx benchmarks (see docs/BENCHMARKS.md)")
    p.add_argument("which", nargs="?", default="all", choices=[*BENCHMARKS, "all", "list"])
    p.add_argument("-n", "--iterations", type=int, default=5, help="measured iterations per tool (default 5)")
    p.add_argument("--warmup", type=int, default=1, help="warm-up iterations per tool (default 1)")
    p.add_argument(
        "--tools",
        default=os.environ.get("SBX_BENCH_TOOLS", ""),
        help="comma-separated subset, e.g. sbx,podman (default: all the benchmark's columns)",
    )
    args = p.parse_args(argv)

    if args.which == "list":
        for name, what in BENCHMARKS.items():
            print(f"{name:8} {what}")
        return 0
    names = list(BENCHMARKS) if args.which == "all" else [args.which]
    rc = 0
    for name in names:
        try:
            if name == "pull":
                from bench import pull

                only = [t.strip() for t in args.tools.split(",") if t.strip()] or None
                pull.main(iterations=args.iterations, warmup=args.warmup, only=only)
            elif name == "unpack":
                from bench import unpack

                only = [t.strip() for t in args.tools.split(",") if t.strip()] or None
                unpack.main(iterations=args.iterations, warmup=args.warmup, only=only)
            elif name == "start":
                from bench import start

                only = [t.strip() for t in args.tools.split(",") if t.strip()] or None
                start.main(iterations=args.iterations, warmup=args.warmup, only=only)
            elif name == "rootfs":
                from bench import rootfs

                only = [t.strip() for t in args.tools.split(",") if t.strip()] or None
                rootfs.main(iterations=args.iterations, warmup=args.warmup, only=only)
            elif name == "lifecycle":
                from bench import lifecycle

                lifecycle.main(iterations=args.iterations, warmup=args.warmup)
            elif name == "api":
                from bench import api

                api.main(iterations=max(args.iterations, 20), warmup=max(args.warmup, 2))
        except BenchError as e:
            print(f"[bench] {name}: cannot run: {e}", file=sys.stderr)
            rc = 1
        except KeyboardInterrupt:
            print(f"[bench] {name}: interrupted", file=sys.stderr)
            return 130
        except Exception:  # noqa: BLE001 - report and go on with the next benchmark
            traceback.print_exc()
            rc = 1
    return rc


if __name__ == "__main__":
    sys.exit(main())
