/*
 * Private declarations of the SFTP connector plug-in. It uses only the
 * public skillmeat headers, libssh2 and OpenSSL's libcrypto.
 */
#ifndef SFTP_INTERNAL_H
#define SFTP_INTERNAL_H

#include <libssh2.h>
#include <libssh2_sftp.h>
#include <stdarg.h>
#include <stdint.h>

#include <skillmeat/credentials.h>
#include <skillmeat/error.h>
#include <skillmeat/vault.h>

/* One configured SFTP vault and, once opened, its connection. */
typedef struct sftp_vault {
	sm_vault parent;
	const sm_vault_config *config;
	const sm_callbacks *callbacks;

	/* from the location sftp://user@host[:port]/path */
	char *user;              /* NULL: taken from the credentials */
	char *host;
	int port;
	char *root;              /* directory of the vault on the server */

	char *known_hosts;       /* file of trusted host keys */
	int accept_new_host_keys;
	int timeout_ms;          /* connect and per-operation timeout */
	int lock_timeout_s;      /* age after which a lock counts as stale */
	int lock_wait_s;         /* how long a writer waits for the lock */

	char token[33];          /* random, unique per instance: temp names, lock owner */

	int sock;
	LIBSSH2_SESSION *session;
	LIBSSH2_SFTP *sftp;

	char *lock_dir;          /* <root>/.skillmeat-lock */
	char *lock_owner;        /* text of our owner file while we hold the lock */
	unsigned int temp_serial;
} sftp_vault;

/* ssh.c: connects, checks the host key, authenticates, starts SFTP. */
int sftp_connect(sftp_vault *sv);
void sftp_disconnect(sftp_vault *sv);

/* Maps the last libssh2 failure to an sm_error_code and sets the message. */
int sftp_fail(sftp_vault *sv, const char *what, const char *path);

/* Sends one message line to the callbacks. */
void sftp_notify(const sftp_vault *sv, sm_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Allocating printf; NULL (message set) when out of memory. */
char *sftp_asprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Base64 without padding, as OpenSSH prints fingerprints; *out is new. */
char *sftp_base64(const unsigned char *data, size_t len, int pad);


/* remote.c: file operations on the server, paths absolute or root-relative. */

/* Attributes of `path`; SM_ENOTFOUND (no message) when it does not exist. */
int remote_stat(sftp_vault *sv, const char *path, LIBSSH2_SFTP_ATTRIBUTES *attrs);

/* Fails with SM_EINTEGRITY unless `path` is a regular file; SM_ENOTFOUND (no message) when missing. */
int remote_check_file(sftp_vault *sv, const char *path);

/* Reads a regular file of at most `max` bytes; SM_ENOTFOUND (no message) when missing. */
int remote_read(sftp_vault *sv, const char *path, size_t max, char **out, size_t *len);

/* Creates a directory; an existing directory is fine. */
int remote_mkdir(sftp_vault *sv, const char *path);

/* Removes a file; SM_ENOTFOUND (no message) when it does not exist. */
int remote_unlink(sftp_vault *sv, const char *path);

/* Renames; fails when `to` exists, since OpenSSH's SFTP v3 rename never replaces. */
int remote_rename(sftp_vault *sv, const char *from, const char *to);

/*
 * Writes `text` to a new temporary file beside `dest` (".NAME.tmp-TOKEN-N"),
 * fsyncs it and returns its path in *tmp. *server_time (may be NULL)
 * receives the file's mtime, which is the server's clock.
 */
int remote_write_temp(sftp_vault *sv, const char *dest, const char *text, size_t len,
		      char **tmp, uint64_t *server_time);

/* Returns a new temporary path beside `dest`. */
char *remote_temp_name(sftp_vault *sv, const char *dest);

/* Calls `fn` for every entry of directory `dir` but "." and "..". */
typedef int (*remote_entry_fn)(sftp_vault *sv, const char *name,
			       const LIBSSH2_SFTP_ATTRIBUTES *attrs, void *payload);
int remote_list_dir(sftp_vault *sv, const char *dir, remote_entry_fn fn, void *payload);

/* Returns the server's current time (mtime of a file it creates). */
int remote_clock(sftp_vault *sv, uint64_t *now);

/* lock.c: the writers' lock <root>/.skillmeat-lock. */
int lock_acquire(sftp_vault *sv);
/* One attempt only: 0 when taken, SM_ECONFLICT when another writer has it. */
int lock_try(sftp_vault *sv);
/* SM_ECONFLICT when the lock is no longer ours. */
int lock_check(sftp_vault *sv);
void lock_release(sftp_vault *sv);

/*
 * worker.c: a thread that computes the SHA-256 of the transferred bytes
 * and, with a file descriptor, writes them there in the order submitted.
 */
typedef struct sftp_worker sftp_worker;

/* Starts a worker that writes to `fd`, or only hashes when `fd` is -1. */
int sftp_worker_start(sftp_worker **out, int fd);

/*
 * Reports the pull's writes to `watch` (see sm_pull_watch_take()) and
 * stops hashing: the library then checks the SHA-256. Call before the
 * first sftp_worker_submit().
 */
void sftp_worker_watch(sftp_worker *w, sm_pull_watch *watch);

/*
 * Hands `len` bytes at `data` to the worker after its previous job is done.
 * The caller leaves them unchanged until the next submit, wait or finish.
 * Returns the failure of an earlier write, with its message.
 */
int sftp_worker_submit(sftp_worker *w, const char *data, size_t len);

/* Waits until the last job is done; returns a write failure as submit does. */
int sftp_worker_wait(sftp_worker *w);

/* Waits for the last job and returns the SHA-256 of everything submitted. */
int sftp_worker_finish(sftp_worker *w, unsigned char digest[32]);

/* Waits for the running job, stops the thread and frees the worker. */
void sftp_worker_free(sftp_worker *w);

#endif
