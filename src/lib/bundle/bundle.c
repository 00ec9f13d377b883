/*
 * Opening and verifying bundles. A bundle is untrusted: sm_bundle_open()
 * checks the central directory as stored (names, types, methods, sizes,
 * overlaps), then the manifest, then that the manifest and the entries
 * describe the same files. Nothing is extracted.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <zip.h>

#include "bundle_internal.h"
#include "follow.h"

#define ZIP_HOST_UNIX 3
#define ZIP_HOST_MACOS 19
#define ZIP_FLAG_ENCRYPTED 0x0001
#define ZIP_FLAG_STRONG_ENCRYPTION 0x0040
#define ZIP_FLAG_MASKED_HEADERS 0x2000
#define DOS_ATTRIBUTE_DIRECTORY 0x10
#define LOCAL_HEADER_SIZE 30
#define QUOTED_MAX 200

struct sm_bundle {
	char *path;
	int fd;                     /* the archive, open until sm_bundle_free() */
	json_t *root;               /* parsed manifest.json */
	sm_manifest manifest;
	sm_zip_dir dir;             /* the archive's central directory */
	size_t **indexes;           /* per artifact and file: its entry in `dir` */
	uint64_t archive_size;
	uint64_t uncompressed_size;
};

/* State of one sm_bundle_open() call. */
struct open_state {
	const char *label;
	sm_zip_dir dir;
	size_t *by_name;            /* entry indexes sorted by name */
	size_t *by_offset;          /* entry indexes sorted by local header offset */
	unsigned char *used;        /* per entry: claimed by manifest.json or a file */
};

static const char *entry_name(const sm_zip_entry *e, char out[QUOTED_MAX])
{
	sm_quote_bytes(e->name, e->name_len, out, QUOTED_MAX);
	return out;
}

static int entry_error(const char *label, const sm_zip_entry *e, const char *what)
{
	char q[QUOTED_MAX];

	return sm_error_set(SM_EINVALID, "invalid bundle '%s': entry '%s' %s", label,
			    entry_name(e, q), what);
}

static int check_entry_type(const char *label, const sm_zip_entry *e)
{
	unsigned host = e->made_by >> 8;
	uint32_t mode = e->external_attributes >> 16;

	if ((host == ZIP_HOST_UNIX || host == ZIP_HOST_MACOS) && (mode & S_IFMT)) {
		if (S_ISLNK(mode))
			return entry_error(label, e, "is a symbolic link; bundles hold regular "
					   "files only");
		if (S_ISDIR(mode))
			return entry_error(label, e, "is a directory entry; bundles hold regular "
					   "files only");
		if (!S_ISREG(mode))
			return entry_error(label, e, "is a special file; bundles hold regular "
					   "files only");
	}
	if (e->external_attributes & DOS_ATTRIBUTE_DIRECTORY)
		return entry_error(label, e, "is a directory entry; bundles hold regular files only");
	return 0;
}

static int check_entry_data(const char *label, const sm_zip_entry *e)
{
	char q[QUOTED_MAX];

	if (e->flags & (ZIP_FLAG_ENCRYPTED | ZIP_FLAG_STRONG_ENCRYPTION | ZIP_FLAG_MASKED_HEADERS))
		return entry_error(label, e, "is encrypted; bundles must not be encrypted");
	if (e->method != ZIP_CM_STORE && e->method != ZIP_CM_DEFLATE)
		return sm_error_set(SM_EINVALID, "invalid bundle '%s': entry '%s' uses compression "
				    "method %u; only stored (0) and deflate (8) are accepted",
				    label, entry_name(e, q), e->method);
	if (e->method == ZIP_CM_STORE && e->size != e->compressed)
		return sm_error_set(SM_EINVALID, "invalid bundle '%s': stored entry '%s' declares "
				    "%llu bytes but holds %llu", label, entry_name(e, q),
				    (unsigned long long)e->size, (unsigned long long)e->compressed);

	/*
	 * zip bombs: 0 compressed bytes cannot expand to anything, and entries
	 * over 64 KiB must keep within the ratio cap. Small entries are exempt
	 * because short repetitive files compress far beyond it.
	 */
	if (e->size > 0 && e->compressed == 0)
		return sm_error_set(SM_EINVALID, "invalid bundle '%s': entry '%s' declares %llu "
				    "bytes from 0 compressed bytes (zip bomb)", label,
				    entry_name(e, q), (unsigned long long)e->size);
	if (e->size > SM_BUNDLE_RATIO_MIN_SIZE && e->compressed < UINT64_MAX / SM_BUNDLE_MAX_RATIO &&
	    e->size > e->compressed * SM_BUNDLE_MAX_RATIO)
		return sm_error_set(SM_EINVALID, "invalid bundle '%s': entry '%s' expands %llu "
				    "bytes to %llu, a ratio above the limit of %u (zip bomb)",
				    label, entry_name(e, q), (unsigned long long)e->compressed,
				    (unsigned long long)e->size, SM_BUNDLE_MAX_RATIO);
	return 0;
}

static int check_entry(const char *label, const sm_zip_entry *e)
{
	const char *problem;
	int rc;

	if (e->name_len > 0 && e->name[e->name_len - 1] == '/')
		return entry_error(label, e, "is a directory entry; bundles hold regular files only");
	problem = sm_path_problem(e->name, e->name_len);
	if (problem)
		return entry_error(label, e, problem);
	rc = check_entry_type(label, e);
	return rc ? rc : check_entry_data(label, e);
}

static int check_totals(struct open_state *st, uint64_t *total)
{
	*total = 0;
	for (size_t i = 0; i < st->dir.count; i++) {
		uint64_t size = st->dir.entries[i].size;

		if (size > SM_BUNDLE_MAX_UNCOMPRESSED - *total)
			return sm_error_set(SM_EINVALID, "invalid bundle '%s': the entries declare "
					    "more than %llu bytes uncompressed in total", st->label,
					    (unsigned long long)SM_BUNDLE_MAX_UNCOMPRESSED);
		*total += size;
	}
	return 0;
}

static int compare_names(const char *a, size_t alen, const char *b, size_t blen)
{
	int order = memcmp(a, b, alen < blen ? alen : blen);

	if (order)
		return order;
	return alen < blen ? -1 : alen > blen;
}

static int compare_by_name(const void *a, const void *b, void *entries)
{
	const sm_zip_entry *x = (const sm_zip_entry *)entries + *(const size_t *)a;
	const sm_zip_entry *y = (const sm_zip_entry *)entries + *(const size_t *)b;

	return compare_names(x->name, x->name_len, y->name, y->name_len);
}

static int compare_by_offset(const void *a, const void *b, void *entries)
{
	const sm_zip_entry *x = (const sm_zip_entry *)entries + *(const size_t *)a;
	const sm_zip_entry *y = (const sm_zip_entry *)entries + *(const size_t *)b;

	return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static int sort_entries(struct open_state *st)
{
	size_t n = st->dir.count ? st->dir.count : 1;

	st->by_name = malloc(n * sizeof(size_t));
	st->by_offset = malloc(n * sizeof(size_t));
	st->used = calloc(n, 1);
	if (!st->by_name || !st->by_offset || !st->used)
		return sm_error_set(SM_ENOMEM, "out of memory");
	for (size_t i = 0; i < st->dir.count; i++)
		st->by_name[i] = st->by_offset[i] = i;
	qsort_r(st->by_name, st->dir.count, sizeof(size_t), compare_by_name, st->dir.entries);
	qsort_r(st->by_offset, st->dir.count, sizeof(size_t), compare_by_offset, st->dir.entries);
	return 0;
}

/* Duplicate names: libzip would show only one of them. */
static int check_duplicates(struct open_state *st)
{
	char q[QUOTED_MAX];

	for (size_t i = 1; i < st->dir.count; i++) {
		const sm_zip_entry *a = &st->dir.entries[st->by_name[i - 1]];
		const sm_zip_entry *b = &st->dir.entries[st->by_name[i]];

		if (compare_names(a->name, a->name_len, b->name, b->name_len) == 0)
			return sm_error_set(SM_EINVALID, "invalid bundle '%s': entry '%s' appears "
					    "twice", st->label, entry_name(a, q));
	}
	return 0;
}

/*
 * Overlapping entries let a small archive declare the same compressed
 * data many times. Each local header plus name plus data must end before
 * the next entry starts, and the last one before the central directory.
 */
static int check_overlaps(struct open_state *st)
{
	char qa[QUOTED_MAX], qb[QUOTED_MAX];

	for (size_t i = 0; i < st->dir.count; i++) {
		sm_zip_entry *e = &st->dir.entries[st->by_offset[i]];
		const sm_zip_entry *next = NULL;
		uint64_t limit = st->dir.cdir_offset;
		int fits;

		if (i + 1 < st->dir.count) {
			next = &st->dir.entries[st->by_offset[i + 1]];
			limit = next->offset;
		}
		/* compared by differences, so huge declared sizes cannot overflow */
		fits = e->offset <= limit && limit - e->offset >= LOCAL_HEADER_SIZE + e->name_len &&
		       limit - e->offset - LOCAL_HEADER_SIZE - e->name_len >= e->compressed;
		if (!fits) {
			if (next)
				return sm_error_set(SM_EINVALID, "invalid bundle '%s': entries '%s' and "
						    "'%s' overlap", st->label, entry_name(e, qa),
						    entry_name(next, qb));
			return sm_error_set(SM_EINVALID, "invalid bundle '%s': entry '%s' runs into "
					    "the central directory", st->label, entry_name(e, qa));
		}
		e->span_end = limit;
	}
	return 0;
}

static int check_directory(struct open_state *st, uint64_t *total)
{
	int rc = check_totals(st, total);

	for (size_t i = 0; i < st->dir.count && !rc; i++)
		rc = check_entry(st->label, &st->dir.entries[i]);
	if (!rc)
		rc = sort_entries(st);
	if (!rc)
		rc = check_duplicates(st);
	if (!rc)
		rc = check_overlaps(st);
	return rc;
}

/* Finds an entry by its exact name and returns its index, or -1. */
static ssize_t find_entry(const struct open_state *st, const char *name, size_t len)
{
	size_t lo = 0, hi = st->dir.count;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const sm_zip_entry *e = &st->dir.entries[st->by_name[mid]];
		int order = compare_names(e->name, e->name_len, name, len);

		if (order == 0)
			return (ssize_t)st->by_name[mid];
		if (order < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

static int libzip_error(const char *label, zip_error_t *error)
{
	int rc = zip_error_code_zip(error) == ZIP_ER_MEMORY ? SM_ENOMEM : SM_EINVALID;

	return sm_error_set(rc, "invalid bundle '%s': %s", label, zip_error_strerror(error));
}

/*
 * Opens the archive with libzip and checks that libzip lists the same
 * entries, so other zip readers cannot see different files. Entry data is
 * read with sm_entry_read(), not libzip.
 */
static int check_with_libzip(struct open_state *st, int fd)
{
	zip_error_t error;
	zip_t *zip;
	int zerr = 0, dup_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0), rc = 0;

	if (dup_fd < 0)
		return sm_error_set_errno(SM_EIO, errno, "cannot open '%s'", st->label);
	/* ZIP_CHECKCONS compares every local header with the central directory */
	zip = zip_fdopen(dup_fd, ZIP_RDONLY | ZIP_CHECKCONS, &zerr);
	if (!zip) {
		close(dup_fd);
		zip_error_init_with_code(&error, zerr);
		rc = libzip_error(st->label, &error);
		zip_error_fini(&error);
		return rc;
	}
	if ((zip_uint64_t)zip_get_num_entries(zip, 0) != st->dir.count) {
		rc = sm_error_set(SM_EINVALID, "invalid bundle '%s': the central directory is "
				  "ambiguous (entry counts differ)", st->label);
		goto done;
	}
	for (size_t i = 0; i < st->dir.count; i++) {
		const sm_zip_entry *e = &st->dir.entries[i];
		const char *name = zip_get_name(zip, i, ZIP_FL_ENC_RAW);
		zip_stat_t zs;

		if (!name || strlen(name) != e->name_len || memcmp(name, e->name, e->name_len) ||
		    zip_stat_index(zip, i, ZIP_FL_ENC_RAW, &zs) != 0 || zs.size != e->size ||
		    zs.comp_size != e->compressed || zs.comp_method != e->method) {
			rc = sm_error_set(SM_EINVALID, "invalid bundle '%s': the central directory "
					  "is ambiguous (entry %zu differs between readers)",
					  st->label, i);
			goto done;
		}
	}
done:
	zip_discard(zip);
	return rc;
}

static int append_to_buf(void *payload, const void *data, size_t len)
{
	return sm_buf_put(payload, data, len);
}

/* Reads a whole entry into `out`. A damaged entry makes the bundle invalid. */
static int read_entry(int fd, const sm_zip_entry *e, const char *label, sm_buf *out)
{
	sm_entry_reader reader;
	char problem[SM_ENTRY_PROBLEM_MAX];
	int rc = sm_entry_reader_init(&reader, fd, label);

	if (rc)
		return rc;
	rc = sm_entry_read(&reader, e, append_to_buf, out, problem);
	if (rc == 1)
		rc = entry_error(label, e, problem);
	sm_entry_reader_release(&reader);
	return rc;
}

static int load_manifest(struct open_state *st, int fd, sm_bundle *b)
{
	sm_buf text = SM_BUF_INIT(SM_MANIFEST_MAX_BYTES);
	const sm_zip_entry *e;
	ssize_t index = find_entry(st, "manifest.json", 13);
	int rc;

	if (index < 0)
		return sm_error_set(SM_EINVALID, "invalid bundle '%s': manifest.json missing; "
				    "this is not a skillmeat bundle", st->label);
	e = &st->dir.entries[index];
	if (e->size > SM_MANIFEST_MAX_BYTES)
		return sm_error_set(SM_EINVALID, "invalid bundle '%s': manifest.json is %llu "
				    "bytes, more than the limit of %u", st->label,
				    (unsigned long long)e->size, SM_MANIFEST_MAX_BYTES);
	st->used[index] = 1;
	rc = read_entry(fd, e, st->label, &text);
	if (!rc)
		rc = sm_manifest_parse(text.data ? text.data : "", text.len, st->label,
				       &b->manifest, &b->root);
	sm_buf_release(&text);
	return rc;
}

/* Matches every file the manifest lists with an entry, and every entry with a file. */
static int match_files(struct open_state *st, sm_bundle *b)
{
	sm_manifest *m = &b->manifest;
	sm_buf name = SM_BUF_INIT(0);
	char q[QUOTED_MAX];
	int rc = 0;

	b->indexes = calloc(m->nartifacts, sizeof(*b->indexes));
	if (!b->indexes)
		return sm_error_set(SM_ENOMEM, "out of memory");
	for (size_t i = 0; i < m->nartifacts && !rc; i++) {
		sm_artifact *a = &m->artifacts[i];

		b->indexes[i] = calloc(a->nfiles, sizeof(**b->indexes));
		if (!b->indexes[i]) {
			rc = sm_error_set(SM_ENOMEM, "out of memory");
			break;
		}
		for (size_t j = 0; j < a->nfiles && !rc; j++) {
			ssize_t index;

			name.len = 0;
			if ((rc = sm_buf_puts(&name, a->path)) || (rc = sm_buf_puts(&name, a->files[j].path)))
				break;
			index = find_entry(st, name.data, name.len);
			if (index < 0) {
				rc = sm_error_set(SM_EINVALID, "invalid bundle '%s': file '%s' of "
						  "artifact '%s' is missing from the archive",
						  st->label, a->files[j].path, a->name);
				break;
			}
			st->used[index] = 1;
			b->indexes[i][j] = (size_t)index;
			a->files[j].size = st->dir.entries[index].size;
			a->files[j].compressed = st->dir.entries[index].compressed;
			a->size += a->files[j].size;
		}
	}
	for (size_t i = 0; i < st->dir.count && !rc; i++)
		if (!st->used[i])
			rc = sm_error_set(SM_EINVALID, "invalid bundle '%s': entry '%s' does not "
					  "belong to any artifact in the manifest", st->label,
					  entry_name(&st->dir.entries[i], q));
	sm_buf_release(&name);
	return rc;
}

int sm_bundle_open(sm_bundle **out, const char *path)
{
	return sm_bundle_open_as(out, path, path);
}

int sm_bundle_open_as(sm_bundle **out, const char *path, const char *label)
{
	struct open_state st = { .label = label };
	sm_bundle *b = NULL;
	struct stat sb;
	int fd, rc;

	*out = NULL;
	fd = sm_open_regular(path, &rc);
	if (fd < 0)
		return rc == SM_EINVALID
			? sm_error_set(rc, "invalid bundle '%s': not a regular file", label)
			: sm_error_wrap(rc, "cannot open bundle");
	if (fstat(fd, &sb) != 0) {
		rc = sm_error_set_errno(SM_EIO, errno, "cannot open bundle '%s'", label);
		goto done;
	}
	if (!S_ISREG(sb.st_mode)) {
		rc = sm_error_set(SM_EINVALID, "invalid bundle '%s': not a regular file", label);
		goto done;
	}
	b = calloc(1, sizeof(*b));
	if (b)
		b->fd = -1;
	if (!b || !(b->path = sm_strdup(label))) {
		rc = sm_error_set(SM_ENOMEM, "out of memory");
		goto done;
	}
	b->archive_size = (uint64_t)sb.st_size;
	/* verification reads entries front to back; the hint is optional, so errors are ignored */
	posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);

	/* the archive's own bytes first, then libzip's view of them */
	rc = sm_zip_dir_read(fd, b->archive_size, label, &st.dir);
	if (!rc)
		rc = check_directory(&st, &b->uncompressed_size);
	if (!rc)
		rc = check_with_libzip(&st, fd);
	if (!rc)
		rc = load_manifest(&st, fd, b);
	if (!rc)
		rc = match_files(&st, b);
	if (!rc) {
		/* the bundle keeps the archive open and its directory for sm_bundle_verify() */
		b->fd = fd;
		b->dir = st.dir;
		memset(&st.dir, 0, sizeof(st.dir));
	}
done:
	if (rc)
		close(fd);
	sm_zip_dir_release(&st.dir);
	free(st.by_name);
	free(st.by_offset);
	free(st.used);
	if (rc)
		sm_bundle_free(b);
	else
		*out = b;
	return rc;
}

const sm_manifest *sm_bundle_manifest(const sm_bundle *bundle)
{
	return &bundle->manifest;
}

int sm_bundle_fd(const sm_bundle *bundle)
{
	return bundle->fd;
}

uint64_t sm_bundle_archive_size(const sm_bundle *bundle)
{
	return bundle->archive_size;
}

uint64_t sm_bundle_uncompressed_size(const sm_bundle *bundle)
{
	return bundle->uncompressed_size;
}

/* Problems found by one sm_bundle_verify() call. */
struct verify_state {
	sm_verify_cb cb;
	void *payload;
	size_t problems;
};

static void report(struct verify_state *vs, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void report(struct verify_state *vs, const char *fmt, ...)
{
	char line[1024];
	va_list ap;

	vs->problems++;
	if (!vs->cb)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	vs->cb(line, vs->payload);
}

static int update_digest(void *payload, const void *data, size_t len)
{
	if (EVP_DigestUpdate(payload, data, len) != 1)
		return sm_error_set(SM_ERROR, "SHA-256 update failed");
	return 0;
}

/*
 * Feeds one entry's bytes to `ctx`. Returns 0 when the entry read back
 * whole, 1 after reporting a damaged or lying entry, or a negative code
 * when the archive cannot be read at all.
 */
static int hash_entry(sm_entry_reader *reader, const sm_zip_entry *e, const char *name,
		      EVP_MD_CTX *ctx, struct verify_state *vs)
{
	char problem[SM_ENTRY_PROBLEM_MAX];
	int rc = sm_entry_read(reader, e, update_digest, ctx, problem);

	if (rc == 1)
		report(vs, "entry '%s' %s", name, problem);
	return rc;
}

static int verify_artifact(sm_bundle *b, size_t i, sm_entry_reader *reader, EVP_MD_CTX *ctx,
			   struct verify_state *vs, const sm_zip_follower *followed,
			   size_t *reused)
{
	const sm_artifact *a = &b->manifest.artifacts[i];
	unsigned char digest[EVP_MAX_MD_SIZE];
	char actual[72], name[SM_BUNDLE_PATH_MAX + 1];
	int damaged = 0, rc;

	if (sm_zip_follower_artifact(followed, a->path, b->dir.entries, b->indexes[i], a->nfiles,
				     digest)) {
		(*reused)++;
		goto compare;
	}
	if (!EVP_DigestInit_ex(ctx, EVP_sha256(), NULL))
		return sm_error_set(SM_ERROR, "cannot set up SHA-256");
	for (size_t j = 0; j < a->nfiles; j++) {
		/* the artifact hash covers each relative path, then that file's bytes */
		EVP_DigestUpdate(ctx, a->files[j].path, strlen(a->files[j].path));
		snprintf(name, sizeof(name), "%s%s", a->path, a->files[j].path);
		rc = hash_entry(reader, &b->dir.entries[b->indexes[i][j]], name, ctx, vs);
		if (rc < 0)
			return rc;
		damaged |= rc;
	}
	EVP_DigestFinal_ex(ctx, digest, NULL);
	if (damaged)
		return 0;
compare:
	memcpy(actual, SM_SHA256_PREFIX, 7);
	sm_hex(digest, 32, actual + 7);
	if (strcmp(actual, a->hash) != 0)
		report(vs, "artifact '%s' hash mismatch: manifest %s, archive %s", a->name, a->hash,
		       actual);
	return 0;
}

int sm_bundle_verify(sm_bundle *bundle, sm_verify_cb cb, void *payload)
{
	return sm_bundle_verify_followed(bundle, NULL, cb, payload, NULL);
}

int sm_bundle_verify_followed(sm_bundle *bundle, const sm_zip_follower *followed,
			      sm_verify_cb cb, void *payload, size_t *reused)
{
	struct verify_state vs = { cb, payload, 0 };
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	sm_entry_reader reader = { .fd = -1 };
	char computed[72];
	size_t reused_count = 0;
	int rc = 0;

	if (reused)
		*reused = 0;
	if (!ctx) {
		rc = sm_error_set(SM_ENOMEM, "out of memory");
		goto done;
	}
	rc = sm_entry_reader_init(&reader, bundle->fd, bundle->path);
	for (size_t i = 0; i < bundle->manifest.nartifacts && !rc; i++)
		rc = verify_artifact(bundle, i, &reader, ctx, &vs, followed, &reused_count);
	if (reused)
		*reused = reused_count;
	if (rc)
		goto done;

	rc = sm_manifest_hash_json(bundle->root, computed);
	if (rc)
		goto done;
	if (strcmp(computed, bundle->manifest.bundle_hash) != 0)
		report(&vs, "bundle hash mismatch: manifest %s, computed %s",
		       bundle->manifest.bundle_hash, computed);
	if (vs.problems)
		rc = sm_error_set(SM_EINTEGRITY, "bundle '%s' failed verification: %zu problem%s "
				  "found; do not import it", bundle->path, vs.problems,
				  vs.problems == 1 ? "" : "s");
done:
	EVP_MD_CTX_free(ctx);
	sm_entry_reader_release(&reader);
	return rc;
}

void sm_bundle_free(sm_bundle *bundle)
{
	if (!bundle)
		return;
	if (bundle->indexes)
		for (size_t i = 0; i < bundle->manifest.nartifacts; i++)
			free(bundle->indexes[i]);
	free(bundle->indexes);
	sm_manifest_release(&bundle->manifest);
	if (bundle->root)
		json_decref(bundle->root);
	sm_zip_dir_release(&bundle->dir);
	if (bundle->fd >= 0)
		close(bundle->fd);
	free(bundle->path);
	free(bundle);
}
