/*
 * Unit tests of the pure parts of the S3 connector: settings, part sizes,
 * object keys, URLs for path-style and virtual-hosted addressing, the
 * rejection of plain http, and the XML of ListObjectsV2,
 * CreateMultipartUpload and error responses, including hostile input.
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
#include "vault/s3_internal.h"

#define MiB (1024ull * 1024)

/* Builds a vault config from "key", "value" pairs ending with NULL. */
static sm_vault_config make_config(sm_kv *pairs, size_t max, ...)
{
	sm_vault_config config = { 0 };
	va_list ap;
	const char *key;

	config.name = "team";
	config.type = "s3";
	config.source = "sharing.toml";
	config.settings = pairs;
	va_start(ap, max);
	while ((key = va_arg(ap, const char *)) != NULL && config.nsettings < max) {
		pairs[config.nsettings].key = (char *)key;
		pairs[config.nsettings].value = va_arg(ap, char *);
		config.nsettings++;
	}
	va_end(ap);
	return config;
}

static void part_plan_sizes(void **state)
{
	uint64_t part;
	uint32_t n;

	assert_int_equal(sm_s3_part_plan(100 * MiB, 8 * MiB, &part, &n), 0);
	assert_int_equal(part, 8 * MiB);
	assert_int_equal(n, 13);

	/* below the 5 MiB minimum the minimum wins */
	assert_int_equal(sm_s3_part_plan(12 * MiB, 1 * MiB, &part, &n), 0);
	assert_int_equal(part, 5 * MiB);
	assert_int_equal(n, 3);

	/* exactly 10,000 parts of 8 MiB still fit */
	assert_int_equal(sm_s3_part_plan(10000 * 8 * MiB, 8 * MiB, &part, &n), 0);
	assert_int_equal(part, 8 * MiB);
	assert_int_equal(n, 10000);

	/* one byte more grows the part to 9 MiB */
	assert_int_equal(sm_s3_part_plan(10000 * 8 * MiB + 1, 8 * MiB, &part, &n), 0);
	assert_int_equal(part, 9 * MiB);
	assert_true(n <= 10000);

	/* 1 TiB: parts grow to whole MiB, at most 10,000 of them */
	assert_int_equal(sm_s3_part_plan(1024 * 1024 * MiB, 8 * MiB, &part, &n), 0);
	assert_int_equal(part % MiB, 0);
	assert_true(n <= 10000);
	assert_true((uint64_t)n * part >= 1024 * 1024 * MiB);

	/* more than 10,000 parts of 5 GiB is beyond S3 */
	assert_int_equal(sm_s3_part_plan(10001ull * 5 * 1024 * MiB, 8 * MiB, &part, &n), SM_EINVALID);
}

static void keys_with_special_prefix(void **state)
{
	sm_kv pairs[8];
	sm_vault_config config = make_config(pairs, 8, "bucket", "vault", "prefix",
					     "/my team/x+y&z//", "endpoint_url", "http://127.0.0.1:9000",
					     NULL);
	sm_s3_settings s;
	char *key, *id;

	/* "//" inside the prefix is rejected; leading and trailing slashes are trimmed */
	assert_int_equal(sm_s3_settings_parse(&config, &s), SM_EINVALID);
	pairs[1].value = "/my team/x+y&z/";
	assert_int_equal(sm_s3_settings_parse(&config, &s), 0);
	assert_string_equal(s.prefix, "my team/x+y&z/");

	key = sm_s3_bundle_key(&s, "a-v1.0");
	assert_string_equal(key, "my team/x+y&z/bundles/a-v1.0.skillmeat-pack");
	free(key);
	key = sm_s3_metadata_key(&s, "a-v1.0");
	assert_string_equal(key, "my team/x+y&z/metadata/a-v1.0.json");
	free(key);
	key = sm_s3_index_key(&s);
	assert_string_equal(key, "my team/x+y&z/index.json");
	free(key);

	assert_int_equal(sm_s3_id_from_metadata_key(&s, "my team/x+y&z/metadata/a-v1.0.json", &id), 1);
	assert_string_equal(id, "a-v1.0");
	free(id);
	/* a key escaped twice by the store still yields the id */
	assert_int_equal(sm_s3_id_from_metadata_key(&s, "my team/x+y&amp;z/metadata/b-v2.json", &id), 1);
	assert_string_equal(id, "b-v2");
	free(id);
	assert_int_equal(sm_s3_id_from_metadata_key(&s, "my team/x+y&z/metadata/Bad.json", &id), 0);
	assert_null(id);
	assert_int_equal(sm_s3_id_from_metadata_key(&s, "my team/x+y&z/metadata/.json", &id), 0);
	assert_int_equal(sm_s3_id_from_metadata_key(&s, "my team/x+y&z/notmetadata/a.json", &id), 0);
	assert_int_equal(sm_s3_id_from_metadata_key(&s, "my team/x+y&z/metadata/a.txt", &id), 0);
	assert_int_equal(sm_s3_id_from_metadata_key(&s, "metadata/a.json", &id), 0);
	sm_s3_settings_release(&s);

	/* without a prefix the keys start at the bucket's root */
	config.nsettings = 1;
	assert_int_equal(sm_s3_settings_parse(&config, &s), 0);
	assert_string_equal(s.prefix, "");
	assert_int_equal(sm_s3_id_from_metadata_key(&s, "metadata/a.json", &id), 1);
	assert_string_equal(id, "a");
	free(id);
	sm_s3_settings_release(&s);
}

static void urls_path_style(void **state)
{
	sm_kv pairs[8];
	sm_vault_config config = make_config(pairs, 8, "bucket", "vault", "endpoint_url",
					     "http://127.0.0.1:9000/", NULL);
	sm_s3_settings s;
	char *url, *path, *host;

	assert_int_equal(sm_s3_settings_parse(&config, &s), 0);
	assert_false(s.virtual_hosted);
	assert_string_equal(s.region, "us-east-1");
	assert_int_equal(sm_s3_build_url(&s, "my team/x+y&z/index.json", NULL, &url, &path, &host), 0);
	assert_string_equal(url, "http://127.0.0.1:9000/vault/my%20team/x%2By%26z/index.json");
	assert_string_equal(path, "/vault/my%20team/x%2By%26z/index.json");
	assert_string_equal(host, "127.0.0.1:9000");
	free(url);
	free(path);
	free(host);

	/* the bucket itself has no trailing slash */
	assert_int_equal(sm_s3_build_url(&s, NULL, "list-type=2", &url, &path, &host), 0);
	assert_string_equal(url, "http://127.0.0.1:9000/vault?list-type=2");
	assert_string_equal(path, "/vault");
	free(url);
	free(path);
	free(host);
	sm_s3_settings_release(&s);
}

static void urls_virtual_hosted(void **state)
{
	sm_kv pairs[8];
	sm_vault_config config = make_config(pairs, 8, "bucket", "team-bundles", "region",
					     "eu-west-1", NULL);
	sm_s3_settings s;
	char *url, *path, *host;

	/* auto addressing on AWS is virtual-hosted */
	assert_int_equal(sm_s3_settings_parse(&config, &s), 0);
	assert_true(s.virtual_hosted);
	assert_int_equal(sm_s3_build_url(&s, "bundles/a.skillmeat-pack", NULL, &url, &path, &host), 0);
	assert_string_equal(url, "https://team-bundles.s3.eu-west-1.amazonaws.com/bundles/a.skillmeat-pack");
	assert_string_equal(path, "/bundles/a.skillmeat-pack");
	assert_string_equal(host, "team-bundles.s3.eu-west-1.amazonaws.com");
	free(url);
	free(path);
	free(host);
	assert_int_equal(sm_s3_build_url(&s, NULL, NULL, &url, &path, &host), 0);
	assert_string_equal(url, "https://team-bundles.s3.eu-west-1.amazonaws.com/");
	free(url);
	free(path);
	free(host);

	/* a redirect to another region moves the host too */
	assert_int_equal(sm_s3_settings_set_region(&s, "us-west-2"), 0);
	assert_string_equal(s.host, "team-bundles.s3.us-west-2.amazonaws.com");
	assert_int_equal(sm_s3_settings_set_region(&s, "bad/region"), SM_EINVALID);
	assert_non_null(strstr(sm_error_message(), "'bad/region'"));
	/* a region with an escape sequence from a hostile server is not echoed */
	assert_int_equal(sm_s3_settings_set_region(&s, "eu\x1b]0;owned\x07"), SM_EINVALID);
	assert_null(strchr(sm_error_message(), '\x1b'));
	assert_null(strstr(sm_error_message(), "owned"));
	assert_string_equal(s.region, "us-west-2");
	assert_string_equal(s.host, "team-bundles.s3.us-west-2.amazonaws.com");
	sm_s3_settings_release(&s);

	/* virtual on a custom endpoint puts the bucket before its host; the default port goes */
	pairs[1] = (sm_kv){ "endpoint_url", "https://minio.example:443/base/" };
	pairs[2] = (sm_kv){ "addressing", "virtual" };
	config.nsettings = 3;
	assert_int_equal(sm_s3_settings_parse(&config, &s), 0);
	assert_int_equal(sm_s3_build_url(&s, "index.json", NULL, &url, &path, &host), 0);
	assert_string_equal(url, "https://team-bundles.minio.example/base/index.json");
	assert_string_equal(path, "/base/index.json");
	free(url);
	free(path);
	free(host);
	sm_s3_settings_release(&s);
}

static void endpoint_http_rejected(void **state)
{
	sm_kv pairs[8];
	sm_vault_config config = make_config(pairs, 8, "bucket", "vault", "endpoint_url",
					     "http://s3.example.com", NULL);
	sm_s3_settings s;

	assert_int_equal(sm_s3_settings_parse(&config, &s), SM_EINVALID);
	assert_non_null(strstr(sm_error_message(), "allow_http = true"));

	pairs[2] = (sm_kv){ "allow_http", "true" };
	config.nsettings = 3;
	assert_int_equal(sm_s3_settings_parse(&config, &s), 0);
	assert_true(s.allow_http);
	sm_s3_settings_release(&s);

	config.nsettings = 2;
	pairs[1].value = "http://localhost:9000";
	assert_int_equal(sm_s3_settings_parse(&config, &s), 0);
	sm_s3_settings_release(&s);
	pairs[1].value = "http://[::1]:9000";
	assert_int_equal(sm_s3_settings_parse(&config, &s), 0);
	sm_s3_settings_release(&s);
	pairs[1].value = "http://127.0.0.1.example.com";
	assert_int_equal(sm_s3_settings_parse(&config, &s), SM_EINVALID);
	pairs[1].value = "http://user:pw@127.0.0.1";
	assert_int_equal(sm_s3_settings_parse(&config, &s), SM_EINVALID);
	pairs[1].value = "ftp://127.0.0.1";
	assert_int_equal(sm_s3_settings_parse(&config, &s), SM_EINVALID);

	assert_true(sm_s3_host_is_loopback("127.0.0.1:80"));
	assert_true(sm_s3_host_is_loopback("127.1.2.3"));
	assert_true(sm_s3_host_is_loopback("LOCALHOST"));
	assert_false(sm_s3_host_is_loopback("127.0.0.1x"));
	assert_false(sm_s3_host_is_loopback("[::2]:80"));
	assert_false(sm_s3_host_is_loopback("10.0.0.1"));
}

static void settings_reject_bad_values(void **state)
{
	static const char *const bad[][2] = {
		{ "part_size", "1m" },
		{ "part_size", "6g" },
		{ "part_size", "abc" },
		{ "concurrency", "0" },
		{ "concurrency", "33" },
		{ "addressing", "sideways" },
		{ "region", "us east" },
		{ "prefix", "../other" },
		{ "prefix", "team/.." },
		{ "prefix", "a/./b" },
		{ "prefix", "." },
	};
	sm_kv pairs[8];
	sm_vault_config config = make_config(pairs, 8, "bucket", "vault", NULL);
	sm_s3_settings s;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		pairs[1] = (sm_kv){ (char *)bad[i][0], (char *)bad[i][1] };
		config.nsettings = 2;
		assert_int_equal(sm_s3_settings_parse(&config, &s), SM_EINVALID);
		assert_non_null(strstr(sm_error_message(), bad[i][0]));
	}
	/* dots inside a component are an ordinary prefix */
	pairs[1] = (sm_kv){ "prefix", "team..x/.hidden/v1.2" };
	config.nsettings = 2;
	assert_int_equal(sm_s3_settings_parse(&config, &s), 0);
	assert_string_equal(s.prefix, "team..x/.hidden/v1.2/");
	sm_s3_settings_release(&s);

	pairs[1] = (sm_kv){ "part_size", "16m" };
	pairs[2] = (sm_kv){ "concurrency", "8" };
	config.nsettings = 3;
	assert_int_equal(sm_s3_settings_parse(&config, &s), 0);
	assert_int_equal(s.part_size, 16 * MiB);
	assert_int_equal(s.concurrency, 8);
	sm_s3_settings_release(&s);

	/* region "auto" (R2) needs an endpoint; bucket names follow S3's rules */
	pairs[1] = (sm_kv){ "region", "auto" };
	config.nsettings = 2;
	assert_int_equal(sm_s3_settings_parse(&config, &s), SM_EINVALID);
	pairs[0].value = "Bad_Bucket";
	config.nsettings = 1;
	assert_int_equal(sm_s3_settings_parse(&config, &s), SM_EINVALID);
	config.nsettings = 0;
	assert_int_equal(sm_s3_settings_parse(&config, &s), SM_EINVALID);
	assert_non_null(strstr(sm_error_message(), "no 'bucket'"));
}

static void xml_list_pages(void **state)
{
	const char *page1 =
		"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
		"<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
		"<Name>vault</Name><Prefix>p/metadata/</Prefix><KeyCount>2</KeyCount>"
		"<IsTruncated>true</IsTruncated>"
		"<Contents><Key>p/metadata/a.json</Key><ETag>&quot;x&quot;</ETag></Contents>"
		"<Contents><Key>p/metadata/b&amp;c&#38;&#x41;&#233;.json</Key></Contents>"
		"<NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken>"
		"</ListBucketResult>";
	const char *last =
		"<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>";
	sm_s3_list_page page;

	assert_int_equal(sm_s3_parse_list(page1, strlen(page1), &page), 0);
	assert_int_equal(page.nkeys, 2);
	assert_string_equal(page.keys[0], "p/metadata/a.json");
	assert_string_equal(page.keys[1], "p/metadata/b&c&A\xc3\xa9.json");
	assert_true(page.truncated);
	assert_string_equal(page.next_token, "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=");
	sm_s3_list_page_release(&page);

	assert_int_equal(sm_s3_parse_list(last, strlen(last), &page), 0);
	assert_int_equal(page.nkeys, 0);
	assert_false(page.truncated);
	assert_null(page.next_token);
	sm_s3_list_page_release(&page);
}

static void xml_rejects_hostile_input(void **state)
{
	static const char *const bad[] = {
		/* truncated without a token */
		"<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>",
		/* unclosed element */
		"<ListBucketResult><Key>p/metadata/a.json",
		/* unknown entity, broken references */
		"<ListBucketResult><Key>a&foo;b</Key></ListBucketResult>",
		"<ListBucketResult><Key>a&#;b</Key></ListBucketResult>",
		"<ListBucketResult><Key>a&#0;b</Key></ListBucketResult>",
		"<ListBucketResult><Key>a&#xD800;b</Key></ListBucketResult>",
		"<ListBucketResult><Key>a&#x110000;b</Key></ListBucketResult>",
		"<ListBucketResult><Key>a&#12345678901234;b</Key></ListBucketResult>",
		"<ListBucketResult><Key>a&amp</Key></ListBucketResult>",
		/* child elements where text belongs */
		"<ListBucketResult><Key><x>a</x></Key></ListBucketResult>",
		/* not a listing at all */
		"<Error><Code>AccessDenied</Code></Error>",
		"",
	};
	sm_s3_list_page page;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(sm_s3_parse_list(bad[i], strlen(bad[i]), &page), SM_EINVALID);
		assert_null(page.keys);
	}
	/* the length bounds the search: a NUL-free buffer without terminator is safe */
	{
		char buf[40];

		memcpy(buf, "<ListBucketResult><Key>abcdefghijklmnop", 39);
		buf[39] = 'x';
		assert_int_equal(sm_s3_parse_list(buf, sizeof(buf), &page), SM_EINVALID);
	}
}

static void xml_upload_id_and_errors(void **state)
{
	const char *init = "<?xml version=\"1.0\"?><InitiateMultipartUploadResult><Bucket>vault"
			   "</Bucket><Key>k</Key><UploadId>VXBsb2FkIElE&amp;x</UploadId>"
			   "</InitiateMultipartUploadResult>";
	const char *error = "<?xml version=\"1.0\"?><Error><Code>AuthorizationHeaderMalformed</Code>"
			    "<Message>the region &apos;us-east-1&apos; is wrong</Message>"
			    "<Region>eu-central-1</Region></Error>";
	const char *empty_id = "<InitiateMultipartUploadResult><UploadId></UploadId>"
			       "</InitiateMultipartUploadResult>";
	sm_s3_error parsed;
	char *id;

	assert_int_equal(sm_s3_parse_upload_id(init, strlen(init), &id), 0);
	assert_string_equal(id, "VXBsb2FkIElE&x");
	free(id);
	assert_int_equal(sm_s3_parse_upload_id(empty_id, strlen(empty_id), &id), SM_EINVALID);
	assert_null(id);
	assert_int_equal(sm_s3_parse_upload_id(error, strlen(error), &id), SM_EINVALID);

	assert_int_equal(sm_s3_parse_error(error, strlen(error), &parsed), 0);
	assert_string_equal(parsed.code, "AuthorizationHeaderMalformed");
	assert_string_equal(parsed.message, "the region 'us-east-1' is wrong");
	assert_string_equal(parsed.region, "eu-central-1");
	sm_s3_error_release(&parsed);

	assert_int_equal(sm_s3_parse_error("plain text", 10, &parsed), 0);
	assert_null(parsed.code);
	assert_int_equal(sm_s3_parse_error("<Error><Code>x&bad;</Code></Error>", 34, &parsed),
			 SM_EINVALID);
	assert_null(parsed.code);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(part_plan_sizes),
		cmocka_unit_test(keys_with_special_prefix),
		cmocka_unit_test(urls_path_style),
		cmocka_unit_test(urls_virtual_hosted),
		cmocka_unit_test(endpoint_http_rejected),
		cmocka_unit_test(settings_reject_bad_values),
		cmocka_unit_test(xml_list_pages),
		cmocka_unit_test(xml_rejects_hostile_input),
		cmocka_unit_test(xml_upload_id_and_errors),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
