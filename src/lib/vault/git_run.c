/*
 * Running git for a vault: the child environment, the -c options that pin
 * transports and credentials, the askpass file, and git's errors.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vault/git_internal.h"
#include "vault/git_vault.h"

extern char **environ;

static char askpass_program[PATH_MAX];
static pthread_mutex_t askpass_lock = PTHREAD_MUTEX_INITIALIZER;

int sm_git_set_askpass(const char *program)
{
	int rc = 0;

	pthread_mutex_lock(&askpass_lock);
	if (!program)
		askpass_program[0] = '\0';
	else if (program[0] != '/' || strlen(program) >= sizeof(askpass_program))
		rc = sm_error_set(SM_EINVALID, "askpass program '%s' must be an absolute path "
				  "shorter than %zu bytes", program, sizeof(askpass_program));
	else
		strcpy(askpass_program, program);
	pthread_mutex_unlock(&askpass_lock);
	return rc;
}

void sm_git_notify(const git_vault *gv, sm_log_level level, const char *fmt, ...)
{
	char text[1024];
	va_list ap;

	if (!gv->callbacks->message)
		return;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	gv->callbacks->message(level, text, gv->callbacks->payload);
}

/*
 * Returns 1 for variables the children must not inherit: every GIT_*
 * variable (GIT_DIR, GIT_SSL_NO_VERIFY, GIT_TRACE_CURL, GIT_SSL_CAINFO,
 * ...), ssh's askpass, and the ones this file sets itself.
 */
static int stripped(const char *entry)
{
	static const char *const names[] = {
		"SSH_ASKPASS=", "SSH_ASKPASS_REQUIRE=", "LC_ALL=", "LANGUAGE=",
		SM_GIT_ASKPASS_ENV "=",
	};

	if (strncmp(entry, "GIT_", 4) == 0)
		return 1;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strncmp(entry, names[i], strlen(names[i])) == 0)
			return 1;
	return 0;
}

static void free_env(char **env)
{
	if (!env)
		return;
	for (char **p = env; *p; p++)
		free(*p);
	free(env);
}

static int build_env(git_vault *gv)
{
	const char *askpass = gv->askpass_file ? askpass_program : NULL;
	size_t n = 0, count = 0;
	char **env;
	int rc = 0;

	for (char **p = environ; p && *p; p++)
		count++;
	env = calloc(count + 16, sizeof(*env));
	if (!env)
		return sm_error_set(SM_ENOMEM, "out of memory");
	for (char **p = environ; p && *p; p++)
		if (!stripped(*p) && !(env[n++] = sm_strdup(*p)))
			rc = SM_ENOMEM;

	/* no prompts on the terminal, fixed messages to parse, no system config */
	env[n++] = sm_strdup("GIT_TERMINAL_PROMPT=0");
	env[n++] = sm_strdup("LC_ALL=C");
	env[n++] = sm_strdup("GIT_CONFIG_NOSYSTEM=1");
	env[n++] = sm_asprintf("GIT_SSH_COMMAND=%s", gv->ssh_command);
	env[n++] = sm_strdup("GIT_SSH_VARIANT=ssh");
	env[n++] = sm_asprintf("GIT_AUTHOR_NAME=%s", gv->author);
	env[n++] = sm_asprintf("GIT_AUTHOR_EMAIL=%s", gv->email);
	env[n++] = sm_asprintf("GIT_COMMITTER_NAME=%s", gv->author);
	env[n++] = sm_asprintf("GIT_COMMITTER_EMAIL=%s", gv->email);
	if (askpass) {
		env[n++] = sm_asprintf("GIT_ASKPASS=%s", askpass);
		env[n++] = sm_asprintf(SM_GIT_ASKPASS_ENV "=%s", gv->askpass_file);
	}
	for (size_t i = count; i < n; i++)
		if (!env[i])
			rc = SM_ENOMEM;
	if (rc) {
		free_env(env);
		return sm_error_set(SM_ENOMEM, "out of memory");
	}
	gv->env = env;
	return 0;
}

/* "scheme://host[:port]" of a checked http(s) URL, as git's prompts name it. */
static char *url_origin(const char *url)
{
	const char *authority = strstr(url, "://") + 3;
	size_t len = strcspn(authority, "/");
	const char *at = memrchr(authority, '@', len);
	const char *host = at ? at + 1 : authority;

	return sm_asprintf("%.*s%.*s", (int)(authority - url), url,
			   (int)(authority + len - host), host);
}

/*
 * Writes the askpass file: the origin the answers are for, the user name
 * and the password, one per line. It is a memory file that no directory
 * names: git and its helpers inherit it, other processes cannot open it
 * by a path, and it goes away with this process, however that ends.
 */
static int write_askpass_file(git_vault *gv)
{
	const char *user = gv->creds->fields[SM_CRED_USERNAME];
	const char *password = gv->creds->fields[SM_CRED_PASSWORD];
	char *origin = url_origin(gv->url);
	int fd, rc = 0;

	if (!origin)
		return SM_ENOMEM;
	fd = memfd_create("skillmeat-askpass", MFD_CLOEXEC);
	if (fd >= 0 && fd <= 2) {
		/* keep 0-2 free: the children get their standard streams there */
		int moved = fcntl(fd, F_DUPFD_CLOEXEC, 3);

		close(fd);
		fd = moved;
	}
	if (fd < 0) {
		rc = sm_error_set_errno(SM_EIO, errno, "cannot create a memory file for git's "
					"askpass helper");
		goto done;
	}
	gv->askpass_fd = fd;
	if (sm_write_all(fd, origin, strlen(origin)) != 0 || sm_write_all(fd, "\n", 1) != 0 ||
	    sm_write_all(fd, user, strlen(user)) != 0 || sm_write_all(fd, "\n", 1) != 0 ||
	    sm_write_all(fd, password, strlen(password)) != 0) {
		rc = sm_error_set_errno(SM_EIO, errno, "cannot write git's askpass file");
		goto done;
	}
	gv->askpass_file = sm_asprintf("/proc/self/fd/%d", fd);
	if (!gv->askpass_file)
		rc = SM_ENOMEM;
done:
	free(origin);
	return rc;
}

int sm_git_begin(git_vault *gv)
{
	const sm_credentials *creds = gv->creds;
	int rc;

	gv->damaged = 0;
	if (!gv->ssh && creds && creds->fields[SM_CRED_USERNAME] && creds->fields[SM_CRED_PASSWORD]) {
		pthread_mutex_lock(&askpass_lock);
		rc = askpass_program[0] ? 0 : SM_EAUTH;
		pthread_mutex_unlock(&askpass_lock);
		if (rc)
			return sm_error_set(SM_EAUTH, "vault '%s' has a stored password, but this program "
					    "did not name an askpass helper (sm_git_set_askpass) through "
					    "which git could read it", gv->config->name);
		rc = write_askpass_file(gv);
		if (rc) {
			sm_git_end(gv);
			return rc;
		}
	}
	rc = build_env(gv);
	if (rc)
		sm_git_end(gv);
	return rc;
}

void sm_git_end(git_vault *gv)
{
	if (gv->askpass_fd > 2) {
		struct stat st;

		/* the pages go back to the kernel on close; clear them first all the same */
		if (fstat(gv->askpass_fd, &st) == 0 && st.st_size > 0) {
			char zeros[512] = { 0 };

			for (off_t done = 0; done < st.st_size; done += (off_t)sizeof(zeros))
				if (pwrite(gv->askpass_fd, zeros, sizeof(zeros), done) < 0)
					break;
		}
		close(gv->askpass_fd);
	}
	gv->askpass_fd = 0;
	free(gv->askpass_file);
	gv->askpass_file = NULL;
	free_env(gv->env);
	gv->env = NULL;
}

#define MAX_ARGS 128

int sm_git_start(git_vault *gv, const git_cmd *cmd, sm_proc *proc)
{
	const char *argv[MAX_ARGS];
	char *git_dir = NULL, *ca = NULL;
	size_t n = 0;
	sm_proc_spec spec = { 0 };
	int rc;

	argv[n++] = SM_GIT_PROGRAM;
	if (!cmd->no_repo) {
		git_dir = sm_asprintf("--git-dir=%s", gv->repo);
		if (!git_dir)
			return SM_ENOMEM;
		argv[n++] = git_dir;
	}
	/* git may use https and ssh only, so a remote cannot steer it to ext:: or file:// */
	argv[n++] = "-c";
	argv[n++] = "protocol.allow=never";
	argv[n++] = "-c";
	argv[n++] = "protocol.https.allow=always";
	argv[n++] = "-c";
	argv[n++] = "protocol.ssh.allow=always";
	if (gv->allow_http) {
		argv[n++] = "-c";
		argv[n++] = "protocol.http.allow=always";
	}
	/* stored credentials replace the user's helpers, which must not answer first */
	argv[n++] = "-c";
	argv[n++] = gv->askpass_file ? "credential.helper=" : "core.askPass=";
	/* a private CA goes into ca_bundle; certificate checks stay on whatever ~/.gitconfig says */
	argv[n++] = "-c";
	argv[n++] = "http.sslVerify=true";
	argv[n++] = "-c";
	argv[n++] = "core.hooksPath=/dev/null";
	argv[n++] = "-c";
	argv[n++] = "gc.auto=0";
	argv[n++] = "-c";
	argv[n++] = "maintenance.auto=false";
	argv[n++] = "-c";
	argv[n++] = "http.lowSpeedLimit=1";
	argv[n++] = "-c";
	argv[n++] = "http.lowSpeedTime=60";
	if (gv->ca_bundle) {
		ca = sm_asprintf("http.sslCAInfo=%s", gv->ca_bundle);
		if (!ca) {
			free(git_dir);
			return SM_ENOMEM;
		}
		argv[n++] = "-c";
		argv[n++] = ca;
	}
	for (size_t i = 0; cmd->args[i]; i++) {
		if (n + 1 >= MAX_ARGS) {
			free(git_dir);
			free(ca);
			return sm_error_set(SM_EINVALID, "too many arguments for git");
		}
		argv[n++] = cmd->args[i];
	}
	argv[n] = NULL;

	spec.argv = argv;
	spec.envp = (const char *const *)gv->env;
	spec.stdin_fd = cmd->stdin_fd ? cmd->stdin_fd : SM_PROC_NULL;
	spec.input = cmd->input;
	spec.input_len = cmd->input_len;
	spec.stdout_fd = cmd->stdout_fd ? cmd->stdout_fd : SM_PROC_CAPTURE;
	spec.tmp_dir = gv->cache_dir;
	spec.keep_fd = gv->askpass_fd;
	rc = sm_proc_start(proc, &spec);
	if (rc == SM_ENOTFOUND)
		rc = sm_error_set(SM_ENOTFOUND, "cannot run %s: install git to use git vaults",
				  SM_GIT_PROGRAM);
	free(git_dir);
	free(ca);
	return rc;
}

int sm_git_run(git_vault *gv, const git_cmd *cmd, sm_buf *out, sm_buf *err, int *status)
{
	sm_proc proc;
	int rc = sm_git_start(gv, cmd, &proc);

	if (rc)
		return rc;
	return sm_proc_wait(&proc, out, err, status);
}

static int contains(const char *text, const char *const *needles)
{
	for (size_t i = 0; needles[i]; i++)
		if (strcasestr(text, needles[i]))
			return 1;
	return 0;
}

int sm_git_fail(git_vault *gv, const char *what, const char *stderr_text)
{
	static const char *const host_key[] = {
		"Host key verification failed", "REMOTE HOST IDENTIFICATION HAS CHANGED",
		"host key is known", NULL
	};
	static const char *const auth[] = {
		"Authentication failed", "could not read Username", "could not read Password",
		"terminal prompts disabled", "Permission denied", "error: 401", "error: 403",
		"HTTP 401", "HTTP 403", "Invalid username or password", NULL
	};
	static const char *const tls[] = {
		"SSL certificate problem", "server certificate verification failed",
		"unable to get local issuer certificate", NULL
	};
	static const char *const not_found[] = {
		"Repository not found", "does not appear to be a git repository", "error: 404",
		"HTTP 404", "No such file or directory", NULL
	};
	static const char *const network[] = {
		"Could not resolve", "Connection refused", "Connection timed out",
		"Connection reset", "Failed to connect", "Operation timed out", "timed out",
		"unable to access", "early EOF", "remote end hung up", "Network is unreachable",
		"Could not read from remote repository", "SSL", NULL
	};
	static const char *const broken[] = {
		"not a git repository", "bad object", "corrupt", "unable to read",
		"missing blob", "missing tree", "loose object", "packfile", "bad file",
		"invalid object", NULL
	};
	const char *secrets[1] = { NULL };
	char *hint = NULL, *line;
	int code = SM_ERROR;

	if (gv->creds)
		secrets[0] = gv->creds->fields[SM_CRED_PASSWORD];
	line = sm_git_error_line(stderr_text, secrets, 1);
	if (!line)
		return SM_ENOMEM;

	if (contains(stderr_text, host_key)) {
		const char *file = gv->known_hosts ? gv->known_hosts
			: gv->home_known_hosts ? gv->home_known_hosts : "~/.ssh/known_hosts";
		char host[256] = "HOST", port[16] = "PORT";

		if (sm_git_ssh_target(gv->url, host, sizeof(host), port, sizeof(port)) != 0)
			snprintf(host, sizeof(host), "HOST");
		code = SM_EAUTH;
		hint = sm_asprintf("; the SSH host key of '%s' is unknown or changed: "
			 "compare its fingerprint with one the server's owner gives you, then add it "
			 "with 'ssh-keyscan -p %s %s >> %s', or set accept_new_host_keys = true for "
			 "this vault to trust a new host on first use", host, port, host, file);
	} else if (contains(stderr_text, auth)) {
		code = SM_EAUTH;
		hint = sm_asprintf("; check the credentials with 'skillmeat vault auth %s'",
				   gv->config->name);
	} else if (contains(stderr_text, tls)) {
		code = SM_ENETWORK;
		hint = sm_strdup("; if the server uses a private CA, set ca_bundle for this vault");
	} else if (contains(stderr_text, not_found)) {
		code = SM_ENOTFOUND;
	} else if (contains(stderr_text, network)) {
		code = SM_ENETWORK;
	} else if (contains(stderr_text, broken)) {
		gv->damaged = 1;
	}
	code = sm_error_set(code, "%s for vault '%s' failed: %s%s", what, gv->config->name, line,
			    hint ? hint : "");
	free(hint);
	free(line);
	return code;
}

/* Finds the value of "key" in "Username for 'https://host': " style prompts' URL. */
static int prompt_matches(const char *prompt, const char *origin)
{
	const char *start = strchr(prompt, '\''), *end, *scheme_end, *host, *at;
	size_t scheme_len, host_len;

	if (!start)
		return 0;
	start++;
	end = strchr(start, '\'');
	scheme_end = strstr(start, "://");
	if (!end || !scheme_end || scheme_end > end)
		return 0;
	scheme_len = (size_t)(scheme_end + 3 - start);
	host = scheme_end + 3;
	at = memrchr(host, '@', (size_t)(end - host));
	if (at)
		host = at + 1;
	host_len = (size_t)(end - host);
	return strlen(origin) == scheme_len + host_len && strncasecmp(origin, start, scheme_len) == 0 &&
	       strncasecmp(origin + scheme_len, host, host_len) == 0;
}

/* The descriptor named by "/proc/self/fd/N", or -1. */
static int askpass_descriptor(const char *path)
{
	const char *digits = path + strlen("/proc/self/fd/");
	char *end;
	long fd;

	if (strncmp(path, "/proc/self/fd/", strlen("/proc/self/fd/")) != 0 ||
	    !isdigit((unsigned char)*digits))
		return -1;
	errno = 0;
	fd = strtol(digits, &end, 10);
	if (errno || *end || fd <= 2 || fd > INT_MAX)
		return -1;
	return (int)fd;
}

int sm_git_askpass_main(const char *prompt)
{
	const char *path = getenv(SM_GIT_ASKPASS_ENV);
	char text[8192];
	char *user, *password;
	ssize_t len = 0, n;
	struct stat st;
	int fd, code = 1;

	if (!path || !prompt)
		return 1;
	/* only an inherited memory file: never a path some other program put there */
	fd = askpass_descriptor(path);
	if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_nlink != 0)
		return 1;
	while (len < (ssize_t)sizeof(text) - 1 &&
	       (n = pread(fd, text + len, sizeof(text) - 1 - (size_t)len, len)) > 0)
		len += n;
	text[len] = '\0';
	user = strchr(text, '\n');
	password = user ? strchr(user + 1, '\n') : NULL;
	if (!password)
		goto done;
	*user++ = '\0';
	*password++ = '\0';
	/* answer only for the vault's own server, not for a host a redirect named */
	if (!prompt_matches(prompt, text))
		goto done;
	if (strncmp(prompt, "Username", 8) == 0)
		code = sm_write_all(STDOUT_FILENO, user, strlen(user)) != 0;
	else if (strncmp(prompt, "Password", 8) == 0)
		code = sm_write_all(STDOUT_FILENO, password, strlen(password)) != 0;
	if (!code)
		code = sm_write_all(STDOUT_FILENO, "\n", 1) != 0;
done:
	explicit_bzero(text, sizeof(text));
	return code;
}
