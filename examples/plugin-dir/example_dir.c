/*
 * example-dir: a connector plug-in that keeps a vault in a directory, in
 * the layout every skillmeat vault shares:
 *
 *   bundles/<id>.skillmeat-pack   the bundle
 *   metadata/<id>.json            its record (the truth)
 *   index.json                    all records, rebuilt after each change
 *
 * It is built against the installed headers only. It shows what a
 * connector must do: fill every slot of struct sm_vault, stage data
 * before the before_commit gate, and write each file atomically. On pull
 * it checks size and SHA-256, and it reports failures as a negative
 * sm_error_code with sm_error_set(). Writers take an flock() on ".lock".
 *
 *   make            (see Makefile; needs pkg-config skillmeat and libcrypto)
 *   skillmeat vault add NAME example-dir /some/directory
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include <skillmeat/error.h>
#include <skillmeat/plugin.h>
#include <skillmeat/vault.h>

SM_PLUGIN_DECLARE();

typedef struct dir_vault {
	sm_vault parent;               /* first, so a sm_vault * is a dir_vault * */
	const sm_vault_config *config; /* borrowed: outlives the connector */
	const sm_callbacks *callbacks; /* borrowed, too */
	char *root;
} dir_vault;

/* Returns "<root>/<dir><id><suffix>" as a new string, or NULL after sm_error_set(). */
static char *vault_path(const dir_vault *dv, const char *dir, const char *id, const char *suffix)
{
	char *path = NULL;

	if (asprintf(&path, "%s/%s%s%s", dv->root, dir, id, suffix) < 0) {
		sm_error_set(SM_ENOMEM, "out of memory");
		return NULL;
	}
	return path;
}

/* Copies `in` from offset 0 to `out` (or only hashes when out < 0). */
static int copy_hash(int in, int out, char hex[65], uint64_t *size)
{
	unsigned char buffer[65536], digest[32];
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	uint64_t done = 0;
	int rc = 0;

	if (!md || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
		rc = sm_error_set(SM_ENOMEM, "cannot start SHA-256");
		goto done;
	}
	for (;;) {
		ssize_t got = pread(in, buffer, sizeof(buffer), (off_t)done);

		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			rc = sm_error_set(SM_EIO, "cannot read bundle data: %s", strerror(errno));
			goto done;
		}
		if (got == 0)
			break;
		EVP_DigestUpdate(md, buffer, (size_t)got);
		for (ssize_t put = 0; out >= 0 && put < got;) {
			ssize_t n = write(out, buffer + put, (size_t)(got - put));

			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0) {
				rc = sm_error_set(SM_EIO, "cannot write bundle data: %s", strerror(errno));
				goto done;
			}
			put += n;
		}
		done += (uint64_t)got;
	}
	EVP_DigestFinal_ex(md, digest, NULL);
	for (int i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", digest[i]);
	*size = done;
done:
	EVP_MD_CTX_free(md);
	return rc;
}

/* Writes `text` to `path` atomically: a temporary file, fsync, rename. */
static int write_atomic(const char *path, const char *text)
{
	char *tmp = NULL;
	size_t len = strlen(text);
	int fd, rc = 0;

	if (asprintf(&tmp, "%s.tmp", path) < 0)
		return sm_error_set(SM_ENOMEM, "out of memory");
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0 || write(fd, text, len) != (ssize_t)len || fsync(fd) != 0)
		rc = sm_error_set(SM_EIO, "cannot write '%s': %s", tmp, strerror(errno));
	if (fd >= 0)
		close(fd);
	if (!rc && rename(tmp, path) != 0)
		rc = sm_error_set(SM_EIO, "cannot rename '%s': %s", tmp, strerror(errno));
	if (rc)
		unlink(tmp);
	free(tmp);
	return rc;
}

/* Reads metadata/<id>.json into a record; SM_ENOTFOUND when absent. */
static int read_record(dir_vault *dv, const char *id, sm_record **out)
{
	char *path = vault_path(dv, "metadata/", id, ".json"), *text = NULL;
	ssize_t len = -1;
	struct stat st;
	int fd = -1, rc;

	*out = NULL;
	if (!path)
		return SM_ENOMEM;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rc = errno == ENOENT
			? sm_error_set(SM_ENOTFOUND, "bundle '%s' not found in vault '%s'", id,
				       dv->config->name)
			: sm_error_set(SM_EIO, "cannot open '%s': %s", path, strerror(errno));
		goto done;
	}
	/* sm_record_from_text() rejects records over 1 MiB, so read no more */
	if (fstat(fd, &st) == 0 && st.st_size <= (1 << 20) && (text = malloc((size_t)st.st_size + 1)))
		len = pread(fd, text, (size_t)st.st_size, 0);
	if (len != (text ? (ssize_t)st.st_size : -2))
		rc = sm_error_set(SM_EIO, "cannot read '%s'", path);
	else
		rc = sm_record_from_text(text, (size_t)len, path, out);
done:
	if (fd >= 0)
		close(fd);
	free(text);
	free(path);
	return rc;
}

static int compare_records(const void *a, const void *b)
{
	const sm_record *x = *(sm_record *const *)a, *y = *(sm_record *const *)b;

	return strcmp(x->bundle_id, y->bundle_id);
}

/* Reads every metadata file that passes `filter`, sorted by id. */
static int read_all(dir_vault *dv, const sm_list_filter *filter, sm_record_list *out)
{
	char *dir_path = vault_path(dv, "metadata", "", "");
	DIR *dir = dir_path ? opendir(dir_path) : NULL;
	struct dirent *entry;
	int rc = 0;

	if (!dir) {
		rc = dir_path ? sm_error_set(SM_EIO, "cannot list '%s'", dir_path) : SM_ENOMEM;
		goto done;
	}
	while (!rc && (entry = readdir(dir)) != NULL) {
		size_t len = strlen(entry->d_name);
		sm_record *record = NULL;
		char id[256];

		/* "<id>.json"; skips ".", ".." and temporary files */
		if (len <= 5 || len - 5 >= sizeof(id) || strcmp(entry->d_name + len - 5, ".json") != 0)
			continue;
		memcpy(id, entry->d_name, len - 5);
		id[len - 5] = '\0';
		if (!sm_bundle_id_valid(id))
			continue;
		rc = read_record(dv, id, &record);
		if (!rc && sm_list_filter_match(filter, record))
			rc = sm_record_list_append(out, record);
		else
			sm_record_free(record);
	}
	if (!rc && out->count > 1)
		qsort(out->items, out->count, sizeof(out->items[0]), compare_records);
done:
	if (dir)
		closedir(dir);
	free(dir_path);
	if (rc)
		sm_record_list_release(out);
	return rc;
}

/* Rewrites index.json from the metadata files. */
static int write_index(dir_vault *dv)
{
	sm_record_list all = { 0 };
	char *text = NULL, *path = vault_path(dv, "index.json", "", "");
	int rc = path ? read_all(dv, NULL, &all) : SM_ENOMEM;

	if (!rc)
		rc = sm_index_to_text(&all, &text);
	if (!rc)
		rc = write_atomic(path, text);
	free(text);
	free(path);
	sm_record_list_release(&all);
	return rc;
}

/* Takes the vault's writer lock; returns the descriptor or -1. */
static int lock_vault(dir_vault *dv)
{
	char *path = vault_path(dv, ".lock", "", "");
	int fd = path ? open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644) : -1;

	if (fd >= 0 && flock(fd, LOCK_EX) != 0) {
		close(fd);
		fd = -1;
	}
	if (fd < 0)
		sm_error_set(SM_EIO, "cannot lock vault '%s'", dv->config->name);
	free(path);
	return fd;
}

/* Replaces a string member of a record. */
static int set_text(char **member, const char *value)
{
	char *copy = strdup(value);

	if (!copy)
		return sm_error_set(SM_ENOMEM, "out of memory");
	free(*member);
	*member = copy;
	return 0;
}

static int dir_open(sm_vault *self)
{
	dir_vault *dv = (dir_vault *)self;
	const char *dirs[] = { "", "bundles", "metadata" };

	for (size_t i = 0; i < 3; i++) {
		char *path = vault_path(dv, dirs[i], "", "");
		int failed = !path || (mkdir(path, 0755) != 0 && errno != EEXIST);

		if (failed && path)
			sm_error_set(SM_EIO, "cannot create '%s': %s", path, strerror(errno));
		free(path);
		if (failed)
			return path ? SM_EIO : SM_ENOMEM;
	}
	return 0;
}

static int dir_push(sm_vault *self, int fd, sm_record *record, sm_push_opts *opts)
{
	dir_vault *dv = (dir_vault *)self;
	const char *id = record->bundle_id;
	char *tmp = NULL, *data = NULL, *meta = NULL, *text = NULL, hex[65], now[32];
	sm_record *old = NULL;
	uint64_t size = 0;
	time_t seconds = time(NULL);
	struct tm tm;
	int out = -1, lock = -1, rc;

	tmp = vault_path(dv, "bundles/.staging-", id, "");
	data = vault_path(dv, "bundles/", id, ".skillmeat-pack");
	meta = vault_path(dv, "metadata/", id, ".json");
	if (!tmp || !data || !meta) {
		rc = SM_ENOMEM;
		goto done;
	}

	/* stage the data outside the lock, hashing it on the way */
	out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (out < 0) {
		rc = sm_error_set(SM_EIO, "cannot create '%s': %s", tmp, strerror(errno));
		goto done;
	}
	rc = copy_hash(fd, out, hex, &size);
	if (!rc && fsync(out) != 0)
		rc = sm_error_set(SM_EIO, "cannot sync '%s': %s", tmp, strerror(errno));
	if (rc)
		goto done;

	/* the library finishes verifying the bundle here; nothing is visible yet */
	if (opts->before_commit && (rc = opts->before_commit(opts->payload)) != 0)
		goto done;

	lock = lock_vault(dv);
	if (lock < 0) {
		rc = SM_EIO;
		goto done;
	}
	rc = read_record(dv, id, &old);
	if (rc == 0) {
		const char *stored = sm_record_metadata_get(old, "sha256");

		if (stored && strcmp(stored, hex) == 0) {
			opts->unchanged = 1;
			goto done;
		}
		if (!opts->force) {
			rc = sm_error_set(SM_EEXISTS, "bundle '%s' already exists in vault '%s'; "
					  "push a new version or use --force", id, dv->config->name);
			goto done;
		}
		/* no reader may pair the old record with the new data */
		unlink(meta);
	} else if (rc != SM_ENOTFOUND) {
		goto done;
	}

	gmtime_r(&seconds, &tm);
	strftime(now, sizeof(now), "%Y-%m-%dT%H:%M:%S", &tm);
	rc = set_text(&record->uploaded_at, now);
	if (!rc)
		rc = set_text(&record->vault_path, data);
	if (!rc)
		rc = sm_record_metadata_set(record, "sha256", hex);
	if (!rc)
		rc = sm_record_to_text(record, &text);
	if (rc)
		goto done;
	if (rename(tmp, data) != 0) {
		rc = sm_error_set(SM_EIO, "cannot rename '%s': %s", tmp, strerror(errno));
		goto done;
	}
	rc = write_atomic(meta, text);
	if (!rc)
		rc = write_index(dv);
done:
	if (out >= 0)
		close(out);
	if (tmp)
		unlink(tmp);  /* fails harmlessly once renamed */
	if (lock >= 0)
		close(lock);
	sm_record_free(old);
	free(text);
	free(tmp);
	free(data);
	free(meta);
	return rc;
}

static int dir_pull(sm_vault *self, const char *id, int fd, sm_record **out)
{
	dir_vault *dv = (dir_vault *)self;
	sm_record *record = NULL;
	const char *expected;
	char hex[65];
	uint64_t size = 0;
	int in = -1, rc;

	*out = NULL;
	rc = read_record(dv, id, &record);
	if (rc)
		return rc;
	in = open(record->vault_path, O_RDONLY | O_CLOEXEC);
	if (in < 0) {
		rc = sm_error_set(SM_EIO, "cannot open '%s': %s", record->vault_path, strerror(errno));
		goto done;
	}
	rc = copy_hash(in, fd, hex, &size);
	if (rc)
		goto done;
	expected = sm_record_metadata_get(record, "sha256");
	if (size != record->size_bytes || (expected && strcmp(expected, hex) != 0)) {
		rc = sm_error_set(SM_EINTEGRITY, "bundle '%s' in vault '%s' does not match its "
				  "record", id, dv->config->name);
		goto done;
	}
	*out = record;
	record = NULL;
done:
	if (in >= 0)
		close(in);
	sm_record_free(record);
	return rc;
}

static int dir_list(sm_vault *self, const sm_list_filter *filter, sm_record_list *out)
{
	return read_all((dir_vault *)self, filter, out);
}

static int dir_delete(sm_vault *self, const char *id)
{
	dir_vault *dv = (dir_vault *)self;
	sm_record *record = NULL;
	char *meta = vault_path(dv, "metadata/", id, ".json");
	int lock = -1, rc;

	if (!meta)
		return SM_ENOMEM;
	lock = lock_vault(dv);
	rc = lock < 0 ? SM_EIO : read_record(dv, id, &record);
	if (!rc && unlink(meta) != 0)
		rc = sm_error_set(SM_EIO, "cannot delete '%s': %s", meta, strerror(errno));
	if (!rc)
		rc = write_index(dv);
	if (!rc)
		unlink(record->vault_path);
	if (lock >= 0)
		close(lock);
	sm_record_free(record);
	free(meta);
	return rc;
}

static int dir_exists(sm_vault *self, const char *id, int *found)
{
	dir_vault *dv = (dir_vault *)self;
	char *meta = vault_path(dv, "metadata/", id, ".json");
	struct stat st;

	if (!meta)
		return SM_ENOMEM;
	*found = stat(meta, &st) == 0;
	free(meta);
	return 0;
}

static int dir_get_metadata(sm_vault *self, const char *id, sm_record **out)
{
	return read_record((dir_vault *)self, id, out);
}

static void dir_close(sm_vault *self)
{
	dir_vault *dv = (dir_vault *)self;

	free(dv->root);
	free(dv);
}

/* The constructor: checks the configuration, touches nothing on disk. */
static int dir_new(sm_vault **out, const sm_vault_config *config, const sm_callbacks *callbacks)
{
	const char *location = sm_vault_config_get(config, "location");
	dir_vault *dv;

	*out = NULL;
	if (!location || location[0] != '/')
		return sm_error_set(SM_EINVALID, "vault '%s' needs an absolute directory as its "
				    "'location'", config->name);
	dv = calloc(1, sizeof(*dv));
	if (!dv || !(dv->root = strdup(location))) {
		free(dv);
		return sm_error_set(SM_ENOMEM, "out of memory");
	}
	dv->parent.abi_version = SM_VAULT_ABI_VERSION;
	dv->parent.type = "example-dir";
	dv->parent.caps = SM_VAULT_CAN_READ | SM_VAULT_CAN_WRITE | SM_VAULT_CAN_DELETE;
	dv->parent.open = dir_open;
	dv->parent.push = dir_push;
	dv->parent.pull = dir_pull;
	dv->parent.list = dir_list;
	dv->parent.delete_bundle = dir_delete;
	dv->parent.exists = dir_exists;
	dv->parent.get_metadata = dir_get_metadata;
	dv->parent.close = dir_close;
	dv->config = config;
	dv->callbacks = callbacks;
	*out = &dv->parent;
	return 0;
}

SM_PLUGIN_EXPORT int skillmeat_plugin_init(const sm_plugin_host *host)
{
	return host->register_vault(host, "example-dir", SM_VAULT_ABI_VERSION, dir_new);
}
