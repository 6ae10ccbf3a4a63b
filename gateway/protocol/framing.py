"""Splitting a byte stream into Kafka frames (int32 big-endian size, then the frame)."""

from __future__ import annotations

from collections import deque

from .exceptions import FrameTooLarge

DEFAULT_MAX_FRAME_BYTES = 100 * 1024 * 1024


class FrameReader:
    """Feed it whatever the socket returned; get back every frame completed so far.

    Frames come out without their size prefix. The prefix is checked as soon as its
    four bytes are in, so a hostile or confused peer announcing 2 GiB (or a negative
    size) is rejected before anything is buffered for it. After ``FrameTooLarge``
    the stream is out of sync and the connection has to be closed.

    Reads are kept as they came and a frame is cut out with one join, so each byte is
    copied once (a frame that is exactly one read, not at all); appending reads to one
    growing buffer and slicing frames out of it copied a 1 MB produce three times.
    """

    def __init__(self, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        self.max_frame_bytes = max_frame_bytes
        self._chunks: deque[bytes] = deque()
        self._offset = 0  # bytes of _chunks[0] already handed out
        self._buffered = 0
        self._frame_size: int | None = None  # the size prefix read, its frame not complete

    @property
    def buffered_bytes(self) -> int:
        return self._buffered

    def feed(self, data: bytes) -> list[bytes]:
        if data:
            self._chunks.append(data)
            self._buffered += len(data)
        frames = []
        while True:
            if self._frame_size is None:
                if self._buffered < 4:
                    break
                size = int.from_bytes(self._take(4), "big", signed=True)
                if not 0 <= size <= self.max_frame_bytes:
                    raise FrameTooLarge(size, self.max_frame_bytes)
                self._frame_size = size
            if self._buffered < self._frame_size:
                break
            frames.append(self._take(self._frame_size))
            self._frame_size = None
        return frames

    def _take(self, n: int) -> bytes:
        """The next n buffered bytes (n <= what is buffered)."""
        if n == 0:
            return b""
        self._buffered -= n
        first = self._chunks[0]
        if self._offset == 0 and len(first) == n:
            self._chunks.popleft()
            return first
        pieces: list[memoryview] = []
        while n:
            chunk = self._chunks[0]
            k = min(n, len(chunk) - self._offset)
            pieces.append(memoryview(chunk)[self._offset:self._offset + k])
            n -= k
            self._offset += k
            if self._offset == len(chunk):
                self._chunks.popleft()
                self._offset = 0
        return pieces[0].tobytes() if len(pieces) == 1 else b"".join(pieces)
