/*
 * Types shared by every part of the library: key/value pairs and the
 * callbacks through which the library reports progress and messages.
 * The library never prints; a program that wants output sets callbacks.
 */
#ifndef SKILLMEAT_COMMON_H
#define SKILLMEAT_COMMON_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SKILLMEAT_VERSION "0.1.0"

/** One string key with its string value. */
typedef struct sm_kv {
	char *key;
	char *value;
} sm_kv;

/** Severity of a message sent to sm_callbacks.message. */
typedef enum sm_log_level {
	SM_LOG_DEBUG = 0, /**< shown with --verbose only */
	SM_LOG_INFO = 1,  /**< normal progress notes */
	SM_LOG_WARN = 2   /**< something the user should know about */
} sm_log_level;

/**
 * Callbacks that carry progress and messages out of the library.
 * Every member may be NULL. `payload` is passed back unchanged.
 */
typedef struct sm_callbacks {
	/** Reports `done` of `total` bytes transferred; total is 0 when unknown. */
	void (*progress)(uint64_t done, uint64_t total, void *payload);
	/** Reports one line of text (no trailing newline). */
	void (*message)(sm_log_level level, const char *text, void *payload);
	void *payload;
} sm_callbacks;

/** Frees an array of n key/value pairs and the array itself. */
void sm_kv_array_free(sm_kv *pairs, size_t n);

/** Frees an array of n strings and the array itself. */
void sm_str_array_free(char **strings, size_t n);

#ifdef __cplusplus
}
#endif

#endif
