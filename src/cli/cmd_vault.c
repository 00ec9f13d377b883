/* skillmeat vault add | list | remove | set-default | auth | push | pull | ls | info | delete */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "skillmeat/credentials.h"
#include "util/util.h"
#include "vault/http_vault_internal.h"
#include "vault/s3_internal.h"
#include "vault/git_internal.h"
#include "vault/record.h"

static int run_add(cli_context *ctx, int argc, char **argv);
static int run_list(cli_context *ctx, int argc, char **argv);
static int run_remove(cli_context *ctx, int argc, char **argv);
static int run_set_default(cli_context *ctx, int argc, char **argv);
static int run_push(cli_context *ctx, int argc, char **argv);
static int run_pull(cli_context *ctx, int argc, char **argv);
static int run_ls(cli_context *ctx, int argc, char **argv);
static int run_info(cli_context *ctx, int argc, char **argv);
static int run_delete(cli_context *ctx, int argc, char **argv);

enum { CMD_ADD, CMD_LIST, CMD_REMOVE, CMD_SET_DEFAULT, CMD_AUTH, CMD_PUSH, CMD_PULL,
       CMD_LS, CMD_INFO, CMD_DELETE };

static const cli_command commands[] = {
	[CMD_ADD] = { "add", run_add, "configure a vault in $SKILLMEAT_HOME/sharing.toml",
	  "vault add NAME TYPE LOCATION [--branch B] [--region R] [--prefix P]\n"
	  "                 [--endpoint-url U] [--known-hosts F] [--allow-http]\n"
	  "                 [--set-default] [--read-only]\n\n"
	  "  TYPE local: LOCATION is a directory (created when missing)\n"
	  "  TYPE git:   LOCATION is the repository URL (https://, ssh:// or\n"
	  "              USER@HOST:PATH); --branch B (default main), --known-hosts F\n"
	  "              (SSH host keys to trust instead of ~/.ssh/known_hosts),\n"
	  "              --allow-http (permit an unencrypted http:// URL)\n"
	  "  TYPE s3:    LOCATION is the bucket; --region, --prefix, --endpoint-url,\n"
	  "              --allow-http (permit an http:// endpoint that is not loopback)\n"
	  "  TYPE http:  LOCATION is the https:// URL of a published vault (read-only);\n"
	  "              --ca-bundle FILE (PEM) trusts a private CA, --allow-http permits http://\n"
	  "  a type from a plug-in: LOCATION is stored as its 'location' setting\n"
	  "  A URL must not contain a password: store it with 'vault auth NAME'.\n"
	  "  --set-default   make it the vault used without --vault\n"
	  "  --read-only     refuse push and delete on this vault" },
	[CMD_LIST] = { "list", run_list, "show configured vaults and the file each comes from",
	  "vault list [--verbose] [--json]" },
	[CMD_REMOVE] = { "remove", run_remove, "remove a vault from the file that defines it",
	  "vault remove NAME" },
	[CMD_SET_DEFAULT] = { "set-default", run_set_default, "choose the vault used without --vault",
	  "vault set-default NAME" },
	[CMD_AUTH] = { "auth", cli_run_auth, "store credentials for a vault",
	  "vault auth NAME [options]" },
	[CMD_PUSH] = { "push", run_push, "verify and publish a bundle",
	  "vault push FILE [--vault V] [--force] [--version X] [--no-progress]\n\n"
	  "  --version X   version recorded in the vault (default: the bundle's own)\n"
	  "  --force       replace an existing bundle with the same id\n"
	  "Pushing the identical file again succeeds and changes nothing." },
	[CMD_PULL] = { "pull", run_pull, "fetch a bundle, verify it, and write it to a directory",
	  "vault pull ID [--vault V] [--output DIR] [--force] [--no-progress]\n\n"
	  "  --output DIR  directory for ID.skillmeat-pack (default: current directory)\n"
	  "  --force       replace an existing different file" },
	[CMD_LS] = { "ls", run_ls, "list the bundles in a vault",
	  "vault ls [--vault V] [--filter TEXT] [--tag T]... [--json]\n\n"
	  "  --filter TEXT  name contains TEXT (case-insensitive), or a glob with * or ?\n"
	  "  --tag T        only bundles carrying every given tag" },
	[CMD_INFO] = { "info", run_info, "show the stored record of one bundle",
	  "vault info ID [--vault V] [--json]" },
	[CMD_DELETE] = { "delete", run_delete, "delete a bundle from a vault",
	  "vault delete ID [--vault V]" },
	{ NULL, NULL, NULL, NULL },
};

int cli_run_vault(cli_context *ctx, int argc, char **argv)
{
	return cli_dispatch(ctx, "vault", commands, argc, argv);
}

/* Options of the commands that work on one vault's bundles. */
typedef struct vault_args {
	const char *vault;
	const char *version;
	const char *output;
	const char *filter;
	const char **tags;
	size_t ntags;
	int force;
	int set_default;
	int read_only;
	const char *branch;
	const char *region;
	const char *prefix;
	const char *endpoint_url;
	const char *ca_bundle;
	const char *known_hosts;
	int allow_http;
	char **positional;
	int npositional;
} vault_args;

/*
 * Parses the options of command `which`; `allowed` lists the long option
 * names it takes besides the common ones.
 */
static int parse_args(cli_context *ctx, int which, const char *allowed, int min_pos,
		      int max_pos, int argc, char **argv, vault_args *args, int *exit_now)
{
	static const struct option options[] = {
		CLI_COMMON_OPTIONS,
		{ "vault", required_argument, NULL, 'V' },
		{ "version", required_argument, NULL, 'x' },
		{ "output", required_argument, NULL, 'o' },
		{ "filter", required_argument, NULL, 'f' },
		{ "tag", required_argument, NULL, 't' },
		{ "force", no_argument, NULL, 'F' },
		{ "set-default", no_argument, NULL, 'D' },
		{ "read-only", no_argument, NULL, 'R' },
		{ "branch", required_argument, NULL, 'b' },
		{ "region", required_argument, NULL, 'r' },
		{ "prefix", required_argument, NULL, 'p' },
		{ "endpoint-url", required_argument, NULL, 'e' },
		{ "ca-bundle", required_argument, NULL, 'C' },
		{ "known-hosts", required_argument, NULL, 'k' },
		{ "allow-http", no_argument, NULL, 'H' },
		{ NULL, 0, NULL, 0 },
	};
	const cli_command *cmd = &commands[which];
	int opt, index;

	memset(args, 0, sizeof(*args));
	args->tags = calloc((size_t)argc + 1, sizeof(char *));
	if (!args->tags)
		return EXIT_ERROR;
	optind = 1;
	opterr = 0;
	while ((index = -1, opt = getopt_long(argc, argv, ":qvho:", options, &index)) != -1) {
		char wanted[40];

		if (opt == '?' || opt == ':')
			return cli_bad_option(ctx, opt, argv);
		if (cli_common_option(ctx, opt, cmd, exit_now)) {
			if (*exit_now)
				return EXIT_OK;
			continue;
		}
		snprintf(wanted, sizeof(wanted), " %s ", index >= 0 ? options[index].name : "output");
		if (!strstr(allowed, wanted))
			return cli_usage_error(ctx, "option '%s' does not apply to 'vault %s'",
					       argv[optind - 1], cmd->name);
		switch (opt) {
		case 'V': args->vault = optarg; break;
		case 'x': args->version = optarg; break;
		case 'o': args->output = optarg; break;
		case 'f': args->filter = optarg; break;
		case 't': args->tags[args->ntags++] = optarg; break;
		case 'F': args->force = 1; break;
		case 'D': args->set_default = 1; break;
		case 'R': args->read_only = 1; break;
		case 'b': args->branch = optarg; break;
		case 'r': args->region = optarg; break;
		case 'p': args->prefix = optarg; break;
		case 'e': args->endpoint_url = optarg; break;
		case 'C': args->ca_bundle = optarg; break;
		case 'k': args->known_hosts = optarg; break;
		case 'H': args->allow_http = 1; break;
		}
	}
	args->positional = argv + optind;
	args->npositional = argc - optind;
	if (args->npositional < min_pos || args->npositional > max_pos)
		return cli_usage_error(ctx, "expected %d argument%s, got %d", min_pos,
				       min_pos == 1 ? "" : "s", args->npositional);
	return EXIT_OK;
}

/* Opens the vault named by --vault (or the default) for a command. */
static int open_vault(cli_context *ctx, const char *name, sm_config **config,
		      const sm_vault_config **picked, sm_vault **vault, sm_callbacks *callbacks)
{
	int rc;

	*vault = NULL;
	rc = sm_config_load(config, NULL);
	if (rc)
		return cli_fail(ctx, rc);
	*picked = sm_config_pick(*config, name);
	if (!*picked)
		return cli_fail(ctx, sm_error_last_code() ? sm_error_last_code() : SM_ENOTFOUND);
	rc = sm_vault_open(vault, *picked, callbacks);
	if (rc)
		return cli_fail(ctx, rc);
	return EXIT_OK;
}

static void print_record_json(const sm_record *record)
{
	cli_print_json(sm_record_to_json(record));
}

static int run_push(cli_context *ctx, int argc, char **argv)
{
	vault_args args;
	sm_config *config = NULL;
	const sm_vault_config *picked;
	sm_vault *vault = NULL;
	sm_record *record = NULL;
	sm_callbacks callbacks;
	cli_progress progress;
	sm_push_opts opts = { 0 };
	int exit_now = 0, code, rc;

	code = parse_args(ctx, CMD_PUSH, " vault force version ", 1, 1, argc, argv, &args, &exit_now);
	if (code || exit_now)
		goto done;
	cli_callbacks_init(&callbacks, &progress, ctx, "push");
	code = open_vault(ctx, args.vault, &config, &picked, &vault, &callbacks);
	if (code)
		goto done;
	opts.force = args.force;
	rc = sm_vault_push(vault, args.positional[0], args.version, &opts, &record);
	cli_progress_end(&progress);
	if (rc) {
		code = cli_fail(ctx, rc);
		goto done;
	}
	if (ctx->json) {
		json_t *result = sm_record_to_json(record);

		json_object_set_new(result, "unchanged", json_boolean(opts.unchanged));
		cli_print_json(result);
	} else if (opts.unchanged) {
		cli_note(ctx, "unchanged: %s is already in vault '%s' with the same contents",
			 record->bundle_id, picked->name);
	} else {
		char size[32];

		cli_format_size(record->size_bytes, size, sizeof(size));
		cli_note(ctx, "pushed %s to vault '%s' (%s)", record->bundle_id, picked->name, size);
	}
done:
	sm_record_free(record);
	sm_vault_close(vault);
	sm_config_free(config);
	free(args.tags);
	return code;
}

static int run_pull(cli_context *ctx, int argc, char **argv)
{
	vault_args args;
	sm_config *config = NULL;
	const sm_vault_config *picked;
	sm_vault *vault = NULL;
	sm_callbacks callbacks;
	cli_progress progress;
	char *path = NULL;
	int exit_now = 0, code, rc;

	code = parse_args(ctx, CMD_PULL, " vault output force ", 1, 1, argc, argv, &args, &exit_now);
	if (code || exit_now)
		goto done;
	cli_callbacks_init(&callbacks, &progress, ctx, "pull");
	code = open_vault(ctx, args.vault, &config, &picked, &vault, &callbacks);
	if (code)
		goto done;
	rc = sm_vault_pull(vault, args.positional[0], args.output ? args.output : ".",
			   args.force, &path);
	cli_progress_end(&progress);
	if (rc) {
		code = cli_fail(ctx, rc);
		goto done;
	}
	if (ctx->json) {
		json_t *result = json_object();

		json_object_set_new(result, "bundle_id", json_string(args.positional[0]));
		json_object_set_new(result, "vault", json_string(picked->name));
		json_object_set_new(result, "path", json_string(path));
		json_object_set_new(result, "verified", json_true());
		cli_print_json(result);
	} else {
		cli_note(ctx, "pulled %s from vault '%s' to %s (verified)", args.positional[0],
			 picked->name, path);
	}
done:
	free(path);
	sm_vault_close(vault);
	sm_config_free(config);
	free(args.tags);
	return code;
}

static void print_records_table(const sm_record_list *list)
{
	size_t id_width = 2, name_width = 4, version_width = 7;

	for (size_t i = 0; i < list->count; i++) {
		const sm_record *r = list->items[i];

		if (strlen(r->bundle_id) > id_width)
			id_width = strlen(r->bundle_id);
		if (strlen(r->name) > name_width)
			name_width = strlen(r->name);
		if (strlen(r->version) > version_width)
			version_width = strlen(r->version);
	}
	printf("%-*s  %-*s  %-*s  %10s  %-19s  %s\n", (int)id_width, "ID", (int)name_width, "NAME",
	       (int)version_width, "VERSION", "SIZE", "UPLOADED", "TAGS");
	for (size_t i = 0; i < list->count; i++) {
		const sm_record *r = list->items[i];
		char size[32];

		cli_format_size(r->size_bytes, size, sizeof(size));
		printf("%-*s  %-*s  %-*s  %10s  %-19.19s  ", (int)id_width, cli_show(r->bundle_id),
		       (int)name_width, cli_show(r->name), (int)version_width, cli_show(r->version),
		       size, cli_show(r->uploaded_at));
		for (size_t j = 0; j < r->ntags; j++)
			printf("%s%s", j ? "," : "", cli_show(r->tags[j]));
		putchar('\n');
	}
}

static int run_ls(cli_context *ctx, int argc, char **argv)
{
	vault_args args;
	sm_config *config = NULL;
	const sm_vault_config *picked;
	sm_vault *vault = NULL;
	sm_callbacks callbacks;
	cli_progress progress;
	sm_record_list list = { 0 };
	sm_list_filter filter = { 0 };
	int exit_now = 0, code, rc;

	code = parse_args(ctx, CMD_LS, " vault filter tag ", 0, 0, argc, argv, &args, &exit_now);
	if (code || exit_now)
		goto done;
	cli_callbacks_init(&callbacks, &progress, ctx, "ls");
	code = open_vault(ctx, args.vault, &config, &picked, &vault, &callbacks);
	if (code)
		goto done;
	filter.name = args.filter;
	filter.tags = args.tags;
	filter.ntags = args.ntags;
	rc = sm_vault_list(vault, &filter, &list);
	if (rc) {
		code = cli_fail(ctx, rc);
		goto done;
	}
	if (ctx->json) {
		json_t *items = json_array();

		for (size_t i = 0; i < list.count; i++)
			json_array_append_new(items, sm_record_to_json(list.items[i]));
		cli_print_json(items);
	} else if (list.count == 0) {
		cli_note(ctx, "no bundles in vault '%s'%s", picked->name,
			 args.filter || args.ntags ? " match the filter" : "");
	} else {
		print_records_table(&list);
	}
done:
	sm_record_list_release(&list);
	sm_vault_close(vault);
	sm_config_free(config);
	free(args.tags);
	return code;
}

static int run_info(cli_context *ctx, int argc, char **argv)
{
	vault_args args;
	sm_config *config = NULL;
	const sm_vault_config *picked;
	sm_vault *vault = NULL;
	sm_record *record = NULL;
	sm_callbacks callbacks;
	cli_progress progress;
	int exit_now = 0, code, rc;

	code = parse_args(ctx, CMD_INFO, " vault ", 1, 1, argc, argv, &args, &exit_now);
	if (code || exit_now)
		goto done;
	cli_callbacks_init(&callbacks, &progress, ctx, "info");
	code = open_vault(ctx, args.vault, &config, &picked, &vault, &callbacks);
	if (code)
		goto done;
	rc = sm_vault_info(vault, args.positional[0], &record);
	if (rc) {
		code = cli_fail(ctx, rc);
		goto done;
	}
	if (ctx->json) {
		print_record_json(record);
	} else {
		char size[32];

		cli_format_size(record->size_bytes, size, sizeof(size));
		printf("id:           %s\n", cli_show(record->bundle_id));
		printf("name:         %s\n", cli_show(record->name));
		printf("version:      %s\n", cli_show(record->version));
		printf("description:  %s\n", cli_show(record->description));
		printf("author:       %s\n", cli_show(record->author));
		printf("created at:   %s\n", cli_show(record->created_at));
		printf("uploaded at:  %s\n", cli_show(record->uploaded_at));
		printf("size:         %s (%llu bytes)\n", size, (unsigned long long)record->size_bytes);
		printf("bundle hash:  %s\n", cli_show(record->bundle_hash));
		printf("tags:        ");
		for (size_t i = 0; i < record->ntags; i++)
			printf(" %s", cli_show(record->tags[i]));
		putchar('\n');
		for (size_t i = 0; i < record->nmetadata; i++)
			printf("%-13s %s\n", cli_show(record->metadata[i].key), cli_show(record->metadata[i].value));
	}
done:
	sm_record_free(record);
	sm_vault_close(vault);
	sm_config_free(config);
	free(args.tags);
	return code;
}

static int run_delete(cli_context *ctx, int argc, char **argv)
{
	vault_args args;
	sm_config *config = NULL;
	const sm_vault_config *picked;
	sm_vault *vault = NULL;
	sm_callbacks callbacks;
	cli_progress progress;
	int exit_now = 0, code, rc;

	code = parse_args(ctx, CMD_DELETE, " vault ", 1, 1, argc, argv, &args, &exit_now);
	if (code || exit_now)
		goto done;
	cli_callbacks_init(&callbacks, &progress, ctx, "delete");
	code = open_vault(ctx, args.vault, &config, &picked, &vault, &callbacks);
	if (code)
		goto done;
	rc = sm_vault_delete(vault, args.positional[0]);
	if (rc) {
		code = cli_fail(ctx, rc);
		goto done;
	}
	if (ctx->json) {
		json_t *result = json_object();

		json_object_set_new(result, "bundle_id", json_string(args.positional[0]));
		json_object_set_new(result, "vault", json_string(picked->name));
		json_object_set_new(result, "deleted", json_true());
		cli_print_json(result);
	} else {
		cli_note(ctx, "deleted %s from vault '%s'", args.positional[0], picked->name);
	}
done:
	sm_vault_close(vault);
	sm_config_free(config);
	free(args.tags);
	return code;
}

/* Returns the user file path: $SKILLMEAT_HOME/sharing.toml. */
static int user_file(sm_config **config, char **path)
{
	int rc = sm_config_load(config, NULL);

	*path = NULL;
	if (rc)
		return rc;
	*path = strdup((*config)->user_path);
	return *path ? 0 : SM_ENOMEM;
}

/*
 * Returns the length of the shortest prefix of `path` that names a missing
 * file, or 0 when `path` exists: the first directory sm_mkdir_p() would
 * create.
 */
static size_t missing_prefix_len(const char *path)
{
	char prefix[PATH_MAX];
	struct stat st;
	size_t len = 0;
	char *slash;

	if (snprintf(prefix, sizeof(prefix), "%s", path) >= (int)sizeof(prefix))
		return 0;
	while (*prefix && stat(prefix, &st) != 0 && errno == ENOENT) {
		len = strlen(prefix);
		slash = strrchr(prefix, '/');
		if (!slash || slash == prefix)
			break;
		*slash = '\0';
	}
	return len;
}

/*
 * Removes the directories of `path` down to the prefix of `missing_len`
 * bytes, deepest first: what sm_mkdir_p() created when `missing_len` came
 * from missing_prefix_len(). rmdir() keeps any directory that is not empty.
 */
static void remove_created_dirs(const char *path, size_t missing_len)
{
	char dir[PATH_MAX];
	char *slash;

	if (!missing_len || snprintf(dir, sizeof(dir), "%s", path) >= (int)sizeof(dir))
		return;
	while (strlen(dir) >= missing_len) {
		rmdir(dir);
		slash = strrchr(dir, '/');
		if (!slash || slash == dir)
			break;
		*slash = '\0';
	}
}

/* Adds one setting; values are borrowed. */
static void add_setting(sm_kv *settings, size_t *n, const char *key, const char *value)
{
	if (!value)
		return;
	settings[*n].key = (char *)key;
	settings[*n].value = (char *)value;
	(*n)++;
}

/* Returns 1 when the query string of `url` has a parameter named like a secret. */
static int query_has_secret(const char *url)
{
	static const char *const names[] = {
		"token", "access_token", "private_token", "password", "passwd", "secret", "sig",
	};
	const char *query = strchr(url, '?');

	while (query && *query) {
		size_t len;

		query++;
		len = strcspn(query, "=&#");
		for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
			if (len == strlen(names[i]) && strncasecmp(query, names[i], len) == 0)
				return 1;
		query = strchr(query, '&');
	}
	return 0;
}

/*
 * Returns 1 when `url` carries a secret: a password in its user
 * information ("https://user:token@host/repo", also with the colon
 * percent-encoded) or a token-like query parameter.
 */
static int url_has_password(const char *url)
{
	const char *authority = strstr(url, "://");
	size_t len;
	const char *at, *colon;

	if (!authority)
		return 0;
	authority += 3;
	len = strcspn(authority, "/?#");
	at = memrchr(authority, '@', len);
	if (at) {
		colon = memchr(authority, ':', (size_t)(at - authority));
		if (colon || memmem(authority, (size_t)(at - authority), "%3A", 3) ||
		    memmem(authority, (size_t)(at - authority), "%3a", 3))
			return 1;
	}
	return query_has_secret(url);
}

/*
 * Checks the location and options of a git or s3 vault. A secret in a URL
 * is rejected without echoing it.
 */
static int check_remote_args(cli_context *ctx, const char *name, const char *type,
			     const char *location, const vault_args *args)
{
	int git = strcmp(type, "git") == 0;

	if (git && (args->region || args->prefix || args->endpoint_url))
		return cli_usage_error(ctx, "--region, --prefix and --endpoint-url do not apply to a "
				       "git vault");
	if (!git && args->branch)
		return cli_usage_error(ctx, "--branch does not apply to an s3 vault");
	if (!git && args->known_hosts)
		return cli_usage_error(ctx, "--known-hosts does not apply to an s3 vault");
	if (url_has_password(location) || (args->endpoint_url && url_has_password(args->endpoint_url)))
		return cli_usage_error(ctx, "the URL of vault '%s' contains a password or token; give "
				       "the URL without it and store the secret with 'skillmeat vault "
				       "auth %s --username USER --password'", name, name);
	if (!*location || sm_has_control_chars(location))
		return cli_usage_error(ctx, "invalid %s '%s': it must be non-empty and without control "
				       "characters", git ? "repository URL" : "bucket", location);
	if (!git && strchr(location, '/'))
		return cli_usage_error(ctx, "invalid bucket '%s': give the bucket name alone and the "
				       "path inside it with --prefix", location);
	if ((args->known_hosts && (!*args->known_hosts || sm_has_control_chars(args->known_hosts))) ||
	    (args->branch && (!*args->branch || sm_has_control_chars(args->branch))) ||
	    (args->region && sm_has_control_chars(args->region)) ||
	    (args->prefix && sm_has_control_chars(args->prefix)) ||
	    (args->endpoint_url && sm_has_control_chars(args->endpoint_url)))
		return cli_usage_error(ctx, "invalid option value: values must be non-empty and "
				       "without control characters");
	/* the checks the git connector applies before it runs git */
	if (git && sm_git_check_url(location, args->allow_http) != 0)
		return cli_fail(ctx, sm_error_wrap(SM_EINVALID, "vault '%s'", name));
	return EXIT_OK;
}

/*
 * Checks the settings of a new s3 vault with the connector's own rules
 * (prefix components, endpoint scheme and host), so that what is written
 * also opens.
 */
static int check_s3_settings(cli_context *ctx, const char *name, const char *path,
			     sm_kv *settings, size_t nsettings)
{
	sm_vault_config config = { .name = (char *)name, .type = (char *)"s3",
				   .source = (char *)path, .settings = settings,
				   .nsettings = nsettings };
	sm_s3_settings parsed = { 0 };
	int rc = sm_s3_settings_parse(&config, &parsed);

	sm_s3_settings_release(&parsed);
	return rc ? cli_fail(ctx, rc) : EXIT_OK;
}

/* Checks the location of a vault whose type comes from a plug-in. */
static int check_plugin_args(cli_context *ctx, const char *name, const char *location,
			     const vault_args *args)
{
	if (args->branch || args->region || args->prefix || args->endpoint_url)
		return cli_usage_error(ctx, "--branch, --region, --prefix and --endpoint-url do not "
				       "apply to a plug-in's vault type");
	if (!*location || sm_has_control_chars(location))
		return cli_usage_error(ctx, "invalid location '%s': it must be non-empty and without "
				       "control characters", location);
	if (url_has_password(location))
		return cli_usage_error(ctx, "the location of vault '%s' contains a password or token; "
				       "give it without the secret and store the secret with "
				       "'skillmeat vault auth %s'", name, name);
	return EXIT_OK;
}

/*
 * Checks the URL and options of an http vault with the connector's own
 * URL rules, so that what is written also opens. A secret in the URL is
 * rejected without echoing it. The CA file is resolved to an absolute
 * path in `ca_path` (PATH_MAX bytes).
 */
static int check_http_args(cli_context *ctx, const char *name, const char *location,
			   const vault_args *args, char *ca_path)
{
	sm_http_vault_url url;
	int rc;

	if (args->branch || args->region || args->prefix || args->endpoint_url)
		return cli_usage_error(ctx, "--branch, --region, --prefix and --endpoint-url do not "
				       "apply to an http vault");
	if (url_has_password(location))
		return cli_usage_error(ctx, "the URL of vault '%s' contains a password or token; give "
				       "the URL without it and store the secret with 'skillmeat vault "
				       "auth %s --username USER --password'", name, name);
	rc = sm_http_vault_url_parse(location, args->allow_http, &url);
	sm_http_vault_url_release(&url);
	if (rc == SM_EINVALID && strstr(sm_error_message(), "plain http://"))
		return cli_usage_error(ctx, "vault URL '%s' uses plain http://, which sends everything "
				       "unencrypted; use https://, or add --allow-http for a server "
				       "you trust", location);
	if (rc)
		return cli_usage_error(ctx, "%s", sm_error_message());
	if (args->ca_bundle) {
		if (!*args->ca_bundle || sm_has_control_chars(args->ca_bundle))
			return cli_usage_error(ctx, "invalid --ca-bundle: give the path of a PEM file");
		if (!realpath(args->ca_bundle, ca_path) || access(ca_path, R_OK) != 0)
			return cli_fail(ctx, sm_error_set_errno(SM_EINVALID, errno, "cannot read CA file "
								"'%s'", args->ca_bundle));
	}
	return EXIT_OK;
}

/*
 * Rejects a name whose credential environment variables are those of
 * another vault ("team-x" and "team.x" both read SKILLMEAT_VAULT_TEAM_X_*),
 * because one vault's secrets would then reach the other's connector.
 */
static int check_env_collision(cli_context *ctx, const sm_config *config, const char *name)
{
	char mine[256], theirs[256];

	if (!config || sm_cred_env_name(name, SM_CRED_USERNAME, mine, sizeof(mine)) != 0)
		return EXIT_OK;
	for (size_t i = 0; i < config->nvaults; i++) {
		const char *other = config->vaults[i].name;

		if (strcmp(other, name) != 0 &&
		    sm_cred_env_name(other, SM_CRED_USERNAME, theirs, sizeof(theirs)) == 0 &&
		    strcmp(mine, theirs) == 0)
			return cli_usage_error(ctx, "vault name '%s' would share the credential variables "
					       "(%s and the like) of vault '%s'; choose another name",
					       name, mine, other);
	}
	return EXIT_OK;
}

static int run_add(cli_context *ctx, int argc, char **argv)
{
	vault_args args;
	sm_config *config = NULL;
	sm_kv settings[8];
	size_t nsettings = 0;
	char *path = NULL, *types = NULL, resolved[PATH_MAX];
	const char *name, *type, *location;
	size_t missing_len = 0;
	struct stat st;
	int exit_now = 0, code, rc;

	code = parse_args(ctx, CMD_ADD, " branch region prefix endpoint-url ca-bundle known-hosts "
			  "allow-http set-default read-only ",
			  3, 3, argc, argv, &args, &exit_now);
	if (code || exit_now)
		goto done;
	name = args.positional[0];
	type = args.positional[1];
	location = args.positional[2];
	if (!sm_vault_name_valid(name)) {
		code = cli_usage_error(ctx, "invalid vault name '%s': use 1-64 of A-Z a-z 0-9 _ . -, "
				       "starting with a letter or digit", name);
		goto done;
	}
	if (args.ca_bundle && strcmp(type, "http") != 0) {
		code = cli_usage_error(ctx, "--ca-bundle applies only to an http vault; set ca_bundle "
				       "in sharing.toml for other types");
		goto done;
	}
	if (args.allow_http && strcmp(type, "http") != 0 && strcmp(type, "git") != 0 &&
	    strcmp(type, "s3") != 0) {
		code = cli_usage_error(ctx, "--allow-http applies only to git, s3 and http vaults");
		goto done;
	}
	if (args.known_hosts && strcmp(type, "git") != 0) {
		code = cli_usage_error(ctx, "--known-hosts applies only to a git vault");
		goto done;
	}
	if (strcmp(type, "local") == 0) {
		if (args.branch || args.region || args.prefix || args.endpoint_url ||
		    args.known_hosts || args.allow_http) {
			code = cli_usage_error(ctx, "--branch, --region, --prefix, --endpoint-url, "
					       "--known-hosts and --allow-http do not apply to a local "
					       "vault");
			goto done;
		}
		if (!*location || sm_has_control_chars(location)) {
			code = cli_usage_error(ctx, "invalid vault directory '%s': it must be a non-empty "
					       "path without control characters", location);
			goto done;
		}
		/* a broken sharing.toml fails here, before a directory is created */
		rc = user_file(&config, &path);
		if (rc) {
			code = cli_fail(ctx, rc);
			goto done;
		}
		/* store an absolute path so the vault works from any directory */
		missing_len = missing_prefix_len(location);
		rc = sm_mkdir_p(location, 0755);
		if (!rc && !realpath(location, resolved))
			rc = sm_error_set_errno(SM_EIO, errno, "cannot resolve the vault directory '%s'",
						location);
		if (!rc && (stat(resolved, &st) != 0 || !S_ISDIR(st.st_mode)))
			rc = sm_error_set(SM_EINVALID, "'%s' exists and is not a directory; a local vault "
					  "needs a directory", location);
		if (rc) {
			remove_created_dirs(location, missing_len);
			code = cli_fail(ctx, rc);
			goto done;
		}
		add_setting(settings, &nsettings, "path", resolved);
	} else if (strcmp(type, "git") == 0 || strcmp(type, "s3") == 0) {
		code = check_remote_args(ctx, name, type, location, &args);
		if (code)
			goto done;
		rc = user_file(&config, &path);
		if (rc) {
			code = cli_fail(ctx, rc);
			goto done;
		}
		if (strcmp(type, "git") == 0) {
			add_setting(settings, &nsettings, "url", location);
			add_setting(settings, &nsettings, "branch", args.branch ? args.branch : "main");
			if (args.known_hosts && !realpath(args.known_hosts, resolved)) {
				code = cli_fail(ctx, sm_error_set_errno(errno == ENOENT ? SM_ENOTFOUND : SM_EIO,
						errno, "cannot use known_hosts file '%s'", args.known_hosts));
				goto done;
			}
			if (args.known_hosts)
				add_setting(settings, &nsettings, "known_hosts", resolved);
			if (args.allow_http)
				add_setting(settings, &nsettings, "allow_http", "true");
		} else {
			add_setting(settings, &nsettings, "bucket", location);
			add_setting(settings, &nsettings, "region", args.region);
			add_setting(settings, &nsettings, "prefix", args.prefix);
			add_setting(settings, &nsettings, "endpoint_url", args.endpoint_url);
			add_setting(settings, &nsettings, "allow_http", args.allow_http ? "true" : NULL);
			code = check_s3_settings(ctx, name, path, settings, nsettings);
			if (code)
				goto done;
		}
	} else if (strcmp(type, "http") == 0) {
		code = check_http_args(ctx, name, location, &args, resolved);
		if (code)
			goto done;
		rc = user_file(&config, &path);
		if (rc) {
			code = cli_fail(ctx, rc);
			goto done;
		}
		add_setting(settings, &nsettings, "url", location);
		add_setting(settings, &nsettings, "ca_bundle", args.ca_bundle ? resolved : NULL);
		add_setting(settings, &nsettings, "allow_http", args.allow_http ? "true" : NULL);
	} else if (cli_plugin_provides(ctx, type)) {
		code = check_plugin_args(ctx, name, location, &args);
		if (code)
			goto done;
		rc = user_file(&config, &path);
		if (rc) {
			code = cli_fail(ctx, rc);
			goto done;
		}
		add_setting(settings, &nsettings, "location", location);
	} else {
		types = sm_vault_types();
		code = cli_usage_error(ctx, "unknown vault type '%s'; known types: %s", type,
				       types ? types : "local");
		goto done;
	}
	if (args.read_only)
		add_setting(settings, &nsettings, "read_only", "true");
	code = check_env_collision(ctx, config, name);
	if (code)
		goto done;

	rc = sm_config_add_vault(path, name, type, settings, nsettings, args.set_default);
	if (rc) {
		/* a failed add leaves no directory behind that it created */
		remove_created_dirs(location, missing_len);
		code = cli_fail(ctx, rc);
		goto done;
	}
	if (ctx->json) {
		json_t *result = json_object();

		json_object_set_new(result, "name", json_string(name));
		json_object_set_new(result, "type", json_string(type));
		json_object_set_new(result, "file", json_string(path));
		json_object_set_new(result, "default", json_boolean(args.set_default));
		cli_print_json(result);
	} else {
		cli_note(ctx, "added %s vault '%s' to %s%s", type, name, path,
			 args.set_default ? " (default)" : "");
	}
done:
	free(types);
	free(path);
	sm_config_free(config);
	free(args.tags);
	return code;
}

/* The location shown for a vault: its path, URL or bucket. */
static const char *vault_location(const sm_vault_config *vault)
{
	static const char *const keys[] = { "path", "url", "bucket", "location" };

	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		const char *value = sm_vault_config_get(vault, keys[i]);

		if (value)
			return value;
	}
	return "";
}

static int run_list(cli_context *ctx, int argc, char **argv)
{
	vault_args args;
	sm_config *config = NULL;
	int exit_now = 0, code, rc;

	code = parse_args(ctx, CMD_LIST, " ", 0, 0, argc, argv, &args, &exit_now);
	if (code || exit_now)
		goto done;
	rc = sm_config_load(&config, NULL);
	if (rc) {
		code = cli_fail(ctx, rc);
		goto done;
	}
	if (ctx->json) {
		json_t *items = json_array();

		for (size_t i = 0; i < config->nvaults; i++) {
			const sm_vault_config *v = &config->vaults[i];
			json_t *item = json_object(), *settings = json_object();

			/* read_only is reported as a boolean beside the settings */
			for (size_t j = 0; j < v->nsettings; j++)
				if (strcmp(v->settings[j].key, "read_only") != 0)
					json_object_set_new(settings, v->settings[j].key,
							    json_string(v->settings[j].value));
			json_object_set_new(item, "name", json_string(v->name));
			json_object_set_new(item, "type", json_string(v->type));
			json_object_set_new(item, "default", json_boolean(config->default_vault &&
				strcmp(config->default_vault, v->name) == 0));
			json_object_set_new(item, "read_only", json_boolean(v->read_only));
			json_object_set_new(item, "source", json_string(v->source));
			json_object_set_new(item, "settings", settings);
			json_array_append_new(items, item);
		}
		cli_print_json(items);
		goto done;
	}
	if (config->nvaults == 0) {
		cli_note(ctx, "no vaults configured; add one with 'skillmeat vault add NAME local DIR'");
		goto done;
	}
	for (size_t i = 0; i < config->nvaults; i++) {
		const sm_vault_config *v = &config->vaults[i];
		int is_default = config->default_vault && strcmp(config->default_vault, v->name) == 0;

		printf("%s %-20s %-6s %s%s  (from %s)\n", is_default ? "*" : " ", cli_show(v->name), cli_show(v->type),
		       cli_show(vault_location(v)), v->read_only ? " [read-only]" : "", cli_show(v->source));
		if (ctx->verbose)
			for (size_t j = 0; j < v->nsettings; j++)
				printf("      %s = %s\n", cli_show(v->settings[j].key), cli_show(v->settings[j].value));
	}
done:
	sm_config_free(config);
	free(args.tags);
	return code;
}

/*
 * Deletes a vault's stored credentials before the vault itself is removed,
 * so a later vault of the same name never inherits them. Returns an exit
 * code; on failure the vault stays configured.
 */
static int remove_credentials(cli_context *ctx, const char *name, const char *home)
{
	sm_callbacks callbacks;
	cli_progress progress;
	sm_cred_opts opts = { 0 };
	int removed = 0, rc;

	cli_callbacks_init(&callbacks, &progress, ctx, "remove");
	opts.home = home;
	opts.callbacks = &callbacks;
	rc = sm_credentials_remove(name, &opts, &removed);
	if (rc) {
		sm_error_wrap(rc, "vault '%s' was not removed because its credentials could not be "
			      "deleted (fix this and run 'skillmeat vault remove %s' again)", name, name);
		return cli_fail(ctx, rc);
	}
	if (removed)
		cli_note(ctx, "deleted %d stored credential field%s of vault '%s'", removed,
			 removed == 1 ? "" : "s", name);
	return EXIT_OK;
}

static int run_remove(cli_context *ctx, int argc, char **argv)
{
	vault_args args;
	sm_config *config = NULL;
	const sm_vault_config *vault;
	int exit_now = 0, code, rc;

	code = parse_args(ctx, CMD_REMOVE, " ", 1, 1, argc, argv, &args, &exit_now);
	if (code || exit_now)
		goto done;
	rc = sm_config_load(&config, NULL);
	if (rc) {
		code = cli_fail(ctx, rc);
		goto done;
	}
	vault = sm_config_find(config, args.positional[0]);
	if (!vault) {
		cli_error(ctx, "vault '%s' not found; run 'skillmeat vault list' to see configured vaults",
			  args.positional[0]);
		code = EXIT_NOTFOUND;
		goto done;
	}
	if (strcmp(vault->type, "local") != 0) {
		code = remove_credentials(ctx, vault->name, config->home);
		if (code)
			goto done;
	}
	rc = sm_config_remove_vault(vault->source, vault->name);
	if (rc) {
		code = cli_fail(ctx, rc);
		goto done;
	}
	if (ctx->json) {
		json_t *result = json_object();

		json_object_set_new(result, "name", json_string(args.positional[0]));
		json_object_set_new(result, "file", json_string(vault->source));
		json_object_set_new(result, "removed", json_true());
		cli_print_json(result);
	} else {
		cli_note(ctx, "removed vault '%s' from %s (its bundles were not touched)",
			 args.positional[0], vault->source);
	}
done:
	sm_config_free(config);
	free(args.tags);
	return code;
}

static int run_set_default(cli_context *ctx, int argc, char **argv)
{
	vault_args args;
	sm_config *config = NULL;
	const char *file;
	int exit_now = 0, code, rc;

	code = parse_args(ctx, CMD_SET_DEFAULT, " ", 1, 1, argc, argv, &args, &exit_now);
	if (code || exit_now)
		goto done;
	rc = sm_config_load(&config, NULL);
	if (rc) {
		code = cli_fail(ctx, rc);
		goto done;
	}
	if (!sm_config_find(config, args.positional[0])) {
		cli_error(ctx, "vault '%s' not found; run 'skillmeat vault list' to see configured vaults",
			  args.positional[0]);
		code = EXIT_NOTFOUND;
		goto done;
	}
	/* a project file's default wins, so change it where it takes effect */
	file = config->project_path ? config->project_path : config->user_path;
	rc = sm_config_set_default(file, args.positional[0]);
	if (rc) {
		code = cli_fail(ctx, rc);
		goto done;
	}
	if (ctx->json) {
		json_t *result = json_object();

		json_object_set_new(result, "default_vault", json_string(args.positional[0]));
		json_object_set_new(result, "file", json_string(file));
		cli_print_json(result);
	} else {
		cli_note(ctx, "default vault is now '%s' (set in %s)", args.positional[0], file);
	}
done:
	sm_config_free(config);
	free(args.tags);
	return code;
}
