import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from flexlog.core import grpc_transport

# The gRPC transport every flexlog process runs, here too and in every child, whichever test
# imports grpc first.
grpc_transport.choose()

# Test helpers (tests/cluster.py, tests/gateway/wire_client.py) are imported as plain modules.
sys.path[:0] = [str(Path(__file__).parent), str(Path(__file__).parent / "gateway")]


@pytest.fixture
def shm_dir() -> Iterator[Path]:
    """A fresh directory in /dev/shm: PM pools there behave as emulated persistent memory."""
    path = Path(tempfile.mkdtemp(prefix="flexlog-test-", dir="/dev/shm"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
