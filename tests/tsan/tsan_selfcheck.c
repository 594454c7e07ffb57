/* SPDX-License-Identifier: MIT */
/*
 * A deliberate data race: ctest case tsan.selfcheck expects TSan to report
 * it and fail this program (WILL_FAIL), which shows that the TSan build
 * really checks and that a report makes a test fail.
 */
#include <pthread.h>
#include <stdio.h>

#define SELFCHECK_ROUNDS 100000

static int shared; /* written by both threads without a lock: the race */

static void *selfcheck_bump(void *arg)
{
	int i;

	(void)arg;
	for (i = 0; i < SELFCHECK_ROUNDS; i++)
		shared++;
	return NULL;
}

int main(void)
{
	pthread_t a, b;

	if (pthread_create(&a, NULL, selfcheck_bump, NULL) ||
			pthread_create(&b, NULL, selfcheck_bump, NULL))
		return 2;
	pthread_join(a, NULL);
	pthread_join(b, NULL);
	printf("shared = %d\n", shared);
	return 0;
}
