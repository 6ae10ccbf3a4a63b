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


CDEF = """
#define PM_OK ...
#define PM_EFULL ...
#define PM_ESTATE ...
#define PM_ECOLOR ...
#define PM_ERANGE ...
#define PM_ENTRY_HDR ...
#define PM_ST_PREPARED ...
#define PM_ST_COMMITTED ...
#define PM_ST_COMMITTING0 ...
#define PM_ST_COMMITTING1 ...

typedef struct pm_color {
    uint64_t color;
    uint64_t log_start;
    uint64_t tail;
    ...;
} pm_color;

typedef struct pm_root {
    uint64_t arena_cap;
    uint64_t color_cap;
    uint64_t n_colors;
    uint64_t head;
    uint64_t tail;
    uint64_t epoch;
    ...;
} pm_root;

typedef struct pm_log {
    pm_root *root;
    pm_color *colors;
    char *arena;
    uint64_t cap;
    int is_pmem;
    ...;
} pm_log;

pm_log *pm_open(const char *path, uint64_t pool_size, uint64_t color_cap, char *err,
                size_t errlen);
void pm_close(pm_log *log);
int64_t pm_prepare(pm_log *log, uint64_t token, uint64_t color, const char *payload,
                   uint32_t length, uint32_t count);
int pm_commit(pm_log *log, uint64_t pos, uint64_t token, uint64_t sn, uint32_t slot);
void pm_prepare_many(pm_log *log, size_t n, const uint64_t *tokens, const uint64_t *colors,
                     const char *data, const uint32_t *lengths, const uint32_t *counts,
                     int64_t *out);
void pm_commit_many(pm_log *log, size_t n, const uint64_t *pos, const uint64_t *tokens,
                    const uint64_t *sns, const uint32_t *slots, int32_t *out);
int pm_abort(pm_log *log, uint64_t pos, uint64_t token);
int pm_trim(pm_log *log, uint32_t slot, uint64_t color, uint64_t log_start);
int64_t pm_relocate(pm_log *log, uint64_t pos);
int pm_advance(pm_log *log, uint64_t new_head);
int pm_scan_count(pm_log *log, uint64_t *per_slot, uint64_t *prepared);
void pm_scan_fill(pm_log *log, uint64_t **sns, uint32_t **counts, uint32_t **lengths,
                  int64_t **locs, uint64_t *cursor, uint8_t *unsorted, uint64_t *prepared);
"""

_require_libpmemobj()

ffibuilder = FFI()
ffibuilder.cdef(CDEF)
ffibuilder.set_source(
    "flexlog.pm._pmem",
    '#include "pmem_log.h"',
    sources=[os.path.relpath(HERE / "pmem_log.c")],
    include_dirs=[os.path.relpath(HERE)],
    # libpmem for pmem_is_pmem, the same test libpmemobj makes at open.
    libraries=["pmemobj", "pmem"],
    extra_compile_args=["-O2", "-Wall", "-Wextra", "-std=gnu11"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
