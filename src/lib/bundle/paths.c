/* Rules for names and paths found in bundles, and quoting for messages. */
#include <stdio.h>
#include <string.h>

#include "bundle_internal.h"

int sm_utf8_valid(const char *text, size_t len)
{
	const unsigned char *p = (const unsigned char *)text;
	const unsigned char *end = p + len;

	while (p < end) {
		unsigned char c = *p;
		size_t extra;
		uint32_t cp;

		if (c < 0x80) {
			p++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			extra = 1;
			cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			extra = 2;
			cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			extra = 3;
			cp = c & 0x07;
		} else {
			return 0;
		}
		if ((size_t)(end - p) <= extra)
			return 0;
		for (size_t i = 1; i <= extra; i++) {
			if ((p[i] & 0xc0) != 0x80)
				return 0;
			cp = (cp << 6) | (p[i] & 0x3f);
		}
		/* overlong forms, surrogates and values past U+10FFFF */
		if ((extra == 2 && cp < 0x800) || (extra == 3 && cp < 0x10000) ||
		    (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
			return 0;
		p += extra + 1;
	}
	return 1;
}

size_t sm_utf8_length(const char *text)
{
	size_t n = 0;

	for (const unsigned char *p = (const unsigned char *)text; *p; p++)
		if ((*p & 0xc0) != 0x80)
			n++;
	return n;
}

int sm_name_valid(const char *name)
{
	size_t len = 0;

	for (const char *p = name; *p; p++, len++) {
		char c = *p;

		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		      (c >= '0' && c <= '9') || c == '-' || c == '_'))
			return 0;
	}
	return len >= 1 && len <= 100;
}

const char *sm_path_problem(const char *path, size_t len)
{
	size_t start = 0;

	if (len == 0)
		return "is empty";
	if (len > SM_BUNDLE_PATH_MAX)
		return "is longer than 4096 bytes";
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)path[i];

		if (c == 0)
			return "contains a NUL byte";
		if (c < 0x20 || c == 0x7f)
			return "contains a control character";
		if (c == '\\')
			return "contains a backslash";
	}
	if (!sm_utf8_valid(path, len))
		return "is not valid UTF-8";
	if (path[0] == '/')
		return "is an absolute path";
	if (path[len - 1] == '/')
		return "ends with '/'";

	/* every component between slashes */
	for (size_t i = 0; i <= len; i++) {
		size_t clen;

		if (i < len && path[i] != '/')
			continue;
		clen = i - start;
		if (clen == 0)
			return "has an empty path component";
		if (clen == 1 && path[start] == '.')
			return "has a '.' component";
		if (clen == 2 && path[start] == '.' && path[start + 1] == '.')
			return "has a '..' component";
		if (clen > SM_BUNDLE_COMPONENT_MAX)
			return "has a component longer than 255 bytes";
		start = i + 1;
	}
	return NULL;
}

static int digits(const char *p, int n)
{
	for (int i = 0; i < n; i++)
		if (p[i] < '0' || p[i] > '9')
			return 0;
	return 1;
}

static int number(const char *p, int n)
{
	int v = 0;

	for (int i = 0; i < n; i++)
		v = v * 10 + (p[i] - '0');
	return v;
}

int sm_iso8601_valid(const char *text)
{
	const char *p = text;

	/* date: YYYY-MM-DD */
	if (strlen(p) < 10 || !digits(p, 4) || p[4] != '-' || !digits(p + 5, 2) ||
	    p[7] != '-' || !digits(p + 8, 2))
		return 0;
	if (number(p + 5, 2) < 1 || number(p + 5, 2) > 12 ||
	    number(p + 8, 2) < 1 || number(p + 8, 2) > 31)
		return 0;
	p += 10;
	if (!*p)
		return 1;

	/* time: HH:MM[:SS[.fraction]] */
	if (*p != 'T' && *p != ' ')
		return 0;
	p++;
	if (!digits(p, 2) || p[2] != ':' || !digits(p + 3, 2) ||
	    number(p, 2) > 23 || number(p + 3, 2) > 59)
		return 0;
	p += 5;
	if (*p == ':') {
		if (!digits(p + 1, 2) || number(p + 1, 2) > 59)
			return 0;
		p += 3;
		if (*p == '.') {
			int n = 0;

			for (p++; *p >= '0' && *p <= '9'; p++)
				n++;
			if (n < 1 || n > 9)
				return 0;
		}
	}

	/* offset: Z or +HH:MM / -HH:MM */
	if (*p == 'Z')
		return p[1] == '\0';
	if (*p == '+' || *p == '-') {
		p++;
		return digits(p, 2) && p[2] == ':' && digits(p + 3, 2) && p[5] == '\0' &&
		       number(p, 2) <= 23 && number(p + 3, 2) <= 59;
	}
	return *p == '\0';
}

void sm_quote_bytes(const char *name, size_t len, char *out, size_t out_size)
{
	size_t o = 0;

	if (out_size == 0)
		return;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)name[i];
		char piece[8];
		size_t plen;

		if (c < 0x20 || c == 0x7f || c == '\\')
			plen = (size_t)snprintf(piece, sizeof(piece), "\\x%02x", c);
		else {
			piece[0] = (char)c;
			plen = 1;
		}
		/* keep room for "..." and the NUL */
		if (o + plen + 4 > out_size) {
			memcpy(out + o, "...", 3);
			o += 3;
			break;
		}
		memcpy(out + o, piece, plen);
		o += plen;
	}
	out[o] = '\0';
}
