"""The SSD tier: immutable segment files of checkpointed entries, one color per file.

File layout (little-endian), records in SN order:
    header   magic "FLXSEG01", color u64, arena_end u64
    records  crc32c(payload) u32, length u32, sn u64, count u32, pad u32, payload
    index    n sns u64, n counts u32, n lengths u32, n offsets u64 (columns, so
             opening loads them as arrays without a per-record loop)
    trailer  index offset u64, records u64, crc32c(index) u32, pad u32, magic

`arena_end` is the PM head position the checkpoint that wrote the file moves
to. A file is only valid once the pool's head has reached it: the head store
is the checkpoint's commit point, so at open a file beyond the head is the
remains of an interrupted checkpoint and is deleted (its entries are still in
PM). Files are written under a temporary name, fsync'ed, renamed, and the
directory fsync'ed before the head moves.
"""

from __future__ import annotations

import os
from array import array
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from struct import Struct

from crc32c import crc32c

MAGIC = b"FLXSEG01"
_HEAD = Struct("<8sQQ")
_RECORD = Struct("<IIQI4x")
_TRAILER = Struct("<QQI4x8s")
_INDEX_BYTES_PER_RECORD = 8 + 4 + 4 + 8
_SUFFIX = ".seg"
_MAX_OPEN_FILES = 64
RECORD_OVERHEAD = _RECORD.size + _INDEX_BYTES_PER_RECORD
FILE_OVERHEAD = _HEAD.size + _TRAILER.size


class CorruptSegment(OSError):
    """A committed segment file fails its checksums: SSD-tier data is damaged."""


@dataclass(slots=True)
class Segment:
    id: int
    path: Path
    color: int
    arena_end: int
    size: int
    max_end: int  # one past the highest SN stored: trim deletes the file below it
    offsets: array  # file offset of each record


@dataclass(slots=True)
class LoadedSegment:
    segment: Segment
    sns: array
    counts: array
    lengths: array


class SegmentStore:
    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.used_bytes = 0
        self.segments: dict[int, Segment] = {}
        self._next_id = 0
        self._fds: OrderedDict[int, int] = OrderedDict()
        directory.mkdir(parents=True, exist_ok=True)

    def load(self, head: int) -> list[LoadedSegment]:
        """Open every committed segment; delete leftovers of interrupted checkpoints."""
        loaded = []
        for path in sorted(self.directory.iterdir()):
            if path.suffix != _SUFFIX:
                if path.name.endswith(_SUFFIX + ".tmp"):
                    path.unlink()
                continue
            color, arena_end = (int(part) for part in path.stem.split("-"))
            if arena_end > head:
                path.unlink()
                continue
            loaded.append(self._parse(path, color, arena_end))
            self._register(loaded[-1].segment)
        return loaded

    def _parse(self, path: Path, color: int, arena_end: int) -> LoadedSegment:
        """Read header, trailer and index only: opening must not read the payloads."""
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(_HEAD.size)
            f.seek(max(0, size - _TRAILER.size))
            trailer = f.read(_TRAILER.size)
            if len(head) < _HEAD.size or len(trailer) < _TRAILER.size:
                raise CorruptSegment(f"segment {path} is truncated")
            magic, h_color, h_end = _HEAD.unpack(head)
            index_at, n, index_crc, tail_magic = _TRAILER.unpack(trailer)
            f.seek(index_at)
            index = f.read(n * _INDEX_BYTES_PER_RECORD)
        if (
            magic != MAGIC
            or tail_magic != MAGIC
            or (h_color, h_end) != (color, arena_end)
            or len(index) != n * _INDEX_BYTES_PER_RECORD
            or crc32c(index) != index_crc
        ):
            raise CorruptSegment(f"segment {path} is damaged (header, trailer or index)")
        columns = [array("Q"), array("I"), array("I"), array("Q")]
        pos = 0
        for column in columns:
            column.frombytes(index[pos : pos + n * column.itemsize])
            pos += n * column.itemsize
        sns, counts, lengths, offsets = columns
        max_end = max(s + c for s, c in zip(sns, counts, strict=True)) if n else 0
        seg = Segment(self._take_id(), path, color, arena_end, size, max_end, offsets)
        return LoadedSegment(seg, sns, counts, lengths)

    def _take_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def _register(self, seg: Segment) -> None:
        self.segments[seg.id] = seg
        self.used_bytes += seg.size

    def write(
        self, color: int, arena_end: int, records: Sequence[tuple[int, int, memoryview]]
    ) -> Segment:
        """Write (sn, count, payload) records, given in SN order, durably.

        The directory still needs sync() before the file counts as written.
        """
        path = self.directory / f"{color}-{arena_end}{_SUFFIX}"
        tmp = path.with_name(path.name + ".tmp")
        sns, counts, lengths, offsets = array("Q"), array("I"), array("I"), array("Q")
        with open(tmp, "wb") as f:
            f.write(_HEAD.pack(MAGIC, color, arena_end))
            offset = _HEAD.size
            for sn, count, payload in records:
                f.write(_RECORD.pack(crc32c(payload), len(payload), sn, count))
                f.write(payload)
                sns.append(sn)
                counts.append(count)
                lengths.append(len(payload))
                offsets.append(offset)
                offset += _RECORD.size + len(payload)
            index = sns.tobytes() + counts.tobytes() + lengths.tobytes() + offsets.tobytes()
            f.write(index)
            f.write(_TRAILER.pack(offset, len(records), crc32c(index), MAGIC))
            f.flush()
            os.fsync(f.fileno())
            size = f.tell()
        os.replace(tmp, path)
        max_end = max(s + c for s, c in zip(sns, counts, strict=True))
        seg = Segment(self._take_id(), path, color, arena_end, size, max_end, offsets)
        self._register(seg)
        return seg

    def sync(self) -> None:
        """Make renames and unlinks in the directory durable."""
        fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def read(self, segment_id: int, record: int, sn: int, length: int) -> bytes:
        """The payload of a record the index says holds sn, checked against its crc32c."""
        seg = self.segments[segment_id]
        raw = os.pread(self._fd(seg), _RECORD.size + length, seg.offsets[record])
        crc, r_length, r_sn, _ = _RECORD.unpack_from(raw, 0)
        payload = raw[_RECORD.size :]
        if r_length != length or r_sn != sn or crc32c(payload) != crc:
            raise CorruptSegment(f"record {record} of {seg.path} fails its checksum")
        return payload

    def _fd(self, seg: Segment) -> int:
        fd = self._fds.get(seg.id)
        if fd is not None:
            self._fds.move_to_end(seg.id)
            return fd
        fd = os.open(seg.path, os.O_RDONLY)
        self._fds[seg.id] = fd
        if len(self._fds) > _MAX_OPEN_FILES:
            os.close(self._fds.popitem(last=False)[1])
        return fd

    def delete(self, segment_id: int) -> None:
        seg = self.segments.pop(segment_id)
        fd = self._fds.pop(segment_id, None)
        if fd is not None:
            os.close(fd)
        seg.path.unlink()
        self.used_bytes -= seg.size

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
