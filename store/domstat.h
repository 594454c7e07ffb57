/* SPDX-License-Identifier: MIT */
/*
 * domstat: how much mail is held per domain across all shards of this node,
 * for quota checks and ETRN replies. Each shard's index is private to its
 * engine thread; this table is the one thing they share: a fixed-size,
 * lock-free open-addressing table keyed by a 64-bit hash of the lower-cased
 * domain, with atomic counters. Cells are never removed (a drained domain's
 * counters are simply zero), so a reader never sees a cell vanish.
 * Two domains whose 64-bit hashes collide would share counters: with FNV-1a
 * over 100,000 domains that has odds of about 1 in 3.7 billion.
 * Mail is also counted under every enclosing wildcard name: a.b.example.test
 * under "*.b.example.test", "*.example.test" and "*.test", so the quota of a
 * wildcard row is one total for all the names it covers (issue 10 item 5).
 * Issue 16: a domain's own cell also keeps its name (set once, never
 * freed before the table), so the cluster thread can walk the table and
 * publish the held counts per domain, and a "changed" flag tells it when.
 */
#ifndef ETRND_STORE_DOMSTAT_H
#define ETRND_STORE_DOMSTAT_H

#include <stddef.h>
#include <stdint.h>

struct domstat;
struct domstat_cell;

/* A table for up to max_domains domains (rounded up; memory 32 bytes per
 * slot, two slots per domain). NULL on allocation failure. */
struct domstat *domstat_new(size_t max_domains);
struct domstat *domstat_free(struct domstat *t);

/* The cell of a domain (any case, trailing dot ignored), created if needed.
 * NULL when the table is full (counting stops for new domains; logged once
 * by the caller). Thread-safe; lock-free. */
struct domstat_cell *domstat_cell(struct domstat *t, const char *domain, size_t len);

/* Add (or with negative values, remove) messages and bytes. Thread-safe. */
void domstat_add(struct domstat_cell *c, int64_t msgs, int64_t bytes);

/* Add to a domain's own counters and to those of every enclosing wildcard
 * name ("*.parent"), each created if needed. A full table skips the names it
 * cannot hold (warned once) but still counts the others, so a wildcard's
 * total keeps counting however many names under it arrive. Thread-safe. */
void domstat_add_domain(struct domstat *t, const char *domain, size_t len,
		int64_t msgs, int64_t bytes);

/* Every domain counted by domstat_add_domain() (its own cell, not the
 * wildcard ones), in the order they were first counted: fn(arg, idx, name,
 * msgs, bytes) with idx the domain's place in that order (0, 1, ...; fixed
 * for the life of the table, so a caller may keep per-domain state in an
 * array by idx) and name lower-cased, NUL-terminated, valid while t is.
 * Counts may be 0 (drained) and are a moment's values. Any thread;
 * lock-free; touches only the named cells (an index of them is kept), not
 * the whole table. */
typedef void (*domstat_walk_fn)(void *arg, size_t idx, const char *name,
		uint64_t msgs, uint64_t bytes);
void domstat_walk(const struct domstat *t, domstat_walk_fn fn, void *arg);

/* 1 if a count changed since the last call (which clears it), else 0.
 * For one poller (the cluster thread); the adders only set it. */
int domstat_changed(struct domstat *t);

/* Current counters of a domain; 0 for a domain never counted. */
uint64_t domstat_bytes(const struct domstat *t, const char *domain, size_t len);
uint64_t domstat_msgs(const struct domstat *t, const char *domain, size_t len);

#endif
