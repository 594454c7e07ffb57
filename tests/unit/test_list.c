/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for core/list.h: table-driven sequences of appends, unlinks
 * and pops, checked forwards and backwards after every step.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "core/list.h"

#define LT_ELEMS 8

struct lt_elem {
	int pad;                /* link not first: LIST_ENTRY must subtract */
	struct list_node link;
	char name;
};

struct lt_case {
	const char *name;
	const char *ops;  /* "+a" append a, "-a" unlink a, "<" pop head */
	const char *want; /* names head to tail */
	const char *want_popped;
};

static const struct lt_case lt_cases[] = {
	{ "empty", "", "", "" },
	{ "append", "+a+b+c", "abc", "" },
	{ "unlink_head", "+a+b+c-a", "bc", "" },
	{ "unlink_middle", "+a+b+c-b", "ac", "" },
	{ "unlink_tail", "+a+b+c-c", "ab", "" },
	{ "unlink_only", "+a-a", "", "" },
	{ "unlink_all_reappend", "+a+b-a-b+b+a", "ba", "" },
	{ "pop_fifo", "+a+b+c<<", "c", "ab" },
	{ "pop_empty", "<+a<<", "", "a" },
	{ "mixed", "+a+b+c+d-b<+e-d", "ce", "a" },
};

/* Walk both ways and check the links agree. */
static void lt_check(const struct list *l, const char *want, const char *name)
{
	char fwd[LT_ELEMS + 1] = "", back[LT_ELEMS + 1] = "";
	const struct list_node *n;
	size_t k = 0, len = strlen(want);

	LIST_FOREACH(n, l) {
		cr_assert_lt(k, LT_ELEMS, "%s: list loops", name);
		fwd[k++] = LIST_ENTRY(n, struct lt_elem, link)->name;
	}
	cr_expect_str_eq(fwd, want, "%s: forwards \"%s\"", name, fwd);
	k = 0;
	for (n = l->tail; n != NULL; n = n->prev) {
		cr_assert_lt(k, LT_ELEMS, "%s: list loops backwards", name);
		back[len - 1 - k++] = LIST_ENTRY(n, struct lt_elem, link)->name;
	}
	cr_expect_eq(k, len, "%s: %zu backwards", name, k);
	cr_expect_str_eq(back, want, "%s: backwards", name);
	cr_expect_eq(list_empty(l), len == 0, "%s: empty", name);
}

/* The model: names in order, as a string. */
static void lt_model(char *m, char op, char name)
{
	char *at;

	if (op == '+') {
		size_t k = strlen(m);

		m[k] = name;
		m[k + 1] = '\0';
	} else if (op == '-' && (at = strchr(m, name)) != NULL) {
		memmove(at, at + 1, strlen(at));
	} else if (op == '<' && m[0] != '\0') {
		memmove(m, m + 1, strlen(m));
	}
}

static void lt_run(const struct lt_case *c)
{
	struct lt_elem el[LT_ELEMS];
	char popped[LT_ELEMS + 1] = "", model[LT_ELEMS + 1] = "";
	size_t np = 0;
	struct list l;

	for (int k = 0; k < LT_ELEMS; k++)
		el[k].name = (char)('a' + k);
	list_init(&l);
	for (const char *op = c->ops; *op != '\0'; op++) {
		char kind = *op, name = kind == '<' ? model[0] : op[1];

		if (kind == '<') {
			struct list_node *n = list_pop(&l);

			cr_assert_eq(n == NULL, name == '\0', "%s: pop", c->name);
			if (n != NULL) {
				popped[np++] = LIST_ENTRY(n, struct lt_elem, link)->name;
				cr_expect_null(n->next);
				cr_expect_null(n->prev);
			}
		} else if (kind == '+') {
			list_append(&l, &el[name - 'a'].link);
			op++;
		} else {
			list_unlink(&l, &el[name - 'a'].link);
			cr_expect_null(el[name - 'a'].link.next);
			cr_expect_null(el[name - 'a'].link.prev);
			op++;
		}
		lt_model(model, kind, name);
		lt_check(&l, model, c->name);
	}
	cr_expect_str_eq(model, c->want, "%s: model", c->name);
	lt_check(&l, c->want, c->name);
	cr_expect_str_eq(popped, c->want_popped, "%s: popped \"%s\"", c->name, popped);
}

Test(list, table)
{
	for (size_t i = 0; i < sizeof(lt_cases) / sizeof(lt_cases[0]); i++)
		lt_run(&lt_cases[i]);
}
