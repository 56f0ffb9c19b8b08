"""A pull's events as Docker's JSON progress stream (what `docker pull` draws its bars from)."""

from __future__ import annotations

import threading

from sandbox.service.images import PullEvents

_STATUS = {
    "exists": "Already exists",
    "waiting": "Waiting",
    "downloading": "Downloading",
    "verifying": "Verifying Checksum",
    "downloaded": "Download complete",
    "extracting": "Extracting",
    "extracted": "Pull complete",
}


class PullProgress(PullEvents):
    """Writes one JSON object per event; events come from the pull's worker threads."""

    def __init__(self, stream) -> None:
        self.stream = stream
        self.lock = threading.Lock()
        self.tag = ""

    def _send(self, value: dict) -> None:
        with self.lock:
            self.stream.json(value)

    def resolved(self, ref, default_tag: bool) -> None:
        self.tag = ref.tag or str(ref.digest)
        if default_tag:
            self._send({"status": "Using default tag: latest"})
        self._send({"status": f"Pulling from {ref.repository}", "id": self.tag})

    def layer(self, digest, size: int, state: str) -> None:
        status = _STATUS.get(state, state)
        detail = {"current": size, "total": size} if state == "downloaded" else {}
        self._send({"status": status, "progressDetail": detail, "id": digest.hex[:12]})

    def progress(self, digest, done: int, total: int) -> None:
        self._send({"status": "Downloading", "progressDetail": {"current": done, "total": total},
                    "id": digest.hex[:12]})

    def notice(self, text: str) -> None:
        self._send({"status": text})

    def done(self, result) -> None:
        self._send({"status": f"Digest: {result.digest}"})
        name = result.reference.familiar
        if result.up_to_date:
            self._send({"status": f"Status: Image is up to date for {name}"})
        else:
            self._send({"status": f"Status: Downloaded newer image for {name}"})
