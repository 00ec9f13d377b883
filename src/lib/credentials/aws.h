/*
 * AWS credentials for the S3 connector: the chain that finds an access
 * key, and the pieces it is built from (shared config files,
 * credential_process, container and instance metadata endpoints).
 *
 * The chain, first source with credentials wins:
 *   1. the vault's stored credentials (sm_credentials_lookup(): username is
 *      the access key id, password the secret access key, plus
 *      session_token);
 *   2. AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN;
 *   3. the profile in ~/.aws/credentials and ~/.aws/config (the vault's
 *      `profile` setting, else AWS_PROFILE, else "default"), including
 *      credential_process;
 *   4. the container endpoint (AWS_CONTAINER_CREDENTIALS_FULL_URI or
 *      AWS_CONTAINER_CREDENTIALS_RELATIVE_URI);
 *   5. the instance metadata service, IMDSv2 only.
 * docs/aws-credentials.md describes every variable and timeout.
 */
#ifndef SM_CREDENTIALS_AWS_H
#define SM_CREDENTIALS_AWS_H

#include <stddef.h>

#include "skillmeat/common.h"
#include "skillmeat/config.h"

/*
 * One set of AWS credentials. The three strings live in sodium_malloc()
 * memory; sm_aws_credentials_clear() wipes and frees them.
 */
typedef struct sm_aws_credentials {
	char *access_key_id;
	char *secret_access_key;
	char *session_token;    /* NULL when none */
	long long expires_at;   /* Unix seconds, 0 = never */
	char source[64];        /* where they came from, e.g. "environment" */
} sm_aws_credentials;

/*
 * Walks the chain for `config` (`callbacks` may be NULL) and fills `*out`.
 * Earlier content of `*out` is overwritten without being freed, so clear
 * credentials with sm_aws_credentials_clear() before resolving them again. Fails with SM_EAUTH "no AWS credentials
 * found; ..." listing every source tried, or with the error of the first
 * source that is configured but broken (partial environment variables, a
 * profile without a secret, a failing credential_process, a container
 * endpoint that rejects its token). On failure `*out` contains nothing.
 * One debug message names the source used, never a value.
 */
int sm_aws_credentials_resolve(const sm_vault_config *config, const sm_callbacks *callbacks,
			       sm_aws_credentials *out);

/* Wipes and frees the strings and zeroes `*creds`. NULL is ignored. */
void sm_aws_credentials_clear(sm_aws_credentials *creds);

/* Returns 1 when `creds` expire within `margin_seconds` from now, else 0. */
int sm_aws_credentials_expiring(const sm_aws_credentials *creds, int margin_seconds);

/* ---- internal to src/lib/credentials/aws*.c and their tests ---- */

/* Maximum size of a response or of credential_process output, in bytes. */
#define SM_AWS_RESPONSE_MAX 65536

/* Default and maximum seconds that credential_process may run. */
#define SM_AWS_PROCESS_TIMEOUT 60
#define SM_AWS_PROCESS_TIMEOUT_MAX 3600

/*
 * Parses an ISO 8601 UTC time such as "2026-12-04T23:00:00Z",
 * "2026-12-04T23:00:00.123Z" or "2026-12-04T23:00:00+01:00" into Unix
 * seconds. Returns 0 or SM_EINVALID (no message set).
 */
int sm_aws_parse_time(const char *text, long long *out);

/*
 * Reads the top-level members `names[0..n-1]` of the JSON object in
 * `text` (`len` bytes). String members are decoded into sodium_malloc()
 * memory; numbers and booleans are stored as their text. Other members are
 * skipped, nested values included. `values[i]` is NULL for a missing
 * member. A member given twice fails, and so does an object or array
 * where a wanted member's value should be. Returns 0 or SM_EINVALID with a
 * message that names no value; on failure every value is NULL.
 */
int sm_aws_json_members(const char *text, size_t len, const char *const names[],
			char *values[], size_t n);

/*
 * Fills `out` from the members of a credentials document: AccessKeyId,
 * SecretAccessKey, Token or SessionToken, Expiration. `what` names the
 * document in messages ("credential_process of profile 'p'"). When
 * `need_version` is set the document must contain "Version": 1, as
 * credential_process output does. Returns 0, or SM_EAUTH / SM_EINVALID.
 */
int sm_aws_credentials_from_json(const char *text, size_t len, const char *what,
				 int need_version, sm_aws_credentials *out);

/*
 * Splits a credential_process command line into words the way a POSIX
 * shell does for quotes and backslashes: blanks separate words, '...'
 * keeps everything literally, "..." keeps everything except \" \\ \$ \`
 * and backslash-newline, and an unquoted backslash escapes the next byte.
 * No expansion of variables, globs or '~' happens. `*argv_out` is a
 * NULL-terminated array; free it with sm_str_array_free(argv, *argc + 1).
 * Fails with SM_EINVALID on an unterminated quote or an empty command.
 */
int sm_aws_split_command(const char *command, char ***argv_out, size_t *argc);

/*
 * Allocates `size` + 1 bytes of sodium_malloc() memory, zeroed, for a
 * secret; free with sm_secret_free(). NULL with SM_ENOMEM set on failure.
 */
char *sm_aws_secret_alloc(size_t size);

/* How a shared-config source ended when it did not fill `out`. */
enum {
	SM_AWS_NONE = 1 /* the source has no credentials; the chain goes on */
};

/*
 * Looks up `profile` in the shared credentials and config files.
 * `explicit_profile` is set when the vault or AWS_PROFILE named it, so a
 * missing profile is an error instead of a reason to go on. Returns 0
 * with `out` filled, SM_AWS_NONE, or a negative error. `tried` receives a
 * short description for the final "no credentials found" message.
 */
int sm_aws_profile_resolve(const char *profile, int explicit_profile,
			   const sm_vault_config *config, sm_aws_credentials *out,
			   char *tried, size_t tried_size);

/* Container endpoint: 0 with `out` filled, SM_AWS_NONE when not configured, or an error. */
int sm_aws_container_resolve(sm_aws_credentials *out, char *tried, size_t tried_size);

/* IMDSv2: 0 with `out` filled, SM_AWS_NONE when disabled or not answering, or an error. */
int sm_aws_imds_resolve(sm_aws_credentials *out, char *tried, size_t tried_size);

#endif
