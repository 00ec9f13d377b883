/*
 * AWS Signature Version 4 for requests signed in the Authorization header.
 *
 * The canonical request is built from the method, the path (already
 * percent-encoded by the caller, as S3 expects it: no second encoding and
 * no normalisation), the query (split, each name and value decoded then
 * encoded again by RFC 3986 rules, sorted by name then value), and the
 * headers given (names lower-cased, values trimmed with inner runs of
 * spaces folded, sorted by name, equal names joined with commas).
 */
#ifndef SM_NET_SIGV4_H
#define SM_NET_SIGV4_H

#include <stddef.h>

#include "util/util.h"

/* SHA-256 of the empty string, the payload hash of requests without a body. */
#define SM_SIGV4_EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

/* The payload hash that tells S3 the body is not part of the signature. */
#define SM_SIGV4_UNSIGNED "UNSIGNED-PAYLOAD"

/* One header to sign: name in any case, value as sent. */
typedef struct sm_sigv4_header {
	const char *name;
	const char *value;
} sm_sigv4_header;

typedef struct sm_sigv4_request {
	const char *method;
	const char *path;          /* percent-encoded, starting with '/' */
	const char *query;         /* without '?'; NULL or "" when none */
	const sm_sigv4_header *headers;  /* must include host and x-amz-date */
	size_t nheaders;
	const char *payload_hash;  /* hex SHA-256 of the body, or SM_SIGV4_UNSIGNED */
	const char *amz_date;      /* "YYYYMMDDTHHMMSSZ" */
	const char *region;
	const char *service;
	const char *access_key_id;
	const char *secret_access_key;
} sm_sigv4_request;

typedef struct sm_sigv4_result {
	char *canonical_request;   /* for tests and debugging */
	char *string_to_sign;
	char signature[65];
	char *authorization;       /* the Authorization header's value */
} sm_sigv4_result;

/* Signs `req`. Fails with SM_EINVALID on malformed input, SM_ENOMEM. */
int sm_sigv4_sign(const sm_sigv4_request *req, sm_sigv4_result *out);

/* Frees the strings of a result. */
void sm_sigv4_result_release(sm_sigv4_result *result);

/*
 * Appends `text` percent-encoded by RFC 3986 rules: unreserved bytes
 * (A-Z a-z 0-9 - . _ ~) as they are, '/' as it is when `keep_slash`,
 * every other byte as %XX in upper case. A space becomes %20.
 */
int sm_uri_encode(sm_buf *out, const char *text, size_t len, int keep_slash);

/* Writes the current UTC time as "YYYYMMDDTHHMMSSZ". */
void sm_sigv4_now(char out[17]);

#endif
