"""The bench harness's summary: discovery of benchmark modules and the side-by-side figures (no benchmark runs)."""

from __future__ import annotations

import pytest

from bench.__main__ import discover
from bench.common import Figure, compare, figures_table


def test_every_benchmark_module_is_found_in_order() -> None:
    found = discover()
    assert list(found)[:2] == ["start", "pull"]
    assert {"start", "pull", "unpack", "rootfs", "lifecycle"} <= set(found)
    orders = [module.ORDER for module in found.values()]
    assert orders == sorted(orders)


def test_compare_leaves_out_failed_and_absent_columns() -> None:
    columns = {
        "sbx": {"status": "ok", "median_s": 0.05},
        "podman": {"status": "ok", "median_s": 0.1},
        "bwrap": {"status": "failed: bwrap: not installed"},
    }
    found = compare("B1 run --rm true", columns, "sbx", ["podman", "bwrap", "absent"])
    assert found == [Figure("B1 run --rm true", "sbx", "podman", 0.05, 0.1)]
    assert found[0].ratio == pytest.approx(0.5)
    assert compare("B1", {"sbx": {"status": "failed"}, "podman": {"median_s": 0.1}}, "sbx", ["podman"]) == []


def test_each_module_reads_its_own_result_shape() -> None:
    """figures() of each module against the shape its measure() writes (columns keyed as in its JSON)."""
    ok = {"median_s": 0.2}
    found = discover()
    assert [f.baseline for f in found["start"].figures({"tools": {"sbx": ok, "podman": ok, "bwrap": ok}})] == [
        "podman", "bwrap"]
    assert len(found["unpack"].figures({"cases": {"image": {"tools": {"sbx": ok, "tar": ok}}}})) == 1
    assert len(found["rootfs"].figures({"drivers": {"overlay": ok, "podman": ok, "copy": ok, "cp -a": ok}})) == 2
    lifecycle = {"b2": {"tools": {"sbx": ok, "podman": ok}}, "b3": {"tools": {"sbx ps": ok, "podman ps": ok}},
                 "b11": {"tools": {"sbx": ok, "podman": ok}}}
    assert len(found["lifecycle"].figures(lifecycle)) == 3


def test_table_shows_medians_and_ratio() -> None:
    text = figures_table([Figure("B4 pull", "sbx", "podman", 2.5, 5.0)])
    assert "2.50 s" in text and "5.00 s" in text and "0.50" in text
