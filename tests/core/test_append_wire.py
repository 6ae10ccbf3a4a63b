"""The hand-written AppendRequest codec against the generated protobuf classes."""

import random

import pytest
from google.protobuf.message import DecodeError

from flexlog.core.append_wire import MAX_OPS, AppendOp, MalformedAppend, decode_request, encode_op, requests
from flexlog.core.proto import flexlog_pb2 as pb


def _random_op(rng: random.Random) -> AppendOp:
    return AppendOp(
        token=rng.choice([0, 1, 2**64 - 1, rng.getrandbits(64)]),
        color=rng.choice([0, 1, 127, 128, 2047, 2048, 2**63, 2**64 - 1, rng.getrandbits(40)]),
        owner=rng.choice([0, 1, 300, 2**32 - 1]),
        count=rng.choice([0, 1, 2047, 2048, 5000, 2**32 - 1]),
        # sizes either side of the encoder's small-value tables (2,048), for the payload and the op
        payload=rng.randbytes(rng.choice([0, 1, 127, 128, 2020, 2047, 2048, 20_000])),
        contiguous=rng.random() < 0.5,
    )


def _as_pb(op: AppendOp) -> pb.AppendOp:
    return pb.AppendOp(token=op.token, color=op.color, owner=op.owner, count=op.count,
                       payload=bytes(op.payload), contiguous=op.contiguous)


def test_encoding_is_the_generated_serialization() -> None:
    rng = random.Random(7)
    for _ in range(300):
        ops = [_random_op(rng) for _ in range(rng.randint(1, 4))]
        expected = pb.AppendRequest(ops=[_as_pb(op) for op in ops]).SerializeToString()
        assert b"".join(encode_op(op) for op in ops) == expected


def test_a_negative_field_is_refused_not_encoded_as_another_value() -> None:
    for op in (AppendOp(1, -5, 0, 1, b"x"), AppendOp(1, 2, 3, -1, b"x"), AppendOp(1, 2, -3, 1, b"x")):
        with pytest.raises(ValueError):
            encode_op(op)


def test_decoding_reads_what_the_generated_classes_write() -> None:
    rng = random.Random(8)
    for _ in range(300):
        ops = [_random_op(rng) for _ in range(rng.randint(0, 4))]
        data = pb.AppendRequest(ops=[_as_pb(op) for op in ops]).SerializeToString()
        decoded = decode_request(data)
        assert [(o.token, o.color, o.owner, o.count, bytes(o.payload), o.contiguous) for o in decoded] \
            == [(o.token, o.color, o.owner, o.count, bytes(o.payload), o.contiguous) for o in ops]


def test_payloads_are_views_of_the_message_not_copies() -> None:
    data = encode_op(AppendOp(1, 2, 3, 1, b"x" * 1000))
    (op,) = decode_request(data)
    assert isinstance(op.payload, memoryview)
    assert op.payload.obj is data


def test_fields_in_any_order_and_unknown_fields_are_accepted() -> None:
    # color (2), an unknown varint field 9, an unknown length-delimited field 10, payload
    # (5), an unknown fixed32 field 11, token (1): a newer sender's reordered message.
    body = (b"\x10\x05" + b"\x48\x96\x01" + b"\x52\x02hi" + b"\x2a\x03abc"
            + b"\x5d\x00\x00\x00\x00" + b"\x09" + (7).to_bytes(8, "little"))
    data = b"\x0a" + bytes([len(body)]) + body + b"\x12\x00"  # and an unknown field 2 of the request
    (op,) = decode_request(data)
    assert (op.token, op.color, bytes(op.payload)) == (7, 5, b"abc")


@pytest.mark.parametrize("data", [
    b"\x0a\x05\x10",  # op longer than the request
    b"\x0a\x03\x2a\x05ab",  # payload longer than its op
    b"\x0a\x02\x09\x01",  # truncated token
    b"\x0a\x02\x10\x80",  # truncated varint
    b"\x0a\x01\x0b",  # wire type 3 (groups): never sent by proto3
    b"\x10" + b"\xff" * 11,  # a varint of more than 64 bits
])
def test_malformed_requests_are_refused(data: bytes) -> None:
    with pytest.raises(MalformedAppend):
        decode_request(data)


def test_a_message_of_more_ops_than_the_first_guess_decodes_whole() -> None:
    ops = [AppendOp(i + 1, 7, 1, 1, bytes([i % 256]) * (i % 5 + 1), i % 3 == 0) for i in range(1000)]
    decoded = decode_request(b"".join(encode_op(op) for op in ops))
    assert [(o.token, o.color, bytes(o.payload), o.contiguous) for o in decoded] \
        == [(o.token, o.color, bytes(o.payload), o.contiguous) for o in ops]


def test_a_repeated_field_keeps_its_last_value() -> None:
    body = b"\x10\x05\x10\x06" + b"\x2a\x01a\x2a\x02bc" + b"\x18\x01\x18\x02" + b"\x30\x01\x30\x00"
    (op,) = decode_request(b"\x0a" + bytes([len(body)]) + body)
    assert (op.color, bytes(op.payload), op.owner, op.contiguous) == (6, b"bc", 2, False)
    assert op == pb_values(b"\x0a" + bytes([len(body)]) + body)[0]


def test_uint32_fields_keep_their_low_32_bits_as_protobuf_does() -> None:
    body = b"\x18" + b"\xff" * 9 + b"\x01" + b"\x20\x80\x80\x80\x80\x10"  # owner 2**64 - 1, count 2**32
    data = b"\x0a" + bytes([len(body)]) + body
    (op,) = decode_request(data)
    assert (op.owner, op.count) == (2**32 - 1, 0) == (pb.AppendRequest.FromString(data).ops[0].owner,
                                                      pb.AppendRequest.FromString(data).ops[0].count)


@pytest.mark.parametrize(("data", "reason"), [
    (b"\x0a\x02\x52\x05", "field runs past the end of its message"),  # unknown field 10, 5 bytes
    (b"\x0a\x02\x59\x00", "field runs past the end of its message"),  # unknown fixed64 field 11
    (b"\x0a\x05\x10", "op runs past the end of the request"),
    (b"\x0a\x03\x2a\x05ab", "payload runs past the end of its op"),
    (b"\x0a\x02\x09\x01", "truncated token"),
    (b"\x0a\x01\x0e", "unsupported wire type"),
])
def test_a_malformed_request_says_what_is_wrong(data: bytes, reason: str) -> None:
    with pytest.raises(MalformedAppend, match=reason):
        decode_request(data)


def test_a_request_of_more_than_max_ops_is_refused() -> None:
    # An empty op is two bytes on the wire and about 170 in the decoded list.
    assert len(decode_request(b"\x0a\x00" * MAX_OPS)) == MAX_OPS
    with pytest.raises(MalformedAppend, match=f"more than {MAX_OPS} ops"):
        decode_request(b"\x0a\x00" * (MAX_OPS + 1))


def test_requests_split_at_max_ops_and_max_bytes_keeping_the_order() -> None:
    empty = [encode_op(AppendOp(token=i + 1, color=1, owner=0, count=1, payload=b""))
             for i in range(MAX_OPS + 3)]
    split = list(requests(empty, 1 << 30))
    assert [len(decode_request(r)) for r in split] == [MAX_OPS, 3]
    assert b"".join(split) == b"".join(empty)
    ops = [encode_op(AppendOp(token=i + 1, color=1, owner=0, count=1, payload=b"x" * size))
           for i, size in enumerate([40, 40, 40, 500, 10])]
    split = list(requests(ops, 120))  # each 40-byte op is 57 bytes encoded
    assert split == [ops[0] + ops[1], ops[2], ops[3], ops[4]]
    assert split[2] is ops[3]  # a lone op is not copied
    assert list(requests([], 100)) == []


def pb_values(data: bytes) -> list[AppendOp]:
    return [AppendOp(o.token, o.color, o.owner, o.count, o.payload, o.contiguous)
            for o in pb.AppendRequest.FromString(data).ops]


def test_mutated_messages_decode_as_protobuf_reads_them_or_are_refused() -> None:
    # The decoder is C reading bytes from the network: any bytes must give either what
    # protobuf's own parser reads from them, or MalformedAppend, never a crash or a read
    # outside the message.
    rng = random.Random(9)
    agreed = refused = 0
    for _ in range(3000):
        ops = [_random_op(rng) for _ in range(rng.randint(1, 3))]
        for op in ops:
            if len(op.payload) > 200:
                ops[ops.index(op)] = op._replace(payload=op.payload[:200])
        data = bytearray(b"".join(encode_op(op) for op in ops))
        for _ in range(rng.randint(1, 4)):
            action = rng.random()
            at = rng.randrange(len(data))
            if action < 0.5:
                data[at] = rng.randrange(256)
            elif action < 0.75:
                del data[at:at + rng.randint(1, 8)]
            else:
                data[at:at] = rng.randbytes(rng.randint(1, 8))
        try:
            ours = decode_request(bytes(data))
        except MalformedAppend as exc:
            refused += 1
            try:
                pb_values(bytes(data))
            except DecodeError:
                continue
            # protobuf reads groups, which proto3 never writes and we refuse.
            assert "unsupported wire type" in str(exc)
            continue
        try:
            theirs = pb_values(bytes(data))
        except DecodeError:  # field number 0 or a tag over 32 bits: we skip it as unknown
            continue
        assert [(o.token, o.color, o.owner, o.count, bytes(o.payload), o.contiguous) for o in ours] \
            == [(o.token, o.color, o.owner, o.count, bytes(o.payload), o.contiguous) for o in theirs]
        agreed += 1
    assert agreed > 300 and refused > 300
