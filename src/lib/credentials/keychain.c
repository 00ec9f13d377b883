/*
 * The OS keychain through the Secret Service D-Bus API (libsecret).
 *
 * One item per vault and field in the default collection, with the
 * attributes application = "skillmeat", vault = NAME, field = FIELD and the
 * label "skillmeat vault 'NAME' FIELD". Nothing here ever prompts: a locked
 * default collection counts as no keychain, so the caller falls back to the
 * sealed file instead of waiting for a dialog that may never be seen.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libsecret/secret.h>

#include "credentials/credentials_internal.h"
#include "util/util.h"

/* How long a D-Bus call may take before the keychain counts as unreachable, in ms. */
#define PING_TIMEOUT_MS 1000
#define CALL_TIMEOUT_MS 5000

static const SecretSchema schema = {
	"io.github.skillmeat.Credential", SECRET_SCHEMA_DONT_MATCH_NAME,
	{
		{ "application", SECRET_SCHEMA_ATTRIBUTE_STRING },
		{ "vault", SECRET_SCHEMA_ATTRIBUTE_STRING },
		{ "field", SECRET_SCHEMA_ATTRIBUTE_STRING },
		{ NULL, 0 },
	},
	0, NULL, NULL, NULL, NULL, NULL, NULL, NULL
};

static void set_reason(char *reason, size_t size, const char *what, const GError *error)
{
	if (!reason || !size)
		return;
	if (error)
		snprintf(reason, size, "%s: %s", what, error->message);
	else
		snprintf(reason, size, "%s", what);
	for (char *p = reason; *p; p++)
		if ((unsigned char)*p < 0x20)
			*p = ' ';
}

/*
 * Connects to the Secret Service and checks that its default collection is
 * unlocked. Returns the service (a new reference), or NULL with `reason`.
 */
static SecretService *connect_service(char *reason, size_t size)
{
	const char *address = getenv("DBUS_SESSION_BUS_ADDRESS");
	GDBusConnection *bus = NULL;
	SecretService *service = NULL;
	SecretCollection *collection = NULL;
	GVariant *reply = NULL;
	GError *error = NULL;

	/* without an address GLib would try to autolaunch a bus: never do that */
	if (!address || !*address) {
		set_reason(reason, size, "no D-Bus session (DBUS_SESSION_BUS_ADDRESS is not set)", NULL);
		goto done;
	}
	bus = g_bus_get_sync(G_BUS_TYPE_SESSION, NULL, &error);
	if (!bus) {
		set_reason(reason, size, "cannot connect to the D-Bus session", error);
		goto done;
	}
	/* a short ping first: libsecret's own calls wait up to 25 s for an absent provider */
	reply = g_dbus_connection_call_sync(bus, "org.freedesktop.secrets", "/org/freedesktop/secrets",
					    "org.freedesktop.DBus.Peer", "Ping", NULL, NULL,
					    G_DBUS_CALL_FLAGS_NONE, PING_TIMEOUT_MS, NULL, &error);
	if (!reply) {
		set_reason(reason, size, "no Secret Service on the D-Bus session", error);
		goto done;
	}
	service = secret_service_get_sync(SECRET_SERVICE_OPEN_SESSION, NULL, &error);
	if (!service) {
		set_reason(reason, size, "cannot open a Secret Service session", error);
		goto done;
	}
	g_dbus_proxy_set_default_timeout(G_DBUS_PROXY(service), CALL_TIMEOUT_MS);
	collection = secret_collection_for_alias_sync(service, SECRET_COLLECTION_DEFAULT,
						      SECRET_COLLECTION_NONE, NULL, &error);
	if (!collection) {
		set_reason(reason, size, "the keychain has no default collection", error);
		g_clear_object(&service);
		goto done;
	}
	if (secret_collection_get_locked(collection)) {
		set_reason(reason, size, "the default keychain collection is locked", NULL);
		g_clear_object(&service);
		goto done;
	}
done:
	if (collection)
		g_object_unref(collection);
	if (reply)
		g_variant_unref(reply);
	if (bus)
		g_object_unref(bus);
	if (error)
		g_error_free(error);
	return service;
}

static int unavailable(const char *reason)
{
	return sm_error_set(SM_EUNSUPPORTED, "the keychain is not available (%s); use "
			    "'--store file' or unlock the keychain", reason);
}

/* Attributes of the items of `vault`, or of one field of it when `field` >= 0. */
static GHashTable *attributes_of(const char *vault, int field)
{
	GHashTable *attributes = g_hash_table_new(g_str_hash, g_str_equal);

	g_hash_table_insert(attributes, "application", "skillmeat");
	g_hash_table_insert(attributes, "vault", (char *)vault);
	if (field >= 0)
		g_hash_table_insert(attributes, "field", (char *)sm_cred_field_name(field));
	return attributes;
}

int sm_keychain_available(char *reason, size_t size)
{
	SecretService *service = connect_service(reason, size);

	if (!service)
		return 0;
	g_object_unref(service);
	return 1;
}

/* Runs a search of `vault`'s items; `load` also fetches the secrets. */
static int search_items(SecretService *service, const char *vault, int load, GList **items)
{
	GHashTable *attributes = attributes_of(vault, -1);
	GError *error = NULL;
	int rc = 0;

	*items = secret_service_search_sync(service, &schema, attributes,
					    SECRET_SEARCH_ALL | (load ? SECRET_SEARCH_LOAD_SECRETS : 0),
					    NULL, &error);
	if (error) {
		rc = sm_error_set(SM_EIO, "cannot search the keychain: %s", error->message);
		g_error_free(error);
	}
	g_hash_table_unref(attributes);
	return rc;
}

/* Returns the field an item stores, or -1. */
static int item_field(SecretItem *item)
{
	GHashTable *attributes = secret_item_get_attributes(item);
	const char *name = attributes ? g_hash_table_lookup(attributes, "field") : NULL;
	int field = name ? sm_cred_field_from_name(name) : -1;

	if (attributes)
		g_hash_table_unref(attributes);
	return field;
}

int sm_keychain_lookup(const char *vault, char *values[SM_CRED_NFIELDS])
{
	char reason[160];
	SecretService *service;
	GList *items = NULL;
	int rc;

	for (int i = 0; i < SM_CRED_NFIELDS; i++)
		values[i] = NULL;
	service = connect_service(reason, sizeof(reason));
	if (!service)
		return unavailable(reason);
	rc = search_items(service, vault, 1, &items);
	for (GList *l = items; !rc && l; l = l->next) {
		SecretItem *item = l->data;
		int field = item_field(item);
		SecretValue *value;
		const char *data;
		gsize len;

		if (field < 0 || secret_item_get_locked(item) || values[field])
			continue;
		value = secret_item_get_secret(item);
		if (!value)
			continue;
		data = secret_value_get(value, &len);
		values[field] = sm_secret_dup(data, len);
		secret_value_unref(value);
		if (!values[field])
			rc = SM_ENOMEM;
	}
	g_list_free_full(items, g_object_unref);
	g_object_unref(service);
	if (rc)
		sm_secret_array_free(values);
	return rc;
}

int sm_keychain_fields(const char *vault, unsigned int *mask)
{
	char reason[160];
	SecretService *service;
	GList *items = NULL;
	int rc;

	*mask = 0;
	service = connect_service(reason, sizeof(reason));
	if (!service)
		return unavailable(reason);
	rc = search_items(service, vault, 0, &items);
	for (GList *l = items; l; l = l->next) {
		int field = item_field(l->data);

		if (field >= 0)
			*mask |= 1u << field;
	}
	g_list_free_full(items, g_object_unref);
	g_object_unref(service);
	return rc;
}

int sm_keychain_store(const char *vault, const char *const values[SM_CRED_NFIELDS])
{
	char reason[160], label[128];
	SecretService *service;
	int rc = 0;

	service = connect_service(reason, sizeof(reason));
	if (!service)
		return unavailable(reason);
	for (int i = 0; !rc && i < SM_CRED_NFIELDS; i++) {
		GHashTable *attributes;
		SecretValue *value;
		GError *error = NULL;

		if (!values[i])
			continue;
		snprintf(label, sizeof(label), "skillmeat vault '%s' %s", vault, sm_cred_field_name(i));
		attributes = attributes_of(vault, i);
		value = secret_value_new(values[i], -1, "text/plain");
		/* an item with the same attributes is replaced, not duplicated */
		if (!secret_service_store_sync(service, &schema, attributes, SECRET_COLLECTION_DEFAULT,
					       label, value, NULL, &error)) {
			rc = sm_error_set(SM_EIO, "cannot store the %s of vault '%s' in the keychain: %s",
					  sm_cred_field_name(i), vault,
					  error ? error->message : "unknown error");
		}
		if (error)
			g_error_free(error);
		secret_value_unref(value);
		g_hash_table_unref(attributes);
	}
	g_object_unref(service);
	return rc;
}

int sm_keychain_remove(const char *vault, int *removed)
{
	char reason[160];
	SecretService *service;
	GList *items = NULL;
	int rc;

	*removed = 0;
	service = connect_service(reason, sizeof(reason));
	if (!service)
		return unavailable(reason);
	rc = search_items(service, vault, 0, &items);
	for (GList *l = items; !rc && l; l = l->next) {
		GError *error = NULL;

		if (secret_item_delete_sync(l->data, NULL, &error)) {
			(*removed)++;
		} else {
			rc = sm_error_set(SM_EIO, "cannot delete a keychain item of vault '%s': %s",
					  vault, error ? error->message : "unknown error");
		}
		if (error)
			g_error_free(error);
	}
	g_list_free_full(items, g_object_unref);
	g_object_unref(service);
	return rc;
}
