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

/** What the library hands to a plug-in's entry point. */
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

/** Put once in a plug-in's source file: exports the ABI version it speaks. */
#define SM_PLUGIN_DECLARE() \
	SM_PLUGIN_EXPORT const unsigned int skillmeat_plugin_abi_version = SM_PLUGIN_ABI_VERSION

#ifdef __cplusplus
}
#endif

#endif
