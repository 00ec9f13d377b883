/* Pure helpers of the git connector: URL checks, ssh command line, redaction. */
#define _GNU_SOURCE
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"
#include "vault/git_internal.h"

/* Longest repository URL accepted; real ones are far shorter. */
#define SM_GIT_URL_MAX 2048

#define USE_INSTEAD "use https://HOST/PATH, ssh://[USER@]HOST[:PORT]/PATH or USER@HOST:PATH"

/* Host names, IPv4 and bracketed IPv6 addresses. */
static int host_valid(const char *host, size_t len)
{
	if (len == 0 || host[0] == '-')
		return 0;
	if (host[0] == '[') {
		if (len < 3 || host[len - 1] != ']')
			return 0;
		for (size_t i = 1; i + 1 < len; i++)
			if (!isxdigit((unsigned char)host[i]) && host[i] != ':' && host[i] != '.')
				return 0;
		return 1;
	}
	for (size_t i = 0; i < len; i++)
		if (!isalnum((unsigned char)host[i]) && !strchr(".-_", host[i]))
			return 0;
	return 1;
}

static int has_password(const char *userinfo, size_t len)
{
	return memchr(userinfo, ':', len) || memmem(userinfo, len, "%3A", 3) ||
	       memmem(userinfo, len, "%3a", 3);
}

/* Length of a transport-helper name before "::" ("ext" in "ext::cmd"), or 0. */
static size_t transport_prefix(const char *url)
{
	const char *colons = strstr(url, "::");

	if (!colons || colons == url)
		return 0;
	for (const char *p = url; p < colons; p++)
		if (!isalnum((unsigned char)*p) && !strchr("+.-_", *p))
			return 0;
	return (size_t)(colons - url);
}

static int check_scheme_url(const char *url, const char *scheme, size_t scheme_len,
			    int allow_http)
{
	const char *authority = scheme + scheme_len + 3, *host, *path, *at, *port;
	size_t auth_len = strcspn(authority, "/"), host_len;

	if (scheme_len == 5 && strncasecmp(scheme, "https", 5) == 0)
		;
	else if (scheme_len == 3 && strncasecmp(scheme, "ssh", 3) == 0)
		;
	else if (scheme_len == 4 && strncasecmp(scheme, "http", 4) == 0) {
		if (!allow_http)
			return sm_error_set(SM_EINVALID, "repository URL '%s' uses http://, which sends "
					    "everything unencrypted; use https://, or set allow_http = "
					    "true for this vault in sharing.toml", url);
	} else {
		return sm_error_set(SM_EINVALID, "repository URL '%s' uses the unsupported transport "
				    "'%.*s://'; " USE_INSTEAD, url, (int)scheme_len, scheme);
	}

	at = memrchr(authority, '@', auth_len);
	if (at && has_password(authority, (size_t)(at - authority)))
		return sm_error_set(SM_EINVALID, "the repository URL contains a password or token; "
				    "give the URL without it and store the secret with 'skillmeat "
				    "vault auth NAME --username USER --password'");
	/* git decodes %2d to '-' before it hands the user name to ssh */
	if (at && (at == authority || authority[0] == '-' || strncasecmp(authority, "%2d", 3) == 0))
		return sm_error_set(SM_EINVALID, "repository URL '%s' has an empty user name or one "
				    "starting with '-'", url);
	host = at ? at + 1 : authority;
	host_len = (size_t)(authority + auth_len - host);
	port = NULL;
	if (host_len && host[0] == '[') {
		const char *close = memchr(host, ']', host_len);

		if (close && close + 1 < authority + auth_len && close[1] == ':')
			port = close + 1;
	} else {
		port = memchr(host, ':', host_len);
	}
	if (port) {
		size_t port_len = (size_t)(authority + auth_len - port - 1);
		unsigned long value = 0;

		host_len = (size_t)(port - host);
		for (size_t i = 0; i < port_len; i++) {
			if (!isdigit((unsigned char)port[1 + i]) || value > 65535)
				return sm_error_set(SM_EINVALID, "repository URL '%s' has an invalid port",
						    url);
			value = value * 10 + (unsigned long)(port[1 + i] - '0');
		}
		if (port_len == 0 || value == 0 || value > 65535)
			return sm_error_set(SM_EINVALID, "repository URL '%s' has an invalid port", url);
	}
	if (!host_valid(host, host_len))
		return sm_error_set(SM_EINVALID, "repository URL '%s' has an invalid host: it must be "
				    "a host name or address that does not start with '-'", url);
	path = authority + auth_len;
	if (path[0] != '/' || path[1] == '\0' || path[1] == '-')
		return sm_error_set(SM_EINVALID, "repository URL '%s' needs a repository path that "
				    "does not start with '-'", url);
	return 0;
}

/* [user@]host:path, which git treats as ssh when no '/' comes before the ':'. */
static int check_scp_like(const char *url)
{
	const char *colon, *slash, *at, *host;

	/* a bracketed IPv6 host may contain ':' */
	if (url[0] == '[' || strstr(url, "@[")) {
		const char *close = strchr(url, ']');

		colon = close ? strchr(close, ':') : NULL;
	} else {
		colon = strchr(url, ':');
	}
	slash = strchr(url, '/');
	if (!colon || (slash && slash < colon))
		return sm_error_set(SM_EINVALID, "'%s' is not a remote repository URL (local paths "
				    "and file:// are not supported); " USE_INSTEAD, url);
	at = memrchr(url, '@', (size_t)(colon - url));
	if (at && (at == url || url[0] == '-'))
		return sm_error_set(SM_EINVALID, "repository URL '%s' has an empty user name or one "
				    "starting with '-'", url);
	host = at ? at + 1 : url;
	if (!host_valid(host, (size_t)(colon - host)))
		return sm_error_set(SM_EINVALID, "repository URL '%s' has an invalid host: it must be "
				    "a host name or address that does not start with '-'", url);
	if (colon[1] == '\0' || colon[1] == '-' || colon[1] == ':')
		return sm_error_set(SM_EINVALID, "repository URL '%s' needs a repository path after "
				    "':' that does not start with '-'", url);
	return 0;
}

int sm_git_check_url(const char *url, int allow_http)
{
	const char *sep;
	size_t prefix;

	if (!url || !*url)
		return sm_error_set(SM_EINVALID, "the repository URL is empty; " USE_INSTEAD);
	for (const char *p = url; *p; p++)
		if ((unsigned char)*p <= ' ' || *p == 0x7f)
			return sm_error_set(SM_EINVALID, "the repository URL contains whitespace or "
					    "control characters; give it without them");
	if (url[0] == '-')
		return sm_error_set(SM_EINVALID, "repository URL '%s' starts with '-'; " USE_INSTEAD,
				    url);
	if (strlen(url) > SM_GIT_URL_MAX)
		return sm_error_set(SM_EINVALID, "the repository URL is longer than %d bytes; give "
				    "a shorter one", SM_GIT_URL_MAX);
	/* git decodes escapes in ssh:// and https:// URLs, so %0a would be a newline */
	for (const char *p = url; (p = strchr(p, '%')) != NULL; p++) {
		int hi = isxdigit((unsigned char)p[1]) ? p[1] : 0;
		int lo = hi && isxdigit((unsigned char)p[2]) ? p[2] : 0;

		if (lo && (hi == '0' || hi == '1' || (hi == '7' && (lo == 'f' || lo == 'F')) ||
			   (hi == '2' && lo == '0')))
			return sm_error_set(SM_EINVALID, "the repository URL contains an encoded space or "
					    "control character (%%%c%c); give it without them", hi, lo);
	}
	prefix = transport_prefix(url);
	if (prefix)
		return sm_error_set(SM_EINVALID, "repository URL '%s' uses the unsupported transport "
				    "'%.*s::'; " USE_INSTEAD, url, (int)prefix, url);
	sep = strstr(url, "://");
	if (sep) {
		const char *p = url;

		/* a password must not be echoed, whatever else is wrong */
		size_t auth_len = strcspn(sep + 3, "/");
		const char *at = memrchr(sep + 3, '@', auth_len);

		if (at && has_password(sep + 3, (size_t)(at - sep - 3)))
			return sm_error_set(SM_EINVALID, "the repository URL contains a password or "
					    "token; give the URL without it and store the secret with "
					    "'skillmeat vault auth NAME --username USER --password'");
		while (p < sep && (isalnum((unsigned char)*p) || strchr("+.-", *p)))
			p++;
		if (p != sep || sep == url)
			return sm_error_set(SM_EINVALID, "repository URL '%s' has an invalid scheme; "
					    USE_INSTEAD, url);
	}
	if (strpbrk(url, "?#"))
		return sm_error_set(SM_EINVALID, "repository URL '%s' has a query or fragment ('?' or "
				    "'#'); give the URL without it", url);
	if (sep)
		return check_scheme_url(url, url, (size_t)(sep - url), allow_http);
	return check_scp_like(url);
}

int sm_git_url_is_ssh(const char *url)
{
	return strncasecmp(url, "http://", 7) != 0 && strncasecmp(url, "https://", 8) != 0;
}

int sm_git_ssh_target(const char *url, char *host, size_t host_size, char *port,
		      size_t port_size)
{
	const char *sep = strstr(url, "://"), *start, *end, *at, *colon = NULL;
	int n;

	if (sep) {
		start = sep + 3;
		end = start + strcspn(start, "/");
	} else {
		start = url;
		end = url[0] == '[' || strstr(url, "@[") ? strchr(url, ']') : strchr(url, ':');
		if (!end)
			end = url + strlen(url);
		else if (*end == ']')
			end++;
	}
	at = memrchr(start, '@', (size_t)(end - start));
	if (at)
		start = at + 1;
	if (sep) {
		const char *close = *start == '[' ? memchr(start, ']', (size_t)(end - start)) : NULL;

		colon = memchr(close ? close : start, ':', (size_t)(end - (close ? close : start)));
	}
	if (*start == '[') {
		start++;
		n = snprintf(host, host_size, "%.*s", (int)((colon ? colon : end) - start - 1), start);
	} else {
		n = snprintf(host, host_size, "%.*s", (int)((colon ? colon : end) - start), start);
	}
	if (n < 0 || (size_t)n >= host_size)
		return sm_error_set(SM_EINVALID, "host name of '%s' is too long", url);
	n = colon ? snprintf(port, port_size, "%.*s", (int)(end - colon - 1), colon + 1)
		  : snprintf(port, port_size, "22");
	if (n < 0 || (size_t)n >= port_size)
		return sm_error_set(SM_EINVALID, "port of '%s' is too long", url);
	return 0;
}

/* Appends `word` in single quotes for /bin/sh, with '%' doubled when `ssh_percent`. */
static int put_quoted(sm_buf *buf, const char *word, int ssh_percent)
{
	int rc = sm_buf_putc(buf, '\'');

	for (const char *p = word; !rc && *p; p++) {
		if (*p == '\'')
			rc = sm_buf_puts(buf, "'\\''");
		else if (*p == '%' && ssh_percent)
			rc = sm_buf_puts(buf, "%%");
		else
			rc = sm_buf_putc(buf, *p);
	}
	return rc ? rc : sm_buf_putc(buf, '\'');
}

int sm_git_ssh_command(const char *key_path, const char *known_hosts, int accept_new,
		       char **out)
{
	sm_buf buf = SM_BUF_INIT(64 * 1024);
	int rc;

	*out = NULL;
	if (known_hosts && strpbrk(known_hosts, "\"\\"))
		return sm_error_set(SM_EINVALID, "known_hosts path '%s' contains '\"' or '\\', which "
				    "ssh cannot read in an option; move the file", known_hosts);
	rc = sm_buf_printf(&buf, "ssh -o BatchMode=yes -o StrictHostKeyChecking=%s "
			   "-o ConnectTimeout=30", accept_new ? "accept-new" : "yes");
	if (!rc && key_path) {
		rc = sm_buf_puts(&buf, " -i ");
		if (!rc)
			rc = put_quoted(&buf, key_path, 1);
		if (!rc)
			rc = sm_buf_puts(&buf, " -o IdentitiesOnly=yes");
	}
	if (!rc && known_hosts) {
		/* ssh splits this value at spaces unless it is in double quotes */
		char *option = sm_asprintf("UserKnownHostsFile=\"%s\"", known_hosts);

		rc = option ? sm_buf_puts(&buf, " -o ") : SM_ENOMEM;
		if (!rc)
			rc = put_quoted(&buf, option, 1);
		free(option);
	}
	if (rc) {
		sm_buf_release(&buf);
		return rc;
	}
	*out = sm_buf_take(&buf);
	return 0;
}

/* Replaces every occurrence of `secret` in `*text` with "***". */
static int mask(char **text, const char *secret)
{
	size_t len = strlen(secret);
	sm_buf out = SM_BUF_INIT(0);
	const char *from = *text, *hit;

	if (len == 0 || !strstr(*text, secret))
		return 0;
	while ((hit = strstr(from, secret)) != NULL) {
		if (sm_buf_put(&out, from, (size_t)(hit - from)) != 0 || sm_buf_puts(&out, "***") != 0) {
			sm_buf_release(&out);
			return SM_ENOMEM;
		}
		from = hit + len;
	}
	if (sm_buf_puts(&out, from) != 0) {
		sm_buf_release(&out);
		return SM_ENOMEM;
	}
	explicit_bzero(*text, strlen(*text));
	free(*text);
	*text = sm_buf_take(&out);
	return 0;
}

/* Masks the password of "scheme://user:password@host" forms in place. */
static void mask_url_passwords(char *text)
{
	char *p = text;

	while ((p = strstr(p, "://")) != NULL) {
		char *start = p + 3;
		size_t span = strcspn(start, "/ \t\r\n'\"");
		char *at = memrchr(start, '@', span);
		char *colon = at ? memchr(start, ':', (size_t)(at - start)) : NULL;

		if (colon && at - colon > 1) {
			memcpy(colon + 1, "***", 3);
			memmove(colon + 4, at, strlen(at) + 1);
		}
		p = start;
	}
}

/* Masks what follows "Authorization: <scheme> " up to the end of the line. */
static void mask_authorization(char *text)
{
	char *p = text;

	while ((p = strcasestr(p, "authorization:")) != NULL) {
		char *value = p + 14;
		size_t end;

		value += strspn(value, " \t");
		value += strcspn(value, " \t\r\n"); /* the scheme, e.g. Basic */
		value += strspn(value, " \t");
		end = strcspn(value, "\r\n");
		if (end > 0) {
			memcpy(value, "***", end < 3 ? end : 3);
			if (end > 3)
				memmove(value + 3, value + end, strlen(value + end) + 1);
		}
		p = value;
	}
}

#define ERROR_LINE_MAX 500

char *sm_git_error_line(const char *text, const char *const *secrets, size_t nsecrets)
{
	sm_buf out = SM_BUF_INIT(0);
	char *copy = sm_strdup(text ? text : ""), *line, *save = NULL;
	size_t copy_len;

	if (!copy)
		return NULL;
	for (size_t i = 0; i < nsecrets; i++) {
		if (secrets[i] && mask(&copy, secrets[i]) != 0) {
			explicit_bzero(copy, strlen(copy));
			free(copy);
			return NULL;
		}
	}
	mask_url_passwords(copy);
	mask_authorization(copy);
	copy_len = strlen(copy);
	for (line = strtok_r(copy, "\r\n", &save); line; line = strtok_r(NULL, "\r\n", &save)) {
		while (*line == ' ' || *line == '\t')
			line++;
		if (!*line || strncmp(line, "hint:", 5) == 0)
			continue;
		if (out.len)
			sm_buf_puts(&out, "; ");
		for (char *p = line; *p; p++)
			if ((unsigned char)*p >= ' ' && *p != 0x7f)
				sm_buf_putc(&out, *p);
		if (out.len > ERROR_LINE_MAX)
			break;
	}
	explicit_bzero(copy, copy_len);
	free(copy);
	if (out.len > ERROR_LINE_MAX) {
		out.len = ERROR_LINE_MAX;
		out.data[out.len] = '\0';
		sm_buf_puts(&out, "...");
	}
	if (!out.len)
		sm_buf_puts(&out, "no error output");
	return sm_buf_take(&out);
}

int sm_git_commit_message(char *out, size_t size, const char *verb, const char *bundle_id)
{
	int n = snprintf(out, size, "%s bundle %s", verb, bundle_id);

	if (n < 0 || (size_t)n >= size)
		return sm_error_set(SM_EINVALID, "commit message for bundle '%s' is too long", bundle_id);
	return 0;
}
