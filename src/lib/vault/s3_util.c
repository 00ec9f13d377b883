/*
 * Pure parts of the S3 connector: settings, keys, URLs, part sizes, XML.
 * Nothing here touches the network or the disk.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "net/sigv4.h"
#include "skillmeat/vault.h"
#include "util/util.h"
#include "vault/s3_internal.h"

#define BUNDLE_SUFFIX ".skillmeat-pack"

void sm_s3_settings_release(sm_s3_settings *s)
{
	free(s->bucket);
	free(s->region);
	free(s->prefix);
	free(s->scheme);
	free(s->host);
	free(s->base_path);
	free(s->endpoint);
	free(s->profile);
	free(s->ca_bundle);
	memset(s, 0, sizeof(*s));
}

int sm_s3_host_is_loopback(const char *host)
{
	char name[256];
	const char *end;
	size_t len;

	if (host[0] == '[') {
		end = strchr(host, ']');
		if (!end)
			return 0;
		return (size_t)(end - host - 1) == 3 && strncmp(host + 1, "::1", 3) == 0;
	}
	end = strchr(host, ':');
	len = end ? (size_t)(end - host) : strlen(host);
	if (len == 0 || len >= sizeof(name))
		return 0;
	memcpy(name, host, len);
	name[len] = '\0';
	if (strcasecmp(name, "localhost") == 0)
		return 1;
	/* 127.0.0.0/8, written as four decimal numbers */
	if (strncmp(name, "127.", 4) == 0) {
		int dots = 0;

		for (const char *p = name; *p; p++) {
			if (*p == '.')
				dots++;
			else if (!isdigit((unsigned char)*p))
				return 0;
		}
		return dots == 3;
	}
	return 0;
}

/* Bucket names as S3 allows them: 3-63 of a-z 0-9 . -, starting and ending alphanumeric. */
static int bucket_name_valid(const char *bucket)
{
	size_t len = strlen(bucket);

	if (len < 3 || len > 63 || !isalnum((unsigned char)bucket[0]) ||
	    !isalnum((unsigned char)bucket[len - 1]))
		return 0;
	for (const char *p = bucket; *p; p++)
		if (!(islower((unsigned char)*p) || isdigit((unsigned char)*p) || *p == '.' ||
		      *p == '-'))
			return 0;
	return 1;
}

static int region_valid(const char *region)
{
	if (!*region || strlen(region) > 64)
		return 0;
	for (const char *p = region; *p; p++)
		if (!(isalnum((unsigned char)*p) || *p == '-'))
			return 0;
	return 1;
}

static int parse_size(const char *text, uint64_t *out)
{
	char *end;
	unsigned long long value;
	uint64_t unit = 1;

	if (!text || !isdigit((unsigned char)text[0]))
		return -1;
	errno = 0;
	value = strtoull(text, &end, 10);
	if (errno)
		return -1;
	if (*end) {
		if (strcasecmp(end, "k") == 0 || strcasecmp(end, "KiB") == 0)
			unit = 1024;
		else if (strcasecmp(end, "m") == 0 || strcasecmp(end, "MiB") == 0)
			unit = 1024 * 1024;
		else if (strcasecmp(end, "g") == 0 || strcasecmp(end, "GiB") == 0)
			unit = 1024 * 1024 * 1024;
		else
			return -1;
	}
	if (value > UINT64_MAX / unit)
		return -1;
	*out = value * unit;
	return 0;
}

static int is_true(const char *value)
{
	return value && strcmp(value, "true") == 0;
}

/* Sets host, scheme and base_path from the AWS endpoint of the region. */
static int use_aws_endpoint(sm_s3_settings *s)
{
	free(s->scheme);
	free(s->host);
	free(s->base_path);
	free(s->endpoint);
	s->scheme = sm_strdup("https");
	s->host = s->virtual_hosted ? sm_asprintf("%s.s3.%s.amazonaws.com", s->bucket, s->region)
				    : sm_asprintf("s3.%s.amazonaws.com", s->region);
	s->base_path = sm_strdup("");
	s->endpoint = sm_asprintf("https://s3.%s.amazonaws.com", s->region);
	return s->scheme && s->host && s->base_path && s->endpoint ? 0 : SM_ENOMEM;
}

/* Splits endpoint_url into scheme, host[:port] and base path. */
static int parse_endpoint(sm_s3_settings *s, const sm_vault_config *config, const char *url)
{
	const char *source = config->source ? config->source : "sharing.toml";
	const char *rest, *slash;
	char *host = NULL;
	size_t host_len;

	if (strncasecmp(url, "https://", 8) == 0) {
		s->scheme = sm_strdup("https");
		rest = url + 8;
	} else if (strncasecmp(url, "http://", 7) == 0) {
		s->scheme = sm_strdup("http");
		rest = url + 7;
	} else {
		return sm_error_set(SM_EINVALID, "invalid endpoint_url '%s' of vault '%s' in %s: it must "
				    "start with https:// (or http:// for a loopback address)", url,
				    config->name, source);
	}
	if (!s->scheme)
		return SM_ENOMEM;
	slash = strchr(rest, '/');
	host_len = slash ? (size_t)(slash - rest) : strlen(rest);
	if (host_len == 0 || memchr(rest, '@', host_len) || strpbrk(url, "?#") ||
	    sm_has_control_chars(url) || strchr(url, ' '))
		return sm_error_set(SM_EINVALID, "invalid endpoint_url '%s' of vault '%s' in %s: give "
				    "scheme, host, optional port and path, without user, query or "
				    "fragment", url, config->name, source);
	host = sm_strndup(rest, host_len);
	if (!host)
		return SM_ENOMEM;
	for (char *p = host; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	/* curl leaves a default port out of the Host header, and so must the signature */
	if ((strcmp(s->scheme, "https") == 0 && host_len > 4 &&
	     strcmp(host + host_len - 4, ":443") == 0) ||
	    (strcmp(s->scheme, "http") == 0 && host_len > 3 && strcmp(host + host_len - 3, ":80") == 0))
		*strrchr(host, ':') = '\0';
	s->host = host;
	s->base_path = sm_strdup(slash ? slash : "");
	s->endpoint = sm_strdup(url);
	if (!s->base_path || !s->endpoint)
		return SM_ENOMEM;
	while (*s->base_path && s->base_path[strlen(s->base_path) - 1] == '/')
		s->base_path[strlen(s->base_path) - 1] = '\0';
	if (strcmp(s->scheme, "http") == 0 && !s->allow_http && !sm_s3_host_is_loopback(s->host))
		return sm_error_set(SM_EINVALID, "endpoint_url '%s' of vault '%s' uses plain http to a "
				    "host that is not a loopback address, so credentials and data would "
				    "cross the network unencrypted; use https, or set allow_http = true "
				    "in %s", url, config->name, source);
	return 0;
}

/* Builds "<given prefix>/" without a leading '/', or "" for none. */
/*
 * Returns 1 when a '/'-separated component of `path` is "." or "..". libcurl
 * removes such components from a URL before sending it, so a prefix of
 * "../other" would address bucket "other" with a path-style URL.
 */
static int has_dot_segment(const char *path)
{
	for (const char *p = path; *p;) {
		size_t len = strcspn(p, "/");

		if ((len == 1 && p[0] == '.') || (len == 2 && p[0] == '.' && p[1] == '.'))
			return 1;
		p += len;
		if (*p == '/')
			p++;
	}
	return 0;
}

static char *normalise_prefix(const char *prefix)
{
	size_t len;

	if (!prefix)
		return sm_strdup("");
	while (*prefix == '/')
		prefix++;
	len = strlen(prefix);
	while (len && prefix[len - 1] == '/')
		len--;
	if (!len)
		return sm_strdup("");
	return sm_asprintf("%.*s/", (int)len, prefix);
}

int sm_s3_settings_parse(const sm_vault_config *config, sm_s3_settings *out)
{
	const char *source = config->source ? config->source : "sharing.toml";
	const char *bucket = sm_vault_config_get(config, "bucket");
	const char *region = sm_vault_config_get(config, "region");
	const char *prefix = sm_vault_config_get(config, "prefix");
	const char *endpoint = sm_vault_config_get(config, "endpoint_url");
	const char *addressing = sm_vault_config_get(config, "addressing");
	const char *part_size = sm_vault_config_get(config, "part_size");
	const char *concurrency = sm_vault_config_get(config, "concurrency");
	const char *profile = sm_vault_config_get(config, "profile");
	const char *ca_bundle = sm_vault_config_get(config, "ca_bundle");
	int rc = 0;

	memset(out, 0, sizeof(*out));
	if (!bucket || !*bucket) {
		rc = sm_error_set(SM_EINVALID, "vault '%s' has no 'bucket'; set it in %s", config->name,
				  source);
		goto done;
	}
	if (!bucket_name_valid(bucket)) {
		rc = sm_error_set(SM_EINVALID, "invalid bucket '%s' of vault '%s' in %s: use 3-63 of "
				  "a-z, 0-9, '.' and '-', starting and ending with a letter or digit",
				  bucket, config->name, source);
		goto done;
	}
	if (region && !region_valid(region)) {
		rc = sm_error_set(SM_EINVALID, "invalid region '%s' of vault '%s' in %s", region,
				  config->name, source);
		goto done;
	}
	if (prefix && (sm_has_control_chars(prefix) || strstr(prefix, "//") ||
		       strlen(prefix) > 512 || has_dot_segment(prefix))) {
		rc = sm_error_set(SM_EINVALID, "invalid prefix '%s' of vault '%s' in %s: no control "
				  "characters, no '//', no '.' or '..' component, at most 512 bytes",
				  prefix, config->name, source);
		goto done;
	}
	out->allow_http = is_true(sm_vault_config_get(config, "allow_http"));
	out->bucket = sm_strdup(bucket);
	out->region = sm_strdup(region && *region ? region : "us-east-1");
	out->prefix = normalise_prefix(prefix);
	out->profile = profile && *profile ? sm_strdup(profile) : NULL;
	out->ca_bundle = ca_bundle && *ca_bundle ? sm_strdup(ca_bundle) : NULL;
	if (!out->bucket || !out->region || !out->prefix || (profile && *profile && !out->profile) ||
	    (ca_bundle && *ca_bundle && !out->ca_bundle)) {
		rc = SM_ENOMEM;
		goto done;
	}
	if (out->ca_bundle && sm_has_control_chars(out->ca_bundle)) {
		rc = sm_error_set(SM_EINVALID, "invalid ca_bundle of vault '%s' in %s", config->name,
				  source);
		goto done;
	}

	out->part_size = SM_S3_DEFAULT_PART_SIZE;
	if (part_size && (parse_size(part_size, &out->part_size) != 0 ||
			  out->part_size < SM_S3_MIN_PART_SIZE || out->part_size > SM_S3_MAX_PART_SIZE)) {
		rc = sm_error_set(SM_EINVALID, "invalid part_size '%s' of vault '%s' in %s: give bytes "
				  "(or a number with k, m or g) from 5m to 5g", part_size, config->name,
				  source);
		goto done;
	}
	out->concurrency = SM_S3_DEFAULT_CONCURRENCY;
	if (concurrency) {
		char *end;
		long value = strtol(concurrency, &end, 10);

		if (end == concurrency || *end || value < 1 || value > SM_S3_MAX_CONCURRENCY) {
			rc = sm_error_set(SM_EINVALID, "invalid concurrency '%s' of vault '%s' in %s: give a "
					  "number from 1 to %d", concurrency, config->name, source,
					  SM_S3_MAX_CONCURRENCY);
			goto done;
		}
		out->concurrency = (int)value;
	}

	out->custom_endpoint = endpoint && *endpoint;
	if (addressing && strcmp(addressing, "path") != 0 && strcmp(addressing, "virtual") != 0 &&
	    strcmp(addressing, "auto") != 0) {
		rc = sm_error_set(SM_EINVALID, "invalid addressing '%s' of vault '%s' in %s: use path, "
				  "virtual or auto", addressing, config->name, source);
		goto done;
	}
	if (addressing && strcmp(addressing, "virtual") == 0)
		out->virtual_hosted = 1;
	else if (addressing && strcmp(addressing, "path") == 0)
		out->virtual_hosted = 0;
	else /* auto: path style for custom endpoints and for dotted names, which break TLS */
		out->virtual_hosted = !out->custom_endpoint && !strchr(bucket, '.');
	if (out->virtual_hosted && strchr(bucket, '.') && !out->custom_endpoint) {
		rc = sm_error_set(SM_EINVALID, "bucket '%s' of vault '%s' has a '.', which breaks TLS "
				  "with virtual-hosted addressing; set addressing = \"path\" in %s",
				  bucket, config->name, source);
		goto done;
	}
	if (out->custom_endpoint) {
		rc = parse_endpoint(out, config, endpoint);
		if (!rc && out->virtual_hosted) {
			char *host = sm_asprintf("%s.%s", out->bucket, out->host);

			if (!host) {
				rc = SM_ENOMEM;
			} else {
				free(out->host);
				out->host = host;
			}
		}
	} else if (strcmp(out->region, "auto") == 0) {
		rc = sm_error_set(SM_EINVALID, "vault '%s' sets region \"auto\", which needs an "
				  "endpoint_url (Cloudflare R2: https://ACCOUNT.r2.cloudflarestorage.com); "
				  "set it in %s", config->name, source);
	} else {
		rc = use_aws_endpoint(out);
	}
done:
	if (rc)
		sm_s3_settings_release(out);
	return rc;
}

int sm_s3_settings_set_region(sm_s3_settings *s, const char *region)
{
	char *copy;

	/* the text comes from the server: quote it only when it is short and printable */
	if (!region_valid(region))
		return strlen(region) <= 64 && !sm_has_control_chars(region)
			? sm_error_set(SM_EINVALID, "invalid region '%s' named by the server", region)
			: sm_error_set(SM_EINVALID, "invalid region named by the server (too long or "
				       "with control characters)");
	copy = sm_strdup(region);
	if (!copy)
		return SM_ENOMEM;
	free(s->region);
	s->region = copy;
	return s->custom_endpoint ? 0 : use_aws_endpoint(s);
}

int sm_s3_part_plan(uint64_t size, uint64_t requested, uint64_t *part_size, uint32_t *nparts)
{
	const uint64_t mib = 1024 * 1024;
	uint64_t part = requested < SM_S3_MIN_PART_SIZE ? SM_S3_MIN_PART_SIZE : requested;
	uint64_t count;

	/* the smallest whole number of MiB that keeps the count at 10,000 or below */
	if ((size + part - 1) / part > SM_S3_MAX_PARTS) {
		part = (size + SM_S3_MAX_PARTS - 1) / SM_S3_MAX_PARTS;
		part = (part + mib - 1) / mib * mib;
	}
	if (part > SM_S3_MAX_PART_SIZE)
		return sm_error_set(SM_EINVALID, "a bundle of %llu bytes needs parts larger than 5 GiB, "
				    "the S3 limit", (unsigned long long)size);
	count = size ? (size + part - 1) / part : 1;
	*part_size = part;
	*nparts = (uint32_t)count;
	return 0;
}

char *sm_s3_bundle_key(const sm_s3_settings *s, const char *id)
{
	return sm_asprintf("%sbundles/%s" BUNDLE_SUFFIX, s->prefix, id);
}

char *sm_s3_metadata_key(const sm_s3_settings *s, const char *id)
{
	return sm_asprintf("%smetadata/%s.json", s->prefix, id);
}

char *sm_s3_index_key(const sm_s3_settings *s)
{
	return sm_asprintf("%sindex.json", s->prefix);
}

int sm_s3_id_from_metadata_key(const sm_s3_settings *s, const char *key, char **id)
{
	const char *name = strrchr(key, '/');
	size_t len;

	/*
	 * The listing asked for the direct children of <prefix>metadata/, so only
	 * the last two path components are checked. The prefix is not compared,
	 * because some stores escape special characters in listed keys twice
	 * (s3rver 4.0.4 returns "&amp;amp;" for "&").
	 */
	*id = NULL;
	if (!name || (size_t)(name - key) < 8 || strncmp(name - 8, "metadata", 8) != 0 ||
	    (name - key > 8 && name[-9] != '/') || (name - key == 8 && *s->prefix))
		return 0;
	name++;
	len = strlen(name);
	if (len <= 5 || strcmp(name + len - 5, ".json") != 0)
		return 0;
	*id = sm_strndup(name, len - 5);
	if (!*id)
		return SM_ENOMEM;
	if (!sm_bundle_id_valid(*id)) {
		free(*id);
		*id = NULL;
		return 0;
	}
	return 1;
}

int sm_s3_build_url(const sm_s3_settings *s, const char *key, const char *query, char **url,
		    char **path, char **host)
{
	sm_buf buf = SM_BUF_INIT(0);
	int rc = 0;

	*url = *path = *host = NULL;
	rc = sm_buf_puts(&buf, s->base_path);
	if (!rc && !s->virtual_hosted) {
		rc = sm_buf_putc(&buf, '/');
		if (!rc)
			rc = sm_uri_encode(&buf, s->bucket, strlen(s->bucket), 0);
	}
	if (!rc && key) {
		rc = sm_buf_putc(&buf, '/');
		if (!rc)
			rc = sm_uri_encode(&buf, key, strlen(key), 1);
	}
	/* path style: the bucket URL has no trailing slash, which some stores reject */
	if (!rc && buf.len == 0)
		rc = sm_buf_putc(&buf, '/');
	if (rc)
		goto done;
	*path = sm_buf_take(&buf);
	*url = sm_asprintf("%s://%s%s%s%s", s->scheme, s->host, *path, query && *query ? "?" : "",
			   query ? query : "");
	*host = sm_strdup(s->host);
	if (!*path || !*url || !*host)
		rc = SM_ENOMEM;
done:
	sm_buf_release(&buf);
	if (rc) {
		free(*url);
		free(*path);
		free(*host);
		*url = *path = *host = NULL;
	}
	return rc;
}

/* Decodes one entity at text[*i] ('&'), appending the character. */
static int decode_entity(sm_buf *out, const char *text, size_t len, size_t *i)
{
	static const struct { const char *name; char c; } named[] = {
		{ "amp;", '&' }, { "lt;", '<' }, { "gt;", '>' }, { "quot;", '"' }, { "apos;", '\'' },
	};
	const char *p = text + *i + 1;
	size_t left = len - *i - 1;

	for (size_t k = 0; k < sizeof(named) / sizeof(named[0]); k++) {
		size_t n = strlen(named[k].name);

		if (left >= n && strncmp(p, named[k].name, n) == 0) {
			*i += n;
			return sm_buf_putc(out, named[k].c);
		}
	}
	if (left >= 3 && p[0] == '#') {
		unsigned long code = 0;
		size_t j = 1;
		int hex = p[1] == 'x';
		unsigned char utf8[4];
		size_t n;

		if (hex)
			j++;
		for (; j < left && j < 12 && p[j] != ';'; j++) {
			int digit = hex ? (isxdigit((unsigned char)p[j]) ?
					   (isdigit((unsigned char)p[j]) ? p[j] - '0' :
					    tolower((unsigned char)p[j]) - 'a' + 10) : -1)
				    : (isdigit((unsigned char)p[j]) ? p[j] - '0' : -1);

			if (digit < 0)
				return sm_error_set(SM_EINVALID, "invalid character reference in XML");
			code = code * (hex ? 16 : 10) + (unsigned long)digit;
		}
		if (j >= left || p[j] != ';' || j == (size_t)(hex ? 2 : 1) || code == 0 ||
		    code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF))
			return sm_error_set(SM_EINVALID, "invalid character reference in XML");
		if (code < 0x80) {
			utf8[0] = (unsigned char)code;
			n = 1;
		} else if (code < 0x800) {
			utf8[0] = (unsigned char)(0xC0 | (code >> 6));
			utf8[1] = (unsigned char)(0x80 | (code & 0x3F));
			n = 2;
		} else if (code < 0x10000) {
			utf8[0] = (unsigned char)(0xE0 | (code >> 12));
			utf8[1] = (unsigned char)(0x80 | ((code >> 6) & 0x3F));
			utf8[2] = (unsigned char)(0x80 | (code & 0x3F));
			n = 3;
		} else {
			utf8[0] = (unsigned char)(0xF0 | (code >> 18));
			utf8[1] = (unsigned char)(0x80 | ((code >> 12) & 0x3F));
			utf8[2] = (unsigned char)(0x80 | ((code >> 6) & 0x3F));
			utf8[3] = (unsigned char)(0x80 | (code & 0x3F));
			n = 4;
		}
		*i += j + 1;
		return sm_buf_put(out, utf8, n);
	}
	return sm_error_set(SM_EINVALID, "invalid entity in XML");
}

int sm_xml_next(const char *xml, size_t len, const char *name, size_t *offset, char **out)
{
	char open[80], close[80];
	const char *start, *end;
	sm_buf buf = SM_BUF_INIT(1024 * 1024);
	int n, rc;

	*out = NULL;
	n = snprintf(open, sizeof(open), "<%s>", name);
	if (n < 0 || (size_t)n >= sizeof(open) ||
	    snprintf(close, sizeof(close), "</%s>", name) >= (int)sizeof(close))
		return sm_error_set(SM_EINVALID, "XML element name too long");
	if (!xml || *offset >= len)
		return 0;
	start = memmem(xml + *offset, len - *offset, open, strlen(open));
	if (!start)
		return 0;
	start += strlen(open);
	end = memmem(start, len - (size_t)(start - xml), close, strlen(close));
	if (!end)
		return sm_error_set(SM_EINVALID, "XML element <%s> is not closed", name);
	for (size_t i = 0; i < (size_t)(end - start); i++) {
		char c = start[i];

		if (c == '<')
			return sm_error_set(SM_EINVALID, "XML element <%s> has child elements", name);
		rc = c == '&' ? decode_entity(&buf, start, (size_t)(end - start), &i) : sm_buf_putc(&buf, c);
		if (rc) {
			sm_buf_release(&buf);
			return rc;
		}
	}
	if ((rc = sm_buf_puts(&buf, "")) != 0) {
		sm_buf_release(&buf);
		return rc;
	}
	*out = sm_buf_take(&buf);
	*offset = (size_t)(end - xml) + strlen(close);
	return 1;
}

/* Returns the text of the first <name>, NULL when absent; rc set on errors. */
static char *xml_first(const char *xml, size_t len, const char *name, int *rc)
{
	size_t offset = 0;
	char *out = NULL;
	int found = sm_xml_next(xml, len, name, &offset, &out);

	if (found < 0)
		*rc = found;
	return out;
}

void sm_s3_error_release(sm_s3_error *error)
{
	free(error->code);
	free(error->message);
	free(error->region);
	memset(error, 0, sizeof(*error));
}

int sm_s3_parse_error(const char *xml, size_t len, sm_s3_error *out)
{
	int rc = 0;

	memset(out, 0, sizeof(*out));
	if (!xml || !memmem(xml, len, "<Error>", 7))
		return 0;
	out->code = xml_first(xml, len, "Code", &rc);
	if (!rc)
		out->message = xml_first(xml, len, "Message", &rc);
	if (!rc)
		out->region = xml_first(xml, len, "Region", &rc);
	if (rc)
		sm_s3_error_release(out);
	return rc;
}

void sm_s3_list_page_release(sm_s3_list_page *page)
{
	sm_str_array_free(page->keys, page->nkeys);
	free(page->next_token);
	memset(page, 0, sizeof(*page));
}

int sm_s3_parse_list(const char *xml, size_t len, sm_s3_list_page *out)
{
	size_t offset = 0, cap = 0;
	char *key = NULL, *truncated = NULL;
	int rc = 0, found;

	memset(out, 0, sizeof(*out));
	if (!xml || !memmem(xml, len, "<ListBucketResult", 17))
		return sm_error_set(SM_EINVALID, "the listing is not a ListBucketResult");
	while ((found = sm_xml_next(xml, len, "Key", &offset, &key)) == 1) {
		if (out->nkeys == cap) {
			char **grown = realloc(out->keys, (cap = cap ? cap * 2 : 64) * sizeof(*grown));

			if (!grown) {
				free(key);
				rc = sm_error_set(SM_ENOMEM, "out of memory");
				goto done;
			}
			out->keys = grown;
		}
		out->keys[out->nkeys++] = key;
	}
	if (found < 0) {
		rc = found;
		goto done;
	}
	truncated = xml_first(xml, len, "IsTruncated", &rc);
	if (rc)
		goto done;
	out->truncated = truncated && strcmp(truncated, "true") == 0;
	if (out->truncated) {
		out->next_token = xml_first(xml, len, "NextContinuationToken", &rc);
		if (!rc && (!out->next_token || !*out->next_token))
			rc = sm_error_set(SM_EINVALID, "a truncated listing has no NextContinuationToken");
	}
done:
	free(truncated);
	if (rc)
		sm_s3_list_page_release(out);
	return rc;
}

int sm_s3_parse_upload_id(const char *xml, size_t len, char **upload_id)
{
	int rc = 0;

	*upload_id = NULL;
	if (!xml || !memmem(xml, len, "<InitiateMultipartUploadResult", 30))
		return sm_error_set(SM_EINVALID, "the response to CreateMultipartUpload is not an "
				    "InitiateMultipartUploadResult");
	*upload_id = xml_first(xml, len, "UploadId", &rc);
	if (rc)
		return rc;
	if (!*upload_id || !**upload_id || sm_has_control_chars(*upload_id) ||
	    strlen(*upload_id) > 1024) {
		free(*upload_id);
		*upload_id = NULL;
		return sm_error_set(SM_EINVALID, "CreateMultipartUpload returned no valid UploadId");
	}
	return 0;
}
