/*
 * Unit tests of the credential stores that need no D-Bus: environment
 * variable lookup and the sealed file in both key modes, including
 * damaged, truncated and mismatched files.
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

#include "skillmeat/credentials.h"
#include "skillmeat/error.h"
#include "util/util.h"

#define SECRET "Unit-Secret-8c7b6a"
#define PASSPHRASE "unit passphrase 42"

/* A scratch SKILLMEAT_HOME per test. */
typedef struct fixture {
	char home[64];
	char file[128];
	char key[128];
	sm_cred_opts opts;
} fixture;

static int setup(void **state)
{
	fixture *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	snprintf(f->home, sizeof(f->home), "/tmp/skillmeat-cred-XXXXXX");
	if (!mkdtemp(f->home))
		return -1;
	snprintf(f->file, sizeof(f->file), "%s/credentials", f->home);
	snprintf(f->key, sizeof(f->key), "%s/credentials.key", f->home);
	f->opts.home = f->home;
	f->opts.store = SM_CRED_STORE_FILE;
	unsetenv("SKILLMEAT_CREDENTIALS_PASSPHRASE");
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fixture *f = *state;
	char *cmd = sm_asprintf("rm -rf '%s'", f->home);

	if (cmd && system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", f->home);
	free(cmd);
	unsetenv("SKILLMEAT_CREDENTIALS_PASSPHRASE");
	free(f);
	return 0;
}

/* Stores a user name and password for `vault`. */
static int store_pair(const fixture *f, const char *vault, const char *user, const char *password)
{
	const char *values[SM_CRED_NFIELDS] = { 0 };

	values[SM_CRED_USERNAME] = user;
	values[SM_CRED_PASSWORD] = password;
	return sm_credentials_store(vault, values, &f->opts, NULL);
}

static void flip_byte(const char *path, long offset)
{
	FILE *fp = fopen(path, "r+b");
	int c;

	assert_non_null(fp);
	assert_int_equal(fseek(fp, offset, SEEK_SET), 0);
	c = fgetc(fp);
	assert_int_equal(fseek(fp, offset, SEEK_SET), 0);
	fputc(c ^ 0x01, fp);
	fclose(fp);
}

static void env_name_maps_dash_and_dot(void **state)
{
	char name[128];

	(void)state;
	assert_int_equal(sm_cred_env_name("team-a.b", SM_CRED_PASSWORD, name, sizeof(name)), 0);
	assert_string_equal(name, "SKILLMEAT_VAULT_TEAM_A_B_PASSWORD");
	assert_int_equal(sm_cred_env_name("x", SM_CRED_SESSION_TOKEN, name, sizeof(name)), 0);
	assert_string_equal(name, "SKILLMEAT_VAULT_X_SESSION_TOKEN");
}

static void env_name_rejects_invalid_vault(void **state)
{
	char name[128];

	(void)state;
	assert_int_equal(sm_cred_env_name("a b", SM_CRED_USERNAME, name, sizeof(name)), SM_EINVALID);
	assert_int_equal(sm_cred_env_name("ok", SM_CRED_USERNAME, name, 10), SM_EINVALID);
}

static void env_lookup_reads_only_its_vault(void **state)
{
	fixture *f = *state;
	sm_credentials *c = NULL;

	f->opts.store = SM_CRED_STORE_ENV;
	setenv("SKILLMEAT_VAULT_TEAM_X_USERNAME", "envuser", 1);
	setenv("SKILLMEAT_VAULT_TEAM_X_SESSION_TOKEN", "envtoken", 1);
	setenv("SKILLMEAT_VAULT_OTHER_PASSWORD", SECRET, 1);
	assert_int_equal(sm_credentials_lookup(&c, "team.x", &f->opts), 0);
	assert_string_equal(c->fields[SM_CRED_USERNAME], "envuser");
	assert_int_equal(c->sources[SM_CRED_USERNAME], SM_CRED_STORE_ENV);
	assert_string_equal(c->fields[SM_CRED_SESSION_TOKEN], "envtoken");
	assert_null(c->fields[SM_CRED_PASSWORD]);
	assert_int_equal(c->sources[SM_CRED_PASSWORD], SM_CRED_STORE_NONE);
	sm_credentials_free(c);
	unsetenv("SKILLMEAT_VAULT_TEAM_X_USERNAME");
	unsetenv("SKILLMEAT_VAULT_TEAM_X_SESSION_TOKEN");
	unsetenv("SKILLMEAT_VAULT_OTHER_PASSWORD");
}

static void env_wins_over_sealed_file_per_field(void **state)
{
	fixture *f = *state;
	sm_credentials *c = NULL;

	assert_int_equal(store_pair(f, "team", "fileuser", SECRET), 0);
	f->opts.store = SM_CRED_STORE_NONE;
	unsetenv("DBUS_SESSION_BUS_ADDRESS");
	setenv("SKILLMEAT_VAULT_TEAM_PASSWORD", "envpw", 1);
	assert_int_equal(sm_credentials_lookup(&c, "team", &f->opts), 0);
	assert_string_equal(c->fields[SM_CRED_PASSWORD], "envpw");
	assert_int_equal(c->sources[SM_CRED_PASSWORD], SM_CRED_STORE_ENV);
	assert_string_equal(c->fields[SM_CRED_USERNAME], "fileuser");
	assert_int_equal(c->sources[SM_CRED_USERNAME], SM_CRED_STORE_FILE);
	sm_credentials_free(c);
	unsetenv("SKILLMEAT_VAULT_TEAM_PASSWORD");
}

static void sealed_key_file_round_trip(void **state)
{
	fixture *f = *state;
	sm_credentials *c = NULL;

	assert_int_equal(store_pair(f, "team", "alice", SECRET), 0);
	assert_int_equal(sm_credentials_lookup(&c, "team", &f->opts), 0);
	assert_string_equal(c->vault, "team");
	assert_string_equal(c->fields[SM_CRED_USERNAME], "alice");
	assert_string_equal(c->fields[SM_CRED_PASSWORD], SECRET);
	assert_int_equal(c->sources[SM_CRED_PASSWORD], SM_CRED_STORE_FILE);
	assert_null(c->fields[SM_CRED_SSH_KEY]);
	sm_credentials_free(c);
}

static void sealed_files_have_mode_0600(void **state)
{
	fixture *f = *state;
	struct stat st;

	umask(022);
	assert_int_equal(store_pair(f, "team", "alice", SECRET), 0);
	assert_int_equal(stat(f->file, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(stat(f->key, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(st.st_size, 32);
}

static void sealed_file_holds_no_plaintext(void **state)
{
	fixture *f = *state;
	char *data = NULL;
	size_t len = 0;

	assert_int_equal(store_pair(f, "team", "alice", SECRET), 0);
	assert_int_equal(sm_read_file(f->file, 1 << 20, &data, &len), 0);
	assert_null(memmem(data, len, SECRET, strlen(SECRET)));
	assert_null(memmem(data, len, "alice", 5));
	free(data);
}

static void sealed_store_keeps_other_fields_and_vaults(void **state)
{
	fixture *f = *state;
	const char *values[SM_CRED_NFIELDS] = { 0 };
	sm_credentials *c = NULL;

	assert_int_equal(store_pair(f, "team", "alice", SECRET), 0);
	assert_int_equal(store_pair(f, "other", "bob", "other-pw"), 0);
	values[SM_CRED_PASSWORD] = "new-pw";
	assert_int_equal(sm_credentials_store("team", values, &f->opts, NULL), 0);
	assert_int_equal(sm_credentials_lookup(&c, "team", &f->opts), 0);
	assert_string_equal(c->fields[SM_CRED_USERNAME], "alice");
	assert_string_equal(c->fields[SM_CRED_PASSWORD], "new-pw");
	sm_credentials_free(c);
	assert_int_equal(sm_credentials_lookup(&c, "other", &f->opts), 0);
	assert_string_equal(c->fields[SM_CRED_USERNAME], "bob");
	assert_string_equal(c->fields[SM_CRED_PASSWORD], "other-pw");
	sm_credentials_free(c);
}

static void sealed_remove_deletes_only_its_vault(void **state)
{
	fixture *f = *state;
	sm_credentials *c = NULL;
	int removed = -1;

	assert_int_equal(store_pair(f, "team", "alice", SECRET), 0);
	assert_int_equal(store_pair(f, "other", "bob", "other-pw"), 0);
	assert_int_equal(sm_credentials_remove("team", &f->opts, &removed), 0);
	assert_int_equal(removed, 2);
	assert_int_equal(sm_credentials_lookup(&c, "team", &f->opts), 0);
	assert_null(c->fields[SM_CRED_USERNAME]);
	assert_null(c->fields[SM_CRED_PASSWORD]);
	sm_credentials_free(c);
	assert_int_equal(sm_credentials_lookup(&c, "other", &f->opts), 0);
	assert_string_equal(c->fields[SM_CRED_PASSWORD], "other-pw");
	sm_credentials_free(c);
	assert_int_equal(sm_credentials_remove("team", &f->opts, &removed), 0);
	assert_int_equal(removed, 0);
}

static void sealed_lookup_without_file_is_empty(void **state)
{
	fixture *f = *state;
	sm_credentials *c = NULL;

	assert_int_equal(sm_credentials_lookup(&c, "team", &f->opts), 0);
	for (int i = 0; i < SM_CRED_NFIELDS; i++)
		assert_null(c->fields[i]);
	sm_credentials_free(c);
	assert_int_not_equal(access(f->file, F_OK), 0);
}

static void sealed_passphrase_round_trip_without_key_file(void **state)
{
	fixture *f = *state;
	sm_credentials *c = NULL;

	setenv("SKILLMEAT_CREDENTIALS_PASSPHRASE", PASSPHRASE, 1);
	assert_int_equal(store_pair(f, "team", "alice", SECRET), 0);
	assert_int_not_equal(access(f->key, F_OK), 0);
	assert_int_equal(sm_credentials_lookup(&c, "team", &f->opts), 0);
	assert_string_equal(c->fields[SM_CRED_PASSWORD], SECRET);
	sm_credentials_free(c);
}

static void sealed_passphrase_file_option_works(void **state)
{
	fixture *f = *state;
	sm_credentials *c = NULL;
	char path[160];

	snprintf(path, sizeof(path), "%s/pp", f->home);
	assert_int_equal(sm_write_file_atomic(path, PASSPHRASE "\n", strlen(PASSPHRASE) + 1, 0600), 0);
	f->opts.passphrase_file = path;
	assert_int_equal(store_pair(f, "team", "alice", SECRET), 0);
	f->opts.passphrase_file = NULL;
	setenv("SKILLMEAT_CREDENTIALS_PASSPHRASE", PASSPHRASE, 1);
	assert_int_equal(sm_credentials_lookup(&c, "team", &f->opts), 0);
	assert_string_equal(c->fields[SM_CRED_PASSWORD], SECRET);
	sm_credentials_free(c);
}

static void sealed_wrong_passphrase_fails_with_eauth(void **state)
{
	fixture *f = *state;
	sm_credentials *c = NULL;

	setenv("SKILLMEAT_CREDENTIALS_PASSPHRASE", PASSPHRASE, 1);
	assert_int_equal(store_pair(f, "team", "alice", SECRET), 0);
	setenv("SKILLMEAT_CREDENTIALS_PASSPHRASE", "not the passphrase", 1);
	assert_int_equal(sm_credentials_lookup(&c, "team", &f->opts), SM_EAUTH);
	assert_null(c);
	assert_non_null(strstr(sm_error_message(), "passphrase is wrong"));
	assert_null(strstr(sm_error_message(), SECRET));
	assert_null(strstr(sm_error_message(), "not the passphrase"));
}

static void sealed_missing_passphrase_fails_with_eauth(void **state)
{
	fixture *f = *state;
	sm_credentials *c = NULL;

	setenv("SKILLMEAT_CREDENTIALS_PASSPHRASE", PASSPHRASE, 1);
	assert_int_equal(store_pair(f, "team", "alice", SECRET), 0);
	unsetenv("SKILLMEAT_CREDENTIALS_PASSPHRASE");
	assert_int_equal(sm_credentials_lookup(&c, "team", &f->opts), SM_EAUTH);
	assert_non_null(strstr(sm_error_message(), "SKILLMEAT_CREDENTIALS_PASSPHRASE"));
}

static void sealed_flipped_byte_fails_with_eintegrity(void **state)
{
	fixture *f = *state;
	sm_credentials *c = NULL;
	struct stat st;

	assert_int_equal(store_pair(f, "team", "alice", SECRET), 0);
	assert_int_equal(stat(f->file, &st), 0);
	flip_byte(f->file, st.st_size - 20);
	assert_int_equal(sm_credentials_lookup(&c, "team", &f->opts), SM_EINTEGRITY);
	assert_null(c);
	assert_non_null(strstr(sm_error_message(), "changed or damaged"));
	assert_null(strstr(sm_error_message(), SECRET));
}

static void sealed_flipped_header_byte_fails(void **state)
{
	fixture *f = *state;
	sm_credentials *c = NULL;

	assert_int_equal(store_pair(f, "team", "alice", SECRET), 0);
	/* a reserved header byte: authenticated as associated data */
	flip_byte(f->file, 12);
	assert_int_equal(sm_credentials_lookup(&c, "team", &f->opts), SM_EINTEGRITY);
}

static void sealed_truncated_file_fails(void **state)
{
	fixture *f = *state;
	sm_credentials *c = NULL;

	assert_int_equal(store_pair(f, "team", "alice", SECRET), 0);
	assert_int_equal(truncate(f->file, 45), 0);
	assert_int_equal(sm_credentials_lookup(&c, "team", &f->opts), SM_EINTEGRITY);
	assert_non_null(strstr(sm_error_message(), "truncated"));
	assert_int_equal(truncate(f->file, 4), 0);
	assert_int_equal(sm_credentials_lookup(&c, "team", &f->opts), SM_EINTEGRITY);
}

static void sealed_missing_key_file_fails_with_enotfound(void **state)
{
	fixture *f = *state;
	sm_credentials *c = NULL;

	assert_int_equal(store_pair(f, "team", "alice", SECRET), 0);
	assert_int_equal(unlink(f->key), 0);
	assert_int_equal(sm_credentials_lookup(&c, "team", &f->opts), SM_ENOTFOUND);
	assert_non_null(strstr(sm_error_message(), "credentials.key"));
	/* a write must not create a new key and lose the old records */
	assert_int_equal(store_pair(f, "other", "bob", "pw"), SM_ENOTFOUND);
	assert_int_not_equal(access(f->key, F_OK), 0);
}

static void sealed_readable_file_is_rejected(void **state)
{
	fixture *f = *state;
	sm_credentials *c = NULL;

	assert_int_equal(store_pair(f, "team", "alice", SECRET), 0);
	assert_int_equal(chmod(f->file, 0644), 0);
	assert_int_equal(sm_credentials_lookup(&c, "team", &f->opts), SM_EREADONLY);
	assert_non_null(strstr(sm_error_message(), "chmod 600"));
}

static void sealed_key_mode_rejects_passphrase(void **state)
{
	fixture *f = *state;
	sm_credentials *c = NULL;

	assert_int_equal(store_pair(f, "team", "alice", SECRET), 0);
	setenv("SKILLMEAT_CREDENTIALS_PASSPHRASE", PASSPHRASE, 1);
	assert_int_equal(sm_credentials_lookup(&c, "team", &f->opts), SM_EAUTH);
	assert_non_null(strstr(sm_error_message(), "sealed with the key file"));
}

static void store_rejects_env_and_empty_values(void **state)
{
	fixture *f = *state;
	const char *values[SM_CRED_NFIELDS] = { 0 };

	values[SM_CRED_PASSWORD] = "";
	assert_int_equal(sm_credentials_store("team", values, &f->opts, NULL), SM_EINVALID);
	values[SM_CRED_PASSWORD] = NULL;
	assert_int_equal(sm_credentials_store("team", values, &f->opts, NULL), SM_EINVALID);
	values[SM_CRED_PASSWORD] = "x";
	f->opts.store = SM_CRED_STORE_ENV;
	assert_int_equal(sm_credentials_store("team", values, &f->opts, NULL), SM_EINVALID);
	assert_int_equal(sm_credentials_store("bad name", values, NULL, NULL), SM_EINVALID);
}

static void forced_keychain_without_bus_is_unsupported(void **state)
{
	fixture *f = *state;
	const char *values[SM_CRED_NFIELDS] = { 0 };
	sm_cred_store used = SM_CRED_STORE_FILE;

	unsetenv("DBUS_SESSION_BUS_ADDRESS");
	values[SM_CRED_PASSWORD] = SECRET;
	f->opts.store = SM_CRED_STORE_KEYCHAIN;
	assert_int_equal(sm_credentials_store("team", values, &f->opts, &used), SM_EUNSUPPORTED);
	assert_int_equal(used, SM_CRED_STORE_NONE);
	assert_non_null(strstr(sm_error_message(), "DBUS_SESSION_BUS_ADDRESS"));
}

static void automatic_store_without_bus_uses_file(void **state)
{
	fixture *f = *state;
	const char *values[SM_CRED_NFIELDS] = { 0 };
	sm_cred_store used = SM_CRED_STORE_NONE;

	unsetenv("DBUS_SESSION_BUS_ADDRESS");
	values[SM_CRED_PASSWORD] = SECRET;
	f->opts.store = SM_CRED_STORE_NONE;
	assert_int_equal(sm_credentials_store("team", values, &f->opts, &used), 0);
	assert_int_equal(used, SM_CRED_STORE_FILE);
	assert_int_equal(access(f->file, F_OK), 0);
}

static void status_reports_fields_not_values(void **state)
{
	fixture *f = *state;
	sm_cred_status status;

	unsetenv("DBUS_SESSION_BUS_ADDRESS");
	assert_int_equal(store_pair(f, "team", "alice", SECRET), 0);
	setenv("SKILLMEAT_VAULT_TEAM_SSH_KEY", "/k", 1);
	f->opts.store = SM_CRED_STORE_NONE;
	assert_int_equal(sm_credentials_status("team", &f->opts, &status), 0);
	assert_int_equal(status.file, (1u << SM_CRED_USERNAME) | (1u << SM_CRED_PASSWORD));
	assert_int_equal(status.env, 1u << SM_CRED_SSH_KEY);
	assert_int_equal(status.keychain, 0);
	assert_int_equal(status.keychain_available, 0);
	assert_int_equal(status.file_exists, 1);
	assert_int_equal(status.file_passphrase, 0);
	unsetenv("SKILLMEAT_VAULT_TEAM_SSH_KEY");
}

static void field_names_round_trip(void **state)
{
	(void)state;
	for (int i = 0; i < SM_CRED_NFIELDS; i++)
		assert_int_equal(sm_cred_field_from_name(sm_cred_field_name(i)), i);
	assert_int_equal(sm_cred_field_from_name("token"), -1);
	assert_string_equal(sm_cred_store_name(SM_CRED_STORE_KEYCHAIN), "keychain");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(env_name_maps_dash_and_dot),
		cmocka_unit_test(env_name_rejects_invalid_vault),
		cmocka_unit_test_setup_teardown(env_lookup_reads_only_its_vault, setup, teardown),
		cmocka_unit_test_setup_teardown(env_wins_over_sealed_file_per_field, setup, teardown),
		cmocka_unit_test_setup_teardown(sealed_key_file_round_trip, setup, teardown),
		cmocka_unit_test_setup_teardown(sealed_files_have_mode_0600, setup, teardown),
		cmocka_unit_test_setup_teardown(sealed_file_holds_no_plaintext, setup, teardown),
		cmocka_unit_test_setup_teardown(sealed_store_keeps_other_fields_and_vaults, setup, teardown),
		cmocka_unit_test_setup_teardown(sealed_remove_deletes_only_its_vault, setup, teardown),
		cmocka_unit_test_setup_teardown(sealed_lookup_without_file_is_empty, setup, teardown),
		cmocka_unit_test_setup_teardown(sealed_passphrase_round_trip_without_key_file, setup, teardown),
		cmocka_unit_test_setup_teardown(sealed_passphrase_file_option_works, setup, teardown),
		cmocka_unit_test_setup_teardown(sealed_wrong_passphrase_fails_with_eauth, setup, teardown),
		cmocka_unit_test_setup_teardown(sealed_missing_passphrase_fails_with_eauth, setup, teardown),
		cmocka_unit_test_setup_teardown(sealed_flipped_byte_fails_with_eintegrity, setup, teardown),
		cmocka_unit_test_setup_teardown(sealed_flipped_header_byte_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(sealed_truncated_file_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(sealed_missing_key_file_fails_with_enotfound, setup, teardown),
		cmocka_unit_test_setup_teardown(sealed_readable_file_is_rejected, setup, teardown),
		cmocka_unit_test_setup_teardown(sealed_key_mode_rejects_passphrase, setup, teardown),
		cmocka_unit_test_setup_teardown(store_rejects_env_and_empty_values, setup, teardown),
		cmocka_unit_test_setup_teardown(forced_keychain_without_bus_is_unsupported, setup, teardown),
		cmocka_unit_test_setup_teardown(automatic_store_without_bus_uses_file, setup, teardown),
		cmocka_unit_test_setup_teardown(status_reports_fields_not_values, setup, teardown),
		cmocka_unit_test(field_names_round_trip),
	};

	unsetenv("DBUS_SESSION_BUS_ADDRESS");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
