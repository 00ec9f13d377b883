/*
 * Pure parts of the HTTP(S) vault: URLs, redirects, the Authorization
 * header and the index cache file. See http_vault_internal.h.
 */
#define _GNU_SOURCE
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/util.h"
#include "vault/http_vault_internal.h"

#define CACHE_MAGIC "skillmeat-http-cache 1\n"

/* Returns 1 when every byte of `text` is printable ASCII other than space. */
static int url_chars_valid(const char *text)
{
	for (const unsigned char *p = (const unsigned char *)text; *p; p++)
		if (*p <= 0x20 || *p >= 0x7f)
			return 0;
	return 1;
}

/*
 * Splits "scheme://authority/rest" into its scheme (lower case) and the
 * length of the authority. Returns 0, or -1 when there is no "://".
 */
static int split_url(const char *url, char *scheme, size_t scheme_size, const char **authority,
		     size_t *authority_len)
{
	const char *sep = strstr(url, "://");
	size_t len;

	if (!sep || sep == url || (size_t)(sep - url) >= scheme_size)
		return -1;
	len = (size_t)(sep - url);
	for (size_t i = 0; i < len; i++) {
		char c = url[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (i > 0 && ((c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.'))))
			return -1;
		scheme[i] = (char)(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
	}
	scheme[len] = '\0';
	*authority = sep + 3;
	*authority_len = strcspn(*authority, "/?#");
	return 0;
}

/*
 * Checks an authority: a host (a name, an IPv4 address or [IPv6]) and an
 * optional port of 1-65535, without user information.
 */
static int authority_valid(const char *authority, size_t len)
{
	const char *port = NULL, *end = authority + len;

	if (len == 0 || memchr(authority, '@', len))
		return 0;
	if (authority[0] == '[') {
		const char *close = memchr(authority, ']', len);

		if (!close || close == authority + 1)
			return 0;
		if (close + 1 < end) {
			if (close[1] != ':')
				return 0;
			port = close + 2;
		}
	} else {
		const char *colon = memchr(authority, ':', len);

		if (colon == authority)
			return 0;
		if (colon)
			port = colon + 1;
	}
	if (port) {
		unsigned long value = 0;

		if (port == end || end - port > 5)
			return 0;
		for (const char *p = port; p < end; p++) {
			if (*p < '0' || *p > '9')
				return 0;
			value = value * 10 + (unsigned long)(*p - '0');
		}
		if (value == 0 || value > 65535)
			return 0;
	}
	return 1;
}

int sm_http_vault_url_parse(const char *text, int allow_http, sm_http_vault_url *out)
{
	char scheme[16];
	const char *authority, *path;
	size_t authority_len;
	int slash;

	memset(out, 0, sizeof(*out));
	if (!text || !*text)
		return sm_error_set(SM_EINVALID, "the vault URL is empty; give https://host/path");
	if (split_url(text, scheme, sizeof(scheme), &authority, &authority_len) == 0 &&
	    memchr(authority, '@', authority_len))
		return sm_error_set(SM_EINVALID, "the vault URL contains user information; give the "
				    "URL without it and store the user name and password with "
				    "'skillmeat vault auth NAME'");
	if (!url_chars_valid(text))
		return sm_error_set(SM_EINVALID, "invalid vault URL '%s': it contains spaces, control "
				    "characters or non-ASCII bytes; percent-encode them",
				    sm_has_control_chars(text) ? "(not shown)" : text);
	if (split_url(text, scheme, sizeof(scheme), &authority, &authority_len) != 0)
		return sm_error_set(SM_EINVALID, "invalid vault URL '%s': expected https://host/path",
				    text);
	if (strcmp(scheme, "https") != 0 && strcmp(scheme, "http") != 0)
		return sm_error_set(SM_EINVALID, "unsupported scheme '%s' in vault URL '%s': use "
				    "https:// (or http:// with allow_http = true)", scheme, text);
	if (strcmp(scheme, "http") == 0 && !allow_http)
		return sm_error_set(SM_EINVALID, "vault URL '%s' uses plain http://, which sends "
				    "everything unencrypted; use https://, or set allow_http = true "
				    "for a server you trust", text);
	if (!authority_valid(authority, authority_len))
		return sm_error_set(SM_EINVALID, "invalid host or port in vault URL '%s'", text);
	path = authority + authority_len;
	if (strpbrk(path, "?#"))
		return sm_error_set(SM_EINVALID, "vault URL '%s' has a query or fragment; give the "
				    "directory that holds index.json, without '?' or '#'", text);

	out->scheme = sm_strdup(scheme);
	out->authority = sm_strndup(authority, authority_len);
	if (!out->scheme || !out->authority)
		goto nomem;
	/* host names are case-insensitive: keep one spelling for origin checks */
	for (char *p = out->authority; *p && *p != ':' && *p != ']'; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	slash = !*path || path[strlen(path) - 1] != '/';
	out->base = sm_asprintf("%s://%s%s%s", out->scheme, out->authority, *path ? path : "",
				slash ? "/" : "");
	if (!out->base)
		goto nomem;
	return 0;
nomem:
	sm_http_vault_url_release(out);
	return SM_ENOMEM;
}

void sm_http_vault_url_release(sm_http_vault_url *url)
{
	free(url->scheme);
	free(url->authority);
	free(url->base);
	memset(url, 0, sizeof(*url));
}

char *sm_http_vault_join(const char *base, const char *relative)
{
	return sm_asprintf("%s%s", base, relative);
}

/* Fills the scheme, lower-case host and port (with its default) of a URL. */
static int origin_of(const char *url, char *scheme, size_t scheme_size, char *host,
		     size_t host_size, unsigned long *port)
{
	const char *authority, *colon = NULL, *host_end;
	size_t len, host_len;

	if (split_url(url, scheme, scheme_size, &authority, &len) != 0 ||
	    !authority_valid(authority, len))
		return -1;
	if (authority[0] == '[') {
		host_end = memchr(authority, ']', len) + 1;
		if (host_end < authority + len)
			colon = host_end;
	} else {
		colon = memchr(authority, ':', len);
		host_end = colon ? colon : authority + len;
	}
	host_len = (size_t)(host_end - authority);
	if (host_len >= host_size)
		return -1;
	for (size_t i = 0; i < host_len; i++) {
		char c = authority[i];

		host[i] = (char)(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
	}
	host[host_len] = '\0';
	if (colon)
		*port = strtoul(colon + 1, NULL, 10);
	else
		*port = strcmp(scheme, "https") == 0 ? 443 : strcmp(scheme, "http") == 0 ? 80 : 0;
	return 0;
}

int sm_http_vault_same_origin(const char *a, const char *b)
{
	char scheme_a[16], scheme_b[16], host_a[256], host_b[256];
	unsigned long port_a, port_b;

	if (origin_of(a, scheme_a, sizeof(scheme_a), host_a, sizeof(host_a), &port_a) != 0 ||
	    origin_of(b, scheme_b, sizeof(scheme_b), host_b, sizeof(host_b), &port_b) != 0)
		return 0;
	return strcmp(scheme_a, scheme_b) == 0 && strcmp(host_a, host_b) == 0 && port_a == port_b;
}

/* Returns 1 when `text` starts with "scheme:" as RFC 3986 spells a scheme. */
static int has_scheme(const char *text)
{
	const char *p = text;

	if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')))
		return 0;
	while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
	       *p == '+' || *p == '-' || *p == '.')
		p++;
	return *p == ':';
}

int sm_http_vault_redirect(const char *from, const char *location, int allow_http, char **out)
{
	char scheme[16], *resolved = NULL, *hash;
	const char *authority;
	size_t authority_len;
	int rc = 0;

	*out = NULL;
	if (!location || !*location || !url_chars_valid(location))
		return sm_error_set(SM_EINVALID, "the server sent a redirect with an empty or "
				    "malformed Location header");
	if (split_url(from, scheme, sizeof(scheme), &authority, &authority_len) != 0)
		return sm_error_set(SM_EINVALID, "cannot resolve a redirect from a malformed URL");

	if (location[0] == '/' && location[1] == '/') {
		resolved = sm_asprintf("%s:%s", scheme, location);
	} else if (has_scheme(location)) {
		resolved = sm_strdup(location);
	} else if (location[0] == '/') {
		resolved = sm_asprintf("%.*s%s", (int)(authority - from + authority_len), from,
				       location);
	} else {
		/* relative to the directory of `from`, without its query */
		const char *path = authority + authority_len;
		size_t path_len = strcspn(path, "?#");
		const char *last = path_len ? memrchr(path, '/', path_len) : NULL;
		size_t keep = last ? (size_t)(last - from) + 1 : (size_t)(path - from);

		resolved = last ? sm_asprintf("%.*s%s", (int)keep, from, location)
				: sm_asprintf("%.*s/%s", (int)keep, from, location);
	}
	if (!resolved)
		return SM_ENOMEM;
	hash = strchr(resolved, '#');
	if (hash)
		*hash = '\0';

	if (split_url(resolved, scheme, sizeof(scheme), &authority, &authority_len) != 0) {
		rc = sm_error_set(SM_EINVALID, "the server redirected to a malformed URL");
		goto done;
	}
	if (strcmp(scheme, "https") != 0 && !(allow_http && strcmp(scheme, "http") == 0)) {
		if (strcmp(scheme, "http") == 0)
			rc = sm_error_set(SM_ENETWORK, "rejected a redirect from https to plain http:// "
					  "at '%.*s'; the data would travel unencrypted (set "
					  "allow_http = true only for a server you trust)",
					  (int)authority_len, authority);
		else
			rc = sm_error_set(SM_ENETWORK, "rejected a redirect to scheme '%s'; only "
					  "https%s is followed", scheme, allow_http ? " and http" : "");
		goto done;
	}
	if (memchr(authority, '@', authority_len) || !authority_valid(authority, authority_len)) {
		rc = sm_error_set(SM_EINVALID, "the server redirected to a URL with user information "
				  "or an invalid host");
		goto done;
	}
	*out = resolved;
	resolved = NULL;
done:
	free(resolved);
	return rc;
}

/* Returns 1 when `text` is empty or has a control character or a non-ASCII byte. */
static int header_value_invalid(const char *text)
{
	if (!*text)
		return 1;
	for (const unsigned char *p = (const unsigned char *)text; *p; p++)
		if (*p < 0x20 || *p >= 0x7f)
			return 1;
	return 0;
}

int sm_http_vault_auth_header(const char *vault, const char *username, const char *password,
			      char **out)
{
	static const char basic[] = "Authorization: Basic ";
	static const char bearer[] = "Authorization: Bearer ";
	char *pair = NULL, *line = NULL;
	size_t pair_len, encoded_len;
	int rc = 0;

	*out = NULL;
	if (sodium_init() < 0)
		return sm_error_set(SM_ERROR, "cannot initialise libsodium");
	if (!password) {
		if (username)
			return sm_error_set(SM_EAUTH, "vault '%s' has a user name but no password; store "
					    "one with 'skillmeat vault auth %s --username USER "
					    "--password'", vault, vault);
		return 0;
	}
	if (header_value_invalid(password) || (username && header_value_invalid(username)))
		return sm_error_set(SM_EINVALID, "the stored user name or password of vault '%s' is "
				    "empty or has control or non-ASCII characters, which an HTTP "
				    "header cannot carry; store it again with 'skillmeat vault auth "
				    "%s'", vault, vault);

	if (!username) {
		size_t len = sizeof(bearer) - 1 + strlen(password) + 1;

		if (strchr(password, ' '))
			return sm_error_set(SM_EINVALID, "the token of vault '%s' contains a space, which "
					    "a bearer token cannot; store it again with 'skillmeat "
					    "vault auth %s --password'", vault, vault);
		line = sodium_malloc(len);
		if (!line)
			return sm_error_set(SM_ENOMEM, "out of memory");
		snprintf(line, len, "%s%s", bearer, password);
		*out = line;
		return 0;
	}

	if (strchr(username, ':'))
		return sm_error_set(SM_EINVALID, "the user name of vault '%s' contains ':', which basic "
				    "authentication cannot carry", vault);
	pair_len = strlen(username) + 1 + strlen(password);
	pair = sodium_malloc(pair_len + 1);
	if (!pair)
		return sm_error_set(SM_ENOMEM, "out of memory");
	snprintf(pair, pair_len + 1, "%s:%s", username, password);
	encoded_len = sodium_base64_ENCODED_LEN(pair_len, sodium_base64_VARIANT_ORIGINAL);
	line = sodium_malloc(sizeof(basic) - 1 + encoded_len);
	if (!line) {
		rc = sm_error_set(SM_ENOMEM, "out of memory");
		goto done;
	}
	memcpy(line, basic, sizeof(basic) - 1);
	sodium_bin2base64(line + sizeof(basic) - 1, encoded_len, (const unsigned char *)pair,
			  pair_len, sodium_base64_VARIANT_ORIGINAL);
	*out = line;
done:
	sodium_free(pair);
	return rc;
}

void sm_http_vault_secret_free(char *secret)
{
	if (secret)
		sodium_free(secret);
}

int sm_http_vault_etag_valid(const char *etag)
{
	size_t len = etag ? strlen(etag) : 0;

	if (len == 0 || len > SM_HTTP_VAULT_ETAG_MAX)
		return 0;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)etag[i] < 0x20 || (unsigned char)etag[i] >= 0x7f)
			return 0;
	return 1;
}

char *sm_http_vault_cache_format(const char *url, const char *etag, const char *body,
				 size_t body_len, size_t *len)
{
	sm_buf buf = SM_BUF_INIT(SIZE_MAX);

	*len = 0;
	if (sm_buf_printf(&buf, CACHE_MAGIC "url %s\netag %s\n\n", url, etag) != 0 ||
	    sm_buf_put(&buf, body, body_len) != 0) {
		sm_buf_release(&buf);
		return NULL;
	}
	*len = buf.len;
	return sm_buf_take(&buf);
}

/* Reads the line after "`key` " at *p, moving *p past its newline. */
static int cache_line(const char **p, const char *end, const char *key, const char **value,
		      size_t *value_len)
{
	size_t key_len = strlen(key);
	const char *newline;

	if ((size_t)(end - *p) <= key_len || memcmp(*p, key, key_len) != 0 || (*p)[key_len] != ' ')
		return -1;
	*p += key_len + 1;
	newline = memchr(*p, '\n', (size_t)(end - *p));
	if (!newline)
		return -1;
	*value = *p;
	*value_len = (size_t)(newline - *p);
	*p = newline + 1;
	return 0;
}

int sm_http_vault_cache_parse(const char *text, size_t len, const char *url, char **etag,
			      const char **body, size_t *body_len)
{
	const char *p = text, *end = text + len, *value;
	size_t value_len, magic_len = sizeof(CACHE_MAGIC) - 1;
	char *copy;

	*etag = NULL;
	*body = NULL;
	*body_len = 0;
	if (len < magic_len || memcmp(text, CACHE_MAGIC, magic_len) != 0)
		return 0;
	p += magic_len;
	if (cache_line(&p, end, "url", &value, &value_len) != 0 || value_len != strlen(url) ||
	    memcmp(value, url, value_len) != 0)
		return 0;
	if (cache_line(&p, end, "etag", &value, &value_len) != 0)
		return 0;
	if (p == end || *p != '\n')
		return 0;
	copy = sm_strndup(value, value_len);
	if (!copy)
		return SM_ENOMEM;
	if (strlen(copy) != value_len || !sm_http_vault_etag_valid(copy)) {
		free(copy);
		return 0;
	}
	*etag = copy;
	*body = p + 1;
	*body_len = (size_t)(end - (p + 1));
	return 1;
}
