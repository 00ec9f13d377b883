/*
 * The two HTTP sources of AWS credentials: the container endpoint (ECS,
 * EKS Pod Identity) and the EC2 instance metadata service, IMDSv2 only.
 * Both go through libcurl directly, without proxies and without following
 * redirects, with short timeouts so a machine without them fails fast.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <sodium.h>

#include "credentials/aws.h"
#include "credentials/credentials_internal.h"
#include "util/util.h"

#define CONTAINER_HOST "http://169.254.170.2"
#define IMDS_DEFAULT "http://169.254.169.254"
#define IMDS_TOKEN_TTL "21600"

/* Per-attempt limits, in milliseconds, and attempts per request. */
#define CONTAINER_CONNECT_MS 2000
#define CONTAINER_TOTAL_MS 5000
#define IMDS_CONNECT_MS 1000
#define IMDS_TOKEN_TOTAL_MS 1000
#define IMDS_TOTAL_MS 2000
#define HTTP_ATTEMPTS 2

/* Maximum size of the container authorization token, in bytes. */
#define TOKEN_MAX 16384

/* Response of one request; the body lives in secret memory. */
typedef struct http_response {
	char *body;
	size_t len;
	long status;
	CURLcode curl_rc;
	int too_large;
} http_response;

static void response_release(http_response *r)
{
	sm_secret_free(r->body);
	memset(r, 0, sizeof(*r));
}

static size_t on_body(char *data, size_t size, size_t count, void *payload)
{
	http_response *r = payload;
	size_t n = size * count;

	if (n > SM_AWS_RESPONSE_MAX - r->len) {
		r->too_large = 1;
		return 0;
	}
	memcpy(r->body + r->len, data, n);
	r->len += n;
	return n;
}

static size_t on_upload(char *data, size_t size, size_t count, void *payload)
{
	return 0; /* the token PUT has an empty body */
}

/* Wipes the header strings (they may contain tokens) and frees the list. */
static void headers_free(struct curl_slist *headers)
{
	for (struct curl_slist *h = headers; h; h = h->next)
		sodium_memzero(h->data, strlen(h->data));
	curl_slist_free_all(headers);
}

/*
 * Sends one request, retrying once after a connection failure, a timeout
 * or a 5xx status. A transport failure leaves status 0 and curl_rc set.
 */
static int http_request(const char *url, int put, struct curl_slist *headers, long connect_ms,
			long total_ms, http_response *r)
{
	memset(r, 0, sizeof(*r));
	r->body = sm_aws_secret_alloc(SM_AWS_RESPONSE_MAX);
	if (!r->body)
		return SM_ENOMEM;

	for (int attempt = 0; attempt < HTTP_ATTEMPTS; attempt++) {
		CURL *curl = curl_easy_init();

		if (!curl)
			return sm_error_set(SM_ENOMEM, "cannot initialise libcurl");
		sodium_memzero(r->body, SM_AWS_RESPONSE_MAX);
		r->len = 0;
		r->status = 0;
		r->too_large = 0;
		curl_easy_setopt(curl, CURLOPT_URL, url);
#if LIBCURL_VERSION_NUM >= 0x075500
		curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
#else
		curl_easy_setopt(curl, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
		curl_easy_setopt(curl, CURLOPT_NOPROXY, "*");
		curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
		curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, connect_ms);
		curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, total_ms);
		curl_easy_setopt(curl, CURLOPT_USERAGENT, "skillmeat/" SKILLMEAT_VERSION);
		curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
		curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
		curl_easy_setopt(curl, CURLOPT_WRITEDATA, r);
		if (put) {
			curl_easy_setopt(curl, CURLOPT_UPLOAD, 1L);
			curl_easy_setopt(curl, CURLOPT_INFILESIZE_LARGE, (curl_off_t)0);
			curl_easy_setopt(curl, CURLOPT_READFUNCTION, on_upload);
		}
		r->curl_rc = curl_easy_perform(curl);
		if (r->curl_rc == CURLE_OK)
			curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &r->status);
		curl_easy_cleanup(curl);

		if (r->too_large)
			return sm_error_set(SM_EINVALID, "response larger than %d bytes",
					    SM_AWS_RESPONSE_MAX);
		if (r->curl_rc == CURLE_OK && r->status < 500)
			break;
		if (r->curl_rc != CURLE_OK && r->curl_rc != CURLE_COULDNT_CONNECT &&
		    r->curl_rc != CURLE_OPERATION_TIMEDOUT && r->curl_rc != CURLE_RECV_ERROR &&
		    r->curl_rc != CURLE_GOT_NOTHING && r->curl_rc != CURLE_SEND_ERROR)
			break; /* retrying cannot fix a malformed URL or a TLS failure */
	}
	return 0;
}

/* Writes "scheme://host:port" of `url` for messages, leaving out path, query and user. */
static void url_origin(const char *url, char *out, size_t size)
{
	CURLU *u = curl_url();
	char *scheme = NULL, *host = NULL, *port = NULL;
	int n = -1;

	if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
	    curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK) {
		if (curl_url_get(u, CURLUPART_PORT, &port, 0) == CURLUE_OK)
			n = snprintf(out, size, "%s://%s:%s", scheme, host, port);
		else
			n = snprintf(out, size, "%s://%s", scheme, host);
	}
	if (n < 0 || (size_t)n >= size)
		snprintf(out, size, "the endpoint");
	curl_free(scheme);
	curl_free(host);
	curl_free(port);
	curl_url_cleanup(u);
}

/* Returns 1 when `host` (as CURLU returns it, IPv6 in brackets) is a loopback address. */
static int host_is_loopback(const char *host)
{
	unsigned char addr[16];
	char v6[64];
	size_t len = strlen(host);

	if (strcasecmp(host, "localhost") == 0)
		return 1;
	if (inet_pton(AF_INET, host, addr) == 1)
		return addr[0] == 127;
	if (len > 2 && len < sizeof(v6) + 2 && host[0] == '[' && host[len - 1] == ']') {
		memcpy(v6, host + 1, len - 2);
		v6[len - 2] = '\0';
		if (inet_pton(AF_INET6, v6, addr) == 1) {
			static const unsigned char loopback[16] = { [15] = 1 };

			return memcmp(addr, loopback, 16) == 0;
		}
	}
	return 0;
}

/*
 * Returns 1 when `host` is one of the link-local addresses that AWS runs
 * container endpoints on over plain http: ECS (169.254.170.2) and EKS Pod
 * Identity (169.254.170.23, fd00:ec2::23).
 */
static int host_is_aws_container(const char *host)
{
	return strcmp(host, "169.254.170.2") == 0 || strcmp(host, "169.254.170.23") == 0 ||
	       strcasecmp(host, "[fd00:ec2::23]") == 0;
}

/* Checks AWS_CONTAINER_CREDENTIALS_FULL_URI: https, or http to a loopback or container address. */
static int check_full_uri(const char *uri)
{
	CURLU *u = curl_url();
	char *scheme = NULL, *host = NULL;
	int rc = 0;

	if (!u)
		return sm_error_set(SM_ENOMEM, "out of memory");
	if (sm_has_control_chars(uri) || curl_url_set(u, CURLUPART_URL, uri, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK) {
		rc = sm_error_set(SM_EINVALID, "AWS_CONTAINER_CREDENTIALS_FULL_URI is not a valid URL");
		goto done;
	}
	if (strcmp(scheme, "https") == 0)
		goto done;
	if (strcmp(scheme, "http") != 0) {
		rc = sm_error_set(SM_EINVALID, "AWS_CONTAINER_CREDENTIALS_FULL_URI must be an http or "
				  "https URL, not '%s'", scheme);
		goto done;
	}
	if (!host_is_loopback(host) && !host_is_aws_container(host))
		rc = sm_error_set(SM_EINVALID, "AWS_CONTAINER_CREDENTIALS_FULL_URI uses plain http to "
				  "'%s', which is allowed only for loopback and AWS container "
				  "addresses; use https", host);
done:
	curl_free(scheme);
	curl_free(host);
	curl_url_cleanup(u);
	return rc;
}

/*
 * Builds the "Authorization: TOKEN" header from the file in
 * AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE (which wins, as in the AWS SDKs)
 * or from AWS_CONTAINER_AUTHORIZATION_TOKEN. `*headers` stays NULL when
 * neither is set.
 */
static int container_auth_header(struct curl_slist **headers)
{
	const char *path = getenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE");
	const char *value = getenv("AWS_CONTAINER_AUTHORIZATION_TOKEN");
	const char *origin = "AWS_CONTAINER_AUTHORIZATION_TOKEN";
	char *file_text = NULL, *header = NULL;
	size_t len = 0, file_len = 0;
	int rc = 0;

	*headers = NULL;
	if (path && path[0]) {
		rc = sm_read_file(path, TOKEN_MAX, &file_text, &file_len);
		len = file_len;
		if (rc) {
			rc = sm_error_wrap(rc, "cannot read AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE");
			goto done;
		}
		while (len > 0 && (file_text[len - 1] == '\n' || file_text[len - 1] == '\r' ||
				   file_text[len - 1] == ' ' || file_text[len - 1] == '\t'))
			len--;
		file_text[len] = '\0';
		value = file_text;
		origin = "the file in AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE";
	}
	if (!value || !value[0]) {
		if (file_text)
			rc = sm_error_set(SM_EAUTH, "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE '%s' is empty",
					  path);
		goto done;
	}
	if (sm_has_control_chars(value)) {
		rc = sm_error_set(SM_EINVALID, "%s contains control characters", origin);
		goto done;
	}
	len = strlen(value);
	header = sm_aws_secret_alloc(len + sizeof("Authorization: "));
	if (!header) {
		rc = SM_ENOMEM;
		goto done;
	}
	memcpy(header, "Authorization: ", sizeof("Authorization: ") - 1);
	memcpy(header + sizeof("Authorization: ") - 1, value, len + 1);
	/* curl_slist_append copies the string; headers_free() wipes that copy */
	*headers = curl_slist_append(NULL, header);
	if (!*headers)
		rc = sm_error_set(SM_ENOMEM, "out of memory");
done:
	if (file_text) {
		sodium_memzero(file_text, file_len);
		free(file_text);
	}
	sm_secret_free(header);
	return rc;
}

int sm_aws_container_resolve(sm_aws_credentials *out, char *tried, size_t tried_size)
{
	const char *relative = getenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
	const char *full = getenv("AWS_CONTAINER_CREDENTIALS_FULL_URI");
	struct curl_slist *headers = NULL;
	http_response response = { 0 };
	char *url = NULL, origin[160];
	int rc;

	if (relative && relative[0]) {
		/* the AWS SDKs use the relative URI when both are set */
		if (relative[0] != '/' || sm_has_control_chars(relative))
			return sm_error_set(SM_EINVALID, "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI must be a "
					    "path starting with '/'");
		url = sm_asprintf("%s%s", CONTAINER_HOST, relative);
	} else if (full && full[0]) {
		rc = check_full_uri(full);
		if (rc)
			return rc;
		url = sm_strdup(full);
	} else {
		snprintf(tried, tried_size, "container credentials (not configured)");
		return SM_AWS_NONE;
	}
	if (!url)
		return SM_ENOMEM;
	url_origin(url, origin, sizeof(origin));

	rc = container_auth_header(&headers);
	if (rc)
		goto done;
	rc = http_request(url, 0, headers, CONTAINER_CONNECT_MS, CONTAINER_TOTAL_MS, &response);
	if (rc) {
		rc = sm_error_wrap(rc, "container credentials endpoint '%s'", origin);
		goto done;
	}
	if (response.curl_rc != CURLE_OK) {
		rc = sm_error_set(SM_ENETWORK, "cannot get container credentials from '%s': %s",
				  origin, curl_easy_strerror(response.curl_rc));
		goto done;
	}
	if (response.status == 401 || response.status == 403) {
		rc = sm_error_set(SM_EAUTH, "container credentials endpoint '%s' rejected the request "
				  "with HTTP %ld; check AWS_CONTAINER_AUTHORIZATION_TOKEN or "
				  "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", origin, response.status);
		goto done;
	}
	if (response.status != 200) {
		rc = sm_error_set(SM_ENETWORK, "container credentials endpoint '%s' returned HTTP %ld",
				  origin, response.status);
		goto done;
	}
	rc = sm_aws_credentials_from_json(response.body, response.len,
					  "the container credentials endpoint", 0, out);
	if (rc == 0)
		snprintf(out->source, sizeof(out->source), "container");
done:
	response_release(&response);
	headers_free(headers);
	free(url);
	return rc;
}

/* Returns 1 when the transport failure means that no IMDS listens at the endpoint. */
static int imds_absent(const http_response *r)
{
	return r->curl_rc == CURLE_COULDNT_CONNECT || r->curl_rc == CURLE_OPERATION_TIMEDOUT ||
	       r->curl_rc == CURLE_COULDNT_RESOLVE_HOST || r->curl_rc == CURLE_GOT_NOTHING ||
	       r->curl_rc == CURLE_RECV_ERROR || r->curl_rc == CURLE_SEND_ERROR;
}

/* Returns 1 when `role` looks like an IAM role name, so it is safe in a URL path. */
static int role_name_valid(const char *role)
{
	if (!role[0] || strlen(role) > 64)
		return 0;
	for (const char *p = role; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
		      strchr("+=,.@_-", *p)))
			return 0;
	return 1;
}

int sm_aws_imds_resolve(sm_aws_credentials *out, char *tried, size_t tried_size)
{
	const char *disabled = getenv("AWS_EC2_METADATA_DISABLED");
	const char *endpoint = getenv("AWS_EC2_METADATA_SERVICE_ENDPOINT");
	struct curl_slist *headers = NULL;
	http_response response = { 0 };
	char *base = NULL, *url = NULL, *header = NULL, origin[160], role[65];
	size_t len;
	int rc, n;

	if (disabled && strcasecmp(disabled, "true") == 0) {
		snprintf(tried, tried_size, "instance metadata (disabled by AWS_EC2_METADATA_DISABLED)");
		return SM_AWS_NONE;
	}
	if (!endpoint || !endpoint[0])
		endpoint = IMDS_DEFAULT;
	if (sm_has_control_chars(endpoint) ||
	    (strncmp(endpoint, "http://", 7) != 0 && strncmp(endpoint, "https://", 8) != 0))
		return sm_error_set(SM_EINVALID, "AWS_EC2_METADATA_SERVICE_ENDPOINT must be an http or "
				    "https URL");
	len = strlen(endpoint);
	while (len > 0 && endpoint[len - 1] == '/')
		len--;
	base = sm_strndup(endpoint, len);
	if (!base)
		return SM_ENOMEM;
	url_origin(base, origin, sizeof(origin));

	/* 1. the session token */
	url = sm_asprintf("%s/latest/api/token", base);
	headers = curl_slist_append(NULL, "X-aws-ec2-metadata-token-ttl-seconds: " IMDS_TOKEN_TTL);
	if (!url || !headers) {
		rc = sm_error_set(SM_ENOMEM, "out of memory");
		goto done;
	}
	rc = http_request(url, 1, headers, IMDS_CONNECT_MS, IMDS_TOKEN_TOTAL_MS, &response);
	if (rc) {
		rc = sm_error_wrap(rc, "instance metadata at '%s'", origin);
		goto done;
	}
	if (response.curl_rc != CURLE_OK) {
		if (!imds_absent(&response)) {
			rc = sm_error_set(SM_ENETWORK, "cannot reach instance metadata at '%s': %s",
					  origin, curl_easy_strerror(response.curl_rc));
			goto done;
		}
		n = snprintf(tried, tried_size, "instance metadata at '%s' (%s, %d attempts)",
			     origin, response.curl_rc == CURLE_OPERATION_TIMEDOUT ? "timed out" :
			     response.curl_rc == CURLE_COULDNT_CONNECT ? "cannot connect" : "no answer",
			     HTTP_ATTEMPTS);
		if (n < 0 || (size_t)n >= tried_size)
			snprintf(tried, tried_size, "instance metadata (no answer)");
		rc = SM_AWS_NONE;
		goto done;
	}
	if (response.status != 200 || response.len == 0) {
		/* IMDSv2 switched off or something else on that address: not an IMDS to use */
		n = snprintf(tried, tried_size, "instance metadata at '%s' (token request returned "
			     "HTTP %ld)", origin, response.status);
		if (n < 0 || (size_t)n >= tried_size)
			snprintf(tried, tried_size, "instance metadata (token refused)");
		rc = SM_AWS_NONE;
		goto done;
	}
	while (response.len > 0 && (response.body[response.len - 1] == '\n' ||
				    response.body[response.len - 1] == '\r'))
		response.body[--response.len] = '\0';
	if (response.len == 0 || sm_has_control_chars(response.body) ||
	    strlen(response.body) != response.len) {
		rc = sm_error_set(SM_EINVALID, "instance metadata at '%s' returned an invalid token",
				  origin);
		goto done;
	}
	header = sm_aws_secret_alloc(response.len + sizeof("X-aws-ec2-metadata-token: "));
	if (!header) {
		rc = SM_ENOMEM;
		goto done;
	}
	snprintf(header, response.len + sizeof("X-aws-ec2-metadata-token: "),
		 "X-aws-ec2-metadata-token: %s", response.body);
	headers_free(headers);
	headers = curl_slist_append(NULL, header);
	response_release(&response);
	free(url);
	url = NULL;
	if (!headers) {
		rc = sm_error_set(SM_ENOMEM, "out of memory");
		goto done;
	}

	/* 2. the role name */
	url = sm_asprintf("%s/latest/meta-data/iam/security-credentials/", base);
	if (!url) {
		rc = SM_ENOMEM;
		goto done;
	}
	rc = http_request(url, 0, headers, IMDS_CONNECT_MS, IMDS_TOTAL_MS, &response);
	if (rc) {
		rc = sm_error_wrap(rc, "instance metadata at '%s'", origin);
		goto done;
	}
	if (response.curl_rc != CURLE_OK) {
		rc = sm_error_set(SM_ENETWORK, "cannot get the IAM role from instance metadata at "
				  "'%s': %s", origin, curl_easy_strerror(response.curl_rc));
		goto done;
	}
	if (response.status == 404) {
		snprintf(tried, tried_size, "instance metadata (no IAM role attached)");
		rc = SM_AWS_NONE;
		goto done;
	}
	if (response.status != 200) {
		rc = sm_error_set(response.status == 401 || response.status == 403 ? SM_EAUTH :
				  SM_ENETWORK, "instance metadata at '%s' returned HTTP %ld for the "
				  "IAM role", origin, response.status);
		goto done;
	}
	len = strcspn(response.body, "\r\n");
	if (len == 0) {
		snprintf(tried, tried_size, "instance metadata (no IAM role attached)");
		rc = SM_AWS_NONE;
		goto done;
	}
	if (len >= sizeof(role)) {
		rc = sm_error_set(SM_EINVALID, "instance metadata at '%s' returned an invalid IAM role "
				  "name", origin);
		goto done;
	}
	memcpy(role, response.body, len);
	role[len] = '\0';
	if (!role_name_valid(role)) {
		rc = sm_error_set(SM_EINVALID, "instance metadata at '%s' returned an invalid IAM role "
				  "name", origin);
		goto done;
	}
	response_release(&response);
	free(url);

	/* 3. the role's credentials */
	url = sm_asprintf("%s/latest/meta-data/iam/security-credentials/%s", base, role);
	if (!url) {
		rc = SM_ENOMEM;
		goto done;
	}
	rc = http_request(url, 0, headers, IMDS_CONNECT_MS, IMDS_TOTAL_MS, &response);
	if (rc) {
		rc = sm_error_wrap(rc, "instance metadata at '%s'", origin);
		goto done;
	}
	if (response.curl_rc != CURLE_OK) {
		rc = sm_error_set(SM_ENETWORK, "cannot get credentials of IAM role '%s' from instance "
				  "metadata at '%s': %s", role, origin,
				  curl_easy_strerror(response.curl_rc));
		goto done;
	}
	if (response.status != 200) {
		rc = sm_error_set(response.status == 401 || response.status == 403 ? SM_EAUTH :
				  SM_ENETWORK, "instance metadata at '%s' returned HTTP %ld for the "
				  "credentials of IAM role '%s'", origin, response.status, role);
		goto done;
	}
	{
		static const char *const code_name[1] = { "Code" };
		char *code = NULL;

		rc = sm_aws_json_members(response.body, response.len, code_name, &code, 1);
		if (rc) {
			rc = sm_error_wrap(rc, "instance metadata credentials of IAM role '%s'", role);
			goto done;
		}
		if (code && strcmp(code, "Success") != 0) {
			sm_secret_free(code);
			rc = sm_error_set(SM_EAUTH, "instance metadata has no usable credentials for IAM "
					  "role '%s' (Code is not Success)", role);
			goto done;
		}
		sm_secret_free(code);
	}
	rc = sm_aws_credentials_from_json(response.body, response.len,
					  "the instance metadata service", 0, out);
	if (rc == 0)
		snprintf(out->source, sizeof(out->source), "instance metadata");
done:
	response_release(&response);
	headers_free(headers);
	sm_secret_free(header);
	free(url);
	free(base);
	return rc;
}
