/*
 * Unit tests of the pure parts of the http vault connector: vault URLs,
 * joining paths, origins, the redirect policy, the Authorization header
 * and the index cache file, including hostile input.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "skillmeat/error.h"
#include "vault/http_vault_internal.h"

/* Parses `text` and returns its base URL (a new string), or NULL on failure. */
static char *base_of(const char *text, int allow_http)
{
	sm_http_vault_url url;
	char *base;

	if (sm_http_vault_url_parse(text, allow_http, &url) != 0)
		return NULL;
	base = strdup(url.base);
	sm_http_vault_url_release(&url);
	return base;
}

static void assert_base(const char *text, int allow_http, const char *expected)
{
	char *base = base_of(text, allow_http);

	assert_non_null(base);
	assert_string_equal(base, expected);
	free(base);
}

static void assert_url_rejected(const char *text, int allow_http, const char *message_part)
{
	sm_http_vault_url url;

	assert_int_equal(sm_http_vault_url_parse(text, allow_http, &url), SM_EINVALID);
	assert_non_null(strstr(sm_error_message(), message_part));
	assert_null(url.base);
}

static void url_normalises_base(void **state)
{
	sm_http_vault_url url;

	assert_base("https://example.org/vault", 0, "https://example.org/vault/");
	assert_base("https://example.org/vault/", 0, "https://example.org/vault/");
	assert_base("https://example.org", 0, "https://example.org/");
	assert_base("HTTPS://Example.ORG:8443/Vault", 0, "https://example.org:8443/Vault/");
	assert_base("https://[::1]:8443/v", 0, "https://[::1]:8443/v/");
	assert_base("http://127.0.0.1:8080/v", 1, "http://127.0.0.1:8080/v/");

	assert_int_equal(sm_http_vault_url_parse("https://Host.Example:444/a", 0, &url), 0);
	assert_string_equal(url.scheme, "https");
	assert_string_equal(url.authority, "host.example:444");
	sm_http_vault_url_release(&url);
}

static void url_rejects_bad_input(void **state)
{
	assert_url_rejected("", 0, "empty");
	assert_url_rejected("http://example.org/v", 0, "allow_http = true");
	assert_url_rejected("ftp://example.org/v", 1, "unsupported scheme 'ftp'");
	assert_url_rejected("file:///etc", 1, "unsupported scheme 'file'");
	assert_url_rejected("example.org/v", 0, "expected https://host/path");
	assert_url_rejected("https://example.org/v?x=1", 0, "query or fragment");
	assert_url_rejected("https://example.org/v#top", 0, "query or fragment");
	assert_url_rejected("https://exa mple.org/v", 0, "spaces");
	assert_url_rejected("https://example.org/\x01v", 0, "(not shown)");
	assert_url_rejected("https://example.org:0/v", 0, "invalid host or port");
	assert_url_rejected("https://example.org:65536/v", 0, "invalid host or port");
	assert_url_rejected("https://example.org:8x/v", 0, "invalid host or port");
	assert_url_rejected("https://example.org:/v", 0, "invalid host or port");
	assert_url_rejected("https:///v", 0, "invalid host or port");
	assert_url_rejected("https://[]/v", 0, "invalid host or port");
	assert_url_rejected("https://[::1]x/v", 0, "invalid host or port");
}

static void url_rejects_user_information_without_echo(void **state)
{
	sm_http_vault_url url;

	assert_int_equal(sm_http_vault_url_parse("https://bob:hunter2@example.org/v", 0, &url),
			 SM_EINVALID);
	assert_non_null(strstr(sm_error_message(), "user information"));
	assert_null(strstr(sm_error_message(), "hunter2"));
	assert_int_equal(sm_http_vault_url_parse("https://bob@example.org/v", 0, &url),
			 SM_EINVALID);
	assert_null(strstr(sm_error_message(), "bob"));
	/* a space in the password must not make the message quote it */
	assert_int_equal(sm_http_vault_url_parse("https://bob:a b@example.org/v", 0, &url),
			 SM_EINVALID);
	assert_null(strstr(sm_error_message(), "a b"));
}

static void join_appends_relative_path(void **state)
{
	char *url = sm_http_vault_join("https://example.org/v/", "metadata/a-v1.json");

	assert_string_equal(url, "https://example.org/v/metadata/a-v1.json");
	free(url);
}

static void origin_compares_scheme_host_port(void **state)
{
	assert_true(sm_http_vault_same_origin("https://a.example/x", "https://a.example/y/z"));
	assert_true(sm_http_vault_same_origin("https://A.Example/x", "https://a.example:443/"));
	assert_true(sm_http_vault_same_origin("http://a.example/x", "http://a.example:80/"));
	assert_true(sm_http_vault_same_origin("https://[::1]:8443/", "https://[::1]:8443/v"));
	assert_false(sm_http_vault_same_origin("https://a.example/", "http://a.example/"));
	assert_false(sm_http_vault_same_origin("https://a.example/", "https://b.example/"));
	assert_false(sm_http_vault_same_origin("https://a.example/", "https://a.example:444/"));
	assert_false(sm_http_vault_same_origin("https://a.example/", "https://a.example.evil/"));
	assert_false(sm_http_vault_same_origin("https://a.example/", "https://x@a.example/"));
	assert_false(sm_http_vault_same_origin("https://a.example/", "garbage"));
}

static void assert_redirect(const char *from, const char *location, int allow_http,
			    const char *expected)
{
	char *out = NULL;

	assert_int_equal(sm_http_vault_redirect(from, location, allow_http, &out), 0);
	assert_string_equal(out, expected);
	free(out);
}

static void redirect_resolves_locations(void **state)
{
	const char *from = "https://a.example/v/index.json?x=1";

	assert_redirect(from, "https://b.example/w/index.json", 0, "https://b.example/w/index.json");
	assert_redirect(from, "//c.example/index.json", 0, "https://c.example/index.json");
	assert_redirect(from, "/w/index.json", 0, "https://a.example/w/index.json");
	assert_redirect(from, "other.json", 0, "https://a.example/v/other.json");
	assert_redirect("https://a.example", "x.json", 0, "https://a.example/x.json");
	assert_redirect(from, "https://b.example/i.json#frag", 0, "https://b.example/i.json");
	assert_redirect(from, "https://cdn.example/i.json?sig=abc", 0,
			"https://cdn.example/i.json?sig=abc");
	assert_redirect(from, "http://b.example/i.json", 1, "http://b.example/i.json");
}

static void redirect_policy_rejects_downgrades(void **state)
{
	const char *from = "https://a.example/v/index.json";
	char *out = (char *)"untouched";

	assert_int_equal(sm_http_vault_redirect(from, "http://a.example/v/index.json", 0, &out),
			 SM_ENETWORK);
	assert_null(out);
	assert_non_null(strstr(sm_error_message(), "plain http://"));
	assert_int_equal(sm_http_vault_redirect(from, "HTTP://a.example/", 0, &out), SM_ENETWORK);
	assert_int_equal(sm_http_vault_redirect(from, "ftp://a.example/x", 1, &out), SM_ENETWORK);
	assert_non_null(strstr(sm_error_message(), "scheme 'ftp'"));
	assert_int_equal(sm_http_vault_redirect(from, "file:///etc/passwd", 1, &out), SM_ENETWORK);
	assert_int_equal(sm_http_vault_redirect(from, "javascript:alert(1)", 0, &out),
			 SM_EINVALID);
	assert_int_equal(sm_http_vault_redirect(from, "https://u:p@b.example/", 0, &out),
			 SM_EINVALID);
	assert_int_equal(sm_http_vault_redirect(from, "https://b.example:99999/", 0, &out),
			 SM_EINVALID);
	assert_int_equal(sm_http_vault_redirect(from, "", 0, &out), SM_EINVALID);
	assert_int_equal(sm_http_vault_redirect(from, "https://b.example/\r\nX: y", 0, &out),
			 SM_EINVALID);
	assert_int_equal(sm_http_vault_redirect(from, "https://b.example/a b", 0, &out),
			 SM_EINVALID);
	/* a relative redirect from a plain http vault stays on http only when allowed */
	assert_int_equal(sm_http_vault_redirect("http://a.example/v/i", "x", 0, &out), SM_ENETWORK);
	assert_redirect("http://a.example/v/i", "x", 1, "http://a.example/v/x");
}

static void auth_header_basic(void **state)
{
	char *line = NULL;

	/* "vault:s3cret pw" in base64 */
	assert_int_equal(sm_http_vault_auth_header("web", "vault", "s3cret pw", &line), 0);
	assert_string_equal(line, "Authorization: Basic dmF1bHQ6czNjcmV0IHB3");
	sm_http_vault_secret_free(line);

	assert_int_equal(sm_http_vault_auth_header("web", "Aladdin", "open sesame", &line), 0);
	assert_string_equal(line, "Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
	sm_http_vault_secret_free(line);
}

static void auth_header_bearer_and_none(void **state)
{
	char *line = (char *)"untouched";

	assert_int_equal(sm_http_vault_auth_header("web", NULL, "tok-123.abc_DEF~+/=", &line), 0);
	assert_string_equal(line, "Authorization: Bearer tok-123.abc_DEF~+/=");
	sm_http_vault_secret_free(line);

	line = (char *)"untouched";
	assert_int_equal(sm_http_vault_auth_header("web", NULL, NULL, &line), 0);
	assert_null(line);
}

static void auth_header_rejects_bad_values(void **state)
{
	char *line = (char *)"untouched";

	assert_int_equal(sm_http_vault_auth_header("web", "bob", NULL, &line), SM_EAUTH);
	assert_null(line);
	assert_non_null(strstr(sm_error_message(), "no password"));

	assert_int_equal(sm_http_vault_auth_header("web", "a:b", "pw", &line), SM_EINVALID);
	assert_non_null(strstr(sm_error_message(), "contains ':'"));
	assert_int_equal(sm_http_vault_auth_header("web", "bob", "pw\r\nX-Evil: 1", &line),
			 SM_EINVALID);
	assert_null(strstr(sm_error_message(), "X-Evil"));
	assert_int_equal(sm_http_vault_auth_header("web", NULL, "tok\n", &line), SM_EINVALID);
	assert_int_equal(sm_http_vault_auth_header("web", NULL, "two words", &line), SM_EINVALID);
	assert_null(strstr(sm_error_message(), "two words"));
	assert_int_equal(sm_http_vault_auth_header("web", NULL, "", &line), SM_EINVALID);
	assert_int_equal(sm_http_vault_auth_header("web", "bob", "p\xc3\xa9", &line), SM_EINVALID);
	assert_null(line);
}

static void etag_validity(void **state)
{
	char long_tag[SM_HTTP_VAULT_ETAG_MAX + 2];

	assert_true(sm_http_vault_etag_valid("\"5f1a-2c\""));
	assert_true(sm_http_vault_etag_valid("W/\"abc\""));
	assert_false(sm_http_vault_etag_valid(""));
	assert_false(sm_http_vault_etag_valid(NULL));
	assert_false(sm_http_vault_etag_valid("\"a\"\r\nX: y"));
	memset(long_tag, 'a', sizeof(long_tag) - 1);
	long_tag[sizeof(long_tag) - 1] = '\0';
	assert_false(sm_http_vault_etag_valid(long_tag));
	long_tag[SM_HTTP_VAULT_ETAG_MAX] = '\0';
	assert_true(sm_http_vault_etag_valid(long_tag));
}

static void cache_round_trip(void **state)
{
	const char *url = "https://a.example/v/";
	const char body[] = "{\"a-v1\": {}}\n\nskillmeat-http-cache 1\n";
	const char *parsed_body;
	char *text, *etag;
	size_t len, body_len;

	text = sm_http_vault_cache_format(url, "\"5f-2c\"", body, sizeof(body) - 1, &len);
	assert_non_null(text);
	assert_int_equal(sm_http_vault_cache_parse(text, len, url, &etag, &parsed_body, &body_len), 1);
	assert_string_equal(etag, "\"5f-2c\"");
	assert_int_equal(body_len, sizeof(body) - 1);
	assert_memory_equal(parsed_body, body, body_len);
	free(etag);

	/* another vault URL does not use this cache */
	assert_int_equal(sm_http_vault_cache_parse(text, len, "https://a.example/w/", &etag,
						   &parsed_body, &body_len), 0);
	assert_null(etag);
	assert_null(parsed_body);
	free(text);

	/* an empty body is a valid cache */
	text = sm_http_vault_cache_format(url, "\"e\"", "", 0, &len);
	assert_int_equal(sm_http_vault_cache_parse(text, len, url, &etag, &parsed_body, &body_len), 1);
	assert_int_equal(body_len, 0);
	free(etag);
	free(text);
}

static void cache_rejects_damaged_files(void **state)
{
	static const char *const damaged[] = {
		"",
		"skillmeat-http-cache 2\nurl https://a.example/v/\netag \"x\"\n\n{}",
		"skillmeat-http-cache 1\nurl https://a.example/v\netag \"x\"\n\n{}",
		"skillmeat-http-cache 1\nurl https://a.example/v/\n\n{}",
		"skillmeat-http-cache 1\nurl https://a.example/v/\netag \n\n{}",
		"skillmeat-http-cache 1\nurl https://a.example/v/\netag \"x\"\n{}",
		"skillmeat-http-cache 1\nurl https://a.example/v/\netag \"x\"",
		"skillmeat-http-cache 1\nurl https://a.example/v/\netag \"x\x01\"\n\n{}",
		"skillmeat-http-cache 1\netag \"x\"\nurl https://a.example/v/\n\n{}",
	};
	const char *body;
	size_t body_len;
	char *etag;

	for (size_t i = 0; i < sizeof(damaged) / sizeof(damaged[0]); i++) {
		assert_int_equal(sm_http_vault_cache_parse(damaged[i], strlen(damaged[i]),
							   "https://a.example/v/", &etag, &body,
							   &body_len), 0);
		assert_null(etag);
	}
	/* a NUL inside the ETag line */
	{
		const char text[] = "skillmeat-http-cache 1\nurl https://a.example/v/\netag \"a\0b\"\n\n{}";

		assert_int_equal(sm_http_vault_cache_parse(text, sizeof(text) - 1,
							   "https://a.example/v/", &etag, &body,
							   &body_len), 0);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(url_normalises_base),
		cmocka_unit_test(url_rejects_bad_input),
		cmocka_unit_test(url_rejects_user_information_without_echo),
		cmocka_unit_test(join_appends_relative_path),
		cmocka_unit_test(origin_compares_scheme_host_port),
		cmocka_unit_test(redirect_resolves_locations),
		cmocka_unit_test(redirect_policy_rejects_downgrades),
		cmocka_unit_test(auth_header_basic),
		cmocka_unit_test(auth_header_bearer_and_none),
		cmocka_unit_test(auth_header_rejects_bad_values),
		cmocka_unit_test(etag_validity),
		cmocka_unit_test(cache_round_trip),
		cmocka_unit_test(cache_rejects_damaged_files),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
