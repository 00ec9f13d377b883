/* Per-thread error message storage. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "skillmeat/error.h"

static _Thread_local char message[1024];
static _Thread_local int last_code;

static void format_message(const char *fmt, va_list ap)
{
	vsnprintf(message, sizeof(message), fmt, ap);
	/* keep messages on one line whatever the inputs held */
	for (char *p = message; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
}

const char *sm_error_message(void)
{
	return message;
}

int sm_error_last_code(void)
{
	return last_code;
}

int sm_error_set(int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	format_message(fmt, ap);
	va_end(ap);
	last_code = code;
	return code;
}

int sm_error_set_errno(int code, int errnum, const char *fmt, ...)
{
	va_list ap;
	size_t len;

	va_start(ap, fmt);
	format_message(fmt, ap);
	va_end(ap);
	len = strlen(message);
	snprintf(message + len, sizeof(message) - len, ": %s", strerror(errnum));
	last_code = code;
	return code;
}

int sm_error_wrap(int code, const char *fmt, ...)
{
	char previous[sizeof(message)];
	size_t len;
	va_list ap;

	/* the old text is copied first because the new one overwrites it */
	memcpy(previous, message, sizeof(previous));
	va_start(ap, fmt);
	format_message(fmt, ap);
	va_end(ap);
	len = strlen(message);
	snprintf(message + len, sizeof(message) - len, ": %s", previous);
	last_code = code;
	return code;
}

void sm_error_clear(void)
{
	message[0] = '\0';
	last_code = 0;
}

const char *sm_error_name(int code)
{
	switch (code) {
	case SM_OK: return "ok";
	case SM_ENOMEM: return "out of memory";
	case SM_ENOTFOUND: return "not found";
	case SM_EEXISTS: return "already exists";
	case SM_EAUTH: return "authentication";
	case SM_EREADONLY: return "read-only";
	case SM_ENETWORK: return "network";
	case SM_EINVALID: return "invalid input";
	case SM_EINTEGRITY: return "integrity";
	case SM_ECONFLICT: return "conflict";
	case SM_EIO: return "i/o";
	case SM_EUNSUPPORTED: return "unsupported";
	default: return "error";
	}
}
