/*
 * A small HTTP(S) client over libcurl, shared by the network connectors.
 *
 * A client owns one curl multi handle, so connections are reused across
 * requests, and runs any number of requests with a bounded number in
 * flight. Each request has its own retry loop. Connection errors, timeouts,
 * HTTP 408, 429, 500, 502, 503 and 504 are retried, and so is whatever the
 * request's `retryable` hook adds. The wait grows exponentially with full
 * jitter, honours Retry-After, and is capped in attempts and total time.
 * Each retry sends one debug line through the callbacks.
 *
 * Request bodies come from memory or from a range of a file descriptor
 * (read with pread(), so the descriptor's offset is untouched). Response
 * bodies go to memory (an sm_buf with a size cap) or to a file descriptor
 * at an offset, optionally hashed with SHA-256 in the same pass and resumed
 * with a Range request after a broken connection. A file target may also
 * ask for one byte range of the resource. A body sent to a file
 * that grows past response_max ends the request with SM_EINTEGRITY.
 *
 * Proxies come from the usual environment variables (curl reads them).
 * Redirects are not followed unless the client allows them. The library
 * prints nothing.
 */
#ifndef SM_NET_HTTP_H
#define SM_NET_HTTP_H

#include <stdint.h>
#include <openssl/evp.h>

#include "skillmeat/common.h"
#include "util/util.h"

/* Maximum number of headers of one request: half its own, half added by a prepare hook. */
#define SM_HTTP_MAX_HEADERS 24

/* Largest error body kept when the response body goes to a file. */
#define SM_HTTP_ERROR_BODY_MAX (64 * 1024)

typedef struct sm_http_opts {
	const char *ca_file;       /* CA bundle (PEM); NULL: the system's */
	int allow_http;            /* permit plain http:// URLs */
	int max_redirects;         /* 0: never follow a redirect */
	long connect_timeout_s;    /* 0: 15 s */
	long low_speed_time_s;     /* abort below low_speed_bytes/s for this long; 0: 30 s */
	long low_speed_bytes;      /* 0: 1024 */
	int max_attempts;          /* 0: 6 */
	long max_retry_ms;         /* total time for one request's attempts; 0: 120000 */
	long base_delay_ms;        /* first backoff cap; 0: 250 */
	long max_delay_ms;         /* largest backoff cap; 0: 20000 */
	const sm_callbacks *callbacks; /* receives the retry lines; may be NULL */
} sm_http_opts;

typedef struct sm_http_client sm_http_client;
typedef struct sm_http_request sm_http_request;

/*
 * Adds headers for one attempt (signing happens here, since the time and
 * the credentials may change between attempts). Returns 0 or a negative
 * sm_error_code, which ends the request without retrying.
 */
typedef int (*sm_http_prepare_fn)(sm_http_request *req, void *payload);

/*
 * Returns 1 when a finished attempt with an HTTP status should be retried
 * although the status alone does not say so (S3's SlowDown in a 400).
 */
typedef int (*sm_http_retryable_fn)(const sm_http_request *req, void *payload);

/*
 * One request. The caller fills the fields above `status` (all borrowed,
 * and they must outlive the run) and reads the results below it.
 * sm_http_request_init() sets the defaults; sm_http_request_release()
 * frees what a run allocated.
 */
struct sm_http_request {
	const char *method;
	const char *url;
	const char *headers[SM_HTTP_MAX_HEADERS / 2]; /* "Name: value" lines */
	size_t nheaders;

	/* body from memory (body != NULL) or from body_fd */
	const void *body;
	size_t body_len;
	int body_fd;               /* -1: none */
	uint64_t body_offset;
	uint64_t body_fd_len;

	/* response body to memory (response != NULL) or to response_fd */
	sm_buf *response;
	int response_fd;           /* -1: none */
	uint64_t response_offset;  /* where the body's first byte goes */
	uint64_t response_max;     /* file target: most body bytes accepted, 0 for no cap */
	/*
	 * range_len != 0: fetch only bytes range_start to range_start +
	 * range_len - 1 of the resource with a Range header. The response must
	 * be a 206 that starts there; a 200 fails the request with SM_EIO.
	 */
	uint64_t range_start;
	uint64_t range_len;
	int resume;                /* after a broken transfer, continue with Range */
	EVP_MD_CTX *response_sha;  /* a digest updated in order with the bytes written */
	struct sm_pull_watch *watch; /* receives every write to response_fd (vault/pull_watch.h) */

	sm_http_prepare_fn prepare;
	sm_http_retryable_fn retryable;
	/* reports progress: req->sent (upload) or req->written (download) changed */
	void (*progress)(sm_http_request *req, void *payload);
	void *payload;             /* for prepare, retryable and progress */
	void *user;                /* free for the caller */

	/* results */
	int rc;                    /* 0, or the failure that ended the request */
	char error[512];           /* its message when rc != 0 */
	long status;               /* HTTP status of the last attempt, 0 if none */
	sm_buf response_headers;   /* raw header lines of the last attempt */
	sm_buf error_body;         /* body of a response >= 300 sent to a file */
	uint64_t written;          /* body bytes written to response_fd */
	uint64_t sent;             /* body bytes sent by the current attempt */
	int attempts;

	/* private to http.c */
	char *extra[SM_HTTP_MAX_HEADERS / 2];
	size_t nextra;
	struct curl_slist *slist;
	void *easy;
	uint64_t read_pos;
	EVP_MD_CTX *sha_start;     /* response_sha as it was before the first attempt */
	int sha_started;
	long long due_ms;
	long long first_ms;
	int state;
	char range[64];
	int range_checked;
	int over_max;              /* the body went past response_max */
	int bad_range;             /* the server broke the Range protocol in its response */
	char if_range[160];        /* "If-Range: <ETag>" of the first response, for resuming */
};

/* Sets the defaults: no body, no response target, descriptors -1. */
void sm_http_request_init(sm_http_request *req);

/* Frees what a run allocated (headers added, buffers of results). */
void sm_http_request_release(sm_http_request *req);

/* Adds a header for the current attempt (prepare hooks use it). */
int sm_http_add_header(sm_http_request *req, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/*
 * Copies the value of response header `name` (case-insensitive, the last
 * one wins) into `out`. Returns 1 when found, else 0 with out = "".
 */
int sm_http_header_get(const sm_http_request *req, const char *name, char *out, size_t size);

/* Returns the body of an error response (memory or error_body), "" when none. */
const char *sm_http_error_text(const sm_http_request *req);

int sm_http_client_new(sm_http_client **out, const sm_http_opts *opts);
void sm_http_client_free(sm_http_client *client);

/*
 * Returns the next request to start, or NULL when there is none for now.
 * Called whenever a slot is free.
 */
typedef sm_http_request *(*sm_http_next_fn)(void *payload);

/*
 * Handles a finished request (succeeded, or failed for good: check
 * req->rc, then req->status). A non-zero return stops the run: requests
 * in flight are cancelled and sm_http_run() returns that code.
 */
typedef int (*sm_http_done_fn)(sm_http_request *req, void *payload);

/*
 * Runs requests from `next` with at most `concurrency` in flight until
 * `next` returns NULL and nothing is in flight. Returns 0, the first
 * non-zero return of `done`, or a failure of curl itself.
 */
int sm_http_run(sm_http_client *client, size_t concurrency, sm_http_next_fn next,
		sm_http_done_fn done, void *payload);

/*
 * Runs one request. Returns req->rc: 0 when a response arrived (whatever
 * its status), else the transport failure with its message set.
 */
int sm_http_perform(sm_http_client *client, sm_http_request *req);

/* Returns 1 when `status` is one the client retries by itself. */
int sm_http_status_retryable(long status);

#endif
