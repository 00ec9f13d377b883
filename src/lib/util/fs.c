/* File helpers: whole-file reads, atomic replacement, locks, hashed copies. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "util.h"

/* Chunk size of copies and hashes: large enough for full disk speed,
 * small enough to keep the resident set a few MiB. */
#define COPY_CHUNK (1024 * 1024)

int sm_open_regular(const char *path, int *rc)
{
	struct stat st;
	int fd, flags;

	/* O_NONBLOCK keeps a FIFO from blocking the open; it is cleared after */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0) {
		*rc = sm_error_set_errno(errno == ENOENT ? SM_ENOTFOUND :
					 errno == EACCES || errno == EPERM ? SM_EREADONLY : SM_EIO,
					 errno, "cannot open '%s'", path);
		return -1;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		*rc = sm_error_set(SM_EINVALID, "'%s' is not a regular file", path);
		return -1;
	}
	flags = fcntl(fd, F_GETFL);
	if (flags >= 0)
		fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
	*rc = 0;
	return fd;
}

int sm_read_file(const char *path, size_t max, char **out, size_t *len)
{
	sm_buf buf = SM_BUF_INIT(max);
	char chunk[65536];
	int fd, rc = 0;
	ssize_t n;

	*out = NULL;
	fd = sm_open_regular(path, &rc);
	if (fd < 0)
		return rc;
	while ((n = read(fd, chunk, sizeof(chunk))) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			rc = sm_error_set_errno(SM_EIO, errno, "cannot read '%s'", path);
			break;
		}
		if ((rc = sm_buf_put(&buf, chunk, (size_t)n)) != 0) {
			if (rc == SM_EINVALID)
				sm_error_set(rc, "file '%s' is larger than %zu bytes", path, max);
			break;
		}
	}
	close(fd);
	if (rc) {
		sm_buf_release(&buf);
		return rc;
	}
	if (len)
		*len = buf.len;
	*out = sm_buf_take(&buf);
	return *out ? 0 : SM_ENOMEM;
}

static char *dir_of(const char *path)
{
	char *copy = sm_strdup(path), *dir;

	if (!copy)
		return NULL;
	dir = sm_strdup(dirname(copy));
	free(copy);
	return dir;
}

int sm_fsync_parent(const char *path)
{
	char *dir = dir_of(path);
	int fd, rc = 0;

	if (!dir)
		return SM_ENOMEM;
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		rc = sm_error_set_errno(SM_EIO, errno, "cannot open directory '%s'", dir);
	} else {
		if (fsync(fd) != 0 && errno != EINVAL)
			rc = sm_error_set_errno(SM_EIO, errno, "cannot sync directory '%s'", dir);
		close(fd);
	}
	free(dir);
	return rc;
}

int sm_tmpfile_beside(const char *path, mode_t mode, char **tmp_path, int *fd)
{
	char *copy = sm_strdup(path), *dir, *base, *tmp = NULL;
	int rc = 0;

	*tmp_path = NULL;
	*fd = -1;
	if (!copy)
		return SM_ENOMEM;
	base = strrchr(copy, '/');
	if (base) {
		*base++ = '\0';
		dir = *copy ? copy : "/";
	} else {
		base = copy;
		dir = ".";
	}
	/* a random suffix retried on collision; O_EXCL makes the claim atomic */
	for (int attempt = 0; attempt < 100; attempt++) {
		unsigned char rnd[6];
		char hex[13];
		int f = open("/dev/urandom", O_RDONLY | O_CLOEXEC);

		if (f < 0 || read(f, rnd, sizeof(rnd)) != (ssize_t)sizeof(rnd)) {
			if (f >= 0)
				close(f);
			rc = sm_error_set_errno(SM_EIO, errno, "cannot read /dev/urandom");
			goto done;
		}
		close(f);
		sm_hex(rnd, sizeof(rnd), hex);
		free(tmp);
		tmp = sm_asprintf("%s/.%s.tmp-%s", dir, base, hex);
		if (!tmp) {
			rc = SM_ENOMEM;
			goto done;
		}
		*fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
		if (*fd >= 0) {
			*tmp_path = tmp;
			tmp = NULL;
			goto done;
		}
		if (errno != EEXIST) {
			rc = sm_error_set_errno(errno == EACCES || errno == EROFS ? SM_EREADONLY : SM_EIO,
						errno, "cannot create a file in '%s'", dir);
			goto done;
		}
	}
	rc = sm_error_set(SM_EIO, "cannot create a temporary file in '%s'", dir);
done:
	free(tmp);
	free(copy);
	return rc;
}

int sm_commit_tmpfile(int fd, const char *tmp_path, const char *path)
{
	if (fsync(fd) != 0)
		return sm_error_set_errno(SM_EIO, errno, "cannot sync '%s'", tmp_path);
	if (rename(tmp_path, path) != 0)
		return sm_error_set_errno(SM_EIO, errno, "cannot rename to '%s'", path);
	return sm_fsync_parent(path);
}

int sm_write_all(int fd, const void *data, size_t len)
{
	const char *p = data;

	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int sm_write_file_atomic(const char *path, const void *data, size_t len, mode_t mode)
{
	struct stat st;
	char *tmp = NULL;
	int fd = -1, rc;

	if (stat(path, &st) == 0)
		mode = st.st_mode & 07777;
	rc = sm_tmpfile_beside(path, mode, &tmp, &fd);
	if (rc)
		return rc;
	/* open() applies the umask; set the intended mode explicitly */
	if (fchmod(fd, mode) != 0 || sm_write_all(fd, data, len) != 0) {
		rc = sm_error_set_errno(SM_EIO, errno, "cannot write '%s'", tmp);
		goto done;
	}
	rc = sm_commit_tmpfile(fd, tmp, path);
done:
	if (fd >= 0)
		close(fd);
	if (rc && tmp)
		unlink(tmp);
	free(tmp);
	return rc;
}

int sm_mkdir_p(const char *path, mode_t mode)
{
	char *copy = sm_strdup(path);
	int rc = 0;

	if (!copy)
		return SM_ENOMEM;
	for (char *p = copy + 1;; p++) {
		if (*p != '/' && *p != '\0')
			continue;
		char saved = *p;

		*p = '\0';
		if (mkdir(copy, mode) != 0 && errno != EEXIST) {
			rc = sm_error_set_errno(errno == EACCES || errno == EROFS ? SM_EREADONLY : SM_EIO,
						errno, "cannot create directory '%s'", copy);
			break;
		}
		*p = saved;
		if (!saved)
			break;
	}
	free(copy);
	return rc;
}

int sm_lock(const char *lock_path, int *fd)
{
	*fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (*fd < 0)
		return sm_error_set_errno(errno == EACCES || errno == EROFS ? SM_EREADONLY : SM_EIO,
					  errno, "cannot open lock file '%s'", lock_path);
	while (flock(*fd, LOCK_EX) != 0) {
		if (errno == EINTR)
			continue;
		int saved = errno;

		close(*fd);
		*fd = -1;
		return sm_error_set_errno(SM_EIO, saved, "cannot lock '%s'", lock_path);
	}
	return 0;
}

void sm_unlock(int fd)
{
	if (fd >= 0)
		close(fd); /* closing the last descriptor releases the flock */
}

/*
 * Writes `len` bytes at `offset` of `in` to `out`: in-kernel with
 * copy_file_range() where the file systems allow it (a reflink on btrfs or
 * XFS), else from `chunk`, which already contains those bytes.
 */
static int copy_range(int in, int out, off_t offset, const char *chunk, size_t len,
		      int *use_cfr)
{
	size_t done = 0;

	while (*use_cfr && done < len) {
		off_t in_off = offset + (off_t)done;
		ssize_t n = copy_file_range(in, &in_off, out, NULL, len - done, 0);

		if (n > 0) {
			done += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno != EXDEV && errno != ENOSYS && errno != EINVAL &&
		    errno != EOPNOTSUPP && errno != EBADF)
			return -1;
		/* not supported here (or a short source): write the buffer instead */
		*use_cfr = 0;
	}
	return sm_write_all(out, chunk + done, len - done);
}

int sm_copy_hash(int in, int out, unsigned char sha256[32], uint64_t *bytes,
		 sm_copy_progress progress, void *payload)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	char *chunk = malloc(COPY_CHUNK);
	off_t offset = 0;
	int use_cfr = out >= 0;
	uint64_t total = 0;
	int rc = 0;
	ssize_t n;

	if (!ctx || !chunk || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL)) {
		rc = sm_error_set(SM_ENOMEM, "cannot set up SHA-256");
		goto done;
	}
	/*
	 * pread leaves the descriptor's offset alone, so another thread may
	 * read the same descriptor. Each chunk is read once for the hash and
	 * the copy reuses the page cache.
	 */
	while ((n = pread(in, chunk, COPY_CHUNK, offset)) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			rc = sm_error_set_errno(SM_EIO, errno, "read failed");
			goto done;
		}
		EVP_DigestUpdate(ctx, chunk, (size_t)n);
		if (out >= 0 && copy_range(in, out, offset, chunk, (size_t)n, &use_cfr) != 0) {
			rc = sm_error_set_errno(SM_EIO, errno, "write failed");
			goto done;
		}
		offset += n;
		total += (uint64_t)n;
		if (progress)
			progress(total, payload);
	}
	EVP_DigestFinal_ex(ctx, sha256, NULL);
	if (bytes)
		*bytes = total;
done:
	EVP_MD_CTX_free(ctx);
	free(chunk);
	return rc;
}

int sm_sha256_file(const char *path, unsigned char sha256[32], uint64_t *bytes)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC), rc;

	if (fd < 0)
		return sm_error_set_errno(errno == ENOENT ? SM_ENOTFOUND : SM_EIO, errno,
					  "cannot open '%s'", path);
	rc = sm_copy_hash(fd, -1, sha256, bytes, NULL, NULL);
	close(fd);
	return rc;
}

int sm_staging_open(const char *dir, const char *dest, char **path, int *fd, int *anonymous)
{
	*anonymous = 0;
	*fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0644);
	if (*fd >= 0) {
		*path = sm_asprintf("/proc/self/fd/%d", *fd);
		if (*path && access(*path, F_OK) == 0) {
			*anonymous = 1;
			return 0;
		}
		free(*path);
		close(*fd);
	}
	return sm_tmpfile_beside(dest, 0644, path, fd);
}

int sm_staging_replace(const char *staged, int anonymous, const char *dest)
{
	char *named = NULL;
	int rc = 0;

	/* rename() needs a name: an anonymous file gets a hidden one first */
	if (anonymous) {
		const char *slash = strrchr(dest, '/');

		named = slash ? sm_asprintf("%.*s/.%s.tmp-%ld", (int)(slash - dest), dest, slash + 1,
					    (long)getpid())
			: sm_asprintf(".%s.tmp-%ld", dest, (long)getpid());
		if (!named)
			return SM_ENOMEM;
		unlink(named);
		if (linkat(AT_FDCWD, staged, AT_FDCWD, named, AT_SYMLINK_FOLLOW) != 0) {
			rc = sm_error_set_errno(SM_EIO, errno, "cannot create '%s'", named);
			goto done;
		}
		staged = named;
	}
	if (rename(staged, dest) != 0) {
		rc = sm_error_set_errno(SM_EIO, errno, "cannot rename to '%s'", dest);
		if (named)
			unlink(named);
	}
done:
	free(named);
	return rc;
}
