"""A client for one registry: the OCI distribution API (Docker registry HTTP API v2) as sbx uses it.

Endpoints (all under ``/v2/``):

- ``GET /v2/`` — the API root; ``200`` when the credentials (or anonymity) are accepted (:meth:`ping`).
- ``GET /v2/NAME/manifests/REF`` with ``Accept`` listing every manifest type; the raw bytes are hashed, and the
  hash must equal REF when REF is a digest and ``Docker-Content-Digest`` when the registry sends it (TESTPLAN 16).
- ``GET /v2/NAME/blobs/DIGEST`` — often a redirect to blob storage; resumed with ``Range: bytes=N-`` (``206`` with
  a matching ``Content-Range``; a ``200`` means start again).
- ``HEAD /v2/NAME/blobs/DIGEST``; ``POST /v2/NAME/blobs/uploads/`` → ``202`` + ``Location``; monolithic
  ``PUT LOCATION?digest=DIGEST`` → ``201``; ``PUT /v2/NAME/manifests/REF`` → ``201``.
- ``GET /v2/NAME/tags/list`` and ``GET /v2/_catalog?n=N``, paginated by ``Link: <URL>; rel="next"``.

Reads try the configured mirrors first, in order; a mirror that cannot be reached, or answers 401/403/404/429/5xx,
passes the request to the next one and finally to the registry itself. Writes go to the registry only. Names,
tags and digests are validated before any URL is built (TESTPLAN 17), every body is bounded (TESTPLAN 19), and
redirects and auth follow the rules in :mod:`sandbox.registry.transport` and :mod:`sandbox.registry.auth`.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any, BinaryIO, TypeVar
from urllib.parse import urlencode, urljoin, urlsplit, urlunsplit

from sandbox.config import Settings
from sandbox.errors import (
    AuthenticationRequired,
    ConfigError,
    DigestMismatch,
    InvalidDigest,
    InvalidManifest,
    InvalidReference,
    ManifestUnknown,
    RedirectRefused,
    RegistryError,
    RegistryUnreachable,
    ResponseTooLarge,
    SbxError,
    SizeMismatch,
)
from sandbox.oci import mediatypes
from sandbox.oci.digest import Digest
from sandbox.oci.manifest import MAX_MANIFEST_BYTES, Descriptor
from sandbox.registry.auth import DOCKER_HUB_ENDPOINT, Authenticator
from sandbox.registry.credentials import DOCKER_HUB, CredentialSource, normalise_registry
from sandbox.registry.download import BLOB_CHUNK, BlobDownload, BlobWriter
from sandbox.registry.transport import Endpoint, Transport, check_redirect, netloc_of, printable, transient
from sandbox.valueclass import valueclass

MAX_LIST_PAGE = MAX_MANIFEST_BYTES
MAX_LIST_PAGES = 1000
MAX_LIST_ENTRIES = 100_000
MAX_SEARCH_BODY = 1024 * 1024
HUB_SEARCH_URL = "https://index.docker.io/v1/search"

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_LABEL = r"(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9])"
_HOST = re.compile(rf"(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9A-Fa-f:.]+\])(?::(?P<port>[0-9]{{1,5}}))?")

T = TypeVar("T")


@valueclass(slots=True)
class FetchedManifest:
    """A manifest or index exactly as the registry sent it: parse ``raw``, the bytes that were hashed."""

    raw: bytes
    media_type: str
    digest: Digest


def check_repository(repository: str) -> str:
    """A repository path (``library/busybox``) as the distribution spec's grammar allows, else InvalidReference."""
    if not isinstance(repository, str) or len(repository) > 255 or not _REPOSITORY.fullmatch(repository):
        shown = printable(str(repository), 80)
        raise InvalidReference(f"invalid repository name {shown!r}")
    return repository


def split_reference(reference: str) -> tuple[str | None, Digest | None]:
    """A tag or a digest; anything else (``sha256:../../x``, ``md5:…``, ``a/b``) is refused before use."""
    if not isinstance(reference, str) or not reference:
        raise InvalidReference("empty tag or digest")
    if _TAG.fullmatch(reference):
        return reference, None
    if ":" in reference:
        return None, Digest.parse(reference)
    raise InvalidReference(f"invalid tag {printable(reference, 80)!r}")


def _as_digest(value: Digest | str) -> Digest:
    return value if isinstance(value, Digest) else Digest.parse(value)


def _bare_media_type(value: str | None) -> str:
    return (value or "").split(";", 1)[0].strip().lower()


def _next_link(header: str | None, base: str) -> str | None:
    """The ``rel="next"`` target of a ``Link`` header, resolved against the page's URL."""
    if not header:
        return None
    for match in re.finditer(r"<([^>]*)>([^<]*)", header[:8192]):
        params = match.group(2)
        if re.search(r"""rel\s*=\s*"?([^";,]*\s)?next[\s";,]""", params + ";"):
            return urljoin(base, match.group(1).strip())
    return None


def _falls_through(error: SbxError) -> bool:
    """May a read that failed this way on a mirror go on to the next mirror or the registry?"""
    if isinstance(error, RegistryUnreachable | ManifestUnknown | AuthenticationRequired):
        return True
    status = getattr(error, "status", None)
    return isinstance(status, int) and (status in (401, 403, 404, 429) or status >= 500)


def _check_stored(response: Any, endpoint: Endpoint, what: str, expected: Digest) -> None:
    """After a push: the ``Docker-Content-Digest`` the registry stored ``what`` under, when it names one in
    ``expected``'s algorithm, must be ``expected``. Closes the response."""
    announced = response.headers.get("Docker-Content-Digest")
    response.close()
    if announced and announced.strip() != str(expected) and announced.split(":")[0] == expected.algorithm:
        raise DigestMismatch(
            f"digest mismatch: {endpoint.netloc} stored {what} as {printable(announced, 80)}, not {expected}"
        )


class _UploadBody:
    """A file-like body of exactly ``size`` bytes read from ``stream``, reporting progress as it goes."""

    def __init__(self, stream: BinaryIO, size: int, progress: Callable[[int], None] | None) -> None:
        self.stream = stream
        self.size = size
        self.progress = progress
        self.sent = 0

    def __len__(self) -> int:
        return self.size

    def read(self, amount: int = -1) -> bytes:
        remaining = self.size - self.sent
        if remaining <= 0:
            return b""
        wanted = remaining if amount is None or amount < 0 else min(amount, remaining)
        data = self.stream.read(min(wanted, BLOB_CHUNK))
        if not data:
            raise SizeMismatch(f"size mismatch: the blob to upload ended after {self.sent} of {self.size} bytes")
        self.sent += len(data)
        if self.progress:
            self.progress(len(data))
        return data

    def close(self) -> None:
        self.stream.close()


class RegistryClient:
    """Speak to one registry (and its mirrors) for pull, push, tags, catalog and search."""

    def __init__(
        self,
        registry: str,
        settings: Settings,
        credentials: CredentialSource | None = None,
        *,
        connect_timeout: float = 10.0,
        read_timeout: float | None = None,
        retries: int = 3,
        backoff: float = 0.5,
        session: Any = None,
    ) -> None:
        if not isinstance(registry, str) or not self._valid_host(registry):
            raise InvalidReference(f"invalid registry name {printable(str(registry), 80)!r}")
        self.registry = normalise_registry(registry)
        self.settings = settings
        self.retries = max(0, int(retries))
        self.backoff = max(0.0, float(backoff))
        self._transport = Transport(
            settings, session=session, connect_timeout=connect_timeout, read_timeout=read_timeout
        )
        self._auth = Authenticator(self._transport, credentials)
        self._sleep = time.sleep
        if self.registry == DOCKER_HUB:
            self.upstream = Endpoint("https", DOCKER_HUB_ENDPOINT, DOCKER_HUB)
        else:
            scheme = "http" if settings.is_insecure(self.registry) else "https"
            self.upstream = Endpoint(scheme, self.registry, self.registry)
        self.mirrors = tuple(self._mirror(text) for text in settings.registry(self.registry).mirrors)

    @property
    def read_timeout(self) -> float:
        return self._transport.read_timeout

    @staticmethod
    def _valid_host(netloc: str) -> bool:
        """host[:port] as distribution's reference grammar has it (a DNS name, IPv4 or [IPv6])."""
        match = _HOST.fullmatch(netloc)
        return bool(match) and (match.group("port") is None or 0 < int(match.group("port")) < 65536)

    def _mirror(self, text: str) -> Endpoint:
        lowered = text.lower()
        scheme = None
        for candidate in ("https", "http"):
            if lowered.startswith(candidate + "://"):
                scheme, text = candidate, text[len(candidate) + 3 :]
                break
        netloc = text.rstrip("/").lower()
        if not self._valid_host(netloc):
            raise ConfigError(
                f"mirror {printable(text, 80)!r} of {self.registry} is not a host[:port] or an http(s) url "
                "without a path"
            )
        if scheme is None:
            scheme = "http" if self.settings.is_insecure(netloc) else "https"
        return Endpoint(scheme, netloc, netloc, mirror=True)

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        """Where reads go, in order: the mirrors, then the registry."""
        return (*self.mirrors, self.upstream)

    # -- plumbing ---------------------------------------------------------------------------------------------

    def _exchange(
        self,
        endpoint: Endpoint,
        method: str,
        url: str,
        *,
        scope: str | None,
        headers: dict[str, str] | None = None,
        body: Any = None,
        authenticate: bool = True,
    ) -> Any:
        """One request with auth: send, answer a 401 challenge from this endpoint once, send again."""
        authorization = self._auth.cached(endpoint, scope) if authenticate else None
        for attempt in (1, 2):
            data = body() if callable(body) else body
            response = self._transport.request(method, url, headers=headers, authorization=authorization, body=data)
            if (
                response.status_code != 401
                or attempt == 2
                or not authenticate
                or netloc_of(getattr(response, "url", None) or url) != endpoint.netloc
            ):
                return response
            challenge = response.headers.get("WWW-Authenticate")
            response.close()
            self._auth.forget(endpoint, scope)
            authorization = self._auth.authorize(endpoint, challenge, scope)
        raise AssertionError("unreachable")

    def _attempts(self, endpoint: Endpoint, operation: Callable[[Endpoint], T]) -> T:
        """Run ``operation`` against one endpoint, retrying transient failures (the registry itself only)."""
        failures = 0
        while True:
            try:
                return operation(endpoint)
            except RegistryError as error:
                if endpoint.mirror or not transient(error):
                    raise
                failures += 1
                if failures > self.retries:
                    raise
                self._sleep(self.backoff * 2 ** (failures - 1))

    def _read(self, operation: Callable[[Endpoint], T], runner: Callable[..., T] | None = None) -> T:
        """Run a read against the mirrors, then the registry; the best error wins if all fail."""
        runner = runner or self._attempts
        failed: list[RegistryError] = []
        for endpoint in self.endpoints:
            try:
                return runner(endpoint, operation)
            except RegistryError as error:
                if endpoint.mirror and _falls_through(error):
                    failed.append(error)
                    continue
                if isinstance(error, RegistryUnreachable):
                    # An offline registry behind a mirror that said "no such manifest": the latter is the news.
                    for earlier in failed:
                        if isinstance(earlier, ManifestUnknown):
                            raise earlier from None
                raise
        raise AssertionError("unreachable")

    def _scope(self, repository: str, push: bool = False) -> str:
        return f"repository:{repository}:{'pull,push' if push else 'pull'}"

    def _display(self, repository: str, tag: str | None = None, digest: Digest | None = None) -> str:
        name = f"{self.registry}/{repository}"
        return f"{name}@{digest}" if digest else (f"{name}:{tag}" if tag else name)

    # -- API root -------------------------------------------------------------------------------------------

    def ping(self) -> None:
        """``GET /v2/`` with auth: returns when the registry accepts the credentials (or needs none)."""

        def run(endpoint: Endpoint) -> None:
            response = self._exchange(endpoint, "GET", endpoint.url("/v2/"), scope=None)
            if response.status_code == 200:
                response.close()
                return
            if response.status_code == 404:
                response.close()
                raise RegistryError(f"{endpoint.netloc} does not serve the registry v2 api", status=404)
            raise self._transport.registry_error(response, f"checking {self.registry}")

        self._attempts(self.upstream, run)

    # -- manifests ------------------------------------------------------------------------------------------

    def get_manifest(self, repository: str, reference: str) -> FetchedManifest:
        """Fetch a manifest or index by tag or digest, bounded at 4 MiB and verified against every digest given."""
        repository = check_repository(repository)
        tag, digest = split_reference(reference)
        display = self._display(repository, tag, digest)
        path = f"/v2/{repository}/manifests/{digest or tag}"

        def fetch(endpoint: Endpoint) -> FetchedManifest:
            response = self._exchange(
                endpoint,
                "GET",
                endpoint.url(path),
                scope=self._scope(repository),
                headers={"Accept": mediatypes.ACCEPT_MANIFESTS},
            )
            if response.status_code != 200:
                raise self._transport.registry_error(
                    response,
                    f"pulling manifest {display}",
                    not_found=ManifestUnknown,
                    not_found_message=f"manifest for {display} not found",
                )
            media_type = _bare_media_type(response.headers.get("Content-Type"))
            header_digest = response.headers.get("Docker-Content-Digest")
            raw = self._transport.read_bounded(response, MAX_MANIFEST_BYTES, f"manifest {display}")
            computed = Digest.of(raw, digest.algorithm if digest else "sha256")
            if digest is not None and computed != digest:
                raise DigestMismatch(
                    f"digest mismatch: manifest {display} from {endpoint.netloc} hashes to {computed}",
                    expected=digest,
                    actual=computed,
                )
            if header_digest:
                try:
                    announced = Digest.parse(header_digest.strip())
                except InvalidDigest:
                    raise DigestMismatch(
                        f"digest mismatch: {endpoint.netloc} sent an invalid Docker-Content-Digest "
                        f"{printable(header_digest, 80)!r} for {display}"
                    ) from None
                actual = computed if announced.algorithm == computed.algorithm else Digest.of(raw, announced.algorithm)
                if actual != announced:
                    raise DigestMismatch(
                        f"digest mismatch: manifest {display} hashes to {actual} but {endpoint.netloc} "
                        f"announced {announced}",
                        expected=announced,
                        actual=actual,
                    )
            return FetchedManifest(raw, media_type, computed)

        return self._read(fetch)

    def put_manifest(self, repository: str, reference: str, raw: bytes, media_type: str) -> Digest:
        """``PUT /v2/NAME/manifests/REF``; returns the digest of ``raw`` (checked against REF and the answer)."""
        repository = check_repository(repository)
        tag, digest = split_reference(reference)
        computed = Digest.of(raw, digest.algorithm if digest else "sha256")
        if digest is not None and computed != digest:
            raise DigestMismatch(f"digest mismatch: the manifest to push hashes to {computed}, not {digest}")
        if len(raw) > MAX_MANIFEST_BYTES:
            raise InvalidManifest(f"manifest is larger than {MAX_MANIFEST_BYTES} bytes")
        display = self._display(repository, tag, digest)

        def run(endpoint: Endpoint) -> Digest:
            url = endpoint.url(f"/v2/{repository}/manifests/{digest or tag}")
            response = self._exchange(
                endpoint,
                "PUT",
                url,
                scope=self._scope(repository, push=True),
                headers={"Content-Type": media_type},
                body=raw,
            )
            if response.status_code not in (200, 201, 202):
                raise self._transport.registry_error(response, f"pushing manifest {display}")
            _check_stored(response, endpoint, f"manifest {display}", computed)
            return computed

        return self._attempts(self.upstream, run)

    # -- blobs ----------------------------------------------------------------------------------------------

    def get_blob(self, repository: str, descriptor: Descriptor, limit: int = MAX_MANIFEST_BYTES) -> bytes:
        """A small blob (an image config) in memory, checked against the descriptor's size and digest."""
        repository = check_repository(repository)
        digest = _as_digest(descriptor.digest)
        size = descriptor.size
        if size > limit:
            raise ResponseTooLarge(f"blob {digest} is {size} bytes, more than the {limit} allowed here")
        path = f"/v2/{repository}/blobs/{digest}"

        def fetch(endpoint: Endpoint) -> bytes:
            response = self._exchange(endpoint, "GET", endpoint.url(path), scope=self._scope(repository))
            if response.status_code != 200:
                raise self._transport.registry_error(
                    response,
                    f"pulling blob {digest}",
                    not_found_message=f"blob {digest} of {self._display(repository)} not found",
                )
            try:
                data = self._transport.read_bounded(response, size, f"blob {digest}")
            except ResponseTooLarge:
                raise SizeMismatch(
                    f"size mismatch: blob {digest} from {endpoint.netloc} is longer than {size} bytes"
                ) from None
            if len(data) != size:
                raise SizeMismatch(
                    f"size mismatch: blob {digest} from {endpoint.netloc} has {len(data)} bytes, not {size}"
                )
            actual = Digest.of(data, digest.algorithm)
            if actual != digest:
                raise DigestMismatch(
                    f"digest mismatch: blob {digest} from {endpoint.netloc} hashes to {actual}",
                    expected=digest,
                    actual=actual,
                )
            return data

        return self._read(fetch)

    def download_blob(
        self,
        repository: str,
        descriptor: Descriptor,
        writer: BlobWriter,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        """Stream a blob into ``writer``, resuming after failures; never more than its size (:class:`BlobDownload`)."""
        BlobDownload(self, check_repository(repository), descriptor, writer, progress).run()

    def blob_exists(self, repository: str, digest: Digest | str) -> bool:
        """``HEAD /v2/NAME/blobs/DIGEST`` on the registry itself (before a push)."""
        repository = check_repository(repository)
        digest = _as_digest(digest)

        def run(endpoint: Endpoint) -> bool:
            url = endpoint.url(f"/v2/{repository}/blobs/{digest}")
            response = self._exchange(endpoint, "HEAD", url, scope=self._scope(repository, push=True))
            if response.status_code == 200:
                response.close()
                return True
            if response.status_code == 404:
                response.close()
                return False
            raise self._transport.registry_error(response, f"checking blob {digest}")

        return self._attempts(self.upstream, run)

    def upload_blob(
        self,
        repository: str,
        digest: Digest | str,
        size: int,
        open_stream: Callable[[], BinaryIO],
        progress: Callable[[int], None] | None = None,
    ) -> None:
        """Monolithic upload: ``POST /v2/NAME/blobs/uploads/`` then ``PUT LOCATION?digest=D`` with the bytes.

        ``open_stream`` is called once per attempt (a retry needs the bytes again). ``Location`` may be relative
        or absolute and may carry a query already; it is held to the redirect rules (no https → http, no
        Authorization to another host). ``progress(n)`` gets each piece sent, and ``-sent`` when a retry starts
        over.
        """
        repository = check_repository(repository)
        digest = _as_digest(digest)
        if not isinstance(size, int) or size < 0:
            raise SizeMismatch(f"size mismatch: invalid blob size {size!r}")
        scope = self._scope(repository, push=True)
        report = progress or (lambda n: None)

        def run(endpoint: Endpoint) -> None:
            start_url = endpoint.url(f"/v2/{repository}/blobs/uploads/")
            response = self._exchange(
                endpoint, "POST", start_url, scope=scope, headers={"Content-Length": "0"}, body=b""
            )
            if response.status_code != 202:
                raise self._transport.registry_error(response, f"starting the upload of blob {digest}")
            location = (response.headers.get("Location") or "").strip()
            base = getattr(response, "url", None) or start_url
            response.close()
            if not location:
                raise RegistryError(f"{endpoint.netloc} started an upload without a location")
            target = urljoin(base, location)
            same_host = check_redirect(self.settings, start_url, target)
            parts = urlsplit(target)
            query = "&".join(q for q in (parts.query, urlencode({"digest": str(digest)})) if q)
            put_url = urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))
            bodies: list[_UploadBody] = []

            def body() -> _UploadBody:
                for earlier in bodies:
                    report(-earlier.sent)
                    earlier.sent = 0
                    earlier.close()
                stream = _UploadBody(open_stream(), size, report)
                bodies.append(stream)
                return stream

            headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
            try:
                response = self._exchange(
                    endpoint, "PUT", put_url, scope=scope, headers=headers, body=body, authenticate=same_host
                )
            except RegistryError:
                for earlier in bodies:
                    report(-earlier.sent)
                    earlier.sent = 0
                raise
            finally:
                for earlier in bodies:
                    earlier.close()
            if response.status_code not in (201, 204):
                raise self._transport.registry_error(response, f"uploading blob {digest}")
            _check_stored(response, endpoint, f"blob {digest}", digest)

        self._attempts(self.upstream, run)

    # -- listings -------------------------------------------------------------------------------------------

    def _paginate(self, path: str, scope: str, key: str, what: str, limit: int | None) -> list[str]:
        def run(endpoint: Endpoint) -> list[str]:
            items: list[str] = []
            url = endpoint.url(path)
            seen = {url}
            for _ in range(MAX_LIST_PAGES):
                response = self._exchange(endpoint, "GET", url, scope=scope)
                if response.status_code != 200:
                    raise self._transport.registry_error(
                        response, what, not_found=ManifestUnknown, not_found_message=f"{what}: not found"
                    )
                link = response.headers.get("Link")
                raw = self._transport.read_bounded(response, MAX_LIST_PAGE, what)
                try:
                    document = json.loads(raw)
                except (ValueError, RecursionError):
                    document = None
                values = document.get(key) if isinstance(document, dict) else ()
                if values is None:  # distribution answers "tags": null for a repository without tags
                    values = []
                if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                    raise RegistryError(f"{what}: {endpoint.netloc} sent a malformed list")
                items.extend(values)
                if limit is not None and len(items) >= limit:
                    return items[:limit]
                if len(items) > MAX_LIST_ENTRIES:
                    raise ResponseTooLarge(f"{what} has more than {MAX_LIST_ENTRIES} entries")
                next_url = _next_link(link, url)
                if next_url is None:
                    return items
                if urlsplit(next_url).scheme != endpoint.scheme or netloc_of(next_url) != endpoint.netloc:
                    raise RedirectRefused(f"{what}: refusing a pagination link to another host")
                if next_url in seen:
                    return items
                seen.add(next_url)
                url = next_url
            raise ResponseTooLarge(f"{what} has more than {MAX_LIST_PAGES} pages")

        return self._read(run)

    def list_tags(self, repository: str) -> list[str]:
        """Every tag of a repository (``GET /v2/NAME/tags/list``, following pagination)."""
        repository = check_repository(repository)
        what = f"listing tags of {self._display(repository)}"
        return self._paginate(f"/v2/{repository}/tags/list", self._scope(repository), "tags", what, None)

    def catalog(self, limit: int | None = None) -> list[str]:
        """Repository names (``GET /v2/_catalog``), at most ``limit``; names are raw, escape them to print."""
        if limit is not None and limit <= 0:
            return []
        page = min(limit, 1000) if limit is not None else 100
        return self._paginate(
            f"/v2/_catalog?n={page}",
            "registry:catalog:*",
            "repositories",
            f"listing the catalog of {self.registry}",
            limit,
        )

    # -- search ---------------------------------------------------------------------------------------------

    def search_hub(self, term: str, limit: int = 25) -> list[dict]:
        """Docker Hub's search (``GET https://index.docker.io/v1/search?q=TERM&n=LIMIT``).

        Returns dicts with ``name``, ``description``, ``star_count``, ``is_official``; strings are raw, escape
        them to print (TESTPLAN 24).
        """
        if self.registry != DOCKER_HUB:
            raise RegistryError(
                f"search is only available for docker.io, not {self.registry}",
                hint="list a registry's repositories with its catalog instead",
            )
        if not isinstance(term, str) or not term.strip() or len(term) > 255 or not term.isprintable():
            raise InvalidReference(f"invalid search term {printable(str(term), 80)!r}")
        limit = max(1, min(int(limit), 100))
        url = HUB_SEARCH_URL + "?" + urlencode({"q": term, "n": limit})
        response = self._transport.request("GET", url, headers={"Accept": "application/json"})
        if response.status_code != 200:
            raise self._transport.registry_error(response, "searching docker hub")
        raw = self._transport.read_bounded(response, MAX_SEARCH_BODY, "docker hub search results")
        try:
            document = json.loads(raw)
        except (ValueError, RecursionError):
            document = None
        entries = document.get("results") if isinstance(document, dict) else None
        if not isinstance(entries, list):
            raise RegistryError("docker hub sent malformed search results")
        results = []
        for entry in entries:
            if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
                continue
            description = entry.get("description")
            stars = entry.get("star_count")
            results.append(
                {
                    "name": entry["name"],
                    "description": description if isinstance(description, str) else "",
                    "star_count": stars if isinstance(stars, int) and not isinstance(stars, bool) else 0,
                    "is_official": entry.get("is_official") is True,
                }
            )
        return results[:limit]
