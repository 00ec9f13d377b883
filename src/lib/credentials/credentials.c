/*
 * The credential lookup chain (environment, keychain, sealed file) and the
 * public calls that store, remove and report credentials.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <sodium.h>

#include "config/sharing.h"
#include "credentials/credentials_internal.h"
#include "skillmeat/config.h"
#include "util/util.h"

static const char *const field_names[SM_CRED_NFIELDS] = {
	"username", "password", "ssh_key", "session_token",
};

static const char *const env_suffixes[SM_CRED_NFIELDS] = {
	"USERNAME", "PASSWORD", "SSH_KEY", "SESSION_TOKEN",
};

const char *sm_cred_field_name(sm_cred_field field)
{
	return (unsigned)field < SM_CRED_NFIELDS ? field_names[field] : "unknown";
}

int sm_cred_field_from_name(const char *name)
{
	for (int i = 0; i < SM_CRED_NFIELDS; i++)
		if (strcmp(name, field_names[i]) == 0)
			return i;
	return -1;
}

const char *sm_cred_store_name(sm_cred_store store)
{
	switch (store) {
	case SM_CRED_STORE_ENV: return "env";
	case SM_CRED_STORE_KEYCHAIN: return "keychain";
	case SM_CRED_STORE_FILE: return "file";
	default: return "none";
	}
}

char *sm_secret_dup(const char *value, size_t len)
{
	char *copy;

	if (sodium_init() < 0) {
		sm_error_set(SM_ERROR, "cannot initialise libsodium");
		return NULL;
	}
	/* sodium_malloc() locks the pages where it can and wipes them in sodium_free() */
	copy = sodium_malloc(len + 1);
	if (!copy) {
		sm_error_set(SM_ENOMEM, "out of memory");
		return NULL;
	}
	memcpy(copy, value, len);
	copy[len] = '\0';
	return copy;
}

void sm_secret_free(char *secret)
{
	if (secret)
		sodium_free(secret);
}

void sm_secret_array_free(char *values[SM_CRED_NFIELDS])
{
	for (int i = 0; i < SM_CRED_NFIELDS; i++) {
		sm_secret_free(values[i]);
		values[i] = NULL;
	}
}

int sm_cred_env_name(const char *vault, sm_cred_field field, char *out, size_t size)
{
	int n;

	if (!sm_vault_name_valid(vault) || (unsigned)field >= SM_CRED_NFIELDS)
		return sm_error_set(SM_EINVALID, "invalid vault name '%s'", vault);
	n = snprintf(out, size, "SKILLMEAT_VAULT_%s_%s", vault, env_suffixes[field]);
	if (n < 0 || (size_t)n >= size)
		return sm_error_set(SM_EINVALID, "environment variable name for vault '%s' is too long",
				    vault);
	for (char *p = out + strlen("SKILLMEAT_VAULT_"); *p; p++) {
		if (*p == '-' || *p == '.')
			*p = '_';
		else
			*p = (char)toupper((unsigned char)*p);
	}
	return 0;
}

/* Reads the first line of a passphrase file into secret memory. */
static int read_passphrase_file(const char *path, char **out)
{
	char *data = NULL;
	size_t size = 0, len;
	int rc;

	struct stat st;

	rc = sm_read_file(path, SM_CRED_VALUE_MAX, &data, &size);
	if (rc == SM_ENOTFOUND)
		return sm_error_set(SM_ENOTFOUND, "passphrase file '%s' not found; check the path "
				    "given with --passphrase-file or SKILLMEAT_CREDENTIALS_PASSPHRASE_FILE",
				    path);
	if (rc)
		return rc;
	/* held to the same rule as the key file it replaces */
	if (stat(path, &st) == 0 && (st.st_mode & 077)) {
		sodium_memzero(data, size);
		free(data);
		return sm_error_set(SM_EREADONLY, "passphrase file '%s' is readable by others (mode %03o); "
				    "run 'chmod 600 %s'", path, (unsigned)(st.st_mode & 0777), path);
	}
	len = strcspn(data, "\r\n");
	if (len == 0) {
		rc = sm_error_set(SM_EINVALID, "passphrase file '%s' is empty", path);
	} else {
		*out = sm_secret_dup(data, len);
		rc = *out ? 0 : SM_ENOMEM;
	}
	sodium_memzero(data, size);
	free(data);
	return rc;
}

int sm_cred_passphrase(const char *passphrase_file, char **out)
{
	const char *env;

	*out = NULL;
	if (passphrase_file)
		return read_passphrase_file(passphrase_file, out);
	env = getenv("SKILLMEAT_CREDENTIALS_PASSPHRASE");
	if (env && !*env)
		/* an empty CI secret must not silently select the key-file mode */
		return sm_error_set(SM_EINVALID, "SKILLMEAT_CREDENTIALS_PASSPHRASE is set but empty; "
				    "set a passphrase or unset the variable");
	if (env) {
		*out = sm_secret_dup(env, strlen(env));
		return *out ? 0 : SM_ENOMEM;
	}
	env = getenv("SKILLMEAT_CREDENTIALS_PASSPHRASE_FILE");
	if (env && *env)
		return read_passphrase_file(env, out);
	return 0;
}

/* What one call works with: the home directory and the passphrase. */
typedef struct context {
	char *home;
	char *passphrase;
	const sm_cred_opts *opts;
} context;

static int context_init(context *ctx, const char *vault, const sm_cred_opts *opts)
{
	static const sm_cred_opts defaults = { 0 };
	int rc;

	memset(ctx, 0, sizeof(*ctx));
	ctx->opts = opts ? opts : &defaults;
	if (sodium_init() < 0)
		return sm_error_set(SM_ERROR, "cannot initialise libsodium");
	if (!vault || !sm_vault_name_valid(vault))
		return sm_error_set(SM_EINVALID, "invalid vault name '%s'", vault ? vault : "");
	if (ctx->opts->store > SM_CRED_STORE_FILE)
		return sm_error_set(SM_EINVALID, "unknown credential store %d", (int)ctx->opts->store);
	if (ctx->opts->home) {
		ctx->home = sm_strdup(ctx->opts->home);
		rc = ctx->home ? 0 : SM_ENOMEM;
	} else {
		rc = sm_config_home(&ctx->home);
	}
	if (rc)
		return rc;
	return sm_cred_passphrase(ctx->opts->passphrase_file, &ctx->passphrase);
}

static void context_release(context *ctx)
{
	free(ctx->home);
	sm_secret_free(ctx->passphrase);
}

/* Says once per process, at debug level, that the keychain is skipped and why. */
static void note_fallback(const context *ctx, const char *reason)
{
	static atomic_int noted;
	const sm_callbacks *cb = ctx->opts->callbacks;
	char text[320];

	if (!cb || !cb->message || atomic_exchange(&noted, 1))
		return;
	snprintf(text, sizeof(text), "keychain not used: %s; using the sealed file in '%s'",
		 reason, ctx->home);
	cb->message(SM_LOG_DEBUG, text, cb->payload);
}

/* Returns 1 when this call may use the keychain and the Secret Service responds. */
static int keychain_usable(const context *ctx, char *reason, size_t size)
{
	if (ctx->opts->store != SM_CRED_STORE_NONE && ctx->opts->store != SM_CRED_STORE_KEYCHAIN)
		return 0;
	if (sm_keychain_available(reason, size))
		return 1;
	if (ctx->opts->store == SM_CRED_STORE_NONE)
		note_fallback(ctx, reason);
	return 0;
}

static int uses(const context *ctx, sm_cred_store store)
{
	return ctx->opts->store == SM_CRED_STORE_NONE || ctx->opts->store == store;
}

static int all_found(const sm_credentials *c)
{
	for (int i = 0; i < SM_CRED_NFIELDS; i++)
		if (!c->fields[i])
			return 0;
	return 1;
}

/* Takes the fields of `values` that `c` lacks and frees the rest. */
static void merge(sm_credentials *c, char *values[SM_CRED_NFIELDS], sm_cred_store source)
{
	for (int i = 0; i < SM_CRED_NFIELDS; i++) {
		if (values[i] && !c->fields[i]) {
			c->fields[i] = values[i];
			c->sources[i] = source;
			values[i] = NULL;
		}
	}
	sm_secret_array_free(values);
}

static int lookup_env(sm_credentials *c, const char *vault)
{
	char name[128];
	const char *value;
	int rc;

	for (int i = 0; i < SM_CRED_NFIELDS; i++) {
		rc = sm_cred_env_name(vault, i, name, sizeof(name));
		if (rc)
			return rc;
		value = getenv(name);
		if (!value || !*value)
			continue;
		c->fields[i] = sm_secret_dup(value, strlen(value));
		if (!c->fields[i])
			return SM_ENOMEM;
		c->sources[i] = SM_CRED_STORE_ENV;
	}
	return 0;
}

int sm_credentials_lookup(sm_credentials **out, const char *vault, const sm_cred_opts *opts)
{
	char *values[SM_CRED_NFIELDS] = { 0 };
	char reason[160];
	sm_credentials *c = NULL;
	context ctx;
	int rc;

	*out = NULL;
	rc = context_init(&ctx, vault, opts);
	if (rc)
		goto done;
	c = calloc(1, sizeof(*c));
	if (!c || !(c->vault = sm_strdup(vault))) {
		rc = sm_error_set(SM_ENOMEM, "out of memory");
		goto done;
	}
	if (uses(&ctx, SM_CRED_STORE_ENV)) {
		rc = lookup_env(c, vault);
		if (rc)
			goto done;
	}
	if (!all_found(c) && keychain_usable(&ctx, reason, sizeof(reason))) {
		rc = sm_keychain_lookup(vault, values);
		if (rc)
			goto done;
		merge(c, values, SM_CRED_STORE_KEYCHAIN);
	}
	if (!all_found(c) && uses(&ctx, SM_CRED_STORE_FILE)) {
		rc = sm_sealed_lookup(ctx.home, ctx.passphrase, vault, values, NULL);
		if (rc)
			goto done;
		merge(c, values, SM_CRED_STORE_FILE);
	}
	*out = c;
	c = NULL;
done:
	sm_secret_array_free(values);
	sm_credentials_free(c);
	context_release(&ctx);
	return rc;
}

int sm_credentials_store(const char *vault, const char *const values[SM_CRED_NFIELDS],
			 const sm_cred_opts *opts, sm_cred_store *used)
{
	char reason[160];
	sm_cred_store target;
	context ctx;
	int rc, any = 0;

	if (used)
		*used = SM_CRED_STORE_NONE;
	rc = context_init(&ctx, vault, opts);
	if (rc)
		goto done;
	for (int i = 0; i < SM_CRED_NFIELDS; i++) {
		if (values[i] && (!*values[i] || strlen(values[i]) > SM_CRED_VALUE_MAX)) {
			rc = sm_error_set(SM_EINVALID, "the %s of vault '%s' must be 1 to %d bytes long",
					  sm_cred_field_name(i), vault, SM_CRED_VALUE_MAX);
			goto done;
		}
		any |= values[i] != NULL;
	}
	if (!any) {
		rc = sm_error_set(SM_EINVALID, "no credentials given for vault '%s'", vault);
		goto done;
	}

	switch (ctx.opts->store) {
	case SM_CRED_STORE_ENV:
		rc = sm_error_set(SM_EINVALID, "environment variables cannot be written; set "
				  "SKILLMEAT_VAULT_* in the environment instead");
		goto done;
	case SM_CRED_STORE_KEYCHAIN:
		if (!sm_keychain_available(reason, sizeof(reason))) {
			rc = sm_error_set(SM_EUNSUPPORTED, "the keychain is not available (%s); use "
					  "'--store file' or unlock the keychain", reason);
			goto done;
		}
		target = SM_CRED_STORE_KEYCHAIN;
		break;
	case SM_CRED_STORE_FILE:
		target = SM_CRED_STORE_FILE;
		break;
	default:
		target = keychain_usable(&ctx, reason, sizeof(reason)) ? SM_CRED_STORE_KEYCHAIN
								       : SM_CRED_STORE_FILE;
		break;
	}
	if (target == SM_CRED_STORE_KEYCHAIN)
		rc = sm_keychain_store(vault, values);
	else
		rc = sm_sealed_update(ctx.home, ctx.passphrase, vault, values, 0, NULL);
	if (!rc && used)
		*used = target;
done:
	context_release(&ctx);
	return rc;
}

int sm_credentials_remove(const char *vault, const sm_cred_opts *opts, int *removed)
{
	char reason[160];
	context ctx;
	int rc, count = 0, total = 0;

	if (removed)
		*removed = 0;
	rc = context_init(&ctx, vault, opts);
	if (rc)
		goto done;
	if (ctx.opts->store == SM_CRED_STORE_ENV) {
		rc = sm_error_set(SM_EINVALID, "environment variables cannot be removed; unset "
				  "SKILLMEAT_VAULT_* in the environment instead");
		goto done;
	}
	if (ctx.opts->store == SM_CRED_STORE_KEYCHAIN && !sm_keychain_available(reason, sizeof(reason))) {
		rc = sm_error_set(SM_EUNSUPPORTED, "the keychain is not available (%s)", reason);
		goto done;
	}
	if (keychain_usable(&ctx, reason, sizeof(reason))) {
		rc = sm_keychain_remove(vault, &count);
		if (rc)
			goto done;
		total += count;
	}
	if (uses(&ctx, SM_CRED_STORE_FILE)) {
		rc = sm_sealed_update(ctx.home, ctx.passphrase, vault, NULL, 1, &count);
		if (rc)
			goto done;
		total += count;
	}
	if (removed)
		*removed = total;
done:
	context_release(&ctx);
	return rc;
}

int sm_credentials_status(const char *vault, const sm_cred_opts *opts, sm_cred_status *out)
{
	char *values[SM_CRED_NFIELDS] = { 0 };
	sm_sealed_info info = { 0 };
	context ctx;
	char name[128];
	int rc;

	memset(out, 0, sizeof(*out));
	rc = context_init(&ctx, vault, opts);
	if (rc)
		goto done;
	for (int i = 0; uses(&ctx, SM_CRED_STORE_ENV) && i < SM_CRED_NFIELDS; i++) {
		const char *value;

		rc = sm_cred_env_name(vault, i, name, sizeof(name));
		if (rc)
			goto done;
		value = getenv(name);
		if (value && *value)
			out->env |= 1u << i;
	}
	out->keychain_available = keychain_usable(&ctx, out->keychain_reason,
						  sizeof(out->keychain_reason));
	if (out->keychain_available) {
		rc = sm_keychain_fields(vault, &out->keychain);
		if (rc)
			goto done;
	}
	if (uses(&ctx, SM_CRED_STORE_FILE)) {
		rc = sm_sealed_lookup(ctx.home, ctx.passphrase, vault, values, &info);
		out->file_exists = info.exists;
		out->file_passphrase = info.passphrase;
		if (rc)
			goto done;
		for (int i = 0; i < SM_CRED_NFIELDS; i++)
			if (values[i])
				out->file |= 1u << i;
	}
done:
	sm_secret_array_free(values);
	context_release(&ctx);
	return rc;
}

void sm_credentials_free(sm_credentials *credentials)
{
	if (!credentials)
		return;
	sm_secret_array_free(credentials->fields);
	free(credentials->vault);
	free(credentials);
}
