/* Constructors of the built-in connectors. */
#ifndef SM_VAULT_CONNECTORS_H
#define SM_VAULT_CONNECTORS_H

#include "skillmeat/vault.h"

/* The local (file system) vault: settings "path". */
int sm_vault_local_new(sm_vault **out, const sm_vault_config *config,
		       const sm_callbacks *callbacks);

/* The S3 vault: settings "bucket", "region", "prefix", "endpoint_url" and more (docs/s3.md). */
int sm_vault_s3_new(sm_vault **out, const sm_vault_config *config,
		    const sm_callbacks *callbacks);

/* The read-only HTTP(S) vault: settings "url", "ca_bundle", "allow_http" (docs/http-vault.md). */
int sm_vault_http_new(sm_vault **out, const sm_vault_config *config,
		      const sm_callbacks *callbacks);

/*
 * The git vault: settings "url", "branch" (default main), "known_hosts",
 * "accept_new_host_keys", "ca_bundle", "allow_http", "commit_author",
 * "commit_email".
 */
int sm_vault_git_new(sm_vault **out, const sm_vault_config *config,
		     const sm_callbacks *callbacks);

#endif
