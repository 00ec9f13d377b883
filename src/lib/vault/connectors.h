/* Constructors of the built-in connectors. */
#ifndef SM_VAULT_CONNECTORS_H
#define SM_VAULT_CONNECTORS_H

#include "skillmeat/vault.h"

/* The local (file system) vault: settings "path". */
int sm_vault_local_new(sm_vault **out, const sm_vault_config *config,
		       const sm_callbacks *callbacks);

#endif
