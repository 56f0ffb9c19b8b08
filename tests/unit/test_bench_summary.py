"""The bench harness's summary: discovery of benchmark modules and the side-by-side figures (no benchmark runs)."""

from __future__ import annotations

import pytest

from bench.__main__ import discover
from bench.common import Figure, compare, figures_table, timed_column


def test_every_benchmark_module_is_found_in_order() -> None:
    found = discover()
    assert list(found)[:2] == ["start", "pull"]
    assert {"start", "pull", "unpack", "rootfs", "lifecycle", "net", "seccomp", "api"} <= set(found)
    orders = [module.ORDER for module in found.values()]
    assert orders == sorted(orders)
    assert list(found)[-3:] == ["net", "seccomp", "api"]


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
    seccomp = {"tools": {"sbx": ok, "sbx_unconfined": ok, "podman": ok, "podman_unconfined": ok}}
    assert [f.baseline for f in found["seccomp"].figures(seccomp)] == ["podman", "sbx_unconfined"]
    api = {"tools": {"sbx": ok, "docker>sbx": ok, "docker>podman": ok, "podman": ok}}
    assert [(f.sbx, f.baseline) for f in found["api"].figures(api)] == [
        ("docker>sbx", "docker>podman"), ("docker>sbx", "sbx")]


def test_net_figures_are_times_so_below_one_means_sbx_is_faster() -> None:
    """B1n's medians are in ms (summary_ms) and B8's are Gbit/s: as figures both become seconds, so a throughput
    twice the raw helper's is a ratio of 0.5, as a time half the baseline's would be."""
    net = discover()["net"]
    result = {
        "b1n": {"sbx slirp4netns": {"status": "ok", "summary_ms": {"median": 100.0}},
                "podman slirp4netns": {"status": "ok", "summary_ms": {"median": 200.0}},
                "podman pasta": {"status": "failed: exit 125: network not found"}},
        "b8": {"sbx pasta": {"status": "ok", "gbit_s": {"median": 8.0}},
               "raw pasta": {"status": "ok", "gbit_s": {"median": 4.0}},
               "host loopback": {"status": "ok", "gbit_s": {"median": 16.0}},
               "sbx slirp4netns": {"status": "failed: nothing listens"}},
    }
    found = {(f.sbx, f.baseline): f for f in net.figures(result)}
    assert set(found) == {("sbx slirp4netns", "podman slirp4netns"), ("sbx pasta", "raw pasta"),
                          ("sbx pasta", "host loopback")}
    assert found[("sbx slirp4netns", "podman slirp4netns")].sbx_s == pytest.approx(0.1)
    assert found[("sbx pasta", "raw pasta")].ratio == pytest.approx(0.5)
    assert found[("sbx pasta", "host loopback")].ratio == pytest.approx(2.0)


def test_new_modules_render_their_results() -> None:
    """render() of B9 and B13 against the shape their measure() returns (columns from common.timed_column)."""
    found = discover()
    ok = timed_column("x", ["x"], "ok", [0.2, 0.3])
    failed = timed_column("podman", None, "unavailable: podman is not installed", [])
    protocol = {"warmup": 3, "iterations": 30}
    seccomp = {"protocol": protocol, "wall_s": 60.0,
               "inprocess": {"build_default": {"median_ms": 40.5}, "load": {"median_ms": 0.5}},
               "tools": {"sbx": ok, "sbx_unconfined": ok, "podman": failed, "podman_unconfined": failed},
               "sbx_seccomp_delta_ms": 0.0, "podman_seccomp_delta_ms": None}
    text = found["seccomp"].render(seccomp)
    assert "40.500" in text and "250.0" in text and "unavailable: podman is not installed" in text
    api = {"protocol": protocol, "wall_s": 60.0, "docker": None, "ratios": {},
           "tools": {"sbx": ok, "docker>sbx": failed, "docker>podman": failed, "podman": failed}}
    assert "no docker CLI" in found["api"].render(api)
    assert found["api"].figures(api) == []


def test_table_shows_medians_and_ratio() -> None:
    text = figures_table([Figure("B4 pull", "sbx", "podman", 2.5, 5.0)])
    assert "2.50 s" in text and "5.00 s" in text and "0.50" in text
