"""cffi build script for flexlog.core._append_wire (API mode, run by setup.py at install
time): the AppendRequest decoder in append_wire.c, which needs nothing beyond a C compiler.
Paths are relative to the repository root, where setup.py runs."""

from __future__ import annotations

import os
import re
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
HEADER = (HERE / "append_wire.h").read_text()

ffibuilder = FFI()
# The header's defines and prototype as they stand, so the cdef cannot drift from them.
ffibuilder.cdef("\n".join([*(f"#define {name} ..." for name in re.findall(r"#define (AW_\w+)", HEADER)),
                            *re.findall(r"^int64_t aw_.*;$", HEADER, re.M)]))
ffibuilder.set_source(
    "flexlog.core._append_wire",
    '#include "append_wire.h"',
    sources=[os.path.relpath(HERE / "append_wire.c")],
    include_dirs=[os.path.relpath(HERE)],
    extra_compile_args=["-O2", "-Wall", "-Wextra", "-std=gnu11"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
