/*
 * Unit tests of the plug-in loader's checks: the search path split, type
 * names, and the ownership and mode rules on files and directories that
 * the tests create with given modes.
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

#include "skillmeat/plugin.h"
#include "util/util.h"
#include "vault/plugins.h"

/* ---- path list ---- */

static void expect_split(const char *list, const char *const *want, size_t nwant)
{
	char **dirs = NULL;
	size_t n = 99;

	assert_int_equal(sm_plugin_path_split(list, &dirs, &n), 0);
	assert_int_equal(n, nwant);
	for (size_t i = 0; i < nwant; i++)
		assert_string_equal(dirs[i], want[i]);
	sm_str_array_free(dirs, n);
}

static void path_split_plain_list(void **state)
{
	const char *const want[] = { "/a", "/b/c" };

	expect_split("/a:/b/c", want, 2);
}

static void path_split_drops_empty_entries(void **state)
{
	const char *const want[] = { "/a", "/b" };

	expect_split("::/a:::/b:", want, 2);
	expect_split(":/a:/b", want, 2);
	expect_split("/a:/b:", want, 2);
}

static void path_split_empty_and_unset(void **state)
{
	expect_split("", NULL, 0);
	expect_split(":", NULL, 0);
	expect_split(":::", NULL, 0);
	expect_split(NULL, NULL, 0);
}

static void path_split_keeps_relative_entries(void **state)
{
	/* the loader, not the split, rejects them, so that 'plugin list' names them */
	const char *const want[] = { "relative", "/abs" };

	expect_split("relative:/abs", want, 2);
}

/* ---- type names ---- */

static void type_names_valid(void **state)
{
	char longest[SM_PLUGIN_TYPE_MAX + 1];

	assert_true(sm_plugin_type_valid("example-dir"));
	assert_true(sm_plugin_type_valid("A_b-9"));
	assert_true(sm_plugin_type_valid("x"));
	memset(longest, 'a', SM_PLUGIN_TYPE_MAX);
	longest[SM_PLUGIN_TYPE_MAX] = '\0';
	assert_true(sm_plugin_type_valid(longest));
}

static void type_names_invalid(void **state)
{
	char too_long[SM_PLUGIN_TYPE_MAX + 2];

	assert_false(sm_plugin_type_valid(NULL));
	assert_false(sm_plugin_type_valid(""));
	assert_false(sm_plugin_type_valid("a b"));
	assert_false(sm_plugin_type_valid("a/b"));
	assert_false(sm_plugin_type_valid("a.b"));
	assert_false(sm_plugin_type_valid("a:b"));
	assert_false(sm_plugin_type_valid("caf\xc3\xa9"));
	assert_false(sm_plugin_type_valid("tab\there"));
	memset(too_long, 'a', SM_PLUGIN_TYPE_MAX + 1);
	too_long[SM_PLUGIN_TYPE_MAX + 1] = '\0';
	assert_false(sm_plugin_type_valid(too_long));
}

/* ---- files and directories ---- */

typedef struct scratch {
	char dir[64];
	char file[128];
} scratch;

/* Creates /tmp/sm-plugins-XXXXXX (mode 0755) holding "p.so" (mode 0644). */
static int scratch_setup(void **state)
{
	scratch *s = calloc(1, sizeof(*s));
	FILE *f;

	assert_non_null(s);
	strcpy(s->dir, "/tmp/sm-plugins-XXXXXX");
	assert_non_null(mkdtemp(s->dir));
	assert_int_equal(chmod(s->dir, 0755), 0);
	snprintf(s->file, sizeof(s->file), "%s/p.so", s->dir);
	f = fopen(s->file, "w");
	assert_non_null(f);
	fputs("not really a shared object\n", f);
	fclose(f);
	assert_int_equal(chmod(s->file, 0644), 0);
	*state = s;
	return 0;
}

static int scratch_teardown(void **state)
{
	scratch *s = *state;
	char command[256];

	snprintf(command, sizeof(command), "chmod -R u+rwx '%s' && rm -rf '%s'", s->dir, s->dir);
	if (system(command) != 0)
		fprintf(stderr, "cannot remove %s\n", s->dir);
	free(s);
	return 0;
}

/* Checks s->file after chmod to `mode`; returns the result. */
static int check_file_mode(scratch *s, mode_t mode)
{
	struct stat st;

	assert_int_equal(chmod(s->file, mode), 0);
	assert_int_equal(lstat(s->file, &st), 0);
	return sm_plugin_check_file(&st, s->file, geteuid());
}

static void file_private_modes_accepted(void **state)
{
	scratch *s = *state;

	assert_int_equal(check_file_mode(s, 0644), 0);
	assert_int_equal(check_file_mode(s, 0600), 0);
	assert_int_equal(check_file_mode(s, 0755), 0);
	assert_int_equal(check_file_mode(s, 0444), 0);
}

static void file_group_writable_rejected(void **state)
{
	scratch *s = *state;

	assert_int_equal(check_file_mode(s, 0664), SM_EREADONLY);
	assert_non_null(strstr(sm_error_message(), s->file));
	assert_non_null(strstr(sm_error_message(), "writable by group or others"));
}

static void file_world_writable_rejected(void **state)
{
	scratch *s = *state;

	assert_int_equal(check_file_mode(s, 0646), SM_EREADONLY);
	assert_non_null(strstr(sm_error_message(), s->file));
	assert_int_equal(check_file_mode(s, 0666), SM_EREADONLY);
}

static void file_other_owner_rejected(void **state)
{
	scratch *s = *state;
	struct stat st;

	assert_int_equal(lstat(s->file, &st), 0);
	/* the file is ours; a uid that is neither ours nor root must be refused */
	st.st_uid = 4242;
	assert_int_equal(sm_plugin_check_file(&st, s->file, 1000), SM_EREADONLY);
	assert_non_null(strstr(sm_error_message(), "owned by uid 4242"));
	st.st_uid = 0;
	assert_int_equal(sm_plugin_check_file(&st, s->file, 1000), 0);
	st.st_uid = 1000;
	assert_int_equal(sm_plugin_check_file(&st, s->file, 1000), 0);
}

static void file_symlink_and_directory_rejected(void **state)
{
	scratch *s = *state;
	char link[160];
	struct stat st;

	snprintf(link, sizeof(link), "%s/link.so", s->dir);
	assert_int_equal(symlink(s->file, link), 0);
	assert_int_equal(lstat(link, &st), 0);
	assert_int_equal(sm_plugin_check_file(&st, link, geteuid()), SM_EREADONLY);
	assert_non_null(strstr(sm_error_message(), "symbolic link"));

	assert_int_equal(lstat(s->dir, &st), 0);
	assert_int_equal(sm_plugin_check_file(&st, s->dir, geteuid()), SM_EREADONLY);
	assert_non_null(strstr(sm_error_message(), "not a regular file"));
}

static void dir_private_accepted(void **state)
{
	scratch *s = *state;

	assert_int_equal(sm_plugin_check_dir(s->dir, geteuid()), 0);
	assert_int_equal(chmod(s->dir, 0700), 0);
	assert_int_equal(sm_plugin_check_dir(s->dir, geteuid()), 0);
}

static void dir_group_writable_rejected(void **state)
{
	scratch *s = *state;

	assert_int_equal(chmod(s->dir, 0775), 0);
	assert_int_equal(sm_plugin_check_dir(s->dir, geteuid()), SM_EREADONLY);
	assert_non_null(strstr(sm_error_message(), s->dir));
	assert_non_null(strstr(sm_error_message(), "writable by group or others"));
}

static void dir_parent_writable_rejected(void **state)
{
	scratch *s = *state;
	char child[160];

	snprintf(child, sizeof(child), "%s/sub", s->dir);
	assert_int_equal(mkdir(child, 0755), 0);
	assert_int_equal(sm_plugin_check_dir(child, geteuid()), 0);
	assert_int_equal(chmod(s->dir, 0757), 0);
	assert_int_equal(sm_plugin_check_dir(child, geteuid()), SM_EREADONLY);
	/* the message names the parent that failed, not the child */
	assert_non_null(strstr(sm_error_message(), "directory '"));
	assert_null(strstr(sm_error_message(), child));
	assert_non_null(strstr(sm_error_message(), s->dir));
}

static void dir_sticky_needs_root_owner(void **state)
{
	scratch *s = *state;
	int rc;

	assert_int_equal(chmod(s->dir, 01777), 0);
	rc = sm_plugin_check_dir(s->dir, geteuid());
	/* a sticky world-writable directory passes only when root owns it, like /tmp */
	if (geteuid() == 0)
		assert_int_equal(rc, 0);
	else
		assert_int_equal(rc, SM_EREADONLY);
	/* and never for another user, whoever runs the test */
	assert_int_equal(chmod(s->dir, 0755), 0);
	if (geteuid() != 0)
		assert_int_equal(sm_plugin_check_dir(s->dir, 0), SM_EREADONLY);
}

static void dir_relative_and_symlink_rejected(void **state)
{
	scratch *s = *state;
	char link[160];

	assert_int_equal(sm_plugin_check_dir("plugins", geteuid()), SM_EINVALID);
	assert_non_null(strstr(sm_error_message(), "not an absolute path"));
	snprintf(link, sizeof(link), "%s/link", s->dir);
	assert_int_equal(symlink(s->dir, link), 0);
	assert_int_equal(sm_plugin_check_dir(link, geteuid()), SM_EINVALID);
	assert_non_null(strstr(sm_error_message(), "symbolic link"));
}

static void dir_missing_not_found(void **state)
{
	scratch *s = *state;
	char missing[160];

	snprintf(missing, sizeof(missing), "%s/missing", s->dir);
	assert_int_equal(sm_plugin_check_dir(missing, geteuid()), SM_ENOTFOUND);
}

/* ---- loading with an empty search path ---- */

static void load_finds_nothing_in_empty_dirs(void **state)
{
	scratch *s = *state;
	sm_plugin_info *infos = NULL;
	size_t count = 99;

	/* p.so (a text file) is in the scratch directory, not in the search path */
	setenv("SKILLMEAT_HOME", s->dir, 1);
	setenv("SKILLMEAT_PLUGIN_PATH", "", 1);
	assert_int_equal(sm_plugins_load(NULL), 0);
	assert_int_equal(sm_plugins_list(&infos, &count), 0);
	assert_int_equal(count, 0);
	sm_plugin_info_free(infos, count);
	assert_int_equal(sm_plugins_failed(), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(path_split_plain_list),
		cmocka_unit_test(path_split_drops_empty_entries),
		cmocka_unit_test(path_split_empty_and_unset),
		cmocka_unit_test(path_split_keeps_relative_entries),
		cmocka_unit_test(type_names_valid),
		cmocka_unit_test(type_names_invalid),
		cmocka_unit_test_setup_teardown(file_private_modes_accepted, scratch_setup, scratch_teardown),
		cmocka_unit_test_setup_teardown(file_group_writable_rejected, scratch_setup, scratch_teardown),
		cmocka_unit_test_setup_teardown(file_world_writable_rejected, scratch_setup, scratch_teardown),
		cmocka_unit_test_setup_teardown(file_other_owner_rejected, scratch_setup, scratch_teardown),
		cmocka_unit_test_setup_teardown(file_symlink_and_directory_rejected, scratch_setup,
						scratch_teardown),
		cmocka_unit_test_setup_teardown(dir_private_accepted, scratch_setup, scratch_teardown),
		cmocka_unit_test_setup_teardown(dir_group_writable_rejected, scratch_setup, scratch_teardown),
		cmocka_unit_test_setup_teardown(dir_parent_writable_rejected, scratch_setup, scratch_teardown),
		cmocka_unit_test_setup_teardown(dir_sticky_needs_root_owner, scratch_setup, scratch_teardown),
		cmocka_unit_test_setup_teardown(dir_relative_and_symlink_rejected, scratch_setup,
						scratch_teardown),
		cmocka_unit_test_setup_teardown(dir_missing_not_found, scratch_setup, scratch_teardown),
		cmocka_unit_test_setup_teardown(load_finds_nothing_in_empty_dirs, scratch_setup,
						scratch_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
