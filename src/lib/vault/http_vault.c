/*
 * The HTTP(S) vault: a read-only vault served by any static web server.
 *
 * It reads the layout the local vault writes, relative to the setting
 * `url`: index.json, metadata/<id>.json and bundles/<id>.skillmeat-pack.
 * A static server cannot list metadata/, so index.json is the list of
 * bundles. A server without it is an empty or broken vault, and listing it
 * fails with SM_ENOTFOUND. Push and delete fail with SM_EREADONLY.
 *
 * Everything the server sends is untrusted: index.json and metadata files
 * are read into capped buffers and every record is checked (a valid id
 * that equals its key or file name), and a pulled bundle must have the
 * size and SHA-256 of its metadata before the library checks its own
 * hashes.
 *
 * Redirects are followed here rather than by libcurl, so that each target
 * is checked: https only (http too when allow_http = true), at most
 * SM_HTTP_VAULT_MAX_REDIRECTS, and the Authorization header goes only to
 * the scheme, host and port of the vault URL.
 *
 * index.json is cached in $SKILLMEAT_HOME/cache/http/<SHA-256 of the URL>/
 * with its ETag and revalidated with If-None-Match, so an unchanged index
 * costs one 304 response.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/sharing.h"
#include "net/http.h"
#include "skillmeat/credentials.h"
#include "util/util.h"
#include "vault/connectors.h"
#include "vault/http_vault_internal.h"
#include "vault/pull_watch.h"
#include "vault/record.h"

#define BUNDLE_SUFFIX ".skillmeat-pack"
#define CACHE_NAME "index.cache"

typedef struct http_vault {
	sm_vault parent;
	const sm_vault_config *config;
	const sm_callbacks *callbacks;
	sm_http_vault_url url;
	const char *ca_bundle;      /* borrowed from config; NULL: the system's CAs */
	int allow_http;
	char *auth;                 /* Authorization line in sodium memory, or NULL */
	sm_http_client *http;
	char *cache_dir;
	sm_record *last_record;     /* the record exists() fetched, reused by pull() */
} http_vault;

/* One GET and where its body goes. */
typedef struct http_get {
	const char *relative;       /* path below the vault URL */
	sm_buf *body;               /* memory target, or NULL */
	int fd;                     /* file target when body is NULL */
	EVP_MD_CTX *sha;            /* digest of what goes to fd, or NULL */
	sm_pull_watch *watch;       /* receives the writes to fd, or NULL */
	uint64_t total;             /* expected size, for progress */
	const char *if_none_match;  /* ETag to revalidate, or NULL */

	/* results */
	long status;
	char etag[SM_HTTP_VAULT_ETAG_MAX + 1];
	uint64_t written;
	char shown[512];            /* the final URL without its query, for messages */
	int auth_dropped;           /* a redirect left the vault's origin */
} http_get;

static void notify(const http_vault *hv, sm_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void notify(const http_vault *hv, sm_log_level level, const char *fmt, ...)
{
	char text[1024];
	va_list ap;

	if (!hv->callbacks->message)
		return;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	hv->callbacks->message(level, text, hv->callbacks->payload);
}

/* Copies `url` without its query into `out`: a redirect target may carry a signature there. */
static void shown_url(const char *url, char *out, size_t size)
{
	size_t len = strcspn(url, "?#");

	snprintf(out, size, "%.*s%s", (int)len, url, url[len] ? "?..." : "");
}

static void get_progress(sm_http_request *req, void *payload)
{
	http_vault *hv = payload;
	const http_get *get = req->user;

	if (hv->callbacks->progress && get->total)
		hv->callbacks->progress(req->written, get->total, hv->callbacks->payload);
}

static int is_redirect(long status)
{
	return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

/* Adds a hint to a transport failure that looks like a certificate problem. */
static int transport_error(const http_vault *hv, int rc, const sm_http_request *req)
{
	if (rc == SM_ENETWORK && (strstr(req->error, "certificate") || strstr(req->error, "SSL")))
		return sm_error_set(rc, "%s; if the server uses a private CA, set ca_bundle of vault "
				    "'%s' to its certificate file (PEM)", req->error, hv->config->name);
	return rc;
}

/*
 * Runs one GET of `get->relative`, following redirects under the policy in
 * the file comment. Returns 0 when a final response arrived, whatever its
 * status, or a transport failure with its message set.
 */
static int http_get_run(http_vault *hv, http_get *get)
{
	sm_http_request req;
	char *url = sm_http_vault_join(hv->url.base, get->relative), *next = NULL;
	char *condition = NULL, location[2048];
	EVP_MD_CTX *sha_start = NULL;  /* get->sha before the first byte, for each redirect */
	int rc = 0, hops = 0, ready = 0;

	get->status = 0;
	get->etag[0] = '\0';
	get->written = 0;
	get->auth_dropped = 0;
	if (!url)
		return SM_ENOMEM;
	if (get->sha && (!(sha_start = EVP_MD_CTX_new()) ||
			 !EVP_MD_CTX_copy_ex(sha_start, get->sha))) {
		rc = sm_error_set(SM_ENOMEM, "cannot copy a digest");
		goto done;
	}
	if (get->if_none_match) {
		condition = sm_asprintf("If-None-Match: %s", get->if_none_match);
		if (!condition) {
			rc = SM_ENOMEM;
			goto done;
		}
	}
	for (;;) {
		sm_http_request_init(&req);
		ready = 1;
		req.method = "GET";
		req.url = url;
		if (hv->auth) {
			if (sm_http_vault_same_origin(url, hv->url.base))
				req.headers[req.nheaders++] = hv->auth;
			else
				get->auth_dropped = 1;
		}
		if (condition)
			req.headers[req.nheaders++] = condition;
		if (get->body) {
			req.response = get->body;
		} else {
			req.response_fd = get->fd;
			req.response_max = get->total ? get->total
						    : SM_HTTP_VAULT_PULL_UNSIZED_MAX;
			req.resume = 1;
			req.response_sha = get->sha;
			req.watch = get->watch;
			req.progress = get_progress;
			req.payload = hv;
			req.user = get;
		}
		shown_url(url, get->shown, sizeof(get->shown));

		rc = sm_http_perform(hv->http, &req);
		if (rc == SM_EINVALID && get->body && strstr(req.error, "response body larger than")) {
			rc = sm_error_set(SM_EINTEGRITY, "'%s' of vault '%s' is larger than %zu bytes; "
					  "the server sends a damaged or hostile file", get->shown,
					  hv->config->name, get->body->max);
			goto done;
		}
		if (rc) {
			rc = transport_error(hv, rc, &req);
			goto done;
		}
		if (!is_redirect(req.status))
			break;

		if (!sm_http_header_get(&req, "Location", location, sizeof(location))) {
			rc = sm_error_set(SM_ENETWORK, "'%s' answered HTTP %ld without a Location header",
					  get->shown, req.status);
			goto done;
		}
		if (++hops > SM_HTTP_VAULT_MAX_REDIRECTS) {
			rc = sm_error_set(SM_ENETWORK, "'%s' of vault '%s' redirected more than %d times; "
					  "check 'url' of the vault", get->relative, hv->config->name,
					  SM_HTTP_VAULT_MAX_REDIRECTS);
			goto done;
		}
		rc = sm_http_vault_redirect(url, location, hv->allow_http, &next);
		if (rc) {
			rc = sm_error_wrap(rc, "'%s' of vault '%s'", get->shown, hv->config->name);
			goto done;
		}
		notify(hv, SM_LOG_DEBUG, "following a redirect (HTTP %ld) from '%s'", req.status,
		       get->shown);
		free(url);
		url = next;
		next = NULL;
		sm_http_request_release(&req);
		ready = 0;

		/*
		 * The new URL is read from its first byte, but a download cut before
		 * the redirect has already fed its bytes to the digest.
		 */
		if (sha_start && !EVP_MD_CTX_copy_ex(get->sha, sha_start)) {
			rc = sm_error_set(SM_ENOMEM, "cannot copy a digest");
			goto done;
		}
	}

	get->status = req.status;
	get->written = req.written;
	if (!sm_http_header_get(&req, "ETag", get->etag, sizeof(get->etag)) ||
	    !sm_http_vault_etag_valid(get->etag))
		get->etag[0] = '\0';
done:
	if (ready)
		sm_http_request_release(&req);
	EVP_MD_CTX_free(sha_start);
	free(condition);
	free(next);
	free(url);
	return rc;
}

/* Sets the message for a status the operation did not expect and returns its code. */
static int status_error(const http_vault *hv, const http_get *get)
{
	const char *name = hv->config->name;
	long status = get->status;

	if (status == 401 || status == 403) {
		if (get->auth_dropped)
			return sm_error_set(SM_EAUTH, "access to '%s' was denied (HTTP %ld) after a "
					    "redirect to another host, which gets no credentials of "
					    "vault '%s'; point 'url' at the final host", get->shown,
					    status, name);
		if (!hv->auth)
			return sm_error_set(SM_EAUTH, "access to '%s' was denied (HTTP %ld) and vault "
					    "'%s' has no credentials; store them with 'skillmeat "
					    "vault auth %s --username USER --password', or "
					    "'--password' alone for a bearer token", get->shown, status,
					    name, name);
		return sm_error_set(SM_EAUTH, "access to '%s' was denied (HTTP %ld); check the user "
				    "name and password or token of vault '%s' ('skillmeat vault auth "
				    "%s --status' shows where they come from)", get->shown, status,
				    name, name);
	}
	if (status == 404)
		return sm_error_set(SM_ENOTFOUND, "'%s' not found (HTTP 404)", get->shown);
	if (status >= 500 || status == 429 || status == 408)
		return sm_error_set(SM_ENETWORK, "'%s' failed with HTTP %ld; try again later",
				    get->shown, status);
	return sm_error_set(SM_ERROR, "'%s' answered HTTP %ld, expected 200", get->shown, status);
}

/* index cache */

static char *cache_path(const http_vault *hv)
{
	return sm_path_join(hv->cache_dir, CACHE_NAME);
}

/* Reads the cached index; 0 with *text NULL when there is no usable cache. */
static int cache_read(const http_vault *hv, char **text, size_t *len)
{
	char *path = cache_path(hv);
	int rc;

	*text = NULL;
	*len = 0;
	if (!path)
		return SM_ENOMEM;
	rc = sm_read_file(path, SM_INDEX_MAX_BYTES + 4096, text, len);
	if (rc && rc != SM_ENOMEM) {
		if (rc != SM_ENOTFOUND)
			notify(hv, SM_LOG_DEBUG, "ignoring the index cache '%s': %s", path,
			       sm_error_message());
		rc = 0;
	}
	free(path);
	return rc;
}

/* Stores the index and its ETag; a failure only costs a full download next time. */
static void cache_write(const http_vault *hv, const char *etag, const char *body, size_t len)
{
	char *path = cache_path(hv), *data = NULL;
	size_t data_len;

	if (!path)
		return;
	data = sm_http_vault_cache_format(hv->url.base, etag, body, len, &data_len);
	if (!data || sm_mkdir_p(hv->cache_dir, 0700) != 0 ||
	    sm_write_file_atomic(path, data, data_len, 0600) != 0)
		notify(hv, SM_LOG_DEBUG, "cannot write the index cache '%s': %s", path,
		       sm_error_message());
	free(data);
	free(path);
}

/* Removes a cache that no longer matches the server's index. */
static void cache_remove(const http_vault *hv)
{
	char *path = cache_path(hv);

	if (path && unlink(path) != 0 && errno != ENOENT)
		notify(hv, SM_LOG_DEBUG, "cannot remove the index cache '%s': %s", path,
		       strerror(errno));
	free(path);
}

/* list */

static int http_list(sm_vault *self, const sm_list_filter *filter, sm_record_list *out)
{
	http_vault *hv = (http_vault *)self;
	sm_buf body = SM_BUF_INIT(SM_INDEX_MAX_BYTES);
	sm_record_list all = { 0 };
	http_get get = { 0 };
	char *cached = NULL, *etag = NULL;
	const char *text = NULL, *cached_body = NULL;
	size_t cached_len = 0, cached_body_len = 0, len = 0;
	int rc, have_cache = 0;

	out->items = NULL;
	out->count = 0;
	if ((rc = cache_read(hv, &cached, &cached_len)) != 0)
		goto done;
	if (cached) {
		have_cache = sm_http_vault_cache_parse(cached, cached_len, hv->url.base, &etag,
						       &cached_body, &cached_body_len);
		if (have_cache < 0) {
			rc = have_cache;
			goto done;
		}
	}

	get.relative = "index.json";
	get.body = &body;
	get.fd = -1;
	get.if_none_match = have_cache ? etag : NULL;
	if ((rc = http_get_run(hv, &get)) != 0)
		goto done;
	if (get.status == 304 && have_cache) {
		notify(hv, SM_LOG_DEBUG, "index.json of vault '%s' is unchanged (HTTP 304); using "
		       "the cached copy", hv->config->name);
		text = cached_body;
		len = cached_body_len;
	} else if (get.status == 200) {
		text = body.data ? body.data : "";
		len = body.len;
	} else if (get.status == 404) {
		cache_remove(hv);
		rc = sm_error_set(SM_ENOTFOUND, "vault '%s' has no index.json at '%s'; a static "
				  "server cannot list metadata/, so the publisher must upload "
				  "index.json with the vault (or 'url' points at the wrong "
				  "directory)", hv->config->name, get.shown);
		goto done;
	} else {
		rc = status_error(hv, &get);
		goto done;
	}

	rc = sm_index_from_text(text, len, &all);
	if (rc == SM_EINVALID)
		rc = sm_error_wrap(SM_EINTEGRITY, "the index of vault '%s' at '%s' is invalid",
				   hv->config->name, get.shown);
	if (rc) {
		if (text == cached_body)
			cache_remove(hv);
		goto done;
	}
	if (get.status == 200) {
		if (*get.etag)
			cache_write(hv, get.etag, text, len);
		else
			cache_remove(hv);
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
	if (rc)
		sm_record_list_release(out);
	for (size_t i = 0; i < all.count; i++)
		sm_record_free(all.items[i]);
	free(all.items);
	sm_buf_release(&body);
	free(cached);
	free(etag);
	return rc;
}

/* metadata */

/*
 * Fetches metadata/<id>.json. Sets *found = 0 (and returns 0) when the
 * server has no such file; a record that does not parse or names another
 * bundle fails with SM_EINTEGRITY.
 */
static int fetch_record(http_vault *hv, const char *id, sm_record **out, int *found)
{
	sm_buf body = SM_BUF_INIT(SM_RECORD_MAX_BYTES);
	http_get get = { 0 };
	char *relative = NULL;
	int rc;

	*out = NULL;
	*found = 0;
	if (!sm_bundle_id_valid(id))
		return sm_error_set(SM_EINVALID, "invalid bundle id '%s'", id);
	relative = sm_asprintf("metadata/%s.json", id);
	if (!relative)
		return SM_ENOMEM;
	get.relative = relative;
	get.body = &body;
	get.fd = -1;
	if ((rc = http_get_run(hv, &get)) != 0)
		goto done;
	if (get.status == 404)
		goto done;
	if (get.status != 200) {
		rc = status_error(hv, &get);
		goto done;
	}
	rc = sm_record_from_text(body.data ? body.data : "", body.len, get.shown, out);
	if (rc == SM_EINVALID)
		rc = sm_error_wrap(SM_EINTEGRITY, "the metadata of bundle '%s' in vault '%s' is "
				   "invalid", id, hv->config->name);
	if (!rc && strcmp((*out)->bundle_id, id) != 0)
		rc = sm_error_set(SM_EINTEGRITY, "the metadata file '%s' names bundle '%s', not '%s'",
				  get.shown, (*out)->bundle_id, id);
	if (rc) {
		sm_record_free(*out);
		*out = NULL;
		goto done;
	}
	*found = 1;
done:
	sm_buf_release(&body);
	free(relative);
	return rc;
}

static int http_get_metadata(sm_vault *self, const char *bundle_id, sm_record **out)
{
	http_vault *hv = (http_vault *)self;
	int found, rc = fetch_record(hv, bundle_id, out, &found);

	if (!rc && !found)
		rc = sm_error_set(SM_ENOTFOUND, "bundle '%s' not found in vault '%s'", bundle_id,
				  hv->config->name);
	return rc;
}

static int http_exists(sm_vault *self, const char *bundle_id, int *out)
{
	http_vault *hv = (http_vault *)self;
	sm_record *record = NULL;
	int rc;

	*out = 0;
	sm_record_free(hv->last_record);
	hv->last_record = NULL;
	rc = fetch_record(hv, bundle_id, &record, out);
	/* sm_vault_pull() asks exists() first: keep the record for pull() */
	if (!rc)
		hv->last_record = record;
	return rc;
}

/* pull */

static int http_pull(sm_vault *self, const char *bundle_id, int fd, sm_record **out)
{
	http_vault *hv = (http_vault *)self;
	EVP_MD_CTX *sha = EVP_MD_CTX_new();
	sm_record *record = NULL;
	http_get get = { 0 };
	unsigned char digest[32];
	unsigned int digest_len = 32;
	char hex[65], *relative = NULL;
	const char *expected;
	int rc = 0, found;

	*out = NULL;
	if (!sha)
		return sm_error_set(SM_ENOMEM, "out of memory");
	if (hv->last_record && strcmp(hv->last_record->bundle_id, bundle_id) == 0) {
		record = hv->last_record;
		hv->last_record = NULL;
	} else {
		rc = fetch_record(hv, bundle_id, &record, &found);
		if (!rc && !found)
			rc = sm_error_set(SM_ENOTFOUND, "bundle '%s' not found in vault '%s'",
					  bundle_id, hv->config->name);
		if (rc)
			goto done;
	}
	relative = sm_asprintf("bundles/%s" BUNDLE_SUFFIX, bundle_id);
	if (!relative) {
		rc = SM_ENOMEM;
		goto done;
	}
	/* with a watch, sm_vault_pull() checks the SHA-256 while the bytes arrive */
	get.watch = sm_pull_watch_take();
	if (!get.watch && !EVP_DigestInit_ex(sha, EVP_sha256(), NULL)) {
		rc = sm_error_set(SM_ERROR, "cannot start SHA-256");
		goto done;
	}

	/* get.total also caps the download, so a server cannot send more than size_bytes */
	get.relative = relative;
	get.fd = fd;
	get.sha = get.watch ? NULL : sha;
	get.total = record->size_bytes;
	rc = http_get_run(hv, &get);
	if (rc == SM_EINTEGRITY)
		rc = sm_error_wrap(rc, "bundle '%s' in vault '%s' is corrupt: the server sent more "
				   "bytes than its metadata says", bundle_id, hv->config->name);
	if (rc)
		goto done;
	if (get.status == 404) {
		rc = sm_error_set(SM_EINTEGRITY, "bundle '%s' in vault '%s' has metadata but its data "
				  "'%s' is missing (HTTP 404)", bundle_id, hv->config->name,
				  get.shown);
		goto done;
	}
	if (get.status != 200 && get.status != 206) {
		rc = status_error(hv, &get);
		goto done;
	}

	if (record->size_bytes && get.written != record->size_bytes) {
		rc = sm_error_set(SM_EINTEGRITY, "bundle '%s' in vault '%s' is corrupt: the server "
				  "sent %llu bytes, its metadata says %llu", bundle_id,
				  hv->config->name, (unsigned long long)get.written,
				  (unsigned long long)record->size_bytes);
		goto done;
	}
	expected = get.watch ? NULL : sm_record_metadata_get(record, "sha256");
	if (expected) {
		EVP_DigestFinal_ex(sha, digest, &digest_len);
		sm_hex(digest, 32, hex);
	}
	if (expected && strcmp(expected, hex) != 0) {
		rc = sm_error_set(SM_EINTEGRITY, "bundle '%s' in vault '%s' is corrupt: SHA-256 %s, "
				  "its metadata says %s", bundle_id, hv->config->name, hex, expected);
		goto done;
	}
	if (hv->callbacks->progress)
		hv->callbacks->progress(get.written, get.written, hv->callbacks->payload);
	*out = record;
	record = NULL;
done:
	EVP_MD_CTX_free(sha);
	sm_record_free(record);
	free(relative);
	return rc;
}

/* push and delete: a static server takes no writes */

static int read_only_error(const http_vault *hv, const char *what)
{
	return sm_error_set(SM_EREADONLY, "cannot %s: vault '%s' is an http vault, which is "
			    "read-only; push to a local vault and copy its directory to the web "
			    "server", what, hv->config->name);
}

static int http_push(sm_vault *self, int fd, sm_record *record, sm_push_opts *opts)
{
	return read_only_error((http_vault *)self, "push");
}

static int http_delete(sm_vault *self, const char *bundle_id)
{
	return read_only_error((http_vault *)self, "delete");
}

/* open, close, constructor */

/* Looks up the vault's credentials and keeps only the header line built from them. */
static int load_auth(http_vault *hv)
{
	sm_cred_opts opts = { 0 };
	sm_credentials *creds = NULL;
	int rc;

	opts.callbacks = hv->callbacks;
	rc = sm_credentials_lookup(&creds, hv->config->name, &opts);
	if (rc)
		return rc;
	rc = sm_http_vault_auth_header(hv->config->name, creds->fields[SM_CRED_USERNAME],
				       creds->fields[SM_CRED_PASSWORD], &hv->auth);
	sm_credentials_free(creds);
	if (!rc && hv->auth && strcmp(hv->url.scheme, "http") == 0)
		notify(hv, SM_LOG_WARN, "vault '%s' sends its credentials over plain http, "
		       "readable by anyone on the path", hv->config->name);
	return rc;
}

/* $SKILLMEAT_HOME/cache/http/<SHA-256 of the vault URL> */
static int set_cache_dir(http_vault *hv)
{
	unsigned char digest[32];
	char hex[65], *home = NULL;
	int rc;

	SHA256((const unsigned char *)hv->url.base, strlen(hv->url.base), digest);
	sm_hex(digest, 32, hex);
	rc = sm_config_home(&home);
	if (rc)
		return rc;
	hv->cache_dir = sm_asprintf("%s/cache/http/%s", home, hex);
	free(home);
	return hv->cache_dir ? 0 : SM_ENOMEM;
}

static int http_open(sm_vault *self)
{
	http_vault *hv = (http_vault *)self;
	sm_http_opts opts = { 0 };
	int rc;

	if (hv->ca_bundle && access(hv->ca_bundle, R_OK) != 0)
		return sm_error_set_errno(SM_EINVALID, errno, "cannot read ca_bundle '%s' of vault "
					  "'%s'", hv->ca_bundle, hv->config->name);
	opts.ca_file = hv->ca_bundle;
	opts.allow_http = hv->allow_http;
	opts.max_redirects = 0; /* followed in http_get_run() under this connector's policy */
	opts.callbacks = hv->callbacks;
	if ((rc = sm_http_client_new(&hv->http, &opts)) != 0)
		return rc;
	if ((rc = set_cache_dir(hv)) != 0)
		return rc;
	return load_auth(hv);
}

static void http_close(sm_vault *self)
{
	http_vault *hv = (http_vault *)self;

	if (!hv)
		return;
	sm_http_client_free(hv->http);
	sm_http_vault_secret_free(hv->auth);
	sm_http_vault_url_release(&hv->url);
	sm_record_free(hv->last_record);
	free(hv->cache_dir);
	free(hv);
}

/* Reads allow_http: "true" or "false", absent is false. */
static int parse_allow_http(const sm_vault_config *config, int *out)
{
	const char *value = sm_vault_config_get(config, "allow_http");

	*out = 0;
	if (!value || strcmp(value, "false") == 0)
		return 0;
	if (strcmp(value, "true") == 0) {
		*out = 1;
		return 0;
	}
	return sm_error_set(SM_EINVALID, "invalid allow_http '%s' of vault '%s' in %s: use true "
			    "or false", value, config->name, config->source ? config->source : "?");
}

int sm_vault_http_new(sm_vault **out, const sm_vault_config *config,
		      const sm_callbacks *callbacks)
{
	const char *url = sm_vault_config_get(config, "url");
	http_vault *hv;
	int rc;

	*out = NULL;
	hv = calloc(1, sizeof(*hv));
	if (!hv)
		return sm_error_set(SM_ENOMEM, "out of memory");
	if ((rc = parse_allow_http(config, &hv->allow_http)) != 0)
		goto fail;
	if (!url) {
		rc = sm_error_set(SM_EINVALID, "vault '%s' in %s has no 'url'; set it to the "
				  "https:// address of the vault directory", config->name,
				  config->source ? config->source : "?");
		goto fail;
	}
	if ((rc = sm_http_vault_url_parse(url, hv->allow_http, &hv->url)) != 0) {
		rc = sm_error_wrap(rc, "vault '%s'", config->name);
		goto fail;
	}
	hv->ca_bundle = sm_vault_config_get(config, "ca_bundle");
	if (hv->ca_bundle && (!*hv->ca_bundle || sm_has_control_chars(hv->ca_bundle))) {
		rc = sm_error_set(SM_EINVALID, "invalid ca_bundle of vault '%s': give the path of a "
				  "PEM file", config->name);
		goto fail;
	}
	hv->parent.abi_version = SM_VAULT_ABI_VERSION;
	hv->parent.type = "http";
	hv->parent.caps = SM_VAULT_CAN_READ;
	hv->parent.open = http_open;
	hv->parent.push = http_push;
	hv->parent.pull = http_pull;
	hv->parent.list = http_list;
	hv->parent.delete_bundle = http_delete;
	hv->parent.exists = http_exists;
	hv->parent.get_metadata = http_get_metadata;
	hv->parent.close = http_close;
	hv->config = config;
	hv->callbacks = callbacks;
	*out = &hv->parent;
	return 0;
fail:
	sm_http_vault_url_release(&hv->url);
	free(hv);
	return rc;
}
