/*
 * PROVISIONAL AWS credentials: the vault's stored credentials, then
 * AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "credentials/aws.h"
#include "skillmeat/credentials.h"
#include "util/util.h"

static char *secret_copy(const char *value)
{
	return value ? strdup(value) : NULL;
}

static void secret_free(char *value)
{
	if (value) {
		explicit_bzero(value, strlen(value));
		free(value);
	}
}

void sm_aws_credentials_clear(sm_aws_credentials *creds)
{
	if (!creds)
		return;
	secret_free(creds->access_key_id);
	secret_free(creds->secret_access_key);
	secret_free(creds->session_token);
	memset(creds, 0, sizeof(*creds));
}

int sm_aws_credentials_expiring(const sm_aws_credentials *creds, int margin_seconds)
{
	return creds->expires_at && (long long)time(NULL) + margin_seconds >= creds->expires_at;
}

static int take(sm_aws_credentials *out, const char *id, const char *secret, const char *token,
		const char *source)
{
	out->access_key_id = secret_copy(id);
	out->secret_access_key = secret_copy(secret);
	out->session_token = token && *token ? secret_copy(token) : NULL;
	out->expires_at = 0;
	snprintf(out->source, sizeof(out->source), "%s", source);
	if (!out->access_key_id || !out->secret_access_key ||
	    (token && *token && !out->session_token)) {
		sm_aws_credentials_clear(out);
		return sm_error_set(SM_ENOMEM, "out of memory");
	}
	return 0;
}

int sm_aws_credentials_resolve(const sm_vault_config *config, const sm_callbacks *callbacks,
			       sm_aws_credentials *out)
{
	sm_cred_opts opts = { 0 };
	sm_credentials *stored = NULL;
	const char *id, *secret;
	char source[64];
	int rc;

	memset(out, 0, sizeof(*out));
	opts.callbacks = callbacks;
	rc = sm_credentials_lookup(&stored, config->name, &opts);
	if (rc)
		return rc;
	if (stored->fields[SM_CRED_USERNAME] && stored->fields[SM_CRED_PASSWORD]) {
		snprintf(source, sizeof(source), "stored credentials of vault '%.30s'", config->name);
		rc = take(out, stored->fields[SM_CRED_USERNAME], stored->fields[SM_CRED_PASSWORD],
			  stored->fields[SM_CRED_SESSION_TOKEN], source);
		sm_credentials_free(stored);
		return rc;
	}
	sm_credentials_free(stored);

	id = getenv("AWS_ACCESS_KEY_ID");
	secret = getenv("AWS_SECRET_ACCESS_KEY");
	if (id && *id && secret && *secret)
		return take(out, id, secret, getenv("AWS_SESSION_TOKEN"), "environment");
	return sm_error_set(SM_EAUTH, "no AWS credentials found; store them with 'skillmeat vault "
			    "auth %s --username ACCESS_KEY_ID --password' or set AWS_ACCESS_KEY_ID "
			    "and AWS_SECRET_ACCESS_KEY", config->name);
}
