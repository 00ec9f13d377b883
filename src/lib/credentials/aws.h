/*
 * AWS credentials for the S3 connector. PROVISIONAL: this version reads
 * only the vault's stored credentials and the AWS_* environment variables;
 * the full chain replaces these two files.
 */
#ifndef SM_CREDENTIALS_AWS_H
#define SM_CREDENTIALS_AWS_H

#include "skillmeat/common.h"
#include "skillmeat/config.h"

typedef struct sm_aws_credentials {
	char *access_key_id;
	char *secret_access_key;
	char *session_token;     /* NULL when none */
	long long expires_at;    /* unix seconds, 0 = never */
	char source[64];         /* e.g. "environment", "stored credentials of vault 'x'" */
} sm_aws_credentials;

/* Resolves credentials for `config`: 0, or SM_EAUTH "no AWS credentials found; ...". */
int sm_aws_credentials_resolve(const sm_vault_config *config, const sm_callbacks *callbacks,
			       sm_aws_credentials *out);

/* Wipes and frees the strings of `creds`. */
void sm_aws_credentials_clear(sm_aws_credentials *creds);

/* Returns 1 when `creds` expire within `margin_seconds`. */
int sm_aws_credentials_expiring(const sm_aws_credentials *creds, int margin_seconds);

#endif
