"""python -m bench [NAME|all|list|summary] [-n ITERATIONS] [--warmup N] [--tools sbx,podman,...]

Runs the benchmarks of this package, each writing bench/results/<name>.json and printing its own table; then
(for `all`, what `make bench` runs) writes bench/results/latest.json with every result, the table of medians and
ratios sbx / baseline (also printed), and bench/results/latest.png, a chart of those ratios. `summary` writes those
three again from the results/<name>.json already there, measuring nothing.

A benchmark is any module of this package that defines TITLE, ORDER, measure(iterations, warmup, only) -> dict,
render(result) -> str and figures(result) -> list[Figure] (see bench/README.md); it is found without registration.
Exits 0 when a tool (sbx included) is missing or fails: it is reported as unavailable/failed in the table and JSON.
Exits 1 only when the harness itself cannot run (for instance no registry or no image could be built).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pkgutil
import sys
import time
import traceback
from types import ModuleType

import bench
from bench.common import (
    RESULTS_DIR,
    BenchError,
    Figure,
    figures_table,
    machine_facts,
    report,
    tool_versions,
    write_json,
)

NOT_BENCHMARKS = {"common", "images", "chart"}


def discover() -> dict[str, ModuleType]:
    """Every benchmark module of the package, in ORDER."""
    found = {}
    for info in pkgutil.iter_modules(bench.__path__):
        if info.name.startswith("_") or info.name in NOT_BENCHMARKS:
            continue
        module = importlib.import_module(f"bench.{info.name}")
        if all(hasattr(module, attr) for attr in ("TITLE", "ORDER", "measure", "render", "figures")):
            found[info.name] = module
    return dict(sorted(found.items(), key=lambda item: (item[1].ORDER, item[0])))


def summarize(results: dict, figures: list[Figure]) -> None:
    """bench/results/latest.json (every result and the figures), the table on stdout, the chart beside it."""
    latest = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine_facts(),
        "versions": tool_versions(),
        "figures": [f.as_dict() for f in figures],
        "benchmarks": results,
    }
    path = write_json("latest", latest)
    print("\n== sbx beside its baselines (medians of one run, interleaved; ratio < 1: sbx is faster)")
    print(figures_table(figures))
    print(f"wrote {path}")
    try:
        from bench.chart import draw
    except ImportError as error:
        print(f"[bench] no chart: {error} (scripts/bench-setup.sh installs matplotlib)", file=sys.stderr)
        return
    print(f"wrote {draw(figures, RESULTS_DIR / 'latest.png', latest['machine'])}")


def main(argv: list[str] | None = None) -> int:
    benchmarks = discover()
    p = argparse.ArgumentParser(prog="python -m bench", description="sbx benchmarks (see bench/README.md)")
    p.add_argument("which", nargs="?", default="all", choices=[*benchmarks, "all", "list", "summary"])
    p.add_argument("-n", "--iterations", type=int, default=5, help="measured iterations per tool (default 5; "
                   "start-up figures take at least 30)")
    p.add_argument("--warmup", type=int, default=1, help="warm-up iterations per tool (default 1)")
    p.add_argument(
        "--tools",
        default=os.environ.get("SBX_BENCH_TOOLS", ""),
        help="comma-separated subset, e.g. sbx,podman (default: all the benchmark's columns)",
    )
    args = p.parse_args(argv)

    if args.which == "list":
        for name, module in benchmarks.items():
            print(f"{name:10} {module.TITLE}")
        return 0
    if args.which == "summary":  # again from the results/<name>.json of earlier runs, measuring nothing
        results = {name: json.loads((RESULTS_DIR / f"{name}.json").read_text()) for name in benchmarks
                   if (RESULTS_DIR / f"{name}.json").exists()}
        summarize(results, [f for name, result in results.items() for f in benchmarks[name].figures(result)])
        return 0
    names = list(benchmarks) if args.which == "all" else [args.which]
    only = [t.strip() for t in args.tools.split(",") if t.strip()] or None
    rc = 0
    results: dict = {}
    figures: list[Figure] = []
    for name in names:
        module = benchmarks[name]
        try:
            result = module.measure(iterations=args.iterations, warmup=args.warmup, only=only)
            report(name, result, module.render)
            results[name] = result
            figures += module.figures(result)
        except BenchError as e:
            print(f"[bench] {name}: cannot run: {e}", file=sys.stderr)
            rc = 1
        except KeyboardInterrupt:
            print(f"[bench] {name}: interrupted", file=sys.stderr)
            return 130
        except Exception:  # noqa: BLE001 - report and go on with the next benchmark
            traceback.print_exc()
            rc = 1
    if args.which == "all":
        summarize(results, figures)
    return rc


if __name__ == "__main__":
    sys.exit(main())
