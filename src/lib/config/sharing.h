/* Internal limits and helpers shared by the sharing.toml loader and editor. */
#ifndef SM_CONFIG_SHARING_H
#define SM_CONFIG_SHARING_H

/* Largest sharing.toml read or written. */
#define SM_CONFIG_MAX_BYTES (1024 * 1024)

/* Sets *out to SKILLMEAT_HOME, or ~/.skillmeat, as a new absolute path. */
int sm_config_home(char **out);

#endif
