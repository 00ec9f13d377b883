/*
 * Unit tests of the git connector's pure parts: URL checks, the
 * GIT_SSH_COMMAND line, redaction of git's error output, commit messages.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "skillmeat/error.h"
#include "util/util.h"
#include "vault/git_internal.h"

static void url_accepts_supported_forms(void **state)
{
	static const char *const good[] = {
		"https://example.com/team/vault.git",
		"https://alice@example.com/team/vault.git",
		"https://example.com:8443/vault.git",
		"HTTPS://Example.COM/vault.git",
		"https://127.0.0.1:4443/git/vault.git",
		"ssh://git@example.com/team/vault.git",
		"ssh://git@127.0.0.1:2222/srv/git/vault.git",
		"ssh://example.com/~/vault.git",
		"ssh://git@[::1]:2222/vault.git",
		"git@example.com:team/vault.git",
		"example.com:team/vault.git",
		"git@[::1]:vault.git",
		"git@example.com:/srv/vault.git",
		"https://me%40corp.example@example.com/vault.git",
		"https://example.com/team%2Dvault.git",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		int rc = sm_git_check_url(good[i], 0);

		if (rc != 0)
			fail_msg("rejected '%s': %s", good[i], sm_error_message());
	}
}

static void url_rejects_unsafe_forms(void **state)
{
	static const struct {
		const char *url;
		const char *message;
	} bad[] = {
		{ "ext::sh -c x", "whitespace" },
		{ "ext::sh", "unsupported transport 'ext::'" },
		{ "fd::1", "unsupported transport 'fd::'" },
		{ "foo::https://example.com/r.git", "unsupported transport 'foo::'" },
		{ "file:///x", "unsupported transport 'file://'" },
		{ "git://example.com/r.git", "unsupported transport 'git://'" },
		{ "ftp://example.com/r.git", "unsupported transport 'ftp://'" },
		{ "-oProxyCommand=x", "starts with '-'" },
		{ "-u@host:path", "starts with '-'" },
		{ "host:-path", "does not start with '-'" },
		{ "git@host:-upload-pack=x", "does not start with '-'" },
		{ "git@-host:path", "invalid host" },
		{ "ssh://-oProxyCommand=x/r.git", "invalid host" },
		{ "ssh://-user@host/r.git", "starting with '-'" },
		{ "ssh://host/-path", "does not start with '-'" },
		{ "https://-host/r.git", "invalid host" },
		{ "http://example.com/r.git", "allow_http" },
		{ "https://alice:pw@example.com/r.git", "password" },
		{ "https://alice%3Apw@example.com/r.git", "password" },
		{ "ssh://git:pw@example.com/r.git", "password" },
		{ "https://example.com/r.git\x01", "control characters" },
		{ "https://example.com/r.git\n", "control characters" },
		{ "https://example.com/r\x7f.git", "control characters" },
		{ "https://exa mple.com/r.git", "whitespace" },
		{ "https://example.com/r.git?token=x", "query" },
		{ "https://example.com/r.git#x", "fragment" },
		{ "/srv/git/vault.git", "not a remote repository URL" },
		{ "./vault.git", "not a remote repository URL" },
		{ "vault.git", "not a remote repository URL" },
		{ "", "empty" },
		{ "https://example.com:99999/r.git", "invalid port" },
		{ "https://example.com:/r.git", "invalid port" },
		{ "https://example.com:80x/r.git", "invalid port" },
		{ "https:///r.git", "invalid host" },
		{ "https://example.com", "repository path" },
		{ "https://example.com/", "repository path" },
		{ "git@host:", "repository path" },
		{ "ht^tp://example.com/r.git", "invalid scheme" },
		{ "ssh://%2duser@127.0.0.1/r.git", "starting with '-'" },
		{ "ssh://%2Doproxycommand=x@127.0.0.1/r.git", "starting with '-'" },
		{ "ssh://127.0.0.1/r%0a.git", "encoded space or control character (%0a)" },
		{ "https://example.com/r%0D%0AHost:x/r.git", "encoded space or control" },
		{ "https://example.com/r%00.git", "encoded space or control" },
		{ "git@host:r%20x.git", "encoded space or control" },
		{ "https://example.com/r%7F.git", "encoded space or control" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = sm_git_check_url(bad[i].url, 0);

		if (rc != SM_EINVALID)
			fail_msg("accepted '%s' (rc %d)", bad[i].url, rc);
		if (!strstr(sm_error_message(), bad[i].message))
			fail_msg("'%s': message '%s' lacks '%s'", bad[i].url, sm_error_message(),
				 bad[i].message);
		if (strchr(sm_error_message(), '\n'))
			fail_msg("'%s': message has a newline", bad[i].url);
	}
}

static void url_length_is_bounded(void **state)
{
	char url[4096];
	int n = snprintf(url, sizeof(url), "https://example.com/");

	(void)state;
	memset(url + n, 'a', sizeof(url) - 1 - (size_t)n);
	url[sizeof(url) - 1] = '\0';
	assert_int_equal(sm_git_check_url(url, 0), SM_EINVALID);
	assert_non_null(strstr(sm_error_message(), "longer than 2048 bytes"));
	url[2048] = '\0';
	assert_int_equal(sm_git_check_url(url, 0), 0);
}

static void url_http_needs_allow_http(void **state)
{
	(void)state;
	assert_int_equal(sm_git_check_url("http://example.com/r.git", 0), SM_EINVALID);
	assert_int_equal(sm_git_check_url("http://example.com/r.git", 1), 0);
	assert_int_equal(sm_git_check_url("http://127.0.0.1:8080/git/r.git", 1), 0);
	/* allow_http permits http only, not other transports */
	assert_int_equal(sm_git_check_url("file:///x", 1), SM_EINVALID);
	assert_int_equal(sm_git_check_url("http://a:pw@example.com/r.git", 1), SM_EINVALID);
}

static void url_password_not_echoed(void **state)
{
	(void)state;
	assert_int_equal(sm_git_check_url("https://alice:Tok3nValue@example.com/r.git", 0),
			 SM_EINVALID);
	assert_null(strstr(sm_error_message(), "Tok3nValue"));
	assert_non_null(strstr(sm_error_message(), "vault auth"));
	/* even when something else is wrong too */
	assert_int_equal(sm_git_check_url("gopher://alice:Tok3nValue@example.com/r.git", 0),
			 SM_EINVALID);
	assert_null(strstr(sm_error_message(), "Tok3nValue"));
}

static void url_is_ssh_by_form(void **state)
{
	(void)state;
	assert_int_equal(sm_git_url_is_ssh("https://example.com/r.git"), 0);
	assert_int_equal(sm_git_url_is_ssh("http://example.com/r.git"), 0);
	assert_int_equal(sm_git_url_is_ssh("ssh://example.com/r.git"), 1);
	assert_int_equal(sm_git_url_is_ssh("git@example.com:r.git"), 1);
}

static void ssh_target_host_and_port(void **state)
{
	char host[64], port[8];

	(void)state;
	assert_int_equal(sm_git_ssh_target("ssh://git@127.0.0.1:2222/srv/r.git", host, sizeof(host),
					   port, sizeof(port)), 0);
	assert_string_equal(host, "127.0.0.1");
	assert_string_equal(port, "2222");
	assert_int_equal(sm_git_ssh_target("ssh://git@[::1]:2200/r.git", host, sizeof(host), port,
					   sizeof(port)), 0);
	assert_string_equal(host, "::1");
	assert_string_equal(port, "2200");
	assert_int_equal(sm_git_ssh_target("git@example.com:team/r.git", host, sizeof(host), port,
					   sizeof(port)), 0);
	assert_string_equal(host, "example.com");
	assert_string_equal(port, "22");
	assert_int_equal(sm_git_ssh_target("ssh://example.com/r.git", host, sizeof(host), port,
					   sizeof(port)), 0);
	assert_string_equal(host, "example.com");
	assert_string_equal(port, "22");
}

/*
 * Runs the command line as git would (sh -c) with ssh replaced by a printer
 * of its arguments, one per line in brackets, and returns that output.
 */
static char *shell_words(const char *command)
{
	sm_buf script = SM_BUF_INIT(0), out = SM_BUF_INIT(0);
	char chunk[512];
	size_t n;
	FILE *pipe;

	assert_int_equal(strncmp(command, "ssh ", 4), 0);
	assert_int_equal(sm_buf_printf(&script, "printf '[%%s]\\n' %s", command + 4), 0);
	/* popen runs /bin/sh -c, as git does for GIT_SSH_COMMAND */
	pipe = popen(script.data, "r");
	assert_non_null(pipe);
	while ((n = fread(chunk, 1, sizeof(chunk), pipe)) > 0)
		assert_int_equal(sm_buf_put(&out, chunk, n), 0);
	assert_int_equal(pclose(pipe), 0);
	sm_buf_release(&script);
	return sm_buf_take(&out);
}

static void ssh_command_checks_host_keys(void **state)
{
	char *command = NULL;

	(void)state;
	assert_int_equal(sm_git_ssh_command(NULL, NULL, 0, &command), 0);
	assert_non_null(strstr(command, "-o StrictHostKeyChecking=yes"));
	assert_non_null(strstr(command, "-o BatchMode=yes"));
	assert_null(strstr(command, "StrictHostKeyChecking=no"));
	assert_null(strstr(command, " -i "));
	free(command);

	assert_int_equal(sm_git_ssh_command(NULL, NULL, 1, &command), 0);
	assert_non_null(strstr(command, "-o StrictHostKeyChecking=accept-new"));
	assert_null(strstr(command, "StrictHostKeyChecking=no"));
	free(command);
}

static void ssh_command_quotes_key_paths(void **state)
{
	char *command = NULL, *words;

	(void)state;
	assert_int_equal(sm_git_ssh_command("/tmp/my keys/it's \"id\" $HOME `x`", NULL, 0, &command), 0);
	assert_non_null(strstr(command, "-o IdentitiesOnly=yes"));
	words = shell_words(command);
	assert_non_null(strstr(words, "\n[-i]\n[/tmp/my keys/it's \"id\" $HOME `x`]\n"));
	assert_non_null(strstr(words, "[IdentitiesOnly=yes]"));
	free(words);
	free(command);

	/* ssh expands %-tokens in identity files, so a literal % is doubled */
	assert_int_equal(sm_git_ssh_command("/keys/100%/id", NULL, 0, &command), 0);
	words = shell_words(command);
	assert_non_null(strstr(words, "[/keys/100%%/id]"));
	free(words);
	free(command);
}

static void ssh_command_known_hosts_option(void **state)
{
	char *command = NULL, *words;

	(void)state;
	assert_int_equal(sm_git_ssh_command("/k/id", "/etc/my hosts/known_hosts", 0, &command), 0);
	words = shell_words(command);
	/* ssh splits this option's value at spaces unless it is in double quotes */
	assert_non_null(strstr(words, "[UserKnownHostsFile=\"/etc/my hosts/known_hosts\"]"));
	free(words);
	free(command);

	assert_int_equal(sm_git_ssh_command(NULL, "/etc/a\"b", 0, &command), SM_EINVALID);
	assert_null(command);
	assert_int_equal(sm_git_ssh_command(NULL, "/etc/a\\b", 0, &command), SM_EINVALID);
	assert_null(command);
}

static void error_line_redacts_secrets(void **state)
{
	const char *secrets[] = { "s3cret pw", NULL };
	const char *text =
		"Cloning...\n"
		"fatal: unable to access 'https://alice:UrlPass@example.com/r.git/': denied\n"
		"hint: try again\n"
		"\n"
		"> Authorization: Basic dXNlcjpzM2NyZXQgcHc=\r\n"
		"error: the password s3cret pw and again s3cret pw\n";
	char *line = sm_git_error_line(text, secrets, 2);

	(void)state;
	assert_non_null(line);
	assert_null(strstr(line, "s3cret"));
	assert_null(strstr(line, "UrlPass"));
	assert_null(strstr(line, "dXNlcjpzM2NyZXQgcHc="));
	assert_null(strstr(line, "hint:"));
	assert_null(strchr(line, '\n'));
	assert_null(strchr(line, '\r'));
	assert_non_null(strstr(line, "fatal: unable to access 'https://alice:***@example.com/r.git/'"));
	assert_non_null(strstr(line, "the password *** and again ***"));
	assert_non_null(strstr(line, "Cloning...; fatal:"));
	free(line);
}

static void error_line_edge_cases(void **state)
{
	const char *stars[] = { "**" };
	char long_text[4000];
	char *line;

	(void)state;
	line = sm_git_error_line("", NULL, 0);
	assert_string_equal(line, "no error output");
	free(line);
	line = sm_git_error_line(NULL, NULL, 0);
	assert_string_equal(line, "no error output");
	free(line);

	/* a secret that matches its own mask must not loop */
	line = sm_git_error_line("a ** b", stars, 1);
	assert_string_equal(line, "a *** b");
	free(line);

	memset(long_text, 'x', sizeof(long_text) - 1);
	long_text[sizeof(long_text) - 1] = '\0';
	line = sm_git_error_line(long_text, NULL, 0);
	assert_true(strlen(line) <= 520);
	assert_non_null(strstr(line, "..."));
	free(line);

	line = sm_git_error_line("bad\x1b[31m colour\n", NULL, 0);
	assert_null(strchr(line, '\x1b'));
	free(line);
}

static void commit_message_names_the_bundle(void **state)
{
	char out[64];
	char long_id[200];

	(void)state;
	assert_int_equal(sm_git_commit_message(out, sizeof(out), "Add", "demo-v1.0.0"), 0);
	assert_string_equal(out, "Add bundle demo-v1.0.0");
	assert_int_equal(sm_git_commit_message(out, sizeof(out), "Remove", "demo-v1.0.0"), 0);
	assert_string_equal(out, "Remove bundle demo-v1.0.0");
	assert_int_equal(sm_git_commit_message(out, sizeof(out), "Replace", "demo-v2"), 0);
	assert_string_equal(out, "Replace bundle demo-v2");
	memset(long_id, 'a', sizeof(long_id) - 1);
	long_id[sizeof(long_id) - 1] = '\0';
	assert_int_equal(sm_git_commit_message(out, sizeof(out), "Add", long_id), SM_EINVALID);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(url_accepts_supported_forms),
		cmocka_unit_test(url_rejects_unsafe_forms),
		cmocka_unit_test(url_length_is_bounded),
		cmocka_unit_test(url_http_needs_allow_http),
		cmocka_unit_test(url_password_not_echoed),
		cmocka_unit_test(url_is_ssh_by_form),
		cmocka_unit_test(ssh_target_host_and_port),
		cmocka_unit_test(ssh_command_checks_host_keys),
		cmocka_unit_test(ssh_command_quotes_key_paths),
		cmocka_unit_test(ssh_command_known_hosts_option),
		cmocka_unit_test(error_line_redacts_secrets),
		cmocka_unit_test(error_line_edge_cases),
		cmocka_unit_test(commit_message_names_the_bundle),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
