/*
 * Small file operations on the SFTP server. Each maps a failure to an
 * sm_error_code through sftp_fail(), except "does not exist", which the
 * callers expect and which returns SM_ENOTFOUND without a message.
 */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>

#include "sftp_internal.h"

/* Returns 1 when the last failure was an SFTP "no such file" status. */
static int last_was_missing(sftp_vault *sv)
{
	unsigned long status;

	if (libssh2_session_last_errno(sv->session) != LIBSSH2_ERROR_SFTP_PROTOCOL)
		return 0;
	status = libssh2_sftp_last_error(sv->sftp);
	return status == LIBSSH2_FX_NO_SUCH_FILE || status == LIBSSH2_FX_NO_SUCH_PATH;
}

int remote_stat(sftp_vault *sv, const char *path, LIBSSH2_SFTP_ATTRIBUTES *attrs)
{
	if (libssh2_sftp_stat_ex(sv->sftp, path, (unsigned int)strlen(path), LIBSSH2_SFTP_LSTAT,
				 attrs) == 0)
		return 0;
	if (last_was_missing(sv))
		return SM_ENOTFOUND;
	return sftp_fail(sv, "stat", path);
}

int remote_check_file(sftp_vault *sv, const char *path)
{
	LIBSSH2_SFTP_ATTRIBUTES attrs;
	int rc = remote_stat(sv, path, &attrs);

	if (rc)
		return rc;
	if ((attrs.flags & LIBSSH2_SFTP_ATTR_PERMISSIONS) && !LIBSSH2_SFTP_S_ISREG(attrs.permissions))
		return sm_error_set(SM_EINTEGRITY, "'%s' on '%s' is a symbolic link or special file, "
				    "not a regular file; remove it from the vault", path, sv->host);
	return 0;
}

int remote_read(sftp_vault *sv, const char *path, size_t max, char **out, size_t *len)
{
	LIBSSH2_SFTP_HANDLE *handle;
	char *data = NULL;
	size_t n = 0, cap = 0;
	int rc = 0;

	*out = NULL;
	*len = 0;
	/* SFTP has no O_NOFOLLOW: a link to a file outside the vault must not be read */
	rc = remote_check_file(sv, path);
	if (rc)
		return rc;
	handle = libssh2_sftp_open_ex(sv->sftp, path, (unsigned int)strlen(path), LIBSSH2_FXF_READ,
				      0, LIBSSH2_SFTP_OPENFILE);
	if (!handle)
		return last_was_missing(sv) ? SM_ENOTFOUND : sftp_fail(sv, "open", path);
	for (;;) {
		ssize_t got;

		if (cap - n < 65536 + 1) {
			char *grown;

			cap = cap ? cap * 2 : 131072;
			grown = realloc(data, cap);
			if (!grown) {
				rc = sm_error_set(SM_ENOMEM, "out of memory");
				goto done;
			}
			data = grown;
		}
		got = libssh2_sftp_read(handle, data + n, cap - n - 1);
		if (got < 0) {
			rc = sftp_fail(sv, "read", path);
			goto done;
		}
		if (got == 0)
			break;
		n += (size_t)got;
		if (n > max) {
			rc = sm_error_set(SM_EINVALID, "'%s' on '%s' is larger than %zu bytes",
					  path, sv->host, max);
			goto done;
		}
	}
	data[n] = '\0';
	*out = data;
	*len = n;
	data = NULL;
done:
	libssh2_sftp_close_handle(handle);
	free(data);
	return rc;
}

int remote_mkdir(sftp_vault *sv, const char *path)
{
	LIBSSH2_SFTP_ATTRIBUTES attrs;
	int rc;

	if (libssh2_sftp_mkdir_ex(sv->sftp, path, (unsigned int)strlen(path), 0755) == 0)
		return 0;
	/* SFTP v3 has no "already exists" status: look at what is there */
	rc = remote_stat(sv, path, &attrs);
	if (rc == 0 && LIBSSH2_SFTP_S_ISDIR(attrs.permissions))
		return 0;
	if (rc == 0)
		return sm_error_set(SM_EINVALID, "'%s' on '%s' exists and is not a directory",
				    path, sv->host);
	if (rc == SM_ENOTFOUND)
		return sm_error_set(SM_EREADONLY, "cannot create directory '%s' on '%s'", path, sv->host);
	return rc;
}

int remote_unlink(sftp_vault *sv, const char *path)
{
	if (libssh2_sftp_unlink_ex(sv->sftp, path, (unsigned int)strlen(path)) == 0)
		return 0;
	if (last_was_missing(sv))
		return SM_ENOTFOUND;
	return sftp_fail(sv, "remove", path);
}

int remote_rename(sftp_vault *sv, const char *from, const char *to)
{
	/*
	 * libssh2 1.10 sends the flags only to SFTP v5 servers. OpenSSH speaks
	 * v3, where rename fails when `to` exists; libssh2 1.10 cannot send
	 * OpenSSH's posix-rename@openssh.com extension.
	 */
	if (libssh2_sftp_rename_ex(sv->sftp, from, (unsigned int)strlen(from), to,
				   (unsigned int)strlen(to),
				   LIBSSH2_SFTP_RENAME_OVERWRITE | LIBSSH2_SFTP_RENAME_ATOMIC |
				   LIBSSH2_SFTP_RENAME_NATIVE) == 0)
		return 0;
	if (last_was_missing(sv))
		return SM_ENOTFOUND;
	return sftp_fail(sv, "rename to", to);
}

char *remote_temp_name(sftp_vault *sv, const char *dest)
{
	const char *slash = strrchr(dest, '/');
	int dir_len = slash ? (int)(slash - dest + 1) : 0;

	return sftp_asprintf("%.*s.%s.tmp-%s-%u", dir_len, dest, slash ? slash + 1 : dest,
			     sv->token, ++sv->temp_serial);
}

int remote_write_temp(sftp_vault *sv, const char *dest, const char *text, size_t len,
		      char **tmp, uint64_t *server_time)
{
	LIBSSH2_SFTP_HANDLE *handle = NULL;
	LIBSSH2_SFTP_ATTRIBUTES attrs;
	char *path = remote_temp_name(sv, dest);
	size_t done = 0;
	int rc = 0;

	*tmp = NULL;
	if (!path)
		return SM_ENOMEM;
	handle = libssh2_sftp_open_ex(sv->sftp, path, (unsigned int)strlen(path),
				      LIBSSH2_FXF_WRITE | LIBSSH2_FXF_CREAT | LIBSSH2_FXF_EXCL,
				      0644, LIBSSH2_SFTP_OPENFILE);
	if (!handle) {
		rc = sftp_fail(sv, "create", path);
		free(path);
		return rc;
	}
	while (done < len) {
		ssize_t n = libssh2_sftp_write(handle, text + done, len - done);

		if (n < 0) {
			rc = sftp_fail(sv, "write", path);
			goto done;
		}
		done += (size_t)n;
	}
	/* fsync@openssh.com; servers without the extension still get the data */
	libssh2_sftp_fsync(handle);
	if (server_time) {
		if (libssh2_sftp_fstat(handle, &attrs) != 0) {
			rc = sftp_fail(sv, "stat", path);
			goto done;
		}
		*server_time = attrs.mtime;
	}
done:
	if (libssh2_sftp_close_handle(handle) != 0 && !rc)
		rc = sftp_fail(sv, "close", path);
	if (rc) {
		libssh2_sftp_unlink(sv->sftp, path);
		free(path);
		return rc;
	}
	*tmp = path;
	return 0;
}

int remote_list_dir(sftp_vault *sv, const char *dir, remote_entry_fn fn, void *payload)
{
	LIBSSH2_SFTP_HANDLE *handle;
	LIBSSH2_SFTP_ATTRIBUTES attrs;
	char name[1024];
	int rc = 0;

	handle = libssh2_sftp_open_ex(sv->sftp, dir, (unsigned int)strlen(dir), 0, 0,
				      LIBSSH2_SFTP_OPENDIR);
	if (!handle)
		return last_was_missing(sv) ? SM_ENOTFOUND : sftp_fail(sv, "list", dir);
	for (;;) {
		int n = libssh2_sftp_readdir_ex(handle, name, sizeof(name), NULL, 0, &attrs);

		if (n < 0) {
			rc = sftp_fail(sv, "list", dir);
			break;
		}
		if (n == 0)
			break;
		if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
			continue;
		rc = fn(sv, name, &attrs, payload);
		if (rc)
			break;
	}
	libssh2_sftp_closedir(handle);
	return rc;
}

int remote_clock(sftp_vault *sv, uint64_t *now)
{
	char *probe = sftp_asprintf("%s/.skillmeat-clock", sv->root), *tmp = NULL;
	int rc;

	if (!probe)
		return SM_ENOMEM;
	rc = remote_write_temp(sv, probe, "", 0, &tmp, now);
	if (!rc)
		remote_unlink(sv, tmp);
	free(tmp);
	free(probe);
	return rc;
}
