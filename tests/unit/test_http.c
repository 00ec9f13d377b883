/*
 * Unit tests of the HTTP client against a scripted server on 127.0.0.1 in
 * a thread. They cover bodies from a file range, responses written to a
 * file at an offset with SHA-256, retries with Retry-After, and a cut
 * download resumed with Range. They also check the size caps of memory
 * and file responses, a resumed download that the server sends whole or
 * from the wrong offset, and the plain-http switch.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "net/http.h"

#define MAX_STEPS 4

/* The scripted server: it sends responses[i], verbatim, on connection i. */
typedef struct server {
	int listen_fd;
	int port;
	pthread_t thread;
	const char *responses[MAX_STEPS];
	size_t nresponses;
	char requests[MAX_STEPS][4096];   /* header block and body of each request */
	size_t nrequests;
} server;

static void read_request(int fd, char *out, size_t size)
{
	size_t len = 0;
	long body = -1;

	while (len + 1 < size) {
		ssize_t n = read(fd, out + len, size - 1 - len);
		char *end;

		if (n <= 0)
			break;
		len += (size_t)n;
		out[len] = '\0';
		end = strstr(out, "\r\n\r\n");
		if (!end)
			continue;
		if (body < 0) {
			char *cl = strcasestr(out, "\r\nContent-Length:");

			body = cl ? strtol(cl + 17, NULL, 10) : 0;
		}
		if (len >= (size_t)(end + 4 - out) + (size_t)body)
			break;
	}
	out[len] = '\0';
}

static void *serve(void *arg)
{
	server *srv = arg;

	for (size_t i = 0; i < srv->nresponses; i++) {
		int fd = accept(srv->listen_fd, NULL, NULL);

		if (fd < 0)
			break;
		read_request(fd, srv->requests[i], sizeof(srv->requests[i]));
		srv->nrequests++;
		if (write(fd, srv->responses[i], strlen(srv->responses[i])) < 0)
			break;
		shutdown(fd, SHUT_RDWR);
		close(fd);
	}
	return NULL;
}

static void server_start(server *srv)
{
	struct sockaddr_in addr = { .sin_family = AF_INET };
	socklen_t len = sizeof(addr);

	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	srv->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(srv->listen_fd >= 0);
	assert_int_equal(bind(srv->listen_fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
	assert_int_equal(listen(srv->listen_fd, 8), 0);
	assert_int_equal(getsockname(srv->listen_fd, (struct sockaddr *)&addr, &len), 0);
	srv->port = ntohs(addr.sin_port);
	assert_int_equal(pthread_create(&srv->thread, NULL, serve, srv), 0);
}

static void server_stop(server *srv)
{
	pthread_join(srv->thread, NULL);
	close(srv->listen_fd);
}

static char messages[2048];

static void keep_message(sm_log_level level, const char *text, void *payload)
{
	strncat(messages, text, sizeof(messages) - strlen(messages) - 2);
	strcat(messages, "\n");
}

static sm_http_client *client_new(int allow_http)
{
	static sm_callbacks callbacks = { NULL, keep_message, NULL };
	sm_http_opts opts = { 0 };
	sm_http_client *client;

	opts.allow_http = allow_http;
	opts.callbacks = &callbacks;
	opts.base_delay_ms = 10;
	opts.low_speed_time_s = 5;
	assert_int_equal(sm_http_client_new(&client, &opts), 0);
	messages[0] = '\0';
	return client;
}

static char *url_of(const server *srv, const char *path)
{
	char *url;

	assert_true(asprintf(&url, "http://127.0.0.1:%d%s", srv->port, path) > 0);
	return url;
}

static int temp_file(const char *content)
{
	char path[] = "/tmp/test_http.XXXXXX";
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	unlink(path);
	if (content)
		assert_int_equal(write(fd, content, strlen(content)), (ssize_t)strlen(content));
	return fd;
}

static void put_body_from_file_range(void **state)
{
	server srv = { .responses = { "HTTP/1.1 200 OK\r\nETag: \"abc\"\r\nContent-Length: 0\r\n\r\n" },
		       .nresponses = 1 };
	sm_http_client *client = client_new(1);
	sm_http_request req;
	char *url, etag[32];
	int fd = temp_file("0123456789abcdef");

	server_start(&srv);
	url = url_of(&srv, "/bucket/key");
	sm_http_request_init(&req);
	req.method = "PUT";
	req.url = url;
	req.body_fd = fd;
	req.body_offset = 4;
	req.body_fd_len = 6;
	req.headers[req.nheaders++] = "X-Test: yes";
	assert_int_equal(sm_http_perform(client, &req), 0);
	server_stop(&srv);

	assert_int_equal(req.status, 200);
	assert_int_equal(sm_http_header_get(&req, "etag", etag, sizeof(etag)), 1);
	assert_string_equal(etag, "\"abc\"");
	assert_non_null(strstr(srv.requests[0], "PUT /bucket/key HTTP/1.1\r\n"));
	assert_non_null(strstr(srv.requests[0], "Content-Length: 6\r\n"));
	assert_non_null(strstr(srv.requests[0], "X-Test: yes\r\n"));
	assert_non_null(strstr(srv.requests[0], "\r\n\r\n456789"));
	assert_null(strstr(srv.requests[0], "Expect:"));
	sm_http_request_release(&req);
	sm_http_client_free(client);
	free(url);
	close(fd);
}

static void get_to_file_at_offset(void **state)
{
	server srv = { .responses = { "HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world" },
		       .nresponses = 1 };
	sm_http_client *client = client_new(1);
	EVP_MD_CTX *sha = EVP_MD_CTX_new();
	unsigned char digest[32], expected[32];
	unsigned int len = 32;
	sm_http_request req;
	char *url, content[32] = "";
	int fd = temp_file("abc");

	server_start(&srv);
	url = url_of(&srv, "/o");
	EVP_DigestInit_ex(sha, EVP_sha256(), NULL);
	sm_http_request_init(&req);
	req.method = "GET";
	req.url = url;
	req.response_fd = fd;
	req.response_offset = 3;
	req.response_sha = sha;
	assert_int_equal(sm_http_perform(client, &req), 0);
	server_stop(&srv);

	assert_int_equal(req.status, 200);
	assert_int_equal(req.written, 11);
	assert_int_equal(pread(fd, content, sizeof(content) - 1, 0), 14);
	assert_string_equal(content, "abchello world");
	EVP_DigestFinal_ex(sha, digest, &len);
	EVP_Digest("hello world", 11, expected, NULL, EVP_sha256(), NULL);
	assert_memory_equal(digest, expected, 32);
	EVP_MD_CTX_free(sha);
	sm_http_request_release(&req);
	sm_http_client_free(client);
	free(url);
	close(fd);
}

static void retry_after_503(void **state)
{
	server srv = { .responses = {
			       "HTTP/1.1 503 Slow Down\r\nRetry-After: 0\r\nContent-Length: 4\r\n\r\nbusy",
			       "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" },
		       .nresponses = 2 };
	sm_http_client *client = client_new(1);
	sm_buf body = SM_BUF_INIT(1024);
	sm_http_request req;
	char *url;

	server_start(&srv);
	url = url_of(&srv, "/r");
	sm_http_request_init(&req);
	req.method = "GET";
	req.url = url;
	req.response = &body;
	assert_int_equal(sm_http_perform(client, &req), 0);
	server_stop(&srv);

	assert_int_equal(req.status, 200);
	assert_int_equal(req.attempts, 2);
	assert_int_equal(srv.nrequests, 2);
	assert_string_equal(body.data, "ok");
	assert_non_null(strstr(messages, "retrying GET"));
	assert_non_null(strstr(messages, "HTTP 503"));
	sm_buf_release(&body);
	sm_http_request_release(&req);
	sm_http_client_free(client);
	free(url);
}

static void resume_cut_download(void **state)
{
	server srv = { .responses = {
			       "HTTP/1.1 200 OK\r\nETag: \"v1\"\r\nContent-Length: 10\r\n\r\n0123",
			       "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 4-9/10\r\n"
			       "Content-Length: 6\r\n\r\n456789" },
		       .nresponses = 2 };
	sm_http_client *client = client_new(1);
	EVP_MD_CTX *sha = EVP_MD_CTX_new();
	unsigned char digest[32], expected[32];
	unsigned int len = 32;
	sm_http_request req;
	char *url, content[16] = "";
	int fd = temp_file(NULL);

	server_start(&srv);
	url = url_of(&srv, "/big");
	EVP_DigestInit_ex(sha, EVP_sha256(), NULL);
	sm_http_request_init(&req);
	req.method = "GET";
	req.url = url;
	req.response_fd = fd;
	req.resume = 1;
	req.response_sha = sha;
	assert_int_equal(sm_http_perform(client, &req), 0);
	server_stop(&srv);

	assert_int_equal(req.status, 206);
	assert_int_equal(req.written, 10);
	assert_non_null(strstr(srv.requests[1], "Range: bytes=4-\r\n"));
	assert_non_null(strstr(srv.requests[1], "If-Range: \"v1\"\r\n"));
	assert_int_equal(pread(fd, content, sizeof(content) - 1, 0), 10);
	assert_string_equal(content, "0123456789");
	EVP_DigestFinal_ex(sha, digest, &len);
	EVP_Digest("0123456789", 10, expected, NULL, EVP_sha256(), NULL);
	assert_memory_equal(digest, expected, 32);
	EVP_MD_CTX_free(sha);
	sm_http_request_release(&req);
	sm_http_client_free(client);
	free(url);
	close(fd);
}

static void range_resumed_after_cut(void **state)
{
	server srv = { .responses = {
			       "HTTP/1.1 206 Partial Content\r\nETag: \"v1\"\r\n"
			       "Content-Range: bytes 100-109/200\r\nContent-Length: 10\r\n\r\n0123",
			       "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 104-109/200\r\n"
			       "Content-Length: 6\r\n\r\n456789" },
		       .nresponses = 2 };
	sm_http_client *client = client_new(1);
	sm_http_request req;
	char *url, content[16] = "";
	int fd = temp_file(NULL);

	server_start(&srv);
	url = url_of(&srv, "/big");
	sm_http_request_init(&req);
	req.method = "GET";
	req.url = url;
	req.response_fd = fd;
	req.response_offset = 100;
	req.response_max = 10;
	req.range_start = 100;
	req.range_len = 10;
	req.resume = 1;
	assert_int_equal(sm_http_perform(client, &req), 0);
	server_stop(&srv);

	assert_int_equal(req.status, 206);
	assert_int_equal(req.written, 10);
	assert_non_null(strstr(srv.requests[0], "Range: bytes=100-109\r\n"));
	assert_null(strstr(srv.requests[0], "If-Range:"));
	assert_non_null(strstr(srv.requests[1], "Range: bytes=104-109\r\n"));
	assert_non_null(strstr(srv.requests[1], "If-Range: \"v1\"\r\n"));
	assert_int_equal(pread(fd, content, sizeof(content) - 1, 100), 10);
	assert_string_equal(content, "0123456789");
	sm_http_request_release(&req);
	sm_http_client_free(client);
	free(url);
	close(fd);
}

static void range_answered_whole_fails(void **state)
{
	server srv = { .responses = { "HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n"
				      "01234567890123456789" },
		       .nresponses = 1 };
	sm_http_client *client = client_new(1);
	sm_http_request req;
	struct stat st;
	char *url;
	int fd = temp_file(NULL);

	server_start(&srv);
	url = url_of(&srv, "/big");
	sm_http_request_init(&req);
	req.method = "GET";
	req.url = url;
	req.response_fd = fd;
	req.response_offset = 10;
	req.range_start = 10;
	req.range_len = 10;
	req.resume = 1;
	assert_int_equal(sm_http_perform(client, &req), SM_ENETWORK);
	server_stop(&srv);

	assert_int_equal(req.status, 200);
	assert_non_null(strstr(sm_error_message(), "whole object instead of the requested byte range"));
	assert_non_null(strstr(srv.requests[0], "Range: bytes=10-19\r\n"));
	assert_int_equal(req.written, 0);
	assert_int_equal(fstat(fd, &st), 0);
	assert_int_equal(st.st_size, 0);
	sm_http_request_release(&req);
	sm_http_client_free(client);
	free(url);
	close(fd);
}

static void memory_response_capped(void **state)
{
	server srv = { .responses = { "HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n01234567890123456789" },
		       .nresponses = 1 };
	sm_http_client *client = client_new(1);
	sm_buf body = SM_BUF_INIT(8);
	sm_http_request req;
	char *url;

	server_start(&srv);
	url = url_of(&srv, "/cap");
	sm_http_request_init(&req);
	req.method = "GET";
	req.url = url;
	req.response = &body;
	assert_int_equal(sm_http_perform(client, &req), SM_EINVALID);
	server_stop(&srv);
	assert_non_null(strstr(sm_error_message(), "larger than 8 bytes"));
	assert_int_equal(req.attempts, 1);
	sm_buf_release(&body);
	sm_http_request_release(&req);
	sm_http_client_free(client);
	free(url);
}

static void file_response_capped(void **state)
{
	server srv = { .responses = { "HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n01234567890123456789" },
		       .nresponses = 1 };
	sm_http_client *client = client_new(1);
	sm_http_request req;
	struct stat st;
	char *url;
	int fd = temp_file(NULL);

	server_start(&srv);
	url = url_of(&srv, "/big");
	sm_http_request_init(&req);
	req.method = "GET";
	req.url = url;
	req.response_fd = fd;
	req.response_max = 8;
	assert_int_equal(sm_http_perform(client, &req), SM_EINTEGRITY);
	server_stop(&srv);
	assert_non_null(strstr(sm_error_message(), "larger than the expected 8 bytes"));
	assert_int_equal(req.attempts, 1);
	assert_true(req.written <= 8);
	assert_int_equal(fstat(fd, &st), 0);
	assert_true(st.st_size <= 8);
	sm_http_request_release(&req);
	sm_http_client_free(client);
	free(url);
	close(fd);
}

static void resume_capped_across_attempts(void **state)
{
	/* 4 bytes before the cut, then 8 more from a server that ignores the cap of 10 */
	server srv = { .responses = {
			       "HTTP/1.1 200 OK\r\nETag: \"v1\"\r\nContent-Length: 10\r\n\r\n0123",
			       "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 4-11/12\r\n"
			       "Content-Length: 8\r\n\r\n456789ab" },
		       .nresponses = 2 };
	sm_http_client *client = client_new(1);
	sm_http_request req;
	struct stat st;
	char *url;
	int fd = temp_file(NULL);

	server_start(&srv);
	url = url_of(&srv, "/grows");
	sm_http_request_init(&req);
	req.method = "GET";
	req.url = url;
	req.response_fd = fd;
	req.response_max = 10;
	req.resume = 1;
	assert_int_equal(sm_http_perform(client, &req), SM_EINTEGRITY);
	server_stop(&srv);
	assert_int_equal(req.attempts, 2);
	assert_int_equal(req.written, 4);
	assert_int_equal(fstat(fd, &st), 0);
	assert_int_equal(st.st_size, 4);
	sm_http_request_release(&req);
	sm_http_client_free(client);
	free(url);
	close(fd);
}

static void restart_with_shorter_body_truncates(void **state)
{
	/* 8 bytes of the first body, then a shorter whole body as the response to the Range request */
	server srv = { .responses = {
			       "HTTP/1.1 200 OK\r\nETag: \"v1\"\r\nContent-Length: 10\r\n\r\nabcdefgh",
			       "HTTP/1.1 200 OK\r\nETag: \"v2\"\r\nContent-Length: 3\r\n\r\n012" },
		       .nresponses = 2 };
	sm_http_client *client = client_new(1);
	sm_http_request req;
	struct stat st;
	char *url, content[16] = "";
	int fd = temp_file(NULL);

	server_start(&srv);
	url = url_of(&srv, "/shrinks");
	sm_http_request_init(&req);
	req.method = "GET";
	req.url = url;
	req.response_fd = fd;
	req.resume = 1;
	assert_int_equal(sm_http_perform(client, &req), 0);
	server_stop(&srv);

	assert_non_null(strstr(srv.requests[1], "Range: bytes=8-\r\n"));
	assert_int_equal(req.written, 3);
	assert_int_equal(fstat(fd, &st), 0);
	assert_int_equal(st.st_size, 3);
	assert_int_equal(pread(fd, content, sizeof(content) - 1, 0), 3);
	assert_string_equal(content, "012");
	sm_http_request_release(&req);
	sm_http_client_free(client);
	free(url);
	close(fd);
}

static void resume_restarts_on_full_body(void **state)
{
	/* the server ignores the Range request and sends the whole body again */
	server srv = { .responses = {
			       "HTTP/1.1 200 OK\r\nETag: \"v1\"\r\nContent-Length: 10\r\n\r\nabcd",
			       "HTTP/1.1 200 OK\r\nETag: \"v1\"\r\nContent-Length: 10\r\n\r\n0123456789" },
		       .nresponses = 2 };
	sm_http_client *client = client_new(1);
	EVP_MD_CTX *sha = EVP_MD_CTX_new();
	unsigned char digest[32], expected[32];
	unsigned int len = 32;
	sm_http_request req;
	char *url, content[16] = "";
	int fd = temp_file(NULL);

	server_start(&srv);
	url = url_of(&srv, "/again");
	EVP_DigestInit_ex(sha, EVP_sha256(), NULL);
	sm_http_request_init(&req);
	req.method = "GET";
	req.url = url;
	req.response_fd = fd;
	req.response_max = 10;
	req.resume = 1;
	req.response_sha = sha;
	assert_int_equal(sm_http_perform(client, &req), 0);
	server_stop(&srv);

	assert_int_equal(req.status, 200);
	assert_int_equal(req.written, 10);
	assert_non_null(strstr(srv.requests[1], "Range: bytes=4-\r\n"));
	assert_int_equal(pread(fd, content, sizeof(content) - 1, 0), 10);
	assert_string_equal(content, "0123456789");
	EVP_DigestFinal_ex(sha, digest, &len);
	EVP_Digest("0123456789", 10, expected, NULL, EVP_sha256(), NULL);
	assert_memory_equal(digest, expected, 32);
	EVP_MD_CTX_free(sha);
	sm_http_request_release(&req);
	sm_http_client_free(client);
	free(url);
	close(fd);
}

static void resume_rejects_wrong_content_range(void **state)
{
	server srv = { .responses = {
			       "HTTP/1.1 200 OK\r\nETag: \"v1\"\r\nContent-Length: 10\r\n\r\n0123",
			       "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 2-9/10\r\n"
			       "Content-Length: 8\r\n\r\n23456789" },
		       .nresponses = 2 };
	sm_http_client *client = client_new(1);
	sm_http_request req;
	char *url, content[16] = "";
	int fd = temp_file(NULL);

	server_start(&srv);
	url = url_of(&srv, "/shifted");
	sm_http_request_init(&req);
	req.method = "GET";
	req.url = url;
	req.response_fd = fd;
	req.resume = 1;
	assert_int_equal(sm_http_perform(client, &req), SM_ENETWORK);
	server_stop(&srv);
	assert_non_null(strstr(sm_error_message(), "wrong offset"));
	assert_int_equal(req.written, 4);
	assert_int_equal(pread(fd, content, sizeof(content) - 1, 0), 4);
	assert_string_equal(content, "0123");
	sm_http_request_release(&req);
	sm_http_client_free(client);
	free(url);
	close(fd);
}

static void plain_http_rejected(void **state)
{
	sm_http_client *client = client_new(0);
	sm_http_request req;

	sm_http_request_init(&req);
	req.method = "GET";
	req.url = "http://127.0.0.1:1/never";
	assert_int_equal(sm_http_perform(client, &req), SM_EINVALID);
	assert_int_equal(req.attempts, 1);
	sm_http_request_release(&req);
	sm_http_client_free(client);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(put_body_from_file_range),
		cmocka_unit_test(get_to_file_at_offset),
		cmocka_unit_test(retry_after_503),
		cmocka_unit_test(resume_cut_download),
		cmocka_unit_test(memory_response_capped),
		cmocka_unit_test(file_response_capped),
		cmocka_unit_test(resume_capped_across_attempts),
		cmocka_unit_test(range_resumed_after_cut),
		cmocka_unit_test(range_answered_whole_fails),
		cmocka_unit_test(resume_restarts_on_full_body),
		cmocka_unit_test(restart_with_shorter_body_truncates),
		cmocka_unit_test(resume_rejects_wrong_content_range),
		cmocka_unit_test(plain_http_rejected),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
