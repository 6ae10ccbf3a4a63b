/*
 * C helpers behind flexlog.pm: each exported function is one storage operation,
 * so Python crosses into C once per prepare/commit/trim and every persistence
 * barrier happens here, in the order the crash-consistency argument needs
 * (see docs/storage.md).
 */
#include "pmem_log.h"
#include "crc32c.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <libpmem.h>
#include <libpmemobj.h>

#define LAYOUT "flexlog-pm-v1"
#define ROOT_MAGIC 0x474f4c4d50584c46ULL /* "FLXPMLOG" */
#define ROOT_VERSION 2 /* 1: no slot checks, commit batches tagged by the epoch's parity */
#define COLORS_OFF 128
#define ARENA_STEP (256u * 1024u)

#define POP(log) ((PMEMobjpool *)(log)->pop)

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t slot_size(uint64_t length)
{
	return PM_ENTRY_HDR + ((length + 63) & ~(uint64_t)63);
}

static pm_entry *entry_at(pm_log *log, uint64_t pos)
{
	return (pm_entry *)(log->arena + pos % log->cap);
}

/*
 * A write the next barrier makes durable: on PM flushed now (the barrier is a
 * fence), on a file noted so the barrier's msync reaches it. Root and color
 * table lie below the arena and are always covered.
 */
static void wrote(pm_log *log, const void *addr, size_t len)
{
	if (log->is_pmem) {
		pmemobj_flush(POP(log), addr, len);
		return;
	}
	const char *p = addr;
	if (p >= log->arena) {
		uint64_t end = (uint64_t)(p - log->arena) + len;
		if (end > log->cap)
			end = log->cap;
		if (end > log->dirty_hi)
			log->dirty_hi = end;
	}
}

/*
 * Make every write so far durable. On a file, one msync from the root to the
 * highest arena byte written: the kernel writes back only dirty pages, so the
 * width of the range costs nothing, and each msync call costs a device flush.
 */
static void barrier(pm_log *log)
{
	if (log->is_pmem) {
		pmemobj_drain(POP(log));
		return;
	}
	char *from = (char *)log->root;
	pmemobj_flush(POP(log), from, (size_t)(log->arena + log->dirty_hi - from));
	log->dirty_hi = 0;
}

static uint64_t committing_tag(uint32_t batch)
{
	static const uint64_t tags[4] = {PM_ST_COMMITTING0, PM_ST_COMMITTING1, PM_ST_COMMITTING2,
					 PM_ST_COMMITTING3};
	return tags[batch & 3];
}

/* Which batch, mod 4, a COMMITTING tag names; -1 for any other state. */
static int tag_batch(uint64_t state)
{
	return state >= PM_ST_COMMITTING0 && state <= PM_ST_COMMITTING3 ?
		       (int)(state - PM_ST_COMMITTING0) :
		       -1;
}

/* The payload bytes a slot check covers: all but the baseOffset that commit rewrites. */
static uint64_t checked_from(uint32_t length)
{
	return length >= 8 ? 8 : 0;
}

static uint32_t slot_check(pm_log *log, uint64_t pos, const pm_entry *e, const char *payload)
{
	uint64_t fields[6] = {log->root->generation, pos, e->token, e->color,
			      (uint64_t)e->count << 32 | e->length, e->size};
	uint32_t crc = pm_crc32c(0, fields, sizeof fields);
	uint64_t from = checked_from(e->length);
	return e->length ? pm_crc32c(crc, payload + from, e->length - from) : crc;
}

/* An entry's share of its batch's commit check: what commit wrote, where, for which batch. */
static uint32_t commit_check(uint64_t pos, const pm_entry *e, uint32_t batch)
{
	uint64_t fields[5] = {pos, e->token, e->sn, (uint64_t)e->slot << 32 | batch, 0};
	if (e->length >= 8)
		memcpy(&fields[4], (const char *)e + PM_ENTRY_HDR, 8);
	return pm_crc32c(0, fields, sizeof fields);
}

static uint64_t commit_word(uint32_t batch, uint32_t sum)
{
	return (uint64_t)batch << 32 | sum;
}

/* The commit word of batch, marked whole (no check left to verify), persisted. */
static void mark_whole(pm_log *log, uint32_t batch)
{
	log->root->epoch = commit_word(batch, 0);
	pmemobj_persist(POP(log), &log->root->epoch, sizeof log->root->epoch);
}

static void set_err(char *err, size_t errlen, const char *what, const char *path)
{
	snprintf(err, errlen, "%s %s: %s", what, path, pmemobj_errormsg());
}

/* fsync the directory holding path so a rename into it survives a crash. */
static void sync_parent(const char *path)
{
	char buf[PATH_MAX];
	snprintf(buf, sizeof buf, "%s", path);
	int fd = open(dirname(buf), O_RDONLY | O_DIRECTORY);
	if (fd >= 0) {
		fsync(fd);
		close(fd);
	}
}

/*
 * Build the pool under a temporary name and rename it into place, so a crash
 * during creation never leaves a half-initialised pool at the real path.
 */
static int create_pool(const char *path, uint64_t pool_size, uint64_t color_cap, char *err,
		       size_t errlen)
{
	char tmp[PATH_MAX];
	snprintf(tmp, sizeof tmp, "%s.creating", path);
	unlink(tmp);
	PMEMobjpool *pop = pmemobj_create(tmp, LAYOUT, pool_size, 0600);
	if (pop == NULL) {
		set_err(err, errlen, "pmemobj_create", tmp);
		return -1;
	}
	uint64_t fixed = COLORS_OFF + color_cap * sizeof(pm_color) + 64;
	uint64_t cap = pool_size > fixed ? (pool_size - fixed) & ~(uint64_t)(ARENA_STEP - 1) : 0;
	PMEMoid oid = OID_NULL;
	/* libpmemobj's own metadata takes an undocumented share of the pool: probe down. */
	while (cap >= ARENA_STEP) {
		oid = pmemobj_root(pop, fixed + cap);
		if (!OID_IS_NULL(oid))
			break;
		cap -= ARENA_STEP;
	}
	if (OID_IS_NULL(oid)) {
		snprintf(err, errlen, "pool of %llu bytes leaves no room for an arena",
			 (unsigned long long)pool_size);
		pmemobj_close(pop);
		unlink(tmp);
		return -1;
	}
	char *base = pmemobj_direct(oid);
	pm_root *root = (pm_root *)base;
	uintptr_t arena = ((uintptr_t)base + COLORS_OFF + color_cap * sizeof(pm_color) + 63) &
			  ~(uintptr_t)63;
	root->version = ROOT_VERSION;
	root->arena_cap = cap;
	root->arena_off = arena - (uintptr_t)base;
	root->color_cap = color_cap;
	root->created_ns = now_ns();
	pmemobj_persist(pop, root, sizeof *root);
	root->magic = ROOT_MAGIC;
	pmemobj_persist(pop, &root->magic, sizeof root->magic);
	pmemobj_close(pop);
	if (rename(tmp, path) != 0) {
		snprintf(err, errlen, "rename %s: %s", tmp, strerror(errno));
		unlink(tmp);
		return -1;
	}
	sync_parent(path);
	return 0;
}

/* A slot size no writer produces: the arena is damaged, walking on would loop or stray. */
static int bad_slot(pm_log *log, uint64_t pos, const pm_entry *e)
{
	return e->size < PM_ENTRY_HDR || e->size % 64 || pos + e->size > log->root->tail ||
	       pos % log->cap + e->size > log->cap;
}

/*
 * A version 1 pool: finish a pm_commit_many cut by a crash. Entries tagged
 * with the durable epoch's parity reached their commit point and become
 * COMMITTED, the others did not and become PREPARED again.
 */
static void settle_v1(pm_log *log)
{
	pm_root *r = log->root;
	uint64_t done = r->epoch & 1 ? PM_ST_COMMITTING1 : PM_ST_COMMITTING0;
	for (uint64_t pos = r->head; pos < r->tail; pos += entry_at(log, pos)->size) {
		pm_entry *e = entry_at(log, pos);
		if (bad_slot(log, pos, e)) /* pm_scan_count will refuse this arena */
			return;
		if (e->state != PM_ST_COMMITTING0 && e->state != PM_ST_COMMITTING1)
			continue;
		e->state = e->state == done ? PM_ST_COMMITTED : PM_ST_PREPARED;
		pmemobj_persist(POP(log), &e->state, sizeof e->state);
	}
}

/* Version 1 to 2: nothing left COMMITTING, then a commit word of batch 0, known whole. */
static void upgrade(pm_log *log)
{
	pm_root *r = log->root;
	settle_v1(log);
	r->epoch = 0;
	pmemobj_persist(POP(log), &r->epoch, sizeof r->epoch);
	r->version = ROOT_VERSION;
	pmemobj_persist(POP(log), &r->version, sizeof r->version);
}

/*
 * The states a slot past the durable tail can have. Not COMMITTED: every flip
 * to it follows a barrier that made the tail over the entry durable. Of the
 * COMMITTING tags, only the durable word's batch and the one after it: an
 * older batch's barrier made the tail durable too. Anything else is an older
 * lap's word under a header whose other words are new (PM tears at 8 bytes).
 */
static int may_lie_past_tail(const pm_entry *e, uint32_t batch)
{
	int k = tag_batch(e->state);
	if (k >= 0)
		return (uint32_t)k == (batch & 3) || (uint32_t)k == ((batch + 1) & 3);
	return e->state == PM_ST_PREPARED || e->state == PM_ST_PAD ||
	       e->state == PM_ST_ABORTED || e->state == PM_ST_RELOCATED;
}

/*
 * The durable tail may lag the slots: a prepare moves the tail only once its
 * slots are durable, and the tail itself becomes durable with a later barrier.
 * Walk on from it over every slot whose check matches this session's
 * generation, its position and its bytes; the first that does not (garbage,
 * an older lap of the ring, a torn write, a slot an earlier crash left behind)
 * is where the tail was.
 */
static void extend_tail(pm_log *log)
{
	pm_root *r = log->root;
	uint32_t batch = (uint32_t)(r->epoch >> 32);
	uint64_t pos = r->tail > r->head ? r->tail : r->head;
	for (;;) {
		pm_entry *e = entry_at(log, pos);
		if (e->size < PM_ENTRY_HDR || e->size % 64 || pos % log->cap + e->size > log->cap ||
		    pos + e->size - r->head > log->cap || PM_ENTRY_HDR + (uint64_t)e->length > e->size)
			break;
		if (!may_lie_past_tail(e, batch) ||
		    e->check != slot_check(log, pos, e, (const char *)e + PM_ENTRY_HDR))
			break;
		pos += e->size;
	}
	if (pos != r->tail) {
		r->tail = pos;
		pmemobj_persist(POP(log), &r->tail, sizeof r->tail);
	}
}

/*
 * Finish the commit batches a crash cut. The durable commit word names batch
 * B: if it still carries a check, B's entries are COMMITTED only if every one
 * of them reached the media (their commit checks sum to it), else all go back
 * to PREPARED. The word is marked whole before a whole batch's flips and after
 * a cut batch's entries all went back, so a cut settle converges. Entries of
 * the two batches before B are committed (their flips were still lagging), and
 * entries of the batch after B are not (its word never became durable).
 */
static void settle(pm_log *log)
{
	pm_root *r = log->root;
	uint32_t batch = (uint32_t)(r->epoch >> 32);
	uint32_t check = (uint32_t)r->epoch;
	int whole = 1;
	if (check != 0) {
		uint32_t sum = 0;
		for (uint64_t pos = r->head; pos < r->tail; pos += entry_at(log, pos)->size) {
			pm_entry *e = entry_at(log, pos);
			if (bad_slot(log, pos, e)) /* pm_scan_count will refuse this arena */
				return;
			if (tag_batch(e->state) == (int)(batch & 3))
				sum += commit_check(pos, e, batch);
		}
		whole = (sum ? sum : 1) == check;
		/* Marked whole before any of its flips; a cut batch only once all went back. */
		if (whole)
			mark_whole(log, batch);
	}
	for (uint64_t pos = r->head; pos < r->tail; pos += entry_at(log, pos)->size) {
		pm_entry *e = entry_at(log, pos);
		if (bad_slot(log, pos, e))
			return;
		int k = tag_batch(e->state);
		if (k < 0)
			continue;
		uint32_t behind = (batch - (uint32_t)k) & 3; /* 3: the batch after the word's */
		e->state = behind == 3 || (behind == 0 && !whole) ? PM_ST_PREPARED : PM_ST_COMMITTED;
		pmemobj_persist(POP(log), &e->state, sizeof e->state);
	}
	if (!whole)
		mark_whole(log, batch);
}

/*
 * Random rather than a count, so a slot check is not predictable: a producer
 * cannot plant, inside a payload, a header that a later session would take up
 * past a lagging tail. Never the generation before.
 */
static uint64_t next_generation(uint64_t last)
{
	uint64_t g;
	if (getrandom(&g, sizeof g, 0) != (ssize_t)sizeof g)
		g = now_ns();
	return g == last ? g + 1 : g;
}

/*
 * The pool file opened again, for the stores into the arena (store, write_slot); -1 unless
 * it is the file libpmemobj mapped from offset 0 (a pool set, or a file replaced meanwhile,
 * is not: a slot written there would never reach the mapping).
 */
static int open_mapped_file(pm_log *log, const char *path)
{
	int fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -1;
	pm_root seen;
	off_t at = (off_t)((char *)log->root - (char *)log->pop);
	if (pread(fd, &seen, sizeof seen, at) != (ssize_t)sizeof seen ||
	    memcmp(&seen, log->root, sizeof seen) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

pm_log *pm_open(const char *path, uint64_t pool_size, uint64_t color_cap, char *err,
		size_t errlen)
{
	if (access(path, F_OK) != 0 && create_pool(path, pool_size, color_cap, err, errlen) != 0)
		return NULL;
	PMEMobjpool *pop = pmemobj_open(path, LAYOUT);
	if (pop == NULL) {
		set_err(err, errlen, "pmemobj_open", path);
		return NULL;
	}
	size_t root_size = pmemobj_root_size(pop);
	pm_root *root = root_size ? pmemobj_direct(pmemobj_root(pop, root_size)) : NULL;
	if (root == NULL || root->magic != ROOT_MAGIC ||
	    (root->version != ROOT_VERSION && root->version != 1)) {
		snprintf(err, errlen, "%s is not a flexlog pool of version 1 or %d", path,
			 ROOT_VERSION);
		pmemobj_close(pop);
		return NULL;
	}
	pm_log *log = malloc(sizeof *log);
	if (log == NULL) {
		snprintf(err, errlen, "out of memory");
		pmemobj_close(pop);
		return NULL;
	}
	log->pop = pop;
	log->root = root;
	log->colors = (pm_color *)((char *)root + COLORS_OFF);
	log->arena = (char *)root + root->arena_off;
	log->cap = root->arena_cap;
	/* libpmemobj decides the same way (and PMEM_IS_PMEM_FORCE forces both). */
	log->is_pmem = pmem_is_pmem(log->arena, log->cap);
	log->fd = -1;
	log->dirty_hi = 0;
	log->pending = log->fresh = NULL;
	log->n_pending = log->spare_cap = 0;
	if (root->version == 1)
		upgrade(log);
	extend_tail(log);
	settle(log);
	/* From here on slots carry the new generation; any left past the tail stay out. */
	root->generation = next_generation(root->generation);
	pmemobj_persist(pop, &root->generation, sizeof root->generation);
	/* After the new generation is durable: a copy of the file cannot hold it. */
	if (!log->is_pmem)
		log->fd = open_mapped_file(log, path);
	return log;
}

void pm_close(pm_log *log)
{
	pm_settle_commits(log);
	barrier(log);
	pmemobj_close(POP(log));
	if (log->fd >= 0)
		close(log->fd);
	free(log->pending);
	free(log->fresh);
	free(log);
}

/*
 * Stores into the arena on a file go through the file, not the mapping. The kernel caches
 * a file in folios of up to 2 MiB, and a store through the mapping into a clean folio makes
 * ext4's page_mkwrite dirty every block of it: each barrier then wrote back whole folios
 * around the few bytes it changed, about ten bytes to the device per byte stored
 * (docs/storage.md, "Page cache"). pwrite dirties only the blocks it writes, in the same page
 * cache: the mapping sees the bytes at once, and the next barrier's msync makes them durable
 * like any store. If the call fails, the bytes go through the mapping.
 */
static void store(pm_log *log, void *dst, const void *src, size_t len)
{
	if (log->fd >= 0 &&
	    pwrite(log->fd, src, len, (off_t)((char *)dst - (char *)log->pop)) == (ssize_t)len)
		return;
	if (len == sizeof(uint64_t))
		*(uint64_t *)dst = *(const uint64_t *)src; /* a state word: one aligned store */
	else
		memcpy(dst, src, len);
}

/* A slot's header and payload, with one system call on a file (see store). */
static void write_slot(pm_log *log, pm_entry *e, const pm_entry *slot, const char *payload)
{
	if (log->fd >= 0) {
		struct iovec parts[2] = {{(void *)slot, PM_ENTRY_HDR},
					 {(void *)payload, slot->length}};
		off_t at = (off_t)((char *)e - (char *)log->pop);
		if (pwritev(log->fd, parts, 2, at) == (ssize_t)(PM_ENTRY_HDR + slot->length))
			return;
	}
	*e = *slot;
	memcpy((char *)e + PM_ENTRY_HDR, payload, slot->length);
}

/*
 * Write a slot at *cursor, beyond the published tail, and advance the cursor;
 * in this session nothing is visible until the tail moves over it (publish),
 * after a crash the walk at open takes up every slot whose barrier completed.
 * An entry never wraps: the unused end of the ring becomes a PAD slot.
 */
static int64_t place_slot(pm_log *log, uint64_t *cursor, const pm_entry *hdr,
			  const char *payload)
{
	uint64_t size = slot_size(hdr->length);
	uint64_t at = *cursor;
	uint64_t phys = at % log->cap;
	uint64_t pad = phys + size > log->cap ? log->cap - phys : 0;
	if (size > log->cap || at + pad + size - log->root->head > log->cap)
		return PM_EFULL;
	if (pad) {
		pm_entry *p = entry_at(log, at);
		pm_entry pad_slot = {.state = PM_ST_PAD, .size = (uint32_t)pad};
		pad_slot.check = slot_check(log, at, &pad_slot, (const char *)p + PM_ENTRY_HDR);
		store(log, p, &pad_slot, sizeof pad_slot);
		wrote(log, p, sizeof *p);
	}
	pm_entry slot = *hdr;
	slot.size = (uint32_t)size;
	slot.check = slot_check(log, at + pad, &slot, payload);
	pm_entry *e = entry_at(log, at + pad);
	char *dst = (char *)e + PM_ENTRY_HDR;
	if (log->is_pmem) { /* copies and flushes, with non-temporal stores for large payloads */
		*e = slot;
		pmemobj_memcpy(POP(log), dst, payload, hdr->length, PMEMOBJ_F_MEM_NODRAIN);
		wrote(log, e, sizeof *e);
	} else {
		write_slot(log, e, &slot, payload);
		wrote(log, e, PM_ENTRY_HDR + hdr->length);
	}
	*cursor = at + pad + size;
	return (int64_t)(at + pad);
}

/*
 * Make the slots written in [tail, end) durable with one barrier, then move
 * the tail over them. The tail store becomes durable with a later barrier;
 * until then the slots' checks vouch for them (extend_tail).
 */
static void publish(pm_log *log, uint64_t end)
{
	barrier(log);
	log->root->tail = end;
	wrote(log, &log->root->tail, sizeof log->root->tail);
}

static int64_t append_slot(pm_log *log, const pm_entry *hdr, const char *payload)
{
	uint64_t end = log->root->tail;
	int64_t pos = place_slot(log, &end, hdr, payload);
	if (pos >= 0)
		publish(log, end);
	return pos;
}

int64_t pm_prepare(pm_log *log, uint64_t token, uint64_t color, const char *payload,
		   uint32_t length, uint32_t count)
{
	pm_entry hdr = {
		.state = PM_ST_PREPARED,
		.token = token,
		.color = color,
		.count = count,
		.length = length,
	};
	return append_slot(log, &hdr, payload);
}

/*
 * Prepare a batch with one barrier: every entry that fits is written beyond
 * the tail, then one barrier makes them durable and one tail store publishes
 * them all. out[i] is entry i's position or PM_EFULL; a
 * full arena does not stop later, smaller entries. payloads[i] points at
 * entry i's bytes wherever the caller holds them, so none is gathered first.
 */
void pm_prepare_many(pm_log *log, size_t n, const uint64_t *tokens, const uint64_t *colors,
		     const char *const *payloads, const uint32_t *lengths,
		     const uint32_t *counts, int64_t *out)
{
	pm_entry hdr = {.state = PM_ST_PREPARED};
	uint64_t end = log->root->tail;
	for (size_t i = 0; i < n; i++) {
		hdr.token = tokens[i];
		hdr.color = colors[i];
		hdr.count = counts[i];
		hdr.length = lengths[i];
		out[i] = place_slot(log, &end, &hdr, payloads[i]);
	}
	if (end != log->root->tail)
		publish(log, end);
}

/* The color's metadata slot; slot == n_colors claims the next free one. */
static pm_color *color_slot(pm_log *log, uint32_t slot, uint64_t color)
{
	pm_root *r = log->root;
	if (slot < r->n_colors)
		return log->colors[slot].color == color ? &log->colors[slot] : NULL;
	if (slot != r->n_colors || slot >= r->color_cap)
		return NULL;
	pm_color *c = &log->colors[slot];
	memset(c, 0, sizeof *c);
	c->color = color;
	pmemobj_persist(POP(log), c, sizeof *c);
	/* Only now is the slot counted, so a crash before this leaves it unused. */
	r->n_colors = slot + 1;
	pmemobj_persist(POP(log), &r->n_colors, sizeof r->n_colors);
	return c;
}

static int is_dead(pm_log *log, const pm_entry *e)
{
	if (e->state == PM_ST_COMMITTED) {
		if (e->slot >= log->root->n_colors)
			return 0;
		return e->sn + e->count <= log->colors[e->slot].log_start;
	}
	return e->state == PM_ST_ABORTED || e->state == PM_ST_PAD ||
	       e->state == PM_ST_RELOCATED;
}

/* Move the head over entries nobody can read any more, freeing their space. */
static void reclaim(pm_log *log)
{
	pm_root *r = log->root;
	uint64_t head = r->head;
	while (head < r->tail) {
		pm_entry *e = entry_at(log, head);
		if (bad_slot(log, head, e) || !is_dead(log, e))
			break;
		head += e->size;
	}
	if (head != r->head) {
		r->head = head;
		pmemobj_persist(POP(log), &r->head, sizeof r->head);
	}
}

/* state, sn, slot, timestamp and the payload's baseOffset: the 72 bytes from the entry's start. */
static void write_commit(pm_log *log, pm_entry *e, uint64_t sn, uint32_t slot, uint64_t now,
			 uint64_t state)
{
	unsigned char base_offset[8];
	for (int i = 0; i < 8; i++)
		base_offset[i] = (unsigned char)(sn >> (56 - 8 * i));
	size_t offset_len = e->length >= 8 ? sizeof base_offset : 0;
	if (log->fd < 0) { /* on PM: the state word stays one aligned 8-byte store */
		e->sn = sn;
		e->slot = slot;
		e->committed_ns = now;
		e->state = state;
		memcpy((char *)e + PM_ENTRY_HDR, base_offset, offset_len);
		return;
	}
	unsigned char rec[PM_ENTRY_HDR + sizeof base_offset];
	pm_entry h = *e;
	h.state = state;
	h.sn = sn;
	h.slot = slot;
	h.committed_ns = now;
	memcpy(rec, &h, PM_ENTRY_HDR);
	memcpy(rec + PM_ENTRY_HDR, base_offset, offset_len);
	store(log, e, rec, PM_ENTRY_HDR + offset_len);
}

/* Room for a commit batch of n entries in both position lists. */
static int reserve(pm_log *log, size_t n)
{
	if (n <= log->spare_cap)
		return 1;
	uint64_t *pending = realloc(log->pending, n * sizeof *pending);
	if (pending == NULL)
		return 0;
	log->pending = pending;
	uint64_t *fresh = realloc(log->fresh, n * sizeof *fresh);
	if (fresh == NULL)
		return 0;
	log->fresh = fresh;
	log->spare_cap = n;
	return 1;
}

/* The pending batch's entries become COMMITTED, durable with the next barrier. */
static void flip_pending(pm_log *log, uint32_t batch)
{
	uint64_t tag = committing_tag(batch);
	for (size_t i = 0; i < log->n_pending; i++) {
		pm_entry *e = entry_at(log, log->pending[i]);
		if (e->state == tag) {
			uint64_t committed = PM_ST_COMMITTED;
			store(log, &e->state, &committed, sizeof committed);
			wrote(log, &e->state, sizeof e->state);
		}
	}
	log->n_pending = 0;
}

/*
 * Commit a batch with one barrier. Each entry gets its SN, slot and baseOffset
 * and the state COMMITTING tagged with the batch's number mod 4; the root's
 * commit word gets the batch's number and the sum of the entries' commit
 * checks; one barrier makes all of it durable, in whatever order it reaches
 * the media (settle at open tells a whole batch from a cut one by the sum).
 * Then the previous batch's entries become COMMITTED and this batch's color
 * tails are raised, both durable with the next barrier. This batch's entries
 * stay COMMITTING until then: a flip reaching the media early would fail the
 * check of a batch whose word is still the durable one.
 * out[i] is PM_OK, PM_ESTATE, PM_ECOLOR or PM_ENOMEM; a failed entry is left
 * untouched.
 */
void pm_commit_many(pm_log *log, size_t n, const uint64_t *pos, const uint64_t *tokens,
		    const uint64_t *sns, const uint32_t *slots, int32_t *out)
{
	pm_root *r = log->root;
	if (!reserve(log, n)) {
		for (size_t i = 0; i < n; i++)
			out[i] = PM_ENOMEM;
		return;
	}
	uint32_t batch = (uint32_t)(r->epoch >> 32) + 1;
	uint64_t tag = committing_tag(batch);
	uint64_t now = now_ns();
	uint32_t sum = 0;
	size_t committed = 0;
	for (size_t i = 0; i < n; i++) {
		pm_entry *e = entry_at(log, pos[i]);
		if (e->state != PM_ST_PREPARED || e->token != tokens[i]) {
			out[i] = PM_ESTATE;
			continue;
		}
		if (color_slot(log, slots[i], e->color) == NULL) {
			out[i] = PM_ECOLOR;
			continue;
		}
		write_commit(log, e, sns[i], slots[i], now, tag);
		wrote(log, e, PM_ENTRY_HDR + 8);
		sum += commit_check(pos[i], e, batch);
		log->fresh[committed++] = pos[i];
		out[i] = PM_OK;
	}
	if (committed == 0)
		return;
	r->epoch = commit_word(batch, sum ? sum : 1);
	wrote(log, &r->epoch, sizeof r->epoch);
	barrier(log);
	flip_pending(log, batch - 1);
	uint64_t *flipped = log->pending;
	log->pending = log->fresh;
	log->fresh = flipped;
	log->n_pending = committed;
	for (size_t i = 0; i < n; i++) {
		if (out[i] != PM_OK)
			continue;
		pm_color *c = &log->colors[slots[i]];
		uint64_t end = sns[i] + entry_at(log, pos[i])->count;
		if (end > c->tail) {
			c->tail = end;
			wrote(log, &c->tail, sizeof c->tail);
		}
	}
}

/*
 * Make the last batch's entries COMMITTED now rather than after the next
 * batch: its barrier is done, so its commit word is first marked whole, and
 * flips reaching the media before the next barrier can no longer fail its check.
 */
void pm_settle_commits(pm_log *log)
{
	if (log->n_pending == 0)
		return;
	uint32_t batch = (uint32_t)(log->root->epoch >> 32);
	mark_whole(log, batch);
	flip_pending(log, batch);
}

int pm_commit(pm_log *log, uint64_t pos, uint64_t token, uint64_t sn, uint32_t slot)
{
	int32_t out;
	pm_commit_many(log, 1, &pos, &token, &sn, &slot, &out);
	return out;
}

int pm_abort(pm_log *log, uint64_t pos, uint64_t token)
{
	pm_entry *e = entry_at(log, pos);
	if (e->state != PM_ST_PREPARED || e->token != token)
		return PM_ESTATE;
	uint64_t state = PM_ST_ABORTED;
	store(log, &e->state, &state, sizeof state);
	pmemobj_persist(POP(log), &e->state, sizeof e->state);
	reclaim(log);
	return PM_OK;
}

int pm_trim(pm_log *log, uint32_t slot, uint64_t color, uint64_t log_start)
{
	pm_color *c = color_slot(log, slot, color);
	if (c == NULL)
		return PM_ECOLOR;
	if (log_start > c->log_start) {
		/* log_start is the commit point; tail is only a lower bound kept in step. */
		c->log_start = log_start;
		if (c->tail < log_start)
			c->tail = log_start;
		pmemobj_persist(POP(log), c, sizeof *c);
	}
	reclaim(log);
	return PM_OK;
}

/*
 * Move a prepared entry to the tail so the head can pass its old place. The
 * copy is published before the original is retired; a crash in between leaves
 * two prepared copies of one token, which the scan at open resolves.
 */
int64_t pm_relocate(pm_log *log, uint64_t pos)
{
	pm_entry *e = entry_at(log, pos);
	if (e->state != PM_ST_PREPARED)
		return PM_ESTATE;
	int64_t moved = append_slot(log, e, (const char *)e + PM_ENTRY_HDR);
	if (moved < 0)
		return moved;
	uint64_t state = PM_ST_RELOCATED;
	store(log, &e->state, &state, sizeof state);
	pmemobj_persist(POP(log), &e->state, sizeof e->state);
	return moved;
}

/*
 * Hand [head, new_head) over to the SSD tier. Refuses to drop a prepared or
 * committing entry or to stop inside one, whatever the caller computed.
 */
int pm_advance(pm_log *log, uint64_t new_head)
{
	pm_root *r = log->root;
	if (new_head < r->head || new_head > r->tail)
		return PM_ERANGE;
	uint64_t pos = r->head;
	while (pos < new_head) {
		pm_entry *e = entry_at(log, pos);
		if (bad_slot(log, pos, e))
			return PM_ERANGE;
		if (e->state == PM_ST_PREPARED || tag_batch(e->state) >= 0)
			return PM_ESTATE;
		pos += e->size;
	}
	if (pos != new_head)
		return PM_ERANGE;
	r->head = new_head;
	pmemobj_persist(POP(log), &r->head, sizeof r->head);
	reclaim(log);
	return PM_OK;
}

/*
 * Open-time index rebuild in two passes over the arena, so Python does no
 * per-entry work: first count the live committed entries of each color slot
 * (and the prepared ones), then fill per-slot arrays sized from the counts.
 * The count pass also checks that the slots tile [head, tail) exactly.
 */
int pm_scan_count(pm_log *log, uint64_t *per_slot, uint64_t *prepared)
{
	pm_root *r = log->root;
	for (uint64_t pos = r->head; pos < r->tail; pos += entry_at(log, pos)->size) {
		pm_entry *e = entry_at(log, pos);
		if (bad_slot(log, pos, e))
			return PM_ERANGE;
		if (e->state == PM_ST_COMMITTED && e->slot < r->n_colors && !is_dead(log, e))
			per_slot[e->slot]++;
		else if (e->state == PM_ST_PREPARED)
			(*prepared)++;
	}
	return PM_OK;
}

void pm_scan_fill(pm_log *log, uint64_t **sns, uint32_t **counts, uint32_t **lengths,
		  int64_t **locs, uint64_t *cursor, uint8_t *unsorted, uint64_t *prepared)
{
	pm_root *r = log->root;
	uint64_t n_prepared = 0;
	for (uint64_t pos = r->head; pos < r->tail; pos += entry_at(log, pos)->size) {
		pm_entry *e = entry_at(log, pos);
		if (bad_slot(log, pos, e)) /* pm_scan_count has refused this arena */
			return;
		if (e->state == PM_ST_COMMITTED && e->slot < r->n_colors && !is_dead(log, e)) {
			uint32_t s = e->slot;
			uint64_t i = cursor[s]++;
			if (i > 0 && sns[s][i - 1] > e->sn)
				unsorted[s] = 1;
			sns[s][i] = e->sn;
			counts[s][i] = e->count;
			lengths[s][i] = e->length;
			locs[s][i] = (int64_t)pos;
		} else if (e->state == PM_ST_PREPARED) {
			prepared[n_prepared++] = pos;
		}
	}
}
