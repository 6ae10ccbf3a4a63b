"""Codec hot paths against a hand-written ``struct`` baseline, in the same process.

    .venv/bin/python bench/bench_codec.py

- decode of a Produce v9 request carrying one 16 KiB record batch;
- encode of a Fetch v11 response with 10 partitions of 16 KiB each.

The baselines handle exactly one message shape with no defaults, no validation of
nulls and no schema: they are the floor a generic codec is measured against.
"""

from __future__ import annotations

import os
import struct
import timeit
from collections.abc import Callable

from flexlog.gateway.protocol import ApiKey, decode_request, encode_request, encode_response

BATCH = os.urandom(16 * 1024)
PARTITIONS = 10


def produce_v9_frame() -> bytes:
    body = {
        "transactional_id": None,
        "acks": -1,
        "timeout_ms": 30000,
        "topic_data": [{"name": "bench", "partition_data": [{"index": 0, "records": BATCH}]}],
    }
    return encode_request(ApiKey.PRODUCE, 9, 1, body, client_id="rdkafka")[4:]


def fetch_v11_body() -> dict:
    partitions = [
        {
            "partition_index": i,
            "high_watermark": 1000 + i,
            "last_stable_offset": 1000 + i,
            "log_start_offset": 0,
            "records": BATCH,
        }
        for i in range(PARTITIONS)
    ]
    return {"responses": [{"topic": "bench", "partitions": partitions}]}


# -- hand-written baselines ----------------------------------------------------------

_HDR = struct.Struct(">hhi")
_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")


def _uvarint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def baseline_decode_produce_v9(frame: bytes) -> dict:
    api_key, api_version, correlation_id = _HDR.unpack_from(frame)
    n = _I16.unpack_from(frame, 8)[0]
    client_id = frame[10 : 10 + n].decode()
    pos = 10 + n + 1  # empty header tags
    n, pos = _uvarint(frame, pos)
    transactional_id = None if n == 0 else frame[pos : pos + n - 1].decode()
    pos += max(n - 1, 0)
    acks, timeout_ms = struct.unpack_from(">hi", frame, pos)
    pos += 6
    topics = []
    count, pos = _uvarint(frame, pos)
    for _ in range(count - 1):
        n, pos = _uvarint(frame, pos)
        name = frame[pos : pos + n - 1].decode()
        pos += n - 1
        partitions = []
        pcount, pos = _uvarint(frame, pos)
        for _ in range(pcount - 1):
            index = _I32.unpack_from(frame, pos)[0]
            n, pos = _uvarint(frame, pos + 4)
            records = frame[pos : pos + n - 1]
            pos += n  # records and the partition's empty tag buffer
            partitions.append({"index": index, "records": records})
        pos += 1
        topics.append({"name": name, "partition_data": partitions})
    return {
        "header": (api_key, api_version, correlation_id, client_id),
        "transactional_id": transactional_id,
        "acks": acks,
        "timeout_ms": timeout_ms,
        "topic_data": topics,
    }


_PARTITION_HEAD = struct.Struct(">ihqqqi")


def baseline_encode_fetch_v11(correlation_id: int, body: dict) -> bytes:
    parts = [struct.pack(">iihi", correlation_id, 0, 0, 0), _I32.pack(len(body["responses"]))]
    for topic in body["responses"]:
        name = topic["topic"].encode()
        parts += [_I16.pack(len(name)), name, _I32.pack(len(topic["partitions"]))]
        for p in topic["partitions"]:
            parts.append(
                _PARTITION_HEAD.pack(
                    p["partition_index"],
                    0,
                    p["high_watermark"],
                    p["last_stable_offset"],
                    p["log_start_offset"],
                    -1,  # aborted_transactions: null
                )
            )
            parts += [_I32.pack(-1), _I32.pack(len(p["records"])), p["records"]]
    payload = b"".join(parts)
    return _I32.pack(len(payload)) + payload


def _us_per_op(fn: Callable[[], object]) -> float:
    timer = timeit.Timer(fn)
    loops, _ = timer.autorange()
    return min(timer.repeat(repeat=5, number=loops)) / loops * 1e6


def main() -> None:
    frame = produce_v9_frame()
    fetch = fetch_v11_body()
    # Sanity: both sides agree before their speed is compared.
    ours = decode_request(frame).body
    base = baseline_decode_produce_v9(frame)
    assert ours.topic_data[0].partition_data[0].records == base["topic_data"][0]["partition_data"][
        0
    ]["records"]
    assert len(encode_response(ApiKey.FETCH, 11, 1, fetch)) == len(
        baseline_encode_fetch_v11(1, fetch)
    )

    rows = [
        (
            "decode Produce v9, 1 x 16 KiB",
            _us_per_op(lambda: decode_request(frame)),
            _us_per_op(lambda: baseline_decode_produce_v9(frame)),
        ),
        (
            f"encode Fetch v11, {PARTITIONS} x 16 KiB",
            _us_per_op(lambda: encode_response(ApiKey.FETCH, 11, 1, fetch)),
            _us_per_op(lambda: baseline_encode_fetch_v11(1, fetch)),
        ),
    ]
    print(f"{'operation':<34}{'codec us/op':>12}{'struct us/op':>14}{'ratio':>8}")
    for name, codec_us, base_us in rows:
        print(f"{name:<34}{codec_us:>12.2f}{base_us:>14.2f}{codec_us / base_us:>8.2f}")


if __name__ == "__main__":
    main()
