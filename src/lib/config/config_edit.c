/*
 * sharing.toml editing: add a vault, remove a vault, set the default.
 *
 * Each edit works on the file's text, guided by the source offsets the
 * TOML reader records, and changes only the bytes it must. The result is
 * parsed again and checked before it replaces the file, so an edit never
 * leaves an invalid file behind.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "skillmeat/config.h"
#include "util/util.h"
#include "config/sharing.h"
#include "config/toml.h"

/* Replaces text[start, end) with `with` (NULL deletes). */
struct splice {
	size_t start;
	size_t end;
	char *with;
};

struct splices {
	struct splice *items;
	size_t len;
	size_t cap;
};

enum edit_kind { EDIT_ADD, EDIT_REMOVE, EDIT_SET_DEFAULT };

struct edit_request {
	enum edit_kind kind;
	const char *name;
	const char *type;
	const sm_kv *settings;
	size_t nsettings;
	int set_default;
};

static int hand_edit_error(const char *path, const char *what)
{
	return sm_error_set(SM_EINVALID, "%s in '%s'; edit the file by hand", what, path);
}

/* Takes over `with` (also on failure). */
static int splice_add(struct splices *list, size_t start, size_t end, char *with)
{
	if (list->len == list->cap) {
		size_t cap = list->cap ? list->cap * 2 : 4;
		struct splice *items = realloc(list->items, cap * sizeof(*items));

		if (!items) {
			free(with);
			return sm_error_set(SM_ENOMEM, "out of memory");
		}
		list->items = items;
		list->cap = cap;
	}
	list->items[list->len].start = start;
	list->items[list->len].end = end;
	list->items[list->len].with = with;
	list->len++;
	return 0;
}

static void splices_release(struct splices *list)
{
	for (size_t i = 0; i < list->len; i++)
		free(list->items[i].with);
	free(list->items);
	list->items = NULL;
	list->len = list->cap = 0;
}

static int compare_splices(const void *a, const void *b)
{
	const struct splice *x = a, *y = b;

	return x->start < y->start ? -1 : x->start > y->start;
}

/* Builds the edited text. Splices must not overlap. */
static int apply_splices(const char *text, size_t len, struct splices *list, sm_buf *out)
{
	size_t at = 0;
	int rc = 0;

	if (list->len > 1)
		qsort(list->items, list->len, sizeof(list->items[0]), compare_splices);
	for (size_t i = 0; i < list->len && !rc; i++) {
		const struct splice *s = &list->items[i];

		if (s->start < at || s->end < s->start || s->end > len)
			return sm_error_set(SM_ERROR, "overlapping changes in one edit");
		rc = sm_buf_put(out, text + at, s->start - at);
		if (!rc && s->with)
			rc = sm_buf_puts(out, s->with);
		at = s->end;
	}
	if (!rc)
		rc = sm_buf_put(out, text + at, len - at);
	if (!rc && !out->data)
		rc = sm_buf_put(out, "", 0);
	return rc;
}

/* ---- lines ----------------------------------------------------------- */

static size_t line_begin(const char *text, size_t offset)
{
	while (offset > 0 && text[offset - 1] != '\n')
		offset--;
	return offset;
}

/* Returns 1 when text[start, end) contains only whitespace and a newline. */
static int is_blank_line(const char *text, size_t start, size_t end)
{
	for (size_t i = start; i < end; i++)
		if (text[i] != ' ' && text[i] != '\t' && text[i] != '\r' && text[i] != '\n')
			return 0;
	return 1;
}

/* Returns 1 when text[start, end) is a line with only a comment. */
static int is_comment_line(const char *text, size_t start, size_t end)
{
	size_t i = start;

	while (i < end && (text[i] == ' ' || text[i] == '\t'))
		i++;
	return i < end && text[i] == '#';
}

/*
 * Returns the end of the last key/value of `table`'s own section that
 * ends at or before `limit`. Lines below it may sit inside a multi-line
 * string, so they are never taken for comments.
 */
static size_t section_floor(const toml_table *table, size_t limit)
{
	size_t floor = 0;

	for (size_t i = 0; i < table->len; i++) {
		const toml_entry *entry = &table->entries[i];

		if (entry->value.type == TOML_TABLE) {
			const toml_table *child = entry->value.u.table;
			size_t inner;

			if (child->origin == TOML_ORIGIN_HEADER || child->origin == TOML_ORIGIN_IMPLICIT)
				continue;
			inner = section_floor(child, limit);
			if (inner > floor)
				floor = inner;
		} else if (entry->value.type == TOML_ARRAY && entry->value.u.array->of_tables) {
			continue;
		}
		if (entry->pos.line_end <= limit && entry->pos.line_end > floor)
			floor = entry->pos.line_end;
	}
	return floor;
}

/*
 * Returns the start of the comment lines that directly precede `offset`
 * (a line start), not going below `floor`; `offset` when there are none.
 */
static size_t comment_block_start(const char *text, size_t offset, size_t floor)
{
	while (offset > floor) {
		size_t start = line_begin(text, offset - 1);

		if (start < floor || !is_comment_line(text, start, offset))
			break;
		offset = start;
	}
	return offset;
}

/* ---- checks on the parsed file --------------------------------------- */

/* Finds the [vault.NAME] entry of `doc` (NULL when absent). Fails when 'vault' is not a table. */
static int find_vault(const char *path, const toml_doc *doc, const char *name,
		      const toml_entry **out)
{
	const toml_entry *vaults = toml_table_get(doc->root, "vault");

	*out = NULL;
	if (!vaults)
		return 0;
	if (vaults->value.type != TOML_TABLE)
		return hand_edit_error(path, "'vault' is not a table");
	if (vaults->value.u.table->frozen)
		return hand_edit_error(path, "'vault' is an inline table");
	*out = toml_table_get(vaults->value.u.table, name);
	return 0;
}

static int check_name(const char *name)
{
	if (!sm_vault_name_valid(name))
		return sm_error_set(SM_EINVALID, "invalid vault name '%s': use up to 64 letters, digits, '_', '.' or '-', starting with a letter or digit",
				    name ? name : "");
	return 0;
}

/* ---- add ------------------------------------------------------------- */

static int is_boolean_text(const char *value)
{
	return strcmp(value, "true") == 0 || strcmp(value, "false") == 0;
}

static int check_settings(const char *type, const sm_kv *settings, size_t n)
{
	if (!type || !type[0])
		return sm_error_set(SM_EINVALID, "vault type is empty; give a type such as 'local'");
	for (size_t i = 0; i < n; i++) {
		const char *key = settings[i].key;

		if (!key || !key[0] || !settings[i].value)
			return sm_error_set(SM_EINVALID, "vault setting %zu has no key or no value", i + 1);
		if (strcmp(key, "type") == 0)
			return sm_error_set(SM_EINVALID, "setting 'type' repeats the vault type; pass the type once");
		for (size_t k = 0; k < i; k++)
			if (strcmp(settings[k].key, key) == 0)
				return sm_error_set(SM_EINVALID, "setting '%s' is given twice", key);
	}
	return 0;
}

/* Appends "[vault.NAME]" and its keys to `out`. */
static int write_vault_table(sm_buf *out, const struct edit_request *req)
{
	int rc = sm_buf_puts(out, "[vault.");

	if (!rc)
		rc = toml_quote_key(out, req->name, strlen(req->name));
	if (!rc)
		rc = sm_buf_puts(out, "]\ntype = ");
	if (!rc)
		rc = toml_quote(out, req->type, strlen(req->type));
	if (!rc)
		rc = sm_buf_putc(out, '\n');
	for (size_t i = 0; i < req->nsettings && !rc; i++) {
		const sm_kv *kv = &req->settings[i];

		rc = toml_quote_key(out, kv->key, strlen(kv->key));
		if (!rc)
			rc = sm_buf_puts(out, " = ");
		if (!rc && is_boolean_text(kv->value))
			rc = sm_buf_puts(out, kv->value);
		else if (!rc)
			rc = toml_quote(out, kv->value, strlen(kv->value));
		if (!rc)
			rc = sm_buf_putc(out, '\n');
	}
	return rc;
}

static int edit_add(const char *path, const toml_doc *doc, const struct edit_request *req,
		    sm_buf *out)
{
	const toml_entry *existing;
	int rc = find_vault(path, doc, req->name, &existing);

	if (rc)
		return rc;
	if (existing)
		return sm_error_set(SM_EEXISTS, "vault '%s' already exists in '%s'; remove it first or pick another name",
				    req->name, path);
	rc = sm_buf_put(out, doc->text, doc->len);
	if (!rc && doc->len && doc->text[doc->len - 1] != '\n')
		rc = sm_buf_putc(out, '\n');
	if (!rc && doc->len)
		rc = sm_buf_putc(out, '\n');
	if (!rc)
		rc = write_vault_table(out, req);
	return rc;
}

/* ---- remove ---------------------------------------------------------- */

static int header_in_vault(const toml_header *header, const char *name)
{
	size_t len = strlen(name);

	return header->nkeys >= 2 && header->key_lens[0] == 5 &&
	       memcmp(header->keys[0], "vault", 5) == 0 && header->key_lens[1] == len &&
	       memcmp(header->keys[1], name, len) == 0;
}

/*
 * Returns the start of the comment lines just above the header at
 * `offset` when a blank line separates them from the lines above. Such
 * comments introduce the header. Otherwise returns `offset`.
 */
static size_t introducing_comments(const char *text, size_t offset, size_t floor)
{
	size_t comments = comment_block_start(text, offset, floor);
	size_t blank;

	if (comments == offset || comments <= floor)
		return offset;
	blank = line_begin(text, comments - 1);
	return blank >= floor && is_blank_line(text, blank, comments) ? comments : offset;
}

/* The lowest offset above header `i` that may be a comment line. */
static size_t floor_above_header(const toml_doc *doc, size_t i)
{
	size_t start = doc->headers[i].start, floor;

	if (i == 0)
		return section_floor(doc->root, start);
	floor = section_floor(doc->headers[i - 1].table, start);
	return floor > doc->headers[i - 1].end ? floor : doc->headers[i - 1].end;
}

/*
 * Queues the deletion of every run of [vault.NAME] and [vault.NAME.*]
 * sections, with the comment block that introduces the run. A run ends
 * at the next other header, whose own introducing comment stays.
 */
static int remove_vault_sections(const toml_doc *doc, const char *name, struct splices *list)
{
	const char *text = doc->text;
	size_t i = 0, removed = 0;

	while (i < doc->nheaders) {
		size_t j = i, start, end;
		int rc;

		if (!header_in_vault(&doc->headers[i], name)) {
			i++;
			continue;
		}
		while (j < doc->nheaders && header_in_vault(&doc->headers[j], name))
			j++;
		start = introducing_comments(text, doc->headers[i].start, floor_above_header(doc, i));
		end = j < doc->nheaders ? introducing_comments(text, doc->headers[j].start,
								 floor_above_header(doc, j))
					: doc->len;

		/* at the end of the file, also drop the blank line that separated the run */
		if (end == doc->len && start > 0) {
			size_t blank = line_begin(text, start - 1);

			if (is_blank_line(text, blank, start))
				start = blank;
		}
		rc = splice_add(list, start, end, NULL);
		if (rc)
			return rc;
		removed++;
		i = j;
	}
	return removed ? 0 : sm_error_set(SM_ERROR, "no section of vault '%s' found to remove", name);
}

static int edit_remove(const char *path, const toml_doc *doc, const struct edit_request *req,
		       sm_buf *out)
{
	struct splices list = { 0 };
	const toml_entry *vault, *sharing, *key = NULL;
	const toml_table *table;
	int rc = find_vault(path, doc, req->name, &vault);

	if (rc)
		return rc;
	if (!vault)
		return sm_error_set(SM_ENOTFOUND, "vault '%s' not found in '%s'; run 'skillmeat vault list' to see where each vault is defined",
				    req->name, path);
	if (vault->value.type != TOML_TABLE)
		return hand_edit_error(path, "vault is not a table");
	table = vault->value.u.table;
	if (table->frozen || table->origin == TOML_ORIGIN_DOTTED) {
		char what[160];

		snprintf(what, sizeof(what), "vault '%s' is written as an inline table or with dotted keys",
			 req->name);
		return hand_edit_error(path, what);
	}

	sharing = toml_table_get(doc->root, "sharing");
	if (sharing && sharing->value.type == TOML_TABLE)
		key = toml_table_get(sharing->value.u.table, "default_vault");
	if (key && key->value.type == TOML_STRING && strcmp(key->value.u.string.ptr, req->name) == 0) {
		if (sharing->value.u.table->frozen)
			return hand_edit_error(path, "default_vault is inside an inline table");
		rc = splice_add(&list, key->pos.line_start, key->pos.line_end, NULL);
	}

	if (!rc)
		rc = remove_vault_sections(doc, req->name, &list);
	if (!rc)
		rc = apply_splices(doc->text, doc->len, &list, out);
	splices_release(&list);
	return rc;
}

/* ---- set default ----------------------------------------------------- */

/* Returns `prefix`, then KEY = "NAME" and a newline, then `suffix`. */
static char *default_line(const char *prefix, const char *key, const char *name, const char *suffix)
{
	sm_buf buf = SM_BUF_INIT(0);
	int rc = sm_buf_printf(&buf, "%s%s = ", prefix, key);

	if (!rc)
		rc = toml_quote(&buf, name, strlen(name));
	if (!rc)
		rc = sm_buf_printf(&buf, "\n%s", suffix);
	if (rc) {
		sm_buf_release(&buf);
		return NULL;
	}
	return sm_buf_take(&buf);
}

/* Inserts a new [sharing] table before the first table header, or at the end. */
static int insert_sharing_table(const toml_doc *doc, const char *name, struct splices *list)
{
	char *with;
	size_t at;

	if (doc->nheaders == 0) {
		const char *prefix = "";

		if (doc->len)
			prefix = doc->text[doc->len - 1] == '\n' ? "\n" : "\n\n";
		with = default_line(prefix, "[sharing]\ndefault_vault", name, "");
		at = doc->len;
	} else {
		/* root keys must stay above the new header: never insert before them */
		size_t first = doc->headers[0].start;

		at = comment_block_start(doc->text, first, section_floor(doc->root, first));
		with = default_line("", "[sharing]\ndefault_vault", name, "\n");
	}
	if (!with)
		return SM_ENOMEM;
	return splice_add(list, at, at, with);
}

static int edit_set_default(const char *path, const toml_doc *doc, const char *name, sm_buf *out)
{
	struct splices list = { 0 };
	const toml_entry *sharing = toml_table_get(doc->root, "sharing"), *key;
	const toml_table *table;
	const char *newline;
	char *with;
	size_t at;
	int rc;

	if (sharing && sharing->value.type != TOML_TABLE)
		return hand_edit_error(path, "'sharing' is not a table");
	if (!sharing || sharing->value.u.table->origin == TOML_ORIGIN_IMPLICIT) {
		rc = insert_sharing_table(doc, name, &list);
		goto apply;
	}
	table = sharing->value.u.table;
	key = toml_table_get(table, "default_vault");
	if (key) {
		sm_buf quoted = SM_BUF_INIT(0);

		rc = toml_quote(&quoted, name, strlen(name));
		with = rc ? NULL : sm_buf_take(&quoted);
		sm_buf_release(&quoted);
		if (!with)
			return rc ? rc : SM_ENOMEM;
		rc = splice_add(&list, key->pos.value_start, key->pos.value_end, with);
		goto apply;
	}
	if (table->frozen)
		return hand_edit_error(path, "'sharing' is an inline table");

	/* after the [sharing] header, or after the root line sharing.x = ... that made the table */
	at = table->has_header ? table->header_end : sharing->pos.line_end;
	newline = at == doc->len && doc->len && doc->text[doc->len - 1] != '\n' ? "\n" : "";
	with = default_line(newline, table->has_header ? "default_vault" : "sharing.default_vault",
			    name, "");
	if (!with)
		return SM_ENOMEM;
	rc = splice_add(&list, at, at, with);
apply:
	if (!rc)
		rc = apply_splices(doc->text, doc->len, &list, out);
	splices_release(&list);
	return rc;
}

/* ---- the locked read, edit, check, write cycle ----------------------- */

/* Checks that `text` parses and contains the change the edit made. */
static int check_result(const char *path, const char *text, size_t len,
			const struct edit_request *req)
{
	const toml_entry *vault = NULL, *sharing, *key = NULL;
	char parse_error[512];
	toml_doc *doc = NULL;
	int rc, ok;

	rc = toml_parse(&doc, text, len, path, SM_CONFIG_MAX_BYTES);
	if (rc) {
		snprintf(parse_error, sizeof(parse_error), "%s", sm_error_message());
		return sm_error_set(SM_EINVALID, "edit of '%s' not written because the result would not parse (%s); edit the file by hand",
				    path, parse_error);
	}
	rc = find_vault(path, doc, req->name, &vault);
	sharing = toml_table_get(doc->root, "sharing");
	if (sharing && sharing->value.type == TOML_TABLE)
		key = toml_table_get(sharing->value.u.table, "default_vault");
	ok = req->kind == EDIT_REMOVE ? !vault : 1;
	if (req->kind == EDIT_ADD)
		ok = vault && vault->value.type == TOML_TABLE;
	if (req->kind == EDIT_SET_DEFAULT || req->set_default)
		ok = ok && key && key->value.type == TOML_STRING &&
		     strcmp(key->value.u.string.ptr, req->name) == 0;
	toml_doc_free(doc);
	if (rc)
		return rc;
	if (!ok)
		return sm_error_set(SM_ERROR, "edit of '%s' not written because the result does not hold the change; edit the file by hand",
				    path);
	return 0;
}

/* Runs the edit on the current text of the file, leaving the new text in `out`. */
static int edit_text(const char *path, const char *text, size_t len,
		     const struct edit_request *req, sm_buf *out)
{
	sm_buf step = SM_BUF_INIT(SM_CONFIG_MAX_BYTES);
	toml_doc *doc = NULL;
	int rc;

	rc = toml_parse(&doc, text, len, path, SM_CONFIG_MAX_BYTES);
	if (rc)
		goto done;
	switch (req->kind) {
	case EDIT_ADD:
		if (!req->set_default) {
			rc = edit_add(path, doc, req, out);
			break;
		}
		rc = edit_add(path, doc, req, &step);
		toml_doc_free(doc);
		doc = NULL;
		if (!rc)
			rc = toml_parse(&doc, step.data, step.len, path, SM_CONFIG_MAX_BYTES);
		if (!rc)
			rc = edit_set_default(path, doc, req->name, out);
		break;
	case EDIT_REMOVE:
		rc = edit_remove(path, doc, req, out);
		break;
	case EDIT_SET_DEFAULT:
		rc = edit_set_default(path, doc, req->name, out);
		break;
	}
	if (!rc)
		rc = check_result(path, out->data, out->len, req);
done:
	toml_doc_free(doc);
	sm_buf_release(&step);
	return rc;
}

/* The file to write: the target of `path` when it is a symbolic link. */
static char *write_target(const char *path)
{
	struct stat st;
	char resolved[PATH_MAX];

	if (lstat(path, &st) == 0 && S_ISLNK(st.st_mode) && realpath(path, resolved))
		return sm_strdup(resolved);
	return sm_strdup(path);
}

static char *parent_dir(const char *path)
{
	const char *slash = strrchr(path, '/');

	if (!slash)
		return sm_strdup(".");
	if (slash == path)
		return sm_strdup("/");
	return sm_strndup(path, (size_t)(slash - path));
}

static int run_edit(const char *path, const struct edit_request *req)
{
	sm_buf out = SM_BUF_INIT(SM_CONFIG_MAX_BYTES);
	char *lock_path = NULL, *dir = NULL, *text = NULL, *target = NULL;
	size_t len = 0;
	int lock_fd = -1, rc;

	if (!path || !path[0])
		return sm_error_set(SM_EINVALID, "no sharing.toml path given");
	rc = check_name(req->name);
	if (rc)
		return rc;
	if (req->kind == EDIT_ADD) {
		rc = check_settings(req->type, req->settings, req->nsettings);
		if (rc)
			return rc;
	}
	if (req->kind == EDIT_REMOVE && access(path, F_OK) != 0 && errno == ENOENT)
		return sm_error_set(SM_ENOTFOUND, "vault '%s' not found: '%s' does not exist", req->name, path);

	dir = parent_dir(path);
	lock_path = sm_asprintf("%s.lock", path);
	if (!dir || !lock_path) {
		rc = SM_ENOMEM;
		goto done;
	}
	rc = sm_mkdir_p(dir, 0700);
	if (rc)
		goto done;
	rc = sm_lock(lock_path, &lock_fd);
	if (rc)
		goto done;

	/* read again under the lock: another process may have changed the file */
	rc = sm_read_file(path, SM_CONFIG_MAX_BYTES, &text, &len);
	if (rc == SM_ENOTFOUND && req->kind == EDIT_REMOVE) {
		rc = sm_error_set(SM_ENOTFOUND, "vault '%s' not found: '%s' does not exist", req->name, path);
		goto done;
	}
	if (rc == SM_ENOTFOUND) {
		sm_error_clear();
		rc = 0;
	}
	if (rc)
		goto done;

	rc = edit_text(path, text ? text : "", len, req, &out);
	if (rc)
		goto done;
	if (text && out.len == len && memcmp(out.data, text, len) == 0)
		goto done; /* nothing changed */
	target = write_target(path);
	if (!target) {
		rc = SM_ENOMEM;
		goto done;
	}
	rc = sm_write_file_atomic(target, out.data, out.len, 0600);
done:
	sm_unlock(lock_fd);
	sm_buf_release(&out);
	free(target);
	free(text);
	free(lock_path);
	free(dir);
	return rc;
}

int sm_config_add_vault(const char *path, const char *name, const char *type,
			const sm_kv *settings, size_t nsettings, int set_default)
{
	struct edit_request req = {
		.kind = EDIT_ADD,
		.name = name,
		.type = type,
		.settings = settings,
		.nsettings = nsettings,
		.set_default = set_default,
	};

	return run_edit(path, &req);
}

int sm_config_remove_vault(const char *path, const char *name)
{
	struct edit_request req = { .kind = EDIT_REMOVE, .name = name };

	return run_edit(path, &req);
}

int sm_config_set_default(const char *path, const char *name)
{
	struct edit_request req = { .kind = EDIT_SET_DEFAULT, .name = name };

	return run_edit(path, &req);
}
