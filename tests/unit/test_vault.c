/*
 * Unit tests of the vault core: the connector registry, bundle ids, list
 * filters, record JSON, and the push/pull flow driven through a fake
 * connector that counts its calls.
 */
#define _GNU_SOURCE
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

#include "skillmeat/vault.h"
#include "util/util.h"
#include "vault/record.h"

/* ---- a fake connector that counts calls ---- */

typedef struct fake_vault {
	sm_vault parent;
	int opens, pushes, pulls, lists, commits_allowed, commits_refused;
	int open_rc;
} fake_vault;

static fake_vault *last_fake;

static int fake_open(sm_vault *self)
{
	fake_vault *fv = (fake_vault *)self;

	fv->opens++;
	return fv->open_rc;
}

static int fake_push(sm_vault *self, int fd, sm_record *record, sm_push_opts *opts)
{
	fake_vault *fv = (fake_vault *)self;
	int rc;

	fv->pushes++;
	rc = opts->before_commit ? opts->before_commit(opts->payload) : 0;
	if (rc) {
		fv->commits_refused++;
		return rc;
	}
	fv->commits_allowed++;
	return 0;
}

static int fake_new(sm_vault **out, const sm_vault_config *config, const sm_callbacks *cb);

/* Set by a test: a file that swapping_push renames over `swap_target` first. */
static const char *swap_source, *swap_target;
static unsigned char pushed_sha256[32];

/* Hashes what the connector receives, after swapping the path if asked. */
static int swapping_push(sm_vault *self, int fd, sm_record *record, sm_push_opts *opts)
{
	int rc;

	if (swap_source)
		assert_int_equal(rename(swap_source, swap_target), 0);
	rc = sm_copy_hash(fd, -1, pushed_sha256, NULL, NULL, NULL);
	if (!rc && opts->before_commit)
		rc = opts->before_commit(opts->payload);
	return rc;
}

static int swapping_new(sm_vault **out, const sm_vault_config *config, const sm_callbacks *cb)
{
	int rc = fake_new(out, config, cb);

	(*out)->push = swapping_push;
	return rc;
}

static int fake_pull(sm_vault *self, const char *id, int fd, sm_record **out)
{
	((fake_vault *)self)->pulls++;
	return sm_error_set(SM_ENOTFOUND, "bundle '%s' not found", id);
}

static int fake_list(sm_vault *self, const sm_list_filter *filter, sm_record_list *out)
{
	((fake_vault *)self)->lists++;
	out->items = NULL;
	out->count = 0;
	return 0;
}

static int fake_delete(sm_vault *self, const char *id) { return 0; }
static int fake_exists(sm_vault *self, const char *id, int *out) { *out = 0; return 0; }
static int fake_get(sm_vault *self, const char *id, sm_record **out)
{
	return sm_error_set(SM_ENOTFOUND, "no '%s'", id);
}
static void fake_close(sm_vault *self) { free(self); }

static int fake_new(sm_vault **out, const sm_vault_config *config, const sm_callbacks *cb)
{
	fake_vault *fv = calloc(1, sizeof(*fv));

	fv->parent.abi_version = SM_VAULT_ABI_VERSION;
	fv->parent.type = "fake";
	fv->parent.caps = SM_VAULT_CAN_READ | SM_VAULT_CAN_WRITE | SM_VAULT_CAN_DELETE;
	fv->parent.open = fake_open;
	fv->parent.push = fake_push;
	fv->parent.pull = fake_pull;
	fv->parent.list = fake_list;
	fv->parent.delete_bundle = fake_delete;
	fv->parent.exists = fake_exists;
	fv->parent.get_metadata = fake_get;
	fv->parent.close = fake_close;
	last_fake = fv;
	*out = &fv->parent;
	return 0;
}

static int failing_ctor(sm_vault **out, const sm_vault_config *config, const sm_callbacks *cb)
{
	*out = NULL;
	return sm_error_set(SM_EINVALID, "fake connector refused its configuration");
}

static sm_vault_config make_config(const char *name, const char *type, int read_only)
{
	sm_vault_config config = { 0 };

	config.name = (char *)name;
	config.type = (char *)type;
	config.read_only = read_only;
	config.source = (char *)"test";
	return config;
}

static char *fixture_bundle(void)
{
	const char *src = getenv("SKILLMEAT_SOURCE_DIR");
	char *path = sm_asprintf("%s/tests/fixtures/original/demo-bundle.skillmeat-pack",
				 src ? src : ".");

	assert_non_null(path);
	return path;
}

/* ---- registry ---- */

static void registry_unknown_type_lists_known(void **state)
{
	sm_vault_config config = make_config("team", "ftp", 0);
	sm_vault *vault = NULL;

	assert_int_equal(sm_vault_open(&vault, &config, NULL), SM_EINVALID);
	assert_null(vault);
	assert_non_null(strstr(sm_error_message(), "unknown type 'ftp'"));
	assert_non_null(strstr(sm_error_message(), "local"));
}

static void registry_rejects_abi_mismatch(void **state)
{
	assert_int_equal(sm_vault_register("fake", SM_VAULT_ABI_VERSION + 1, fake_new), SM_EINVALID);
	assert_non_null(strstr(sm_error_message(), "ABI"));
}

static void registry_runtime_type_is_found(void **state)
{
	sm_vault_config config = make_config("team", "fake", 0);
	sm_vault *vault = NULL;
	char *types;

	assert_int_equal(sm_vault_register("fake", SM_VAULT_ABI_VERSION, fake_new), 0);
	types = sm_vault_types();
	assert_non_null(strstr(types, "fake"));
	free(types);
	assert_int_equal(sm_vault_open(&vault, &config, NULL), 0);
	assert_int_equal(last_fake->opens, 1);
	sm_vault_close(vault);
	assert_int_equal(sm_vault_unregister("fake"), 0);
	assert_int_equal(sm_vault_unregister("fake"), SM_ENOTFOUND);
}

static void registry_runtime_type_shadows_builtin(void **state)
{
	sm_vault_config config = make_config("team", "local", 0);
	sm_vault *vault = NULL;

	assert_int_equal(sm_vault_register("local", SM_VAULT_ABI_VERSION, fake_new), 0);
	/* no "path" setting: the built-in local connector would fail */
	assert_int_equal(sm_vault_open(&vault, &config, NULL), 0);
	assert_string_equal(vault->type, "fake");
	sm_vault_close(vault);
	assert_int_equal(sm_vault_unregister("local"), 0);
	assert_int_equal(sm_vault_open(&vault, &config, NULL), SM_EINVALID);
	assert_non_null(strstr(sm_error_message(), "no 'path'"));
}

static void registry_reports_ctor_failure(void **state)
{
	sm_vault_config config = make_config("team", "broken", 0);
	sm_vault *vault = NULL;

	assert_int_equal(sm_vault_register("broken", SM_VAULT_ABI_VERSION, failing_ctor), 0);
	assert_int_equal(sm_vault_open(&vault, &config, NULL), SM_EINVALID);
	assert_null(vault);
	assert_string_equal(sm_error_message(), "fake connector refused its configuration");
	sm_vault_unregister("broken");
}

static int ctor_without_vault(sm_vault **out, const sm_vault_config *config,
			      const sm_callbacks *callbacks)
{
	*out = NULL;
	return 0;
}

static int ctor_with_foreign_code(sm_vault **out, const sm_vault_config *config,
				  const sm_callbacks *callbacks)
{
	*out = NULL;
	return 42;
}

static void registry_reports_ctor_breaking_conventions(void **state)
{
	sm_vault_config config = make_config("team", "odd", 0);
	sm_vault *vault = NULL;

	assert_int_equal(sm_vault_register("odd", SM_VAULT_ABI_VERSION, ctor_without_vault), 0);
	assert_int_equal(sm_vault_open(&vault, &config, NULL), SM_ERROR);
	assert_null(vault);
	assert_string_equal(sm_error_message(), "connector for type 'odd' returned no vault");
	assert_int_equal(sm_vault_register("odd", SM_VAULT_ABI_VERSION, ctor_with_foreign_code), 0);
	assert_int_equal(sm_vault_open(&vault, &config, NULL), SM_ERROR);
	assert_null(vault);
	assert_string_equal(sm_error_message(), "connector for type 'odd' failed with code 42, "
			    "which is not a skillmeat error code");
	sm_vault_unregister("odd");
}

static void open_failure_closes_connector(void **state)
{
	sm_vault_config config = make_config("team", "local", 0);
	sm_kv setting = { (char *)"path", (char *)"/nonexistent/skillmeat-vault" };
	sm_vault *vault = NULL;

	config.settings = &setting;
	config.nsettings = 1;
	assert_int_equal(sm_vault_open(&vault, &config, NULL), SM_ENOTFOUND);
	assert_null(vault);
	assert_non_null(strstr(sm_error_message(), "does not exist"));
}

/* ---- read-only and capabilities ---- */

static void read_only_vault_refuses_push_and_delete(void **state)
{
	sm_vault_config config = make_config("team", "fake", 1);
	sm_vault *vault = NULL;
	char *bundle = fixture_bundle();

	sm_vault_register("fake", SM_VAULT_ABI_VERSION, fake_new);
	assert_int_equal(sm_vault_open(&vault, &config, NULL), 0);
	assert_int_equal(sm_vault_push(vault, bundle, NULL, NULL, NULL), SM_EREADONLY);
	assert_non_null(strstr(sm_error_message(), "read-only"));
	assert_int_equal(sm_vault_delete(vault, "demo-bundle-v1.0"), SM_EREADONLY);
	assert_int_equal(last_fake->pushes, 0);
	sm_vault_close(vault);
	sm_vault_unregister("fake");
	free(bundle);
}

/* ---- push gating ---- */

static void push_verified_bundle_reaches_commit(void **state)
{
	sm_vault_config config = make_config("team", "fake", 0);
	sm_vault *vault = NULL;
	sm_record *record = NULL;
	char *bundle = fixture_bundle();

	sm_vault_register("fake", SM_VAULT_ABI_VERSION, fake_new);
	assert_int_equal(sm_vault_open(&vault, &config, NULL), 0);
	assert_int_equal(sm_vault_push(vault, bundle, NULL, NULL, &record), 0);
	assert_int_equal(last_fake->commits_allowed, 1);
	assert_string_equal(record->bundle_id, "demo-bundle-v1.0");
	assert_string_equal(record->version, "1.0");
	assert_string_equal(record->bundle_hash,
			    "sha256:ba0bb71656434901168866e3116db61a7a85595753a91286755741cd75593ec3");
	assert_int_equal(record->ntags, 2);
	sm_record_free(record);

	assert_int_equal(sm_vault_push(vault, bundle, "2.5.0", NULL, &record), 0);
	assert_string_equal(record->bundle_id, "demo-bundle-v2.5.0");
	sm_record_free(record);
	sm_vault_close(vault);
	sm_vault_unregister("fake");
	free(bundle);
}

/* Copies the fixture and flips one byte of the first entry's data. */
static char *tampered_copy(void)
{
	char *src = fixture_bundle(), *data = NULL, *path;
	size_t len;
	FILE *f;

	assert_int_equal(sm_read_file(src, 1 << 20, &data, &len), 0);
	/* the first local header is 30 bytes + the 35-byte name; data follows */
	data[30 + 35 + 5] ^= 0x55;
	path = strdup("/tmp/skillmeat-test-tampered-XXXXXX");
	close(mkstemp(path));
	f = fopen(path, "wb");
	fwrite(data, 1, len, f);
	fclose(f);
	free(data);
	free(src);
	return path;
}

static void push_tampered_bundle_never_commits(void **state)
{
	sm_vault_config config = make_config("team", "fake", 0);
	sm_vault *vault = NULL;
	sm_record *record = NULL;
	char *bundle = tampered_copy();
	int rc;

	sm_vault_register("fake", SM_VAULT_ABI_VERSION, fake_new);
	assert_int_equal(sm_vault_open(&vault, &config, NULL), 0);
	rc = sm_vault_push(vault, bundle, NULL, NULL, &record);
	assert_true(rc == SM_EINTEGRITY || rc == SM_EINVALID);
	assert_null(record);
	assert_int_equal(last_fake->commits_allowed, 0);
	sm_vault_close(vault);
	sm_vault_unregister("fake");
	unlink(bundle);
	free(bundle);
}

static void push_copies_the_verified_file(void **state)
{
	sm_vault_config config = make_config("team", "swap", 0);
	sm_vault *vault = NULL;
	char *fixture = fixture_bundle(), *tampered = tampered_copy();
	char *path = strdup("/tmp/skillmeat-test-swap-XXXXXX");
	unsigned char expected[32];
	char *data = NULL;
	size_t len;
	FILE *f;

	/* push a copy of the fixture; the connector swaps in a tampered file */
	close(mkstemp(path));
	assert_int_equal(sm_read_file(fixture, 1 << 20, &data, &len), 0);
	f = fopen(path, "wb");
	fwrite(data, 1, len, f);
	fclose(f);
	free(data);
	assert_int_equal(sm_sha256_file(path, expected, NULL), 0);
	swap_source = tampered;
	swap_target = path;

	sm_vault_register("swap", SM_VAULT_ABI_VERSION, swapping_new);
	assert_int_equal(sm_vault_open(&vault, &config, NULL), 0);
	assert_int_equal(sm_vault_push(vault, path, NULL, NULL, NULL), 0);
	assert_memory_equal(pushed_sha256, expected, 32);

	swap_source = swap_target = NULL;
	sm_vault_close(vault);
	sm_vault_unregister("swap");
	unlink(path);
	free(path);
	free(tampered);
	free(fixture);
}

static void push_rejects_version_with_control_chars(void **state)
{
	sm_vault_config config = make_config("team", "fake", 0);
	sm_vault *vault = NULL;
	char *bundle = fixture_bundle();

	sm_vault_register("fake", SM_VAULT_ABI_VERSION, fake_new);
	assert_int_equal(sm_vault_open(&vault, &config, NULL), 0);
	assert_int_equal(sm_vault_push(vault, bundle, "1\n2", NULL, NULL), SM_EINVALID);
	assert_int_equal(sm_vault_push(vault, bundle, "../../etc", NULL, NULL), SM_EINVALID);
	assert_int_equal(last_fake->pushes, 0);
	sm_vault_close(vault);
	sm_vault_unregister("fake");
	free(bundle);
}

/* ---- bundle ids ---- */

static void bundle_id_lowercases_name(void **state)
{
	char *id = NULL;

	assert_int_equal(sm_bundle_id(&id, "Demo_Bundle", "1.2.3"), 0);
	assert_string_equal(id, "demo_bundle-v1.2.3");
	free(id);
}

static void bundle_id_rejects_unsafe_versions(void **state)
{
	static const char *const versions[] = { "../x", "1/2", "1 2", "a..b", "1\\2", "ü" };
	char *id = NULL;

	for (size_t i = 0; i < sizeof(versions) / sizeof(versions[0]); i++) {
		assert_int_equal(sm_bundle_id(&id, "demo", versions[i]), SM_EINVALID);
		assert_null(id);
	}
}

static void bundle_id_valid_rules(void **state)
{
	assert_true(sm_bundle_id_valid("demo-bundle-v1.0"));
	assert_false(sm_bundle_id_valid(".hidden-v1"));
	assert_false(sm_bundle_id_valid("a..b"));
	assert_false(sm_bundle_id_valid("Upper-v1"));
	assert_false(sm_bundle_id_valid(""));
	assert_false(sm_bundle_id_valid(NULL));
}

/* ---- filters ---- */

static void filter_matches_substring_glob_and_tags(void **state)
{
	char *tags[] = { (char *)"demo", (char *)"fixture" };
	sm_record record = { 0 };
	const char *want_both[] = { "demo", "fixture" };
	const char *want_other[] = { "demo", "other" };
	sm_list_filter filter = { 0 };

	record.name = (char *)"Demo-Bundle";
	record.tags = tags;
	record.ntags = 2;

	filter.name = "BUND";
	assert_true(sm_list_filter_match(&filter, &record));
	filter.name = "demo-*";
	assert_true(sm_list_filter_match(&filter, &record));
	filter.name = "demo-?undle";
	assert_true(sm_list_filter_match(&filter, &record));
	filter.name = "*x*";
	assert_false(sm_list_filter_match(&filter, &record));
	filter.name = "nothing";
	assert_false(sm_list_filter_match(&filter, &record));

	filter.name = NULL;
	filter.tags = want_both;
	filter.ntags = 2;
	assert_true(sm_list_filter_match(&filter, &record));
	filter.tags = want_other;
	assert_false(sm_list_filter_match(&filter, &record));
	assert_true(sm_list_filter_match(NULL, &record));
}

/* ---- records ---- */

static void record_parses_original_metadata(void **state)
{
	static const char text[] =
		"{\"bundle_id\": \"demo-bundle-v1.0\", \"name\": \"demo-bundle\", \"version\": \"1.0\","
		" \"description\": \"d\", \"author\": \"a\", \"created_at\": \"c\", \"uploaded_at\": \"u\","
		" \"size_bytes\": 1184, \"bundle_hash\": \"sha256:00\", \"tags\": [\"x\", \"y\"],"
		" \"vault_path\": \"/srv/v\", \"metadata\": {\"n\": 5, \"s\": \"t\"}}";
	sm_record *record = NULL;

	assert_int_equal(sm_record_parse(text, strlen(text), "test", &record), 0);
	assert_string_equal(record->bundle_id, "demo-bundle-v1.0");
	assert_int_equal(record->size_bytes, 1184);
	assert_int_equal(record->ntags, 2);
	assert_string_equal(record->tags[1], "y");
	assert_string_equal(sm_record_metadata_get(record, "n"), "5");
	assert_string_equal(sm_record_metadata_get(record, "s"), "t");
	assert_null(sm_record_metadata_get(record, "sha256"));
	sm_record_free(record);
}

static void record_rejects_bad_shapes(void **state)
{
	static const char *const bad[] = {
		"[]",
		"{\"bundle_id\": \"../etc\"}",
		"{\"bundle_id\": \"ok-v1\", \"size_bytes\": -1}",
		"{\"bundle_id\": \"ok-v1\", \"tags\": \"x\"}",
		"{\"bundle_id\": \"ok-v1\", \"name\": 5}",
		"{\"bundle_id\": \"ok-v1\", \"bundle_id\": \"other-v1\"}",
		"not json",
	};
	sm_record *record = NULL;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(sm_record_parse(bad[i], strlen(bad[i]), "test", &record), SM_EINVALID);
		assert_null(record);
	}
}

static void record_json_round_trip(void **state)
{
	static const char text[] =
		"{\"bundle_id\": \"x-v1\", \"name\": \"x\", \"version\": \"1\", \"size_bytes\": 7,"
		" \"tags\": [\"t\"], \"metadata\": {\"sha256\": \"ab\"}}";
	sm_record *record = NULL, *copy;

	assert_int_equal(sm_record_parse(text, strlen(text), "test", &record), 0);
	copy = sm_record_dup(record);
	assert_non_null(copy);
	assert_string_equal(copy->bundle_id, "x-v1");
	assert_int_equal(copy->size_bytes, 7);
	assert_string_equal(sm_record_metadata_get(copy, "sha256"), "ab");
	assert_string_equal(copy->description, "");
	sm_record_free(copy);
	sm_record_free(record);
}

static void index_text_round_trip_sorts_by_id(void **state)
{
	static const char text[] =
		"{\"b-v1\": {\"bundle_id\": \"b-v1\", \"name\": \"b\", \"version\": \"1\"},"
		" \"a-v2\": {\"bundle_id\": \"a-v2\", \"name\": \"a\", \"version\": \"2\","
		" \"size_bytes\": 42}}";
	sm_record_list list = { 0 }, again = { 0 };
	char *out = NULL;

	assert_int_equal(sm_index_from_text(text, strlen(text), &list), 0);
	assert_int_equal(list.count, 2);
	assert_string_equal(list.items[0]->bundle_id, "a-v2");
	assert_string_equal(list.items[1]->bundle_id, "b-v1");
	assert_int_equal(list.items[0]->size_bytes, 42);
	assert_int_equal(sm_index_to_text(&list, &out), 0);
	assert_non_null(strstr(out, "\"a-v2\": {"));
	assert_int_equal(sm_index_from_text(out, strlen(out), &again), 0);
	assert_int_equal(again.count, 2);
	assert_string_equal(again.items[1]->name, "b");
	free(out);
	sm_record_list_release(&again);
	sm_record_list_release(&list);
}

static void index_text_rejects_mismatched_key(void **state)
{
	static const char text[] = "{\"a-v1\": {\"bundle_id\": \"b-v1\", \"name\": \"b\"}}";
	sm_record_list list = { 0 };

	assert_int_equal(sm_index_from_text(text, strlen(text), &list), SM_EINVALID);
	assert_non_null(strstr(sm_error_message(), "entry 'a-v1' names bundle 'b-v1'"));
	assert_int_equal(list.count, 0);
	assert_null(list.items);
}

static void index_text_rejects_non_object(void **state)
{
	static const char array[] = "[1, 2]";
	static const char broken[] = "{\"a-v1\": ";
	sm_record_list list = { 0 };

	assert_int_equal(sm_index_from_text(array, strlen(array), &list), SM_EINVALID);
	assert_int_equal(sm_index_from_text(broken, strlen(broken), &list), SM_EINVALID);
	assert_int_equal(list.count, 0);
}

static void record_text_round_trip_keeps_field_order(void **state)
{
	static const char text[] =
		"{\"name\": \"x\", \"bundle_id\": \"x-v1\", \"version\": \"1\","
		" \"metadata\": {\"sha256\": \"ab\"}}";
	sm_record *record = NULL;
	char *out = NULL;

	assert_int_equal(sm_record_from_text(text, strlen(text), "test", &record), 0);
	assert_int_equal(sm_record_to_text(record, &out), 0);
	assert_true(strstr(out, "\"bundle_id\"") < strstr(out, "\"name\""));
	assert_true(strstr(out, "\"vault_path\"") < strstr(out, "\"metadata\""));
	assert_non_null(strstr(out, "\n  \"version\": \"1\""));
	free(out);
	sm_record_free(record);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(registry_unknown_type_lists_known),
		cmocka_unit_test(registry_rejects_abi_mismatch),
		cmocka_unit_test(registry_runtime_type_is_found),
		cmocka_unit_test(registry_runtime_type_shadows_builtin),
		cmocka_unit_test(registry_reports_ctor_failure),
		cmocka_unit_test(registry_reports_ctor_breaking_conventions),
		cmocka_unit_test(open_failure_closes_connector),
		cmocka_unit_test(read_only_vault_refuses_push_and_delete),
		cmocka_unit_test(push_verified_bundle_reaches_commit),
		cmocka_unit_test(push_tampered_bundle_never_commits),
		cmocka_unit_test(push_copies_the_verified_file),
		cmocka_unit_test(push_rejects_version_with_control_chars),
		cmocka_unit_test(bundle_id_lowercases_name),
		cmocka_unit_test(bundle_id_rejects_unsafe_versions),
		cmocka_unit_test(bundle_id_valid_rules),
		cmocka_unit_test(filter_matches_substring_glob_and_tags),
		cmocka_unit_test(record_parses_original_metadata),
		cmocka_unit_test(record_rejects_bad_shapes),
		cmocka_unit_test(record_json_round_trip),
		cmocka_unit_test(index_text_round_trip_sorts_by_id),
		cmocka_unit_test(index_text_rejects_mismatched_key),
		cmocka_unit_test(index_text_rejects_non_object),
		cmocka_unit_test(record_text_round_trip_keeps_field_order),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
