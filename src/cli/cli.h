/*
 * Shared state and helpers of the skillmeat command-line tool.
 */
#ifndef SM_CLI_H
#define SM_CLI_H

#include <getopt.h>
#include <stdint.h>

#include <jansson.h>

#include "skillmeat/bundle.h"
#include "skillmeat/config.h"
#include "skillmeat/error.h"
#include "skillmeat/vault.h"

/* Exit codes, documented in README.md. */
enum cli_exit {
	EXIT_OK = 0,
	EXIT_ERROR = 1,      /* any other failure */
	EXIT_USAGE = 2,      /* bad command line */
	EXIT_NOTFOUND = 3,   /* vault, bundle or file not found */
	EXIT_EXISTS = 4,     /* already exists (immutable version, output file) */
	EXIT_READONLY = 5,   /* read-only vault or permission denied */
	EXIT_AUTH = 6,       /* authentication failed or credentials missing */
	EXIT_INTEGRITY = 7,  /* hash or size mismatch, corrupt bundle data */
	EXIT_NETWORK = 8,    /* network failure */
	EXIT_INVALID = 9,    /* invalid input: bundle shape, config file, names */
	EXIT_CONFLICT = 10   /* a concurrent change won */
};

/* Options every command accepts. */
typedef struct cli_context {
	int json;
	int quiet;
	int verbose;
	int no_progress;
	int color;          /* stderr is a terminal and NO_COLOR is unset */
	int progress_tty;   /* stderr is a terminal */
	const char *command; /* "vault push", for messages */
} cli_context;

/* One command: name, handler, one-line summary, usage text. */
typedef struct cli_command {
	const char *name;
	int (*run)(cli_context *ctx, int argc, char **argv);
	const char *summary;
	const char *usage;
} cli_command;

/* Long options shared by every command; commands append their own. */
#define CLI_COMMON_OPTIONS \
	{ "json", no_argument, NULL, 'J' }, \
	{ "quiet", no_argument, NULL, 'q' }, \
	{ "verbose", no_argument, NULL, 'v' }, \
	{ "no-progress", no_argument, NULL, 'P' }, \
	{ "help", no_argument, NULL, 'h' }

/*
 * Handles a common option returned by getopt_long. Returns 1 when it was
 * one (and --help printed the usage: *exit_now is set), 0 otherwise.
 */
int cli_common_option(cli_context *ctx, int opt, const cli_command *cmd, int *exit_now);

/*
 * Returns `text` with control bytes shown as \xNN, for printing values
 * that come from bundles or vaults (untrusted) on a terminal. The result
 * stays valid for the next seven calls.
 */
const char *cli_show(const char *text);

/* Prints "skillmeat: error: MESSAGE" on stderr. */
void cli_error(const cli_context *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prints a usage error with a pointer to --help; returns EXIT_USAGE. */
int cli_usage_error(const cli_context *ctx, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/*
 * Reports what getopt_long() rejected ('?': unknown option, ':': missing
 * value; the option string must start with ':') and returns EXIT_USAGE.
 */
int cli_bad_option(const cli_context *ctx, int opt, char **argv);

/* Prints the library's last error and returns the exit code for `rc`. */
int cli_fail(const cli_context *ctx, int rc);

/* Maps a library code to an exit code. */
int cli_exit_code(int rc);

/* Prints an informational line on stderr unless --quiet or --json. */
void cli_note(const cli_context *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prints a JSON value on stdout, indented, and frees it. */
void cli_print_json(json_t *value);

/* Formats a byte count as "1.5 MiB". */
void cli_format_size(uint64_t bytes, char *out, size_t size);

/* Callbacks that draw the progress bar and print library messages. */
typedef struct cli_progress {
	const cli_context *ctx;
	const char *label;
	double started;     /* monotonic seconds */
	double last_draw;
	int drawn;
	int finished;
} cli_progress;

void cli_callbacks_init(sm_callbacks *callbacks, cli_progress *progress,
			const cli_context *ctx, const char *label);
/* Ends the progress line (a newline after a drawn bar). */
void cli_progress_end(cli_progress *progress);

int cli_run_bundle(cli_context *ctx, int argc, char **argv);
int cli_run_vault(cli_context *ctx, int argc, char **argv);
/* skillmeat vault auth, in cmd_auth.c. */
int cli_run_auth(cli_context *ctx, int argc, char **argv);
extern const cli_command cli_auth_command;
/* skillmeat plugin, in cmd_plugin.c. */
int cli_run_plugin(cli_context *ctx, int argc, char **argv);
/* Loads plug-ins (printing a warning for each that fails); 1 when one provides `type`. */
int cli_plugin_provides(cli_context *ctx, const char *type);

/* Runs the command named argv[0] from `commands`, or prints the group's help. */
int cli_dispatch(cli_context *ctx, const char *group, const cli_command *commands,
		 int argc, char **argv);

#endif
