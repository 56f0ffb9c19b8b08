"""Strict manifest and index parsing (TESTPLAN 16, 18, 19, 20) and platform choice."""

from __future__ import annotations

import json
import platform as host_platform

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox.errors import InvalidManifest, PlatformNotFound
from sandbox.oci import mediatypes as mt
from sandbox.oci.digest import Digest
from sandbox.oci.manifest import (
    MAX_LAYERS,
    MAX_MANIFEST_BYTES,
    Descriptor,
    Index,
    Manifest,
    Platform,
    load_json,
    parse_document,
)

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
D3 = "sha256:" + "3" * 64
D4 = "sha256:" + "4" * 64


def descriptor(media_type: str, digest: str = D1, size: int = 10, **extra) -> dict:
    return {"mediaType": media_type, "digest": digest, "size": size, **extra}


def image(media_type: str | None = mt.OCI_MANIFEST, *, layers=None, config=None, **extra) -> dict:
    doc: dict = {"schemaVersion": 2}
    if media_type is not None:
        doc["mediaType"] = media_type
    doc["config"] = config if config is not None else descriptor(mt.OCI_CONFIG, D1, 1469)
    doc["layers"] = layers if layers is not None else [descriptor(mt.OCI_LAYER_GZIP, D2, 2_000_000)]
    doc.update(extra)
    return doc


def index(media_type: str | None = mt.OCI_INDEX, entries=None, **extra) -> dict:
    doc: dict = {"schemaVersion": 2}
    if media_type is not None:
        doc["mediaType"] = media_type
    if entries is None:
        entries = [
            descriptor(mt.OCI_MANIFEST, D1, 500, platform={"os": "linux", "architecture": "amd64"}),
            descriptor(mt.OCI_MANIFEST, D2, 501, platform={"os": "linux", "architecture": "arm64", "variant": "v8"}),
        ]
    doc["manifests"] = entries
    doc.update(extra)
    return doc


def raw(doc) -> bytes:
    return json.dumps(doc).encode()


def entry(digest: str, os: str, arch: str, variant: str | None = None, media_type: str = mt.OCI_MANIFEST) -> dict:
    plat = {"os": os, "architecture": arch}
    if variant:
        plat["variant"] = variant
    return descriptor(media_type, digest, 100, platform=plat)


# --- the four kinds ----------------------------------------------------------------------------------------------


def test_docker_v2s2_manifest():
    doc = {
        "schemaVersion": 2,
        "mediaType": mt.DOCKER_MANIFEST,
        "config": descriptor(mt.DOCKER_CONFIG, D1, 1469),
        "layers": [descriptor(mt.DOCKER_LAYER_GZIP, D2, 3_000_000), descriptor(mt.DOCKER_LAYER_GZIP, D3, 32)],
    }
    parsed = parse_document(raw(doc), mt.DOCKER_MANIFEST)
    assert isinstance(parsed, Manifest)
    assert parsed.media_type == mt.DOCKER_MANIFEST
    assert parsed.config == Descriptor(mt.DOCKER_CONFIG, Digest.parse(D1), 1469)
    assert [str(layer.digest) for layer in parsed.layers] == [D2, D3]
    assert [layer.size for layer in parsed.layers] == [3_000_000, 32]


def test_oci_manifest_with_every_layer_kind_and_annotations():
    layers = [descriptor(media_type, D2, 5) for media_type in mt.LAYER_COMPRESSION]
    layers[0]["annotations"] = {"org.opencontainers.image.title": "x"}
    parsed = parse_document(raw(image(layers=layers)), mt.OCI_MANIFEST)
    assert isinstance(parsed, Manifest)
    assert parsed.media_type == mt.OCI_MANIFEST
    assert [layer.media_type for layer in parsed.layers] == list(mt.LAYER_COMPRESSION)
    assert parsed.layers[0].annotations == {"org.opencontainers.image.title": "x"}


def test_oci_manifest_without_media_type_or_content_type():
    parsed = parse_document(raw(image(None)))
    assert isinstance(parsed, Manifest) and parsed.media_type == mt.OCI_MANIFEST


def test_media_type_taken_from_content_type_when_the_document_has_none():
    doc = image(None, config=descriptor(mt.DOCKER_CONFIG), layers=[descriptor(mt.DOCKER_LAYER_GZIP, D2)])
    parsed = parse_document(raw(doc), mt.DOCKER_MANIFEST + "; charset=utf-8")
    assert parsed.media_type == mt.DOCKER_MANIFEST


def test_docker_manifest_list():
    doc = index(
        mt.DOCKER_MANIFEST_LIST,
        [
            entry(D1, "linux", "amd64", media_type=mt.DOCKER_MANIFEST),
            entry(D2, "linux", "arm", "v7", mt.DOCKER_MANIFEST),
        ],
    )
    parsed = parse_document(raw(doc), mt.DOCKER_MANIFEST_LIST)
    assert isinstance(parsed, Index)
    assert parsed.media_type == mt.DOCKER_MANIFEST_LIST
    assert [d.platform for d in parsed.manifests] == [Platform("linux", "amd64"), Platform("linux", "arm", "v7")]
    assert [str(d.digest) for d in parsed.manifests] == [D1, D2]


def test_oci_index_defaults_without_media_type():
    parsed = parse_document(raw(index(None)))
    assert isinstance(parsed, Index) and parsed.media_type == mt.OCI_INDEX
    assert parsed.manifests[1].platform == Platform("linux", "arm64", "v8")


def test_index_entry_without_platform():
    parsed = parse_document(raw(index(entries=[descriptor(mt.OCI_MANIFEST, D1)])), mt.OCI_INDEX)
    assert parsed.manifests[0].platform is None


def test_descriptor_to_json_round_trip():
    plat = {"os": "linux", "architecture": "arm64", "variant": "v8"}
    original = descriptor(mt.OCI_MANIFEST, D1, 7, platform=plat, annotations={"a": "b"})
    parsed = parse_document(raw(index(entries=[original])), mt.OCI_INDEX)
    assert parsed.manifests[0].to_json() == original
    bare = Descriptor(mt.OCI_CONFIG, Digest.parse(D2), 3)
    assert bare.to_json() == {"mediaType": mt.OCI_CONFIG, "digest": D2, "size": 3}


def test_content_type_parameters_and_case_are_ignored():
    parsed = parse_document(raw(image()), "Application/VND.oci.image.manifest.v1+json ; charset=utf-8")
    assert isinstance(parsed, Manifest) and parsed.media_type == mt.OCI_MANIFEST
    # normalised, not skipped: the same spelling of a type that disagrees is still caught
    with pytest.raises(InvalidManifest, match="disagrees with Content-Type"):
        parse_document(raw(image()), "Application/VND.oci.image.INDEX.v1+json ; charset=utf-8")


def test_unrelated_content_type_is_not_a_disagreement():
    # some registries answer application/json or octet-stream; the document's own type then decides
    assert isinstance(parse_document(raw(image()), "application/json"), Manifest)
    assert isinstance(parse_document(raw(index()), "application/octet-stream"), Index)


# --- ambiguity (TESTPLAN 18) --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "doc",
    [
        image(manifests=[entry(D3, "linux", "amd64")]),
        index(layers=[descriptor(mt.OCI_LAYER_GZIP, D3)]),
        index(config=descriptor(mt.OCI_CONFIG, D3)),
        index(None, layers=[]),
    ],
)
def test_both_manifests_and_layers_is_ambiguous(doc):
    with pytest.raises(InvalidManifest, match="ambiguous"):
        parse_document(raw(doc), doc.get("mediaType", mt.OCI_INDEX))
    with pytest.raises(InvalidManifest, match="ambiguous"):
        parse_document(raw(doc))


@pytest.mark.parametrize(
    ("doc", "content_type"),
    [
        (image(mt.OCI_MANIFEST), mt.DOCKER_MANIFEST),
        (image(mt.OCI_MANIFEST), mt.OCI_INDEX),
        (image(mt.DOCKER_MANIFEST), mt.OCI_MANIFEST),
        (index(mt.OCI_INDEX), mt.DOCKER_MANIFEST_LIST),
        (index(mt.DOCKER_MANIFEST_LIST), mt.OCI_MANIFEST),
        (image("application/vnd.example+json"), mt.OCI_MANIFEST),
    ],
)
def test_media_type_disagreeing_with_content_type(doc, content_type):
    with pytest.raises(InvalidManifest, match="disagrees with Content-Type"):
        parse_document(raw(doc), content_type)


def test_index_shaped_document_with_image_content_type():
    with pytest.raises(InvalidManifest, match="has 'manifests'"):
        parse_document(raw(index(None)), mt.OCI_MANIFEST)


def test_image_shaped_document_with_index_content_type():
    with pytest.raises(InvalidManifest, match="no 'manifests'"):
        parse_document(raw(image(None)), mt.OCI_INDEX)
    with pytest.raises(InvalidManifest, match="no 'manifests'"):
        parse_document(raw(image(mt.DOCKER_MANIFEST_LIST)))


def test_index_with_image_media_type():
    with pytest.raises(InvalidManifest, match="has 'manifests'"):
        parse_document(raw(index(mt.DOCKER_MANIFEST)))


# --- versions and unknown kinds ------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [1, None, "2", 3, True, [2]])
def test_schema_version_other_than_2_refused(version):
    doc = image()
    if version is None:
        del doc["schemaVersion"]
    else:
        doc["schemaVersion"] = version
    with pytest.raises(InvalidManifest, match="schemaVersion") as info:
        parse_document(raw(doc))
    assert "schema 2" in info.value.hint


def test_schema1_signed_manifest_refused():
    doc = {
        "schemaVersion": 1,
        "name": "library/x",
        "tag": "latest",
        "architecture": "amd64",
        "fsLayers": [{"blobSum": D1}],
        "history": [{"v1Compatibility": "{}"}],
    }
    with pytest.raises(InvalidManifest, match="schemaVersion"):
        parse_document(raw(doc), "application/vnd.docker.distribution.manifest.v1+prettyjws")


def test_unknown_manifest_media_type_refused():
    with pytest.raises(InvalidManifest, match="unsupported manifest media type"):
        parse_document(raw(image("application/vnd.docker.distribution.manifest.v1+json")))


@pytest.mark.parametrize(
    "media_type",
    [
        "application/vnd.oci.image.layer.v1.tar+bzip2",
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/octet-stream",
        "",
    ],
)
def test_unknown_layer_media_type_refused(media_type):
    with pytest.raises(InvalidManifest):
        parse_document(raw(image(layers=[descriptor(media_type, D2)])))


def test_too_many_layers_refused():
    layers = [descriptor(mt.OCI_LAYER_GZIP, D2)] * (MAX_LAYERS + 1)
    with pytest.raises(InvalidManifest, match="layers"):
        parse_document(raw(image(layers=layers)))
    assert len(parse_document(raw(image(layers=layers[:MAX_LAYERS]))).layers) == MAX_LAYERS


def test_empty_layer_list_is_allowed():
    assert parse_document(raw(image(layers=[]))).layers == ()


# --- malformed JSON (TESTPLAN 19, 20) -------------------------------------------------------------------------------


def _with(doc: dict, path: tuple, value) -> dict:
    target = doc
    for key in path[:-1]:
        target = target[key]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return doc


_DELETE = object()


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("layers",), None),
        (("layers",), _DELETE),
        (("layers",), {}),
        (("layers",), "x"),
        (("layers", 0), None),
        (("layers", 0), [D2]),
        (("layers", 0, "size"), "10"),
        (("layers", 0, "size"), 1.5),
        (("layers", 0, "size"), -1),
        (("layers", 0, "size"), True),
        (("layers", 0, "size"), None),
        (("layers", 0, "size"), _DELETE),
        (("layers", 0, "size"), [1]),
        (("layers", 0, "digest"), 12345),
        (("layers", 0, "digest"), None),
        (("layers", 0, "digest"), _DELETE),
        (("layers", 0, "digest"), ["sha256:" + "2" * 64]),
        (("layers", 0, "digest"), "sha256:../../x"),
        (("layers", 0, "digest"), "sha256:" + "A" * 64),
        (("layers", 0, "mediaType"), 5),
        (("layers", 0, "mediaType"), _DELETE),
        (("layers", 0, "annotations"), {"a": 1}),
        (("layers", 0, "annotations"), "a=b"),
        (("config",), None),
        (("config",), _DELETE),
        (("config",), []),
        (("config", "digest"), {"algorithm": "sha256"}),
        (("config", "size"), "1469"),
        (("config", "mediaType"), None),
        (("mediaType",), 7),
        (("mediaType",), [mt.OCI_MANIFEST]),
    ],
)
def test_wrong_types_in_manifest(path, value):
    with pytest.raises(InvalidManifest):
        parse_document(raw(_with(image(), path, value)))


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("manifests",), None),
        (("manifests",), {}),
        (("manifests", 0), "sha256:" + "1" * 64),
        (("manifests", 0, "size"), "500"),
        (("manifests", 0, "digest"), 1),
        (("manifests", 0, "platform"), "linux/amd64"),
        (("manifests", 0, "platform"), None),
        (("manifests", 0, "platform", "os"), None),
        (("manifests", 0, "platform", "architecture"), 64),
        (("manifests", 1, "platform", "variant"), 8),
    ],
)
def test_wrong_types_in_index(path, value):
    with pytest.raises(InvalidManifest):
        parse_document(raw(_with(index(), path, value)), mt.OCI_INDEX)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"null",
        b"[]",
        b'"manifest"',
        b"2",
        b"{",
        b'{"schemaVersion": 2,}',
        b"\xff\xfe\x00garbage",
        b"\x00" * 100,
        b'{"schemaVersion": 2, "layers": [' + b"1" * 5000 + b"]}",  # an int too long for Python's int()
        b"<html>not found</html>",
    ],
)
def test_not_a_json_object(body):
    with pytest.raises(InvalidManifest):
        parse_document(body)


def test_deep_nesting_is_invalid_manifest_not_recursion_error():
    body = b'{"schemaVersion": 2, "layers": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with pytest.raises(InvalidManifest):
        parse_document(body)
    with pytest.raises(InvalidManifest):
        parse_document(b"[" * 100_000)  # unterminated, too
    with pytest.raises(InvalidManifest):
        load_json(b'{"a": ' + b'{"a": ' * 50_000 + b"1" + b"}" * 50_001, "image config")


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("layers", 0, "size"), "[" * 500 + "]" * 500),
        (("layers", 0, "size"), list(range(50_000))),
        (("layers", 0, "size"), "9" * 50_000),
        (("config", "digest"), list(range(50_000))),
        (("config", "digest"), "sha256:" + "f" * 50_000),
        (("schemaVersion",), list(range(50_000))),
        (("schemaVersion",), "x" * 50_000),
    ],
)
def test_huge_or_nested_values_give_a_short_message(path, value):
    if isinstance(value, str) and value.startswith("["):
        value = json.loads(value)
    with pytest.raises(InvalidManifest) as info:
        parse_document(raw(_with(image(), path, value)))
    assert len(str(info.value)) < 300


def test_oversized_manifest_refused_before_parsing():
    doc = image()
    doc["annotations"] = {"pad": "x" * MAX_MANIFEST_BYTES}
    body = raw(doc)
    assert len(body) > MAX_MANIFEST_BYTES
    with pytest.raises(InvalidManifest, match="larger than"):
        parse_document(body)
    # invalid JSON of that size is refused for its size, not parsed
    with pytest.raises(InvalidManifest, match="larger than"):
        parse_document(b"{" * (MAX_MANIFEST_BYTES + 1))


def test_manifest_just_under_the_limit_parses():
    doc = image()
    doc["annotations"] = {"pad": ""}
    padding = MAX_MANIFEST_BYTES - len(raw(doc))
    doc["annotations"]["pad"] = "x" * padding
    body = raw(doc)
    assert len(body) == MAX_MANIFEST_BYTES
    assert isinstance(parse_document(body), Manifest)


def test_the_parsed_bytes_are_the_hashed_bytes():
    # the same document with different whitespace hashes differently; parsing never re-serialises
    body = json.dumps(image(), indent=3).encode()
    assert isinstance(parse_document(body), Manifest)
    assert Digest.of(body) != Digest.of(raw(image()))


_json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=10))
_json = st.recursive(
    _json_leaf,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=20,
)


@settings(max_examples=150)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_invalid_manifest(body):
    try:
        parsed = parse_document(body)
    except InvalidManifest:
        return
    assert isinstance(parsed, Manifest | Index)


@settings(max_examples=150)
@given(
    st.fixed_dictionaries(
        {"schemaVersion": st.sampled_from([2, 2, 1])},
        optional={
            "mediaType": st.one_of(st.sampled_from(mt.ALL_MANIFESTS), _json),
            "config": st.one_of(st.just(descriptor(mt.OCI_CONFIG)), _json),
            "layers": st.one_of(st.just([descriptor(mt.OCI_LAYER, D2)]), _json),
            "manifests": st.one_of(st.just([entry(D3, "linux", "amd64")]), _json),
        },
    ),
    st.one_of(st.none(), st.sampled_from(mt.ALL_MANIFESTS)),
)
def test_arbitrary_structures_raise_only_invalid_manifest(doc, content_type):
    try:
        parsed = parse_document(raw(doc), content_type)
    except InvalidManifest:
        return
    assert isinstance(parsed, Manifest | Index)
    assert ("manifests" in doc) == isinstance(parsed, Index)


# --- platforms -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("linux/amd64", Platform("linux", "amd64")),
        ("Linux/AMD64", Platform("linux", "amd64")),
        ("linux/x86_64", Platform("linux", "amd64")),
        ("linux/aarch64", Platform("linux", "arm64")),
        ("linux/arm64/v8", Platform("linux", "arm64", "v8")),
        ("linux/arm/v6", Platform("linux", "arm", "v6")),
        ("linux/armhf", Platform("linux", "arm", "v7")),
        ("linux/arm", Platform("linux", "arm", "v7")),  # containerd: plain arm is arm/v7
        ("linux/i386", Platform("linux", "386")),
        ("windows/amd64", Platform("windows", "amd64")),
    ],
)
def test_platform_parse(text, expected):
    assert Platform.parse(text) == expected


@pytest.mark.parametrize("text", ["", "linux", "linux/", "/amd64", "linux/amd64/", "linux/arm/v7/x", "linux//v7"])
def test_platform_parse_rejects(text):
    with pytest.raises(InvalidManifest) as info:
        Platform.parse(text)
    assert "os/arch" in info.value.hint


def test_platform_str():
    assert str(Platform("linux", "arm64", "v8")) == "linux/arm64/v8"
    assert str(Platform("linux", "amd64")) == "linux/amd64"


@pytest.mark.parametrize(
    ("machine", "expected"),
    [
        ("x86_64", Platform("linux", "amd64")),
        ("aarch64", Platform("linux", "arm64")),
        ("armv7l", Platform("linux", "arm", "v7")),
        ("armv6l", Platform("linux", "arm", "v6")),
        ("i686", Platform("linux", "386")),
        ("riscv64", Platform("linux", "riscv64")),
    ],
)
def test_platform_host(monkeypatch, machine, expected):
    monkeypatch.setattr(host_platform, "machine", lambda: machine)
    assert Platform.host() == expected


def test_platform_host_is_linux_and_normalised():
    host = Platform.host()
    assert host.os == "linux"
    assert host.architecture not in ("x86_64", "aarch64")


def test_select_exact():
    parsed = parse_document(raw(index()), mt.OCI_INDEX)
    assert str(parsed.select(Platform.parse("linux/amd64")).digest) == D1
    assert str(parsed.select(Platform.parse("linux/arm64")).digest) == D2
    assert str(parsed.select(Platform.parse("linux/arm64/v8")).digest) == D2


def test_select_by_variant():
    entries = [
        entry(D1, "linux", "arm", "v5"),
        entry(D2, "linux", "arm", "v6"),
        entry(D3, "linux", "arm", "v7"),
        entry(D4, "linux", "amd64"),
    ]
    parsed = parse_document(raw(index(entries=entries)))
    assert str(parsed.select(Platform.parse("linux/arm/v6")).digest) == D2
    assert str(parsed.select(Platform.parse("linux/arm/v7")).digest) == D3
    assert str(parsed.select(Platform.parse("linux/arm")).digest) == D3  # as Docker: arm means arm/v7
    assert str(parsed.select(Platform("linux", "arm")).digest) == D1  # no variant wanted: the first arm serves


def test_select_entry_without_variant_serves_any_variant():
    parsed = parse_document(raw(index(entries=[entry(D1, "linux", "arm64")])))
    assert str(parsed.select(Platform.parse("linux/arm64/v8")).digest) == D1


def test_select_skips_non_image_entries():
    entries = [
        entry(D1, "linux", "amd64", media_type=mt.OCI_INDEX),
        entry(D2, "unknown", "unknown"),  # buildx attestation manifest
        descriptor(mt.OCI_MANIFEST, D3, 1),  # no platform at all
        entry(D4, "linux", "amd64"),
    ]
    parsed = parse_document(raw(index(entries=entries)))
    assert str(parsed.select(Platform.parse("linux/amd64")).digest) == D4


def test_select_does_not_mix_os():
    parsed = parse_document(raw(index(entries=[entry(D1, "windows", "amd64")])))
    with pytest.raises(PlatformNotFound):
        parsed.select(Platform.parse("linux/amd64"))


def test_platform_not_found_lists_what_is_available():
    entries = [entry(D1, "linux", "amd64"), entry(D2, "linux", "arm", "v7"), entry(D3, "linux", "s390x")]
    parsed = parse_document(raw(index(entries=entries)))
    with pytest.raises(PlatformNotFound) as info:
        parsed.select(Platform.parse("linux/arm/v6"))
    message = str(info.value)
    assert "linux/arm/v6" in message
    assert "available: linux/amd64, linux/arm/v7, linux/s390x" in message
    assert "--platform" in info.value.hint


def test_platform_not_found_in_an_index_without_platforms():
    parsed = parse_document(raw(index(entries=[])))
    with pytest.raises(PlatformNotFound, match="available: none"):
        parsed.select(Platform.parse("linux/amd64"))
