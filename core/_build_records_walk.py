"""cffi build script for flexlog.core._records_walk (API mode, run by setup.py at install
time): the record walk in records_walk.c, which needs nothing beyond a C compiler.
Paths are relative to the repository root, where setup.py runs."""

from __future__ import annotations

import os
import re
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
HEADER = (HERE / "records_walk.h").read_text()

ffibuilder = FFI()
# The header's defines and prototype as they stand, so the cdef cannot drift from them.
ffibuilder.cdef("\n".join([*(f"#define {name} ..." for name in re.findall(r"#define (RW_\w+)", HEADER)),
                            *re.findall(r"^int rw_.*;$", HEADER, re.M)]))
ffibuilder.set_source(
    "flexlog.core._records_walk",
    '#include "records_walk.h"',
    sources=[os.path.relpath(HERE / "records_walk.c")],
    include_dirs=[os.path.relpath(HERE)],
    extra_compile_args=["-O2", "-Wall", "-Wextra", "-std=gnu11"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
