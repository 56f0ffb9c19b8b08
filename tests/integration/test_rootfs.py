"""Pull unpacks layers inside the user namespace; the three root filesystem drivers give the same tree (TESTPLAN 14).

Runs as the unprivileged test user: layers are owned by subordinate ids on disk, and each driver's tree is read
from inside a user and mount namespace, where those ids are the image's own again.
"""

from __future__ import annotations

import json
import os
import stat

import pytest

from sandbox.oci import mediatypes as mt
from sandbox.runtime.idmap import default_idmap
from sandbox.runtime.rootfs import DRIVERS, create_dirs, plan_rootfs
from sandbox.runtime.userns import run_job
from sandbox.store.layers import LayerStore, chain_ids
from sandbox.store.store import Store
from sandbox.valueclass import asdict

_TYPES = {"file": stat.S_IFREG, "dir": stat.S_IFDIR, "symlink": stat.S_IFLNK, "fifo": stat.S_IFIFO}


def pulled(sbx, name):
    sbx("pull", "-q", name)
    store = Store.open(sbx.data_home / "sbx")
    [record] = [r for r in store.images() if any(t.endswith(f"/{name}:latest") for t in r.repo_tags)]
    return store, record


def test_pull_unpacks_each_layer_once_with_mapped_owners(sbx, registry):
    store, record = pulled(sbx, "multilayer")
    layers = LayerStore(store.root / "layers")
    chains = chain_ids([layer.diff_id for layer in record.layers])
    assert [layers.has(chain) for chain in chains] == [True] * len(chains)
    idmap = default_idmap()
    if not idmap.single:
        expected = registry.images["library/multilayer:latest"].tree
        owned_by_33 = [path for path, meta in expected.items() if meta.uid == 33 and meta.type == "file"]
        assert owned_by_33, "the fixture image should hold files owned by uid 33"
        copies = [layers.diff(chain) / owned_by_33[0] for chain in chains]
        found = [path for path in copies if os.path.lexists(path)]
        assert found and os.lstat(found[-1]).st_uid == idmap.host_uid(33)

    # busybox shares the bottom layer: pulling it unpacks nothing new
    before = sorted(p.name for p in layers.root.iterdir())
    sbx("pull", "-q", "busybox")
    assert sorted(p.name for p in layers.root.iterdir()) == before

    # removing both images removes the unpacked layers too (inside the namespace: they belong to subordinate ids)
    sbx("rmi", "multilayer", "busybox")
    assert [p for p in layers.root.iterdir()] == []


def driver_trees(store, record, tmp_path) -> dict[str, dict]:
    """The inventory of ``record``'s root filesystem under each driver, read inside a user and mount namespace."""
    idmap = default_idmap()
    layer_root = store.root / "layers"
    chains = [chain.hex for chain in chain_ids([layer.diff_id for layer in record.layers])]
    trees = {}
    containers = []
    try:
        for driver in DRIVERS:
            container = tmp_path / driver
            containers.append(str(container))
            plan = plan_rootfs(driver, container, layer_root, chains)
            create_dirs(plan)
            if driver == "copy":
                layers = [
                    {
                        "blob": str(store.blob_path(layer.digest)),
                        "compression": mt.LAYER_COMPRESSION[layer.media_type],
                        "dest": plan.copy,
                        "whiteout_format": "copy",
                    }
                    for layer in record.layers
                ]
                run_job({"op": "unpack", "layers": layers, "max_bytes": 1 << 30}, idmap)
            target = container / "mnt"
            target.mkdir()
            job = {"op": "inventory", "plan": asdict(plan), "target": str(target)}
            trees[driver] = run_job(job, idmap, mount_namespace=True)["tree"]
    finally:
        run_job({"op": "remove", "paths": containers}, idmap)
    return trees


def test_three_drivers_give_the_same_tree(sbx, registry, tmp_path):
    store, record = pulled(sbx, "multilayer")
    idmap = default_idmap()
    trees = driver_trees(store, record, tmp_path)
    assert trees["overlay"] == trees["fuse-overlayfs"]
    assert trees["overlay"] == trees["copy"]

    expected = registry.images["library/multilayer:latest"].tree
    assert sorted(trees["copy"]) == sorted(expected)
    for path, meta in expected.items():
        kind, mode, uid, gid, detail = trees["copy"][path]
        assert kind == _TYPES[meta.type], path
        if meta.type != "symlink":
            assert mode == meta.mode, path
        if not idmap.single:
            assert (uid, gid) == (meta.uid, meta.gid), path
        if meta.type == "symlink":
            assert detail == meta.target, path
        elif meta.type == "file":
            assert detail == meta.sha256, path


def test_storage_driver_is_probed_and_cached(sbx, registry):
    info = sbx("info").stdout
    driver = next(line.split(": ", 1)[1] for line in info.splitlines() if line.startswith("Storage driver: "))
    assert driver in DRIVERS
    cached = json.loads((sbx.data_home / "sbx" / "driver.json").read_text())
    assert cached["driver"] == driver and cached["kernel"] == os.uname().release
    assert driver == "overlay" or "overlay" in cached["refused"]


@pytest.mark.parametrize("driver", ["copy"])
def test_forced_driver_wins(sbx, driver):
    sbx.write_config(f'storage_driver = "{driver}"\n' + sbx.config_path.read_text())
    assert f"Storage driver: {driver}" in sbx("info").stdout


def test_loaded_images_are_unpacked_too(sbx, registry, tmp_path):
    store, record = pulled(sbx, "busybox")
    layers = LayerStore(store.root / "layers")
    chains = chain_ids([layer.diff_id for layer in record.layers])
    archive = tmp_path / "busybox.tar"
    sbx("save", "-o", archive, "busybox")
    sbx("rmi", "busybox")
    assert not any(layers.has(chain) for chain in chains)
    sbx("load", "-i", archive)
    assert all(layers.has(chain) for chain in chains)


# Hostile, but each layer writes only through symlinks of its own (a later layer writing under an earlier layer's
# symlink is TESTPLAN 65, whose semantics are settled elsewhere): every path resolves inside the root, so the three
# drivers must agree, and nothing may land outside the layer dirs.
_ESCAPES = ("victim", "victim2", "f-par", "f-link", "f-chain", "f-abs")


def _hostile_layers():
    from tests.fixtures.imagebuild import Dir, File, Hardlink, Symlink, build_layer, busybox_entries, whiteout

    first = busybox_entries() + [
        ("cur", Symlink(".")), ("par", Symlink("cur/..")), ("par/f-par", File("through cur/..\n")),
        ("link", Symlink("../victim")), ("link/f-link", File("through ../victim\n")),
        ("a", Dir()), ("a/up", Symlink("..")), ("a/up/esc", Symlink("../victim2")),
        ("a/up/esc/f-chain", File("through two hops\n")),
        ("localetc", Symlink("/etc")), ("localetc/f-abs", File("through /etc\n")),
        ("hard", Hardlink("localetc/f-abs")),  # a hardlink whose target is named through a symlink
        ("run", Dir()), ("var/run", Symlink("/run")), ("var/run/f-run", File("through /run\n")),
        ("old", Symlink("/etc/passwd")), ("becomes-file", Symlink("/etc")), ("loop1", Symlink("loop2")),
        ("loop2", Symlink("loop1")), ("data", Dir()), ("data/lower", File("lower\n")),
    ]
    second = [
        ("becomes-file", File("a file now, not a link to /etc\n")),  # replaces the link, never follows it
        (whiteout("old"), File("")),  # removes the link, not /etc/passwd
        ("data", Dir()), ("data/.wh..wh..opq", File("")), ("data/upper", File("upper\n")),
    ]
    return [build_layer(first), build_layer(second)]


def test_three_drivers_agree_on_a_hostile_image_and_nothing_lands_outside(sbx, registry, tmp_path):
    """TESTPLAN 14 with writes through relative, chained, looping and absolute symlinks and escape attempts."""
    from tests.fixtures import imagebuild

    image = imagebuild.build_image("hostile", _hostile_layers(), cmd=["/bin/sh"])
    imagebuild.push_built(registry.session(None), "hostile/links", "latest", image)
    sbx("pull", "-q", f"{registry.host}/hostile/links")
    store = Store.open(sbx.data_home / "sbx")
    [record] = store.images()
    trees = driver_trees(store, record, tmp_path)
    assert trees["overlay"] == trees["fuse-overlayfs"] == trees["copy"]
    tree = trees["copy"]
    for path in ("f-par", "victim/f-link", "victim2/f-chain", "etc/f-abs", "run/f-run"):
        assert tree.get(path, [None])[0] == stat.S_IFREG, path  # resolved inside the root
    assert tree["becomes-file"][0] == stat.S_IFREG and "old" not in tree and tree["etc/passwd"][0] == stat.S_IFREG
    assert tree["hard"][4] == tree["etc/f-abs"][4]
    assert "data/upper" in tree and "data/lower" not in tree
    # nothing outside: no escape name anywhere in the store but inside a layer's tree
    outside = []
    for directory, names, files in os.walk(sbx.data_home, onerror=lambda _error: None):
        if os.path.basename(directory) == "diff" or "/diff/" in directory + "/":
            names[:] = []
            continue
        outside += [os.path.join(directory, name) for name in names + files if name in _ESCAPES]
    assert outside == []
    assert not any(os.path.lexists(f"/{name}") or os.path.lexists(f"/tmp/{name}") for name in _ESCAPES)


def _tar(path, entries):
    import io
    import tarfile

    with tarfile.open(path, "w") as archive:
        for name, kind, value in entries:
            info = tarfile.TarInfo(name)
            if kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                archive.addfile(info)
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, value
                archive.addfile(info)
            else:
                info.size, info.mode = len(value), 0o644
                archive.addfile(info, io.BytesIO(value))
    return str(path)


def test_a_later_layer_writing_through_an_earlier_layers_symlink_gives_one_tree_on_every_driver(tmp_path):
    """TESTPLAN 65: layer 1 makes `a -> /etc` (and `b -> sub`); layer 2 writes `a/file`, `b/g`, whiteouts `a/gone`.
    containerd applies a layer onto the mounted layers below, so `a/file` lands in /etc: sbx's overlay layers are
    unpacked the same way, and the copy driver always did."""
    idmap = default_idmap()
    first = _tar(tmp_path / "1.tar", [("etc", "dir", None), ("etc/keep", "file", b"keep\n"),
                                      ("etc/gone", "file", b"gone\n"), ("a", "symlink", "/etc"),
                                      ("sub", "dir", None), ("b", "symlink", "sub"), ("c", "symlink", "/made")])
    second = _tar(tmp_path / "2.tar", [("a/file", "file", b"through the link\n"), ("a/.wh.gone", "file", b""),
                                       ("b/g", "file", b"relative\n"), ("c/h", "file", b"new dir\n")])
    layer_root = tmp_path / "layers"
    for name in ("l1", "l2"):
        (layer_root / name / "diff").mkdir(parents=True)
    unpack = [{"blob": first, "compression": "none", "dest": str(layer_root / "l1" / "diff"),
               "whiteout_format": "overlay", "lowers": []},
              {"blob": second, "compression": "none", "dest": str(layer_root / "l2" / "diff"),
               "whiteout_format": "overlay", "lowers": [str(layer_root / "l1" / "diff")]}]
    containers = [str(layer_root)]
    trees = {}
    try:
        run_job({"op": "unpack", "layers": unpack, "max_bytes": 1 << 30}, idmap)
        for driver in DRIVERS:
            container = tmp_path / driver
            containers.append(str(container))
            plan = plan_rootfs(driver, container, layer_root, ["l1", "l2"])
            create_dirs(plan)
            if driver == "copy":
                layers = [{"blob": blob, "compression": "none", "dest": plan.copy, "whiteout_format": "copy"}
                          for blob in (first, second)]
                run_job({"op": "unpack", "layers": layers, "max_bytes": 1 << 30}, idmap)
            target = container / "mnt"
            target.mkdir()
            job = {"op": "inventory", "plan": asdict(plan), "target": str(target)}
            try:
                trees[driver] = run_job(job, idmap, mount_namespace=True)["tree"]
            except Exception as error:  # a driver this kernel lacks (the probe would not choose it)
                if driver == "copy":
                    raise
                trees[driver] = None
                print(f"{driver}: {error}")
    finally:
        run_job({"op": "remove", "paths": containers}, idmap)
    copy = trees["copy"]
    assert copy["a"][0] == stat.S_IFLNK and copy["etc/file"][0] == stat.S_IFREG and "etc/gone" not in copy
    assert copy["sub/g"][0] == stat.S_IFREG and copy["made/h"][0] == stat.S_IFREG and "a/file" not in copy
    assert "etc/keep" in copy
    for driver in ("overlay", "fuse-overlayfs"):
        if trees[driver] is not None:
            assert trees[driver] == copy, driver
    assert trees["overlay"] is not None or trees["fuse-overlayfs"] is not None
