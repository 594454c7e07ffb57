/* SPDX-License-Identifier: MIT */
/*
 * rcptset: recipient sets (rcptset.h). Each probe of a lookup is a substring
 * of the address itself ("local@domain", "local", "@domain"), so a lookup
 * hashes and compares the caller's bytes in place, folding case on the fly:
 * no copy, no allocation.
 */
#include "core/rcptset.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/ascii.h"
#include "core/buf.h"
#include "core/hash.h"
#include "core/htab.h"

#define RCPTSET_ARENA_MIN 4096u
#define RCPTSET_ARENA_MAX UINT32_MAX /* element numbers are arena offsets */

struct rcptset {
	struct htab idx;   /* hash -> arena offset of the entry's length byte */
	struct buf arena;  /* entries: one length octet, then the lower-case bytes */
	size_t count;      /* entries, the catch-all "@" included */
	size_t nlocal;     /* "local" entries */
	size_t nfull;      /* "local@domain" entries */
	size_t nat;        /* "@domain" entries */
	int catchall;      /* "@" */
};

struct rcptset_builder {
	struct rcptset *s;
	size_t max;        /* entries allowed, 0 = no cap */
};

static int dom_char(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c >= 0x80;
}

/* The domain d[0..n) (lower case already): labels of dom_char, no empty
 * label (a single trailing dot was dropped by the caller). */
static int dom_ok(const char *d, size_t n)
{
	size_t label = 0;

	if (n == 0 || n > RCPTSET_DOMAIN_MAX)
		return 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)d[i];

		if (c == '.') {
			if (label == 0)
				return 0;
			label = 0;
		} else if (dom_char(c)) {
			label++;
		} else {
			return 0;
		}
	}
	return label > 0;
}

int rcptset_entry_norm(const char *in, size_t n, char *out, size_t *outn, const char **why)
{
	const char *at = NULL;
	size_t local;

	if (n == 0)
		return *why = "empty address", -EINVAL;
	if (n > RCPTSET_ENTRY_MAX)
		return *why = "address longer than 254 octets (RFC 5321 4.5.3.1.3)", -EINVAL;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)in[i];

		if (c <= ' ' || c == 0x7f)
			return *why = "control character or space in the address", -EINVAL;
		if (strchr("<>\",;", c))
			return *why = "one of < > \" , ; in the address (give the bare address)", -EINVAL;
		if (c == '@')
			at = in + i;
	}
	ascii_lower_copy(out, in, n);
	local = at ? (size_t)(at - in) : n;
	if (local > RCPTSET_LOCAL_MAX)
		return *why = "local part longer than 64 octets (RFC 5321 4.5.3.1.1)", -EINVAL;
	if (at && local + 1 < n) {
		size_t dn = n - local - 1;

		if (out[n - 1] == '.')
			dn--, n--;
		if (!dom_ok(out + local + 1, dn))
			return *why = "bad domain after @ (letters, digits, - and . labels)", -EINVAL;
	} else if (at && local > 0) {
		return *why = "nothing after @ (\"user\", \"user@domain\", \"@domain\" or \"@\")", -EINVAL;
	}
	out[n] = '\0';
	*outn = n;
	return 0;
}

static int blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

int rcptset_line(const char *line, size_t n, char *out, size_t *outn, const char **why)
{
	const char *end;
	size_t i = 0, w;

	if (memchr(line, '\0', n))
		return *why = "NUL byte in the line", -EINVAL;
	/* '#' is atext (RFC 5322 3.2.3): a comment only where a word starts. */
	for (size_t k = 0; k < n; k++)
		if (line[k] == '#' && (k == 0 || blank(line[k - 1]))) {
			n = k;
			break;
		}
	while (n && blank(line[n - 1]))
		n--;
	while (i < n && blank(line[i]))
		i++;
	if (i == n)
		return 0;
	end = line + n;
	for (w = i; w < n && !blank(line[w]); w++)
		;
	if (line + w != end)
		return *why = "more than one word (one address a line)", -EINVAL;
	return rcptset_entry_norm(line + i, n - i, out, outn, why) ? -EINVAL : 1;
}

/* ---- lookups ------------------------------------------------------------- */

/* A probe: p[0..n), any case. */
struct rcptset_key {
	const char *p;
	size_t n;
};

static uint32_t key_hash(const char *p, size_t n)
{
	return hash_fin32(hash_fnv32_lower(HASH_FNV32_INIT, p, n));
}

static int entry_eq(const void *ctx, uint32_t el, const void *key)
{
	const struct rcptset *s = ctx;
	const struct rcptset_key *k = key;
	const unsigned char *e = (const unsigned char *)s->arena.data + el;

	return e[0] == k->n && ascii_eq_n((const char *)e + 1, k->p, k->n);
}

static int probe(const struct rcptset *s, const char *p, size_t n)
{
	const struct rcptset_key k = { p, n };

	return htab_find(&s->idx, key_hash(p, n), entry_eq, s, &k) != HTAB_NONE;
}

int rcptset_has(const struct rcptset *s, const char *addr, size_t len, size_t domain_off)
{
	if (s->catchall)
		return 1;
	if (domain_off == 0 || domain_off > len || addr[domain_off - 1] != '@')
		return 0; /* no domain: only a catch-all could take it */
	if (s->nfull && probe(s, addr, len))
		return 1;
	if (s->nlocal && domain_off > 1 && probe(s, addr, domain_off - 1))
		return 1;
	/* "@domain" is the address's own tail from its '@'. */
	return s->nat && probe(s, addr + domain_off - 1, len - domain_off + 1);
}

size_t rcptset_count(const struct rcptset *s)
{
	return s->count;
}

size_t rcptset_mem(const struct rcptset *s)
{
	return sizeof(*s) + htab_mem(&s->idx) + s->arena.cap;
}

struct rcptset *rcptset_free(struct rcptset *s)
{
	if (!s)
		return NULL;
	htab_fini(&s->idx);
	buf_free(&s->arena);
	free(s);
	return NULL;
}

/* ---- building ------------------------------------------------------------ */

struct rcptset_builder *rcptset_builder_new(size_t hint, size_t max)
{
	struct rcptset_builder *b = calloc(1, sizeof(*b));
	size_t cap = RCPTSET_ARENA_MIN;

	if (!b)
		return NULL;
	b->s = calloc(1, sizeof(*b->s));
	if (!b->s)
		return rcptset_builder_free(b);
	htab_init(&b->s->idx);
	buf_init(&b->s->arena, RCPTSET_ARENA_MAX);
	/* About 24 octets an entry (a length octet and a 15-20 octet local
	 * part, rounded up, so a typical set never doubles); grown by doubling
	 * past that, the slack given back by rcptset_build(). */
	if (hint && hint < RCPTSET_ARENA_MAX / 24 && hint * 24 > cap)
		cap = hint * 24;
	if (buf_reserve(&b->s->arena, cap) ||
	    (hint && hint < UINT32_MAX / 2 && htab_reserve(&b->s->idx, (uint32_t)hint)))
		return rcptset_builder_free(b);
	b->max = max;
	return b;
}

struct rcptset_builder *rcptset_builder_free(struct rcptset_builder *b)
{
	if (!b)
		return NULL;
	rcptset_free(b->s);
	free(b);
	return NULL;
}

size_t rcptset_builder_count(const struct rcptset_builder *b)
{
	return b->s->count;
}

int rcptset_builder_add(struct rcptset_builder *b, const char *e, size_t n)
{
	struct rcptset *s = b->s;
	uint32_t h;
	int rc;

	if (n == 0 || n > RCPTSET_ENTRY_MAX)
		return -EINVAL;
	if (n == 1 && e[0] == '@') {
		if (s->catchall)
			return 0;
		if (b->max && s->count >= b->max)
			return -E2BIG;
		s->catchall = 1;
		s->count++;
		return 1;
	}
	h = key_hash(e, n);
	if (probe(s, e, n))
		return 0;
	if (b->max && s->count >= b->max)
		return -E2BIG;
	/* Offsets are element numbers: the arena stays under 4 GiB (its max). */
	if ((rc = buf_reserve(&s->arena, n + 1)))
		return rc;
	if (s->count >= UINT32_MAX / 2 || htab_insert(&s->idx, h, (uint32_t)s->arena.len))
		return -ENOMEM;
	s->arena.data[s->arena.len] = (char)n;
	memcpy(s->arena.data + s->arena.len + 1, e, n);
	s->arena.len += n + 1;
	s->count++;
	if (e[0] == '@')
		s->nat++;
	else if (memchr(e, '@', n))
		s->nfull++;
	else
		s->nlocal++;
	return 1;
}

struct rcptset *rcptset_build(struct rcptset_builder *b)
{
	struct rcptset *s = b->s;

	/* Give back the arena's slack: a set lives until the next change. */
	buf_shrink(&s->arena, s->arena.len);
	b->s = NULL;
	free(b);
	return s;
}
