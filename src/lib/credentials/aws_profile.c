/*
 * AWS shared config files and credential_process.
 *
 * The files are read as the AWS CLI reads them (Python's configparser
 * without inline comments). They have "[name]" sections, "key = value" or
 * "key: value" lines, and whole-line comments starting with '#' or ';'.
 * Lines indented deeper than the key before them continue that key (the
 * nested "s3 =" settings) and are ignored here. Keys are case-insensitive,
 * a later value replaces an earlier one. In the credentials file a section
 * is named after the profile; in the config file it is "[profile NAME]",
 * or "[default]" for the default profile.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "credentials/aws.h"
#include "credentials/credentials_internal.h"
#include "util/util.h"

extern char **environ;

/* Maximum size of a shared config file, in bytes. */
#define AWS_FILE_MAX (1024 * 1024)

enum {
	KEY_ACCESS_KEY_ID,
	KEY_SECRET_ACCESS_KEY,
	KEY_SESSION_TOKEN,
	KEY_CREDENTIAL_PROCESS,
	KEY_ROLE_ARN,
	KEY_SSO_START_URL,
	KEY_SSO_SESSION,
	KEY_WEB_IDENTITY_TOKEN_FILE,
	NKEYS
};

static const char *const key_names[NKEYS] = {
	"aws_access_key_id", "aws_secret_access_key", "aws_session_token",
	"credential_process", "role_arn", "sso_start_url", "sso_session",
	"web_identity_token_file",
};

/* The keys of one profile found in one file; values in secret memory. */
typedef struct profile_keys {
	int found;               /* the file has the profile's section */
	char *values[NKEYS];
} profile_keys;

static void profile_keys_release(profile_keys *keys)
{
	for (int i = 0; i < NKEYS; i++) {
		sm_secret_free(keys->values[i]);
		keys->values[i] = NULL;
	}
	keys->found = 0;
}

static int is_blank(char c)
{
	return c == ' ' || c == '\t';
}

/* Trims blanks at both ends of [*start, *end). */
static void trim(const char **start, const char **end)
{
	while (*start < *end && is_blank(**start))
		(*start)++;
	while (*end > *start && (is_blank((*end)[-1]) || (*end)[-1] == '\r'))
		(*end)--;
}

/*
 * Returns 1 when section header text [start, end) names `profile` in a
 * file of this kind.
 */
static int section_matches(const char *start, const char *end, const char *profile, int config_file)
{
	size_t len, plen = strlen(profile);

	trim(&start, &end);
	if (config_file) {
		if ((size_t)(end - start) > 7 && memcmp(start, "profile", 7) == 0 && is_blank(start[7])) {
			start += 8;
			trim(&start, &end);
		} else if (strcmp(profile, "default") != 0) {
			return 0; /* only the default profile may omit "profile " */
		} else if ((size_t)(end - start) != 7 || memcmp(start, "default", 7) != 0) {
			return 0;
		}
	}
	len = (size_t)(end - start);
	return len == plen && memcmp(start, profile, plen) == 0;
}

/* Reads the keys of `profile` from `path`. A missing file is fine. */
static int read_profile(const char *path, const char *profile, int config_file, profile_keys *keys)
{
	char *text = NULL;
	size_t text_len = 0;
	const char *line, *next;
	int in_section = 0, have_section = 0, have_key = 0, line_no = 0, rc;
	size_t key_indent = 0;

	keys->found = 0;
	rc = sm_read_file(path, AWS_FILE_MAX, &text, &text_len);
	if (rc == SM_ENOTFOUND) {
		sm_error_clear();
		return 0;
	}
	if (rc)
		return sm_error_wrap(rc, "cannot read AWS file '%s'", path);
	if (memchr(text, '\0', text_len)) {
		rc = sm_error_set(SM_EINVALID, "AWS file '%s' contains a NUL byte", path);
		goto done;
	}

	/* editors on Windows may start the file with a UTF-8 byte order mark */
	line = text;
	if (text_len >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0)
		line += 3;
	for (; line && *line; line = next) {
		const char *end = strchr(line, '\n'), *start = line, *eq;
		size_t indent = 0;

		next = end ? end + 1 : NULL;
		if (!end)
			end = line + strlen(line);
		line_no++;
		while (start + indent < end && is_blank(start[indent]))
			indent++;
		trim(&start, &end);
		if (start == end || *start == '#' || *start == ';')
			continue;

		if (*start == '[') {
			/*
			 * The name runs to the last ']' of the line, as in the AWS CLI,
			 * so "[a]b]" is profile "a]b" and never profile "a".
			 */
			const char *close = memrchr(start, ']', (size_t)(end - start));

			if (!close || close == start + 1) {
				rc = sm_error_set(SM_EINVALID, "AWS file '%s' line %d: invalid section header; "
						  "write it as [name]", path, line_no);
				goto done;
			}
			in_section = section_matches(start + 1, close, profile, config_file);
			if (in_section)
				keys->found = 1;
			have_section = 1;
			have_key = 0;
			continue;
		}
		if (have_key && indent > key_indent)
			continue; /* a continuation line, e.g. a nested "s3 =" setting */

		eq = start;
		while (eq < end && *eq != '=' && *eq != ':')
			eq++;
		if (eq == end || eq == start) {
			rc = sm_error_set(SM_EINVALID, "AWS file '%s' line %d: expected 'key = value'",
					  path, line_no);
			goto done;
		}
		if (!have_section) {
			rc = sm_error_set(SM_EINVALID, "AWS file '%s' line %d: key outside of a [section]",
					  path, line_no);
			goto done;
		}
		have_key = 1;
		key_indent = indent;
		if (!in_section)
			continue;
		{
			const char *key_end = eq, *value = eq + 1, *value_end = end;

			while (key_end > start && is_blank(key_end[-1]))
				key_end--;
			trim(&value, &value_end);
			for (int i = 0; i < NKEYS; i++) {
				if (strlen(key_names[i]) != (size_t)(key_end - start) ||
				    strncasecmp(key_names[i], start, (size_t)(key_end - start)) != 0)
					continue;
				sm_secret_free(keys->values[i]);
				keys->values[i] = NULL;
				if (value == value_end)
					break; /* "key =" with nothing after it counts as unset */
				keys->values[i] = sm_secret_dup(value, (size_t)(value_end - value));
				if (!keys->values[i]) {
					rc = SM_ENOMEM;
					goto done;
				}
				break;
			}
		}
	}
	rc = 0;
done:
	if (text) {
		sodium_memzero(text, text_len);
		free(text);
	}
	if (rc)
		profile_keys_release(keys);
	return rc;
}

int sm_aws_split_command(const char *command, char ***argv_out, size_t *argc)
{
	size_t len = strlen(command), count = 0, cap = 0;
	char **argv = NULL, *word = NULL;
	size_t word_len = 0;
	int started = 0, rc = SM_ENOMEM;
	const char *p = command;

	*argv_out = NULL;
	*argc = 0;
	word = malloc(len + 1);
	if (!word)
		goto done;

	for (;;) {
		char c = *p;

		if (c == '\0' || c == ' ' || c == '\t' || c == '\n') {
			if (started) {
				if (count + 2 > cap) {
					size_t new_cap = cap ? cap * 2 : 8;
					char **grown = realloc(argv, new_cap * sizeof(*argv));

					if (!grown)
						goto done;
					argv = grown;
					cap = new_cap;
				}
				argv[count] = sm_strndup(word, word_len);
				if (!argv[count])
					goto done;
				argv[++count] = NULL;
				word_len = 0;
				started = 0;
			}
			if (c == '\0')
				break;
			p++;
			continue;
		}
		started = 1;
		if (c == '\'') {
			const char *close = strchr(p + 1, '\'');

			if (!close) {
				rc = sm_error_set(SM_EINVALID, "unterminated single quote");
				goto done;
			}
			memcpy(word + word_len, p + 1, (size_t)(close - p - 1));
			word_len += (size_t)(close - p - 1);
			p = close + 1;
		} else if (c == '"') {
			p++;
			while (*p && *p != '"') {
				if (*p == '\\' && p[1] == '\n') {
					p += 2;
				} else if (*p == '\\' && p[1] && strchr("$`\"\\", p[1])) {
					word[word_len++] = p[1];
					p += 2;
				} else {
					word[word_len++] = *p++;
				}
			}
			if (*p != '"') {
				rc = sm_error_set(SM_EINVALID, "unterminated double quote");
				goto done;
			}
			p++;
		} else if (c == '\\') {
			if (p[1] == '\n') {
				p += 2;
				if (word_len == 0)
					started = 0; /* a line continuation alone starts no word */
			} else if (p[1]) {
				word[word_len++] = p[1];
				p += 2;
			} else {
				word[word_len++] = '\\';
				p++;
			}
		} else {
			word[word_len++] = c;
			p++;
		}
	}
	if (count == 0) {
		rc = sm_error_set(SM_EINVALID, "empty command");
		goto done;
	}
	*argv_out = argv;
	*argc = count;
	argv = NULL;
	rc = 0;
done:
	if (rc == SM_ENOMEM)
		sm_error_set(rc, "out of memory");
	if (argv)
		sm_str_array_free(argv, count + 1);
	free(word);
	return rc;
}

static long long elapsed_ms(const struct timespec *since)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (long long)(now.tv_sec - since->tv_sec) * 1000 + (now.tv_nsec - since->tv_nsec) / 1000000;
}

/* Reads the vault's credential_process_timeout setting, in seconds. */
static int process_timeout(const sm_vault_config *config, int *seconds)
{
	const char *text = sm_vault_config_get(config, "credential_process_timeout");
	char *end;
	long value;

	*seconds = SM_AWS_PROCESS_TIMEOUT;
	if (!text)
		return 0;
	errno = 0;
	value = strtol(text, &end, 10);
	if (errno || end == text || *end || value < 1 || value > SM_AWS_PROCESS_TIMEOUT_MAX)
		return sm_error_set(SM_EINVALID, "vault '%s': credential_process_timeout '%s' is not a "
				    "whole number of seconds from 1 to %d", config->name, text,
				    SM_AWS_PROCESS_TIMEOUT_MAX);
	*seconds = (int)value;
	return 0;
}

/*
 * Returns 1 for an environment entry that contains a skillmeat secret: the
 * passphrase of the sealed credentials file or a vault's stored
 * credentials. The program gets no reason to see them.
 */
static int is_skillmeat_secret(const char *entry)
{
	return strncmp(entry, "SKILLMEAT_CREDENTIALS_PASSPHRASE", 32) == 0 ||
	       strncmp(entry, "SKILLMEAT_VAULT_", 16) == 0;
}

/* Returns a new array of the entries of `environ` without skillmeat secrets. */
static char **child_environment(void)
{
	size_t n = 0, kept = 0;
	char **env;

	while (environ[n])
		n++;
	env = calloc(n + 1, sizeof(*env));
	if (!env) {
		sm_error_set(SM_ENOMEM, "out of memory");
		return NULL;
	}
	for (size_t i = 0; i < n; i++)
		if (!is_skillmeat_secret(environ[i]))
			env[kept++] = environ[i];
	return env;
}

/*
 * Runs `command` without a shell, its standard output into a pipe, standard
 * input and error inherited so the tool can prompt, as the AWS CLI lets it,
 * and the environment without skillmeat's own secrets.
 * The output goes into secret memory and is wiped after parsing.
 */
static int run_process(const char *command, const char *profile, const sm_vault_config *config,
		       sm_aws_credentials *out)
{
	char what[128], **argv = NULL, **env = NULL, *output = NULL;
	size_t argc = 0, used = 0;
	int pipe_fds[2] = { -1, -1 }, timeout_s, status = 0, rc, spawned = 0, reaped = 0, n;
	posix_spawn_file_actions_t actions;
	posix_spawnattr_t attr;
	sigset_t empty, defaults;
	struct timespec start;
	pid_t pid = -1;

	n = snprintf(what, sizeof(what), "credential_process of profile '%s'", profile);
	if (n < 0 || (size_t)n >= sizeof(what))
		snprintf(what, sizeof(what), "credential_process");
	rc = process_timeout(config, &timeout_s);
	if (rc)
		return rc;
	rc = sm_aws_split_command(command, &argv, &argc);
	if (rc)
		return sm_error_wrap(rc, "%s", what);
	output = sm_aws_secret_alloc(SM_AWS_RESPONSE_MAX);
	env = child_environment();
	if (!output || !env) {
		rc = SM_ENOMEM;
		goto free_argv;
	}
	if (pipe2(pipe_fds, O_CLOEXEC)) {
		rc = sm_error_set_errno(SM_EIO, errno, "%s: cannot create a pipe", what);
		goto free_argv;
	}

	posix_spawn_file_actions_init(&actions);
	posix_spawnattr_init(&attr);
	sigemptyset(&empty);
	sigemptyset(&defaults);
	sigaddset(&defaults, SIGPIPE);
	posix_spawnattr_setsigmask(&attr, &empty);
	posix_spawnattr_setsigdefault(&attr, &defaults);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
	posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], STDOUT_FILENO);
	clock_gettime(CLOCK_MONOTONIC, &start);
	n = posix_spawnp(&pid, argv[0], &actions, &attr, argv, env);
	posix_spawn_file_actions_destroy(&actions);
	posix_spawnattr_destroy(&attr);
	close(pipe_fds[1]);
	pipe_fds[1] = -1;
	if (n) {
		rc = sm_error_set_errno(SM_EAUTH, n, "%s: cannot run '%s'", what, argv[0]);
		goto done;
	}
	spawned = 1;

	/*
	 * Read until end of file, the size cap or the deadline. A program that
	 * exits while a child it started still holds standard output open
	 * never produces end of file, so once the program has exited, reading
	 * takes only what is already in the pipe.
	 */
	for (;;) {
		long long left = (long long)timeout_s * 1000 - elapsed_ms(&start);
		struct pollfd pfd = { pipe_fds[0], POLLIN, 0 };
		ssize_t got;

		if (!reaped && waitpid(pid, &status, WNOHANG) == pid)
			reaped = 1;
		if (left <= 0 && !reaped) {
			rc = sm_error_set(SM_EAUTH, "%s timed out after %d s; raise the vault's "
					  "credential_process_timeout if it needs longer", what, timeout_s);
			goto done;
		}
		n = poll(&pfd, 1, reaped ? 0 : (int)(left > 100 ? 100 : left));
		if (n < 0 && errno != EINTR) {
			rc = sm_error_set_errno(SM_EIO, errno, "%s: cannot wait for output", what);
			goto done;
		}
		if (n == 0 && reaped)
			break;
		if (n <= 0)
			continue;
		if (used == SM_AWS_RESPONSE_MAX) {
			rc = sm_error_set(SM_EINVALID, "%s wrote more than %d bytes", what,
					  SM_AWS_RESPONSE_MAX);
			goto done;
		}
		got = read(pipe_fds[0], output + used, SM_AWS_RESPONSE_MAX - used);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			rc = sm_error_set_errno(SM_EIO, errno, "%s: cannot read its output", what);
			goto done;
		}
		if (got == 0)
			break;
		used += (size_t)got;
	}

	/* the output is complete; wait for the exit status within the same deadline */
	while (!reaped) {
		pid_t waited = waitpid(pid, &status, WNOHANG);

		if (waited == pid) {
			reaped = 1;
			break;
		}
		if (waited < 0 && errno != EINTR) {
			rc = sm_error_set_errno(SM_ERROR, errno, "%s: cannot wait for it", what);
			goto done;
		}
		if (elapsed_ms(&start) >= (long long)timeout_s * 1000) {
			rc = sm_error_set(SM_EAUTH, "%s timed out after %d s; raise the vault's "
					  "credential_process_timeout if it needs longer", what, timeout_s);
			goto done;
		}
		usleep(5000);
	}
	if (WIFSIGNALED(status)) {
		rc = sm_error_set(SM_EAUTH, "%s was killed by signal %d", what, WTERMSIG(status));
		goto done;
	}
	if (WEXITSTATUS(status) != 0) {
		rc = sm_error_set(SM_EAUTH, "%s exited with status %d; run the command by hand to "
				  "see its error", what, WEXITSTATUS(status));
		goto done;
	}
	rc = sm_aws_credentials_from_json(output, used, what, 1, out);
done:
	if (spawned && !reaped) {
		kill(pid, SIGKILL);
		while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
			;
	}
	if (pipe_fds[0] >= 0)
		close(pipe_fds[0]);
free_argv:
	free(env);
	sm_secret_free(output);
	if (argv)
		sm_str_array_free(argv, argc + 1);
	return rc;
}

/* Writes $HOME/.aws/NAME, or the path in `variable` with a leading "~/" expanded. */
static char *aws_file_path(const char *variable, const char *name)
{
	const char *set = getenv(variable), *home = getenv("HOME");

	if ((!home || !home[0]) && (!set || strncmp(set, "~/", 2) == 0)) {
		struct passwd *pw = getpwuid(getuid());

		home = pw ? pw->pw_dir : NULL;
		if (!home) {
			sm_error_set(SM_ENOTFOUND, "cannot find the home directory for %s; set %s",
				     name, variable);
			return NULL;
		}
	}
	if (set && set[0]) {
		if (strncmp(set, "~/", 2) == 0)
			return sm_path_join(home, set + 2);
		return sm_strdup(set);
	}
	return sm_asprintf("%s/.aws/%s", home, name);
}

static int need_pair(const profile_keys *keys, const char *path, const char *profile)
{
	if (!keys->values[KEY_ACCESS_KEY_ID])
		return sm_error_set(SM_EAUTH, "profile '%s' in '%s' has aws_secret_access_key but no "
				    "aws_access_key_id", profile, path);
	if (!keys->values[KEY_SECRET_ACCESS_KEY])
		return sm_error_set(SM_EAUTH, "profile '%s' in '%s' has aws_access_key_id but no "
				    "aws_secret_access_key", profile, path);
	return 0;
}

/* Moves the static keys of `keys` into `out`. */
static void take_static(profile_keys *keys, sm_aws_credentials *out, const char *profile)
{
	int n;

	out->access_key_id = keys->values[KEY_ACCESS_KEY_ID];
	out->secret_access_key = keys->values[KEY_SECRET_ACCESS_KEY];
	out->session_token = keys->values[KEY_SESSION_TOKEN];
	keys->values[KEY_ACCESS_KEY_ID] = NULL;
	keys->values[KEY_SECRET_ACCESS_KEY] = NULL;
	keys->values[KEY_SESSION_TOKEN] = NULL;
	n = snprintf(out->source, sizeof(out->source), "profile '%s'", profile);
	if (n < 0 || (size_t)n >= sizeof(out->source))
		snprintf(out->source, sizeof(out->source), "shared credentials profile");
}

int sm_aws_profile_resolve(const char *profile, int explicit_profile,
			   const sm_vault_config *config, sm_aws_credentials *out,
			   char *tried, size_t tried_size)
{
	profile_keys creds_keys = { 0 }, config_keys = { 0 };
	char *creds_path = NULL, *config_path = NULL;
	const char *process, *unsupported = NULL;
	int rc, n;

	if (sm_has_control_chars(profile))
		return sm_error_set(SM_EINVALID, "AWS profile name contains control characters; check "
				    "the vault's profile setting and AWS_PROFILE");
	creds_path = aws_file_path("AWS_SHARED_CREDENTIALS_FILE", "credentials");
	config_path = aws_file_path("AWS_CONFIG_FILE", "config");
	if (!creds_path || !config_path) {
		rc = sm_error_last_code();
		goto done;
	}
	n = snprintf(tried, tried_size, "profile '%s' in '%s' and '%s'", profile, creds_path,
		     config_path);
	if (n < 0 || (size_t)n >= tried_size)
		snprintf(tried, tried_size, "the shared AWS files");

	rc = read_profile(creds_path, profile, 0, &creds_keys);
	if (rc)
		goto done;
	rc = read_profile(config_path, profile, 1, &config_keys);
	if (rc)
		goto done;

	if (!creds_keys.found && !config_keys.found) {
		if (explicit_profile)
			rc = sm_error_set(SM_EAUTH, "AWS profile '%s' not found in '%s' or '%s'; check "
					  "the vault's profile setting and AWS_PROFILE", profile,
					  creds_path, config_path);
		else
			rc = SM_AWS_NONE;
		goto done;
	}

	/* static keys in the credentials file, then credential_process, then the config file */
	if (creds_keys.values[KEY_ACCESS_KEY_ID] || creds_keys.values[KEY_SECRET_ACCESS_KEY]) {
		rc = need_pair(&creds_keys, creds_path, profile);
		if (rc == 0)
			take_static(&creds_keys, out, profile);
		goto done;
	}
	process = creds_keys.values[KEY_CREDENTIAL_PROCESS] ?
		  creds_keys.values[KEY_CREDENTIAL_PROCESS] : config_keys.values[KEY_CREDENTIAL_PROCESS];
	if (process) {
		rc = run_process(process, profile, config, out);
		if (rc == 0) {
			n = snprintf(out->source, sizeof(out->source),
				     "credential_process of profile '%s'", profile);
			if (n < 0 || (size_t)n >= sizeof(out->source))
				snprintf(out->source, sizeof(out->source), "credential_process");
		}
		goto done;
	}
	if (config_keys.values[KEY_ACCESS_KEY_ID] || config_keys.values[KEY_SECRET_ACCESS_KEY]) {
		rc = need_pair(&config_keys, config_path, profile);
		if (rc == 0)
			take_static(&config_keys, out, profile);
		goto done;
	}

	for (int i = KEY_ROLE_ARN; i < NKEYS && !unsupported; i++)
		if (creds_keys.values[i] || config_keys.values[i])
			unsupported = key_names[i];
	if (unsupported)
		rc = sm_error_set(SM_EUNSUPPORTED, "AWS profile '%s' uses %s, which skillmeat does not "
				  "support; give the profile aws_access_key_id and "
				  "aws_secret_access_key or a credential_process", profile, unsupported);
	else if (explicit_profile)
		rc = sm_error_set(SM_EAUTH, "AWS profile '%s' has no aws_access_key_id, "
				  "aws_secret_access_key or credential_process in '%s' or '%s'",
				  profile, creds_path, config_path);
	else
		rc = SM_AWS_NONE;
done:
	profile_keys_release(&creds_keys);
	profile_keys_release(&config_keys);
	free(creds_path);
	free(config_path);
	return rc;
}
