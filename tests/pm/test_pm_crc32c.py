"""The arena's CRC-32C against the crc32c package (the one Kafka batches are checked with)."""

from __future__ import annotations

import random

import crc32c
import pytest

from flexlog.pm._pmem import lib

LANES = 3 * 4096  # where the three-lane path starts


@pytest.mark.parametrize("function", [lib.pm_crc32c, lib.pm_crc32c_table])
def test_both_paths_agree_with_the_package_at_every_boundary(function):
    rng = random.Random(7)
    data = rng.randbytes(4 * LANES + 100)
    lengths = [0, 1, 7, 8, 9, 63, 64, 4095, 4096, LANES - 1, LANES, LANES + 1, 2 * LANES + 13,
               len(data)] + [rng.randrange(len(data)) for _ in range(20)]
    for n in lengths:
        assert function(0, data, n) == crc32c.crc32c(data[:n]), n
        cut = rng.randrange(n + 1)
        head = function(0, data, cut)
        assert function(head, data[cut:], n - cut) == crc32c.crc32c(data[:n]), (n, cut)


def test_the_check_value():
    assert lib.pm_crc32c(0, b"123456789", 9) == 0xE3069283 == lib.pm_crc32c_table(0, b"123456789", 9)
