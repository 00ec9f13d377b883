/*
 * Unit tests of the SigV4 signer against AWS's published examples:
 * - the Signature Version 4 test suite (requests dated 20150830T123600Z,
 *   key AKIDEXAMPLE, region us-east-1, service "service"): get-vanilla,
 *   get-vanilla-query-order-key-case and post-x-www-form-urlencoded;
 * - the Amazon S3 API reference, "Signature Calculations for the
 *   Authorization Header: Transferring Payload in a Single Chunk"
 *   (key AKIAIOSFODNN7EXAMPLE, 20130524T000000Z): GET Object and
 *   GET Bucket (List Objects).
 * Each checks the canonical request or the hash in the string to sign, and
 * the signature, so a failure shows which step differs.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "net/sigv4.h"
#include "util/util.h"

#define SUITE_KEY "AKIDEXAMPLE"
#define SUITE_SECRET "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
#define SUITE_DATE "20150830T123600Z"
#define S3_KEY "AKIAIOSFODNN7EXAMPLE"
#define S3_SECRET "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
#define S3_DATE "20130524T000000Z"

static sm_sigv4_request suite_request(const char *method, const char *query,
				      const sm_sigv4_header *headers, size_t n, const char *hash)
{
	sm_sigv4_request req = { 0 };

	req.method = method;
	req.path = "/";
	req.query = query;
	req.headers = headers;
	req.nheaders = n;
	req.payload_hash = hash;
	req.amz_date = SUITE_DATE;
	req.region = "us-east-1";
	req.service = "service";
	req.access_key_id = SUITE_KEY;
	req.secret_access_key = SUITE_SECRET;
	return req;
}

/* Returns the last line of the string to sign: the canonical request's hash. */
static const char *canonical_hash(const sm_sigv4_result *result)
{
	return strrchr(result->string_to_sign, '\n') + 1;
}

static void get_vanilla(void **state)
{
	sm_sigv4_header headers[] = {
		{ "Host", "example.amazonaws.com" }, { "X-Amz-Date", SUITE_DATE },
	};
	sm_sigv4_request req = suite_request("GET", NULL, headers, 2, SM_SIGV4_EMPTY_SHA256);
	sm_sigv4_result result;

	assert_int_equal(sm_sigv4_sign(&req, &result), 0);
	assert_string_equal(result.canonical_request,
			    "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\n"
			    "host;x-amz-date\n" SM_SIGV4_EMPTY_SHA256);
	assert_string_equal(result.signature,
			    "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
	assert_string_equal(result.authorization,
			    "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/"
			    "aws4_request, SignedHeaders=host;x-amz-date, Signature="
			    "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
	sm_sigv4_result_release(&result);
}

static void get_vanilla_query_order_key_case(void **state)
{
	sm_sigv4_header headers[] = {
		{ "Host", "example.amazonaws.com" }, { "X-Amz-Date", SUITE_DATE },
	};
	sm_sigv4_request req = suite_request("GET", "Param2=value2&Param1=value1", headers, 2,
					     SM_SIGV4_EMPTY_SHA256);
	sm_sigv4_result result;

	assert_int_equal(sm_sigv4_sign(&req, &result), 0);
	assert_non_null(strstr(result.canonical_request, "\nParam1=value1&Param2=value2\n"));
	assert_string_equal(canonical_hash(&result),
			    "816cd5b414d056048ba4f7c5386d6e0533120fb1fcfa93762cf0fc39e2cf19e0");
	assert_string_equal(result.signature,
			    "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500");
	sm_sigv4_result_release(&result);
}

static void post_x_www_form_urlencoded(void **state)
{
	sm_sigv4_header headers[] = {
		{ "Content-Type", "application/x-www-form-urlencoded" },
		{ "Host", "example.amazonaws.com" },
		{ "X-Amz-Date", SUITE_DATE },
	};
	/* SHA-256 of the body "Param1=value1" */
	sm_sigv4_request req = suite_request(
		"POST", NULL, headers, 3,
		"9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e");
	sm_sigv4_result result;

	assert_int_equal(sm_sigv4_sign(&req, &result), 0);
	assert_string_equal(canonical_hash(&result),
			    "42a5e5bb34198acb3e84da4f085bb7927f2bc277ca766e6d19c73c2154021281");
	assert_string_equal(result.signature,
			    "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a");
	assert_non_null(strstr(result.authorization, "SignedHeaders=content-type;host;x-amz-date,"));
	sm_sigv4_result_release(&result);
}

static sm_sigv4_request s3_request(const char *path, const char *query,
				   const sm_sigv4_header *headers, size_t n)
{
	sm_sigv4_request req = { 0 };

	req.method = "GET";
	req.path = path;
	req.query = query;
	req.headers = headers;
	req.nheaders = n;
	req.payload_hash = SM_SIGV4_EMPTY_SHA256;
	req.amz_date = S3_DATE;
	req.region = "us-east-1";
	req.service = "s3";
	req.access_key_id = S3_KEY;
	req.secret_access_key = S3_SECRET;
	return req;
}

static void s3_get_object_example(void **state)
{
	sm_sigv4_header headers[] = {
		{ "Host", "examplebucket.s3.amazonaws.com" },
		{ "Range", "bytes=0-9" },
		{ "x-amz-content-sha256", SM_SIGV4_EMPTY_SHA256 },
		{ "x-amz-date", S3_DATE },
	};
	sm_sigv4_request req = s3_request("/test.txt", NULL, headers, 4);
	sm_sigv4_result result;

	assert_int_equal(sm_sigv4_sign(&req, &result), 0);
	assert_string_equal(result.canonical_request,
			    "GET\n/test.txt\n\nhost:examplebucket.s3.amazonaws.com\nrange:bytes=0-9\n"
			    "x-amz-content-sha256:" SM_SIGV4_EMPTY_SHA256 "\n"
			    "x-amz-date:20130524T000000Z\n\n"
			    "host;range;x-amz-content-sha256;x-amz-date\n" SM_SIGV4_EMPTY_SHA256);
	assert_string_equal(result.string_to_sign,
			    "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n"
			    "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972");
	assert_string_equal(result.signature,
			    "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
	sm_sigv4_result_release(&result);
}

static void s3_list_objects_example(void **state)
{
	sm_sigv4_header headers[] = {
		{ "Host", "examplebucket.s3.amazonaws.com" },
		{ "x-amz-content-sha256", SM_SIGV4_EMPTY_SHA256 },
		{ "x-amz-date", S3_DATE },
	};
	/* the order on the wire does not matter: the canonical query is sorted */
	sm_sigv4_request req = s3_request("/", "prefix=J&max-keys=2", headers, 3);
	sm_sigv4_result result;

	assert_int_equal(sm_sigv4_sign(&req, &result), 0);
	assert_non_null(strstr(result.canonical_request, "\nmax-keys=2&prefix=J\n"));
	assert_string_equal(result.signature,
			    "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7");
	sm_sigv4_result_release(&result);
}

static void session_token_is_signed(void **state)
{
	sm_sigv4_header headers[] = {
		{ "host", "examplebucket.s3.amazonaws.com" },
		{ "x-amz-content-sha256", SM_SIGV4_EMPTY_SHA256 },
		{ "x-amz-date", S3_DATE },
		{ "x-amz-security-token", "  token  with   spaces " },
	};
	sm_sigv4_request req = s3_request("/", NULL, headers, 4);
	sm_sigv4_result plain, with_token;

	assert_int_equal(sm_sigv4_sign(&req, &with_token), 0);
	req.nheaders = 3;
	assert_int_equal(sm_sigv4_sign(&req, &plain), 0);
	assert_non_null(strstr(with_token.canonical_request,
			       "\nx-amz-security-token:token with spaces\n"));
	assert_non_null(strstr(with_token.authorization,
			       "SignedHeaders=host;x-amz-content-sha256;x-amz-date;"
			       "x-amz-security-token,"));
	assert_string_not_equal(plain.signature, with_token.signature);
	assert_null(strstr(with_token.authorization, S3_SECRET));
	sm_sigv4_result_release(&plain);
	sm_sigv4_result_release(&with_token);
}

static void query_encoding_rfc3986(void **state)
{
	sm_sigv4_header headers[] = { { "host", "h" }, { "x-amz-date", S3_DATE } };
	sm_sigv4_request req = s3_request("/", "b=x y&a=%7e+&c&list-type=2&prefix=a%2Fb", headers, 2);
	sm_sigv4_result result;
	sm_buf buf = SM_BUF_INIT(0);

	assert_int_equal(sm_sigv4_sign(&req, &result), 0);
	/* a space is %20 (never '+'), '~' stays, '+' is %2B, a bare name gets '=' */
	assert_non_null(strstr(result.canonical_request,
			       "\na=~%2B&b=x%20y&c=&list-type=2&prefix=a%2Fb\n"));
	sm_sigv4_result_release(&result);

	assert_int_equal(sm_uri_encode(&buf, "a b/c~d*+é", strlen("a b/c~d*+é"), 0), 0);
	assert_string_equal(buf.data, "a%20b%2Fc~d%2A%2B%C3%A9");
	buf.len = 0;
	assert_int_equal(sm_uri_encode(&buf, "my team/x&y", 11, 1), 0);
	buf.data[buf.len] = '\0';
	assert_string_equal(buf.data, "my%20team/x%26y");
	sm_buf_release(&buf);
}

static void sign_rejects_incomplete_input(void **state)
{
	sm_sigv4_header headers[] = { { "host", "h" } };
	sm_sigv4_request req = s3_request("/", NULL, headers, 1);
	sm_sigv4_result result;

	req.path = "no-slash";
	assert_int_equal(sm_sigv4_sign(&req, &result), SM_EINVALID);
	req.path = "/";
	req.amz_date = "2013";
	assert_int_equal(sm_sigv4_sign(&req, &result), SM_EINVALID);
	req.amz_date = S3_DATE;
	headers[0].value = "bad\r\nvalue";
	assert_int_equal(sm_sigv4_sign(&req, &result), SM_EINVALID);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(get_vanilla),
		cmocka_unit_test(get_vanilla_query_order_key_case),
		cmocka_unit_test(post_x_www_form_urlencoded),
		cmocka_unit_test(s3_get_object_example),
		cmocka_unit_test(s3_list_objects_example),
		cmocka_unit_test(session_token_is_signed),
		cmocka_unit_test(query_encoding_rfc3986),
		cmocka_unit_test(sign_rejects_incomplete_input),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
