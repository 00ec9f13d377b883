/*
 * sharing.toml: the vaults a user has configured.
 *
 * The user file is $SKILLMEAT_HOME/sharing.toml (SKILLMEAT_HOME defaults to
 * ~/.skillmeat). A .skillmeat/sharing.toml in the working directory or its
 * nearest ancestor that has one is layered over it: its vaults add to or
 * replace the user's, and its default_vault wins.
 */
#ifndef SKILLMEAT_CONFIG_H
#define SKILLMEAT_CONFIG_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/**
 * One configured vault. `settings` contains every scalar key of its [vault.NAME]
 * table except "type", with values converted to text: strings as they
 * are, booleans as "true"/"false", numbers in decimal.
 */
typedef struct sm_vault_config {
	char *name;
	char *type;
	int read_only;      /**< read_only = true */
	char *source;       /**< path of the file that defined it */
	sm_kv *settings;
	size_t nsettings;
} sm_vault_config;

/** Returns the value of `key` in a vault's settings, or NULL (borrowed). */
const char *sm_vault_config_get(const sm_vault_config *vault, const char *key);

/** The merged configuration. */
typedef struct sm_config {
	char *home;           /**< SKILLMEAT_HOME in effect */
	char *user_path;      /**< $SKILLMEAT_HOME/sharing.toml */
	char *project_path;   /**< project file, or NULL when none */
	char *default_vault;  /**< NULL when neither file sets one */
	sm_vault_config *vaults;
	size_t nvaults;       /**< sorted by name */
} sm_config;

/**
 * Loads the user file (missing is fine: no vaults) and the project file
 * found from `cwd` upwards (NULL: the process's working directory).
 * Parse errors name the file, line and column and return SM_EINVALID.
 */
int sm_config_load(sm_config **out, const char *cwd);

/** Returns the vault called `name`, or NULL (borrowed). */
const sm_vault_config *sm_config_find(const sm_config *config, const char *name);

/**
 * Returns the vault to use: `name` when not NULL, else the default vault,
 * else the only vault when exactly one is configured. Sets an error and
 * returns NULL when none fits.
 */
const sm_vault_config *sm_config_pick(const sm_config *config, const char *name);

void sm_config_free(sm_config *config);

/** Returns 1 when `name` is a valid vault name ^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$. */
int sm_vault_name_valid(const char *name);

/**
 * Edits of one sharing.toml file. Each edit takes an exclusive lock on the
 * file (a sidecar "<file>.lock"), rereads it, changes only the lines it
 * must (comments, key order, blank lines and unknown keys stay), and
 * replaces the file atomically, keeping its mode. `path` is usually the
 * user file; the file and its directory are created when missing.
 */

/**
 * Appends a [vault.NAME] table with `type` and the given settings (values
 * written as TOML strings, except "true" and "false", which are written
 * as TOML booleans). Returns SM_EEXISTS when the file already defines NAME.
 */
int sm_config_add_vault(const char *path, const char *name, const char *type,
			const sm_kv *settings, size_t nsettings, int set_default);

/**
 * Removes the [vault.NAME] table (and its sub-tables) from the file.
 * Returns SM_ENOTFOUND when the file does not define NAME. When NAME was
 * the file's default_vault, that key is removed too.
 */
int sm_config_remove_vault(const char *path, const char *name);

/** Sets [sharing] default_vault = NAME, adding the table or key as needed. */
int sm_config_set_default(const char *path, const char *name);

#ifdef __cplusplus
}
#endif

#endif
