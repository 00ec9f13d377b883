/*
 * Pull from an S3 vault. With a concurrency above 1, a bundle of at least
 * two part sizes is fetched as byte ranges of part_size, with `concurrency`
 * of them in flight. Each range is written with pwrite() at its own
 * offset and resumed by itself after a broken connection. Smaller
 * bundles, and bundles whose record lacks the size, are fetched with one
 * GET. So is an object that a store sends whole instead of a range, whose
 * size differs from the record, or whose ETag changes between ranges.
 *
 * The bytes from offset 0 that are final are reported to the pull watch
 * (vault/pull_watch.h) when sm_vault_pull() set one, and the library then
 * checks the SHA-256. Without a watch the connector hashes those bytes
 * itself, reading them back from the file as the final prefix grows.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vault/pull_watch.h"
#include "vault/record.h"
#include "vault/s3_connector.h"

/* Bytes read back from the file per SHA-256 update when the connector hashes by itself. */
#define HASH_CHUNK (1024 * 1024)

/* The digest of a pull: the connector's own SHA-256, or none when the watch is taken. */
typedef struct pull_hash {
	EVP_MD_CTX *sha;          /* NULL: the library checks the SHA-256 */
	sm_pull_watch *watch;     /* NULL outside sm_vault_pull() */
} pull_hash;

/* One byte range of the object. */
typedef struct pull_range {
	uint64_t start;
	uint64_t len;
	uint64_t written;         /* bytes of the range in the file */
} pull_range;

/* A request slot of a ranged pull. */
typedef struct range_slot {
	s3_call call;
	struct ranged_pull *pull;
	size_t index;             /* of the range it fetches */
	int busy;
	int ready;                /* call initialised */
} range_slot;

typedef struct ranged_pull {
	s3_vault *sv;
	const char *bundle_id;
	const char *key;
	int fd;
	uint64_t size;
	pull_hash *hash;
	pull_range *ranges;
	size_t nranges;
	size_t next;              /* next range to request */
	size_t first_open;        /* first range not complete */
	range_slot *slots;
	size_t nslots;
	uint64_t written;         /* bytes in the file, over all ranges */
	uint64_t ready;           /* bytes from offset 0 that are final */
	uint64_t hashed;          /* bytes from offset 0 in hash->sha */
	char *hash_buf;
	int rehash;               /* bytes below `hashed` were written again */
	int whole;                /* fetch the object whole instead (see range_done) */
	char etag[256];           /* of the first range that finished */
	int rc;                   /* failure found while following the ranges */
} ranged_pull;

/* Feeds the bytes that became final to the own SHA-256, reading them back from the file. */
static int hash_ready(ranged_pull *rp)
{
	while (rp->hashed < rp->ready && !rp->rehash) {
		uint64_t want = rp->ready - rp->hashed;
		ssize_t n;

		if (want < HASH_CHUNK && rp->ready < rp->size)
			return 0; /* wait for a whole chunk, except at the end */
		if (want > HASH_CHUNK)
			want = HASH_CHUNK;
		n = pread(rp->fd, rp->hash_buf, (size_t)want, (off_t)rp->hashed);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return sm_error_set_errno(SM_EIO, n < 0 ? errno : EIO,
						  "cannot read back the downloaded bundle");
		EVP_DigestUpdate(rp->hash->sha, rp->hash_buf, (size_t)n);
		rp->hashed += (uint64_t)n;
	}
	return 0;
}

/* Records new bytes of a range and moves the final prefix. */
static void range_progress(sm_http_request *req, void *payload)
{
	range_slot *slot = req->user;
	ranged_pull *rp = slot->pull;
	pull_range *range = &rp->ranges[slot->index];
	int rc;

	if (req->written < range->written) {
		/* the range starts again: bytes below the final prefix may change */
		if (range->start + req->written < rp->ready && rp->hash->watch)
			atomic_store(&rp->hash->watch->rewritten, 1);
		if (range->start + req->written < rp->hashed)
			rp->rehash = 1;
		rp->written -= range->written - req->written;
	} else {
		rp->written += req->written - range->written;
	}
	range->written = req->written;

	while (rp->first_open < rp->nranges &&
	       rp->ranges[rp->first_open].written == rp->ranges[rp->first_open].len)
		rp->first_open++;
	rp->ready = rp->first_open < rp->nranges
		? rp->ranges[rp->first_open].start + rp->ranges[rp->first_open].written : rp->size;
	sm_pull_watch_advance(rp->hash->watch, rp->ready);
	if (rp->hash->sha && !rp->rc && (rc = hash_ready(rp)) != 0)
		rp->rc = rc;
	s3_report(rp->sv, rp->written, rp->size);
}

/* Sets the message for a response to a GET of the data object other than 200 or 206. */
static int data_status_error(const s3_call *call, const char *bundle_id)
{
	char what[300];
	int rc;

	snprintf(what, sizeof(what), "the data of bundle '%s'", bundle_id);
	rc = s3_status_error(call, what);
	if (call->req.status == 404 && rc == SM_ENOTFOUND &&
	    !strstr(sm_error_message(), "does not exist at"))
		rc = sm_error_set(SM_EINTEGRITY, "bundle '%s' in vault '%s' has metadata but no "
				  "data object '%s'", bundle_id, call->sv->config->name, call->key);
	return rc;
}

static sm_http_request *range_next(void *payload)
{
	ranged_pull *rp = payload;
	range_slot *slot = NULL;
	pull_range *range;
	int rc;

	if (rp->rc || rp->next == rp->nranges)
		return NULL;
	for (size_t i = 0; i < rp->nslots && !slot; i++)
		if (!rp->slots[i].busy)
			slot = &rp->slots[i];
	if (!slot)
		return NULL; /* unreachable while nslots equals the run's concurrency */
	if (slot->ready)
		s3_call_release(&slot->call);
	slot->ready = 0;
	if ((rc = s3_call_init(&slot->call, rp->sv, "GET", rp->key, NULL)) != 0) {
		s3_call_release(&slot->call);
		rp->rc = rc;
		return NULL;
	}
	slot->ready = 1;
	slot->busy = 1;
	slot->pull = rp;
	slot->index = rp->next++;
	range = &rp->ranges[slot->index];
	slot->call.req.response = NULL;
	slot->call.req.response_fd = rp->fd;
	slot->call.req.response_offset = range->start;
	slot->call.req.response_max = range->len;
	slot->call.req.range_start = range->start;
	slot->call.req.range_len = range->len;
	slot->call.req.resume = 1;
	slot->call.req.progress = range_progress;
	slot->call.req.user = slot;
	return &slot->call.req;
}

/* Returns the object size of a 206 response ("Content-Range: bytes A-B/SIZE"), or 0. */
static uint64_t object_size(const sm_http_request *req)
{
	char value[128], *slash, *end;
	uint64_t size;

	if (!sm_http_header_get(req, "Content-Range", value, sizeof(value)) ||
	    !(slash = strchr(value, '/')))
		return 0;
	errno = 0;
	size = strtoull(slash + 1, &end, 10);
	return errno || end == slash + 1 || *end ? 0 : size;
}

/*
 * Checks a finished range. A store that responds to a range with the whole
 * object, or an object that changed between two ranges (another ETag),
 * makes the pull fall back to one GET of the whole object.
 */
static int range_done(sm_http_request *req, void *payload)
{
	ranged_pull *rp = payload;
	range_slot *slot = req->user;
	pull_range *range = &rp->ranges[slot->index];
	char etag[256];

	slot->busy = 0;
	if (rp->rc)
		return rp->rc;
	if (req->status == 200) {
		s3_notify(rp->sv, SM_LOG_DEBUG, "the store answered a range request for '%s' with the "
			  "whole object; fetching it whole", rp->key);
		rp->whole = 1;
		return SM_EINVALID;
	}
	/*
	 * An object of another size than the record (416: it is shorter) is
	 * fetched whole, so that its size is judged as for a whole GET.
	 */
	if (req->status == 416 || (req->status == 206 && object_size(req) != rp->size)) {
		s3_notify(rp->sv, SM_LOG_DEBUG, "'%s' is not %llu bytes long as its record says; "
			  "fetching it whole", rp->key, (unsigned long long)rp->size);
		rp->whole = 1;
		return SM_EINTEGRITY;
	}
	if (req->rc == SM_EINTEGRITY)
		return sm_error_wrap(SM_EINTEGRITY, "bundle '%s' in vault '%s' is corrupt: its data "
				     "object is larger than its metadata says", rp->bundle_id,
				     rp->sv->config->name);
	if (req->rc)
		return sm_error_set(req->rc, "%s", req->error);
	if (req->status != 206)
		return data_status_error(&slot->call, rp->bundle_id);
	sm_http_header_get(req, "ETag", etag, sizeof(etag));
	if (!rp->etag[0]) {
		snprintf(rp->etag, sizeof(rp->etag), "%s", etag);
	} else if (strcmp(rp->etag, etag) != 0) {
		s3_notify(rp->sv, SM_LOG_DEBUG, "'%s' changed while its ranges were fetched (ETag %s, "
			  "then %s); fetching it whole", rp->key, rp->etag, etag);
		rp->whole = 1;
		return SM_ECONFLICT;
	}
	if (range->written != range->len)
		return sm_error_set(SM_ENETWORK, "the store sent %llu of %llu bytes of a range of '%s'",
				    (unsigned long long)range->written,
				    (unsigned long long)range->len, rp->key);
	return 0;
}

/*
 * Fetches the `size` bytes of `key` as ranges into `fd`. Returns 0 with
 * *whole set when the object must be fetched whole instead.
 */
static int pull_ranges(s3_vault *sv, const char *bundle_id, const char *key, int fd,
		       uint64_t size, pull_hash *hash, int *whole)
{
	ranged_pull rp = { 0 };
	uint64_t range_size = sv->settings.part_size;
	int rc;

	*whole = 0;
	rp.sv = sv;
	rp.bundle_id = bundle_id;
	rp.key = key;
	rp.fd = fd;
	rp.size = size;
	rp.hash = hash;
	rp.nranges = (size_t)((size + range_size - 1) / range_size);
	rp.nslots = (size_t)sv->settings.concurrency < rp.nranges ? (size_t)sv->settings.concurrency
								   : rp.nranges;
	rp.ranges = calloc(rp.nranges, sizeof(*rp.ranges));
	rp.slots = calloc(rp.nslots, sizeof(*rp.slots));
	rp.hash_buf = hash->sha ? malloc(HASH_CHUNK) : NULL;
	if (!rp.ranges || !rp.slots || (hash->sha && !rp.hash_buf)) {
		rc = sm_error_set(SM_ENOMEM, "out of memory");
		goto done;
	}
	for (size_t i = 0; i < rp.nranges; i++) {
		rp.ranges[i].start = (uint64_t)i * range_size;
		rp.ranges[i].len = size - rp.ranges[i].start < range_size ? size - rp.ranges[i].start
									: range_size;
	}

	rc = sm_http_run(sv->http, rp.nslots, range_next, range_done, &rp);
	if (!rc)
		rc = rp.rc;
	if (rp.whole) {
		*whole = 1;
		rc = 0;
		goto done;
	}
	if (rc)
		goto done;

	if (rp.ready != size) {
		rc = sm_error_set(SM_ENETWORK, "the download of '%s' ended after %llu of %llu bytes",
				  key, (unsigned long long)rp.ready, (unsigned long long)size);
		goto done;
	}
	if (hash->sha && rp.rehash) {
		/* bytes below the hashed prefix changed: hash the whole file again */
		EVP_DigestInit_ex(hash->sha, EVP_sha256(), NULL);
		rp.hashed = 0;
		rp.rehash = 0;
		rc = hash_ready(&rp);
	}
done:
	for (size_t i = 0; rp.slots && i < rp.nslots; i++)
		if (rp.slots[i].ready)
			s3_call_release(&rp.slots[i].call);
	free(rp.slots);
	free(rp.ranges);
	free(rp.hash_buf);
	return rc;
}

static void whole_progress(sm_http_request *req, void *payload)
{
	s3_call *call = payload;
	uint64_t *total = req->user;

	s3_report(call->sv, req->written, *total);
}

/* Fetches the object with one GET into `fd` and returns the bytes written in *written. */
static int pull_whole(s3_vault *sv, const sm_record *record, const char *key, int fd,
		      pull_hash *hash, uint64_t *written)
{
	uint64_t total = record->size_bytes;
	s3_call call;
	int rc;

	*written = 0;
	if ((rc = s3_call_init(&call, sv, "GET", key, NULL)) != 0)
		goto done;
	call.req.response = NULL;
	call.req.response_fd = fd;
	call.req.response_max = record->size_bytes ? record->size_bytes : SM_S3_PULL_UNSIZED_MAX;
	call.req.resume = 1;
	call.req.response_sha = hash->sha;
	call.req.watch = hash->watch;
	call.req.progress = whole_progress;
	call.req.user = &total;
	rc = s3_call_perform(&call);
	if (rc == SM_EINTEGRITY)
		rc = sm_error_wrap(rc, "bundle '%s' in vault '%s' is corrupt: its data object is "
				   "larger than its metadata says", record->bundle_id, sv->config->name);
	if (rc)
		goto done;
	if (call.req.status != 200 && call.req.status != 206) {
		rc = data_status_error(&call, record->bundle_id);
		goto done;
	}
	*written = call.req.written;
done:
	s3_call_release(&call);
	return rc;
}

int s3_pull(sm_vault *self, const char *bundle_id, int fd, sm_record **out)
{
	s3_vault *sv = (s3_vault *)self;
	pull_hash hash = { NULL, sm_pull_watch_take() };
	sm_record *record = NULL;
	unsigned char digest[32];
	unsigned int digest_len = 32;
	char hex[65] = "", *key = NULL;
	const char *expected;
	uint64_t written = 0, size;
	int rc, whole = 1;

	*out = NULL;
	/* with a watch the library checks the SHA-256 while the bytes arrive */
	if (!hash.watch && (!(hash.sha = EVP_MD_CTX_new()) ||
			    !EVP_DigestInit_ex(hash.sha, EVP_sha256(), NULL))) {
		rc = sm_error_set(SM_ENOMEM, "cannot start SHA-256");
		goto done;
	}
	rc = s3_fetch_record(sv, bundle_id, &record);
	if (rc)
		goto done;
	key = sm_s3_bundle_key(&sv->settings, bundle_id);
	if (!key) {
		rc = SM_ENOMEM;
		goto done;
	}
	size = record->size_bytes;

	if (size >= 2 * sv->settings.part_size && sv->settings.concurrency > 1) {
		rc = pull_ranges(sv, bundle_id, key, fd, size, &hash, &whole);
		if (rc)
			goto done;
		written = size;
		if (whole) {
			/* what the ranges wrote is rewritten from offset 0 */
			if (hash.watch && atomic_load(&hash.watch->ready) > 0)
				atomic_store(&hash.watch->rewritten, 1);
			if (ftruncate(fd, 0) != 0) {
				rc = sm_error_set_errno(SM_EIO, errno, "cannot truncate the download");
				goto done;
			}
			if (hash.sha)
				EVP_DigestInit_ex(hash.sha, EVP_sha256(), NULL);
		}
	}
	if (whole) {
		if ((rc = pull_whole(sv, record, key, fd, &hash, &written)) != 0)
			goto done;
	}

	if (hash.sha) {
		EVP_DigestFinal_ex(hash.sha, digest, &digest_len);
		sm_hex(digest, 32, hex);
	}
	expected = sm_record_metadata_get(record, "sha256");
	if ((hash.sha && expected && strcmp(expected, hex) != 0) ||
	    (record->size_bytes && written != record->size_bytes)) {
		/* a forced push may have replaced the bundle while it was read */
		sm_record *newer = NULL;

		if (s3_fetch_record(sv, bundle_id, &newer) == 0 && newer->size_bytes == written &&
		    (!hash.sha || ((expected = sm_record_metadata_get(newer, "sha256")) != NULL &&
				   strcmp(expected, hex) == 0))) {
			sm_record_free(record);
			record = newer;
		} else {
			sm_record_free(newer);
		}
	}
	if (record->size_bytes && written != record->size_bytes) {
		rc = sm_error_set(SM_EINTEGRITY, "bundle '%s' in vault '%s' is corrupt: it has %llu "
				  "bytes, its metadata says %llu", bundle_id, sv->config->name,
				  (unsigned long long)written, (unsigned long long)record->size_bytes);
		goto done;
	}
	expected = sm_record_metadata_get(record, "sha256");
	if (hash.sha && expected && strcmp(expected, hex) != 0) {
		rc = sm_error_set(SM_EINTEGRITY, "bundle '%s' in vault '%s' is corrupt: SHA-256 %s, "
				  "its metadata says %s", bundle_id, sv->config->name, hex, expected);
		goto done;
	}
	s3_report(sv, written, written);
	*out = record;
	record = NULL;
done:
	EVP_MD_CTX_free(hash.sha);
	sm_record_free(record);
	free(key);
	return rc;
}
