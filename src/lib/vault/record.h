/*
 * Conversion between sm_record and the JSON of metadata/<id>.json, shared
 * by every connector that stores the common vault layout.
 */
#ifndef SM_VAULT_RECORD_H
#define SM_VAULT_RECORD_H

#include <jansson.h>

#include "skillmeat/vault.h"

/* Largest metadata/<id>.json accepted, in bytes. */
#define SM_RECORD_MAX_BYTES (1024 * 1024)

/* Largest index.json accepted, in bytes. */
#define SM_INDEX_MAX_BYTES (512u * 1024 * 1024)

/*
 * Builds a record from a JSON object. Fails with SM_EINVALID when the
 * object lacks a valid bundle_id or a field has the wrong type; `what`
 * names the source in the message.
 */
int sm_record_from_json(const json_t *object, const char *what, sm_record **out);

/* Returns a new JSON object in the original tool's field order. */
json_t *sm_record_to_json(const sm_record *record);

/* Parses JSON text into a record (see sm_record_from_json). */
int sm_record_parse(const char *text, size_t len, const char *what, sm_record **out);

/* Returns a copy of the record, or NULL. */
sm_record *sm_record_dup(const sm_record *record);

/* Sets metadata[key] = value, replacing an existing value. */
int sm_record_metadata_set(sm_record *record, const char *key, const char *value);

#endif
