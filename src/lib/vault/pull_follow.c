/*
 * The second thread of sm_vault_pull(): it reads the staged file while
 * the connector is still writing it and feeds a zip follower
 * (bundle/follow.h), so that hashing and inflating overlap the download.
 * It also starts the disk write-back of what it has read, which leaves
 * less for the final fsync().
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "util/util.h"
#include "vault/pull_follow.h"

/* Bytes per read, and how much is read between two write-back requests. */
#define FOLLOW_CHUNK (1024 * 1024)
#define WRITEBACK_STEP (8u * 1024 * 1024)

struct sm_pull_follow {
	int fd;
	sm_pull_watch *watch;
	sm_zip_follower *follower;
	unsigned char *buf;
	pthread_t thread;
	int started;
	atomic_int state;           /* FOLLOW_RUNNING, FOLLOW_COMPLETE or FOLLOW_ABANDONED */
	uint64_t synced;            /* write-back was started below this offset */
	int rc;                     /* 0, or why following stopped early */
	int read_error;             /* pread() failed: the result is not used */
	char sha256[65];
};

enum { FOLLOW_RUNNING, FOLLOW_COMPLETE, FOLLOW_ABANDONED };

/* Bytes that may be read now: the connector's mark, or the file's size. */
static uint64_t readable(sm_pull_follow *pf, int complete)
{
	struct stat st;

	if (!complete && atomic_load(&pf->watch->connector_reports))
		return atomic_load_explicit(&pf->watch->ready, memory_order_acquire);
	if (fstat(pf->fd, &st) != 0)
		return 0;
	return (uint64_t)st.st_size;
}

static void *follow_thread(void *arg)
{
	sm_pull_follow *pf = arg;
	uint64_t pos = 0;

	for (;;) {
		int state = atomic_load(&pf->state);
		uint64_t limit;
		ssize_t n;

		if (state == FOLLOW_ABANDONED)
			break;
		limit = readable(pf, state == FOLLOW_COMPLETE);
		if (pos >= limit) {
			struct timespec pause = { 0, 500 * 1000 };

			if (state == FOLLOW_COMPLETE)
				break;
			nanosleep(&pause, NULL);
			continue;
		}
		n = pread(pf->fd, pf->buf, limit - pos < FOLLOW_CHUNK ? limit - pos : FOLLOW_CHUNK,
			  (off_t)pos);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			pf->read_error = 1;
			break;
		}
		pf->rc = sm_zip_follower_feed(pf->follower, pf->buf, (size_t)n);
		if (pf->rc)
			break;
		pos += (uint64_t)n;
		if (pos - pf->synced >= WRITEBACK_STEP) {
			/* only a hint to start writing; fsync() later makes it durable */
			sync_file_range(pf->fd, (off_t)pf->synced, (off_t)(pos - pf->synced),
					SYNC_FILE_RANGE_WRITE);
			pf->synced = pos;
		}
	}
	return NULL;
}

int sm_pull_follow_start(sm_pull_follow **out, int fd, sm_pull_watch *watch)
{
	sm_pull_follow *pf = calloc(1, sizeof(*pf));
	int rc;

	*out = NULL;
	if (!pf || !(pf->buf = malloc(FOLLOW_CHUNK))) {
		free(pf);
		return sm_error_set(SM_ENOMEM, "out of memory");
	}
	pf->fd = fd;
	pf->watch = watch;
	rc = sm_zip_follower_new(&pf->follower);
	if (rc) {
		free(pf->buf);
		free(pf);
		return rc;
	}
	atomic_store(&pf->state, FOLLOW_RUNNING);
	pf->started = pthread_create(&pf->thread, NULL, follow_thread, pf) == 0;
	*out = pf;
	return 0;
}

const sm_zip_follower *sm_pull_follow_finish(sm_pull_follow *pf, int complete,
					     const char **sha256)
{
	struct stat st;

	*sha256 = NULL;
	atomic_store(&pf->state, complete ? FOLLOW_COMPLETE : FOLLOW_ABANDONED);
	if (!pf->started) {
		/* no second thread: follow the finished file here, as the thread would */
		if (!complete)
			return NULL;
		follow_thread(pf);
	} else {
		pthread_join(pf->thread, NULL);
		pf->started = 0;
	}
	/* the connector's error message, if any, must survive this */
	if (!complete || pf->rc || pf->read_error || fstat(pf->fd, &st) != 0 ||
	    (uint64_t)st.st_size != sm_zip_follower_fed(pf->follower))
		return NULL;
	if (sm_zip_follower_finish(pf->follower, pf->sha256) != 0) {
		sm_error_clear();
		return NULL;
	}
	*sha256 = pf->sha256;
	return pf->follower;
}

void sm_pull_follow_free(sm_pull_follow *pf)
{
	if (!pf)
		return;
	if (pf->started) {
		atomic_store(&pf->state, FOLLOW_ABANDONED);
		pthread_join(pf->thread, NULL);
	}
	sm_zip_follower_free(pf->follower);
	free(pf->buf);
	free(pf);
}
