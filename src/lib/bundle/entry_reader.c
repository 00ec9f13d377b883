/*
 * Reads entry data straight from the archive file for hashing: pread() in
 * large chunks and zlib's raw inflate, without libzip. Each entry's local
 * header must match its central directory record, its data must stay
 * within its declared compressed size and its span, and it must inflate
 * to exactly its declared size.
 */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bundle_internal.h"

#define LOCAL_HEADER_SIZE 30
#define ZIP_METHOD_STORE 0
#define ZIP_METHOD_DEFLATE 8
#define ZIP_FLAG_ENCRYPTED 0x0001

int sm_entry_reader_init(sm_entry_reader *reader, int fd, const char *label)
{
	int zrc;

	memset(reader, 0, sizeof(*reader));
	reader->fd = fd;
	reader->label = label;
	reader->in = malloc(SM_ENTRY_READ_CHUNK);
	reader->out = malloc(SM_ENTRY_INFLATE_CHUNK);
	if (!reader->in || !reader->out)
		goto nomem;

	/* negative window bits select raw deflate data, which zip entries contain */
	zrc = inflateInit2(&reader->zs, -MAX_WBITS);
	if (zrc == Z_MEM_ERROR)
		goto nomem;
	if (zrc != Z_OK) {
		sm_entry_reader_release(reader);
		return sm_error_set(SM_ERROR, "zlib inflateInit2() failed (%s)", zError(zrc));
	}
	reader->zs_ready = 1;
	return 0;

nomem:
	sm_entry_reader_release(reader);
	return sm_error_set(SM_ENOMEM, "out of memory");
}

void sm_entry_reader_release(sm_entry_reader *reader)
{
	if (reader->zs_ready)
		inflateEnd(&reader->zs);
	free(reader->in);
	free(reader->out);
	memset(reader, 0, sizeof(*reader));
	reader->fd = -1;
}

static int damaged(char problem[SM_ENTRY_PROBLEM_MAX], const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Writes the reason an entry is damaged and returns 1. */
static int damaged(char problem[SM_ENTRY_PROBLEM_MAX], const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(problem, SM_ENTRY_PROBLEM_MAX, fmt, ap);
	va_end(ap);
	return 1;
}

/*
 * Checks the local header of `e` against its central directory record and
 * sets `*data_start` to the offset of its data. Returns 0, 1 with
 * `problem` set, or a negative code.
 */
static int check_local_header(sm_entry_reader *reader, const sm_zip_entry *e,
			      uint64_t *data_start, char problem[SM_ENTRY_PROBLEM_MAX])
{
	unsigned char *header = reader->in;
	uint64_t start;
	int rc;

	/*
	 * The overlap check of sm_bundle_open() keeps the header and the
	 * central directory's name inside the span, and the name is at most
	 * 65535 bytes, so both fit the input buffer.
	 */
	if (e->span_end < e->offset || e->span_end - e->offset < LOCAL_HEADER_SIZE + e->name_len)
		return damaged(problem, "is damaged: its local header at offset %llu runs past "
			       "the next entry", (unsigned long long)e->offset);
	rc = sm_zip_read_at(reader->fd, header, LOCAL_HEADER_SIZE + e->name_len, e->offset,
			    reader->label);
	if (rc)
		return rc;

	if (memcmp(header, "PK\3\4", 4) != 0)
		return damaged(problem, "is damaged: no local header at offset %llu",
			       (unsigned long long)e->offset);
	if (sm_le16(header + 26) != e->name_len ||
	    memcmp(header + LOCAL_HEADER_SIZE, e->name, e->name_len) != 0)
		return damaged(problem, "is damaged: its local header names a different file");
	if (sm_le16(header + 8) != e->method)
		return damaged(problem, "is damaged: its local header gives compression method "
			       "%u, the central directory %u", sm_le16(header + 8), e->method);
	if (sm_le16(header + 6) & ZIP_FLAG_ENCRYPTED)
		return damaged(problem, "is damaged: its local header marks it encrypted");

	/* the data follows the local header's own name and extra field */
	start = e->offset + LOCAL_HEADER_SIZE + e->name_len + sm_le16(header + 28);
	if (start > e->span_end || e->span_end - start < e->compressed)
		return damaged(problem, "is damaged: its data runs past offset %llu, where the "
			       "next entry or the central directory starts",
			       (unsigned long long)e->span_end);
	*data_start = start;
	return 0;
}

/* Streams a stored entry, whose compressed and uncompressed sizes are equal. */
static int read_stored(sm_entry_reader *reader, const sm_zip_entry *e, uint64_t pos,
		       sm_entry_sink sink, void *payload)
{
	uint64_t left = e->compressed;

	while (left > 0) {
		size_t n = left < SM_ENTRY_READ_CHUNK ? (size_t)left : SM_ENTRY_READ_CHUNK;
		int rc = sm_zip_read_at(reader->fd, reader->in, n, pos, reader->label);

		if (!rc)
			rc = sink(payload, reader->in, n);
		if (rc)
			return rc;
		pos += n;
		left -= n;
	}
	return 0;
}

/*
 * Streams a deflate entry. Reads at most the declared compressed size and
 * never inflates more than one byte past the declared size, so a lying
 * entry costs no more work than an honest one.
 */
static int read_deflated(sm_entry_reader *reader, const sm_zip_entry *e, uint64_t pos,
			 sm_entry_sink sink, void *payload, char problem[SM_ENTRY_PROBLEM_MAX])
{
	z_stream *zs = &reader->zs;
	uint64_t in_left = e->compressed, produced = 0;
	int zrc = Z_OK, rc;

	if (inflateReset(zs) != Z_OK)
		return sm_error_set(SM_ERROR, "zlib inflateReset() failed");
	zs->avail_in = 0;

	while (zrc != Z_STREAM_END) {
		uint64_t out_left = e->size - produced;
		size_t out_len, got;

		if (zs->avail_in == 0 && in_left > 0) {
			size_t n = in_left < SM_ENTRY_READ_CHUNK ? (size_t)in_left
							       : SM_ENTRY_READ_CHUNK;

			rc = sm_zip_read_at(reader->fd, reader->in, n, pos, reader->label);
			if (rc)
				return rc;
			zs->next_in = reader->in;
			zs->avail_in = (uInt)n;
			pos += n;
			in_left -= n;
		}

		/* room for one byte past the declared size reveals a lying entry */
		out_len = out_left < SM_ENTRY_INFLATE_CHUNK ? (size_t)out_left + 1
							    : SM_ENTRY_INFLATE_CHUNK;
		zs->next_out = reader->out;
		zs->avail_out = (uInt)out_len;
		zrc = inflate(zs, Z_NO_FLUSH);
		got = out_len - zs->avail_out;

		if (got > out_left)
			return damaged(problem, "yields more bytes than its declared size of %llu",
				       (unsigned long long)e->size);
		if (got) {
			rc = sink(payload, reader->out, got);
			if (rc)
				return rc;
			produced += got;
		}

		if (zrc == Z_MEM_ERROR)
			return sm_error_set(SM_ENOMEM, "out of memory");
		if (zrc == Z_DATA_ERROR || zrc == Z_NEED_DICT || zrc == Z_STREAM_ERROR)
			return damaged(problem, "is damaged: invalid deflate data (%s)",
				       zs->msg ? zs->msg : zError(zrc));
		/*
		 * Z_BUF_ERROR means no progress. There is always output room,
		 * and input is refilled above while any is left, so the
		 * compressed bytes ran out before the end of the stream.
		 */
		if (zrc == Z_BUF_ERROR)
			return damaged(problem, "is damaged: its deflate data is truncated "
				       "(%llu of %llu bytes inflated)", (unsigned long long)produced,
				       (unsigned long long)e->size);
	}

	if (produced < e->size)
		return damaged(problem, "yields %llu bytes, fewer than its declared size of %llu",
			       (unsigned long long)produced, (unsigned long long)e->size);
	if (zs->avail_in > 0 || in_left > 0)
		return damaged(problem, "is damaged: its deflate stream ends %llu bytes before its "
			       "declared compressed size of %llu",
			       (unsigned long long)(zs->avail_in + in_left),
			       (unsigned long long)e->compressed);
	return 0;
}

int sm_entry_read(sm_entry_reader *reader, const sm_zip_entry *e, sm_entry_sink sink,
		  void *payload, char problem[SM_ENTRY_PROBLEM_MAX])
{
	uint64_t data_start = 0;
	int rc;

	problem[0] = '\0';
	rc = check_local_header(reader, e, &data_start, problem);
	if (rc)
		return rc;

	/* libzip reads 0 compressed bytes as empty data whatever the method, and so does this */
	if (e->compressed == 0 && e->size == 0)
		return 0;

	/*
	 * The CRC-32 is not checked. The SHA-256 artifact hashes already cover
	 * every byte, and zlib 1.2.13's crc32() added 9% to 31% to the CPU
	 * time of verifying 1 GiB bundles (AMD EPYC, 2 vCPUs, warm cache).
	 * NOTE: so an entry with a wrong CRC-32 field but the right bytes
	 * passes here, while Python's zipfile rejects it when extracting.
	 */
	switch (e->method) {
	case ZIP_METHOD_STORE:
		if (e->size != e->compressed)
			return damaged(problem, "is damaged: stored with %llu bytes but declares "
				       "%llu", (unsigned long long)e->compressed,
				       (unsigned long long)e->size);
		return read_stored(reader, e, data_start, sink, payload);
	case ZIP_METHOD_DEFLATE:
		return read_deflated(reader, e, data_start, sink, payload, problem);
	default:
		return damaged(problem, "uses compression method %u; only stored (0) and "
			       "deflate (8) are accepted", e->method);
	}
}
