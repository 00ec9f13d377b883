/*
 * Plug-ins that must fail to load, one per build flag, for
 * tests/e2e/t120-plugins.sh. Built against the installed headers.
 *
 *   -DBROKEN_ABI        declares plug-in ABI 2
 *   -DBROKEN_INIT       registers "broken-init", then reports a failure
 *   -DBROKEN_NO_SYMBOLS exports neither plug-in symbol
 *   -DBROKEN_BUILTIN    registers the built-in type "local"
 *   -DBROKEN_VAULT_ABI  registers "broken-vault-abi" for vault ABI 99
 */
#include <skillmeat/error.h>
#include <skillmeat/plugin.h>

static int broken_new(sm_vault **out, const sm_vault_config *config,
		      const sm_callbacks *callbacks)
{
	(void)config;
	(void)callbacks;
	*out = NULL;
	return sm_error_set(SM_EINVALID, "the broken connector cannot open vaults");
}

#if defined(BROKEN_NO_SYMBOLS)
int broken_unrelated(void)
{
	return broken_new(0, 0, 0);
}
#else

#if defined(BROKEN_ABI)
SM_PLUGIN_EXPORT const unsigned int skillmeat_plugin_abi_version = 2;
#else
SM_PLUGIN_DECLARE();
#endif

SM_PLUGIN_EXPORT int skillmeat_plugin_init(const sm_plugin_host *host)
{
#if defined(BROKEN_INIT)
	int rc = host->register_vault(host, "broken-init", SM_VAULT_ABI_VERSION, broken_new);

	if (rc)
		return rc;
	return sm_error_set(SM_EAUTH, "the broken back-end is switched off");
#elif defined(BROKEN_BUILTIN)
	return host->register_vault(host, "local", SM_VAULT_ABI_VERSION, broken_new);
#elif defined(BROKEN_VAULT_ABI)
	return host->register_vault(host, "broken-vault-abi", 99, broken_new);
#else
	return host->register_vault(host, "broken-abi", SM_VAULT_ABI_VERSION, broken_new);
#endif
}
#endif
