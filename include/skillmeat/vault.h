/*
 * Vaults: shared storage for bundles, and the connector interface that
 * every storage back-end implements.
 *
 * A connector is a struct sm_vault whose first field is the ABI version it
 * was built against. One constructor per connector fills every slot; the
 * capability bitmask tells which operations work, so callers never test
 * slots for NULL. A registry maps type names ("local", "s3", ...) to
 * constructors; types registered at run time are searched before the
 * built-in ones.
 *
 * Layout shared by every connector and by the original Python tool:
 *   bundles/<id>.skillmeat-pack   the archive
 *   metadata/<id>.json            one sm_record as JSON (the truth)
 *   index.json                    {id: record, ...}, a cache of metadata/
 */
#ifndef SKILLMEAT_VAULT_H
#define SKILLMEAT_VAULT_H

#include "common.h"
#include "config.h"

#ifdef __cplusplus
extern "C" {
#endif

/** ABI version of struct sm_vault. Bumped on any layout change. */
#define SM_VAULT_ABI_VERSION 1

/** Capability bits of a connector. */
enum sm_vault_caps {
	SM_VAULT_CAN_READ = 1u << 0,   /**< list, exists, get_metadata, pull */
	SM_VAULT_CAN_WRITE = 1u << 1,  /**< push */
	SM_VAULT_CAN_DELETE = 1u << 2  /**< delete */
};

/** The record of one stored bundle, as stored in metadata/<id>.json. */
typedef struct sm_record {
	char *bundle_id;
	char *name;
	char *version;
	char *description;
	char *author;
	char *created_at;
	char *uploaded_at;
	char *bundle_hash;
	char *vault_path;
	uint64_t size_bytes;
	char **tags;
	size_t ntags;
	sm_kv *metadata;      /**< non-string values kept as JSON text */
	size_t nmetadata;
} sm_record;

/** Returns the value of `key` in a record's metadata, or NULL (borrowed). */
const char *sm_record_metadata_get(const sm_record *record, const char *key);

/** Frees a record's members and the record. NULL is ignored. */
void sm_record_free(sm_record *record);

/** A list of records owned by the list. */
typedef struct sm_record_list {
	sm_record **items;
	size_t count;
} sm_record_list;

/** Frees every record in the list and resets it to empty. */
void sm_record_list_release(sm_record_list *list);

/**
 * Serialises a record as the text of metadata/<id>.json: the original
 * tool's field order, two-space indent. `*out` is a new string.
 */
int sm_record_to_text(const sm_record *record, char **out);

/**
 * Parses the text of metadata/<id>.json. Fails with SM_EINVALID when the
 * text is not a JSON object with a valid bundle_id and well-typed fields,
 * or is larger than 1 MiB; `what` names the source in the message.
 */
int sm_record_from_text(const char *text, size_t len, const char *what, sm_record **out);

/**
 * Parses the text of index.json ({id: record, ...}) into `out`, sorted by
 * bundle id. Fails with SM_EINVALID when the text is not such an object or
 * an entry is not a valid record whose bundle_id equals its key.
 */
int sm_index_from_text(const char *text, size_t len, sm_record_list *out);

/** Serialises records as the text of index.json (keys sorted). */
int sm_index_to_text(const sm_record_list *list, char **out);

/** Appends `record` to `list`, which takes ownership (also on failure). */
int sm_record_list_append(sm_record_list *list, sm_record *record);

/**
 * Decides a push of `record` onto an id the vault already stores. `old`
 * is the stored record (NULL when unknown); this function frees it.
 * `identical` is 1 when the stored bytes equal the pushed ones. Then
 * `record` takes the stored uploaded_at and vault_path, so the caller
 * reports what is in the vault. Returns 0 when the push is a no-op
 * (identical) or may replace the bundle (`force`), else SM_EEXISTS with a
 * message that names `vault_name` and says how to push another version.
 */
int sm_push_settle_existing(sm_record *record, sm_record *old, int identical, int force,
			    const char *vault_name);

/** Filter for listing. Members may be NULL / 0. Strings are borrowed. */
typedef struct sm_list_filter {
	/** Case-insensitive substring of the name, or a glob when it has * or ?. */
	const char *name;
	/** A bundle matches when it carries every one of these tags. */
	const char *const *tags;
	size_t ntags;
} sm_list_filter;

/** Returns 1 when `record` passes `filter` (NULL passes everything). */
int sm_list_filter_match(const sm_list_filter *filter, const sm_record *record);

/** Options for a push. */
typedef struct sm_push_opts {
	int force;             /**< replace an existing, different bundle */
	/**
	 * Called by the connector once the data is staged but before anything
	 * becomes visible in the vault. A non-zero return aborts the push with
	 * that code, and the connector removes what it staged. The library uses
	 * it to finish verifying the bundle while the connector copies. NULL
	 * means no gate.
	 */
	int (*before_commit)(void *payload);
	void *payload;
	/** Set on success: the identical bundle was already stored, nothing changed. */
	int unchanged;
} sm_push_opts;

typedef struct sm_vault sm_vault;

/** Connect and authenticate. Called once by sm_vault_open(). */
typedef int (*sm_vault_open_fn)(sm_vault *self);

/**
 * Store the bundle read from `fd` (from offset 0 to EOF, with pread(), so
 * the descriptor's offset does not matter) under record->bundle_id.
 * The caller fills `record` from the manifest. The connector sets
 * uploaded_at, vault_path and metadata "sha256", then writes the data,
 * then the metadata file, then the index. An existing id fails with
 * SM_EEXISTS unless opts->force; the identical file (same SHA-256) is a
 * no-op that returns 0.
 */
typedef int (*sm_vault_push_fn)(sm_vault *self, int fd, sm_record *record,
				sm_push_opts *opts);

/**
 * Write the bytes of bundle `bundle_id` to `fd` (an empty file opened for
 * writing) and return its record in `*out`. The connector checks the
 * bytes against the record's size and "sha256" (when recorded) and fails
 * with SM_EINTEGRITY on a mismatch.
 */
typedef int (*sm_vault_pull_fn)(sm_vault *self, const char *bundle_id, int fd,
				sm_record **out);

/**
 * The pull watch: how a connector's pull() reports which bytes of `fd` are
 * final, so the library verifies the bundle while it downloads.
 * sm_pull_watch_take(), called in the thread that runs pull(), returns the
 * watch of that pull (NULL outside sm_vault_pull()). A connector that
 * takes it must then report every write to `fd` with
 * sm_pull_watch_wrote(), from one thread at a time. A connector that writes
 * ranges out of order reports the end of the finished prefix with
 * sm_pull_watch_advance() instead. In return it may skip its own SHA-256
 * of the file: the library compares the file with the record's "sha256".
 * The connector still checks the size. Writing a byte again is allowed
 * and only makes the library read the file again, but a write below the
 * mark must be reported with sm_pull_watch_wrote() too.
 */
typedef struct sm_pull_watch sm_pull_watch;

sm_pull_watch *sm_pull_watch_take(void);

/** Reports `len` bytes written at `offset`. NULL `watch` is a no-op. */
void sm_pull_watch_wrote(sm_pull_watch *watch, uint64_t offset, uint64_t len);

/**
 * Reports that bytes [0, `ready`) are written and final; the mark never
 * moves down. NULL `watch` is a no-op.
 */
void sm_pull_watch_advance(sm_pull_watch *watch, uint64_t ready);

/** List the records that pass `filter`, sorted by bundle id. */
typedef int (*sm_vault_list_fn)(sm_vault *self, const sm_list_filter *filter,
				sm_record_list *out);

/** Delete a bundle: index entry, metadata file, then data. */
typedef int (*sm_vault_delete_fn)(sm_vault *self, const char *bundle_id);

/** Set *out to 1 when `bundle_id` is stored, else 0. */
typedef int (*sm_vault_exists_fn)(sm_vault *self, const char *bundle_id, int *out);

/** Return the record of `bundle_id`, or SM_ENOTFOUND. */
typedef int (*sm_vault_get_metadata_fn)(sm_vault *self, const char *bundle_id,
					sm_record **out);

/** Release every resource of the connector, including `self`. */
typedef void (*sm_vault_close_fn)(sm_vault *self);

/**
 * A connector instance. A constructor allocates a larger private struct
 * whose first member is this one, and fills every field.
 */
struct sm_vault {
	unsigned int abi_version;      /**< SM_VAULT_ABI_VERSION */
	const char *type;              /**< type name, e.g. "local" */
	unsigned int caps;             /**< enum sm_vault_caps bits */
	sm_vault_open_fn open;
	sm_vault_push_fn push;
	sm_vault_pull_fn pull;
	sm_vault_list_fn list;
	sm_vault_delete_fn delete_bundle;
	sm_vault_exists_fn exists;
	sm_vault_get_metadata_fn get_metadata;
	sm_vault_close_fn close;
};

/**
 * Constructor of a connector: builds an instance for one configured vault.
 * `config` and `callbacks` outlive the instance. Must not do network or
 * disk work beyond checking the configuration; open() does that.
 */
typedef int (*sm_vault_ctor)(sm_vault **out, const sm_vault_config *config,
			     const sm_callbacks *callbacks);

/**
 * Registers a constructor for `type`, searched before the built-in ones.
 * `abi_version` must be SM_VAULT_ABI_VERSION. Registering a type again
 * replaces the earlier registration.
 */
int sm_vault_register(const char *type, unsigned int abi_version, sm_vault_ctor ctor);

/** Removes a run-time registration. Returns SM_ENOTFOUND when absent. */
int sm_vault_unregister(const char *type);

/**
 * Creates and opens the connector for `config`. An unknown type fails with
 * SM_EINVALID and a message that lists the known types. A read_only vault
 * loses its write and delete capabilities.
 */
int sm_vault_open(sm_vault **out, const sm_vault_config *config,
		  const sm_callbacks *callbacks);

/** Closes a connector. NULL is ignored. */
void sm_vault_close(sm_vault *vault);

/**
 * Builds the id "<name lowercased>-v<version>" into a new string. Fails
 * with SM_EINVALID when the result has characters outside [a-z0-9._-],
 * starts with a dot, contains "..", or is longer than 200 bytes.
 */
int sm_bundle_id(char **out, const char *name, const char *version);

/** Returns 1 when `id` is a safe bundle id (the rules of sm_bundle_id()). */
int sm_bundle_id_valid(const char *id);

/**
 * Publishes a bundle file: opens and verifies it (a tampered bundle fails
 * with SM_EINTEGRITY), builds its record (version from `version` when not
 * NULL, else the bundle's own), and hands it to the connector. On success
 * `*out` (may be NULL) receives the stored record.
 */
int sm_vault_push(sm_vault *vault, const char *bundle_path, const char *version,
		  sm_push_opts *opts, sm_record **out);

/**
 * Fetches bundle `bundle_id` into directory `out_dir` as
 * "<id>.skillmeat-pack": streams into a temporary file in `out_dir`,
 * verifies the SHA-256 and the bundle's own hashes, then renames it into
 * place. An existing different file fails with SM_EEXISTS unless `force`;
 * an identical one is left as it is. `*out_path` (may be NULL) receives
 * the final path.
 */
int sm_vault_pull(sm_vault *vault, const char *bundle_id, const char *out_dir,
		  int force, char **out_path);

/** Lists the vault's bundles that pass `filter`. */
int sm_vault_list(sm_vault *vault, const sm_list_filter *filter, sm_record_list *out);

/** Deletes a bundle. Fails with SM_EREADONLY on a read-only vault. */
int sm_vault_delete(sm_vault *vault, const char *bundle_id);

/** Returns the record of one bundle. */
int sm_vault_info(sm_vault *vault, const char *bundle_id, sm_record **out);

/**
 * Sets the program that the git connector gives git as GIT_ASKPASS to pass
 * a stored user name and password: a program that, run with one argument
 * (git's prompt), calls sm_git_askpass_main() and exits with its result.
 * The skillmeat CLI names itself. `program` must be an absolute path; NULL
 * clears it. Without it a git vault with a stored password fails with
 * SM_EAUTH.
 */
int sm_git_set_askpass(const char *program);

/**
 * Writes the reply to git's "Username for 'URL': " or "Password for
 * 'URL': " prompt to standard output. The answers come from an in-memory
 * file that the git connector hands down as an inherited descriptor and
 * names in SKILLMEAT_ASKPASS_FILE as /proc/self/fd/N, so the caller must
 * not close inherited descriptors first. Replies only for the vault's own
 * scheme, host and port. Returns the exit status: 0 when it answered,
 * else 1.
 */
int sm_git_askpass_main(const char *prompt);

/** Returns a new string of the known types, comma-separated. */
char *sm_vault_types(void);

#ifdef __cplusplus
}
#endif

#endif
