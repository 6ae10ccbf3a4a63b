"""Fixtures of the operations tests (helpers live in ops_helpers.py: a module named conftest
is ambiguous to import, since tests/ and its subfolders each have one)."""

from __future__ import annotations

from types import ModuleType

import pytest
from ops_helpers import load_generator


@pytest.fixture(scope="session")
def generator() -> ModuleType:
    return load_generator()
