"""The chart of `make bench`: one horizontal bar per figure, sbx's median over the baseline's, on a log scale.

A bar left of the 1x line means sbx is faster than that baseline. Needs matplotlib (the `bench` extra; installed
into .venv by scripts/bench-setup.sh); imported only to draw.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: write a file
import matplotlib.patches  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402

from bench.common import Figure, ratio_text  # noqa: E402

COLORS = {"podman": "#4c72b0", "bwrap": "#dd8452"}
OTHER = "#8c8c8c"


def _color(baseline: str) -> str:
    return next((color for key, color in COLORS.items() if key in baseline), OTHER)  # docker>podman: podman


def draw(figures: list[Figure], path: Path, machine: dict[str, Any]) -> Path:
    rows = list(reversed(figures))  # first figure at the top
    height = max(2.5, 0.42 * len(rows) + 1.4)
    fig, ax = plt.subplots(figsize=(9, height), dpi=120)
    labels = [f"{f.figure}  vs {f.baseline}" for f in rows]
    ratios = [f.ratio for f in rows]
    # each bar grows from 1x towards the ratio: leftwards when sbx is faster, rightwards when it is slower
    ax.barh(range(len(rows)), [r - 1 for r in ratios], left=1, color=[_color(f.baseline) for f in rows], height=0.6)
    ax.set_yticks(range(len(rows)), labels, fontsize=9)
    ax.set_xscale("log")
    ax.axvline(1.0, color="black", linewidth=1)
    for y, ratio in enumerate(ratios):
        faster = ratio < 1
        ax.text(ratio / 1.06 if faster else ratio * 1.06, y, f"{ratio_text(ratio)}x", va="center",
                ha="right" if faster else "left", fontsize=8)
    if ratios:  # room for the labels at both ends
        ax.set_xlim(min(0.3, min(ratios) / 4), max(3.0, max(ratios) * 4))
    used = {_color(f.baseline): f.baseline.split()[0] for f in rows}
    names = {COLORS["podman"]: "rootless podman", COLORS["bwrap"]: "bubblewrap", OTHER: "floor / other tool"}
    ax.legend(handles=[matplotlib.patches.Patch(color=color, label=names[color]) for color in names if color in used],
              loc="lower right", fontsize=8)
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _: f"{x:g}x"))
    ax.set_xlabel("sbx median / baseline median (log scale; left of 1x: sbx is faster)")
    # over the whole figure: centred over the axes alone it ran off the right edge when the labels were long
    fig.suptitle(f"sbx vs rootless podman (runc) and bubblewrap - {machine.get('cpus')} CPUs, "
                 f"kernel {machine.get('kernel')}", fontsize=10)
    ax.grid(axis="x", which="both", alpha=0.25)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
