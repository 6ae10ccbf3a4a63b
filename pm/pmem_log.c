/*
 * C helpers behind flexlog.pm: each exported function is one storage operation,
 * so Python crosses into C once per prepare/commit/trim and every persistence
 * barrier happens here, in the order the crash-consistency argument needs
 * (see docs/storage.md).
 */
#include "pmem_log.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpmem.h>
#include <libpmemobj.h>

#define LAYOUT "flexlog-pm-v1"
#define ROOT_MAGIC 0x474f4c4d50584c46ULL /* "FLXPMLOG" */
#define ROOT_VERSION 1
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

/* Flush now on PM; on a file the caller msyncs one range covering many writes instead. */
static void flush_pm(pm_log *log, const void *addr, size_t len)
{
	if (log->is_pmem)
		pmemobj_flush(POP(log), addr, len);
}

/* Grow [*lo, *hi) to cover [from, to). */
static void cover(uint64_t *lo, uint64_t *hi, uint64_t from, uint64_t to)
{
	if (*lo >= *hi) {
		*lo = from;
		*hi = to;
		return;
	}
	if (from < *lo)
		*lo = from;
	if (to > *hi)
		*hi = to;
}

/* File path: one msync of the physical arena bytes [lo, hi), however many writes they hold. */
static void msync_arena(pm_log *log, uint64_t lo, uint64_t hi)
{
	if (!log->is_pmem && lo < hi)
		pmemobj_flush(POP(log), log->arena + lo, hi - lo);
}

/*
 * File path: msync what the last pm_commit_many wrote after its commit point
 * (state flips, color tails; on PM they were flushed when written). The next
 * pm_commit_many does this in its first barrier; pm_close does it so a pool
 * closed cleanly holds nothing the epoch still has to vouch for.
 */
static void persist_lagging(pm_log *log)
{
	msync_arena(log, log->flips_lo, log->flips_hi);
	if (!log->is_pmem && log->slots_lo < log->slots_hi)
		pmemobj_flush(POP(log), &log->colors[log->slots_lo],
			      (log->slots_hi - log->slots_lo) * sizeof(pm_color));
	log->flips_lo = log->flips_hi = log->slots_lo = log->slots_hi = 0;
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
	return e->size < PM_ENTRY_HDR || e->size % 64 || pos + e->size > log->root->tail;
}

/*
 * Finish a pm_commit_many cut by a crash: entries tagged with the durable
 * epoch's parity reached their commit point and become COMMITTED, the others
 * did not and become PREPARED again (their SN is rewritten when they are
 * committed). Runs at open, before anything reads states. Color tails of the
 * rolled-forward entries may lag; the index rebuild recomputes tails anyway.
 */
static void settle(pm_log *log)
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
	if (root == NULL || root->magic != ROOT_MAGIC || root->version != ROOT_VERSION) {
		snprintf(err, errlen, "%s is not a flexlog pool of version %d", path,
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
	log->flips_lo = log->flips_hi = log->slots_lo = log->slots_hi = 0;
	settle(log);
	return log;
}

void pm_close(pm_log *log)
{
	persist_lagging(log);
	pmemobj_drain(POP(log));
	pmemobj_close(POP(log));
	free(log);
}

/*
 * Write a slot at *cursor, beyond the published tail, and advance the cursor;
 * nothing is visible until the tail moves over it (publish). An entry never
 * wraps: the unused end of the ring becomes a PAD slot.
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
		memset(p, 0, sizeof *p);
		p->state = PM_ST_PAD;
		p->size = (uint32_t)pad;
		flush_pm(log, p, sizeof *p);
	}
	pm_entry *e = entry_at(log, at + pad);
	*e = *hdr;
	e->size = (uint32_t)size;
	char *dst = (char *)e + PM_ENTRY_HDR;
	if (log->is_pmem) /* copies and flushes, with non-temporal stores for large payloads */
		pmemobj_memcpy(POP(log), dst, payload, hdr->length, PMEMOBJ_F_MEM_NODRAIN);
	else
		memcpy(dst, payload, hdr->length);
	flush_pm(log, e, sizeof *e);
	*cursor = at + pad + size;
	return (int64_t)(at + pad);
}

/*
 * Make the slots written in [tail, end) durable, then move the tail over them:
 * the tail store is the commit point of every slot in the range at once.
 */
static void publish(pm_log *log, uint64_t end)
{
	pm_root *r = log->root;
	uint64_t phys = r->tail % log->cap;
	uint64_t len = end - r->tail;
	if (phys + len <= log->cap) {
		msync_arena(log, phys, phys + len);
	} else { /* the range ends past a PAD, at the ring's start */
		msync_arena(log, phys, log->cap);
		msync_arena(log, 0, len - (log->cap - phys));
	}
	pmemobj_drain(POP(log));
	r->tail = end;
	pmemobj_persist(POP(log), &r->tail, sizeof r->tail);
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
		.prepared_ns = now_ns(),
	};
	return append_slot(log, &hdr, payload);
}

/*
 * Prepare a batch with one barrier: every entry that fits is written beyond
 * the tail, then one tail store publishes them all (a crash before it leaves
 * none of them, after it all). out[i] is entry i's position or PM_EFULL; a
 * full arena does not stop later, smaller entries. payloads[i] points at
 * entry i's bytes wherever the caller holds them, so none is gathered first.
 */
void pm_prepare_many(pm_log *log, size_t n, const uint64_t *tokens, const uint64_t *colors,
		     const char *const *payloads, const uint32_t *lengths,
		     const uint32_t *counts, int64_t *out)
{
	pm_entry hdr = {.state = PM_ST_PREPARED, .prepared_ns = now_ns()};
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

/* sn, slot, timestamp and the payload's baseOffset: the 72 bytes from the entry's start. */
static void write_sn(pm_entry *e, uint64_t sn, uint32_t slot, uint64_t now)
{
	e->sn = sn;
	e->slot = slot;
	e->committed_ns = now;
	unsigned char *base_offset = (unsigned char *)e + PM_ENTRY_HDR;
	if (e->length >= 8) {
		for (int i = 0; i < 8; i++)
			base_offset[i] = (unsigned char)(sn >> (56 - 8 * i));
	}
}

int pm_commit(pm_log *log, uint64_t pos, uint64_t token, uint64_t sn, uint32_t slot)
{
	pm_entry *e = entry_at(log, pos);
	if (e->state != PM_ST_PREPARED || e->token != token)
		return PM_ESTATE;
	pm_color *c = color_slot(log, slot, e->color);
	if (c == NULL)
		return PM_ECOLOR;
	write_sn(e, sn, slot, now_ns());
	/* Header and baseOffset are contiguous: one persist covers both. */
	pmemobj_persist(POP(log), e, PM_ENTRY_HDR + 8);
	e->state = PM_ST_COMMITTED;
	pmemobj_persist(POP(log), &e->state, sizeof e->state);
	/* The scan at open recomputes tails, so this may lag behind a crash. */
	if (sn + e->count > c->tail) {
		c->tail = sn + e->count;
		pmemobj_persist(POP(log), &c->tail, sizeof c->tail);
	}
	return PM_OK;
}

/*
 * Commit a batch with one barrier and one 8-byte commit point, the root's
 * epoch. Each entry gets its SN, slot and baseOffset and the state
 * COMMITTING tagged with the new epoch's parity; all that is made durable
 * together with the previous batch's lagging flips; then the epoch store
 * commits the whole batch. A crash before it leaves every entry of the batch
 * prepared (settle rolls them back at open), after it all committed (settle
 * rolls them forward). Only then are states flipped to COMMITTED and color
 * tails raised, without waiting: the next batch's barrier, or pm_close,
 * persists them, and until then the epoch still vouches for them.
 * out[i] is PM_OK, PM_ESTATE or PM_ECOLOR; a failed entry is left untouched.
 */
void pm_commit_many(pm_log *log, size_t n, const uint64_t *pos, const uint64_t *tokens,
		    const uint64_t *sns, const uint32_t *slots, int32_t *out)
{
	pm_root *r = log->root;
	uint64_t epoch = r->epoch + 1;
	uint64_t committing = epoch & 1 ? PM_ST_COMMITTING1 : PM_ST_COMMITTING0;
	uint64_t now = now_ns();
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
		write_sn(e, sns[i], slots[i], now);
		e->state = committing;
		flush_pm(log, e, PM_ENTRY_HDR + 8);
		uint64_t phys = pos[i] % log->cap;
		cover(&log->flips_lo, &log->flips_hi, phys, phys + PM_ENTRY_HDR + 8);
		out[i] = PM_OK;
		committed++;
	}
	if (committed == 0)
		return;
	/* The color tails lag a batch behind: they are persisted with the epoch, in the root. */
	uint64_t slots_lo = log->slots_lo, slots_hi = log->slots_hi;
	msync_arena(log, log->flips_lo, log->flips_hi);
	log->flips_lo = log->flips_hi = log->slots_lo = log->slots_hi = 0;
	pmemobj_drain(POP(log));
	r->epoch = epoch;
	if (log->is_pmem || slots_lo >= slots_hi) /* on PM the tails were flushed when written */
		pmemobj_persist(POP(log), &r->epoch, sizeof r->epoch);
	else /* one msync from the epoch (root header) to the last lagging color slot */
		pmemobj_persist(POP(log), &r->epoch,
				(size_t)((char *)&log->colors[slots_hi] - (char *)&r->epoch));
	for (size_t i = 0; i < n; i++) {
		if (out[i] != PM_OK)
			continue;
		pm_entry *e = entry_at(log, pos[i]);
		e->state = PM_ST_COMMITTED;
		flush_pm(log, &e->state, sizeof e->state);
		uint64_t phys = pos[i] % log->cap;
		cover(&log->flips_lo, &log->flips_hi, phys, phys + sizeof e->state);
		pm_color *c = &log->colors[slots[i]];
		if (sns[i] + e->count > c->tail) {
			c->tail = sns[i] + e->count;
			flush_pm(log, &c->tail, sizeof c->tail);
			cover(&log->slots_lo, &log->slots_hi, slots[i], (uint64_t)slots[i] + 1);
		}
	}
}

int pm_abort(pm_log *log, uint64_t pos, uint64_t token)
{
	pm_entry *e = entry_at(log, pos);
	if (e->state != PM_ST_PREPARED || e->token != token)
		return PM_ESTATE;
	e->state = PM_ST_ABORTED;
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
	e->state = PM_ST_RELOCATED;
	pmemobj_persist(POP(log), &e->state, sizeof e->state);
	return moved;
}

/*
 * Hand [head, new_head) over to the SSD tier. Refuses to drop a prepared entry
 * or to stop inside one, whatever the caller computed.
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
		if (e->state == PM_ST_PREPARED)
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
