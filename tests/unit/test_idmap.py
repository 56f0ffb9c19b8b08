"""sandbox.runtime.idmap: /etc/subuid parsing and the default map, against files in a tmp dir."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbox.runtime.idmap import IdMap, IdRange, default_idmap, subordinate_ranges


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_ranges_by_name_and_by_uid(tmp_path: Path) -> None:
    subuid = write(tmp_path / "subuid", "ana:100000:65536\nbob:165536:65536\n1000:300000:10\n")
    assert subordinate_ranges("ana", 1000, subuid) == [(100000, 65536), (300000, 10)]
    assert subordinate_ranges("bob", 1001, subuid) == [(165536, 65536)]
    assert subordinate_ranges("carl", 1002, subuid) == []


def test_comments_blank_and_malformed_lines_are_ignored(tmp_path: Path) -> None:
    subuid = write(
        tmp_path / "subuid",
        "# ana:1:2\n\n   \nana\nana:x:10\nana:10:-5\nana:10:0\nana:1:2:3\nana::5\n  ana:200000:5  \nana:400000:7\n",
    )
    assert subordinate_ranges("ana", 1000, subuid) == [(200000, 5), (400000, 7)]


def test_missing_file_has_no_ranges(tmp_path: Path) -> None:
    assert subordinate_ranges("ana", 1000, tmp_path / "absent") == []


def test_default_map_uses_the_first_range(tmp_path: Path) -> None:
    subuid = write(tmp_path / "subuid", "ana:100000:65536\nana:500000:65536\n")
    subgid = write(tmp_path / "subgid", "1000:200000:1000\n")
    idmap = default_idmap(uid=1000, gid=1000, user="ana", subuid_path=subuid, subgid_path=subgid)
    assert idmap.uids == (IdRange(0, 1000, 1), IdRange(1, 100000, 65536))
    assert idmap.gids == (IdRange(0, 1000, 1), IdRange(1, 200000, 1000))
    assert not idmap.single
    assert idmap.uid_span == 65537
    assert idmap.gid_span == 1001
    assert idmap.size == 1001
    assert idmap.contains_uid(0) and idmap.contains_uid(65536) and not idmap.contains_uid(65537)
    assert idmap.contains_gid(1000) and not idmap.contains_gid(1001)
    assert idmap.host_uid(33) == 100032
    assert idmap.host_gid(0) == 1000
    assert idmap.host_uid(70000) is None
    assert idmap.notice() is None


def test_count_above_65536_is_capped(tmp_path: Path) -> None:
    subuid = write(tmp_path / "subuid", "ana:100000:1000000\n")
    idmap = default_idmap(uid=1000, gid=1000, user="ana", subuid_path=subuid, subgid_path=subuid)
    assert idmap.uids[1] == IdRange(1, 100000, 65536)
    assert idmap.size == 65537


def test_no_range_gives_a_single_map_and_a_notice(tmp_path: Path) -> None:
    idmap = default_idmap(
        uid=1000, gid=1000, user="ana", subuid_path=tmp_path / "subuid", subgid_path=tmp_path / "subgid"
    )
    assert idmap.single
    assert idmap.uids == (IdRange(0, 1000, 1),)
    assert idmap.gids == (IdRange(0, 1000, 1),)
    assert idmap.size == 1
    assert idmap.notice() == (
        f'no subordinate uid and gid range for user "ana" in {tmp_path / "subuid"} and {tmp_path / "subgid"}: '
        "files keep a single owner; ask an administrator to run "
        "usermod --add-subuids 100000-165535 --add-subgids 100000-165535 ana (sbx doctor checks the rest)"
    )
    assert "\n" not in idmap.notice()


def test_notice_suggests_a_range_nobody_holds(tmp_path: Path) -> None:
    subuid = write(tmp_path / "subuid", "bob:100000:65536\ncarl:165536:65536\n")
    subgid = write(tmp_path / "subgid", "ana:100000:65536\n")
    idmap = default_idmap(uid=1000, gid=1000, user="ana", subuid_path=subuid, subgid_path=subgid)
    assert not idmap.single  # the gids have a range
    notice = idmap.notice()
    assert notice is not None
    assert notice.startswith(f'no subordinate uid range for user "ana" in {subuid}: files keep a single owner')
    assert "usermod --add-subuids 262144-327679 --add-subgids 262144-327679 ana" in notice
    assert notice.endswith("(sbx doctor checks the rest)")


def test_single_is_about_both_sides() -> None:
    own = (IdRange(0, 1000, 1),)
    assert IdMap(own, own).single
    assert not IdMap((*own, IdRange(1, 100000, 10)), own).single


def test_invalid_range_is_refused() -> None:
    with pytest.raises(ValueError):
        IdRange(0, 1000, 0)
