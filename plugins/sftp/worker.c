/*
 * A second thread beside a transfer. It hashes the buffers handed to it
 * and, for a pull, writes them to the local file, while the calling thread
 * goes on with libssh2. libssh2 1.10 encrypts and decrypts one 16-byte
 * block per OpenSSL call, which keeps the transfer thread busy, so the
 * hashing and the file writes are taken off it. A pull that took the
 * library's pull watch reports each write to it and hashes nothing: the
 * library checks the SHA-256.
 *
 * One job runs at a time, in the order submitted, so the file is written
 * strictly from offset 0 upwards. When the thread cannot be started, each
 * job runs in the caller's thread instead.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include "sftp_internal.h"

struct sftp_worker {
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t changed;  /* a job was posted or finished, or stop was set */
	EVP_MD_CTX *hash;
	int fd;                  /* file the jobs are written to; -1: hash only */
	const char *data;        /* the posted job; NULL while idle */
	size_t len;
	int write_errno;         /* first write failure; later jobs only hash */
	sm_pull_watch *watch;    /* takes the writes and replaces the hash, or NULL */
	uint64_t offset;         /* where the next write goes */
	int stop;
	int threaded;
};

static void run_job(sftp_worker *w, const char *data, size_t len)
{
	if (!w->watch)
		EVP_DigestUpdate(w->hash, data, len);
	while (w->fd >= 0 && !w->write_errno && len) {
		ssize_t n = write(w->fd, data, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			w->write_errno = errno;
			break;
		}
		sm_pull_watch_wrote(w->watch, w->offset, (uint64_t)n);
		w->offset += (uint64_t)n;
		data += n;
		len -= (size_t)n;
	}
}

void sftp_worker_watch(sftp_worker *w, sm_pull_watch *watch)
{
	w->watch = watch;
}

static void *worker_main(void *arg)
{
	sftp_worker *w = arg;

	pthread_mutex_lock(&w->lock);
	for (;;) {
		const char *data;
		size_t len;

		while (!w->data && !w->stop)
			pthread_cond_wait(&w->changed, &w->lock);
		if (!w->data)
			break;
		data = w->data;
		len = w->len;
		pthread_mutex_unlock(&w->lock);
		run_job(w, data, len);
		pthread_mutex_lock(&w->lock);
		w->data = NULL;
		pthread_cond_broadcast(&w->changed);
	}
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

int sftp_worker_start(sftp_worker **out, int fd)
{
	sftp_worker *w = calloc(1, sizeof(*w));

	*out = NULL;
	if (!w)
		return sm_error_set(SM_ENOMEM, "out of memory");
	w->fd = fd;
	w->hash = EVP_MD_CTX_new();
	if (!w->hash || !EVP_DigestInit_ex(w->hash, EVP_sha256(), NULL)) {
		EVP_MD_CTX_free(w->hash);
		free(w);
		return sm_error_set(SM_ENOMEM, "out of memory");
	}
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->changed, NULL);
	w->threaded = pthread_create(&w->thread, NULL, worker_main, w) == 0;
	*out = w;
	return 0;
}

/* Sets the message of a failed write, in the caller's thread. */
static int check_write(sftp_worker *w)
{
	if (!w->write_errno)
		return 0;
	return sm_error_set_errno(SM_EIO, w->write_errno, "cannot write the pulled bundle");
}

int sftp_worker_wait(sftp_worker *w)
{
	if (w->threaded) {
		pthread_mutex_lock(&w->lock);
		while (w->data)
			pthread_cond_wait(&w->changed, &w->lock);
		pthread_mutex_unlock(&w->lock);
	}
	return check_write(w);
}

int sftp_worker_submit(sftp_worker *w, const char *data, size_t len)
{
	int rc = sftp_worker_wait(w);

	if (rc || !len)
		return rc;
	if (!w->threaded) {
		run_job(w, data, len);
		return check_write(w);
	}
	pthread_mutex_lock(&w->lock);
	w->data = data;
	w->len = len;
	pthread_cond_broadcast(&w->changed);
	pthread_mutex_unlock(&w->lock);
	return 0;
}

int sftp_worker_finish(sftp_worker *w, unsigned char digest[32])
{
	int rc = sftp_worker_wait(w);

	if (!rc)
		EVP_DigestFinal_ex(w->hash, digest, NULL);
	return rc;
}

void sftp_worker_free(sftp_worker *w)
{
	if (!w)
		return;
	if (w->threaded) {
		pthread_mutex_lock(&w->lock);
		w->stop = 1;
		pthread_cond_broadcast(&w->changed);
		pthread_mutex_unlock(&w->lock);
		/* the thread finishes its current job before it checks stop */
		pthread_join(w->thread, NULL);
	}
	pthread_mutex_destroy(&w->lock);
	pthread_cond_destroy(&w->changed);
	EVP_MD_CTX_free(w->hash);
	free(w);
}
