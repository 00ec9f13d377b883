/*
 * A reader for the zip central directory. libzip replaces NUL bytes in
 * entry names with spaces and hides duplicate names, so the bundle checks
 * read the names and fields from the archive's bytes themselves.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bundle_internal.h"

#define EOCD_SIZE 22
#define EOCD64_LOCATOR_SIZE 20
#define EOCD64_SIZE 56
#define CDIR_RECORD_SIZE 46
#define MAX_COMMENT 65535

int sm_zip_read_at(int fd, void *buf, size_t len, uint64_t offset, const char *label)
{
	unsigned char *p = buf;

	while (len) {
		ssize_t n = pread(fd, p, len, (off_t)offset);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return sm_error_set_errno(SM_EIO, errno, "cannot read '%s'", label);
		}
		if (n == 0)
			return sm_error_set(SM_EINVALID, "invalid bundle '%s': the file is truncated",
					    label);
		p += n;
		len -= (size_t)n;
		offset += (uint64_t)n;
	}
	return 0;
}

/* Finds the end of central directory record; `*pos` is its file offset. */
static int find_eocd(int fd, uint64_t file_size, const char *label,
		     unsigned char eocd[EOCD_SIZE], uint64_t *pos)
{
	size_t tail_len = file_size < EOCD_SIZE + MAX_COMMENT ? (size_t)file_size
							       : EOCD_SIZE + MAX_COMMENT;
	unsigned char *tail;
	int rc;

	if (file_size < EOCD_SIZE)
		return sm_error_set(SM_EINVALID, "invalid bundle '%s': not a zip archive", label);
	tail = malloc(tail_len);
	if (!tail)
		return sm_error_set(SM_ENOMEM, "out of memory");
	rc = sm_zip_read_at(fd, tail, tail_len, file_size - tail_len, label);
	if (rc)
		goto done;

	/* the record whose comment ends exactly at the end of the file */
	rc = sm_error_set(SM_EINVALID, "invalid bundle '%s': not a zip archive "
			  "(end of central directory record not found)", label);
	for (size_t i = tail_len - EOCD_SIZE + 1; i-- > 0;) {
		const unsigned char *p = tail + i;

		if (memcmp(p, "PK\5\6", 4) != 0)
			continue;
		if (i + EOCD_SIZE + sm_le16(p + 20) != tail_len)
			continue;
		memcpy(eocd, p, EOCD_SIZE);
		*pos = file_size - tail_len + i;
		rc = 0;
		break;
	}
done:
	free(tail);
	return rc;
}

/* Reads the zip64 end of central directory record that `eocd_pos` points back to. */
static int read_eocd64(int fd, uint64_t eocd_pos, const char *label, uint64_t *count,
		       uint64_t *cdir_size, uint64_t *cdir_offset, uint64_t *record_pos)
{
	unsigned char loc[EOCD64_LOCATOR_SIZE], rec[EOCD64_SIZE];
	uint64_t pos;
	int rc;

	if (eocd_pos < EOCD64_LOCATOR_SIZE)
		return sm_error_set(SM_EINVALID, "invalid bundle '%s': zip64 locator missing", label);
	rc = sm_zip_read_at(fd, loc, sizeof(loc), eocd_pos - EOCD64_LOCATOR_SIZE, label);
	if (rc)
		return rc;
	if (memcmp(loc, "PK\6\7", 4) != 0)
		return sm_error_set(SM_EINVALID, "invalid bundle '%s': zip64 locator missing", label);
	if (sm_le32(loc + 4) != 0 || sm_le32(loc + 16) > 1)
		return sm_error_set(SM_EINVALID, "invalid bundle '%s': multi-disk archives are "
				    "not supported", label);
	pos = sm_le64(loc + 8);
	if (pos > eocd_pos - EOCD64_LOCATOR_SIZE ||
	    eocd_pos - EOCD64_LOCATOR_SIZE - pos < EOCD64_SIZE)
		return sm_error_set(SM_EINVALID, "invalid bundle '%s': zip64 record offset out of "
				    "range", label);
	rc = sm_zip_read_at(fd, rec, sizeof(rec), pos, label);
	if (rc)
		return rc;
	if (memcmp(rec, "PK\6\6", 4) != 0)
		return sm_error_set(SM_EINVALID, "invalid bundle '%s': zip64 end of central "
				    "directory record missing", label);
	if (sm_le32(rec + 16) != 0 || sm_le32(rec + 20) != 0 ||
	    sm_le64(rec + 24) != sm_le64(rec + 32))
		return sm_error_set(SM_EINVALID, "invalid bundle '%s': multi-disk archives are "
				    "not supported", label);
	*count = sm_le64(rec + 32);
	*cdir_size = sm_le64(rec + 40);
	*cdir_offset = sm_le64(rec + 48);
	*record_pos = pos;
	return 0;
}

/* Replaces saturated 32-bit fields of `e` with the values of its zip64 extra field. */
static int apply_zip64(sm_zip_entry *e, const unsigned char *extra, size_t extra_len,
		       int need_size, int need_comp, int need_offset)
{
	size_t pos = 0;

	while (pos + 4 <= extra_len) {
		uint16_t id = sm_le16(extra + pos), len = sm_le16(extra + pos + 2);
		const unsigned char *data = extra + pos + 4;
		size_t used = 0;

		if (pos + 4 + len > extra_len)
			return -1;
		if (id == 0x0001) {
			if (need_size) {
				if (used + 8 > len)
					return -1;
				e->size = sm_le64(data + used);
				used += 8;
			}
			if (need_comp) {
				if (used + 8 > len)
					return -1;
				e->compressed = sm_le64(data + used);
				used += 8;
			}
			if (need_offset) {
				if (used + 8 > len)
					return -1;
				e->offset = sm_le64(data + used);
			}
			return 0;
		}
		pos += 4 + (size_t)len;
	}
	return need_size || need_comp || need_offset ? -1 : 0;
}

static int parse_records(const unsigned char *cdir, uint64_t cdir_size, const char *label,
			 sm_zip_dir *dir)
{
	size_t pos = 0, name_pos = 0;

	for (size_t i = 0; i < dir->count; i++) {
		const unsigned char *r = cdir + pos;
		sm_zip_entry *e = &dir->entries[i];
		size_t name_len, extra_len, comment_len;

		if (cdir_size - pos < CDIR_RECORD_SIZE || memcmp(r, "PK\1\2", 4) != 0)
			return sm_error_set(SM_EINVALID, "invalid bundle '%s': central directory "
					    "record %zu is damaged", label, i);
		name_len = sm_le16(r + 28);
		extra_len = sm_le16(r + 30);
		comment_len = sm_le16(r + 32);
		if (cdir_size - pos - CDIR_RECORD_SIZE < name_len + extra_len + comment_len)
			return sm_error_set(SM_EINVALID, "invalid bundle '%s': central directory "
					    "record %zu is truncated", label, i);
		if (sm_le16(r + 34) != 0)
			return sm_error_set(SM_EINVALID, "invalid bundle '%s': multi-disk archives "
					    "are not supported", label);

		e->made_by = sm_le16(r + 4);
		e->flags = sm_le16(r + 8);
		e->method = sm_le16(r + 10);
		e->dos_time = sm_le16(r + 12);
		e->dos_date = sm_le16(r + 14);
		e->extra_len = (uint16_t)extra_len;
		e->crc = sm_le32(r + 16);
		e->compressed = sm_le32(r + 20);
		e->size = sm_le32(r + 24);
		e->external_attributes = sm_le32(r + 38);
		e->offset = sm_le32(r + 42);
		e->span_end = dir->cdir_offset;
		e->name = dir->names + name_pos;
		e->name_len = name_len;
		memcpy(e->name, r + CDIR_RECORD_SIZE, name_len);
		e->name[name_len] = '\0';
		name_pos += name_len + 1;

		if (apply_zip64(e, r + CDIR_RECORD_SIZE + name_len, extra_len,
				e->size == 0xffffffffu, e->compressed == 0xffffffffu,
				e->offset == 0xffffffffu) != 0)
			return sm_error_set(SM_EINVALID, "invalid bundle '%s': central directory "
					    "record %zu has a damaged zip64 field", label, i);
		pos += CDIR_RECORD_SIZE + name_len + extra_len + comment_len;
	}
	if (pos != cdir_size)
		return sm_error_set(SM_EINVALID, "invalid bundle '%s': the central directory holds "
				    "more than the %zu records it declares", label, dir->count);
	return 0;
}

int sm_zip_dir_read(int fd, uint64_t file_size, const char *label, sm_zip_dir *dir)
{
	unsigned char eocd[EOCD_SIZE] = { 0 }, *cdir = NULL;
	uint64_t eocd_pos = 0, count, cdir_size, cdir_offset, cdir_end;
	int rc;

	memset(dir, 0, sizeof(*dir));
	rc = find_eocd(fd, file_size, label, eocd, &eocd_pos);
	if (rc)
		return rc;
	if (sm_le16(eocd + 4) != 0 || sm_le16(eocd + 6) != 0 ||
	    sm_le16(eocd + 8) != sm_le16(eocd + 10))
		return sm_error_set(SM_EINVALID, "invalid bundle '%s': multi-disk archives are "
				    "not supported", label);
	count = sm_le16(eocd + 10);
	cdir_size = sm_le32(eocd + 12);
	cdir_offset = sm_le32(eocd + 16);
	cdir_end = eocd_pos;

	/* saturated fields mean the real values are in the zip64 record */
	if (count == 0xffff || cdir_size == 0xffffffffu || cdir_offset == 0xffffffffu) {
		rc = read_eocd64(fd, eocd_pos, label, &count, &cdir_size, &cdir_offset, &cdir_end);
		if (rc)
			return rc;
	}

	if (count > SM_BUNDLE_MAX_ENTRIES)
		return sm_error_set(SM_EINVALID, "invalid bundle '%s': %llu entries, more than the "
				    "limit of %u", label, (unsigned long long)count,
				    SM_BUNDLE_MAX_ENTRIES);
	if (cdir_size > SM_ZIP_CDIR_MAX)
		return sm_error_set(SM_EINVALID, "invalid bundle '%s': the central directory is "
				    "larger than %u bytes", label, SM_ZIP_CDIR_MAX);
	if (cdir_offset > cdir_end || cdir_end - cdir_offset < cdir_size)
		return sm_error_set(SM_EINVALID, "invalid bundle '%s': central directory offset "
				    "out of range", label);

	cdir = malloc(cdir_size ? (size_t)cdir_size : 1);
	dir->entries = calloc(count ? (size_t)count : 1, sizeof(*dir->entries));
	/* names need at most the directory's size plus one NUL per entry */
	dir->names = malloc((size_t)cdir_size + (size_t)count + 1);
	if (!cdir || !dir->entries || !dir->names) {
		rc = sm_error_set(SM_ENOMEM, "out of memory");
		goto done;
	}
	dir->count = (size_t)count;
	dir->cdir_offset = cdir_offset;
	dir->cdir_size = cdir_size;
	rc = sm_zip_read_at(fd, cdir, (size_t)cdir_size, cdir_offset, label);
	if (rc)
		goto done;
	rc = parse_records(cdir, cdir_size, label, dir);
done:
	free(cdir);
	if (rc)
		sm_zip_dir_release(dir);
	return rc;
}

void sm_zip_dir_release(sm_zip_dir *dir)
{
	free(dir->entries);
	free(dir->names);
	memset(dir, 0, sizeof(*dir));
}
