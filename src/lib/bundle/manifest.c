/* Parsing and shape checks of manifest.json. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bundle_internal.h"

#define QUOTED_MAX 200

/* Sets "invalid bundle 'LABEL': manifest.json <details>" and returns SM_EINVALID. */
static int shape_error(const char *label, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int shape_error(const char *label, const char *fmt, ...)
{
	char details[768];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(details, sizeof(details), fmt, ap);
	va_end(ap);
	return sm_error_set(SM_EINVALID, "invalid bundle '%s': manifest.json %s", label, details);
}

static const char *quote(const char *text, char out[QUOTED_MAX])
{
	sm_quote_bytes(text, strlen(text), out, QUOTED_MAX);
	return out;
}

static int is_hash(const char *text)
{
	if (strncmp(text, SM_SHA256_PREFIX, 7) != 0 || strlen(text) != SM_HASH_STRLEN)
		return 0;
	for (const char *p = text + 7; *p; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
			return 0;
	return 1;
}

/*
 * Copies the string member `key` of `object` into `*out`. A missing member
 * is an error when `fallback` is NULL, else `*out` becomes a copy of it;
 * JSON null counts as missing.
 */
static int get_string(const json_t *object, const char *key, const char *fallback,
		      const char *where, const char *label, char **out)
{
	const json_t *value = json_object_get(object, key);

	if (!value || json_is_null(value)) {
		if (!fallback)
			return shape_error(label, "lacks %s%s", where, key);
		*out = sm_strdup(fallback);
		return *out ? 0 : SM_ENOMEM;
	}
	if (!json_is_string(value))
		return shape_error(label, "field %s%s is not a string", where, key);
	*out = sm_strdup(json_string_value(value));
	return *out ? 0 : SM_ENOMEM;
}

/* Copies an optional array of strings; a missing member gives an empty array. */
static int get_string_array(const json_t *object, const char *key, const char *label,
			    char ***out, size_t *count)
{
	const json_t *array = json_object_get(object, key);
	size_t n;

	*out = NULL;
	*count = 0;
	if (!array || json_is_null(array))
		return 0;
	if (!json_is_array(array))
		return shape_error(label, "field %s is not an array", key);
	n = json_array_size(array);
	*out = calloc(n ? n : 1, sizeof(**out));
	if (!*out)
		return sm_error_set(SM_ENOMEM, "out of memory");
	for (size_t i = 0; i < n; i++) {
		const json_t *item = json_array_get(array, i);

		if (!json_is_string(item))
			return shape_error(label, "field %s[%zu] is not a string", key, i);
		(*out)[i] = sm_strdup(json_string_value(item));
		if (!(*out)[i])
			return SM_ENOMEM;
		*count = i + 1;
	}
	return 0;
}

static int parse_files(const json_t *files, const char *name, const char *label, sm_artifact *a)
{
	char q[QUOTED_MAX];
	size_t n;

	if (!json_is_array(files))
		return shape_error(label, "has artifact '%s' whose \"files\" is not an array", name);
	n = json_array_size(files);
	if (n == 0)
		return shape_error(label, "has artifact '%s' with no files", name);
	a->files = calloc(n, sizeof(*a->files));
	if (!a->files)
		return sm_error_set(SM_ENOMEM, "out of memory");
	for (size_t i = 0; i < n; i++) {
		const json_t *item = json_array_get(files, i);
		const char *path, *problem;

		if (!json_is_string(item))
			return shape_error(label, "has artifact '%s' whose file %zu is not a string",
					   name, i);
		path = json_string_value(item);
		problem = sm_path_problem(path, json_string_length(item));
		if (problem)
			return shape_error(label, "has artifact '%s' with file '%s' that %s",
					   name, quote(path, q), problem);
		/* byte order, as Python's sorted() orders UTF-8 text */
		if (i > 0) {
			int order = strcmp(a->files[i - 1].path, path);

			if (order == 0)
				return shape_error(label, "has artifact '%s' listing file '%s' twice",
						   name, quote(path, q));
			if (order > 0)
				return shape_error(label, "has artifact '%s' whose files are not "
						   "sorted ('%s' after '%s')", name, quote(path, q),
						   a->files[i - 1].path);
		}
		a->files[i].path = sm_strdup(path);
		if (!a->files[i].path)
			return SM_ENOMEM;
		a->nfiles = i + 1;
	}
	return 0;
}

static int parse_metadata(const json_t *metadata, const char *name, const char *label,
			  sm_artifact *a)
{
	const char *key;
	json_t *value;
	size_t n;

	if (!metadata || json_is_null(metadata))
		return 0;
	if (!json_is_object(metadata))
		return shape_error(label, "has artifact '%s' whose \"metadata\" is not an object", name);
	n = json_object_size(metadata);
	a->metadata = calloc(n ? n : 1, sizeof(*a->metadata));
	if (!a->metadata)
		return sm_error_set(SM_ENOMEM, "out of memory");
	/* jansson iterates in insertion order, which is the manifest's order */
	json_object_foreach((json_t *)metadata, key, value) {
		sm_kv *kv = &a->metadata[a->nmetadata];

		if (!json_is_string(value))
			return shape_error(label, "has artifact '%s' whose metadata \"%s\" is not "
					   "a string", name, key);
		kv->key = sm_strdup(key);
		kv->value = sm_strdup(json_string_value(value));
		a->nmetadata++;
		if (!kv->key || !kv->value)
			return SM_ENOMEM;
	}
	return 0;
}

static int parse_artifact(const json_t *object, size_t index, const char *label, sm_artifact *a)
{
	char where[48], q[QUOTED_MAX], *expected = NULL;
	const char *problem;
	int rc;

	if (!json_is_object(object))
		return shape_error(label, "has artifact %zu that is not an object", index);
	snprintf(where, sizeof(where), "artifacts[%zu].", index);
	if ((rc = get_string(object, "type", NULL, where, label, &a->type)) ||
	    (rc = get_string(object, "name", NULL, where, label, &a->name)) ||
	    (rc = get_string(object, "version", NULL, where, label, &a->version)) ||
	    (rc = get_string(object, "scope", NULL, where, label, &a->scope)) ||
	    (rc = get_string(object, "path", NULL, where, label, &a->path)) ||
	    (rc = get_string(object, "hash", NULL, where, label, &a->hash)))
		return rc;

	if (strcmp(a->type, "skill") != 0 && strcmp(a->type, "command") != 0 &&
	    strcmp(a->type, "agent") != 0)
		return shape_error(label, "has artifact %zu of unknown type '%s' (expected skill, "
				   "command or agent)", index, quote(a->type, q));
	/* the name becomes a folder name on import: one safe path component */
	problem = sm_path_problem(a->name, strlen(a->name));
	if (!problem && strchr(a->name, '/'))
		problem = "contains '/'";
	if (problem)
		return shape_error(label, "has artifact %zu whose name '%s' %s", index,
				   quote(a->name, q), problem);
	if (strcmp(a->scope, "user") != 0 && strcmp(a->scope, "local") != 0)
		return shape_error(label, "has artifact '%s' with unknown scope '%s' (expected user "
				   "or local)", a->name, quote(a->scope, q));
	expected = sm_asprintf("artifacts/%s/%s/", a->type, a->name);
	if (!expected)
		return SM_ENOMEM;
	if (strcmp(a->path, expected) != 0) {
		rc = shape_error(label, "has artifact '%s' with path '%s', expected '%s'", a->name,
				 quote(a->path, q), expected);
		free(expected);
		return rc;
	}
	free(expected);
	if (!is_hash(a->hash))
		return shape_error(label, "has artifact '%s' whose hash is not \"sha256:\" and 64 "
				   "lower-case hex digits", a->name);

	rc = parse_files(json_object_get(object, "files"), a->name, label, a);
	if (!rc)
		rc = parse_metadata(json_object_get(object, "metadata"), a->name, label, a);
	return rc;
}

static int parse_artifacts(const json_t *artifacts, const char *label, sm_manifest *m)
{
	size_t n;
	int rc;

	if (!artifacts)
		return shape_error(label, "lacks artifacts");
	if (!json_is_array(artifacts))
		return shape_error(label, "field artifacts is not an array");
	n = json_array_size(artifacts);
	if (n == 0)
		return shape_error(label, "lists no artifacts");
	m->artifacts = calloc(n, sizeof(*m->artifacts));
	if (!m->artifacts)
		return sm_error_set(SM_ENOMEM, "out of memory");
	for (size_t i = 0; i < n; i++) {
		m->nartifacts = i + 1;
		rc = parse_artifact(json_array_get(artifacts, i), i, label, &m->artifacts[i]);
		if (rc)
			return rc;
		for (size_t j = 0; j < i; j++)
			if (strcmp(m->artifacts[j].path, m->artifacts[i].path) == 0)
				return shape_error(label, "lists artifact '%s' of type %s twice",
						   m->artifacts[i].name, m->artifacts[i].type);
	}
	return 0;
}

static int parse_top(const json_t *root, const char *label, sm_manifest *m)
{
	char **dependencies = NULL, q[QUOTED_MAX];
	size_t ndependencies = 0;
	int rc;

	if ((rc = get_string(root, "version", NULL, "", label, &m->format_version)) ||
	    (rc = get_string(root, "name", NULL, "", label, &m->name)) ||
	    (rc = get_string(root, "description", NULL, "", label, &m->description)) ||
	    (rc = get_string(root, "author", NULL, "", label, &m->author)) ||
	    (rc = get_string(root, "created_at", NULL, "", label, &m->created_at)) ||
	    (rc = get_string(root, "license", "", "", label, &m->license)) ||
	    (rc = get_string(root, "bundle_version", SM_DEFAULT_BUNDLE_VERSION, "", label,
			     &m->bundle_version)) ||
	    (rc = get_string(root, "bundle_hash", NULL, "", label, &m->bundle_hash)))
		return rc;

	if (strcmp(m->format_version, SM_MANIFEST_FORMAT_VERSION) != 0)
		return shape_error(label, "has format version '%s'; this build reads version "
				   SM_MANIFEST_FORMAT_VERSION " only", quote(m->format_version, q));
	if (!sm_name_valid(m->name))
		return shape_error(label, "has an invalid bundle name '%s' (expected 1 to 100 "
				   "letters, digits, '-' or '_')", quote(m->name, q));
	if (!sm_iso8601_valid(m->created_at))
		return shape_error(label, "has a created_at '%s' that is not an ISO 8601 time",
				   quote(m->created_at, q));
	if (!is_hash(m->bundle_hash))
		return shape_error(label, "has a bundle_hash that is not \"sha256:\" and 64 "
				   "lower-case hex digits");

	rc = get_string_array(root, "tags", label, &m->tags, &m->ntags);
	if (!rc)
		rc = get_string_array(root, "dependencies", label, &dependencies, &ndependencies);
	sm_str_array_free(dependencies, ndependencies);
	if (!rc)
		rc = parse_artifacts(json_object_get(root, "artifacts"), label, m);
	return rc;
}

int sm_manifest_parse(const char *text, size_t len, const char *label,
		      sm_manifest *m, json_t **root)
{
	json_error_t error;
	int rc;

	memset(m, 0, sizeof(*m));
	*root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &error);
	if (!*root)
		return shape_error(label, "is not valid JSON (line %d, column %d: %s)",
				   error.line, error.column, error.text);
	if (!json_is_object(*root)) {
		rc = shape_error(label, "is not a JSON object");
		goto done;
	}
	rc = parse_top(*root, label, m);
done:
	if (rc) {
		sm_manifest_release(m);
		json_decref(*root);
		*root = NULL;
	}
	return rc;
}

void sm_manifest_release(sm_manifest *m)
{
	for (size_t i = 0; i < m->nartifacts; i++) {
		sm_artifact *a = &m->artifacts[i];

		free(a->type);
		free(a->name);
		free(a->version);
		free(a->scope);
		free(a->path);
		free(a->hash);
		for (size_t j = 0; j < a->nfiles; j++)
			free(a->files[j].path);
		free(a->files);
		sm_kv_array_free(a->metadata, a->nmetadata);
	}
	free(m->artifacts);
	free(m->format_version);
	free(m->name);
	free(m->bundle_version);
	free(m->description);
	free(m->author);
	free(m->created_at);
	free(m->license);
	free(m->bundle_hash);
	sm_str_array_free(m->tags, m->ntags);
	memset(m, 0, sizeof(*m));
}
