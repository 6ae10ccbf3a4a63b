"""docs/architecture.md's module map names every module of core/, pm/ and cli/, and only those."""

from __future__ import annotations

import re

from ops_helpers import REPO

ARCHITECTURE = REPO / "docs" / "architecture.md"


def _modules() -> set[str]:
    found = set()
    for package in ("core", "pm", "cli"):
        for path in (REPO / package).glob("*.py"):
            if path.name not in ("__init__.py", "__main__.py"):
                found.add(f"{package}/{path.name}")
    return found


def _map() -> str:
    text = ARCHITECTURE.read_text()
    start = text.index("## Modules and layers")
    return text[start:text.index("\n## ", start + 1)]


def test_every_module_is_in_the_map() -> None:
    missing = sorted(m for m in _modules() if f"`{m}`" not in _map())
    assert not missing, f"docs/architecture.md's module map lacks {missing}"


def test_the_map_names_no_module_that_is_gone() -> None:
    named = set(re.findall(r"`((?:core|pm|cli)/[a-z_]+\.(?:py|c|h))`", _map()))
    gone = sorted(m for m in named if not (REPO / m).exists())
    assert not gone, f"docs/architecture.md's module map names missing files {gone}"
