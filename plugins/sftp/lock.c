/*
 * The writers' lock of an SFTP vault: the directory <root>/.skillmeat-lock,
 * created with mkdir, which the server does atomically, and holding a file
 * "owner" with the holder's host, boot id, pid, start time and a random
 * token.
 *
 * A lock is stale when its owner is a process on this machine that no
 * longer runs, when it is older than lock_timeout by the server's clock,
 * or when a waiter has seen the same owner for lock_timeout seconds.
 *
 * A recoverer first creates <lock>.break, which only one of several
 * recoverers can do. It then reads the owner again and removes the lock
 * only when that is still the owner it judged stale. While the stale lock
 * exists no writer can create a new one, so the removal never hits a live
 * lock unless its holder outlived lock_timeout. A holder checks its owner file before each step that
 * changes what readers see, so a holder whose lock was taken stops.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sftp_internal.h"

#define OWNER_MAX 1024

static double monotonic_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* Reads /proc/sys/kernel/random/boot_id, which differs between boots and machines. */
static void read_boot_id(char out[40])
{
	FILE *f = fopen("/proc/sys/kernel/random/boot_id", "re");

	out[0] = '\0';
	if (f) {
		if (!fgets(out, 40, f))
			out[0] = '\0';
		fclose(f);
	}
	out[strcspn(out, "\n ")] = '\0';
}

static char *owner_text(sftp_vault *sv)
{
	char host[256] = "", boot[40];

	if (gethostname(host, sizeof(host) - 1) != 0)
		snprintf(host, sizeof(host), "unknown");
	host[strcspn(host, " \n")] = '\0';
	read_boot_id(boot);
	return sftp_asprintf("host=%s boot=%s pid=%ld time=%lld token=%s\n", host,
			     *boot ? boot : "-", (long)getpid(), (long long)time(NULL), sv->token);
}

/* Returns the value of `key` in an owner line ("key=value ..."), copied to out. */
static int owner_field(const char *text, const char *key, char *out, size_t size)
{
	size_t key_len = strlen(key);

	for (const char *p = text; p && *p; p = strchr(p, ' '), p = p ? p + 1 : NULL) {
		if (strncmp(p, key, key_len) == 0 && p[key_len] == '=') {
			size_t n = strcspn(p + key_len + 1, " \n");

			if (n >= size)
				return 0;
			memcpy(out, p + key_len + 1, n);
			out[n] = '\0';
			return 1;
		}
	}
	return 0;
}

/* Returns 1 when the owner is a process of this boot of this machine that is gone. */
static int owner_is_dead_local(const char *text)
{
	char host[256] = "", their_host[256], boot[40], their_boot[40], pid[32];
	char *end;
	long value;

	if (!owner_field(text, "host", their_host, sizeof(their_host)) ||
	    !owner_field(text, "boot", their_boot, sizeof(their_boot)) ||
	    !owner_field(text, "pid", pid, sizeof(pid)))
		return 0;
	gethostname(host, sizeof(host) - 1);
	host[strcspn(host, " \n")] = '\0';
	read_boot_id(boot);
	if (!*boot || strcmp(host, their_host) != 0 || strcmp(boot, their_boot) != 0)
		return 0;
	value = strtol(pid, &end, 10);
	if (*end || value <= 0)
		return 0;
	return kill((pid_t)value, 0) != 0 && errno == ESRCH;
}

static char *owner_path(const char *lock_dir)
{
	return sftp_asprintf("%s/owner", lock_dir);
}

/* Reads the owner file of `lock_dir` into *out ("" when it has none yet). */
static int read_owner(sftp_vault *sv, const char *lock_dir, char **out)
{
	char *path = owner_path(lock_dir);
	size_t len;
	int rc;

	*out = NULL;
	if (!path)
		return SM_ENOMEM;
	rc = remote_read(sv, path, OWNER_MAX, out, &len);
	free(path);
	if (rc == SM_ENOTFOUND) {
		*out = strdup("");
		return *out ? 0 : sm_error_set(SM_ENOMEM, "out of memory");
	}
	return rc;
}

/* Removes a lock directory and its owner file. */
static void remove_lock_dir(sftp_vault *sv, const char *dir)
{
	char *path = owner_path(dir);

	if (path)
		remote_unlink(sv, path);
	free(path);
	libssh2_sftp_rmdir_ex(sv->sftp, dir, (unsigned int)strlen(dir));
}

/*
 * Removes the stale lock when it still has the owner `seen`. Recoverers
 * serialise on a second directory, <lock>.break, so that between the
 * check of the owner and the removal no other recoverer acts, and no new
 * lock can appear because the stale one still exists. Returns 0 also when
 * another recoverer is at work or the lock changed meanwhile.
 */
static int recover_stale(sftp_vault *sv, const char *seen, const char *why)
{
	LIBSSH2_SFTP_ATTRIBUTES attrs;
	char *breaker = sftp_asprintf("%s.break", sv->lock_dir), *owner = NULL;
	uint64_t server_now;
	int rc = 0;

	if (!breaker)
		return SM_ENOMEM;
	if (libssh2_sftp_mkdir_ex(sv->sftp, breaker, (unsigned int)strlen(breaker), 0755) != 0) {
		/* another recoverer is at work, or one was killed while it was */
		if (remote_stat(sv, breaker, &attrs) == 0 && remote_clock(sv, &server_now) == 0 &&
		    server_now >= attrs.mtime + (uint64_t)sv->lock_timeout_s)
			libssh2_sftp_rmdir_ex(sv->sftp, breaker, (unsigned int)strlen(breaker));
		goto done;
	}
	rc = read_owner(sv, sv->lock_dir, &owner);
	if (rc || strcmp(owner, seen) != 0) {
		/* released or recovered meanwhile: nothing to remove */
		goto release;
	}
	remove_lock_dir(sv, sv->lock_dir);
	seen = *seen ? seen : "an owner that never wrote its file\n";
	sftp_notify(sv, SM_LOG_WARN, "removed the stale lock of vault '%s' (%s) held by %.*s",
		    sv->config->name, why, (int)strcspn(seen, "\n"), seen);
release:
	libssh2_sftp_rmdir_ex(sv->sftp, breaker, (unsigned int)strlen(breaker));
done:
	free(owner);
	free(breaker);
	return rc == SM_ENOTFOUND ? 0 : rc;
}

/* Creates the lock directory and our owner file. SM_ECONFLICT when taken. */
static int try_create(sftp_vault *sv)
{
	LIBSSH2_SFTP_HANDLE *handle;
	char *text = NULL, *path = NULL;
	unsigned long status;
	size_t done = 0, len;
	int rc = 0;

	if (libssh2_sftp_mkdir_ex(sv->sftp, sv->lock_dir, (unsigned int)strlen(sv->lock_dir),
				  0755) != 0) {
		if (libssh2_session_last_errno(sv->session) != LIBSSH2_ERROR_SFTP_PROTOCOL)
			return sftp_fail(sv, "create lock", sv->lock_dir);
		status = libssh2_sftp_last_error(sv->sftp);
		if (status == LIBSSH2_FX_FAILURE || status == LIBSSH2_FX_FILE_ALREADY_EXISTS)
			return SM_ECONFLICT;
		return sftp_fail(sv, "create lock", sv->lock_dir);
	}
	text = owner_text(sv);
	path = owner_path(sv->lock_dir);
	if (!text || !path) {
		rc = SM_ENOMEM;
		goto done;
	}
	handle = libssh2_sftp_open_ex(sv->sftp, path, (unsigned int)strlen(path),
				      LIBSSH2_FXF_WRITE | LIBSSH2_FXF_CREAT | LIBSSH2_FXF_EXCL, 0644,
				      LIBSSH2_SFTP_OPENFILE);
	if (!handle) {
		rc = sftp_fail(sv, "create", path);
		goto done;
	}
	len = strlen(text);
	while (done < len && !rc) {
		ssize_t n = libssh2_sftp_write(handle, text + done, len - done);

		if (n < 0)
			rc = sftp_fail(sv, "write", path);
		else
			done += (size_t)n;
	}
	if (libssh2_sftp_close_handle(handle) != 0 && !rc)
		rc = sftp_fail(sv, "close", path);
done:
	if (rc) {
		remove_lock_dir(sv, sv->lock_dir);
		free(text);
	} else {
		sv->lock_owner = text;
	}
	free(path);
	return rc;
}

int lock_try(sftp_vault *sv)
{
	return try_create(sv);
}

int lock_acquire(sftp_vault *sv)
{
	double start = monotonic_seconds(), seen_since = start, last_clock = 0;
	char *seen = NULL, *owner = NULL;
	int rc;

	for (;;) {
		LIBSSH2_SFTP_ATTRIBUTES attrs;
		const char *why = NULL;
		double now;
		char reason[96];

		rc = try_create(sv);
		if (rc != SM_ECONFLICT)
			break;

		rc = remote_stat(sv, sv->lock_dir, &attrs);
		if (rc == SM_ENOTFOUND)
			continue; /* released meanwhile */
		if (rc)
			break;
		free(owner);
		rc = read_owner(sv, sv->lock_dir, &owner);
		if (rc)
			break;
		now = monotonic_seconds();
		if (!seen || strcmp(seen, owner) != 0) {
			free(seen);
			seen = strdup(owner);
			seen_since = now;
			if (!seen) {
				rc = sm_error_set(SM_ENOMEM, "out of memory");
				break;
			}
		}

		if (*owner && owner_is_dead_local(owner)) {
			why = "its process is gone";
		} else if (now - seen_since >= sv->lock_timeout_s) {
			snprintf(reason, sizeof(reason), "unchanged for %d s", sv->lock_timeout_s);
			why = reason;
		} else if (now - last_clock >= 1.0) {
			uint64_t server_now;

			last_clock = now;
			rc = remote_clock(sv, &server_now);
			if (rc)
				break;
			if (server_now >= attrs.mtime + (uint64_t)sv->lock_timeout_s) {
				snprintf(reason, sizeof(reason), "%llu s old",
					 (unsigned long long)(server_now - attrs.mtime));
				why = reason;
			}
		}
		if (why) {
			rc = recover_stale(sv, seen, why);
			if (rc)
				break;
			continue;
		}

		if (now - start >= sv->lock_wait_s) {
			rc = sm_error_set(SM_ECONFLICT, "vault '%s' is locked by %.*s; waited %d s for it. "
					  "Try again later; a lock whose writer died is removed once "
					  "it is %d s old", sv->config->name,
					  *owner ? (int)strcspn(owner, "\n") : 14,
					  *owner ? owner : "another writer", sv->lock_wait_s,
					  sv->lock_timeout_s);
			break;
		}
		sleep_ms(20 + random() % 130);
	}
	free(seen);
	free(owner);
	return rc;
}

int lock_check(sftp_vault *sv)
{
	char *owner = NULL;
	int rc;

	if (!sv->lock_owner)
		return sm_error_set(SM_ECONFLICT, "internal error: vault '%s' is not locked",
				    sv->config->name);
	rc = read_owner(sv, sv->lock_dir, &owner);
	if (rc == 0 && strcmp(owner, sv->lock_owner) != 0)
		rc = sm_error_set(SM_ECONFLICT, "lost the lock of vault '%s' to another writer that "
				  "judged it stale (lock_timeout is %d s); push again",
				  sv->config->name, sv->lock_timeout_s);
	free(owner);
	return rc;
}

void lock_release(sftp_vault *sv)
{
	if (!sv->lock_owner)
		return;
	if (sv->sftp && lock_check(sv) == 0)
		remove_lock_dir(sv, sv->lock_dir);
	free(sv->lock_owner);
	sv->lock_owner = NULL;
}
