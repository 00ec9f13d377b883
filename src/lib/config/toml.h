/*
 * TOML 1.0.0 reader.
 *
 * toml_parse() turns one document into a tree of tables, arrays and
 * scalars. Besides the values it keeps where each one sits in the source
 * text, so that an editor can change one key or remove one table and leave
 * every other byte of the file as it was.
 *
 * Keys and strings are stored with their length because TOML allows
 * "\u0000" in both; they are NUL-terminated as well for convenience.
 */
#ifndef SM_TOML_H
#define SM_TOML_H

#include <stddef.h>
#include <stdint.h>

/* Containers nested deeper than this are rejected. */
#define TOML_MAX_DEPTH 128

typedef enum toml_type {
	TOML_TABLE,
	TOML_ARRAY,
	TOML_STRING,
	TOML_INTEGER,
	TOML_FLOAT,
	TOML_BOOL,
	TOML_DATETIME,       /* date and time with an offset */
	TOML_DATETIME_LOCAL, /* date and time without an offset */
	TOML_DATE_LOCAL,
	TOML_TIME_LOCAL
} toml_type;

/* How a table came into existence; it decides which later edits are valid. */
typedef enum toml_origin {
	TOML_ORIGIN_IMPLICIT, /* named on the way to a deeper [header] */
	TOML_ORIGIN_HEADER,   /* [header] or one element of [[header]] */
	TOML_ORIGIN_DOTTED,   /* created by a dotted key such as a.b = 1 */
	TOML_ORIGIN_INLINE,   /* { ... }, or a table inside one */
	TOML_ORIGIN_ROOT
} toml_origin;

typedef struct toml_table toml_table;
typedef struct toml_array toml_array;

typedef struct toml_value {
	toml_type type;
	union {
		/* TOML_STRING, and the source text of the four date-time types */
		struct {
			char *ptr;
			size_t len;
		} string;
		int64_t integer;
		double floating;
		int boolean;
		toml_table *table;
		toml_array *array;
	} u;
} toml_value;

/*
 * Byte offsets into the document of one key/value, and the 1-based line
 * and column (in characters) of its key. For a table that a dotted key or
 * a header created, these describe the key/value or header that named it.
 * line_start and line_end are the bounds of the whole line or lines the
 * key/value takes, newline included. Inside an inline table, line_start
 * is the start of the line where the key begins and line_end the end of
 * the line where the value ends.
 */
typedef struct toml_pos {
	size_t line_start;
	size_t value_start;
	size_t value_end;
	size_t line_end;
	unsigned line;
	unsigned col;
} toml_pos;

typedef struct toml_entry {
	char *key;
	size_t key_len;
	toml_value value;
	toml_pos pos;
} toml_entry;

struct toml_table {
	toml_entry *entries;
	size_t len;
	size_t cap;
	uint32_t *index;      /* hash index over entries, NULL while small */
	size_t index_cap;
	toml_origin origin;
	unsigned frozen : 1;  /* inline tables cannot change once closed */
	unsigned has_header : 1;
	/* for a table defined by a [header]: bounds of the header line */
	size_t header_start;
	size_t header_end;
	unsigned header_line;
	unsigned depth;
};

struct toml_array {
	toml_value *items;
	size_t len;
	size_t cap;
	unsigned of_tables : 1; /* built by [[header]] and extensible by it */
	unsigned depth;
};

/* One [header] or [[header]] line, in document order. */
typedef struct toml_header {
	char **keys;
	size_t *key_lens;
	size_t nkeys;
	int is_array;
	toml_table *table;
	size_t start;         /* first byte of the header's line */
	size_t end;           /* just past the newline that ends it (or EOF) */
	unsigned line;
} toml_header;

typedef struct toml_doc {
	char *text;           /* a copy of the parsed document, NUL-terminated */
	size_t len;
	toml_table *root;
	toml_header *headers;
	size_t nheaders;
} toml_doc;

/*
 * Parses `len` bytes of `text`. `name` (usually the file path) prefixes
 * error messages, which read "NAME:LINE:COL: what is wrong". Documents
 * longer than `max_len` bytes are rejected. Returns 0, SM_EINVALID for an
 * invalid document, or SM_ENOMEM.
 */
int toml_parse(toml_doc **out, const char *text, size_t len, const char *name,
	       size_t max_len);

void toml_doc_free(toml_doc *doc);

/* Returns the entry called `key` (NUL-terminated) in `table`, or NULL. */
toml_entry *toml_table_get(const toml_table *table, const char *key);

/* Same, for a key of `key_len` bytes that may hold NUL bytes. */
toml_entry *toml_table_getn(const toml_table *table, const char *key, size_t key_len);

/* Returns the table stored under `key`, or NULL when the key is missing or no table. */
toml_table *toml_table_get_table(const toml_table *table, const char *key);

/* Returns a static name for a type ("string", "table", ...). */
const char *toml_type_name(toml_type type);

/*
 * Appends `text` (of `len` bytes) to `buf` as a TOML basic string,
 * quotes included, escaping what TOML requires.
 */
struct sm_buf;
int toml_quote(struct sm_buf *buf, const char *text, size_t len);

/* Appends `key` as a bare key when it may be one, else as a quoted key. */
int toml_quote_key(struct sm_buf *buf, const char *key, size_t len);

/* Returns 1 when `key` consists of A-Z a-z 0-9 _ - only and is not empty. */
int toml_is_bare_key(const char *key, size_t len);

/*
 * Finds the 1-based line and column (in characters) of byte `offset`.
 */
void toml_line_col(const char *text, size_t offset, unsigned *line, unsigned *col);

#endif
