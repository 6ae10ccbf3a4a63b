"""Splitting a byte stream into Kafka frames (int32 big-endian size, then the frame)."""

from __future__ import annotations

from .exceptions import FrameTooLarge

DEFAULT_MAX_FRAME_BYTES = 100 * 1024 * 1024


class FrameReader:
    """Feed it whatever the socket returned; get back every frame completed so far.

    Frames come out without their size prefix. The prefix is checked as soon as its
    four bytes are in, so a hostile or confused peer announcing 2 GiB (or a negative
    size) is rejected before anything is buffered for it. After ``FrameTooLarge``
    the stream is out of sync and the connection has to be closed.
    """

    def __init__(self, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        self.max_frame_bytes = max_frame_bytes
        self._buffer = bytearray()

    @property
    def buffered_bytes(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        buffer = self._buffer
        buffer += data
        frames = []
        start = 0
        end = len(buffer)
        while end - start >= 4:
            size = int.from_bytes(buffer[start : start + 4], "big", signed=True)
            if not 0 <= size <= self.max_frame_bytes:
                raise FrameTooLarge(size, self.max_frame_bytes)
            if end - start - 4 < size:
                break
            frames.append(bytes(buffer[start + 4 : start + 4 + size]))
            start += 4 + size
        if start:
            del buffer[:start]
        return frames
