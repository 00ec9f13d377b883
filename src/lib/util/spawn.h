/*
 * Running helper programs with posix_spawn() and an argument vector, never
 * through a shell.
 *
 * A child's standard error always goes to an unlinked temporary file, and
 * captured standard output too, so a child that writes a lot can never
 * block on a full pipe while the parent waits or writes to it. Input given
 * as a buffer reaches the child the same way. Only the streaming modes
 * (SM_PROC_PIPE) use a pipe, and each child has at most one.
 */
#ifndef SM_SPAWN_H
#define SM_SPAWN_H

#include <sys/types.h>

#include "util/util.h"

/* Values of sm_proc_spec.stdin_fd and .stdout_fd besides a descriptor. */
#define SM_PROC_NULL (-1)    /* /dev/null */
#define SM_PROC_PIPE (-2)    /* a pipe the caller writes or reads: sm_proc.in / .out */
#define SM_PROC_CAPTURE (-3) /* stdout only: kept in a file, returned by sm_proc_wait() */

/* What to run. Strings and arrays are borrowed for the call. */
typedef struct sm_proc_spec {
	const char *const *argv;   /* argv[0] is the program's absolute path */
	const char *const *envp;   /* the child's whole environment */
	int stdin_fd;              /* SM_PROC_NULL, SM_PROC_PIPE, or a descriptor */
	const void *input;         /* with stdin_fd == SM_PROC_NULL: bytes given as stdin */
	size_t input_len;
	int stdout_fd;             /* SM_PROC_NULL, SM_PROC_PIPE, SM_PROC_CAPTURE or a descriptor */
	const char *tmp_dir;       /* where the temporary files go; NULL: /tmp */
	int keep_fd;               /* > 2: a close-on-exec descriptor the child keeps, same number */
} sm_proc_spec;

/* A running child. */
typedef struct sm_proc {
	pid_t pid;
	int in;        /* write end of the stdin pipe, or -1 */
	int out;       /* read end of the stdout pipe, or -1 */
	int out_file;  /* captured stdout, or -1 */
	int err_file;  /* captured stderr */
} sm_proc;

/* Starts a child. On failure nothing is left running and no descriptor is open. */
int sm_proc_start(sm_proc *proc, const sm_proc_spec *spec);

/*
 * Closes the pipes, waits for the child and reads what it wrote: stdout
 * (when captured) into `out` and stderr into `err`, each up to the buffer's
 * max, the rest dropped. Either may be NULL. `*status` receives the exit
 * status, or 128 + the signal number when a signal ended the child.
 */
int sm_proc_wait(sm_proc *proc, sm_buf *out, sm_buf *err, int *status);

/* Runs a child to completion: sm_proc_start() then sm_proc_wait(). */
int sm_proc_run(const sm_proc_spec *spec, sm_buf *out, sm_buf *err, int *status);

/*
 * Writes all of `data` to a pipe, with SIGPIPE blocked for this thread so
 * that a child that exits early makes the write fail with EPIPE instead of
 * killing the process. Returns 0, or -1 with errno set.
 */
int sm_pipe_write(int fd, const void *data, size_t len);

/* Runs `fn(arg)` with SIGPIPE blocked for this thread and discards any SIGPIPE it raised. */
int sm_without_sigpipe(int (*fn)(void *arg), void *arg);

/* Removes a directory tree without following symbolic links. A missing path is fine. */
int sm_remove_tree(const char *path);

#endif
