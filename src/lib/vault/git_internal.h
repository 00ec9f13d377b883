/*
 * Pure helpers of the git connector: URL checks, the GIT_SSH_COMMAND
 * line, redaction of git's error text, commit messages. No I/O, so the
 * unit tests call them directly.
 */
#ifndef SM_VAULT_GIT_INTERNAL_H
#define SM_VAULT_GIT_INTERNAL_H

#include <stddef.h>

/*
 * Checks a vault's repository URL before git ever sees it. Accepted:
 * https://, ssh:// and scp-like [user@]host:path; http:// only when
 * `allow_http`. Rejected with SM_EINVALID: other transports (file://,
 * ext::, fd::, ...), local paths, a URL, user, host or path starting with
 * '-', whitespace, control characters, a query or fragment, and a password
 * in the URL. The message quotes the URL only when it carries no password.
 */
int sm_git_check_url(const char *url, int allow_http);

/* Returns 1 when the URL is scp-like or ssh://, 0 for http(s). Assumes a checked URL. */
int sm_git_url_is_ssh(const char *url);

/*
 * Writes the host (without brackets) and port ("22" unless the URL names
 * one) of a checked ssh:// or scp-like URL. SM_EINVALID when they do not fit.
 */
int sm_git_ssh_target(const char *url, char *host, size_t host_size, char *port,
		      size_t port_size);

/*
 * Builds the value of GIT_SSH_COMMAND, which git runs with /bin/sh: ssh in
 * batch mode with host keys checked (StrictHostKeyChecking=yes, or
 * accept-new when `accept_new`), plus "-i KEY -o IdentitiesOnly=yes" when
 * `key_path` is set and "UserKnownHostsFile" when `known_hosts` is set.
 * Paths are quoted for the shell and '%' is doubled for ssh's own
 * expansion. A known_hosts path with '"' or '\' fails with SM_EINVALID,
 * because ssh splits that option's value itself.
 */
int sm_git_ssh_command(const char *key_path, const char *known_hosts, int accept_new,
		       char **out);

/*
 * Returns git's error output as one line: "hint:" lines and blank lines
 * dropped, the rest joined with "; ", control characters removed, at most
 * about 500 bytes. Every occurrence of each of the `nsecrets` strings,
 * passwords in URLs and Authorization header values become "***".
 */
char *sm_git_error_line(const char *text, const char *const *secrets, size_t nsecrets);

/* Writes "Add bundle ID" (or Replace/Remove per `verb`) into `out`; SM_EINVALID when it does not fit. */
int sm_git_commit_message(char *out, size_t size, const char *verb, const char *bundle_id);

#endif
