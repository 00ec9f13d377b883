/*
 * cred_lookup: prints what sm_credentials_lookup() returns for one vault,
 * so the end-to-end tests can check stored values. It prints secrets on
 * purpose and exists for tests only.
 *
 * usage: cred_lookup VAULT [env|keychain|file]
 * Prints "FIELD SOURCE VALUE" for each field found and exits 0, or prints
 * "error NAME: MESSAGE" on standard error and exits 1. Library debug
 * messages go to standard error as "debug: TEXT".
 */
#include <stdio.h>
#include <string.h>

#include "skillmeat/credentials.h"
#include "skillmeat/error.h"

static void on_message(sm_log_level level, const char *text, void *payload)
{
	(void)level;
	(void)payload;
	fprintf(stderr, "debug: %s\n", text);
}

int main(int argc, char **argv)
{
	sm_callbacks callbacks = { NULL, on_message, NULL };
	sm_cred_opts opts = { 0 };
	sm_credentials *credentials;
	int rc;

	if (argc < 2 || argc > 3) {
		fprintf(stderr, "usage: cred_lookup VAULT [env|keychain|file]\n");
		return 2;
	}
	opts.callbacks = &callbacks;
	if (argc == 3)
		opts.store = strcmp(argv[2], "env") == 0 ? SM_CRED_STORE_ENV :
			     strcmp(argv[2], "keychain") == 0 ? SM_CRED_STORE_KEYCHAIN :
			     SM_CRED_STORE_FILE;
	rc = sm_credentials_lookup(&credentials, argv[1], &opts);
	if (rc) {
		fprintf(stderr, "error %s: %s\n", sm_error_name(rc), sm_error_message());
		return 1;
	}
	for (int i = 0; i < SM_CRED_NFIELDS; i++)
		if (credentials->fields[i])
			printf("%s %s %s\n", sm_cred_field_name(i),
			       sm_cred_store_name(credentials->sources[i]), credentials->fields[i]);
	sm_credentials_free(credentials);
	return 0;
}
