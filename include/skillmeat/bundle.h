/*
 * Skill bundles (.skillmeat-pack): a zip archive holding manifest.json and
 * the files of each artifact under artifacts/<type>/<name>/.
 *
 * Bundles are untrusted input. sm_bundle_open() checks the archive's shape
 * and limits without extracting anything; sm_bundle_verify() recomputes the
 * artifact hashes and the bundle hash from the archive's entries.
 */
#ifndef SKILLMEAT_BUNDLE_H
#define SKILLMEAT_BUNDLE_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Format version written in manifest.json "version". */
#define SM_MANIFEST_FORMAT_VERSION "1.0"

/** Bundle version reported for bundles without "bundle_version". */
#define SM_DEFAULT_BUNDLE_VERSION "1.0"

/** Largest manifest.json accepted, in bytes. */
#define SM_MANIFEST_MAX_BYTES (4u * 1024 * 1024)

/** Largest total uncompressed size of all entries accepted, in bytes. */
#define SM_BUNDLE_MAX_UNCOMPRESSED (8ull * 1024 * 1024 * 1024)

/**
 * Largest compression ratio (uncompressed / compressed) of one entry.
 * Entries of at most 64 KiB uncompressed are exempt.
 */
#define SM_BUNDLE_MAX_RATIO 200u

/** Largest number of entries in one archive. */
#define SM_BUNDLE_MAX_ENTRIES 100000u

/** One file of an artifact, as stored in the archive. */
typedef struct sm_bundle_file {
	char *path;            /**< relative to the artifact's folder */
	uint64_t size;         /**< uncompressed size in bytes */
	uint64_t compressed;   /**< compressed size in bytes */
} sm_bundle_file;

/** One artifact listed in the manifest. */
typedef struct sm_artifact {
	char *type;            /**< "skill", "command" or "agent" */
	char *name;
	char *version;
	char *scope;           /**< "user" or "local" */
	char *path;            /**< "artifacts/<type>/<name>/" */
	char *hash;            /**< "sha256:<64 hex>" */
	sm_bundle_file *files; /**< sorted by path (byte order) */
	size_t nfiles;
	sm_kv *metadata;       /**< string map, in manifest order */
	size_t nmetadata;
	uint64_t size;         /**< sum of the files' uncompressed sizes */
} sm_artifact;

/** The manifest of a bundle. */
typedef struct sm_manifest {
	char *format_version;  /**< manifest "version", always "1.0" */
	char *name;
	char *bundle_version;  /**< "bundle_version", or "1.0" when absent */
	char *description;
	char *author;
	char *created_at;
	char *license;
	char *bundle_hash;
	char **tags;
	size_t ntags;
	sm_artifact *artifacts;
	size_t nartifacts;
} sm_manifest;

/** An opened bundle: the archive plus its parsed manifest. */
typedef struct sm_bundle sm_bundle;

/**
 * Opens the archive at `path` and checks its shape without extracting
 * anything. Entry names must have no absolute paths, "..", backslashes, NUL
 * or control characters, and there must be no symlinks, directories or
 * duplicate names. The manifest must respect its size cap and JSON shape,
 * every listed file must be present, and sizes and compression ratios must
 * stay under their caps. On success `*out` is owned by the caller.
 */
int sm_bundle_open(sm_bundle **out, const char *path);

/** Returns the manifest of an opened bundle (borrowed). */
const sm_manifest *sm_bundle_manifest(const sm_bundle *bundle);

/**
 * Returns the open descriptor of the archive (borrowed, valid until
 * sm_bundle_free()). Copying through it publishes exactly the bytes that
 * were checked, even if the path is replaced meanwhile. The bundle reads
 * it only with pread(), so its offset is the caller's.
 */
int sm_bundle_fd(const sm_bundle *bundle);

/** Returns the size of the archive file in bytes. */
uint64_t sm_bundle_archive_size(const sm_bundle *bundle);

/** Returns the sum of all entries' uncompressed sizes. */
uint64_t sm_bundle_uncompressed_size(const sm_bundle *bundle);

/**
 * Called by sm_bundle_verify() once per mismatch with a one-line
 * description such as "artifact 'x' hash mismatch: manifest sha256:..,
 * archive sha256:..".
 */
typedef void (*sm_verify_cb)(const char *problem, void *payload);

/**
 * Recomputes every artifact hash from the archive's entries and the bundle
 * hash from the manifest. Returns 0 when all match, SM_EINTEGRITY when any
 * differs (after reporting each through `cb`, which may be NULL), or
 * another code when the archive cannot be read.
 */
int sm_bundle_verify(sm_bundle *bundle, sm_verify_cb cb, void *payload);

/** Closes the archive and frees everything. NULL is ignored. */
void sm_bundle_free(sm_bundle *bundle);

/** Options for sm_bundle_create(). Strings are borrowed. */
typedef struct sm_bundle_create_opts {
	const char *name;          /**< required, ^[A-Za-z0-9_-]{1,100}$ */
	const char *version;       /**< required, written as bundle_version */
	const char *description;   /**< required */
	const char *author;        /**< required */
	const char *license;       /**< optional, default "" */
	const char *const *tags;
	size_t ntags;
	/**
	 * Optional ISO 8601 time for created_at. When NULL the library uses
	 * SOURCE_DATE_EPOCH when set, else the newest modification time of the
	 * input files, so the same inputs give a byte-identical archive.
	 */
	const char *created_at;
} sm_bundle_create_opts;

/**
 * Builds a bundle from skill folders: each of `dirs` becomes one artifact
 * of type "skill". The archive is written to a temporary file beside
 * `out_path` and renamed into place; an existing `out_path` is replaced.
 * Symbolic links and special files in a folder are rejected. Entries named
 * .git, .hg, .svn, __pycache__, node_modules, .DS_Store or .env, and files
 * ending in .pyc, are skipped. Returns SM_ECONFLICT when a file changes
 * while the archive is written.
 */
int sm_bundle_create(const char *const *dirs, size_t ndirs,
		     const sm_bundle_create_opts *opts, const char *out_path);

/**
 * Computes the bundle hash of a manifest given as JSON text: the rule the
 * original tool uses (see docs/FORMAT.md). Writes "sha256:<hex>" and a NUL
 * into `out` (at least 72 bytes).
 */
int sm_manifest_bundle_hash(const char *manifest_json, size_t len, char out[72]);

#ifdef __cplusplus
}
#endif

#endif
