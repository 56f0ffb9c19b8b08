"""ContainerSpec.to_json / from_json: what the container record keeps so that `sbx start` can rebuild it."""

from __future__ import annotations

import copy
import json

import pytest

from sandbox.errors import StoreCorrupt
from sandbox.runtime.idmap import IdMap, IdRange
from sandbox.runtime.rootfs import RootfsPlan
from sandbox.runtime.spec import ContainerSpec, Mount, Process


def overlay_spec(**changes) -> ContainerSpec:
    values = dict(
        id="ab" * 32,
        rootfs=RootfsPlan("overlay", "/d/layers", ("c2/diff", "c1/diff"), upper="/d/c/upper", work="/d/c/work"),
        process=Process(("sh", "-c", "echo hi"), ("PATH=/bin", "X=ü"), cwd="/tmp", user="1000:1000", tty=True,
                        stdin=False),
        idmap=IdMap((IdRange(0, 1000, 1), IdRange(1, 100000, 65536)), (IdRange(0, 1000, 1),), note="no gids"),
        hostname="abababababab",
        mounts=(Mount("bind", "/data", "/srv/data", read_only=True), Mount("tmpfs", "/run", options=("size=64m",))),
        read_only=True,
        network="host",
        init=True,
        stop_signal="SIGQUIT",
        etc_files={"hostname": "x\n", "hosts": "127.0.0.1\tlocalhost\n", "resolv.conf": ""},
    )
    values.update(changes)
    return ContainerSpec(**values)


def roundtrip(spec: ContainerSpec) -> ContainerSpec:
    return ContainerSpec.from_json(json.loads(json.dumps(spec.to_json())))


@pytest.mark.parametrize(
    "spec",
    [
        overlay_spec(),
        overlay_spec(rootfs=RootfsPlan("copy", "/d/layers", ("c1/diff",), copy="/d/c/rootfs"), mounts=(),
                     stop_signal=None, etc_files={}, network="none"),
        overlay_spec(idmap=IdMap((IdRange(0, 1000, 1),), (IdRange(0, 1000, 1),)), process=Process(("true",), ())),
    ],
)
def test_round_trip_is_exact(spec):
    back = roundtrip(spec)
    assert back == spec
    assert isinstance(back.mounts, tuple) and isinstance(back.process.args, tuple)
    assert isinstance(back.idmap.uids[0], IdRange) and isinstance(back.rootfs.lower, tuple)
    assert back.to_json() == spec.to_json()


def damage(path, value):
    data = overlay_spec().to_json()
    target = data
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return data


@pytest.mark.parametrize(
    "data",
    [
        None,
        [],
        damage(("version",), 2),
        damage(("version",), True),
        damage(("id",), KeyError),
        damage(("extra",), 1),
        damage(("hostname",), 5),
        damage(("read_only",), "yes"),
        damage(("network",), "bridge"),
        damage(("mounts",), {}),
        damage(("mounts", 0, "kind"), "volume"),
        damage(("mounts", 0, "target"), "relative"),
        damage(("mounts", 0, "source"), None),
        damage(("mounts", 1, "options"), "size=1m"),
        damage(("process", "args"), []),
        damage(("process", "args"), ["sh", 1]),
        damage(("process", "tty"), 1),
        damage(("process", "stdin"), KeyError),
        damage(("rootfs", "driver"), "zfs"),
        damage(("rootfs", "upper"), None),
        damage(("rootfs", "lower"), "c1/diff"),
        damage(("idmap", "uids"), []),
        damage(("idmap", "uids"), [[0, 1000]]),
        damage(("idmap", "uids"), [[0, 1000, 0]]),
        damage(("idmap", "gids"), [[0, 1000, True]]),
        damage(("etc_files",), {"hosts": 1}),
        damage(("stop_signal",), 15),
    ],
)
def test_damaged_specs_are_refused_with_a_store_error(data):
    with pytest.raises(StoreCorrupt) as caught:
        ContainerSpec.from_json(copy.deepcopy(data))
    assert caught.value.message.startswith("damaged container spec: ")
