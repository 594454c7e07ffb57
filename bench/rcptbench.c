/* SPDX-License-Identifier: MIT */
/*
 * etrnd-rcptbench: the cost of recipient validation's lookup (core/rcptset.h)
 * on its own. Reads an import file (one address a line, as etrnctl rcpt
 * import takes it), builds the set the daemon would, and times LOOKUPS
 * lookups of addresses in the set and LOOKUPS of addresses not in it,
 * over the file's entries (a table larger than the caches, so most probes
 * miss them, as they would in the daemon), the fastest of RB_REPEAT passes.
 * Prints one JSON line: entries, build time, the set's bytes (and per
 * million entries), CPU ns per hit and per miss (build_s is CPU time too).
 *
 *   etrnd-rcptbench FILE DOMAIN [LOOKUPS]
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/rcptset.h"

#define RB_LOOKUPS_DEFAULT 1000000u
#define RB_REPEAT 5
#define RB_ADDR_MAX (RCPTSET_ENTRY_MAX + 260)

/* This thread's CPU time: on a shared machine the wall clock mostly
 * measures the run queue. */
static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* addr for entry e of domain: "e@domain" for a local part, e itself for a
 * full address; miss adds a character to the local part. */
static size_t rb_addr(char *addr, const char *e, const char *domain, int miss, size_t *doff)
{
	const char *at = strrchr(e, '@');
	int n;

	if (at && at != e) {
		n = snprintf(addr, RB_ADDR_MAX, "%.*s%s%s", (int)(at - e), e, miss ? "~" : "", at);
		*doff = (size_t)(at - e) + (miss ? 2 : 1);
	} else {
		n = snprintf(addr, RB_ADDR_MAX, "%s%s@%s", e, miss ? "~" : "", domain);
		*doff = strlen(e) + (miss ? 2 : 1);
	}
	return (size_t)n;
}

int main(int argc, char **argv)
{
	unsigned long lookups = argc > 3 ? strtoul(argv[3], NULL, 10) : RB_LOOKUPS_DEFAULT;
	struct rcptset_builder *b = rcptset_builder_new(0, 0);
	char line[1100], e[RCPTSET_ENTRY_MAX + 1], addr[RB_ADDR_MAX];
	char *ents = NULL;
	size_t len = 0, cap = 0, n = 0, en, *offs = NULL, ocap = 0;
	unsigned long found[2] = { 0, 0 };
	double t0, t1, ns[2];
	char **addrs;
	size_t m, *alen, *aoff;
	struct rcptset *s;
	const char *why;
	FILE *f;

	if (argc < 3 || !b || !(f = fopen(argv[1], "r"))) {
		fprintf(stderr, "usage: etrnd-rcptbench FILE DOMAIN [LOOKUPS]\n");
		return 2;
	}
	t0 = now_s();
	while (fgets(line, sizeof(line), f)) {
		if (rcptset_line(line, strlen(line), e, &en, &why) != 1 ||
		    rcptset_builder_add(b, e, en) != 1)
			continue;
		if (len + en + 1 > cap || n == ocap) {
			cap = cap ? cap * 2 : 1 << 20;
			ocap = ocap ? ocap * 2 : 1 << 16;
			ents = realloc(ents, cap);
			offs = realloc(offs, ocap * sizeof(*offs));
			if (!ents || !offs)
				return 1;
		}
		memcpy(ents + len, e, en + 1);
		offs[n++] = len;
		len += en + 1;
	}
	fclose(f);
	s = rcptset_build(b);
	t1 = now_s();
	if (!s || n == 0)
		return 1;
	/* The addresses are made before the clock runs (hits: the entries
	 * as RCPT would give them; misses: one more character in the local
	 * part), in a stride through the entries so neighbours are not
	 * looked up together. The machine is shared: each pass runs
	 * RB_REPEAT times, interleaved, and the fastest counts. */
	m = lookups < n ? lookups : n;
	addrs = malloc(2 * m * sizeof(*addrs));
	alen = malloc(2 * m * sizeof(*alen));
	aoff = malloc(2 * m * sizeof(*aoff));
	if (!addrs || !alen || !aoff)
		return 1;
	for (size_t i = 0; i < 2 * m; i++) {
		alen[i] = rb_addr(addr, ents + offs[((i % m) * 7919u) % n], argv[2], i >= m, &aoff[i]);
		if (!(addrs[i] = strdup(addr)))
			return 1;
	}
	ns[0] = ns[1] = 1e30;
	for (int rep = 0; rep < RB_REPEAT; rep++) {
		for (int miss = 0; miss < 2; miss++) {
			double a = now_s(), t;

			found[miss] = 0;
			for (size_t i = (size_t)miss * m; i < (size_t)(miss + 1) * m; i++)
				found[miss] += (unsigned long)rcptset_has(s, addrs[i], alen[i], aoff[i]);
			t = (now_s() - a) * 1e9 / (double)m;
			if (t < ns[miss])
				ns[miss] = t;
		}
	}
	printf("{\"entries\":%zu,\"avg_entry_bytes\":%.1f,\"build_s\":%.3f,\"set_bytes\":%zu,"
	       "\"bytes_per_million\":%.0f,\"lookups\":%zu,\"repeat\":%d,\"hit_ns\":%.1f,"
	       "\"miss_ns\":%.1f,\"hits_found\":%lu,\"misses_found\":%lu}\n",
	       rcptset_count(s), (double)(len - n) / (double)n, t1 - t0, rcptset_mem(s),
	       (double)rcptset_mem(s) * 1e6 / (double)rcptset_count(s), m, RB_REPEAT, ns[0], ns[1],
	       found[0], found[1]);
	for (size_t i = 0; i < 2 * m; i++)
		free(addrs[i]);
	free(addrs);
	free(alen);
	free(aoff);
	rcptset_free(s);
	free(ents);
	free(offs);
	return found[0] == m && found[1] == 0 ? 0 : 1;
}
