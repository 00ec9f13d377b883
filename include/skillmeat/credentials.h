/*
 * Credentials of vaults: user names, passwords or tokens, SSH key paths,
 * S3 access keys.
 *
 * A lookup walks a chain of stores and takes each field from the first
 * store that contains it:
 *   1. environment variables SKILLMEAT_VAULT_<NAME>_USERNAME, _PASSWORD,
 *      _SSH_KEY and _SESSION_TOKEN, where <NAME> is the vault name in
 *      upper case with '-' and '.' written as '_';
 *   2. the OS keychain through the Secret Service API (libsecret), one item
 *      per vault and field;
 *   3. the sealed file $SKILLMEAT_HOME/credentials, encrypted with
 *      XChaCha20-Poly1305. Its key is either 32 random bytes in
 *      $SKILLMEAT_HOME/credentials.key, or derived with Argon2id from the
 *      passphrase in SKILLMEAT_CREDENTIALS_PASSPHRASE (or the file named by
 *      SKILLMEAT_CREDENTIALS_PASSPHRASE_FILE or sm_cred_opts.passphrase_file),
 *      in which case no key file exists.
 *
 * Every function takes a vault name and touches only that vault's fields, so
 * a connector that looks up its own vault never receives another vault's
 * secrets. Secret values live in memory from sodium_malloc() and are wiped
 * when freed; they never appear in error messages or callback messages.
 */
#ifndef SKILLMEAT_CREDENTIALS_H
#define SKILLMEAT_CREDENTIALS_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/** The fields a vault's credentials can have. */
typedef enum sm_cred_field {
	SM_CRED_USERNAME = 0,      /**< user name, or the S3 access key id */
	SM_CRED_PASSWORD = 1,      /**< password or token, or the S3 secret key */
	SM_CRED_SSH_KEY = 2,       /**< path of an SSH private key file */
	SM_CRED_SESSION_TOKEN = 3, /**< S3 session token */
	SM_CRED_NFIELDS = 4
} sm_cred_field;

/** Credential store: the source of a field, or the store to write to. */
typedef enum sm_cred_store {
	SM_CRED_STORE_NONE = 0,     /**< not found; for writes: choose automatically */
	SM_CRED_STORE_ENV = 1,      /**< environment variables (lookups only) */
	SM_CRED_STORE_KEYCHAIN = 2, /**< Secret Service */
	SM_CRED_STORE_FILE = 3      /**< the sealed file */
} sm_cred_store;

/** Options of every credentials call. Members may be NULL / 0. */
typedef struct sm_cred_opts {
	/** Directory of the sealed file; NULL: $SKILLMEAT_HOME, else ~/.skillmeat. */
	const char *home;
	/**
	 * Store that writes go to. SM_CRED_STORE_NONE picks the keychain when
	 * one is reachable and the sealed file otherwise. For lookups, status
	 * and removal a store other than NONE restricts the call to it.
	 */
	sm_cred_store store;
	/** File whose first line is the sealed file's passphrase. */
	const char *passphrase_file;
	/** Receives the debug note when the keychain is not reachable. */
	const sm_callbacks *callbacks;
} sm_cred_opts;

/** One vault's credentials. Owned by the caller; free with sm_credentials_free(). */
typedef struct sm_credentials {
	char *vault;
	/** NUL-terminated values in wiped-on-free memory, NULL when absent. */
	char *fields[SM_CRED_NFIELDS];
	/** Store each field came from (SM_CRED_STORE_NONE when absent). */
	sm_cred_store sources[SM_CRED_NFIELDS];
} sm_credentials;

/** Field sets per store for one vault: bit (1u << field) for each stored field. */
typedef struct sm_cred_status {
	unsigned int env;
	unsigned int keychain;
	unsigned int file;
	int keychain_available;       /**< 1 when a Secret Service answered */
	char keychain_reason[160];    /**< why not, when keychain_available is 0 */
	int file_exists;              /**< 1 when the sealed file exists */
	int file_passphrase;          /**< 1 when the sealed file uses a passphrase */
} sm_cred_status;

/** Returns the field's name: "username", "password", "ssh_key", "session_token". */
const char *sm_cred_field_name(sm_cred_field field);

/** Returns the field for `name` (as sm_cred_field_name() gives it), or -1. */
int sm_cred_field_from_name(const char *name);

/** Returns the store's name: "none", "env", "keychain" or "file". */
const char *sm_cred_store_name(sm_cred_store store);

/**
 * Writes the environment variable name for `vault` and `field` into `out`
 * ("SKILLMEAT_VAULT_TEAM_A_PASSWORD" for "team-a"). Fails with SM_EINVALID
 * when `vault` is not a valid vault name or the name does not fit.
 */
int sm_cred_env_name(const char *vault, sm_cred_field field, char *out, size_t size);

/**
 * Looks up the credentials of `vault` through the chain. A vault with no
 * credentials anywhere succeeds with every field NULL. A sealed file that
 * cannot be opened (damaged, missing key file, wrong passphrase) fails
 * with SM_EINTEGRITY, SM_ENOTFOUND or SM_EAUTH; the message names the file
 * and what to do, never a value.
 */
int sm_credentials_lookup(sm_credentials **out, const char *vault, const sm_cred_opts *opts);

/**
 * Stores the non-NULL entries of `values` (indexed by sm_cred_field) for
 * `vault`, replacing those fields and keeping the others. Writes go to
 * opts->store, or to the keychain when reachable and else the sealed file.
 * `*used` (may be NULL) receives the store written. Forcing the keychain
 * when none is reachable fails with SM_EUNSUPPORTED; SM_CRED_STORE_ENV is
 * rejected with SM_EINVALID. The sealed file is rewritten atomically under
 * the lock $SKILLMEAT_HOME/credentials.lock.
 */
int sm_credentials_store(const char *vault, const char *const values[SM_CRED_NFIELDS],
			 const sm_cred_opts *opts, sm_cred_store *used);

/**
 * Deletes every stored field of `vault` from the keychain (when reachable)
 * and the sealed file, or from opts->store only. `*removed` (may be NULL)
 * receives the number of fields deleted. Environment variables are not
 * touched.
 */
int sm_credentials_remove(const char *vault, const sm_cred_opts *opts, int *removed);

/** Reports which store contains which fields of `vault`, never the values. */
int sm_credentials_status(const char *vault, const sm_cred_opts *opts, sm_cred_status *out);

/** Wipes and frees the credentials. NULL is ignored. */
void sm_credentials_free(sm_credentials *credentials);

#ifdef __cplusplus
}
#endif

#endif
