/*
 * Pure parts of the HTTP(S) vault connector, kept apart so unit tests reach
 * them: the vault URL, joining paths to it, the redirect policy, the
 * Authorization header and the file that caches index.json with its ETag.
 */
#ifndef SM_VAULT_HTTP_VAULT_INTERNAL_H
#define SM_VAULT_HTTP_VAULT_INTERNAL_H

#include <stddef.h>

#include "skillmeat/bundle.h"

/* Most redirects followed for one request. */
#define SM_HTTP_VAULT_MAX_REDIRECTS 5

/*
 * Largest download accepted for a bundle whose record has no size_bytes
 * (records of the original tool may lack it): the largest unpacked bundle
 * plus 64 MiB for archive headers.
 */
#define SM_HTTP_VAULT_PULL_UNSIZED_MAX (SM_BUNDLE_MAX_UNCOMPRESSED + 64ull * 1024 * 1024)

/* Longest ETag kept and sent back in If-None-Match. */
#define SM_HTTP_VAULT_ETAG_MAX 256

/* A checked vault URL. */
typedef struct sm_http_vault_url {
	char *scheme;     /* "https" or "http" */
	char *authority;  /* host with ":port" when given, host in lower case */
	char *base;       /* scheme://authority/path/, always ending in '/' */
} sm_http_vault_url;

/*
 * Parses and checks a vault URL: scheme https (or http when `allow_http`),
 * a host, an optional port, no user information, no query or fragment, no
 * control characters or spaces. Fails with SM_EINVALID and a message that
 * quotes the URL only when it contains no user information.
 */
int sm_http_vault_url_parse(const char *text, int allow_http, sm_http_vault_url *out);
void sm_http_vault_url_release(sm_http_vault_url *url);

/* Returns base + relative as a new string; `base` ends in '/'. */
char *sm_http_vault_join(const char *base, const char *relative);

/*
 * Returns 1 when two absolute URLs have the same scheme, host and port
 * (443 and 80 stand for an omitted port), else 0.
 */
int sm_http_vault_same_origin(const char *a, const char *b);

/*
 * Resolves the Location header `location` of a response to `from` into a
 * new absolute URL in `*out`, and checks it: the scheme must be https, or
 * http when `allow_http`; user information is rejected. The fragment is
 * dropped. Fails with SM_ENETWORK (an insecure or foreign scheme) or
 * SM_EINVALID (a malformed Location), with the message set.
 */
int sm_http_vault_redirect(const char *from, const char *location, int allow_http, char **out);

/*
 * Builds the Authorization header line for `username` and `password`
 * (either may be NULL): both give Basic, a password alone is a bearer
 * token, neither gives *out = NULL. The line lives in sodium_malloc()
 * memory; free it with sm_http_vault_secret_free(). A user name with ':',
 * or a value with control characters, fails with SM_EINVALID; a user name
 * without a password fails with SM_EAUTH. Messages name `vault`, never a
 * value.
 */
int sm_http_vault_auth_header(const char *vault, const char *username, const char *password,
			      char **out);
void sm_http_vault_secret_free(char *secret);

/* Returns 1 when `etag` is non-empty, short enough and printable ASCII. */
int sm_http_vault_etag_valid(const char *etag);

/*
 * The cache file of index.json: a header that names the format, the URL
 * and the ETag, a blank line, then the body as the server sent it.
 *
 *   skillmeat-http-cache 1
 *   url <url>
 *   etag <etag>
 *
 *   <body>
 */

/* Formats a cache file into a new buffer of *len bytes. */
char *sm_http_vault_cache_format(const char *url, const char *etag, const char *body,
				 size_t body_len, size_t *len);

/*
 * Parses a cache file for `url`. Returns 1 with a new `*etag` and `*body`
 * pointing into `text` when it is a valid cache of that URL, 0 when it is
 * not (another URL, another format, a damaged file), or SM_ENOMEM.
 */
int sm_http_vault_cache_parse(const char *text, size_t len, const char *url, char **etag,
			      const char **body, size_t *body_len);

#endif
