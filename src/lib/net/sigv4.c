/*
 * AWS Signature Version 4, written from the published algorithm: canonical
 * request, string to sign, signing key derived by HMAC-SHA256 over the
 * date, region, service and "aws4_request", then the signature.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "net/sigv4.h"

int sm_uri_encode(sm_buf *out, const char *text, size_t len, int keep_slash)
{
	static const char hex[] = "0123456789ABCDEF";

	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)text[i];
		int rc;

		if (isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~' ||
		    (keep_slash && c == '/')) {
			rc = sm_buf_putc(out, (char)c);
		} else {
			char escaped[3] = { '%', hex[c >> 4], hex[c & 15] };

			rc = sm_buf_put(out, escaped, 3);
		}
		if (rc)
			return rc;
	}
	return 0;
}

void sm_sigv4_now(char out[17])
{
	time_t now = time(NULL);
	struct tm tm;

	gmtime_r(&now, &tm);
	strftime(out, 17, "%Y%m%dT%H%M%SZ", &tm);
}

static int hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Decodes %XX escapes; '+' stays a '+', since RFC 3986 gives it no special meaning. */
static char *percent_decode(const char *text, size_t len, size_t *out_len)
{
	char *out = malloc(len + 1);
	size_t n = 0;

	if (!out)
		return NULL;
	for (size_t i = 0; i < len; i++) {
		if (text[i] == '%' && i + 2 < len && hex_value(text[i + 1]) >= 0 &&
		    hex_value(text[i + 2]) >= 0) {
			out[n++] = (char)(hex_value(text[i + 1]) * 16 + hex_value(text[i + 2]));
			i += 2;
		} else {
			out[n++] = text[i];
		}
	}
	out[n] = '\0';
	*out_len = n;
	return out;
}

typedef struct query_pair {
	char *name;   /* encoded */
	char *value;  /* encoded */
} query_pair;

static int compare_pairs(const void *a, const void *b)
{
	const query_pair *x = a, *y = b;
	int c = strcmp(x->name, y->name);

	return c ? c : strcmp(x->value, y->value);
}

static char *encode_component(const char *text, size_t len)
{
	size_t decoded_len;
	char *decoded = percent_decode(text, len, &decoded_len);
	sm_buf buf = SM_BUF_INIT(0);

	if (!decoded)
		return NULL;
	if (sm_uri_encode(&buf, decoded, decoded_len, 0) != 0 || sm_buf_puts(&buf, "") != 0) {
		free(decoded);
		sm_buf_release(&buf);
		return NULL;
	}
	free(decoded);
	return sm_buf_take(&buf);
}

/* Appends the canonical query string of `query`. */
static int canonical_query(sm_buf *out, const char *query)
{
	query_pair *pairs = NULL;
	size_t n = 0, cap = 0;
	const char *p = query;
	int rc = 0;

	while (p && *p) {
		const char *end = strchr(p, '&'), *eq;
		size_t len = end ? (size_t)(end - p) : strlen(p);

		if (len) {
			if (n == cap) {
				query_pair *grown = realloc(pairs, (cap = cap ? cap * 2 : 8) * sizeof(*pairs));

				if (!grown) {
					rc = sm_error_set(SM_ENOMEM, "out of memory");
					goto done;
				}
				pairs = grown;
			}
			eq = memchr(p, '=', len);
			pairs[n].name = encode_component(p, eq ? (size_t)(eq - p) : len);
			pairs[n].value = eq ? encode_component(eq + 1, len - (size_t)(eq + 1 - p))
					    : sm_strdup("");
			n++;
			if (!pairs[n - 1].name || !pairs[n - 1].value) {
				rc = sm_error_set(SM_ENOMEM, "out of memory");
				goto done;
			}
		}
		p = end ? end + 1 : NULL;
	}
	if (n > 1)
		qsort(pairs, n, sizeof(*pairs), compare_pairs);
	for (size_t i = 0; i < n && !rc; i++)
		rc = sm_buf_printf(out, "%s%s=%s", i ? "&" : "", pairs[i].name, pairs[i].value);
done:
	for (size_t i = 0; i < n; i++) {
		free(pairs[i].name);
		free(pairs[i].value);
	}
	free(pairs);
	return rc;
}

typedef struct header_line {
	char *name;    /* lower case */
	char *value;   /* trimmed, inner spaces folded */
} header_line;

static int compare_headers(const void *a, const void *b)
{
	return strcmp(((const header_line *)a)->name, ((const header_line *)b)->name);
}

static char *trim_value(const char *value)
{
	sm_buf buf = SM_BUF_INIT(0);
	int space = 0;

	while (*value == ' ' || *value == '\t')
		value++;
	for (const char *p = value; *p; p++) {
		if (*p == ' ' || *p == '\t') {
			space = 1;
			continue;
		}
		if (space && sm_buf_putc(&buf, ' ') != 0)
			goto fail;
		space = 0;
		if (sm_buf_putc(&buf, *p) != 0)
			goto fail;
	}
	if (sm_buf_puts(&buf, "") != 0)
		goto fail;
	return sm_buf_take(&buf);
fail:
	sm_buf_release(&buf);
	return NULL;
}

/* Appends the canonical headers and sets `signed_headers`. */
static int canonical_headers(sm_buf *out, sm_buf *signed_headers, const sm_sigv4_header *headers,
			     size_t count)
{
	header_line *lines = calloc(count ? count : 1, sizeof(*lines));
	int rc = 0;

	if (!lines)
		return sm_error_set(SM_ENOMEM, "out of memory");
	for (size_t i = 0; i < count; i++) {
		if (!headers[i].name || !*headers[i].name || !headers[i].value ||
		    strpbrk(headers[i].name, " :\r\n") || strpbrk(headers[i].value, "\r\n")) {
			rc = sm_error_set(SM_EINVALID, "invalid header to sign");
			goto done;
		}
		lines[i].name = sm_strdup(headers[i].name);
		lines[i].value = trim_value(headers[i].value);
		if (!lines[i].name || !lines[i].value) {
			rc = sm_error_set(SM_ENOMEM, "out of memory");
			goto done;
		}
		for (char *p = lines[i].name; *p; p++)
			*p = (char)tolower((unsigned char)*p);
	}
	/* a stable sort keeps repeated names in the order given */
	for (size_t i = 1; i < count; i++) {
		header_line key = lines[i];
		size_t j = i;

		while (j > 0 && compare_headers(&lines[j - 1], &key) > 0) {
			lines[j] = lines[j - 1];
			j--;
		}
		lines[j] = key;
	}
	for (size_t i = 0; i < count && !rc; i++) {
		int repeat = i > 0 && strcmp(lines[i].name, lines[i - 1].name) == 0;
		int last = i + 1 == count || strcmp(lines[i].name, lines[i + 1].name) != 0;

		if (!repeat) {
			rc = sm_buf_printf(out, "%s:", lines[i].name);
			if (!rc)
				rc = sm_buf_printf(signed_headers, "%s%s", signed_headers->len ? ";" : "",
						   lines[i].name);
		} else {
			rc = sm_buf_putc(out, ',');
		}
		if (!rc)
			rc = sm_buf_puts(out, lines[i].value);
		if (!rc && last)
			rc = sm_buf_putc(out, '\n');
	}
done:
	for (size_t i = 0; i < count; i++) {
		free(lines[i].name);
		free(lines[i].value);
	}
	free(lines);
	return rc;
}

static void sha256_hex(const void *data, size_t len, char out[65])
{
	unsigned char digest[32];

	SHA256(data, len, digest);
	sm_hex(digest, 32, out);
}

static int hmac(const void *key, size_t key_len, const char *data, unsigned char out[32])
{
	unsigned int len = 32;

	if (!HMAC(EVP_sha256(), key, (int)key_len, (const unsigned char *)data, strlen(data),
		  out, &len))
		return sm_error_set(SM_ERROR, "HMAC-SHA256 failed");
	return 0;
}

void sm_sigv4_result_release(sm_sigv4_result *result)
{
	free(result->canonical_request);
	free(result->string_to_sign);
	free(result->authorization);
	memset(result, 0, sizeof(*result));
}

int sm_sigv4_sign(const sm_sigv4_request *req, sm_sigv4_result *out)
{
	sm_buf canonical = SM_BUF_INIT(0), signed_headers = SM_BUF_INIT(0), to_sign = SM_BUF_INIT(0);
	unsigned char key[32], next[32];
	char date[9], hash[65], *secret_key = NULL;
	size_t secret_len;
	int rc;

	memset(out, 0, sizeof(*out));
	if (!req->method || !req->path || req->path[0] != '/' || !req->amz_date ||
	    strlen(req->amz_date) != 16 || !req->region || !*req->region || !req->service ||
	    !req->access_key_id || !req->secret_access_key || !req->payload_hash)
		return sm_error_set(SM_EINVALID, "incomplete request to sign");
	memcpy(date, req->amz_date, 8);
	date[8] = '\0';

	/* 1. the canonical request */
	rc = sm_buf_printf(&canonical, "%s\n%s\n", req->method, req->path);
	if (!rc)
		rc = canonical_query(&canonical, req->query);
	if (!rc)
		rc = sm_buf_putc(&canonical, '\n');
	if (!rc)
		rc = canonical_headers(&canonical, &signed_headers, req->headers, req->nheaders);
	if (!rc)
		rc = sm_buf_printf(&canonical, "\n%s\n%s", signed_headers.data ? signed_headers.data : "",
				   req->payload_hash);
	if (rc)
		goto done;

	/* 2. the string to sign */
	sha256_hex(canonical.data, canonical.len, hash);
	rc = sm_buf_printf(&to_sign, "AWS4-HMAC-SHA256\n%s\n%s/%s/%s/aws4_request\n%s",
			   req->amz_date, date, req->region, req->service, hash);
	if (rc)
		goto done;

	/* 3. the signing key: HMAC chain over date, region, service, "aws4_request" */
	secret_len = strlen(req->secret_access_key) + 4;
	secret_key = malloc(secret_len + 1);
	if (!secret_key) {
		rc = sm_error_set(SM_ENOMEM, "out of memory");
		goto done;
	}
	memcpy(secret_key, "AWS4", 4);
	memcpy(secret_key + 4, req->secret_access_key, secret_len - 4 + 1);
	if ((rc = hmac(secret_key, secret_len, date, key)) != 0 ||
	    (rc = hmac(key, 32, req->region, next)) != 0 ||
	    (rc = hmac(next, 32, req->service, key)) != 0 ||
	    (rc = hmac(key, 32, "aws4_request", next)) != 0 ||
	    (rc = hmac(next, 32, to_sign.data, key)) != 0)
		goto done;
	sm_hex(key, 32, out->signature);

	/* 4. the header */
	out->authorization = sm_asprintf("AWS4-HMAC-SHA256 Credential=%s/%s/%s/%s/aws4_request, "
					 "SignedHeaders=%s, Signature=%s", req->access_key_id, date,
					 req->region, req->service,
					 signed_headers.data ? signed_headers.data : "", out->signature);
	if (!out->authorization) {
		rc = SM_ENOMEM;
		goto done;
	}
	out->canonical_request = sm_buf_take(&canonical);
	out->string_to_sign = sm_buf_take(&to_sign);
done:
	if (secret_key) {
		explicit_bzero(secret_key, secret_len);
		free(secret_key);
	}
	explicit_bzero(key, sizeof(key));
	explicit_bzero(next, sizeof(next));
	sm_buf_release(&canonical);
	sm_buf_release(&signed_headers);
	sm_buf_release(&to_sign);
	if (rc)
		sm_sigv4_result_release(out);
	return rc;
}
