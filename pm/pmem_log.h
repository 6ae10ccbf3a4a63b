/*
 * The persistent half of the FlexLog replica store: one libpmemobj pool holding
 * a ring arena of entries and a table of per-color metadata.
 *
 * Every function that changes the pool is one call from Python. A prepare or a
 * commit, of one entry or a batch, costs one persistence barrier: what it writes
 * carries checks that tell, at open, whether all of it reached the media
 * (docs/storage.md, "Crash consistency"). The other changes end at a single
 * 8-byte commit point (an entry's state word, the arena head, a color's
 * log_start). The structs below are mirrored in _build_pmem.py's cdef.
 */
#ifndef FLEXLOG_PMEM_LOG_H
#define FLEXLOG_PMEM_LOG_H

#include <stddef.h>
#include <stdint.h>

#define PM_OK 0
#define PM_EFULL (-1)  /* no room in the arena */
#define PM_ESTATE (-2) /* the entry is not in the state the call expects */
#define PM_ECOLOR (-3) /* color slot out of range or naming another color */
#define PM_ERANGE (-4) /* not an entry boundary, or slots that do not tile the arena */
#define PM_ENOMEM (-5) /* no memory for a commit batch's bookkeeping; nothing was written */

/* Entry states; the high half is a tag so a stray zero never reads as a state. */
#define PM_ST_PREPARED 0x464c580000000001ULL
#define PM_ST_COMMITTED 0x464c580000000002ULL
#define PM_ST_ABORTED 0x464c580000000003ULL
#define PM_ST_PAD 0x464c580000000004ULL
#define PM_ST_RELOCATED 0x464c580000000005ULL
/*
 * Written by pm_commit_many: tag k for a batch whose number is k mod 4 (a
 * version 1 pool used only 0 and 1, for the epoch's parity). An entry stays
 * COMMITTING until the next batch's barrier, then becomes COMMITTED; the
 * open-time settle pass rewrites every one left to COMMITTED or PREPARED.
 */
#define PM_ST_COMMITTING0 0x464c580000000006ULL
#define PM_ST_COMMITTING1 0x464c580000000007ULL
#define PM_ST_COMMITTING2 0x464c580000000008ULL
#define PM_ST_COMMITTING3 0x464c580000000009ULL

#define PM_ENTRY_HDR 64

typedef struct pm_entry {
	uint64_t state;
	uint64_t token;
	uint64_t color;
	uint64_t sn;
	uint32_t count;
	uint32_t length;  /* payload bytes */
	uint32_t size;    /* whole slot: header + payload rounded up to 64 */
	uint32_t slot;    /* index of the color's metadata slot, set at commit */
	/*
	 * Slot check: CRC-32C of the pool's generation, the slot's position, the
	 * fields above that a prepare writes (token, color, count, length, size)
	 * and the payload past its first 8 bytes (which commit rewrites). A
	 * version 1 pool kept a timestamp here.
	 */
	uint64_t check;
	uint64_t committed_ns;
} pm_entry;

_Static_assert(sizeof(pm_entry) == PM_ENTRY_HDR, "a slot's header is PM_ENTRY_HDR bytes");

typedef struct pm_color {
	uint64_t color;
	uint64_t log_start; /* first SN not trimmed */
	uint64_t tail;      /* one past the highest committed SN (a lower bound) */
	uint64_t reserved;
} pm_color;

typedef struct pm_root {
	uint64_t magic;
	uint64_t version;
	uint64_t arena_cap;  /* bytes, a multiple of 64 */
	uint64_t arena_off;  /* from the root object's start */
	uint64_t color_cap;
	uint64_t n_colors;
	/* Logical byte positions that only grow; the physical offset is pos % arena_cap. */
	uint64_t head; /* oldest entry still owned by PM */
	uint64_t tail; /* where the next entry goes */
	uint64_t created_ns;
	/*
	 * pm_commit_many's commit word: the last batch's number in the high 32
	 * bits, in the low 32 the sum of its entries' commit checks, or 0 once
	 * the batch is known whole. Zero in a new pool. (Version 1: a counter.)
	 */
	uint64_t epoch;
	/*
	 * Drawn at random at every open (zero in pools made before it). Slot
	 * checks include it, so a slot a crash left past the tail is never taken
	 * up in a later session.
	 */
	uint64_t generation;
} pm_root;

typedef struct pm_log {
	void *pop;
	pm_root *root;
	pm_color *colors;
	char *arena;
	uint64_t cap;
	int is_pmem; /* flush per cache line; otherwise every flush is an msync */
	/*
	 * msync path only: one past the highest physical arena byte written since
	 * the last barrier, which msyncs from the root up to it.
	 */
	uint64_t dirty_hi;
	/* msync path only: the pool file, opened again for the arena's stores (-1: the mapping). */
	int fd;
	/* The last commit batch's entries, still COMMITTING until the next barrier. */
	uint64_t *pending;
	size_t n_pending;
	uint64_t *fresh; /* the batch being committed; swapped with pending */
	size_t spare_cap; /* capacity of pending and fresh */
} pm_log;

pm_log *pm_open(const char *path, uint64_t pool_size, uint64_t color_cap, char *err,
		size_t errlen);
void pm_close(pm_log *log);
int64_t pm_prepare(pm_log *log, uint64_t token, uint64_t color, const char *payload,
		uint32_t length, uint32_t count);
int pm_commit(pm_log *log, uint64_t pos, uint64_t token, uint64_t sn, uint32_t slot);
void pm_prepare_many(pm_log *log, size_t n, const uint64_t *tokens, const uint64_t *colors,
		     const char *const *payloads, const uint32_t *lengths,
		     const uint32_t *counts, int64_t *out);
void pm_commit_many(pm_log *log, size_t n, const uint64_t *pos, const uint64_t *tokens,
		    const uint64_t *sns, const uint32_t *slots, int32_t *out);
int pm_abort(pm_log *log, uint64_t pos, uint64_t token);
int pm_trim(pm_log *log, uint32_t slot, uint64_t color, uint64_t log_start);
int64_t pm_relocate(pm_log *log, uint64_t pos);
int pm_advance(pm_log *log, uint64_t new_head);
void pm_settle_commits(pm_log *log);
int pm_scan_count(pm_log *log, uint64_t *per_slot, uint64_t *prepared);
void pm_scan_fill(pm_log *log, uint64_t **sns, uint32_t **counts, uint32_t **lengths,
		  int64_t **locs, uint64_t *cursor, uint8_t *unsorted, uint64_t *prepared);

#endif
