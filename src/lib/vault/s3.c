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
 * sends only the parts that are missing (s3_push.c describes that state).
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
#include "vault/s3_connector.h"
#include "vault/s3_internal.h"

/* Credentials expiring within this many seconds are resolved again. */
#define REFRESH_MARGIN_SECONDS 300

/* Largest listing page and error body read into memory. */
#define XML_MAX_BYTES (16u * 1024 * 1024)

/* Attempts at a conditional index update that keeps losing races. */
#define INDEX_ATTEMPTS 8

void s3_notify(const s3_vault *sv, sm_log_level level, const char *fmt, ...)
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
		s3_notify(sv, SM_LOG_DEBUG, "refreshing the AWS credentials of vault '%s' from %s",
		       sv->config->name, sv->creds.source);
		sm_aws_credentials_clear(&sv->creds);
		sv->have_creds = 0;
	}
	rc = sm_aws_credentials_resolve(sv->config, sv->callbacks, &sv->creds);
	if (rc)
		return rc;
	sv->have_creds = 1;
	s3_notify(sv, SM_LOG_DEBUG, "vault '%s' uses AWS credentials from %s", sv->config->name,
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
int s3_call_init(s3_call *call, s3_vault *sv, const char *method, const char *key,
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

void s3_call_release(s3_call *call)
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

int s3_call_header(s3_call *call, const char *fmt, ...)
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
void s3_call_body(s3_call *call, const void *data, size_t len)
{
	unsigned char digest[32];

	call->req.body = data ? data : "";
	call->req.body_len = len;
	SHA256(call->req.body, len, digest);
	sm_hex(digest, 32, call->payload_hex);
	call->payload_hash = call->payload_hex;
}

/* errors */

void s3_error_of(const s3_call *call, sm_s3_error *error)
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
int s3_status_error(const s3_call *call, const char *what)
{
	const s3_vault *sv = call->sv;
	const char *source = sv->config->source ? sv->config->source : "sharing.toml";
	sm_s3_error error;
	char code[96], message[256], detail[400];
	long status = call->req.status;
	int rc;

	s3_error_of(call, &error);
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
	s3_error_of(call, &error);
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
int s3_call_perform(s3_call *call)
{
	s3_vault *sv = call->sv;

	for (;;) {
		char *region, *old_region;
		int rc = sm_http_perform(sv->http, &call->req);

		if (rc)
			return rc;
		region = region_from_response(call);
		if (!region || sv->region_followed || strcmp(region, sv->settings.region) == 0) {
			free(region);
			return 0;
		}
		sv->region_followed = 1;
		/* the region comes from the server: check it before it reaches a message */
		old_region = sm_strdup(sv->settings.region);
		rc = old_region ? sm_s3_settings_set_region(&sv->settings, region) : SM_ENOMEM;
		if (!rc)
			s3_notify(sv, SM_LOG_WARN, "bucket '%s' of vault '%s' is in region '%s', not "
				  "'%s'; using '%s' (set region = \"%s\" to skip this request)",
				  sv->settings.bucket, sv->config->name, region, old_region, region,
				  region);
		free(region);
		free(old_region);
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
	if ((rc = s3_call_init(&call, sv, "GET", key, NULL)) != 0)
		goto done;
	call.body.max = max;
	if ((rc = s3_call_perform(&call)) != 0)
		goto done;
	if (call.req.status == 404) {
		s3_error_of(&call, &error);
		if (error.code && strcmp(error.code, "NoSuchBucket") == 0)
			rc = s3_status_error(&call, what);
		else
			rc = sm_error_set(SM_ENOTFOUND, "object '%s' not found", key);
		sm_s3_error_release(&error);
		goto done;
	}
	if (call.req.status != 200) {
		rc = s3_status_error(&call, what);
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
	s3_call_release(&call);
	return rc;
}

/* PUTs a small object from memory. `condition` is an extra header line or NULL. */
int s3_put_object(s3_vault *sv, const char *key, const void *data, size_t len,
		      const char *content_type, const char *condition, const char *what,
		      long *status)
{
	s3_call call;
	int rc;

	if ((rc = s3_call_init(&call, sv, "PUT", key, NULL)) != 0)
		goto done;
	s3_call_body(&call, data, len);
	if (content_type && (rc = s3_call_header(&call, "Content-Type: %s", content_type)) != 0)
		goto done;
	if (condition && (rc = s3_call_header(&call, "%s", condition)) != 0)
		goto done;
	if ((rc = s3_call_perform(&call)) != 0)
		goto done;
	if (status)
		*status = call.req.status;
	if (call.req.status == 412 && status)
		goto done; /* the caller handles a failed condition */
	if (call.req.status != 200)
		rc = s3_status_error(&call, what);
done:
	s3_call_release(&call);
	return rc;
}

/* DELETEs an object; a missing one is fine. */
int s3_delete_object(s3_vault *sv, const char *key, const char *what)
{
	s3_call call;
	int rc;

	if ((rc = s3_call_init(&call, sv, "DELETE", key, NULL)) != 0)
		goto done;
	if ((rc = s3_call_perform(&call)) != 0)
		goto done;
	if (call.req.status != 204 && call.req.status != 200 && call.req.status != 404)
		rc = s3_status_error(&call, what);
done:
	s3_call_release(&call);
	return rc;
}

/* HEADs an object: *exists 1 on 200, 0 on 404. */
static int head_object(s3_vault *sv, const char *key, const char *what, int *exists)
{
	s3_call call;
	int rc;

	*exists = 0;
	if ((rc = s3_call_init(&call, sv, "HEAD", key, NULL)) != 0)
		goto done;
	if ((rc = s3_call_perform(&call)) != 0)
		goto done;
	if (call.req.status == 200)
		*exists = 1;
	else if (call.req.status != 404)
		rc = s3_status_error(&call, what);
done:
	s3_call_release(&call);
	return rc;
}

/* Reads metadata/<id>.json; SM_ENOTFOUND (message set) when the bundle is not stored. */
int s3_fetch_record(s3_vault *sv, const char *id, sm_record **out)
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
		s3_notify(sv, SM_LOG_WARN, "index.json of vault '%s' is not valid (%s); the metadata "
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
int s3_update_index(s3_vault *sv, const sm_record *record, const char *remove_id)
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
		rc = s3_put_object(sv, key, text, strlen(text), "application/json",
				found && !*etag ? NULL : condition, "index.json", &status);
		free(text);
		if (rc || status != 412)
			break;
		s3_notify(sv, SM_LOG_DEBUG, "index.json of vault '%s' changed meanwhile; reading it again",
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

/*
 * Adds a continuation token to `seen`, which owns it from then on. A token
 * that came before means the store sends the same pages in a cycle, and
 * following it would never end.
 */
static int remember_token(const s3_vault *sv, id_set *seen, char *token)
{
	char **grown;

	for (size_t i = 0; i < seen->count; i++) {
		if (strcmp(seen->ids[i], token) == 0) {
			free(token);
			return sm_error_set(SM_EINVALID, "the listing of vault '%s' repeats a "
					    "continuation token after %zu pages; the store at '%s' "
					    "sends its pages in a cycle", sv->config->name,
					    seen->count + 1, sv->settings.endpoint);
		}
	}
	grown = realloc(seen->ids, (seen->count + 1) * sizeof(*grown));
	if (!grown) {
		free(token);
		return sm_error_set(SM_ENOMEM, "out of memory");
	}
	seen->ids = grown;
	seen->ids[seen->count++] = token;
	return 0;
}

/* Lists the ids that have metadata objects, following continuation tokens. */
static int list_metadata_ids(s3_vault *sv, id_set *out)
{
	sm_buf query = SM_BUF_INIT(0);
	char *prefix = sm_asprintf("%smetadata/", sv->settings.prefix), *token = NULL;
	id_set seen = { 0 };        /* the continuation tokens followed so far, which own `token` */
	size_t cap = 0, kept;
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
		if ((rc = s3_call_init(&call, sv, "GET", NULL, query.data)) == 0 &&
		    (rc = s3_call_perform(&call)) == 0 && call.req.status != 200)
			rc = s3_status_error(&call, "the listing of the metadata objects");
		if (!rc)
			rc = sm_s3_parse_list(call.body.data, call.body.len, &page);
		s3_call_release(&call);
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
		s3_notify(sv, SM_LOG_DEBUG, "listing page %d of vault '%s': %zu keys%s", page_no + 1,
		       sv->config->name, page.nkeys, page.truncated ? ", more follow" : "");
		token = NULL;
		if (!rc && page.truncated) {
			token = page.next_token;
			page.next_token = NULL;
			rc = remember_token(sv, &seen, token);
		}
		sm_s3_list_page_release(&page);
		if (rc || !token)
			break;
	}
	sm_str_array_free(seen.ids, seen.count);
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

	/* a store that lists a key twice must not make a bundle appear twice */
	kept = 0;
	for (size_t i = 0; i < out->count; i++) {
		if (kept && strcmp(out->ids[i], out->ids[kept - 1]) == 0)
			free(out->ids[i]);
		else
			out->ids[kept++] = out->ids[i];
	}
	out->count = kept;
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
		int rc = key ? s3_call_init(call, job->sv, "GET", key, NULL) : SM_ENOMEM;

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
		return s3_status_error(call, "reading a metadata object");
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
		s3_notify(job->sv, SM_LOG_WARN, "skipping bundle '%s' in vault '%s': %s", id,
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
			s3_call_release(&job.calls[i]);
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
	if (s3_put_object(sv, key, text, strlen(text), "application/json", condition, "index.json",
		       &status) != 0)
		s3_notify(sv, SM_LOG_DEBUG, "not writing the repaired index: %s", sm_error_message());
	else if (status == 412)
		s3_notify(sv, SM_LOG_DEBUG, "not writing the repaired index: it changed meanwhile");
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
		s3_notify(sv, SM_LOG_DEBUG, "index.json of vault '%s' lacked %zu and had %zu stale "
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
	return s3_fetch_record((s3_vault *)self, bundle_id, out);
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

void s3_report(const s3_vault *sv, uint64_t done, uint64_t total)
{
	if (sv->callbacks->progress)
		sv->callbacks->progress(done, total, sv->callbacks->payload);
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
	if ((rc = s3_delete_object(sv, meta, "deleting the metadata object")) != 0)
		goto done;
	if ((rc = s3_update_index(sv, NULL, bundle_id)) != 0)
		goto done;
	rc = s3_delete_object(sv, data, "deleting the data object");
done:
	free(meta);
	free(data);
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
