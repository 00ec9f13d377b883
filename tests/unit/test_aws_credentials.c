/*
 * Unit tests of the AWS credentials chain without network: stored
 * credentials, environment variables, the shared config files,
 * credential_process, and the helpers (command splitting, ISO 8601 times,
 * the JSON reader). The HTTP sources are covered by
 * tests/e2e/t95-aws-credentials.sh against a mock server.
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
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "credentials/aws.h"
#include "credentials/credentials_internal.h"
#include "skillmeat/error.h"
#include "util/util.h"

#define KEY_ID "AKIAUNITTEST0001"
#define SECRET "unit/Secret+Key-3f9a"
#define TOKEN "unit-session-token-77"

/* A scratch HOME with .aws files per test. */
typedef struct fixture {
	char dir[64];
	char creds[128];
	char config[128];
	char script[128];
	sm_kv settings[4];
	sm_vault_config vault;
} fixture;

static const char *const cleared_vars[] = {
	"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
	"AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
	"AWS_CONTAINER_AUTHORIZATION_TOKEN", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
	"AWS_EC2_METADATA_SERVICE_ENDPOINT", "DBUS_SESSION_BUS_ADDRESS",
	"SKILLMEAT_VAULT_TEAM_S3_USERNAME", "SKILLMEAT_VAULT_TEAM_S3_PASSWORD",
	"SKILLMEAT_VAULT_TEAM_S3_SESSION_TOKEN", "SKILLMEAT_CREDENTIALS_PASSPHRASE",
	"SKILLMEAT_CREDENTIALS_PASSPHRASE_FILE",
};

static int setup(void **state)
{
	fixture *f = calloc(1, sizeof(*f));
	char home[128];

	if (!f)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/skillmeat-aws-XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	snprintf(f->creds, sizeof(f->creds), "%s/aws-credentials", f->dir);
	snprintf(f->config, sizeof(f->config), "%s/aws-config", f->dir);
	snprintf(f->script, sizeof(f->script), "%s/cred proc.sh", f->dir);
	snprintf(home, sizeof(home), "%s/skillmeat", f->dir);
	for (size_t i = 0; i < sizeof(cleared_vars) / sizeof(cleared_vars[0]); i++)
		unsetenv(cleared_vars[i]);
	setenv("HOME", f->dir, 1);
	setenv("SKILLMEAT_HOME", home, 1);
	setenv("AWS_SHARED_CREDENTIALS_FILE", f->creds, 1);
	setenv("AWS_CONFIG_FILE", f->config, 1);
	/* no test here may reach a metadata address */
	setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
	f->vault.name = "team-s3";
	f->vault.type = "s3";
	f->vault.settings = f->settings;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fixture *f = *state;
	char command[160];

	snprintf(command, sizeof(command), "rm -rf '%s'", f->dir);
	if (system(command) != 0)
		return -1;
	free(f);
	return 0;
}

static void set_setting(fixture *f, const char *key, const char *value)
{
	f->settings[f->vault.nsettings].key = (char *)key;
	f->settings[f->vault.nsettings].value = (char *)value;
	f->vault.nsettings++;
}

static void write_text(const char *path, const char *text, mode_t mode)
{
	FILE *file = fopen(path, "w");

	assert_non_null(file);
	assert_int_equal(fputs(text, file) >= 0, 1);
	assert_int_equal(fclose(file), 0);
	assert_int_equal(chmod(path, mode), 0);
}

/* Writes the credential_process script and points profile `p` of the config file at it. */
static void write_process(fixture *f, const char *body, const char *arguments)
{
	char config[512];

	write_text(f->script, body, 0700);
	snprintf(config, sizeof(config), "[profile p]\ncredential_process = '%s' %s\n", f->script,
		 arguments);
	write_text(f->config, config, 0600);
	set_setting(f, "profile", "p");
}

/* Runs the chain and expects failure `code` with `text` in the message. */
static void expect_failure(fixture *f, int code, const char *text)
{
	sm_aws_credentials creds;
	int rc = sm_aws_credentials_resolve(&f->vault, NULL, &creds);

	assert_int_equal(rc, code);
	assert_non_null(strstr(sm_error_message(), text));
	assert_null(strchr(sm_error_message(), '\n'));
	assert_null(creds.access_key_id);
	assert_null(creds.secret_access_key);
	assert_null(creds.session_token);
}

/* ---- environment and stored credentials ---- */

static void env_variables_used(void **state)
{
	fixture *f = *state;
	sm_aws_credentials creds;

	setenv("AWS_ACCESS_KEY_ID", KEY_ID, 1);
	setenv("AWS_SECRET_ACCESS_KEY", SECRET, 1);
	setenv("AWS_SESSION_TOKEN", TOKEN, 1);
	assert_int_equal(sm_aws_credentials_resolve(&f->vault, NULL, &creds), 0);
	assert_string_equal(creds.source, "environment");
	assert_string_equal(creds.access_key_id, KEY_ID);
	assert_string_equal(creds.secret_access_key, SECRET);
	assert_string_equal(creds.session_token, TOKEN);
	assert_int_equal(creds.expires_at, 0);
	sm_aws_credentials_clear(&creds);
}

static void env_without_session_token(void **state)
{
	fixture *f = *state;
	sm_aws_credentials creds;

	setenv("AWS_ACCESS_KEY_ID", KEY_ID, 1);
	setenv("AWS_SECRET_ACCESS_KEY", SECRET, 1);
	setenv("AWS_SESSION_TOKEN", "", 1);
	assert_int_equal(sm_aws_credentials_resolve(&f->vault, NULL, &creds), 0);
	assert_null(creds.session_token);
	sm_aws_credentials_clear(&creds);
}

static void env_key_without_secret_fails(void **state)
{
	setenv("AWS_ACCESS_KEY_ID", KEY_ID, 1);
	expect_failure(*state, SM_EAUTH, "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not");
}

static void env_secret_without_key_fails(void **state)
{
	setenv("AWS_SECRET_ACCESS_KEY", SECRET, 1);
	expect_failure(*state, SM_EAUTH, "AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not");
}

static void stored_credentials_win_over_env(void **state)
{
	fixture *f = *state;
	sm_aws_credentials creds;

	setenv("AWS_ACCESS_KEY_ID", KEY_ID, 1);
	setenv("AWS_SECRET_ACCESS_KEY", SECRET, 1);
	setenv("SKILLMEAT_VAULT_TEAM_S3_USERNAME", "AKIASTORED000001", 1);
	setenv("SKILLMEAT_VAULT_TEAM_S3_PASSWORD", "stored-secret", 1);
	setenv("SKILLMEAT_VAULT_TEAM_S3_SESSION_TOKEN", "stored-token", 1);
	assert_int_equal(sm_aws_credentials_resolve(&f->vault, NULL, &creds), 0);
	assert_string_equal(creds.source, "stored credentials of vault 'team-s3'");
	assert_string_equal(creds.access_key_id, "AKIASTORED000001");
	assert_string_equal(creds.secret_access_key, "stored-secret");
	assert_string_equal(creds.session_token, "stored-token");
	sm_aws_credentials_clear(&creds);
}

static void stored_key_without_secret_fails(void **state)
{
	setenv("AWS_ACCESS_KEY_ID", KEY_ID, 1);
	setenv("AWS_SECRET_ACCESS_KEY", SECRET, 1);
	setenv("SKILLMEAT_VAULT_TEAM_S3_USERNAME", "AKIASTORED000001", 1);
	expect_failure(*state, SM_EAUTH, "stored credentials of vault 'team-s3' have an access key "
		       "id (username) but no secret access key (password)");
}

static void verbose_message_names_source(void **state);

/* ---- shared files ---- */

static void profile_default_from_credentials_file(void **state)
{
	fixture *f = *state;
	sm_aws_credentials creds;

	write_text(f->creds, "[other]\naws_access_key_id = AKIAOTHER\naws_secret_access_key = x\n"
		   "[default]\naws_access_key_id = " KEY_ID "\naws_secret_access_key = " SECRET
		   "\naws_session_token = " TOKEN "\n", 0600);
	assert_int_equal(sm_aws_credentials_resolve(&f->vault, NULL, &creds), 0);
	assert_string_equal(creds.source, "profile 'default'");
	assert_string_equal(creds.access_key_id, KEY_ID);
	assert_string_equal(creds.secret_access_key, SECRET);
	assert_string_equal(creds.session_token, TOKEN);
	sm_aws_credentials_clear(&creds);
}

static void profile_section_names_per_file(void **state)
{
	fixture *f = *state;
	sm_aws_credentials creds;

	/* config: only [profile work] counts; credentials: [profile work] is another profile */
	write_text(f->config, "[work]\naws_access_key_id = AKIAWRONG1\naws_secret_access_key = w\n"
		   "[profile   work ]\naws_access_key_id = AKIACONFIGWORK\n"
		   "aws_secret_access_key = config-secret\n", 0600);
	write_text(f->creds, "[profile work]\naws_access_key_id = AKIAWRONG2\n"
		   "aws_secret_access_key = w\n", 0600);
	set_setting(f, "profile", "work");
	assert_int_equal(sm_aws_credentials_resolve(&f->vault, NULL, &creds), 0);
	assert_string_equal(creds.source, "profile 'work'");
	assert_string_equal(creds.access_key_id, "AKIACONFIGWORK");
	assert_string_equal(creds.secret_access_key, "config-secret");
	assert_null(creds.session_token);
	sm_aws_credentials_clear(&creds);
}

static void profile_default_section_in_config(void **state)
{
	fixture *f = *state;
	sm_aws_credentials creds;

	write_text(f->config, "[default]\nregion = eu-west-1\naws_access_key_id = AKIACONFIGDEF\n"
		   "aws_secret_access_key = def-secret\n", 0600);
	assert_int_equal(sm_aws_credentials_resolve(&f->vault, NULL, &creds), 0);
	assert_string_equal(creds.access_key_id, "AKIACONFIGDEF");
	sm_aws_credentials_clear(&creds);
}

static void profile_credentials_file_wins_over_config(void **state)
{
	fixture *f = *state;
	sm_aws_credentials creds;

	write_text(f->config, "[profile work]\naws_access_key_id = AKIACONFIG\n"
		   "aws_secret_access_key = config-secret\n", 0600);
	write_text(f->creds, "[work]\naws_access_key_id = AKIACREDS\n"
		   "aws_secret_access_key = creds-secret\n", 0600);
	set_setting(f, "profile", "work");
	assert_int_equal(sm_aws_credentials_resolve(&f->vault, NULL, &creds), 0);
	assert_string_equal(creds.access_key_id, "AKIACREDS");
	assert_string_equal(creds.secret_access_key, "creds-secret");
	sm_aws_credentials_clear(&creds);
}

static void profile_from_aws_profile_variable(void **state)
{
	fixture *f = *state;
	sm_aws_credentials creds;

	write_text(f->creds, "[default]\naws_access_key_id = AKIADEFAULT\naws_secret_access_key = d\n"
		   "[env-profile]\naws_access_key_id = AKIAENVPROFILE\naws_secret_access_key = e\n"
		   "[vault-profile]\naws_access_key_id = AKIAVAULTPROFILE\n"
		   "aws_secret_access_key = v\n", 0600);
	setenv("AWS_PROFILE", "env-profile", 1);
	assert_int_equal(sm_aws_credentials_resolve(&f->vault, NULL, &creds), 0);
	assert_string_equal(creds.access_key_id, "AKIAENVPROFILE");
	assert_string_equal(creds.source, "profile 'env-profile'");
	sm_aws_credentials_clear(&creds);

	/* the vault's setting wins over AWS_PROFILE */
	set_setting(f, "profile", "vault-profile");
	assert_int_equal(sm_aws_credentials_resolve(&f->vault, NULL, &creds), 0);
	assert_string_equal(creds.access_key_id, "AKIAVAULTPROFILE");
	sm_aws_credentials_clear(&creds);
}

static void profile_comments_and_whitespace(void **state)
{
	fixture *f = *state;
	sm_aws_credentials creds;

	write_text(f->creds,
		   "# leading comment\r\n"
		   "; another comment\r\n"
		   "\r\n"
		   "  [ default ]   \r\n"
		   "\tAWS_ACCESS_KEY_ID=" KEY_ID "   \r\n"
		   "  # aws_secret_access_key = commented-out\r\n"
		   "s3 =\r\n"
		   "    max_concurrent_requests = 20\r\n"
		   "    aws_secret_access_key = nested-not-a-key\r\n"
		   "aws_secret_access_key:\t" SECRET "\r\n"
		   "aws_session_token =\r\n", 0600);
	assert_int_equal(sm_aws_credentials_resolve(&f->vault, NULL, &creds), 0);
	assert_string_equal(creds.access_key_id, KEY_ID);
	assert_string_equal(creds.secret_access_key, SECRET);
	assert_null(creds.session_token);
	sm_aws_credentials_clear(&creds);
}

static void profile_missing_secret_fails(void **state)
{
	fixture *f = *state;
	char expected[256];

	write_text(f->creds, "[default]\naws_access_key_id = " KEY_ID "\n", 0600);
	snprintf(expected, sizeof(expected), "profile 'default' in '%s' has aws_access_key_id but "
		 "no aws_secret_access_key", f->creds);
	setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
	expect_failure(f, SM_EAUTH, expected);
}

static void profile_missing_key_id_fails(void **state)
{
	fixture *f = *state;

	write_text(f->config, "[profile p]\naws_secret_access_key = " SECRET "\n", 0600);
	set_setting(f, "profile", "p");
	expect_failure(f, SM_EAUTH, "has aws_secret_access_key but no aws_access_key_id");
}

static void profile_named_but_absent_fails(void **state)
{
	fixture *f = *state;

	write_text(f->creds, "[default]\naws_access_key_id = " KEY_ID "\naws_secret_access_key = s\n",
		   0600);
	set_setting(f, "profile", "nope");
	expect_failure(f, SM_EAUTH, "AWS profile 'nope' not found in");
}

static void profile_without_keys_fails(void **state)
{
	fixture *f = *state;

	write_text(f->config, "[profile p]\nregion = eu-west-1\n", 0600);
	set_setting(f, "profile", "p");
	expect_failure(f, SM_EAUTH, "AWS profile 'p' has no aws_access_key_id, aws_secret_access_key "
		       "or credential_process");
}

static void profile_name_control_chars_fail(void **state)
{
	fixture *f = *state;

	setenv("AWS_PROFILE", "bad\nname", 1);
	expect_failure(f, SM_EINVALID, "AWS profile name contains control characters");
}

static void profile_role_arn_unsupported(void **state)
{
	fixture *f = *state;

	write_text(f->config, "[profile p]\nrole_arn = arn:aws:iam::1:role/r\n"
		   "source_profile = default\n", 0600);
	set_setting(f, "profile", "p");
	expect_failure(f, SM_EUNSUPPORTED, "AWS profile 'p' uses role_arn, which skillmeat does not "
		       "support");
}

static void profile_syntax_errors_fail(void **state)
{
	fixture *f = *state;
	char expected[256];

	write_text(f->creds, "[default]\naws_access_key_id " KEY_ID "\n", 0600);
	snprintf(expected, sizeof(expected), "AWS file '%s' line 2: expected 'key = value'", f->creds);
	expect_failure(f, SM_EINVALID, expected);

	write_text(f->creds, "aws_access_key_id = " KEY_ID "\n[default]\n", 0600);
	snprintf(expected, sizeof(expected), "AWS file '%s' line 1: key outside of a [section]",
		 f->creds);
	expect_failure(f, SM_EINVALID, expected);

	write_text(f->creds, "[default\naws_access_key_id = " KEY_ID "\n", 0600);
	snprintf(expected, sizeof(expected), "AWS file '%s' line 1: invalid section header",
		 f->creds);
	expect_failure(f, SM_EINVALID, expected);
}

static void no_credentials_lists_sources(void **state)
{
	fixture *f = *state;

	expect_failure(f, SM_EAUTH, "no AWS credentials found; tried stored credentials of vault "
		       "'team-s3', AWS_ACCESS_KEY_ID, profile 'default' in '");
	assert_non_null(strstr(sm_error_message(), "container credentials (not configured)"));
	assert_non_null(strstr(sm_error_message(),
			       "instance metadata (disabled by AWS_EC2_METADATA_DISABLED)"));
	assert_non_null(strstr(sm_error_message(), "run 'skillmeat vault auth team-s3'"));
}

/* ---- credential_process ---- */

static void process_success(void **state)
{
	fixture *f = *state;
	sm_aws_credentials creds;
	long long expected;

	/* the arguments check the splitting: quotes keep blanks, a backslash escapes */
	write_process(f, "#!/bin/sh\n"
		      "[ \"$1\" = 'arg one' ] && [ \"$2\" = \"it's\" ] && [ \"$3\" = 'a\"b' ] || exit 9\n"
		      "printf '{\"Version\": 1, \"AccessKeyId\": \"AKIAPROCESS\", "
		      "\"SecretAccessKey\": \"proc\\\\/secret\", \"SessionToken\": \"proc-token\", "
		      "\"Expiration\": \"2030-01-02T03:04:05Z\"}'\n",
		      "\"arg one\" it\\'s 'a\"b'");
	assert_int_equal(sm_aws_credentials_resolve(&f->vault, NULL, &creds), 0);
	assert_string_equal(creds.source, "credential_process of profile 'p'");
	assert_string_equal(creds.access_key_id, "AKIAPROCESS");
	assert_string_equal(creds.secret_access_key, "proc/secret");
	assert_string_equal(creds.session_token, "proc-token");
	assert_int_equal(sm_aws_parse_time("2030-01-02T03:04:05Z", &expected), 0);
	assert_int_equal(creds.expires_at, expected);
	assert_int_equal(expected, 1893553445LL);
	sm_aws_credentials_clear(&creds);
}

static void process_without_expiration(void **state)
{
	fixture *f = *state;
	sm_aws_credentials creds;

	write_process(f, "#!/bin/sh\necho '{\"Version\":1,\"AccessKeyId\":\"AKIANOEXP\","
		      "\"SecretAccessKey\":\"s\"}'\n", "");
	assert_int_equal(sm_aws_credentials_resolve(&f->vault, NULL, &creds), 0);
	assert_string_equal(creds.access_key_id, "AKIANOEXP");
	assert_null(creds.session_token);
	assert_int_equal(creds.expires_at, 0);
	sm_aws_credentials_clear(&creds);
}

static void process_exit_code_fails(void **state)
{
	fixture *f = *state;

	write_process(f, "#!/bin/sh\necho 'printed-secret-value'\nexit 3\n", "");
	expect_failure(f, SM_EAUTH, "credential_process of profile 'p' exited with status 3");
	assert_null(strstr(sm_error_message(), "printed-secret-value"));
}

static void process_invalid_json_fails(void **state)
{
	fixture *f = *state;

	write_process(f, "#!/bin/sh\necho '{\"Version\": 1, \"AccessKeyId\": \"AKIA\", "
		      "\"SecretAccessKey\": \"half-secret'\n", "");
	expect_failure(f, SM_EINVALID, "credential_process of profile 'p' returned invalid JSON");
	assert_null(strstr(sm_error_message(), "half-secret"));
}

static void process_wrong_version_fails(void **state)
{
	fixture *f = *state;

	write_process(f, "#!/bin/sh\necho '{\"Version\": 2, \"AccessKeyId\": \"AKIA\", "
		      "\"SecretAccessKey\": \"s\"}'\n", "");
	expect_failure(f, SM_EINVALID, "credential_process of profile 'p' returned JSON without "
		       "\"Version\": 1");
}

static void process_missing_secret_fails(void **state)
{
	fixture *f = *state;

	write_process(f, "#!/bin/sh\necho '{\"Version\": 1, \"AccessKeyId\": \"AKIA\"}'\n", "");
	expect_failure(f, SM_EAUTH, "credential_process of profile 'p' returned no SecretAccessKey");
}

static void process_bad_expiration_fails(void **state)
{
	fixture *f = *state;

	write_process(f, "#!/bin/sh\necho '{\"Version\": 1, \"AccessKeyId\": \"AKIA\", "
		      "\"SecretAccessKey\": \"s\", \"Expiration\": \"tomorrow\"}'\n", "");
	expect_failure(f, SM_EINVALID, "returned an Expiration that is not an ISO 8601 time");
}

static void process_timeout_kills_it(void **state)
{
	fixture *f = *state;
	struct timespec start, end;
	long long ms;

	write_process(f, "#!/bin/sh\nexec sleep 20\n", "");
	set_setting(f, "credential_process_timeout", "1");
	clock_gettime(CLOCK_MONOTONIC, &start);
	expect_failure(f, SM_EAUTH, "credential_process of profile 'p' timed out after 1 s");
	clock_gettime(CLOCK_MONOTONIC, &end);
	ms = (end.tv_sec - start.tv_sec) * 1000LL + (end.tv_nsec - start.tv_nsec) / 1000000;
	assert_true(ms >= 900);
	assert_true(ms < 3000);
}

static void process_leaving_child_returns(void **state)
{
	fixture *f = *state;
	sm_aws_credentials creds;
	struct timespec start, end;
	long long ms;

	/* the background sleep keeps standard output open after the script exits */
	write_process(f, "#!/bin/sh\necho '{\"Version\":1,\"AccessKeyId\":\"AKIABACKGROUND\","
		      "\"SecretAccessKey\":\"s\"}'\nsleep 4 &\nexit 0\n", "");
	clock_gettime(CLOCK_MONOTONIC, &start);
	assert_int_equal(sm_aws_credentials_resolve(&f->vault, NULL, &creds), 0);
	clock_gettime(CLOCK_MONOTONIC, &end);
	ms = (end.tv_sec - start.tv_sec) * 1000LL + (end.tv_nsec - start.tv_nsec) / 1000000;
	assert_string_equal(creds.access_key_id, "AKIABACKGROUND");
	assert_true(ms < 2000);
	sm_aws_credentials_clear(&creds);
}

static void profile_bracket_in_section_name(void **state)
{
	fixture *f = *state;
	sm_aws_credentials creds;

	/* the AWS CLI reads the name up to the last ']': "[a]b]" is profile "a]b" */
	write_text(f->creds, "[a]b]\naws_access_key_id = " KEY_ID "\naws_secret_access_key = "
		   SECRET "\n", 0600);
	set_setting(f, "profile", "a]b");
	assert_int_equal(sm_aws_credentials_resolve(&f->vault, NULL, &creds), 0);
	assert_string_equal(creds.source, "profile 'a]b'");
	assert_string_equal(creds.access_key_id, KEY_ID);
	sm_aws_credentials_clear(&creds);

	f->settings[0].value = "a";
	expect_failure(f, SM_EAUTH, "AWS profile 'a' not found");
}

static void profile_byte_order_mark_skipped(void **state)
{
	fixture *f = *state;
	sm_aws_credentials creds;

	write_text(f->creds, "\xef\xbb\xbf[default]\r\naws_access_key_id = " KEY_ID
		   "\r\naws_secret_access_key = " SECRET "\r\n", 0600);
	assert_int_equal(sm_aws_credentials_resolve(&f->vault, NULL, &creds), 0);
	assert_string_equal(creds.access_key_id, KEY_ID);
	assert_string_equal(creds.secret_access_key, SECRET);
	sm_aws_credentials_clear(&creds);
}

static void process_expired_credentials_fail(void **state)
{
	fixture *f = *state;

	write_process(f, "#!/bin/sh\necho '{\"Version\":1,\"AccessKeyId\":\"AKIAOLD\","
		      "\"SecretAccessKey\":\"old-secret\",\"Expiration\":\"2001-02-03T04:05:06Z\"}'\n",
		      "");
	expect_failure(f, SM_EAUTH, "credential_process of profile 'p' returned credentials that "
		       "expired at 2001-02-03T04:05:06Z");
	assert_null(strstr(sm_error_message(), "old-secret"));
}

static void process_environment_without_secrets(void **state)
{
	fixture *f = *state;
	sm_aws_credentials creds;

	/* exit 9 when a skillmeat secret reached the program or an ordinary variable did not */
	write_process(f, "#!/bin/sh\n"
		      "[ -z \"$SKILLMEAT_CREDENTIALS_PASSPHRASE\" ] || exit 9\n"
		      "[ -z \"$SKILLMEAT_VAULT_OTHER_PASSWORD\" ] || exit 9\n"
		      "[ \"$AWS_UNIT_ORDINARY\" = kept ] || exit 9\n"
		      "echo '{\"Version\":1,\"AccessKeyId\":\"AKIAENV\",\"SecretAccessKey\":\"s\"}'\n",
		      "");
	setenv("SKILLMEAT_CREDENTIALS_PASSPHRASE", "unit-passphrase", 1);
	setenv("SKILLMEAT_VAULT_OTHER_PASSWORD", "other-password", 1);
	setenv("AWS_UNIT_ORDINARY", "kept", 1);
	assert_int_equal(sm_aws_credentials_resolve(&f->vault, NULL, &creds), 0);
	unsetenv("SKILLMEAT_VAULT_OTHER_PASSWORD");
	unsetenv("AWS_UNIT_ORDINARY");
	assert_string_equal(creds.access_key_id, "AKIAENV");
	sm_aws_credentials_clear(&creds);
}

static void process_bad_timeout_setting_fails(void **state)
{
	fixture *f = *state;

	write_process(f, "#!/bin/sh\nexit 0\n", "");
	set_setting(f, "credential_process_timeout", "0");
	expect_failure(f, SM_EINVALID, "vault 'team-s3': credential_process_timeout '0' is not a "
		       "whole number of seconds from 1 to 3600");
}

static void process_missing_program_fails(void **state)
{
	fixture *f = *state;

	write_text(f->config, "[profile p]\ncredential_process = /nonexistent/cred-helper --x\n", 0600);
	set_setting(f, "profile", "p");
	expect_failure(f, SM_EAUTH, "credential_process of profile 'p': cannot run "
		       "'/nonexistent/cred-helper': No such file or directory");
}

static void process_unterminated_quote_fails(void **state)
{
	fixture *f = *state;

	write_text(f->config, "[profile p]\ncredential_process = helper 'open\n", 0600);
	set_setting(f, "profile", "p");
	expect_failure(f, SM_EINVALID, "credential_process of profile 'p': unterminated single quote");
}

static void process_order_against_static_keys(void **state)
{
	fixture *f = *state;
	sm_aws_credentials creds;
	char config[512];

	/* credential_process wins over keys in the config file ... */
	write_text(f->script, "#!/bin/sh\necho '{\"Version\":1,\"AccessKeyId\":\"AKIAPROC\","
		   "\"SecretAccessKey\":\"s\"}'\n", 0700);
	snprintf(config, sizeof(config), "[profile p]\naws_access_key_id = AKIACONFIG\n"
		 "aws_secret_access_key = c\ncredential_process = '%s'\n", f->script);
	write_text(f->config, config, 0600);
	set_setting(f, "profile", "p");
	assert_int_equal(sm_aws_credentials_resolve(&f->vault, NULL, &creds), 0);
	assert_string_equal(creds.access_key_id, "AKIAPROC");
	sm_aws_credentials_clear(&creds);

	/* ... and keys in the credentials file win over credential_process */
	write_text(f->creds, "[p]\naws_access_key_id = AKIACREDSFILE\naws_secret_access_key = c\n",
		   0600);
	assert_int_equal(sm_aws_credentials_resolve(&f->vault, NULL, &creds), 0);
	assert_string_equal(creds.access_key_id, "AKIACREDSFILE");
	assert_string_equal(creds.source, "profile 'p'");
	sm_aws_credentials_clear(&creds);
}

/* ---- container settings checked before any request ---- */

static void container_plain_http_needs_loopback(void **state)
{
	fixture *f = *state;

	setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://192.0.2.10/creds", 1);
	expect_failure(f, SM_EINVALID, "AWS_CONTAINER_CREDENTIALS_FULL_URI uses plain http to "
		       "'192.0.2.10', which is allowed only for loopback and AWS container addresses");
	setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", "ftp://127.0.0.1/creds", 1);
	expect_failure(f, SM_EINVALID, "AWS_CONTAINER_CREDENTIALS_FULL_URI must be an http or https "
		       "URL, not 'ftp'");
	setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://127.0.0.1/a\nb", 1);
	expect_failure(f, SM_EINVALID, "AWS_CONTAINER_CREDENTIALS_FULL_URI is not a valid URL");
}

static void container_relative_uri_needs_slash(void **state)
{
	setenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "v2/credentials", 1);
	expect_failure(*state, SM_EINVALID, "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI must be a path "
		       "starting with '/'");
}

static void imds_endpoint_must_be_http(void **state)
{
	unsetenv("AWS_EC2_METADATA_DISABLED");
	setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", "file:///etc/passwd", 1);
	expect_failure(*state, SM_EINVALID, "AWS_EC2_METADATA_SERVICE_ENDPOINT must be an http or "
		       "https URL");
	setenv("AWS_EC2_METADATA_DISABLED", "true", 1);
}

/* ---- expiry, clearing and the message callback ---- */

static void expiring_within_margin(void **state)
{
	sm_aws_credentials creds = { 0 };
	long long now = (long long)time(NULL);

	assert_int_equal(sm_aws_credentials_expiring(&creds, 300), 0);
	creds.expires_at = now + 100;
	assert_int_equal(sm_aws_credentials_expiring(&creds, 300), 1);
	assert_int_equal(sm_aws_credentials_expiring(&creds, 50), 0);
	creds.expires_at = now - 10;
	assert_int_equal(sm_aws_credentials_expiring(&creds, 0), 1);
	creds.expires_at = now + 3600;
	assert_int_equal(sm_aws_credentials_expiring(&creds, 300), 0);
	assert_int_equal(sm_aws_credentials_expiring(NULL, 300), 0);
}

static void clear_wipes_everything(void **state)
{
	sm_aws_credentials creds = { 0 };

	creds.access_key_id = sm_secret_dup(KEY_ID, strlen(KEY_ID));
	creds.secret_access_key = sm_secret_dup(SECRET, strlen(SECRET));
	creds.session_token = sm_secret_dup(TOKEN, strlen(TOKEN));
	creds.expires_at = 12345;
	snprintf(creds.source, sizeof(creds.source), "environment");
	sm_aws_credentials_clear(&creds);
	assert_null(creds.access_key_id);
	assert_null(creds.secret_access_key);
	assert_null(creds.session_token);
	assert_int_equal(creds.expires_at, 0);
	for (size_t i = 0; i < sizeof(creds.source); i++)
		assert_int_equal(creds.source[i], 0);
	sm_aws_credentials_clear(&creds); /* a second clear is harmless */
	sm_aws_credentials_clear(NULL);
}

typedef struct messages {
	int count;
	char last[256];
} messages;

static void record_message(sm_log_level level, const char *text, void *payload)
{
	messages *m = payload;

	assert_int_equal(level, SM_LOG_DEBUG);
	m->count++;
	snprintf(m->last, sizeof(m->last), "%s", text);
}

static void verbose_message_names_source(void **state)
{
	fixture *f = *state;
	messages m = { 0 };
	sm_callbacks callbacks = { NULL, record_message, &m };
	sm_aws_credentials creds;

	setenv("AWS_ACCESS_KEY_ID", KEY_ID, 1);
	setenv("AWS_SECRET_ACCESS_KEY", SECRET, 1);
	assert_int_equal(sm_aws_credentials_resolve(&f->vault, &callbacks, &creds), 0);
	assert_string_equal(m.last, "using AWS credentials from environment");
	assert_null(strstr(m.last, KEY_ID));
	assert_null(strstr(m.last, SECRET));
	sm_aws_credentials_clear(&creds);
}

/* ---- helpers ---- */

static void split_command_cases(void **state)
{
	static const struct {
		const char *command;
		const char *words[5];
	} cases[] = {
		{ "helper", { "helper" } },
		{ "  helper   --a  b ", { "helper", "--a", "b" } },
		{ "'/opt/my tools/h' \"x y\"", { "/opt/my tools/h", "x y" } },
		{ "a\\ b c", { "a b", "c" } },
		{ "\"q\\\"uote\" 'sin\"gle'", { "q\"uote", "sin\"gle" } },
		{ "\"back\\\\slash\" \"keep\\n\"", { "back\\slash", "keep\\n" } },
		{ "'' x", { "", "x" } },
		{ "a'b'\"c\"d", { "abcd" } },
		{ "$HOME ~/x *", { "$HOME", "~/x", "*" } },
		{ "one \\\n two", { "one", "two" } },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char **argv;
		size_t argc, expected = 0;

		while (expected < 5 && cases[i].words[expected])
			expected++;
		assert_int_equal(sm_aws_split_command(cases[i].command, &argv, &argc), 0);
		assert_int_equal(argc, expected);
		for (size_t w = 0; w < argc; w++)
			assert_string_equal(argv[w], cases[i].words[w]);
		assert_null(argv[argc]);
		sm_str_array_free(argv, argc + 1);
	}
}

static void split_command_errors(void **state)
{
	char **argv;
	size_t argc;

	assert_int_equal(sm_aws_split_command("a 'b", &argv, &argc), SM_EINVALID);
	assert_string_equal(sm_error_message(), "unterminated single quote");
	assert_int_equal(sm_aws_split_command("a \"b", &argv, &argc), SM_EINVALID);
	assert_string_equal(sm_error_message(), "unterminated double quote");
	assert_int_equal(sm_aws_split_command("   ", &argv, &argc), SM_EINVALID);
	assert_string_equal(sm_error_message(), "empty command");
	assert_null(argv);
}

static void parse_time_cases(void **state)
{
	long long t;

	assert_int_equal(sm_aws_parse_time("1970-01-01T00:00:00Z", &t), 0);
	assert_int_equal(t, 0);
	assert_int_equal(sm_aws_parse_time("2026-12-04T23:00:00Z", &t), 0);
	assert_int_equal(t, 1796425200LL);
	assert_int_equal(sm_aws_parse_time("2026-12-04T23:00:00.123456Z", &t), 0);
	assert_int_equal(t, 1796425200LL);
	assert_int_equal(sm_aws_parse_time("2026-12-05T00:30:00+01:30", &t), 0);
	assert_int_equal(t, 1796425200LL);
	assert_int_equal(sm_aws_parse_time("2026-12-04T20:00:00-0300", &t), 0);
	assert_int_equal(t, 1796425200LL);
	assert_int_equal(sm_aws_parse_time("2024-02-29T00:00:00Z", &t), 0);

	assert_int_equal(sm_aws_parse_time("2026-12-04T23:00:00", &t), SM_EINVALID);
	assert_int_equal(sm_aws_parse_time("2026-12-04", &t), SM_EINVALID);
	assert_int_equal(sm_aws_parse_time("2026-13-04T23:00:00Z", &t), SM_EINVALID);
	assert_int_equal(sm_aws_parse_time("2026-04-31T23:00:00Z", &t), SM_EINVALID);
	assert_int_equal(sm_aws_parse_time("2025-02-29T00:00:00Z", &t), SM_EINVALID);
	assert_int_equal(sm_aws_parse_time("2026-12-04T24:00:00Z", &t), SM_EINVALID);
	assert_int_equal(sm_aws_parse_time("2026-12-04T23:00:00.Z", &t), SM_EINVALID);
	assert_int_equal(sm_aws_parse_time("2026-12-04T23:00:00Zjunk", &t), SM_EINVALID);
	assert_int_equal(sm_aws_parse_time("", &t), SM_EINVALID);
	assert_int_equal(sm_aws_parse_time(NULL, &t), SM_EINVALID);
}

static void json_members_decode(void **state)
{
	static const char *const names[3] = { "A", "B", "N" };
	const char *text = " { \"skip\": {\"x\": [1, 2, {\"y\": null}], \"A\": \"no\"}, "
			   "\"A\": \"tab\\there \\u00e9 \\ud83d\\ude00 \\/\", \"N\": -12.5e3, "
			   "\"B\": true, \"Z\": [] } ";
	char *values[3];

	assert_int_equal(sm_aws_json_members(text, strlen(text), names, values, 3), 0);
	assert_string_equal(values[0], "tab\there \xc3\xa9 \xf0\x9f\x98\x80 /");
	assert_string_equal(values[1], "true");
	assert_string_equal(values[2], "-12.5e3");
	for (int i = 0; i < 3; i++)
		sm_secret_free(values[i]);
}

static void json_members_reject_bad_input(void **state)
{
	static const char *const names[1] = { "A" };
	static const char *const bad[] = {
		"",
		"[]",
		"{\"A\": \"x\", \"A\": \"y\"}",
		"{\"A\": {\"nested\": 1}}",
		"{\"A\": \"x\"} trailing",
		"{\"A\": \"x\",}",
		"{\"A\": \"unterminated}",
		"{\"A\": \"bad \\q escape\"}",
		"{\"A\": \"nul \\u0000\"}",
		"{\"A\": \"lone \\ud800 surrogate\"}",
		"{\"A\": \"raw\ncontrol\"}",
		"{\"A\" \"x\"}",
		"{\"A\": tru}",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *values[1] = { (char *)"sentinel" };

		assert_int_equal(sm_aws_json_members(bad[i], strlen(bad[i]), names, values, 1),
				 SM_EINVALID);
		assert_null(values[0]);
		assert_string_equal(sm_error_message(), "invalid JSON");
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(env_variables_used, setup, teardown),
		cmocka_unit_test_setup_teardown(env_without_session_token, setup, teardown),
		cmocka_unit_test_setup_teardown(env_key_without_secret_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(env_secret_without_key_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(stored_credentials_win_over_env, setup, teardown),
		cmocka_unit_test_setup_teardown(stored_key_without_secret_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(profile_default_from_credentials_file, setup, teardown),
		cmocka_unit_test_setup_teardown(profile_section_names_per_file, setup, teardown),
		cmocka_unit_test_setup_teardown(profile_default_section_in_config, setup, teardown),
		cmocka_unit_test_setup_teardown(profile_credentials_file_wins_over_config, setup, teardown),
		cmocka_unit_test_setup_teardown(profile_from_aws_profile_variable, setup, teardown),
		cmocka_unit_test_setup_teardown(profile_comments_and_whitespace, setup, teardown),
		cmocka_unit_test_setup_teardown(profile_missing_secret_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(profile_missing_key_id_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(profile_named_but_absent_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(profile_without_keys_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(profile_name_control_chars_fail, setup, teardown),
		cmocka_unit_test_setup_teardown(profile_role_arn_unsupported, setup, teardown),
		cmocka_unit_test_setup_teardown(profile_syntax_errors_fail, setup, teardown),
		cmocka_unit_test_setup_teardown(no_credentials_lists_sources, setup, teardown),
		cmocka_unit_test_setup_teardown(process_success, setup, teardown),
		cmocka_unit_test_setup_teardown(process_without_expiration, setup, teardown),
		cmocka_unit_test_setup_teardown(process_exit_code_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(process_invalid_json_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(process_wrong_version_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(process_missing_secret_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(process_bad_expiration_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(process_timeout_kills_it, setup, teardown),
		cmocka_unit_test_setup_teardown(process_leaving_child_returns, setup, teardown),
		cmocka_unit_test_setup_teardown(profile_bracket_in_section_name, setup, teardown),
		cmocka_unit_test_setup_teardown(profile_byte_order_mark_skipped, setup, teardown),
		cmocka_unit_test_setup_teardown(process_expired_credentials_fail, setup, teardown),
		cmocka_unit_test_setup_teardown(process_environment_without_secrets, setup, teardown),
		cmocka_unit_test_setup_teardown(process_bad_timeout_setting_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(process_missing_program_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(process_unterminated_quote_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(process_order_against_static_keys, setup, teardown),
		cmocka_unit_test_setup_teardown(container_plain_http_needs_loopback, setup, teardown),
		cmocka_unit_test_setup_teardown(container_relative_uri_needs_slash, setup, teardown),
		cmocka_unit_test_setup_teardown(imds_endpoint_must_be_http, setup, teardown),
		cmocka_unit_test(expiring_within_margin),
		cmocka_unit_test(clear_wipes_everything),
		cmocka_unit_test_setup_teardown(verbose_message_names_source, setup, teardown),
		cmocka_unit_test(split_command_cases),
		cmocka_unit_test(split_command_errors),
		cmocka_unit_test(parse_time_cases),
		cmocka_unit_test(json_members_decode),
		cmocka_unit_test(json_members_reject_bad_input),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
