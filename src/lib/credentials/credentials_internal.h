/* Internal parts of the credential stores: secret memory, the sealed file, the keychain. */
#ifndef SM_CREDENTIALS_INTERNAL_H
#define SM_CREDENTIALS_INTERNAL_H

#include <stddef.h>

#include "skillmeat/credentials.h"

/* Maximum length of one field value, in bytes. */
#define SM_CRED_VALUE_MAX 65536

/* Maximum size of the sealed file, in bytes. */
#define SM_CRED_FILE_MAX (4u * 1024 * 1024)

/*
 * Copies `len` bytes of `value` into new locked, wiped-on-free memory with a
 * NUL after them. Returns NULL (SM_ENOMEM set) on failure.
 */
char *sm_secret_dup(const char *value, size_t len);

/* Wipes and frees what sm_secret_dup() returned. NULL is ignored. */
void sm_secret_free(char *secret);

/* Wipes and frees every non-NULL entry of `values` and sets it to NULL. */
void sm_secret_array_free(char *values[SM_CRED_NFIELDS]);

/*
 * Reads the passphrase of the sealed file: the first line of
 * `passphrase_file`, else SKILLMEAT_CREDENTIALS_PASSPHRASE, else the first
 * line of the file named by SKILLMEAT_CREDENTIALS_PASSPHRASE_FILE. `*out`
 * is NULL when none is set (key-file mode).
 */
int sm_cred_passphrase(const char *passphrase_file, char **out);

/* Existence and key mode of the sealed file. */
typedef struct sm_sealed_info {
	int exists;        /* the file exists */
	int passphrase;    /* it is sealed with a passphrase */
} sm_sealed_info;

/*
 * Opens $home/credentials and copies the fields of `vault` into `values`
 * (secret memory, NULL when absent). A missing file succeeds with every
 * value NULL. `info` may be NULL.
 */
int sm_sealed_lookup(const char *home, const char *passphrase, const char *vault,
		     char *values[SM_CRED_NFIELDS], sm_sealed_info *info);

/*
 * Rewrites $home/credentials under its lock: the fields of `vault` that are
 * non-NULL in `values` replace the stored ones, or, when `remove` is set,
 * every field of `vault` is deleted. Creates the file (and the key file in
 * key-file mode) when missing. `*changed` (may be NULL) receives the number
 * of fields written or deleted.
 */
int sm_sealed_update(const char *home, const char *passphrase, const char *vault,
		     const char *const values[SM_CRED_NFIELDS], int remove, int *changed);

/*
 * Connects to the Secret Service. Returns 1 when it responds and its default
 * collection is unlocked, else 0 with a short reason in `reason`. Gives up
 * after a short D-Bus timeout.
 */
int sm_keychain_available(char *reason, size_t size);

/* Copies the stored fields of `vault` into `values` (secret memory). */
int sm_keychain_lookup(const char *vault, char *values[SM_CRED_NFIELDS]);

/* Sets bit (1u << field) in `*mask` for each field of `vault` the keychain holds. */
int sm_keychain_fields(const char *vault, unsigned int *mask);

/* Stores the non-NULL `values` of `vault`, replacing existing items. */
int sm_keychain_store(const char *vault, const char *const values[SM_CRED_NFIELDS]);

/* Deletes every item of `vault`; `*removed` receives how many. */
int sm_keychain_remove(const char *vault, int *removed);

#endif
