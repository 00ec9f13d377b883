/*
 * JSON output that matches Python's json.dumps(sort_keys=True,
 * ensure_ascii=False) byte for byte, because the bundle hash is a hash of
 * that text. Python escapes only '"', '\\' and the control characters
 * below 0x20. It writes \n \r \t \b \f by name and the other control
 * characters as \u00xx in lower-case hex. Everything else, '/' and
 * non-ASCII included, is written unchanged.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "bundle_internal.h"

static int write_string(sm_buf *out, const char *text, size_t len)
{
	size_t run = 0;
	int rc = sm_buf_putc(out, '"');

	for (size_t i = 0; i < len && !rc; i++) {
		unsigned char c = (unsigned char)text[i];
		char esc[8];

		if (c >= 0x20 && c != '"' && c != '\\')
			continue;
		/* flush the plain bytes before this one */
		rc = sm_buf_put(out, text + run, i - run);
		run = i + 1;
		if (rc)
			break;
		switch (c) {
		case '"': rc = sm_buf_puts(out, "\\\""); break;
		case '\\': rc = sm_buf_puts(out, "\\\\"); break;
		case '\n': rc = sm_buf_puts(out, "\\n"); break;
		case '\r': rc = sm_buf_puts(out, "\\r"); break;
		case '\t': rc = sm_buf_puts(out, "\\t"); break;
		case '\b': rc = sm_buf_puts(out, "\\b"); break;
		case '\f': rc = sm_buf_puts(out, "\\f"); break;
		default:
			snprintf(esc, sizeof(esc), "\\u%04x", c);
			rc = sm_buf_puts(out, esc);
		}
	}
	if (!rc)
		rc = sm_buf_put(out, text + run, len - run);
	return rc ? rc : sm_buf_putc(out, '"');
}

static size_t put_zeros(char *out, size_t pos, int count)
{
	for (int i = 0; i < count; i++)
		out[pos++] = '0';
	return pos;
}

void sm_json_format_real(double value, char out[32])
{
	char text[40], digits[24];
	int precision, exponent, ndigits = 0;
	size_t o = 0;
	const char *e;

	if (isnan(value)) {
		snprintf(out, 32, "NaN");
		return;
	}
	if (isinf(value)) {
		snprintf(out, 32, value < 0 ? "-Infinity" : "Infinity");
		return;
	}

	/* the shortest %e form that reads back as the same double, like repr() */
	for (precision = 1; precision < 17; precision++) {
		snprintf(text, sizeof(text), "%.*e", precision - 1, value);
		if (strtod(text, NULL) == value)
			break;
	}
	snprintf(text, sizeof(text), "%.*e", precision - 1, value);
	e = strchr(text, 'e');
	exponent = atoi(e + 1);
	for (const char *p = text; p < e; p++)
		if (*p >= '0' && *p <= '9')
			digits[ndigits++] = *p;
	while (ndigits > 1 && digits[ndigits - 1] == '0')
		ndigits--;

	if (signbit(value))
		out[o++] = '-';
	if (exponent < -4 || exponent >= 16) {
		/* repr() uses exponent notation below 1e-4 and from 1e16 on */
		out[o++] = digits[0];
		if (ndigits > 1) {
			out[o++] = '.';
			memcpy(out + o, digits + 1, (size_t)ndigits - 1);
			o += (size_t)ndigits - 1;
		}
		snprintf(out + o, 32 - o, "e%c%02d", exponent < 0 ? '-' : '+', abs(exponent));
		return;
	}
	if (exponent < 0) {
		out[o++] = '0';
		out[o++] = '.';
		o = put_zeros(out, o, -exponent - 1);
		memcpy(out + o, digits, (size_t)ndigits);
		o += (size_t)ndigits;
	} else if (ndigits > exponent + 1) {
		memcpy(out + o, digits, (size_t)exponent + 1);
		o += (size_t)exponent + 1;
		out[o++] = '.';
		memcpy(out + o, digits + exponent + 1, (size_t)(ndigits - exponent - 1));
		o += (size_t)(ndigits - exponent - 1);
	} else {
		memcpy(out + o, digits, (size_t)ndigits);
		o += (size_t)ndigits;
		o = put_zeros(out, o, exponent + 1 - ndigits);
		out[o++] = '.';
		out[o++] = '0';
	}
	out[o] = '\0';
}

static int write_newline(sm_buf *out, int indent, int level)
{
	int rc = sm_buf_putc(out, '\n');

	for (int i = 0; i < indent * level && !rc; i++)
		rc = sm_buf_putc(out, ' ');
	return rc;
}

static int compare_keys(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int write_value(const json_t *value, int indent, int level, const char *skip_key,
		       sm_buf *out);

static int write_object(const json_t *object, int indent, int level, const char *skip_key,
			sm_buf *out)
{
	size_t n = json_object_size(object), count = 0;
	const char **keys;
	const char *key;
	json_t *member;
	int rc = 0;

	keys = malloc((n ? n : 1) * sizeof(*keys));
	if (!keys)
		return sm_error_set(SM_ENOMEM, "out of memory");
	json_object_foreach((json_t *)object, key, member)
		if (!skip_key || strcmp(key, skip_key) != 0)
			keys[count++] = key;
	(void)member;
	qsort(keys, count, sizeof(*keys), compare_keys);

	rc = sm_buf_putc(out, '{');
	for (size_t i = 0; i < count && !rc; i++) {
		if (i)
			rc = sm_buf_putc(out, ',');
		if (!rc && indent >= 0)
			rc = write_newline(out, indent, level + 1);
		if (!rc)
			rc = write_string(out, keys[i], strlen(keys[i]));
		if (!rc)
			rc = sm_buf_puts(out, indent >= 0 ? ": " : ":");
		if (!rc)
			rc = write_value(json_object_get(object, keys[i]), indent, level + 1, NULL, out);
	}
	if (!rc && count && indent >= 0)
		rc = write_newline(out, indent, level);
	if (!rc)
		rc = sm_buf_putc(out, '}');
	free(keys);
	return rc;
}

static int write_array(const json_t *array, int indent, int level, sm_buf *out)
{
	size_t n = json_array_size(array);
	int rc = sm_buf_putc(out, '[');

	for (size_t i = 0; i < n && !rc; i++) {
		if (i)
			rc = sm_buf_putc(out, ',');
		if (!rc && indent >= 0)
			rc = write_newline(out, indent, level + 1);
		if (!rc)
			rc = write_value(json_array_get(array, i), indent, level + 1, NULL, out);
	}
	if (!rc && n && indent >= 0)
		rc = write_newline(out, indent, level);
	return rc ? rc : sm_buf_putc(out, ']');
}

static int write_value(const json_t *value, int indent, int level, const char *skip_key,
		       sm_buf *out)
{
	char number[32];

	switch (json_typeof(value)) {
	case JSON_OBJECT:
		return write_object(value, indent, level, skip_key, out);
	case JSON_ARRAY:
		return write_array(value, indent, level, out);
	case JSON_STRING:
		return write_string(out, json_string_value(value), json_string_length(value));
	case JSON_INTEGER:
		return sm_buf_printf(out, "%" JSON_INTEGER_FORMAT, json_integer_value(value));
	case JSON_REAL:
		sm_json_format_real(json_real_value(value), number);
		return sm_buf_puts(out, number);
	case JSON_TRUE:
		return sm_buf_puts(out, "true");
	case JSON_FALSE:
		return sm_buf_puts(out, "false");
	case JSON_NULL:
		return sm_buf_puts(out, "null");
	}
	return sm_error_set(SM_ERROR, "unknown JSON value type");
}

int sm_json_write_python(const json_t *value, int indent, const char *skip_key, sm_buf *out)
{
	return write_value(value, indent, 0, skip_key, out);
}

static int sha256_hex(const void *data, size_t len, char out[72])
{
	unsigned char digest[EVP_MAX_MD_SIZE];
	unsigned int digest_len = 0;

	if (!EVP_Digest(data, len, digest, &digest_len, EVP_sha256(), NULL))
		return sm_error_set(SM_ERROR, "SHA-256 failed");
	memcpy(out, SM_SHA256_PREFIX, 7);
	sm_hex(digest, digest_len, out + 7);
	return 0;
}

static int compare_strings(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int sm_manifest_hash_json(const json_t *manifest, char out[72])
{
	sm_buf text = SM_BUF_INIT(0);
	const json_t *artifacts = json_object_get(manifest, "artifacts");
	const char **hashes = NULL;
	size_t n = 0;
	int rc;

	if (!json_is_object(manifest))
		return sm_error_set(SM_EINVALID, "the manifest is not a JSON object");
	if (artifacts && !json_is_array(artifacts))
		return sm_error_set(SM_EINVALID, "the manifest's \"artifacts\" is not an array");
	n = json_array_size(artifacts);
	hashes = malloc((n ? n : 1) * sizeof(*hashes));
	if (!hashes)
		return sm_error_set(SM_ENOMEM, "out of memory");
	for (size_t i = 0; i < n; i++) {
		const json_t *hash = json_object_get(json_array_get(artifacts, i), "hash");

		if (!json_is_string(hash)) {
			rc = sm_error_set(SM_EINVALID, "artifact %zu of the manifest has no "
					  "\"hash\" string", i);
			goto done;
		}
		hashes[i] = json_string_value(hash);
	}
	qsort(hashes, n, sizeof(*hashes), compare_strings);

	/* manifest hash: the compact sorted text without "bundle_hash" */
	rc = sm_json_write_python(manifest, -1, "bundle_hash", &text);
	if (rc)
		goto done;
	rc = sha256_hex(text.data, text.len, out);
	if (rc)
		goto done;

	/* bundle hash: the manifest hash followed by the sorted artifact hashes */
	sm_buf_release(&text);
	rc = sm_buf_put(&text, out, SM_HASH_STRLEN);
	for (size_t i = 0; i < n && !rc; i++)
		rc = sm_buf_puts(&text, hashes[i]);
	if (!rc)
		rc = sha256_hex(text.data, text.len, out);
done:
	sm_buf_release(&text);
	free(hashes);
	return rc;
}

int sm_manifest_bundle_hash(const char *manifest_json, size_t len, char out[72])
{
	json_error_t error;
	json_t *root;
	int rc;

	out[0] = '\0';
	root = json_loadb(manifest_json, len, JSON_REJECT_DUPLICATES, &error);
	if (!root)
		return sm_error_set(SM_EINVALID, "invalid manifest JSON at line %d: %s",
				    error.line, error.text);
	rc = sm_manifest_hash_json(root, out);
	json_decref(root);
	return rc;
}
