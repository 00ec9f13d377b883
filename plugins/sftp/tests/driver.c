/*
 * sftp-driver: loads a connector plug-in with dlopen(), registers it the
 * way the library's loader does, and runs one vault operation through the
 * public API. It lets the tests and the benchmark use the SFTP plug-in
 * without the skillmeat command.
 *
 *   sftp-driver PLUGIN.so [-r] [-s KEY=VALUE]... NAME TYPE COMMAND [ARGS]
 *     push FILE [-f]     pull ID DIR [-f]     ls     info ID     delete ID
 *
 * Exit codes are those of the skillmeat command: 3 not found, 4 exists,
 * 5 read-only, 6 auth, 7 integrity, 8 network, 9 invalid, 10 conflict.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <skillmeat/error.h>
#include <skillmeat/plugin.h>
#include <skillmeat/vault.h>

static int exit_code(int rc)
{
	switch (rc) {
	case 0: return 0;
	case SM_ENOTFOUND: return 3;
	case SM_EEXISTS: return 4;
	case SM_EREADONLY: return 5;
	case SM_EAUTH: return 6;
	case SM_EINTEGRITY: return 7;
	case SM_ENETWORK: return 8;
	case SM_EINVALID: return 9;
	case SM_ECONFLICT: return 10;
	default: return 1;
	}
}

static int register_vault(const sm_plugin_host *host, const char *type, unsigned int abi,
			  sm_vault_ctor ctor)
{
	return sm_vault_register(type, abi, ctor);
}

static void print_message(sm_log_level level, const char *text, void *payload)
{
	if (level >= SM_LOG_WARN || getenv("SFTP_DRIVER_VERBOSE"))
		fprintf(stderr, "%s: %s\n", level == SM_LOG_WARN ? "warning" : "note", text);
}

static int usage(void)
{
	fprintf(stderr, "usage: sftp-driver PLUGIN.so [-r] [-s KEY=VALUE]... NAME TYPE COMMAND [ARGS]\n");
	return 2;
}

int main(int argc, char **argv)
{
	static sm_kv settings[16];
	sm_callbacks callbacks = { NULL, print_message, NULL };
	sm_plugin_host host = { SM_PLUGIN_ABI_VERSION, SM_VAULT_ABI_VERSION, register_vault, NULL };
	sm_vault_config config = { 0 };
	sm_vault *vault = NULL;
	const unsigned int *abi;
	sm_plugin_init_fn init;
	const char *command;
	void *handle;
	int i = 2, rc;

	if (argc < 5)
		return usage();
	handle = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
	if (!handle) {
		fprintf(stderr, "error: %s\n", dlerror());
		return 1;
	}
	abi = dlsym(handle, SM_PLUGIN_ABI_SYMBOL);
	init = (sm_plugin_init_fn)dlsym(handle, SM_PLUGIN_INIT_SYMBOL);
	if (!abi || !init || *abi != SM_PLUGIN_ABI_VERSION) {
		fprintf(stderr, "error: '%s' is not a plug-in of ABI %d\n", argv[1], SM_PLUGIN_ABI_VERSION);
		return 1;
	}
	if ((rc = init(&host)) != 0) {
		fprintf(stderr, "error: %s\n", sm_error_message());
		return exit_code(rc);
	}

	for (; i < argc && argv[i][0] == '-'; i++) {
		char *eq;

		if (strcmp(argv[i], "-r") == 0) {
			config.read_only = 1;
			continue;
		}
		if (strcmp(argv[i], "-s") != 0 || i + 1 >= argc || config.nsettings == 16)
			return usage();
		eq = strchr(argv[++i], '=');
		if (!eq)
			return usage();
		settings[config.nsettings].key = strndup(argv[i], (size_t)(eq - argv[i]));
		settings[config.nsettings].value = strdup(eq + 1);
		config.nsettings++;
	}
	if (argc - i < 3)
		return usage();
	config.name = argv[i];
	config.type = argv[i + 1];
	config.source = "the driver's arguments";
	config.settings = settings;
	command = argv[i + 2];
	i += 3;

	rc = sm_vault_open(&vault, &config, &callbacks);
	if (rc)
		goto done;
	if (strcmp(command, "push") == 0 && i < argc) {
		sm_push_opts opts = { 0 };
		sm_record *record = NULL;

		opts.force = i + 1 < argc && strcmp(argv[i + 1], "-f") == 0;
		rc = sm_vault_push(vault, argv[i], NULL, &opts, &record);
		if (!rc)
			printf("%s %s\n", opts.unchanged ? "unchanged" : "pushed", record->bundle_id);
		sm_record_free(record);
	} else if (strcmp(command, "pull") == 0 && i + 1 < argc) {
		char *path = NULL;

		rc = sm_vault_pull(vault, argv[i], argv[i + 1],
				   i + 2 < argc && strcmp(argv[i + 2], "-f") == 0, &path);
		if (!rc)
			printf("%s\n", path);
		free(path);
	} else if (strcmp(command, "ls") == 0) {
		sm_record_list list = { 0 };

		rc = sm_vault_list(vault, NULL, &list);
		for (size_t j = 0; !rc && j < list.count; j++)
			printf("%s %llu %s\n", list.items[j]->bundle_id,
			       (unsigned long long)list.items[j]->size_bytes,
			       sm_record_metadata_get(list.items[j], "sha256"));
		sm_record_list_release(&list);
	} else if (strcmp(command, "info") == 0 && i < argc) {
		sm_record *record = NULL;
		char *text = NULL;

		rc = sm_vault_info(vault, argv[i], &record);
		if (!rc)
			rc = sm_record_to_text(record, &text);
		if (!rc)
			printf("%s\n", text);
		free(text);
		sm_record_free(record);
	} else if (strcmp(command, "delete") == 0 && i < argc) {
		rc = sm_vault_delete(vault, argv[i]);
	} else {
		sm_vault_close(vault);
		return usage();
	}
done:
	if (rc)
		fprintf(stderr, "error: %s\n", sm_error_message());
	sm_vault_close(vault);
	for (size_t j = 0; j < config.nsettings; j++) {
		free(settings[j].key);
		free(settings[j].value);
	}
	return exit_code(rc);
}
