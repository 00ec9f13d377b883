/*
 * push_pull: publishes a bundle to a local vault and fetches it back,
 * through the public API of the installed libskillmeat.
 *
 *   cc -o push_pull push_pull.c $(pkg-config --cflags --libs skillmeat)
 *   ./push_pull VAULT_DIR BUNDLE OUT_DIR
 *
 * The pulled copy lands in OUT_DIR as "<id>.skillmeat-pack"; the library
 * has verified it, and it is byte-identical to BUNDLE.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <skillmeat/error.h>
#include <skillmeat/vault.h>

static void print_message(sm_log_level level, const char *text, void *payload)
{
	(void)payload;
	if (level >= SM_LOG_WARN)
		fprintf(stderr, "push_pull: warning: %s\n", text);
}

int main(int argc, char **argv)
{
	char name[] = "example", type[] = "local", key[] = "path", source[] = "push_pull";
	sm_kv setting = { key, NULL };
	sm_vault_config config = { 0 };
	sm_callbacks callbacks = { NULL, print_message, NULL };
	sm_vault *vault = NULL;
	sm_record *record = NULL;
	char *pulled = NULL;
	int rc;

	if (argc != 4) {
		fprintf(stderr, "usage: push_pull VAULT_DIR BUNDLE OUT_DIR\n");
		return 2;
	}

	/* the configuration a sharing.toml entry would give; the library borrows it */
	setting.value = argv[1];
	config.name = name;
	config.type = type;
	config.source = source;
	config.settings = &setting;
	config.nsettings = 1;

	/* a local vault is a directory that exists; its sub-directories are created on push */
	if (mkdir(argv[1], 0755) != 0 && errno != EEXIST) {
		perror(argv[1]);
		return 1;
	}
	rc = sm_vault_open(&vault, &config, &callbacks);
	if (rc)
		goto done;
	rc = sm_vault_push(vault, argv[2], NULL, NULL, &record);
	if (rc)
		goto done;
	printf("pushed %s (%llu bytes)\n", record->bundle_id,
	       (unsigned long long)record->size_bytes);
	rc = sm_vault_pull(vault, record->bundle_id, argv[3], 0, &pulled);
	if (rc)
		goto done;
	printf("pulled %s\n", pulled);
done:
	if (rc)
		fprintf(stderr, "push_pull: error: %s (%s)\n", sm_error_message(), sm_error_name(rc));
	free(pulled);
	sm_record_free(record);
	sm_vault_close(vault);
	return rc ? 1 : 0;
}
