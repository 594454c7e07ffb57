/* SPDX-License-Identifier: MIT */
/*
 * list: the one intrusive doubly linked list. A struct list_node sits inside
 * the element; struct list holds head and tail; LIST_ENTRY() gets from a
 * node back to its element. NULL-terminated at both ends (not circular), so
 * an iterator can be one pointer and an empty list is all zeroes. The list
 * owns nothing: elements live wherever their owner put them.
 */
#ifndef ETRND_CORE_LIST_H
#define ETRND_CORE_LIST_H

#include <stddef.h>

struct list_node {
	struct list_node *prev, *next;
};

struct list {
	struct list_node *head, *tail;
};

/* The element of type that holds node in its field member. node must not
 * be NULL. */
#define LIST_ENTRY(node, type, member) \
	((type *)(void *)((char *)(node) - offsetof(type, member)))

/* Walk l from head to tail; n is a struct list_node *. The body must not
 * unlink n (keep the next pointer first for that). */
#define LIST_FOREACH(n, l) for ((n) = (l)->head; (n) != NULL; (n) = (n)->next)

static inline void list_init(struct list *l)
{
	l->head = l->tail = NULL;
}

static inline int list_empty(const struct list *l)
{
	return l->head == NULL;
}

/* Append n (not on any list) at the tail. O(1). */
static inline void list_append(struct list *l, struct list_node *n)
{
	n->next = NULL;
	n->prev = l->tail;
	if (l->tail != NULL)
		l->tail->next = n;
	else
		l->head = n;
	l->tail = n;
}

/* Take n (which is on l) off l; its links are cleared. O(1). */
static inline void list_unlink(struct list *l, struct list_node *n)
{
	if (n->prev != NULL)
		n->prev->next = n->next;
	else
		l->head = n->next;
	if (n->next != NULL)
		n->next->prev = n->prev;
	else
		l->tail = n->prev;
	n->prev = n->next = NULL;
}

/* Unlink and return the head, or NULL when l is empty. O(1). */
static inline struct list_node *list_pop(struct list *l)
{
	struct list_node *n = l->head;

	if (n != NULL)
		list_unlink(l, n);
	return n;
}

#endif
