/*
 * The YAML front matter of SKILL.md: the block between a first line "---"
 * and the next "---" line. Only flat `key: value` lines are read, because
 * that is what skill files use. This is not a YAML parser.
 */
#include <stdlib.h>
#include <string.h>

#include "bundle_internal.h"

static const char *const known_keys[SM_FM_COUNT] = {
	"name", "version", "description", "author", "license",
};

static int is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r';
}

/* Trims blanks on both sides of [*start, *end). */
static void trim(const char **start, const char **end)
{
	while (*start < *end && is_blank(**start))
		(*start)++;
	while (*end > *start && is_blank((*end)[-1]))
		(*end)--;
}

static int line_is_marker(const char *line, const char *end)
{
	trim(&line, &end);
	return end - line == 3 && memcmp(line, "---", 3) == 0;
}

/* Appends [start, end) to `*value`, separated by one space from what is there. */
static int append(char **value, const char *start, const char *end)
{
	size_t old = *value ? strlen(*value) : 0, add = (size_t)(end - start);
	char *grown;

	if (add == 0)
		return 0;
	grown = realloc(*value, old + add + 2);
	if (!grown)
		return sm_error_set(SM_ENOMEM, "out of memory");
	if (old)
		grown[old++] = ' ';
	memcpy(grown + old, start, add);
	grown[old + add] = '\0';
	*value = grown;
	return 0;
}

/* Removes one pair of surrounding quotes, undoing the escapes that matter for one line. */
static void unquote(char *value)
{
	size_t len = strlen(value), o = 0;
	char quote;

	if (len < 2 || (value[0] != '"' && value[0] != '\'') || value[len - 1] != value[0])
		return;
	quote = value[0];
	for (size_t i = 1; i < len - 1; i++) {
		if (quote == '\'' && value[i] == '\'' && value[i + 1] == '\'')
			i++;
		else if (quote == '"' && value[i] == '\\' && (value[i + 1] == '"' || value[i + 1] == '\\'))
			i++;
		value[o++] = value[i];
	}
	value[o] = '\0';
}

/* Cuts a " # comment" off an unquoted value. */
static void cut_comment(const char *start, const char **end)
{
	if (start < *end && (*start == '"' || *start == '\''))
		return;
	for (const char *p = start; p < *end; p++) {
		if (*p == '#' && (p == start || is_blank(p[-1]))) {
			*end = p;
			trim(&start, end);
			return;
		}
	}
}

static int is_block_indicator(const char *start, const char *end)
{
	size_t len = (size_t)(end - start);

	return (len == 1 || (len == 2 && (start[1] == '-' || start[1] == '+'))) &&
	       (start[0] == '|' || start[0] == '>');
}

int sm_front_matter_parse(const char *text, size_t len, sm_front_matter *fm)
{
	const char *p = text, *end = text + len;
	char **current = NULL;
	int rc = 0, first = 1;

	memset(fm, 0, sizeof(*fm));
	if (len >= 3 && memcmp(p, "\xef\xbb\xbf", 3) == 0)
		p += 3;
	while (p < end) {
		const char *line = p, *eol = memchr(p, '\n', (size_t)(end - p));
		const char *colon, *key_end, *value, *value_end;

		if (!eol)
			eol = end;
		p = eol < end ? eol + 1 : end;

		/* the first line opens the block, a later "---" closes it */
		if (first) {
			if (!line_is_marker(line, eol))
				return 0;
			first = 0;
			continue;
		}
		if (line_is_marker(line, eol)) {
			for (int i = 0; i < SM_FM_COUNT; i++)
				if (fm->values[i])
					unquote(fm->values[i]);
			return 0;
		}

		/* an indented line continues the previous value (folded or plain) */
		if (line < eol && is_blank(*line)) {
			const char *start = line, *stop = eol;

			trim(&start, &stop);
			if (current && start < stop && (rc = append(current, start, stop)))
				break;
			continue;
		}
		current = NULL;
		if (line == eol || *line == '#')
			continue;
		colon = memchr(line, ':', (size_t)(eol - line));
		if (!colon)
			continue;
		key_end = colon;
		trim(&line, &key_end);
		value = colon + 1;
		value_end = eol;
		trim(&value, &value_end);
		cut_comment(value, &value_end);
		for (int i = 0; i < SM_FM_COUNT; i++) {
			size_t key_len = (size_t)(key_end - line);

			if (key_len != strlen(known_keys[i]) || memcmp(line, known_keys[i], key_len) != 0)
				continue;
			free(fm->values[i]);
			fm->values[i] = NULL;
			current = &fm->values[i];
			if (!is_block_indicator(value, value_end))
				rc = append(current, value, value_end);
			break;
		}
		if (rc)
			break;
	}

	/* no closing line: the file has no front matter */
	sm_front_matter_release(fm);
	return rc;
}

void sm_front_matter_release(sm_front_matter *fm)
{
	for (int i = 0; i < SM_FM_COUNT; i++) {
		free(fm->values[i]);
		fm->values[i] = NULL;
	}
}
