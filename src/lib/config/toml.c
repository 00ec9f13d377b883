/*
 * TOML 1.0.0 reader: a hand-written recursive descent parser that builds
 * a tree and keeps the source offsets of tables and key/values.
 *
 * Table rules follow TOML 1.0.0: a table is defined once, by a [header],
 * by dotted keys or as an inline table. Headers may name a table that an
 * earlier, deeper header only implied, and may add sub-tables to tables
 * made by dotted keys. Dotted keys may extend tables made by dotted keys
 * or only implied by a header, never a table that a header defined.
 * Inline tables never change once closed.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"
#include "config/toml.h"

/* Tables with this many entries or more get a hash index. */
#define INDEX_MIN_ENTRIES 16

/* Maximum length of key text quoted in an error message. */
#define KEY_DISPLAY_MAX 80

struct key_part {
	char *text;
	size_t len;
	size_t offset; /* first byte of the key part in the document */
};

struct key_path {
	struct key_part *parts;
	size_t len;
	size_t cap;
};

struct parser {
	const char *text;
	size_t len;
	size_t pos;
	const char *name;
	toml_doc *doc;
	toml_table *current; /* the table that receives key/values */
	/*
	 * Line, column and line start of cursor_offset, and the first newline
	 * at or after newline_from, so that positions asked for in document
	 * order cost one pass over the document in total.
	 */
	size_t cursor_offset;
	unsigned cursor_line;
	unsigned cursor_col;
	size_t cursor_line_start;
	size_t newline_from;
	size_t newline_at;
};

static int parse_value(struct parser *p, toml_value *out, unsigned depth);
static void table_free(toml_table *table);

/* ---- errors -------------------------------------------------------- */

/* Advances *line, *col and *line_start over text[from, to). */
static void count_lines(const char *text, size_t from, size_t to, unsigned *line, unsigned *col,
			size_t *line_start)
{
	for (size_t i = from; i < to; i++) {
		unsigned char byte = (unsigned char)text[i];

		if (byte == '\n') {
			(*line)++;
			*col = 1;
			*line_start = i + 1;
		} else if ((byte & 0xc0) != 0x80) {
			(*col)++; /* count characters, not UTF-8 continuation bytes */
		}
	}
}

void toml_line_col(const char *text, size_t offset, unsigned *line, unsigned *col)
{
	size_t line_start = 0;

	*line = 1;
	*col = 1;
	count_lines(text, 0, offset, line, col, &line_start);
}

/* Moves the cursor to `offset`, starting over when it lies behind. */
static void move_cursor(struct parser *p, size_t offset)
{
	if (offset < p->cursor_offset) {
		p->cursor_offset = 0;
		p->cursor_line = 1;
		p->cursor_col = 1;
		p->cursor_line_start = 0;
	}
	count_lines(p->text, p->cursor_offset, offset, &p->cursor_line, &p->cursor_col,
		    &p->cursor_line_start);
	p->cursor_offset = offset;
}

/* Finds the 1-based line and column of `offset`. */
static void position_of(struct parser *p, size_t offset, unsigned *line, unsigned *col)
{
	move_cursor(p, offset);
	*line = p->cursor_line;
	*col = p->cursor_col;
}

/* Returns the offset of the first byte of the line that contains `offset`. */
static size_t line_begin(struct parser *p, size_t offset)
{
	move_cursor(p, offset);
	return p->cursor_line_start;
}

/* Returns the offset just past the newline that ends the line that contains `offset`. */
static size_t line_finish(struct parser *p, size_t offset)
{
	if (offset < p->newline_from || offset > p->newline_at) {
		size_t i = offset;

		while (i < p->len && p->text[i] != '\n')
			i++;
		p->newline_from = offset;
		p->newline_at = i;
	}
	return p->newline_at < p->len ? p->newline_at + 1 : p->len;
}

static int fail(struct parser *p, size_t offset, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail(struct parser *p, size_t offset, const char *fmt, ...)
{
	char what[600];
	unsigned line, col;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	if (offset > p->len)
		offset = p->len;
	toml_line_col(p->text, offset, &line, &col);
	return sm_error_set(SM_EINVALID, "%s:%u:%u: %s", p->name, line, col, what);
}

static int fail_nomem(void)
{
	return sm_error_set(SM_ENOMEM, "out of memory");
}

/* Describes the character at `offset` for "found ..." in messages. */
static const char *describe_at(const struct parser *p, size_t offset, char out[32])
{
	unsigned char c;

	if (offset >= p->len)
		return "end of file";
	c = (unsigned char)p->text[offset];
	if (c == '\n' || c == '\r')
		return "a newline";
	if (c == ' ')
		return "a space";
	if (c == '\t')
		return "a tab";
	if (c > 0x20 && c < 0x7f) {
		snprintf(out, 32, "'%c'", c);
		return out;
	}
	if (c < 0x80) {
		snprintf(out, 32, "control character U+%04X", c);
		return out;
	}
	return "a non-ASCII character";
}

/* Formats the first `n` parts of `path` as TOML would write them. */
static const char *key_display(const struct key_path *path, size_t n, char out[KEY_DISPLAY_MAX + 4])
{
	sm_buf buf = SM_BUF_INIT(0);
	int rc = 0;

	for (size_t i = 0; i < n && !rc; i++) {
		if (i)
			rc = sm_buf_putc(&buf, '.');
		if (!rc)
			rc = toml_quote_key(&buf, path->parts[i].text, path->parts[i].len);
	}
	if (rc || !buf.data) {
		snprintf(out, KEY_DISPLAY_MAX + 4, "?");
	} else if (buf.len > KEY_DISPLAY_MAX) {
		memcpy(out, buf.data, KEY_DISPLAY_MAX);
		memcpy(out + KEY_DISPLAY_MAX, "...", 4);
	} else {
		memcpy(out, buf.data, buf.len + 1);
	}
	sm_buf_release(&buf);
	return out;
}

/* ---- tables and values --------------------------------------------- */

/* Returns the type name with its indefinite article, for messages. */
static const char *type_with_article(toml_type type)
{
	switch (type) {
	case TOML_TABLE: return "a table";
	case TOML_ARRAY: return "an array";
	case TOML_STRING: return "a string";
	case TOML_INTEGER: return "an integer";
	case TOML_FLOAT: return "a float";
	case TOML_BOOL: return "a boolean";
	case TOML_DATETIME: return "an offset date-time";
	case TOML_DATETIME_LOCAL: return "a local date-time";
	case TOML_DATE_LOCAL: return "a local date";
	case TOML_TIME_LOCAL: return "a local time";
	}
	return "a value";
}

const char *toml_type_name(toml_type type)
{
	switch (type) {
	case TOML_TABLE: return "table";
	case TOML_ARRAY: return "array";
	case TOML_STRING: return "string";
	case TOML_INTEGER: return "integer";
	case TOML_FLOAT: return "float";
	case TOML_BOOL: return "boolean";
	case TOML_DATETIME: return "offset date-time";
	case TOML_DATETIME_LOCAL: return "local date-time";
	case TOML_DATE_LOCAL: return "local date";
	case TOML_TIME_LOCAL: return "local time";
	}
	return "value";
}

static void array_free(toml_array *array);

static void value_release(toml_value *value)
{
	switch (value->type) {
	case TOML_TABLE:
		table_free(value->u.table);
		break;
	case TOML_ARRAY:
		array_free(value->u.array);
		break;
	case TOML_STRING:
	case TOML_DATETIME:
	case TOML_DATETIME_LOCAL:
	case TOML_DATE_LOCAL:
	case TOML_TIME_LOCAL:
		free(value->u.string.ptr);
		break;
	default:
		break;
	}
	value->type = TOML_BOOL; /* a type with nothing to free */
}

static void table_free(toml_table *table)
{
	if (!table)
		return;
	for (size_t i = 0; i < table->len; i++) {
		free(table->entries[i].key);
		value_release(&table->entries[i].value);
	}
	free(table->entries);
	free(table->index);
	free(table);
}

static void array_free(toml_array *array)
{
	if (!array)
		return;
	for (size_t i = 0; i < array->len; i++)
		value_release(&array->items[i]);
	free(array->items);
	free(array);
}

static uint32_t key_hash(const char *key, size_t len)
{
	uint32_t hash = 2166136261u; /* FNV-1a */

	for (size_t i = 0; i < len; i++) {
		hash ^= (unsigned char)key[i];
		hash *= 16777619u;
	}
	return hash;
}

static void index_insert(uint32_t *index, size_t cap, const toml_entry *entry, size_t position)
{
	size_t slot = key_hash(entry->key, entry->key_len) & (cap - 1);

	while (index[slot])
		slot = (slot + 1) & (cap - 1);
	index[slot] = (uint32_t)(position + 1);
}

static int index_rebuild(toml_table *table)
{
	size_t cap = 64;
	uint32_t *index;

	while (cap < table->len * 2)
		cap *= 2;
	index = calloc(cap, sizeof(*index));
	if (!index)
		return fail_nomem();
	for (size_t i = 0; i < table->len; i++)
		index_insert(index, cap, &table->entries[i], i);
	free(table->index);
	table->index = index;
	table->index_cap = cap;
	return 0;
}

toml_entry *toml_table_getn(const toml_table *table, const char *key, size_t key_len)
{
	if (!table)
		return NULL;
	if (!table->index) {
		for (size_t i = 0; i < table->len; i++) {
			toml_entry *entry = &table->entries[i];

			if (entry->key_len == key_len && memcmp(entry->key, key, key_len) == 0)
				return entry;
		}
		return NULL;
	}
	for (size_t slot = key_hash(key, key_len) & (table->index_cap - 1);
	     table->index[slot]; slot = (slot + 1) & (table->index_cap - 1)) {
		toml_entry *entry = &table->entries[table->index[slot] - 1];

		if (entry->key_len == key_len && memcmp(entry->key, key, key_len) == 0)
			return entry;
	}
	return NULL;
}

toml_entry *toml_table_get(const toml_table *table, const char *key)
{
	return toml_table_getn(table, key, strlen(key));
}

toml_table *toml_table_get_table(const toml_table *table, const char *key)
{
	toml_entry *entry = toml_table_get(table, key);

	return entry && entry->value.type == TOML_TABLE ? entry->value.u.table : NULL;
}

static toml_table *table_new(toml_origin origin, unsigned depth)
{
	toml_table *table = calloc(1, sizeof(*table));

	if (!table) {
		fail_nomem();
		return NULL;
	}
	table->origin = origin;
	table->depth = depth;
	return table;
}

/*
 * Adds `key` = `*value` to `table`, taking over the value (also on
 * failure). The caller has checked that the key is new.
 */
static int table_add(toml_table *table, const struct key_part *key, toml_value *value,
		     const toml_pos *pos, toml_entry **out)
{
	toml_entry *entry;
	char *copy;

	if (table->len == table->cap) {
		size_t cap = table->cap ? table->cap * 2 : 8;
		toml_entry *entries = realloc(table->entries, cap * sizeof(*entries));

		if (!entries)
			goto nomem;
		table->entries = entries;
		table->cap = cap;
	}
	copy = malloc(key->len + 1);
	if (!copy)
		goto nomem;
	memcpy(copy, key->text, key->len);
	copy[key->len] = '\0';

	entry = &table->entries[table->len++];
	entry->key = copy;
	entry->key_len = key->len;
	entry->value = *value;
	entry->pos = *pos;
	value->type = TOML_BOOL;

	if (table->index && table->len * 2 <= table->index_cap)
		index_insert(table->index, table->index_cap, entry, table->len - 1);
	else if (table->index || table->len >= INDEX_MIN_ENTRIES)
		if (index_rebuild(table))
			return SM_ENOMEM; /* the entry stays; the table frees it */
	if (out)
		*out = &table->entries[table->len - 1];
	return 0;
nomem:
	value_release(value);
	return fail_nomem();
}

/* Adds an empty table under `key`, returning it through `*out`. */
static int table_add_table(struct parser *p, toml_table *parent, const struct key_part *key,
			   toml_origin origin, const toml_pos *pos, toml_table **out)
{
	toml_value value;
	toml_table *child;
	int rc;

	if (parent->depth + 1 > TOML_MAX_DEPTH)
		return fail(p, key->offset, "tables nested deeper than %d levels", TOML_MAX_DEPTH);
	child = table_new(origin, parent->depth + 1);
	if (!child)
		return SM_ENOMEM;
	value.type = TOML_TABLE;
	value.u.table = child;
	rc = table_add(parent, key, &value, pos, NULL);
	if (rc)
		return rc;
	*out = child;
	return 0;
}

static int array_push(toml_array *array, toml_value *value)
{
	if (array->len == array->cap) {
		size_t cap = array->cap ? array->cap * 2 : 4;
		toml_value *items = realloc(array->items, cap * sizeof(*items));

		if (!items) {
			value_release(value);
			return fail_nomem();
		}
		array->items = items;
		array->cap = cap;
	}
	array->items[array->len++] = *value;
	value->type = TOML_BOOL;
	return 0;
}

/* Marks an inline table and everything inside it as unchangeable. */
static void freeze(toml_table *table)
{
	table->frozen = 1;
	for (size_t i = 0; i < table->len; i++) {
		toml_value *value = &table->entries[i].value;

		if (value->type == TOML_TABLE) {
			freeze(value->u.table);
		} else if (value->type == TOML_ARRAY) {
			toml_array *array = value->u.array;

			for (size_t j = 0; j < array->len; j++)
				if (array->items[j].type == TOML_TABLE)
					freeze(array->items[j].u.table);
		}
	}
}

/* ---- low-level scanning --------------------------------------------- */

static int is_ws(char c)
{
	return c == ' ' || c == '\t';
}

static int is_bare_char(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '_' || c == '-';
}

static int is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* A control character that no TOML string or comment may hold raw. */
static int is_forbidden_control(unsigned char c)
{
	return (c < 0x20 && c != '\t') || c == 0x7f;
}

static int peek(const struct parser *p, size_t ahead)
{
	return p->pos + ahead < p->len ? (unsigned char)p->text[p->pos + ahead] : -1;
}

static int newline_len(const struct parser *p, size_t offset)
{
	if (offset < p->len && p->text[offset] == '\n')
		return 1;
	if (offset + 1 < p->len && p->text[offset] == '\r' && p->text[offset + 1] == '\n')
		return 2;
	return 0;
}

static void skip_ws(struct parser *p)
{
	while (p->pos < p->len && is_ws(p->text[p->pos]))
		p->pos++;
}

/* Skips a comment from its '#' up to (not including) the newline. */
static int skip_comment(struct parser *p)
{
	p->pos++;
	while (p->pos < p->len && !newline_len(p, p->pos)) {
		unsigned char c = (unsigned char)p->text[p->pos];

		if (is_forbidden_control(c))
			return fail(p, p->pos, "control character U+%04X is not allowed in a comment", c);
		p->pos++;
	}
	return 0;
}

/* Skips whitespace, newlines and comments, as allowed inside arrays. */
static int skip_ws_newlines_comments(struct parser *p)
{
	for (;;) {
		int nl;

		skip_ws(p);
		if (p->pos >= p->len)
			return 0;
		if (p->text[p->pos] == '#') {
			int rc = skip_comment(p);

			if (rc)
				return rc;
			continue;
		}
		nl = newline_len(p, p->pos);
		if (!nl)
			return 0;
		p->pos += (size_t)nl;
	}
}

/* Consumes optional whitespace and a comment, then a newline or the end. */
static int expect_line_end(struct parser *p, const char *after)
{
	char found[32];
	int nl;

	skip_ws(p);
	if (p->pos < p->len && p->text[p->pos] == '#') {
		int rc = skip_comment(p);

		if (rc)
			return rc;
	}
	if (p->pos >= p->len)
		return 0;
	nl = newline_len(p, p->pos);
	if (!nl)
		return fail(p, p->pos, "expected a newline after %s, found %s", after,
			    describe_at(p, p->pos, found));
	p->pos += (size_t)nl;
	return 0;
}

/*
 * Checks that the whole document is UTF-8 without surrogates or overlong
 * forms, and that every carriage return starts a CRLF pair.
 */
static int check_encoding(struct parser *p)
{
	const unsigned char *s = (const unsigned char *)p->text;
	size_t i = 0;

	while (i < p->len) {
		unsigned char c = s[i];
		uint32_t cp, min;
		size_t n;

		if (c < 0x80) {
			if (c == '\r' && (i + 1 >= p->len || s[i + 1] != '\n'))
				return fail(p, i, "carriage return without a line feed after it");
			i++;
			continue;
		}
		if ((c & 0xe0) == 0xc0) {
			n = 2; cp = c & 0x1f; min = 0x80;
		} else if ((c & 0xf0) == 0xe0) {
			n = 3; cp = c & 0x0f; min = 0x800;
		} else if ((c & 0xf8) == 0xf0) {
			n = 4; cp = c & 0x07; min = 0x10000;
		} else {
			return fail(p, i, "invalid UTF-8 byte 0x%02X", c);
		}
		if (i + n > p->len)
			return fail(p, i, "truncated UTF-8 sequence at the end of the document");
		for (size_t k = 1; k < n; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return fail(p, i, "invalid UTF-8 sequence");
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		if (cp < min)
			return fail(p, i, "overlong UTF-8 sequence");
		if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return fail(p, i, "UTF-8 sequence encodes U+%04X, which is not a Unicode scalar value", cp);
		i += n;
	}
	return 0;
}

/* ---- strings ------------------------------------------------------- */

static int put_utf8(sm_buf *buf, uint32_t cp)
{
	char out[4];
	size_t n;

	if (cp < 0x80) {
		out[0] = (char)cp;
		n = 1;
	} else if (cp < 0x800) {
		out[0] = (char)(0xc0 | (cp >> 6));
		out[1] = (char)(0x80 | (cp & 0x3f));
		n = 2;
	} else if (cp < 0x10000) {
		out[0] = (char)(0xe0 | (cp >> 12));
		out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		out[2] = (char)(0x80 | (cp & 0x3f));
		n = 3;
	} else {
		out[0] = (char)(0xf0 | (cp >> 18));
		out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
		out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
		out[3] = (char)(0x80 | (cp & 0x3f));
		n = 4;
	}
	return sm_buf_put(buf, out, n);
}

static int hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Decodes the escape sequence at p->pos (the backslash). */
static int parse_escape(struct parser *p, sm_buf *buf)
{
	size_t start = p->pos;
	int c = peek(p, 1);
	uint32_t cp = 0;
	size_t digits;
	char found[32];

	switch (c) {
	case 'b': p->pos += 2; return sm_buf_putc(buf, '\b');
	case 't': p->pos += 2; return sm_buf_putc(buf, '\t');
	case 'n': p->pos += 2; return sm_buf_putc(buf, '\n');
	case 'f': p->pos += 2; return sm_buf_putc(buf, '\f');
	case 'r': p->pos += 2; return sm_buf_putc(buf, '\r');
	case '"': p->pos += 2; return sm_buf_putc(buf, '"');
	case '\\': p->pos += 2; return sm_buf_putc(buf, '\\');
	case 'u': digits = 4; break;
	case 'U': digits = 8; break;
	default:
		if (c > 0x20 && c < 0x7f)
			return fail(p, start, "invalid escape sequence '\\%c'", c);
		return fail(p, start, "invalid escape sequence: backslash followed by %s",
			    describe_at(p, start + 1, found));
	}
	for (size_t i = 0; i < digits; i++) {
		int v = p->pos + 2 + i < p->len ? hex_value(p->text[p->pos + 2 + i]) : -1;

		if (v < 0)
			return fail(p, start, "escape '\\%c' needs exactly %zu hexadecimal digits",
				    c, digits);
		cp = (cp << 4) | (uint32_t)v;
	}
	if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return fail(p, start, "escape '\\%c%.*s' is not a Unicode scalar value", c,
			    (int)digits, p->text + p->pos + 2);
	p->pos += 2 + digits;
	return put_utf8(buf, cp);
}

static int string_char_error(struct parser *p, unsigned char c)
{
	if (c == '\n' || c == '\r')
		return fail(p, p->pos, "newline in a single-line string; close the string or use a multi-line string");
	return fail(p, p->pos, "control character U+%04X is not allowed in a string; write it as an escape", c);
}

/* "..." with escapes, one line. */
static int parse_basic_string(struct parser *p, sm_buf *buf)
{
	size_t start = p->pos;

	p->pos++;
	for (;;) {
		unsigned char c;
		int rc;

		if (p->pos >= p->len)
			return fail(p, start, "string is missing its closing '\"'");
		c = (unsigned char)p->text[p->pos];
		if (c == '"') {
			p->pos++;
			return 0;
		}
		if (c == '\\') {
			rc = parse_escape(p, buf);
		} else if (is_forbidden_control(c)) {
			return string_char_error(p, c);
		} else {
			rc = sm_buf_putc(buf, (char)c);
			p->pos++;
		}
		if (rc)
			return rc;
	}
}

/* '...' taken as written, one line. */
static int parse_literal_string(struct parser *p, sm_buf *buf)
{
	size_t start = p->pos;

	p->pos++;
	for (;;) {
		unsigned char c;
		int rc;

		if (p->pos >= p->len)
			return fail(p, start, "string is missing its closing \"'\"");
		c = (unsigned char)p->text[p->pos];
		if (c == '\'') {
			p->pos++;
			return 0;
		}
		if (is_forbidden_control(c))
			return string_char_error(p, c);
		rc = sm_buf_putc(buf, (char)c);
		if (rc)
			return rc;
		p->pos++;
	}
}

/*
 * Handles a run of `quote` characters inside a multi-line string. Three
 * to five end the string, the extra one or two belonging to its content.
 * Returns 1 when the string ended, 0 when the quotes were content.
 */
static int multiline_quotes(struct parser *p, sm_buf *buf, char quote, int *ended)
{
	size_t run = 0;

	while (p->pos + run < p->len && p->text[p->pos + run] == quote)
		run++;
	*ended = run >= 3;
	if (run > 5)
		return fail(p, p->pos, "too many quotes at the end of a multi-line string");
	if (*ended)
		run -= 3;
	for (size_t i = 0; i < run; i++) {
		int rc = sm_buf_putc(buf, quote);

		if (rc)
			return rc;
	}
	p->pos += *ended ? run + 3 : run;
	return 0;
}

/*
 * Handles a backslash at the end of a line in a multi-line basic string:
 * it removes the newline and all whitespace and newlines after it.
 */
static int line_ending_backslash(struct parser *p)
{
	size_t i = p->pos + 1;

	while (i < p->len && is_ws(p->text[i]))
		i++;
	if (!newline_len(p, i))
		return fail(p, p->pos, "invalid escape sequence: backslash followed by whitespace; only a line-ending backslash may be");
	for (;;) {
		int nl = newline_len(p, i);

		if (nl)
			i += (size_t)nl;
		else if (i < p->len && is_ws(p->text[i]))
			i++;
		else
			break;
	}
	p->pos = i;
	return 0;
}

/* """...""" or '''...''' starting at p->pos. */
static int parse_multiline_string(struct parser *p, sm_buf *buf, int literal)
{
	char quote = literal ? '\'' : '"';
	size_t start = p->pos;

	p->pos += 3;
	p->pos += (size_t)newline_len(p, p->pos); /* a newline right after the opening is dropped */
	for (;;) {
		unsigned char c;
		int nl, rc, ended;

		if (p->pos >= p->len)
			return fail(p, start, "multi-line string is missing its closing %c%c%c",
				    quote, quote, quote);
		c = (unsigned char)p->text[p->pos];
		nl = newline_len(p, p->pos);
		if (c == (unsigned char)quote) {
			rc = multiline_quotes(p, buf, quote, &ended);
			if (rc || ended)
				return rc;
			continue;
		}
		if (nl) {
			rc = sm_buf_putc(buf, '\n');
			p->pos += (size_t)nl;
		} else if (c == '\\' && !literal) {
			int next = peek(p, 1);

			if (next == ' ' || next == '\t' || next == '\n' || next == '\r')
				rc = line_ending_backslash(p);
			else
				rc = parse_escape(p, buf);
		} else if (is_forbidden_control(c)) {
			return fail(p, p->pos, "control character U+%04X is not allowed in a string; write it as an escape", c);
		} else {
			rc = sm_buf_putc(buf, (char)c);
			p->pos++;
		}
		if (rc)
			return rc;
	}
}

static int starts_with(const struct parser *p, const char *prefix)
{
	size_t n = strlen(prefix);

	return p->len - p->pos >= n && memcmp(p->text + p->pos, prefix, n) == 0;
}

/* Parses any kind of string into a new value. */
static int parse_string_value(struct parser *p, toml_value *out)
{
	sm_buf buf = SM_BUF_INIT(0);
	int rc;

	if (starts_with(p, "\"\"\""))
		rc = parse_multiline_string(p, &buf, 0);
	else if (starts_with(p, "'''"))
		rc = parse_multiline_string(p, &buf, 1);
	else if (p->text[p->pos] == '"')
		rc = parse_basic_string(p, &buf);
	else
		rc = parse_literal_string(p, &buf);
	if (rc)
		goto done;
	out->type = TOML_STRING;
	out->u.string.len = buf.len;
	out->u.string.ptr = sm_buf_take(&buf);
	if (!out->u.string.ptr)
		rc = SM_ENOMEM;
done:
	sm_buf_release(&buf);
	return rc;
}

/* ---- keys ---------------------------------------------------------- */

static void key_path_clear(struct key_path *path)
{
	for (size_t i = 0; i < path->len; i++)
		free(path->parts[i].text);
	path->len = 0;
}

static void key_path_release(struct key_path *path)
{
	key_path_clear(path);
	free(path->parts);
	path->parts = NULL;
	path->cap = 0;
}

/* Parses a possibly dotted key, with whitespace around its dots. */
static int parse_key(struct parser *p, struct key_path *path)
{
	key_path_clear(path);
	for (;;) {
		sm_buf buf = SM_BUF_INIT(0);
		struct key_part *part;
		size_t start;
		char found[32];
		int rc = 0;

		skip_ws(p);
		start = p->pos;
		if (starts_with(p, "\"\"\"") || starts_with(p, "'''"))
			return fail(p, start, "a multi-line string cannot be a key");
		if (peek(p, 0) == '"') {
			rc = parse_basic_string(p, &buf);
		} else if (peek(p, 0) == '\'') {
			rc = parse_literal_string(p, &buf);
		} else if (p->pos < p->len && is_bare_char(p->text[p->pos])) {
			while (p->pos < p->len && is_bare_char(p->text[p->pos]))
				p->pos++;
			rc = sm_buf_put(&buf, p->text + start, p->pos - start);
		} else {
			return fail(p, start, "expected a key, found %s", describe_at(p, start, found));
		}
		if (!rc && path->len >= TOML_MAX_DEPTH)
			rc = fail(p, start, "key has more than %d dotted parts", TOML_MAX_DEPTH);
		if (!rc && path->len == path->cap) {
			size_t cap = path->cap ? path->cap * 2 : 4;
			struct key_part *parts = realloc(path->parts, cap * sizeof(*parts));

			if (!parts) {
				rc = fail_nomem();
			} else {
				path->parts = parts;
				path->cap = cap;
			}
		}
		if (rc) {
			sm_buf_release(&buf);
			return rc;
		}
		part = &path->parts[path->len];
		part->len = buf.len;
		part->offset = start;
		part->text = sm_buf_take(&buf);
		if (!part->text)
			return SM_ENOMEM;
		path->len++;

		skip_ws(p);
		if (peek(p, 0) != '.')
			return 0;
		p->pos++;
	}
}

/* ---- numbers, booleans and date-times ------------------------------ */

/* Characters that may follow a number, boolean or date-time. */
static int ends_scalar(const struct parser *p, size_t offset)
{
	char c;

	if (offset >= p->len)
		return 1;
	c = p->text[offset];
	return is_ws(c) || c == '\n' || c == '\r' || c == ',' || c == ']' || c == '}' || c == '#';
}

static int fail_invalid_value(struct parser *p, size_t start, const char *why)
{
	size_t end = start;

	while (end < p->len && end - start < 40 && !ends_scalar(p, end) &&
	       !is_forbidden_control((unsigned char)p->text[end]))
		end++;
	if (end == start)
		end = start + (start < p->len);
	return fail(p, start, "invalid value '%.*s'%s%s", (int)(end - start), p->text + start,
		    why ? ": " : "", why ? why : "");
}

static int digit_in_base(char c, int base)
{
	int v = hex_value(c);

	return v >= 0 && v < base && (base == 16 || (c >= '0' && c <= '9'));
}

/*
 * Scans digits of `base` with single underscores between them, from
 * s[*i]. Returns the number of digits, or -1 on a misplaced underscore.
 */
static long scan_digits(const char *s, size_t n, size_t *i, int base)
{
	long count = 0;

	while (*i < n) {
		if (digit_in_base(s[*i], base)) {
			count++;
			(*i)++;
		} else if (s[*i] == '_') {
			if (!count || *i + 1 >= n || !digit_in_base(s[*i + 1], base))
				return -1;
			(*i)++;
		} else {
			break;
		}
	}
	return count;
}

static int parse_prefixed_integer(struct parser *p, size_t start, size_t n, toml_value *out)
{
	const char *s = p->text + start;
	int base = 2;
	uint64_t value = 0;
	size_t i = 2;
	long digits;

	if (s[1] == 'x')
		base = 16;
	else if (s[1] == 'o')
		base = 8;
	digits = scan_digits(s, n, &i, base);

	if (digits <= 0 || i != n)
		return fail_invalid_value(p, start, digits < 0 ? "an underscore must sit between two digits"
					  : "not a valid integer");
	for (size_t k = 2; k < n; k++) {
		if (s[k] == '_')
			continue;
		if (value > (UINT64_C(0x7fffffffffffffff) - (uint64_t)hex_value(s[k])) / (uint64_t)base)
			return fail_invalid_value(p, start, "integer does not fit in 64 bits");
		value = value * (uint64_t)base + (uint64_t)hex_value(s[k]);
	}
	out->type = TOML_INTEGER;
	out->u.integer = (int64_t)value;
	return 0;
}

/* Copies s[0..n) without underscores into a new string. */
static char *strip_underscores(const char *s, size_t n)
{
	char *copy = malloc(n + 1);
	size_t k = 0;

	if (!copy) {
		fail_nomem();
		return NULL;
	}
	for (size_t i = 0; i < n; i++)
		if (s[i] != '_')
			copy[k++] = s[i];
	copy[k] = '\0';
	return copy;
}

static int parse_number(struct parser *p, toml_value *out)
{
	const char *s = p->text + p->pos;
	size_t start = p->pos, n = 0, i = 0, int_start;
	int is_float = 0, rc = 0;
	long digits;
	char *clean, *end;

	while (start + n < p->len && (is_bare_char(s[n]) || s[n] == '.' || s[n] == '+'))
		n++;
	if (s[0] == '+' || s[0] == '-')
		i = 1;
	if (n - i == 3 && (memcmp(s + i, "inf", 3) == 0 || memcmp(s + i, "nan", 3) == 0)) {
		out->type = TOML_FLOAT;
		out->u.floating = s[i] == 'i' ? INFINITY : NAN;
		if (s[0] == '-')
			out->u.floating = -out->u.floating;
		p->pos += n;
		return 0;
	}
	if (i == 0 && n > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'o' || s[1] == 'b')) {
		rc = parse_prefixed_integer(p, start, n, out);
		if (!rc)
			p->pos += n;
		return rc;
	}

	int_start = i;
	digits = scan_digits(s, n, &i, 10);
	if (digits <= 0)
		return fail_invalid_value(p, start, digits < 0 ? "an underscore must sit between two digits" : NULL);
	if (s[int_start] == '0' && i - int_start > 1)
		return fail_invalid_value(p, start, "leading zeros are not allowed");
	if (i < n && s[i] == '.') {
		i++;
		is_float = 1;
		if (scan_digits(s, n, &i, 10) <= 0)
			return fail_invalid_value(p, start, "a decimal point must have digits on both sides");
	}
	if (i < n && (s[i] == 'e' || s[i] == 'E')) {
		i++;
		is_float = 1;
		if (i < n && (s[i] == '+' || s[i] == '-'))
			i++;
		if (scan_digits(s, n, &i, 10) <= 0)
			return fail_invalid_value(p, start, "an exponent needs digits");
	}
	if (i != n)
		return fail_invalid_value(p, start, NULL);

	clean = strip_underscores(s, n);
	if (!clean)
		return SM_ENOMEM;
	errno = 0;
	if (is_float) {
		/* like an IEEE 754 conversion, values beyond the range become infinity */
		out->type = TOML_FLOAT;
		out->u.floating = strtod(clean, &end);
	} else {
		out->type = TOML_INTEGER;
		out->u.integer = strtoll(clean, &end, 10);
		if (errno == ERANGE)
			rc = fail_invalid_value(p, start, "integer does not fit in 64 bits");
	}
	if (!rc && *end != '\0')
		rc = fail_invalid_value(p, start, NULL);
	free(clean);
	if (!rc)
		p->pos += n;
	return rc;
}

/* Reads `n` decimal digits at s[0..n), or returns -1. */
static int fixed_digits(const char *s, size_t avail, size_t n)
{
	int value = 0;

	if (avail < n)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (!is_digit(s[i]))
			return -1;
		value = value * 10 + (s[i] - '0');
	}
	return value;
}

static int days_in_month(int year, int month)
{
	static const int days[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	int leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);

	return month == 2 && leap ? 29 : days[month - 1];
}

/* Parses HH:MM:SS[.fraction] at s; returns its length or -1 with `why` set. */
static long parse_time(const char *s, size_t avail, const char **why)
{
	int hour = fixed_digits(s, avail, 2), minute, second;
	size_t i = 8;

	if (hour < 0 || avail < 3 || s[2] != ':' || (minute = fixed_digits(s + 3, avail - 3, 2)) < 0) {
		*why = "a time is written HH:MM:SS";
		return -1;
	}
	if (avail < 6 || s[5] != ':' || (second = fixed_digits(s + 6, avail - 6, 2)) < 0) {
		*why = "TOML 1.0 requires seconds in a time (HH:MM:SS)";
		return -1;
	}
	if (hour > 23 || minute > 59 || second > 60) {
		*why = "hour, minute or second out of range";
		return -1;
	}
	if (i < avail && s[i] == '.') {
		i++;
		if (i >= avail || !is_digit(s[i])) {
			*why = "a decimal point in seconds must be followed by digits";
			return -1;
		}
		while (i < avail && is_digit(s[i]))
			i++;
	}
	return (long)i;
}

/* Parses a date, date-time or time starting at p->pos. */
static int parse_datetime(struct parser *p, toml_value *out)
{
	const char *s = p->text + p->pos, *why = NULL;
	size_t avail = p->len - p->pos, i = 0;
	int has_date = 0, has_time = 0, has_offset = 0;
	long time_len;

	if (avail >= 5 && s[4] == '-') {
		int year = fixed_digits(s, avail, 4), month = -1, day = -1;

		if (avail >= 10 && s[7] == '-') {
			month = fixed_digits(s + 5, avail - 5, 2);
			day = fixed_digits(s + 8, avail - 8, 2);
		}
		if (year < 0 || month < 0 || day < 0)
			return fail_invalid_value(p, p->pos, "a date is written YYYY-MM-DD");
		if (month < 1 || month > 12 || day < 1 || day > days_in_month(year, month))
			return fail_invalid_value(p, p->pos, "no such date");
		has_date = 1;
		i = 10;
		if (i < avail && (s[i] == 'T' || s[i] == 't')) {
			i++;
			has_time = 1;
		} else if (i + 3 < avail && s[i] == ' ' && is_digit(s[i + 1]) && is_digit(s[i + 2]) &&
			   s[i + 3] == ':') {
			i++;
			has_time = 1;
		}
	} else {
		has_time = 1;
	}

	if (has_time) {
		time_len = parse_time(s + i, avail - i, &why);
		if (time_len < 0)
			return fail_invalid_value(p, p->pos, why);
		i += (size_t)time_len;
	}
	if (has_date && has_time && i < avail) {
		if (s[i] == 'Z' || s[i] == 'z') {
			i++;
			has_offset = 1;
		} else if (s[i] == '+' || s[i] == '-') {
			int hours = fixed_digits(s + i + 1, avail - i - 1, 2), minutes = -1;

			if (hours >= 0 && i + 3 < avail && s[i + 3] == ':')
				minutes = fixed_digits(s + i + 4, avail - i - 4, 2);
			if (hours < 0 || minutes < 0)
				return fail_invalid_value(p, p->pos, "a time offset is written +HH:MM or -HH:MM");
			if (hours > 23 || minutes > 59)
				return fail_invalid_value(p, p->pos, "time offset out of range");
			i += 6;
			has_offset = 1;
		}
	}
	if (!ends_scalar(p, p->pos + i))
		return fail_invalid_value(p, p->pos, NULL);

	if (has_date && has_time)
		out->type = has_offset ? TOML_DATETIME : TOML_DATETIME_LOCAL;
	else
		out->type = has_date ? TOML_DATE_LOCAL : TOML_TIME_LOCAL;
	out->u.string.ptr = sm_strndup(s, i);
	out->u.string.len = i;
	if (!out->u.string.ptr)
		return SM_ENOMEM;
	p->pos += i;
	return 0;
}

static int looks_like_datetime(const struct parser *p)
{
	const char *s = p->text + p->pos;
	size_t avail = p->len - p->pos;

	if (avail >= 5 && is_digit(s[0]) && is_digit(s[1]) && is_digit(s[2]) && is_digit(s[3]) &&
	    s[4] == '-')
		return 1;
	return avail >= 3 && is_digit(s[0]) && is_digit(s[1]) && s[2] == ':';
}

/* ---- arrays and inline tables -------------------------------------- */

static int parse_array(struct parser *p, toml_value *out, unsigned depth)
{
	size_t start = p->pos;
	toml_array *array;
	char found[32];
	int rc;

	if (depth > TOML_MAX_DEPTH)
		return fail(p, start, "values nested deeper than %d levels", TOML_MAX_DEPTH);
	array = calloc(1, sizeof(*array));
	if (!array)
		return fail_nomem();
	array->depth = depth;
	out->type = TOML_ARRAY;
	out->u.array = array;
	p->pos++;
	for (;;) {
		toml_value item;

		rc = skip_ws_newlines_comments(p);
		if (rc)
			goto fail;
		if (p->pos >= p->len) {
			rc = fail(p, start, "array is missing its closing ']'");
			goto fail;
		}
		if (p->text[p->pos] == ']')
			break;
		rc = parse_value(p, &item, depth + 1);
		if (rc)
			goto fail;
		rc = array_push(array, &item);
		if (rc)
			goto fail;
		rc = skip_ws_newlines_comments(p);
		if (rc)
			goto fail;
		if (p->pos < p->len && p->text[p->pos] == ',') {
			p->pos++;
			continue;
		}
		if (p->pos < p->len && p->text[p->pos] == ']')
			break;
		if (p->pos >= p->len)
			rc = fail(p, start, "array is missing its closing ']'");
		else
			rc = fail(p, p->pos, "expected ',' or ']' in an array, found %s",
				  describe_at(p, p->pos, found));
		goto fail;
	}
	p->pos++;
	return 0;
fail:
	value_release(out);
	return rc;
}

static int parse_keyval(struct parser *p, toml_table *table);

static int parse_inline_table(struct parser *p, toml_value *out, unsigned depth)
{
	size_t start = p->pos;
	toml_table *table;
	char found[32];
	int rc;

	if (depth > TOML_MAX_DEPTH)
		return fail(p, start, "values nested deeper than %d levels", TOML_MAX_DEPTH);
	table = table_new(TOML_ORIGIN_INLINE, depth);
	if (!table)
		return SM_ENOMEM;
	out->type = TOML_TABLE;
	out->u.table = table;
	p->pos++;
	skip_ws(p);
	if (peek(p, 0) == '}') {
		p->pos++;
		freeze(table);
		return 0;
	}
	for (;;) {
		skip_ws(p);
		if (newline_len(p, p->pos)) {
			rc = fail(p, p->pos, "newline in an inline table; TOML 1.0 requires an inline table on one line");
			goto fail;
		}
		rc = parse_keyval(p, table);
		if (rc)
			goto fail;
		skip_ws(p);
		if (peek(p, 0) == ',') {
			p->pos++;
			skip_ws(p);
			if (peek(p, 0) == '}') {
				rc = fail(p, p->pos, "trailing comma in an inline table");
				goto fail;
			}
			continue;
		}
		if (peek(p, 0) == '}')
			break;
		if (p->pos >= p->len)
			rc = fail(p, start, "inline table is missing its closing '}'");
		else if (newline_len(p, p->pos))
			rc = fail(p, p->pos, "newline in an inline table; TOML 1.0 requires an inline table on one line");
		else
			rc = fail(p, p->pos, "expected ',' or '}' in an inline table, found %s",
				  describe_at(p, p->pos, found));
		goto fail;
	}
	p->pos++;
	freeze(table);
	return 0;
fail:
	value_release(out);
	return rc;
}

static int parse_value(struct parser *p, toml_value *out, unsigned depth)
{
	size_t start = p->pos;
	char found[32];
	int c = peek(p, 0), rc;

	out->type = TOML_BOOL;
	if (c == '"' || c == '\'')
		return parse_string_value(p, out);
	if (c == '[')
		return parse_array(p, out, depth);
	if (c == '{')
		return parse_inline_table(p, out, depth);
	if (c == 't' || c == 'f') {
		int value = c == 't';
		const char *word = value ? "true" : "false";

		if (!starts_with(p, word) || !ends_scalar(p, start + strlen(word)))
			return fail_invalid_value(p, start, NULL);
		out->u.boolean = value;
		p->pos += strlen(word);
		return 0;
	}
	if (c >= 0 && is_digit((char)c) && looks_like_datetime(p))
		return parse_datetime(p, out);
	if ((c >= 0 && is_digit((char)c)) || c == '+' || c == '-' || c == 'i' || c == 'n') {
		rc = parse_number(p, out);
		if (!rc && !ends_scalar(p, p->pos))
			rc = fail_invalid_value(p, start, NULL);
		return rc;
	}
	if (c < 0x21 || c >= 0x7f || strchr(",]}=#", c))
		return fail(p, start, "expected a value, found %s", describe_at(p, start, found));
	return fail_invalid_value(p, start, NULL);
}

/* ---- key/values and headers ---------------------------------------- */

/*
 * Walks the first parts of a dotted key down from `table`, creating the
 * tables that do not exist yet. Returns the table that receives the last
 * part, and in `*created` the index of the first part that was created.
 */
static int walk_dotted_key(struct parser *p, toml_table *table, const struct key_path *path,
			   const toml_pos *pos, toml_table **out, size_t *created)
{
	char shown[KEY_DISPLAY_MAX + 4];

	*created = path->len;
	for (size_t i = 0; i + 1 < path->len; i++) {
		const struct key_part *part = &path->parts[i];
		toml_entry *entry = toml_table_getn(table, part->text, part->len);
		toml_table *child = NULL;
		int rc;

		if (!entry) {
			toml_pos here = *pos;

			position_of(p, part->offset, &here.line, &here.col);
			rc = table_add_table(p, table, part, TOML_ORIGIN_DOTTED, &here, &child);
			if (rc)
				return rc;
			if (*created == path->len)
				*created = i;
			table = child;
			continue;
		}
		if (entry->value.type != TOML_TABLE)
			return fail(p, part->offset, "cannot use dotted key '%s': '%s' is already %s",
				    key_display(path, path->len, shown),
				    entry->key, type_with_article(entry->value.type));
		child = entry->value.u.table;
		if (child->frozen)
			return fail(p, part->offset, "cannot add keys to inline table '%s' after it was closed",
				    key_display(path, i + 1, shown));
		if (child->origin == TOML_ORIGIN_HEADER)
			return fail(p, part->offset, "cannot add keys to table '%s' with a dotted key because a [header] defined it",
				    key_display(path, i + 1, shown));
		/*
		 * A table that a deeper header only implied may take dotted
		 * keys, as Python 3.11's tomllib also accepts. From then on it
		 * counts as defined by dotted keys, so no later [header] may
		 * define it.
		 */
		child->origin = TOML_ORIGIN_DOTTED;
		table = child;
	}
	*out = table;
	return 0;
}

/* Parses key = value and adds it to `table` (the current section or an inline table). */
static int parse_keyval(struct parser *p, toml_table *table)
{
	struct key_path path = { 0 };
	const struct key_part *last;
	toml_table *target = NULL;
	toml_value value = { .type = TOML_BOOL };
	toml_pos pos = { 0 };
	char shown[KEY_DISPLAY_MAX + 4], found[32];
	size_t created;
	int rc;

	pos.line_start = line_begin(p, p->pos);
	rc = parse_key(p, &path);
	if (rc)
		goto done;
	if (peek(p, 0) != '=') {
		rc = fail(p, p->pos, "expected '=' after key '%s', found %s",
			  key_display(&path, path.len, shown), describe_at(p, p->pos, found));
		goto done;
	}
	p->pos++;
	skip_ws(p);

	rc = walk_dotted_key(p, table, &path, &pos, &target, &created);
	if (rc)
		goto done;
	last = &path.parts[path.len - 1];
	if (toml_table_getn(target, last->text, last->len)) {
		rc = fail(p, last->offset, "duplicate key '%s'", key_display(&path, path.len, shown));
		goto done;
	}

	position_of(p, last->offset, &pos.line, &pos.col);
	pos.value_start = p->pos;
	rc = parse_value(p, &value, target->depth + 1);
	if (rc)
		goto done;
	pos.value_end = p->pos;
	pos.line_end = line_finish(p, p->pos);
	rc = table_add(target, last, &value, &pos, NULL);
	if (rc)
		goto done;

	/* give the tables this key created the bounds of the whole key/value */
	for (size_t i = 0; i + 1 < path.len; i++) {
		toml_entry *entry = toml_table_getn(table, path.parts[i].text, path.parts[i].len);

		if (i >= created) {
			entry->pos.value_start = pos.value_start;
			entry->pos.value_end = pos.value_end;
			entry->pos.line_end = pos.line_end;
		}
		table = entry->value.u.table;
	}
done:
	value_release(&value);
	key_path_release(&path);
	return rc;
}

/* Appends a record of one header line to the document. */
static int record_header(toml_doc *doc, const struct key_path *path, int is_array,
			 toml_table *table, size_t start, size_t end, unsigned line)
{
	toml_header *header, *headers;
	size_t n = doc->nheaders;

	if (n == 0 || (n >= 4 && (n & (n - 1)) == 0)) { /* capacity 4, 8, 16, ... */
		headers = realloc(doc->headers, (n ? n * 2 : 4) * sizeof(*headers));
		if (!headers)
			return fail_nomem();
		doc->headers = headers;
	}
	header = &doc->headers[n];
	memset(header, 0, sizeof(*header));
	header->keys = calloc(path->len, sizeof(*header->keys));
	header->key_lens = calloc(path->len, sizeof(*header->key_lens));
	if (!header->keys || !header->key_lens)
		goto nomem;
	doc->nheaders++;
	for (size_t i = 0; i < path->len; i++) {
		header->keys[i] = malloc(path->parts[i].len + 1);
		if (!header->keys[i])
			return fail_nomem(); /* toml_doc_free() releases the partial record */
		memcpy(header->keys[i], path->parts[i].text, path->parts[i].len + 1);
		header->key_lens[i] = path->parts[i].len;
		header->nkeys = i + 1;
	}
	header->is_array = is_array;
	header->table = table;
	header->start = start;
	header->end = end;
	header->line = line;
	return 0;
nomem:
	free(header->keys);
	free(header->key_lens);
	return fail_nomem();
}

/* Walks the parts of a header before the last, creating implied tables. */
static int walk_header(struct parser *p, const struct key_path *path, const toml_pos *pos,
		       toml_table **out)
{
	toml_table *table = p->doc->root;
	char shown[KEY_DISPLAY_MAX + 4];

	for (size_t i = 0; i + 1 < path->len; i++) {
		const struct key_part *part = &path->parts[i];
		toml_entry *entry = toml_table_getn(table, part->text, part->len);
		int rc;

		if (!entry) {
			toml_pos here = *pos;

			position_of(p, part->offset, &here.line, &here.col);
			rc = table_add_table(p, table, part, TOML_ORIGIN_IMPLICIT, &here, &table);
			if (rc)
				return rc;
		} else if (entry->value.type == TOML_TABLE) {
			if (entry->value.u.table->frozen)
				return fail(p, part->offset, "cannot add a table to inline table '%s'",
					    key_display(path, i + 1, shown));
			table = entry->value.u.table;
		} else if (entry->value.type == TOML_ARRAY && entry->value.u.array->of_tables) {
			toml_array *array = entry->value.u.array;

			table = array->items[array->len - 1].u.table;
		} else if (entry->value.type == TOML_ARRAY) {
			return fail(p, part->offset, "cannot add a table to array '%s', which was defined as a value",
				    key_display(path, i + 1, shown));
		} else {
			return fail(p, part->offset, "cannot add a table to '%s', which is already %s",
				    key_display(path, i + 1, shown), type_with_article(entry->value.type));
		}
	}
	*out = table;
	return 0;
}

/* Defines the table that a [header] names, in `parent`. */
static int define_table(struct parser *p, toml_table *parent, const struct key_path *path,
			const toml_pos *pos, toml_table **out)
{
	const struct key_part *last = &path->parts[path->len - 1];
	toml_entry *entry = toml_table_getn(parent, last->text, last->len);
	char shown[KEY_DISPLAY_MAX + 4];
	toml_table *table;

	if (!entry)
		return table_add_table(p, parent, last, TOML_ORIGIN_HEADER, pos, out);
	key_display(path, path->len, shown);
	if (entry->value.type != TOML_TABLE) {
		if (entry->value.type == TOML_ARRAY && entry->value.u.array->of_tables)
			return fail(p, last->offset, "'%s' is an array of tables; write [[%s]] to add an element",
				    shown, shown);
		return fail(p, last->offset, "cannot define table '%s': the key is already %s",
			    shown, type_with_article(entry->value.type));
	}
	table = entry->value.u.table;
	if (table->frozen)
		return fail(p, last->offset, "table '%s' is already defined as an inline table", shown);
	if (table->origin == TOML_ORIGIN_DOTTED)
		return fail(p, last->offset, "table '%s' is already defined by dotted keys", shown);
	if (table->origin != TOML_ORIGIN_IMPLICIT)
		return fail(p, last->offset, "table '%s' is already defined", shown);
	table->origin = TOML_ORIGIN_HEADER;
	entry->pos = *pos;
	*out = table;
	return 0;
}

/* Adds a new element to the array of tables that a [[header]] names. */
static int append_table(struct parser *p, toml_table *parent, const struct key_path *path,
			const toml_pos *pos, toml_table **out)
{
	const struct key_part *last = &path->parts[path->len - 1];
	toml_entry *entry = toml_table_getn(parent, last->text, last->len);
	char shown[KEY_DISPLAY_MAX + 4];
	toml_value item;
	toml_array *array;
	int rc;

	if (!entry) {
		toml_value value;

		if (parent->depth + 2 > TOML_MAX_DEPTH)
			return fail(p, last->offset, "tables nested deeper than %d levels", TOML_MAX_DEPTH);
		array = calloc(1, sizeof(*array));
		if (!array)
			return fail_nomem();
		array->of_tables = 1;
		array->depth = parent->depth + 1;
		value.type = TOML_ARRAY;
		value.u.array = array;
		rc = table_add(parent, last, &value, pos, NULL);
		if (rc)
			return rc;
	} else if (entry->value.type == TOML_ARRAY && entry->value.u.array->of_tables) {
		array = entry->value.u.array;
	} else {
		key_display(path, path->len, shown);
		if (entry->value.type == TOML_ARRAY)
			return fail(p, last->offset, "cannot add tables to array '%s', which was defined as a value",
				    shown);
		return fail(p, last->offset, "cannot define array of tables '%s': the key is already %s",
			    shown, type_with_article(entry->value.type));
	}
	item.type = TOML_TABLE;
	item.u.table = table_new(TOML_ORIGIN_HEADER, array->depth + 1);
	if (!item.u.table)
		return SM_ENOMEM;
	rc = array_push(array, &item);
	if (rc)
		return rc;
	*out = array->items[array->len - 1].u.table;
	return 0;
}

static int parse_header(struct parser *p)
{
	struct key_path path = { 0 };
	toml_table *parent = NULL, *table = NULL;
	toml_pos pos = { 0 };
	char found[32];
	unsigned header_line, column;
	int is_array = peek(p, 1) == '[', rc;

	pos.line_start = line_begin(p, p->pos);
	pos.value_start = p->pos;
	p->pos += is_array ? 2 : 1;
	rc = parse_key(p, &path);
	if (rc)
		goto done;
	if (is_array ? !starts_with(p, "]]") : peek(p, 0) != ']') {
		rc = fail(p, p->pos, "expected '%s' to close the table header, found %s",
			  is_array ? "]]" : "]", describe_at(p, p->pos, found));
		goto done;
	}
	p->pos += is_array ? 2 : 1;
	pos.value_end = p->pos;
	rc = expect_line_end(p, "a table header");
	if (rc)
		goto done;
	pos.line_end = p->pos;

	/* positions are asked for in document order: '[', then each key part */
	position_of(p, pos.value_start, &header_line, &column);
	rc = walk_header(p, &path, &pos, &parent);
	if (rc)
		goto done;
	position_of(p, path.parts[path.len - 1].offset, &pos.line, &pos.col);
	if (is_array)
		rc = append_table(p, parent, &path, &pos, &table);
	else
		rc = define_table(p, parent, &path, &pos, &table);
	if (rc)
		goto done;
	table->has_header = 1;
	table->header_start = pos.line_start;
	table->header_end = pos.line_end;
	table->header_line = header_line;
	p->current = table;
	rc = record_header(p->doc, &path, is_array, table, pos.line_start, pos.line_end,
			   table->header_line);
done:
	key_path_release(&path);
	return rc;
}

static int parse_document(struct parser *p)
{
	int rc;

	if (starts_with(p, "\xef\xbb\xbf"))
		p->pos = 3; /* a UTF-8 byte order mark */
	rc = check_encoding(p);
	while (!rc && p->pos < p->len) {
		char c;

		skip_ws(p);
		if (p->pos >= p->len)
			break;
		c = p->text[p->pos];
		if (c == '#')
			rc = skip_comment(p);
		else if (newline_len(p, p->pos))
			p->pos += (size_t)newline_len(p, p->pos);
		else if (c == '[')
			rc = parse_header(p);
		else if (!(rc = parse_keyval(p, p->current)))
			rc = expect_line_end(p, "a key/value pair");
	}
	return rc;
}

/* ---- public entry points ------------------------------------------- */

int toml_parse(toml_doc **out, const char *text, size_t len, const char *name, size_t max_len)
{
	struct parser p = { 0 };
	toml_doc *doc;
	int rc;

	*out = NULL;
	if (len > max_len)
		return sm_error_set(SM_EINVALID, "%s: document is larger than the limit of %zu bytes",
				    name, max_len);
	doc = calloc(1, sizeof(*doc));
	if (!doc)
		return fail_nomem();
	doc->text = malloc(len + 1);
	doc->root = table_new(TOML_ORIGIN_ROOT, 0);
	if (!doc->text || !doc->root) {
		rc = fail_nomem();
		goto done;
	}
	memcpy(doc->text, text, len);
	doc->text[len] = '\0';
	doc->len = len;

	p.text = doc->text;
	p.len = len;
	p.name = name;
	p.doc = doc;
	p.current = doc->root;
	p.cursor_line = 1;
	p.cursor_col = 1;
	p.newline_from = SIZE_MAX; /* nothing cached yet */
	rc = parse_document(&p);
done:
	if (rc) {
		toml_doc_free(doc);
		return rc;
	}
	*out = doc;
	return 0;
}

void toml_doc_free(toml_doc *doc)
{
	if (!doc)
		return;
	for (size_t i = 0; i < doc->nheaders; i++) {
		for (size_t k = 0; k < doc->headers[i].nkeys; k++)
			free(doc->headers[i].keys[k]);
		free(doc->headers[i].keys);
		free(doc->headers[i].key_lens);
	}
	free(doc->headers);
	table_free(doc->root);
	free(doc->text);
	free(doc);
}

int toml_is_bare_key(const char *key, size_t len)
{
	if (len == 0)
		return 0;
	for (size_t i = 0; i < len; i++)
		if (!is_bare_char(key[i]))
			return 0;
	return 1;
}

int toml_quote(sm_buf *buf, const char *text, size_t len)
{
	int rc = sm_buf_putc(buf, '"');

	for (size_t i = 0; i < len && !rc; i++) {
		unsigned char c = (unsigned char)text[i];

		switch (c) {
		case '"': rc = sm_buf_puts(buf, "\\\""); break;
		case '\\': rc = sm_buf_puts(buf, "\\\\"); break;
		case '\b': rc = sm_buf_puts(buf, "\\b"); break;
		case '\t': rc = sm_buf_puts(buf, "\\t"); break;
		case '\n': rc = sm_buf_puts(buf, "\\n"); break;
		case '\f': rc = sm_buf_puts(buf, "\\f"); break;
		case '\r': rc = sm_buf_puts(buf, "\\r"); break;
		default:
			if (c < 0x20 || c == 0x7f)
				rc = sm_buf_printf(buf, "\\u%04X", c);
			else
				rc = sm_buf_putc(buf, (char)c);
		}
	}
	if (!rc)
		rc = sm_buf_putc(buf, '"');
	return rc;
}

int toml_quote_key(sm_buf *buf, const char *key, size_t len)
{
	if (toml_is_bare_key(key, len))
		return sm_buf_put(buf, key, len);
	return toml_quote(buf, key, len);
}
