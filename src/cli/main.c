/* skillmeat: share skill bundles through vaults. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static const char usage[] =
	"usage: skillmeat [--version] [--help] <group> <command> [options]\n"
	"\n"
	"Bundles:\n"
	"  bundle create     build a bundle from skill folders\n"
	"  bundle inspect    show a bundle's metadata, artifacts and sizes\n"
	"  bundle verify     recompute and check every hash of a bundle\n"
	"\n"
	"Vaults:\n"
	"  vault add         configure a vault\n"
	"  vault list        show configured vaults\n"
	"  vault remove      remove a vault from the configuration\n"
	"  vault set-default choose the vault used without --vault\n"
	"  vault auth        store credentials for a vault\n"
	"  vault push        publish a bundle\n"
	"  vault pull        fetch and verify a bundle\n"
	"  vault ls          list the bundles in a vault\n"
	"  vault info        show one bundle's record\n"
	"  vault delete      delete a bundle from a vault\n"
	"\n"
	"Plug-ins:\n"
	"  plugin list       show connector plug-ins and whether they loaded\n"
	"\n"
	"Options accepted by every command: --json, --quiet, --verbose,\n"
	"--no-progress, --help. Run 'skillmeat <group> <command> --help' for more.\n";

int cli_common_option(cli_context *ctx, int opt, const cli_command *cmd, int *exit_now)
{
	switch (opt) {
	case 'J':
		ctx->json = 1;
		return 1;
	case 'q':
		ctx->quiet = 1;
		return 1;
	case 'v':
		ctx->verbose = 1;
		return 1;
	case 'P':
		ctx->no_progress = 1;
		return 1;
	case 'h':
		printf("usage: skillmeat %s\n\n%s\n", cmd->usage, cmd->summary);
		*exit_now = 1;
		return 1;
	default:
		return 0;
	}
}

int cli_bad_option(const cli_context *ctx, int opt, char **argv)
{
	/* in a cluster such as -xyz, optind has not moved on yet: name the letter */
	const char *arg = argv[optind - 1];
	int shown = (int)strcspn(arg, "=");

	if (opt == ':')
		return cli_usage_error(ctx, "option '%s' needs a value", arg);
	/*
	 * A long option is named without what follows '=', because a mistyped
	 * --password=VALUE contains a secret. glibc leaves optopt 0 for an unknown
	 * long option, and sets it for a known one given a value it does not take.
	 */
	if (arg[0] == '-' && arg[1] == '-' && (!optopt || strchr(arg, '='))) {
		if (strncmp(arg, "--pass", 6) == 0)
			return cli_usage_error(ctx, "invalid option '%.*s'; give a password with "
					       "--password (prompt) or --password-stdin, never on the "
					       "command line", shown, arg);
		return cli_usage_error(ctx, "unknown option '%.*s'", shown, arg);
	}
	if (optopt > ' ' && optopt < 127)
		return cli_usage_error(ctx, "unknown option '-%c'", optopt);
	return cli_usage_error(ctx, "unknown option '%.*s'", shown, arg);
}

int cli_dispatch(cli_context *ctx, const char *group, const cli_command *commands,
		 int argc, char **argv)
{
	static char name[64];

	if (argc < 1 || strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0) {
		printf("usage: skillmeat %s <command> [options]\n\ncommands:\n", group);
		for (const cli_command *c = commands; c->name; c++)
			printf("  %-12s %s\n", c->name, c->summary);
		return argc < 1 ? EXIT_USAGE : EXIT_OK;
	}
	for (const cli_command *c = commands; c->name; c++) {
		if (strcmp(c->name, argv[0]) == 0) {
			snprintf(name, sizeof(name), "%s %s", group, c->name);
			ctx->command = name;
			return c->run(ctx, argc, argv);
		}
	}
	ctx->command = group;
	return cli_usage_error(ctx, "unknown command '%s %s'", group, argv[0]);
}

int main(int argc, char **argv)
{
	cli_context ctx = { 0 };
	const char *no_color = getenv("NO_COLOR");
	char self[PATH_MAX];
	ssize_t self_len;

	/* git runs this program as GIT_ASKPASS to read a git vault's stored password */
	if (argc == 2 && getenv("SKILLMEAT_ASKPASS_FILE") &&
	    (strncmp(argv[1], "Username for ", 13) == 0 || strncmp(argv[1], "Password for ", 13) == 0))
		return sm_git_askpass_main(argv[1]);
	self_len = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (self_len > 0) {
		self[self_len] = '\0';
		sm_git_set_askpass(self);
	}

	ctx.progress_tty = isatty(STDERR_FILENO);
	ctx.color = ctx.progress_tty && !(no_color && *no_color);

	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		fputs(usage, argc < 2 ? stderr : stdout);
		return argc < 2 ? EXIT_USAGE : EXIT_OK;
	}
	if (strcmp(argv[1], "--version") == 0) {
		printf("skillmeat %s\n", SKILLMEAT_VERSION);
		return EXIT_OK;
	}
	/* each command parses from its own name on, so getopt gets argv[0] = command */
	if (strcmp(argv[1], "bundle") == 0)
		return cli_run_bundle(&ctx, argc - 2, argv + 2);
	if (strcmp(argv[1], "vault") == 0)
		return cli_run_vault(&ctx, argc - 2, argv + 2);
	if (strcmp(argv[1], "plugin") == 0)
		return cli_run_plugin(&ctx, argc - 2, argv + 2);
	cli_error(&ctx, "unknown command group '%s'; run 'skillmeat --help' for usage", argv[1]);
	return EXIT_USAGE;
}
