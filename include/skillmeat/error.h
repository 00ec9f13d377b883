/*
 * Error codes and the per-thread error message.
 *
 * Every library function that can fail returns 0 on success or one of the
 * negative codes below. The function that understands a failure sets the
 * message once with sm_error_set(); callers pass the code up unchanged and
 * read the text with sm_error_message().
 */
#ifndef SKILLMEAT_ERROR_H
#define SKILLMEAT_ERROR_H

#ifdef __cplusplus
extern "C" {
#endif

/** Result codes. 0 is success; every failure is negative. */
typedef enum sm_error_code {
	SM_OK = 0,
	SM_ERROR = -1,      /**< any failure without a more specific code */
	SM_ENOMEM = -2,     /**< memory allocation failed */
	SM_ENOTFOUND = -3,  /**< bundle, vault, file or key not found */
	SM_EEXISTS = -4,    /**< the object already exists */
	SM_EAUTH = -5,      /**< authentication failed or credentials missing */
	SM_EREADONLY = -6,  /**< read-only vault or permission denied */
	SM_ENETWORK = -7,   /**< network failure: connect, timeout, reset */
	SM_EINVALID = -8,   /**< invalid input: arguments, config, bundle shape */
	SM_EINTEGRITY = -9, /**< a hash or size does not match */
	SM_ECONFLICT = -10, /**< a concurrent change won a race */
	SM_EIO = -11,       /**< local file system failure */
	SM_EUNSUPPORTED = -12 /**< the connector lacks the capability */
} sm_error_code;

/**
 * Returns the message of the last failure on this thread, or "" when none
 * was set. The string stays valid until the next sm_error_set() or
 * sm_error_clear() on the same thread.
 */
const char *sm_error_message(void);

/** Returns the code stored with the last message on this thread. */
int sm_error_last_code(void);

/**
 * Sets this thread's error message (printf format) and returns `code`, so a
 * failure can be reported as `return sm_error_set(SM_EINVALID, "...")`.
 * Messages are one line, start in lower case and end without a period.
 */
int sm_error_set(int code, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/** Like sm_error_set(), with ": strerror(errnum)" appended. */
int sm_error_set_errno(int code, int errnum, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/**
 * Puts a formatted prefix and ": " before this thread's current message,
 * stores `code` with it and returns `code`.
 */
int sm_error_wrap(int code, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/** Forgets this thread's message. */
void sm_error_clear(void);

/** Returns a short name for a code ("not found", "integrity", ...). */
const char *sm_error_name(int code);

#ifdef __cplusplus
}
#endif

#endif
