/*
 * aws_cred_resolve: runs the AWS credentials chain for one vault and
 * prints what it found, never the secret access key or the session token.
 *
 * usage: aws_cred_resolve VAULT [KEY=VALUE...] [--margin SECONDS]
 * KEY=VALUE pairs become the vault's settings (profile=NAME and the like).
 * Prints on standard output:
 *   source SOURCE
 *   access_key_id ID
 *   session_token yes|no
 *   expires yes|no
 *   expires_in SECONDS        (only when it expires)
 *   expiring yes|no           (within --margin, default 300 s)
 * and exits 0, or prints "error NAME: MESSAGE" on standard error and exits
 * 1. Library debug messages go to standard error as "debug: TEXT".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "credentials/aws.h"
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
	sm_vault_config config = { 0 };
	sm_kv settings[16];
	sm_aws_credentials creds;
	int margin = 300, rc;

	if (argc < 2) {
		fprintf(stderr, "usage: aws_cred_resolve VAULT [KEY=VALUE...] [--margin SECONDS]\n");
		return 2;
	}
	config.name = argv[1];
	config.type = "s3";
	config.settings = settings;
	for (int i = 2; i < argc; i++) {
		char *eq = strchr(argv[i], '=');

		if (strcmp(argv[i], "--margin") == 0 && i + 1 < argc) {
			margin = atoi(argv[++i]);
			continue;
		}
		if (!eq || config.nsettings == sizeof(settings) / sizeof(settings[0])) {
			fprintf(stderr, "aws_cred_resolve: expected KEY=VALUE, got '%s'\n", argv[i]);
			return 2;
		}
		*eq = '\0';
		settings[config.nsettings].key = argv[i];
		settings[config.nsettings].value = eq + 1;
		config.nsettings++;
	}

	rc = sm_aws_credentials_resolve(&config, &callbacks, &creds);
	if (rc) {
		fprintf(stderr, "error %s: %s\n", sm_error_name(rc), sm_error_message());
		return 1;
	}
	printf("source %s\n", creds.source);
	printf("access_key_id %s\n", creds.access_key_id);
	printf("session_token %s\n", creds.session_token ? "yes" : "no");
	printf("expires %s\n", creds.expires_at ? "yes" : "no");
	if (creds.expires_at)
		printf("expires_in %lld\n", creds.expires_at - (long long)time(NULL));
	printf("expiring %s\n", sm_aws_credentials_expiring(&creds, margin) ? "yes" : "no");
	sm_aws_credentials_clear(&creds);
	return 0;
}
