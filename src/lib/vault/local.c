/*
 * The local vault: a directory on a local or network file system.
 *
 * Guarantees beyond the original tool's layout:
 * - data, then metadata/<id>.json, then index.json, each replaced
 *   atomically (temporary file, fsync, rename, fsync of the directory);
 * - writers serialise on an flock() of <root>/.skillmeat-vault.lock, so
 *   concurrent pushes do not lose index entries wherever flock() is shared
 *   between the writers (local file systems, NFSv4);
 * - metadata/ is the truth and index.json a cache: an index that is
 *   missing, corrupt, older than metadata/ or naming other ids is rebuilt
 *   from metadata/ and never trusted as empty.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "util/util.h"
#include "vault/connectors.h"
#include "vault/record.h"

#define LOCK_NAME ".skillmeat-vault.lock"
#define BUNDLE_SUFFIX ".skillmeat-pack"

typedef struct local_vault {
	sm_vault parent;
	const sm_vault_config *config;
	const sm_callbacks *callbacks;
	char *root;
	char *bundles_dir;
	char *metadata_dir;
	char *index_path;
	char *lock_path;
} local_vault;

static void notify(const local_vault *lv, sm_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void notify(const local_vault *lv, sm_log_level level, const char *fmt, ...)
{
	char text[1024];
	va_list ap;

	if (!lv->callbacks->message)
		return;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	lv->callbacks->message(level, text, lv->callbacks->payload);
}

static char *data_path(const local_vault *lv, const char *id)
{
	return sm_asprintf("%s/%s" BUNDLE_SUFFIX, lv->bundles_dir, id);
}

static char *metadata_path(const local_vault *lv, const char *id)
{
	return sm_asprintf("%s/%s.json", lv->metadata_dir, id);
}

/* The record of a push in progress: hidden, so never listed as metadata. */
static char *pending_path(const local_vault *lv, const char *id)
{
	return sm_asprintf("%s/.%s.json.pending", lv->metadata_dir, id);
}

/* Reads metadata/<id>.json. SM_ENOTFOUND when the bundle is not stored. */
static int read_metadata(const local_vault *lv, const char *id, json_t **out)
{
	char *path = metadata_path(lv, id), *text = NULL;
	json_error_t error;
	size_t len;
	int rc;

	*out = NULL;
	if (!path)
		return SM_ENOMEM;
	rc = sm_read_file(path, SM_RECORD_MAX_BYTES, &text, &len);
	if (rc == SM_ENOTFOUND) {
		rc = sm_error_set(SM_ENOTFOUND, "bundle '%s' not found in vault '%s'",
				  id, lv->config->name);
		goto done;
	}
	if (rc)
		goto done;
	*out = json_loadb(text, len, JSON_REJECT_DUPLICATES, &error);
	if (!*out || !json_is_object(*out)) {
		json_decref(*out);
		*out = NULL;
		rc = sm_error_set(SM_EINTEGRITY, "metadata file '%s' is not a valid JSON object", path);
	}
done:
	free(text);
	free(path);
	return rc;
}

static int compare_strings(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Lists the ids that have a metadata file, sorted. A missing dir is empty. */
static int list_metadata_ids(const local_vault *lv, char ***out, size_t *count)
{
	DIR *dir = opendir(lv->metadata_dir);
	char **ids = NULL;
	size_t n = 0, cap = 0;
	struct dirent *entry;
	int rc = 0;

	*out = NULL;
	*count = 0;
	if (!dir) {
		if (errno == ENOENT)
			return 0;
		return sm_error_set_errno(SM_EIO, errno, "cannot read '%s'", lv->metadata_dir);
	}
	while ((entry = readdir(dir)) != NULL) {
		size_t len = strlen(entry->d_name);
		char *id;

		if (len <= 5 || strcmp(entry->d_name + len - 5, ".json") != 0)
			continue;
		id = sm_strndup(entry->d_name, len - 5);
		if (!id) {
			rc = SM_ENOMEM;
			break;
		}
		if (!sm_bundle_id_valid(id)) {
			free(id);
			continue;
		}
		if (n == cap) {
			char **grown = realloc(ids, (cap = cap ? cap * 2 : 64) * sizeof(*ids));

			if (!grown) {
				free(id);
				rc = sm_error_set(SM_ENOMEM, "out of memory");
				break;
			}
			ids = grown;
		}
		ids[n++] = id;
	}
	closedir(dir);
	if (rc) {
		sm_str_array_free(ids, n);
		return rc;
	}
	/* an empty directory leaves ids NULL, which qsort() must not get */
	if (n > 1)
		qsort(ids, n, sizeof(*ids), compare_strings);
	*out = ids;
	*count = n;
	return 0;
}

/* Builds {id: record} from every readable metadata file. */
static int rebuild_index(const local_vault *lv, char **ids, size_t count, json_t **out)
{
	json_t *index = json_object();

	*out = NULL;
	if (!index)
		return sm_error_set(SM_ENOMEM, "out of memory");
	for (size_t i = 0; i < count; i++) {
		sm_record *record = NULL;
		json_t *object;
		int rc = read_metadata(lv, ids[i], &object);

		if (rc == SM_ENOTFOUND)
			continue; /* deleted meanwhile */
		if (!rc)
			rc = sm_record_from_json(object, ids[i], &record);
		if (!rc && strcmp(record->bundle_id, ids[i]) != 0)
			rc = sm_error_set(SM_EINTEGRITY, "metadata file of '%s' names bundle '%s'",
					  ids[i], record->bundle_id);
		sm_record_free(record);
		if (rc == SM_ENOMEM) {
			json_decref(object);
			json_decref(index);
			return rc;
		}
		if (rc) {
			notify(lv, SM_LOG_WARN, "skipping bundle '%s' in vault '%s': %s",
			       ids[i], lv->config->name, sm_error_message());
			json_decref(object);
			continue;
		}
		json_object_set_new(index, ids[i], object);
	}
	*out = index;
	return 0;
}

/*
 * Loads index.json when it is a faithful cache of metadata/: it parses,
 * every entry is a valid record, its ids equal the metadata files' ids,
 * and it is not older than the metadata directory. Sets *fresh = 0 and
 * returns 0 with *out = NULL otherwise.
 */
static int load_index_if_fresh(const local_vault *lv, char **ids, size_t count,
			       json_t **out, const char **why)
{
	struct stat index_st, dir_st;
	json_error_t error;
	json_t *index = NULL, *value;
	char *text = NULL;
	const char *key;
	size_t len, i = 0;
	int rc;

	*out = NULL;
	*why = NULL;
	rc = sm_read_file(lv->index_path, SM_INDEX_MAX_BYTES, &text, &len);
	if (rc == SM_ENOTFOUND) {
		*why = count ? "missing" : NULL;
		return count ? 0 : (*out = json_object()) ? 0 : SM_ENOMEM;
	}
	if (rc == SM_EINVALID) {
		*why = "too large";
		return 0;
	}
	if (rc)
		return rc;
	index = json_loadb(text, len, JSON_REJECT_DUPLICATES, &error);
	free(text);
	if (!index || !json_is_object(index)) {
		*why = "corrupt";
		goto stale;
	}
	if (json_object_size(index) != count) {
		*why = "stale";
		goto stale;
	}
	/* ids are sorted; compare as sets */
	json_object_foreach(index, key, value) {
		sm_record *record = NULL;

		if (!bsearch(&key, ids, count, sizeof(*ids), compare_strings)) {
			*why = "stale";
			goto stale;
		}
		if (sm_record_from_json(value, key, &record) != 0) {
			*why = "corrupt";
			goto stale;
		}
		sm_record_free(record);
		i++;
	}
	if (stat(lv->index_path, &index_st) == 0 && stat(lv->metadata_dir, &dir_st) == 0 &&
	    (index_st.st_mtim.tv_sec < dir_st.st_mtim.tv_sec ||
	     (index_st.st_mtim.tv_sec == dir_st.st_mtim.tv_sec &&
	      index_st.st_mtim.tv_nsec < dir_st.st_mtim.tv_nsec))) {
		*why = "older than the metadata files";
		goto stale;
	}
	*out = index;
	return 0;
stale:
	json_decref(index);
	return 0;
}

static int write_index(const local_vault *lv, json_t *index)
{
	char *text = json_dumps(index, JSON_INDENT(2) | JSON_SORT_KEYS);
	int rc;

	if (!text)
		return sm_error_set(SM_ENOMEM, "cannot serialise the index");
	rc = sm_write_file_atomic(lv->index_path, text, strlen(text), 0644);
	free(text);
	return rc;
}

/*
 * Returns the current index: the cached file when fresh, else rebuilt
 * from metadata/. With `locked` the caller holds the vault lock and a
 * rebuilt index is written back; readers write back only when they can
 * take the lock.
 */
/*
 * Refuses to rebuild the index when metadata/ itself is gone but index.json
 * is not: rebuilding would replace the only remaining list with an empty
 * one. A vault that never had bundles has neither.
 */
static int check_metadata_dir(const local_vault *lv)
{
	struct stat st;

	if (stat(lv->metadata_dir, &st) == 0 || errno != ENOENT)
		return 0;
	if (stat(lv->index_path, &st) != 0 || st.st_size <= 2)
		return 0;
	return sm_error_set(SM_EINTEGRITY, "vault '%s' has an index.json but no metadata directory "
			    "'%s'; restore it from a backup, since the metadata files are the record "
			    "of what the vault holds", lv->config->name, lv->metadata_dir);
}

static int current_index(const local_vault *lv, int locked, json_t **out)
{
	char **ids = NULL;
	size_t count = 0;
	const char *why;
	int rc, lock_fd = -1;

	*out = NULL;
	rc = list_metadata_ids(lv, &ids, &count);
	if (rc)
		return rc;
	rc = load_index_if_fresh(lv, ids, count, out, &why);
	if (rc || *out)
		goto done;
	if ((rc = check_metadata_dir(lv)) != 0)
		goto done;

	rc = rebuild_index(lv, ids, count, out);
	if (rc)
		goto done;
	notify(lv, SM_LOG_WARN, "index.json of vault '%s' was %s; rebuilt it from %zu metadata files",
	       lv->config->name, why, json_object_size(*out));

	if (!(lv->parent.caps & SM_VAULT_CAN_WRITE))
		goto done;
	if (!locked && sm_lock(lv->lock_path, &lock_fd) != 0) {
		notify(lv, SM_LOG_DEBUG, "not writing the rebuilt index: %s", sm_error_message());
		goto done;
	}
	if (!locked) {
		/* another writer may have changed metadata/ before we locked */
		json_decref(*out);
		*out = NULL;
		sm_str_array_free(ids, count);
		ids = NULL;
		rc = list_metadata_ids(lv, &ids, &count);
		if (!rc)
			rc = rebuild_index(lv, ids, count, out);
		if (rc)
			goto done;
	}
	if (write_index(lv, *out) != 0)
		notify(lv, SM_LOG_DEBUG, "not writing the rebuilt index: %s", sm_error_message());
done:
	sm_unlock(lock_fd);
	sm_str_array_free(ids, count);
	if (rc) {
		json_decref(*out);
		*out = NULL;
	}
	return rc;
}

static int local_open(sm_vault *self)
{
	local_vault *lv = (local_vault *)self;
	struct stat st;

	if (stat(lv->root, &st) != 0) {
		if (errno == ENOENT)
			return sm_error_set(SM_ENOTFOUND, "vault directory '%s' of vault '%s' does not exist; "
					    "create it or fix 'path' in %s", lv->root,
					    lv->config->name,
					    lv->config->source ? lv->config->source : "sharing.toml");
		return sm_error_set_errno(SM_EIO, errno, "cannot access vault directory '%s'", lv->root);
	}
	if (!S_ISDIR(st.st_mode))
		return sm_error_set(SM_EINVALID, "vault path '%s' of vault '%s' is not a directory",
				    lv->root, lv->config->name);
	return 0;
}

typedef struct progress_state {
	const local_vault *lv;
	uint64_t total;
} progress_state;

static void report_progress(uint64_t done, void *payload)
{
	progress_state *state = payload;
	const sm_callbacks *cb = state->lv->callbacks;

	if (cb->progress)
		cb->progress(done, state->total, cb->payload);
}

/*
 * Copies the bundle into a staging file for `dest`, hashing it. On success
 * the staging file stays open as *out, because an anonymous O_TMPFILE file
 * can be linked only while it is open. The caller closes it, and unlinks
 * `*tmp` when it does not commit and the file is not anonymous.
 */
static int stage_copy(const local_vault *lv, int in, const char *dest, char **tmp, int *out,
		      int *anonymous, unsigned char sha256[32], uint64_t *size)
{
	progress_state state = { lv, 0 };
	struct stat st;
	int rc;

	*tmp = NULL;
	*out = -1;
	if (fstat(in, &st) == 0)
		state.total = (uint64_t)st.st_size;
	rc = sm_staging_open(lv->bundles_dir, dest, tmp, out, anonymous);
	if (rc)
		return rc;
	rc = sm_copy_hash(in, *out, sha256, size, report_progress, &state);
	if (!rc && fchmod(*out, 0644) != 0)
		rc = sm_error_set_errno(SM_EIO, errno, "cannot set the mode of the copy of '%s'", dest);
	if (!rc && fsync(*out) != 0)
		rc = sm_error_set_errno(SM_EIO, errno, "cannot sync the copy of '%s'", dest);
	if (rc) {
		if (!*anonymous)
			unlink(*tmp);
		close(*out);
		*out = -1;
		free(*tmp);
		*tmp = NULL;
	}
	return rc;
}

/* Temporary files untouched this long are left over from a killed writer. */
#define STALE_TEMP_SECONDS 3600

/*
 * Removes temporary files (".<name>.tmp-XXXXXXXXXXXX") that a killed push
 * left in `dir`. An active writer keeps its file's mtime fresh, so only
 * abandoned files are old enough to match.
 */
static void remove_stale_temps(const local_vault *lv, const char *dir_path)
{
	DIR *dir = opendir(dir_path);
	struct dirent *entry;
	time_t now = time(NULL);
	int removed = 0;

	if (!dir)
		return;
	while ((entry = readdir(dir)) != NULL) {
		struct stat st;

		if (entry->d_name[0] != '.' || !strstr(entry->d_name, ".tmp-"))
			continue;
		if (fstatat(dirfd(dir), entry->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 ||
		    !S_ISREG(st.st_mode) || now - st.st_mtime < STALE_TEMP_SECONDS)
			continue;
		if (unlinkat(dirfd(dir), entry->d_name, 0) == 0)
			removed++;
	}
	closedir(dir);
	if (removed)
		notify(lv, SM_LOG_DEBUG, "removed %d abandoned temporary file%s from '%s'",
		       removed, removed == 1 ? "" : "s", dir_path);
}

/* Reads a record file; SM_ENOTFOUND when it does not exist. */
static int read_record_file(const char *path, const char *id, sm_record **out)
{
	char *text = NULL;
	size_t len;
	int rc = sm_read_file(path, SM_RECORD_MAX_BYTES, &text, &len);

	*out = NULL;
	if (!rc)
		rc = sm_record_parse(text, len, path, out);
	free(text);
	if (!rc && strcmp((*out)->bundle_id, id) != 0) {
		sm_record_free(*out);
		*out = NULL;
		rc = sm_error_set(SM_EINTEGRITY, "record '%s' does not name bundle '%s'", path, id);
	}
	return rc;
}

/*
 * Finishes or discards what killed pushes left: a pending record whose
 * SHA-256 matches the stored data becomes the metadata (the push had
 * replaced the data already), and any other pending record is removed.
 * Runs under the vault lock, so no live push owns a pending file.
 */
static void settle_pending(const local_vault *lv)
{
	DIR *dir = opendir(lv->metadata_dir);
	struct dirent *entry;

	if (!dir)
		return;
	while ((entry = readdir(dir)) != NULL) {
		size_t len = strlen(entry->d_name);
		char *id, *pending = NULL, *meta = NULL, *data = NULL;
		const char *want;
		sm_record *record = NULL;
		unsigned char digest[32];
		char hex[65] = "";

		if (entry->d_name[0] != '.' || len < 15 ||
		    strcmp(entry->d_name + len - 13, ".json.pending") != 0)
			continue;
		id = sm_strndup(entry->d_name + 1, len - 14);
		if (!id)
			break;
		pending = pending_path(lv, id);
		meta = metadata_path(lv, id);
		data = data_path(lv, id);
		if (sm_bundle_id_valid(id) && pending && meta && data &&
		    read_record_file(pending, id, &record) == 0 &&
		    (want = sm_record_metadata_get(record, "sha256")) != NULL &&
		    sm_sha256_file(data, digest, NULL) == 0) {
			sm_hex(digest, 32, hex);
			if (strcmp(hex, want) == 0 && rename(pending, meta) == 0) {
				sm_fsync_parent(meta);
				notify(lv, SM_LOG_WARN, "completed the interrupted push of '%s' in vault '%s'",
				       id, lv->config->name);
			}
		}
		if (pending)
			unlink(pending); /* already gone when it was promoted */
		sm_record_free(record);
		free(id);
		free(pending);
		free(meta);
		free(data);
	}
	closedir(dir);
}

/* Decides what to do about an id that is already stored. */
static int check_existing(const local_vault *lv, sm_record *record, const char *sha_hex,
			  int force, int *identical, int *exists)
{
	sm_record *old = NULL;
	json_t *object = NULL;
	const char *old_sha;
	int rc;

	*identical = *exists = 0;
	rc = read_metadata(lv, record->bundle_id, &object);
	if (rc == SM_ENOTFOUND)
		return 0;
	if (!rc)
		rc = sm_record_from_json(object, record->bundle_id, &old);
	json_decref(object);
	if (rc && !force)
		return rc;
	*exists = 1;
	if (old) {
		old_sha = sm_record_metadata_get(old, "sha256");
		if (!old_sha) {
			/* written by the original tool: hash the stored file */
			unsigned char digest[32];
			char hex[65] = "";
			char *path = data_path(lv, record->bundle_id);

			if (path && sm_sha256_file(path, digest, NULL) == 0)
				sm_hex(digest, 32, hex);
			free(path);
			*identical = strcmp(hex, sha_hex) == 0;
		} else {
			*identical = strcmp(old_sha, sha_hex) == 0;
		}
	}
	return sm_push_settle_existing(record, old, *identical, force, lv->config->name);
}

static int local_push(sm_vault *self, int bundle_fd, sm_record *record,
		      sm_push_opts *opts)
{
	local_vault *lv = (local_vault *)self;
	char *dest = NULL, *meta = NULL, *pending = NULL, *tmp = NULL, *text = NULL;
	json_t *object = NULL, *index = NULL;
	int staged_fd = -1, anonymous = 0;
	unsigned char digest[32];
	char sha_hex[65], now[32];
	int rc, lock_fd = -1, identical, exists;
	uint64_t size;

	if ((rc = sm_mkdir_p(lv->bundles_dir, 0755)) != 0 ||
	    (rc = sm_mkdir_p(lv->metadata_dir, 0755)) != 0)
		return rc;
	dest = data_path(lv, record->bundle_id);
	meta = metadata_path(lv, record->bundle_id);
	pending = pending_path(lv, record->bundle_id);
	if (!dest || !meta || !pending) {
		rc = SM_ENOMEM;
		goto done;
	}

	/* stage the data outside the lock: the copy is the slow part */
	rc = stage_copy(lv, bundle_fd, dest, &tmp, &staged_fd, &anonymous, digest, &size);
	if (rc)
		goto done;
	sm_hex(digest, 32, sha_hex);
	sm_now_iso8601(now);
	free(record->uploaded_at);
	free(record->vault_path);
	record->uploaded_at = sm_strdup(now);
	record->vault_path = sm_strdup(dest);
	record->size_bytes = size;
	if (!record->uploaded_at || !record->vault_path ||
	    (rc = sm_record_metadata_set(record, "sha256", sha_hex)) != 0) {
		rc = rc ? rc : SM_ENOMEM;
		goto done;
	}
	if (opts->before_commit && (rc = opts->before_commit(opts->payload)) != 0)
		goto done;

	rc = sm_lock(lv->lock_path, &lock_fd);
	if (rc)
		goto done;
	remove_stale_temps(lv, lv->bundles_dir);
	remove_stale_temps(lv, lv->metadata_dir);
	remove_stale_temps(lv, lv->root);
	settle_pending(lv);
	rc = check_existing(lv, record, sha_hex, opts->force, &identical, &exists);
	if (rc)
		goto done;
	/* --force always rewrites, which also repairs data damaged in place */
	if (identical && !opts->force) {
		opts->unchanged = 1;
		goto done;
	}
	/* read the index before metadata/ changes, else it looks stale and is rebuilt */
	rc = current_index(lv, 1, &index);
	if (rc)
		goto done;
	/*
	 * The new record goes to a hidden pending file first, then the data
	 * replaces the old data, then the pending file replaces the metadata.
	 * A reader that finds data and metadata disagreeing (a concurrent or
	 * killed push) checks the pending record too, and a later push
	 * settles what a killed one left, so the old version is never unlisted.
	 */
	object = sm_record_to_json(record);
	text = object ? json_dumps(object, JSON_INDENT(2)) : NULL;
	if (!text) {
		rc = sm_error_set(SM_ENOMEM, "cannot serialise the metadata");
		goto done;
	}
	rc = sm_write_file_atomic(pending, text, strlen(text), 0644);
	if (rc)
		goto done;
	rc = sm_staging_replace(tmp, anonymous, dest);
	if (rc) {
		unlink(pending);
		goto done;
	}
	free(tmp);
	tmp = NULL;
	if ((rc = sm_fsync_parent(dest)) != 0)
		goto done;
	if (rename(pending, meta) != 0) {
		rc = sm_error_set_errno(SM_EIO, errno, "cannot rename to '%s'", meta);
		goto done;
	}
	if ((rc = sm_fsync_parent(meta)) != 0)
		goto done;

	json_object_set(index, record->bundle_id, object);
	rc = write_index(lv, index);
done:
	sm_unlock(lock_fd);
	if (tmp && !anonymous)
		unlink(tmp);
	if (staged_fd >= 0)
		close(staged_fd);
	free(tmp);
	free(text);
	json_decref(object);
	json_decref(index);
	free(dest);
	free(meta);
	free(pending);
	return rc;
}

static int local_get_metadata(sm_vault *self, const char *bundle_id, sm_record **out)
{
	local_vault *lv = (local_vault *)self;
	json_t *object;
	int rc = read_metadata(lv, bundle_id, &object);

	*out = NULL;
	if (rc)
		return rc;
	rc = sm_record_from_json(object, bundle_id, out);
	json_decref(object);
	if (!rc && strcmp((*out)->bundle_id, bundle_id) != 0) {
		rc = sm_error_set(SM_EINTEGRITY, "metadata file of '%s' names bundle '%s'",
				  bundle_id, (*out)->bundle_id);
		sm_record_free(*out);
		*out = NULL;
	}
	return rc;
}

/* Returns 1 when the bytes (SHA-256 `hex`, `size`) are those `record` names. */
static int record_matches(const sm_record *record, const char *hex, uint64_t size)
{
	const char *expected = sm_record_metadata_get(record, "sha256");

	return (!record->size_bytes || record->size_bytes == size) &&
	       (!expected || strcmp(expected, hex) == 0);
}

/*
 * Looks for the record of bytes that a concurrent or killed push wrote:
 * the pending record, then the metadata file read again. Returns NULL when
 * neither names these bytes.
 */
static sm_record *find_matching_record(const local_vault *lv, const char *id,
				       const char *hex, uint64_t size)
{
	/* pending first: a push renames it over the metadata, so one of the two
	 * reads returns the newer record whatever moment the rename happens */
	char *paths[2] = { pending_path(lv, id), metadata_path(lv, id) };
	sm_record *found = NULL;

	for (size_t i = 0; i < 2 && !found; i++) {
		sm_record *candidate = NULL;

		if (paths[i] && read_record_file(paths[i], id, &candidate) == 0 &&
		    sm_record_metadata_get(candidate, "sha256") &&
		    record_matches(candidate, hex, size))
			found = candidate;
		else
			sm_record_free(candidate);
	}
	free(paths[0]);
	free(paths[1]);
	return found;
}

/* Returns 1 when `path` no longer names the file open as `in`. */
static int replaced_since_open(const char *path, int in)
{
	struct stat now, opened;

	if (stat(path, &now) != 0 || fstat(in, &opened) != 0)
		return 1;
	return now.st_dev != opened.st_dev || now.st_ino != opened.st_ino;
}

/*
 * Copies the data of `bundle_id` to `fd` once and checks it against its
 * record. Sets *replaced when a mismatch coincides with the data file being
 * replaced, which a concurrent push does; the caller then tries again.
 */
static int pull_once(local_vault *lv, const char *bundle_id, int fd, sm_record **out,
		     int *replaced)
{
	progress_state state = { lv, 0 };
	sm_record *record = NULL;
	unsigned char digest[32];
	char hex[65], *path = NULL;
	const char *expected;
	struct stat st;
	uint64_t size;
	int in = -1, rc;

	*out = NULL;
	*replaced = 0;
	rc = local_get_metadata(&lv->parent, bundle_id, &record);
	if (rc)
		return rc;
	path = data_path(lv, bundle_id);
	if (!path) {
		rc = SM_ENOMEM;
		goto done;
	}
	in = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (in < 0) {
		rc = sm_error_set_errno(errno == ENOENT ? SM_EINTEGRITY : SM_EIO, errno,
					"cannot open the data of bundle '%s' ('%s')", bundle_id, path);
		goto done;
	}
	if (fstat(in, &st) != 0 || !S_ISREG(st.st_mode)) {
		rc = sm_error_set(SM_EINTEGRITY, "data of bundle '%s' is not a regular file", bundle_id);
		goto done;
	}
	state.total = (uint64_t)st.st_size;
	rc = sm_copy_hash(in, fd, digest, &size, report_progress, &state);
	if (rc)
		goto done;
	sm_hex(digest, 32, hex);
	if (!record_matches(record, hex, size)) {
		/* a push replacing this id may have changed the data meanwhile */
		sm_record *newer = find_matching_record(lv, bundle_id, hex, size);

		if (newer) {
			sm_record_free(record);
			record = newer;
		} else {
			*replaced = replaced_since_open(path, in);
		}
	}
	if (record->size_bytes && size != record->size_bytes) {
		rc = sm_error_set(SM_EINTEGRITY, "bundle '%s' in vault '%s' is corrupt: it has %llu bytes, "
				  "its metadata says %llu", bundle_id, lv->config->name,
				  (unsigned long long)size, (unsigned long long)record->size_bytes);
		goto done;
	}
	expected = sm_record_metadata_get(record, "sha256");
	if (expected && strcmp(expected, hex) != 0) {
		rc = sm_error_set(SM_EINTEGRITY, "bundle '%s' in vault '%s' is corrupt: SHA-256 %s, "
				  "its metadata says %s", bundle_id, lv->config->name, hex, expected);
		goto done;
	}
	*out = record;
	record = NULL;
done:
	if (in >= 0)
		close(in);
	free(path);
	sm_record_free(record);
	return rc;
}

/* Pushes that replace the same id this many times during one pull make it fail. */
#define PULL_ATTEMPTS 5

static int local_pull(sm_vault *self, const char *bundle_id, int fd, sm_record **out)
{
	local_vault *lv = (local_vault *)self;
	int rc, replaced = 0;

	for (int attempt = 0; attempt < PULL_ATTEMPTS; attempt++) {
		if (attempt && (ftruncate(fd, 0) != 0 || lseek(fd, 0, SEEK_SET) != 0))
			return sm_error_set_errno(SM_EIO, errno, "cannot rewind the output file");
		rc = pull_once(lv, bundle_id, fd, out, &replaced);
		if (rc != SM_EINTEGRITY || !replaced)
			break;
		notify(lv, SM_LOG_DEBUG, "bundle '%s' changed while it was read; reading it again",
		       bundle_id);
	}
	return rc;
}

static int compare_records(const void *a, const void *b)
{
	return strcmp((*(sm_record *const *)a)->bundle_id, (*(sm_record *const *)b)->bundle_id);
}

static int local_list(sm_vault *self, const sm_list_filter *filter, sm_record_list *out)
{
	local_vault *lv = (local_vault *)self;
	json_t *index = NULL, *value;
	const char *key;
	int rc;

	out->items = NULL;
	out->count = 0;
	rc = current_index(lv, 0, &index);
	if (rc)
		return rc;
	out->items = calloc(json_object_size(index) + 1, sizeof(*out->items));
	if (!out->items) {
		rc = sm_error_set(SM_ENOMEM, "out of memory");
		goto done;
	}
	json_object_foreach(index, key, value) {
		sm_record *record = NULL;

		rc = sm_record_from_json(value, key, &record);
		if (rc)
			goto done;
		if (!sm_list_filter_match(filter, record)) {
			sm_record_free(record);
			continue;
		}
		out->items[out->count++] = record;
	}
	qsort(out->items, out->count, sizeof(*out->items), compare_records);
done:
	json_decref(index);
	if (rc)
		sm_record_list_release(out);
	return rc;
}

static int local_exists(sm_vault *self, const char *bundle_id, int *out)
{
	local_vault *lv = (local_vault *)self;
	char *path = metadata_path(lv, bundle_id);
	struct stat st;

	if (!path)
		return SM_ENOMEM;
	*out = stat(path, &st) == 0;
	free(path);
	return 0;
}

static int local_delete(sm_vault *self, const char *bundle_id)
{
	local_vault *lv = (local_vault *)self;
	char *meta = metadata_path(lv, bundle_id), *dest = data_path(lv, bundle_id);
	json_t *index = NULL;
	int rc, lock_fd = -1;

	if (!meta || !dest) {
		rc = SM_ENOMEM;
		goto done;
	}
	rc = sm_lock(lv->lock_path, &lock_fd);
	if (rc)
		goto done;
	/* read the index before metadata/ changes, else it looks stale and is rebuilt */
	rc = current_index(lv, 1, &index);
	if (rc)
		goto done;
	/* metadata first: from then on the bundle is not listed */
	if (unlink(meta) != 0) {
		rc = errno == ENOENT
			? sm_error_set(SM_ENOTFOUND, "bundle '%s' not found in vault '%s'",
				       bundle_id, lv->config->name)
			: sm_error_set_errno(errno == EACCES ? SM_EREADONLY : SM_EIO, errno,
					     "cannot delete '%s'", meta);
		goto done;
	}
	sm_fsync_parent(meta);
	if (json_object_get(index, bundle_id)) {
		json_object_del(index, bundle_id);
		if ((rc = write_index(lv, index)) != 0)
			goto done;
	}
	if (unlink(dest) != 0 && errno != ENOENT)
		rc = sm_error_set_errno(SM_EIO, errno, "cannot delete '%s'", dest);
	else
		sm_fsync_parent(dest);
done:
	sm_unlock(lock_fd);
	json_decref(index);
	free(meta);
	free(dest);
	return rc;
}

static void local_close(sm_vault *self)
{
	local_vault *lv = (local_vault *)self;

	if (!lv)
		return;
	free(lv->root);
	free(lv->bundles_dir);
	free(lv->metadata_dir);
	free(lv->index_path);
	free(lv->lock_path);
	free(lv);
}

int sm_vault_local_new(sm_vault **out, const sm_vault_config *config,
		       const sm_callbacks *callbacks)
{
	const char *path = sm_vault_config_get(config, "path");
	local_vault *lv;
	char resolved[PATH_MAX];

	*out = NULL;
	if (!path || !*path)
		return sm_error_set(SM_EINVALID, "vault '%s' has no 'path'; set it in %s",
				    config->name, config->source ? config->source : "sharing.toml");
	if (sm_has_control_chars(path))
		return sm_error_set(SM_EINVALID, "vault '%s' has a path with control characters",
				    config->name);
	lv = calloc(1, sizeof(*lv));
	if (!lv)
		return sm_error_set(SM_ENOMEM, "out of memory");

	lv->parent.abi_version = SM_VAULT_ABI_VERSION;
	lv->parent.type = "local";
	lv->parent.caps = SM_VAULT_CAN_READ | SM_VAULT_CAN_WRITE | SM_VAULT_CAN_DELETE;
	lv->parent.open = local_open;
	lv->parent.push = local_push;
	lv->parent.pull = local_pull;
	lv->parent.list = local_list;
	lv->parent.delete_bundle = local_delete;
	lv->parent.exists = local_exists;
	lv->parent.get_metadata = local_get_metadata;
	lv->parent.close = local_close;
	lv->config = config;
	lv->callbacks = callbacks;

	/* an absolute path keeps vault_path meaningful to other machines' tools */
	lv->root = sm_strdup(realpath(path, resolved) ? resolved : path);
	lv->bundles_dir = lv->root ? sm_path_join(lv->root, "bundles") : NULL;
	lv->metadata_dir = lv->root ? sm_path_join(lv->root, "metadata") : NULL;
	lv->index_path = lv->root ? sm_path_join(lv->root, "index.json") : NULL;
	lv->lock_path = lv->root ? sm_path_join(lv->root, LOCK_NAME) : NULL;
	if (!lv->bundles_dir || !lv->metadata_dir || !lv->index_path || !lv->lock_path) {
		local_close(&lv->parent);
		return SM_ENOMEM;
	}
	*out = &lv->parent;
	return 0;
}
