/*
 * Tests of the bundle module: hashes that match the original tool, the
 * checks sm_bundle_open() applies to untrusted archives, verification,
 * and reproducible sm_bundle_create() output.
 *
 * Archives that libzip refuses to write (NUL bytes or duplicates in names,
 * lying sizes, overlapping entries) are written byte by byte here.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <zip.h>

#include "bundle/bundle_internal.h"
#include "skillmeat/bundle.h"
#include "skillmeat/error.h"

#define FIXTURE_BUNDLE_HASH "sha256:ba0bb71656434901168866e3116db61a7a85595753a91286755741cd75593ec3"
#define FIXTURE_ARTIFACT_HASH "sha256:b5a9e8c2cd7a7f99c53882cca977a185ff78b8dba01b2cca636387c68f30c912"
#define DOS_DATE_2020_01_01 ((40 << 9) | (1 << 5) | 1)

/* ---- temporary folders ---- */

struct fixture {
	char dir[64];
	char path[512];
};

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static int setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));

	if (!fx)
		return -1;
	snprintf(fx->dir, sizeof(fx->dir), "/tmp/sm-bundle-test-XXXXXX");
	if (!mkdtemp(fx->dir))
		return -1;
	snprintf(fx->path, sizeof(fx->path), "%s/test.skillmeat-pack", fx->dir);
	unsetenv("SOURCE_DATE_EPOCH");
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *fx = *state;

	nftw(fx->dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
	free(fx);
	unsetenv("SOURCE_DATE_EPOCH");
	return 0;
}

static char *in_dir(const struct fixture *fx, const char *name)
{
	char *path = NULL;

	assert_true(asprintf(&path, "%s/%s", fx->dir, name) > 0);
	return path;
}

static char *source_path(const char *rel)
{
	const char *root = getenv("SKILLMEAT_SOURCE_DIR");
	char *path = NULL;

	if (!root)
		fail_msg("SKILLMEAT_SOURCE_DIR is not set; run the tests through ctest");
	assert_true(asprintf(&path, "%s/%s", root, rel) > 0);
	return path;
}

static void write_file(const char *path, const void *data, size_t len)
{
	FILE *f = fopen(path, "wb");

	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
}

static char *read_whole(const char *path, size_t *len)
{
	char *data = NULL;
	int rc = sm_read_file(path, 1u << 30, &data, len);

	assert_int_equal(rc, 0);
	return data;
}

static void copy_file(const char *from, const char *to)
{
	size_t len;
	char *data = read_whole(from, &len);

	write_file(to, data, len);
	free(data);
}

static void copy_tree(const char *from, const char *to)
{
	DIR *dir = opendir(from);
	struct dirent *de;

	assert_non_null(dir);
	assert_int_equal(mkdir(to, 0755), 0);
	while ((de = readdir(dir))) {
		char *src = NULL, *dst = NULL;
		struct stat st;

		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		assert_true(asprintf(&src, "%s/%s", from, de->d_name) > 0);
		assert_true(asprintf(&dst, "%s/%s", to, de->d_name) > 0);
		assert_int_equal(lstat(src, &st), 0);
		if (S_ISDIR(st.st_mode))
			copy_tree(src, dst);
		else
			copy_file(src, dst);
		free(src);
		free(dst);
	}
	closedir(dir);
}

/* Copies one of examples/skills into the test folder and returns its path. */
static char *example_skill(const struct fixture *fx, const char *name)
{
	char *from, *to = in_dir(fx, name), *rel = NULL;

	assert_true(asprintf(&rel, "examples/skills/%s", name) > 0);
	from = source_path(rel);
	copy_tree(from, to);
	free(from);
	free(rel);
	return to;
}

/* Creates a skill folder holding SKILL.md with `skill_md` as its text. */
static char *make_skill(const struct fixture *fx, const char *name, const char *skill_md)
{
	char *dir = in_dir(fx, name), *file = NULL;

	assert_int_equal(mkdir(dir, 0755), 0);
	assert_true(asprintf(&file, "%s/SKILL.md", dir) > 0);
	write_file(file, skill_md, strlen(skill_md));
	free(file);
	return dir;
}

static void set_mtime(const char *path, time_t when)
{
	struct timeval times[2] = { { when, 0 }, { when, 0 } };

	assert_int_equal(utimes(path, times), 0);
}

static int count_temp_files(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int n = 0;

	assert_non_null(d);
	while ((de = readdir(d)))
		if (strstr(de->d_name, ".tmp-"))
			n++;
	closedir(d);
	return n;
}

/* ---- a zip writer for archives libzip will not produce ---- */

struct raw_entry {
	const char *name;
	size_t name_len;        /* 0: strlen(name) */
	const char *data;
	size_t len;
	int deflate;            /* method 8, written as one stored deflate block */
	uint16_t method;        /* overrides the method field when not 0 */
	uint16_t flags;
	uint32_t attributes;    /* 0: 0600 << 16 */
	int64_t declared_size;  /* -1 or 0 with `declare`: the real size */
	int declare;            /* use declared_size / declared_compressed */
	int64_t declared_compressed;
	int share_with;         /* 1 + index of an earlier entry whose data this one reuses */
};

static uint32_t crc32_of(const char *data, size_t len)
{
	uint32_t crc = 0xffffffffu;

	for (size_t i = 0; i < len; i++) {
		crc ^= (unsigned char)data[i];
		for (int k = 0; k < 8; k++)
			crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1)));
	}
	return ~crc;
}

static void put16(sm_buf *b, uint32_t v)
{
	unsigned char p[2] = { (unsigned char)v, (unsigned char)(v >> 8) };

	assert_int_equal(sm_buf_put(b, p, 2), 0);
}

static void put32(sm_buf *b, uint32_t v)
{
	put16(b, v & 0xffff);
	put16(b, v >> 16);
}

static void put64(sm_buf *b, uint64_t v)
{
	put32(b, (uint32_t)v);
	put32(b, (uint32_t)(v >> 32));
}

/*
 * Writes entries as a zip archive. `declared_count`, when not 0, replaces
 * the entry count of the end records (written as zip64 records then).
 */
static void write_raw_zip(const char *path, const struct raw_entry *entries, size_t n,
			  uint64_t declared_count)
{
	sm_buf out = SM_BUF_INIT(0), cdir = SM_BUF_INIT(0);
	uint64_t *offsets = calloc(n ? n : 1, sizeof(*offsets));
	uint64_t cdir_offset;

	assert_non_null(offsets);
	for (size_t i = 0; i < n; i++) {
		const struct raw_entry *e = &entries[i];
		size_t name_len = e->name_len ? e->name_len : strlen(e->name);
		size_t comp = e->deflate ? e->len + 5 : e->len;
		uint16_t method = e->method ? e->method : (e->deflate ? 8 : 0);
		uint64_t size = e->declare ? (uint64_t)e->declared_size : e->len;
		uint64_t comp_size = e->declare ? (uint64_t)e->declared_compressed : comp;
		uint32_t crc = crc32_of(e->data, e->len);

		/* the local header and data, unless this entry reuses another's */
		if (e->share_with) {
			offsets[i] = offsets[e->share_with - 1];
		} else {
			offsets[i] = out.len;
			put32(&out, 0x04034b50);
			put16(&out, 20);
			put16(&out, e->flags);
			put16(&out, method);
			put16(&out, 0);
			put16(&out, DOS_DATE_2020_01_01);
			put32(&out, crc);
			put32(&out, (uint32_t)comp_size);
			put32(&out, (uint32_t)size);
			put16(&out, (uint32_t)name_len);
			put16(&out, 0);
			assert_int_equal(sm_buf_put(&out, e->name, name_len), 0);
			if (e->deflate) {
				assert_true(e->len <= 0xffff);
				assert_int_equal(sm_buf_putc(&out, 1), 0);
				put16(&out, (uint32_t)e->len);
				put16(&out, (uint32_t)(~e->len & 0xffff));
			}
			assert_int_equal(sm_buf_put(&out, e->data, e->len), 0);
		}

		put32(&cdir, 0x02014b50);
		put16(&cdir, 0x0314);
		put16(&cdir, 20);
		put16(&cdir, e->flags);
		put16(&cdir, method);
		put16(&cdir, 0);
		put16(&cdir, DOS_DATE_2020_01_01);
		put32(&cdir, crc);
		put32(&cdir, (uint32_t)comp_size);
		put32(&cdir, (uint32_t)size);
		put16(&cdir, (uint32_t)name_len);
		put16(&cdir, 0);
		put16(&cdir, 0);
		put16(&cdir, 0);
		put16(&cdir, 0);
		put32(&cdir, e->attributes ? e->attributes : 0600u << 16);
		put32(&cdir, (uint32_t)offsets[i]);
		assert_int_equal(sm_buf_put(&cdir, e->name, name_len), 0);
	}

	cdir_offset = out.len;
	assert_int_equal(sm_buf_put(&out, cdir.data ? cdir.data : "", cdir.len), 0);
	if (declared_count) {
		uint64_t record = out.len;

		/* zip64 end of central directory record and its locator */
		put32(&out, 0x06064b50);
		put64(&out, 44);
		put16(&out, 45);
		put16(&out, 45);
		put32(&out, 0);
		put32(&out, 0);
		put64(&out, declared_count);
		put64(&out, declared_count);
		put64(&out, cdir.len);
		put64(&out, cdir_offset);
		put32(&out, 0x07064b50);
		put32(&out, 0);
		put64(&out, record);
		put32(&out, 1);
	}
	put32(&out, 0x06054b50);
	put16(&out, 0);
	put16(&out, 0);
	put16(&out, declared_count ? 0xffff : (uint32_t)n);
	put16(&out, declared_count ? 0xffff : (uint32_t)n);
	put32(&out, (uint32_t)cdir.len);
	put32(&out, (uint32_t)cdir_offset);
	put16(&out, 0);
	write_file(path, out.data, out.len);
	sm_buf_release(&out);
	sm_buf_release(&cdir);
	free(offsets);
}

/* ---- a small valid bundle to break in one place at a time ---- */

static const char demo_skill_md[] = "---\nname: demo\n---\n# Demo\n";
static const char demo_notes[] = "some notes\n";

static void artifact_hash(const char *const *paths, const char *const *data, size_t n,
			  char out[72])
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned char digest[32];

	assert_non_null(ctx);
	assert_int_equal(EVP_DigestInit_ex(ctx, EVP_sha256(), NULL), 1);
	for (size_t i = 0; i < n; i++) {
		EVP_DigestUpdate(ctx, paths[i], strlen(paths[i]));
		EVP_DigestUpdate(ctx, data[i], strlen(data[i]));
	}
	EVP_DigestFinal_ex(ctx, digest, NULL);
	EVP_MD_CTX_free(ctx);
	memcpy(out, "sha256:", 7);
	sm_hex(digest, 32, out + 7);
}

/* A manifest for the demo files with correct artifact and bundle hashes. */
static json_t *demo_manifest(void)
{
	const char *paths[] = { "SKILL.md", "notes.txt" };
	const char *data[] = { demo_skill_md, demo_notes };
	char hash[72], bundle_hash[72];
	json_t *root;

	artifact_hash(paths, data, 2, hash);
	root = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:[s], s:[], s:s, s:[{s:s, s:s, s:s, "
			 "s:s, s:s, s:[s,s], s:s, s:{s:s}}]}",
			 "version", "1.0", "name", "demo-bundle", "description", "A test bundle",
			 "author", "tester", "created_at", "2024-05-01T10:00:00", "license", "MIT",
			 "tags", "demo", "dependencies", "bundle_version", "3.1.0",
			 "artifacts", "type", "skill", "name", "demo", "version", "1.0.0",
			 "scope", "user", "path", "artifacts/skill/demo/", "files", "SKILL.md",
			 "notes.txt", "hash", hash, "metadata", "title", "demo");
	assert_non_null(root);
	assert_int_equal(sm_manifest_hash_json(root, bundle_hash), 0);
	assert_int_equal(json_object_set_new(root, "bundle_hash", json_string(bundle_hash)), 0);
	return root;
}

static json_t *demo_artifact(json_t *manifest)
{
	return json_array_get(json_object_get(manifest, "artifacts"), 0);
}

/*
 * Writes the demo files, the `extra` entries, then manifest.json holding
 * `manifest` (or the text `manifest_text` when not NULL). Takes `manifest`.
 */
static void write_bundle(const char *path, json_t *manifest, const char *manifest_text,
			 const struct raw_entry *extra, size_t nextra)
{
	struct raw_entry entries[16] = {
		{ .name = "artifacts/skill/demo/SKILL.md", .data = demo_skill_md,
		  .len = strlen(demo_skill_md), .deflate = 1 },
		{ .name = "artifacts/skill/demo/notes.txt", .data = demo_notes,
		  .len = strlen(demo_notes) },
	};
	char *text = manifest_text ? strdup(manifest_text) : json_dumps(manifest, JSON_INDENT(2));
	size_t n = 2;

	assert_non_null(text);
	assert_true(nextra + 3 <= sizeof(entries) / sizeof(entries[0]));
	for (size_t i = 0; i < nextra; i++)
		entries[n++] = extra[i];
	entries[n].name = "manifest.json";
	entries[n].data = text;
	entries[n].len = strlen(text);
	n++;
	write_raw_zip(path, entries, n, 0);
	free(text);
	json_decref(manifest);
}

/* Opens `path` expecting failure with `code` and a message holding `part`. */
static void assert_open_fails(const char *path, int code, const char *part)
{
	sm_bundle *bundle = NULL;
	int rc = sm_bundle_open(&bundle, path);

	assert_null(bundle);
	assert_int_equal(rc, code);
	if (!strstr(sm_error_message(), part))
		fail_msg("message \"%s\" lacks \"%s\"", sm_error_message(), part);
}

static void assert_entry_rejected(const struct fixture *fx, struct raw_entry bad, const char *part)
{
	write_bundle(fx->path, demo_manifest(), NULL, &bad, 1);
	assert_open_fails(fx->path, SM_EINVALID, part);
}

static void assert_manifest_rejected(const struct fixture *fx, json_t *manifest, const char *part)
{
	write_bundle(fx->path, manifest, NULL, NULL, 0);
	assert_open_fails(fx->path, SM_EINVALID, part);
}

/* Collects verification problems. */
struct problems {
	int count;
	char last[1024];
};

static void collect_problem(const char *problem, void *payload)
{
	struct problems *p = payload;

	p->count++;
	snprintf(p->last, sizeof(p->last), "%s", problem);
}

static int verify_path(const char *path, struct problems *p)
{
	sm_bundle *bundle = NULL;
	int rc = sm_bundle_open(&bundle, path);

	if (rc)
		fail_msg("open failed: %s", sm_error_message());
	rc = sm_bundle_verify(bundle, collect_problem, p);
	sm_bundle_free(bundle);
	return rc;
}

/* Replaces one entry of a copy of the fixture bundle through libzip. */
static void replace_entry(const char *path, const char *name, const char *data)
{
	zip_t *zip = zip_open(path, 0, NULL);
	zip_source_t *src;
	zip_int64_t index;

	assert_non_null(zip);
	index = zip_name_locate(zip, name, 0);
	assert_true(index >= 0);
	src = zip_source_buffer(zip, data, strlen(data), 0);
	assert_non_null(src);
	assert_int_equal(zip_file_replace(zip, (zip_uint64_t)index, src, 0), 0);
	assert_int_equal(zip_close(zip), 0);
}

static const char *fixture_copy(const struct fixture *fx)
{
	char *from = source_path("tests/fixtures/original/demo-bundle.skillmeat-pack");

	copy_file(from, fx->path);
	free(from);
	return fx->path;
}

/* ---- hashes and the original tool's fixture ---- */

static void bundle_hash_matches_original_fixture(void **state)
{
	char *path = source_path("tests/fixtures/original/manifest.json"), *text, hash[72];
	size_t len;

	(void)state;
	text = read_whole(path, &len);
	assert_int_equal(sm_manifest_bundle_hash(text, len, hash), 0);
	assert_string_equal(hash, FIXTURE_BUNDLE_HASH);
	free(text);
	free(path);
}

static void fixture_copy_matches_shared_fixture(void **state)
{
	char *ours = source_path("tests/fixtures/original/demo-bundle.skillmeat-pack");
	char *shared = source_path("../shared/fixtures/original/demo-bundle.skillmeat-pack");
	char *a, *b;
	size_t alen, blen;

	(void)state;
	if (access(shared, R_OK) != 0) {
		free(ours);
		free(shared);
		skip();
	}
	a = read_whole(ours, &alen);
	b = read_whole(shared, &blen);
	assert_int_equal(alen, blen);
	assert_memory_equal(a, b, alen);
	free(a);
	free(b);
	free(ours);
	free(shared);
}

static void open_reads_fixture_manifest(void **state)
{
	char *path = source_path("tests/fixtures/original/demo-bundle.skillmeat-pack");
	const sm_manifest *m;
	const sm_artifact *a;
	sm_bundle *bundle = NULL;

	(void)state;
	assert_int_equal(sm_bundle_open(&bundle, path), 0);
	m = sm_bundle_manifest(bundle);
	assert_string_equal(m->name, "demo-bundle");
	assert_string_equal(m->format_version, "1.0");
	assert_string_equal(m->bundle_version, SM_DEFAULT_BUNDLE_VERSION);
	assert_string_equal(m->author, "fixture@example.com");
	assert_string_equal(m->created_at, "2026-12-04T19:12:57.937458");
	assert_string_equal(m->bundle_hash, FIXTURE_BUNDLE_HASH);
	assert_int_equal(m->ntags, 2);
	assert_string_equal(m->tags[1], "fixture");
	assert_int_equal(m->nartifacts, 1);
	a = &m->artifacts[0];
	assert_string_equal(a->hash, FIXTURE_ARTIFACT_HASH);
	assert_string_equal(a->path, "artifacts/skill/demo-skill/");
	assert_int_equal(a->nfiles, 3);
	assert_string_equal(a->files[2].path, "scripts/hello.sh");
	assert_int_equal(a->files[0].size, 160);
	assert_int_equal(a->files[1].size, 16);
	assert_int_equal(a->files[2].size, 21);
	assert_int_equal(a->size, 197);
	assert_int_equal(a->nmetadata, 4);
	assert_string_equal(a->metadata[0].key, "author");
	assert_string_equal(a->metadata[3].value, "demo-skill");
	assert_int_equal(sm_bundle_archive_size(bundle), 1184);
	assert_int_equal(sm_bundle_uncompressed_size(bundle), 197 + 898);
	sm_bundle_free(bundle);
	free(path);
}

static void verify_accepts_original_fixture(void **state)
{
	char *path = source_path("tests/fixtures/original/demo-bundle.skillmeat-pack");
	struct problems p = { 0 };

	(void)state;
	assert_int_equal(verify_path(path, &p), 0);
	assert_int_equal(p.count, 0);
	free(path);
}

static void verify_reports_changed_entry_bytes(void **state)
{
	struct fixture *fx = *state;
	struct problems p = { 0 };

	replace_entry(fixture_copy(fx), "artifacts/skill/demo-skill/notes.txt", "other notes\n");
	assert_int_equal(verify_path(fx->path, &p), SM_EINTEGRITY);
	assert_int_equal(p.count, 1);
	assert_non_null(strstr(p.last, "artifact 'demo-skill' hash mismatch"));
	assert_non_null(strstr(p.last, FIXTURE_ARTIFACT_HASH));
	assert_non_null(strstr(sm_error_message(), "failed verification"));
}

static void verify_reports_changed_manifest_field(void **state)
{
	struct fixture *fx = *state;
	char *path = source_path("tests/fixtures/original/manifest.json"), *text;
	json_t *manifest = json_load_file(path, 0, NULL);
	struct problems p = { 0 };

	assert_non_null(manifest);
	assert_int_equal(json_object_set_new(manifest, "description", json_string("changed")), 0);
	text = json_dumps(manifest, JSON_INDENT(2) | JSON_SORT_KEYS);
	assert_non_null(text);
	replace_entry(fixture_copy(fx), "manifest.json", text);
	assert_int_equal(verify_path(fx->path, &p), SM_EINTEGRITY);
	assert_int_equal(p.count, 1);
	assert_non_null(strstr(p.last, "bundle hash mismatch: manifest " FIXTURE_BUNDLE_HASH));
	free(text);
	json_decref(manifest);
	free(path);
}

static void verify_reports_entry_longer_than_declared(void **state)
{
	struct fixture *fx = *state;
	struct raw_entry entries[3] = {
		{ .name = "artifacts/skill/demo/SKILL.md", .data = demo_skill_md,
		  .len = strlen(demo_skill_md), .deflate = 1, .declare = 1,
		  .declared_size = 4, .declared_compressed = (int64_t)strlen(demo_skill_md) + 5 },
		{ .name = "artifacts/skill/demo/notes.txt", .data = demo_notes,
		  .len = strlen(demo_notes) },
	};
	json_t *manifest = demo_manifest();
	char *text = json_dumps(manifest, 0);
	struct problems p = { 0 };

	entries[2].name = "manifest.json";
	entries[2].data = text;
	entries[2].len = strlen(text);
	write_raw_zip(fx->path, entries, 3, 0);
	assert_int_equal(verify_path(fx->path, &p), SM_EINTEGRITY);
	assert_int_equal(p.count, 1);
	assert_non_null(strstr(p.last, "'artifacts/skill/demo/SKILL.md' yields more bytes than "
				"its declared size of 4"));
	free(text);
	json_decref(manifest);
}

static void verify_accepts_generated_bundle(void **state)
{
	struct fixture *fx = *state;
	struct problems p = { 0 };

	write_bundle(fx->path, demo_manifest(), NULL, NULL, 0);
	assert_int_equal(verify_path(fx->path, &p), 0);
	assert_int_equal(p.count, 0);
}

static void verify_reports_entry_shorter_than_declared(void **state)
{
	struct fixture *fx = *state;
	size_t len = strlen(demo_skill_md);
	struct raw_entry entries[3] = {
		{ .name = "artifacts/skill/demo/SKILL.md", .data = demo_skill_md, .len = len,
		  .deflate = 1, .declare = 1, .declared_size = (int64_t)len + 5,
		  .declared_compressed = (int64_t)len + 5 },
		{ .name = "artifacts/skill/demo/notes.txt", .data = demo_notes,
		  .len = strlen(demo_notes) },
	};
	json_t *manifest = demo_manifest();
	char *text = json_dumps(manifest, 0), expected[128];
	struct problems p = { 0 };

	entries[2].name = "manifest.json";
	entries[2].data = text;
	entries[2].len = strlen(text);
	write_raw_zip(fx->path, entries, 3, 0);
	snprintf(expected, sizeof(expected), "entry 'artifacts/skill/demo/SKILL.md' yields %zu "
		 "bytes, fewer than its declared size of %zu", len, len + 5);
	assert_int_equal(verify_path(fx->path, &p), SM_EINTEGRITY);
	assert_int_equal(p.count, 1);
	assert_string_equal(p.last, expected);
	free(text);
	json_decref(manifest);
}

/* A deflate block header with BTYPE 11, which RFC 1951 reserves as an error. */
static const char invalid_deflate[] = "\x07\x00\x00";

static void verify_reports_damaged_deflate_entry(void **state)
{
	struct fixture *fx = *state;
	struct raw_entry entries[3] = {
		{ .name = "artifacts/skill/demo/SKILL.md", .data = invalid_deflate, .len = 3,
		  .method = 8, .declare = 1, .declared_size = (int64_t)strlen(demo_skill_md),
		  .declared_compressed = 3 },
		{ .name = "artifacts/skill/demo/notes.txt", .data = demo_notes,
		  .len = strlen(demo_notes) },
	};
	json_t *manifest = demo_manifest();
	char *text = json_dumps(manifest, 0);
	struct problems p = { 0 };

	entries[2].name = "manifest.json";
	entries[2].data = text;
	entries[2].len = strlen(text);
	write_raw_zip(fx->path, entries, 3, 0);
	assert_int_equal(verify_path(fx->path, &p), SM_EINTEGRITY);
	/* a damaged entry is reported once, without a second hash mismatch report */
	assert_int_equal(p.count, 1);
	assert_string_equal(p.last, "entry 'artifacts/skill/demo/SKILL.md' is damaged: invalid "
			    "deflate data (invalid block type)");
	free(text);
	json_decref(manifest);
}

static void open_rejects_damaged_manifest_entry(void **state)
{
	struct fixture *fx = *state;
	struct raw_entry entries[3] = {
		{ .name = "artifacts/skill/demo/SKILL.md", .data = demo_skill_md,
		  .len = strlen(demo_skill_md) },
		{ .name = "artifacts/skill/demo/notes.txt", .data = demo_notes,
		  .len = strlen(demo_notes) },
		{ .name = "manifest.json", .data = invalid_deflate, .len = 3, .method = 8,
		  .declare = 1, .declared_size = 100, .declared_compressed = 3 },
	};

	write_raw_zip(fx->path, entries, 3, 0);
	assert_open_fails(fx->path, SM_EINVALID, "entry 'manifest.json' is damaged: invalid "
			  "deflate data (invalid block type)");
}

/* Fills `len` bytes: pseudo-random bytes in the first half, numbered lines after. */
static char *mixed_data(size_t len)
{
	char *data = malloc(len);
	uint32_t x = 12345;
	size_t i = 0;

	assert_non_null(data);
	for (; i < len / 2; i++) {
		x = x * 1103515245u + 12345u;
		data[i] = (char)(x >> 16);
	}
	for (unsigned line = 0; i < len; line++) {
		char text[32];
		int n = snprintf(text, sizeof(text), "line %u of the test file\n", line);

		for (int k = 0; k < n && i < len; k++)
			data[i++] = text[k];
	}
	return data;
}

/* ---- entry data read without libzip ---- */

static int append_bytes(void *payload, const void *data, size_t len)
{
	return sm_buf_put(payload, data, len);
}

/* Reads entry `index` of the archive at `path` with sm_entry_read() and returns its result. */
static int read_entry_direct(const char *path, size_t index, sm_buf *out,
			     char problem[SM_ENTRY_PROBLEM_MAX])
{
	sm_entry_reader reader;
	sm_zip_dir dir;
	struct stat sb;
	int fd = open(path, O_RDONLY | O_CLOEXEC), rc;

	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &sb), 0);
	assert_int_equal(sm_zip_dir_read(fd, (uint64_t)sb.st_size, path, &dir), 0);
	assert_true(index < dir.count);
	assert_int_equal(sm_entry_reader_init(&reader, fd, path), 0);
	rc = sm_entry_read(&reader, &dir.entries[index], append_bytes, out, problem);
	sm_entry_reader_release(&reader);
	sm_zip_dir_release(&dir);
	close(fd);
	return rc;
}

/* Writes a one-entry archive holding `entry`, whose local header starts at offset 0. */
static void write_one_entry(const struct fixture *fx, struct raw_entry entry)
{
	write_raw_zip(fx->path, &entry, 1, 0);
}

static void patch_file(const char *path, off_t offset, const void *bytes, size_t len)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, bytes, len, offset), (ssize_t)len);
	assert_int_equal(close(fd), 0);
}

/* Reads the one entry of fx->path expecting it damaged with `expected` as the reason. */
static void assert_entry_damaged(const struct fixture *fx, const char *expected)
{
	sm_buf out = SM_BUF_INIT(0);
	char problem[SM_ENTRY_PROBLEM_MAX];

	assert_int_equal(read_entry_direct(fx->path, 0, &out, problem), 1);
	assert_string_equal(problem, expected);
	sm_buf_release(&out);
}

static void entry_read_inflates_deflate_entry(void **state)
{
	struct fixture *fx = *state;
	sm_buf out = SM_BUF_INIT(0);
	char problem[SM_ENTRY_PROBLEM_MAX];

	write_one_entry(fx, (struct raw_entry){ .name = "a.txt", .data = "hello deflate",
						.len = 13, .deflate = 1 });
	assert_int_equal(read_entry_direct(fx->path, 0, &out, problem), 0);
	assert_string_equal(problem, "");
	assert_int_equal(out.len, 13);
	assert_memory_equal(out.data, "hello deflate", 13);
	sm_buf_release(&out);
}

static void entry_read_copies_stored_entry_across_reads(void **state)
{
	struct fixture *fx = *state;
	size_t len = SM_ENTRY_READ_CHUNK + 12345;
	char *data = mixed_data(len);
	sm_buf out = SM_BUF_INIT(0);
	char problem[SM_ENTRY_PROBLEM_MAX];

	write_one_entry(fx, (struct raw_entry){ .name = "big.bin", .data = data, .len = len });
	assert_int_equal(read_entry_direct(fx->path, 0, &out, problem), 0);
	assert_int_equal(out.len, len);
	assert_memory_equal(out.data, data, len);
	sm_buf_release(&out);
	free(data);
}

/* Compresses `len` bytes of `data` into raw deflate data and sets `*out_len` to its length. */
static char *raw_deflate(const char *data, size_t len, size_t *out_len)
{
	z_stream zs = { 0 };
	uLong bound;
	char *out;

	assert_int_equal(deflateInit2(&zs, 6, Z_DEFLATED, -MAX_WBITS, 8, Z_DEFAULT_STRATEGY), Z_OK);
	bound = deflateBound(&zs, (uLong)len);
	out = malloc(bound);
	assert_non_null(out);
	zs.next_in = (Bytef *)data;
	zs.avail_in = (uInt)len;
	zs.next_out = (Bytef *)out;
	zs.avail_out = (uInt)bound;
	assert_int_equal(deflate(&zs, Z_FINISH), Z_STREAM_END);
	*out_len = zs.total_out;
	assert_int_equal(deflateEnd(&zs), Z_OK);
	return out;
}

static void entry_read_inflates_stream_across_reads(void **state)
{
	struct fixture *fx = *state;
	size_t len = 3 * SM_ENTRY_READ_CHUNK, comp_len;
	char *data = mixed_data(len), *comp = raw_deflate(data, len, &comp_len);
	sm_buf out = SM_BUF_INIT(0);
	char problem[SM_ENTRY_PROBLEM_MAX];

	assert_true(comp_len > SM_ENTRY_READ_CHUNK);
	write_one_entry(fx, (struct raw_entry){ .name = "big.bin", .data = comp, .len = comp_len,
						.method = 8, .declare = 1,
						.declared_size = (int64_t)len,
						.declared_compressed = (int64_t)comp_len });
	assert_int_equal(read_entry_direct(fx->path, 0, &out, problem), 0);
	assert_int_equal(out.len, len);
	assert_memory_equal(out.data, data, len);
	sm_buf_release(&out);
	free(comp);
	free(data);
}

static void entry_read_accepts_empty_deflate_entry(void **state)
{
	struct fixture *fx = *state;
	sm_buf out = SM_BUF_INIT(0);
	char problem[SM_ENTRY_PROBLEM_MAX];

	/* libzip reads 0 compressed bytes as empty data, without a deflate stream */
	write_one_entry(fx, (struct raw_entry){ .name = "empty", .data = "", .len = 0,
						.method = 8 });
	assert_int_equal(read_entry_direct(fx->path, 0, &out, problem), 0);
	assert_int_equal(out.len, 0);
	sm_buf_release(&out);
}

/* One final stored deflate block holding "hello", then 3 bytes that are not part of it. */
static const char hello_block[] = "\x01\x05\x00\xfa\xffhelloXYZ";

static void entry_read_stops_at_declared_size(void **state)
{
	struct fixture *fx = *state;
	sm_buf out = SM_BUF_INIT(0);
	char problem[SM_ENTRY_PROBLEM_MAX];

	write_one_entry(fx, (struct raw_entry){ .name = "a.txt", .data = hello_block, .len = 10,
						.method = 8, .declare = 1, .declared_size = 3,
						.declared_compressed = 10 });
	assert_int_equal(read_entry_direct(fx->path, 0, &out, problem), 1);
	assert_string_equal(problem, "yields more bytes than its declared size of 3");
	/* no byte past the declared size reaches the sink */
	assert_true(out.len <= 3);
	sm_buf_release(&out);
}

static void entry_read_rejects_fewer_bytes(void **state)
{
	struct fixture *fx = *state;

	write_one_entry(fx, (struct raw_entry){ .name = "a.txt", .data = hello_block, .len = 10,
						.method = 8, .declare = 1, .declared_size = 8,
						.declared_compressed = 10 });
	assert_entry_damaged(fx, "yields 5 bytes, fewer than its declared size of 8");
}

static void entry_read_rejects_truncated_stream(void **state)
{
	struct fixture *fx = *state;

	/* the block header promises 10 bytes, but the entry ends after 5 */
	write_one_entry(fx, (struct raw_entry){ .name = "a.txt",
						.data = "\x01\x0a\x00\xf5\xffhello",
						.len = 10, .method = 8, .declare = 1,
						.declared_size = 10, .declared_compressed = 10 });
	assert_entry_damaged(fx, "is damaged: its deflate data is truncated (5 of 10 bytes "
			     "inflated)");
}

static void entry_read_rejects_invalid_deflate_data(void **state)
{
	struct fixture *fx = *state;

	write_one_entry(fx, (struct raw_entry){ .name = "a.txt", .data = invalid_deflate, .len = 3,
						.method = 8, .declare = 1, .declared_size = 10,
						.declared_compressed = 3 });
	assert_entry_damaged(fx, "is damaged: invalid deflate data (invalid block type)");
}

static void entry_read_rejects_bytes_after_stream(void **state)
{
	struct fixture *fx = *state;

	write_one_entry(fx, (struct raw_entry){ .name = "a.txt", .data = hello_block, .len = 13,
						.method = 8, .declare = 1, .declared_size = 5,
						.declared_compressed = 13 });
	assert_entry_damaged(fx, "is damaged: its deflate stream ends 3 bytes before its "
			     "declared compressed size of 13");
}

static void entry_read_rejects_missing_local_header(void **state)
{
	struct fixture *fx = *state;

	write_one_entry(fx, (struct raw_entry){ .name = "a.txt", .data = "hello", .len = 5 });
	patch_file(fx->path, 0, "X", 1);
	assert_entry_damaged(fx, "is damaged: no local header at offset 0");
}

static void entry_read_rejects_local_name_mismatch(void **state)
{
	struct fixture *fx = *state;

	write_one_entry(fx, (struct raw_entry){ .name = "a.txt", .data = "hello", .len = 5 });
	/* the local name starts after the 30-byte local header */
	patch_file(fx->path, 30, "b", 1);
	assert_entry_damaged(fx, "is damaged: its local header names a different file");
}

static void entry_read_rejects_local_name_length_mismatch(void **state)
{
	struct fixture *fx = *state;

	write_one_entry(fx, (struct raw_entry){ .name = "a.txt", .data = "hello", .len = 5 });
	patch_file(fx->path, 26, "\x04\x00", 2);
	assert_entry_damaged(fx, "is damaged: its local header names a different file");
}

static void entry_read_rejects_local_method_mismatch(void **state)
{
	struct fixture *fx = *state;

	write_one_entry(fx, (struct raw_entry){ .name = "a.txt", .data = "hello", .len = 5,
						.deflate = 1 });
	patch_file(fx->path, 8, "\x00\x00", 2);
	assert_entry_damaged(fx, "is damaged: its local header gives compression method 0, the "
			     "central directory 8");
}

static void entry_read_rejects_local_encryption_flag(void **state)
{
	struct fixture *fx = *state;

	write_one_entry(fx, (struct raw_entry){ .name = "a.txt", .data = "hello", .len = 5 });
	patch_file(fx->path, 6, "\x01", 1);
	assert_entry_damaged(fx, "is damaged: its local header marks it encrypted");
}

static void entry_read_rejects_data_past_span(void **state)
{
	struct fixture *fx = *state;
	/* local header, "a.txt" and "hello": the central directory starts at 40 */
	const char *expected = "is damaged: its data runs past offset 40, where the next entry "
			       "or the central directory starts";

	write_one_entry(fx, (struct raw_entry){ .name = "a.txt", .data = "hello", .len = 5 });
	/* a local extra field of 1 byte moves the data 1 byte into the central directory */
	patch_file(fx->path, 28, "\x01\x00", 2);
	assert_entry_damaged(fx, expected);
}

/* ---- Python-compatible JSON ---- */

static void canonical_json_matches_python_escaping(void **state)
{
	const char *input = "{\"b\": \"q\\\"b\\\\s/\\n\\r\\t\\b\\f\\u0001\\u001f\\u007f \\u00e9 "
			    "\\u2603 \\ud83d\\ude00\", \"a\": [1, -0, 12345678901234, true, false, "
			    "null], \"\\u00e9\": {}, \"Z\": [], \"aa\": {\"y\": 1, \"x\": [2]}}";
	const char *expected = "{\"Z\":[],\"a\":[1,0,12345678901234,true,false,null],"
			       "\"aa\":{\"x\":[2],\"y\":1},\"b\":\"q\\\"b\\\\s/\\n\\r\\t\\b\\f"
			       "\\u0001\\u001f\x7f \xc3\xa9 \xe2\x98\x83 \xf0\x9f\x98\x80\","
			       "\"\xc3\xa9\":{}}";
	json_t *value = json_loads(input, 0, NULL);
	sm_buf out = SM_BUF_INIT(0);

	(void)state;
	assert_non_null(value);
	assert_int_equal(sm_json_write_python(value, -1, NULL, &out), 0);
	assert_string_equal(out.data, expected);
	sm_buf_release(&out);
	json_decref(value);
}

static void indented_json_matches_python(void **state)
{
	const char *expected = "{\n  \"Z\": [],\n  \"aa\": {\n    \"x\": [\n      2\n    ],\n"
			       "    \"y\": 1\n  },\n  \"b\": \"\xc3\xa9\"\n}";
	json_t *value = json_loads("{\"b\": \"\\u00e9\", \"Z\": [], \"aa\": {\"y\": 1, \"x\": [2]}}",
				   0, NULL);
	sm_buf out = SM_BUF_INIT(0);

	(void)state;
	assert_non_null(value);
	assert_int_equal(sm_json_write_python(value, 2, NULL, &out), 0);
	assert_string_equal(out.data, expected);
	sm_buf_release(&out);
	json_decref(value);
}

static void real_numbers_format_like_python(void **state)
{
	static const struct { double value; const char *text; } cases[] = {
		{ 0.1, "0.1" }, { 1e16, "1e+16" }, { 1.5e-07, "1.5e-07" }, { 100.0, "100.0" },
		{ 1e-05, "1e-05" }, { 0.0001, "0.0001" },
		{ 123456789012345678.0, "1.2345678901234568e+17" }, { -0.0, "-0.0" },
		{ 1e22, "1e+22" }, { 2.5, "2.5" },
		{ 1.7976931348623157e308, "1.7976931348623157e+308" }, { 5e-324, "5e-324" },
		{ 1234.5678, "1234.5678" }, { 0.5, "0.5" }, { 1e15, "1000000000000000.0" },
		{ 123.0, "123.0" },
	};
	char text[32];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		sm_json_format_real(cases[i].value, text);
		assert_string_equal(text, cases[i].text);
	}
}

static void bundle_hash_covers_unknown_keys(void **state)
{
	char *path = source_path("tests/fixtures/original/manifest.json"), hash[72];
	json_t *root = json_load_file(path, 0, NULL);

	(void)state;
	assert_non_null(root);
	/* the value Python computes for the same dictionary */
	assert_int_equal(json_object_set_new(root, "x_extra",
					     json_pack("{s:i, s:f, s:s}", "n", 7, "f", 0.25,
						       "s", "\xc3\xa9\x01")), 0);
	assert_int_equal(sm_manifest_hash_json(root, hash), 0);
	assert_string_equal(hash, "sha256:9f6dc520f8757b6c4b9bb9722845f8e27ca5914acef296a78a39a1c27e6e2141");
	json_decref(root);
	free(path);
}

static void bundle_hash_rejects_invalid_json(void **state)
{
	char hash[72];

	(void)state;
	assert_int_equal(sm_manifest_bundle_hash("{\"a\": ", 6, hash), SM_EINVALID);
	assert_non_null(strstr(sm_error_message(), "invalid manifest JSON"));
}

/* ---- path rules ---- */

static void path_rules_accept_and_reject(void **state)
{
	static const struct { const char *path; size_t len; const char *problem; } cases[] = {
		{ "SKILL.md", 0, NULL },
		{ "scripts/hello.sh", 0, NULL },
		{ "caf\xc3\xa9/men\xc3\xba.md", 0, NULL },
		{ "..hidden", 0, NULL },
		{ "", 0, "is empty" },
		{ "/etc/passwd", 0, "is an absolute path" },
		{ "a/../b", 0, "has a '..' component" },
		{ "..", 0, "has a '..' component" },
		{ "./a", 0, "has a '.' component" },
		{ "a//b", 0, "has an empty path component" },
		{ "a/", 0, "ends with '/'" },
		{ "a\\b", 0, "contains a backslash" },
		{ "a\x01", 0, "contains a control character" },
		{ "a\x7f", 0, "contains a control character" },
		{ "a\0b", 3, "contains a NUL byte" },
		{ "bad\xc3", 0, "is not valid UTF-8" },
		{ "overlong\xc0\xaf", 0, "is not valid UTF-8" },
		{ "surrogate\xed\xa0\x80", 0, "is not valid UTF-8" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t len = cases[i].len ? cases[i].len : strlen(cases[i].path);
		const char *problem = sm_path_problem(cases[i].path, len);

		if (!cases[i].problem) {
			assert_null(problem);
		} else {
			assert_non_null(problem);
			assert_string_equal(problem, cases[i].problem);
		}
	}
}

static void iso8601_forms_of_python(void **state)
{
	(void)state;
	assert_true(sm_iso8601_valid("2026-12-04T19:12:57.937458"));
	assert_true(sm_iso8601_valid("2024-01-01T00:00:00"));
	assert_true(sm_iso8601_valid("2024-01-01"));
	assert_true(sm_iso8601_valid("2024-01-01 10:00"));
	assert_true(sm_iso8601_valid("2024-01-01T10:00:00Z"));
	assert_true(sm_iso8601_valid("2024-01-01T10:00:00+02:00"));
	assert_false(sm_iso8601_valid("2024-13-01"));
	assert_false(sm_iso8601_valid("yesterday"));
	assert_false(sm_iso8601_valid("2024-01-01T25:00:00"));
	assert_false(sm_iso8601_valid("2024-01-01T10:00:00 junk"));
}

/* ---- entries that sm_bundle_open() rejects ---- */

static void open_rejects_absolute_entry(void **state)
{
	assert_entry_rejected(*state, (struct raw_entry){ .name = "/etc/passwd", .data = "x", .len = 1 },
			      "entry '/etc/passwd' is an absolute path");
}

static void open_rejects_dotdot_entry(void **state)
{
	assert_entry_rejected(*state, (struct raw_entry){ .name = "artifacts/skill/demo/../../evil",
							 .data = "x", .len = 1 },
			      "has a '..' component");
}

static void open_rejects_dot_entry(void **state)
{
	assert_entry_rejected(*state, (struct raw_entry){ .name = "artifacts/./x", .data = "x", .len = 1 },
			      "has a '.' component");
}

static void open_rejects_empty_component(void **state)
{
	assert_entry_rejected(*state, (struct raw_entry){ .name = "artifacts//x", .data = "x", .len = 1 },
			      "has an empty path component");
}

static void open_rejects_backslash_entry(void **state)
{
	assert_entry_rejected(*state, (struct raw_entry){ .name = "artifacts\\x", .data = "x", .len = 1 },
			      "entry 'artifacts\\x5cx' contains a backslash");
}

static void open_rejects_nul_in_entry_name(void **state)
{
	assert_entry_rejected(*state, (struct raw_entry){ .name = "evil\0.txt", .name_len = 9,
							 .data = "x", .len = 1 },
			      "entry 'evil\\x00.txt' contains a NUL byte");
}

static void open_rejects_control_char_in_entry(void **state)
{
	assert_entry_rejected(*state, (struct raw_entry){ .name = "bell\a", .data = "x", .len = 1 },
			      "entry 'bell\\x07' contains a control character");
}

static void open_rejects_symlink_entry(void **state)
{
	assert_entry_rejected(*state, (struct raw_entry){ .name = "artifacts/skill/demo/link",
							 .data = "/etc/passwd", .len = 11,
							 .attributes = 0120777u << 16 },
			      "entry 'artifacts/skill/demo/link' is a symbolic link");
}

static void open_rejects_directory_entry(void **state)
{
	assert_entry_rejected(*state, (struct raw_entry){ .name = "artifacts/skill/demo/sub/",
							 .data = "", .len = 0 },
			      "entry 'artifacts/skill/demo/sub/' is a directory entry");
}

static void open_rejects_directory_attribute(void **state)
{
	assert_entry_rejected(*state, (struct raw_entry){ .name = "artifacts/skill/demo/sub",
							 .data = "", .len = 0,
							 .attributes = 040755u << 16 },
			      "is a directory entry");
}

static void open_rejects_device_entry(void **state)
{
	assert_entry_rejected(*state, (struct raw_entry){ .name = "artifacts/skill/demo/fifo",
							 .data = "", .len = 0,
							 .attributes = 010644u << 16 },
			      "is a special file");
}

static void open_rejects_duplicate_entry(void **state)
{
	assert_entry_rejected(*state, (struct raw_entry){ .name = "artifacts/skill/demo/notes.txt",
							 .data = "evil\n", .len = 5 },
			      "entry 'artifacts/skill/demo/notes.txt' appears twice");
}

static void open_rejects_encrypted_entry(void **state)
{
	assert_entry_rejected(*state, (struct raw_entry){ .name = "secret", .data = "x", .len = 1,
							 .flags = 1 },
			      "entry 'secret' is encrypted");
}

static void open_rejects_bzip2_entry(void **state)
{
	assert_entry_rejected(*state, (struct raw_entry){ .name = "packed", .data = "x", .len = 1,
							 .method = 12 },
			      "uses compression method 12");
}

static void open_rejects_stored_size_mismatch(void **state)
{
	assert_entry_rejected(*state, (struct raw_entry){ .name = "short", .data = "abc", .len = 3,
							 .declare = 1, .declared_size = 2,
							 .declared_compressed = 3 },
			      "stored entry 'short' declares 2 bytes but holds 3");
}

static void open_rejects_zero_compressed_size(void **state)
{
	assert_entry_rejected(*state, (struct raw_entry){ .name = "bomb", .data = "", .len = 0,
							 .deflate = 1, .declare = 1,
							 .declared_size = 1000,
							 .declared_compressed = 0 },
			      "declares 1000 bytes from 0 compressed bytes (zip bomb)");
}

static void open_rejects_total_size_over_limit(void **state)
{
	static const char *const names[3] = { "big0", "big1", "big2" };
	struct raw_entry big[3];

	/* three entries of almost 4 GiB each, declared from one byte of data */
	for (int i = 0; i < 3; i++)
		big[i] = (struct raw_entry){ .name = names[i], .data = "x", .len = 1, .deflate = 1,
					     .declare = 1, .declared_size = 0xfffffff0u,
					     .declared_compressed = 6 };
	write_bundle(((struct fixture *)*state)->path, demo_manifest(), NULL, big, 3);
	assert_open_fails(((struct fixture *)*state)->path, SM_EINVALID,
			  "more than 8589934592 bytes uncompressed in total");
}

static void open_rejects_entry_count_over_limit(void **state)
{
	struct fixture *fx = *state;
	struct raw_entry one = { .name = "a", .data = "x", .len = 1 };

	write_raw_zip(fx->path, &one, 1, SM_BUNDLE_MAX_ENTRIES + 1);
	assert_open_fails(fx->path, SM_EINVALID, "100001 entries, more than the limit of 100000");
}

static void open_rejects_high_ratio_entry(void **state)
{
	struct fixture *fx = *state;
	size_t len = 4u << 20;
	char *zeros = calloc(1, len);
	zip_t *zip = zip_open(fx->path, ZIP_CREATE | ZIP_TRUNCATE, NULL);
	zip_source_t *src;
	zip_int64_t index;

	assert_non_null(zeros);
	assert_non_null(zip);
	src = zip_source_buffer(zip, zeros, len, 0);
	assert_non_null(src);
	index = zip_file_add(zip, "artifacts/skill/demo/zeros.bin", src, 0);
	assert_true(index >= 0);
	assert_int_equal(zip_set_file_compression(zip, (zip_uint64_t)index, ZIP_CM_DEFLATE, 9), 0);
	assert_int_equal(zip_close(zip), 0);
	free(zeros);
	assert_open_fails(fx->path, SM_EINVALID, "a ratio above the limit of 200 (zip bomb)");
}

static void open_rejects_overlapping_entries(void **state)
{
	assert_entry_rejected(*state, (struct raw_entry){ .name = "artifacts/skill/demo/again.txt",
							 .name_len = 30, .data = demo_notes,
							 .len = strlen(demo_notes), .share_with = 2 },
			      "overlap");
}

static void open_rejects_non_zip_file(void **state)
{
	struct fixture *fx = *state;

	write_file(fx->path, "just text, not a zip archive\n", 29);
	assert_open_fails(fx->path, SM_EINVALID, "not a zip archive");
}

static void open_reports_missing_file_as_not_found(void **state)
{
	struct fixture *fx = *state;

	assert_open_fails(fx->path, SM_ENOTFOUND, "cannot open bundle");
}

/* ---- manifests that sm_bundle_open() rejects ---- */

static void open_rejects_missing_manifest(void **state)
{
	struct fixture *fx = *state;
	struct raw_entry one = { .name = "artifacts/skill/demo/SKILL.md", .data = demo_skill_md,
				 .len = strlen(demo_skill_md) };

	write_raw_zip(fx->path, &one, 1, 0);
	assert_open_fails(fx->path, SM_EINVALID, "manifest.json missing");
}

static void open_rejects_oversized_manifest(void **state)
{
	struct fixture *fx = *state;
	size_t len = SM_MANIFEST_MAX_BYTES + 1;
	char *text = malloc(len + 1);

	assert_non_null(text);
	memset(text, ' ', len);
	text[0] = '{';
	text[len - 1] = '}';
	text[len] = '\0';
	write_bundle(fx->path, NULL, text, NULL, 0);
	free(text);
	assert_open_fails(fx->path, SM_EINVALID, "manifest.json is 4194305 bytes, more than the "
			  "limit of 4194304");
}

static void open_rejects_invalid_json(void **state)
{
	write_bundle(((struct fixture *)*state)->path, NULL, "{\"version\": \"1.0\",", NULL, 0);
	assert_open_fails(((struct fixture *)*state)->path, SM_EINVALID,
			  "manifest.json is not valid JSON");
}

static void open_rejects_duplicate_json_keys(void **state)
{
	write_bundle(((struct fixture *)*state)->path, NULL, "{\"name\": \"a\", \"name\": \"b\"}",
		     NULL, 0);
	assert_open_fails(((struct fixture *)*state)->path, SM_EINVALID, "duplicate object key");
}

static void open_rejects_manifest_missing_key(void **state)
{
	json_t *m = demo_manifest();

	json_object_del(m, "author");
	assert_manifest_rejected(*state, m, "manifest.json lacks author");
}

static void open_rejects_manifest_wrong_type(void **state)
{
	json_t *m = demo_manifest();

	json_object_set_new(m, "tags", json_string("demo"));
	assert_manifest_rejected(*state, m, "field tags is not an array");
}

static void open_rejects_unknown_format_version(void **state)
{
	json_t *m = demo_manifest();

	json_object_set_new(m, "version", json_string("2.0"));
	assert_manifest_rejected(*state, m, "has format version '2.0'");
}

static void open_rejects_invalid_bundle_name(void **state)
{
	json_t *m = demo_manifest();

	json_object_set_new(m, "name", json_string("bad name!"));
	assert_manifest_rejected(*state, m, "invalid bundle name 'bad name!'");
}

static void open_rejects_artifact_path_mismatch(void **state)
{
	json_t *m = demo_manifest();

	json_object_set_new(demo_artifact(m), "path", json_string("artifacts/skill/other/"));
	assert_manifest_rejected(*state, m, "with path 'artifacts/skill/other/', expected "
				 "'artifacts/skill/demo/'");
}

static void open_rejects_unknown_artifact_type(void **state)
{
	json_t *m = demo_manifest();

	json_object_set_new(demo_artifact(m), "type", json_string("plugin"));
	assert_manifest_rejected(*state, m, "unknown type 'plugin'");
}

static void open_rejects_unknown_scope(void **state)
{
	json_t *m = demo_manifest();

	json_object_set_new(demo_artifact(m), "scope", json_string("global"));
	assert_manifest_rejected(*state, m, "unknown scope 'global'");
}

static void open_rejects_unsafe_artifact_name(void **state)
{
	json_t *m = demo_manifest();

	json_object_set_new(demo_artifact(m), "name", json_string(".."));
	assert_manifest_rejected(*state, m, "whose name '..' has a '..' component");
}

static void open_rejects_bad_artifact_hash(void **state)
{
	json_t *m = demo_manifest();

	json_object_set_new(demo_artifact(m), "hash", json_string("md5:abc"));
	assert_manifest_rejected(*state, m, "whose hash is not \"sha256:\"");
}

static void open_rejects_unsorted_files(void **state)
{
	json_t *m = demo_manifest();

	json_object_set_new(demo_artifact(m), "files", json_pack("[s,s]", "notes.txt", "SKILL.md"));
	assert_manifest_rejected(*state, m, "files are not sorted ('SKILL.md' after 'notes.txt')");
}

static void open_rejects_duplicate_files(void **state)
{
	json_t *m = demo_manifest();

	json_object_set_new(demo_artifact(m), "files",
			    json_pack("[s,s,s]", "SKILL.md", "notes.txt", "notes.txt"));
	assert_manifest_rejected(*state, m, "listing file 'notes.txt' twice");
}

static void open_rejects_unsafe_file_path(void **state)
{
	json_t *m = demo_manifest();

	json_object_set_new(demo_artifact(m), "files", json_pack("[s,s]", "../SKILL.md", "notes.txt"));
	assert_manifest_rejected(*state, m, "file '../SKILL.md' that has a '..' component");
}

static void open_rejects_empty_artifact_list(void **state)
{
	json_t *m = demo_manifest();

	json_object_set_new(m, "artifacts", json_array());
	assert_manifest_rejected(*state, m, "lists no artifacts");
}

static void open_rejects_listed_file_missing(void **state)
{
	json_t *m = demo_manifest();

	json_object_set_new(demo_artifact(m), "files",
			    json_pack("[s,s,s]", "SKILL.md", "extra.md", "notes.txt"));
	assert_manifest_rejected(*state, m, "file 'extra.md' of artifact 'demo' is missing from "
				 "the archive");
}

static void open_rejects_unlisted_entry(void **state)
{
	assert_entry_rejected(*state, (struct raw_entry){ .name = "artifacts/skill/demo/hidden.sh",
							 .data = "rm -rf ~\n", .len = 9 },
			      "entry 'artifacts/skill/demo/hidden.sh' does not belong to any "
			      "artifact");
}

static void open_reads_bundle_version(void **state)
{
	struct fixture *fx = *state;
	sm_bundle *bundle = NULL;

	write_bundle(fx->path, demo_manifest(), NULL, NULL, 0);
	assert_int_equal(sm_bundle_open(&bundle, fx->path), 0);
	assert_string_equal(sm_bundle_manifest(bundle)->bundle_version, "3.1.0");
	assert_string_equal(sm_bundle_manifest(bundle)->license, "MIT");
	assert_int_equal(sm_bundle_manifest(bundle)->artifacts[0].files[1].size, strlen(demo_notes));
	sm_bundle_free(bundle);
}

/* ---- front matter ---- */

static void front_matter_reads_flat_keys(void **state)
{
	const char *text = "---\nname: \"quoted-name\"\nversion: '2.0'\ndescription: >\n"
			   "  folded text\n  on two lines\nauthor: Ann # a comment\nother:\n"
			   "  nested: value\n---\n# Body\nname: not-this\n";
	sm_front_matter fm;

	(void)state;
	assert_int_equal(sm_front_matter_parse(text, strlen(text), &fm), 0);
	assert_string_equal(fm.values[SM_FM_NAME], "quoted-name");
	assert_string_equal(fm.values[SM_FM_VERSION], "2.0");
	assert_string_equal(fm.values[SM_FM_DESCRIPTION], "folded text on two lines");
	assert_string_equal(fm.values[SM_FM_AUTHOR], "Ann");
	assert_null(fm.values[SM_FM_LICENSE]);
	sm_front_matter_release(&fm);
}

static void front_matter_needs_closing_line(void **state)
{
	const char *text = "---\nname: open-ended\n# no closing line\n";
	sm_front_matter fm;

	(void)state;
	assert_int_equal(sm_front_matter_parse(text, strlen(text), &fm), 0);
	assert_null(fm.values[SM_FM_NAME]);
}

static void front_matter_must_start_file(void **state)
{
	const char *text = "# Title\n---\nname: late\n---\n";
	sm_front_matter fm;

	(void)state;
	assert_int_equal(sm_front_matter_parse(text, strlen(text), &fm), 0);
	assert_null(fm.values[SM_FM_NAME]);
}

/* ---- sm_bundle_create() ---- */

static const char *const test_tags[] = { "demo", "test" };

static sm_bundle_create_opts test_options(void)
{
	sm_bundle_create_opts o = {
		.name = "example-bundle",
		.version = "2.1.0",
		.description = "Example skills",
		.author = "tester@example.com",
		.license = "Apache-2.0",
		.tags = test_tags,
		.ntags = 2,
	};

	return o;
}

static void create_round_trip_opens_and_verifies(void **state)
{
	struct fixture *fx = *state;
	char *dirs[3] = { example_skill(fx, "brand-guidelines"), example_skill(fx, "internal-comms"),
			  example_skill(fx, "frontend-design") };
	sm_bundle_create_opts o = test_options();
	struct problems p = { 0 };
	const sm_manifest *m;
	const sm_artifact *a;
	sm_bundle *bundle = NULL;

	o.created_at = "2025-02-03T04:05:06";
	assert_int_equal(sm_bundle_create((const char *const *)dirs, 3, &o, fx->path), 0);
	assert_int_equal(sm_bundle_open(&bundle, fx->path), 0);
	m = sm_bundle_manifest(bundle);
	assert_string_equal(m->name, "example-bundle");
	assert_string_equal(m->bundle_version, "2.1.0");
	assert_string_equal(m->created_at, "2025-02-03T04:05:06");
	assert_string_equal(m->license, "Apache-2.0");
	assert_int_equal(m->ntags, 2);
	assert_int_equal(m->nartifacts, 3);
	a = &m->artifacts[1];
	assert_string_equal(a->name, "internal-comms");
	assert_string_equal(a->type, "skill");
	assert_string_equal(a->scope, "user");
	assert_string_equal(a->version, "2.1.0");
	assert_int_equal(a->nfiles, 6);
	assert_string_equal(a->files[2].path, "examples/3p-updates.md");
	assert_int_equal(a->files[2].size, 3274);
	/* metadata comes in the manifest's order, which is sorted by key */
	assert_int_equal(a->nmetadata, 3);
	assert_string_equal(a->metadata[1].key, "license");
	assert_string_equal(a->metadata[1].value, "Complete terms in LICENSE.txt");
	assert_string_equal(a->metadata[2].key, "title");
	assert_string_equal(a->metadata[2].value, "internal-comms");
	assert_int_equal(sm_bundle_verify(bundle, collect_problem, &p), 0);
	assert_int_equal(p.count, 0);
	sm_bundle_free(bundle);
	for (int i = 0; i < 3; i++)
		free(dirs[i]);
}

static void create_writes_fixed_entry_fields(void **state)
{
	struct fixture *fx = *state;
	char *dir = example_skill(fx, "internal-comms");
	sm_bundle_create_opts o = test_options();
	sm_zip_dir zd;
	struct stat st;
	int fd;

	assert_int_equal(sm_bundle_create((const char *const *)&dir, 1, &o, fx->path), 0);
	fd = open(fx->path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &st), 0);
	assert_int_equal(sm_zip_dir_read(fd, (uint64_t)st.st_size, fx->path, &zd), 0);
	close(fd);
	assert_int_equal(zd.count, 7);
	assert_string_equal(zd.entries[0].name, "artifacts/skill/internal-comms/LICENSE.txt");
	assert_string_equal(zd.entries[6].name, "manifest.json");
	for (size_t i = 0; i < zd.count; i++) {
		assert_int_equal(zd.entries[i].made_by >> 8, ZIP_OPSYS_UNIX);
		assert_int_equal(zd.entries[i].external_attributes, 0600u << 16);
		assert_int_equal(zd.entries[i].method, ZIP_CM_DEFLATE);
		assert_int_equal(zd.entries[i].dos_date, DOS_DATE_2020_01_01);
		assert_int_equal(zd.entries[i].dos_time, 0);
		assert_int_equal(zd.entries[i].extra_len, 0);
		assert_int_equal(zd.entries[i].flags & 0x0008, 0);
	}
	sm_zip_dir_release(&zd);
	free(dir);
}

static void create_manifest_matches_python_layout(void **state)
{
	struct fixture *fx = *state;
	char *dir = example_skill(fx, "brand-guidelines");
	sm_bundle_create_opts o = test_options();
	sm_bundle *bundle = NULL;
	zip_t *zip;
	zip_file_t *file;
	const char *expected = "{\n  \"artifacts\": [\n    {\n      \"files\": [\n";
	char head[64] = { 0 };

	o.created_at = "2025-02-03T04:05:06";
	assert_int_equal(sm_bundle_create((const char *const *)&dir, 1, &o, fx->path), 0);
	zip = zip_open(fx->path, ZIP_RDONLY, NULL);
	assert_non_null(zip);
	file = zip_fopen(zip, "manifest.json", 0);
	assert_non_null(file);
	/* sorted keys, two-space indent, as json.dumps(indent=2, sort_keys=True) */
	assert_int_equal(zip_fread(file, head, strlen(expected)), strlen(expected));
	assert_string_equal(head, expected);
	zip_fclose(file);
	zip_discard(zip);
	assert_int_equal(sm_bundle_open(&bundle, fx->path), 0);
	assert_string_equal(sm_bundle_manifest(bundle)->artifacts[0].hash,
			    "sha256:e48840db6ea772ceecdb68b4e50f8cc77e2534b7580aeaf4a6fe6ee7bd845d7d");
	sm_bundle_free(bundle);
	free(dir);
}

static void create_is_byte_identical_across_runs(void **state)
{
	struct fixture *fx = *state;
	char *dirs[2] = { example_skill(fx, "brand-guidelines"), example_skill(fx, "internal-comms") };
	char *second = in_dir(fx, "second.skillmeat-pack"), *third = in_dir(fx, "third.skillmeat-pack");
	char *a, *b, *c, *file = NULL;
	sm_bundle_create_opts o = test_options();
	sm_bundle *bundle = NULL;
	size_t alen, blen, clen;

	setenv("SOURCE_DATE_EPOCH", "1700000000", 1);
	assert_int_equal(sm_bundle_create((const char *const *)dirs, 2, &o, fx->path), 0);
	assert_int_equal(sm_bundle_create((const char *const *)dirs, 2, &o, second), 0);
	assert_true(asprintf(&file, "%s/examples/faq-answers.md", dirs[1]) > 0);
	set_mtime(file, 1900000000);
	set_mtime(dirs[0], 1234567890);
	assert_int_equal(sm_bundle_create((const char *const *)dirs, 2, &o, third), 0);

	a = read_whole(fx->path, &alen);
	b = read_whole(second, &blen);
	c = read_whole(third, &clen);
	assert_int_equal(alen, blen);
	assert_memory_equal(a, b, alen);
	assert_int_equal(alen, clen);
	assert_memory_equal(a, c, alen);
	assert_int_equal(sm_bundle_open(&bundle, third), 0);
	assert_string_equal(sm_bundle_manifest(bundle)->created_at, "2023-11-14T22:13:20");
	sm_bundle_free(bundle);
	free(a);
	free(b);
	free(c);
	free(file);
	free(second);
	free(third);
	free(dirs[0]);
	free(dirs[1]);
}

static void create_uses_newest_mtime_without_epoch(void **state)
{
	struct fixture *fx = *state;
	char *dir = make_skill(fx, "timed", "---\nname: timed\n---\n"), *file = NULL;
	sm_bundle_create_opts o = test_options();
	sm_bundle *bundle = NULL;

	assert_true(asprintf(&file, "%s/SKILL.md", dir) > 0);
	set_mtime(file, 1600000000);
	assert_int_equal(sm_bundle_create((const char *const *)&dir, 1, &o, fx->path), 0);
	assert_int_equal(sm_bundle_open(&bundle, fx->path), 0);
	assert_string_equal(sm_bundle_manifest(bundle)->created_at, "2020-09-13T12:26:40");
	sm_bundle_free(bundle);
	free(file);
	free(dir);
}

static void create_names_artifact_from_front_matter(void **state)
{
	struct fixture *fx = *state;
	char *dir = make_skill(fx, "folder-name", "---\nname: fm-name\nversion: 4.5.6\n"
			       "author: Ann\n---\nbody\n");
	sm_bundle_create_opts o = test_options();
	const sm_artifact *a;
	sm_bundle *bundle = NULL;

	assert_int_equal(sm_bundle_create((const char *const *)&dir, 1, &o, fx->path), 0);
	assert_int_equal(sm_bundle_open(&bundle, fx->path), 0);
	a = &sm_bundle_manifest(bundle)->artifacts[0];
	assert_string_equal(a->name, "fm-name");
	assert_string_equal(a->path, "artifacts/skill/fm-name/");
	assert_string_equal(a->version, "4.5.6");
	assert_int_equal(a->nmetadata, 2);
	assert_string_equal(a->metadata[0].key, "author");
	assert_string_equal(a->metadata[0].value, "Ann");
	assert_string_equal(a->metadata[1].key, "title");
	assert_string_equal(a->metadata[1].value, "fm-name");
	sm_bundle_free(bundle);
	free(dir);
}

static void create_falls_back_to_folder_name(void **state)
{
	struct fixture *fx = *state;
	char *dir = make_skill(fx, "folder_name", "---\nname: Not A Valid Name\n---\n");
	sm_bundle_create_opts o = test_options();
	sm_bundle *bundle = NULL;

	assert_int_equal(sm_bundle_create((const char *const *)&dir, 1, &o, fx->path), 0);
	assert_int_equal(sm_bundle_open(&bundle, fx->path), 0);
	assert_string_equal(sm_bundle_manifest(bundle)->artifacts[0].name, "folder_name");
	assert_string_equal(sm_bundle_manifest(bundle)->artifacts[0].metadata[0].value,
			    "Not A Valid Name");
	sm_bundle_free(bundle);
	free(dir);
}

static void create_skips_vcs_folders(void **state)
{
	struct fixture *fx = *state;
	char *dir = make_skill(fx, "with-git", "---\nname: with-git\n---\n"), *git = NULL, *cfg = NULL;
	sm_bundle_create_opts o = test_options();
	sm_bundle *bundle = NULL;

	assert_true(asprintf(&git, "%s/.git", dir) > 0);
	assert_true(asprintf(&cfg, "%s/.git/config", dir) > 0);
	assert_int_equal(mkdir(git, 0755), 0);
	write_file(cfg, "[core]\n", 7);
	assert_int_equal(sm_bundle_create((const char *const *)&dir, 1, &o, fx->path), 0);
	assert_int_equal(sm_bundle_open(&bundle, fx->path), 0);
	assert_int_equal(sm_bundle_manifest(bundle)->artifacts[0].nfiles, 1);
	assert_string_equal(sm_bundle_manifest(bundle)->artifacts[0].files[0].path, "SKILL.md");
	sm_bundle_free(bundle);
	free(git);
	free(cfg);
	free(dir);
}

static void create_stores_highly_compressible_file(void **state)
{
	struct fixture *fx = *state;
	char *dir = make_skill(fx, "zeros", "---\nname: zeros\n---\n"), *file = NULL;
	char *zeros = calloc(1, 1u << 20);
	sm_bundle_create_opts o = test_options();
	struct problems p = { 0 };
	const sm_artifact *a;
	sm_bundle *bundle = NULL;

	assert_non_null(zeros);
	assert_true(asprintf(&file, "%s/zeros.bin", dir) > 0);
	write_file(file, zeros, 1u << 20);
	assert_int_equal(sm_bundle_create((const char *const *)&dir, 1, &o, fx->path), 0);
	assert_int_equal(sm_bundle_open(&bundle, fx->path), 0);
	a = &sm_bundle_manifest(bundle)->artifacts[0];
	assert_string_equal(a->files[1].path, "zeros.bin");
	/* deflate would shrink it past the ratio cap, so it is stored */
	assert_int_equal(a->files[1].compressed, 1u << 20);
	assert_true(a->files[0].compressed < a->files[0].size + 16);
	assert_int_equal(sm_bundle_verify(bundle, collect_problem, &p), 0);
	sm_bundle_free(bundle);
	free(zeros);
	free(file);
	free(dir);
}

static void create_round_trip_verifies_large_file(void **state)
{
	struct fixture *fx = *state;
	char *dir = make_skill(fx, "large", "---\nname: large\n---\n"), *file = NULL;
	size_t len = 3 * SM_ENTRY_READ_CHUNK + 4321;
	char *data = mixed_data(len);
	sm_bundle_create_opts o = test_options();
	struct problems p = { 0 };
	const sm_artifact *a;
	sm_bundle *bundle = NULL;

	assert_true(asprintf(&file, "%s/data.bin", dir) > 0);
	write_file(file, data, len);
	assert_int_equal(sm_bundle_create((const char *const *)&dir, 1, &o, fx->path), 0);
	assert_int_equal(sm_bundle_open(&bundle, fx->path), 0);
	a = &sm_bundle_manifest(bundle)->artifacts[0];
	assert_string_equal(a->files[1].path, "data.bin");
	assert_int_equal(a->files[1].size, len);
	/* more than one read and many inflate calls */
	assert_true(a->files[1].compressed > SM_ENTRY_READ_CHUNK);
	assert_int_equal(sm_bundle_verify(bundle, collect_problem, &p), 0);
	assert_int_equal(p.count, 0);
	sm_bundle_free(bundle);
	free(data);
	free(file);
	free(dir);
}

static void create_replaces_existing_output(void **state)
{
	struct fixture *fx = *state;
	char *dir = make_skill(fx, "replace", "---\nname: replace\n---\n");
	sm_bundle_create_opts o = test_options();
	sm_bundle *bundle = NULL;

	write_file(fx->path, "old", 3);
	assert_int_equal(sm_bundle_create((const char *const *)&dir, 1, &o, fx->path), 0);
	assert_int_equal(sm_bundle_open(&bundle, fx->path), 0);
	sm_bundle_free(bundle);
	assert_int_equal(count_temp_files(fx->dir), 0);
	free(dir);
}

/* Runs sm_bundle_create() expecting `code` and `part`, and checks nothing was left behind. */
static void assert_create_fails(const struct fixture *fx, char **dirs, size_t n,
				const sm_bundle_create_opts *o, int code, const char *part)
{
	int rc = sm_bundle_create((const char *const *)dirs, n, o, fx->path);

	assert_int_equal(rc, code);
	if (!strstr(sm_error_message(), part))
		fail_msg("message \"%s\" lacks \"%s\"", sm_error_message(), part);
	assert_int_equal(access(fx->path, F_OK), -1);
	assert_int_equal(count_temp_files(fx->dir), 0);
}

static void create_rejects_symlink(void **state)
{
	struct fixture *fx = *state;
	char *dir = make_skill(fx, "linked", "---\nname: linked\n---\n"), *link = NULL;
	sm_bundle_create_opts o = test_options();

	assert_true(asprintf(&link, "%s/secret", dir) > 0);
	assert_int_equal(symlink("/etc/passwd", link), 0);
	assert_create_fails(fx, &dir, 1, &o, SM_EINVALID, "linked/secret': it is a symbolic link");
	free(link);
	free(dir);
}

static void create_rejects_symlinked_skill_md(void **state)
{
	struct fixture *fx = *state;
	char *dir = in_dir(fx, "linked-md"), *link = NULL;
	sm_bundle_create_opts o = test_options();

	assert_int_equal(mkdir(dir, 0755), 0);
	assert_true(asprintf(&link, "%s/SKILL.md", dir) > 0);
	assert_int_equal(symlink("/etc/hostname", link), 0);
	assert_create_fails(fx, &dir, 1, &o, SM_EINVALID, "SKILL.md': it is a symbolic link");
	free(link);
	free(dir);
}

static void create_rejects_folder_without_skill_md(void **state)
{
	struct fixture *fx = *state;
	char *dir = in_dir(fx, "empty"), *expected = NULL;
	sm_bundle_create_opts o = test_options();

	assert_int_equal(mkdir(dir, 0755), 0);
	assert_true(asprintf(&expected, "'%s' is not a skill folder: SKILL.md missing", dir) > 0);
	assert_create_fails(fx, &dir, 1, &o, SM_EINVALID, expected);
	free(expected);
	free(dir);
}

static void create_rejects_special_file(void **state)
{
	struct fixture *fx = *state;
	char *dir = make_skill(fx, "fifo", "---\nname: fifo\n---\n"), *fifo = NULL;
	sm_bundle_create_opts o = test_options();

	assert_true(asprintf(&fifo, "%s/pipe", dir) > 0);
	assert_int_equal(mkfifo(fifo, 0600), 0);
	assert_create_fails(fx, &dir, 1, &o, SM_EINVALID, "fifo/pipe': it is not a regular file");
	free(fifo);
	free(dir);
}

static void create_rejects_duplicate_artifact_names(void **state)
{
	struct fixture *fx = *state;
	char *dirs[2] = { make_skill(fx, "one", "---\nname: same\n---\n"),
			  make_skill(fx, "two", "---\nname: same\n---\n") };
	sm_bundle_create_opts o = test_options();

	assert_create_fails(fx, dirs, 2, &o, SM_EINVALID, "are both named 'same'");
	free(dirs[0]);
	free(dirs[1]);
}

static void create_rejects_invalid_bundle_name(void **state)
{
	struct fixture *fx = *state;
	char *dir = make_skill(fx, "ok", "---\nname: ok\n---\n");
	sm_bundle_create_opts o = test_options();

	o.name = "has space";
	assert_create_fails(fx, &dir, 1, &o, SM_EINVALID, "invalid bundle name 'has space'");
	free(dir);
}

static void create_rejects_newline_in_description(void **state)
{
	struct fixture *fx = *state;
	char *dir = make_skill(fx, "ok", "---\nname: ok\n---\n");
	sm_bundle_create_opts o = test_options();

	o.description = "two\nlines";
	assert_create_fails(fx, &dir, 1, &o, SM_EINVALID, "invalid bundle description: control "
			    "characters");
	free(dir);
}

static void create_rejects_invalid_created_at(void **state)
{
	struct fixture *fx = *state;
	char *dir = make_skill(fx, "ok", "---\nname: ok\n---\n");
	sm_bundle_create_opts o = test_options();

	o.created_at = "last tuesday";
	assert_create_fails(fx, &dir, 1, &o, SM_EINVALID, "invalid created_at 'last tuesday'");
	free(dir);
}

static void create_rejects_invalid_source_date_epoch(void **state)
{
	struct fixture *fx = *state;
	char *dir = make_skill(fx, "ok", "---\nname: ok\n---\n");
	sm_bundle_create_opts o = test_options();

	setenv("SOURCE_DATE_EPOCH", "soon", 1);
	assert_create_fails(fx, &dir, 1, &o, SM_EINVALID, "invalid SOURCE_DATE_EPOCH 'soon'");
	free(dir);
}

static void create_output_passes_python_check(void **state)
{
	struct fixture *fx = *state;
	char *dirs[2] = { example_skill(fx, "brand-guidelines"), example_skill(fx, "internal-comms") };
	char *script = source_path("tests/interop/check_bundle.py"), *command = NULL;
	sm_bundle_create_opts o = test_options();

	if (system("python3 -c pass >/dev/null 2>&1") != 0) {
		free(script);
		free(dirs[0]);
		free(dirs[1]);
		skip();
	}
	o.description = "caf\xc3\xa9 \"quoted\" text / slash";
	assert_int_equal(sm_bundle_create((const char *const *)dirs, 2, &o, fx->path), 0);
	assert_true(asprintf(&command, "python3 '%s' '%s' >/dev/null", script, fx->path) > 0);
	assert_int_equal(system(command), 0);
	free(command);
	free(script);
	free(dirs[0]);
	free(dirs[1]);
}

#define TEST(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		TEST(bundle_hash_matches_original_fixture),
		TEST(fixture_copy_matches_shared_fixture),
		TEST(open_reads_fixture_manifest),
		TEST(verify_accepts_original_fixture),
		TEST(verify_reports_changed_entry_bytes),
		TEST(verify_reports_changed_manifest_field),
		TEST(verify_reports_entry_longer_than_declared),
		TEST(verify_accepts_generated_bundle),
		TEST(verify_reports_entry_shorter_than_declared),
		TEST(verify_reports_damaged_deflate_entry),
		TEST(open_rejects_damaged_manifest_entry),
		TEST(entry_read_inflates_deflate_entry),
		TEST(entry_read_copies_stored_entry_across_reads),
		TEST(entry_read_inflates_stream_across_reads),
		TEST(entry_read_accepts_empty_deflate_entry),
		TEST(entry_read_stops_at_declared_size),
		TEST(entry_read_rejects_fewer_bytes),
		TEST(entry_read_rejects_truncated_stream),
		TEST(entry_read_rejects_invalid_deflate_data),
		TEST(entry_read_rejects_bytes_after_stream),
		TEST(entry_read_rejects_missing_local_header),
		TEST(entry_read_rejects_local_name_mismatch),
		TEST(entry_read_rejects_local_name_length_mismatch),
		TEST(entry_read_rejects_local_method_mismatch),
		TEST(entry_read_rejects_local_encryption_flag),
		TEST(entry_read_rejects_data_past_span),
		TEST(canonical_json_matches_python_escaping),
		TEST(indented_json_matches_python),
		TEST(real_numbers_format_like_python),
		TEST(bundle_hash_covers_unknown_keys),
		TEST(bundle_hash_rejects_invalid_json),
		TEST(path_rules_accept_and_reject),
		TEST(iso8601_forms_of_python),
		TEST(open_rejects_absolute_entry),
		TEST(open_rejects_dotdot_entry),
		TEST(open_rejects_dot_entry),
		TEST(open_rejects_empty_component),
		TEST(open_rejects_backslash_entry),
		TEST(open_rejects_nul_in_entry_name),
		TEST(open_rejects_control_char_in_entry),
		TEST(open_rejects_symlink_entry),
		TEST(open_rejects_directory_entry),
		TEST(open_rejects_directory_attribute),
		TEST(open_rejects_device_entry),
		TEST(open_rejects_duplicate_entry),
		TEST(open_rejects_encrypted_entry),
		TEST(open_rejects_bzip2_entry),
		TEST(open_rejects_stored_size_mismatch),
		TEST(open_rejects_zero_compressed_size),
		TEST(open_rejects_total_size_over_limit),
		TEST(open_rejects_entry_count_over_limit),
		TEST(open_rejects_high_ratio_entry),
		TEST(open_rejects_overlapping_entries),
		TEST(open_rejects_non_zip_file),
		TEST(open_reports_missing_file_as_not_found),
		TEST(open_rejects_missing_manifest),
		TEST(open_rejects_oversized_manifest),
		TEST(open_rejects_invalid_json),
		TEST(open_rejects_duplicate_json_keys),
		TEST(open_rejects_manifest_missing_key),
		TEST(open_rejects_manifest_wrong_type),
		TEST(open_rejects_unknown_format_version),
		TEST(open_rejects_invalid_bundle_name),
		TEST(open_rejects_artifact_path_mismatch),
		TEST(open_rejects_unknown_artifact_type),
		TEST(open_rejects_unknown_scope),
		TEST(open_rejects_unsafe_artifact_name),
		TEST(open_rejects_bad_artifact_hash),
		TEST(open_rejects_unsorted_files),
		TEST(open_rejects_duplicate_files),
		TEST(open_rejects_unsafe_file_path),
		TEST(open_rejects_empty_artifact_list),
		TEST(open_rejects_listed_file_missing),
		TEST(open_rejects_unlisted_entry),
		TEST(open_reads_bundle_version),
		TEST(front_matter_reads_flat_keys),
		TEST(front_matter_needs_closing_line),
		TEST(front_matter_must_start_file),
		TEST(create_round_trip_opens_and_verifies),
		TEST(create_writes_fixed_entry_fields),
		TEST(create_manifest_matches_python_layout),
		TEST(create_is_byte_identical_across_runs),
		TEST(create_uses_newest_mtime_without_epoch),
		TEST(create_names_artifact_from_front_matter),
		TEST(create_falls_back_to_folder_name),
		TEST(create_skips_vcs_folders),
		TEST(create_stores_highly_compressible_file),
		TEST(create_round_trip_verifies_large_file),
		TEST(create_replaces_existing_output),
		TEST(create_rejects_symlink),
		TEST(create_rejects_symlinked_skill_md),
		TEST(create_rejects_folder_without_skill_md),
		TEST(create_rejects_special_file),
		TEST(create_rejects_duplicate_artifact_names),
		TEST(create_rejects_invalid_bundle_name),
		TEST(create_rejects_newline_in_description),
		TEST(create_rejects_invalid_created_at),
		TEST(create_rejects_invalid_source_date_epoch),
		TEST(create_output_passes_python_check),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
