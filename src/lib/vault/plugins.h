/*
 * Internal parts of the plug-in loader: the checks it runs before it
 * loads a file, and the registry queries it needs. Declared here so that
 * the unit tests can drive them on files they create.
 */
#ifndef SM_VAULT_PLUGINS_H
#define SM_VAULT_PLUGINS_H

#include <stddef.h>
#include <sys/stat.h>
#include <sys/types.h>

/* Maximum length of a connector type name a plug-in registers, in bytes. */
#define SM_PLUGIN_TYPE_MAX 64

/*
 * Splits a colon-separated directory list into `*out`, a new array of
 * `*count` new strings. Empty entries (leading, doubled or trailing
 * colons) are dropped rather than read as the working directory.
 */
int sm_plugin_path_split(const char *list, char ***out, size_t *count);

/* Returns 1 when `type` is 1-64 ASCII letters, digits, '-' or '_'. */
int sm_plugin_type_valid(const char *type);

/*
 * Checks the status of a plug-in file: a regular file, owned by `uid` or
 * root, and not writable by group or others. On failure the message
 * names `path` and the fix.
 */
int sm_plugin_check_file(const struct stat *st, const char *path, uid_t uid);

/*
 * Checks directory `path` (absolute, without symbolic links) and every
 * directory above it: each must be owned by `uid` or root and must not be
 * writable by group or others, unless it is root-owned and sticky like
 * /tmp, because there no other user can rename or replace entries of `uid`.
 */
int sm_plugin_check_dir(const char *path, uid_t uid);

/*
 * Returns 1 when `type` is a built-in connector, 2 when it was registered
 * at run time, 0 when it is unknown. Defined in vault.c.
 */
int sm_vault_type_known(const char *type);

/* Returns how many plug-in files or directories were refused or failed. */
size_t sm_plugins_failed(void);

#endif
