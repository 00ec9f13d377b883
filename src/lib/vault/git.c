/*
 * The git vault: bundles stored on one branch of a git repository, in the
 * common layout (bundles/<id>.skillmeat-pack, metadata/<id>.json,
 * index.json), driven through the git program.
 *
 * Each vault has a cache under $SKILLMEAT_HOME/cache/git/: a bare, shallow
 * (depth 1), blobless partial clone of the vault's branch only. Reading
 * fetches the branch tip (commit and trees, no file contents) and then
 * only the blobs it needs: index.json for a listing, one metadata file for
 * info, one bundle for a pull. A push writes the new blobs, builds the new
 * trees with `git mktree` and the commit with `git commit-tree`, and pushes
 * the commit without a working tree. A rejected push is rebuilt on the new
 * tip and tried again, a bounded number of times; nothing is force-pushed.
 *
 * The cache is locked with flock() for the whole operation and rebuilt
 * when git reports it broken.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "config/sharing.h"
#include "vault/connectors.h"
#include "vault/git_internal.h"
#include "vault/git_vault.h"
#include "vault/record.h"

#define BUNDLE_SUFFIX ".skillmeat-pack"
/*
 * Attempts of a push or delete that loses races against other writers.
 * Four processes pushing back to back over SSH on one
 * 2-core machine (tests/e2e/t112-git-concurrent.sh) took up to 15, so this
 * leaves room.
 */
#define PUSH_ATTEMPTS 30
/* Largest output of ls-tree or cat-file --batch read into memory. */
#define LISTING_MAX (SM_INDEX_MAX_BYTES + (size_t)64 * 1024 * 1024)
#define ERR_MAX (64 * 1024)
#define OID_MAX 65

/* One entry of a tree as `git ls-tree` prints it. */
typedef struct tree_entry {
	char mode[8];
	char type[8];
	char oid[OID_MAX];
	char *name;
} tree_entry;

typedef struct tree_list {
	tree_entry *items;
	size_t count;
} tree_list;

/* The branch tip and the trees the connector reads. */
typedef struct snapshot {
	char tip[OID_MAX];  /* "" when the branch does not exist yet */
	tree_list root;
	tree_list bundles;
	tree_list metadata;
} snapshot;

static void tree_list_release(tree_list *list)
{
	for (size_t i = 0; i < list->count; i++)
		free(list->items[i].name);
	free(list->items);
	list->items = NULL;
	list->count = 0;
}

static void snapshot_release(snapshot *snap)
{
	tree_list_release(&snap->root);
	tree_list_release(&snap->bundles);
	tree_list_release(&snap->metadata);
	snap->tip[0] = '\0';
}

static const tree_entry *tree_find(const tree_list *list, const char *name)
{
	for (size_t i = 0; i < list->count; i++)
		if (strcmp(list->items[i].name, name) == 0)
			return &list->items[i];
	return NULL;
}

/* Returns 1 for a regular file: not a tree, submodule or symbolic link. */
static int is_file(const tree_entry *entry)
{
	return entry && strcmp(entry->type, "blob") == 0 &&
	       (strcmp(entry->mode, "100644") == 0 || strcmp(entry->mode, "100755") == 0);
}

/* Runs git with `args` and fails with git's message unless it exits 0. */
static int git_ok(git_vault *gv, const char *what, const char *const *args, sm_buf *out)
{
	git_cmd cmd = { .args = args };
	sm_buf err = SM_BUF_INIT(ERR_MAX);
	int status, rc;

	rc = sm_git_run(gv, &cmd, out, &err, &status);
	if (!rc && status != 0)
		rc = sm_git_fail(gv, what, err.data);
	sm_buf_release(&err);
	return rc;
}

/* Copies the first line of `text` (an object id) into `oid`. */
static int take_oid(const char *text, char oid[OID_MAX], const char *what)
{
	size_t len = text ? strcspn(text, "\n") : 0;

	if (len < 40 || len >= OID_MAX || strspn(text, "0123456789abcdef") != len)
		return sm_error_set(SM_ERROR, "git printed no object id for %s", what);
	memcpy(oid, text, len);
	oid[len] = '\0';
	return 0;
}

/* Creates the bare partial clone, replacing whatever is at the cache path. */
static int create_cache(git_vault *gv)
{
	const char *init[] = { "init", "--quiet", "--bare", "--template=", gv->repo, NULL };
	git_cmd cmd = { .args = init, .no_repo = 1 };
	sm_buf err = SM_BUF_INIT(ERR_MAX);
	char *fetch_spec = sm_asprintf("+refs/heads/%s:%s", gv->branch, gv->tip_ref);
	const char *settings[][2] = {
		{ "core.repositoryformatversion", "1" },
		{ "remote.origin.url", gv->url },
		{ "remote.origin.fetch", fetch_spec },
		{ "remote.origin.promisor", "true" },
		{ "remote.origin.partialclonefilter", "blob:none" },
		{ "extensions.partialClone", "origin" },
	};
	int rc, status;

	if (!fetch_spec)
		return SM_ENOMEM;
	if ((rc = sm_remove_tree(gv->cache_dir)) != 0 || (rc = sm_mkdir_p(gv->cache_dir, 0700)) != 0)
		goto done;
	rc = sm_git_run(gv, &cmd, NULL, &err, &status);
	if (!rc && status != 0)
		rc = sm_git_fail(gv, "creating the cache repository", err.data);
	for (size_t i = 0; !rc && i < sizeof(settings) / sizeof(settings[0]); i++) {
		const char *args[] = { "config", settings[i][0], settings[i][1], NULL };

		rc = git_ok(gv, "configuring the cache repository", args, NULL);
	}
done:
	sm_buf_release(&err);
	free(fetch_spec);
	return rc;
}

/* Makes sure the cache is a usable repository, creating it when it is not. */
static int ensure_cache(git_vault *gv)
{
	const char *check[] = { "rev-parse", "--is-bare-repository", NULL };
	git_cmd cmd = { .args = check };
	sm_buf out = SM_BUF_INIT(4096);
	char *head = sm_path_join(gv->repo, "HEAD");
	struct stat st;
	int rc, status = 1;

	if (!head)
		return SM_ENOMEM;
	if (stat(head, &st) == 0) {
		rc = sm_git_run(gv, &cmd, &out, NULL, &status);
		if (rc)
			goto done;
	}
	if (status != 0 || !out.data || strncmp(out.data, "true", 4) != 0) {
		if (stat(head, &st) == 0)
			sm_git_notify(gv, SM_LOG_WARN, "the cache of vault '%s' at '%s' is not a usable "
				      "repository; rebuilding it", gv->config->name, gv->cache_dir);
		rc = create_cache(gv);
	}
done:
	sm_buf_release(&out);
	free(head);
	return rc;
}

/* A handle reuses its own fetch of the branch this long, so "pull" (exists, then pull) fetches once. */
#define FETCH_REUSE_SECONDS 5

static int fetched_recently(const git_vault *gv)
{
	struct timespec now;

	if (!gv->fetched || clock_gettime(CLOCK_MONOTONIC, &now) != 0)
		return 0;
	return now.tv_sec - gv->fetched_at.tv_sec < FETCH_REUSE_SECONDS;
}

static void mark_fetched(git_vault *gv)
{
	gv->fetched = clock_gettime(CLOCK_MONOTONIC, &gv->fetched_at) == 0;
}

/*
 * Fetches the branch tip into the cache: the commit and its trees, no
 * blobs, no history. A missing branch (an empty repository) is an empty
 * vault and leaves `tip` empty. Without `refetch`, a fetch this handle made
 * in the last FETCH_REUSE_SECONDS is used instead of a new one.
 */
static int fetch_tip(git_vault *gv, char tip[OID_MAX], int refetch)
{
	char *spec = sm_asprintf("+refs/heads/%s:%s", gv->branch, gv->tip_ref);
	char *verify = sm_asprintf("%s^{commit}", gv->tip_ref);
	const char *fetch[] = { "fetch", "--quiet", "--no-tags", "--no-write-fetch-head",
				"--no-recurse-submodules", "--depth=1", "--filter=blob:none",
				"origin", spec, NULL };
	const char *rev[] = { "rev-parse", "--verify", "--quiet", verify, NULL };
	const char *drop[] = { "update-ref", "-d", gv->tip_ref, NULL };
	git_cmd cmd = { .args = fetch };
	sm_buf err = SM_BUF_INIT(ERR_MAX), out = SM_BUF_INIT(4096);
	int rc, status, reuse;

	tip[0] = '\0';
	if (!spec || !verify) {
		rc = SM_ENOMEM;
		goto done;
	}
	reuse = !refetch && fetched_recently(gv);
	if (reuse)
		goto read_tip;
fetch:
	cmd.args = fetch;
	rc = sm_git_run(gv, &cmd, NULL, &err, &status);
	if (rc)
		goto done;
	if (status != 0) {
		if (err.data && strstr(err.data, "couldn't find remote ref")) {
			/* the branch does not exist (yet, or any more) */
			rc = git_ok(gv, "forgetting the deleted branch", drop, NULL);
			if (!rc)
				mark_fetched(gv);
			goto done;
		}
		rc = sm_git_fail(gv, "fetching the branch", err.data);
		goto done;
	}
	mark_fetched(gv);
read_tip:
	cmd.args = rev;
	rc = sm_git_run(gv, &cmd, &out, NULL, &status);
	if (!rc && status != 0 && reuse) {
		/* no branch, or another process rebuilt the cache since: ask the server */
		reuse = 0;
		goto fetch;
	}
	if (!rc && status != 0)
		rc = sm_error_set(SM_ERROR, "fetching the branch '%s' of vault '%s' left no commit "
				  "in the cache", gv->branch, gv->config->name);
	if (!rc)
		rc = take_oid(out.data, tip, "the branch tip");
done:
	sm_buf_release(&err);
	sm_buf_release(&out);
	free(spec);
	free(verify);
	return rc;
}

/* Parses `git ls-tree -z` output: "<mode> <type> <oid>\t<name>\0". */
static int parse_tree(const sm_buf *text, tree_list *out)
{
	const char *p = text->data, *end = text->data + text->len;
	size_t cap = 0;

	out->items = NULL;
	out->count = 0;
	while (p && p < end) {
		size_t len = strnlen(p, (size_t)(end - p));
		const char *tab = memchr(p, '\t', len);
		tree_entry entry = { 0 };

		if (!tab || sscanf(p, "%7s %7s %64s", entry.mode, entry.type, entry.oid) != 3)
			return sm_error_set(SM_ERROR, "cannot parse the output of git ls-tree");
		entry.name = sm_strndup(tab + 1, len - (size_t)(tab + 1 - p));
		if (!entry.name)
			return SM_ENOMEM;
		if (out->count == cap) {
			tree_entry *grown = realloc(out->items, (cap = cap ? cap * 2 : 64) * sizeof(*grown));

			if (!grown) {
				free(entry.name);
				return sm_error_set(SM_ENOMEM, "out of memory");
			}
			out->items = grown;
		}
		out->items[out->count++] = entry;
		p += len + 1;
	}
	return 0;
}

static int list_tree(git_vault *gv, const char *treeish, tree_list *out)
{
	const char *args[] = { "ls-tree", "-z", "--full-tree", treeish, NULL };
	sm_buf text = SM_BUF_INIT(LISTING_MAX);
	int rc = git_ok(gv, "listing a tree", args, &text);

	if (!rc)
		rc = parse_tree(&text, out);
	sm_buf_release(&text);
	if (rc)
		tree_list_release(out);
	return rc;
}

/* Fetches the tip (see fetch_tip) and lists the root, bundles/ and metadata/ trees. */
static int load_snapshot(git_vault *gv, snapshot *snap, int refetch)
{
	const tree_entry *sub;
	int rc;

	memset(snap, 0, sizeof(*snap));
	rc = fetch_tip(gv, snap->tip, refetch);
	if (rc || !snap->tip[0])
		return rc;
	rc = list_tree(gv, snap->tip, &snap->root);
	if (!rc && (sub = tree_find(&snap->root, "bundles")) && strcmp(sub->type, "tree") == 0)
		rc = list_tree(gv, sub->oid, &snap->bundles);
	if (!rc && (sub = tree_find(&snap->root, "metadata")) && strcmp(sub->type, "tree") == 0)
		rc = list_tree(gv, sub->oid, &snap->metadata);
	if (rc)
		snapshot_release(snap);
	return rc;
}

/*
 * Fetches blobs the cache lacks in one request. `git cat-file` would fetch
 * each missing blob on its own, one round trip apiece.
 */
static int prefetch_blobs(git_vault *gv, const char *const *oids, size_t count)
{
	const char *head[] = { "-c", "fetch.negotiationAlgorithm=noop", "fetch", "--quiet",
			       "--no-tags", "--no-write-fetch-head", "--no-recurse-submodules",
			       "--filter=blob:none", "origin" };
	/* 32 ids per fetch keeps the argument vector within sm_git_start()'s 128 slots */
	size_t nhead = sizeof(head) / sizeof(head[0]), batch = 32;
	int rc = 0;

	for (size_t start = 0; !rc && start < count; start += batch) {
		const char *args[sizeof(head) / sizeof(head[0]) + 33];
		size_t n = 0;

		for (size_t i = 0; i < nhead; i++)
			args[n++] = head[i];
		for (size_t i = start; i < count && i < start + batch; i++)
			args[n++] = oids[i];
		args[n] = NULL;
		rc = git_ok(gv, "fetching metadata files", args, NULL);
	}
	return rc;
}

/* lens[i] of a blob that read_blobs() skipped for its size. */
#define TOO_LARGE SIZE_MAX

/* Sets lens[i] to TOO_LARGE for each blob of more than `max` bytes, from `git cat-file --batch-check`. */
static int check_sizes(git_vault *gv, const char *const *oids, size_t count, size_t max,
		       size_t *lens)
{
	const char *args[] = { "cat-file", "--batch-check", NULL };
	git_cmd cmd = { .args = args };
	sm_buf input = SM_BUF_INIT(0), out = SM_BUF_INIT(0), err = SM_BUF_INIT(ERR_MAX);
	const char *p;
	int rc = 0, status;

	for (size_t i = 0; !rc && i < count; i++)
		rc = sm_buf_printf(&input, "%s\n", oids[i]);
	if (rc)
		goto done;
	cmd.input = input.data;
	cmd.input_len = input.len;
	rc = sm_git_run(gv, &cmd, &out, &err, &status);
	if (!rc && status != 0)
		rc = sm_git_fail(gv, "reading file sizes", err.data);
	p = out.data;
	for (size_t i = 0; !rc && i < count; i++) {
		unsigned long long size;
		char type[16];

		if (!p || !*p) {
			rc = sm_error_set(SM_ERROR, "git cat-file --batch-check stopped early");
			break;
		}
		/* "<oid> <type> <size>", or "<oid> missing", which read_blobs() reports */
		if (sscanf(p, "%*s %15s %llu", type, &size) == 2 && size > max)
			lens[i] = TOO_LARGE;
		p = strchr(p, '\n');
		if (p)
			p++;
	}
done:
	sm_buf_release(&input);
	sm_buf_release(&out);
	sm_buf_release(&err);
	return rc;
}

/*
 * Reads blobs with `git cat-file --batch`. `outs[i]` receives a new
 * NUL-terminated copy of blob `oids[i]` and `lens[i]` its size, or NULL
 * when git reports it missing, or NULL and TOO_LARGE when it has more than
 * `max` bytes. Sizes are checked first, so a huge blob is never unpacked.
 */
static int read_blobs(git_vault *gv, const char *const *oids, size_t count, size_t max,
		      char **outs, size_t *lens)
{
	const char *args[] = { "cat-file", "--batch", NULL };
	git_cmd cmd = { .args = args };
	sm_buf input = SM_BUF_INIT(0), out = SM_BUF_INIT(LISTING_MAX), err = SM_BUF_INIT(ERR_MAX);
	const char *p, *end;
	int rc = 0, status;

	for (size_t i = 0; i < count; i++) {
		outs[i] = NULL;
		lens[i] = 0;
	}
	rc = check_sizes(gv, oids, count, max, lens);
	for (size_t i = 0; !rc && i < count; i++)
		if (lens[i] != TOO_LARGE)
			rc = sm_buf_printf(&input, "%s\n", oids[i]);
	if (rc)
		goto done;
	cmd.input = input.data;
	cmd.input_len = input.len;
	rc = sm_git_run(gv, &cmd, &out, &err, &status);
	if (!rc && status != 0)
		rc = sm_git_fail(gv, "reading files", err.data);
	if (rc)
		goto done;
	p = out.data;
	end = out.data + out.len;
	for (size_t i = 0; i < count; i++) {
		if (lens[i] == TOO_LARGE)
			continue;
		const char *nl = p && p < end ? memchr(p, '\n', (size_t)(end - p)) : NULL;
		unsigned long long size;
		char header[160], type[16];

		if (!nl) {
			rc = sm_error_set(SM_ERROR, "git cat-file stopped early: %s",
					  err.data && *err.data ? err.data : "no error output");
			goto done;
		}
		/* parse the header line alone, so a number on the next line is never read */
		snprintf(header, sizeof(header), "%.*s", (int)(nl - p), p);
		if (sscanf(header, "%*s %15s %llu", type, &size) != 2) {
			p = nl + 1; /* "<oid> missing" */
			continue;
		}
		if (size > (unsigned long long)(end - nl - 1)) {
			rc = sm_error_set(SM_ERROR, "git cat-file printed a truncated object");
			goto done;
		}
		outs[i] = sm_strndup(nl + 1, (size_t)size);
		if (!outs[i]) {
			rc = SM_ENOMEM;
			goto done;
		}
		lens[i] = (size_t)size;
		p = nl + 1 + size + 1;
	}
done:
	if (rc)
		for (size_t i = 0; i < count; i++) {
			free(outs[i]);
			outs[i] = NULL;
		}
	sm_buf_release(&input);
	sm_buf_release(&out);
	sm_buf_release(&err);
	return rc;
}

static int read_blob(git_vault *gv, const char *oid, size_t max, char **out, size_t *len)
{
	int rc = read_blobs(gv, &oid, 1, max, out, len);

	if (!rc && !*out && *len == TOO_LARGE)
		rc = sm_error_set(SM_EINTEGRITY, "object %s of vault '%s' has more than the %zu "
				  "bytes allowed", oid, gv->config->name, max);
	else if (!rc && !*out)
		rc = sm_error_set(SM_EINTEGRITY, "object %s of vault '%s' is missing from the "
				  "repository", oid, gv->config->name);
	return rc;
}

/* Returns the bundle id of "metadata/<id>.json" entries, or NULL for other names. */
static char *metadata_id(const tree_entry *entry)
{
	size_t len = strlen(entry->name);
	char *id;

	if (!is_file(entry) || len <= 5 || strcmp(entry->name + len - 5, ".json") != 0)
		return NULL;
	id = sm_strndup(entry->name, len - 5);
	if (id && !sm_bundle_id_valid(id)) {
		free(id);
		return NULL;
	}
	return id;
}

/* Reads the record of `id` from its metadata blob. Fails with SM_ENOTFOUND when it is not stored. */
static int read_record(git_vault *gv, const snapshot *snap, const char *id, sm_record **out)
{
	char *name = sm_asprintf("%s.json", id), *text = NULL;
	const tree_entry *entry;
	size_t len;
	int rc;

	*out = NULL;
	if (!name)
		return SM_ENOMEM;
	entry = tree_find(&snap->metadata, name);
	if (!is_file(entry)) {
		rc = sm_error_set(SM_ENOTFOUND, "bundle '%s' not found in vault '%s'", id,
				  gv->config->name);
		goto done;
	}
	rc = read_blob(gv, entry->oid, SM_RECORD_MAX_BYTES, &text, &len);
	if (!rc)
		rc = sm_record_from_text(text, len, name, out);
	if (!rc && strcmp((*out)->bundle_id, id) != 0) {
		rc = sm_error_set(SM_EINTEGRITY, "metadata file of '%s' names bundle '%s'", id,
				  (*out)->bundle_id);
		sm_record_free(*out);
		*out = NULL;
	}
done:
	free(name);
	free(text);
	return rc;
}

static int compare_strings(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Returns 1 when the index names exactly the ids in `ids` (sorted). */
static int index_matches(const sm_record_list *index, char **ids, size_t count)
{
	if (index->count != count)
		return 0;
	for (size_t i = 0; i < count; i++)
		if (strcmp(index->items[i]->bundle_id, ids[i]) != 0)
			return 0;
	return 1;
}

/* Builds the records from every metadata blob, skipping unreadable ones with a warning. */
static int rebuild_index(git_vault *gv, const snapshot *snap, char **ids, size_t count,
			 sm_record_list *out)
{
	const char **oids = calloc(count + 1, sizeof(*oids));
	char **texts = calloc(count + 1, sizeof(*texts));
	size_t *lens = calloc(count + 1, sizeof(*lens));
	int rc = 0;

	if (!oids || !texts || !lens) {
		rc = sm_error_set(SM_ENOMEM, "out of memory");
		goto done;
	}
	for (size_t i = 0; i < count; i++) {
		char *name = sm_asprintf("%s.json", ids[i]);

		oids[i] = name ? tree_find(&snap->metadata, name)->oid : NULL;
		free(name);
		if (!oids[i]) {
			rc = SM_ENOMEM;
			goto done;
		}
	}
	if (count > 1 && (rc = prefetch_blobs(gv, oids, count)) != 0)
		goto done;
	rc = read_blobs(gv, oids, count, SM_RECORD_MAX_BYTES, texts, lens);
	if (rc)
		goto done;
	for (size_t i = 0; i < count; i++) {
		sm_record *record = NULL;
		int bad = !texts[i] && lens[i] == TOO_LARGE
			? sm_error_set(SM_EINTEGRITY, "its metadata file has more than %d bytes",
				       SM_RECORD_MAX_BYTES)
			: !texts[i] ? sm_error_set(SM_EINTEGRITY, "metadata file is missing")
			: sm_record_from_text(texts[i], lens[i], ids[i], &record);

		if (!bad && strcmp(record->bundle_id, ids[i]) != 0)
			bad = sm_error_set(SM_EINTEGRITY, "its metadata file names bundle '%s'",
					   record->bundle_id);
		if (bad == SM_ENOMEM) {
			sm_record_free(record);
			rc = bad;
			goto done;
		}
		if (bad) {
			sm_git_notify(gv, SM_LOG_WARN, "skipping bundle '%s' in vault '%s': %s", ids[i],
				      gv->config->name, sm_error_message());
			sm_record_free(record);
			continue;
		}
		if ((rc = sm_record_list_append(out, record)) != 0)
			goto done;
	}
done:
	for (size_t i = 0; texts && i < count; i++)
		free(texts[i]);
	free(texts);
	free(lens);
	free(oids);
	if (rc)
		sm_record_list_release(out);
	return rc;
}

/*
 * Returns the records of the snapshot, sorted by id. index.json is used
 * when it parses and names exactly the ids that have metadata files.
 * Otherwise the records are read from the metadata files, which are the
 * truth.
 */
static int read_index(git_vault *gv, const snapshot *snap, sm_record_list *out)
{
	const tree_entry *index_entry = tree_find(&snap->root, "index.json");
	char **ids = calloc(snap->metadata.count + 1, sizeof(*ids)), *text = NULL;
	const char *why = NULL;
	size_t count = 0, len;
	int rc = 0;

	out->items = NULL;
	out->count = 0;
	if (!ids)
		return sm_error_set(SM_ENOMEM, "out of memory");
	for (size_t i = 0; i < snap->metadata.count; i++)
		if ((ids[count] = metadata_id(&snap->metadata.items[i])) != NULL)
			count++;
	if (count > 1)
		qsort(ids, count, sizeof(*ids), compare_strings);

	if (!index_entry) {
		why = count ? "missing" : NULL;
	} else if (!is_file(index_entry)) {
		why = "corrupt";
	} else if ((rc = read_blob(gv, index_entry->oid, SM_INDEX_MAX_BYTES, &text, &len)) != 0) {
		if (rc != SM_EINTEGRITY)
			goto done;
		rc = 0;
		why = "too large or missing";
	} else if (sm_index_from_text(text, len, out) != 0) {
		why = "corrupt";
	} else if (!index_matches(out, ids, count)) {
		why = "stale";
		sm_record_list_release(out);
	}
	if (!why)
		goto done;
	sm_record_list_release(out);
	rc = rebuild_index(gv, snap, ids, count, out);
	if (!rc)
		sm_git_notify(gv, SM_LOG_WARN, "index.json of vault '%s' is %s; used the %zu metadata "
			      "files instead", gv->config->name, why, out->count);
done:
	sm_str_array_free(ids, count);
	free(text);
	return rc;
}

/* Runs `body` with the cache locked and prepared, rebuilding a broken cache once. */
static int with_cache(git_vault *gv, int (*body)(git_vault *gv, void *arg), void *arg)
{
	char *root = sm_strdup(gv->cache_dir), *slash;
	int rc, lock_fd = -1;

	if (!root)
		return SM_ENOMEM;
	slash = strrchr(root, '/');
	*slash = '\0';
	rc = sm_mkdir_p(root, 0700);
	free(root);
	if (rc)
		return rc;
	if ((rc = sm_lock(gv->lock_path, &lock_fd)) != 0)
		return rc;
	rc = sm_git_begin(gv);
	if (rc)
		goto done;
	rc = ensure_cache(gv);
	if (!rc)
		rc = body(gv, arg);
	if (rc && gv->damaged) {
		sm_git_notify(gv, SM_LOG_WARN, "the cache of vault '%s' is damaged (%s); rebuilding it",
			      gv->config->name, sm_error_message());
		gv->damaged = 0;
		gv->fetched = 0;
		rc = create_cache(gv);
		if (!rc)
			rc = body(gv, arg);
	}
	sm_git_end(gv);
done:
	sm_unlock(lock_fd);
	return rc;
}

/* ---- list, info, exists ---- */

typedef struct list_args {
	const sm_list_filter *filter;
	sm_record_list *out;
} list_args;

static int list_body(git_vault *gv, void *arg)
{
	list_args *args = arg;
	sm_record_list all = { 0 };
	snapshot snap;
	int rc = load_snapshot(gv, &snap, 0);

	if (rc)
		return rc;
	rc = read_index(gv, &snap, &all);
	snapshot_release(&snap);
	if (rc)
		return rc;
	args->out->items = calloc(all.count + 1, sizeof(*args->out->items));
	if (!args->out->items) {
		sm_record_list_release(&all);
		return sm_error_set(SM_ENOMEM, "out of memory");
	}
	for (size_t i = 0; i < all.count; i++) {
		if (sm_list_filter_match(args->filter, all.items[i]))
			args->out->items[args->out->count++] = all.items[i];
		else
			sm_record_free(all.items[i]);
		all.items[i] = NULL;
	}
	free(all.items);
	return 0;
}

static int git_list(sm_vault *self, const sm_list_filter *filter, sm_record_list *out)
{
	list_args args = { filter, out };

	out->items = NULL;
	out->count = 0;
	return with_cache((git_vault *)self, list_body, &args);
}

typedef struct record_args {
	const char *id;
	sm_record **out;
	int *exists;
} record_args;

static int record_body(git_vault *gv, void *arg)
{
	record_args *args = arg;
	snapshot snap;
	int rc = load_snapshot(gv, &snap, 0);

	if (rc)
		return rc;
	if (args->exists) {
		char *name = sm_asprintf("%s.json", args->id);

		*args->exists = name && tree_find(&snap.metadata, name) != NULL;
		rc = name ? 0 : SM_ENOMEM;
		free(name);
	} else {
		rc = read_record(gv, &snap, args->id, args->out);
	}
	snapshot_release(&snap);
	return rc;
}

static int git_get_metadata(sm_vault *self, const char *bundle_id, sm_record **out)
{
	record_args args = { bundle_id, out, NULL };

	*out = NULL;
	return with_cache((git_vault *)self, record_body, &args);
}

static int git_exists(sm_vault *self, const char *bundle_id, int *out)
{
	record_args args = { bundle_id, NULL, out };

	*out = 0;
	return with_cache((git_vault *)self, record_body, &args);
}

/* ---- pull ---- */

typedef struct pull_args {
	const char *id;
	int fd;
	sm_record **out;
} pull_args;

/* Streams blob `oid` to `fd` and hashes it. Git fetches that one blob when the cache lacks it. */
static int stream_blob(git_vault *gv, const char *oid, int fd, uint64_t total,
		       unsigned char sha256[32], uint64_t *size)
{
	const char *args[] = { "cat-file", "blob", oid, NULL };
	git_cmd cmd = { .args = args, .stdout_fd = SM_PROC_PIPE };
	const sm_callbacks *cb = gv->callbacks;
	sm_buf err = SM_BUF_INIT(ERR_MAX);
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	size_t chunk_size = 256 * 1024;
	char *chunk = malloc(chunk_size);
	sm_proc proc;
	int rc, status, started = 0;
	ssize_t n;

	*size = 0;
	if (!ctx || !chunk || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL)) {
		rc = sm_error_set(SM_ENOMEM, "cannot set up SHA-256");
		goto done;
	}
	rc = sm_git_start(gv, &cmd, &proc);
	if (rc)
		goto done;
	started = 1;
	while ((n = read(proc.out, chunk, chunk_size)) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			rc = sm_error_set_errno(SM_EIO, errno, "cannot read the bundle from git");
			break;
		}
		/* a blob larger than its record is corrupt: stop before it fills the disk */
		if (total && *size + (uint64_t)n > total) {
			rc = sm_error_set(SM_EINTEGRITY, "bundle blob %s in vault '%s' is corrupt: it has "
					  "more than the %llu bytes its metadata says", oid,
					  gv->config->name, (unsigned long long)total);
			break;
		}
		EVP_DigestUpdate(ctx, chunk, (size_t)n);
		if (sm_write_all(fd, chunk, (size_t)n) != 0) {
			rc = sm_error_set_errno(SM_EIO, errno, "cannot write the bundle");
			break;
		}
		*size += (uint64_t)n;
		if (cb->progress)
			cb->progress(*size, total, cb->payload);
	}
	started = 0;
	if (sm_proc_wait(&proc, NULL, &err, &status) != 0 && !rc)
		rc = SM_ERROR;
	if (!rc && status != 0)
		rc = sm_git_fail(gv, "fetching the bundle", err.data);
	if (!rc)
		EVP_DigestFinal_ex(ctx, sha256, NULL);
done:
	if (started)
		sm_proc_wait(&proc, NULL, NULL, &status);
	EVP_MD_CTX_free(ctx);
	free(chunk);
	sm_buf_release(&err);
	return rc;
}

static int pull_body(git_vault *gv, void *arg)
{
	pull_args *args = arg;
	sm_record *record = NULL;
	const tree_entry *entry;
	unsigned char digest[32];
	char hex[65], *name = NULL;
	const char *expected;
	uint64_t size;
	snapshot snap;
	int rc;

	/* a rebuilt cache runs this again: start the output over */
	if (ftruncate(args->fd, 0) != 0 || lseek(args->fd, 0, SEEK_SET) != 0)
		return sm_error_set_errno(SM_EIO, errno, "cannot rewind the output file");
	rc = load_snapshot(gv, &snap, 0);
	if (rc)
		return rc;
	rc = read_record(gv, &snap, args->id, &record);
	if (rc)
		goto done;
	name = sm_asprintf("%s" BUNDLE_SUFFIX, args->id);
	if (!name) {
		rc = SM_ENOMEM;
		goto done;
	}
	entry = tree_find(&snap.bundles, name);
	if (!is_file(entry)) {
		rc = sm_error_set(SM_EINTEGRITY, "vault '%s' has metadata for bundle '%s' but no "
				  "file bundles/%s", gv->config->name, args->id, name);
		goto done;
	}
	rc = stream_blob(gv, entry->oid, args->fd, record->size_bytes, digest, &size);
	if (rc)
		goto done;
	sm_hex(digest, 32, hex);
	if (record->size_bytes && size != record->size_bytes) {
		rc = sm_error_set(SM_EINTEGRITY, "bundle '%s' in vault '%s' is corrupt: it has %llu "
				  "bytes, its metadata says %llu", args->id, gv->config->name,
				  (unsigned long long)size, (unsigned long long)record->size_bytes);
		goto done;
	}
	expected = sm_record_metadata_get(record, "sha256");
	if (expected && strcmp(expected, hex) != 0) {
		rc = sm_error_set(SM_EINTEGRITY, "bundle '%s' in vault '%s' is corrupt: SHA-256 %s, "
				  "its metadata says %s", args->id, gv->config->name, hex, expected);
		goto done;
	}
	*args->out = record;
	record = NULL;
done:
	sm_record_free(record);
	free(name);
	snapshot_release(&snap);
	return rc;
}

static int git_pull(sm_vault *self, const char *bundle_id, int fd, sm_record **out)
{
	pull_args args = { bundle_id, fd, out };

	*out = NULL;
	return with_cache((git_vault *)self, pull_body, &args);
}

/* ---- writing: blobs, trees, commits ---- */

/* Writes `len` bytes as a blob into the cache and returns its id. */
static int write_blob(git_vault *gv, const char *data, size_t len, char oid[OID_MAX])
{
	const char *args[] = { "hash-object", "-w", "--stdin", NULL };
	git_cmd cmd = { .args = args, .input = data, .input_len = len };
	sm_buf out = SM_BUF_INIT(4096), err = SM_BUF_INIT(ERR_MAX);
	int rc, status;

	/* an empty input must still be given as a file, not /dev/null */
	if (!len)
		cmd.input = "";
	rc = sm_git_run(gv, &cmd, &out, &err, &status);
	if (!rc && status != 0)
		rc = sm_git_fail(gv, "storing a file", err.data);
	if (!rc)
		rc = take_oid(out.data, oid, "a new file");
	sm_buf_release(&out);
	sm_buf_release(&err);
	return rc;
}

typedef struct stage_args {
	git_vault *gv;
	sm_proc *proc;
	int in;
	unsigned char *sha256;
	uint64_t *size;
	uint64_t total;
} stage_args;

static void stage_progress(uint64_t done, void *payload)
{
	stage_args *args = payload;
	const sm_callbacks *cb = args->gv->callbacks;

	if (cb->progress)
		cb->progress(done, args->total, cb->payload);
}

static int stage_copy(void *arg)
{
	stage_args *args = arg;

	return sm_copy_hash(args->in, args->proc->in, args->sha256, args->size, stage_progress, args);
}

/* Streams the bundle from `fd` into a blob of the cache, hashing it in the same pass. */
static int stage_bundle(git_vault *gv, int fd, char oid[OID_MAX], unsigned char sha256[32],
			uint64_t *size)
{
	const char *args[] = { "hash-object", "-w", "--stdin", NULL };
	git_cmd cmd = { .args = args, .stdin_fd = SM_PROC_PIPE };
	sm_buf out = SM_BUF_INIT(4096), err = SM_BUF_INIT(ERR_MAX);
	stage_args copy = { gv, NULL, fd, sha256, size, 0 };
	struct stat st;
	sm_proc proc;
	int rc, copy_rc, status;

	if (fstat(fd, &st) == 0)
		copy.total = (uint64_t)st.st_size;
	rc = sm_git_start(gv, &cmd, &proc);
	if (rc)
		return rc;
	copy.proc = &proc;
	copy_rc = sm_without_sigpipe(stage_copy, &copy);
	rc = sm_proc_wait(&proc, &out, &err, &status);
	if (!rc && status != 0)
		rc = sm_git_fail(gv, "storing the bundle", err.data);
	if (!rc && copy_rc)
		rc = copy_rc;
	if (!rc)
		rc = take_oid(out.data, oid, "the bundle");
	sm_buf_release(&out);
	sm_buf_release(&err);
	return rc;
}

/*
 * Writes a tree: the entries of `base` with `name` set to (mode, type, oid),
 * or removed when `oid` is NULL. Objects the cache lacks are fine
 * (--missing), because a partial clone has none of the other bundles.
 * `*empty` is set when the tree has no entries; it is then not written.
 */
static int write_tree(git_vault *gv, const tree_list *base, const char *name, const char *mode,
		      const char *type, const char *oid, char out[OID_MAX], int *empty)
{
	const char *args[] = { "mktree", "-z", "--missing", NULL };
	git_cmd cmd = { .args = args };
	sm_buf input = SM_BUF_INIT(0), text = SM_BUF_INIT(4096), err = SM_BUF_INIT(ERR_MAX);
	int rc = 0, status;

	for (size_t i = 0; !rc && i < base->count; i++) {
		const tree_entry *e = &base->items[i];

		if (strcmp(e->name, name) == 0)
			continue;
		rc = sm_buf_printf(&input, "%s %s %s\t%s", e->mode, e->type, e->oid, e->name);
		if (!rc)
			rc = sm_buf_putc(&input, '\0');
	}
	if (!rc && oid) {
		rc = sm_buf_printf(&input, "%s %s %s\t%s", mode, type, oid, name);
		if (!rc)
			rc = sm_buf_putc(&input, '\0');
	}
	if (rc)
		goto done;
	*empty = input.len == 0;
	if (*empty)
		goto done;
	cmd.input = input.data;
	cmd.input_len = input.len;
	rc = sm_git_run(gv, &cmd, &text, &err, &status);
	if (!rc && status != 0)
		rc = sm_git_fail(gv, "writing a tree", err.data);
	if (!rc)
		rc = take_oid(text.data, out, "a new tree");
done:
	sm_buf_release(&input);
	sm_buf_release(&text);
	sm_buf_release(&err);
	return rc;
}

/* The change one commit makes: set or remove one bundle. */
typedef struct change {
	const char *id;
	const char *bundle_oid;    /* NULL: remove the bundle */
	const sm_record *record;   /* with bundle_oid */
	const char *verb;          /* "Add", "Replace" or "Remove" */
} change;

/* Builds the commit that applies `ch` to the snapshot, with the index merged. */
static int build_commit(git_vault *gv, const snapshot *snap, const change *ch,
			char commit[OID_MAX])
{
	char meta_oid[OID_MAX], index_oid[OID_MAX], bundles_tree[OID_MAX], meta_tree[OID_MAX];
	char root_tree[OID_MAX], message[300];
	char *bundle_name = sm_asprintf("%s" BUNDLE_SUFFIX, ch->id);
	char *meta_name = sm_asprintf("%s.json", ch->id);
	char *meta_text = NULL, *index_text = NULL;
	sm_record_list index = { 0 };
	tree_list root = { 0 };
	int rc, bundles_empty, meta_empty, root_empty;
	sm_buf out = SM_BUF_INIT(4096);

	if (!bundle_name || !meta_name) {
		rc = SM_ENOMEM;
		goto done;
	}
	if ((rc = sm_git_commit_message(message, sizeof(message), ch->verb, ch->id)) != 0)
		goto done;

	/* the index: the current one (metadata files win), with this change */
	rc = read_index(gv, snap, &index);
	if (rc)
		goto done;
	for (size_t i = 0; i < index.count; i++) {
		if (strcmp(index.items[i]->bundle_id, ch->id) != 0)
			continue;
		sm_record_free(index.items[i]);
		index.items[i] = index.items[--index.count];
		break;
	}
	if (ch->bundle_oid) {
		sm_record *copy = sm_record_dup(ch->record);

		if (!copy || (rc = sm_record_list_append(&index, copy)) != 0) {
			rc = rc ? rc : SM_ENOMEM;
			goto done;
		}
		if ((rc = sm_record_to_text(ch->record, &meta_text)) != 0 ||
		    (rc = write_blob(gv, meta_text, strlen(meta_text), meta_oid)) != 0)
			goto done;
	}
	if ((rc = sm_index_to_text(&index, &index_text)) != 0 ||
	    (rc = write_blob(gv, index_text, strlen(index_text), index_oid)) != 0)
		goto done;

	/* the trees, bottom up */
	rc = write_tree(gv, &snap->bundles, bundle_name, "100644", "blob", ch->bundle_oid,
			bundles_tree, &bundles_empty);
	if (!rc)
		rc = write_tree(gv, &snap->metadata, meta_name, "100644", "blob",
				ch->bundle_oid ? meta_oid : NULL, meta_tree, &meta_empty);
	if (rc)
		goto done;
	/* the root: copy the snapshot's, replacing the three entries this connector owns */
	root.items = calloc(snap->root.count + 3, sizeof(*root.items));
	if (!root.items) {
		rc = sm_error_set(SM_ENOMEM, "out of memory");
		goto done;
	}
	for (size_t i = 0; i < snap->root.count; i++) {
		const char *n = snap->root.items[i].name;

		if (strcmp(n, "bundles") == 0 || strcmp(n, "metadata") == 0 || strcmp(n, "index.json") == 0)
			continue;
		root.items[root.count] = snap->root.items[i];
		root.items[root.count++].name = (char *)n;
	}
	if (!bundles_empty) {
		tree_entry e = { "040000", "tree", "", (char *)"bundles" };

		memcpy(e.oid, bundles_tree, sizeof(e.oid));
		root.items[root.count++] = e;
	}
	if (!meta_empty) {
		tree_entry e = { "040000", "tree", "", (char *)"metadata" };

		memcpy(e.oid, meta_tree, sizeof(e.oid));
		root.items[root.count++] = e;
	}
	rc = write_tree(gv, &root, "index.json", "100644", "blob", index_oid, root_tree, &root_empty);
	if (rc)
		goto done;

	{
		const char *with_parent[] = { "commit-tree", root_tree, "-p", snap->tip, "-m", message,
					      NULL };
		const char *without_parent[] = { "commit-tree", root_tree, "-m", message, NULL };

		rc = git_ok(gv, "creating a commit", snap->tip[0] ? with_parent : without_parent, &out);
	}
	if (!rc)
		rc = take_oid(out.data, commit, "the new commit");
done:
	free(root.items); /* the names are borrowed from the snapshot */
	sm_record_list_release(&index);
	free(meta_text);
	free(index_text);
	free(bundle_name);
	free(meta_name);
	sm_buf_release(&out);
	return rc;
}

/*
 * Pushes `commit` to the branch without force. Sets *rejected when another
 * writer moved the branch first, so the caller can rebuild and retry.
 */
static int push_commit(git_vault *gv, const char *commit, const char *old_tip, int *rejected)
{
	char *refspec = sm_asprintf("%s:refs/heads/%s", commit, gv->branch);
	const char *args[] = { "push", "--quiet", "--porcelain", "--no-verify", "origin", refspec,
			       NULL };
	const char *update_with_old[] = { "update-ref", gv->tip_ref, commit, old_tip, NULL };
	const char *update_new[] = { "update-ref", gv->tip_ref, commit, NULL };
	git_cmd cmd = { .args = args };
	sm_buf out = SM_BUF_INIT(ERR_MAX), err = SM_BUF_INIT(ERR_MAX);
	int rc, status;

	*rejected = 0;
	if (!refspec)
		return SM_ENOMEM;
	rc = sm_git_run(gv, &cmd, &out, &err, &status);
	if (rc)
		goto done;
	if (status != 0) {
		const char *text = out.data ? out.data : "";

		if (strstr(text, "[rejected]") || strstr(text, "fetch first") ||
		    strstr(text, "non-fast-forward") ||
		    (strstr(text, "[remote rejected]") &&
		     (strstr(text, "lock") || strstr(text, "failed to update ref")))) {
			*rejected = 1;
			goto done;
		}
		rc = sm_git_fail(gv, "pushing", err.data && *err.data ? err.data : text);
		goto done;
	}
	/* the cache records the new tip, so the next fetch has nothing to transfer */
	rc = git_ok(gv, "updating the cache", old_tip[0] ? update_with_old : update_new, NULL);
	if (rc) {
		sm_git_notify(gv, SM_LOG_DEBUG, "pushed, but %s", sm_error_message());
		rc = 0;
	}
done:
	sm_buf_release(&out);
	sm_buf_release(&err);
	free(refspec);
	return rc;
}

/*
 * Sleeps before attempt `attempt` (1-based) for a random time up to a cap
 * that doubles from 100 ms to 1.6 s. The cap stays low because each lost
 * race costs a fetch already, and a long wait only lets the writers that
 * just won win again.
 */
static void backoff(int attempt)
{
	long cap_ms = 100L << (attempt - 1 < 4 ? attempt - 1 : 4);
	long ms = (long)((unsigned long)rand() % (unsigned long)(cap_ms + 1));
	struct timespec delay = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&delay, &delay) != 0 && errno == EINTR)
		;
}

/* ---- push ---- */

typedef struct push_args {
	int fd;
	sm_record *record;
	sm_push_opts *opts;
} push_args;

/*
 * Decides what to do about an id stored at the snapshot's tip: the same
 * bytes are a no-op (*identical), other bytes need --force.
 */
static int check_existing(git_vault *gv, const snapshot *snap, sm_record *record,
			  const char *sha_hex, const char *bundle_oid, int force, int *identical,
			  int *exists)
{
	sm_record *old = NULL;
	const char *old_sha;
	int rc;

	*identical = *exists = 0;
	rc = read_record(gv, snap, record->bundle_id, &old);
	if (rc == SM_ENOTFOUND)
		return 0;
	if (rc && !force)
		return rc;
	*exists = 1;
	if (old) {
		old_sha = sm_record_metadata_get(old, "sha256");
		if (old_sha) {
			*identical = strcmp(old_sha, sha_hex) == 0;
		} else {
			/* written by the original tool: compare the blob ids, same bytes same id */
			char *name = sm_asprintf("%s" BUNDLE_SUFFIX, record->bundle_id);
			const tree_entry *entry = name ? tree_find(&snap->bundles, name) : NULL;

			*identical = entry && strcmp(entry->oid, bundle_oid) == 0;
			free(name);
		}
	}
	return sm_push_settle_existing(record, old, *identical, force, gv->config->name);
}

static int push_body(git_vault *gv, void *arg)
{
	push_args *args = arg;
	sm_record *record = args->record;
	char bundle_oid[OID_MAX], commit[OID_MAX], sha_hex[65], now[32];
	unsigned char digest[32];
	snapshot snap = { 0 };
	uint64_t size;
	int rc, attempt, rejected = 0, identical, exists;

	rc = stage_bundle(gv, args->fd, bundle_oid, digest, &size);
	if (rc)
		return rc;
	sm_hex(digest, 32, sha_hex);
	sm_now_iso8601(now);
	free(record->uploaded_at);
	free(record->vault_path);
	record->uploaded_at = sm_strdup(now);
	record->vault_path = sm_asprintf("bundles/%s" BUNDLE_SUFFIX, record->bundle_id);
	record->size_bytes = size;
	if (!record->uploaded_at || !record->vault_path ||
	    (rc = sm_record_metadata_set(record, "sha256", sha_hex)) != 0)
		return rc ? rc : SM_ENOMEM;
	if (args->opts->before_commit && (rc = args->opts->before_commit(args->opts->payload)) != 0)
		return rc;

	for (attempt = 0; attempt < PUSH_ATTEMPTS; attempt++) {
		change ch = { record->bundle_id, bundle_oid, record, "Add" };

		if (attempt) {
			sm_git_notify(gv, SM_LOG_INFO, "another writer changed vault '%s'; trying again "
				      "(%d of %d)", gv->config->name, attempt + 1, PUSH_ATTEMPTS);
			backoff(attempt);
		}
		snapshot_release(&snap);
		rc = load_snapshot(gv, &snap, attempt > 0);
		if (rc)
			break;
		rc = check_existing(gv, &snap, record, sha_hex, bundle_oid, args->opts->force,
				    &identical, &exists);
		if (rc)
			break;
		if (identical && !args->opts->force) {
			args->opts->unchanged = 1;
			break;
		}
		if (exists)
			ch.verb = "Replace";
		rc = build_commit(gv, &snap, &ch, commit);
		if (!rc)
			rc = push_commit(gv, commit, snap.tip, &rejected);
		if (rc || !rejected)
			break;
	}
	if (!rc && rejected)
		rc = sm_error_set(SM_ECONFLICT, "could not push bundle '%s' to vault '%s': other "
				  "writers changed the branch '%s' %d times in a row; try again",
				  record->bundle_id, gv->config->name, gv->branch, PUSH_ATTEMPTS);
	snapshot_release(&snap);
	return rc;
}

static int git_push(sm_vault *self, int fd, sm_record *record, sm_push_opts *opts)
{
	push_args args = { fd, record, opts };

	return with_cache((git_vault *)self, push_body, &args);
}

/* ---- delete ---- */

static int delete_body(git_vault *gv, void *arg)
{
	const char *id = arg;
	char commit[OID_MAX], *name = sm_asprintf("%s.json", id);
	snapshot snap = { 0 };
	int rc = 0, attempt, rejected = 0;

	if (!name)
		return SM_ENOMEM;
	for (attempt = 0; attempt < PUSH_ATTEMPTS; attempt++) {
		change ch = { id, NULL, NULL, "Remove" };

		if (attempt) {
			sm_git_notify(gv, SM_LOG_INFO, "another writer changed vault '%s'; trying again "
				      "(%d of %d)", gv->config->name, attempt + 1, PUSH_ATTEMPTS);
			backoff(attempt);
		}
		snapshot_release(&snap);
		rc = load_snapshot(gv, &snap, attempt > 0);
		if (rc)
			break;
		if (!tree_find(&snap.metadata, name)) {
			rc = sm_error_set(SM_ENOTFOUND, "bundle '%s' not found in vault '%s'", id,
					  gv->config->name);
			break;
		}
		rc = build_commit(gv, &snap, &ch, commit);
		if (!rc)
			rc = push_commit(gv, commit, snap.tip, &rejected);
		if (rc || !rejected)
			break;
	}
	if (!rc && rejected)
		rc = sm_error_set(SM_ECONFLICT, "could not delete bundle '%s' from vault '%s': other "
				  "writers changed the branch '%s' %d times in a row; try again", id,
				  gv->config->name, gv->branch, PUSH_ATTEMPTS);
	snapshot_release(&snap);
	free(name);
	return rc;
}

static int git_delete(sm_vault *self, const char *bundle_id)
{
	return with_cache((git_vault *)self, delete_body, (void *)bundle_id);
}

/* ---- open, close, constructor ---- */

/*
 * ssh reads ~/.ssh/known_hosts from the home directory in the password
 * database, not $HOME. When $HOME points elsewhere (sudo -E, containers,
 * test sandboxes), the user means $HOME/.ssh/known_hosts, so name it.
 * `*out` stays NULL when ssh's own choice is right.
 */
static int user_known_hosts(const git_vault *gv, char **out)
{
	const char *home = getenv("HOME");
	struct passwd *pw = getpwuid(getuid());

	*out = NULL;
	if (!gv->ssh || gv->known_hosts || !home || home[0] != '/' ||
	    (pw && pw->pw_dir && strcmp(pw->pw_dir, home) == 0))
		return 0;
	*out = sm_asprintf("%s/.ssh/known_hosts", home);
	return *out ? 0 : SM_ENOMEM;
}

static int git_open(sm_vault *self)
{
	git_vault *gv = (git_vault *)self;
	char *known_hosts = NULL;
	int rc;

	if (access(SM_GIT_PROGRAM, X_OK) != 0)
		return sm_error_set(SM_ENOTFOUND, "cannot run %s: install git to use git vault '%s'",
				    SM_GIT_PROGRAM, gv->config->name);
	if (gv->ca_bundle && access(gv->ca_bundle, R_OK) != 0)
		return sm_error_set_errno(SM_EINVALID, errno, "cannot read ca_bundle '%s' of vault '%s'",
					  gv->ca_bundle, gv->config->name);
	if (gv->known_hosts && !gv->accept_new_host_keys && access(gv->known_hosts, R_OK) != 0)
		return sm_error_set_errno(SM_EINVALID, errno, "cannot read known_hosts '%s' of vault "
					  "'%s'", gv->known_hosts, gv->config->name);
	rc = sm_credentials_lookup(&gv->creds, gv->config->name, NULL);
	if (rc)
		return rc;
	if (gv->ssh && gv->creds->fields[SM_CRED_SSH_KEY] &&
	    access(gv->creds->fields[SM_CRED_SSH_KEY], R_OK) != 0)
		return sm_error_set_errno(SM_EAUTH, errno, "cannot read the SSH key '%s' of vault '%s'",
					  gv->creds->fields[SM_CRED_SSH_KEY], gv->config->name);
	rc = user_known_hosts(gv, &known_hosts);
	if (!rc)
		rc = sm_git_ssh_command(gv->creds->fields[SM_CRED_SSH_KEY],
					gv->known_hosts ? gv->known_hosts : known_hosts,
					gv->accept_new_host_keys, &gv->ssh_command);
	gv->home_known_hosts = known_hosts;
	if (rc)
		return rc;
	srand((unsigned int)(time(NULL) ^ (getpid() << 8)));
	return 0;
}

static void git_close(sm_vault *self)
{
	git_vault *gv = (git_vault *)self;

	if (!gv)
		return;
	sm_git_end(gv);
	sm_credentials_free(gv->creds);
	free(gv->cache_dir);
	free(gv->repo);
	free(gv->lock_path);
	free(gv->tip_ref);
	free(gv->ssh_command);
	free(gv->home_known_hosts);
	free(gv);
}

/* Branch names: git's rules, narrowed to what needs no quoting anywhere. */
static int branch_valid(const char *branch)
{
	size_t len = strlen(branch);

	if (len == 0 || len > 200 || branch[0] == '-' || branch[0] == '/' || branch[0] == '.' ||
	    branch[len - 1] == '/' || branch[len - 1] == '.' || strstr(branch, "..") ||
	    strstr(branch, "//") || strstr(branch, "/.") || (len >= 5 && strcmp(branch + len - 5, ".lock") == 0))
		return 0;
	/* git would create refs/heads/HEAD, which `git branch` itself refuses */
	if (strcmp(branch, "HEAD") == 0)
		return 0;
	for (const char *p = branch; *p; p++)
		if (!(*p >= 'a' && *p <= 'z') && !(*p >= 'A' && *p <= 'Z') &&
		    !(*p >= '0' && *p <= '9') && !strchr("._/-", *p))
			return 0;
	return 1;
}

/* Reads a boolean setting: absent is `fallback`, anything but true/false is invalid. */
static int bool_setting(const sm_vault_config *config, const char *key, int *out)
{
	const char *value = sm_vault_config_get(config, key);

	*out = 0;
	if (!value || strcmp(value, "false") == 0)
		return 0;
	if (strcmp(value, "true") == 0) {
		*out = 1;
		return 0;
	}
	return sm_error_set(SM_EINVALID, "setting '%s' of vault '%s' must be true or false, not "
			    "'%s'", key, config->name, value);
}

/* Checks an optional path setting: no control characters, and absolute. */
static int path_setting(const sm_vault_config *config, const char *key, const char **out)
{
	const char *value = sm_vault_config_get(config, key);

	*out = NULL;
	if (!value)
		return 0;
	if (!*value || sm_has_control_chars(value) || value[0] != '/')
		return sm_error_set(SM_EINVALID, "setting '%s' of vault '%s' must be an absolute path "
				    "without control characters", key, config->name);
	*out = value;
	return 0;
}

/* Builds the cache path: the vault's name plus a hash of its URL and branch. */
static int cache_paths(git_vault *gv)
{
	unsigned char digest[32];
	char hex[65], *home = NULL, *key = sm_asprintf("%s\n%s", gv->url, gv->branch);
	int rc;

	if (!key)
		return SM_ENOMEM;
	EVP_Digest(key, strlen(key), digest, NULL, EVP_sha256(), NULL);
	free(key);
	sm_hex(digest, 32, hex);
	hex[16] = '\0';
	rc = sm_config_home(&home);
	if (rc)
		return rc;
	gv->cache_dir = sm_asprintf("%s/cache/git/%s-%s", home, gv->config->name, hex);
	gv->repo = gv->cache_dir ? sm_path_join(gv->cache_dir, "repo.git") : NULL;
	gv->lock_path = gv->cache_dir ? sm_asprintf("%s.lock", gv->cache_dir) : NULL;
	gv->tip_ref = sm_asprintf("refs/remotes/origin/%s", gv->branch);
	free(home);
	return gv->repo && gv->lock_path && gv->tip_ref ? 0 : SM_ENOMEM;
}

int sm_vault_git_new(sm_vault **out, const sm_vault_config *config,
		     const sm_callbacks *callbacks)
{
	git_vault *gv;
	const char *value;
	int rc;

	*out = NULL;
	gv = calloc(1, sizeof(*gv));
	if (!gv)
		return sm_error_set(SM_ENOMEM, "out of memory");
	gv->parent.abi_version = SM_VAULT_ABI_VERSION;
	gv->parent.type = "git";
	gv->parent.caps = SM_VAULT_CAN_READ | SM_VAULT_CAN_WRITE | SM_VAULT_CAN_DELETE;
	gv->parent.open = git_open;
	gv->parent.push = git_push;
	gv->parent.pull = git_pull;
	gv->parent.list = git_list;
	gv->parent.delete_bundle = git_delete;
	gv->parent.exists = git_exists;
	gv->parent.get_metadata = git_get_metadata;
	gv->parent.close = git_close;
	gv->config = config;
	gv->callbacks = callbacks;

	gv->url = sm_vault_config_get(config, "url");
	gv->branch = sm_vault_config_get(config, "branch");
	if (!gv->branch)
		gv->branch = "main";
	value = sm_vault_config_get(config, "commit_author");
	gv->author = value && *value ? value : "skillmeat";
	value = sm_vault_config_get(config, "commit_email");
	gv->email = value && *value ? value : "skillmeat@localhost";

	if (!gv->url) {
		rc = sm_error_set(SM_EINVALID, "vault '%s' has no 'url'; set it in %s", config->name,
				  config->source ? config->source : "sharing.toml");
		goto fail;
	}
	if ((rc = bool_setting(config, "allow_http", &gv->allow_http)) != 0 ||
	    (rc = bool_setting(config, "accept_new_host_keys", &gv->accept_new_host_keys)) != 0 ||
	    (rc = path_setting(config, "known_hosts", &gv->known_hosts)) != 0 ||
	    (rc = path_setting(config, "ca_bundle", &gv->ca_bundle)) != 0)
		goto fail;
	rc = sm_git_check_url(gv->url, gv->allow_http);
	if (rc) {
		rc = sm_error_wrap(rc, "vault '%s'", config->name);
		goto fail;
	}
	if (!branch_valid(gv->branch)) {
		rc = sm_error_set(SM_EINVALID, "branch '%s' of vault '%s' is not a valid branch name",
				  gv->branch, config->name);
		goto fail;
	}
	if (sm_has_control_chars(gv->author) || sm_has_control_chars(gv->email) ||
	    strpbrk(gv->author, "<>") || strpbrk(gv->email, "<>")) {
		rc = sm_error_set(SM_EINVALID, "commit_author and commit_email of vault '%s' must not "
				  "contain control characters, '<' or '>'", config->name);
		goto fail;
	}
	gv->ssh = sm_git_url_is_ssh(gv->url);
	rc = cache_paths(gv);
	if (rc)
		goto fail;
	*out = &gv->parent;
	return 0;
fail:
	git_close(&gv->parent);
	return rc;
}
