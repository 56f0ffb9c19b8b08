"""Typed reading of the JSON records the store keeps: every wrong type is a StoreCorrupt naming the file."""

from __future__ import annotations

from sandbox.errors import StoreCorrupt


class JsonFields:
    """Typed access to one JSON object; subclasses say how a damaged record is described (:meth:`damaged`)."""

    def __init__(self, data: object, source: str, what: str) -> None:
        self.source = source
        if not isinstance(data, dict):
            raise self.damaged(f"{what} must be a JSON object")
        self.data = data

    def damaged(self, reason: str) -> StoreCorrupt:
        raise NotImplementedError

    def raw(self, key: str) -> object:
        if key not in self.data:
            raise self.damaged(f"missing field {key!r}")
        return self.data[key]

    def string(self, key: str) -> str:
        value = self.raw(key)
        if not isinstance(value, str):
            raise self.damaged(f"field {key!r} must be a string")
        return value

    def strings(self, key: str) -> tuple[str, ...]:
        value = self.raw(key)
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise self.damaged(f"field {key!r} must be a list of strings")
        return tuple(value)
