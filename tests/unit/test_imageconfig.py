"""The image configuration: diff_ids and the run settings sbx reads, type-checked (TESTPLAN 15, 19, 20)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox.errors import InvalidManifest
from sandbox.oci.digest import Digest
from sandbox.oci.imageconfig import ImageConfig
from sandbox.oci.manifest import MAX_MANIFEST_BYTES

D1 = "sha256:" + "a" * 64
D2 = "sha256:" + "b" * 64


def config(**overrides) -> dict:
    doc = {
        "architecture": "amd64",
        "os": "linux",
        "created": "2024-01-02T03:04:05.123456789Z",
        "config": {
            "Env": ["PATH=/usr/bin:/bin", "LANG=C.UTF-8"],
            "Entrypoint": ["/docker-entrypoint.sh"],
            "Cmd": ["nginx", "-g", "daemon off;"],
            "WorkingDir": "/srv",
            "User": "101:101",
            "StopSignal": "SIGQUIT",
            "ExposedPorts": {"80/tcp": {}, "443/tcp": {}, "53/udp": {}},
            "Volumes": {"/var/cache": {}, "/data": {}},
            "Labels": {"maintainer": "someone"},
        },
        "rootfs": {"type": "layers", "diff_ids": [D1, D2]},
        "history": [{"created_by": "ADD file"}],
    }
    doc.update(overrides)
    return doc


def parse(doc) -> ImageConfig:
    return ImageConfig.parse(json.dumps(doc).encode())


def test_full_config():
    parsed = parse(config())
    assert parsed.os == "linux" and parsed.architecture == "amd64" and parsed.variant is None
    assert parsed.created == "2024-01-02T03:04:05.123456789Z"
    assert parsed.diff_ids == (Digest.parse(D1), Digest.parse(D2))
    assert parsed.env == ("PATH=/usr/bin:/bin", "LANG=C.UTF-8")
    assert parsed.entrypoint == ("/docker-entrypoint.sh",)
    assert parsed.cmd == ("nginx", "-g", "daemon off;")
    assert parsed.working_dir == "/srv"
    assert parsed.user == "101:101"
    assert parsed.stop_signal == "SIGQUIT"
    assert parsed.exposed_ports == ("443/tcp", "53/udp", "80/tcp")  # sorted
    assert parsed.volumes == ("/data", "/var/cache")
    assert parsed.labels == {"maintainer": "someone"}
    assert parsed.raw["history"] == [{"created_by": "ADD file"}]  # kept whole for inspect


def test_minimal_config_defaults():
    parsed = parse({"rootfs": {"type": "layers", "diff_ids": []}})
    assert parsed.os == "linux"
    assert parsed.architecture == ""
    assert parsed.variant is None and parsed.created is None
    assert parsed.diff_ids == ()
    assert parsed.env == ()
    assert parsed.entrypoint is None and parsed.cmd is None
    assert parsed.working_dir == "" and parsed.user == "" and parsed.stop_signal is None
    assert parsed.exposed_ports == () and parsed.volumes == () and parsed.labels == {}


def test_nulls_are_defaults():
    # Docker writes "Env": null, "Cmd": null, "config": null in some configs
    parsed = parse(
        config(
            variant=None,
            created=None,
            config={"Env": None, "Cmd": None, "Entrypoint": None, "ExposedPorts": None, "Labels": None, "User": None},
        )
    )
    assert parsed.env == () and parsed.cmd is None and parsed.entrypoint is None
    assert parsed.exposed_ports == () and parsed.labels == {} and parsed.user == ""
    assert parse(config(config=None)).cmd is None


def test_empty_entrypoint_is_not_absent():
    parsed = parse(config(config={"Entrypoint": [], "Cmd": ["sh"]}))
    assert parsed.entrypoint == ()
    assert parsed.cmd == ("sh",)


def test_variant():
    assert parse(config(architecture="arm64", variant="v8")).variant == "v8"


def test_diff_ids_in_order_and_repeated():
    parsed = parse(config(rootfs={"type": "layers", "diff_ids": [D2, D1, D2]}))
    assert [str(d) for d in parsed.diff_ids] == [D2, D1, D2]


@pytest.mark.parametrize(
    "rootfs",
    [
        None,
        [],
        "layers",
        {},
        {"type": "layer", "diff_ids": [D1]},
        {"type": "layers"},
        {"type": "layers", "diff_ids": None},
        {"type": "layers", "diff_ids": D1},
        {"type": "layers", "diff_ids": {"0": D1}},
        {"type": "layers", "diff_ids": [D1, 5]},
        {"type": "layers", "diff_ids": [D1, None]},
        {"type": "layers", "diff_ids": ["sha256:../../x"]},
        {"type": "layers", "diff_ids": ["sha256:" + "A" * 64]},
        {"type": "layers", "diff_ids": ["sha256:" + "a" * 63]},
        {"type": "layers", "diff_ids": ["md5:" + "a" * 32]},
        {"type": "layers", "diff_ids": [[D1]]},
    ],
)
def test_bad_rootfs(rootfs):
    doc = config()
    if rootfs is None:
        del doc["rootfs"]
    else:
        doc["rootfs"] = rootfs
    with pytest.raises(InvalidManifest):
        parse(doc)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("os", 1),
        ("architecture", ["amd64"]),
        ("variant", 8),
        ("created", 1704164645),
        ("config", "Cmd=sh"),
        ("config", ["sh"]),
    ],
)
def test_bad_top_level_types(key, value):
    with pytest.raises(InvalidManifest):
        parse(config(**{key: value}))


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("Env", "PATH=/bin"),
        ("Env", ["A=1", 2]),
        ("Entrypoint", "/bin/sh -c"),
        ("Cmd", [["sh"]]),
        ("Cmd", {"0": "sh"}),
        ("WorkingDir", ["/srv"]),
        ("User", 0),
        ("StopSignal", 15),
        ("ExposedPorts", ["80/tcp"]),
        ("ExposedPorts", "80/tcp"),
        ("Volumes", ["/data"]),
        ("Labels", ["a=b"]),
        ("Labels", {"a": 1}),
        ("Labels", {"a": None}),
    ],
)
def test_bad_config_field_types(key, value):
    with pytest.raises(InvalidManifest, match=key):
        parse(config(config={key: value}))


@pytest.mark.parametrize("body", [b"", b"null", b"[]", b"{", b"\xff", b"[" * 100_000, b'{"rootfs": 1'])
def test_not_a_json_object(body):
    with pytest.raises(InvalidManifest):
        ImageConfig.parse(body)


def test_oversized_config_refused():
    doc = config(history=[{"comment": "x" * MAX_MANIFEST_BYTES}])
    with pytest.raises(InvalidManifest, match="larger than"):
        parse(doc)


def test_deeply_nested_config_refused():
    body = b'{"rootfs": {"type": "layers", "diff_ids": []}, "config": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with pytest.raises(InvalidManifest):
        ImageConfig.parse(body)


def test_raw_is_not_compared():
    assert parse(config()) == parse(config(history=[]))


_json = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=8), st.just(D1)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=12,
)
_config_keys = st.sampled_from(
    ["Env", "Cmd", "Entrypoint", "WorkingDir", "User", "StopSignal", "ExposedPorts", "Volumes", "Labels"]
)


@settings(max_examples=150)
@given(
    st.dictionaries(st.sampled_from(["os", "architecture", "variant", "created", "rootfs", "config"]), _json),
    st.dictionaries(_config_keys, _json),
    st.one_of(st.just([D1]), _json),
)
def test_arbitrary_configs_raise_only_invalid_manifest(top, inner, diff_ids):
    doc = {"rootfs": {"type": "layers", "diff_ids": diff_ids}, "config": inner, **top}
    try:
        parsed = parse(doc)
    except InvalidManifest:
        return
    assert all(isinstance(d, Digest) for d in parsed.diff_ids)
    assert all(isinstance(e, str) for e in parsed.env)
