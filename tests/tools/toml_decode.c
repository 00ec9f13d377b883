/*
 * toml_decode: the decoder that the toml-test conformance suite drives.
 *
 * Reads one TOML document on standard input. For a valid document it
 * prints the tagged JSON the suite compares ({"type": T, "value": "text"}
 * for every scalar) and exits 0; for an invalid one it prints the parse
 * error to standard error and exits 1.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/util.h"
#include "config/toml.h"

/* Largest document accepted on standard input. */
#define MAX_INPUT (64u * 1024 * 1024)

static void print_json_string(const char *text, size_t len)
{
	putchar('"');
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)text[i];

		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20 || c == 0x7f)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}

static void print_tagged(const char *type, const char *text, size_t len)
{
	printf("{\"type\":\"%s\",\"value\":", type);
	print_json_string(text, len);
	putchar('}');
}

static void print_table(const toml_table *table);

static void print_value(const toml_value *value)
{
	char number[64];

	switch (value->type) {
	case TOML_TABLE:
		print_table(value->u.table);
		break;
	case TOML_ARRAY:
		putchar('[');
		for (size_t i = 0; i < value->u.array->len; i++) {
			if (i)
				putchar(',');
			print_value(&value->u.array->items[i]);
		}
		putchar(']');
		break;
	case TOML_STRING:
		print_tagged("string", value->u.string.ptr, value->u.string.len);
		break;
	case TOML_INTEGER:
		snprintf(number, sizeof(number), "%lld", (long long)value->u.integer);
		print_tagged("integer", number, strlen(number));
		break;
	case TOML_FLOAT:
		if (isnan(value->u.floating))
			snprintf(number, sizeof(number), "nan");
		else if (isinf(value->u.floating))
			snprintf(number, sizeof(number), "%sinf", value->u.floating < 0 ? "-" : "");
		else
			snprintf(number, sizeof(number), "%.17g", value->u.floating);
		print_tagged("float", number, strlen(number));
		break;
	case TOML_BOOL:
		print_tagged("bool", value->u.boolean ? "true" : "false", value->u.boolean ? 4 : 5);
		break;
	case TOML_DATETIME:
		print_tagged("datetime", value->u.string.ptr, value->u.string.len);
		break;
	case TOML_DATETIME_LOCAL:
		print_tagged("datetime-local", value->u.string.ptr, value->u.string.len);
		break;
	case TOML_DATE_LOCAL:
		print_tagged("date-local", value->u.string.ptr, value->u.string.len);
		break;
	case TOML_TIME_LOCAL:
		print_tagged("time-local", value->u.string.ptr, value->u.string.len);
		break;
	}
}

static void print_table(const toml_table *table)
{
	putchar('{');
	for (size_t i = 0; i < table->len; i++) {
		if (i)
			putchar(',');
		print_json_string(table->entries[i].key, table->entries[i].key_len);
		putchar(':');
		print_value(&table->entries[i].value);
	}
	putchar('}');
}

int main(void)
{
	sm_buf input = SM_BUF_INIT(MAX_INPUT);
	char chunk[65536];
	toml_doc *doc = NULL;
	ssize_t n;

	while ((n = read(STDIN_FILENO, chunk, sizeof(chunk))) > 0) {
		if (sm_buf_put(&input, chunk, (size_t)n)) {
			fprintf(stderr, "toml_decode: %s\n", sm_error_message());
			return 2;
		}
	}
	if (n < 0) {
		perror("toml_decode: read");
		return 2;
	}
	if (toml_parse(&doc, input.data ? input.data : "", input.len, "stdin", MAX_INPUT)) {
		fprintf(stderr, "%s\n", sm_error_message());
		sm_buf_release(&input);
		return 1;
	}
	print_table(doc->root);
	putchar('\n');
	toml_doc_free(doc);
	sm_buf_release(&input);
	return fflush(stdout) == 0 ? 0 : 2;
}
