"""Fixtures shared by the unit tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbox.config import Settings
from tests.fixtures.fakeregistry import FakeRegistry


@pytest.fixture
def config(tmp_path: Path) -> Settings:
    """Settings whose every root is under the test's tmp dir, with no config file."""
    return Settings(data_root=tmp_path / "data", runtime_root=tmp_path / "run", config_root=tmp_path / "config")


@pytest.fixture
def registry():
    """A programmable fake registry on 127.0.0.1."""
    with FakeRegistry("127.0.0.1") as fake:
        yield fake
