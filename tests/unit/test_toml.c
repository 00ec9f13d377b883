/* Unit tests of the TOML 1.0 reader: values, errors and source positions. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "util/util.h"
#include "config/toml.h"

#define LIMIT (1024 * 1024)

static toml_doc *parse_ok(const char *text)
{
	toml_doc *doc = NULL;
	int rc = toml_parse(&doc, text, strlen(text), "test.toml", LIMIT);

	if (rc)
		fail_msg("parse failed: %s", sm_error_message());
	return doc;
}

static int parse_error(const char *text)
{
	toml_doc *doc = NULL;
	int rc = toml_parse(&doc, text, strlen(text), "test.toml", LIMIT);

	assert_null(doc);
	return rc;
}

static const toml_value *get(const toml_doc *doc, const char *key)
{
	const toml_entry *entry = toml_table_get(doc->root, key);

	if (!entry)
		fail_msg("key '%s' missing", key);
	return &entry->value;
}

/* ---- values ---------------------------------------------------------- */

static void test_integers_in_every_base(void **state)
{
	toml_doc *doc = parse_ok("dec = 1_000\nneg = -17\nhex = 0xDEAD_beef\noct = 0o755\n"
				 "bin = 0b1101\nmin = -9223372036854775808\nplus = +99\n");

	assert_int_equal(get(doc, "dec")->type, TOML_INTEGER);
	assert_int_equal(get(doc, "dec")->u.integer, 1000);
	assert_int_equal(get(doc, "neg")->u.integer, -17);
	assert_int_equal(get(doc, "hex")->u.integer, 0xdeadbeef);
	assert_int_equal(get(doc, "oct")->u.integer, 0755);
	assert_int_equal(get(doc, "bin")->u.integer, 13);
	assert_true(get(doc, "min")->u.integer == INT64_MIN);
	assert_int_equal(get(doc, "plus")->u.integer, 99);
	toml_doc_free(doc);
}

static void test_integer_overflow_rejected(void **state)
{
	assert_int_equal(parse_error("a = 9223372036854775808\n"), SM_EINVALID);
	assert_non_null(strstr(sm_error_message(), "does not fit in 64 bits"));
	assert_int_equal(parse_error("a = -9223372036854775809\n"), SM_EINVALID);
	assert_int_equal(parse_error("a = 0x8000000000000000\n"), SM_EINVALID);
	assert_int_equal(parse_error("a = 0b1_0000000000000000000000000000000000000000000000000000000000000000\n"),
			 SM_EINVALID);
}

static void test_integer_syntax_errors(void **state)
{
	assert_int_equal(parse_error("a = 01\n"), SM_EINVALID);
	assert_int_equal(parse_error("a = 1__0\n"), SM_EINVALID);
	assert_int_equal(parse_error("a = _1\n"), SM_EINVALID);
	assert_int_equal(parse_error("a = 1_\n"), SM_EINVALID);
	assert_int_equal(parse_error("a = +0x10\n"), SM_EINVALID);
	assert_int_equal(parse_error("a = 0X10\n"), SM_EINVALID);
	assert_int_equal(parse_error("a = 0o8\n"), SM_EINVALID);
}

static void test_floats(void **state)
{
	toml_doc *doc = parse_ok("a = 3.14\nb = -1e-3\nc = 6.626e-34\nd = 1_000.5\n"
				 "e = inf\nf = -inf\ng = nan\nh = 0e0\n");

	assert_int_equal(get(doc, "a")->type, TOML_FLOAT);
	assert_true(get(doc, "a")->u.floating == 3.14);
	assert_true(get(doc, "b")->u.floating == -1e-3);
	assert_true(get(doc, "c")->u.floating == 6.626e-34);
	assert_true(get(doc, "d")->u.floating == 1000.5);
	assert_true(isinf(get(doc, "e")->u.floating) && get(doc, "e")->u.floating > 0);
	assert_true(isinf(get(doc, "f")->u.floating) && get(doc, "f")->u.floating < 0);
	assert_true(isnan(get(doc, "g")->u.floating));
	assert_true(get(doc, "h")->u.floating == 0.0);
	toml_doc_free(doc);
}

static void test_float_syntax_errors(void **state)
{
	assert_int_equal(parse_error("a = 1.\n"), SM_EINVALID);
	assert_int_equal(parse_error("a = .5\n"), SM_EINVALID);
	assert_int_equal(parse_error("a = 1e\n"), SM_EINVALID);
	assert_int_equal(parse_error("a = 1.e5\n"), SM_EINVALID);
	assert_int_equal(parse_error("a = 03.14\n"), SM_EINVALID);
	assert_int_equal(parse_error("a = Inf\n"), SM_EINVALID);
}

static void test_float_beyond_range_is_infinity(void **state)
{
	toml_doc *doc = parse_ok("big = 1e400\nsmall = -1e400\ntiny = 1e-400\n");

	assert_true(isinf(get(doc, "big")->u.floating));
	assert_true(get(doc, "big")->u.floating > 0);
	assert_true(isinf(get(doc, "small")->u.floating));
	assert_true(get(doc, "small")->u.floating < 0);
	assert_true(get(doc, "tiny")->u.floating == 0.0);
	toml_doc_free(doc);
}

static void test_booleans(void **state)
{
	toml_doc *doc = parse_ok("t = true\nf = false\n");

	assert_int_equal(get(doc, "t")->type, TOML_BOOL);
	assert_int_equal(get(doc, "t")->u.boolean, 1);
	assert_int_equal(get(doc, "f")->u.boolean, 0);
	toml_doc_free(doc);
	assert_int_equal(parse_error("a = True\n"), SM_EINVALID);
	assert_int_equal(parse_error("a = truely\n"), SM_EINVALID);
}

static void test_string_escapes(void **state)
{
	toml_doc *doc = parse_ok("a = \"tab\\tquote\\\" back\\\\ \\u00e9 \\U0001F600\"\n"
				 "b = 'C:\\path\\no\\escapes'\n"
				 "c = \"nul\\u0000byte\"\n");
	const toml_value *a = get(doc, "a"), *b = get(doc, "b"), *c = get(doc, "c");

	assert_int_equal(a->type, TOML_STRING);
	assert_string_equal(a->u.string.ptr, "tab\tquote\" back\\ \xc3\xa9 \xf0\x9f\x98\x80");
	assert_string_equal(b->u.string.ptr, "C:\\path\\no\\escapes");
	assert_int_equal(c->u.string.len, 8);
	assert_memory_equal(c->u.string.ptr, "nul\0byte", 8);
	toml_doc_free(doc);
}

static void test_string_escape_errors(void **state)
{
	assert_int_equal(parse_error("a = \"\\x41\"\n"), SM_EINVALID);
	assert_int_equal(parse_error("a = \"\\uD800\"\n"), SM_EINVALID);
	assert_non_null(strstr(sm_error_message(), "not a Unicode scalar value"));
	assert_int_equal(parse_error("a = \"\\U00110000\"\n"), SM_EINVALID);
	assert_int_equal(parse_error("a = \"\\u12\"\n"), SM_EINVALID);
	assert_int_equal(parse_error("a = \"open\n"), SM_EINVALID);
	assert_int_equal(parse_error("a = \"raw\x01control\"\n"), SM_EINVALID);
}

static void test_multiline_strings(void **state)
{
	toml_doc *doc = parse_ok("a = \"\"\"\nline one\nline two\"\"\"\n"
				 "b = \"\"\"joined \\\n     together\"\"\"\n"
				 "c = '''\nraw \\n text'''\n"
				 "d = \"\"\"two quotes at the end\"\"\"\"\"\n"
				 "e = \"\"\"crlf\r\nline\"\"\"\n");

	assert_string_equal(get(doc, "a")->u.string.ptr, "line one\nline two");
	assert_string_equal(get(doc, "b")->u.string.ptr, "joined together");
	assert_string_equal(get(doc, "c")->u.string.ptr, "raw \\n text");
	assert_string_equal(get(doc, "d")->u.string.ptr, "two quotes at the end\"\"");
	assert_string_equal(get(doc, "e")->u.string.ptr, "crlf\nline");
	toml_doc_free(doc);
	assert_int_equal(parse_error("a = \"\"\"six quotes\"\"\"\"\"\"\n"), SM_EINVALID);
	assert_int_equal(parse_error("a = \"\"\"never closed\n"), SM_EINVALID);
}

static void test_date_times(void **state)
{
	toml_doc *doc = parse_ok("odt = 1979-05-27T07:32:00.999-07:00\nz = 1979-05-27 07:32:00Z\n"
				 "ldt = 1979-05-27T07:32:00\nld = 2000-02-29\nlt = 23:59:60.5\n");

	assert_int_equal(get(doc, "odt")->type, TOML_DATETIME);
	assert_string_equal(get(doc, "odt")->u.string.ptr, "1979-05-27T07:32:00.999-07:00");
	assert_int_equal(get(doc, "z")->type, TOML_DATETIME);
	assert_string_equal(get(doc, "z")->u.string.ptr, "1979-05-27 07:32:00Z");
	assert_int_equal(get(doc, "ldt")->type, TOML_DATETIME_LOCAL);
	assert_int_equal(get(doc, "ld")->type, TOML_DATE_LOCAL);
	assert_int_equal(get(doc, "lt")->type, TOML_TIME_LOCAL);
	toml_doc_free(doc);
	assert_int_equal(parse_error("a = 1900-02-29\n"), SM_EINVALID);
	assert_int_equal(parse_error("a = 2021-04-31\n"), SM_EINVALID);
	assert_int_equal(parse_error("a = 07:32\n"), SM_EINVALID);
	assert_int_equal(parse_error("a = 1979-05-27T07:32:00+24:00\n"), SM_EINVALID);
}

static void test_arrays_and_inline_tables(void **state)
{
	toml_doc *doc = parse_ok("mixed = [ 1, \"two\", [3.0], { four = 4 }, ] # trailing comma\n"
				 "multi = [\n  1, # one\n  2,\n]\n"
				 "point = { x = 1, y.z = 2 }\n");
	const toml_array *mixed = get(doc, "mixed")->u.array;
	const toml_table *point = get(doc, "point")->u.table;

	assert_int_equal(mixed->len, 4);
	assert_int_equal(mixed->items[0].type, TOML_INTEGER);
	assert_int_equal(mixed->items[1].type, TOML_STRING);
	assert_int_equal(mixed->items[2].type, TOML_ARRAY);
	assert_int_equal(mixed->items[3].type, TOML_TABLE);
	assert_int_equal(mixed->items[3].u.table->entries[0].pos.line, 1);
	assert_int_equal(mixed->items[3].u.table->entries[0].pos.col, 30);
	assert_int_equal(get(doc, "multi")->u.array->len, 2);
	assert_int_equal(point->len, 2);
	assert_true(point->frozen);
	assert_int_equal(toml_table_get_table(point, "y")->entries[0].value.u.integer, 2);
	assert_int_equal(toml_table_get(point, "x")->pos.line, 6);
	assert_int_equal(toml_table_get(point, "x")->pos.col, 11);
	toml_doc_free(doc);
}

static void test_inline_table_errors(void **state)
{
	assert_int_equal(parse_error("a = { b = 1, }\n"), SM_EINVALID);
	assert_int_equal(parse_error("a = { b = 1,\n c = 2 }\n"), SM_EINVALID);
	assert_int_equal(parse_error("a = { b = 1 }\na.c = 2\n"), SM_EINVALID);
	assert_non_null(strstr(sm_error_message(), "inline table"));
	assert_int_equal(parse_error("a = { b = 1 }\n[a.c]\n"), SM_EINVALID);
	assert_int_equal(parse_error("a = { b = 1, b = 2 }\n"), SM_EINVALID);
}

static void test_tables_and_arrays_of_tables(void **state)
{
	toml_doc *doc = parse_ok("[x.y.z]\nk = 1\n[x]\nj = 2\n"
				 "[[fruit]]\nname = \"apple\"\n[fruit.physical]\ncolor = \"red\"\n"
				 "[[fruit]]\nname = \"banana\"\n");
	const toml_table *x = toml_table_get_table(doc->root, "x");
	const toml_array *fruit = get(doc, "fruit")->u.array;

	assert_non_null(x);
	assert_int_equal(x->origin, TOML_ORIGIN_HEADER);
	assert_int_equal(toml_table_get(x, "j")->value.u.integer, 2);
	assert_true(fruit->of_tables);
	assert_int_equal(fruit->len, 2);
	assert_non_null(toml_table_get_table(fruit->items[0].u.table, "physical"));
	assert_null(toml_table_get(fruit->items[1].u.table, "physical"));
	toml_doc_free(doc);
}

static void test_table_redefinition_rules(void **state)
{
	assert_int_equal(parse_error("[a]\n[a]\n"), SM_EINVALID);
	assert_int_equal(parse_error("[a.b]\n[a]\n[a]\n"), SM_EINVALID);
	assert_int_equal(parse_error("[a]\nb.c = 1\n[a.b]\n"), SM_EINVALID);
	assert_int_equal(parse_error("[a.b.c]\n[a]\nb.c.d = 1\n"), SM_EINVALID);
	assert_int_equal(parse_error("[[a]]\n[a]\n"), SM_EINVALID);
	assert_int_equal(parse_error("a = []\n[[a]]\n"), SM_EINVALID);
	assert_int_equal(parse_error("a = 1\n[a]\n"), SM_EINVALID);
	assert_int_equal(parse_error("a = 1\na = 2\n"), SM_EINVALID);
	assert_int_equal(parse_error("[a.b.c]\n[a]\nb.d = 1\n[a.b]\n"), SM_EINVALID);
	assert_string_equal(sm_error_message(), "test.toml:4:4: table 'a.b' is already defined by dotted keys");
}

static void test_dotted_key_extends_implied_table(void **state)
{
	toml_doc *doc = parse_ok("[a.b.c]\n[a]\nb.d = 1\n[a.b.e]\n");
	const toml_table *b = toml_table_get_table(toml_table_get_table(doc->root, "a"), "b");

	assert_int_equal(b->origin, TOML_ORIGIN_DOTTED);
	assert_int_equal(toml_table_get(b, "d")->value.u.integer, 1);
	assert_non_null(toml_table_get_table(b, "c"));
	assert_non_null(toml_table_get_table(b, "e"));
	toml_doc_free(doc);
}

static void test_dotted_keys_build_tables(void **state)
{
	toml_doc *doc = parse_ok("[fruit]\napple.color = \"red\"\napple.taste.sweet = true\n"
				 "[fruit.apple.texture]\nsmooth = true\n");
	const toml_table *fruit = toml_table_get_table(doc->root, "fruit");
	const toml_table *apple = toml_table_get_table(fruit, "apple");

	assert_int_equal(apple->origin, TOML_ORIGIN_DOTTED);
	assert_int_equal(apple->len, 3);
	assert_non_null(toml_table_get_table(apple, "texture"));
	toml_doc_free(doc);
}

static void test_many_keys_found_through_index(void **state)
{
	sm_buf text = SM_BUF_INIT(0);
	toml_doc *doc;

	for (int i = 0; i < 500; i++)
		assert_int_equal(sm_buf_printf(&text, "key%d = %d\n", i, i), 0);
	doc = parse_ok(text.data);
	assert_int_equal(doc->root->len, 500);
	assert_non_null(doc->root->index);
	for (int i = 0; i < 500; i++) {
		char key[16];
		const toml_entry *entry;

		snprintf(key, sizeof(key), "key%d", i);
		entry = toml_table_get(doc->root, key);
		assert_non_null(entry);
		assert_int_equal(entry->value.u.integer, i);
		assert_int_equal(entry->pos.line, i + 1);
		assert_int_equal(entry->pos.col, 1);
	}
	assert_null(toml_table_get(doc->root, "key500"));
	toml_doc_free(doc);
	sm_buf_release(&text);
	assert_int_equal(parse_error("a1 = 1\na2 = 2\na3 = 3\na4 = 4\na5 = 5\na6 = 6\na7 = 7\na8 = 8\n"
				     "a9 = 9\na10 = 10\na11 = 11\na12 = 12\na13 = 13\na14 = 14\n"
				     "a15 = 15\na16 = 16\na17 = 17\na3 = 3\n"), SM_EINVALID);
}

static void test_keys_quoted_and_with_nul(void **state)
{
	toml_doc *doc = parse_ok("\"a.b\" = 1\n'lit key' = 2\n\"\" = 3\n\"nul\\u0000key\" = 4\n");
	const toml_entry *nul = toml_table_getn(doc->root, "nul\0key", 7);

	assert_int_equal(get(doc, "a.b")->u.integer, 1);
	assert_int_equal(get(doc, "lit key")->u.integer, 2);
	assert_int_equal(get(doc, "")->u.integer, 3);
	assert_non_null(nul);
	assert_int_equal(nul->value.u.integer, 4);
	assert_null(toml_table_get(doc->root, "nul"));
	toml_doc_free(doc);
}

/* ---- documents and encodings ----------------------------------------- */

static void test_crlf_accepted_bare_cr_rejected(void **state)
{
	toml_doc *doc = parse_ok("a = 1\r\n[t]\r\nb = 2 # note\r\n");

	assert_int_equal(get(doc, "a")->u.integer, 1);
	toml_doc_free(doc);
	assert_int_equal(parse_error("a = 1\rb = 2\n"), SM_EINVALID);
	assert_string_equal(sm_error_message(), "test.toml:1:6: carriage return without a line feed after it");
}

static void test_invalid_utf8_rejected(void **state)
{
	assert_int_equal(parse_error("a = \"\xc3\x28\"\n"), SM_EINVALID);
	assert_int_equal(parse_error("# \xed\xa0\x80 surrogate\n"), SM_EINVALID);
	assert_int_equal(parse_error("a = \"\xc0\xaf\"\n"), SM_EINVALID);
	assert_non_null(strstr(sm_error_message(), "overlong"));
	assert_int_equal(parse_error("a = 1 # \xe2\x82\n"), SM_EINVALID);
}

static void test_control_characters_rejected(void **state)
{
	assert_int_equal(parse_error("# bell \x07\n"), SM_EINVALID);
	assert_string_equal(sm_error_message(), "test.toml:1:8: control character U+0007 is not allowed in a comment");
	assert_int_equal(parse_error("a = 'del\x7f'\n"), SM_EINVALID);
	assert_int_equal(parse_error("a = \"\"\"nul\x01\"\"\"\n"), SM_EINVALID);
}

static void test_byte_order_mark_only_at_start(void **state)
{
	toml_doc *doc = parse_ok("\xef\xbb\xbf" "a = 1\n");

	assert_int_equal(get(doc, "a")->u.integer, 1);
	toml_doc_free(doc);
	assert_int_equal(parse_error("a = 1\n\xef\xbb\xbf" "b = 2\n"), SM_EINVALID);
}

static void test_error_names_file_line_column(void **state)
{
	assert_int_equal(parse_error("[a]\nx = 1\n\n  x = 2\n"), SM_EINVALID);
	assert_string_equal(sm_error_message(), "test.toml:4:3: duplicate key 'x'");
	assert_int_equal(parse_error("[server]\nport = 80 80\n"), SM_EINVALID);
	assert_string_equal(sm_error_message(), "test.toml:2:11: expected a newline after a key/value pair, found '8'");
	assert_int_equal(parse_error("[a]\n[a]\n"), SM_EINVALID);
	assert_string_equal(sm_error_message(), "test.toml:2:2: table 'a' is already defined");
}

static void test_error_column_counts_characters(void **state)
{
	/* é is two bytes but one column */
	assert_int_equal(parse_error("k = \"\xc3\xa9\" x\n"), SM_EINVALID);
	assert_string_equal(sm_error_message(), "test.toml:1:9: expected a newline after a key/value pair, found 'x'");
}

static void test_nesting_depth_limited(void **state)
{
	sm_buf text = SM_BUF_INIT(0);
	toml_doc *doc = NULL;
	int rc;

	assert_int_equal(sm_buf_puts(&text, "a = "), 0);
	for (int i = 0; i < 200; i++)
		assert_int_equal(sm_buf_putc(&text, '['), 0);
	for (int i = 0; i < 200; i++)
		assert_int_equal(sm_buf_putc(&text, ']'), 0);
	assert_int_equal(sm_buf_putc(&text, '\n'), 0);
	rc = toml_parse(&doc, text.data, text.len, "deep.toml", LIMIT);
	assert_int_equal(rc, SM_EINVALID);
	assert_null(doc);
	assert_non_null(strstr(sm_error_message(), "nested deeper than 128 levels"));
	sm_buf_release(&text);
}

static void test_dotted_key_depth_limited(void **state)
{
	sm_buf text = SM_BUF_INIT(0);
	toml_doc *doc = NULL;

	for (int i = 0; i < 130; i++)
		assert_int_equal(sm_buf_puts(&text, i ? ".k" : "k"), 0);
	assert_int_equal(sm_buf_puts(&text, " = 1\n"), 0);
	assert_int_equal(toml_parse(&doc, text.data, text.len, "deep.toml", LIMIT), SM_EINVALID);
	assert_null(doc);
	sm_buf_release(&text);
}

static void test_document_size_limited(void **state)
{
	const char *text = "a = 1\nb = 2\n";
	toml_doc *doc = NULL;

	assert_int_equal(toml_parse(&doc, text, strlen(text), "big.toml", 5), SM_EINVALID);
	assert_null(doc);
	assert_string_equal(sm_error_message(), "big.toml: document is larger than the limit of 5 bytes");
	assert_int_equal(toml_parse(&doc, text, strlen(text), "big.toml", strlen(text)), 0);
	toml_doc_free(doc);
}

static void test_empty_document(void **state)
{
	toml_doc *doc = NULL;

	assert_int_equal(toml_parse(&doc, "", 0, "empty.toml", LIMIT), 0);
	assert_int_equal(doc->root->len, 0);
	assert_int_equal(doc->nheaders, 0);
	toml_doc_free(doc);
}

/* ---- positions ------------------------------------------------------- */

static const char positions_text[] =
	"# comment\n"                       /* 0..10 */
	"[sharing]  # note\n"               /* 10..28 */
	"default_vault = \"team\" # why\n"  /* 28..57 */
	"\n"                                /* 57..58 */
	"  [vault.team]\n"                  /* 58..73 */
	"type = 'local'\n"                  /* 73..88 */
	"doc = \"\"\"\nline\n\"\"\"\n";     /* 88..107 */

static void test_positions_of_headers(void **state)
{
	toml_doc *doc = parse_ok(positions_text);
	const toml_table *sharing = toml_table_get_table(doc->root, "sharing");
	const toml_table *vault = toml_table_get_table(doc->root, "vault");
	const toml_table *team = toml_table_get_table(vault, "team");

	assert_true(sharing->has_header);
	assert_int_equal(sharing->header_start, 10);
	assert_int_equal(sharing->header_end, 28);
	assert_int_equal(sharing->header_line, 2);
	assert_false(vault->has_header);
	assert_int_equal(vault->origin, TOML_ORIGIN_IMPLICIT);
	assert_true(team->has_header);
	assert_int_equal(team->header_start, 58);
	assert_int_equal(team->header_end, 73);
	assert_int_equal(team->header_line, 5);

	assert_int_equal(doc->nheaders, 2);
	assert_int_equal(doc->headers[1].nkeys, 2);
	assert_string_equal(doc->headers[1].keys[0], "vault");
	assert_string_equal(doc->headers[1].keys[1], "team");
	assert_ptr_equal(doc->headers[1].table, team);
	assert_int_equal(doc->headers[1].start, 58);
	assert_int_equal(doc->headers[1].end, 73);
	toml_doc_free(doc);
}

static void test_positions_of_key_values(void **state)
{
	toml_doc *doc = parse_ok(positions_text);
	const toml_table *sharing = toml_table_get_table(doc->root, "sharing");
	const toml_table *team = toml_table_get_table(toml_table_get_table(doc->root, "vault"), "team");
	const toml_entry *dv = toml_table_get(sharing, "default_vault");
	const toml_entry *type = toml_table_get(team, "type");
	const toml_entry *multi = toml_table_get(team, "doc");

	assert_int_equal(dv->pos.line_start, 28);
	assert_int_equal(dv->pos.value_start, 44);
	assert_int_equal(dv->pos.value_end, 50);
	assert_memory_equal(doc->text + dv->pos.value_start, "\"team\"", 6);
	assert_int_equal(dv->pos.line_end, 57);
	assert_int_equal(dv->pos.line, 3);
	assert_int_equal(dv->pos.col, 1);
	assert_int_equal(type->pos.line_start, 73);
	assert_int_equal(type->pos.line_end, 88);
	assert_int_equal(multi->pos.line_start, 88);
	assert_int_equal(multi->pos.value_start, 94);
	assert_int_equal(multi->pos.value_end, 106);
	assert_int_equal(multi->pos.line_end, 107);
	toml_doc_free(doc);
}

static void test_positions_of_dotted_and_header_keys(void **state)
{
	toml_doc *doc = parse_ok("a.b.c = 1\n[t.\"x y\"]\n");
	const toml_entry *a = toml_table_get(doc->root, "a");
	const toml_table *t = toml_table_get_table(doc->root, "t");
	const toml_entry *xy = toml_table_get(t, "x y");

	assert_int_equal(a->pos.line_start, 0);
	assert_int_equal(a->pos.value_start, 8);
	assert_int_equal(a->pos.line_end, 10);
	assert_int_equal(a->pos.line, 1);
	assert_int_equal(a->pos.col, 1);
	assert_int_equal(xy->pos.line, 2);
	assert_int_equal(xy->pos.col, 4);
	toml_doc_free(doc);
}

static void test_positions_of_array_table_elements(void **state)
{
	toml_doc *doc = parse_ok("[[h]]\nx = 1\n\n[[h]] # two\n");
	const toml_array *h = get(doc, "h")->u.array;

	assert_int_equal(h->len, 2);
	assert_int_equal(h->items[0].u.table->header_start, 0);
	assert_int_equal(h->items[0].u.table->header_end, 6);
	assert_int_equal(h->items[1].u.table->header_start, 13);
	assert_int_equal(h->items[1].u.table->header_end, 25);
	assert_int_equal(doc->nheaders, 2);
	assert_true(doc->headers[1].is_array);
	assert_int_equal(doc->headers[1].line, 4);
	toml_doc_free(doc);
}

/* ---- writing --------------------------------------------------------- */

static void test_quote_reads_back(void **state)
{
	const char original[] = "q\"b\\s\tt\nn\x01\x7f \xc3\xa9";
	sm_buf text = SM_BUF_INIT(0);
	toml_doc *doc;

	assert_int_equal(sm_buf_puts(&text, "k = "), 0);
	assert_int_equal(toml_quote(&text, original, sizeof(original) - 1), 0);
	assert_int_equal(sm_buf_putc(&text, '\n'), 0);
	doc = parse_ok(text.data);
	assert_int_equal(get(doc, "k")->u.string.len, sizeof(original) - 1);
	assert_memory_equal(get(doc, "k")->u.string.ptr, original, sizeof(original) - 1);
	toml_doc_free(doc);
	sm_buf_release(&text);
}

static void test_quote_key_bare_when_possible(void **state)
{
	sm_buf text = SM_BUF_INIT(0);

	assert_int_equal(toml_quote_key(&text, "plain_key-1", 11), 0);
	assert_int_equal(sm_buf_putc(&text, ' '), 0);
	assert_int_equal(toml_quote_key(&text, "my.vault", 8), 0);
	assert_string_equal(text.data, "plain_key-1 \"my.vault\"");
	sm_buf_release(&text);
	assert_false(toml_is_bare_key("", 0));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_integers_in_every_base),
		cmocka_unit_test(test_integer_overflow_rejected),
		cmocka_unit_test(test_integer_syntax_errors),
		cmocka_unit_test(test_floats),
		cmocka_unit_test(test_float_syntax_errors),
		cmocka_unit_test(test_float_beyond_range_is_infinity),
		cmocka_unit_test(test_booleans),
		cmocka_unit_test(test_string_escapes),
		cmocka_unit_test(test_string_escape_errors),
		cmocka_unit_test(test_multiline_strings),
		cmocka_unit_test(test_date_times),
		cmocka_unit_test(test_arrays_and_inline_tables),
		cmocka_unit_test(test_inline_table_errors),
		cmocka_unit_test(test_tables_and_arrays_of_tables),
		cmocka_unit_test(test_table_redefinition_rules),
		cmocka_unit_test(test_dotted_keys_build_tables),
		cmocka_unit_test(test_dotted_key_extends_implied_table),
		cmocka_unit_test(test_many_keys_found_through_index),
		cmocka_unit_test(test_keys_quoted_and_with_nul),
		cmocka_unit_test(test_crlf_accepted_bare_cr_rejected),
		cmocka_unit_test(test_invalid_utf8_rejected),
		cmocka_unit_test(test_control_characters_rejected),
		cmocka_unit_test(test_byte_order_mark_only_at_start),
		cmocka_unit_test(test_error_names_file_line_column),
		cmocka_unit_test(test_error_column_counts_characters),
		cmocka_unit_test(test_nesting_depth_limited),
		cmocka_unit_test(test_dotted_key_depth_limited),
		cmocka_unit_test(test_document_size_limited),
		cmocka_unit_test(test_empty_document),
		cmocka_unit_test(test_positions_of_headers),
		cmocka_unit_test(test_positions_of_key_values),
		cmocka_unit_test(test_positions_of_dotted_and_header_keys),
		cmocka_unit_test(test_positions_of_array_table_elements),
		cmocka_unit_test(test_quote_reads_back),
		cmocka_unit_test(test_quote_key_bare_when_possible),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
