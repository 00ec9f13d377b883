/* skillmeat plugin list, and the plug-in lookup behind 'vault add' */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "util/util.h"
#include "skillmeat/plugin.h"

static int run_list(cli_context *ctx, int argc, char **argv);

static const cli_command commands[] = {
	{ "list", run_list, "show each plug-in found, its connector types and whether it loaded",
	  "plugin list [--json]\n\n"
	  "  Searches the directories of $SKILLMEAT_PLUGIN_PATH (absolute paths separated\n"
	  "  by ':'), then $SKILLMEAT_HOME/plugins, for files named *.so. A file loads\n"
	  "  only when it and its directories are owned by you or root and are not\n"
	  "  writable by group or others." },
	{ NULL, NULL, NULL, NULL },
};

int cli_run_plugin(cli_context *ctx, int argc, char **argv)
{
	return cli_dispatch(ctx, "plugin", commands, argc, argv);
}

/*
 * Returns a JSON string for `text`. A file name need not be UTF-8, and
 * jansson rejects such a string, so then every byte from 0x80 up is
 * written as the text \xNN, the escape the plain output uses for control bytes.
 */
static json_t *json_text(const char *text)
{
	json_t *value = json_string(text);
	sm_buf escaped = SM_BUF_INIT(0);

	if (value)
		return value;
	for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
		if (*p >= 0x80)
			sm_buf_printf(&escaped, "\\x%02x", *p);
		else
			sm_buf_putc(&escaped, (char)*p);
	}
	value = json_string(escaped.data ? escaped.data : "");
	sm_buf_release(&escaped);
	return value;
}

static json_t *info_to_json(const sm_plugin_info *info)
{
	json_t *item = json_object(), *types = json_array();

	for (size_t j = 0; j < info->ntypes; j++)
		json_array_append_new(types, json_string(info->types[j]));
	json_object_set_new(item, "path", json_text(info->path));
	json_object_set_new(item, "loaded", json_boolean(info->loaded));
	json_object_set_new(item, "abi_version",
			    info->abi_version ? json_integer(info->abi_version) : json_null());
	json_object_set_new(item, "types", types);
	json_object_set_new(item, "error", info->error ? json_text(info->error) : json_null());
	return item;
}

static void print_info(const sm_plugin_info *info)
{
	printf("%-7s %s\n", info->loaded ? "loaded" : "failed", cli_show(info->path));
	if (info->abi_version)
		printf("        plug-in ABI %u\n", info->abi_version);
	if (info->loaded) {
		printf("        types:");
		for (size_t j = 0; j < info->ntypes; j++)
			printf(" %s", cli_show(info->types[j]));
		printf("%s\n", info->ntypes ? "" : " (none)");
	} else {
		printf("        error: %s\n", cli_show(info->error));
	}
}

static int run_list(cli_context *ctx, int argc, char **argv)
{
	static const struct option options[] = { CLI_COMMON_OPTIONS, { NULL, 0, NULL, 0 } };
	sm_plugin_info *infos = NULL;
	size_t count = 0;
	int exit_now = 0, opt, rc;

	optind = 1;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":qvh", options, NULL)) != -1) {
		if (opt == '?' || opt == ':')
			return cli_bad_option(ctx, opt, argv);
		cli_common_option(ctx, opt, &commands[0], &exit_now);
		if (exit_now)
			return EXIT_OK;
	}
	if (optind < argc)
		return cli_usage_error(ctx, "expected 0 arguments, got %d", argc - optind);

	rc = sm_plugins_list(&infos, &count);
	if (rc)
		return cli_fail(ctx, rc);
	if (ctx->json) {
		json_t *items = json_array();

		for (size_t i = 0; i < count; i++)
			json_array_append_new(items, info_to_json(&infos[i]));
		cli_print_json(items);
	} else if (count == 0) {
		cli_note(ctx, "no plug-ins found in $SKILLMEAT_PLUGIN_PATH or $SKILLMEAT_HOME/plugins");
	} else {
		for (size_t i = 0; i < count; i++)
			print_info(&infos[i]);
	}
	sm_plugin_info_free(infos, count);
	return EXIT_OK;
}

int cli_plugin_provides(cli_context *ctx, const char *type)
{
	sm_plugin_info *infos = NULL;
	sm_callbacks callbacks;
	cli_progress progress;
	size_t count = 0;
	int found = 0;

	/* loading first, with callbacks, prints a warning for each plug-in that failed */
	cli_callbacks_init(&callbacks, &progress, ctx, "plugin");
	if (sm_plugins_load(&callbacks) != 0 || sm_plugins_list(&infos, &count) != 0)
		return 0;
	for (size_t i = 0; i < count && !found; i++)
		for (size_t j = 0; j < infos[i].ntypes && !found; j++)
			found = infos[i].loaded && strcmp(infos[i].types[j], type) == 0;
	sm_plugin_info_free(infos, count);
	return found;
}
