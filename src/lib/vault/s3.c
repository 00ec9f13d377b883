/*
 * The S3 vault: AWS S3 and S3-compatible stores.
 *
 * Objects use the layout of the local vault and the original tool:
 * <prefix>bundles/<id>.skillmeat-pack, <prefix>metadata/<id>.json and
 * <prefix>index.json. The metadata objects are the truth. The index is a
 * cache that many stores cannot update atomically, so a listing takes its
 * ids from ListObjectsV2 of <prefix>metadata/, its records from the index,
 * fetches only the metadata objects the index lacks, and drops index
 * entries whose metadata object is gone.
 *
 * Requests are signed with SigV4 (net/sigv4.c) and sent through the
 * retrying HTTP client (net/http.c). Large bundles go up as multipart
 * uploads with several parts in flight. The state of an unfinished upload
 * is kept under $SKILLMEAT_HOME/uploads/, so pushing the same file again
 * sends only the parts that are missing (see upload state below).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config/sharing.h"
#include "credentials/aws.h"
#include "net/http.h"
#include "net/sigv4.h"
#include "util/util.h"
#include "vault/connectors.h"
#include "vault/record.h"
#include "vault/s3_internal.h"

/* Credentials expiring within this many seconds are resolved again. */
#define REFRESH_MARGIN_SECONDS 300

/* Largest listing page and error body read into memory. */
#define XML_MAX_BYTES (16u * 1024 * 1024)

/* Upload state files untouched this long belong to abandoned uploads. */
#define ABANDONED_UPLOAD_SECONDS (7 * 24 * 3600)

/* Attempts at a conditional index update that keeps losing races. */
#define INDEX_ATTEMPTS 8

typedef struct s3_vault {
	sm_vault parent;
	const sm_vault_config *config;
	const sm_callbacks *callbacks;
	sm_s3_settings settings;
	sm_aws_credentials creds;
	int have_creds;
	sm_http_client *http;
	char *uploads_dir;
	int region_followed;
} s3_vault;

/* One S3 request with the strings it owns. */
typedef struct s3_call {
	sm_http_request req;
	s3_vault *sv;
	char *key;            /* object key, NULL for the bucket */
	char *query;          /* encoded query, NULL when none */
	char *url;
	char *path;
	char *host;
	const char *payload_hash;
	char payload_hex[65];
	sm_buf body;          /* the response body */
	char *owned[8];       /* header lines this call allocated */
	size_t nowned;
} s3_call;

static void notify(const s3_vault *sv, sm_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void notify(const s3_vault *sv, sm_log_level level, const char *fmt, ...)
{
	char text[1024];
	va_list ap;

	if (!sv->callbacks->message)
		return;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	sv->callbacks->message(level, text, sv->callbacks->payload);
}

/* credentials and signing */

static int ensure_credentials(s3_vault *sv)
{
	int rc;

	if (sv->have_creds && !sm_aws_credentials_expiring(&sv->creds, REFRESH_MARGIN_SECONDS))
		return 0;
	if (sv->have_creds) {
		notify(sv, SM_LOG_DEBUG, "refreshing the AWS credentials of vault '%s' from %s",
		       sv->config->name, sv->creds.source);
		sm_aws_credentials_clear(&sv->creds);
		sv->have_creds = 0;
	}
	rc = sm_aws_credentials_resolve(sv->config, sv->callbacks, &sv->creds);
	if (rc)
		return rc;
	sv->have_creds = 1;
	notify(sv, SM_LOG_DEBUG, "vault '%s' uses AWS credentials from %s", sv->config->name,
	       sv->creds.source);
	return 0;
}

/* Signs one attempt: runs before every attempt, so the date and credentials are fresh. */
static int sign_attempt(sm_http_request *req, void *payload)
{
	s3_call *call = payload;
	s3_vault *sv = call->sv;
	sm_sigv4_header headers[4];
	sm_sigv4_request sig = { 0 };
	sm_sigv4_result result;
	char amz_date[17];
	size_t n = 0;
	int rc;

	if ((rc = ensure_credentials(sv)) != 0)
		return rc;
	sm_sigv4_now(amz_date);
	headers[n++] = (sm_sigv4_header){ "host", call->host };
	headers[n++] = (sm_sigv4_header){ "x-amz-content-sha256", call->payload_hash };
	headers[n++] = (sm_sigv4_header){ "x-amz-date", amz_date };
	if (sv->creds.session_token)
		headers[n++] = (sm_sigv4_header){ "x-amz-security-token", sv->creds.session_token };
	sig.method = req->method;
	sig.path = call->path;
	sig.query = call->query;
	sig.headers = headers;
	sig.nheaders = n;
	sig.payload_hash = call->payload_hash;
	sig.amz_date = amz_date;
	sig.region = sv->settings.region;
	sig.service = "s3";
	sig.access_key_id = sv->creds.access_key_id;
	sig.secret_access_key = sv->creds.secret_access_key;
	rc = sm_sigv4_sign(&sig, &result);
	if (rc)
		return rc;
	rc = sm_http_add_header(req, "x-amz-date: %s", amz_date);
	if (!rc)
		rc = sm_http_add_header(req, "x-amz-content-sha256: %s", call->payload_hash);
	if (!rc && sv->creds.session_token)
		rc = sm_http_add_header(req, "x-amz-security-token: %s", sv->creds.session_token);
	if (!rc)
		rc = sm_http_add_header(req, "Authorization: %s", result.authorization);
	explicit_bzero(result.authorization, strlen(result.authorization));
	sm_sigv4_result_release(&result);
	return rc;
}

/* S3 error codes that a later attempt may not get. */
static int s3_retryable(const sm_http_request *req, void *payload)
{
	const char *text = sm_http_error_text(req);

	if (req->status < 400)
		return 0;
	return strstr(text, "<Code>SlowDown</Code>") || strstr(text, "<Code>RequestTimeout</Code>") ||
	       strstr(text, "<Code>InternalError</Code>");
}

static int call_set_url(s3_call *call)
{
	free(call->url);
	free(call->path);
	free(call->host);
	call->url = call->path = call->host = NULL;
	if (sm_s3_build_url(&call->sv->settings, call->key, call->query, &call->url, &call->path,
			    &call->host) != 0)
		return SM_ENOMEM;
	call->req.url = call->url;
	return 0;
}

/* Sets up a call of `method` on `key` (NULL: the bucket) with an encoded `query`. */
static int call_init(s3_call *call, s3_vault *sv, const char *method, const char *key,
		     const char *query)
{
	memset(call, 0, sizeof(*call));
	sm_http_request_init(&call->req);
	call->sv = sv;
	call->body.max = XML_MAX_BYTES;
	call->req.method = method;
	call->req.prepare = sign_attempt;
	call->req.retryable = s3_retryable;
	call->req.payload = call;
	call->req.response = &call->body;
	call->payload_hash = SM_SIGV4_EMPTY_SHA256;
	call->key = key ? sm_strdup(key) : NULL;
	call->query = query ? sm_strdup(query) : NULL;
	if ((key && !call->key) || (query && !call->query))
		return SM_ENOMEM;
	return call_set_url(call);
}

static void call_release(s3_call *call)
{
	sm_http_request_release(&call->req);
	sm_buf_release(&call->body);
	for (size_t i = 0; i < call->nowned; i++)
		free(call->owned[i]);
	free(call->key);
	free(call->query);
	free(call->url);
	free(call->path);
	free(call->host);
	memset(call, 0, sizeof(*call));
}

static int call_header(s3_call *call, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int call_header(s3_call *call, const char *fmt, ...)
{
	va_list ap;
	char *line;

	if (call->nowned == sizeof(call->owned) / sizeof(call->owned[0]) ||
	    call->req.nheaders == sizeof(call->req.headers) / sizeof(call->req.headers[0]))
		return sm_error_set(SM_EINVALID, "too many headers");
	va_start(ap, fmt);
	if (vasprintf(&line, fmt, ap) < 0)
		line = NULL;
	va_end(ap);
	if (!line)
		return sm_error_set(SM_ENOMEM, "out of memory");
	call->owned[call->nowned++] = line;
	call->req.headers[call->req.nheaders++] = line;
	return 0;
}

/* Sets a memory body, signed with its SHA-256. */
static void call_body(s3_call *call, const void *data, size_t len)
{
	unsigned char digest[32];

	call->req.body = data ? data : "";
	call->req.body_len = len;
	SHA256(call->req.body, len, digest);
	sm_hex(digest, 32, call->payload_hex);
	call->payload_hash = call->payload_hex;
}

/* errors */

static void error_of(const s3_call *call, sm_s3_error *error)
{
	const char *text = sm_http_error_text(&call->req);

	if (sm_s3_parse_error(text, strlen(text), error) != 0)
		memset(error, 0, sizeof(*error));
}

/* Copies server text into a message without control characters and cut short. */
static void clean_text(const char *in, char *out, size_t size)
{
	size_t n = 0;

	for (; in && *in && n + 1 < size; in++)
		out[n++] = (unsigned char)*in < 0x20 || *in == 0x7f ? ' ' : *in;
	out[n] = '\0';
}

/*
 * Sets the message for a response that the operation did not expect, and
 * returns the code that fits it. `what` names the object or operation.
 */
static int status_error(const s3_call *call, const char *what)
{
	const s3_vault *sv = call->sv;
	const char *source = sv->config->source ? sv->config->source : "sharing.toml";
	sm_s3_error error;
	char code[96], message[256], detail[400];
	long status = call->req.status;
	int rc;

	error_of(call, &error);
	clean_text(error.code, code, sizeof(code));
	clean_text(error.message, message, sizeof(message));
	sm_s3_error_release(&error);
	if (*code)
		snprintf(detail, sizeof(detail), "HTTP %ld, %s%s%s", status, code, *message ? ": " : "",
			 message);
	else
		snprintf(detail, sizeof(detail), "HTTP %ld", status);

	if (status == 403 || strcmp(code, "InvalidAccessKeyId") == 0 ||
	    strcmp(code, "SignatureDoesNotMatch") == 0 || strcmp(code, "ExpiredToken") == 0 ||
	    strcmp(code, "InvalidToken") == 0) {
		rc = sm_error_set(SM_EAUTH, "access to bucket '%s' was denied for %s (%s); check the "
				  "access key id and secret key of vault '%s' (from %s) and that "
				  "they may use this bucket", sv->settings.bucket, what, detail,
				  sv->config->name, sv->have_creds ? sv->creds.source : "no credentials");
	} else if (strcmp(code, "NoSuchBucket") == 0) {
		rc = sm_error_set(SM_ENOTFOUND, "bucket '%s' does not exist at %s; check 'bucket', "
				  "'region' and 'endpoint_url' of vault '%s' in %s", sv->settings.bucket,
				  sv->settings.endpoint, sv->config->name, source);
	} else if (status == 404) {
		rc = sm_error_set(SM_ENOTFOUND, "%s not found in bucket '%s' (%s)", what,
				  sv->settings.bucket, detail);
	} else if (status == 301 || strcmp(code, "PermanentRedirect") == 0 ||
		   strcmp(code, "AuthorizationHeaderMalformed") == 0) {
		rc = sm_error_set(SM_EINVALID, "bucket '%s' is not in region '%s' (%s); set 'region' "
				  "of vault '%s' in %s to the bucket's region", sv->settings.bucket,
				  sv->settings.region, detail, sv->config->name, source);
	} else if (status == 412) {
		rc = sm_error_set(SM_ECONFLICT, "%s changed meanwhile (%s)", what, detail);
	} else if (status >= 500 || status == 429 || status == 408) {
		rc = sm_error_set(SM_ENETWORK, "%s failed: the server returned %s after %d attempts; "
				  "try again later", what, detail, call->req.attempts);
	} else {
		rc = sm_error_set(SM_ERROR, "%s failed: %s", what, detail);
	}
	return rc;
}

/* Returns the region a redirect or a malformed-authorization error names, or NULL. */
static char *region_from_response(const s3_call *call)
{
	char header[80];
	sm_s3_error error;
	char *region = NULL;

	if (call->req.status != 301 && call->req.status != 400 && call->req.status != 307)
		return NULL;
	error_of(call, &error);
	if (error.code && (strcmp(error.code, "PermanentRedirect") == 0 ||
			   strcmp(error.code, "AuthorizationHeaderMalformed") == 0 ||
			   strcmp(error.code, "IllegalLocationConstraintException") == 0 ||
			   strcmp(error.code, "TemporaryRedirect") == 0)) {
		if (sm_http_header_get(&call->req, "x-amz-bucket-region", header, sizeof(header)) &&
		    *header)
			region = sm_strdup(header);
		else if (error.region && *error.region)
			region = sm_strdup(error.region);
	} else if (call->req.status == 301 &&
		   sm_http_header_get(&call->req, "x-amz-bucket-region", header, sizeof(header)) &&
		   *header) {
		region = sm_strdup(header); /* a HEAD response has no body */
	}
	sm_s3_error_release(&error);
	return region;
}

/*
 * Runs one call. A transport failure returns its code with the message
 * set; any HTTP status returns 0 for the caller to judge. A region
 * mismatch is followed once with the region the server names.
 */
static int call_perform(s3_call *call)
{
	s3_vault *sv = call->sv;

	for (;;) {
		char *region;
		int rc = sm_http_perform(sv->http, &call->req);

		if (rc)
			return rc;
		region = region_from_response(call);
		if (!region || sv->region_followed || strcmp(region, sv->settings.region) == 0) {
			free(region);
			return 0;
		}
		sv->region_followed = 1;
		notify(sv, SM_LOG_WARN, "bucket '%s' of vault '%s' is in region '%s', not '%s'; "
		       "using '%s' (set region = \"%s\" to skip this request)", sv->settings.bucket,
		       sv->config->name, region, sv->settings.region, region, region);
		rc = sm_s3_settings_set_region(&sv->settings, region);
		free(region);
		if (!rc)
			rc = call_set_url(call);
		if (rc)
			return rc;
	}
}

/* objects */

/*
 * GETs a small object into `*text`. Returns SM_ENOTFOUND for a missing key
 * (a missing bucket fails with its own message), and the ETag when asked.
 */
static int get_object(s3_vault *sv, const char *key, size_t max, const char *what, char **text,
		      size_t *len, char *etag, size_t etag_size)
{
	s3_call call;
	sm_s3_error error;
	int rc;

	*text = NULL;
	if (etag && etag_size)
		etag[0] = '\0';
	if ((rc = call_init(&call, sv, "GET", key, NULL)) != 0)
		goto done;
	call.body.max = max;
	if ((rc = call_perform(&call)) != 0)
		goto done;
	if (call.req.status == 404) {
		error_of(&call, &error);
		if (error.code && strcmp(error.code, "NoSuchBucket") == 0)
			rc = status_error(&call, what);
		else
			rc = sm_error_set(SM_ENOTFOUND, "object '%s' not found", key);
		sm_s3_error_release(&error);
		goto done;
	}
	if (call.req.status != 200) {
		rc = status_error(&call, what);
		goto done;
	}
	if (etag)
		sm_http_header_get(&call.req, "ETag", etag, etag_size);
	if (sm_buf_puts(&call.body, "") != 0) {
		rc = SM_ENOMEM;
		goto done;
	}
	*len = call.body.len;
	*text = sm_buf_take(&call.body);
done:
	call_release(&call);
	return rc;
}

/* PUTs a small object from memory. `condition` is an extra header line or NULL. */
static int put_object(s3_vault *sv, const char *key, const void *data, size_t len,
		      const char *content_type, const char *condition, const char *what,
		      long *status)
{
	s3_call call;
	int rc;

	if ((rc = call_init(&call, sv, "PUT", key, NULL)) != 0)
		goto done;
	call_body(&call, data, len);
	if (content_type && (rc = call_header(&call, "Content-Type: %s", content_type)) != 0)
		goto done;
	if (condition && (rc = call_header(&call, "%s", condition)) != 0)
		goto done;
	if ((rc = call_perform(&call)) != 0)
		goto done;
	if (status)
		*status = call.req.status;
	if (call.req.status == 412 && status)
		goto done; /* the caller handles a failed condition */
	if (call.req.status != 200)
		rc = status_error(&call, what);
done:
	call_release(&call);
	return rc;
}

/* DELETEs an object; a missing one is fine. */
static int delete_object(s3_vault *sv, const char *key, const char *what)
{
	s3_call call;
	int rc;

	if ((rc = call_init(&call, sv, "DELETE", key, NULL)) != 0)
		goto done;
	if ((rc = call_perform(&call)) != 0)
		goto done;
	if (call.req.status != 204 && call.req.status != 200 && call.req.status != 404)
		rc = status_error(&call, what);
done:
	call_release(&call);
	return rc;
}

/* HEADs an object: *exists 1 on 200, 0 on 404. */
static int head_object(s3_vault *sv, const char *key, const char *what, int *exists)
{
	s3_call call;
	int rc;

	*exists = 0;
	if ((rc = call_init(&call, sv, "HEAD", key, NULL)) != 0)
		goto done;
	if ((rc = call_perform(&call)) != 0)
		goto done;
	if (call.req.status == 200)
		*exists = 1;
	else if (call.req.status != 404)
		rc = status_error(&call, what);
done:
	call_release(&call);
	return rc;
}

/* Reads metadata/<id>.json; SM_ENOTFOUND (message set) when the bundle is not stored. */
static int fetch_record(s3_vault *sv, const char *id, sm_record **out)
{
	char *key = sm_s3_metadata_key(&sv->settings, id), *text = NULL, what[300];
	size_t len = 0;
	int rc;

	*out = NULL;
	if (!key)
		return SM_ENOMEM;
	snprintf(what, sizeof(what), "metadata of bundle '%s'", id);
	rc = get_object(sv, key, SM_RECORD_MAX_BYTES, what, &text, &len, NULL, 0);
	/* a missing bucket keeps its own message */
	if (rc == SM_ENOTFOUND && !strstr(sm_error_message(), "does not exist at"))
		rc = sm_error_set(SM_ENOTFOUND, "bundle '%s' not found in vault '%s'", id,
				  sv->config->name);
	if (rc)
		goto done;
	rc = sm_record_from_text(text, len, key, out);
	if (!rc && strcmp((*out)->bundle_id, id) != 0) {
		rc = sm_error_set(SM_EINTEGRITY, "metadata object '%s' names bundle '%s'", key,
				  (*out)->bundle_id);
		sm_record_free(*out);
		*out = NULL;
	}
done:
	free(text);
	free(key);
	return rc;
}

/* index */

static int compare_records(const void *a, const void *b)
{
	return strcmp((*(sm_record *const *)a)->bundle_id, (*(sm_record *const *)b)->bundle_id);
}

/*
 * Reads index.json. A missing index is an empty list; a corrupt one is an
 * empty list too (with a warning), since the metadata objects are the truth.
 */
static int read_index(s3_vault *sv, sm_record_list *out, char *etag, size_t etag_size, int *found)
{
	char *key = sm_s3_index_key(&sv->settings), *text = NULL, problem[512] = "";
	size_t len = 0;
	int rc;

	out->items = NULL;
	out->count = 0;
	*found = 0;
	if (!key)
		return SM_ENOMEM;
	/* some stores (s3rver) serve a half-written object while a PUT replaces it */
	for (int attempt = 0; attempt < 3; attempt++) {
		if (attempt) {
			usleep(50000);
			free(text);
			text = NULL;
		}
		rc = get_object(sv, key, SM_INDEX_MAX_BYTES, "index.json", &text, &len, etag, etag_size);
		if (rc == SM_ENOTFOUND && !strstr(sm_error_message(), "does not exist at")) {
			rc = 0;
			goto done;
		}
		if (rc)
			goto done;
		*found = 1;
		if (sm_index_from_text(text, len, out) == 0) {
			problem[0] = '\0';
			break;
		}
		snprintf(problem, sizeof(problem), "%s", sm_error_message());
		sm_record_list_release(out);
	}
	if (problem[0])
		notify(sv, SM_LOG_WARN, "index.json of vault '%s' is not valid (%s); the metadata "
		       "objects are used instead", sv->config->name, problem);
done:
	free(text);
	free(key);
	return rc;
}

/* Replaces or adds (`record` != NULL) or removes (`remove_id`) one entry. */
static int index_apply(sm_record_list *list, const sm_record *record, const char *remove_id)
{
	const char *id = record ? record->bundle_id : remove_id;

	for (size_t i = 0; i < list->count; i++) {
		if (strcmp(list->items[i]->bundle_id, id) != 0)
			continue;
		sm_record_free(list->items[i]);
		list->items[i] = list->items[--list->count];
		break;
	}
	if (record) {
		sm_record *copy = sm_record_dup(record);

		if (!copy)
			return sm_error_set(SM_ENOMEM, "out of memory");
		if (sm_record_list_append(list, copy) != 0)
			return SM_ENOMEM;
	}
	if (list->count > 1)
		qsort(list->items, list->count, sizeof(*list->items), compare_records);
	return 0;
}

/*
 * Updates index.json with one change: read, change, write with If-Match
 * (If-None-Match when there was none), again on 412. Stores that ignore
 * the conditions may lose a concurrent writer's entry; listings repair
 * that from the metadata objects.
 */
static int update_index(s3_vault *sv, const sm_record *record, const char *remove_id)
{
	char *key = sm_s3_index_key(&sv->settings);
	int rc = 0;

	if (!key)
		return SM_ENOMEM;
	for (int attempt = 0; attempt < INDEX_ATTEMPTS; attempt++) {
		sm_record_list list = { 0 };
		char etag[256], condition[300], *text = NULL;
		long status = 0;
		int found;

		rc = read_index(sv, &list, etag, sizeof(etag), &found);
		if (!rc)
			rc = index_apply(&list, record, remove_id);
		if (!rc)
			rc = sm_index_to_text(&list, &text);
		sm_record_list_release(&list);
		if (rc)
			break;
		if (found && *etag)
			snprintf(condition, sizeof(condition), "If-Match: %s", etag);
		else
			snprintf(condition, sizeof(condition), "If-None-Match: *");
		rc = put_object(sv, key, text, strlen(text), "application/json",
				found && !*etag ? NULL : condition, "index.json", &status);
		free(text);
		if (rc || status != 412)
			break;
		notify(sv, SM_LOG_DEBUG, "index.json of vault '%s' changed meanwhile; reading it again",
		       sv->config->name);
		usleep((useconds_t)(20000 + (rand() % 80000)));
		rc = sm_error_set(SM_ECONFLICT, "index.json of vault '%s' kept changing during %d "
				  "attempts; the bundle's metadata is stored, and listings include it",
				  sv->config->name, INDEX_ATTEMPTS);
	}
	free(key);
	return rc;
}

/* listing */

typedef struct id_set {
	char **ids;
	size_t count;
} id_set;

static int compare_strings(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Lists the ids that have metadata objects, following continuation tokens. */
static int list_metadata_ids(s3_vault *sv, id_set *out)
{
	sm_buf query = SM_BUF_INIT(0);
	char *prefix = sm_asprintf("%smetadata/", sv->settings.prefix), *token = NULL;
	size_t cap = 0;
	int rc = 0;

	out->ids = NULL;
	out->count = 0;
	if (!prefix)
		return SM_ENOMEM;
	for (int page_no = 0;; page_no++) {
		sm_s3_list_page page;
		s3_call call;

		query.len = 0;
		rc = sm_buf_puts(&query, "");
		if (!rc && token) {
			rc = sm_buf_puts(&query, "continuation-token=");
			if (!rc)
				rc = sm_uri_encode(&query, token, strlen(token), 0);
			if (!rc)
				rc = sm_buf_putc(&query, '&');
		}
		if (!rc)
			rc = sm_buf_puts(&query, "delimiter=%2F&list-type=2&prefix=");
		if (!rc)
			rc = sm_uri_encode(&query, prefix, strlen(prefix), 0);
		if (rc)
			break;
		if ((rc = call_init(&call, sv, "GET", NULL, query.data)) == 0 &&
		    (rc = call_perform(&call)) == 0 && call.req.status != 200)
			rc = status_error(&call, "the listing of the metadata objects");
		if (!rc)
			rc = sm_s3_parse_list(call.body.data, call.body.len, &page);
		call_release(&call);
		if (rc)
			break;
		for (size_t i = 0; i < page.nkeys && !rc; i++) {
			char *id = NULL;
			int is_id = sm_s3_id_from_metadata_key(&sv->settings, page.keys[i], &id);

			if (is_id < 0) {
				rc = is_id;
				break;
			}
			if (!is_id)
				continue;
			if (out->count == cap) {
				char **grown = realloc(out->ids, (cap = cap ? cap * 2 : 256) * sizeof(*grown));

				if (!grown) {
					free(id);
					rc = sm_error_set(SM_ENOMEM, "out of memory");
					break;
				}
				out->ids = grown;
			}
			out->ids[out->count++] = id;
		}
		notify(sv, SM_LOG_DEBUG, "listing page %d of vault '%s': %zu keys%s", page_no + 1,
		       sv->config->name, page.nkeys, page.truncated ? ", more follow" : "");
		free(token);
		token = NULL;
		if (!rc && page.truncated) {
			token = page.next_token;
			page.next_token = NULL;
		}
		sm_s3_list_page_release(&page);
		if (rc || !token)
			break;
	}
	free(token);
	free(prefix);
	sm_buf_release(&query);
	if (rc) {
		sm_str_array_free(out->ids, out->count);
		out->ids = NULL;
		out->count = 0;
		return rc;
	}
	if (out->count > 1)
		qsort(out->ids, out->count, sizeof(*out->ids), compare_strings);
	return 0;
}

/* Metadata GETs of a listing in flight at once. */
#define FETCH_CONCURRENCY 16

typedef struct fetch_job {
	s3_vault *sv;
	const id_set *ids;
	size_t next;
	s3_call *calls;      /* one per id */
	sm_record_list *out;
	int rc;              /* failure while preparing a request */
} fetch_job;

static sm_http_request *fetch_next(void *payload)
{
	fetch_job *job = payload;

	while (job->next < job->ids->count) {
		size_t i = job->next++;
		s3_call *call = &job->calls[i];
		char *key = sm_s3_metadata_key(&job->sv->settings, job->ids->ids[i]);
		int rc = key ? call_init(call, job->sv, "GET", key, NULL) : SM_ENOMEM;

		free(key);
		if (rc) {
			job->rc = rc;
			return NULL;
		}
		call->body.max = SM_RECORD_MAX_BYTES;
		call->req.user = (void *)job->ids->ids[i];
		return &call->req;
	}
	return NULL;
}

static int fetch_done(sm_http_request *req, void *payload)
{
	fetch_job *job = payload;
	s3_call *call = req->payload;
	const char *id = req->user;
	sm_record *record = NULL;
	int rc;

	if (req->rc)
		return sm_error_set(req->rc, "%s", req->error);
	if (req->status == 404)
		return 0; /* deleted meanwhile */
	if (req->status != 200)
		return status_error(call, "reading a metadata object");
	rc = sm_record_from_text(call->body.data ? call->body.data : "", call->body.len, call->key,
				 &record);
	if (!rc && strcmp(record->bundle_id, id) != 0)
		rc = sm_error_set(SM_EINTEGRITY, "metadata object '%s' names bundle '%s'", call->key,
				  record->bundle_id);
	if (rc == SM_ENOMEM) {
		sm_record_free(record);
		return rc;
	}
	if (rc) {
		notify(job->sv, SM_LOG_WARN, "skipping bundle '%s' in vault '%s': %s", id,
		       job->sv->config->name, sm_error_message());
		sm_record_free(record);
		return 0;
	}
	return sm_record_list_append(job->out, record);
}

/* GETs the metadata objects of `ids` in parallel, appending valid records to `out`. */
static int fetch_records(s3_vault *sv, const id_set *ids, sm_record_list *out)
{
	fetch_job job = { sv, ids, 0, calloc(ids->count, sizeof(s3_call)), out, 0 };
	int rc;

	if (!job.calls)
		return sm_error_set(SM_ENOMEM, "out of memory");
	rc = sm_http_run(sv->http, FETCH_CONCURRENCY, fetch_next, fetch_done, &job);
	if (!rc)
		rc = job.rc;
	for (size_t i = 0; i < job.next; i++)
		if (job.calls[i].sv)
			call_release(&job.calls[i]);
	free(job.calls);
	return rc;
}

/*
 * Writes the repaired index back, with If-Match on the index that was read
 * (If-None-Match when there was none), so a concurrent push wins where the
 * store honours the condition. Failures only go to the debug log.
 */
static void write_back_index(s3_vault *sv, const sm_record_list *records, const char *etag)
{
	char *key = sm_s3_index_key(&sv->settings), *text = NULL, condition[300];
	long status = 0;

	if (!key || sm_index_to_text(records, &text) != 0)
		goto done;
	if (etag && *etag)
		snprintf(condition, sizeof(condition), "If-Match: %s", etag);
	else
		snprintf(condition, sizeof(condition), "If-None-Match: *");
	if (put_object(sv, key, text, strlen(text), "application/json", condition, "index.json",
		       &status) != 0)
		notify(sv, SM_LOG_DEBUG, "not writing the repaired index: %s", sm_error_message());
	else if (status == 412)
		notify(sv, SM_LOG_DEBUG, "not writing the repaired index: it changed meanwhile");
done:
	free(text);
	free(key);
}

static int s3_list(sm_vault *self, const sm_list_filter *filter, sm_record_list *out)
{
	s3_vault *sv = (s3_vault *)self;
	sm_record_list index = { 0 }, all = { 0 };
	id_set ids = { 0 }, missing = { 0 };
	char etag[256];
	size_t fetched = 0, dropped = 0, indexed;
	int rc, found;

	out->items = NULL;
	out->count = 0;
	rc = list_metadata_ids(sv, &ids);
	if (!rc && ids.count && !(missing.ids = calloc(ids.count, sizeof(*missing.ids))))
		rc = sm_error_set(SM_ENOMEM, "out of memory");
	if (!rc)
		rc = read_index(sv, &index, etag, sizeof(etag), &found);
	if (rc)
		goto done;

	/* index entries whose metadata object is gone are dropped */
	for (size_t i = 0; i < index.count; i++) {
		sm_record *record = index.items[i];

		if (!ids.count || !bsearch(&record->bundle_id, ids.ids, ids.count, sizeof(*ids.ids),
					   compare_strings)) {
			dropped++;
			continue;
		}
		index.items[i] = NULL;
		if ((rc = sm_record_list_append(&all, record)) != 0)
			goto done;
	}
	if (all.count > 1)
		qsort(all.items, all.count, sizeof(*all.items), compare_records);

	/* metadata objects the index lacks are fetched, several at a time */
	indexed = all.count;
	for (size_t i = 0; i < ids.count; i++) {
		sm_record key_record = { .bundle_id = ids.ids[i] }, *key_ptr = &key_record;

		if (indexed && bsearch(&key_ptr, all.items, indexed, sizeof(*all.items),
				       compare_records))
			continue;
		missing.ids[missing.count++] = ids.ids[i];
	}
	if (missing.count) {
		size_t before = all.count;

		if ((rc = fetch_records(sv, &missing, &all)) != 0)
			goto done;
		fetched = all.count - before;
	}
	if (all.count > 1)
		qsort(all.items, all.count, sizeof(*all.items), compare_records);

	if (fetched || dropped) {
		notify(sv, SM_LOG_DEBUG, "index.json of vault '%s' lacked %zu and had %zu stale "
		       "entries; used the metadata objects", sv->config->name, fetched, dropped);
		if (sv->parent.caps & SM_VAULT_CAN_WRITE)
			write_back_index(sv, &all, found ? etag : NULL);
	}

	for (size_t i = 0; i < all.count; i++) {
		if (!sm_list_filter_match(filter, all.items[i]))
			continue;
		rc = sm_record_list_append(out, all.items[i]);
		all.items[i] = NULL;
		if (rc)
			goto done;
	}
done:
	for (size_t i = 0; i < index.count; i++)
		sm_record_free(index.items[i]);
	free(index.items);
	for (size_t i = 0; i < all.count; i++)
		sm_record_free(all.items[i]);
	free(all.items);
	free(missing.ids); /* borrowed from ids */
	sm_str_array_free(ids.ids, ids.count);
	if (rc)
		sm_record_list_release(out);
	return rc;
}

/* exists, info */

static int s3_get_metadata(sm_vault *self, const char *bundle_id, sm_record **out)
{
	return fetch_record((s3_vault *)self, bundle_id, out);
}

static int s3_exists(sm_vault *self, const char *bundle_id, int *out)
{
	s3_vault *sv = (s3_vault *)self;
	char *key = sm_s3_metadata_key(&sv->settings, bundle_id);
	int rc;

	if (!key)
		return SM_ENOMEM;
	rc = head_object(sv, key, "the metadata object", out);
	free(key);
	return rc;
}

/* progress */

typedef struct progress_sum {
	s3_vault *sv;
	uint64_t total;
	uint64_t done;   /* bytes of finished parts */
} progress_sum;

static void report(const s3_vault *sv, uint64_t done, uint64_t total)
{
	if (sv->callbacks->progress)
		sv->callbacks->progress(done, total, sv->callbacks->payload);
}

/* pull */

static void pull_progress(sm_http_request *req, void *payload)
{
	s3_call *call = payload;
	uint64_t *total = req->user;

	report(call->sv, req->written, *total);
}

static int s3_pull(sm_vault *self, const char *bundle_id, int fd, sm_record **out)
{
	s3_vault *sv = (s3_vault *)self;
	sm_record *record = NULL;
	EVP_MD_CTX *sha = EVP_MD_CTX_new();
	unsigned char digest[32];
	unsigned int digest_len = 32;
	char hex[65], *key = NULL, what[300];
	const char *expected;
	uint64_t total = 0;
	s3_call call = { 0 };
	int rc, call_ready = 0;

	*out = NULL;
	if (!sha)
		return sm_error_set(SM_ENOMEM, "out of memory");
	rc = fetch_record(sv, bundle_id, &record);
	if (rc)
		goto done;
	key = sm_s3_bundle_key(&sv->settings, bundle_id);
	if (!key) {
		rc = SM_ENOMEM;
		goto done;
	}
	total = record->size_bytes;
	if (!EVP_DigestInit_ex(sha, EVP_sha256(), NULL)) {
		rc = sm_error_set(SM_ERROR, "cannot start SHA-256");
		goto done;
	}
	if ((rc = call_init(&call, sv, "GET", key, NULL)) != 0)
		goto done;
	call_ready = 1;
	call.req.response = NULL;
	call.req.response_fd = fd;
	call.req.resume = 1;
	call.req.response_sha = sha;
	call.req.progress = pull_progress;
	call.req.user = &total;
	if ((rc = call_perform(&call)) != 0)
		goto done;
	snprintf(what, sizeof(what), "the data of bundle '%s'", bundle_id);
	if (call.req.status == 404) {
		rc = status_error(&call, what);
		if (rc == SM_ENOTFOUND && !strstr(sm_error_message(), "does not exist at"))
			rc = sm_error_set(SM_EINTEGRITY, "bundle '%s' in vault '%s' has metadata but no "
					  "data object '%s'", bundle_id, sv->config->name, key);
		goto done;
	}
	if (call.req.status != 200 && call.req.status != 206) {
		rc = status_error(&call, what);
		goto done;
	}
	EVP_DigestFinal_ex(sha, digest, &digest_len);
	sm_hex(digest, 32, hex);
	expected = sm_record_metadata_get(record, "sha256");
	if ((expected && strcmp(expected, hex) != 0) ||
	    (record->size_bytes && call.req.written != record->size_bytes)) {
		/* a forced push may have replaced the bundle while it was read */
		sm_record *newer = NULL;

		if (fetch_record(sv, bundle_id, &newer) == 0 &&
		    (expected = sm_record_metadata_get(newer, "sha256")) != NULL &&
		    strcmp(expected, hex) == 0 && newer->size_bytes == call.req.written) {
			sm_record_free(record);
			record = newer;
		} else {
			sm_record_free(newer);
		}
	}
	if (record->size_bytes && call.req.written != record->size_bytes) {
		rc = sm_error_set(SM_EINTEGRITY, "bundle '%s' in vault '%s' is corrupt: it has %llu "
				  "bytes, its metadata says %llu", bundle_id, sv->config->name,
				  (unsigned long long)call.req.written,
				  (unsigned long long)record->size_bytes);
		goto done;
	}
	expected = sm_record_metadata_get(record, "sha256");
	if (expected && strcmp(expected, hex) != 0) {
		rc = sm_error_set(SM_EINTEGRITY, "bundle '%s' in vault '%s' is corrupt: SHA-256 %s, "
				  "its metadata says %s", bundle_id, sv->config->name, hex, expected);
		goto done;
	}
	report(sv, call.req.written, call.req.written);
	*out = record;
	record = NULL;
done:
	if (call_ready)
		call_release(&call);
	EVP_MD_CTX_free(sha);
	sm_record_free(record);
	free(key);
	return rc;
}

/* delete */

static int s3_delete(sm_vault *self, const char *bundle_id)
{
	s3_vault *sv = (s3_vault *)self;
	char *meta = sm_s3_metadata_key(&sv->settings, bundle_id);
	char *data = sm_s3_bundle_key(&sv->settings, bundle_id);
	int rc, exists = 0;

	if (!meta || !data) {
		rc = SM_ENOMEM;
		goto done;
	}
	rc = head_object(sv, meta, "the metadata object", &exists);
	if (rc)
		goto done;
	if (!exists) {
		rc = sm_error_set(SM_ENOTFOUND, "bundle '%s' not found in vault '%s'", bundle_id,
				  sv->config->name);
		goto done;
	}
	/* metadata first: from then on the bundle is not listed */
	if ((rc = delete_object(sv, meta, "deleting the metadata object")) != 0)
		goto done;
	if ((rc = update_index(sv, NULL, bundle_id)) != 0)
		goto done;
	rc = delete_object(sv, data, "deleting the data object");
done:
	free(meta);
	free(data);
	return rc;
}

/*
 * Upload state. An unfinished multipart upload is recorded in
 * $SKILLMEAT_HOME/uploads/<hash>.json, where <hash> covers the vault,
 * endpoint, bucket, object key, file size, modification time and SHA-256
 * of the file's first and last 64 KiB. Each finished part is recorded with
 * its ETag and SHA-256 as soon as it finishes (file replaced atomically).
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

static int upload_state_save(const upload_state *st)
{
	char *text = json_dumps(st->root, JSON_INDENT(1) | JSON_SORT_KEYS);
	int rc;

	if (!text)
		return sm_error_set(SM_ENOMEM, "cannot serialise the upload state");
	rc = sm_write_file_atomic(st->path, text, strlen(text), 0600);
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
		notify(sv, SM_LOG_DEBUG, "ignoring the invalid upload state '%s'", st->path);
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
	if (call_init(&call, sv, "DELETE", key, query.data) == 0 && call_perform(&call) == 0 &&
	    call.req.status != 204 && call.req.status != 200 && call.req.status != 404)
		notify(sv, SM_LOG_DEBUG, "the store did not abort upload of '%s' (HTTP %ld)", key,
		       call.req.status);
	call_release(&call);
	sm_buf_release(&query);
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

		if (entry->d_name[0] == '.' || !strstr(entry->d_name, ".json"))
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
			notify(sv, SM_LOG_DEBUG, "aborting the abandoned upload of '%s'", state_key);
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
	report(call->sv, done, mp->size);
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
			report(mp->sv, mp->done_bytes, mp->size);
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
			call_release(&slot->call);
		slot->ready = 1;
		if ((rc = call_init(&slot->call, mp->sv, "PUT", mp->key, query)) != 0) {
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
		return status_error(&slot->call, what);
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
	report(mp->sv, mp->done_bytes, mp->size);
	return 0;
}

/* Starts a multipart upload and records its state. */
static int start_upload(s3_vault *sv, const char *key, uint64_t size, upload_state *st)
{
	s3_call call;
	int rc;

	if ((rc = sm_s3_part_plan(size, sv->settings.part_size, &st->part_size, &st->nparts)) != 0)
		return rc;
	if ((rc = call_init(&call, sv, "POST", key, "uploads=")) != 0)
		goto done;
	call_body(&call, "", 0);
	if ((rc = call_perform(&call)) != 0)
		goto done;
	if (call.req.status != 200) {
		rc = status_error(&call, "starting a multipart upload");
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
	call_release(&call);
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
		rc = call_init(&call, sv, "POST", key, query.data);
	if (rc)
		goto done;
	ready = 1;
	call_body(&call, body, strlen(body));
	if ((rc = call_header(&call, "Content-Type: application/xml")) != 0)
		goto done;
	if ((rc = call_perform(&call)) != 0)
		goto done;
	/* a 200 may still carry an <Error> that arrived after the headers */
	error_of(&call, &error);
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
	rc = status_error(&call, "completing the multipart upload");
done:
	sm_s3_error_release(&error);
	if (ready)
		call_release(&call);
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
			notify(sv, SM_LOG_INFO, "resuming the unfinished upload of '%s' to vault '%s'",
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
				call_release(&mp.slots[i].call);
			free(mp.slots[i].data);
		}
		free(mp.slots);
		if (!rc && mp.reused_bytes)
			notify(sv, SM_LOG_INFO, "reused %llu of %llu bytes uploaded before",
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

			rc = meta ? delete_object(sv, meta, "deleting the old metadata object") : SM_ENOMEM;
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
		notify(sv, SM_LOG_WARN, "the store rejected the parts recorded for '%s' (%s); "
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

static int s3_push(sm_vault *self, int fd, sm_record *record, sm_push_opts *opts)
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
	rc = fetch_record(sv, record->bundle_id, &old);
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
		if (exists && (rc = delete_object(sv, meta_key, "deleting the old metadata object")) != 0)
			goto done;
		rc = put_object(sv, data_key, data, (size_t)size, "application/zip",
				exists ? NULL : "If-None-Match: *", "the bundle's data", &status);
		if (!rc && status == 412)
			rc = sm_error_set(SM_EEXISTS, "bundle '%s' was pushed to vault '%s' by someone "
					  "else meanwhile", record->bundle_id, sv->config->name);
		if (rc)
			goto done;
		report(sv, size, size);
	} else {
		rc = multipart_upload(sv, fd, size, data_key, record, opts, exists);
		if (rc)
			goto done;
	}

	if ((rc = sm_record_to_text(record, &text)) != 0)
		goto done;
	rc = put_object(sv, meta_key, text, strlen(text), "application/json", NULL,
			"the metadata object", NULL);
	if (!rc)
		rc = update_index(sv, record, NULL);
done:
	sm_record_free(old);
	free(data);
	free(text);
	free(data_key);
	free(meta_key);
	return rc;
}

/* open, close, constructor */

static int s3_open(sm_vault *self)
{
	s3_vault *sv = (s3_vault *)self;
	sm_http_opts opts = { 0 };
	char *home = NULL;
	int rc;

	opts.ca_file = sv->settings.ca_bundle;
	opts.allow_http = strcmp(sv->settings.scheme, "http") == 0;
	opts.callbacks = sv->callbacks;
	rc = sm_http_client_new(&sv->http, &opts);
	if (rc)
		return rc;
	rc = sm_config_home(&home);
	if (rc)
		return rc;
	sv->uploads_dir = sm_path_join(home, "uploads");
	free(home);
	if (!sv->uploads_dir)
		return SM_ENOMEM;
	/* fail early without credentials; nothing is sent or written yet */
	return ensure_credentials(sv);
}

static void s3_close(sm_vault *self)
{
	s3_vault *sv = (s3_vault *)self;

	if (!sv)
		return;
	sm_http_client_free(sv->http);
	sm_aws_credentials_clear(&sv->creds);
	sm_s3_settings_release(&sv->settings);
	free(sv->uploads_dir);
	free(sv);
}

int sm_vault_s3_new(sm_vault **out, const sm_vault_config *config,
		    const sm_callbacks *callbacks)
{
	s3_vault *sv;
	int rc;

	*out = NULL;
	sv = calloc(1, sizeof(*sv));
	if (!sv)
		return sm_error_set(SM_ENOMEM, "out of memory");
	rc = sm_s3_settings_parse(config, &sv->settings);
	if (rc) {
		free(sv);
		return rc;
	}
	sv->parent.abi_version = SM_VAULT_ABI_VERSION;
	sv->parent.type = "s3";
	sv->parent.caps = SM_VAULT_CAN_READ | SM_VAULT_CAN_WRITE | SM_VAULT_CAN_DELETE;
	sv->parent.open = s3_open;
	sv->parent.push = s3_push;
	sv->parent.pull = s3_pull;
	sv->parent.list = s3_list;
	sv->parent.delete_bundle = s3_delete;
	sv->parent.exists = s3_exists;
	sv->parent.get_metadata = s3_get_metadata;
	sv->parent.close = s3_close;
	sv->config = config;
	sv->callbacks = callbacks;
	*out = &sv->parent;
	return 0;
}
