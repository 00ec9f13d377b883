/*
 * Internal helpers shared by the library: a growable buffer with a size
 * cap, strings, paths, files written atomically, locks, SHA-256.
 * Nothing here is part of the public API.
 */
#ifndef SM_UTIL_H
#define SM_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "skillmeat/common.h"
#include "skillmeat/error.h"

/*
 * Growable byte buffer. `data` is always NUL-terminated once anything was
 * added. Growing past `max` bytes fails with SM_EINVALID, so a buffer fed
 * from untrusted input cannot grow without bound.
 */
typedef struct sm_buf {
	char *data;
	size_t len;
	size_t cap;
	size_t max;
} sm_buf;

#define SM_BUF_INIT(max_bytes) { NULL, 0, 0, (max_bytes) }

int sm_buf_put(sm_buf *buf, const void *data, size_t len);
int sm_buf_puts(sm_buf *buf, const char *text);
int sm_buf_putc(sm_buf *buf, char c);
int sm_buf_printf(sm_buf *buf, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Hands the data to the caller (never NULL on success) and empties the buffer. */
char *sm_buf_take(sm_buf *buf);
void sm_buf_release(sm_buf *buf);

/* strdup that sets SM_ENOMEM's message on failure; NULL in, NULL out. */
char *sm_strdup(const char *text);
char *sm_strndup(const char *text, size_t len);
/* Allocating printf; returns NULL (message set) on failure. */
char *sm_asprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Joins two path parts with one '/'. */
char *sm_path_join(const char *dir, const char *name);
/* Returns 1 when `text` has a byte below 0x20 or 0x7f. */
int sm_has_control_chars(const char *text);
/* Writes the current UTC time as "YYYY-MM-DDTHH:MM:SS.ffffff" (27 bytes + NUL). */
void sm_now_iso8601(char out[32]);
/* Writes `seconds` (Unix time, UTC) as "YYYY-MM-DDTHH:MM:SS". */
void sm_time_iso8601(int64_t seconds, char out[32]);

/* Lower-case hex of a 32-byte digest into out[65]. */
void sm_hex(const unsigned char *digest, size_t len, char *out);

/*
 * Opens a regular file for reading without blocking on a FIFO. Returns the
 * descriptor, or -1 with *rc set: SM_ENOTFOUND, SM_EREADONLY (permission
 * denied), SM_EINVALID (not a regular file) or SM_EIO.
 */
int sm_open_regular(const char *path, int *rc);

/*
 * Reads a whole file into a new NUL-terminated buffer. Files larger than
 * `max` bytes fail with SM_EINVALID; a missing file with SM_ENOTFOUND.
 */
int sm_read_file(const char *path, size_t max, char **out, size_t *len);

/*
 * Replaces `path` atomically: writes a temporary file in the same
 * directory, fsyncs it, renames it over `path` and fsyncs the directory.
 * An existing file's mode is kept; a new file gets `mode`.
 */
int sm_write_file_atomic(const char *path, const void *data, size_t len, mode_t mode);

/*
 * Creates a new temporary file next to `path` ("<dir>/.<base>.tmp-XXXXXX")
 * with O_EXCL and O_CLOEXEC. `*tmp_path` is owned by the caller.
 */
int sm_tmpfile_beside(const char *path, mode_t mode, char **tmp_path, int *fd);

/*
 * Opens a file to stage data for `dest` (in directory `dir`). Where the file
 * system supports O_TMPFILE the file has no name until it is linked into
 * place, so a killed process leaves nothing behind; *anonymous is then 1
 * and `*path` its /proc/self/fd name, valid while `*fd` is open. Elsewhere
 * it is a hidden temporary file beside `dest` that the caller unlinks.
 */
int sm_staging_open(const char *dir, const char *dest, char **path, int *fd, int *anonymous);

/*
 * Puts a staged file at `dest`, atomically replacing what is there. An
 * anonymous file first gets a hidden name, since rename() needs one.
 */
int sm_staging_replace(const char *staged, int anonymous, const char *dest);

/* fsyncs a file then renames it to `path` and fsyncs the directory. */
int sm_commit_tmpfile(int fd, const char *tmp_path, const char *path);

/* fsyncs the directory that contains `path`. */
int sm_fsync_parent(const char *path);

/* Writes all `len` bytes, retrying short writes and EINTR; -1 with errno on failure. */
int sm_write_all(int fd, const void *data, size_t len);

/* mkdir -p. Existing directories are fine. */
int sm_mkdir_p(const char *path, mode_t mode);

/*
 * Takes an exclusive flock() on `lock_path` (created if needed), waiting
 * for other holders. `*fd` is the lock; sm_unlock() releases it.
 */
int sm_lock(const char *lock_path, int *fd);
void sm_unlock(int fd);

/* Progress reporter for copies: called with bytes done so far. */
typedef void (*sm_copy_progress)(uint64_t done, void *payload);

/*
 * Copies everything from `in` (from offset 0 to EOF, with pread, so the
 * descriptor's own offset is untouched) to `out` at its current offset,
 * computing the SHA-256 in the same pass: each chunk is read once,
 * hashed, and written. `out` may be -1 to only hash. `*bytes` receives
 * the count.
 */
int sm_copy_hash(int in, int out, unsigned char sha256[32], uint64_t *bytes,
		 sm_copy_progress progress, void *payload);

/* SHA-256 of a whole file. */
int sm_sha256_file(const char *path, unsigned char sha256[32], uint64_t *bytes);

#endif
