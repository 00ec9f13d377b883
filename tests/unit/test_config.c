/*
 * Unit tests of sharing.toml: loading, layering, picking a vault, and the
 * edits that must leave every other byte of the file unchanged.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "skillmeat/config.h"
#include "skillmeat/error.h"
#include "util/util.h"

/* Per-test directories, under a fresh mkdtemp() directory. */
static char root_dir[256];
static char home_dir[512];
static char user_file[768];

static void path_in(char *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void path_in(char *out, const char *fmt, ...)
{
	char rest[PATH_MAX];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(rest, sizeof(rest), fmt, ap);
	va_end(ap);
	assert_true(n > 0 && (size_t)n < sizeof(rest));
	n = snprintf(out, PATH_MAX, "%s/%s", root_dir, rest);
	assert_true(n > 0 && n < PATH_MAX);
}

static void write_text(const char *path, const char *text)
{
	char dir[PATH_MAX];
	char *slash;

	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	*slash = '\0';
	assert_int_equal(sm_mkdir_p(dir, 0700), 0);
	assert_int_equal(sm_write_file_atomic(path, text, strlen(text), 0644), 0);
}

/* Returns the file's text; the caller frees it. */
static char *read_text(const char *path)
{
	char *text = NULL;

	assert_int_equal(sm_read_file(path, 1 << 20, &text, NULL), 0);
	return text;
}

static void assert_file_equal(const char *path, const char *expected)
{
	char *text = read_text(path);

	assert_string_equal(text, expected);
	free(text);
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static int setup(void **state)
{
	char *resolved;

	snprintf(root_dir, sizeof(root_dir), "/tmp/sm-config-XXXXXX");
	if (!mkdtemp(root_dir))
		return -1;
	/* compare against the resolved form: /tmp may be a symbolic link */
	resolved = realpath(root_dir, NULL);
	if (!resolved)
		return -1;
	if ((size_t)snprintf(root_dir, sizeof(root_dir), "%s", resolved) >= sizeof(root_dir)) {
		free(resolved);
		return -1;
	}
	free(resolved);
	snprintf(home_dir, sizeof(home_dir), "%s/home", root_dir);
	snprintf(user_file, sizeof(user_file), "%s/sharing.toml", home_dir);
	setenv("SKILLMEAT_HOME", home_dir, 1);
	return 0;
}

static int teardown(void **state)
{
	nftw(root_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
	unsetenv("SKILLMEAT_HOME");
	return 0;
}

/* Loads the configuration as seen from `cwd` (relative to root_dir, or NULL for root_dir). */
static sm_config *load_from(const char *cwd)
{
	char dir[PATH_MAX];
	sm_config *config = NULL;
	int rc;

	if (cwd)
		path_in(dir, "%s", cwd);
	else
		snprintf(dir, sizeof(dir), "%s", root_dir);
	assert_int_equal(sm_mkdir_p(dir, 0700), 0);
	rc = sm_config_load(&config, dir);
	if (rc)
		fail_msg("sm_config_load: %s", sm_error_message());
	return config;
}

static int load_error(const char *cwd)
{
	char dir[PATH_MAX];
	sm_config *config = NULL;
	int rc;

	path_in(dir, "%s", cwd);
	assert_int_equal(sm_mkdir_p(dir, 0700), 0);
	rc = sm_config_load(&config, dir);
	assert_null(config);
	return rc;
}

/* ---- loading --------------------------------------------------------- */

static void test_load_without_user_file(void **state)
{
	sm_config *config = load_from(NULL);

	assert_int_equal(config->nvaults, 0);
	assert_null(config->default_vault);
	assert_null(config->project_path);
	assert_string_equal(config->home, home_dir);
	assert_string_equal(config->user_path, user_file);
	sm_config_free(config);
}

static void test_load_reads_vaults_sorted(void **state)
{
	sm_config *config;
	const sm_vault_config *team, *cloud;
	char expected[PATH_MAX];

	write_text(user_file,
		   "[sharing]\ndefault_vault = \"team\"\n\n"
		   "[vault.team]\ntype = \"local\"\npath = \"vaults/../team-store\"\n\n"
		   "[vault.cloud]\ntype = \"s3\"\nbucket = \"b\"\nregion = \"eu-west-1\"\n"
		   "read_only = true\nretries = 3\nratio = 0.5\n");
	config = load_from(NULL);
	assert_int_equal(config->nvaults, 2);
	assert_string_equal(config->vaults[0].name, "cloud");
	assert_string_equal(config->vaults[1].name, "team");
	assert_string_equal(config->default_vault, "team");

	team = sm_config_find(config, "team");
	snprintf(expected, sizeof(expected), "%s/team-store", home_dir);
	assert_string_equal(team->type, "local");
	assert_string_equal(sm_vault_config_get(team, "path"), expected);
	assert_string_equal(team->source, user_file);
	assert_int_equal(team->read_only, 0);
	assert_int_equal(team->nsettings, 1);

	cloud = sm_config_find(config, "cloud");
	assert_string_equal(cloud->type, "s3");
	assert_int_equal(cloud->read_only, 1);
	assert_string_equal(sm_vault_config_get(cloud, "bucket"), "b");
	assert_string_equal(sm_vault_config_get(cloud, "region"), "eu-west-1");
	assert_string_equal(sm_vault_config_get(cloud, "read_only"), "true");
	assert_string_equal(sm_vault_config_get(cloud, "retries"), "3");
	assert_string_equal(sm_vault_config_get(cloud, "ratio"), "0.5");
	assert_null(sm_vault_config_get(cloud, "type"));
	assert_null(sm_vault_config_get(cloud, "missing"));
	sm_config_free(config);
}

static void test_load_keeps_absolute_path(void **state)
{
	sm_config *config;

	write_text(user_file, "vault.abs.type = \"local\"\nvault.abs.path = \"/srv//vault/\"\n");
	config = load_from(NULL);
	assert_int_equal(config->nvaults, 1);
	assert_string_equal(sm_vault_config_get(&config->vaults[0], "path"), "/srv/vault");
	sm_config_free(config);
}

static void test_load_layers_project_file(void **state)
{
	char project_file[PATH_MAX], expected[PATH_MAX];
	const sm_vault_config *a, *b, *c;
	sm_config *config;

	write_text(user_file,
		   "[sharing]\ndefault_vault = \"a\"\n"
		   "[vault.a]\ntype = \"local\"\npath = \"/user/a\"\n"
		   "[vault.b]\ntype = \"git\"\nurl = \"https://example.invalid/b.git\"\nbranch = \"main\"\n");
	path_in(project_file, "proj/.skillmeat/sharing.toml");
	write_text(project_file,
		   "[sharing]\ndefault_vault = \"c\"\n"
		   "[vault.b]\ntype = \"local\"\npath = \"store\"\n"
		   "[vault.c]\ntype = \"local\"\npath = \"./other/../c\"\n");
	config = load_from("proj/sub/deeper");

	assert_string_equal(config->project_path, project_file);
	assert_string_equal(config->default_vault, "c");
	assert_int_equal(config->nvaults, 3);
	a = sm_config_find(config, "a");
	b = sm_config_find(config, "b");
	c = sm_config_find(config, "c");
	assert_string_equal(a->source, user_file);
	assert_string_equal(sm_vault_config_get(a, "path"), "/user/a");
	/* the project's b replaces the whole entry: no url or branch left */
	assert_string_equal(b->source, project_file);
	assert_string_equal(b->type, "local");
	assert_null(sm_vault_config_get(b, "url"));
	assert_null(sm_vault_config_get(b, "branch"));
	path_in(expected, "proj/store");
	assert_string_equal(sm_vault_config_get(b, "path"), expected);
	path_in(expected, "proj/c");
	assert_string_equal(sm_vault_config_get(c, "path"), expected);
	assert_string_equal(c->source, project_file);
	sm_config_free(config);
}

static void test_load_project_without_default_keeps_user_default(void **state)
{
	char project_file[PATH_MAX];
	sm_config *config;

	write_text(user_file, "[sharing]\ndefault_vault = \"a\"\n[vault.a]\ntype = \"local\"\npath = \"/a\"\n");
	path_in(project_file, "proj/.skillmeat/sharing.toml");
	write_text(project_file, "[vault.p]\ntype = \"local\"\npath = \"/p\"\n");
	config = load_from("proj");
	assert_string_equal(config->default_vault, "a");
	assert_int_equal(config->nvaults, 2);
	sm_config_free(config);
}

static void test_load_nearest_project_file_wins(void **state)
{
	char outer[PATH_MAX], inner[PATH_MAX];
	sm_config *config;

	path_in(outer, "proj/.skillmeat/sharing.toml");
	path_in(inner, "proj/inner/.skillmeat/sharing.toml");
	write_text(outer, "[vault.outer]\ntype = \"local\"\npath = \"/o\"\n");
	write_text(inner, "[vault.inner]\ntype = \"local\"\npath = \"/i\"\n");
	config = load_from("proj/inner/src");
	assert_string_equal(config->project_path, inner);
	assert_int_equal(config->nvaults, 1);
	assert_string_equal(config->vaults[0].name, "inner");
	sm_config_free(config);
}

static void test_load_skips_user_file_as_project(void **state)
{
	char home_parent_file[PATH_MAX];
	sm_config *config;

	/* SKILLMEAT_HOME=<root>/.skillmeat makes the user file look like a project file of <root> */
	path_in(home_parent_file, ".skillmeat/sharing.toml");
	write_text(home_parent_file, "[vault.u]\ntype = \"local\"\npath = \"/u\"\n");
	path_in(home_dir, ".skillmeat");
	setenv("SKILLMEAT_HOME", home_dir, 1);
	config = load_from("work");
	assert_null(config->project_path);
	assert_int_equal(config->nvaults, 1);
	assert_string_equal(config->vaults[0].source, home_parent_file);
	sm_config_free(config);
}

static void test_load_rejects_invalid_vault_name(void **state)
{
	char expected[PATH_MAX + 200];

	write_text(user_file, "# vaults\n[vault.\"bad name\"]\ntype = \"local\"\n");
	assert_int_equal(load_error("x"), SM_EINVALID);
	snprintf(expected, sizeof(expected), "%s:2:8: invalid vault name 'bad name'", user_file);
	assert_memory_equal(sm_error_message(), expected, strlen(expected));
}

static void test_load_rejects_vault_without_type(void **state)
{
	char expected[PATH_MAX + 200];

	write_text(user_file, "[vault.team]\npath = \"/t\"\n");
	assert_int_equal(load_error("x"), SM_EINVALID);
	snprintf(expected, sizeof(expected), "%s:1:8: vault 'team' has no 'type'", user_file);
	assert_memory_equal(sm_error_message(), expected, strlen(expected));
}

static void test_load_rejects_non_string_type(void **state)
{
	write_text(user_file, "[vault.team]\ntype = 3\n");
	assert_int_equal(load_error("x"), SM_EINVALID);
	assert_non_null(strstr(sm_error_message(), user_file));
	assert_non_null(strstr(sm_error_message(), ":2:1: 'type' of vault 'team' must be a non-empty string"));
}

static void test_load_rejects_bad_read_only(void **state)
{
	write_text(user_file, "[vault.team]\ntype = \"local\"\npath = \"/t\"\nread_only = \"yes\"\n");
	assert_int_equal(load_error("x"), SM_EINVALID);
	assert_non_null(strstr(sm_error_message(), ":4:1: 'read_only' of vault 'team' must be true or false"));
}

static void test_load_reports_syntax_error_position(void **state)
{
	char expected[PATH_MAX + 200];

	write_text(user_file, "[sharing]\ndefault_vault = team\n");
	assert_int_equal(load_error("x"), SM_EINVALID);
	snprintf(expected, sizeof(expected), "%s:2:17: invalid value 'team'", user_file);
	assert_string_equal(sm_error_message(), expected);
}

static void test_load_reports_project_file_errors(void **state)
{
	char project_file[PATH_MAX], expected[PATH_MAX + 200];

	path_in(project_file, "proj/.skillmeat/sharing.toml");
	write_text(project_file, "[vault.p]\ntype = \"local\"\n[vault.p]\n");
	assert_int_equal(load_error("proj"), SM_EINVALID);
	snprintf(expected, sizeof(expected), "%s:3:8: table 'vault.p' is already defined", project_file);
	assert_string_equal(sm_error_message(), expected);
}

static void test_load_rejects_oversized_file(void **state)
{
	char *big = malloc(1100 * 1024);

	memset(big, '#', 1100 * 1024 - 1);
	big[1100 * 1024 - 1] = '\0';
	write_text(user_file, big);
	free(big);
	assert_int_equal(load_error("x"), SM_EINVALID);
	assert_non_null(strstr(sm_error_message(), "larger than"));
}

static void test_load_rejects_non_table_vault(void **state)
{
	write_text(user_file, "vault = 5\n");
	assert_int_equal(load_error("x"), SM_EINVALID);
	assert_non_null(strstr(sm_error_message(), ":1:1: 'vault' must hold one table per vault"));
}

static void test_vault_name_rules(void **state)
{
	char long_name[80];

	assert_true(sm_vault_name_valid("team"));
	assert_true(sm_vault_name_valid("0.team_b-c"));
	assert_false(sm_vault_name_valid(""));
	assert_false(sm_vault_name_valid(NULL));
	assert_false(sm_vault_name_valid("-team"));
	assert_false(sm_vault_name_valid(".team"));
	assert_false(sm_vault_name_valid("te am"));
	assert_false(sm_vault_name_valid("team/x"));
	memset(long_name, 'a', 64);
	long_name[64] = '\0';
	assert_true(sm_vault_name_valid(long_name));
	long_name[64] = 'a';
	long_name[65] = '\0';
	assert_false(sm_vault_name_valid(long_name));
}

/* ---- picking --------------------------------------------------------- */

static sm_config *config_with(const char *text)
{
	write_text(user_file, text);
	return load_from(NULL);
}

static void test_pick_by_name(void **state)
{
	sm_config *config = config_with("[vault.a]\ntype = \"local\"\npath = \"/a\"\n"
					"[vault.b]\ntype = \"local\"\npath = \"/b\"\n");
	const sm_vault_config *vault = sm_config_pick(config, "b");

	assert_non_null(vault);
	assert_string_equal(vault->name, "b");
	assert_null(sm_config_pick(config, "zzz"));
	assert_int_equal(sm_error_last_code(), SM_ENOTFOUND);
	assert_string_equal(sm_error_message(),
			    "vault 'zzz' not found; run 'skillmeat vault list' to see configured vaults");
	sm_config_free(config);
}

static void test_pick_default(void **state)
{
	sm_config *config = config_with("[sharing]\ndefault_vault = \"b\"\n"
					"[vault.a]\ntype = \"local\"\npath = \"/a\"\n"
					"[vault.b]\ntype = \"local\"\npath = \"/b\"\n");
	const sm_vault_config *vault = sm_config_pick(config, NULL);

	assert_non_null(vault);
	assert_string_equal(vault->name, "b");
	sm_config_free(config);
}

static void test_pick_default_that_is_missing(void **state)
{
	sm_config *config = config_with("[sharing]\ndefault_vault = \"gone\"\n"
					"[vault.a]\ntype = \"local\"\npath = \"/a\"\n");

	assert_null(sm_config_pick(config, NULL));
	assert_int_equal(sm_error_last_code(), SM_ENOTFOUND);
	assert_non_null(strstr(sm_error_message(), "default vault 'gone' not found"));
	sm_config_free(config);
}

static void test_pick_only_vault(void **state)
{
	sm_config *config = config_with("[vault.solo]\ntype = \"local\"\npath = \"/s\"\n");
	const sm_vault_config *vault = sm_config_pick(config, NULL);

	assert_non_null(vault);
	assert_string_equal(vault->name, "solo");
	sm_config_free(config);
}

static void test_pick_ambiguous(void **state)
{
	sm_config *config = config_with("[vault.a]\ntype = \"local\"\npath = \"/a\"\n"
					"[vault.b]\ntype = \"local\"\npath = \"/b\"\n");

	assert_null(sm_config_pick(config, NULL));
	assert_int_equal(sm_error_last_code(), SM_ENOTFOUND);
	assert_non_null(strstr(sm_error_message(), "pass --vault NAME"));
	assert_non_null(strstr(sm_error_message(), "'skillmeat vault set-default NAME'"));
	sm_config_free(config);
}

static void test_pick_with_no_vaults(void **state)
{
	sm_config *config = load_from(NULL);

	assert_null(sm_config_pick(config, NULL));
	assert_int_equal(sm_error_last_code(), SM_ENOTFOUND);
	assert_non_null(strstr(sm_error_message(), "no vault is configured"));
	sm_config_free(config);
}

/* ---- adding ---------------------------------------------------------- */

static const char commented_file[] =
	"# my vaults\n"
	"[sharing]   # sharing settings\n"
	"default_vault = 'team'    # the usual one\n"
	"\n"
	"[vault.team]\n"
	"path = \"/srv/team\"\n"
	"type = \"local\"\n"
	"custom_key = [1, 2]   # unknown to skillmeat\n"
	"\n"
	"[tools]\n"
	"editor = \"vi\"\n";

static void test_add_appends_and_keeps_bytes(void **state)
{
	sm_kv settings[] = { { "path", "/srv/new" } };
	char expected[1024];

	write_text(user_file, commented_file);
	assert_int_equal(sm_config_add_vault(user_file, "new", "local", settings, 1, 0), 0);
	snprintf(expected, sizeof(expected), "%s\n[vault.new]\ntype = \"local\"\npath = \"/srv/new\"\n",
		 commented_file);
	assert_file_equal(user_file, expected);
}

static void test_add_escapes_values_and_names(void **state)
{
	sm_kv settings[] = {
		{ "path", "/srv/q\"uote\\back\nline" },
		{ "read_only", "true" },
		{ "odd key", "x" },
	};
	const sm_vault_config *vault;
	sm_config *config;

	assert_int_equal(sm_config_add_vault(user_file, "my.vault", "local", settings, 3, 0), 0);
	assert_file_equal(user_file,
			  "[vault.\"my.vault\"]\ntype = \"local\"\n"
			  "path = \"/srv/q\\\"uote\\\\back\\nline\"\nread_only = true\n\"odd key\" = \"x\"\n");
	config = load_from(NULL);
	vault = sm_config_find(config, "my.vault");
	assert_non_null(vault);
	assert_string_equal(sm_vault_config_get(vault, "path"), "/srv/q\"uote\\back\nline");
	assert_int_equal(vault->read_only, 1);
	assert_string_equal(sm_vault_config_get(vault, "odd key"), "x");
	sm_config_free(config);
}

static void test_add_existing_vault_fails(void **state)
{
	sm_kv settings[] = { { "path", "/x" } };

	write_text(user_file, commented_file);
	assert_int_equal(sm_config_add_vault(user_file, "team", "local", settings, 1, 0), SM_EEXISTS);
	assert_non_null(strstr(sm_error_message(), "vault 'team' already exists"));
	assert_file_equal(user_file, commented_file);
}

static void test_add_rejects_invalid_input(void **state)
{
	sm_kv type_twice[] = { { "type", "git" } };
	sm_kv repeated[] = { { "path", "/a" }, { "path", "/b" } };

	assert_int_equal(sm_config_add_vault(user_file, "bad name", "local", NULL, 0, 0), SM_EINVALID);
	assert_int_equal(sm_config_add_vault(user_file, "ok", "", NULL, 0, 0), SM_EINVALID);
	assert_int_equal(sm_config_add_vault(user_file, "ok", "local", type_twice, 1, 0), SM_EINVALID);
	assert_int_equal(sm_config_add_vault(user_file, "ok", "local", repeated, 2, 0), SM_EINVALID);
	assert_int_equal(access(user_file, F_OK), -1);
}

static void test_add_creates_file_and_directory(void **state)
{
	sm_kv settings[] = { { "path", "/srv/a" } };
	struct stat st;

	assert_int_equal(sm_config_add_vault(user_file, "a", "local", settings, 1, 0), 0);
	assert_file_equal(user_file, "[vault.a]\ntype = \"local\"\npath = \"/srv/a\"\n");
	assert_int_equal(stat(user_file, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_int_equal(stat(home_dir, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0700);
}

static void test_add_after_missing_final_newline(void **state)
{
	write_text(user_file, "[tools]\neditor = \"vi\" # no newline");
	assert_int_equal(sm_config_add_vault(user_file, "a", "local", NULL, 0, 0), 0);
	assert_file_equal(user_file, "[tools]\neditor = \"vi\" # no newline\n\n[vault.a]\ntype = \"local\"\n");
}

static void test_add_with_set_default(void **state)
{
	sm_kv settings[] = { { "path", "/srv/new" } };
	char expected[1024];
	const char *tail = strstr(commented_file, "\n\n[vault.team]");

	write_text(user_file, commented_file);
	assert_int_equal(sm_config_add_vault(user_file, "new", "local", settings, 1, 1), 0);
	snprintf(expected, sizeof(expected),
		 "# my vaults\n[sharing]   # sharing settings\ndefault_vault = \"new\"    # the usual one%s"
		 "\n[vault.new]\ntype = \"local\"\npath = \"/srv/new\"\n", tail);
	assert_file_equal(user_file, expected);
}

static void test_add_to_inline_vault_table_fails(void **state)
{
	const char *text = "vault = { a = { type = \"local\", path = \"/a\" } }\n";

	write_text(user_file, text);
	assert_int_equal(sm_config_add_vault(user_file, "b", "local", NULL, 0, 0), SM_EINVALID);
	assert_non_null(strstr(sm_error_message(), "edit the file by hand"));
	assert_file_equal(user_file, text);
}

static void test_add_to_invalid_file_fails(void **state)
{
	const char *text = "[vault.a]\ntype = \n";
	char expected[PATH_MAX + 100];

	write_text(user_file, text);
	assert_int_equal(sm_config_add_vault(user_file, "b", "local", NULL, 0, 0), SM_EINVALID);
	snprintf(expected, sizeof(expected), "%s:2:8: expected a value, found a newline", user_file);
	assert_string_equal(sm_error_message(), expected);
	assert_file_equal(user_file, text);
}

static void test_edit_keeps_file_mode(void **state)
{
	struct stat st;

	write_text(user_file, commented_file);
	assert_int_equal(chmod(user_file, 0640), 0);
	assert_int_equal(sm_config_add_vault(user_file, "b", "local", NULL, 0, 0), 0);
	assert_int_equal(stat(user_file, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0640);
	assert_int_equal(sm_config_set_default(user_file, "b"), 0);
	assert_int_equal(stat(user_file, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0640);
}

static void test_edit_keeps_symbolic_link(void **state)
{
	char real_file[PATH_MAX];
	struct stat st;

	path_in(real_file, "dotfiles/sharing.toml");
	write_text(real_file, "[tools]\n");
	assert_int_equal(sm_mkdir_p(home_dir, 0700), 0);
	assert_int_equal(symlink(real_file, user_file), 0);
	assert_int_equal(sm_config_add_vault(user_file, "a", "local", NULL, 0, 0), 0);
	assert_int_equal(lstat(user_file, &st), 0);
	assert_true(S_ISLNK(st.st_mode));
	assert_file_equal(real_file, "[tools]\n\n[vault.a]\ntype = \"local\"\n");
}

/* ---- removing -------------------------------------------------------- */

static const char two_vault_file[] =
	"# vaults\n"
	"[sharing]\n"
	"default_vault = \"team\" # the usual one\n"
	"\n"
	"[vault.team]\n"
	"type = \"local\"\n"
	"path = \"/srv/team\"\n"
	"notes = '''\n"
	"# not a comment line\n"
	"\n"
	"'''\n"
	"\n"
	"[vault.team.options]\n"
	"depth = 2\n"
	"\n"
	"[[vault.team.hooks]]\n"
	"run = \"echo\"\n"
	"\n"
	"# the archive, read only\n"
	"[vault.archive]\n"
	"type = \"local\"\n"
	"path = \"/srv/archive\"   # keep\n"
	"read_only = true\n"
	"\n"
	"[extra]\n"
	"unknown = 1\n";

static void test_remove_deletes_sub_tables_and_default(void **state)
{
	write_text(user_file, two_vault_file);
	assert_int_equal(sm_config_remove_vault(user_file, "team"), 0);
	assert_file_equal(user_file,
			  "# vaults\n"
			  "[sharing]\n"
			  "\n"
			  "# the archive, read only\n"
			  "[vault.archive]\n"
			  "type = \"local\"\n"
			  "path = \"/srv/archive\"   # keep\n"
			  "read_only = true\n"
			  "\n"
			  "[extra]\n"
			  "unknown = 1\n");
}

static void test_remove_takes_introducing_comment(void **state)
{
	write_text(user_file, two_vault_file);
	assert_int_equal(sm_config_remove_vault(user_file, "archive"), 0);
	assert_file_equal(user_file,
			  "# vaults\n"
			  "[sharing]\n"
			  "default_vault = \"team\" # the usual one\n"
			  "\n"
			  "[vault.team]\n"
			  "type = \"local\"\n"
			  "path = \"/srv/team\"\n"
			  "notes = '''\n"
			  "# not a comment line\n"
			  "\n"
			  "'''\n"
			  "\n"
			  "[vault.team.options]\n"
			  "depth = 2\n"
			  "\n"
			  "[[vault.team.hooks]]\n"
			  "run = \"echo\"\n"
			  "\n"
			  "[extra]\n"
			  "unknown = 1\n");
}

static void test_remove_sub_tables_apart_from_vault(void **state)
{
	write_text(user_file,
		   "[vault.a]\ntype = \"local\"\n\n[tools]\nx = 1\n\n[vault.a.more]\ny = 2\n\n"
		   "[vault.b]\ntype = \"local\"\n");
	assert_int_equal(sm_config_remove_vault(user_file, "a"), 0);
	assert_file_equal(user_file, "[tools]\nx = 1\n\n[vault.b]\ntype = \"local\"\n");
}

static void test_add_then_remove_restores_file(void **state)
{
	sm_kv settings[] = { { "path", "/srv/tmp" } };

	write_text(user_file, commented_file);
	assert_int_equal(sm_config_add_vault(user_file, "tmp", "local", settings, 1, 0), 0);
	assert_int_equal(sm_config_remove_vault(user_file, "tmp"), 0);
	assert_file_equal(user_file, commented_file);
}

static void test_remove_missing_vault(void **state)
{
	assert_int_equal(sm_config_remove_vault(user_file, "ghost"), SM_ENOTFOUND);
	write_text(user_file, commented_file);
	assert_int_equal(sm_config_remove_vault(user_file, "ghost"), SM_ENOTFOUND);
	assert_non_null(strstr(sm_error_message(), "vault 'ghost' not found"));
	assert_file_equal(user_file, commented_file);
}

static void test_remove_inline_vault_fails(void **state)
{
	const char *text = "[vault]\nteam = { type = \"local\", path = \"/t\" }\n";

	write_text(user_file, text);
	assert_int_equal(sm_config_remove_vault(user_file, "team"), SM_EINVALID);
	assert_non_null(strstr(sm_error_message(), "edit the file by hand"));
	assert_file_equal(user_file, text);
}

static void test_remove_dotted_vault_fails(void **state)
{
	const char *text = "[vault]\nteam.type = \"local\"\nteam.path = \"/t\"\n";

	write_text(user_file, text);
	assert_int_equal(sm_config_remove_vault(user_file, "team"), SM_EINVALID);
	assert_non_null(strstr(sm_error_message(), "inline table or with dotted keys"));
	assert_file_equal(user_file, text);
}

/* ---- setting the default --------------------------------------------- */

static void test_set_default_replaces_value(void **state)
{
	char expected[1024];
	const char *tail = strstr(commented_file, "    # the usual one");

	write_text(user_file, commented_file);
	assert_int_equal(sm_config_set_default(user_file, "other"), 0);
	snprintf(expected, sizeof(expected),
		 "# my vaults\n[sharing]   # sharing settings\ndefault_vault = \"other\"%s", tail);
	assert_file_equal(user_file, expected);
}

static void test_set_default_adds_key_after_header(void **state)
{
	write_text(user_file, "# top\n[sharing] # s\nother = 1\n\n[vault.a]\ntype = \"local\"\n");
	assert_int_equal(sm_config_set_default(user_file, "a"), 0);
	assert_file_equal(user_file,
			  "# top\n[sharing] # s\ndefault_vault = \"a\"\nother = 1\n\n[vault.a]\ntype = \"local\"\n");
}

static void test_set_default_adds_key_after_final_header(void **state)
{
	write_text(user_file, "[vault.a]\ntype = \"local\"\n[sharing]");
	assert_int_equal(sm_config_set_default(user_file, "a"), 0);
	assert_file_equal(user_file, "[vault.a]\ntype = \"local\"\n[sharing]\ndefault_vault = \"a\"\n");
}

static void test_set_default_adds_table_before_first_header(void **state)
{
	write_text(user_file,
		   "# file comment\n\ntop_level = 1\nnote = \"\"\"\n# inside a string\"\"\"\n"
		   "# about vaults\n[vault.a]\ntype = \"local\"\n");
	assert_int_equal(sm_config_set_default(user_file, "a"), 0);
	assert_file_equal(user_file,
			  "# file comment\n\ntop_level = 1\nnote = \"\"\"\n# inside a string\"\"\"\n"
			  "[sharing]\ndefault_vault = \"a\"\n\n"
			  "# about vaults\n[vault.a]\ntype = \"local\"\n");
}

static void test_set_default_in_file_without_headers(void **state)
{
	write_text(user_file, "# only a comment\nkey = 1");
	assert_int_equal(sm_config_set_default(user_file, "a"), 0);
	assert_file_equal(user_file, "# only a comment\nkey = 1\n\n[sharing]\ndefault_vault = \"a\"\n");
}

static void test_set_default_creates_file(void **state)
{
	assert_int_equal(sm_config_set_default(user_file, "a"), 0);
	assert_file_equal(user_file, "[sharing]\ndefault_vault = \"a\"\n");
}

static void test_set_default_with_dotted_sharing(void **state)
{
	write_text(user_file, "sharing.other = 1\n\n[vault.a]\ntype = \"local\"\n");
	assert_int_equal(sm_config_set_default(user_file, "a"), 0);
	assert_file_equal(user_file,
			  "sharing.other = 1\nsharing.default_vault = \"a\"\n\n[vault.a]\ntype = \"local\"\n");
}

static void test_set_default_when_sharing_only_implied(void **state)
{
	write_text(user_file, "[sharing.extra]\nx = 1\n");
	assert_int_equal(sm_config_set_default(user_file, "a"), 0);
	assert_file_equal(user_file, "[sharing]\ndefault_vault = \"a\"\n\n[sharing.extra]\nx = 1\n");
}

static void test_set_default_rejects_invalid_name(void **state)
{
	write_text(user_file, commented_file);
	assert_int_equal(sm_config_set_default(user_file, "no spaces"), SM_EINVALID);
	assert_file_equal(user_file, commented_file);
}

/* ---- concurrency ----------------------------------------------------- */

#define WRITERS 8
#define ADDS_PER_WRITER 10

static void test_concurrent_adds_lose_nothing(void **state)
{
	pid_t pids[WRITERS];
	sm_config *config;

	write_text(user_file, "# shared by many writers\n");
	for (int w = 0; w < WRITERS; w++) {
		pids[w] = fork();
		assert_true(pids[w] >= 0);
		if (pids[w] == 0) {
			for (int k = 0; k < ADDS_PER_WRITER; k++) {
				char name[32], path[64];
				sm_kv settings[] = { { "path", path } };

				snprintf(name, sizeof(name), "w%d-v%d", w, k);
				snprintf(path, sizeof(path), "/srv/%s", name);
				if (sm_config_add_vault(user_file, name, "local", settings, 1, 0) != 0)
					_exit(1);
			}
			_exit(0);
		}
	}
	for (int w = 0; w < WRITERS; w++) {
		int status = 0;

		assert_int_equal(waitpid(pids[w], &status, 0), pids[w]);
		assert_true(WIFEXITED(status));
		assert_int_equal(WEXITSTATUS(status), 0);
	}

	config = load_from(NULL);
	assert_int_equal(config->nvaults, WRITERS * ADDS_PER_WRITER);
	for (int w = 0; w < WRITERS; w++) {
		for (int k = 0; k < ADDS_PER_WRITER; k++) {
			char name[32];

			snprintf(name, sizeof(name), "w%d-v%d", w, k);
			assert_non_null(sm_config_find(config, name));
		}
	}
	sm_config_free(config);
}

#define TEST(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		TEST(test_load_without_user_file),
		TEST(test_load_reads_vaults_sorted),
		TEST(test_load_keeps_absolute_path),
		TEST(test_load_layers_project_file),
		TEST(test_load_project_without_default_keeps_user_default),
		TEST(test_load_nearest_project_file_wins),
		TEST(test_load_skips_user_file_as_project),
		TEST(test_load_rejects_invalid_vault_name),
		TEST(test_load_rejects_vault_without_type),
		TEST(test_load_rejects_non_string_type),
		TEST(test_load_rejects_bad_read_only),
		TEST(test_load_reports_syntax_error_position),
		TEST(test_load_reports_project_file_errors),
		TEST(test_load_rejects_oversized_file),
		TEST(test_load_rejects_non_table_vault),
		TEST(test_vault_name_rules),
		TEST(test_pick_by_name),
		TEST(test_pick_default),
		TEST(test_pick_default_that_is_missing),
		TEST(test_pick_only_vault),
		TEST(test_pick_ambiguous),
		TEST(test_pick_with_no_vaults),
		TEST(test_add_appends_and_keeps_bytes),
		TEST(test_add_escapes_values_and_names),
		TEST(test_add_existing_vault_fails),
		TEST(test_add_rejects_invalid_input),
		TEST(test_add_creates_file_and_directory),
		TEST(test_add_after_missing_final_newline),
		TEST(test_add_with_set_default),
		TEST(test_add_to_inline_vault_table_fails),
		TEST(test_add_to_invalid_file_fails),
		TEST(test_edit_keeps_file_mode),
		TEST(test_edit_keeps_symbolic_link),
		TEST(test_remove_deletes_sub_tables_and_default),
		TEST(test_remove_takes_introducing_comment),
		TEST(test_remove_sub_tables_apart_from_vault),
		TEST(test_add_then_remove_restores_file),
		TEST(test_remove_missing_vault),
		TEST(test_remove_inline_vault_fails),
		TEST(test_remove_dotted_vault_fails),
		TEST(test_set_default_replaces_value),
		TEST(test_set_default_adds_key_after_header),
		TEST(test_set_default_adds_key_after_final_header),
		TEST(test_set_default_adds_table_before_first_header),
		TEST(test_set_default_in_file_without_headers),
		TEST(test_set_default_creates_file),
		TEST(test_set_default_with_dotted_sharing),
		TEST(test_set_default_when_sharing_only_implied),
		TEST(test_set_default_rejects_invalid_name),
		TEST(test_concurrent_adds_lose_nothing),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
