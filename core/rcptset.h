/* SPDX-License-Identifier: MIT */
/*
 * rcptset: one customer domain's set of valid recipients (issue 19 point 1,
 * Postfix's relay_recipient_maps), as an immutable exact set that any number
 * of engine threads read at once without locks. Built by the control thread
 * (admin/rcptload.h) from Redis PREFIX"rcpts:{<domain>}", attached to the
 * domain's row (core/domtab.h) and published with it, so a lookup costs the
 * row's probe plus at most four probes here, whatever the set's size.
 *
 * An entry is "local" (local@<the row's domain>), "local@domain" (that
 * address: under a wildcard row "*.example.com" it names a subdomain),
 * "@domain" (every address of that domain) or "@" (every address: a
 * catch-all). Comparison is ASCII-case-insensitive over the whole address,
 * local part included, as Postfix's lookups are; octets >= 0x80 (SMTPUTF8)
 * compare exactly.
 *
 * Layout: a core/htab index (at most half full) whose element numbers are
 * offsets into one arena of length-prefixed lower-case entries; no per-entry
 * pointers. About 16-32 bytes of index plus 1 + strlen bytes per entry.
 */
#ifndef ETRND_CORE_RCPTSET_H
#define ETRND_CORE_RCPTSET_H

#include <stddef.h>
#include <stdint.h>

#define RCPTSET_LOCAL_MAX 64    /* RFC 5321 4.5.3.1.1 */
#define RCPTSET_DOMAIN_MAX 255  /* RFC 5321 4.5.3.1.2 */
#define RCPTSET_ENTRY_MAX 254   /* RFC 5321 4.5.3.1.3: a path of 256 minus "<>" */

/*
 * Check and normalise one entry: in[0..n) as an operator or Redis gives it
 * (no surrounding blanks), into out (RCPTSET_ENTRY_MAX + 1 bytes: lower
 * case, one trailing dot of the domain dropped, NUL-terminated), *outn its
 * length. Refused: empty, longer than RCPTSET_ENTRY_MAX, a control octet,
 * space, '<', '>', '"', ',' or ';' anywhere, a local part over
 * RCPTSET_LOCAL_MAX, "local@" with no domain, a domain with characters other
 * than letters, digits, '-' and '.', or an empty label. Pure. Returns 0, or
 * -EINVAL with *why (a static string) set.
 */
int rcptset_entry_norm(const char *in, size_t n, char *out, size_t *outn, const char **why);

/*
 * One line of an import file (etrnctl rcpt import): line[0..n) as getline(3)
 * read it. Blanks around the address, the line ending and a comment (from a
 * '#' that starts a word to the end) are dropped; a blank or comment-only line is nothing. The
 * address is then checked as rcptset_entry_norm() does, into out. Returns 1
 * (an entry in out, *outn long), 0 (nothing), or -EINVAL with *why set (a
 * NUL byte, two words, a bad address). Pure.
 */
int rcptset_line(const char *line, size_t n, char *out, size_t *outn, const char **why);

struct rcptset;
struct rcptset_builder;

/* A builder expecting about hint entries (0 = unknown), refusing to hold
 * more than max (0 = no cap). NULL on allocation failure. */
struct rcptset_builder *rcptset_builder_new(size_t hint, size_t max);
struct rcptset_builder *rcptset_builder_free(struct rcptset_builder *b);

/* Add the normalised entry s[0..n) (rcptset_entry_norm()'s output; not
 * checked again). A duplicate is not counted twice. Returns 1 added, 0
 * already there, -E2BIG over the builder's max (the entry is not added),
 * -ENOMEM. */
int rcptset_builder_add(struct rcptset_builder *b, const char *s, size_t n);

/* Entries added so far (without duplicates). */
size_t rcptset_builder_count(const struct rcptset_builder *b);

/* The immutable set of everything added; the builder is consumed (freed)
 * either way. NULL on allocation failure. */
struct rcptset *rcptset_build(struct rcptset_builder *b);

/* Free a set. NULL is fine. Returns NULL. Only once no reader can hold it
 * (after the domain table that pointed at it was swapped out). */
struct rcptset *rcptset_free(struct rcptset *s);

/* Entries in the set, and the bytes it takes (index + arena + header). */
size_t rcptset_count(const struct rcptset *s);
size_t rcptset_mem(const struct rcptset *s);

/*
 * 1 when the recipient addr[0..len) is in the set: addr is "local@domain"
 * as RCPT gave it (any case), domain_off the offset just past its last '@'
 * (domain_off - 1 bytes of local part). Tries the full address, the local
 * part, "@domain" and "@", skipping the kinds the set has none of. Pure,
 * lock-free, any thread.
 */
int rcptset_has(const struct rcptset *s, const char *addr, size_t len, size_t domain_off);

#endif
