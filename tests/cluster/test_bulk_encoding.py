"""The bulk calls (WriteObject, ReadObject) carry chunks encoded and decoded by hand, to spare
copies of the data; they must stay byte-compatible with protobuf's own encoding of the same
messages, so an agent and a driver of different builds still understand each other."""

from __future__ import annotations

import os

import pytest
from ember._proto import node_pb2 as pb
from ember._remote import _read_chunk_data, encode_read_chunk, encode_write_chunk, varint

SIZES = [0, 1, 127, 128, 300, 16_383, 16_384, 1 << 20]
OFFSETS = [0, 1, 127, 128, 1 << 21, (1 << 35) + 5]


@pytest.mark.parametrize("n", [0, 1, 127, 128, 255, 16_384, 2**32, 2**63 - 1])
def test_varint_matches_protobuf(n):
    assert pb.WriteChunk(offset=n).SerializeToString() in (b"", b"\x08" + varint(n))
    assert pb.WriteChunk.FromString(b"\x08" + varint(n)).offset == n


@pytest.mark.parametrize("offset", OFFSETS)
@pytest.mark.parametrize("size", SIZES)
def test_hand_encoded_write_chunk_parses_as_protobuf(offset, size):
    data = os.urandom(size)
    msg = pb.WriteChunk.FromString(encode_write_chunk(offset, memoryview(data)))
    assert (msg.offset, msg.data) == (offset, data)


@pytest.mark.parametrize("size", SIZES)
def test_read_chunks_both_ways(size):
    data = os.urandom(size)
    ours = encode_read_chunk(memoryview(data))
    assert pb.ReadChunk.FromString(ours).data == data  # protobuf reads ours
    assert bytes(_read_chunk_data(ours)) == data
    assert bytes(_read_chunk_data(pb.ReadChunk(data=data).SerializeToString())) == data  # we read its
    # an encoding with an extra (unknown) field still decodes, through protobuf's parser
    assert bytes(_read_chunk_data(pb.ReadChunk(data=data).SerializeToString() + b"\x10\x01")) == data
