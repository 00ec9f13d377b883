/*
 * Verifying a bundle while it arrives: the zip follower on its own
 * (bundle/follow.h), and sm_vault_pull() with connectors that report
 * through the pull watch, that do not, and that write bytes twice.
 */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/sha.h>

#include "bundle/bundle_internal.h"
#include "bundle/follow.h"
#include "skillmeat/bundle.h"
#include "skillmeat/vault.h"
#include "util/util.h"
#include "vault/pull_watch.h"

static char *source_path(const char *rel)
{
	const char *root = getenv("SKILLMEAT_SOURCE_DIR");
	char *path;

	if (!root)
		fail_msg("SKILLMEAT_SOURCE_DIR is not set; run the tests through ctest");
	path = sm_asprintf("%s/%s", root ? root : ".", rel);
	assert_non_null(path);
	return path;
}

static unsigned char *read_all(const char *path, size_t *len)
{
	struct stat st;
	unsigned char *data;
	int fd = open(path, O_RDONLY);

	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &st), 0);
	data = malloc((size_t)st.st_size + 1);
	assert_non_null(data);
	assert_int_equal(pread(fd, data, (size_t)st.st_size, 0), st.st_size);
	close(fd);
	*len = (size_t)st.st_size;
	return data;
}

static void write_all(const char *path, const unsigned char *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	close(fd);
}

static char *sha256_hex(const char *path)
{
	unsigned char digest[32];
	char *hex = malloc(65);

	assert_non_null(hex);
	assert_int_equal(sm_sha256_file(path, digest, NULL), 0);
	sm_hex(digest, 32, hex);
	return hex;
}

/* A bundle of three example skills, built once into a scratch directory. */
static char scratch[64];
static char *built_bundle;

static int build_bundle(void **state)
{
	const char *names[] = { "brand-guidelines", "frontend-design", "internal-comms" };
	char *dirs[3];
	sm_bundle_create_opts opts = { .name = "follow-test", .version = "1.0",
				       .description = "bundle for the follower tests",
				       .author = "tests", .created_at = "2026-01-01T00:00:00" };

	(void)state;
	snprintf(scratch, sizeof(scratch), "/tmp/sm-follow-test-XXXXXX");
	if (!mkdtemp(scratch))
		return -1;
	for (int i = 0; i < 3; i++) {
		char *rel = sm_asprintf("examples/skills/%s", names[i]);

		dirs[i] = source_path(rel);
		free(rel);
	}
	built_bundle = sm_asprintf("%s/three.skillmeat-pack", scratch);
	if (sm_bundle_create((const char *const *)dirs, 3, &opts, built_bundle) != 0)
		return -1;
	for (int i = 0; i < 3; i++)
		free(dirs[i]);
	return 0;
}

static int remove_scratch(void **state)
{
	char *cmd = sm_asprintf("rm -rf '%s'", scratch);

	(void)state;
	if (system(cmd) != 0)
		return -1;
	free(cmd);
	free(built_bundle);
	return 0;
}

/* Feeds `data` in pieces of `step` bytes and verifies `path` with the result. */
static int follow_and_verify(const unsigned char *data, size_t len, size_t step,
			     const char *path, size_t *reused, char sha[65])
{
	sm_zip_follower *f = NULL;
	sm_bundle *bundle = NULL;
	int rc;

	assert_int_equal(sm_zip_follower_new(&f), 0);
	for (size_t at = 0; at < len; at += step)
		assert_int_equal(sm_zip_follower_feed(f, data + at, len - at < step ? len - at : step),
				 0);
	assert_int_equal(sm_zip_follower_fed(f), len);
	assert_int_equal(sm_zip_follower_finish(f, sha), 0);
	assert_int_equal(sm_bundle_open(&bundle, path), 0);
	rc = sm_bundle_verify_followed(bundle, f, NULL, NULL, reused);
	sm_bundle_free(bundle);
	sm_zip_follower_free(f);
	return rc;
}

static void follower_covers_every_artifact_in_any_piece_size(void **state)
{
	const size_t steps[] = { 1, 7, 30, 4096, 1 << 20 };
	size_t len, reused;
	unsigned char *data = read_all(built_bundle, &len);
	char *expected = sha256_hex(built_bundle), sha[65];

	(void)state;
	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		assert_int_equal(follow_and_verify(data, len, steps[i], built_bundle, &reused, sha),
				 0);
		assert_int_equal(reused, 3);
		assert_string_equal(sha, expected);
	}
	free(expected);
	free(data);
}

static void follower_reads_the_original_tools_bundle(void **state)
{
	char *path = source_path("tests/fixtures/original/demo-bundle.skillmeat-pack");
	size_t len, reused;
	unsigned char *data = read_all(path, &len);
	char *expected = sha256_hex(path), sha[65];

	(void)state;
	assert_int_equal(follow_and_verify(data, len, 512, path, &reused, sha), 0);
	assert_int_equal(reused, 1);
	assert_string_equal(sha, expected);
	free(expected);
	free(data);
	free(path);
}

static void stream_cut_short_leaves_the_rest_to_the_file(void **state)
{
	size_t len, reused;
	unsigned char *data = read_all(built_bundle, &len);
	char sha[65];

	(void)state;
	/* the first artifact folder is complete well before the middle */
	assert_int_equal(follow_and_verify(data, len / 2, 4096, built_bundle, &reused, sha), 0);
	assert_true(reused >= 1 && reused < 3);
	assert_int_equal(follow_and_verify(data, 0, 1, built_bundle, &reused, sha), 0);
	assert_int_equal(reused, 0);
	free(data);
}

/* Offset of the first entry's data, after its local header, name and extra field. */
static size_t first_data_offset(const unsigned char *data)
{
	return 30 + (size_t)(data[26] | data[27] << 8) + (size_t)(data[28] | data[29] << 8);
}

static void damaged_followed_entry_is_read_again_from_the_file(void **state)
{
	size_t len, reused;
	unsigned char *data = read_all(built_bundle, &len);
	size_t start = first_data_offset(data);
	char sha[65];

	(void)state;
	/* damage the first entry's deflate data in the stream only; the file stays intact */
	for (size_t i = start + 10; i < start + 30; i++)
		data[i] ^= 0x5a;
	assert_int_equal(follow_and_verify(data, len, 4096, built_bundle, &reused, sha), 0);
	assert_int_equal(reused, 2);
	free(data);
}

static void follower_of_another_archive_is_not_used(void **state)
{
	char *other = source_path("tests/fixtures/original/demo-bundle.skillmeat-pack");
	size_t len, reused;
	unsigned char *data = read_all(other, &len);
	char sha[65];

	(void)state;
	assert_int_equal(follow_and_verify(data, len, 4096, built_bundle, &reused, sha), 0);
	assert_int_equal(reused, 0);
	free(data);
	free(other);
}

static void tampered_file_fails_with_or_without_follower(void **state)
{
	char *copy = sm_asprintf("%s/tampered.skillmeat-pack", scratch);
	size_t len, reused;
	unsigned char *data = read_all(built_bundle, &len);
	char sha[65];

	(void)state;
	data[first_data_offset(data) + 20] ^= 0x01;
	write_all(copy, data, len);
	/* the follower reads the same damaged bytes as the file contains */
	assert_int_equal(follow_and_verify(data, len, 4096, copy, &reused, sha), SM_EINTEGRITY);
	assert_int_equal(follow_and_verify(data, 0, 1, copy, &reused, sha), SM_EINTEGRITY);
	unlink(copy);
	free(copy);
	free(data);
}

/*
 * Damages copies of the bundle: one changed byte at a pseudo-random
 * offset, or the file cut short. The same bytes go to a follower, and the
 * followed verification must reach the verdict of the plain one.
 */
static void followed_verdict_matches_plain_verdict(void **state)
{
	char *copy = sm_asprintf("%s/mutated.skillmeat-pack", scratch);
	size_t len, reused, used = 0, failed = 0;
	unsigned char *data = read_all(built_bundle, &len);
	uint32_t seed = 12345;

	(void)state;
	for (int round = 0; round < 400; round++) {
		unsigned char *mutated = malloc(len);
		size_t mlen = len;
		sm_bundle *bundle = NULL;
		char sha[65];
		int plain, followed;

		assert_non_null(mutated);
		memcpy(mutated, data, len);
		seed = seed * 1103515245u + 12345u;
		if (round % 10 == 9) {
			mlen = (seed >> 8) % len;
		} else {
			size_t at = (seed >> 8) % len;

			mutated[at] ^= (unsigned char)(1u << (round % 8));
		}
		write_all(copy, mutated, mlen);
		plain = sm_bundle_open(&bundle, copy);
		if (!plain)
			plain = sm_bundle_verify(bundle, NULL, NULL);
		sm_bundle_free(bundle);
		if (plain == 0 || plain == SM_EINTEGRITY) {
			followed = follow_and_verify(mutated, mlen, 4096, copy, &reused, sha);
			assert_int_equal(followed, plain);
			used += reused > 0;
			failed += plain != 0;
		}
		free(mutated);
	}
	print_message("%zu of 400 damaged copies failed, the follower was used for %zu\n", failed, used);
	/* the damage hit artifact data often enough to matter, and the follower was used */
	assert_true(failed > 200);
	assert_true(used > 200);
	unlink(copy);
	free(copy);
	free(data);
}

/* ---- hand-made streams of stored local headers ---- */

/* Appends a stored local header for `name` with `data`; `declared` is its uncompressed size. */
static void put_stored(sm_buf *out, const char *name, const char *data, uint32_t declared)
{
	unsigned char h[30] = { 'P', 'K', 3, 4, 20 };
	size_t nlen = strlen(name);
	uint32_t clen = (uint32_t)strlen(data);

	h[18] = clen & 0xff;
	h[19] = clen >> 8 & 0xff;
	h[22] = declared & 0xff;
	h[23] = declared >> 8 & 0xff;
	h[26] = nlen & 0xff;
	h[27] = nlen >> 8 & 0xff;
	assert_int_equal(sm_buf_put(out, h, sizeof(h)), 0);
	assert_int_equal(sm_buf_put(out, name, nlen), 0);
	assert_int_equal(sm_buf_put(out, data, clen), 0);
}

/* The central directory record that matches a put_stored() entry at `offset`. */
static sm_zip_entry stored_entry(const char *name, uint64_t offset, uint64_t size)
{
	sm_zip_entry e = { 0 };

	e.name = (char *)name;
	e.name_len = strlen(name);
	e.method = 0;
	e.size = e.compressed = size;
	e.offset = offset;
	e.span_end = UINT64_MAX;
	return e;
}

static sm_zip_follower *follow_buf(const sm_buf *stream)
{
	sm_zip_follower *f = NULL;
	char sha[65];

	assert_int_equal(sm_zip_follower_new(&f), 0);
	assert_int_equal(sm_zip_follower_feed(f, stream->data, stream->len), 0);
	assert_int_equal(sm_zip_follower_finish(f, sha), 0);
	return f;
}

/*
 * Damaged entries (1 byte declared, none stored) in SM_BUNDLE_MAX_ENTRIES
 * folders of their own, then one good entry. Every local header counts
 * toward the limit, so the good entry is past it and not followed; with
 * a few damaged entries it is.
 */
static void damaged_entries_count_toward_the_entry_limit(void **state)
{
	const size_t counts[] = { 10, SM_BUNDLE_MAX_ENTRIES };
	const char *good = "artifacts/skill/last/a.txt";

	(void)state;
	for (size_t c = 0; c < 2; c++) {
		sm_buf stream = SM_BUF_INIT(0);
		unsigned char digest[32] = { 0 }, expected[32];
		size_t index = 0;
		sm_zip_entry e;
		sm_zip_follower *f;
		char name[64];

		for (size_t i = 0; i < counts[c]; i++) {
			snprintf(name, sizeof(name), "artifacts/skill/d%07zu/x", i);
			put_stored(&stream, name, "", 1);
		}
		e = stored_entry(good, stream.len, 1);
		put_stored(&stream, good, "Z", 1);
		f = follow_buf(&stream);
		if (c == 0) {
			assert_int_equal(sm_zip_follower_artifact(f, "artifacts/skill/last/", &e, &index, 1,
								  digest), 1);
			/* the artifact hash: the relative path, then the bytes */
			assert_non_null(SHA256((const unsigned char *)"a.txtZ", 6, expected));
			assert_memory_equal(digest, expected, 32);
		} else {
			assert_int_equal(sm_zip_follower_artifact(f, "artifacts/skill/last/", &e, &index, 1,
								  digest), 0);
		}
		sm_zip_follower_free(f);
		sm_buf_release(&stream);
	}
}

/* A folder split by another folder's entry is read again; the other one is not. */
static void split_folder_is_not_followed_and_the_other_is(void **state)
{
	const char *names[] = { "artifacts/skill/a/one", "artifacts/skill/b/two",
				"artifacts/skill/a/three" };
	sm_buf stream = SM_BUF_INIT(0);
	sm_zip_entry dir[3];
	size_t a_files[] = { 0, 2 }, b_files[] = { 1 };
	unsigned char digest[32];
	sm_zip_follower *f;

	(void)state;
	for (size_t i = 0; i < 3; i++) {
		dir[i] = stored_entry(names[i], stream.len, 1);
		put_stored(&stream, names[i], "x", 1);
	}
	f = follow_buf(&stream);
	assert_int_equal(sm_zip_follower_artifact(f, "artifacts/skill/a/", dir, a_files, 2, digest),
			 0);
	assert_int_equal(sm_zip_follower_artifact(f, "artifacts/skill/a/", dir, a_files, 1, digest),
			 0);
	assert_int_equal(sm_zip_follower_artifact(f, "artifacts/skill/b/", dir, b_files, 1, digest),
			 1);
	assert_int_equal(sm_zip_follower_artifact(f, "artifacts/skill/c/", dir, b_files, 1, digest),
			 0);
	sm_zip_follower_free(f);
	sm_buf_release(&stream);
}

/* ---- sm_vault_pull() with a connector that streams a file ---- */

enum stream_mode {
	STREAM_WATCHED,     /* takes the watch and reports each write */
	STREAM_UNWATCHED,   /* never takes the watch, checks nothing */
	STREAM_REWRITTEN,   /* takes the watch, then changes a byte it already wrote */
	STREAM_WRONG_HASH,  /* takes the watch; the record names another SHA-256 */
};

static enum stream_mode stream_mode;
static char pull_message[1024];     /* sm_error_message() right after the pull */
static const char *stream_source;

static int stream_open(sm_vault *self) { (void)self; return 0; }
static int stream_exists(sm_vault *self, const char *id, int *out)
{
	(void)self;
	*out = strcmp(id, "follow-test-v1.0") == 0;
	return 0;
}

static int stream_pull(sm_vault *self, const char *id, int fd, sm_record **out)
{
	sm_pull_watch *watch = stream_mode == STREAM_UNWATCHED ? NULL : sm_pull_watch_take();
	size_t len, step = 8192;
	unsigned char *data = read_all(stream_source, &len);
	char *sha = sha256_hex(stream_source), *text;
	int rc;

	(void)self;
	for (size_t at = 0; at < len; at += step) {
		size_t n = len - at < step ? len - at : step;

		assert_int_equal(pwrite(fd, data + at, n, (off_t)at), (ssize_t)n);
		sm_pull_watch_wrote(watch, at, n);
	}
	if (stream_mode == STREAM_REWRITTEN) {
		size_t at = first_data_offset(data) + 20;
		unsigned char changed = data[at] ^ 0x01;

		usleep(50 * 1000); /* the follower has read the first bytes by now */
		assert_int_equal(pwrite(fd, &changed, 1, (off_t)at), 1);
		sm_pull_watch_wrote(watch, at, 1);
	}
	if (stream_mode == STREAM_WRONG_HASH)
		sha[0] = sha[0] == '0' ? '1' : '0';
	text = sm_asprintf("{\"bundle_id\": \"%s\", \"size_bytes\": %zu, "
			   "\"metadata\": {\"sha256\": \"%s\"}}", id, len, sha);
	rc = sm_record_from_text(text, strlen(text), "test record", out);
	free(text);
	free(sha);
	free(data);
	return rc;
}

static void stream_close(sm_vault *self) { free(self); }

static int stream_new(sm_vault **out, const sm_vault_config *config, const sm_callbacks *cb)
{
	sm_vault *v = calloc(1, sizeof(*v));

	(void)config;
	(void)cb;
	v->abi_version = SM_VAULT_ABI_VERSION;
	v->type = "stream";
	v->caps = SM_VAULT_CAN_READ;
	v->open = stream_open;
	v->pull = stream_pull;
	v->exists = stream_exists;
	v->close = stream_close;
	*out = v;
	return 0;
}

/* Pulls follow-test-v1.0 into a fresh folder; returns the code and that folder. */
static int pull_in_mode(enum stream_mode mode, char **out_dir)
{
	static int count;
	sm_vault_config config = { .name = (char *)"s", .type = (char *)"stream",
				   .source = (char *)"test" };
	sm_vault *vault = NULL;
	char *path = NULL;
	int rc;

	stream_mode = mode;
	stream_source = built_bundle;
	*out_dir = sm_asprintf("%s/out-%d", scratch, count++);
	assert_int_equal(sm_vault_register("stream", SM_VAULT_ABI_VERSION, stream_new), 0);
	assert_int_equal(sm_vault_open(&vault, &config, NULL), 0);
	rc = sm_vault_pull(vault, "follow-test-v1.0", *out_dir, 0, &path);
	snprintf(pull_message, sizeof(pull_message), "%s", rc ? sm_error_message() : "");
	sm_vault_close(vault);
	sm_vault_unregister("stream");
	free(path);
	return rc;
}

static void pulled_path_holds_the_source(const char *dir)
{
	char *path = sm_asprintf("%s/follow-test-v1.0.skillmeat-pack", dir);
	char *got = sha256_hex(path), *want = sha256_hex(built_bundle);

	assert_string_equal(got, want);
	free(got);
	free(want);
	free(path);
}

static void folder_is_empty(const char *dir)
{
	char *cmd = sm_asprintf("test -z \"$(ls -A '%s' 2>/dev/null)\"", dir);

	assert_int_equal(system(cmd), 0);
	free(cmd);
}

static void watched_and_unwatched_pulls_succeed(void **state)
{
	char *dir;

	(void)state;
	assert_int_equal(pull_in_mode(STREAM_WATCHED, &dir), 0);
	pulled_path_holds_the_source(dir);
	free(dir);
	assert_int_equal(pull_in_mode(STREAM_UNWATCHED, &dir), 0);
	pulled_path_holds_the_source(dir);
	free(dir);
}

static void byte_changed_after_it_was_followed_is_caught(void **state)
{
	char *dir;

	(void)state;
	assert_int_equal(pull_in_mode(STREAM_REWRITTEN, &dir), SM_EINTEGRITY);
	assert_non_null(strstr(pull_message, "is corrupt: SHA-256"));
	folder_is_empty(dir);
	free(dir);
}

static void watched_pull_checks_the_recorded_hash(void **state)
{
	char *dir;

	(void)state;
	assert_int_equal(pull_in_mode(STREAM_WRONG_HASH, &dir), SM_EINTEGRITY);
	assert_non_null(strstr(pull_message, "its metadata says"));
	folder_is_empty(dir);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(follower_covers_every_artifact_in_any_piece_size),
		cmocka_unit_test(follower_reads_the_original_tools_bundle),
		cmocka_unit_test(stream_cut_short_leaves_the_rest_to_the_file),
		cmocka_unit_test(damaged_followed_entry_is_read_again_from_the_file),
		cmocka_unit_test(follower_of_another_archive_is_not_used),
		cmocka_unit_test(tampered_file_fails_with_or_without_follower),
		cmocka_unit_test(followed_verdict_matches_plain_verdict),
		cmocka_unit_test(damaged_entries_count_toward_the_entry_limit),
		cmocka_unit_test(split_folder_is_not_followed_and_the_other_is),
		cmocka_unit_test(watched_and_unwatched_pulls_succeed),
		cmocka_unit_test(byte_changed_after_it_was_followed_is_caught),
		cmocka_unit_test(watched_pull_checks_the_recorded_hash),
	};

	return cmocka_run_group_tests(tests, build_bundle, remove_scratch);
}
