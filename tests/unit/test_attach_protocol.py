"""The attach socket's frames: encode, decode in pieces, refuse what is too big or unknown."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sandbox.monitor import attach
from sandbox.monitor.attach import (
    DETACH,
    EXIT,
    RESIZE,
    STDIN,
    STDOUT,
    AttachProtocolError,
    Frame,
    FrameReader,
    encode,
    encode_data,
    encode_json,
)

TYPES = st.sampled_from([attach.STDIN, attach.RESIZE, attach.DETACH, attach.STDOUT, attach.STDERR, attach.EXIT])


def test_header_is_type_then_big_endian_length():
    assert encode(STDIN, b"hi") == b"\x01\x00\x00\x00\x02hi"
    assert encode(DETACH) == b"\x03\x00\x00\x00\x00"


@given(st.lists(st.tuples(TYPES, st.binary(max_size=300)), max_size=20))
def test_round_trip(frames):
    stream = b"".join(encode(kind, payload) for kind, payload in frames)
    assert FrameReader().feed(stream) == [Frame(kind, payload) for kind, payload in frames]


@given(st.lists(st.tuples(TYPES, st.binary(max_size=100)), min_size=1, max_size=10), st.data())
def test_partial_frames_across_reads(frames, data):
    stream = b"".join(encode(kind, payload) for kind, payload in frames)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    reader = FrameReader()
    decoded = []
    start = 0
    for cut in [*cuts, len(stream)]:
        decoded += reader.feed(stream[start:cut])
        start = cut
    assert decoded == [Frame(kind, payload) for kind, payload in frames]
    assert reader.buffer == b""


def test_one_byte_at_a_time_gives_the_frame_only_when_complete():
    stream = encode_json(RESIZE, {"rows": 24, "cols": 80})
    reader = FrameReader()
    for byte in stream[:-1]:
        assert reader.feed(bytes([byte])) == []
    (frame,) = reader.feed(stream[-1:])
    assert attach.parse_resize(frame) == (24, 80)


def test_oversize_frame_is_refused_before_its_payload_arrives():
    header = struct.pack(">BI", STDOUT, attach.MAX_PAYLOAD + 1)
    with pytest.raises(AttachProtocolError, match="over the limit"):
        FrameReader().feed(header)
    with pytest.raises(AttachProtocolError):
        encode(STDOUT, b"x" * (attach.MAX_PAYLOAD + 1))


def test_unknown_type_is_refused():
    with pytest.raises(AttachProtocolError, match="unknown"):
        FrameReader().feed(b"\x7f\x00\x00\x00\x00")


def test_large_data_is_split_into_frames_under_the_limit():
    data = bytes(range(256)) * (attach.MAX_PAYLOAD // 256 * 2 + 3)
    frames = FrameReader().feed(encode_data(STDOUT, data))
    assert len(frames) == 3 and all(len(f.payload) <= attach.MAX_PAYLOAD for f in frames)
    assert b"".join(f.payload for f in frames) == data
    assert encode_data(STDOUT, b"") == b""


def test_malformed_json_payloads():
    assert attach.parse_exit(Frame(EXIT, b'{"code": 4}')) == 4
    assert attach.parse_exit(Frame(EXIT, b'{"code": null}')) is None
    for payload in (b"nope", b"[1]", b'{"rows": -1, "cols": 80}', b'{"rows": "24", "cols": 80}'):
        with pytest.raises(AttachProtocolError):
            attach.parse_resize(Frame(RESIZE, payload))
