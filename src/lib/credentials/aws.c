/*
 * The AWS credentials chain: the vault's stored credentials, environment
 * variables, then the shared files, the container endpoint and the
 * instance metadata service (aws_profile.c and aws_http.c).
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "credentials/aws.h"
#include "credentials/credentials_internal.h"
#include "skillmeat/credentials.h"
#include "util/util.h"

char *sm_aws_secret_alloc(size_t size)
{
	char *p;

	if (sodium_init() < 0) {
		sm_error_set(SM_ERROR, "cannot initialise libsodium");
		return NULL;
	}
	p = sodium_malloc(size + 1);
	if (!p) {
		sm_error_set(SM_ENOMEM, "out of memory");
		return NULL;
	}
	memset(p, 0, size + 1);
	return p;
}

void sm_aws_credentials_clear(sm_aws_credentials *creds)
{
	if (!creds)
		return;
	sm_secret_free(creds->access_key_id);
	sm_secret_free(creds->secret_access_key);
	sm_secret_free(creds->session_token);
	sodium_memzero(creds, sizeof(*creds));
}

int sm_aws_credentials_expiring(const sm_aws_credentials *creds, int margin_seconds)
{
	if (!creds || creds->expires_at == 0)
		return 0;
	return creds->expires_at - (long long)time(NULL) <= (long long)margin_seconds;
}

static int read_digits(const char **p, int count, int *out)
{
	int v = 0;

	for (int i = 0; i < count; i++) {
		if ((*p)[i] < '0' || (*p)[i] > '9')
			return -1;
		v = v * 10 + ((*p)[i] - '0');
	}
	*p += count;
	*out = v;
	return 0;
}

int sm_aws_parse_time(const char *text, long long *out)
{
	const char *p = text;
	struct tm tm = { 0 };
	int year, month, day, hour, minute, second, offset = 0;
	time_t t;

	if (!text || read_digits(&p, 4, &year) || *p++ != '-' || read_digits(&p, 2, &month) ||
	    *p++ != '-' || read_digits(&p, 2, &day) || (*p != 'T' && *p != 't' && *p != ' '))
		return SM_EINVALID;
	p++;
	if (read_digits(&p, 2, &hour) || *p++ != ':' || read_digits(&p, 2, &minute) ||
	    *p++ != ':' || read_digits(&p, 2, &second))
		return SM_EINVALID;
	if (*p == '.') {
		p++;
		if (*p < '0' || *p > '9')
			return SM_EINVALID;
		while (*p >= '0' && *p <= '9')
			p++;
	}
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		int sign = *p++ == '-' ? -1 : 1, oh, om;

		if (read_digits(&p, 2, &oh))
			return SM_EINVALID;
		if (*p == ':')
			p++;
		if (read_digits(&p, 2, &om) || oh > 23 || om > 59)
			return SM_EINVALID;
		offset = sign * (oh * 3600 + om * 60);
	} else {
		return SM_EINVALID; /* a time without a zone is ambiguous */
	}
	if (*p != '\0' || month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 ||
	    minute > 59 || second > 60)
		return SM_EINVALID;
	tm.tm_year = year - 1900;
	tm.tm_mon = month - 1;
	tm.tm_mday = day;
	tm.tm_hour = hour;
	tm.tm_min = minute;
	tm.tm_sec = second;
	t = timegm(&tm);
	if (t == (time_t)-1 || tm.tm_mday != day)
		return SM_EINVALID; /* timegm() normalises 31 April to 1 May */
	*out = (long long)t - offset;
	return 0;
}

int sm_aws_credentials_from_json(const char *text, size_t len, const char *what,
				 int need_version, sm_aws_credentials *out)
{
	enum { VERSION, KEY_ID, SECRET, TOKEN, SESSION_TOKEN, EXPIRATION, NMEMBERS };
	static const char *const names[NMEMBERS] = {
		"Version", "AccessKeyId", "SecretAccessKey", "Token", "SessionToken", "Expiration",
	};
	char *values[NMEMBERS];
	long long expires_at = 0;
	int rc;

	rc = sm_aws_json_members(text, len, names, values, NMEMBERS);
	if (rc == SM_EINVALID)
		return sm_error_set(rc, "%s returned invalid JSON", what);
	if (rc)
		return rc;
	if (need_version && (!values[VERSION] || strcmp(values[VERSION], "1") != 0)) {
		rc = sm_error_set(SM_EINVALID, "%s returned JSON without \"Version\": 1", what);
		goto done;
	}
	if (!values[KEY_ID] || !values[KEY_ID][0]) {
		rc = sm_error_set(SM_EAUTH, "%s returned no AccessKeyId", what);
		goto done;
	}
	if (!values[SECRET] || !values[SECRET][0]) {
		rc = sm_error_set(SM_EAUTH, "%s returned no SecretAccessKey", what);
		goto done;
	}
	if (values[EXPIRATION] && sm_aws_parse_time(values[EXPIRATION], &expires_at)) {
		rc = sm_error_set(SM_EINVALID, "%s returned an Expiration that is not an ISO 8601 time",
				  what);
		goto done;
	}
	/* expired credentials would only fail later, at the storage, with a vaguer error */
	if (expires_at && expires_at <= (long long)time(NULL)) {
		rc = sm_error_set(SM_EAUTH, "%s returned credentials that expired at %s; renew "
				  "them at their source", what, values[EXPIRATION]);
		goto done;
	}
	if (values[TOKEN] && values[SESSION_TOKEN]) {
		rc = sm_error_set(SM_EINVALID, "%s returned both Token and SessionToken", what);
		goto done;
	}
	out->access_key_id = values[KEY_ID];
	out->secret_access_key = values[SECRET];
	out->session_token = values[TOKEN] ? values[TOKEN] : values[SESSION_TOKEN];
	if (out->session_token && !out->session_token[0]) {
		sm_secret_free(out->session_token);
		out->session_token = NULL;
	}
	values[KEY_ID] = values[SECRET] = values[TOKEN] = values[SESSION_TOKEN] = NULL;
	out->expires_at = expires_at;
done:
	for (int i = 0; i < NMEMBERS; i++)
		sm_secret_free(values[i]);
	return rc;
}

/* Sets out->source to "KIND 'NAME'", or to `fallback` when that does not fit. */
static void set_source(sm_aws_credentials *out, const char *kind, const char *name,
		       const char *fallback)
{
	int n = snprintf(out->source, sizeof(out->source), "%s '%s'", kind, name);

	if (n < 0 || (size_t)n >= sizeof(out->source))
		snprintf(out->source, sizeof(out->source), "%s", fallback);
}

/* Copies the three values into `out`; token may be NULL or empty. */
static int fill(sm_aws_credentials *out, const char *key_id, const char *secret, const char *token)
{
	out->access_key_id = sm_secret_dup(key_id, strlen(key_id));
	out->secret_access_key = sm_secret_dup(secret, strlen(secret));
	if (token && token[0])
		out->session_token = sm_secret_dup(token, strlen(token));
	if (!out->access_key_id || !out->secret_access_key || (token && token[0] && !out->session_token)) {
		sm_aws_credentials_clear(out);
		return SM_ENOMEM;
	}
	return 0;
}

static int from_stored(const sm_vault_config *config, const sm_callbacks *callbacks,
		       sm_aws_credentials *out)
{
	sm_cred_opts opts = { 0 };
	sm_credentials *stored = NULL;
	const char *key_id, *secret;
	int rc;

	opts.callbacks = callbacks;
	rc = sm_credentials_lookup(&stored, config->name, &opts);
	if (rc)
		return rc;
	key_id = stored->fields[SM_CRED_USERNAME];
	secret = stored->fields[SM_CRED_PASSWORD];
	if (!key_id && !secret) {
		rc = SM_AWS_NONE;
		goto done;
	}
	if (!key_id || !secret) {
		rc = sm_error_set(SM_EAUTH,
				  "stored credentials of vault '%s' have %s but no %s; run "
				  "'skillmeat vault auth %s' to store both",
				  config->name, key_id ? "an access key id (username)" : "a secret (password)",
				  key_id ? "secret access key (password)" : "access key id (username)",
				  config->name);
		goto done;
	}
	rc = fill(out, key_id, secret, stored->fields[SM_CRED_SESSION_TOKEN]);
	if (rc)
		goto done;
	set_source(out, "stored credentials of vault", config->name, "stored credentials");
done:
	sm_credentials_free(stored);
	return rc;
}

static const char *env_value(const char *name)
{
	const char *value = getenv(name);

	return value && value[0] ? value : NULL;
}

static int from_environment(sm_aws_credentials *out)
{
	const char *key_id = env_value("AWS_ACCESS_KEY_ID");
	const char *secret = env_value("AWS_SECRET_ACCESS_KEY");
	int rc;

	if (!key_id && !secret)
		return SM_AWS_NONE;
	if (!key_id)
		return sm_error_set(SM_EAUTH, "AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is "
				    "not; set both or unset both");
	if (!secret)
		return sm_error_set(SM_EAUTH, "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is "
				    "not; set both or unset both");
	rc = fill(out, key_id, secret, env_value("AWS_SESSION_TOKEN"));
	if (rc)
		return rc;
	snprintf(out->source, sizeof(out->source), "environment");
	return 0;
}

int sm_aws_credentials_resolve(const sm_vault_config *config, const sm_callbacks *callbacks,
			       sm_aws_credentials *out)
{
	char tried_profile[160] = "", tried_container[160] = "", tried_imds[160] = "";
	const char *profile, *setting;
	int explicit_profile = 1, rc;

	memset(out, 0, sizeof(*out));
	if (!config || !config->name)
		return sm_error_set(SM_EINVALID, "no vault configuration for AWS credentials");

	rc = from_stored(config, callbacks, out);
	if (rc != SM_AWS_NONE)
		goto done;

	rc = from_environment(out);
	if (rc != SM_AWS_NONE)
		goto done;

	setting = sm_vault_config_get(config, "profile");
	profile = setting && setting[0] ? setting : env_value("AWS_PROFILE");
	if (!profile) {
		profile = "default";
		explicit_profile = 0;
	}
	rc = sm_aws_profile_resolve(profile, explicit_profile, config, out, tried_profile,
				    sizeof(tried_profile));
	if (rc != SM_AWS_NONE)
		goto done;

	rc = sm_aws_container_resolve(out, tried_container, sizeof(tried_container));
	if (rc != SM_AWS_NONE)
		goto done;

	rc = sm_aws_imds_resolve(out, tried_imds, sizeof(tried_imds));
	if (rc != SM_AWS_NONE)
		goto done;

	rc = sm_error_set(SM_EAUTH,
			  "no AWS credentials found; tried stored credentials of vault '%s', "
			  "AWS_ACCESS_KEY_ID, %s, %s, %s; run 'skillmeat vault auth %s' or set "
			  "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
			  config->name, tried_profile, tried_container, tried_imds, config->name);
done:
	if (rc) {
		sm_aws_credentials_clear(out);
		return rc;
	}
	if (callbacks && callbacks->message) {
		char text[128];

		snprintf(text, sizeof(text), "using AWS credentials from %s", out->source);
		callbacks->message(SM_LOG_DEBUG, text, callbacks->payload);
	}
	return 0;
}
