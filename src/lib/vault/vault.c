/*
 * The connector registry and the operations every connector shares:
 * verifying before a push, staging and verifying a pull, filtering lists.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "skillmeat/bundle.h"
#include "skillmeat/plugin.h"
#include "skillmeat/vault.h"
#include "util/util.h"
#include "vault/connectors.h"
#include "vault/plugins.h"
#include "vault/pull_follow.h"
#include "vault/pull_watch.h"
#include "vault/record.h"

#define MAX_REGISTERED 32

typedef struct registration {
	char *type;
	sm_vault_ctor ctor;
} registration;

static const registration builtins[] = {
	{ "local", sm_vault_local_new },
	{ "s3", sm_vault_s3_new },
	{ "http", sm_vault_http_new },
	{ "git", sm_vault_git_new },
};

static registration registered[MAX_REGISTERED];
static size_t nregistered;
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;

int sm_vault_register(const char *type, unsigned int abi_version, sm_vault_ctor ctor)
{
	int rc = 0;
	size_t i;

	if (abi_version != SM_VAULT_ABI_VERSION)
		return sm_error_set(SM_EINVALID,
				    "connector '%s' was built for vault ABI %u, this library has ABI %u",
				    type ? type : "", abi_version, SM_VAULT_ABI_VERSION);
	if (!type || !*type || !ctor || sm_has_control_chars(type))
		return sm_error_set(SM_EINVALID, "invalid connector registration");

	pthread_mutex_lock(&registry_lock);
	for (i = 0; i < nregistered; i++)
		if (strcmp(registered[i].type, type) == 0)
			break;
	if (i == nregistered && nregistered == MAX_REGISTERED) {
		rc = sm_error_set(SM_EINVALID, "too many connectors registered (limit %d)", MAX_REGISTERED);
	} else if (i == nregistered) {
		registered[i].type = sm_strdup(type);
		if (!registered[i].type)
			rc = SM_ENOMEM;
		else
			nregistered++;
	}
	if (!rc)
		registered[i].ctor = ctor;
	pthread_mutex_unlock(&registry_lock);
	return rc;
}

int sm_vault_unregister(const char *type)
{
	int rc = sm_error_set(SM_ENOTFOUND, "connector type '%s' is not registered", type);

	pthread_mutex_lock(&registry_lock);
	for (size_t i = 0; i < nregistered; i++) {
		if (strcmp(registered[i].type, type) == 0) {
			free(registered[i].type);
			registered[i] = registered[--nregistered];
			rc = 0;
			break;
		}
	}
	pthread_mutex_unlock(&registry_lock);
	return rc;
}

char *sm_vault_types(void)
{
	sm_buf buf = SM_BUF_INIT(0);

	pthread_mutex_lock(&registry_lock);
	for (size_t i = 0; i < nregistered; i++)
		sm_buf_printf(&buf, "%s%s", buf.len ? ", " : "", registered[i].type);
	pthread_mutex_unlock(&registry_lock);
	for (size_t i = 0; i < sizeof(builtins) / sizeof(builtins[0]); i++)
		sm_buf_printf(&buf, "%s%s", buf.len ? ", " : "", builtins[i].type);
	return sm_buf_take(&buf);
}

static sm_vault_ctor find_ctor(const char *type)
{
	sm_vault_ctor ctor = NULL;

	pthread_mutex_lock(&registry_lock);
	for (size_t i = 0; i < nregistered && !ctor; i++)
		if (strcmp(registered[i].type, type) == 0)
			ctor = registered[i].ctor;
	pthread_mutex_unlock(&registry_lock);
	for (size_t i = 0; i < sizeof(builtins) / sizeof(builtins[0]) && !ctor; i++)
		if (strcmp(builtins[i].type, type) == 0)
			ctor = builtins[i].ctor;
	return ctor;
}

int sm_vault_type_known(const char *type)
{
	int known = 0;

	for (size_t i = 0; i < sizeof(builtins) / sizeof(builtins[0]); i++)
		if (strcmp(builtins[i].type, type) == 0)
			return 1;
	pthread_mutex_lock(&registry_lock);
	for (size_t i = 0; i < nregistered && !known; i++)
		if (strcmp(registered[i].type, type) == 0)
			known = 2;
	pthread_mutex_unlock(&registry_lock);
	return known;
}

int sm_vault_open(sm_vault **out, const sm_vault_config *config, const sm_callbacks *callbacks)
{
	static const sm_callbacks none;
	sm_vault_ctor ctor;
	sm_vault *vault = NULL;
	int rc;

	*out = NULL;
	ctor = find_ctor(config->type);
	/* plug-ins are loaded only for a type nothing else provides */
	if (!ctor && sm_plugins_load(callbacks) == 0)
		ctor = find_ctor(config->type);
	if (!ctor) {
		char *known = sm_vault_types();
		size_t failed = sm_plugins_failed();

		rc = sm_error_set(SM_EINVALID, "vault '%s' has unknown type '%s'; known types: %s%s",
				  config->name, config->type, known ? known : "",
				  failed ? "; some plug-ins failed to load (run 'skillmeat plugin "
				  "list')" : "");
		free(known);
		return rc;
	}
	rc = ctor(&vault, config, callbacks ? callbacks : &none);
	if (rc > 0 || rc < SM_EUNSUPPORTED) {
		/* not an sm_error_code: a plug-in broke the convention */
		if (vault && vault->close)
			vault->close(vault);
		return sm_error_set(SM_ERROR, "connector for type '%s' failed with code %d, "
				    "which is not a skillmeat error code", config->type, rc);
	}
	if (rc)
		return rc;
	if (!vault)
		return sm_error_set(SM_ERROR, "connector for type '%s' returned no vault",
				    config->type);
	if (vault->abi_version != SM_VAULT_ABI_VERSION) {
		if (vault && vault->close)
			vault->close(vault);
		return sm_error_set(SM_EINVALID, "connector for type '%s' has the wrong ABI version",
				    config->type);
	}
	if (config->read_only)
		vault->caps &= ~(unsigned)(SM_VAULT_CAN_WRITE | SM_VAULT_CAN_DELETE);
	rc = vault->open(vault);
	if (rc) {
		vault->close(vault);
		return rc;
	}
	*out = vault;
	return 0;
}

void sm_vault_close(sm_vault *vault)
{
	if (vault)
		vault->close(vault);
}

int sm_bundle_id_valid(const char *id)
{
	size_t len = id ? strlen(id) : 0;

	if (len == 0 || len > 200 || id[0] == '.' || strstr(id, ".."))
		return 0;
	for (const char *p = id; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
		      *p == '.' || *p == '_' || *p == '-'))
			return 0;
	return 1;
}

int sm_bundle_id(char **out, const char *name, const char *version)
{
	char *id = sm_asprintf("%s-v%s", name, version);

	*out = NULL;
	if (!id)
		return SM_ENOMEM;
	for (char *p = id; *p; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	if (!sm_bundle_id_valid(id)) {
		int rc = sm_error_set(SM_EINVALID,
				      "invalid bundle id '%s': use only a-z, 0-9, '.', '_' and '-', "
				      "no leading '.' and no '..'", id);
		free(id);
		return rc;
	}
	*out = id;
	return 0;
}

static int name_matches(const char *pattern, const char *name)
{
	if (strpbrk(pattern, "*?"))
		return fnmatch(pattern, name, FNM_CASEFOLD) == 0;
	return strcasestr(name, pattern) != NULL;
}

int sm_list_filter_match(const sm_list_filter *filter, const sm_record *record)
{
	if (!filter)
		return 1;
	if (filter->name && *filter->name && !name_matches(filter->name, record->name))
		return 0;
	for (size_t i = 0; i < filter->ntags; i++) {
		size_t j;

		for (j = 0; j < record->ntags; j++)
			if (strcmp(filter->tags[i], record->tags[j]) == 0)
				break;
		if (j == record->ntags)
			return 0;
	}
	return 1;
}

static int require(const sm_vault *vault, unsigned int cap, const char *what)
{
	if (vault->caps & cap)
		return 0;
	if (cap & (SM_VAULT_CAN_WRITE | SM_VAULT_CAN_DELETE))
		return sm_error_set(SM_EREADONLY, "cannot %s: the vault is read-only", what);
	return sm_error_set(SM_EUNSUPPORTED, "cannot %s: the '%s' connector does not support it",
			    what, vault->type);
}

/* The first mismatch that sm_bundle_verify() reported. */
typedef struct first_problem {
	char text[512];
	size_t count;
} first_problem;

static void keep_first_problem(const char *problem, void *payload)
{
	first_problem *first = payload;

	if (first->count++ == 0)
		snprintf(first->text, sizeof(first->text), "%s", problem);
}

/*
 * Verifies a bundle like sm_bundle_verify_followed(), and on a mismatch appends the
 * first problem to the message, so the user learns which artifact differs.
 */
static int verify_naming_problem(sm_bundle *bundle, const sm_zip_follower *followed)
{
	first_problem first = { "", 0 };
	int rc = sm_bundle_verify_followed(bundle, followed, keep_first_problem, &first, NULL);
	char message[1024];

	if (rc != SM_EINTEGRITY || first.count == 0)
		return rc;
	snprintf(message, sizeof(message), "%s", sm_error_message());
	return sm_error_set(rc, "%s; first problem: %s", message, first.text);
}

/* The background verification of a bundle being pushed. */
typedef struct verify_job {
	sm_bundle *bundle;
	pthread_t thread;
	int started;
	int rc;
	char message[2048];
} verify_job;

static void *verify_thread(void *arg)
{
	verify_job *job = arg;

	job->rc = verify_naming_problem(job->bundle, NULL);
	if (job->rc)
		snprintf(job->message, sizeof(job->message), "%s", sm_error_message());
	return NULL;
}

/* Waits for the verification; the connector calls it before committing. */
static int verify_gate(void *payload)
{
	verify_job *job = payload;

	if (job->started) {
		pthread_join(job->thread, NULL);
		job->started = 0;
	}
	if (job->rc)
		return sm_error_set(job->rc, "%s", job->message);
	return 0;
}

static int record_from_manifest(const sm_manifest *manifest, const char *version,
				uint64_t size, sm_record **out)
{
	sm_record *record = calloc(1, sizeof(*record));
	int rc;

	*out = NULL;
	if (!record)
		return sm_error_set(SM_ENOMEM, "out of memory");
	rc = sm_bundle_id(&record->bundle_id, manifest->name, version);
	if (rc)
		goto done;
	record->name = sm_strdup(manifest->name);
	record->version = sm_strdup(version);
	record->description = sm_strdup(manifest->description);
	record->author = sm_strdup(manifest->author);
	record->created_at = sm_strdup(manifest->created_at);
	record->uploaded_at = sm_strdup("");
	record->bundle_hash = sm_strdup(manifest->bundle_hash);
	record->vault_path = sm_strdup("");
	record->size_bytes = size;
	record->tags = calloc(manifest->ntags + 1, sizeof(char *));
	if (!record->name || !record->version || !record->description || !record->author ||
	    !record->created_at || !record->uploaded_at || !record->bundle_hash ||
	    !record->vault_path || !record->tags) {
		rc = sm_error_set(SM_ENOMEM, "out of memory");
		goto done;
	}
	for (size_t i = 0; i < manifest->ntags; i++) {
		if (!(record->tags[i] = sm_strdup(manifest->tags[i]))) {
			rc = SM_ENOMEM;
			goto done;
		}
		record->ntags++;
	}
done:
	if (rc) {
		sm_record_free(record);
		return rc;
	}
	*out = record;
	return 0;
}

/*
 * Rejects a bundle whose record would exceed what readers accept, so a
 * push never stores metadata that pull and info then refuse. The margin
 * covers the fields the connector adds (upload time, path, SHA-256).
 */
static int check_record_size(const sm_record *record)
{
	json_t *object = sm_record_to_json(record);
	char *text = object ? json_dumps(object, JSON_INDENT(2)) : NULL;
	size_t len = text ? strlen(text) : 0;

	json_decref(object);
	free(text);
	if (!len)
		return sm_error_set(SM_ENOMEM, "cannot serialise the record");
	if (len > SM_RECORD_MAX_BYTES - 8192)
		return sm_error_set(SM_EINVALID, "the bundle's description, author and tags take %zu bytes "
				    "in the vault record, more than the limit of %d bytes; shorten them",
				    len, SM_RECORD_MAX_BYTES - 8192);
	return 0;
}

int sm_vault_push(sm_vault *vault, const char *bundle_path, const char *version,
		  sm_push_opts *opts, sm_record **out)
{
	sm_push_opts push_opts = { 0 };
	verify_job job = { 0 };
	sm_bundle *bundle = NULL;
	sm_record *record = NULL;
	int rc;

	if (out)
		*out = NULL;
	if ((rc = require(vault, SM_VAULT_CAN_WRITE, "push")) != 0)
		return rc;
	if (version && (!*version || sm_has_control_chars(version)))
		return sm_error_set(SM_EINVALID, "invalid version '%s'", version);

	/* the manifest is checked now; the hashes are checked while copying */
	rc = sm_bundle_open(&bundle, bundle_path);
	if (rc)
		return rc;
	rc = record_from_manifest(sm_bundle_manifest(bundle),
				  version ? version : sm_bundle_manifest(bundle)->bundle_version,
				  sm_bundle_archive_size(bundle), &record);
	if (!rc)
		rc = check_record_size(record);
	if (rc)
		goto done;

	job.bundle = bundle;
	if (pthread_create(&job.thread, NULL, verify_thread, &job) == 0) {
		job.started = 1;
	} else {
		verify_thread(&job);
	}
	if (opts)
		push_opts = *opts;
	push_opts.before_commit = verify_gate;
	push_opts.payload = &job;

	push_opts.unchanged = 0;
	/* copy from the descriptor that was verified, never from the path again */
	rc = vault->push(vault, sm_bundle_fd(bundle), record, &push_opts);
	if (opts)
		opts->unchanged = push_opts.unchanged;
	/* the connector may fail before reaching the gate: still join the thread */
	if (job.started)
		verify_gate(&job);
	if (rc)
		goto done;
	if (out) {
		*out = record;
		record = NULL;
	}
done:
	sm_record_free(record);
	sm_bundle_free(bundle);
	return rc;
}

static int same_file_contents(const char *a, const char *b, int *same)
{
	unsigned char ha[32], hb[32];
	uint64_t la, lb;
	int rc;

	*same = 0;
	if ((rc = sm_sha256_file(a, ha, &la)) != 0 || (rc = sm_sha256_file(b, hb, &lb)) != 0)
		return rc;
	*same = la == lb && memcmp(ha, hb, 32) == 0;
	return 0;
}

/* Checks a pulled file: its own hashes and that it is the recorded bundle. */
static int verify_pulled(const char *path, const sm_record *record,
			 const sm_zip_follower *followed)
{
	sm_bundle *bundle = NULL;
	/* messages name the bundle, not the staging file (/proc/self/fd/N) */
	int rc = sm_bundle_open_as(&bundle, path, record->bundle_id);

	if (rc) {
		rc = sm_error_wrap(SM_EINTEGRITY, "bundle '%s' in the vault is damaged",
				   record->bundle_id);
		goto done;
	}
	rc = verify_naming_problem(bundle, followed);
	if (rc)
		goto done;
	if (*record->bundle_hash &&
	    strcmp(record->bundle_hash, sm_bundle_manifest(bundle)->bundle_hash) != 0)
		rc = sm_error_set(SM_EINTEGRITY,
				  "bundle '%s' in the vault does not match its metadata: "
				  "bundle_hash %s, recorded %s", record->bundle_id,
				  sm_bundle_manifest(bundle)->bundle_hash, record->bundle_hash);
done:
	sm_bundle_free(bundle);
	return rc;
}

/* The watch of the pull that runs in this thread (pull_watch.h). */
static _Thread_local sm_pull_watch *current_watch;

void sm_pull_watch_set(sm_pull_watch *watch)
{
	current_watch = watch;
}

sm_pull_watch *sm_pull_watch_take(void)
{
	if (current_watch)
		atomic_store(&current_watch->connector_reports, 1);
	return current_watch;
}

void sm_pull_watch_wrote(sm_pull_watch *watch, uint64_t offset, uint64_t len)
{
	uint64_t ready;

	if (!watch)
		return;
	/* one writer at a time, so reading and then storing the mark is safe */
	ready = atomic_load_explicit(&watch->ready, memory_order_relaxed);
	if (offset < ready)
		atomic_store(&watch->rewritten, 1);
	/* a write that starts at or below the mark and ends past it extends the mark */
	if (offset <= ready && offset + len > ready)
		atomic_store_explicit(&watch->ready, offset + len, memory_order_release);
}

void sm_pull_watch_advance(sm_pull_watch *watch, uint64_t ready)
{
	if (watch && ready > atomic_load_explicit(&watch->ready, memory_order_relaxed))
		atomic_store_explicit(&watch->ready, ready, memory_order_release);
}

/*
 * Settles what the follower of a finished download may stand for. A
 * connector that took the watch left the SHA-256 check to the library,
 * which is done here: from the follower when nothing was written twice,
 * else by reading the file again. A connector that did not take it
 * checked the file itself, so the follower stands for the file only when
 * it read the recorded hash. Sets *followed to NULL when it cannot be used.
 */
static int check_download(const sm_record *record, const char *path, const sm_pull_watch *watch,
			  const sm_zip_follower **followed, const char *followed_sha)
{
	const char *expected = sm_record_metadata_get(record, "sha256");
	unsigned char digest[32];
	char computed[65];
	const char *actual = followed_sha;
	int rc;

	if (!atomic_load(&watch->connector_reports)) {
		if (!expected || !followed_sha || strcasecmp(followed_sha, expected) != 0)
			*followed = NULL;
		return 0;
	}
	if (atomic_load(&watch->rewritten) || !*followed) {
		*followed = NULL;
		if (!expected)
			return 0;
		if ((rc = sm_sha256_file(path, digest, NULL)) != 0)
			return rc;
		sm_hex(digest, sizeof(digest), computed);
		actual = computed;
	}
	if (expected && strcasecmp(actual, expected) != 0)
		return sm_error_set(SM_EINTEGRITY, "bundle '%s' in the vault is corrupt: SHA-256 %s, "
				    "its metadata says %s", record->bundle_id, actual, expected);
	return 0;
}

/* An fsync() run in a second thread; `error` is its errno, or 0. */
typedef struct sync_job {
	int fd;
	int error;
} sync_job;

static void *fsync_thread(void *arg)
{
	sync_job *job = arg;

	job->error = fsync(job->fd) == 0 ? 0 : errno;
	return NULL;
}

int sm_vault_pull(sm_vault *vault, const char *bundle_id, const char *out_dir,
		  int force, char **out_path)
{
	char *dest = NULL, *tmp = NULL, *name = NULL;
	sm_record *record = NULL;
	sync_job syncing = { -1, 0 };
	sm_pull_watch watch = { 0 };
	sm_pull_follow *follow = NULL;
	const sm_zip_follower *followed = NULL;
	const char *followed_sha = NULL;
	int anonymous = 0;
	pthread_t sync_thread;
	int sync_started;
	struct stat st;
	int fd = -1, found = 0, rc;

	if (out_path)
		*out_path = NULL;
	if ((rc = require(vault, SM_VAULT_CAN_READ, "pull")) != 0)
		return rc;
	if (!sm_bundle_id_valid(bundle_id))
		return sm_error_set(SM_EINVALID, "invalid bundle id '%s'", bundle_id);
	if (!*out_dir || sm_has_control_chars(out_dir))
		return sm_error_set(SM_EINVALID, "invalid output directory '%s'", out_dir);

	/* a missing bundle must not leave a new output directory behind */
	rc = vault->exists(vault, bundle_id, &found);
	if (!rc && !found)
		rc = sm_error_set(SM_ENOTFOUND, "bundle '%s' not found in the vault; run 'skillmeat "
				  "vault ls' to see what it holds", bundle_id);
	if (rc)
		return rc;
	if ((rc = sm_mkdir_p(out_dir, 0755)) != 0)
		return rc;
	name = sm_asprintf("%s.skillmeat-pack", bundle_id);
	dest = name ? sm_path_join(out_dir, name) : NULL;
	if (!dest) {
		rc = SM_ENOMEM;
		goto done;
	}
	if (lstat(dest, &st) == 0 && !S_ISREG(st.st_mode)) {
		rc = sm_error_set(SM_EEXISTS, "'%s' exists and is not a regular file", dest);
		goto done;
	}

	rc = sm_staging_open(out_dir, dest, &tmp, &fd, &anonymous);
	if (rc)
		goto done;
	/* a second thread verifies what the connector has written so far */
	rc = sm_pull_follow_start(&follow, fd, &watch);
	if (rc)
		goto done;
	sm_pull_watch_set(&watch);
	rc = vault->pull(vault, bundle_id, fd, &record);
	sm_pull_watch_set(NULL);
	followed = sm_pull_follow_finish(follow, rc == 0, &followed_sha);
	if (rc)
		goto done;
	rc = check_download(record, tmp, &watch, &followed, followed_sha);
	if (rc)
		goto done;

	/* the disk flush and the verification overlap: both take about as long */
	syncing.fd = fd;
	sync_started = pthread_create(&sync_thread, NULL, fsync_thread, &syncing) == 0;
	if (!sync_started)
		fsync_thread(&syncing);
	rc = verify_pulled(tmp, record, followed);
	if (sync_started)
		pthread_join(sync_thread, NULL);
	if (!rc && syncing.error)
		rc = sm_error_set_errno(SM_EIO, syncing.error, "cannot sync '%s'", tmp);
	if (rc)
		goto done;

	if (lstat(dest, &st) == 0) {
		int same;

		if ((rc = same_file_contents(tmp, dest, &same)) != 0)
			goto done;
		if (same)
			goto done; /* already there: keep the existing file */
		if (!force) {
			rc = sm_error_set(SM_EEXISTS, "'%s' already exists with different contents; "
					  "use --force to replace it", dest);
			goto done;
		}
	}
	if (force) {
		rc = sm_staging_replace(tmp, anonymous, dest);
		if (rc)
			goto done;
	} else if (linkat(AT_FDCWD, tmp, AT_FDCWD, dest, AT_SYMLINK_FOLLOW) != 0) {
		/* link() never replaces: a file that appeared meanwhile is kept */
		rc = errno == EEXIST
			? sm_error_set(SM_EEXISTS, "'%s' already exists; use --force to replace it", dest)
			: sm_error_set_errno(SM_EIO, errno, "cannot create '%s'", dest);
		goto done;
	}
	rc = sm_fsync_parent(dest);
done:
	sm_pull_follow_free(follow);
	if (fd >= 0)
		close(fd);
	if (tmp && !anonymous)
		unlink(tmp);
	if (!rc && out_path) {
		*out_path = dest;
		dest = NULL;
	}
	free(tmp);
	free(dest);
	free(name);
	sm_record_free(record);
	return rc;
}

int sm_vault_list(sm_vault *vault, const sm_list_filter *filter, sm_record_list *out)
{
	int rc;

	out->items = NULL;
	out->count = 0;
	if ((rc = require(vault, SM_VAULT_CAN_READ, "list")) != 0)
		return rc;
	return vault->list(vault, filter, out);
}

int sm_vault_delete(sm_vault *vault, const char *bundle_id)
{
	int rc;

	if ((rc = require(vault, SM_VAULT_CAN_DELETE, "delete")) != 0)
		return rc;
	if (!sm_bundle_id_valid(bundle_id))
		return sm_error_set(SM_EINVALID, "invalid bundle id '%s'", bundle_id);
	return vault->delete_bundle(vault, bundle_id);
}

int sm_vault_info(sm_vault *vault, const char *bundle_id, sm_record **out)
{
	int rc;

	*out = NULL;
	if ((rc = require(vault, SM_VAULT_CAN_READ, "read")) != 0)
		return rc;
	if (!sm_bundle_id_valid(bundle_id))
		return sm_error_set(SM_EINVALID, "invalid bundle id '%s'", bundle_id);
	return vault->get_metadata(vault, bundle_id, out);
}
