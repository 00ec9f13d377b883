/* Child processes: posix_spawn() with an argument vector and captured output. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "util/spawn.h"

/* Opens an unnamed read-write file in `dir` (a hidden, unlinked one where O_TMPFILE fails). */
static int open_unnamed(const char *dir)
{
	char path[4096];
	int fd, n;

	if (!dir)
		dir = "/tmp";
	fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd >= 0)
		return fd;
	n = snprintf(path, sizeof(path), "%s/.spawn-XXXXXX", dir);
	if (n < 0 || (size_t)n >= sizeof(path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	fd = mkostemp(path, O_CLOEXEC);
	if (fd >= 0)
		unlink(path);
	return fd;
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/* Reads a whole file from offset 0 into `buf`, keeping what fits under its max. */
static int slurp(int fd, sm_buf *buf)
{
	char chunk[8192];
	off_t offset = 0;
	ssize_t n;

	while ((n = pread(fd, chunk, sizeof(chunk), offset)) != 0) {
		size_t room;

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return sm_error_set_errno(SM_EIO, errno, "cannot read the output of a child process");
		}
		offset += n;
		room = (size_t)n;
		if (buf->max)
			room = buf->max > buf->len ? buf->max - buf->len : 0;
		if (room > (size_t)n)
			room = (size_t)n;
		if (room && sm_buf_put(buf, chunk, room) != 0)
			return SM_ENOMEM;
	}
	/* make data non-NULL and terminated even for empty output */
	return sm_buf_put(buf, "", 0);
}

int sm_proc_start(sm_proc *proc, const sm_proc_spec *spec)
{
	posix_spawn_file_actions_t actions;
	posix_spawnattr_t attr;
	sigset_t none, pipe_only;
	int in_pipe[2] = { -1, -1 }, out_pipe[2] = { -1, -1 };
	int in_file = -1, null_fd = -1;
	int child_in, child_out, rc = 0, err;

	proc->pid = -1;
	proc->in = proc->out = proc->out_file = proc->err_file = -1;

	null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
	proc->err_file = open_unnamed(spec->tmp_dir);
	if (null_fd < 0 || proc->err_file < 0) {
		rc = sm_error_set_errno(SM_EIO, errno, "cannot create a temporary file in '%s'",
					spec->tmp_dir ? spec->tmp_dir : "/tmp");
		goto fail;
	}

	/* stdin */
	child_in = null_fd;
	if (spec->stdin_fd == SM_PROC_PIPE) {
		if (pipe2(in_pipe, O_CLOEXEC) != 0) {
			rc = sm_error_set_errno(SM_EIO, errno, "cannot create a pipe");
			goto fail;
		}
		child_in = in_pipe[0];
	} else if (spec->stdin_fd >= 0) {
		child_in = spec->stdin_fd;
	} else if (spec->input) {
		in_file = open_unnamed(spec->tmp_dir);
		if (in_file < 0 || sm_write_all(in_file, spec->input, spec->input_len) != 0 ||
		    lseek(in_file, 0, SEEK_SET) != 0) {
			rc = sm_error_set_errno(SM_EIO, errno, "cannot write the input of a child process");
			goto fail;
		}
		child_in = in_file;
	}

	/* stdout */
	child_out = null_fd;
	if (spec->stdout_fd == SM_PROC_PIPE) {
		if (pipe2(out_pipe, O_CLOEXEC) != 0) {
			rc = sm_error_set_errno(SM_EIO, errno, "cannot create a pipe");
			goto fail;
		}
		child_out = out_pipe[1];
	} else if (spec->stdout_fd == SM_PROC_CAPTURE) {
		proc->out_file = open_unnamed(spec->tmp_dir);
		if (proc->out_file < 0) {
			rc = sm_error_set_errno(SM_EIO, errno, "cannot create a temporary file");
			goto fail;
		}
		child_out = proc->out_file;
	} else if (spec->stdout_fd >= 0) {
		child_out = spec->stdout_fd;
	}

	/* the child starts with no blocked signals and the default SIGPIPE action */
	sigemptyset(&none);
	sigemptyset(&pipe_only);
	sigaddset(&pipe_only, SIGPIPE);
	posix_spawnattr_init(&attr);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setsigdefault(&attr, &pipe_only);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
	posix_spawn_file_actions_init(&actions);
	posix_spawn_file_actions_adddup2(&actions, child_in, 0);
	posix_spawn_file_actions_adddup2(&actions, child_out, 1);
	posix_spawn_file_actions_adddup2(&actions, proc->err_file, 2);
	/* dup2 onto itself clears close-on-exec in the child only (glibc 2.29 and later) */
	if (spec->keep_fd > 2)
		posix_spawn_file_actions_adddup2(&actions, spec->keep_fd, spec->keep_fd);
	err = posix_spawn(&proc->pid, spec->argv[0], &actions, &attr,
			  (char *const *)spec->argv, (char *const *)spec->envp);
	posix_spawn_file_actions_destroy(&actions);
	posix_spawnattr_destroy(&attr);
	if (err != 0) {
		proc->pid = -1;
		rc = sm_error_set_errno(err == ENOENT ? SM_ENOTFOUND : SM_ERROR, err,
					"cannot run '%s'", spec->argv[0]);
		goto fail;
	}

	close_fd(&in_pipe[0]);
	close_fd(&out_pipe[1]);
	close_fd(&in_file);
	close_fd(&null_fd);
	proc->in = in_pipe[1];
	proc->out = out_pipe[0];
	return 0;
fail:
	close_fd(&in_pipe[0]);
	close_fd(&in_pipe[1]);
	close_fd(&out_pipe[0]);
	close_fd(&out_pipe[1]);
	close_fd(&in_file);
	close_fd(&null_fd);
	close_fd(&proc->out_file);
	close_fd(&proc->err_file);
	return rc;
}

int sm_proc_wait(sm_proc *proc, sm_buf *out, sm_buf *err, int *status)
{
	int rc = 0, wstatus = 0;
	pid_t got;

	close_fd(&proc->in);
	close_fd(&proc->out);
	*status = -1;
	do {
		got = waitpid(proc->pid, &wstatus, 0);
	} while (got < 0 && errno == EINTR);
	if (got < 0) {
		rc = sm_error_set_errno(SM_ERROR, errno, "cannot wait for child process %d",
					(int)proc->pid);
		goto done;
	}
	if (WIFEXITED(wstatus))
		*status = WEXITSTATUS(wstatus);
	else if (WIFSIGNALED(wstatus))
		*status = 128 + WTERMSIG(wstatus);
	if (out && proc->out_file >= 0 && (rc = slurp(proc->out_file, out)) != 0)
		goto done;
	if (err)
		rc = slurp(proc->err_file, err);
done:
	proc->pid = -1;
	close_fd(&proc->out_file);
	close_fd(&proc->err_file);
	return rc;
}

int sm_proc_run(const sm_proc_spec *spec, sm_buf *out, sm_buf *err, int *status)
{
	sm_proc proc;
	int rc = sm_proc_start(&proc, spec);

	if (rc)
		return rc;
	return sm_proc_wait(&proc, out, err, status);
}

int sm_without_sigpipe(int (*fn)(void *arg), void *arg)
{
	sigset_t pipe_only, old, pending;
	struct timespec zero = { 0, 0 };
	int rc, saved;

	sigemptyset(&pipe_only);
	sigaddset(&pipe_only, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &pipe_only, &old);
	rc = fn(arg);
	saved = errno;
	/* a SIGPIPE raised while blocked stays pending: take it before unblocking */
	if (!sigismember(&old, SIGPIPE)) {
		sigpending(&pending);
		if (sigismember(&pending, SIGPIPE))
			sigtimedwait(&pipe_only, NULL, &zero);
		pthread_sigmask(SIG_SETMASK, &old, NULL);
	}
	errno = saved;
	return rc;
}

typedef struct write_args {
	int fd;
	const void *data;
	size_t len;
} write_args;

static int write_args_run(void *arg)
{
	write_args *w = arg;

	return sm_write_all(w->fd, w->data, w->len);
}

int sm_pipe_write(int fd, const void *data, size_t len)
{
	write_args w = { fd, data, len };

	return sm_without_sigpipe(write_args_run, &w);
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	if (type == FTW_DP)
		return rmdir(path) != 0 && errno != ENOENT ? -1 : 0;
	return unlink(path) != 0 && errno != ENOENT ? -1 : 0;
}

int sm_remove_tree(const char *path)
{
	struct stat st;

	if (lstat(path, &st) != 0)
		return errno == ENOENT ? 0 : sm_error_set_errno(SM_EIO, errno, "cannot access '%s'", path);
	if (nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
		return sm_error_set_errno(SM_EIO, errno, "cannot remove '%s'", path);
	return 0;
}
