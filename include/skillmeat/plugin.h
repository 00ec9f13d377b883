/*
 * Connector plug-ins: shared objects that add vault types at run time.
 *
 * A plug-in exports two symbols:
 *
 *   const unsigned int skillmeat_plugin_abi_version;   (SM_PLUGIN_DECLARE)
 *   int skillmeat_plugin_init(const sm_plugin_host *host);
 *
 * The loader reads skillmeat_plugin_abi_version first and refuses a
 * plug-in built for another ABI without running any of its code beyond
 * its constructors. It then calls skillmeat_plugin_init(), which
 * registers one or more connector types through host->register_vault()
 * and returns 0, or a negative sm_error_code after sm_error_set().
 * A plug-in links against libskillmeat (pkg-config skillmeat) for every
 * other service: errors, records, the index format, credentials.
 */
#ifndef SKILLMEAT_PLUGIN_H
#define SKILLMEAT_PLUGIN_H

#include "vault.h"

#ifdef __cplusplus
extern "C" {
#endif

/** ABI version of the plug-in interface. Bumped on any change below. */
#define SM_PLUGIN_ABI_VERSION 1

/** Names of the two exported symbols. */
#define SM_PLUGIN_ABI_SYMBOL "skillmeat_plugin_abi_version"
#define SM_PLUGIN_INIT_SYMBOL "skillmeat_plugin_init"

typedef struct sm_plugin_host sm_plugin_host;

/** Host table: the library's side of the interface, passed to the entry point. */
struct sm_plugin_host {
	unsigned int abi_version;       /**< SM_PLUGIN_ABI_VERSION of the library */
	unsigned int vault_abi_version; /**< SM_VAULT_ABI_VERSION of the library */
	/**
	 * Registers connector type `type` (letters, digits, '-' and '_').
	 * `vault_abi_version` is the SM_VAULT_ABI_VERSION the plug-in was built
	 * with. Returns 0 or a negative sm_error_code.
	 */
	int (*register_vault)(const sm_plugin_host *host, const char *type,
			      unsigned int vault_abi_version, sm_vault_ctor ctor);
	void *host_data;                /**< private to the library */
};

/** Signature of skillmeat_plugin_init(). */
typedef int (*sm_plugin_init_fn)(const sm_plugin_host *host);

#if defined(__GNUC__)
#define SM_PLUGIN_EXPORT __attribute__((visibility("default")))
#else
#define SM_PLUGIN_EXPORT
#endif

/*
 * The two symbols a plug-in defines. Declaring them here gives them C
 * linkage and external linkage in a C++ plug-in too, where a const
 * object defined without an earlier extern declaration stays local.
 */
SM_PLUGIN_EXPORT extern const unsigned int skillmeat_plugin_abi_version;
SM_PLUGIN_EXPORT int skillmeat_plugin_init(const sm_plugin_host *host);

/**
 * Put once in a plug-in's source file: exports the ABI version it speaks.
 * The declaration above makes it visible, also under -fvisibility=hidden.
 */
#define SM_PLUGIN_DECLARE() \
	const unsigned int skillmeat_plugin_abi_version = SM_PLUGIN_ABI_VERSION

/*
 * Loading plug-ins, for programs.
 *
 * The library searches each directory of $SKILLMEAT_PLUGIN_PATH (absolute
 * paths separated by ':'; empty and relative entries are skipped), then
 * $SKILLMEAT_HOME/plugins (default ~/.skillmeat/plugins), for files named
 * "*.so" that do not start with '.'. A file is loaded only when it is a
 * regular file owned by the user or root and not writable by group or
 * others. Its directory and the directories above it must pass the same
 * test, except that a root-owned sticky directory such as /tmp passes.
 * sm_vault_open() loads plug-ins by itself the first time it meets a type
 * that is not registered, so built-in vaults never load any.
 */

/** Report on one plug-in file found by the loader, or on a directory it refused. */
typedef struct sm_plugin_info {
	char *path;               /**< the file (or refused directory) */
	char **types;             /**< connector types it registered */
	size_t ntypes;
	unsigned int abi_version; /**< plug-in ABI it declares; 0 when unknown */
	int loaded;               /**< 1 when it loaded and its init succeeded */
	char *error;              /**< why it did not load; NULL when loaded */
} sm_plugin_info;

/**
 * Finds and loads every plug-in, once per process: later calls return 0
 * at once. A file that fails to load is skipped after a warning through
 * `callbacks` (may be NULL) and reported by sm_plugins_list(); it never
 * stops the others. Returns 0, or SM_ENOMEM.
 */
int sm_plugins_load(const sm_callbacks *callbacks);

/**
 * Loads plug-ins when that has not happened yet, then returns a new array
 * of what was found, in search order. Free it with sm_plugin_info_free().
 */
int sm_plugins_list(sm_plugin_info **out, size_t *count);

/** Frees an array returned by sm_plugins_list(). NULL is ignored. */
void sm_plugin_info_free(sm_plugin_info *infos, size_t count);

/*
 * Helpers for connectors.
 */

/**
 * Sets metadata[key] = value in a record, replacing an existing value;
 * a connector's push uses it to record "sha256". Both strings are copied.
 */
int sm_record_metadata_set(sm_record *record, const char *key, const char *value);

#ifdef __cplusplus
}
#endif

#endif
