/*
 * A small JSON reader for the flat credential documents of
 * credential_process, the container endpoint and the instance metadata
 * service. It exists so decoded secret strings go straight into
 * sodium_malloc() memory: a general parser would leave copies in heap
 * memory that is freed without being wiped.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <string.h>

#include <sodium.h>

#include "credentials/aws.h"
#include "credentials/credentials_internal.h"
#include "util/util.h"

/* Nesting depth at which skipped values are rejected. */
#define JSON_DEPTH_MAX 32

typedef struct json_reader {
	const char *p;
	const char *end;
} json_reader;

static void skip_space(json_reader *r)
{
	while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r'))
		r->p++;
}

static int hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static int read_hex4(json_reader *r, unsigned *out)
{
	unsigned v = 0;

	if (r->end - r->p < 4)
		return -1;
	for (int i = 0; i < 4; i++) {
		int h = hex_value(r->p[i]);

		if (h < 0)
			return -1;
		v = v * 16 + (unsigned)h;
	}
	r->p += 4;
	*out = v;
	return 0;
}

static size_t put_utf8(unsigned cp, char *out)
{
	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (char)(0xc0 | (cp >> 6));
		out[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (char)(0xe0 | (cp >> 12));
		out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		out[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	out[0] = (char)(0xf0 | (cp >> 18));
	out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
	out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
	out[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

/*
 * Reads a string starting at the opening quote. With `out` NULL it only
 * skips; otherwise the decoded text goes into `out`, which has room for
 * the raw length (decoding never grows a string).
 */
static int read_string(json_reader *r, char *out, size_t *out_len)
{
	size_t n = 0;

	if (r->p >= r->end || *r->p != '"')
		return -1;
	r->p++;
	while (r->p < r->end && *r->p != '"') {
		unsigned char c = (unsigned char)*r->p++;
		unsigned cp;
		char utf8[4];
		size_t len;

		if (c < 0x20)
			return -1;
		if (c != '\\') {
			if (out)
				out[n] = (char)c;
			n++;
			continue;
		}
		if (r->p >= r->end)
			return -1;
		c = (unsigned char)*r->p++;
		switch (c) {
		case '"': case '\\': case '/': cp = c; break;
		case 'b': cp = '\b'; break;
		case 'f': cp = '\f'; break;
		case 'n': cp = '\n'; break;
		case 'r': cp = '\r'; break;
		case 't': cp = '\t'; break;
		case 'u':
			if (read_hex4(r, &cp))
				return -1;
			if (cp >= 0xd800 && cp <= 0xdbff) {
				unsigned low;

				if (r->end - r->p < 2 || r->p[0] != '\\' || r->p[1] != 'u')
					return -1;
				r->p += 2;
				if (read_hex4(r, &low) || low < 0xdc00 || low > 0xdfff)
					return -1;
				cp = 0x10000 + ((cp - 0xd800) << 10) + (low - 0xdc00);
			} else if (cp >= 0xdc00 && cp <= 0xdfff) {
				return -1;
			}
			if (cp == 0)
				return -1; /* a NUL would cut the C string short */
			break;
		default:
			return -1;
		}
		len = put_utf8(cp, utf8);
		if (out)
			memcpy(out + n, utf8, len);
		sodium_memzero(utf8, sizeof(utf8));
		n += len;
	}
	if (r->p >= r->end)
		return -1;
	r->p++;
	if (out)
		out[n] = '\0';
	if (out_len)
		*out_len = n;
	return 0;
}

/* Skips a number, true, false or null; `*start` and `*len` give its text. */
static int read_scalar(json_reader *r, const char **start, size_t *len)
{
	const char *s = r->p;

	if (r->end - r->p >= 4 && memcmp(r->p, "true", 4) == 0)
		r->p += 4;
	else if (r->end - r->p >= 5 && memcmp(r->p, "false", 5) == 0)
		r->p += 5;
	else if (r->end - r->p >= 4 && memcmp(r->p, "null", 4) == 0)
		r->p += 4;
	else {
		if (r->p < r->end && *r->p == '-')
			r->p++;
		if (r->p >= r->end || *r->p < '0' || *r->p > '9')
			return -1;
		while (r->p < r->end && ((*r->p >= '0' && *r->p <= '9') || *r->p == '.' ||
					 *r->p == 'e' || *r->p == 'E' || *r->p == '+' || *r->p == '-'))
			r->p++;
	}
	*start = s;
	*len = (size_t)(r->p - s);
	return 0;
}

static int skip_value(json_reader *r, int depth)
{
	const char *start;
	size_t len;
	char close;

	skip_space(r);
	if (r->p >= r->end)
		return -1;
	if (*r->p == '"')
		return read_string(r, NULL, NULL);
	if (*r->p != '{' && *r->p != '[')
		return read_scalar(r, &start, &len);
	if (depth >= JSON_DEPTH_MAX)
		return -1;
	close = *r->p == '{' ? '}' : ']';
	r->p++;
	skip_space(r);
	if (r->p < r->end && *r->p == close) {
		r->p++;
		return 0;
	}
	for (;;) {
		if (close == '}') {
			skip_space(r);
			if (read_string(r, NULL, NULL))
				return -1;
			skip_space(r);
			if (r->p >= r->end || *r->p++ != ':')
				return -1;
		}
		if (skip_value(r, depth + 1))
			return -1;
		skip_space(r);
		if (r->p >= r->end)
			return -1;
		if (*r->p == close) {
			r->p++;
			return 0;
		}
		if (*r->p++ != ',')
			return -1;
	}
}

/* Reads one member's value into `*value` (secret memory). */
static int read_member_value(json_reader *r, char **value)
{
	const char *start = r->p;
	size_t len;
	char *copy;

	if (*r->p == '"') {
		/* measure first, then decode straight into secret memory */
		if (read_string(r, NULL, &len))
			return -1;
		copy = sm_aws_secret_alloc((size_t)(r->p - start));
		if (!copy)
			return SM_ENOMEM;
		r->p = start;
		if (read_string(r, copy, &len)) {
			sm_secret_free(copy);
			return -1;
		}
		*value = copy;
		return 0;
	}
	if (*r->p == '{' || *r->p == '[')
		return -1;
	if (read_scalar(r, &start, &len))
		return -1;
	copy = sm_secret_dup(start, len);
	if (!copy)
		return SM_ENOMEM;
	*value = copy;
	return 0;
}

int sm_aws_json_members(const char *text, size_t len, const char *const names[],
			char *values[], size_t n)
{
	json_reader r = { text, text + len };
	char name[64];
	int rc = SM_EINVALID;

	for (size_t i = 0; i < n; i++)
		values[i] = NULL;
	skip_space(&r);
	if (r.p >= r.end || *r.p++ != '{')
		goto done;
	skip_space(&r);
	if (r.p < r.end && *r.p == '}') {
		r.p++;
		goto tail;
	}
	for (;;) {
		const char *key_start;
		size_t key_len, match = n;

		skip_space(&r);
		key_start = r.p;
		if (read_string(&r, NULL, &key_len))
			goto done;
		if (key_len < sizeof(name)) {
			r.p = key_start;
			if (read_string(&r, name, &key_len))
				goto done;
			for (size_t i = 0; i < n; i++)
				if (strlen(names[i]) == key_len && memcmp(names[i], name, key_len) == 0)
					match = i;
		}
		skip_space(&r);
		if (r.p >= r.end || *r.p++ != ':')
			goto done;
		skip_space(&r);
		if (r.p >= r.end)
			goto done;
		if (match < n) {
			int value_rc;

			if (values[match])
				goto done; /* a second copy could override what a check saw */
			value_rc = read_member_value(&r, &values[match]);
			if (value_rc) {
				if (value_rc == SM_ENOMEM)
					rc = SM_ENOMEM;
				goto done;
			}
		} else if (skip_value(&r, 1)) {
			goto done;
		}
		skip_space(&r);
		if (r.p >= r.end)
			goto done;
		if (*r.p == '}') {
			r.p++;
			break;
		}
		if (*r.p++ != ',')
			goto done;
	}
tail:
	skip_space(&r);
	if (r.p == r.end)
		rc = 0;
done:
	if (rc) {
		for (size_t i = 0; i < n; i++) {
			sm_secret_free(values[i]);
			values[i] = NULL;
		}
		if (rc == SM_EINVALID)
			sm_error_set(rc, "invalid JSON");
	}
	return rc;
}
