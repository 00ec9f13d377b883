/*
 * The HTTP client: libcurl's multi interface with a retry loop per request.
 * See http.h for the contract.
 */
#define _GNU_SOURCE
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "net/http.h"
#include "vault/pull_watch.h"

enum request_state {
	STATE_IDLE = 0,   /* not started */
	STATE_RUNNING,    /* an attempt is in flight */
	STATE_WAITING,    /* waiting for its next attempt */
	STATE_DONE
};

struct sm_http_client {
	CURLM *multi;
	sm_http_opts opts;
	char *ca_file;
};

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc;

static void global_init(void)
{
	global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void notify(const sm_http_client *client, sm_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void notify(const sm_http_client *client, sm_log_level level, const char *fmt, ...)
{
	const sm_callbacks *cb = client->opts.callbacks;
	char text[768];
	va_list ap;

	if (!cb || !cb->message)
		return;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	cb->message(level, text, cb->payload);
}

void sm_http_request_init(sm_http_request *req)
{
	memset(req, 0, sizeof(*req));
	req->body_fd = -1;
	req->response_fd = -1;
	req->response_headers.max = 256 * 1024;
	req->error_body.max = SM_HTTP_ERROR_BODY_MAX;
}

static void clear_attempt(sm_http_request *req)
{
	for (size_t i = 0; i < req->nextra; i++) {
		explicit_bzero(req->extra[i], strlen(req->extra[i]));
		free(req->extra[i]);
		req->extra[i] = NULL;
	}
	req->nextra = 0;
	if (req->slist) {
		curl_slist_free_all(req->slist);
		req->slist = NULL;
	}
	if (req->easy) {
		curl_easy_cleanup(req->easy);
		req->easy = NULL;
	}
}

void sm_http_request_release(sm_http_request *req)
{
	clear_attempt(req);
	EVP_MD_CTX_free(req->sha_start);
	req->sha_start = NULL;
	sm_buf_release(&req->response_headers);
	sm_buf_release(&req->error_body);
}

int sm_http_add_header(sm_http_request *req, const char *fmt, ...)
{
	va_list ap;
	char *line;
	int n;

	if (req->nextra == sizeof(req->extra) / sizeof(req->extra[0]))
		return sm_error_set(SM_EINVALID, "too many headers in one request");
	va_start(ap, fmt);
	n = vasprintf(&line, fmt, ap);
	va_end(ap);
	if (n < 0)
		return sm_error_set(SM_ENOMEM, "out of memory");
	req->extra[req->nextra++] = line;
	return 0;
}

int sm_http_header_get(const sm_http_request *req, const char *name, char *out, size_t size)
{
	const char *p = req->response_headers.data;
	size_t name_len = strlen(name);
	int found = 0;

	if (size)
		out[0] = '\0';
	if (!p)
		return 0;
	while (*p) {
		const char *end = strchr(p, '\n');
		size_t line_len = end ? (size_t)(end - p) : strlen(p);

		if (line_len > name_len && p[name_len] == ':' && strncasecmp(p, name, name_len) == 0) {
			const char *v = p + name_len + 1;
			const char *stop = p + line_len;

			while (v < stop && (*v == ' ' || *v == '\t'))
				v++;
			while (stop > v && (stop[-1] == '\r' || stop[-1] == ' ' || stop[-1] == '\t'))
				stop--;
			if (size) {
				size_t n = (size_t)(stop - v) < size - 1 ? (size_t)(stop - v) : size - 1;

				memcpy(out, v, n);
				out[n] = '\0';
			}
			found = 1;
		}
		if (!end)
			break;
		p = end + 1;
	}
	return found;
}

const char *sm_http_error_text(const sm_http_request *req)
{
	if (req->error_body.data)
		return req->error_body.data;
	if (req->response && req->response->data)
		return req->response->data;
	return "";
}

int sm_http_status_retryable(long status)
{
	return status == 408 || status == 429 || status == 500 || status == 502 ||
	       status == 503 || status == 504;
}

int sm_http_client_new(sm_http_client **out, const sm_http_opts *opts)
{
	sm_http_client *client;

	*out = NULL;
	pthread_once(&global_once, global_init);
	if (global_rc != CURLE_OK)
		return sm_error_set(SM_ERROR, "cannot initialise libcurl: %s",
				    curl_easy_strerror(global_rc));
	client = calloc(1, sizeof(*client));
	if (!client)
		return sm_error_set(SM_ENOMEM, "out of memory");
	if (opts)
		client->opts = *opts;
	if (!client->opts.connect_timeout_s)
		client->opts.connect_timeout_s = 15;
	if (!client->opts.low_speed_time_s)
		client->opts.low_speed_time_s = 30;
	if (!client->opts.low_speed_bytes)
		client->opts.low_speed_bytes = 1024;
	if (!client->opts.max_attempts)
		client->opts.max_attempts = 6;
	if (!client->opts.max_retry_ms)
		client->opts.max_retry_ms = 120000;
	if (!client->opts.base_delay_ms)
		client->opts.base_delay_ms = 250;
	if (!client->opts.max_delay_ms)
		client->opts.max_delay_ms = 20000;
	if (opts && opts->ca_file) {
		client->ca_file = sm_strdup(opts->ca_file);
		if (!client->ca_file) {
			free(client);
			return SM_ENOMEM;
		}
		client->opts.ca_file = client->ca_file;
	}
	client->multi = curl_multi_init();
	if (!client->multi) {
		free(client->ca_file);
		free(client);
		return sm_error_set(SM_ENOMEM, "cannot create a curl multi handle");
	}
	*out = client;
	return 0;
}

void sm_http_client_free(sm_http_client *client)
{
	if (!client)
		return;
	curl_multi_cleanup(client->multi);
	free(client->ca_file);
	free(client);
}

/* curl callbacks */

static size_t read_body(char *buffer, size_t size, size_t nitems, void *userdata)
{
	sm_http_request *req = userdata;
	size_t want = size * nitems;

	if (req->body) {
		size_t left = req->body_len - (size_t)req->read_pos;

		if (want > left)
			want = left;
		memcpy(buffer, (const char *)req->body + req->read_pos, want);
		req->read_pos += want;
		return want;
	}
	if (req->body_fd >= 0) {
		uint64_t left = req->body_fd_len - req->read_pos;
		ssize_t n;

		if (want > left)
			want = (size_t)left;
		if (!want)
			return 0;
		do {
			n = pread(req->body_fd, buffer, want, (off_t)(req->body_offset + req->read_pos));
		} while (n < 0 && errno == EINTR);
		if (n <= 0) {
			snprintf(req->error, sizeof(req->error), "cannot read the request body: %s",
				 n < 0 ? strerror(errno) : "the file is shorter than expected");
			return CURL_READFUNC_ABORT;
		}
		req->read_pos += (uint64_t)n;
		return (size_t)n;
	}
	return 0;
}

static int seek_body(void *userdata, curl_off_t offset, int origin)
{
	sm_http_request *req = userdata;
	uint64_t len = req->body ? req->body_len : req->body_fd_len;

	if (origin != SEEK_SET || offset < 0 || (uint64_t)offset > len)
		return CURL_SEEKFUNC_CANTSEEK;
	req->read_pos = (uint64_t)offset;
	return CURL_SEEKFUNC_OK;
}

static size_t on_header(char *buffer, size_t size, size_t nitems, void *userdata)
{
	sm_http_request *req = userdata;
	size_t len = size * nitems;

	/* a new status line starts a new header block (after 100 Continue, redirects) */
	if (len >= 5 && strncmp(buffer, "HTTP/", 5) == 0)
		req->response_headers.len = 0;
	if (sm_buf_put(&req->response_headers, buffer, len) != 0)
		return 0;
	return len;
}

/* Parses the start of "bytes START-END/TOTAL". */
static int content_range_start(const sm_http_request *req, uint64_t *start)
{
	char value[128];
	char *end;

	if (!sm_http_header_get(req, "Content-Range", value, sizeof(value)) ||
	    strncmp(value, "bytes ", 6) != 0)
		return -1;
	errno = 0;
	*start = strtoull(value + 6, &end, 10);
	return errno || end == value + 6 || *end != '-' ? -1 : 0;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *userdata)
{
	sm_http_request *req = userdata;
	size_t len = size * nmemb;
	long status = 0;

	curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &status);
	if (status >= 300 || (!req->response && req->response_fd < 0)) {
		/* past the cap only the start of an error body is kept */
		if (status >= 300)
			(void)sm_buf_put(&req->error_body, data, len);
		return len;
	}
	if (req->response) {
		if (sm_buf_put(req->response, data, len) != 0) {
			snprintf(req->error, sizeof(req->error), "response body larger than %zu bytes",
				 req->response->max);
			return 0;
		}
		return len;
	}
	if (req->resume && !req->range_checked &&
	    ((!req->if_range[0] && status == 206) || status == 200)) {
		char etag[128];

		if (sm_http_header_get(req, "ETag", etag, sizeof(etag)) && *etag)
			snprintf(req->if_range, sizeof(req->if_range), "If-Range: %s", etag);
	}
	if (req->range[0] && !req->range_checked && status == 206) {
		uint64_t start;

		/* a range or resumed download must start exactly at the byte asked for */
		if (content_range_start(req, &start) != 0 || start != req->range_start + req->written) {
			snprintf(req->error, sizeof(req->error), "a resumed download starts at the "
				 "wrong offset");
			req->bad_range = 1;
			return 0;
		}
		req->range_checked = 1;
	} else if (req->range_len && status == 200) {
		/* the whole resource would land at the range's offset */
		snprintf(req->error, sizeof(req->error), "the server sent the whole object instead "
			 "of the requested byte range");
		req->bad_range = 1;
		return 0;
	} else if (req->range[0] && !req->range_checked && status == 200) {
		/* the server ignored the Range request and sends everything again */
		req->written = 0;
		/* a shorter new body must not leave the old tail behind */
		if (ftruncate(req->response_fd, (off_t)req->response_offset) != 0) {
			snprintf(req->error, sizeof(req->error), "cannot truncate the response file: %s",
				 strerror(errno));
			return 0;
		}
		if (req->response_sha)
			EVP_MD_CTX_copy_ex(req->response_sha, req->sha_start);
		req->range_checked = 1;
	}
	if (req->response_max && (req->written > req->response_max ||
				  len > req->response_max - req->written)) {
		/* a hostile or broken server must not fill the disk */
		snprintf(req->error, sizeof(req->error), "the response body is larger than the "
			 "expected %llu bytes", (unsigned long long)req->response_max);
		req->over_max = 1;
		return 0;
	}
	{
		size_t done = 0;

		while (done < len) {
			ssize_t n = pwrite(req->response_fd, data + done, len - done,
					   (off_t)(req->response_offset + req->written + done));

			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				snprintf(req->error, sizeof(req->error), "cannot write the response: %s",
					 strerror(n < 0 ? errno : EIO));
				return 0;
			}
			done += (size_t)n;
		}
		sm_pull_watch_wrote(req->watch, req->response_offset + req->written, len);
		if (req->response_sha)
			EVP_DigestUpdate(req->response_sha, data, len);
		req->written += len;
		if (req->progress)
			req->progress(req, req->payload);
	}
	return len;
}

static int on_progress(void *userdata, curl_off_t dltotal, curl_off_t dlnow,
		       curl_off_t ultotal, curl_off_t ulnow)
{
	sm_http_request *req = userdata;

	if ((uint64_t)ulnow != req->sent) {
		req->sent = (uint64_t)ulnow;
		if (req->progress)
			req->progress(req, req->payload);
	}
	return 0;
}

/* Builds the easy handle of one attempt. */
static int start_attempt(sm_http_client *client, sm_http_request *req)
{
	CURL *easy;
	int rc;

	clear_attempt(req);
	req->error[0] = '\0';
	req->response_headers.len = 0;
	if (req->response_headers.data)
		req->response_headers.data[0] = '\0';
	req->error_body.len = 0;
	if (req->error_body.data)
		req->error_body.data[0] = '\0';
	req->status = 0;
	req->read_pos = 0;
	req->sent = 0;
	req->range[0] = '\0';
	req->range_checked = 0;
	req->over_max = 0;
	req->bad_range = 0;
	if (req->response) {
		req->response->len = 0;
		if (req->response->data)
			req->response->data[0] = '\0';
	}
	if (req->response_fd >= 0) {
		if (req->response_sha && !req->sha_started) {
			if (!req->sha_start)
				req->sha_start = EVP_MD_CTX_new();
			if (!req->sha_start || !EVP_MD_CTX_copy_ex(req->sha_start, req->response_sha))
				return sm_error_set(SM_ENOMEM, "cannot copy a digest");
			req->sha_started = 1;
		}
		if (!req->resume || req->written == 0) {
			req->written = 0;
			if (req->response_sha)
				EVP_MD_CTX_copy_ex(req->response_sha, req->sha_start);
		}
		if (req->range_len)
			snprintf(req->range, sizeof(req->range), "Range: bytes=%llu-%llu",
				 (unsigned long long)(req->range_start + req->written),
				 (unsigned long long)(req->range_start + req->range_len - 1));
		else if (req->written > 0)
			snprintf(req->range, sizeof(req->range), "Range: bytes=%llu-",
				 (unsigned long long)req->written);
	}
	req->attempts++;

	if (req->prepare && (rc = req->prepare(req, req->payload)) != 0) {
		snprintf(req->error, sizeof(req->error), "%s", sm_error_message());
		return rc;
	}

	easy = curl_easy_init();
	if (!easy)
		return sm_error_set(SM_ENOMEM, "cannot create a curl handle");
	req->easy = easy;
	for (size_t i = 0; i < req->nheaders + req->nextra + 3; i++) {
		const char *line;
		struct curl_slist *grown;

		if (i < req->nheaders)
			line = req->headers[i];
		else if (i < req->nheaders + req->nextra)
			line = req->extra[i - req->nheaders];
		else if (i == req->nheaders + req->nextra)
			line = req->range[0] ? req->range : NULL;
		else if (i == req->nheaders + req->nextra + 1)
			/* a changed object is sent whole (200) instead of a range of the new one */
			line = req->range[0] && req->if_range[0] ? req->if_range : NULL;
		else
			line = "Expect:"; /* no 100-continue round trip */
		if (!line)
			continue;
		grown = curl_slist_append(req->slist, line);
		if (!grown)
			return sm_error_set(SM_ENOMEM, "out of memory");
		req->slist = grown;
	}

	curl_easy_setopt(easy, CURLOPT_URL, req->url);
	curl_easy_setopt(easy, CURLOPT_PRIVATE, req);
	curl_easy_setopt(easy, CURLOPT_HTTPHEADER, req->slist);
	curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, client->opts.allow_http ? "http,https" : "https");
	curl_easy_setopt(easy, CURLOPT_REDIR_PROTOCOLS_STR, client->opts.allow_http ? "http,https" : "https");
	curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, client->opts.max_redirects > 0 ? 1L : 0L);
	curl_easy_setopt(easy, CURLOPT_MAXREDIRS, (long)client->opts.max_redirects);
	curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT, client->opts.connect_timeout_s);
	curl_easy_setopt(easy, CURLOPT_LOW_SPEED_TIME, client->opts.low_speed_time_s);
	curl_easy_setopt(easy, CURLOPT_LOW_SPEED_LIMIT, client->opts.low_speed_bytes);
	curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(easy, CURLOPT_USERAGENT, "skillmeat/" SKILLMEAT_VERSION);
	curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(easy, CURLOPT_HEADERDATA, req);
	curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(easy, CURLOPT_WRITEDATA, req);
	curl_easy_setopt(easy, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(easy, CURLOPT_XFERINFOFUNCTION, on_progress);
	curl_easy_setopt(easy, CURLOPT_XFERINFODATA, req);
	if (client->opts.ca_file)
		curl_easy_setopt(easy, CURLOPT_CAINFO, client->opts.ca_file);

	if (strcmp(req->method, "HEAD") == 0) {
		curl_easy_setopt(easy, CURLOPT_NOBODY, 1L);
	} else if (strcmp(req->method, "GET") != 0) {
		curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, req->method);
	}
	if (req->body || req->body_fd >= 0) {
		uint64_t len = req->body ? req->body_len : req->body_fd_len;

		curl_easy_setopt(easy, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(easy, CURLOPT_READFUNCTION, read_body);
		curl_easy_setopt(easy, CURLOPT_READDATA, req);
		curl_easy_setopt(easy, CURLOPT_SEEKFUNCTION, seek_body);
		curl_easy_setopt(easy, CURLOPT_SEEKDATA, req);
		curl_easy_setopt(easy, CURLOPT_INFILESIZE_LARGE, (curl_off_t)len);
		/* CURLOPT_UPLOAD makes it a PUT; keep the method asked for */
		curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, req->method);
	} else if (strcmp(req->method, "PUT") == 0 || strcmp(req->method, "POST") == 0) {
		curl_easy_setopt(easy, CURLOPT_POSTFIELDS, "");
		curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE, 0L);
	}
	return 0;
}

/* Returns 1 when a transport failure may go away on its own. */
static int transport_retryable(CURLcode code)
{
	switch (code) {
	case CURLE_COULDNT_CONNECT:
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
	case CURLE_SSL_CONNECT_ERROR:
		return 1;
	default:
		return 0;
	}
}

/* Picks the wait before the next attempt: full jitter, Retry-After as a floor. */
static long backoff_ms(const sm_http_client *client, const sm_http_request *req)
{
	long cap = client->opts.base_delay_ms;
	unsigned int random_bits = 0;
	long delay;
	char value[64];

	for (int i = 1; i < req->attempts && cap < client->opts.max_delay_ms; i++)
		cap *= 2;
	if (cap > client->opts.max_delay_ms)
		cap = client->opts.max_delay_ms;
	if (getrandom(&random_bits, sizeof(random_bits), GRND_NONBLOCK) != sizeof(random_bits))
		random_bits = (unsigned int)now_ms() * 2654435761u;
	delay = (long)((double)cap * ((double)random_bits / 4294967296.0));
	if (sm_http_header_get(req, "Retry-After", value, sizeof(value))) {
		char *end;
		long seconds = strtol(value, &end, 10);

		if (end != value && *end == '\0' && seconds >= 0 && seconds < 3600 &&
		    seconds * 1000 > delay)
			delay = seconds * 1000;
	}
	return delay;
}

/*
 * Decides what follows a finished attempt: 1 to retry (req->due_ms set),
 * 0 when the request is done.
 */
static int finish_attempt(sm_http_client *client, sm_http_request *req, CURLcode code)
{
	char reason[256];
	long long now = now_ms();
	long delay;

	curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &req->status);
	if (code != CURLE_OK) {
		if (!req->error[0] || code != CURLE_WRITE_ERROR)
			snprintf(req->error, sizeof(req->error), "%s %s failed: %s", req->method,
				 req->url, curl_easy_strerror(code));
		req->rc = code == CURLE_WRITE_ERROR || code == CURLE_ABORTED_BY_CALLBACK
			? SM_EIO : SM_ENETWORK;
		if (code == CURLE_WRITE_ERROR && strstr(req->error, "larger than"))
			req->rc = req->over_max ? SM_EINTEGRITY : SM_EINVALID;
		/* a server that breaks the Range protocol is a network fault, not a local one */
		if (code == CURLE_WRITE_ERROR && req->bad_range)
			req->rc = SM_ENETWORK;
		if (code == CURLE_UNSUPPORTED_PROTOCOL)
			req->rc = SM_EINVALID;
		if (!transport_retryable(code))
			return 0;
		snprintf(reason, sizeof(reason), "%s", curl_easy_strerror(code));
	} else if (sm_http_status_retryable(req->status) ||
		   (req->retryable && req->retryable(req, req->payload))) {
		req->rc = 0;
		snprintf(reason, sizeof(reason), "HTTP %ld", req->status);
	} else {
		req->rc = 0;
		req->error[0] = '\0';
		return 0;
	}
	if (req->attempts >= client->opts.max_attempts)
		return 0;
	delay = backoff_ms(client, req);
	if (now + delay - req->first_ms > client->opts.max_retry_ms)
		return 0;
	if (req->response_fd >= 0 && !req->resume)
		req->written = 0;
	notify(client, SM_LOG_DEBUG, "retrying %s %s in %.1f s (attempt %d of %d): %s",
	       req->method, req->url, (double)delay / 1000.0, req->attempts + 1,
	       client->opts.max_attempts, reason);
	req->due_ms = now + delay;
	return 1;
}

/* Sets req->rc for a request that ended with an unusable status. */
static void final_status(sm_http_request *req)
{
	if (req->rc == 0 && req->status == 0) {
		req->rc = SM_ENETWORK;
		snprintf(req->error, sizeof(req->error), "%s %s: no response", req->method, req->url);
	}
}

typedef struct slot_list {
	sm_http_request **items;
	size_t count;
	size_t cap;
} slot_list;

static int slot_add(slot_list *list, sm_http_request *req)
{
	if (list->count == list->cap) {
		size_t cap = list->cap ? list->cap * 2 : 8;
		sm_http_request **grown = realloc(list->items, cap * sizeof(*grown));

		if (!grown)
			return sm_error_set(SM_ENOMEM, "out of memory");
		list->items = grown;
		list->cap = cap;
	}
	list->items[list->count++] = req;
	return 0;
}

static void slot_remove(slot_list *list, size_t i)
{
	list->items[i] = list->items[--list->count];
}

int sm_http_run(sm_http_client *client, size_t concurrency, sm_http_next_fn next,
		sm_http_done_fn done, void *payload)
{
	slot_list active = { 0 };
	int rc = 0, exhausted = 0;

	if (concurrency == 0)
		concurrency = 1;
	for (;;) {
		long long now = now_ms(), wait_until = -1;
		int running = 0;
		CURLMsg *msg;
		int queued;

		/* fill free slots with new requests */
		while (!rc && !exhausted && active.count < concurrency) {
			sm_http_request *req = next(payload);

			if (!req) {
				exhausted = 1;
				break;
			}
			req->attempts = 0;
			req->rc = 0;
			req->first_ms = now;
			req->due_ms = now;
			req->state = STATE_WAITING;
			req->sha_started = 0;
			if ((rc = slot_add(&active, req)) != 0)
				break;
		}
		if (rc || active.count == 0)
			break;

		/* start attempts that are due */
		for (size_t i = 0; i < active.count && !rc; i++) {
			sm_http_request *req = active.items[i];
			int start_rc;

			if (req->state != STATE_WAITING || req->due_ms > now) {
				if (req->state == STATE_WAITING &&
				    (wait_until < 0 || req->due_ms < wait_until))
					wait_until = req->due_ms;
				continue;
			}
			start_rc = start_attempt(client, req);
			if (!start_rc && curl_multi_add_handle(client->multi, req->easy) != CURLM_OK)
				start_rc = sm_error_set(SM_ERROR, "cannot start a transfer");
			if (start_rc) {
				req->rc = start_rc;
				if (!req->error[0])
					snprintf(req->error, sizeof(req->error), "%s", sm_error_message());
				req->state = STATE_DONE;
				clear_attempt(req);
				slot_remove(&active, i--);
				rc = done(req, payload);
				continue;
			}
			req->state = STATE_RUNNING;
		}
		if (rc)
			break;

		if (curl_multi_perform(client->multi, &running) != CURLM_OK) {
			rc = sm_error_set(SM_ERROR, "curl transfer loop failed");
			break;
		}
		while ((msg = curl_multi_info_read(client->multi, &queued)) != NULL) {
			sm_http_request *req = NULL;

			if (msg->msg != CURLMSG_DONE)
				continue;
			curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&req);
			curl_multi_remove_handle(client->multi, msg->easy_handle);
			if (finish_attempt(client, req, msg->data.result)) {
				req->state = STATE_WAITING;
				clear_attempt(req);
				continue;
			}
			final_status(req);
			req->state = STATE_DONE;
			clear_attempt(req);
			for (size_t i = 0; i < active.count; i++) {
				if (active.items[i] == req) {
					slot_remove(&active, i);
					break;
				}
			}
			if (!rc)
				rc = done(req, payload);
		}
		if (rc)
			break;
		if (running) {
			int timeout = 1000;

			if (wait_until >= 0) {
				long long left = wait_until - now_ms();

				if (left < 0)
					timeout = 0;
				else if (left < timeout)
					timeout = (int)left;
			}
			curl_multi_poll(client->multi, NULL, 0, timeout, NULL);
		} else if (wait_until >= 0) {
			long long left = wait_until - now_ms();

			if (left > 0) {
				struct timespec ts = { left / 1000, (left % 1000) * 1000000 };

				nanosleep(&ts, NULL);
			}
		}
	}

	/* cancel what is still in flight */
	for (size_t i = 0; i < active.count; i++) {
		sm_http_request *req = active.items[i];

		if (req->easy)
			curl_multi_remove_handle(client->multi, req->easy);
		clear_attempt(req);
		req->state = STATE_DONE;
	}
	free(active.items);
	return rc;
}

typedef struct single_run {
	sm_http_request *req;
	int taken;
} single_run;

static sm_http_request *single_next(void *payload)
{
	single_run *run = payload;

	if (run->taken)
		return NULL;
	run->taken = 1;
	return run->req;
}

static int single_done(sm_http_request *req, void *payload)
{
	return 0;
}

int sm_http_perform(sm_http_client *client, sm_http_request *req)
{
	single_run run = { req, 0 };
	int rc = sm_http_run(client, 1, single_next, single_done, &run);

	if (rc)
		return rc;
	if (req->rc)
		return sm_error_set(req->rc, "%s", req->error);
	return 0;
}
