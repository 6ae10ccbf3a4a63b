"""Debian's kcat 1.7.1 on librdkafka 2.0.2 (the old version-negotiation rules) against the gateway."""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest
from confluent_kafka import Producer

pytestmark = pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat is not installed")

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
FORMAT = "%o|%k|%s|%h\\n"


def kcat(bootstrap: str, *args: str, data: bytes | None = None, timeout: float = 30) -> bytes:
    done = subprocess.run(["kcat", "-b", bootstrap, "-X", "message.max.bytes=4000000", *args],
                          input=data, capture_output=True, timeout=timeout, check=False)
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout


def consume_all(bootstrap: str, topic: str, *extra: str) -> list[bytes]:
    out = kcat(bootstrap, "-C", "-t", topic, "-p", "0", "-e", "-f", FORMAT, *extra)
    return out.splitlines()


@pytest.mark.parametrize("codec", CODECS)
def test_round_trip_every_codec(bootstrap, topic, codec):
    lines = b"".join(b"key%d:value%d\n" % (i, i) for i in range(20))
    kcat(bootstrap, "-P", "-t", topic, "-p", "0", "-z", codec, "-K:", "-H", "hdr=yes", data=lines)
    got = consume_all(bootstrap, topic, "-o", "beginning")
    assert got == [b"%d|key%d|value%d|hdr=yes" % (i, i, i) for i in range(20)]


def test_large_message_and_null_key(bootstrap, topic):
    big = b"z" * 1_300_000
    kcat(bootstrap, "-P", "-t", topic, "-p", "0", data=big + b"\n")
    out = kcat(bootstrap, "-C", "-t", topic, "-p", "0", "-e", "-o", "beginning",
               "-X", "fetch.message.max.bytes=4000000", "-f", "%K|%S\\n")
    assert out == b"-1|%d\n" % len(big)


def test_seek_end_and_timestamp(bootstrap, topic):
    p = Producer({"bootstrap.servers": bootstrap})
    for i in range(6):
        p.produce(topic, value=b"m%d" % i, partition=0, timestamp=5_000_000 + i * 100)
    assert p.flush(10) == 0
    by_time = consume_all(bootstrap, topic, "-o", "s@5000250", "-f", "%s\\n")
    assert by_time == [b"m3", b"m4", b"m5"]
    assert consume_all(bootstrap, topic, "-o", "-2", "-f", "%s\\n") == [b"m4", b"m5"]


def test_consumer_at_tail_wakes(bootstrap, topic):
    kcat(bootstrap, "-P", "-t", topic, "-p", "0", data=b"first\n")
    proc = subprocess.Popen(["kcat", "-b", bootstrap, "-C", "-t", topic, "-p", "0", "-o", "end",
                             "-c", "1", "-X", "fetch.wait.max.ms=10000", "-f", "%s\\n"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.5)
        sent_at = time.monotonic()
        kcat(bootstrap, "-P", "-t", topic, "-p", "0", data=b"wake\n")
        out, _ = proc.communicate(timeout=10)
        assert out == b"wake\n"
        assert time.monotonic() - sent_at < 3.0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
