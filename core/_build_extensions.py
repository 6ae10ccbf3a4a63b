"""cffi build scripts for core's C extensions (API mode, run by setup.py at install time),
which need nothing beyond a C compiler: flexlog.core._records_walk (the record walk in
records_walk.c) and flexlog.core._append_wire (the AppendRequest decoder in
append_wire.c). Paths are relative to the repository root, where setup.py runs."""

from __future__ import annotations

import os
import re
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent


def _builder(stem: str, prefix: str) -> FFI:
    """The extension built from stem.c; its cdef is stem.h's `PREFIX_` defines and `prefix_`
    prototypes as they stand, so it cannot drift from the header."""
    header = (HERE / f"{stem}.h").read_text()
    ffi = FFI()
    ffi.cdef("\n".join([
        *(f"#define {name} ..." for name in re.findall(rf"#define ({prefix.upper()}_\w+)", header)),
        *re.findall(rf"^\w+ {prefix}_.*;$", header, re.M),
    ]))
    ffi.set_source(
        f"flexlog.core._{stem}",
        f'#include "{stem}.h"',
        sources=[os.path.relpath(HERE / f"{stem}.c")],
        include_dirs=[os.path.relpath(HERE)],
        extra_compile_args=["-O2", "-Wall", "-Wextra", "-std=gnu11"],
    )
    return ffi


records_walk = _builder("records_walk", "rw")
append_wire = _builder("append_wire", "aw")

if __name__ == "__main__":
    records_walk.compile(verbose=True)
    append_wire.compile(verbose=True)
