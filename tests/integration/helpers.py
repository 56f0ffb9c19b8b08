"""Small helpers the integration tests share."""

from __future__ import annotations

import json
import time


def wait_for(predicate, timeout: float = 20.0, interval: float = 0.05) -> bool:
    """Poll ``predicate`` until it is true (True) or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


def state(sbx, name: str) -> dict:
    """The `State` object of `sbx inspect NAME`."""
    return json.loads(sbx("inspect", name).stdout)[0]["State"]
