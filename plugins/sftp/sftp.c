/*
 * The "sftp" connector: a vault in a directory on any SSH server, with the
 * layout and guarantees of the local vault.
 *
 * - data, then metadata/<id>.json, then index.json, each written to a
 *   temporary name in its directory and renamed into place;
 * - writers serialise on the lock directory <root>/.skillmeat-lock
 *   (lock.c); the index is read again under the lock before it is written;
 * - metadata/ is the truth and index.json a cache, rebuilt when missing,
 *   corrupt, older than metadata/ or naming other ids.
 *
 * OpenSSH's SFTP server (protocol v3) rejects a rename over an existing
 * file, and libssh2 1.10 cannot send OpenSSH's posix-rename extension. So
 * a push never renames over a file that readers trust. A new version has
 * no files yet, and data left by a killed push is removed first. --force
 * removes the old version (index entry, metadata, data) before it renames
 * the new files in. index.json is replaced by remove and rename under the
 * lock; a reader that looks in between finds no index and rebuilds it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <openssl/evp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <skillmeat/plugin.h>

#include "sftp_internal.h"

#define BUNDLE_SUFFIX ".skillmeat-pack"
/* Largest metadata/<id>.json and index.json read, as the local vault allows. */
#define RECORD_MAX (1024u * 1024)
#define INDEX_MAX (512u * 1024 * 1024)
/* Transfer buffer: libssh2 splits a large write into pipelined SFTP requests. */
#define IO_BUFFER (4u * 1024 * 1024)
/* Temporary files untouched this long are left over from a killed writer. */
#define STALE_TEMP_SECONDS 3600
/* A pull that sees the bundle replaced this many times in a row fails. */
#define PULL_ATTEMPTS 5

SM_PLUGIN_DECLARE();

static char *data_path(const sftp_vault *sv, const char *id)
{
	return sftp_asprintf("%s/bundles/%s" BUNDLE_SUFFIX, sv->root, id);
}

static char *metadata_path(const sftp_vault *sv, const char *id)
{
	return sftp_asprintf("%s/metadata/%s.json", sv->root, id);
}

static void report_progress(const sftp_vault *sv, uint64_t done, uint64_t total)
{
	if (sv->callbacks && sv->callbacks->progress)
		sv->callbacks->progress(done, total, sv->callbacks->payload);
}

static void hex_digest(const unsigned char digest[32], char out[65])
{
	static const char digits[] = "0123456789abcdef";

	for (int i = 0; i < 32; i++) {
		out[2 * i] = digits[digest[i] >> 4];
		out[2 * i + 1] = digits[digest[i] & 15];
	}
	out[64] = '\0';
}

/* ---- records ---- */

/* Sets metadata[key] = value in a record (the library frees it with free()). */
static int record_metadata_set(sm_record *record, const char *key, const char *value)
{
	char *copy = strdup(value);
	sm_kv *grown;

	if (!copy)
		return sm_error_set(SM_ENOMEM, "out of memory");
	for (size_t i = 0; i < record->nmetadata; i++) {
		if (strcmp(record->metadata[i].key, key) == 0) {
			free(record->metadata[i].value);
			record->metadata[i].value = copy;
			return 0;
		}
	}
	grown = realloc(record->metadata, (record->nmetadata + 1) * sizeof(*grown));
	if (!grown) {
		free(copy);
		return sm_error_set(SM_ENOMEM, "out of memory");
	}
	record->metadata = grown;
	grown[record->nmetadata].key = strdup(key);
	grown[record->nmetadata].value = copy;
	if (!grown[record->nmetadata].key) {
		free(copy);
		return sm_error_set(SM_ENOMEM, "out of memory");
	}
	record->nmetadata++;
	return 0;
}

/* Copies a record through its JSON text, the only copy the public API offers. */
static int record_copy(const sm_record *record, sm_record **out)
{
	char *text = NULL;
	int rc = sm_record_to_text(record, &text);

	*out = NULL;
	if (!rc)
		rc = sm_record_from_text(text, strlen(text), record->bundle_id, out);
	free(text);
	return rc;
}

static int compare_records(const void *a, const void *b)
{
	return strcmp((*(sm_record *const *)a)->bundle_id, (*(sm_record *const *)b)->bundle_id);
}

/* Returns the position of `id` in a sorted list, or -1. */
static long list_find(const sm_record_list *list, const char *id)
{
	size_t lo = 0, hi = list->count;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int cmp = strcmp(list->items[mid]->bundle_id, id);

		if (cmp == 0)
			return (long)mid;
		if (cmp < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

static void list_remove(sm_record_list *list, const char *id)
{
	long at = list_find(list, id);

	if (at < 0)
		return;
	sm_record_free(list->items[at]);
	memmove(&list->items[at], &list->items[at + 1],
		(list->count - (size_t)at - 1) * sizeof(*list->items));
	list->count--;
}

/* Puts `record` (taken over, also on failure) into the sorted list. */
static int list_put(sm_record_list *list, sm_record *record)
{
	int rc;

	list_remove(list, record->bundle_id);
	rc = sm_record_list_append(list, record);
	if (!rc && list->count > 1)
		qsort(list->items, list->count, sizeof(*list->items), compare_records);
	return rc;
}

/* Reads metadata/<id>.json; SM_ENOTFOUND with a message when not stored. */
static int read_metadata(sftp_vault *sv, const char *id, sm_record **out, char **text_out)
{
	char *path = metadata_path(sv, id), *text = NULL;
	size_t len;
	int rc;

	*out = NULL;
	if (!path)
		return SM_ENOMEM;
	rc = remote_read(sv, path, RECORD_MAX, &text, &len);
	if (rc == SM_ENOTFOUND) {
		rc = sm_error_set(SM_ENOTFOUND, "bundle '%s' not found in vault '%s'", id,
				  sv->config->name);
		goto done;
	}
	if (rc)
		goto done;
	rc = sm_record_from_text(text, len, path, out);
	if (rc) {
		rc = sm_error_wrap(SM_EINTEGRITY, "metadata of bundle '%s' in vault '%s' is damaged",
				   id, sv->config->name);
		goto done;
	}
	if (strcmp((*out)->bundle_id, id) != 0) {
		rc = sm_error_set(SM_EINTEGRITY, "metadata file of '%s' in vault '%s' names bundle '%s'",
				  id, sv->config->name, (*out)->bundle_id);
		sm_record_free(*out);
		*out = NULL;
	}
done:
	if (!rc && text_out) {
		*text_out = text;
		text = NULL;
	}
	free(text);
	free(path);
	return rc;
}

/* ---- the index ---- */

typedef struct id_set {
	char **ids;
	size_t count;
	size_t cap;
} id_set;

static void id_set_release(id_set *set)
{
	for (size_t i = 0; i < set->count; i++)
		free(set->ids[i]);
	free(set->ids);
	set->ids = NULL;
	set->count = set->cap = 0;
}

static int collect_id(sftp_vault *sv, const char *name, const LIBSSH2_SFTP_ATTRIBUTES *attrs,
		      void *payload)
{
	id_set *set = payload;
	size_t len = strlen(name);
	char *id;

	if (len <= 5 || strcmp(name + len - 5, ".json") != 0)
		return 0;
	id = strndup(name, len - 5);
	if (!id)
		return sm_error_set(SM_ENOMEM, "out of memory");
	if (!sm_bundle_id_valid(id)) {
		free(id);
		return 0;
	}
	if (set->count == set->cap) {
		char **grown = realloc(set->ids, (set->cap = set->cap ? set->cap * 2 : 64) *
				       sizeof(*grown));

		if (!grown) {
			free(id);
			return sm_error_set(SM_ENOMEM, "out of memory");
		}
		set->ids = grown;
	}
	set->ids[set->count++] = id;
	return 0;
}

static int compare_strings(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Lists the ids that have a metadata file, sorted. A missing directory is empty. */
static int list_metadata_ids(sftp_vault *sv, id_set *set)
{
	char *dir = sftp_asprintf("%s/metadata", sv->root);
	int rc;

	if (!dir)
		return SM_ENOMEM;
	rc = remote_list_dir(sv, dir, collect_id, set);
	free(dir);
	if (rc == SM_ENOTFOUND)
		rc = 0;
	if (rc)
		id_set_release(set);
	else if (set->count > 1)
		qsort(set->ids, set->count, sizeof(*set->ids), compare_strings);
	return rc;
}

/*
 * Loads index.json when it is a faithful cache of metadata/: it parses,
 * its ids equal the metadata files' ids and it is not older than the
 * metadata directory. Leaves `out` empty and sets *why otherwise.
 */
static int load_index_if_fresh(sftp_vault *sv, const id_set *ids, sm_record_list *out,
			       const char **why, int *loaded)
{
	LIBSSH2_SFTP_ATTRIBUTES index_attrs, dir_attrs;
	char *index_path = sftp_asprintf("%s/index.json", sv->root);
	char *dir = sftp_asprintf("%s/metadata", sv->root), *text = NULL;
	size_t len;
	int rc;

	*loaded = 0;
	*why = NULL;
	if (!index_path || !dir) {
		rc = SM_ENOMEM;
		goto done;
	}
	rc = remote_stat(sv, index_path, &index_attrs);
	if (rc == SM_ENOTFOUND) {
		rc = 0;
		*why = "missing";
		*loaded = ids->count == 0;
		goto done;
	}
	if (rc)
		goto done;
	rc = remote_read(sv, index_path, INDEX_MAX, &text, &len);
	if (rc == SM_ENOTFOUND || rc == SM_EINVALID) {
		*why = rc == SM_EINVALID ? "too large" : "missing";
		rc = 0;
		goto done;
	}
	if (rc)
		goto done;
	if (sm_index_from_text(text, len, out) != 0) {
		*why = "corrupt";
		goto done;
	}
	if (out->count != ids->count) {
		*why = "stale";
		goto stale;
	}
	for (size_t i = 0; i < ids->count; i++) {
		if (strcmp(out->items[i]->bundle_id, ids->ids[i]) != 0) {
			*why = "stale";
			goto stale;
		}
	}
	/* SFTP v3 times have whole seconds, so equal times count as fresh */
	if (remote_stat(sv, dir, &dir_attrs) == 0 && index_attrs.mtime < dir_attrs.mtime) {
		*why = "older than the metadata files";
		goto stale;
	}
	*loaded = 1;
	goto done;
stale:
	sm_record_list_release(out);
done:
	free(text);
	free(index_path);
	free(dir);
	return rc;
}

/* Builds the index from every readable metadata file. */
static int rebuild_index(sftp_vault *sv, const id_set *ids, sm_record_list *out)
{
	for (size_t i = 0; i < ids->count; i++) {
		sm_record *record = NULL;
		int rc = read_metadata(sv, ids->ids[i], &record, NULL);

		if (rc == SM_ENOTFOUND)
			continue; /* deleted meanwhile */
		if (rc == SM_ENOMEM || rc == SM_ENETWORK) {
			sm_record_list_release(out);
			return rc;
		}
		if (rc) {
			sftp_notify(sv, SM_LOG_WARN, "skipping bundle '%s' in vault '%s': %s",
				    ids->ids[i], sv->config->name, sm_error_message());
			continue;
		}
		rc = sm_record_list_append(out, record);
		if (rc) {
			sm_record_list_release(out);
			return rc;
		}
	}
	return 0;
}

/*
 * Replaces index.json: a temporary file, then remove and rename, because
 * the server's rename does not replace. The caller holds the lock.
 */
static int write_index(sftp_vault *sv, const sm_record_list *list)
{
	char *dest = sftp_asprintf("%s/index.json", sv->root), *text = NULL, *tmp = NULL;
	int rc;

	if (!dest)
		return SM_ENOMEM;
	rc = sm_index_to_text(list, &text);
	if (!rc)
		rc = remote_write_temp(sv, dest, text, strlen(text), &tmp, NULL);
	if (!rc)
		rc = lock_check(sv);
	if (!rc) {
		rc = remote_rename(sv, tmp, dest);
		if (rc && rc != SM_ENOTFOUND) {
			rc = remote_unlink(sv, dest);
			if (!rc || rc == SM_ENOTFOUND)
				rc = remote_rename(sv, tmp, dest);
		}
	}
	if (rc && tmp)
		remote_unlink(sv, tmp);
	free(tmp);
	free(text);
	free(dest);
	return rc;
}

/*
 * Rejects rebuilding the index when metadata/ is gone but index.json is
 * not, since the rebuild would replace the only remaining list with an
 * empty one.
 */
static int check_metadata_dir(sftp_vault *sv, const id_set *ids)
{
	LIBSSH2_SFTP_ATTRIBUTES attrs;
	char *dir = sftp_asprintf("%s/metadata", sv->root);
	char *index_path = sftp_asprintf("%s/index.json", sv->root);
	int rc = 0;

	if (!dir || !index_path) {
		rc = SM_ENOMEM;
		goto done;
	}
	if (ids->count || remote_stat(sv, dir, &attrs) != SM_ENOTFOUND)
		goto done;
	if (remote_stat(sv, index_path, &attrs) == 0 && attrs.filesize > 2)
		rc = sm_error_set(SM_EINTEGRITY, "vault '%s' has an index.json but no metadata "
				  "directory '%s' on '%s'; restore it from a backup, since the metadata "
				  "files are the record of what the vault holds", sv->config->name,
				  dir, sv->host);
done:
	free(dir);
	free(index_path);
	return rc;
}

/*
 * Returns the current index: the cached file when fresh, else rebuilt from
 * metadata/. With `locked` the caller holds the lock and a rebuilt index is
 * written back; a reader writes it back only when the lock is free.
 */
static int current_index(sftp_vault *sv, int locked, sm_record_list *out)
{
	id_set ids = { 0 };
	const char *why;
	int rc, loaded, took_lock = 0;

	out->items = NULL;
	out->count = 0;
	rc = list_metadata_ids(sv, &ids);
	if (!rc)
		rc = load_index_if_fresh(sv, &ids, out, &why, &loaded);
	if (rc || loaded)
		goto done;
	if ((rc = check_metadata_dir(sv, &ids)) != 0)
		goto done;
	rc = rebuild_index(sv, &ids, out);
	if (rc)
		goto done;
	sftp_notify(sv, SM_LOG_WARN, "index.json of vault '%s' was %s; rebuilt it from %zu "
		    "metadata files", sv->config->name, why, out->count);

	if (!(sv->parent.caps & SM_VAULT_CAN_WRITE))
		goto done;
	if (!locked) {
		if (lock_try(sv) != 0) {
			sftp_notify(sv, SM_LOG_DEBUG, "not writing the rebuilt index: the vault is locked");
			goto done;
		}
		took_lock = 1;
		/* a writer may have changed metadata/ before we locked */
		sm_record_list_release(out);
		id_set_release(&ids);
		rc = list_metadata_ids(sv, &ids);
		if (!rc)
			rc = rebuild_index(sv, &ids, out);
		if (rc)
			goto done;
	}
	if (write_index(sv, out) != 0)
		sftp_notify(sv, SM_LOG_DEBUG, "not writing the rebuilt index: %s", sm_error_message());
done:
	if (took_lock)
		lock_release(sv);
	id_set_release(&ids);
	if (rc)
		sm_record_list_release(out);
	return rc;
}

/* ---- push ---- */

/* Hashes a local file from offset 0 with pread(). */
static int hash_local(int fd, unsigned char digest[32], uint64_t *size)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	char *buf = malloc(IO_BUFFER);
	uint64_t offset = 0;
	int rc = 0;

	if (!ctx || !buf || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL)) {
		rc = sm_error_set(SM_ENOMEM, "out of memory");
		goto done;
	}
	for (;;) {
		ssize_t n = pread(fd, buf, IO_BUFFER, (off_t)offset);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = sm_error_set_errno(SM_EIO, errno, "cannot read the bundle");
			goto done;
		}
		if (n == 0)
			break;
		EVP_DigestUpdate(ctx, buf, (size_t)n);
		offset += (uint64_t)n;
	}
	EVP_DigestFinal_ex(ctx, digest, NULL);
	*size = offset;
done:
	EVP_MD_CTX_free(ctx);
	free(buf);
	return rc;
}

/*
 * Uploads the bundle to the temporary file `tmp`, hashing what it sends.
 * The buffer is refilled while earlier writes still wait for their
 * acknowledgements, so the SFTP requests stay pipelined. libssh2 expects
 * each call to start with the bytes it has not yet confirmed. The worker
 * hashes each read while libssh2 sends it, so those bytes stay in place
 * until the worker is done with them.
 */
static int upload(sftp_vault *sv, int fd, const char *tmp, unsigned char digest[32],
		  uint64_t *size, uint64_t *server_time)
{
	LIBSSH2_SFTP_HANDLE *handle = NULL;
	LIBSSH2_SFTP_ATTRIBUTES attrs;
	sftp_worker *hasher = NULL;
	size_t cap = 2 * IO_BUFFER, start = 0, pending = 0;
	char *buf = malloc(cap);
	uint64_t read_offset = 0, sent = 0, total = 0;
	struct stat st;
	int rc = 0, eof = 0;

	if (!buf) {
		rc = sm_error_set(SM_ENOMEM, "out of memory");
		goto done;
	}
	if ((rc = sftp_worker_start(&hasher, -1)) != 0)
		goto done;
	if (fstat(fd, &st) == 0)
		total = (uint64_t)st.st_size;
	handle = libssh2_sftp_open_ex(sv->sftp, tmp, (unsigned int)strlen(tmp),
				      LIBSSH2_FXF_WRITE | LIBSSH2_FXF_CREAT | LIBSSH2_FXF_EXCL, 0644,
				      LIBSSH2_SFTP_OPENFILE);
	if (!handle) {
		rc = sftp_fail(sv, "create", tmp);
		goto done;
	}
	while (!eof || pending) {
		ssize_t n;

		if (!eof && pending < IO_BUFFER) {
			if ((rc = sftp_worker_wait(hasher)) != 0)
				goto done;
			memmove(buf, buf + start, pending);
			start = 0;
			n = pread(fd, buf + pending, cap - pending, (off_t)read_offset);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0) {
				rc = sm_error_set_errno(SM_EIO, errno, "cannot read the bundle");
				goto done;
			}
			if (n == 0)
				eof = 1;
			if ((rc = sftp_worker_submit(hasher, buf + pending, (size_t)n)) != 0)
				goto done;
			pending += (size_t)n;
			read_offset += (uint64_t)n;
			if (!pending)
				break;
		}
		n = libssh2_sftp_write(handle, buf + start, pending);
		if (n < 0) {
			rc = sftp_fail(sv, "write", tmp);
			goto done;
		}
		start += (size_t)n;
		pending -= (size_t)n;
		sent += (uint64_t)n;
		report_progress(sv, sent, total);
	}
	if ((rc = sftp_worker_finish(hasher, digest)) != 0)
		goto done;
	*size = read_offset;
	libssh2_sftp_fsync(handle);
	if (libssh2_sftp_fstat(handle, &attrs) != 0) {
		rc = sftp_fail(sv, "stat", tmp);
		goto done;
	}
	*server_time = attrs.mtime;
done:
	if (handle && libssh2_sftp_close_handle(handle) != 0 && !rc)
		rc = sftp_fail(sv, "close", tmp);
	/* before the buffer goes: the worker may still hash from it */
	sftp_worker_free(hasher);
	free(buf);
	return rc;
}

typedef struct temp_sweep {
	const char *dir;
	uint64_t older_than;
	int removed;
} temp_sweep;

static int remove_stale_temp(sftp_vault *sv, const char *name, const LIBSSH2_SFTP_ATTRIBUTES *attrs,
			     void *payload)
{
	temp_sweep *sweep = payload;
	char *path;

	if (name[0] != '.' || !strstr(name, ".tmp-") || !LIBSSH2_SFTP_S_ISREG(attrs->permissions) ||
	    attrs->mtime >= sweep->older_than)
		return 0;
	path = sftp_asprintf("%s/%s", sweep->dir, name);
	if (path && remote_unlink(sv, path) == 0)
		sweep->removed++;
	free(path);
	return 0;
}

/* Removes temporary files that killed pushes left, by the server's clock. */
static void remove_stale_temps(sftp_vault *sv, uint64_t server_now)
{
	static const char *const subdirs[] = { "", "/bundles", "/metadata" };

	for (size_t i = 0; i < sizeof(subdirs) / sizeof(subdirs[0]); i++) {
		char *dir = sftp_asprintf("%s%s", sv->root, subdirs[i]);
		temp_sweep sweep = { dir, server_now - STALE_TEMP_SECONDS, 0 };

		if (!dir)
			return;
		if (server_now > STALE_TEMP_SECONDS)
			remote_list_dir(sv, dir, remove_stale_temp, &sweep);
		if (sweep.removed)
			sftp_notify(sv, SM_LOG_DEBUG, "removed %d abandoned temporary file%s from '%s'",
				    sweep.removed, sweep.removed == 1 ? "" : "s", dir);
		free(dir);
	}
}

/*
 * Decides about an id that is already stored: *identical when the stored
 * bytes have the same SHA-256, SM_EEXISTS when they differ without force.
 */
static int check_existing(sftp_vault *sv, sm_record *record, const char *sha_hex, int force,
			  int *exists, int *identical)
{
	sm_record *old = NULL;
	const char *old_sha;
	int rc;

	*exists = *identical = 0;
	rc = read_metadata(sv, record->bundle_id, &old, NULL);
	if (rc == SM_ENOTFOUND)
		return 0;
	if (rc && !force)
		return rc;
	*exists = 1;
	old_sha = old ? sm_record_metadata_get(old, "sha256") : NULL;
	*identical = old_sha && strcmp(old_sha, sha_hex) == 0;
	return sm_push_settle_existing(record, old, *identical, force, sv->config->name);
}

/* Fills uploaded_at, vault_path, size and metadata "sha256" of a pushed record. */
static int stamp_record(sftp_vault *sv, sm_record *record, const char *dest, const char *sha_hex,
			uint64_t size)
{
	struct timeval tv;
	struct tm tm;
	char now[64];

	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	snprintf(now, sizeof(now), "%04d-%02d-%02dT%02d:%02d:%02d.%06ld", tm.tm_year + 1900,
		 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (long)tv.tv_usec);
	free(record->uploaded_at);
	free(record->vault_path);
	record->uploaded_at = strdup(now);
	record->vault_path = strdup(dest);
	record->size_bytes = size;
	if (!record->uploaded_at || !record->vault_path)
		return sm_error_set(SM_ENOMEM, "out of memory");
	return record_metadata_set(record, "sha256", sha_hex);
}

/*
 * Hashes the local bundle when its id is stored already, so a push that
 * can only end in SM_EEXISTS or "unchanged" skips the upload.
 */
static int precheck_existing(sftp_vault *sv, int fd, sm_record *record, int force,
			     int *identical)
{
	LIBSSH2_SFTP_ATTRIBUTES attrs;
	char *path = metadata_path(sv, record->bundle_id);
	unsigned char digest[32];
	char hex[65];
	uint64_t size;
	int rc, exists;

	*identical = 0;
	if (!path)
		return SM_ENOMEM;
	rc = remote_stat(sv, path, &attrs);
	free(path);
	if (rc == SM_ENOTFOUND || force)
		return 0;
	if (rc)
		return rc;
	rc = hash_local(fd, digest, &size);
	if (rc)
		return rc;
	hex_digest(digest, hex);
	return check_existing(sv, record, hex, 0, &exists, identical);
}

/* Removes the stored version of `id` before --force writes the new one. */
static int remove_old_version(sftp_vault *sv, sm_record_list *index, const char *id,
			      const char *meta, const char *dest)
{
	int rc;

	/* unlist first, so no reader is sent to files that are about to go */
	if (list_find(index, id) >= 0) {
		list_remove(index, id);
		if ((rc = write_index(sv, index)) != 0)
			return rc;
	}
	if ((rc = lock_check(sv)) != 0)
		return rc;
	rc = remote_unlink(sv, meta);
	if (rc && rc != SM_ENOTFOUND)
		return rc;
	rc = remote_unlink(sv, dest);
	return rc == SM_ENOTFOUND ? 0 : rc;
}

static int sftp_push(sm_vault *self, int fd, sm_record *record, sm_push_opts *opts)
{
	sftp_vault *sv = (sftp_vault *)self;
	char *dest = NULL, *meta = NULL, *tmp = NULL, *meta_tmp = NULL, *text = NULL, *dir = NULL;
	sm_record_list index = { 0 };
	sm_record *copy = NULL;
	unsigned char digest[32];
	char sha_hex[65];
	uint64_t size = 0, server_now = 0;
	int rc, exists, identical;

	dest = data_path(sv, record->bundle_id);
	meta = metadata_path(sv, record->bundle_id);
	tmp = dest ? remote_temp_name(sv, dest) : NULL;
	if (!dest || !meta || !tmp) {
		rc = SM_ENOMEM;
		goto done;
	}
	if ((rc = precheck_existing(sv, fd, record, opts->force, &identical)) != 0)
		goto done;
	if (identical) {
		/* still wait for the library's verification of the local file */
		if (opts->before_commit)
			rc = opts->before_commit(opts->payload);
		opts->unchanged = !rc;
		goto done;
	}
	dir = sftp_asprintf("%s/bundles", sv->root);
	if (!dir || (rc = remote_mkdir(sv, dir)) != 0)
		goto done;
	free(dir);
	dir = sftp_asprintf("%s/metadata", sv->root);
	if (!dir || (rc = remote_mkdir(sv, dir)) != 0)
		goto done;

	/* upload outside the lock: the transfer is the slow part */
	rc = upload(sv, fd, tmp, digest, &size, &server_now);
	if (rc)
		goto done;
	hex_digest(digest, sha_hex);
	if ((rc = stamp_record(sv, record, dest, sha_hex, size)) != 0)
		goto done;
	if (opts->before_commit && (rc = opts->before_commit(opts->payload)) != 0)
		goto done;

	rc = lock_acquire(sv);
	if (rc)
		goto done;
	remove_stale_temps(sv, server_now);
	rc = check_existing(sv, record, sha_hex, opts->force, &exists, &identical);
	if (rc)
		goto done;
	/* --force always rewrites, which also repairs data damaged in place */
	if (identical && !opts->force) {
		opts->unchanged = 1;
		goto done;
	}
	/* read the index under the lock, before metadata/ changes */
	rc = current_index(sv, 1, &index);
	if (rc)
		goto done;
	if (exists) {
		rc = remove_old_version(sv, &index, record->bundle_id, meta, dest);
	} else {
		/* data without metadata is what a killed push left, and no reader lists it */
		rc = remote_unlink(sv, dest);
		rc = rc == SM_ENOTFOUND ? 0 : rc;
	}
	if (rc)
		goto done;

	/* data first, then metadata: a listed bundle always has its data */
	if ((rc = sm_record_to_text(record, &text)) != 0 ||
	    (rc = remote_write_temp(sv, meta, text, strlen(text), &meta_tmp, NULL)) != 0 ||
	    (rc = lock_check(sv)) != 0 ||
	    (rc = remote_rename(sv, tmp, dest)) != 0)
		goto done;
	free(tmp);
	tmp = NULL;
	if ((rc = remote_rename(sv, meta_tmp, meta)) != 0)
		goto done;
	free(meta_tmp);
	meta_tmp = NULL;

	if ((rc = record_copy(record, &copy)) != 0 || (rc = list_put(&index, copy)) != 0)
		goto done;
	rc = write_index(sv, &index);
done:
	if (rc) {
		/* the clean-up must not replace the message of the failure */
		char message[2048];

		snprintf(message, sizeof(message), "%s", sm_error_message());
		lock_release(sv);
		if (tmp)
			remote_unlink(sv, tmp);
		if (meta_tmp)
			remote_unlink(sv, meta_tmp);
		sm_error_set(rc, "%s", message);
	} else {
		lock_release(sv);
	}
	sm_record_list_release(&index);
	free(dest);
	free(meta);
	free(tmp);
	free(meta_tmp);
	free(text);
	free(dir);
	return rc;
}

/* ---- pull, list, delete ---- */

/*
 * Streams the data of `id` to `fd` once, hashing it. libssh2 reads into
 * one buffer while the worker writes and hashes the other, strictly in
 * order from offset 0. *changed is set when
 * the check fails and the metadata file, read again, differs from the one
 * read first, because a --force push replaced the bundle meanwhile. The
 * caller then retries.
 */
static int pull_once(sftp_vault *sv, const char *id, int fd, sm_record **out, int *changed)
{
	LIBSSH2_SFTP_HANDLE *handle = NULL;
	LIBSSH2_SFTP_ATTRIBUTES attrs;
	sftp_worker *writer = NULL;
	sm_pull_watch *watch = NULL;
	sm_record *record = NULL, *again = NULL;
	char *path = NULL, *meta_text = NULL, *again_text = NULL, *bufs[2] = { NULL, NULL }, hex[65];
	unsigned char digest[32];
	uint64_t size = 0, total = 0;
	const char *expected;
	int rc, current = 0;

	*out = NULL;
	*changed = 0;
	rc = read_metadata(sv, id, &record, &meta_text);
	if (rc)
		return rc;
	path = data_path(sv, id);
	bufs[0] = malloc(IO_BUFFER);
	bufs[1] = malloc(IO_BUFFER);
	if (!path || !bufs[0] || !bufs[1]) {
		rc = sm_error_set(SM_ENOMEM, "out of memory");
		goto done;
	}
	rc = remote_check_file(sv, path);
	if (rc == SM_ENOTFOUND) {
		rc = sm_error_set(SM_EINTEGRITY, "data of bundle '%s' is missing from vault '%s' "
				  "('%s')", id, sv->config->name, path);
		goto check_changed;
	}
	if (rc)
		goto check_changed;
	handle = libssh2_sftp_open_ex(sv->sftp, path, (unsigned int)strlen(path), LIBSSH2_FXF_READ,
				      0, LIBSSH2_SFTP_OPENFILE);
	if (!handle) {
		rc = sftp_fail(sv, "open", path);
		if (rc == SM_ENOTFOUND)
			rc = sm_error_set(SM_EINTEGRITY, "data of bundle '%s' is missing from vault '%s' "
					  "('%s')", id, sv->config->name, path);
		goto check_changed;
	}
	if (libssh2_sftp_fstat(handle, &attrs) == 0 && (attrs.flags & LIBSSH2_SFTP_ATTR_SIZE))
		total = attrs.filesize;
	if ((rc = sftp_worker_start(&writer, fd)) != 0)
		goto done;
	/* with the watch, the library hashes the file while this thread reads */
	watch = sm_pull_watch_take();
	sftp_worker_watch(writer, watch);
	for (;;) {
		/* libssh2 sizes its read-ahead by the buffer, so every call gets a whole one */
		ssize_t n = libssh2_sftp_read(handle, bufs[current], IO_BUFFER);

		if (n < 0) {
			rc = sftp_fail(sv, "read", path);
			goto done;
		}
		if (n == 0)
			break;
		size += (uint64_t)n;
		/* a file longer than its record is refused before the excess is written */
		if (record->size_bytes && size > record->size_bytes)
			break;
		if ((rc = sftp_worker_submit(writer, bufs[current], (size_t)n)) != 0)
			goto done;
		current = !current;
		report_progress(sv, size, total);
	}
	if ((rc = sftp_worker_finish(writer, digest)) != 0)
		goto done;
	hex_digest(digest, hex);
	expected = watch ? NULL : sm_record_metadata_get(record, "sha256");
	if (record->size_bytes && size != record->size_bytes)
		rc = sm_error_set(SM_EINTEGRITY, "bundle '%s' in vault '%s' is corrupt: it has %s%llu "
				  "bytes, its metadata says %llu", id, sv->config->name,
				  size > record->size_bytes ? "at least " : "",
				  (unsigned long long)size, (unsigned long long)record->size_bytes);
	else if (expected && strcmp(expected, hex) != 0)
		rc = sm_error_set(SM_EINTEGRITY, "bundle '%s' in vault '%s' is corrupt: SHA-256 %s, "
				  "its metadata says %s", id, sv->config->name, hex, expected);
	if (!rc) {
		*out = record;
		record = NULL;
		goto done;
	}
check_changed:
	if (rc == SM_EINTEGRITY) {
		char message[1024];
		int again_rc;

		snprintf(message, sizeof(message), "%s", sm_error_message());
		again_rc = read_metadata(sv, id, &again, &again_text);
		*changed = again_rc == SM_ENOTFOUND || (again_rc == 0 && strcmp(again_text, meta_text) != 0);
		sm_error_set(SM_EINTEGRITY, "%s", message);
	}
done:
	if (handle)
		libssh2_sftp_close_handle(handle);
	/* before the buffers go: the worker may still write from one */
	sftp_worker_free(writer);
	sm_record_free(record);
	sm_record_free(again);
	free(again_text);
	free(meta_text);
	free(path);
	free(bufs[0]);
	free(bufs[1]);
	return rc;
}

static int sftp_pull(sm_vault *self, const char *bundle_id, int fd, sm_record **out)
{
	sftp_vault *sv = (sftp_vault *)self;
	int rc = 0, changed = 0;

	for (int attempt = 0; attempt < PULL_ATTEMPTS; attempt++) {
		/*
		 * NOTE: this retry is the only place that writes `fd` again. It
		 * truncates it to 0 bytes first, after a --force push replaced
		 * the bundle while it was read. The pull watch flags the write at
		 * offset 0, so the library reads the file again.
		 */
		if (attempt && (ftruncate(fd, 0) != 0 || lseek(fd, 0, SEEK_SET) != 0))
			return sm_error_set_errno(SM_EIO, errno, "cannot rewind the output file");
		rc = pull_once(sv, bundle_id, fd, out, &changed);
		if (rc != SM_EINTEGRITY || !changed)
			break;
		sftp_notify(sv, SM_LOG_DEBUG, "bundle '%s' changed while it was read; reading it again",
			    bundle_id);
	}
	return rc;
}

static int sftp_list(sm_vault *self, const sm_list_filter *filter, sm_record_list *out)
{
	sftp_vault *sv = (sftp_vault *)self;
	sm_record_list index = { 0 };
	int rc;

	out->items = NULL;
	out->count = 0;
	rc = current_index(sv, 0, &index);
	if (rc)
		return rc;
	for (size_t i = 0; i < index.count; i++) {
		if (!sm_list_filter_match(filter, index.items[i]))
			continue;
		rc = sm_record_list_append(out, index.items[i]);
		index.items[i] = NULL;
		if (rc)
			break;
	}
	for (size_t i = 0; i < index.count; i++)
		sm_record_free(index.items[i]);
	free(index.items);
	if (rc)
		sm_record_list_release(out);
	return rc;
}

static int sftp_exists(sm_vault *self, const char *bundle_id, int *out)
{
	sftp_vault *sv = (sftp_vault *)self;
	LIBSSH2_SFTP_ATTRIBUTES attrs;
	char *path = metadata_path(sv, bundle_id);
	int rc;

	*out = 0;
	if (!path)
		return SM_ENOMEM;
	rc = remote_stat(sv, path, &attrs);
	free(path);
	if (rc == SM_ENOTFOUND)
		return 0;
	*out = rc == 0;
	return rc;
}

static int sftp_get_metadata(sm_vault *self, const char *bundle_id, sm_record **out)
{
	return read_metadata((sftp_vault *)self, bundle_id, out, NULL);
}

static int sftp_delete(sm_vault *self, const char *bundle_id)
{
	sftp_vault *sv = (sftp_vault *)self;
	char *meta = metadata_path(sv, bundle_id), *dest = data_path(sv, bundle_id);
	sm_record_list index = { 0 };
	int rc;

	if (!meta || !dest) {
		rc = SM_ENOMEM;
		goto done;
	}
	rc = lock_acquire(sv);
	if (rc)
		goto done;
	rc = current_index(sv, 1, &index);
	if (rc)
		goto done;
	/* metadata first: from then on the bundle is not listed */
	rc = remote_unlink(sv, meta);
	if (rc == SM_ENOTFOUND)
		rc = sm_error_set(SM_ENOTFOUND, "bundle '%s' not found in vault '%s'", bundle_id,
				  sv->config->name);
	if (rc)
		goto done;
	if (list_find(&index, bundle_id) >= 0) {
		list_remove(&index, bundle_id);
		if ((rc = write_index(sv, &index)) != 0)
			goto done;
	}
	rc = remote_unlink(sv, dest);
	if (rc == SM_ENOTFOUND)
		rc = 0;
done:
	if (rc) {
		char message[2048];

		snprintf(message, sizeof(message), "%s", sm_error_message());
		lock_release(sv);
		sm_error_set(rc, "%s", message);
	} else {
		lock_release(sv);
	}
	sm_record_list_release(&index);
	free(meta);
	free(dest);
	return rc;
}

/* ---- configuration and life cycle ---- */

static int sftp_open(sm_vault *self)
{
	sftp_vault *sv = (sftp_vault *)self;
	LIBSSH2_SFTP_ATTRIBUTES attrs;
	int rc = sftp_connect(sv);

	if (rc)
		return rc;
	rc = remote_stat(sv, sv->root, &attrs);
	if (rc == SM_ENOTFOUND)
		return sm_error_set(SM_ENOTFOUND, "directory '%s' of vault '%s' does not exist on '%s'; "
				    "create it there (sftp -P %d %s then mkdir) or fix the location",
				    sv->root, sv->config->name, sv->host, sv->port, sv->host);
	if (rc)
		return rc;
	if (!LIBSSH2_SFTP_S_ISDIR(attrs.permissions))
		return sm_error_set(SM_EINVALID, "'%s' of vault '%s' on '%s' is not a directory",
				    sv->root, sv->config->name, sv->host);
	return 0;
}

static void sftp_close(sm_vault *self)
{
	sftp_vault *sv = (sftp_vault *)self;

	if (!sv)
		return;
	lock_release(sv);
	sftp_disconnect(sv);
	free(sv->user);
	free(sv->host);
	free(sv->root);
	free(sv->known_hosts);
	free(sv->lock_dir);
	free(sv);
}

/* Parses a whole number setting within [min, max]; `fallback` when unset. */
static int int_setting(const sm_vault_config *config, const char *key, int fallback, int min,
		       int max, int *out)
{
	const char *value = sm_vault_config_get(config, key);
	char *end;
	long n;

	*out = fallback;
	if (!value)
		return 0;
	errno = 0;
	n = strtol(value, &end, 10);
	if (errno || end == value || *end || n < min || n > max)
		return sm_error_set(SM_EINVALID, "invalid %s '%s' for vault '%s': use a whole number "
				    "of seconds from %d to %d", key, value, config->name, min, max);
	*out = (int)n;
	return 0;
}

/* Returns 1 when `text` contains a byte below 0x20 or 0x7f. */
static int has_control_chars(const char *text)
{
	for (const unsigned char *p = (const unsigned char *)text; *p; p++)
		if (*p < 0x20 || *p == 0x7f)
			return 1;
	return 0;
}

/* Parses sftp://[user@]host[:port]/path into the vault. */
static int parse_location(sftp_vault *sv, const char *location)
{
	const char *p = location + strlen("sftp://"), *at, *slash, *host_end, *port_start = NULL;
	const char *name = sv->config->name;
	size_t host_len;

	if (strncmp(location, "sftp://", 7) != 0 || has_control_chars(location) ||
	    strchr(location, '?') || strchr(location, '#'))
		goto invalid;
	slash = strchr(p, '/');
	if (!slash)
		goto invalid;
	at = memchr(p, '@', (size_t)(slash - p));
	if (at) {
		if (at == p || memchr(p, ':', (size_t)(at - p)))
			return sm_error_set(SM_EINVALID, "location of vault '%s' must not contain a "
					    "password; store it with 'skillmeat vault auth %s "
					    "--password'", name, name);
		sv->user = strndup(p, (size_t)(at - p));
		p = at + 1;
	}
	if (*p == '[') {
		host_end = memchr(p, ']', (size_t)(slash - p));
		if (!host_end)
			goto invalid;
		sv->host = strndup(p + 1, (size_t)(host_end - p - 1));
		host_end++;
	} else {
		host_end = memchr(p, ':', (size_t)(slash - p));
		if (!host_end)
			host_end = slash;
		host_len = (size_t)(host_end - p);
		sv->host = strndup(p, host_len);
	}
	if (!sv->host || (at && !sv->user))
		return sm_error_set(SM_ENOMEM, "out of memory");
	if (!*sv->host)
		goto invalid;
	if (*host_end == ':')
		port_start = host_end + 1;
	else if (host_end != slash)
		goto invalid;
	sv->port = 22;
	if (port_start) {
		char *end;
		long port = strtol(port_start, &end, 10);

		if (end != slash || port < 1 || port > 65535)
			goto invalid;
		sv->port = (int)port;
	}
	/* "/~/dir" is relative to the login directory, as in scp URLs */
	if (strncmp(slash, "/~/", 3) == 0)
		sv->root = strdup(slash[3] ? slash + 3 : ".");
	else
		sv->root = strdup(slash);
	if (!sv->root)
		return sm_error_set(SM_ENOMEM, "out of memory");
	/* no trailing slash, so paths join with one '/' */
	for (size_t len = strlen(sv->root); len > 1 && sv->root[len - 1] == '/'; len--)
		sv->root[len - 1] = '\0';
	return 0;
invalid:
	return sm_error_set(SM_EINVALID, "invalid location '%s' of vault '%s': use "
			    "sftp://USER@HOST[:PORT]/PATH", location, name);
}

static int default_known_hosts(sftp_vault *sv)
{
	const char *home = getenv("HOME");
	struct passwd *pw;

	if (!home || !*home) {
		pw = getpwuid(getuid());
		home = pw ? pw->pw_dir : NULL;
	}
	if (!home)
		return sm_error_set(SM_EINVALID, "vault '%s' has no 'known_hosts' and HOME is not "
				    "set", sv->config->name);
	sv->known_hosts = sftp_asprintf("%s/.ssh/known_hosts", home);
	return sv->known_hosts ? 0 : SM_ENOMEM;
}

static int sftp_new(sm_vault **out, const sm_vault_config *config, const sm_callbacks *callbacks)
{
	const char *location = sm_vault_config_get(config, "location");
	const char *known_hosts = sm_vault_config_get(config, "known_hosts");
	const char *accept = sm_vault_config_get(config, "accept_new_host_keys");
	unsigned char random_bytes[16];
	sftp_vault *sv;
	int rc, timeout_s;

	*out = NULL;
	if (!location)
		location = sm_vault_config_get(config, "url");
	if (!location || !*location)
		return sm_error_set(SM_EINVALID, "vault '%s' has no 'location'; set it to "
				    "sftp://USER@HOST[:PORT]/PATH in %s", config->name,
				    config->source ? config->source : "sharing.toml");
	if (accept && strcmp(accept, "true") != 0 && strcmp(accept, "false") != 0)
		return sm_error_set(SM_EINVALID, "invalid accept_new_host_keys '%s' for vault '%s': "
				    "use true or false", accept, config->name);
	if (getrandom(random_bytes, sizeof(random_bytes), 0) != (ssize_t)sizeof(random_bytes))
		return sm_error_set_errno(SM_EIO, errno, "cannot read random bytes");

	sv = calloc(1, sizeof(*sv));
	if (!sv)
		return sm_error_set(SM_ENOMEM, "out of memory");
	sv->parent.abi_version = SM_VAULT_ABI_VERSION;
	sv->parent.type = "sftp";
	sv->parent.caps = SM_VAULT_CAN_READ | SM_VAULT_CAN_WRITE | SM_VAULT_CAN_DELETE;
	sv->parent.open = sftp_open;
	sv->parent.push = sftp_push;
	sv->parent.pull = sftp_pull;
	sv->parent.list = sftp_list;
	sv->parent.delete_bundle = sftp_delete;
	sv->parent.exists = sftp_exists;
	sv->parent.get_metadata = sftp_get_metadata;
	sv->parent.close = sftp_close;
	sv->config = config;
	sv->callbacks = callbacks;
	sv->sock = -1;
	sv->accept_new_host_keys = accept && strcmp(accept, "true") == 0;
	for (size_t i = 0; i < sizeof(random_bytes); i++)
		snprintf(sv->token + 2 * i, 3, "%02x", random_bytes[i]);

	if ((rc = parse_location(sv, location)) != 0 ||
	    (rc = int_setting(config, "timeout", 30, 1, 3600, &timeout_s)) != 0 ||
	    (rc = int_setting(config, "lock_timeout", 60, 1, 86400, &sv->lock_timeout_s)) != 0 ||
	    (rc = int_setting(config, "lock_wait", 300, 0, 86400, &sv->lock_wait_s)) != 0)
		goto fail;
	sv->timeout_ms = timeout_s * 1000;
	if (known_hosts && *known_hosts)
		sv->known_hosts = strdup(known_hosts);
	else if ((rc = default_known_hosts(sv)) != 0)
		goto fail;
	sv->lock_dir = sftp_asprintf("%s/.skillmeat-lock", sv->root);
	if (!sv->known_hosts || !sv->lock_dir) {
		rc = sm_error_set(SM_ENOMEM, "out of memory");
		goto fail;
	}
	*out = &sv->parent;
	return 0;
fail:
	sftp_close(&sv->parent);
	return rc;
}

SM_PLUGIN_EXPORT int skillmeat_plugin_init(const sm_plugin_host *host)
{
	if (libssh2_init(0) != 0)
		return sm_error_set(SM_ERROR, "cannot initialise libssh2");
	return host->register_vault(host, "sftp", SM_VAULT_ABI_VERSION, sftp_new);
}
