/*
 * State of one git vault and the runner of the git program, shared by the
 * connector (git.c) and the process layer (git_run.c).
 */
#ifndef SM_VAULT_GIT_VAULT_H
#define SM_VAULT_GIT_VAULT_H

#include "skillmeat/credentials.h"
#include "skillmeat/vault.h"
#include "util/spawn.h"
#include "util/util.h"

/* The git program; Debian installs it here. */
#define SM_GIT_PROGRAM "/usr/bin/git"

/*
 * Environment variable naming the file the askpass helper answers from:
 * "/proc/self/fd/N", a memory-only file that git and its helpers inherit
 * as descriptor N and that disappears with this process, even on SIGKILL.
 */
#define SM_GIT_ASKPASS_ENV "SKILLMEAT_ASKPASS_FILE"

typedef struct git_vault {
	sm_vault parent;
	const sm_vault_config *config;
	const sm_callbacks *callbacks;

	/* settings */
	const char *url;
	const char *branch;
	const char *known_hosts;  /* NULL: the user's */
	const char *ca_bundle;    /* NULL: git's default */
	const char *author;
	const char *email;
	int allow_http;
	int accept_new_host_keys;
	int ssh;                  /* ssh:// or scp-like, else http(s) */

	/* derived */
	char *cache_dir;          /* $SKILLMEAT_HOME/cache/git/<name>-<hash> */
	char *repo;               /* <cache_dir>/repo.git, a bare partial clone */
	char *lock_path;          /* <cache_dir>.lock */
	char *tip_ref;            /* refs/remotes/origin/<branch> */
	char *ssh_command;        /* GIT_SSH_COMMAND */
	char *home_known_hosts;   /* $HOME/.ssh/known_hosts when ssh would not read it, or NULL */
	sm_credentials *creds;

	/* during one operation */
	char **env;               /* the children's environment */
	int askpass_fd;           /* memory file with the askpass answers, > 2 while open */
	char *askpass_file;       /* "/proc/self/fd/<askpass_fd>", or NULL */
	int damaged;              /* git reported a broken cache repository */

	/* when this handle last fetched the branch (CLOCK_MONOTONIC), if it did */
	struct timespec fetched_at;
	int fetched;
} git_vault;

/* Sends one message through the callbacks. */
void sm_git_notify(const git_vault *gv, sm_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/*
 * Prepares one operation: the askpass file (when username and password are
 * stored and the URL is http(s)) and the children's environment.
 */
int sm_git_begin(git_vault *gv);

/* Undoes sm_git_begin(): wipes and closes the askpass file, frees the environment. */
void sm_git_end(git_vault *gv);

/* One git invocation. `args` ends with NULL; git runs with --git-dir=<repo> unless `no_repo`. */
typedef struct git_cmd {
	const char *const *args;
	int no_repo;
	const void *input;        /* stdin bytes, or NULL */
	size_t input_len;
	int stdin_fd;             /* SM_PROC_PIPE for streaming, else SM_PROC_NULL */
	int stdout_fd;            /* SM_PROC_CAPTURE (default when 0), SM_PROC_PIPE or SM_PROC_NULL */
} git_cmd;

/* Starts git; the caller streams through proc->in / proc->out and calls sm_proc_wait(). */
int sm_git_start(git_vault *gv, const git_cmd *cmd, sm_proc *proc);

/*
 * Runs git to completion. `out` receives stdout (may be NULL), `err` its
 * stderr (may be NULL), `*status` the exit status. Fails only when git
 * cannot be run; a non-zero exit is the caller's to judge.
 */
int sm_git_run(git_vault *gv, const git_cmd *cmd, sm_buf *out, sm_buf *err, int *status);

/*
 * Sets the error for a failed git command from its stderr: the code from
 * git's message (SM_EAUTH, SM_ENOTFOUND, SM_ENETWORK, else SM_ERROR), the
 * text redacted and on one line, and what to do next where known. Marks
 * the cache damaged when git reports a broken repository.
 */
int sm_git_fail(git_vault *gv, const char *what, const char *stderr_text);

#endif
