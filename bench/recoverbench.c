/* SPDX-License-Identifier: MIT */
/*
 * etrnd-recoverbench: time start-up recovery of a whole spool as etrnd does
 * it: one thread per shard (each engine thread recovers its own shard before
 * its loop starts), spool_recover_shard() into a fresh index each. Prints
 * records, seconds, records/s, the CPU seconds the process used (on a
 * loaded machine the wall time mostly measures the wait for a CPU), the
 * index's own bytes per message and the process's peak RSS.
 *
 *   etrnd-recoverbench [-1] SPOOL_DIR     (-1: shards one after another)
 */
#include <dirent.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "store/spool_recover.h"

#define RB_SHARDS_MAX 256
#define RB_ERR_LEN 256

struct rb_shard {
	char dir[PATH_MAX];
	struct spool_index *idx;
	struct spool_recover_result res;
	struct spool_index_totals t;
	double secs;
	int rc;
	char err[RB_ERR_LEN];
};

/* User + system CPU seconds of the whole process so far. */
static double rb_cpu(void)
{
	struct rusage ru;
	if (getrusage(RUSAGE_SELF, &ru) < 0)
		return -1;
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
		(double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static double rb_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *rb_run(void *arg)
{
	struct rb_shard *s = arg;
	double t0 = rb_now();

	s->idx = spool_index_new();
	if (s->idx == NULL) {
		s->rc = -1;
		return NULL;
	}
	s->rc = spool_recover_shard(s->dir, s->idx, &s->res, s->err,
			sizeof s->err);
	s->secs = rb_now() - t0;
	spool_index_totals(s->idx, &s->t);
	return NULL;
}

/* VmHWM / VmRSS from /proc/self/status, in KiB. */
static long rb_status_kib(const char *key)
{
	char line[256];
	long v = -1;
	size_t kl = strlen(key);
	FILE *f = fopen("/proc/self/status", "r");
	if (f == NULL)
		return -1;
	while (fgets(line, sizeof line, f) != NULL)
		if (strncmp(line, key, kl) == 0 && line[kl] == ':')
			v = strtol(line + kl + 1, NULL, 10);
	fclose(f);
	return v;
}

int main(int argc, char **argv)
{
	static struct rb_shard shards[RB_SHARDS_MAX];
	pthread_t th[RB_SHARDS_MAX];
	size_t n = 0;
	int serial = 0, argi = 1;

	if (argi < argc && strcmp(argv[argi], "-1") == 0) {
		serial = 1;
		argi++;
	}
	if (argi + 1 != argc) {
		fprintf(stderr, "usage: etrnd-recoverbench [-1] SPOOL_DIR\n");
		return 2;
	}
	log_init("etrnd-recoverbench", LOGL_WARN, 0);
	DIR *d = opendir(argv[argi]);
	if (d == NULL) {
		perror(argv[argi]);
		return 1;
	}
	struct dirent *de;
	while ((de = readdir(d)) != NULL && n < RB_SHARDS_MAX) {
		char *end;
		(void)strtoul(de->d_name, &end, 10);
		if (de->d_name[0] < '0' || de->d_name[0] > '9' || *end != '\0')
			continue;
		snprintf(shards[n].dir, sizeof shards[n].dir, "%s/%s",
				argv[argi], de->d_name);
		n++;
	}
	closedir(d);
	if (n == 0) {
		fprintf(stderr, "%s: no shard directories\n", argv[argi]);
		return 1;
	}

	double t0 = rb_now(), c0 = rb_cpu();
	for (size_t i = 0; i < n; i++) {
		if (serial)
			rb_run(&shards[i]);
		else if (pthread_create(&th[i], NULL, rb_run, &shards[i]) != 0)
			return 1;
	}
	if (!serial)
		for (size_t i = 0; i < n; i++)
			pthread_join(th[i], NULL);
	double secs = rb_now() - t0, cpu = rb_cpu() - c0;

	uint64_t recs = 0, msgs = 0, live = 0, bytes = 0, mem = 0, bad = 0;
	for (size_t i = 0; i < n; i++) {
		struct rb_shard *s = &shards[i];
		if (s->rc != 0) {
			fprintf(stderr, "%s: %s\n", s->dir, s->err);
			return 1;
		}
		recs += s->res.msg_records + s->res.done_records;
		msgs += s->res.msg_records;
		live += s->res.live_messages;
		bytes += s->res.bytes;
		mem += s->t.mem_bytes;
		bad += s->res.bad_regions;
		printf("shard %s: %" PRIu64 " records, %" PRIu64
				" live messages, %.3f s\n", s->dir,
				s->res.msg_records + s->res.done_records,
				s->res.live_messages, s->secs);
	}
	long hwm = rb_status_kib("VmHWM"), rss = rb_status_kib("VmRSS");
	printf("recovery: %zu shards (%s), %" PRIu64 " records (%" PRIu64
			" MSG), %" PRIu64 " live messages, %.1f MiB read, "
			"%" PRIu64 " bad regions\n", n,
			serial ? "serial" : "one thread each", recs, msgs, live,
			(double)bytes / (1 << 20), bad);
	printf("recovery: %.3f s, %.0f records/s, %.0f MiB/s; CPU %.3f s "
			"(user + system, all threads)\n", secs,
			(double)recs / secs, (double)bytes / (1 << 20) / secs, cpu);
	printf("memory: index %.1f MiB = %.1f bytes per live message; "
			"RSS %.1f MiB, peak %.1f MiB\n", (double)mem / (1 << 20),
			live ? (double)mem / (double)live : 0.0,
			(double)rss / 1024, (double)hwm / 1024);
	for (size_t i = 0; i < n; i++) {
		spool_recover_result_free(&shards[i].res);
		spool_index_free(shards[i].idx);
	}
	return 0;
}
