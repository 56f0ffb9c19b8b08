"""Image use cases: pull, push, list, remove, tag, search, inspect, login, logout, disk usage, prune, check.

The service joins the registry client (HTTP) to the store (disk) and reports progress through a
:class:`PullEvents` object that the CLI renders; it never prints.

Pull, step by step (each step checks what it reads before anything is kept):

1. the reference is normalised (``nginx`` → ``docker.io/library/nginx:latest``) and the manifest fetched by tag or
   digest; a manifest list / OCI index is resolved to the wanted platform and that manifest fetched by digest;
2. the config is fetched (bounded, digest checked) and parsed; it must list one diff_id per layer;
3. up to three layers stream in parallel into the store's ingest area; while the compressed bytes flow, their digest
   and size are checked and the decompressed stream is hashed, so a layer is committed only if its digest, size and
   diff_id all match; a layer already in the store is not downloaded again;
4. config and manifest blobs are written and the image record (with its tag) is stored atomically. If anything
   fails, the layers this pull committed and no image uses are removed again, so nothing half-made is left.
"""

from __future__ import annotations

import fnmatch
import re
import time
from collections.abc import Callable, Iterable

from sandbox.config import Settings
from sandbox.errors import (
    AmbiguousImage,
    DiffIDMismatch,
    DigestMismatch,
    ImageInUse,
    ImageNotFound,
    InvalidLayer,
    InvalidManifest,
    InvalidReference,
    SizeMismatch,
    StoreCorrupt,
)
from sandbox.oci import mediatypes as mt
from sandbox.oci.digest import Digest
from sandbox.oci.imageconfig import ImageConfig
from sandbox.oci.manifest import Descriptor, Index, Manifest, Platform, parse_document
from sandbox.oci.reference import DEFAULT_REGISTRY, Reference
from sandbox.valueclass import replace, valueclass

TYPE_CHECKING = False  # not typing's: importing typing costs every start ~3 ms (BENCHMARKS B1)
if TYPE_CHECKING:
    import threading

    from sandbox.registry.client import RegistryClient
    from sandbox.registry.credentials import CredentialStore
    from sandbox.service.layers import LayerUnpacker
    from sandbox.store.images import ImageRecord
    from sandbox.store.store import Store

PARALLEL_LAYERS = 3
_ID_PREFIX = re.compile(r"(sha256:)?[0-9a-f]{1,64}")


class PullEvents:
    """What a pull reports while it runs; the CLI subclasses this. Methods may be called from worker threads."""

    def resolved(self, ref: Reference, default_tag: bool) -> None:
        """The reference was parsed; default_tag is true when `latest` was implied."""

    def layer(self, digest: Digest, size: int, state: str) -> None:
        """A layer changed state: "exists", "waiting", "downloading", "verifying", "downloaded", "extracting",
        "extracted"."""

    def progress(self, digest: Digest, done: int, total: int) -> None:
        """Bytes of a layer received so far."""

    def notice(self, text: str) -> None:
        """Something the user should read once (a single-id map fallback, device nodes skipped)."""


@valueclass
class PullResult:
    reference: Reference
    record: ImageRecord
    digest: Digest
    up_to_date: bool


@valueclass
class PushResult:
    reference: Reference
    digest: Digest
    size: int
    layers: tuple[tuple[Digest, bool], ...]  # (digest, already existed)


@valueclass
class Removal:
    untagged: tuple[str, ...] = ()
    deleted: tuple[str, ...] = ()


@valueclass(frozen=False)
class ImageRow:
    """One line of `sbx images`: a record shown under one repository and tag."""

    record: ImageRecord
    repository: str
    tag: str
    digest: str


class ImageService:
    def __init__(
        self,
        settings: Settings,
        store: Store | None = None,
        client_factory: Callable[[str], RegistryClient] | None = None,
    ) -> None:
        self.settings = settings
        self._store = store
        self._client_factory = client_factory

    # -- plumbing -------------------------------------------------------------------------------------------------

    @property
    def store(self) -> Store:
        if self._store is None:
            from sandbox.store.store import Store

            self._store = Store.open(self.settings.data_root)
        return self._store

    def credentials(self) -> CredentialStore:
        from sandbox.registry.credentials import CredentialStore

        return CredentialStore(self.settings.auth_file, self.settings.docker_config)

    def unpacker(self, notice=None) -> LayerUnpacker:
        from sandbox.service.layers import LayerUnpacker

        return LayerUnpacker(self.store, max_bytes=self.settings.layer_size_limit, notice=notice)

    def client(self, registry: str, credentials=None) -> RegistryClient:
        if self._client_factory is not None:
            return self._client_factory(registry)
        from sandbox.registry.client import RegistryClient

        return RegistryClient(registry, self.settings, credentials or self.credentials())

    # -- pull -----------------------------------------------------------------------------------------------------

    def pull(self, text: str, *, platform: str | None = None, events: PullEvents | None = None) -> PullResult:
        events = events or PullEvents()
        ref = Reference.parse(text)
        events.resolved(ref, default_tag=ref.tag == "latest" and ref.digest is None and not _names_tag(text))
        wanted = Platform.parse(platform or self.settings.default_platform or str(Platform.host()))
        client = self.client(ref.registry)
        top = client.get_manifest(ref.repository, ref.reference)
        document = parse_document(top.raw, top.media_type)
        index_raw: bytes | None = None
        if isinstance(document, Index):
            index_raw = top.raw
            chosen = document.select(wanted)
            fetched = client.get_manifest(ref.repository, str(chosen.digest))
            if len(fetched.raw) != chosen.size:
                raise SizeMismatch(
                    f"size mismatch for manifest {chosen.digest}: expected {chosen.size} bytes, got {len(fetched.raw)}"
                )
            manifest = parse_document(fetched.raw, fetched.media_type)
            if not isinstance(manifest, Manifest):
                raise InvalidManifest(f"manifest list entry {chosen.digest} is not an image manifest")
            manifest_raw, manifest_digest = fetched.raw, chosen.digest
        else:
            manifest, manifest_raw, manifest_digest = document, top.raw, top.digest
        if manifest.config.media_type not in mt.CONFIGS:
            raise InvalidManifest(
                f"unsupported config media type {manifest.config.media_type!r}: not a container image"
            )
        store = self.store
        if store.has_blob(manifest.config.digest):
            config_raw = store.read_blob(manifest.config.digest)
        else:
            config_raw = client.get_blob(ref.repository, manifest.config)
        config = ImageConfig.parse(config_raw)
        if len(config.diff_ids) != len(manifest.layers):
            raise InvalidManifest(
                f"image config lists {len(config.diff_ids)} diff_ids for {len(manifest.layers)} layers"
            )

        existing = self._existing(manifest.config.digest)
        qualified_tag = f"{ref.name}:{ref.tag}" if ref.tag and not ref.digest else None
        repo_digest = f"{ref.name}@{top.digest}"
        if existing and (qualified_tag is None or qualified_tag in existing.repo_tags) and (
            repo_digest in existing.repo_digests
        ):
            for layer in manifest.layers:
                events.layer(layer.digest, layer.size, "exists")
            return PullResult(ref, existing, top.digest, up_to_date=True)

        committed = self._fetch_layers(client, ref.repository, manifest.layers, config.diff_ids, events)
        try:
            from sandbox.store.images import ImageRecord, LayerRecord

            record = ImageRecord(
                id=manifest.config.digest,
                manifest_digest=manifest_digest,
                manifest_media_type=manifest.media_type,
                config_media_type=manifest.config.media_type,
                layers=tuple(
                    LayerRecord(layer.digest, layer.media_type, layer.size, diff_id)
                    for layer, diff_id in zip(manifest.layers, config.diff_ids, strict=True)
                ),
                repo_tags=(qualified_tag,) if qualified_tag else (),
                repo_digests=(repo_digest,),
                created=config.created,
                added=time.time(),
                platform=str(Platform(config.os or "linux", config.architecture, config.variant)),
                size=sum(layer.size for layer in manifest.layers) + manifest.config.size,
                index_digest=top.digest if index_raw is not None else None,
            )

            def on_layer(layer: Descriptor, state: str) -> None:
                events.layer(layer.digest, layer.size, state)

            documents = [(config_raw, manifest.config.digest), (manifest_raw, manifest_digest)]
            if index_raw is not None:
                documents.append((index_raw, top.digest))
            with self.unpacker(events.notice).unpacked(manifest.layers, config.diff_ids, on_layer):
                for raw, digest in documents:
                    if not store.has_blob(digest):
                        committed.append(digest)
                    store.put_blob(raw, digest)
                stored = store.add_image(record)
        except BaseException:
            self._discard(committed)
            raise
        return PullResult(ref, stored, top.digest, up_to_date=False)

    def _existing(self, image_id: Digest) -> ImageRecord | None:
        try:
            return self.store.get_image(image_id)
        except ImageNotFound:
            return None

    def _fetch_layers(
        self,
        client: RegistryClient,
        repository: str,
        layers: tuple[Descriptor, ...],
        diff_ids: tuple[Digest, ...],
        events: PullEvents,
    ) -> list[Digest]:
        """Download the missing layers, PARALLEL_LAYERS at a time; returns the digests this call committed."""
        known = {layer.digest: layer.diff_id for record in self.store.images(strict=False) for layer in record.layers}
        committed: list[Digest] = []
        import threading  # here: a container's start resolves images and never pulls

        failed = threading.Event()
        present = {layer.digest for layer in layers if self.store.has_blob(layer.digest)}
        for layer in layers:
            events.layer(layer.digest, layer.size, "exists" if layer.digest in present else "waiting")

        def fetch(pair: tuple[Descriptor, Digest]) -> None:
            layer, diff_id = pair
            # ingest() also leases a blob already present, so a parallel rmi cannot collect it before add_image
            with self.store.ingest(layer.digest, layer.size) as ingest:
                if ingest is None:  # present already, perhaps written by a parallel pull while we waited
                    self._check_present_layer(layer, diff_id, known)
                    if layer.digest not in present:
                        events.layer(layer.digest, layer.size, "exists")
                    return
                events.layer(layer.digest, layer.size, "downloading")
                writer = _VerifyingWriter(ingest, layer, events, failed)
                client.download_blob(repository, layer, writer, writer.progress)
                events.layer(layer.digest, layer.size, "verifying")
                writer.verify(diff_id)
                ingest.commit()
                committed.append(layer.digest)
            events.layer(layer.digest, layer.size, "downloaded")

        from concurrent.futures import ThreadPoolExecutor  # here, with logging: `run` resolves images, never pulls

        pool = ThreadPoolExecutor(max_workers=PARALLEL_LAYERS, thread_name_prefix="sbx-pull")
        futures = [pool.submit(fetch, pair) for pair in zip(layers, diff_ids, strict=True)]
        try:
            for future in futures:
                future.result()
        except BaseException:
            failed.set()  # the other downloads stop at their next chunk
            for future in futures:
                future.cancel()
            pool.shutdown(wait=True)
            self._discard(committed)
            raise
        pool.shutdown(wait=True)
        return committed

    def _check_present_layer(self, layer: Descriptor, diff_id: Digest, known: dict[Digest, Digest]) -> None:
        """A stored blob was verified against its digest; its diff_id must still match what this config claims."""
        expected = known.get(layer.digest)
        if expected is None:
            from sandbox.oci.layerdigest import DiffIDHasher

            hasher = DiffIDHasher(mt.LAYER_COMPRESSION[layer.media_type])
            with open(self.store.blob_path(layer.digest), "rb") as blob:
                while chunk := blob.read(1 << 20):
                    hasher.update(chunk)
            expected = hasher.digest()
            known[layer.digest] = expected
        if expected != diff_id:
            raise DiffIDMismatch(
                f"diff_id mismatch for layer {layer.digest}: config says {diff_id}, layer is {expected}"
            )

    def _discard(self, digests: Iterable[Digest]) -> None:
        digests = list(digests)
        if digests:
            self.store.discard_unreferenced(digests)

    # -- push -----------------------------------------------------------------------------------------------------

    def push(self, text: str, *, on_layer: Callable[[Digest, str], None] | None = None) -> PushResult:
        ref = Reference.parse(text)
        if ref.digest is not None:
            raise InvalidReference("cannot push a digest reference", hint="tag the image first: sbx tag IMAGE NAME:TAG")
        record = self.resolve(text)
        client = self.client(ref.registry)
        store = self.store
        manifest_raw = store.read_blob(record.manifest_digest)
        blobs = [(layer.digest, layer.size) for layer in record.layers]
        blobs.append((record.id, len(store.read_blob(record.id))))
        outcome = []
        for digest, size in blobs:
            if client.blob_exists(ref.repository, digest):
                outcome.append((digest, True))
                if on_layer:
                    on_layer(digest, "exists")
                continue
            if on_layer:
                on_layer(digest, "pushing")
            path = store.blob_path(digest)
            client.upload_blob(ref.repository, digest, size, lambda path=path: open(path, "rb"))  # noqa: SIM115 - the client closes it
            outcome.append((digest, False))
            if on_layer:
                on_layer(digest, "pushed")
        digest = client.put_manifest(ref.repository, ref.tag or "latest", manifest_raw, record.manifest_media_type)
        repo_digest = f"{ref.name}@{digest}"
        if repo_digest not in record.repo_digests:
            store.add_image(replace(record, repo_tags=(), repo_digests=(repo_digest,)))
        return PushResult(ref, digest, len(manifest_raw), tuple(outcome))

    # -- local images ---------------------------------------------------------------------------------------------

    def resolve(self, text: str) -> ImageRecord:
        """Find a local image by name[:tag], name@digest, full or short id (Docker tries the name first)."""
        store = self.store
        try:
            ref = Reference.parse(text)
        except InvalidReference:
            ref = None
        if ref is not None:
            key = f"{ref.name}@{ref.digest}" if ref.digest else f"{ref.name}:{ref.tag}"
            try:
                return store.resolve(key)
            except ImageNotFound:
                pass
        if _ID_PREFIX.fullmatch(text):
            try:
                return store.resolve(text)
            except AmbiguousImage:
                raise
            except ImageNotFound:
                pass
        raise ImageNotFound(f"no such image: {text}", hint="see sbx images, or pull it with sbx pull")

    def rows(self, *, filters: Iterable[str] = ()) -> list[ImageRow]:
        patterns = _reference_filters(filters)
        rows: list[ImageRow] = []
        for record in self.store.images():
            digests = {d.split("@", 1)[0]: d.split("@", 1)[1] for d in record.repo_digests if "@" in d}
            entries: list[tuple[str, str, str]] = []
            for tag in record.repo_tags:
                name, _, tag_name = tag.rpartition(":")
                entries.append((name, tag_name, digests.get(name, "<none>")))
            tagged = {name for name, _, _ in entries}
            for name, digest in digests.items():
                if name not in tagged:
                    entries.append((name, "<none>", digest))
            if not entries:
                entries.append(("<none>", "<none>", "<none>"))
            for name, tag, digest in entries:
                familiar = _familiar(name) if name != "<none>" else name
                if patterns and not _matches(patterns, familiar, tag):
                    continue
                rows.append(ImageRow(record, familiar, tag, digest))
        return rows

    def damage(self, rows: Iterable[ImageRow]) -> StoreCorrupt | None:
        """One error naming every damaged image among ``rows`` (missing, resized or known-bad blobs), or None."""
        found: list[str] = []
        seen: set[Digest] = set()
        for row in rows:
            record = row.record
            if record.id in seen:
                continue
            seen.add(record.id)
            problems = self.store.damage(record)
            if problems:
                names = ", ".join(_familiar_ref(tag) for tag in record.repo_tags) or "<none>"
                found.append(f"image {record.id.short} ({names}) is damaged: {'; '.join(problems)}")
        if not found:
            return None
        return StoreCorrupt(
            "; ".join(found), hint="remove it with sbx rmi -f IMAGE and pull it again, or run sbx system prune"
        )

    def tag(self, source: str, target: str) -> None:
        record = self.resolve(source)
        ref = Reference.parse(target)
        if ref.digest is not None:
            raise InvalidReference("refusing to create a tag with a digest reference")
        self.store.tag(record.id, f"{ref.name}:{ref.tag}")

    def remove(self, text: str, *, force: bool = False) -> Removal:
        try:
            record = self.resolve(text)
        except StoreCorrupt as exc:
            # a damaged record can only be dropped whole, and only when asked to (TESTPLAN 55)
            image_id = getattr(exc, "image_id", None)
            if not force or image_id is None:
                raise
            deleted = self.store.remove_image(image_id)
            self.unpacker().collect()
            return Removal(deleted=(str(image_id), *(str(d) for d in deleted if d != image_id)))
        untagged: list[str] = []
        by_name = named_tag(text, record)
        users = self._containers_using(record.id)
        if users and not force and not (by_name is not None and len(record.repo_tags) > 1):
            raise ImageInUse(
                f'conflict: unable to remove image "{text}" (must force) - '
                f"container {users[0][:12]} is using its referenced image {record.id.short}",
                hint="remove the container first (sbx rm), or use sbx rmi -f",
            )
        if by_name is not None and len(record.repo_tags) > 1:
            self.store.untag(by_name)
            return Removal(untagged=(_familiar_ref(by_name),))
        repositories = {tag.rpartition(":")[0] for tag in record.repo_tags}
        if by_name is None and len(repositories) > 1 and not force:
            raise ImageInUse(
                f"conflict: unable to delete {record.id.short} (must be forced) - "
                "image is referenced in multiple repositories",
                hint="use sbx rmi -f, or remove the tags one by one",
            )
        untagged.extend(_familiar_ref(tag) for tag in record.repo_tags)
        untagged.extend(_familiar_ref(digest) for digest in record.repo_digests)
        deleted = self.store.remove_image(record.id)
        self.unpacker().collect()
        return Removal(untagged=tuple(untagged), deleted=(str(record.id), *(str(d) for d in deleted if d != record.id)))

    def _containers_using(self, image_id: Digest) -> list[str]:
        from sandbox.store.containers import ContainerStore

        root = self.settings.data_root / "containers"
        if not root.exists():
            return []
        return [record.id for record in ContainerStore(root).list() if record.image_id == str(image_id)]

    def inspect(self, text: str) -> dict:
        record = self.resolve(text)
        config = ImageConfig.parse(self.store.read_blob(record.id))
        return {
            "Id": str(record.id),
            "RepoTags": [_familiar_ref(t) for t in record.repo_tags],
            "RepoDigests": [_familiar_ref(d) for d in record.repo_digests],
            "Parent": "",
            "Comment": "",
            "Created": config.created or "",
            "Author": config.raw.get("author", ""),
            "Config": config.raw.get("config") or {},
            "Architecture": config.architecture,
            "Variant": config.variant or "",
            "Os": config.os,
            "Size": record.size,
            "RootFS": {"Type": "layers", "Layers": [str(d) for d in config.diff_ids]},
            "Metadata": {"LastTagTime": _rfc3339(record.added)},
            "Descriptor": {
                "mediaType": record.manifest_media_type,
                "digest": str(record.manifest_digest),
            },
        }

    # -- registry-side ----------------------------------------------------------------------------------------

    def search(self, term: str, *, limit: int = 25) -> list[dict]:
        """Search a registry: Docker Hub's search API for docker.io, else the registry's catalog filtered by term."""
        registry, query = DEFAULT_REGISTRY, term
        first, slash, rest = term.partition("/")
        if slash and (any(c in first for c in ".:") or first == "localhost"):
            registry, query = first, rest
        client = self.client(registry)
        if registry == DEFAULT_REGISTRY and not self.settings.registry(registry).mirrors:
            results = [
                {
                    "name": str(entry.get("name", "")),
                    "description": str(entry.get("description") or ""),
                    "stars": int(entry.get("star_count") or 0),
                    "official": bool(entry.get("is_official")),
                }
                for entry in client.search_hub(query, limit)
            ]
            return results[:limit]
        results: dict[str, dict] = {}
        for name in client.catalog():
            if query.lower() not in name.lower():
                continue
            if registry == DEFAULT_REGISTRY:
                official = name.startswith("library/")
                shown = name.removeprefix("library/")
            else:
                official, shown = False, f"{registry}/{name}"
            if shown not in results or official:
                results[shown] = {"name": shown, "description": "", "stars": 0, "official": official}
        return list(results.values())[:limit]

    def login(self, server: str | None, username: str, password: str) -> str:
        registry = normalise_server(server)
        from sandbox.registry.credentials import StaticCredentials

        client = self.client(registry, credentials=StaticCredentials(username, password, registry=registry))
        client.ping()
        self.credentials().set(registry, username, password)
        return registry

    def logout(self, server: str | None) -> tuple[str, bool]:
        registry = normalise_server(server)
        return registry, self.credentials().remove(registry)

    # -- store maintenance -------------------------------------------------------------------------------------

    def disk_usage(self):
        return self.store.disk_usage()

    def prune(self, *, all_images: bool = False):
        removed = self.store.prune(dangling_only=not all_images)
        self.unpacker().collect()
        return removed

    def check(self):
        return self.store.check()


class _VerifyingWriter:
    """Wraps the store's ingest: checks size and digest of the compressed bytes and hashes the uncompressed stream.

    A resumed download keeps appending, so the hashers simply continue; a restart (the server ignored Range)
    resets them together with the ingest.
    """

    def __init__(self, ingest, layer: Descriptor, events: PullEvents, failed: threading.Event) -> None:
        self._failed = failed
        self._ingest = ingest
        self._layer = layer
        self._events = events
        self._digest = layer.digest.hasher()
        from sandbox.oci.layerdigest import DiffIDHasher

        self._diff = DiffIDHasher(mt.LAYER_COMPRESSION[layer.media_type])
        self._diff_error: InvalidLayer | None = None

    @property
    def written(self) -> int:
        return self._ingest.written

    def write(self, data: bytes) -> None:
        if self._failed.is_set():
            raise _Abandoned()
        if self._ingest.written + len(data) > self._layer.size:
            raise SizeMismatch(
                f"size mismatch for {self._layer.digest}: more than the expected {self._layer.size} bytes"
            )
        self._ingest.write(data)
        self._digest.update(data)
        if self._diff_error is None:
            try:
                self._diff.update(data)
            except InvalidLayer as exc:  # reported after the digest check: wrong bytes are a digest mismatch
                self._diff_error = exc

    def reset(self) -> None:
        self._ingest.reset()
        self._digest = self._layer.digest.hasher()
        self._diff.reset()
        self._diff_error = None

    def progress(self, _count: int) -> None:
        self._events.progress(self._layer.digest, self._ingest.written, self._layer.size)

    def verify(self, diff_id: Digest) -> None:
        layer = self._layer
        if self._ingest.written != layer.size:
            raise SizeMismatch(
                f"size mismatch for {layer.digest}: expected {layer.size} bytes, got {self._ingest.written}"
            )
        actual = Digest(layer.digest.algorithm, self._digest.hexdigest())
        if actual != layer.digest:
            raise DigestMismatch(f"digest mismatch: expected {layer.digest}, got {actual}")
        if self._diff_error is not None:
            raise self._diff_error
        uncompressed = self._diff.digest()
        if uncompressed != diff_id:
            raise DiffIDMismatch(
                f"diff_id mismatch for layer {layer.digest}: config says {diff_id}, layer is {uncompressed}"
            )


class _Abandoned(Exception):
    """Raised inside a layer download when another layer of the same pull failed."""


def named_tag(text: str, record: ImageRecord) -> str | None:
    """The qualified tag of ``record`` the user named, or None when they named the image by id or digest."""
    try:
        ref = Reference.parse(text)
    except InvalidReference:
        return None
    if ref.digest is not None:
        return None
    qualified = f"{ref.name}:{ref.tag}"
    return qualified if qualified in record.repo_tags else None


def normalise_server(server: str | None) -> str:
    """`sbx login` accepts `host`, `https://host/`, Docker Hub's legacy index URL; stored under the bare host."""
    if not server:
        return DEFAULT_REGISTRY
    text = server.strip()
    for prefix in ("https://", "http://"):
        text = text.removeprefix(prefix)
    text = text.split("/", 1)[0]
    if text in ("index.docker.io", "registry-1.docker.io", "docker.io"):
        return DEFAULT_REGISTRY
    if not text or not re.fullmatch(r"[A-Za-z0-9.-]+(:[0-9]{1,5})?|\[[0-9a-fA-F:]+\](:[0-9]{1,5})?", text):
        raise InvalidReference(f"invalid registry address {server!r}")
    return text


def _names_tag(text: str) -> bool:
    name = text.split("@", 1)[0]
    return name.rfind(":") > name.rfind("/")


def _familiar(name: str) -> str:
    registry, _, repository = name.partition("/")
    if registry == DEFAULT_REGISTRY:
        return repository.removeprefix("library/")
    return name


def _familiar_ref(qualified: str) -> str:
    """docker.io/library/busybox:latest → busybox:latest; name@digest likewise."""
    if "@" in qualified:
        name, _, digest = qualified.partition("@")
        return f"{_familiar(name)}@{digest}"
    name, _, tag = qualified.rpartition(":")
    return f"{_familiar(name)}:{tag}"


def _reference_filters(filters: Iterable[str]) -> list[str]:
    patterns = []
    for item in filters:
        key, sep, value = item.partition("=")
        if not sep or key != "reference":
            raise InvalidReference(f"invalid filter {item!r}", hint="supported: reference=PATTERN")
        patterns.append(value)
    return patterns


def _matches(patterns: list[str], repository: str, tag: str) -> bool:
    """Docker matches reference filters against the familiar name and name:tag with path.Match semantics."""
    for pattern in patterns:
        if fnmatch.fnmatchcase(repository, pattern) or fnmatch.fnmatchcase(f"{repository}:{tag}", pattern):
            return True
    return False


def _rfc3339(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))

