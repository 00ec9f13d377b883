/*
 * Internals shared by the parts of the S3 connector: s3.c (requests,
 * errors, objects, index, listing, delete), s3_push.c (push, multipart
 * upload and its resumable state) and s3_pull.c (pull, whole or in
 * byte ranges).
 */
#ifndef SM_VAULT_S3_CONNECTOR_H
#define SM_VAULT_S3_CONNECTOR_H

#include <stdint.h>

#include "credentials/aws.h"
#include "net/http.h"
#include "skillmeat/vault.h"
#include "util/util.h"
#include "vault/s3_internal.h"

/* An open S3 vault. */
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

void s3_notify(const s3_vault *sv, sm_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Sends progress to the callbacks. */
void s3_report(const s3_vault *sv, uint64_t done, uint64_t total);

/* Sets up a call of `method` on `key` (NULL: the bucket) with an encoded `query`. */
int s3_call_init(s3_call *call, s3_vault *sv, const char *method, const char *key,
		 const char *query);
void s3_call_release(s3_call *call);

/* Adds a header line that the call owns. */
int s3_call_header(s3_call *call, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Sets a memory body, signed with its SHA-256. */
void s3_call_body(s3_call *call, const void *data, size_t len);

/*
 * Runs one call. A transport failure returns its code with the message
 * set; any HTTP status returns 0 for the caller to judge. A region
 * mismatch is followed once with the region the server names.
 */
int s3_call_perform(s3_call *call);

/* Parses the <Error> body of a response; members NULL when there is none. */
void s3_error_of(const s3_call *call, sm_s3_error *error);

/*
 * Sets the message for a response that the operation did not expect, and
 * returns the code that fits it. `what` names the object or operation.
 */
int s3_status_error(const s3_call *call, const char *what);

/* PUTs a small object from memory. `condition` is an extra header line or NULL. */
int s3_put_object(s3_vault *sv, const char *key, const void *data, size_t len,
		  const char *content_type, const char *condition, const char *what,
		  long *status);

/* DELETEs an object; a missing one is fine. */
int s3_delete_object(s3_vault *sv, const char *key, const char *what);

/* Reads metadata/<id>.json; SM_ENOTFOUND (message set) when the bundle is not stored. */
int s3_fetch_record(s3_vault *sv, const char *id, sm_record **out);

/* Adds or replaces `record`, or removes `remove_id`, in index.json. */
int s3_update_index(s3_vault *sv, const sm_record *record, const char *remove_id);

/* The push slot of the connector (s3_push.c). */
int s3_push(sm_vault *self, int fd, sm_record *record, sm_push_opts *opts);

/* The pull slot of the connector (s3_pull.c). */
int s3_pull(sm_vault *self, const char *bundle_id, int fd, sm_record **out);

#endif
