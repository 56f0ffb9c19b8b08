"""Streamed blob downloads (TESTPLAN 23) and mirror fall-through, against fakes on loopback."""

from __future__ import annotations

import io
import json

import pytest

from sandbox.config import RegistryConfig, Settings
from sandbox.errors import DigestMismatch, ManifestUnknown, RegistryError, RegistryUnreachable, SizeMismatch
from sandbox.oci import mediatypes
from sandbox.oci.digest import Digest
from sandbox.oci.manifest import Descriptor
from sandbox.registry.client import RegistryClient
from sandbox.registry.credentials import StaticCredentials
from sandbox.registry.download import BLOB_CHUNK
from tests.fixtures.fakeregistry import FakeRegistry, MemoryWriter, Reply, closed_port, sha256

BLOB = bytes(range(256)) * 12289  # 3 MiB + 256 bytes: several 1 MiB chunks, not a multiple of them
PATH = f"/v2/library/app/blobs/{sha256(BLOB)}"




def layer(data: bytes = BLOB, size: int | None = None) -> Descriptor:
    return Descriptor(mediatypes.OCI_LAYER_GZIP, Digest.of(data), len(data) if size is None else size)


def client(fake: FakeRegistry, config: Settings, **kw) -> RegistryClient:
    kw.setdefault("retries", 3)
    kw.setdefault("backoff", 0.01)
    kw.setdefault("read_timeout", 5.0)
    return RegistryClient(fake.host, config, kw.pop("creds", None), **kw)


def download(regclient: RegistryClient, writer: MemoryWriter | None = None, data: bytes = BLOB) -> MemoryWriter:
    writer = writer or MemoryWriter()
    progress: list[int] = []
    regclient.download_blob("library/app", layer(data), writer, progress.append)
    assert bytes(writer.data) == data
    writer.progress = progress  # type: ignore[attr-defined]
    return writer


def test_plain_download_in_chunks(registry, config):
    registry.add_blob("library/app", BLOB)
    writer = download(client(registry, config))
    assert sum(writer.progress) == len(BLOB)
    assert max(writer.progress) <= BLOB_CHUNK
    assert writer.resets == 0
    assert registry.requests_to(PATH)[0].header("range") is None


def test_dropped_connection_resumes_with_range(registry, config):
    registry.route("GET", PATH, Reply(body=BLOB, drop_after=1_500_000), Reply(body=BLOB, honour_range=True))
    writer = download(client(registry, config))
    assert writer.resets == 0
    assert sum(writer.progress) == len(BLOB)
    first, second = registry.requests_to(PATH)
    assert first.header("range") is None
    resumed_at = int(second.header("range").removeprefix("bytes=").removesuffix("-"))
    assert first.bytes_sent - 64 * 1024 < resumed_at <= first.bytes_sent  # at most one network piece is lost
    assert second.status == 206


def test_server_ignoring_range_restarts_from_zero(registry, config):
    registry.route("GET", PATH, Reply(body=BLOB, drop_after=1_000_000), Reply(body=BLOB))
    writer = download(client(registry, config))
    assert writer.resets == 1
    assert sum(writer.progress) == len(BLOB)  # the restart took back what it had counted
    assert any(n < 0 for n in writer.progress)
    assert [r.status for r in registry.requests_to(PATH)] == [200, 200]


def test_resume_from_bytes_the_writer_already_holds(registry, config):
    registry.add_blob("library/app", BLOB)
    writer = download(client(registry, config), MemoryWriter(BLOB[:12345]))
    assert registry.requests_to(PATH)[0].header("range") == "bytes=12345-"
    assert sum(writer.progress) == len(BLOB) - 12345


def test_complete_writer_needs_no_request(registry, config):
    download(client(registry, config), MemoryWriter(BLOB))
    assert registry.requests == []


def test_writer_holding_too_much_is_reset(registry, config):
    registry.add_blob("library/app", BLOB)
    writer = download(client(registry, config), MemoryWriter(BLOB + b"junk"))
    assert writer.resets == 1


def test_wrong_content_range_restarts(registry, config):
    bad = Reply(206, BLOB[10:], headers={"Content-Range": f"bytes 10-{len(BLOB) - 1}/{len(BLOB)}"})
    registry.route("GET", PATH, Reply(body=BLOB, drop_after=100_000), bad, Reply(body=BLOB))
    writer = download(client(registry, config))
    assert writer.resets == 1


def test_every_attempt_dropping_gives_up_after_the_retries(registry, config):
    registry.route("GET", PATH, Reply(body=BLOB, drop_after=1000, honour_range=True))
    with pytest.raises(RegistryUnreachable, match="closed|ended"):
        client(registry, config, retries=2).download_blob("library/app", layer(), MemoryWriter())
    assert len(registry.requests_to(PATH)) == 3


def test_stalled_server_fails_cleanly_after_the_idle_timeout(registry, config):
    registry.route("GET", PATH, Reply(body=BLOB, stall=30))
    with pytest.raises(RegistryUnreachable, match="timed out") as info:
        client(registry, config, retries=1, read_timeout=0.5).download_blob("library/app", layer(), MemoryWriter())
    assert len(registry.requests_to(PATH)) == 2
    assert info.value.hint


def test_server_stalling_mid_body_fails_cleanly(registry, config):
    registry.route("GET", PATH, Reply(body=BLOB, stall=30, stall_after=200_000))
    writer = MemoryWriter()
    with pytest.raises(RegistryUnreachable, match="timed out"):
        client(registry, config, retries=1, read_timeout=0.5).download_blob("library/app", layer(), writer)
    second = registry.requests_to(PATH)[1]
    assert second.header("range") == f"bytes={writer.written}-" or writer.written == 0


def test_stall_then_recovery(registry, config):
    registry.route("GET", PATH, Reply(body=BLOB, stall=30, stall_after=500_000), Reply(body=BLOB, honour_range=True))
    download(client(registry, config, read_timeout=0.5))


def test_server_errors_are_retried(registry, config):
    registry.route("GET", PATH, Reply(503), Reply(502), Reply(body=BLOB))
    download(client(registry, config))
    assert len(registry.requests_to(PATH)) == 3


def test_missing_blob_is_not_retried(registry, config):
    with pytest.raises(RegistryError, match="blob unknown") as info:
        client(registry, config).download_blob("library/app", layer(), MemoryWriter())
    assert not isinstance(info.value, RegistryUnreachable)
    assert len(registry.requests_to(PATH)) == 1


@pytest.mark.parametrize(
    "reply",
    [
        Reply(body=BLOB + b"extra", content_length=None),
        Reply(body=BLOB, endless=True),
    ],
)
def test_body_longer_than_the_descriptor_never_overfills_the_writer(registry, config, reply):
    registry.route("GET", PATH, reply)
    writer = MemoryWriter()
    with pytest.raises(SizeMismatch, match="size mismatch"):
        client(registry, config).download_blob("library/app", layer(), writer)
    assert writer.largest <= len(BLOB)
    assert registry.wait_idle()
    assert registry.requests_to(PATH)[0].bytes_sent < 64 * 1024 * 1024


def test_declared_length_other_than_the_size(registry, config):
    registry.route("GET", PATH, Reply(body=BLOB[:-1]))
    writer = MemoryWriter()
    with pytest.raises(SizeMismatch):
        client(registry, config).download_blob("library/app", layer(), writer)
    assert writer.written == 0


def test_redirected_download_resumes_at_the_storage_host_without_authorization(registry, config):
    with FakeRegistry("127.0.0.2") as storage:
        registry.require_basic("ana", "pw")
        registry.redirect("GET", PATH, f"{storage.url}/blob")
        storage.route("GET", "/blob", Reply(body=BLOB, drop_after=700_000), Reply(body=BLOB, honour_range=True))
        download(client(registry, config, creds=StaticCredentials("ana", "pw")))
        assert [r.header("authorization") for r in storage.requests] == [None, None]
        assert storage.requests[1].header("range") == f"bytes={700_000 // 65536 * 65536}-"


# -- mirrors ----------------------------------------------------------------------------------------------------


@pytest.fixture
def mirror():
    with FakeRegistry("127.0.0.1") as fake:
        yield fake


def mirrored(config: Settings, upstream: FakeRegistry, *mirrors: str, creds=None) -> RegistryClient:
    settings = Settings(
        config.data_root,
        config.runtime_root,
        config.config_root,
        registries={upstream.host: RegistryConfig(mirrors=mirrors)},
    )
    return RegistryClient(upstream.host, settings, creds, retries=2, backoff=0.01, read_timeout=5.0)


def test_first_mirror_down_second_serves(registry, mirror, config):
    digest = mirror.add_image("library/app", "latest", [b"layer"])
    regclient = mirrored(config, registry, f"127.0.0.1:{closed_port()}", mirror.host)
    assert str(regclient.get_manifest("library/app", "latest").digest) == digest
    assert registry.requests == []


def test_mirror_404_falls_through_to_the_registry(registry, mirror, config):
    digest = registry.add_image("library/app", "latest", [b"layer"])
    regclient = mirrored(config, registry, mirror.host)
    assert str(regclient.get_manifest("library/app", "latest").digest) == digest
    assert len(mirror.requests) == 1 and len(registry.requests) == 1


@pytest.mark.parametrize("status", [500, 503, 401, 429])
def test_mirror_errors_fall_through(registry, mirror, config, status):
    registry.add_blob("library/app", BLOB)
    mirror.route("*", PATH, Reply(status))
    download(mirrored(config, registry, mirror.host))
    assert len(mirror.requests) == 1  # a mirror gets no retries for a status


def test_mirror_serving_wrong_bytes_does_not_fall_through(registry, mirror, config):
    wanted = registry.add_image("library/app", "latest", [b"layer"])
    mirror.route("GET", f"/v2/library/app/manifests/{wanted}", Reply(body=b'{"schemaVersion": 2}'))
    with pytest.raises(DigestMismatch):
        mirrored(config, registry, mirror.host).get_manifest("library/app", wanted)
    assert registry.requests == []


def test_mirror_dropping_mid_blob_then_registry_resumes(registry, mirror, config):
    mirror.route("GET", PATH, Reply(body=BLOB, drop_after=2_000_000))  # never recovers
    registry.add_blob("library/app", BLOB)
    download(mirrored(config, registry, mirror.host))
    assert len(mirror.requests) == 3  # the first try and two retries
    assert registry.requests_to(PATH)[0].header("range") == f"bytes={2_000_000 // 65536 * 65536}-"


def test_not_found_anywhere_reports_manifest_unknown_even_if_the_registry_is_down(mirror, config):
    upstream_host = f"127.0.0.1:{closed_port()}"
    settings = Settings(
        config.data_root,
        config.runtime_root,
        config.config_root,
        registries={upstream_host: RegistryConfig(mirrors=(mirror.host,))},
    )
    regclient = RegistryClient(upstream_host, settings, retries=1, backoff=0.01)
    with pytest.raises(ManifestUnknown, match="not found"):
        regclient.get_manifest("library/nope", "latest")


def test_credentials_for_the_registry_never_reach_a_mirror(registry, mirror, config):
    mirror.require_basic("ana", "pw")  # the mirror would accept them: it must still not be sent them
    registry.require_basic("ana", "pw")
    registry.add_blob("library/app", BLOB)
    download(mirrored(config, registry, mirror.host, creds=StaticCredentials("ana", "pw", registry.host)))
    assert [r.header("authorization") for r in mirror.requests] == [None]
    assert registry.requests_to(PATH)[-1].header("authorization") is not None


def test_writes_go_to_the_registry_only(registry, mirror, config):
    regclient = mirrored(config, registry, mirror.host)
    regclient.upload_blob("a", Digest.of(b"abc"), 3, lambda: io.BytesIO(b"abc"))
    raw = json.dumps({"schemaVersion": 2}).encode()
    regclient.put_manifest("a", "v1", raw, mediatypes.OCI_MANIFEST)
    assert regclient.blob_exists("a", sha256(b"abc"))
    assert mirror.requests == []
    regclient.ping()
    assert mirror.requests == []
