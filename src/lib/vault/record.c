/* sm_record: the JSON record of one stored bundle. */
#include <stdlib.h>
#include <string.h>

#include "util/util.h"
#include "vault/record.h"

const char *sm_record_metadata_get(const sm_record *record, const char *key)
{
	for (size_t i = 0; i < record->nmetadata; i++)
		if (strcmp(record->metadata[i].key, key) == 0)
			return record->metadata[i].value;
	return NULL;
}

void sm_record_free(sm_record *record)
{
	if (!record)
		return;
	free(record->bundle_id);
	free(record->name);
	free(record->version);
	free(record->description);
	free(record->author);
	free(record->created_at);
	free(record->uploaded_at);
	free(record->bundle_hash);
	free(record->vault_path);
	sm_str_array_free(record->tags, record->ntags);
	sm_kv_array_free(record->metadata, record->nmetadata);
	free(record);
}

void sm_record_list_release(sm_record_list *list)
{
	for (size_t i = 0; i < list->count; i++)
		sm_record_free(list->items[i]);
	free(list->items);
	list->items = NULL;
	list->count = 0;
}

int sm_record_metadata_set(sm_record *record, const char *key, const char *value)
{
	char *copy = sm_strdup(value);
	sm_kv *grown;

	if (!copy)
		return SM_ENOMEM;
	for (size_t i = 0; i < record->nmetadata; i++) {
		if (strcmp(record->metadata[i].key, key) == 0) {
			free(record->metadata[i].value);
			record->metadata[i].value = copy;
			return 0;
		}
	}
	grown = realloc(record->metadata, (record->nmetadata + 1) * sizeof(*grown));
	if (!grown) {
		free(copy);
		return sm_error_set(SM_ENOMEM, "out of memory");
	}
	record->metadata = grown;
	grown[record->nmetadata].key = sm_strdup(key);
	grown[record->nmetadata].value = copy;
	if (!grown[record->nmetadata].key) {
		free(copy);
		return SM_ENOMEM;
	}
	record->nmetadata++;
	return 0;
}

/* Copies an optional string member; absent or null gives "". */
static int take_string(const json_t *object, const char *key, const char *what, char **out)
{
	const json_t *value = json_object_get(object, key);

	if (!value || json_is_null(value)) {
		*out = sm_strdup("");
	} else if (!json_is_string(value)) {
		return sm_error_set(SM_EINVALID, "%s: field '%s' is not a string", what, key);
	} else {
		*out = sm_strdup(json_string_value(value));
	}
	return *out ? 0 : SM_ENOMEM;
}

int sm_record_from_json(const json_t *object, const char *what, sm_record **out)
{
	static const char *const fields[] = {
		"bundle_id", "name", "version", "description", "author",
		"created_at", "uploaded_at", "bundle_hash", "vault_path",
	};
	sm_record *record;
	char **slots[9];
	const json_t *value;
	int rc = 0;

	*out = NULL;
	if (!json_is_object(object))
		return sm_error_set(SM_EINVALID, "%s: record is not a JSON object", what);
	record = calloc(1, sizeof(*record));
	if (!record)
		return sm_error_set(SM_ENOMEM, "out of memory");
	slots[0] = &record->bundle_id;
	slots[1] = &record->name;
	slots[2] = &record->version;
	slots[3] = &record->description;
	slots[4] = &record->author;
	slots[5] = &record->created_at;
	slots[6] = &record->uploaded_at;
	slots[7] = &record->bundle_hash;
	slots[8] = &record->vault_path;
	for (size_t i = 0; i < 9; i++)
		if ((rc = take_string(object, fields[i], what, slots[i])) != 0)
			goto done;

	if (!sm_bundle_id_valid(record->bundle_id)) {
		rc = sm_error_set(SM_EINVALID, "%s: invalid bundle_id '%s'", what, record->bundle_id);
		goto done;
	}

	value = json_object_get(object, "size_bytes");
	if (value && !json_is_null(value)) {
		if (!json_is_integer(value) || json_integer_value(value) < 0) {
			rc = sm_error_set(SM_EINVALID, "%s: size_bytes is not a non-negative integer", what);
			goto done;
		}
		record->size_bytes = (uint64_t)json_integer_value(value);
	}

	value = json_object_get(object, "tags");
	if (value && !json_is_null(value)) {
		size_t i;
		json_t *tag;

		if (!json_is_array(value)) {
			rc = sm_error_set(SM_EINVALID, "%s: tags is not an array", what);
			goto done;
		}
		record->tags = calloc(json_array_size(value) + 1, sizeof(char *));
		if (!record->tags) {
			rc = sm_error_set(SM_ENOMEM, "out of memory");
			goto done;
		}
		json_array_foreach(value, i, tag) {
			if (!json_is_string(tag)) {
				rc = sm_error_set(SM_EINVALID, "%s: a tag is not a string", what);
				goto done;
			}
			if (!(record->tags[record->ntags++] = sm_strdup(json_string_value(tag)))) {
				rc = SM_ENOMEM;
				goto done;
			}
		}
	}

	value = json_object_get(object, "metadata");
	if (value && !json_is_null(value)) {
		const char *key;
		json_t *item;

		if (!json_is_object(value)) {
			rc = sm_error_set(SM_EINVALID, "%s: metadata is not an object", what);
			goto done;
		}
		json_object_foreach((json_t *)value, key, item) {
			char *text = json_is_string(item) ? sm_strdup(json_string_value(item))
				: json_dumps(item, JSON_COMPACT | JSON_ENCODE_ANY);

			if (!text) {
				rc = sm_error_set(SM_ENOMEM, "out of memory");
				goto done;
			}
			rc = sm_record_metadata_set(record, key, text);
			free(text);
			if (rc)
				goto done;
		}
	}
done:
	if (rc) {
		sm_record_free(record);
		return rc;
	}
	*out = record;
	return 0;
}

int sm_record_parse(const char *text, size_t len, const char *what, sm_record **out)
{
	json_error_t error;
	json_t *object = json_loadb(text, len, JSON_REJECT_DUPLICATES, &error);
	int rc;

	*out = NULL;
	if (!object)
		return sm_error_set(SM_EINVALID, "%s: invalid JSON at line %d: %s",
				    what, error.line, error.text);
	rc = sm_record_from_json(object, what, out);
	json_decref(object);
	return rc;
}

json_t *sm_record_to_json(const sm_record *record)
{
	json_t *object = json_object(), *tags = json_array(), *metadata = json_object();

	if (!object || !tags || !metadata)
		goto fail;
	for (size_t i = 0; i < record->ntags; i++)
		json_array_append_new(tags, json_string(record->tags[i]));
	for (size_t i = 0; i < record->nmetadata; i++)
		json_object_set_new(metadata, record->metadata[i].key,
				    json_string(record->metadata[i].value));

	json_object_set_new(object, "bundle_id", json_string(record->bundle_id));
	json_object_set_new(object, "name", json_string(record->name));
	json_object_set_new(object, "version", json_string(record->version));
	json_object_set_new(object, "description", json_string(record->description));
	json_object_set_new(object, "author", json_string(record->author));
	json_object_set_new(object, "created_at", json_string(record->created_at));
	json_object_set_new(object, "uploaded_at", json_string(record->uploaded_at));
	json_object_set_new(object, "size_bytes", json_integer((json_int_t)record->size_bytes));
	json_object_set_new(object, "bundle_hash", json_string(record->bundle_hash));
	json_object_set_new(object, "tags", tags);
	json_object_set_new(object, "vault_path", json_string(record->vault_path));
	json_object_set_new(object, "metadata", metadata);
	return object;
fail:
	json_decref(object);
	json_decref(tags);
	json_decref(metadata);
	sm_error_set(SM_ENOMEM, "out of memory");
	return NULL;
}

sm_record *sm_record_dup(const sm_record *record)
{
	json_t *object = sm_record_to_json(record);
	sm_record *copy = NULL;

	if (object)
		sm_record_from_json(object, "record", &copy);
	json_decref(object);
	return copy;
}

int sm_record_to_text(const sm_record *record, char **out)
{
	json_t *object = sm_record_to_json(record);

	*out = object ? json_dumps(object, JSON_INDENT(2)) : NULL;
	json_decref(object);
	return *out ? 0 : sm_error_set(SM_ENOMEM, "cannot serialise the record of '%s'",
				       record->bundle_id);
}

int sm_record_from_text(const char *text, size_t len, const char *what, sm_record **out)
{
	*out = NULL;
	if (len > SM_RECORD_MAX_BYTES)
		return sm_error_set(SM_EINVALID, "%s: %zu bytes, more than the limit of %d",
				    what, len, SM_RECORD_MAX_BYTES);
	return sm_record_parse(text, len, what, out);
}

int sm_record_list_append(sm_record_list *list, sm_record *record)
{
	sm_record **items = realloc(list->items, (list->count + 1) * sizeof(*items));

	if (!items) {
		sm_record_free(record);
		return sm_error_set(SM_ENOMEM, "out of memory");
	}
	items[list->count++] = record;
	list->items = items;
	return 0;
}

static int compare_record_ids(const void *a, const void *b)
{
	const sm_record *const *x = a, *const *y = b;

	return strcmp((*x)->bundle_id, (*y)->bundle_id);
}

int sm_index_from_text(const char *text, size_t len, sm_record_list *out)
{
	json_error_t error;
	json_t *index, *value;
	const char *key;
	int rc = 0;

	out->items = NULL;
	out->count = 0;
	if (len > SM_INDEX_MAX_BYTES)
		return sm_error_set(SM_EINVALID, "index.json: %zu bytes, more than the limit of %u",
				    len, SM_INDEX_MAX_BYTES);
	index = json_loadb(text, len, JSON_REJECT_DUPLICATES, &error);
	if (!index || !json_is_object(index)) {
		json_decref(index);
		return sm_error_set(SM_EINVALID, "index.json: not a JSON object%s%s",
				    index ? "" : ": ", index ? "" : error.text);
	}
	json_object_foreach(index, key, value) {
		sm_record *record = NULL;

		rc = sm_record_from_json(value, key, &record);
		if (!rc && strcmp(record->bundle_id, key) != 0) {
			rc = sm_error_set(SM_EINVALID, "index.json: entry '%s' names bundle '%s'",
					  key, record->bundle_id);
			sm_record_free(record);
		}
		if (!rc)
			rc = sm_record_list_append(out, record);
		if (rc)
			break;
	}
	json_decref(index);
	if (rc) {
		sm_record_list_release(out);
		return rc;
	}
	if (out->count > 1)
		qsort(out->items, out->count, sizeof(*out->items), compare_record_ids);
	return 0;
}

int sm_index_to_text(const sm_record_list *list, char **out)
{
	json_t *index = json_object();

	*out = NULL;
	for (size_t i = 0; index && i < list->count; i++) {
		json_t *object = sm_record_to_json(list->items[i]);

		if (!object || json_object_set_new(index, list->items[i]->bundle_id, object) != 0) {
			json_decref(index);
			index = NULL;
		}
	}
	*out = index ? json_dumps(index, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
	json_decref(index);
	return *out ? 0 : sm_error_set(SM_ENOMEM, "cannot serialise the index");
}

int sm_push_settle_existing(sm_record *record, sm_record *old, int identical, int force,
			    const char *vault_name)
{
	if (identical && old) {
		/* report the stored record, not the upload that did not happen */
		char *uploaded = sm_strdup(old->uploaded_at), *path = sm_strdup(old->vault_path);

		if (uploaded && path) {
			free(record->uploaded_at);
			free(record->vault_path);
			record->uploaded_at = uploaded;
			record->vault_path = path;
		} else {
			free(uploaded);
			free(path);
		}
	}
	sm_record_free(old);
	if (identical || force)
		return 0;
	return sm_error_set(SM_EEXISTS, "bundle '%s' already exists in vault '%s'; versions are "
			    "immutable: push with another --version, or use --force to replace it",
			    record->bundle_id, vault_name);
}
