"""cffi build script for flexlog.pm._pmem (API mode, run by setup.py at install time).

The extension wraps the C helpers in pmem_log.c, linked against Debian's
libpmemobj and libpmem (PMDK 1.12). Paths are relative to the repository root, where
setup.py runs.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
HEADER = "libpmemobj.h"
INSTALL_HINT = (
    "libpmemobj development files not found (no libpmemobj.h on the include path). "
    "Install PMDK's libpmemobj first: `apt-get install libpmemobj-dev` "
    "(Debian/Ubuntu; PMDK >= 1.12), then reinstall flexlog."
)


def _pkg_config_cflags() -> list[str]:
    try:
        out = subprocess.run(
            ["pkg-config", "--cflags", "libpmemobj"], capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return []
    return shlex.split(out)


def _include_dirs() -> list[str]:
    dirs = [flag[2:] for flag in _pkg_config_cflags() if flag.startswith("-I")]
    for var in ("CPATH", "C_INCLUDE_PATH"):
        dirs += [d for d in os.environ.get(var, "").split(os.pathsep) if d]
    return [*dirs, "/usr/local/include", "/usr/include"]


def _require_libpmemobj() -> None:
    if not any((Path(d) / HEADER).is_file() for d in _include_dirs()):
        raise RuntimeError(INSTALL_HINT)


# The structs cffi must see, partially (`...;`: cffi takes the rest from the header).
CDEF = """
#define PM_OK ...
#define PM_EFULL ...
#define PM_ESTATE ...
#define PM_ECOLOR ...
#define PM_ERANGE ...
#define PM_ENOMEM ...
#define PM_ENTRY_HDR ...
#define PM_ST_PREPARED ...
#define PM_ST_COMMITTED ...
#define PM_ST_COMMITTING0 ...
#define PM_ST_COMMITTING1 ...
#define PM_ST_COMMITTING2 ...
#define PM_ST_COMMITTING3 ...

typedef struct pm_color {
    uint64_t color;
    uint64_t log_start;
    uint64_t tail;
    ...;
} pm_color;

typedef struct pm_root {
    uint64_t version;
    uint64_t arena_cap;
    uint64_t color_cap;
    uint64_t n_colors;
    uint64_t head;
    uint64_t tail;
    uint64_t epoch;
    uint64_t generation;
    ...;
} pm_root;

typedef struct pm_log {
    pm_root *root;
    pm_color *colors;
    char *arena;
    uint64_t cap;
    int is_pmem;
    int fd;
    ...;
} pm_log;

"""


def _function_declarations(name: str, first: str) -> str:
    """A header's prototypes as they stand, so the cdef cannot drift from them."""
    header = (HERE / name).read_text()
    start = header.index(first)
    return header[start : header.index("#endif", start)]


_require_libpmemobj()

ffibuilder = FFI()
ffibuilder.cdef(CDEF + _function_declarations("pmem_log.h", "pm_log *pm_open(")
               + _function_declarations("crc32c.h", "uint32_t pm_crc32c("))
ffibuilder.set_source(
    "flexlog.pm._pmem",
    '#include "pmem_log.h"\n#include "crc32c.h"',
    sources=[os.path.relpath(HERE / "pmem_log.c"), os.path.relpath(HERE / "crc32c.c")],
    include_dirs=[os.path.relpath(HERE)],
    # libpmem for pmem_is_pmem, the same test libpmemobj makes at open.
    libraries=["pmemobj", "pmem"],
    extra_compile_args=["-O2", "-Wall", "-Wextra", "-std=gnu11"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
