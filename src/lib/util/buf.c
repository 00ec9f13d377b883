/* Growable buffer with a size cap, and small string helpers. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/time.h>

#include "util.h"

static int buf_reserve(sm_buf *buf, size_t extra)
{
	size_t need, cap;
	char *data;

	if (extra > SIZE_MAX - buf->len - 1)
		return sm_error_set(SM_ENOMEM, "buffer size overflow");
	need = buf->len + extra + 1;
	if (buf->max && need - 1 > buf->max)
		return sm_error_set(SM_EINVALID, "data exceeds the limit of %zu bytes", buf->max);
	if (need <= buf->cap)
		return 0;
	cap = buf->cap ? buf->cap : 64;
	while (cap < need)
		cap = cap > SIZE_MAX / 2 ? need : cap * 2;
	data = realloc(buf->data, cap);
	if (!data)
		return sm_error_set(SM_ENOMEM, "out of memory");
	buf->data = data;
	buf->cap = cap;
	return 0;
}

int sm_buf_put(sm_buf *buf, const void *data, size_t len)
{
	int rc = buf_reserve(buf, len);

	if (rc)
		return rc;
	if (len)
		memcpy(buf->data + buf->len, data, len);
	buf->len += len;
	buf->data[buf->len] = '\0';
	return 0;
}

int sm_buf_puts(sm_buf *buf, const char *text)
{
	return sm_buf_put(buf, text, strlen(text));
}

int sm_buf_putc(sm_buf *buf, char c)
{
	return sm_buf_put(buf, &c, 1);
}

int sm_buf_printf(sm_buf *buf, const char *fmt, ...)
{
	va_list ap;
	int n, rc;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return sm_error_set(SM_ERROR, "invalid format");
	rc = buf_reserve(buf, (size_t)n);
	if (rc)
		return rc;
	va_start(ap, fmt);
	vsnprintf(buf->data + buf->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	buf->len += (size_t)n;
	return 0;
}

char *sm_buf_take(sm_buf *buf)
{
	char *data;

	if (!buf->data) {
		if (buf_reserve(buf, 0))
			return NULL;
		buf->data[0] = '\0'; /* an empty buffer is still a valid string */
	}
	data = buf->data;
	buf->data = NULL;
	buf->len = buf->cap = 0;
	return data;
}

void sm_buf_release(sm_buf *buf)
{
	free(buf->data);
	buf->data = NULL;
	buf->len = buf->cap = 0;
}

char *sm_strdup(const char *text)
{
	char *copy;

	if (!text)
		return NULL;
	copy = strdup(text);
	if (!copy)
		sm_error_set(SM_ENOMEM, "out of memory");
	return copy;
}

char *sm_strndup(const char *text, size_t len)
{
	char *copy = strndup(text, len);

	if (!copy)
		sm_error_set(SM_ENOMEM, "out of memory");
	return copy;
}

char *sm_asprintf(const char *fmt, ...)
{
	va_list ap;
	char *out = NULL;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&out, fmt, ap);
	va_end(ap);
	if (n < 0) {
		sm_error_set(SM_ENOMEM, "out of memory");
		return NULL;
	}
	return out;
}

char *sm_path_join(const char *dir, const char *name)
{
	size_t len = strlen(dir);

	if (len && dir[len - 1] == '/')
		return sm_asprintf("%s%s", dir, name);
	return sm_asprintf("%s/%s", dir, name);
}

int sm_has_control_chars(const char *text)
{
	for (const unsigned char *p = (const unsigned char *)text; *p; p++)
		if (*p < 0x20 || *p == 0x7f)
			return 1;
	return 0;
}

void sm_time_iso8601(int64_t seconds, char out[32])
{
	time_t t = (time_t)seconds;
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
}

void sm_now_iso8601(char out[32])
{
	struct timespec ts;
	size_t len;

	clock_gettime(CLOCK_REALTIME, &ts);
	sm_time_iso8601(ts.tv_sec, out);
	len = strlen(out);
	snprintf(out + len, 32 - len, ".%06ld", ts.tv_nsec / 1000);
}

void sm_hex(const unsigned char *digest, size_t len, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < len; i++) {
		out[2 * i] = digits[digest[i] >> 4];
		out[2 * i + 1] = digits[digest[i] & 15];
	}
	out[2 * len] = '\0';
}

void sm_kv_array_free(sm_kv *pairs, size_t n)
{
	if (!pairs)
		return;
	for (size_t i = 0; i < n; i++) {
		free(pairs[i].key);
		free(pairs[i].value);
	}
	free(pairs);
}

void sm_str_array_free(char **strings, size_t n)
{
	if (!strings)
		return;
	for (size_t i = 0; i < n; i++)
		free(strings[i]);
	free(strings);
}
