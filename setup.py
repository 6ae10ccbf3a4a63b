"""Metadata lives in pyproject.toml; this file adds what it cannot express.

- The packages, found from the tree: pyproject's `package-dir` maps each top-level
  package (flexlog.core, ...) to its folder, and every folder below it with an
  `__init__.py` becomes a subpackage. A new subpackage is shipped without editing
  anything (a hand-kept list once left flexlog.gateway.protocol.messages out of the wheel).
- The cffi extensions flexlog.pm._pmem, flexlog.core._records_walk and
  flexlog.core._append_wire, compiled at install.
"""

import tomllib
from pathlib import Path

from setuptools import find_packages, setup

PACKAGE_DIRS: dict[str, str] = tomllib.loads(Path("pyproject.toml").read_text())["tool"]["setuptools"][
    "package-dir"
]


def packages() -> list[str]:
    found = []
    for package, folder in PACKAGE_DIRS.items():
        if not (Path(folder) / "__init__.py").is_file():
            raise SystemExit(f"package-dir maps {package} to {folder}/, which has no __init__.py")
        found += [package, *(f"{package}.{sub}" for sub in find_packages(folder))]
    return sorted(found)


setup(packages=packages(), cffi_modules=["pm/_build_pmem.py:ffibuilder",
                                              "core/_build_extensions.py:records_walk",
                                              "core/_build_extensions.py:append_wire"])
