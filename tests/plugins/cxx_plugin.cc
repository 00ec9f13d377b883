// A plug-in written in C++, for tests/e2e/t120-plugins.sh: plugin.h must
// give both symbols C linkage and external linkage without extern "C" here.
#include <skillmeat/error.h>
#include <skillmeat/plugin.h>

static int cxx_new(sm_vault **out, const sm_vault_config *, const sm_callbacks *)
{
	*out = nullptr;
	return sm_error_set(SM_EUNSUPPORTED, "the C++ test connector opens no vaults");
}

SM_PLUGIN_DECLARE();

int skillmeat_plugin_init(const sm_plugin_host *host)
{
	return host->register_vault(host, "example-cxx", SM_VAULT_ABI_VERSION, cxx_new);
}
