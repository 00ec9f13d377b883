/*
 * skillmeat vault auth: store, report and remove a vault's credentials.
 *
 * Secrets reach this program only through a prompt on /dev/tty or through
 * standard input, never through argv. They are kept in sodium_malloc()
 * memory and wiped on every path.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <sodium.h>

#include "cli.h"
#include "skillmeat/credentials.h"

/* Maximum length of a password read from a prompt or standard input, in bytes. */
#define PASSWORD_MAX 4096

static const char auth_usage[] =
	"vault auth NAME [--username U] [--password | --password-stdin] [--ssh-key PATH]\n"
	"                  [--store keychain|file] [--passphrase-file PATH]\n"
	"       vault auth NAME --status [--json]\n"
	"       vault auth NAME --remove [--store keychain|file]\n\n"
	"  --username U          user name (for S3: the access key id)\n"
	"  --password            prompt for the password or token without echo on the terminal\n"
	"  --password-stdin      read the password from the first line of standard input\n"
	"  --ssh-key PATH        private key file to use (must not be readable by others)\n"
	"  --store keychain|file write to the OS keychain or to the sealed file\n"
	"                        (default: the keychain when one is reachable)\n"
	"  --passphrase-file P   seal the file with the passphrase on the first line of P\n"
	"  --status              show which store holds which fields, never the values\n"
	"  --remove              delete the vault's stored credentials\n"
	"Environment variables SKILLMEAT_VAULT_<NAME>_USERNAME, _PASSWORD, _SSH_KEY and\n"
	"_SESSION_TOKEN take precedence over stored values.";

const cli_command cli_auth_command = { "auth", cli_run_auth, "store credentials for a vault",
				       auth_usage };

typedef struct auth_args {
	const char *username;
	const char *ssh_key;
	const char *passphrase_file;
	int password_prompt;
	int password_stdin;
	int status;
	int remove;
	sm_cred_store store;
	char **positional;
	int npositional;
} auth_args;

/* Overwrites a string of argv in place, so that `ps` stops showing it. */
static void wipe_arg(char *arg)
{
	if (arg)
		sodium_memzero(arg, strlen(arg));
}

static int parse_auth_args(cli_context *ctx, int argc, char **argv, auth_args *args,
			   int *exit_now)
{
	static const struct option options[] = {
		CLI_COMMON_OPTIONS,
		{ "username", required_argument, NULL, 'u' },
		{ "password", optional_argument, NULL, 'w' },
		{ "password-stdin", no_argument, NULL, 'i' },
		{ "ssh-key", required_argument, NULL, 'k' },
		{ "store", required_argument, NULL, 'S' },
		{ "passphrase-file", required_argument, NULL, 'f' },
		{ "status", no_argument, NULL, 's' },
		{ "remove", no_argument, NULL, 'd' },
		{ NULL, 0, NULL, 0 },
	};
	int opt;

	memset(args, 0, sizeof(*args));
	optind = 1;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":qvh", options, NULL)) != -1) {
		if (opt == '?' || opt == ':')
			return cli_bad_option(ctx, opt, argv);
		if (cli_common_option(ctx, opt, &cli_auth_command, exit_now)) {
			if (*exit_now)
				return EXIT_OK;
			continue;
		}
		switch (opt) {
		case 'u': args->username = optarg; break;
		case 'w':
			if (optarg) {
				wipe_arg(optarg);
				return cli_usage_error(ctx, "--password takes no value, so that the password "
						       "stays out of the process list and shell history; "
						       "use --password to be prompted, or --password-stdin");
			}
			args->password_prompt = 1;
			break;
		case 'i': args->password_stdin = 1; break;
		case 'k': args->ssh_key = optarg; break;
		case 'f': args->passphrase_file = optarg; break;
		case 's': args->status = 1; break;
		case 'd': args->remove = 1; break;
		case 'S':
			if (strcmp(optarg, "keychain") == 0)
				args->store = SM_CRED_STORE_KEYCHAIN;
			else if (strcmp(optarg, "file") == 0)
				args->store = SM_CRED_STORE_FILE;
			else
				return cli_usage_error(ctx, "invalid --store '%s': use keychain or file",
						       optarg);
			break;
		}
	}
	args->positional = argv + optind;
	args->npositional = argc - optind;
	if (args->password_prompt && args->npositional > 1) {
		/* getopt moved a value given after --password among the arguments */
		for (int i = 1; i < args->npositional; i++)
			wipe_arg(args->positional[i]);
		return cli_usage_error(ctx, "--password takes no value, so that the password stays out "
				       "of the process list and shell history; use --password to be "
				       "prompted, or --password-stdin");
	}
	if (args->npositional != 1)
		return cli_usage_error(ctx, "expected 1 argument, got %d", args->npositional);
	if (args->password_prompt && args->password_stdin)
		return cli_usage_error(ctx, "--password and --password-stdin exclude each other");
	if ((args->status || args->remove) &&
	    (args->username || args->ssh_key || args->password_prompt || args->password_stdin))
		return cli_usage_error(ctx, "--status and --remove take no credentials");
	if (args->status && args->remove)
		return cli_usage_error(ctx, "--status and --remove exclude each other");
	return EXIT_OK;
}

/* Reads one line (without its newline) from `fd` into secret memory. */
static int read_secret_line(int fd, char **out, const char *what)
{
	char *buf = sodium_malloc(PASSWORD_MAX + 1);
	size_t len = 0;
	int rc = 0;

	*out = NULL;
	if (!buf)
		return sm_error_set(SM_ENOMEM, "out of memory");
	for (;;) {
		char c;
		ssize_t n = read(fd, &c, 1);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = sm_error_set_errno(SM_EIO, errno, "cannot read the password from %s", what);
			break;
		}
		if (n == 0 || c == '\n')
			break;
		if (c == '\0') {
			/* C strings would silently cut the password here */
			rc = sm_error_set(SM_EINVALID, "the password from %s contains a NUL byte", what);
			break;
		}
		if (len == PASSWORD_MAX) {
			rc = sm_error_set(SM_EINVALID, "the password from %s is longer than %d bytes",
					  what, PASSWORD_MAX);
			break;
		}
		buf[len++] = c;
	}
	if (!rc && len && buf[len - 1] == '\r')
		len--;
	buf[len] = '\0';
	if (!rc && len == 0)
		rc = sm_error_set(SM_EINVALID, "empty password read from %s", what);
	if (rc) {
		sodium_free(buf);
		return rc;
	}
	*out = buf;
	return 0;
}

/* The terminal state to restore when a signal ends the prompt. */
static struct termios saved_termios;
static volatile sig_atomic_t tty_for_signal = -1;

static void restore_tty_and_exit(int sig)
{
	if (tty_for_signal >= 0) {
		tcsetattr(tty_for_signal, TCSAFLUSH, &saved_termios);
		(void)!write(tty_for_signal, "\n", 1);
	}
	_exit(128 + sig);
}

/* Prompts on /dev/tty with echo off. */
static int prompt_password(const char *vault, char **out)
{
	struct sigaction action = { 0 }, old_int, old_term, old_quit;
	struct termios quiet;
	char prompt[160];
	int fd, rc;

	*out = NULL;
	fd = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (fd < 0)
		return sm_error_set(SM_EINVALID, "no terminal to prompt for the password on; pipe it "
				    "with --password-stdin instead");
	if (tcgetattr(fd, &saved_termios) != 0) {
		close(fd);
		return sm_error_set(SM_EINVALID, "cannot switch off echo on the terminal; pipe the "
				    "password with --password-stdin instead");
	}
	action.sa_handler = restore_tty_and_exit;
	sigemptyset(&action.sa_mask);
	sigaction(SIGINT, &action, &old_int);
	sigaction(SIGTERM, &action, &old_term);
	sigaction(SIGQUIT, &action, &old_quit);
	tty_for_signal = fd;

	quiet = saved_termios;
	quiet.c_lflag &= ~(tcflag_t)(ECHO | ECHOE | ECHOK);
	quiet.c_lflag |= ECHONL;
	snprintf(prompt, sizeof(prompt), "Password for vault '%s': ", vault);
	if (tcsetattr(fd, TCSAFLUSH, &quiet) != 0) {
		rc = sm_error_set(SM_EINVALID, "cannot switch off echo on the terminal; pipe the "
				  "password with --password-stdin instead");
	} else {
		(void)!write(fd, prompt, strlen(prompt));
		rc = read_secret_line(fd, out, "the terminal");
		tcsetattr(fd, TCSAFLUSH, &saved_termios);
	}

	tty_for_signal = -1;
	sigaction(SIGINT, &old_int, NULL);
	sigaction(SIGTERM, &old_term, NULL);
	sigaction(SIGQUIT, &old_quit, NULL);
	close(fd);
	return rc;
}

/*
 * Checks an SSH key path: it exists, is a regular file, is not readable by
 * group or others, and starts like a PEM or OpenSSH private key. `resolved`
 * receives the absolute path.
 */
static int check_ssh_key(const char *path, char resolved[PATH_MAX])
{
	char head[128];
	struct stat st;
	ssize_t n;
	int fd;

	if (!realpath(path, resolved))
		return sm_error_set_errno(errno == ENOENT ? SM_ENOTFOUND : SM_EIO, errno,
					  "cannot use SSH key '%s'", path);
	if (stat(resolved, &st) != 0 || !S_ISREG(st.st_mode))
		return sm_error_set(SM_EINVALID, "SSH key '%s' is not a regular file", path);
	if (st.st_mode & 077)
		return sm_error_set(SM_EREADONLY, "SSH key '%s' is readable by other users (mode "
				    "%04o); run 'chmod 600 %s'", path, (unsigned)(st.st_mode & 07777), path);
	fd = open(resolved, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return sm_error_set_errno(SM_EREADONLY, errno, "cannot read SSH key '%s'", path);
	n = read(fd, head, sizeof(head) - 1);
	close(fd);
	head[n > 0 ? n : 0] = '\0';
	head[strcspn(head, "\n")] = '\0';
	if (strncmp(head, "-----BEGIN ", 11) != 0 || !strstr(head, "PRIVATE KEY-----")) {
		sodium_memzero(head, sizeof(head));
		return sm_error_set(SM_EINVALID, "'%s' does not look like an SSH private key (it "
				    "should start with '-----BEGIN ... PRIVATE KEY-----')", path);
	}
	sodium_memzero(head, sizeof(head));
	return 0;
}

static json_t *field_list_json(unsigned int mask)
{
	json_t *list = json_array();

	for (int i = 0; i < SM_CRED_NFIELDS; i++)
		if (mask & (1u << i))
			json_array_append_new(list, json_string(sm_cred_field_name(i)));
	return list;
}

static void print_status(const cli_context *ctx, const char *vault, const char *type,
			 const char *home, const sm_cred_status *st)
{
	static const sm_cred_store order[] = { SM_CRED_STORE_ENV, SM_CRED_STORE_KEYCHAIN,
					       SM_CRED_STORE_FILE };
	const unsigned int masks[] = { st->env, st->keychain, st->file };

	if (ctx->json) {
		json_t *result = json_object(), *fields = json_object(), *keychain = json_object();
		json_t *file = json_object();

		for (int f = 0; f < SM_CRED_NFIELDS; f++) {
			json_t *stores = json_array();
			const char *used = NULL;

			for (int s = 0; s < 3; s++) {
				if (!(masks[s] & (1u << f)))
					continue;
				json_array_append_new(stores, json_string(sm_cred_store_name(order[s])));
				if (!used)
					used = sm_cred_store_name(order[s]);
			}
			json_object_set_new(fields, sm_cred_field_name(f), json_pack("{s:s?,s:o}",
					    "used", used, "stores", stores));
		}
		json_object_set_new(keychain, "available", json_boolean(st->keychain_available));
		if (!st->keychain_available)
			json_object_set_new(keychain, "reason", json_string(st->keychain_reason));
		json_object_set_new(keychain, "fields", field_list_json(st->keychain));
		json_object_set_new(file, "exists", json_boolean(st->file_exists));
		json_object_set_new(file, "passphrase", json_boolean(st->file_passphrase));
		json_object_set_new(file, "fields", field_list_json(st->file));
		json_object_set_new(result, "vault", json_string(vault));
		json_object_set_new(result, "type", json_string(type));
		json_object_set_new(result, "fields", fields);
		json_object_set_new(result, "env", field_list_json(st->env));
		json_object_set_new(result, "keychain", keychain);
		json_object_set_new(result, "file", file);
		cli_print_json(result);
		return;
	}
	printf("credentials of %s vault '%s':\n", type, vault);
	for (int f = 0; f < SM_CRED_NFIELDS; f++) {
		int shown = 0;

		printf("  %-14s", sm_cred_field_name(f));
		for (int s = 0; s < 3; s++) {
			if (!(masks[s] & (1u << f)))
				continue;
			printf("%s%s", shown ? ", then " : "", sm_cred_store_name(order[s]));
			if (!shown)
				printf(" (used)");
			shown = 1;
		}
		printf("%s\n", shown ? "" : "-");
	}
	if (st->keychain_available)
		printf("keychain:    available\n");
	else
		printf("keychain:    not available (%s)\n", st->keychain_reason);
	printf("sealed file: %s/credentials%s\n", home,
	       !st->file_exists ? " (none yet)" :
	       st->file_passphrase ? " (passphrase)" : " (key file credentials.key)");
}

static int do_status(cli_context *ctx, const sm_vault_config *vault, const char *home,
		     const sm_cred_opts *opts)
{
	sm_cred_status status;
	int rc = sm_credentials_status(vault->name, opts, &status);

	if (rc)
		return cli_fail(ctx, rc);
	print_status(ctx, vault->name, vault->type, home, &status);
	return EXIT_OK;
}

static int do_remove(cli_context *ctx, const char *name, const sm_cred_opts *opts)
{
	int removed = 0, rc = sm_credentials_remove(name, opts, &removed);
	char env_name[128];

	if (rc)
		return cli_fail(ctx, rc);
	if (ctx->json) {
		json_t *result = json_object();

		json_object_set_new(result, "vault", json_string(name));
		json_object_set_new(result, "removed", json_integer(removed));
		cli_print_json(result);
	} else {
		cli_note(ctx, "removed %d stored credential field%s of vault '%s'", removed,
			 removed == 1 ? "" : "s", name);
	}
	for (int i = 0; i < SM_CRED_NFIELDS; i++) {
		const char *value;

		if (sm_cred_env_name(name, i, env_name, sizeof(env_name)) != 0)
			continue;
		value = getenv(env_name);
		if (value && *value)
			fprintf(stderr, "skillmeat: warning: %s is still set in the environment and "
				"takes precedence\n", env_name);
	}
	return EXIT_OK;
}

static int do_store(cli_context *ctx, const char *name, const auth_args *args,
		    const sm_cred_opts *opts)
{
	const char *values[SM_CRED_NFIELDS] = { 0 };
	char *password = NULL, resolved[PATH_MAX];
	sm_cred_store used;
	int code = EXIT_OK, rc;

	if (args->ssh_key) {
		rc = check_ssh_key(args->ssh_key, resolved);
		if (rc) {
			code = cli_fail(ctx, rc);
			goto done;
		}
		values[SM_CRED_SSH_KEY] = resolved;
	}
	if (args->password_stdin)
		rc = read_secret_line(STDIN_FILENO, &password, "standard input");
	else if (args->password_prompt)
		rc = prompt_password(name, &password);
	else
		rc = 0;
	if (rc) {
		code = cli_fail(ctx, rc);
		goto done;
	}
	values[SM_CRED_USERNAME] = args->username;
	values[SM_CRED_PASSWORD] = password;

	rc = sm_credentials_store(name, values, opts, &used);
	if (rc) {
		code = cli_fail(ctx, rc);
		goto done;
	}
	if (ctx->json) {
		json_t *result = json_object(), *stored = json_array();

		for (int i = 0; i < SM_CRED_NFIELDS; i++)
			if (values[i])
				json_array_append_new(stored, json_string(sm_cred_field_name(i)));
		json_object_set_new(result, "vault", json_string(name));
		json_object_set_new(result, "store", json_string(sm_cred_store_name(used)));
		json_object_set_new(result, "stored", stored);
		cli_print_json(result);
	} else {
		char list[80] = "";

		for (int i = 0; i < SM_CRED_NFIELDS; i++) {
			if (!values[i])
				continue;
			if (*list)
				strcat(list, ", ");
			strcat(list, sm_cred_field_name(i));
		}
		cli_note(ctx, "stored %s of vault '%s' in the %s", list, name,
			 used == SM_CRED_STORE_KEYCHAIN ? "keychain" : "sealed file");
	}
done:
	if (password)
		sodium_free(password);
	return code;
}

int cli_run_auth(cli_context *ctx, int argc, char **argv)
{
	auth_args args;
	sm_config *config = NULL;
	const sm_vault_config *vault;
	sm_callbacks callbacks;
	cli_progress progress;
	sm_cred_opts opts = { 0 };
	int exit_now = 0, code;

	code = parse_auth_args(ctx, argc, argv, &args, &exit_now);
	if (code || exit_now)
		goto done;
	if (sodium_init() < 0) {
		cli_error(ctx, "cannot initialise libsodium");
		code = EXIT_ERROR;
		goto done;
	}
	code = sm_config_load(&config, NULL);
	if (code) {
		code = cli_fail(ctx, code);
		goto done;
	}
	cli_callbacks_init(&callbacks, &progress, ctx, "auth");
	opts.home = config->home;
	opts.store = args.store;
	opts.passphrase_file = args.passphrase_file;
	opts.callbacks = &callbacks;

	vault = sm_config_find(config, args.positional[0]);
	if (!vault && args.remove && sm_vault_name_valid(args.positional[0])) {
		/* credentials of a vault no longer configured can still be deleted */
		code = do_remove(ctx, args.positional[0], &opts);
		goto done;
	}
	if (!vault && (args.password_prompt || args.password_stdin)) {
		/* the argument may be a password typed after --password: never echo it */
		wipe_arg(args.positional[0]);
		cli_error(ctx, "vault not found (the name is not shown in case it is a password; "
			  "--password takes no value); run 'skillmeat vault list' to see configured vaults");
		code = EXIT_NOTFOUND;
		goto done;
	}
	if (!vault) {
		cli_error(ctx, "vault '%s' not found; run 'skillmeat vault list' to see configured vaults",
			  args.positional[0]);
		code = EXIT_NOTFOUND;
		goto done;
	}
	if (strcmp(vault->type, "local") == 0) {
		if (ctx->json) {
			json_t *result = json_object();

			json_object_set_new(result, "vault", json_string(vault->name));
			json_object_set_new(result, "type", json_string(vault->type));
			json_object_set_new(result, "credentials_needed", json_false());
			cli_print_json(result);
		} else {
			cli_note(ctx, "vault '%s' is a local vault; it needs no credentials", vault->name);
		}
		goto done;
	}
	if (args.status)
		code = do_status(ctx, vault, config->home, &opts);
	else if (args.remove)
		code = do_remove(ctx, vault->name, &opts);
	else if (args.username || args.ssh_key || args.password_prompt || args.password_stdin)
		code = do_store(ctx, vault->name, &args, &opts);
	else
		code = cli_usage_error(ctx, "nothing to do: give --username, --password, "
				       "--password-stdin, --ssh-key, --status or --remove");
done:
	sm_config_free(config);
	return code;
}
