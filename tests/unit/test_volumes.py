"""Named volumes: made on first use, refused names, kept while a container mounts them."""

from __future__ import annotations

import time

import pytest

from sandbox.errors import InvalidRunOption, InvalidVolumeName, VolumeInUse, VolumeNotFound
from sandbox.service.containers import RunOptions, parse_mounts
from sandbox.service.volumes import Volumes
from sandbox.store.containers import ContainerRecord, ContainerStore, containers_root


def test_a_volume_is_made_on_first_use_writable_by_the_containers_root(config):
    volumes = Volumes(config)
    source = volumes.source("data")
    volume = volumes.get("data")
    assert source == str(volume.path) and volume.path.is_dir()
    assert volume.path.stat().st_mode & 0o777 == 0o755  # the user's own: the container's root
    assert volumes.create("data") == volume  # creating it again changes nothing
    assert [v.name for v in volumes.list()] == ["data"]


@pytest.mark.parametrize("name", ["../escape", "a/b", ".hidden", "x", "a" * 256])
def test_names_that_are_not_dockers_are_refused(config, name):
    with pytest.raises(InvalidVolumeName):
        Volumes(config).create(name)
    assert not (config.data_root / "escape").exists()


def test_a_mounted_volume_is_kept_unless_forced(config):
    volumes = Volumes(config)
    volume = volumes.create("db")
    store = ContainerStore(containers_root(config.data_root))
    spec = {"spec": {"mounts": [{"kind": "bind", "target": "/data", "source": str(volume.path)}]}}
    store.create(ContainerRecord(id="a" * 64, name="user", image="busybox", image_id="sha256:" + "b" * 64,
                                 command=("true",), created=time.time(), spec=spec))
    with pytest.raises(VolumeInUse, match="user"):
        volumes.remove("db")
    assert volumes.prune() == ([], 0)
    volumes.remove("db", force=True)
    with pytest.raises(VolumeNotFound):
        volumes.get("db")


def test_bind_sources_that_are_names_become_volumes(config, tmp_path):
    volumes = Volumes(config)
    options = RunOptions(volumes=["cache:/cache:ro", f"{tmp_path}:/host"], mounts=["type=volume,src=logs,dst=/logs"])
    mounts = list(parse_mounts(options, volume_source=volumes.source))
    assert [(m.target, m.source, m.read_only) for m in mounts] == [
        ("/cache", str(volumes.get("cache").path), True),
        ("/host", str(tmp_path), False),
        ("/logs", str(volumes.get("logs").path), False),
    ]
    with pytest.raises(InvalidRunOption):
        list(parse_mounts(RunOptions(volumes=["../x:/x"]), volume_source=volumes.source))
