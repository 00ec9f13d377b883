/*
 * The follower of follow.h: a small state machine over the bytes of a
 * zip archive, which parses each local header as it arrives. An entry it
 * cannot follow safely (data descriptor, zip64 sizes, encryption, unknown
 * method) stops the parsing, and so does a local header past the first
 * SM_BUNDLE_MAX_ENTRIES, damaged or not. The rest of the archive is then
 * verified from the file as usual. The SHA-256 of the whole stream is
 * computed in any case.
 */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "bundle/bundle_internal.h"
#include "bundle/follow.h"

#define LOCAL_HEADER_SIZE 30
#define FLAG_ENCRYPTED 0x0001
#define FLAG_DATA_DESCRIPTOR 0x0008
#define ARTIFACT_DEPTH 3 /* "artifacts/<type>/<name>/" */

/* One entry of an artifact folder, as its local header described it. */
typedef struct followed_entry {
	uint64_t offset;       /* of the local header */
	uint64_t data_end;     /* offset just past its compressed data */
	uint64_t size;
	uint64_t compressed;
	uint16_t method;
	char *name;
	size_t name_len;
} followed_entry;

/* The entries of one artifact folder and the hash over them. */
typedef struct followed_artifact {
	char *prefix;
	size_t prefix_len;
	size_t first;          /* its entries are entries[first .. first + count) */
	size_t count;
	EVP_MD_CTX *ctx;
	unsigned char digest[32];
	int broken;            /* an entry failed or came out of order */
} followed_artifact;

enum stage { IN_HEADER, IN_NAME, IN_EXTRA, IN_DATA, STOPPED };

struct sm_zip_follower {
	EVP_MD_CTX *whole;
	uint64_t fed;

	enum stage stage;
	unsigned char header[LOCAL_HEADER_SIZE];
	size_t header_have;
	sm_buf name;
	size_t name_want;
	uint64_t extra_left;

	/* the entry being read */
	followed_entry cur;
	followed_artifact *art;   /* NULL: not part of an artifact, or skipped */
	uint64_t data_left;
	uint64_t produced;
	int bad;
	int zrc;
	z_stream zs;
	int zs_ready;
	unsigned char *out;

	followed_entry *entries;
	size_t nentries;
	size_t entries_cap;
	followed_artifact *arts;
	size_t narts;
	size_t arts_cap;
	size_t *sorted;           /* indexes of arts by prefix, set by finish */
	size_t headers;           /* local headers parsed, followed or not */
	int finished;
};

int sm_zip_follower_new(sm_zip_follower **out)
{
	sm_zip_follower *f = calloc(1, sizeof(*f));

	*out = NULL;
	if (!f)
		return sm_error_set(SM_ENOMEM, "out of memory");
	f->name = (sm_buf)SM_BUF_INIT(SM_BUNDLE_PATH_MAX + 1);
	f->whole = EVP_MD_CTX_new();
	f->out = malloc(SM_ENTRY_INFLATE_CHUNK);
	if (!f->whole || !f->out || !EVP_DigestInit_ex(f->whole, EVP_sha256(), NULL)) {
		sm_zip_follower_free(f);
		return sm_error_set(SM_ENOMEM, "out of memory");
	}
	if (inflateInit2(&f->zs, -MAX_WBITS) != Z_OK) {
		sm_zip_follower_free(f);
		return sm_error_set(SM_ENOMEM, "out of memory");
	}
	f->zs_ready = 1;
	*out = f;
	return 0;
}

void sm_zip_follower_free(sm_zip_follower *f)
{
	if (!f)
		return;
	for (size_t i = 0; i < f->nentries; i++)
		free(f->entries[i].name);
	for (size_t i = 0; i < f->narts; i++) {
		free(f->arts[i].prefix);
		EVP_MD_CTX_free(f->arts[i].ctx);
	}
	free(f->entries);
	free(f->arts);
	free(f->sorted);
	if (f->zs_ready)
		inflateEnd(&f->zs);
	EVP_MD_CTX_free(f->whole);
	sm_buf_release(&f->name);
	free(f->out);
	free(f);
}

uint64_t sm_zip_follower_fed(const sm_zip_follower *f)
{
	return f->fed;
}

/* Length of the "artifacts/<type>/<name>/" folder `name` sits in, or 0. */
static size_t artifact_prefix_len(const char *name, size_t len)
{
	size_t slashes = 0;

	if (len < 10 || memcmp(name, "artifacts/", 10) != 0)
		return 0;
	for (size_t i = 0; i < len; i++)
		if (name[i] == '/' && ++slashes == ARTIFACT_DEPTH)
			return i + 1 < len ? i + 1 : 0;
	return 0;
}

/* Finds or starts the artifact of the current entry. Sets NULL when it cannot be followed. */
static int enter_artifact(sm_zip_follower *f, followed_artifact **out)
{
	size_t plen = artifact_prefix_len(f->name.data, f->name.len);
	followed_artifact *a;

	*out = NULL;
	if (!plen)
		return 0;
	/*
	 * Only the last artifact is compared, so each entry costs the same
	 * however many folders came before. A folder that comes back after
	 * another one starts a second artifact of the same prefix, and
	 * sm_zip_follower_finish() marks both broken.
	 */
	if (f->narts) {
		a = &f->arts[f->narts - 1];
		if (a->prefix_len == plen && memcmp(a->prefix, f->name.data, plen) == 0) {
			*out = a->broken ? NULL : a;
			return 0;
		}
	}
	if (f->narts == f->arts_cap) {
		size_t cap = f->arts_cap ? f->arts_cap * 2 : 8;
		followed_artifact *grown = realloc(f->arts, cap * sizeof(*grown));

		if (!grown)
			return sm_error_set(SM_ENOMEM, "out of memory");
		f->arts = grown;
		f->arts_cap = cap;
	}
	a = &f->arts[f->narts];
	memset(a, 0, sizeof(*a));
	a->prefix = malloc(plen + 1);
	a->ctx = EVP_MD_CTX_new();
	if (!a->prefix || !a->ctx || !EVP_DigestInit_ex(a->ctx, EVP_sha256(), NULL)) {
		free(a->prefix);
		EVP_MD_CTX_free(a->ctx);
		return sm_error_set(SM_ENOMEM, "out of memory");
	}
	memcpy(a->prefix, f->name.data, plen);
	a->prefix[plen] = '\0';
	a->prefix_len = plen;
	a->first = f->nentries;
	f->narts++;
	*out = a;
	return 0;
}

/* Parses a complete local header. Returns 0 to continue, or 1 to stop following. */
static int parse_header(sm_zip_follower *f)
{
	const unsigned char *h = f->header;
	uint16_t flags = sm_le16(h + 6);

	if (memcmp(h, "PK\3\4", 4) != 0)
		return 1; /* the central directory, or bytes that the final check judges */
	f->cur.offset = f->fed - LOCAL_HEADER_SIZE;
	f->cur.method = sm_le16(h + 8);
	f->cur.compressed = sm_le32(h + 18);
	f->cur.size = sm_le32(h + 22);
	f->name_want = sm_le16(h + 26);
	f->extra_left = sm_le16(h + 28);
	if ((flags & (FLAG_ENCRYPTED | FLAG_DATA_DESCRIPTOR)) || f->name_want == 0 ||
	    f->name_want > SM_BUNDLE_PATH_MAX ||
	    (f->cur.method != 0 && f->cur.method != 8) || f->cur.compressed == UINT32_MAX ||
	    f->cur.size == UINT32_MAX || f->headers >= SM_BUNDLE_MAX_ENTRIES)
		return 1;
	/* damaged entries count too, because each may start an artifact that costs memory */
	f->headers++;
	f->name.len = 0;
	return 0;
}

/* The name is complete: joins its artifact and starts the artifact hash. */
static int start_entry(sm_zip_follower *f)
{
	int rc = enter_artifact(f, &f->art);

	if (rc)
		return rc;
	f->data_left = f->cur.compressed;
	f->produced = 0;
	f->bad = 0;
	f->zrc = Z_OK;
	if (f->cur.method == 8 && inflateReset(&f->zs) != Z_OK)
		f->bad = 1;
	if (f->cur.method == 0 && f->cur.compressed != f->cur.size)
		f->bad = 1;
	if (f->cur.compressed == 0 && f->cur.size != 0)
		f->bad = 1;
	if (f->art && !f->bad) {
		size_t plen = f->art->prefix_len;

		EVP_DigestUpdate(f->art->ctx, f->name.data + plen, f->name.len - plen);
	}
	return 0;
}

static void hash_output(sm_zip_follower *f, const void *data, size_t len)
{
	if (len > f->cur.size - f->produced) {
		f->bad = 1; /* more bytes than declared */
		return;
	}
	f->produced += len;
	EVP_DigestUpdate(f->art->ctx, data, len);
}

/* Takes `len` bytes of the current entry's compressed data. */
static void take_data(sm_zip_follower *f, const unsigned char *data, size_t len)
{
	if (!f->art || f->bad)
		return;
	if (f->cur.method == 0) {
		hash_output(f, data, len);
		return;
	}
	f->zs.next_in = (unsigned char *)data;
	f->zs.avail_in = (uInt)len;
	do {
		size_t got;

		if (f->zrc == Z_STREAM_END) {
			f->bad = 1; /* data after the end of the deflate stream */
			return;
		}
		f->zs.next_out = f->out;
		f->zs.avail_out = SM_ENTRY_INFLATE_CHUNK;
		f->zrc = inflate(&f->zs, Z_NO_FLUSH);
		got = SM_ENTRY_INFLATE_CHUNK - f->zs.avail_out;
		if (f->zrc != Z_OK && f->zrc != Z_STREAM_END && f->zrc != Z_BUF_ERROR) {
			f->bad = 1;
			return;
		}
		if (got)
			hash_output(f, f->out, got);
		if (f->bad)
			return;
	} while (f->zs.avail_in > 0 || f->zs.avail_out == 0);
}

/* The entry's data is complete: records it when it read back whole. */
static int end_entry(sm_zip_follower *f)
{
	followed_entry *e;

	if (!f->art)
		return 0;
	if (f->cur.compressed > 0 && f->cur.method == 8 && f->zrc != Z_STREAM_END)
		f->bad = 1;
	if (f->produced != f->cur.size)
		f->bad = 1;
	if (f->bad) {
		f->art->broken = 1;
		return 0;
	}
	if (f->nentries == f->entries_cap) {
		size_t cap = f->entries_cap ? f->entries_cap * 2 : 16;
		followed_entry *grown = realloc(f->entries, cap * sizeof(*grown));

		if (!grown)
			return sm_error_set(SM_ENOMEM, "out of memory");
		f->entries = grown;
		f->entries_cap = cap;
	}
	e = &f->entries[f->nentries];
	*e = f->cur;
	e->data_end = f->fed;
	e->name_len = f->name.len;
	e->name = malloc(f->name.len + 1);
	if (!e->name)
		return sm_error_set(SM_ENOMEM, "out of memory");
	memcpy(e->name, f->name.data, f->name.len);
	e->name[f->name.len] = '\0';
	f->nentries++;
	f->art->count++;
	return 0;
}

int sm_zip_follower_feed(sm_zip_follower *f, const void *data, size_t len)
{
	const unsigned char *p = data;
	int rc = 0;

	if (f->finished)
		return sm_error_set(SM_ERROR, "bytes fed to a finished follower");
	if (len && EVP_DigestUpdate(f->whole, p, len) != 1)
		return sm_error_set(SM_ERROR, "SHA-256 update failed");
	while (len > 0 && f->stage != STOPPED && !rc) {
		size_t n = 0;

		switch (f->stage) {
		case IN_HEADER:
			n = LOCAL_HEADER_SIZE - f->header_have;
			n = n < len ? n : len;
			memcpy(f->header + f->header_have, p, n);
			f->header_have += n;
			f->fed += n;
			if (f->header_have == LOCAL_HEADER_SIZE) {
				f->header_have = 0;
				f->stage = parse_header(f) ? STOPPED : IN_NAME;
			}
			break;
		case IN_NAME:
			n = f->name_want - f->name.len;
			n = n < len ? n : len;
			rc = sm_buf_put(&f->name, p, n);
			f->fed += n;
			if (!rc && f->name.len == f->name_want) {
				f->stage = IN_EXTRA;
				rc = start_entry(f);
			}
			break;
		case IN_EXTRA:
			n = f->extra_left < len ? (size_t)f->extra_left : len;
			f->extra_left -= n;
			f->fed += n;
			break;
		case IN_DATA:
			n = f->data_left < len ? (size_t)f->data_left : len;
			take_data(f, p, n);
			f->data_left -= n;
			f->fed += n;
			break;
		case STOPPED:
			break;
		}
		p += n;
		len -= n;
		if (f->stage == IN_EXTRA && f->extra_left == 0)
			f->stage = IN_DATA;
		if (f->stage == IN_DATA && f->data_left == 0) {
			rc = end_entry(f);
			f->stage = IN_HEADER;
		}
	}
	/* once parsing stops, the rest only counts toward the stream's size */
	f->fed += len;
	return rc;
}

/* Orders artifact `a` before or after the folder `prefix` of `plen` bytes. */
static int compare_prefix(const followed_artifact *a, const char *prefix, size_t plen)
{
	int order = memcmp(a->prefix, prefix, a->prefix_len < plen ? a->prefix_len : plen);

	if (order)
		return order;
	return a->prefix_len < plen ? -1 : a->prefix_len > plen;
}

static int compare_prefixes(const void *a, const void *b, void *arts)
{
	const followed_artifact *x = (const followed_artifact *)arts + *(const size_t *)a;
	const followed_artifact *y = (const followed_artifact *)arts + *(const size_t *)b;

	return compare_prefix(x, y->prefix, y->prefix_len);
}

/* Sorts the artifacts by prefix and breaks every folder that was split by another. */
static int sort_artifacts(sm_zip_follower *f)
{
	f->sorted = malloc((f->narts ? f->narts : 1) * sizeof(*f->sorted));
	if (!f->sorted)
		return sm_error_set(SM_ENOMEM, "out of memory");
	for (size_t i = 0; i < f->narts; i++)
		f->sorted[i] = i;
	qsort_r(f->sorted, f->narts, sizeof(*f->sorted), compare_prefixes, f->arts);
	for (size_t i = 1; i < f->narts; i++)
		if (compare_prefixes(&f->sorted[i - 1], &f->sorted[i], f->arts) == 0)
			f->arts[f->sorted[i - 1]].broken = f->arts[f->sorted[i]].broken = 1;
	return 0;
}

int sm_zip_follower_finish(sm_zip_follower *f, char hex[65])
{
	unsigned char digest[32];
	int rc;

	if (f->finished)
		return sm_error_set(SM_ERROR, "follower finished twice");
	f->finished = 1;
	if (f->stage != IN_HEADER && f->stage != STOPPED && f->art)
		f->art->broken = 1; /* the stream ended inside an entry */
	if ((rc = sort_artifacts(f)) != 0)
		return rc;
	for (size_t i = 0; i < f->narts; i++)
		if (!f->arts[i].broken && EVP_DigestFinal_ex(f->arts[i].ctx, f->arts[i].digest,
							     NULL) != 1)
			f->arts[i].broken = 1;
	if (EVP_DigestFinal_ex(f->whole, digest, NULL) != 1)
		return sm_error_set(SM_ERROR, "SHA-256 failed");
	sm_hex(digest, sizeof(digest), hex);
	return 0;
}

int sm_zip_follower_artifact(const sm_zip_follower *f, const char *prefix,
			     const sm_zip_entry *dir, const size_t *indexes, size_t n,
			     unsigned char digest[32])
{
	size_t plen = strlen(prefix), lo = 0, hi;
	const followed_artifact *a = NULL;

	if (!f || !f->finished || !f->sorted)
		return 0;
	/* a binary search of the sorted artifacts, so a manifest costs n log n */
	hi = f->narts;
	while (lo < hi && !a) {
		size_t mid = lo + (hi - lo) / 2;
		const followed_artifact *at = &f->arts[f->sorted[mid]];
		int order = compare_prefix(at, prefix, plen);

		if (order < 0)
			lo = mid + 1;
		else if (order > 0)
			hi = mid;
		else
			a = at;
	}
	if (!a || a->broken || a->count != n)
		return 0;
	for (size_t j = 0; j < n; j++) {
		const followed_entry *fe = &f->entries[a->first + j];
		const sm_zip_entry *e = &dir[indexes[j]];

		if (fe->offset != e->offset || fe->name_len != e->name_len ||
		    memcmp(fe->name, e->name, e->name_len) != 0 || fe->method != e->method ||
		    fe->compressed != e->compressed || fe->size != e->size ||
		    fe->data_end > e->span_end)
			return 0;
	}
	memcpy(digest, a->digest, 32);
	return 1;
}
