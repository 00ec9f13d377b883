/*
 * Push to an S3 vault: a single PUT for small bundles, a multipart upload
 * with several parts in flight for large ones, and the state that lets an
 * interrupted multipart upload resume.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "net/sigv4.h"
#include "vault/record.h"
#include "vault/s3_connector.h"

/* Upload state files untouched this long belong to abandoned uploads. */
#define ABANDONED_UPLOAD_SECONDS (7 * 24 * 3600)

/*
 * Upload state. An unfinished multipart upload is recorded in
 * $SKILLMEAT_HOME/uploads/<hash>.json, where <hash> covers the vault,
 * endpoint, bucket, object key, file size, modification time and SHA-256
 * of the file's first and last 64 KiB. Each finished part is recorded with
 * its ETag and SHA-256 as soon as it finishes (see upload_state_save()).
 * A later push of the same file reuses a recorded part only when the part
 * read again has the recorded SHA-256, so a changed file never reuses a
 * stale part. Stores without ListParts cannot confirm the parts, so a
 * CompleteMultipartUpload that rejects them starts a fresh upload.
 */

typedef struct upload_state {
	char *path;
	char *upload_id;
	uint64_t part_size;
	uint32_t nparts;
	json_t *root;     /* the file's JSON; "parts" maps part numbers to {etag, sha256} */
} upload_state;

static void upload_state_release(upload_state *st)
{
	free(st->path);
	free(st->upload_id);
	json_decref(st->root);
	memset(st, 0, sizeof(*st));
}

/* Hashes what identifies the file being pushed into the state file's name. */
static int upload_state_path(s3_vault *sv, int fd, const char *key, uint64_t size, char **out)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned char digest[32], *sample = malloc(65536);
	unsigned int len = 32;
	char hex[65], head[512];
	struct stat st;
	int rc = 0;

	*out = NULL;
	if (!ctx || !sample) {
		rc = sm_error_set(SM_ENOMEM, "out of memory");
		goto done;
	}
	if (fstat(fd, &st) != 0) {
		rc = sm_error_set_errno(SM_EIO, errno, "cannot stat the bundle");
		goto done;
	}
	snprintf(head, sizeof(head), "%s\n%s\n%s\n%llu\n%lld.%09ld\n", sv->config->name,
		 sv->settings.endpoint, sv->settings.bucket, (unsigned long long)size,
		 (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
	EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
	EVP_DigestUpdate(ctx, head, strlen(head));
	EVP_DigestUpdate(ctx, key, strlen(key) + 1);
	for (int i = 0; i < 2; i++) {
		uint64_t offset = i == 0 || size < 65536 ? 0 : size - 65536;
		ssize_t n = pread(fd, sample, 65536, (off_t)offset);

		if (n < 0) {
			rc = sm_error_set_errno(SM_EIO, errno, "cannot read the bundle");
			goto done;
		}
		EVP_DigestUpdate(ctx, sample, (size_t)n);
	}
	EVP_DigestFinal_ex(ctx, digest, &len);
	sm_hex(digest, 32, hex);
	*out = sm_asprintf("%s/%s.json", sv->uploads_dir, hex);
	if (!*out)
		rc = SM_ENOMEM;
done:
	EVP_MD_CTX_free(ctx);
	free(sample);
	return rc;
}

/*
 * Replaces the state file: temporary file, then rename. There is no fsync,
 * because it would stall every transfer in flight and widen the window in
 * which a killed push loses a finished part. After a power loss the file
 * may be empty or old, which costs a fresh upload or re-sent parts only.
 */
static int upload_state_save(const upload_state *st)
{
	char *text = json_dumps(st->root, JSON_INDENT(1) | JSON_SORT_KEYS), *tmp = NULL;
	int rc, fd = -1;

	if (!text)
		return sm_error_set(SM_ENOMEM, "cannot serialise the upload state");
	rc = sm_tmpfile_beside(st->path, 0600, &tmp, &fd);
	if (rc)
		goto done;
	if (sm_write_all(fd, text, strlen(text)) != 0) {
		rc = sm_error_set_errno(SM_EIO, errno, "cannot write the upload state '%s'", st->path);
		goto done;
	}
	if (close(fd) != 0) {
		fd = -1;
		rc = sm_error_set_errno(SM_EIO, errno, "cannot write the upload state '%s'", st->path);
		unlink(tmp);
		goto done;
	}
	fd = -1;
	if (rename(tmp, st->path) != 0) {
		rc = sm_error_set_errno(SM_EIO, errno, "cannot write the upload state '%s'", st->path);
		unlink(tmp);
	}
done:
	if (fd >= 0) {
		close(fd);
		unlink(tmp);
	}
	free(tmp);
	free(text);
	return rc;
}

/* Loads a state file; 0 with st->root NULL when there is none usable. */
static int upload_state_load(s3_vault *sv, upload_state *st, const char *key, uint64_t size)
{
	json_error_t error;
	json_t *root = json_load_file(st->path, JSON_REJECT_DUPLICATES, &error);
	const char *upload_id, *state_key;
	json_int_t part_size;

	if (!root)
		return 0;
	if (json_unpack(root, "{s:s, s:s, s:I}", "upload_id", &upload_id, "key", &state_key,
			"part_size", &part_size) != 0 || strcmp(state_key, key) != 0 ||
	    part_size < (json_int_t)SM_S3_MIN_PART_SIZE || (uint64_t)part_size > SM_S3_MAX_PART_SIZE ||
	    !json_is_object(json_object_get(root, "parts"))) {
		s3_notify(sv, SM_LOG_DEBUG, "ignoring the invalid upload state '%s'", st->path);
		json_decref(root);
		unlink(st->path);
		return 0;
	}
	st->upload_id = sm_strdup(upload_id);
	if (!st->upload_id) {
		json_decref(root);
		return SM_ENOMEM;
	}
	st->part_size = (uint64_t)part_size;
	st->nparts = (uint32_t)((size + st->part_size - 1) / st->part_size);
	st->root = root;
	return 0;
}

/* Sends AbortMultipartUpload; failures only go to the debug log (some stores return 405). */
static void abort_upload(s3_vault *sv, const char *key, const char *upload_id)
{
	sm_buf query = SM_BUF_INIT(0);
	s3_call call;

	if (sm_buf_puts(&query, "uploadId=") != 0 ||
	    sm_uri_encode(&query, upload_id, strlen(upload_id), 0) != 0) {
		sm_buf_release(&query);
		return;
	}
	if (s3_call_init(&call, sv, "DELETE", key, query.data) == 0 && s3_call_perform(&call) == 0 &&
	    call.req.status != 204 && call.req.status != 200 && call.req.status != 404)
		s3_notify(sv, SM_LOG_DEBUG, "the store did not abort upload of '%s' (HTTP %ld)", key,
		       call.req.status);
	s3_call_release(&call);
	sm_buf_release(&query);
}

/* Temporary files of a state write older than this were left by a killed push. */
#define STALE_TEMP_SECONDS 3600

/*
 * Removes a temporary file (".<state>.tmp-XXXXXX") that a push killed while
 * writing its state left behind: at once when it belongs to `keep`, the
 * state this push owns, and after STALE_TEMP_SECONDS for other states.
 */
static void remove_stale_temp(s3_vault *sv, int dir_fd, const char *name, const char *keep,
			      time_t now)
{
	const char *base = strrchr(keep, '/') ? strrchr(keep, '/') + 1 : keep;
	size_t base_len = strlen(base);
	struct stat st;

	if (!strstr(name, ".tmp-") ||
	    fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode))
		return;
	if (!(strncmp(name + 1, base, base_len) == 0 && strncmp(name + 1 + base_len, ".tmp-", 5) == 0) &&
	    now - st.st_mtime < STALE_TEMP_SECONDS)
		return;
	if (unlinkat(dir_fd, name, 0) == 0)
		s3_notify(sv, SM_LOG_DEBUG, "removed the leftover upload state file '%s'", name);
}

/*
 * Aborts uploads of this vault that will never finish: those of the same
 * key for another file (their state file is not `keep`), and those whose
 * state is older than ABANDONED_UPLOAD_SECONDS.
 */
static void abort_abandoned(s3_vault *sv, const char *key, const char *keep)
{
	DIR *dir = opendir(sv->uploads_dir);
	struct dirent *entry;
	time_t now = time(NULL);

	if (!dir)
		return;
	while ((entry = readdir(dir)) != NULL) {
		const char *vault, *endpoint, *bucket, *state_key, *upload_id;
		char *path;
		json_t *root;
		struct stat st;

		if (entry->d_name[0] == '.') {
			remove_stale_temp(sv, dirfd(dir), entry->d_name, keep, now);
			continue;
		}
		if (!strstr(entry->d_name, ".json"))
			continue;
		path = sm_path_join(sv->uploads_dir, entry->d_name);
		if (!path)
			break;
		root = strcmp(path, keep) == 0 || stat(path, &st) != 0 ? NULL
			: json_load_file(path, 0, NULL);
		if (root && json_unpack(root, "{s:s, s:s, s:s, s:s, s:s}", "vault", &vault, "endpoint",
					&endpoint, "bucket", &bucket, "key", &state_key, "upload_id",
					&upload_id) == 0 &&
		    strcmp(vault, sv->config->name) == 0 && strcmp(endpoint, sv->settings.endpoint) == 0 &&
		    strcmp(bucket, sv->settings.bucket) == 0 &&
		    (strcmp(state_key, key) == 0 || now - st.st_mtime > ABANDONED_UPLOAD_SECONDS)) {
			s3_notify(sv, SM_LOG_DEBUG, "aborting the abandoned upload of '%s'", state_key);
			abort_upload(sv, state_key, upload_id);
			unlink(path);
		}
		json_decref(root);
		free(path);
	}
	closedir(dir);
}

/* multipart upload */

typedef struct part_slot {
	s3_call call;
	char *data;
	size_t len;
	uint32_t number;
	char sha[65];
	int busy;
	int ready;        /* call initialised */
} part_slot;

typedef struct multipart {
	s3_vault *sv;
	int fd;
	uint64_t size;
	const char *key;
	upload_state *state;
	EVP_MD_CTX *whole;
	part_slot *slots;
	size_t nslots;
	uint32_t next_part;  /* 1-based */
	uint64_t done_bytes;
	uint64_t reused_bytes;
	int rc;              /* failure found while preparing a part */
} multipart;

static int read_fully(int fd, char *data, size_t len, uint64_t offset)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = pread(fd, data + done, len - done, (off_t)(offset + done));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return sm_error_set_errno(SM_EIO, errno, "cannot read the bundle");
		if (n == 0)
			return sm_error_set(SM_EIO, "the bundle became shorter while it was uploaded");
		done += (size_t)n;
	}
	return 0;
}

static void part_progress(sm_http_request *req, void *payload)
{
	s3_call *call = payload;
	multipart *mp = req->user;
	uint64_t done = mp->done_bytes;

	for (size_t i = 0; i < mp->nslots; i++)
		if (mp->slots[i].busy)
			done += mp->slots[i].call.req.sent;
	s3_report(call->sv, done, mp->size);
}

static sm_http_request *next_part(void *payload)
{
	multipart *mp = payload;
	json_t *parts = json_object_get(mp->state->root, "parts");

	while (!mp->rc && mp->next_part <= mp->state->nparts) {
		uint32_t number = mp->next_part;
		uint64_t offset = (uint64_t)(number - 1) * mp->state->part_size;
		size_t len = (size_t)(mp->size - offset < mp->state->part_size ? mp->size - offset
									    : mp->state->part_size);
		part_slot *slot = NULL;
		unsigned char digest[32];
		char name[16], query[1200];
		const char *recorded_sha = NULL;
		sm_buf encoded = SM_BUF_INIT(0);
		int rc;

		for (size_t i = 0; i < mp->nslots && !slot; i++)
			if (!mp->slots[i].busy)
				slot = &mp->slots[i];
		if (!slot)
			return NULL; /* unreachable while nslots equals the run's concurrency */
		if (!slot->data && !(slot->data = malloc(mp->state->part_size))) {
			mp->rc = sm_error_set(SM_ENOMEM, "out of memory for a part of %llu bytes",
					      (unsigned long long)mp->state->part_size);
			return NULL;
		}
		/* parts are read in order, so the whole file's SHA-256 grows in the same pass */
		if ((rc = read_fully(mp->fd, slot->data, len, offset)) != 0) {
			mp->rc = rc;
			return NULL;
		}
		mp->next_part++;
		EVP_DigestUpdate(mp->whole, slot->data, len);
		SHA256((unsigned char *)slot->data, len, digest);
		sm_hex(digest, 32, slot->sha);

		snprintf(name, sizeof(name), "%u", number);
		json_unpack(json_object_get(parts, name), "{s:s}", "sha256", &recorded_sha);
		if (recorded_sha && strcmp(recorded_sha, slot->sha) == 0) {
			mp->done_bytes += len;
			mp->reused_bytes += len;
			s3_report(mp->sv, mp->done_bytes, mp->size);
			continue;
		}
		json_object_del(parts, name);

		if (sm_uri_encode(&encoded, mp->state->upload_id, strlen(mp->state->upload_id), 0) != 0 ||
		    sm_buf_puts(&encoded, "") != 0 ||
		    snprintf(query, sizeof(query), "partNumber=%u&uploadId=%s", number,
			     encoded.data) >= (int)sizeof(query)) {
			sm_buf_release(&encoded);
			mp->rc = sm_error_set(SM_EINVALID, "upload id too long");
			return NULL;
		}
		sm_buf_release(&encoded);
		if (slot->ready)
			s3_call_release(&slot->call);
		slot->ready = 1;
		if ((rc = s3_call_init(&slot->call, mp->sv, "PUT", mp->key, query)) != 0) {
			mp->rc = rc;
			return NULL;
		}
		slot->call.req.body = slot->data;
		slot->call.req.body_len = len;
		slot->call.payload_hash = slot->sha;
		slot->call.req.user = mp;
		slot->call.req.progress = part_progress;
		slot->len = len;
		slot->number = number;
		slot->busy = 1;
		return &slot->call.req;
	}
	return NULL;
}

static int part_done(sm_http_request *req, void *payload)
{
	multipart *mp = payload;
	part_slot *slot = NULL;
	char etag[256], name[16], what[64];
	json_t *entry;
	int rc;

	for (size_t i = 0; i < mp->nslots && !slot; i++)
		if (&mp->slots[i].call.req == req)
			slot = &mp->slots[i];
	if (!slot)
		return sm_error_set(SM_ERROR, "unknown part finished");
	slot->busy = 0;
	snprintf(what, sizeof(what), "upload of part %u", slot->number);
	if (req->rc)
		return sm_error_set(req->rc, "%s", req->error);
	if (req->status != 200)
		return s3_status_error(&slot->call, what);
	if (!sm_http_header_get(req, "ETag", etag, sizeof(etag)) || !*etag)
		return sm_error_set(SM_ERROR, "the store returned no ETag for part %u", slot->number);
	snprintf(name, sizeof(name), "%u", slot->number);
	entry = json_pack("{s:s, s:s}", "etag", etag, "sha256", slot->sha);
	if (!entry || json_object_set_new(json_object_get(mp->state->root, "parts"), name, entry) != 0)
		return sm_error_set(SM_ENOMEM, "out of memory");
	/* recorded at once, so a killed push resumes after this part */
	if ((rc = upload_state_save(mp->state)) != 0)
		return rc;
	mp->done_bytes += slot->len;
	s3_report(mp->sv, mp->done_bytes, mp->size);
	return 0;
}

/* Starts a multipart upload and records its state. */
static int start_upload(s3_vault *sv, const char *key, uint64_t size, upload_state *st)
{
	s3_call call;
	int rc;

	if ((rc = sm_s3_part_plan(size, sv->settings.part_size, &st->part_size, &st->nparts)) != 0)
		return rc;
	if ((rc = s3_call_init(&call, sv, "POST", key, "uploads=")) != 0)
		goto done;
	s3_call_body(&call, "", 0);
	if ((rc = s3_call_perform(&call)) != 0)
		goto done;
	if (call.req.status != 200) {
		rc = s3_status_error(&call, "starting a multipart upload");
		goto done;
	}
	if ((rc = sm_s3_parse_upload_id(call.body.data, call.body.len, &st->upload_id)) != 0)
		goto done;
	st->root = json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:{}}", "vault", sv->config->name,
			     "endpoint", sv->settings.endpoint, "bucket", sv->settings.bucket, "key",
			     key, "upload_id", st->upload_id, "part_size", (json_int_t)st->part_size,
			     "size", (json_int_t)size, "parts");
	if (!st->root) {
		rc = sm_error_set(SM_ENOMEM, "out of memory");
		goto done;
	}
	if ((rc = sm_mkdir_p(sv->uploads_dir, 0700)) == 0)
		rc = upload_state_save(st);
done:
	s3_call_release(&call);
	return rc;
}

/* Builds the CompleteMultipartUpload body from the recorded parts. */
static char *complete_body(const upload_state *st)
{
	json_t *parts = json_object_get(st->root, "parts");
	sm_buf buf = SM_BUF_INIT(0);
	int rc = sm_buf_puts(&buf, "<CompleteMultipartUpload>");

	for (uint32_t n = 1; n <= st->nparts && !rc; n++) {
		char name[16];
		const char *etag = NULL;

		snprintf(name, sizeof(name), "%u", n);
		if (json_unpack(json_object_get(parts, name), "{s:s}", "etag", &etag) != 0) {
			sm_error_set(SM_ERROR, "part %u of the upload is not recorded", n);
			sm_buf_release(&buf);
			return NULL;
		}
		rc = sm_buf_printf(&buf, "<Part><PartNumber>%u</PartNumber><ETag>", n);
		for (const char *p = etag; *p && !rc; p++)
			rc = *p == '&' ? sm_buf_puts(&buf, "&amp;") : *p == '<' ? sm_buf_puts(&buf, "&lt;")
			     : *p == '>' ? sm_buf_puts(&buf, "&gt;") : sm_buf_putc(&buf, *p);
		if (!rc)
			rc = sm_buf_puts(&buf, "</ETag></Part>");
	}
	if (!rc)
		rc = sm_buf_puts(&buf, "</CompleteMultipartUpload>");
	if (rc) {
		sm_buf_release(&buf);
		return NULL;
	}
	return sm_buf_take(&buf);
}

/*
 * Finishes the upload. *stale is set when the store rejects the recorded
 * parts or upload id, so a fresh upload may succeed.
 */
static int complete_upload(s3_vault *sv, const char *key, const upload_state *st, int *stale)
{
	sm_buf query = SM_BUF_INIT(0);
	char *body = complete_body(st);
	sm_s3_error error = { 0 };
	s3_call call = { 0 };
	int rc, ready = 0;

	*stale = 0;
	if (!body)
		return SM_ENOMEM;
	rc = sm_buf_puts(&query, "uploadId=");
	if (!rc)
		rc = sm_uri_encode(&query, st->upload_id, strlen(st->upload_id), 0);
	if (!rc)
		rc = s3_call_init(&call, sv, "POST", key, query.data);
	if (rc)
		goto done;
	ready = 1;
	s3_call_body(&call, body, strlen(body));
	if ((rc = s3_call_header(&call, "Content-Type: application/xml")) != 0)
		goto done;
	if ((rc = s3_call_perform(&call)) != 0)
		goto done;
	/* a 200 may still carry an <Error> that arrived after the headers */
	s3_error_of(&call, &error);
	if (call.req.status == 200 && !error.code)
		goto done;
	if (call.req.status == 404 || call.req.status == 400 ||
	    (error.code && (strcmp(error.code, "NoSuchUpload") == 0 ||
			    strcmp(error.code, "InvalidPart") == 0 ||
			    strcmp(error.code, "InvalidPartOrder") == 0 ||
			    strcmp(error.code, "EntityTooSmall") == 0)))
		*stale = 1;
	if (call.req.status == 200)
		call.req.status = 500;
	rc = s3_status_error(&call, "completing the multipart upload");
done:
	sm_s3_error_release(&error);
	if (ready)
		s3_call_release(&call);
	sm_buf_release(&query);
	free(body);
	return rc;
}

/*
 * Uploads `fd` as `key` in parts, resuming a recorded upload of the same
 * file. Computes the SHA-256 in the same pass, sets it in the record, and
 * calls the before_commit gate before the object becomes visible.
 */
static int multipart_upload(s3_vault *sv, int fd, uint64_t size, const char *key,
			    sm_record *record, sm_push_opts *opts, int delete_old_meta)
{
	upload_state st = { 0 };
	multipart mp = { 0 };
	unsigned char digest[32];
	unsigned int digest_len = 32;
	char hex[65];
	int rc, stale = 0, resumed = 0;

	for (int round = 0; round < 2; round++) {
		upload_state_release(&st);
		if ((rc = upload_state_path(sv, fd, key, size, &st.path)) != 0)
			break;
		abort_abandoned(sv, key, st.path);
		if (round == 0 && (rc = upload_state_load(sv, &st, key, size)) != 0)
			break;
		resumed = st.root != NULL;
		if (!resumed && (rc = start_upload(sv, key, size, &st)) != 0)
			break;
		if (resumed)
			s3_notify(sv, SM_LOG_INFO, "resuming the unfinished upload of '%s' to vault '%s'",
			       record->bundle_id, sv->config->name);

		memset(&mp, 0, sizeof(mp));
		mp.sv = sv;
		mp.fd = fd;
		mp.size = size;
		mp.key = key;
		mp.state = &st;
		mp.next_part = 1;
		mp.nslots = (size_t)sv->settings.concurrency;
		if (mp.nslots > st.nparts)
			mp.nslots = st.nparts;
		mp.slots = calloc(mp.nslots, sizeof(*mp.slots));
		mp.whole = EVP_MD_CTX_new();
		if (!mp.slots || !mp.whole || !EVP_DigestInit_ex(mp.whole, EVP_sha256(), NULL)) {
			rc = sm_error_set(SM_ENOMEM, "out of memory");
		} else {
			rc = sm_http_run(sv->http, mp.nslots, next_part, part_done, &mp);
			if (!rc)
				rc = mp.rc;
		}
		for (size_t i = 0; mp.slots && i < mp.nslots; i++) {
			if (mp.slots[i].ready)
				s3_call_release(&mp.slots[i].call);
			free(mp.slots[i].data);
		}
		free(mp.slots);
		if (!rc && mp.reused_bytes)
			s3_notify(sv, SM_LOG_INFO, "reused %llu of %llu bytes uploaded before",
			       (unsigned long long)mp.reused_bytes, (unsigned long long)size);
		if (!rc) {
			EVP_DigestFinal_ex(mp.whole, digest, &digest_len);
			sm_hex(digest, 32, hex);
		}
		EVP_MD_CTX_free(mp.whole);
		mp.whole = NULL;
		if (rc)
			break; /* the state stays, so the next push resumes */

		if ((rc = sm_record_metadata_set(record, "sha256", hex)) != 0)
			break;
		if (opts->before_commit && (rc = opts->before_commit(opts->payload)) != 0) {
			abort_upload(sv, key, st.upload_id);
			unlink(st.path);
			break;
		}
		if (delete_old_meta) {
			char *meta = sm_s3_metadata_key(&sv->settings, record->bundle_id);

			rc = meta ? s3_delete_object(sv, meta, "deleting the old metadata object") : SM_ENOMEM;
			free(meta);
			if (rc)
				break;
			delete_old_meta = 0;
		}
		rc = complete_upload(sv, key, &st, &stale);
		if (!rc) {
			unlink(st.path);
			break;
		}
		if (!stale || !resumed || round == 1)
			break;
		s3_notify(sv, SM_LOG_WARN, "the store rejected the parts recorded for '%s' (%s); "
		       "uploading it again", record->bundle_id, sm_error_message());
		unlink(st.path);
	}
	upload_state_release(&st);
	return rc;
}

/* push */

/* Reads a whole small file into memory and hashes it. */
static int read_small(int fd, uint64_t size, char **data, char hex[65])
{
	unsigned char digest[32];
	int rc;

	*data = malloc(size ? size : 1);
	if (!*data)
		return sm_error_set(SM_ENOMEM, "out of memory");
	if ((rc = read_fully(fd, *data, (size_t)size, 0)) != 0) {
		free(*data);
		*data = NULL;
		return rc;
	}
	SHA256((unsigned char *)*data, (size_t)size, digest);
	sm_hex(digest, 32, hex);
	return 0;
}

int s3_push(sm_vault *self, int fd, sm_record *record, sm_push_opts *opts)
{
	s3_vault *sv = (s3_vault *)self;
	char *data_key = sm_s3_bundle_key(&sv->settings, record->bundle_id);
	char *meta_key = sm_s3_metadata_key(&sv->settings, record->bundle_id);
	char *data = NULL, *text = NULL, hex[65] = "", now[32];
	sm_record *old = NULL;
	struct stat st;
	uint64_t size;
	int rc, exists;

	if (!data_key || !meta_key) {
		rc = SM_ENOMEM;
		goto done;
	}
	if (fstat(fd, &st) != 0) {
		rc = sm_error_set_errno(SM_EIO, errno, "cannot stat the bundle");
		goto done;
	}
	size = (uint64_t)st.st_size;

	/* an existing id: the same bytes are a no-op, others need --force */
	rc = s3_fetch_record(sv, record->bundle_id, &old);
	if (rc && rc != SM_ENOTFOUND && !(opts->force && (rc == SM_EINVALID || rc == SM_EINTEGRITY)))
		goto done;
	if (rc == SM_ENOTFOUND && strstr(sm_error_message(), "does not exist at"))
		goto done;
	exists = rc == 0 || rc == SM_EINVALID || rc == SM_EINTEGRITY;
	rc = 0;
	if (old) {
		const char *old_sha = sm_record_metadata_get(old, "sha256");
		int identical = 0;

		if (old->size_bytes == size && old_sha) {
			unsigned char digest[32];

			if ((rc = sm_copy_hash(fd, -1, digest, NULL, NULL, NULL)) != 0)
				goto done;
			sm_hex(digest, 32, hex);
			identical = strcmp(hex, old_sha) == 0;
		}
		if (identical && !opts->force) {
			char *uploaded = sm_strdup(old->uploaded_at), *path = sm_strdup(old->vault_path);

			if (!uploaded || !path) {
				free(uploaded);
				free(path);
				rc = SM_ENOMEM;
				goto done;
			}
			free(record->uploaded_at);
			free(record->vault_path);
			record->uploaded_at = uploaded;
			record->vault_path = path;
			rc = sm_record_metadata_set(record, "sha256", hex);
			opts->unchanged = 1;
			goto done;
		}
		if (!opts->force) {
			rc = sm_error_set(SM_EEXISTS, "bundle '%s' already exists in vault '%s'; versions "
					  "are immutable: push with another --version, or use --force to "
					  "replace it", record->bundle_id, sv->config->name);
			goto done;
		}
	}

	sm_now_iso8601(now);
	free(record->uploaded_at);
	free(record->vault_path);
	record->uploaded_at = sm_strdup(now);
	record->vault_path = sm_asprintf("s3://%s/%s", sv->settings.bucket, data_key);
	record->size_bytes = size;
	if (!record->uploaded_at || !record->vault_path) {
		rc = SM_ENOMEM;
		goto done;
	}

	if (size <= sv->settings.part_size) {
		long status = 0;

		if ((rc = read_small(fd, size, &data, hex)) != 0)
			goto done;
		if ((rc = sm_record_metadata_set(record, "sha256", hex)) != 0)
			goto done;
		if (opts->before_commit && (rc = opts->before_commit(opts->payload)) != 0)
			goto done;
		/* a forced push removes the old metadata first: no reader pairs it with new data */
		if (exists && (rc = s3_delete_object(sv, meta_key, "deleting the old metadata object")) != 0)
			goto done;
		rc = s3_put_object(sv, data_key, data, (size_t)size, "application/zip",
				exists ? NULL : "If-None-Match: *", "the bundle's data", &status);
		if (!rc && status == 412)
			rc = sm_error_set(SM_EEXISTS, "bundle '%s' was pushed to vault '%s' by someone "
					  "else meanwhile", record->bundle_id, sv->config->name);
		if (rc)
			goto done;
		s3_report(sv, size, size);
	} else {
		rc = multipart_upload(sv, fd, size, data_key, record, opts, exists);
		if (rc)
			goto done;
	}

	if ((rc = sm_record_to_text(record, &text)) != 0)
		goto done;
	rc = s3_put_object(sv, meta_key, text, strlen(text), "application/json", NULL,
			"the metadata object", NULL);
	if (!rc)
		rc = s3_update_index(sv, record, NULL);
done:
	sm_record_free(old);
	free(data);
	free(text);
	free(data_key);
	free(meta_key);
	return rc;
}
