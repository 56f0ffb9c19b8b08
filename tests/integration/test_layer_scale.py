"""TESTPLAN 13 at full size, as the unprivileged user: a layer of 200,000 files and a 5,000-level tree is unpacked
inside the user namespace, and `rmi` removes it (files owned by a subordinate uid, a mode-000 directory among them)
without recursion errors."""

from __future__ import annotations

import io
import tarfile

FILES = 200_000
DEPTH = 5_000


def big_rootfs(path):
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as archive:
        for index in range(FILES // 1000):
            directory = tarfile.TarInfo(f"many/d{index}")
            directory.type, directory.uid, directory.gid = tarfile.DIRTYPE, 33, 33
            archive.addfile(directory)
            for number in range(1000):
                entry = tarfile.TarInfo(f"many/d{index}/f{number}")
                entry.uid = entry.gid = 33
                archive.addfile(entry, io.BytesIO())
        deep = "deep"
        for _ in range(DEPTH):
            deep += "/d"
        entry = tarfile.TarInfo(f"{deep}/bottom")
        entry.size = 3
        archive.addfile(entry, io.BytesIO(b"ok\n"))
        locked = tarfile.TarInfo("locked")
        locked.type, locked.mode, locked.uid = tarfile.DIRTYPE, 0o000, 33
        archive.addfile(locked)


def test_two_hundred_thousand_files_and_a_deep_tree(sbx, tmp_path):
    rootfs = tmp_path / "big.tar"
    big_rootfs(rootfs)
    sbx("import", rootfs, "scale/big:1", timeout=600)
    layers = sbx.data_home / "sbx" / "layers"
    [layer] = [p for p in layers.iterdir() if not p.name.startswith(".")]
    assert sum(1 for _ in (layer / "diff" / "many" / "d7").iterdir()) == 1000
    sbx("rmi", "scale/big:1", timeout=600)
    assert list(layers.iterdir()) == []
