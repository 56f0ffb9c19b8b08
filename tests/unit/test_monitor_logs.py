"""The JSON-lines container log: format, splitting, rotation, reading back, following."""

from __future__ import annotations

import json
import threading
import time

from sandbox.monitor.logs import LogEntry, LogWriter, follow, format_time, log_files, parse_time, read_logs

T0 = 1795900248.123456  # 2026-11-28T...


def lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_time_round_trip():
    text = format_time(T0)
    assert text.endswith("Z") and len(text.split(".")[1]) == 10  # nine digits and the Z
    assert abs(parse_time(text) - T0) < 1e-6
    assert parse_time("2026-11-28T21:10:48Z") == parse_time("2026-11-28T21:10:48.000000000Z")
    assert format_time(0) == "1970-01-01T00:00:00.000000000Z"


def test_write_splits_lines_and_keeps_partial(tmp_path):
    path = tmp_path / "ctr.log"
    with LogWriter(path, clock=lambda: T0) as writer:
        writer.write("stdout", b"one\ntwo\nthr")
        writer.write("stderr", b"err\n")
        writer.write("stdout", b"")
    records = lines(path)
    assert [(r["log"], r["stream"]) for r in records] == [
        ("one\n", "stdout"), ("two\n", "stdout"), ("thr", "stdout"), ("err\n", "stderr"),
    ]
    assert all(r["time"] == format_time(T0) for r in records)


def test_invalid_utf8_is_replaced(tmp_path):
    path = tmp_path / "ctr.log"
    with LogWriter(path) as writer:
        writer.write("stdout", b"caf\xc3\xa9 \xff\n")
    assert lines(path)[0]["log"] == "café \ufffd\n"


def test_rotation_keeps_max_files(tmp_path):
    path = tmp_path / "ctr.log"
    with LogWriter(path, max_bytes=200, max_files=3) as writer:
        for number in range(40):
            writer.write("stdout", f"line {number}\n".encode())
    files = log_files(path)
    assert [f.name for f in files] == ["ctr.log.2", "ctr.log.1", "ctr.log"]
    assert all(f.stat().st_size <= 200 for f in files)
    texts = [entry.text for entry in read_logs(path)]
    assert texts[-1] == "line 39\n"
    numbers = [int(text.split()[1]) for text in texts]
    assert numbers == sorted(numbers) and numbers == list(range(numbers[0], 40))  # oldest first, no gap


def test_single_file_rotation_starts_over(tmp_path):
    path = tmp_path / "ctr.log"
    with LogWriter(path, max_bytes=100, max_files=1) as writer:
        for number in range(10):
            writer.write("stdout", f"line {number}\n".encode())
    assert log_files(path) == [path]
    assert [e.text for e in read_logs(path)][-1] == "line 9\n"


def test_read_skips_malformed_and_filters(tmp_path):
    path = tmp_path / "ctr.log"
    times = iter([100.0, 200.0, 300.0])
    with LogWriter(path, clock=lambda: next(times)) as writer:
        writer.write("stdout", b"a\n")
        writer.write("stderr", b"b\n")
    with open(path, "a") as handle:
        handle.write("not json\n[1]\n{\"log\": 1, \"stream\": \"stdout\", \"time\": \"x\"}\n")
        handle.write('{"log": "c\\n", "stream": "stdin", "time": "1970-01-01T00:00:00Z"}\n')
    with LogWriter(path, clock=lambda: next(times)) as writer:
        writer.write("stdout", b"d\n")
    assert list(read_logs(path)) == [
        LogEntry("stdout", 100.0, "a\n"), LogEntry("stderr", 200.0, "b\n"), LogEntry("stdout", 300.0, "d\n"),
    ]
    assert [e.text for e in read_logs(path, tail=2)] == ["b\n", "d\n"]
    assert list(read_logs(path, tail=0)) == []
    assert [e.text for e in read_logs(path, since=200.0)] == ["b\n", "d\n"]
    assert [e.text for e in read_logs(path, since=150.0, tail=1)] == ["d\n"]
    assert list(read_logs(tmp_path / "missing.log")) == []


def test_follow_yields_new_entries_then_stops(tmp_path):
    path = tmp_path / "ctr.log"
    writer = LogWriter(path)
    writer.write("stdout", b"old\n")
    done = threading.Event()

    def produce():
        time.sleep(0.2)
        writer.write("stdout", b"new 1\n")
        writer.write("stderr", b"new 2\n")
        writer.close()
        done.set()

    thread = threading.Thread(target=produce)
    thread.start()
    seen = [(e.stream, e.text) for e in follow(path, done.is_set, interval=0.02)]
    thread.join()
    assert seen == [("stdout", "new 1\n"), ("stderr", "new 2\n")]


def test_follow_across_rotation(tmp_path):
    path = tmp_path / "ctr.log"
    writer = LogWriter(path, max_bytes=150, max_files=2)
    done = threading.Event()

    def produce():
        time.sleep(0.1)
        for number in range(6):
            writer.write("stdout", f"line {number}\n".encode())
            time.sleep(0.05)
        writer.close()
        done.set()

    path.touch()
    thread = threading.Thread(target=produce)
    thread.start()
    seen = [e.text for e in follow(path, done.is_set, interval=0.01)]
    thread.join()
    assert seen == [f"line {number}\n" for number in range(6)]


def test_follow_waits_for_the_file(tmp_path):
    path = tmp_path / "ctr.log"
    calls = []

    def stop():
        calls.append(1)
        if len(calls) == 3:
            with LogWriter(path) as writer:
                writer.write("stdout", b"late\n")
        return len(calls) > 5

    assert [e.text for e in follow(path, stop, sleep=lambda _: None)] == ["late\n"]


def test_following_on_from_a_snapshot_loses_no_line_written_between(tmp_path):
    from sandbox.monitor.logs import snapshot

    path = tmp_path / "ctr.log"
    with LogWriter(path, clock=lambda: T0) as writer:
        writer.write("stdout", b"one\ntwo\n")
        entries, count = snapshot(path, tail=1)
        assert ([entry.text for entry in entries], count) == (["two\n"], 2)
        writer.write("stdout", b"between\n")  # after the snapshot, before the follow opens the file
    followed = list(follow(path, stop=lambda: True, skip_lines=count, sleep=lambda _seconds: None))
    assert [entry.text for entry in followed] == ["between\n"]
