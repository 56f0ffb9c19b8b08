"""One blob streamed from a registry into a writer: resumed after failures, never more than its size.

``GET /v2/NAME/blobs/DIGEST`` (often a redirect to blob storage). A dropped connection, an idle timeout or a 5xx is
retried ``retries`` times per endpoint with exponential backoff, asking for ``Range: bytes=WRITTEN-``. A ``206``
whose ``Content-Range`` starts at WRITTEN continues; a ``200`` means the server ignored the range, so the writer is
reset and the blob starts over; a ``416`` or a wrong range resets it too. A mirror that is down or answers an error
status passes the blob on at once; one that broke off mid-transfer is retried like the registry, keeping what it
sent. The digest is the writer's to check when it commits.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from sandbox.errors import RegistryError, RegistryUnreachable, SizeMismatch
from sandbox.oci.digest import Digest
from sandbox.oci.manifest import Descriptor
from sandbox.registry.transport import Endpoint, transient

if TYPE_CHECKING:
    from sandbox.registry.client import RegistryClient

BLOB_CHUNK = 1024 * 1024
NETWORK_PIECE = 64 * 1024

_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


class BlobWriter(Protocol):
    """Where a downloaded blob goes (the store's ``BlobIngest``): bytes appended, or all dropped to start over."""

    @property
    def written(self) -> int: ...

    def write(self, data: bytes) -> None: ...

    def reset(self) -> None: ...


class BlobDownload:
    """Streams one blob into ``writer`` in 1 MiB chunks.

    ``progress(n)`` follows ``writer.written``: ``+len`` for each chunk written and ``-written`` when a restart
    discards what the writer held, so a progress bar that starts at the writer's initial ``written`` stays true.
    """

    def __init__(
        self,
        client: RegistryClient,
        repository: str,
        descriptor: Descriptor,
        writer: BlobWriter,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        self.client = client
        self.repository = repository
        self.digest = descriptor.digest if isinstance(descriptor.digest, Digest) else Digest.parse(descriptor.digest)
        self.size = descriptor.size
        self.writer = writer
        self._report = progress or (lambda n: None)
        self._path = f"/v2/{repository}/blobs/{self.digest}"

    def run(self) -> None:
        """Mirrors first, then the registry (:meth:`RegistryClient._read`), each with :meth:`_resuming`."""
        self.client._read(self._once, runner=self._resuming)

    def _resuming(self, endpoint: Endpoint, operation: Callable[[Endpoint], None]) -> None:
        """Retry transient failures on one endpoint with backoff, keeping what was written."""
        failures = 0
        while True:
            if self.writer.written > self.size:
                self._report(-self.writer.written)
                self.writer.reset()
            if self.writer.written == self.size:
                return
            try:
                operation(endpoint)
                return
            except RegistryError as error:
                if not transient(error):
                    raise
                if endpoint.mirror and (getattr(error, "connect_failed", False) or hasattr(error, "status")):
                    raise
                failures += 1
                if failures > self.client.retries:
                    raise
                self.client._sleep(self.client.backoff * 2 ** (failures - 1))

    def _once(self, endpoint: Endpoint) -> None:
        """One request from what the writer holds to the end of the blob."""
        start = self.writer.written
        headers = {"Range": f"bytes={start}-"} if start else {}
        response = self.client._exchange(
            endpoint, "GET", endpoint.url(self._path), scope=self.client._scope(self.repository), headers=headers
        )
        try:
            self._accept(response, endpoint, start)
            self._stream(response, endpoint)
        finally:
            response.close()
        if self.writer.written < self.size:
            raise RegistryUnreachable(
                f"connection to {endpoint.netloc} ended after {self.writer.written} of {self.size} bytes of blob "
                f"{self.digest}",
                transient=True,
            )

    def _restart(self, start: int) -> None:
        self.writer.reset()
        self._report(-start)

    def _accept(self, response, endpoint: Endpoint, start: int) -> None:
        """Does the answer continue at ``start`` (206 with its range), or start over (200)? Anything else raises."""
        status = response.status_code
        if status == 206 and start:
            match = _CONTENT_RANGE.fullmatch((response.headers.get("Content-Range") or "").strip())
            if not match or int(match.group(1)) != start or match.group(3) not in ("*", str(self.size)):
                self._restart(start)
                raise RegistryUnreachable(
                    f"{endpoint.netloc} answered a resumed download of blob {self.digest} with the wrong range",
                    transient=True,
                )
        elif status == 200:
            if start:
                self._restart(start)
            declared = response.headers.get("Content-Length")
            if declared is not None and declared.strip().isdigit() and int(declared) != self.size:
                raise SizeMismatch(
                    f"size mismatch: blob {self.digest} from {endpoint.netloc} is {int(declared)} bytes, "
                    f"not {self.size}"
                )
        elif status == 416:
            self._restart(start)
            raise RegistryUnreachable(f"{endpoint.netloc} refused to resume blob {self.digest}", transient=True)
        else:
            raise self.client._transport.registry_error(
                response,
                f"pulling blob {self.digest}",
                not_found_message=f"blob {self.digest} of {self.client._display(self.repository)} not found",
            )

    def _stream(self, response, endpoint: Endpoint) -> None:
        """Read the network in small pieces and hand the writer 1 MiB chunks, never past the blob's size.

        A connection that drops mid-chunk then costs at most one piece, since what was buffered is written before
        the failure is raised (and retried).
        """
        buffer = bytearray()
        try:
            for piece in self.client._transport.iter_body(response, NETWORK_PIECE):
                if len(piece) > self.size - self.writer.written - len(buffer):
                    raise SizeMismatch(
                        f"size mismatch: blob {self.digest} from {endpoint.netloc} is longer than {self.size} bytes"
                    )
                buffer += piece
                if len(buffer) >= BLOB_CHUNK:
                    self._write(buffer)
        except RegistryError:
            self._write(buffer)
            raise
        self._write(buffer)

    def _write(self, buffer: bytearray) -> None:
        if buffer:
            self.writer.write(bytes(buffer))
            self._report(len(buffer))
            buffer.clear()
