/*
 * sharing.toml loading: the user file, the project file layered over it,
 * and the choice of a vault.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "skillmeat/config.h"
#include "util/util.h"
#include "config/sharing.h"
#include "config/toml.h"

int sm_vault_name_valid(const char *name)
{
	size_t len;

	if (!name || !name[0])
		return 0;
	len = strlen(name);
	if (len > 64)
		return 0;
	for (size_t i = 0; i < len; i++) {
		char c = name[i];
		int alnum = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');

		if (!alnum && (i == 0 || (c != '_' && c != '.' && c != '-')))
			return 0;
	}
	return 1;
}

const char *sm_vault_config_get(const sm_vault_config *vault, const char *key)
{
	if (!vault)
		return NULL;
	for (size_t i = 0; i < vault->nsettings; i++)
		if (strcmp(vault->settings[i].key, key) == 0)
			return vault->settings[i].value;
	return NULL;
}

static void vault_release(sm_vault_config *vault)
{
	free(vault->name);
	free(vault->type);
	free(vault->source);
	sm_kv_array_free(vault->settings, vault->nsettings);
	memset(vault, 0, sizeof(*vault));
}

void sm_config_free(sm_config *config)
{
	if (!config)
		return;
	for (size_t i = 0; i < config->nvaults; i++)
		vault_release(&config->vaults[i]);
	free(config->vaults);
	free(config->home);
	free(config->user_path);
	free(config->project_path);
	free(config->default_vault);
	free(config);
}

const sm_vault_config *sm_config_find(const sm_config *config, const char *name)
{
	if (!config || !name)
		return NULL;
	for (size_t i = 0; i < config->nvaults; i++)
		if (strcmp(config->vaults[i].name, name) == 0)
			return &config->vaults[i];
	return NULL;
}

const sm_vault_config *sm_config_pick(const sm_config *config, const char *name)
{
	const sm_vault_config *vault;

	if (!config) {
		sm_error_set(SM_EINVALID, "no configuration loaded");
		return NULL;
	}
	if (name) {
		vault = sm_config_find(config, name);
		if (!vault)
			sm_error_set(SM_ENOTFOUND, "vault '%s' not found; run 'skillmeat vault list' to see configured vaults",
				     name);
		return vault;
	}
	if (config->default_vault) {
		vault = sm_config_find(config, config->default_vault);
		if (!vault)
			sm_error_set(SM_ENOTFOUND, "default vault '%s' not found; run 'skillmeat vault list' to see configured vaults and 'skillmeat vault set-default NAME' to change the default",
				     config->default_vault);
		return vault;
	}
	if (config->nvaults == 1)
		return &config->vaults[0];
	if (config->nvaults == 0)
		sm_error_set(SM_ENOTFOUND, "no vault is configured in '%s'; add one with 'skillmeat vault add NAME TYPE ...'",
			     config->user_path);
	else
		sm_error_set(SM_ENOTFOUND, "%zu vaults are configured and none is the default; pass --vault NAME or run 'skillmeat vault set-default NAME'",
			     config->nvaults);
	return NULL;
}

/* ---- paths ----------------------------------------------------------- */

/*
 * Returns `path` (absolute) with "." and ".." parts and repeated slashes
 * removed, without looking at the file system.
 */
static char *normalize_path(const char *path)
{
	char *copy = sm_strdup(path), *out, *save = NULL;
	size_t len = 0;

	if (!copy)
		return NULL;
	out = malloc(strlen(path) + 2);
	if (!out) {
		free(copy);
		sm_error_set(SM_ENOMEM, "out of memory");
		return NULL;
	}
	for (char *part = strtok_r(copy, "/", &save); part; part = strtok_r(NULL, "/", &save)) {
		if (strcmp(part, ".") == 0)
			continue;
		if (strcmp(part, "..") == 0) {
			while (len > 0 && out[len - 1] != '/')
				len--;
			if (len > 0)
				len--; /* the slash before the removed part */
			continue;
		}
		out[len++] = '/';
		memcpy(out + len, part, strlen(part));
		len += strlen(part);
	}
	if (len == 0)
		out[len++] = '/';
	out[len] = '\0';
	free(copy);
	return out;
}

/* Makes `path` absolute against the process's working directory. */
static int absolute_path(const char *path, char **out)
{
	char cwd[PATH_MAX];
	char *joined;

	*out = NULL;
	if (path[0] == '/') {
		*out = normalize_path(path);
		return *out ? 0 : SM_ENOMEM;
	}
	if (!getcwd(cwd, sizeof(cwd)))
		return sm_error_set_errno(SM_EIO, errno, "cannot find the working directory");
	joined = sm_path_join(cwd, path);
	if (!joined)
		return SM_ENOMEM;
	*out = normalize_path(joined);
	free(joined);
	return *out ? 0 : SM_ENOMEM;
}

static const char *home_of_user(void)
{
	const char *home = getenv("HOME");
	struct passwd *pw;

	if (home && home[0])
		return home;
	pw = getpwuid(getuid());
	return pw && pw->pw_dir && pw->pw_dir[0] ? pw->pw_dir : NULL;
}

int sm_config_home(char **out)
{
	const char *env = getenv("SKILLMEAT_HOME");
	const char *home;
	char *joined;
	int rc;

	*out = NULL;
	if (env && env[0])
		return absolute_path(env, out);
	home = home_of_user();
	if (!home)
		return sm_error_set(SM_EINVALID, "cannot find the home directory; set SKILLMEAT_HOME or HOME");
	joined = sm_path_join(home, ".skillmeat");
	if (!joined)
		return SM_ENOMEM;
	rc = absolute_path(joined, out);
	free(joined);
	return rc;
}

/*
 * Resolves a local vault's `path` value: "~" and "~/..." name the home
 * directory, and a relative path is taken relative to `base`.
 */
static char *resolve_local_path(const char *value, const char *base)
{
	const char *home;
	char *joined, *out;

	if (value[0] == '/')
		return normalize_path(value);
	if ((value[0] == '~' && (value[1] == '/' || value[1] == '\0')) && (home = home_of_user()))
		joined = sm_asprintf("%s/%s", home, value + 1);
	else
		joined = sm_path_join(base, value);
	if (!joined)
		return NULL;
	out = normalize_path(joined);
	free(joined);
	return out;
}

/* Returns 1 when `a` and `b` name the same existing file. */
static int same_file(const char *a, const char *b)
{
	struct stat sa, sb;

	return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
	       sa.st_ino == sb.st_ino;
}

/*
 * Looks for .skillmeat/sharing.toml in `start` and its ancestors. Finding
 * the user file itself (a project under the home directory) means no
 * project file. `*dir` receives the directory that contains .skillmeat.
 */
static int find_project_file(const char *start, const char *user_path, char **path, char **dir)
{
	char *current = sm_strdup(start);
	int rc = 0;

	*path = NULL;
	*dir = NULL;
	if (!current)
		return SM_ENOMEM;
	for (;;) {
		struct stat st;
		char *candidate = sm_asprintf("%s%s.skillmeat/sharing.toml", current,
					      strcmp(current, "/") == 0 ? "" : "/");
		char *slash;

		if (!candidate) {
			rc = SM_ENOMEM;
			break;
		}
		if (stat(candidate, &st) == 0 && S_ISREG(st.st_mode)) {
			if (same_file(candidate, user_path)) {
				free(candidate);
			} else {
				*path = candidate;
				*dir = current;
				current = NULL;
			}
			break;
		}
		free(candidate);
		if (strcmp(current, "/") == 0)
			break;
		slash = strrchr(current, '/');
		if (slash == current)
			slash[1] = '\0';
		else
			*slash = '\0';
	}
	free(current);
	return rc;
}

/* ---- reading one file ------------------------------------------------ */

static int file_error(const char *path, unsigned line, unsigned col, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int file_error(const char *path, unsigned line, unsigned col, const char *fmt, ...)
{
	char what[600];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	return sm_error_set(SM_EINVALID, "%s:%u:%u: %s", path, line, col, what);
}

/* Writes a float in the fewest digits that read back as the same value. */
static void format_float(double value, char *out, size_t size)
{
	if (isnan(value)) {
		snprintf(out, size, "nan");
		return;
	}
	if (isinf(value)) {
		snprintf(out, size, value < 0 ? "-inf" : "inf");
		return;
	}
	for (int digits = 1; digits <= 17; digits++) {
		snprintf(out, size, "%.*g", digits, value);
		if (strtod(out, NULL) == value)
			break;
	}
}

/*
 * Converts one setting to text. Returns 1 when the value has no text form
 * (a table or an array) and should be left out.
 */
static int setting_text(const toml_entry *entry, const char *path, const char *vault, char **out)
{
	char number[64];
	const toml_value *value = &entry->value;

	*out = NULL;
	switch (value->type) {
	case TOML_TABLE:
	case TOML_ARRAY:
		return 1;
	case TOML_STRING:
		if (memchr(value->u.string.ptr, '\0', value->u.string.len))
			return file_error(path, entry->pos.line, entry->pos.col,
					  "'%s' of vault '%s' contains a NUL character", entry->key, vault);
		*out = sm_strdup(value->u.string.ptr);
		break;
	case TOML_BOOL:
		*out = sm_strdup(value->u.boolean ? "true" : "false");
		break;
	case TOML_INTEGER:
		snprintf(number, sizeof(number), "%lld", (long long)value->u.integer);
		*out = sm_strdup(number);
		break;
	case TOML_FLOAT:
		format_float(value->u.floating, number, sizeof(number));
		*out = sm_strdup(number);
		break;
	default: /* date-times keep their source text */
		*out = sm_strdup(value->u.string.ptr);
		break;
	}
	return *out ? 0 : SM_ENOMEM;
}

/* Fills `vault` from the [vault.NAME] table in `entry`. */
static int read_vault(const toml_entry *entry, const char *path, const char *base,
		      sm_vault_config *vault)
{
	const toml_table *table;
	const toml_entry *type;
	int rc = 0;

	memset(vault, 0, sizeof(*vault));
	if (!sm_vault_name_valid(entry->key) || strlen(entry->key) != entry->key_len)
		return file_error(path, entry->pos.line, entry->pos.col,
				  "invalid vault name '%s': use up to 64 letters, digits, '_', '.' or '-', starting with a letter or digit",
				  entry->key);
	if (entry->value.type != TOML_TABLE)
		return file_error(path, entry->pos.line, entry->pos.col,
				  "vault '%s' must be a table such as [vault.%s], not %s",
				  entry->key, entry->key, toml_type_name(entry->value.type));
	table = entry->value.u.table;
	type = toml_table_get(table, "type");
	if (!type)
		return file_error(path, entry->pos.line, entry->pos.col,
				  "vault '%s' has no 'type'; add type = \"local\" (or another connector type)",
				  entry->key);
	if (type->value.type != TOML_STRING || type->value.u.string.len == 0 ||
	    sm_has_control_chars(type->value.u.string.ptr))
		return file_error(path, type->pos.line, type->pos.col,
				  "'type' of vault '%s' must be a non-empty string such as \"local\"", entry->key);

	vault->name = sm_strdup(entry->key);
	vault->type = sm_strdup(type->value.u.string.ptr);
	vault->source = sm_strdup(path);
	vault->settings = calloc(table->len ? table->len : 1, sizeof(*vault->settings));
	if (!vault->name || !vault->type || !vault->source || !vault->settings) {
		rc = sm_error_set(SM_ENOMEM, "out of memory");
		goto done;
	}
	for (size_t i = 0; i < table->len; i++) {
		const toml_entry *setting = &table->entries[i];
		char *text;

		if (setting == type)
			continue;
		if (memchr(setting->key, '\0', setting->key_len)) {
			rc = file_error(path, setting->pos.line, setting->pos.col,
					"a key of vault '%s' contains a NUL character", entry->key);
			goto done;
		}
		if (strcmp(setting->key, "read_only") == 0) {
			if (setting->value.type != TOML_BOOL) {
				rc = file_error(path, setting->pos.line, setting->pos.col,
						"'read_only' of vault '%s' must be true or false", entry->key);
				goto done;
			}
			vault->read_only = setting->value.u.boolean;
		}
		/* NOTE: tables and arrays inside a vault are kept in the file but left out of settings */
		rc = setting_text(setting, path, entry->key, &text);
		if (rc == 1) {
			rc = 0;
			continue;
		}
		if (rc)
			goto done;
		if (strcmp(vault->type, "local") == 0 && strcmp(setting->key, "path") == 0 &&
		    setting->value.type == TOML_STRING) {
			char *resolved;

			if (!text[0]) {
				free(text);
				rc = file_error(path, setting->pos.line, setting->pos.col,
						"'path' of vault '%s' is empty; set it to the vault directory", entry->key);
				goto done;
			}
			resolved = resolve_local_path(text, base);
			free(text);
			if (!resolved) {
				rc = SM_ENOMEM;
				goto done;
			}
			text = resolved;
		}
		vault->settings[vault->nsettings].key = sm_strdup(setting->key);
		vault->settings[vault->nsettings].value = text;
		vault->nsettings++;
		if (!vault->settings[vault->nsettings - 1].key) {
			rc = SM_ENOMEM;
			goto done;
		}
	}
done:
	if (rc)
		vault_release(vault);
	return rc;
}

static int compare_vaults(const void *a, const void *b)
{
	return strcmp(((const sm_vault_config *)a)->name, ((const sm_vault_config *)b)->name);
}

/*
 * Adds `vault` to the configuration. It replaces a vault of the same name
 * among the first `layered` vaults, which come from the file below and
 * are sorted. The vaults of one file have distinct names already.
 */
static int merge_vault(sm_config *config, sm_vault_config *vault, size_t layered)
{
	sm_vault_config *vaults, *same;

	same = layered ? bsearch(vault, config->vaults, layered, sizeof(*vault), compare_vaults) : NULL;
	if (same) {
		vault_release(same);
		*same = *vault;
		return 0;
	}
	if (config->nvaults == 0 || (config->nvaults >= 4 && (config->nvaults & (config->nvaults - 1)) == 0)) {
		/* grow to capacity 4, 8, 16, ... */
		size_t cap = config->nvaults ? config->nvaults * 2 : 4;

		vaults = realloc(config->vaults, cap * sizeof(*vaults));
		if (!vaults)
			return sm_error_set(SM_ENOMEM, "out of memory");
		config->vaults = vaults;
	}
	config->vaults[config->nvaults++] = *vault;
	return 0;
}

/* Reads [sharing] default_vault from `root`; leaves *out NULL when unset. */
static int read_default(const toml_table *root, const char *path, char **out)
{
	const toml_entry *sharing = toml_table_get(root, "sharing"), *key;

	*out = NULL;
	if (!sharing)
		return 0;
	if (sharing->value.type != TOML_TABLE)
		return file_error(path, sharing->pos.line, sharing->pos.col,
				  "'sharing' must be a table such as [sharing], not %s",
				  toml_type_name(sharing->value.type));
	key = toml_table_get(sharing->value.u.table, "default_vault");
	if (!key)
		return 0;
	if (key->value.type != TOML_STRING || !sm_vault_name_valid(key->value.u.string.ptr) ||
	    strlen(key->value.u.string.ptr) != key->value.u.string.len)
		return file_error(path, key->pos.line, key->pos.col,
				  "'default_vault' must be a string with a valid vault name");
	*out = sm_strdup(key->value.u.string.ptr);
	return *out ? 0 : SM_ENOMEM;
}

/*
 * Reads one sharing.toml into `config`, over the first `layered` vaults
 * (sorted). A missing file is fine when `may_be_missing`. Relative local
 * paths resolve against `base`.
 */
static int load_file(sm_config *config, const char *path, const char *base, int may_be_missing,
		     size_t layered)
{
	toml_doc *doc = NULL;
	const toml_entry *vaults;
	char *text = NULL, *default_vault = NULL;
	size_t len = 0;
	int rc;

	rc = sm_read_file(path, SM_CONFIG_MAX_BYTES, &text, &len);
	if (rc == SM_ENOTFOUND && may_be_missing) {
		sm_error_clear();
		return 0;
	}
	if (rc)
		return rc;
	rc = toml_parse(&doc, text, len, path, SM_CONFIG_MAX_BYTES);
	if (rc)
		goto done;

	rc = read_default(doc->root, path, &default_vault);
	if (rc)
		goto done;
	if (default_vault) {
		free(config->default_vault);
		config->default_vault = default_vault;
	}

	vaults = toml_table_get(doc->root, "vault");
	if (!vaults)
		goto done;
	if (vaults->value.type != TOML_TABLE) {
		rc = file_error(path, vaults->pos.line, vaults->pos.col,
				"'vault' must hold one table per vault such as [vault.NAME], not %s",
				toml_type_name(vaults->value.type));
		goto done;
	}
	for (size_t i = 0; i < vaults->value.u.table->len; i++) {
		sm_vault_config vault;

		rc = read_vault(&vaults->value.u.table->entries[i], path, base, &vault);
		if (rc)
			goto done;
		rc = merge_vault(config, &vault, layered);
		if (rc) {
			vault_release(&vault);
			goto done;
		}
	}
done:
	toml_doc_free(doc);
	free(text);
	return rc;
}

int sm_config_load(sm_config **out, const char *cwd)
{
	sm_config *config;
	char *start = NULL, *project_dir = NULL;
	char resolved[PATH_MAX];
	int rc;

	*out = NULL;
	config = calloc(1, sizeof(*config));
	if (!config)
		return sm_error_set(SM_ENOMEM, "out of memory");
	rc = sm_config_home(&config->home);
	if (rc)
		goto done;
	config->user_path = sm_path_join(config->home, "sharing.toml");
	if (!config->user_path) {
		rc = SM_ENOMEM;
		goto done;
	}
	rc = load_file(config, config->user_path, config->home, 1, 0);
	if (rc)
		goto done;
	if (config->nvaults > 1)
		qsort(config->vaults, config->nvaults, sizeof(*config->vaults), compare_vaults);

	if (!cwd && !getcwd(resolved, sizeof(resolved))) {
		rc = sm_error_set_errno(SM_EIO, errno, "cannot find the working directory");
		goto done;
	}
	if (cwd && !realpath(cwd, resolved)) {
		rc = sm_error_set_errno(errno == ENOENT ? SM_ENOTFOUND : SM_EIO, errno,
					"cannot resolve directory '%s'", cwd);
		goto done;
	}
	start = sm_strdup(resolved);
	if (!start) {
		rc = SM_ENOMEM;
		goto done;
	}
	rc = find_project_file(start, config->user_path, &config->project_path, &project_dir);
	if (rc)
		goto done;
	if (config->project_path) {
		rc = load_file(config, config->project_path, project_dir, 0, config->nvaults);
		if (rc)
			goto done;
	}
	if (config->nvaults > 1)
		qsort(config->vaults, config->nvaults, sizeof(*config->vaults), compare_vaults);
done:
	free(start);
	free(project_dir);
	if (rc) {
		sm_config_free(config);
		return rc;
	}
	*out = config;
	return 0;
}
