/*
 * Pure parts of the S3 connector, kept apart so unit tests reach them:
 * settings, object keys, URLs, part sizes and the few XML elements of S3
 * responses that the connector reads.
 */
#ifndef SM_VAULT_S3_INTERNAL_H
#define SM_VAULT_S3_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "skillmeat/bundle.h"
#include "skillmeat/config.h"

#define SM_S3_MIN_PART_SIZE (5ull * 1024 * 1024)
#define SM_S3_MAX_PART_SIZE (5ull * 1024 * 1024 * 1024)
#define SM_S3_MAX_PARTS 10000u
#define SM_S3_DEFAULT_PART_SIZE (8ull * 1024 * 1024)
#define SM_S3_DEFAULT_CONCURRENCY 4
#define SM_S3_MAX_CONCURRENCY 32

/*
 * Largest download accepted for a bundle whose record has no size_bytes
 * (records of the original tool may lack it): the largest unpacked bundle
 * plus 64 MiB for archive headers.
 */
#define SM_S3_PULL_UNSIZED_MAX (SM_BUNDLE_MAX_UNCOMPRESSED + 64ull * 1024 * 1024)

/* Settings of an S3 vault, checked and normalised. */
typedef struct sm_s3_settings {
	char *bucket;
	char *region;        /* signing region: "us-east-1" unless set */
	char *prefix;        /* "" or ending in '/', no leading '/' */
	char *scheme;        /* "https" or "http" */
	char *host;          /* endpoint host, with ":port" when not the default */
	char *base_path;     /* path of the endpoint URL without a trailing '/', or "" */
	char *endpoint;      /* the endpoint as given, or the AWS one built from the region */
	char *profile;       /* NULL when not set */
	char *ca_bundle;     /* NULL when not set */
	int custom_endpoint; /* endpoint_url was set */
	int virtual_hosted;  /* bucket in the host name instead of the path */
	int allow_http;      /* plain http:// permitted */
	uint64_t part_size;
	int concurrency;
} sm_s3_settings;

/*
 * Reads and checks the settings of `config`. Fails with SM_EINVALID and a
 * message naming the key and the file on a bad value, including a plain
 * http:// endpoint whose host is not a loopback address unless the vault
 * sets allow_http = true.
 */
int sm_s3_settings_parse(const sm_vault_config *config, sm_s3_settings *out);
void sm_s3_settings_release(sm_s3_settings *settings);

/* Points the settings at another region (a redirect named it). */
int sm_s3_settings_set_region(sm_s3_settings *settings, const char *region);

/* Returns 1 when `host` (may carry ":port" or be "[v6]:port") is a loopback address. */
int sm_s3_host_is_loopback(const char *host);

/*
 * Computes the part size of a multipart upload of `size` bytes: at least
 * `requested` (and 5 MiB), grown in whole MiB until at most 10,000 parts
 * are needed. Fails with SM_EINVALID above 5 GiB per part.
 */
int sm_s3_part_plan(uint64_t size, uint64_t requested, uint64_t *part_size, uint32_t *nparts);

/* "<prefix>bundles/<id>.skillmeat-pack" */
char *sm_s3_bundle_key(const sm_s3_settings *settings, const char *id);
/* "<prefix>metadata/<id>.json" */
char *sm_s3_metadata_key(const sm_s3_settings *settings, const char *id);
/* "<prefix>index.json" */
char *sm_s3_index_key(const sm_s3_settings *settings);

/*
 * Builds the URL of object `key` (NULL: the bucket itself) with the
 * already encoded `query` (NULL: none), and the percent-encoded path that
 * the signature covers. `*host` receives the Host header's value.
 */
int sm_s3_build_url(const sm_s3_settings *settings, const char *key, const char *query,
		    char **url, char **path, char **host);

/*
 * Finds the text of the next element <name>...</name> at or after
 * `*offset` in `xml`, decodes the five XML entities and numeric character
 * references, and moves `*offset` past it. Returns 1 when found, 0 when
 * not, or a negative code when the element is malformed (SM_EINVALID) or
 * memory runs out. Elements with attributes or child elements are not
 * matched.
 */
int sm_xml_next(const char *xml, size_t len, const char *name, size_t *offset, char **out);

/* The parts of an S3 <Error> body. Members are NULL when absent. */
typedef struct sm_s3_error {
	char *code;
	char *message;
	char *region;
} sm_s3_error;

/* Parses an <Error> body; 0 with all members NULL when there is none. */
int sm_s3_parse_error(const char *xml, size_t len, sm_s3_error *out);
void sm_s3_error_release(sm_s3_error *error);

/* One page of a ListObjectsV2 response. */
typedef struct sm_s3_list_page {
	char **keys;
	size_t nkeys;
	int truncated;
	char *next_token;   /* NULL when not truncated */
} sm_s3_list_page;

/* Parses a ListBucketResult. A truncated page without a token is SM_EINVALID. */
int sm_s3_parse_list(const char *xml, size_t len, sm_s3_list_page *out);
void sm_s3_list_page_release(sm_s3_list_page *page);

/* Parses an InitiateMultipartUploadResult and returns its UploadId. */
int sm_s3_parse_upload_id(const char *xml, size_t len, char **upload_id);

/*
 * Returns 1 and a new string in `*id` when listed key `key` is
 * ".../metadata/<valid id>.json" (or "metadata/<id>.json" without a
 * prefix), else 0 with `*id` NULL, or SM_ENOMEM.
 */
int sm_s3_id_from_metadata_key(const sm_s3_settings *settings, const char *key, char **id);

#endif
