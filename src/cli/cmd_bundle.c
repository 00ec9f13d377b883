/* skillmeat bundle create | inspect | verify */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"

static int run_create(cli_context *ctx, int argc, char **argv);
static int run_inspect(cli_context *ctx, int argc, char **argv);
static int run_verify(cli_context *ctx, int argc, char **argv);

static const cli_command commands[] = {
	{ "create", run_create, "build a bundle from skill folders (one artifact per folder)",
	  "bundle create DIR... --name N --version V --description D --author A\n"
	  "                        [--tag T]... [--license L] -o FILE\n\n"
	  "  -o, --output FILE   bundle file to write (replaced atomically)\n"
	  "  --name N            bundle name, [A-Za-z0-9_-]{1,100}\n"
	  "  --version V         bundle version, recorded as bundle_version\n"
	  "  --tag T             a tag; repeat for several\n"
	  "  --license L         licence of the bundle (default empty)\n"
	  "The output is deterministic: created_at comes from SOURCE_DATE_EPOCH when set,\n"
	  "else from the newest modification time of the input files." },
	{ "inspect", run_inspect, "show a bundle's metadata, artifacts and sizes (extracts nothing)",
	  "bundle inspect FILE [--json]" },
	{ "verify", run_verify, "recompute every artifact hash and the bundle hash",
	  "bundle verify FILE [--json]\n\n"
	  "Exits 0 when every hash matches, 7 when any differs (each mismatch is listed)." },
	{ NULL, NULL, NULL, NULL },
};

int cli_run_bundle(cli_context *ctx, int argc, char **argv)
{
	return cli_dispatch(ctx, "bundle", commands, argc, argv);
}

/* Returns 1 when `path` is `dir` or lies under it (both resolved). */
static int path_is_under(const char *path, const char *dir)
{
	size_t len = strlen(dir);

	return strncmp(path, dir, len) == 0 && (path[len] == '\0' || path[len] == '/');
}

/*
 * Rejects an output that is a directory or lies inside one of the skill
 * folders: it would overwrite an input or be packed by the next run.
 */
static int check_create_paths(cli_context *ctx, const char *output, char **dirs, int ndirs)
{
	char out_dir[PATH_MAX], resolved[PATH_MAX], *copy;
	struct stat st;
	const char *slash;

	if (stat(output, &st) == 0 && S_ISDIR(st.st_mode))
		return cli_usage_error(ctx, "output '%s' is a directory; name the bundle file", output);
	copy = strdup(output);
	if (!copy)
		return EXIT_ERROR;
	slash = strrchr(copy, '/');
	if (slash == copy)
		copy[1] = '\0';
	else if (slash)
		copy[slash - copy] = '\0';
	if (!realpath(slash ? copy : ".", out_dir)) {
		free(copy);
		return 0; /* a missing output directory is reported by the create itself */
	}
	free(copy);
	for (int i = 0; i < ndirs; i++) {
		if (realpath(dirs[i], resolved) && path_is_under(out_dir, resolved))
			return cli_usage_error(ctx, "output '%s' is inside the skill folder '%s'; write the "
					       "bundle elsewhere", output, dirs[i]);
	}
	return 0;
}

static int run_create(cli_context *ctx, int argc, char **argv)
{
	static const struct option options[] = {
		CLI_COMMON_OPTIONS,
		{ "name", required_argument, NULL, 'n' },
		{ "version", required_argument, NULL, 'V' },
		{ "description", required_argument, NULL, 'd' },
		{ "author", required_argument, NULL, 'a' },
		{ "tag", required_argument, NULL, 't' },
		{ "license", required_argument, NULL, 'l' },
		{ "output", required_argument, NULL, 'o' },
		{ NULL, 0, NULL, 0 },
	};
	sm_bundle_create_opts opts = { 0 };
	const char **tags = calloc((size_t)argc + 1, sizeof(char *));
	const char *output = NULL;
	char *id = NULL;
	int opt, exit_now = 0, code = EXIT_OK, rc;

	if (!tags)
		return EXIT_ERROR;
	opts.tags = tags;
	optind = 1;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":o:qvh", options, NULL)) != -1) {
		if (cli_common_option(ctx, opt, &commands[0], &exit_now)) {
			if (exit_now)
				goto done;
			continue;
		}
		switch (opt) {
		case 'n': opts.name = optarg; break;
		case 'V': opts.version = optarg; break;
		case 'd': opts.description = optarg; break;
		case 'a': opts.author = optarg; break;
		case 'l': opts.license = optarg; break;
		case 't': tags[opts.ntags++] = optarg; break;
		case 'o': output = optarg; break;
		default:
			code = cli_bad_option(ctx, opt, argv);
			goto done;
		}
	}
	if (optind >= argc) {
		code = cli_usage_error(ctx, "name at least one skill folder");
		goto done;
	}
	if (!output || !opts.name || !opts.version || !opts.description || !opts.author) {
		code = cli_usage_error(ctx, "--name, --version, --description, --author and -o are required");
		goto done;
	}

	code = check_create_paths(ctx, output, argv + optind, argc - optind);
	if (code)
		goto done;
	/* a version that cannot form a bundle id would build an unpushable bundle */
	if (sm_bundle_id(&id, "bundle", opts.version) != 0) {
		code = cli_usage_error(ctx, "invalid --version '%s': use letters, digits, '.', '_' "
				       "and '-', with no leading '.' and no '..'", opts.version);
		goto done;
	}

	rc = sm_bundle_create((const char *const *)argv + optind, (size_t)(argc - optind), &opts, output);
	if (rc) {
		code = cli_fail(ctx, rc);
		goto done;
	}
	if (ctx->json) {
		json_t *result = json_object();

		json_object_set_new(result, "output", json_string(output));
		json_object_set_new(result, "artifacts", json_integer(argc - optind));
		cli_print_json(result);
	} else {
		cli_note(ctx, "created %s (%d artifact%s)", output, argc - optind,
			 argc - optind == 1 ? "" : "s");
	}
done:
	free(id);
	free(tags);
	return code;
}

/* Parses FILE and the common options of inspect and verify. */
static int parse_file_arg(cli_context *ctx, int argc, char **argv, const cli_command *cmd,
			  const char **file, int *exit_now)
{
	static const struct option options[] = { CLI_COMMON_OPTIONS, { NULL, 0, NULL, 0 } };
	int opt;

	optind = 1;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, ":qvh", options, NULL)) != -1) {
		if (!cli_common_option(ctx, opt, cmd, exit_now))
			return cli_bad_option(ctx, opt, argv);
		if (*exit_now)
			return EXIT_OK;
	}
	if (argc - optind != 1)
		return cli_usage_error(ctx, "name exactly one bundle file");
	*file = argv[optind];
	return EXIT_OK;
}

static json_t *manifest_json(const sm_manifest *m, uint64_t archive_size, uint64_t total)
{
	json_t *root = json_object(), *tags = json_array(), *artifacts = json_array();

	for (size_t i = 0; i < m->ntags; i++)
		json_array_append_new(tags, json_string(m->tags[i]));
	for (size_t i = 0; i < m->nartifacts; i++) {
		const sm_artifact *a = &m->artifacts[i];
		json_t *item = json_object(), *files = json_array(), *metadata = json_object();

		for (size_t j = 0; j < a->nfiles; j++) {
			json_t *file = json_object();

			json_object_set_new(file, "path", json_string(a->files[j].path));
			json_object_set_new(file, "size", json_integer((json_int_t)a->files[j].size));
			json_object_set_new(file, "compressed_size",
					    json_integer((json_int_t)a->files[j].compressed));
			json_array_append_new(files, file);
		}
		for (size_t j = 0; j < a->nmetadata; j++)
			json_object_set_new(metadata, a->metadata[j].key, json_string(a->metadata[j].value));
		json_object_set_new(item, "type", json_string(a->type));
		json_object_set_new(item, "name", json_string(a->name));
		json_object_set_new(item, "version", json_string(a->version));
		json_object_set_new(item, "scope", json_string(a->scope));
		json_object_set_new(item, "path", json_string(a->path));
		json_object_set_new(item, "hash", json_string(a->hash));
		json_object_set_new(item, "size", json_integer((json_int_t)a->size));
		json_object_set_new(item, "files", files);
		json_object_set_new(item, "metadata", metadata);
		json_array_append_new(artifacts, item);
	}
	json_object_set_new(root, "name", json_string(m->name));
	json_object_set_new(root, "version", json_string(m->bundle_version));
	json_object_set_new(root, "format_version", json_string(m->format_version));
	json_object_set_new(root, "description", json_string(m->description));
	json_object_set_new(root, "author", json_string(m->author));
	json_object_set_new(root, "license", json_string(m->license));
	json_object_set_new(root, "created_at", json_string(m->created_at));
	json_object_set_new(root, "bundle_hash", json_string(m->bundle_hash));
	json_object_set_new(root, "tags", tags);
	json_object_set_new(root, "archive_size", json_integer((json_int_t)archive_size));
	json_object_set_new(root, "uncompressed_size", json_integer((json_int_t)total));
	json_object_set_new(root, "artifacts", artifacts);
	return root;
}

static void print_manifest(const sm_manifest *m, uint64_t archive_size, uint64_t total)
{
	char size[32], full[32];

	cli_format_size(archive_size, size, sizeof(size));
	cli_format_size(total, full, sizeof(full));
	printf("name:         %s\n", cli_show(m->name));
	printf("version:      %s\n", cli_show(m->bundle_version));
	printf("description:  %s\n", cli_show(m->description));
	printf("author:       %s\n", cli_show(m->author));
	printf("license:      %s\n", cli_show(m->license));
	printf("created at:   %s\n", cli_show(m->created_at));
	printf("tags:        ");
	for (size_t i = 0; i < m->ntags; i++)
		printf(" %s", cli_show(m->tags[i]));
	printf("\nbundle hash:  %s\n", cli_show(m->bundle_hash));
	printf("size:         %s archive, %s uncompressed\n", size, full);
	printf("artifacts:    %zu\n", m->nartifacts);
	for (size_t i = 0; i < m->nartifacts; i++) {
		const sm_artifact *a = &m->artifacts[i];

		cli_format_size(a->size, size, sizeof(size));
		printf("  %s/%s %s (%s scope, %zu file%s, %s)\n", cli_show(a->type), cli_show(a->name),
		       cli_show(a->version), cli_show(a->scope), a->nfiles, a->nfiles == 1 ? "" : "s", size);
		for (size_t j = 0; j < a->nfiles; j++) {
			cli_format_size(a->files[j].size, size, sizeof(size));
			printf("    %-40s %10s\n", cli_show(a->files[j].path), size);
		}
	}
}

static int run_inspect(cli_context *ctx, int argc, char **argv)
{
	const char *file = NULL;
	sm_bundle *bundle = NULL;
	int exit_now = 0, code, rc;

	code = parse_file_arg(ctx, argc, argv, &commands[1], &file, &exit_now);
	if (code || exit_now)
		return code;
	rc = sm_bundle_open(&bundle, file);
	if (rc)
		return cli_fail(ctx, rc);
	if (ctx->json)
		cli_print_json(manifest_json(sm_bundle_manifest(bundle), sm_bundle_archive_size(bundle),
					     sm_bundle_uncompressed_size(bundle)));
	else
		print_manifest(sm_bundle_manifest(bundle), sm_bundle_archive_size(bundle),
			       sm_bundle_uncompressed_size(bundle));
	sm_bundle_free(bundle);
	return EXIT_OK;
}

typedef struct verify_report {
	const cli_context *ctx;
	json_t *problems;
} verify_report;

static void on_problem(const char *problem, void *payload)
{
	verify_report *report = payload;

	if (report->ctx->json)
		json_array_append_new(report->problems, json_string(problem));
	else
		fprintf(stderr, "skillmeat: mismatch: %s\n", problem);
}

static int run_verify(cli_context *ctx, int argc, char **argv)
{
	verify_report report = { ctx, json_array() };
	const char *file = NULL;
	sm_bundle *bundle = NULL;
	int exit_now = 0, code, rc;

	code = parse_file_arg(ctx, argc, argv, &commands[2], &file, &exit_now);
	if (code || exit_now)
		goto done;
	rc = sm_bundle_open(&bundle, file);
	if (rc) {
		code = cli_fail(ctx, rc);
		goto done;
	}
	rc = sm_bundle_verify(bundle, on_problem, &report);
	if (ctx->json) {
		json_t *result = json_object();

		json_object_set_new(result, "file", json_string(file));
		json_object_set_new(result, "ok", json_boolean(rc == 0));
		json_object_set_new(result, "bundle_hash",
				    json_string(sm_bundle_manifest(bundle)->bundle_hash));
		json_object_set(result, "problems", report.problems);
		cli_print_json(result);
	}
	if (rc) {
		code = cli_fail(ctx, rc);
		goto done;
	}
	if (!ctx->json)
		cli_note(ctx, "ok: %s verified (%zu artifact%s, %s)", file,
			 sm_bundle_manifest(bundle)->nartifacts,
			 sm_bundle_manifest(bundle)->nartifacts == 1 ? "" : "s",
			 sm_bundle_manifest(bundle)->bundle_hash);
done:
	json_decref(report.problems);
	sm_bundle_free(bundle);
	return code;
}
