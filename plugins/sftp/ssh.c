/*
 * The SSH side of the SFTP connector: TCP connect with a timeout, host
 * key check against known_hosts, authentication with the vault's stored
 * key or password, and the SFTP subsystem.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sftp_internal.h"

/* Largest known_hosts file read, in bytes. */
#define KNOWN_HOSTS_MAX (16u * 1024 * 1024)

void sftp_notify(const sftp_vault *sv, sm_log_level level, const char *fmt, ...)
{
	char text[1024];
	va_list ap;

	if (!sv->callbacks || !sv->callbacks->message)
		return;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	sv->callbacks->message(level, text, sv->callbacks->payload);
}

char *sftp_asprintf(const char *fmt, ...)
{
	char *out = NULL;
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&out, fmt, ap);
	va_end(ap);
	if (n < 0) {
		sm_error_set(SM_ENOMEM, "out of memory");
		return NULL;
	}
	return out;
}

char *sftp_base64(const unsigned char *data, size_t len, int pad)
{
	char *out = malloc(4 * ((len + 2) / 3) + 1);
	int n;

	if (!out)
		return NULL;
	n = EVP_EncodeBlock((unsigned char *)out, data, (int)len);
	while (!pad && n > 0 && out[n - 1] == '=')
		n--;
	out[n] = '\0';
	return out;
}

int sftp_fail(sftp_vault *sv, const char *what, const char *path)
{
	char *text = NULL;
	int err = sv->session ? libssh2_session_last_error(sv->session, &text, NULL, 0) : 0;
	unsigned long status;

	if (err == LIBSSH2_ERROR_SFTP_PROTOCOL && sv->sftp) {
		status = libssh2_sftp_last_error(sv->sftp);
		switch (status) {
		case LIBSSH2_FX_NO_SUCH_FILE:
		case LIBSSH2_FX_NO_SUCH_PATH:
			return sm_error_set(SM_ENOTFOUND, "cannot %s '%s' on '%s': no such file",
					    what, path, sv->host);
		case LIBSSH2_FX_PERMISSION_DENIED:
		case LIBSSH2_FX_WRITE_PROTECT:
			return sm_error_set(SM_EREADONLY, "cannot %s '%s' on '%s': permission denied",
					    what, path, sv->host);
		case LIBSSH2_FX_FILE_ALREADY_EXISTS:
			return sm_error_set(SM_EEXISTS, "cannot %s '%s' on '%s': it already exists",
					    what, path, sv->host);
		case LIBSSH2_FX_NO_SPACE_ON_FILESYSTEM:
		case LIBSSH2_FX_QUOTA_EXCEEDED:
			return sm_error_set(SM_EIO, "cannot %s '%s' on '%s': no space left on the server",
					    what, path, sv->host);
		default:
			return sm_error_set(SM_EIO, "cannot %s '%s' on '%s': SFTP status %lu",
					    what, path, sv->host, status);
		}
	}
	if (err == LIBSSH2_ERROR_TIMEOUT)
		return sm_error_set(SM_ENETWORK, "cannot %s '%s' on '%s': timed out after %d ms; "
				    "raise 'timeout' of vault '%s' if the server is slow", what, path,
				    sv->host, sv->timeout_ms, sv->config->name);
	return sm_error_set(SM_ENETWORK, "cannot %s '%s' on '%s': %s", what, path, sv->host,
			    text && *text ? text : "connection failed");
}

/* Connects a TCP socket to host:port, giving up after the vault's timeout. */
static int tcp_connect(sftp_vault *sv)
{
	struct addrinfo hints = { 0 }, *list = NULL, *ai;
	char port[16];
	int fd = -1, rc, last_errno = 0;

	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	snprintf(port, sizeof(port), "%d", sv->port);
	rc = getaddrinfo(sv->host, port, &hints, &list);
	if (rc != 0)
		return sm_error_set(SM_ENETWORK, "cannot resolve host '%s' of vault '%s': %s",
				    sv->host, sv->config->name, gai_strerror(rc));

	for (ai = list; ai; ai = ai->ai_next) {
		struct pollfd pfd;
		socklen_t len = sizeof(last_errno);
		int flags, one = 1;

		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd < 0) {
			last_errno = errno;
			continue;
		}
		flags = fcntl(fd, F_GETFL);
		fcntl(fd, F_SETFL, flags | O_NONBLOCK);
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0 && errno != EINPROGRESS) {
			last_errno = errno;
			close(fd);
			fd = -1;
			continue;
		}
		pfd.fd = fd;
		pfd.events = POLLOUT;
		rc = poll(&pfd, 1, sv->timeout_ms);
		if (rc <= 0) {
			last_errno = rc == 0 ? ETIMEDOUT : errno;
		} else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &last_errno, &len) != 0) {
			last_errno = errno;
		}
		if (last_errno) {
			close(fd);
			fd = -1;
			continue;
		}
		fcntl(fd, F_SETFL, flags);
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		break;
	}
	freeaddrinfo(list);
	if (fd < 0)
		return sm_error_set_errno(SM_ENETWORK, last_errno ? last_errno : ECONNREFUSED,
					  "cannot connect to '%s' port %d of vault '%s'",
					  sv->host, sv->port, sv->config->name);
	sv->sock = fd;
	return 0;
}

/* Reads a whole local file; SM_ENOTFOUND when it does not exist. */
static int read_local_file(const char *path, char **out, size_t *len)
{
	FILE *f;
	char *data = NULL;
	size_t cap = 0, n = 0;
	int rc = 0;

	*out = NULL;
	*len = 0;
	f = fopen(path, "re");
	if (!f) {
		if (errno == ENOENT)
			return SM_ENOTFOUND;
		return sm_error_set_errno(SM_EIO, errno, "cannot read '%s'", path);
	}
	for (;;) {
		size_t got;

		if (n + 4096 + 1 > cap) {
			char *grown;

			cap = cap ? cap * 2 : 8192;
			if (cap > KNOWN_HOSTS_MAX + 8192) {
				rc = sm_error_set(SM_EINVALID, "'%s' is larger than %u bytes", path,
						  KNOWN_HOSTS_MAX);
				goto done;
			}
			grown = realloc(data, cap);
			if (!grown) {
				rc = sm_error_set(SM_ENOMEM, "out of memory");
				goto done;
			}
			data = grown;
		}
		got = fread(data + n, 1, cap - n - 1, f);
		n += got;
		if (got == 0)
			break;
	}
	if (ferror(f))
		rc = sm_error_set_errno(SM_EIO, errno, "cannot read '%s'", path);
done:
	fclose(f);
	if (rc) {
		free(data);
		return rc;
	}
	if (!data && !(data = malloc(1)))
		return sm_error_set(SM_ENOMEM, "out of memory");
	data[n] = '\0';
	*out = data;
	*len = n;
	return 0;
}

/* Host key types: libssh2's session type, the known_hosts bit and the name. */
static const struct key_type {
	int session_type;
	int knownhost_type;
	const char *name;
} key_types[] = {
	{ LIBSSH2_HOSTKEY_TYPE_RSA, LIBSSH2_KNOWNHOST_KEY_SSHRSA, "ssh-rsa" },
	{ LIBSSH2_HOSTKEY_TYPE_DSS, LIBSSH2_KNOWNHOST_KEY_SSHDSS, "ssh-dss" },
	{ LIBSSH2_HOSTKEY_TYPE_ECDSA_256, LIBSSH2_KNOWNHOST_KEY_ECDSA_256, "ecdsa-sha2-nistp256" },
	{ LIBSSH2_HOSTKEY_TYPE_ECDSA_384, LIBSSH2_KNOWNHOST_KEY_ECDSA_384, "ecdsa-sha2-nistp384" },
	{ LIBSSH2_HOSTKEY_TYPE_ECDSA_521, LIBSSH2_KNOWNHOST_KEY_ECDSA_521, "ecdsa-sha2-nistp521" },
	{ LIBSSH2_HOSTKEY_TYPE_ED25519, LIBSSH2_KNOWNHOST_KEY_ED25519, "ssh-ed25519" },
};

static const struct key_type *find_key_type(int session_type)
{
	for (size_t i = 0; i < sizeof(key_types) / sizeof(key_types[0]); i++)
		if (key_types[i].session_type == session_type)
			return &key_types[i];
	return NULL;
}

/* The name known_hosts uses for the server: "host", or "[host]:port" off port 22. */
static char *known_hosts_name(const sftp_vault *sv)
{
	if (sv->port == 22)
		return sftp_asprintf("%s", sv->host);
	return sftp_asprintf("[%s]:%d", sv->host, sv->port);
}

/* Writes `text` as the new known_hosts: temporary file, fsync, rename. */
static int write_known_hosts(const char *path, const char *text, size_t len, mode_t mode)
{
	char *tmp = sftp_asprintf("%s.tmp-XXXXXX", path), *dir = NULL, *slash;
	int fd = -1, rc = 0;
	size_t done = 0;

	if (!tmp)
		return SM_ENOMEM;
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0) {
		rc = sm_error_set_errno(SM_EIO, errno, "cannot create a temporary file beside '%s'",
					path);
		goto done;
	}
	while (done < len) {
		ssize_t n = write(fd, text + done, len - done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = sm_error_set_errno(SM_EIO, errno, "cannot write '%s'", tmp);
			goto done;
		}
		done += (size_t)n;
	}
	if (fchmod(fd, mode) != 0 || fsync(fd) != 0) {
		rc = sm_error_set_errno(SM_EIO, errno, "cannot write '%s'", tmp);
		goto done;
	}
	if (rename(tmp, path) != 0) {
		rc = sm_error_set_errno(SM_EIO, errno, "cannot replace '%s'", path);
		goto done;
	}
	dir = strdup(path);
	slash = dir ? strrchr(dir, '/') : NULL;
	if (slash) {
		int dfd;

		*slash = '\0';
		dfd = open(*dir ? dir : "/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dfd >= 0) {
			fsync(dfd);
			close(dfd);
		}
	}
	free(tmp);
	tmp = NULL;
done:
	if (fd >= 0)
		close(fd);
	if (tmp) {
		unlink(tmp);
		free(tmp);
	}
	free(dir);
	return rc;
}

/*
 * Appends the server's key to known_hosts. The file is read again right
 * before the write, so entries another program added meanwhile survive.
 */
static int trust_host_key(sftp_vault *sv, const struct key_type *type, const char *key,
			  size_t key_len, const char *fingerprint)
{
	char *old = NULL, *name = NULL, *encoded = NULL, *text = NULL, *dir = NULL, *slash;
	size_t old_len = 0;
	mode_t mode = 0644;
	struct stat st;
	int rc;

	/* OpenSSH creates ~/.ssh with mode 0700; do the same when it is missing */
	dir = strdup(sv->known_hosts);
	if (!dir)
		return sm_error_set(SM_ENOMEM, "out of memory");
	slash = strrchr(dir, '/');
	if (slash && slash != dir) {
		*slash = '\0';
		if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
			rc = sm_error_set_errno(SM_EIO, errno, "cannot create directory '%s'", dir);
			goto done;
		}
	}
	rc = read_local_file(sv->known_hosts, &old, &old_len);
	if (rc == SM_ENOTFOUND)
		rc = 0;
	if (rc)
		goto done;
	if (stat(sv->known_hosts, &st) == 0)
		mode = st.st_mode & 07777;
	name = known_hosts_name(sv);
	encoded = sftp_base64((const unsigned char *)key, key_len, 1);
	if (!name || !encoded) {
		rc = sm_error_set(SM_ENOMEM, "out of memory");
		goto done;
	}
	text = sftp_asprintf("%s%s%s %s %s\n", old ? old : "",
			     old_len && old[old_len - 1] != '\n' ? "\n" : "", name, type->name, encoded);
	if (!text) {
		rc = SM_ENOMEM;
		goto done;
	}
	rc = write_known_hosts(sv->known_hosts, text, strlen(text), mode);
	if (!rc)
		sftp_notify(sv, SM_LOG_WARN, "added the %s host key of '%s' (SHA256:%s) to '%s'",
			    type->name, name, fingerprint, sv->known_hosts);
done:
	free(dir);
	free(old);
	free(name);
	free(encoded);
	free(text);
	return rc;
}

/*
 * Loads known_hosts line by line, so one line in a format libssh2 does not
 * read (a newer key type, a marker) does not hide the lines after it.
 */
static int load_known_hosts(sftp_vault *sv, LIBSSH2_KNOWNHOSTS *hosts)
{
	char *text = NULL, *line, *next;
	size_t len;
	int rc = read_local_file(sv->known_hosts, &text, &len);

	if (rc == SM_ENOTFOUND)
		return 0;
	if (rc)
		return rc;
	for (line = text; line && *line; line = next) {
		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		if (*line && *line != '#')
			libssh2_knownhost_readline(hosts, line, strlen(line),
						   LIBSSH2_KNOWNHOST_FILE_OPENSSH);
	}
	free(text);
	return 0;
}

/* Host key algorithms that verify a key of a known_hosts key type. */
static const char *algorithms_of(int knownhost_type)
{
	switch (knownhost_type) {
	case LIBSSH2_KNOWNHOST_KEY_SSHRSA: return "rsa-sha2-512,rsa-sha2-256,ssh-rsa";
	case LIBSSH2_KNOWNHOST_KEY_SSHDSS: return "ssh-dss";
	case LIBSSH2_KNOWNHOST_KEY_ECDSA_256: return "ecdsa-sha2-nistp256";
	case LIBSSH2_KNOWNHOST_KEY_ECDSA_384: return "ecdsa-sha2-nistp384";
	case LIBSSH2_KNOWNHOST_KEY_ECDSA_521: return "ecdsa-sha2-nistp521";
	case LIBSSH2_KNOWNHOST_KEY_ED25519: return "ssh-ed25519";
	default: return NULL;
	}
}

/* Returns 1 when the comma-separated `list` contains `name`. */
static int list_has(const char *list, const char *name)
{
	size_t len = strlen(name);

	for (const char *p = list; p && *p; p = strchr(p, ','), p = p ? p + 1 : NULL)
		if (strncmp(p, name, len) == 0 && (p[len] == ',' || p[len] == '\0'))
			return 1;
	return 0;
}

/*
 * Asks first for the host key types that known_hosts has for this server,
 * as OpenSSH's client does. Otherwise libssh2 negotiates its own first
 * choice, and a server known by another of its keys looks unknown. Only
 * entries with a plain host name are seen; hashed names are not.
 */
static void prefer_known_key_types(sftp_vault *sv)
{
	LIBSSH2_KNOWNHOSTS *hosts = libssh2_knownhost_init(sv->session);
	struct libssh2_knownhost *entry, *prev = NULL;
	const char **supported = NULL;
	char *name = known_hosts_name(sv), pref[1024] = "";
	size_t used = 0;
	int nsupported;

	if (!hosts || !name || load_known_hosts(sv, hosts) != 0)
		goto done;
	nsupported = libssh2_session_supported_algs(sv->session, LIBSSH2_METHOD_HOSTKEY, &supported);
	if (nsupported <= 0)
		goto done;
	while (libssh2_knownhost_get(hosts, &entry, prev) == 0) {
		const char *algorithms = algorithms_of(entry->typemask & LIBSSH2_KNOWNHOST_KEY_MASK);
		char copy[128], *save = NULL;

		prev = entry;
		if (!entry->name || !algorithms || strcmp(entry->name, name) != 0)
			continue;
		snprintf(copy, sizeof(copy), "%s", algorithms);
		for (char *alg = strtok_r(copy, ",", &save); alg; alg = strtok_r(NULL, ",", &save)) {
			int n;

			if (list_has(pref, alg))
				continue;
			for (n = 0; n < nsupported && strcmp(supported[n], alg) != 0; n++)
				;
			if (n == nsupported || used + strlen(alg) + 2 >= sizeof(pref))
				continue;
			used += (size_t)snprintf(pref + used, sizeof(pref) - used, "%s%s", used ? "," : "", alg);
		}
	}
	if (!used)
		goto done;
	/* the other types stay, after these, for a server that changed its keys */
	for (int n = 0; n < nsupported; n++) {
		if (list_has(pref, supported[n]) || used + strlen(supported[n]) + 2 >= sizeof(pref))
			continue;
		used += (size_t)snprintf(pref + used, sizeof(pref) - used, ",%s", supported[n]);
	}
	libssh2_session_method_pref(sv->session, LIBSSH2_METHOD_HOSTKEY, pref);
done:
	if (supported)
		libssh2_free(sv->session, supported);
	if (hosts)
		libssh2_knownhost_free(hosts);
	free(name);
}

/*
 * Ciphers and MACs to offer, in order of preference. Those this libssh2
 * lacks are dropped. libssh2 1.10 has neither the AEAD ciphers nor the
 * encrypt-then-MAC variants, so it settles on aes128-ctr with
 * hmac-sha2-256. hmac-sha2-256 comes first because processors with SHA-256
 * instructions hash it about twice as fast as SHA-512 (OpenSSL 3.0 on an
 * AMD EPYC: 1.77 against 0.87 GB/s). CBC modes, arcfour, 3DES, Blowfish,
 * CAST, SHA-1 and MD5 are never offered, and compression stays off
 * (libssh2's default).
 */
static const char cipher_order[] = "aes128-gcm@openssh.com,aes256-gcm@openssh.com,"
	"chacha20-poly1305@openssh.com,aes128-ctr,aes192-ctr,aes256-ctr";
static const char mac_order[] = "hmac-sha2-256-etm@openssh.com,hmac-sha2-512-etm@openssh.com,"
	"hmac-sha2-256,hmac-sha2-512";

/*
 * Sets the client-to-server and server-to-client preference of one kind of
 * algorithm to the entries of `order` that libssh2 supports.
 */
static int offer_methods(sftp_vault *sv, int cs, int sc, const char *kind, const char *order)
{
	const char **supported = NULL;
	/* the result is a subset of `order`, so it fits in a copy's size */
	char *copy = strdup(order), *pref = calloc(1, strlen(order) + 1), *save = NULL;
	size_t used = 0;
	int nsupported, rc = 0;

	if (!copy || !pref) {
		rc = sm_error_set(SM_ENOMEM, "out of memory");
		goto done;
	}
	nsupported = libssh2_session_supported_algs(sv->session, cs, &supported);
	for (char *alg = strtok_r(copy, ",", &save); alg; alg = strtok_r(NULL, ",", &save)) {
		int n;

		for (n = 0; n < nsupported && strcmp(supported[n], alg) != 0; n++)
			;
		if (n == nsupported)
			continue;
		if (used)
			pref[used++] = ',';
		strcpy(pref + used, alg);
		used += strlen(alg);
	}
	if (!used) {
		rc = sm_error_set(SM_EUNSUPPORTED, "libssh2 %s supports none of the %s this connector "
				  "accepts (%s); install a libssh2 built with OpenSSL", libssh2_version(0),
				  kind, order);
		goto done;
	}
	if (libssh2_session_method_pref(sv->session, cs, pref) != 0 ||
	    libssh2_session_method_pref(sv->session, sc, pref) != 0)
		rc = sftp_fail(sv, "set the SSH algorithms for", sv->host);
done:
	if (supported)
		libssh2_free(sv->session, supported);
	free(copy);
	free(pref);
	return rc;
}

/* Checks the server's host key against known_hosts; SM_EAUTH when not trusted. */
static int check_host_key(sftp_vault *sv)
{
	LIBSSH2_KNOWNHOSTS *hosts = NULL;
	struct libssh2_knownhost *entry = NULL;
	const struct key_type *type;
	const char *key, *hash;
	char *fingerprint = NULL, *name = NULL;
	size_t key_len;
	int key_type, result, rc;

	key = libssh2_session_hostkey(sv->session, &key_len, &key_type);
	hash = libssh2_hostkey_hash(sv->session, LIBSSH2_HOSTKEY_HASH_SHA256);
	type = find_key_type(key_type);
	if (!key || !hash || !type)
		return sm_error_set(SM_EAUTH, "server '%s' of vault '%s' sent a host key of a type "
				    "this connector cannot check", sv->host, sv->config->name);
	fingerprint = sftp_base64((const unsigned char *)hash, 32, 0);
	name = known_hosts_name(sv);
	hosts = libssh2_knownhost_init(sv->session);
	if (!fingerprint || !name || !hosts) {
		rc = sm_error_set(SM_ENOMEM, "out of memory");
		goto done;
	}
	rc = load_known_hosts(sv, hosts);
	if (rc)
		goto done;

	result = libssh2_knownhost_checkp(hosts, sv->host, sv->port, key, key_len,
					  LIBSSH2_KNOWNHOST_TYPE_PLAIN | LIBSSH2_KNOWNHOST_KEYENC_RAW |
					  type->knownhost_type, &entry);
	switch (result) {
	case LIBSSH2_KNOWNHOST_CHECK_MATCH:
		rc = 0;
		break;
	case LIBSSH2_KNOWNHOST_CHECK_MISMATCH:
		rc = sm_error_set(SM_EAUTH, "WARNING: the %s host key of '%s' has CHANGED (now "
				  "SHA256:%s) and does not match '%s'; this may be an attack: do not "
				  "connect until the server's administrator confirms the new key, then "
				  "remove the old line from that file", type->name, name, fingerprint,
				  sv->known_hosts);
		break;
	case LIBSSH2_KNOWNHOST_CHECK_NOTFOUND:
		if (sv->accept_new_host_keys) {
			rc = trust_host_key(sv, type, key, key_len, fingerprint);
			break;
		}
		rc = sm_error_set(SM_EAUTH, "host key of '%s' is unknown (%s SHA256:%s); compare the "
				  "fingerprint with the server's, then add the key to '%s' "
				  "(ssh-keyscan -p %d %s >> '%s') or set accept_new_host_keys = true "
				  "for vault '%s'", name, type->name, fingerprint, sv->known_hosts,
				  sv->port, sv->host, sv->known_hosts, sv->config->name);
		break;
	default:
		rc = sm_error_set(SM_EAUTH, "cannot check the host key of '%s' against '%s'",
				  name, sv->known_hosts);
		break;
	}
done:
	if (hosts)
		libssh2_knownhost_free(hosts);
	free(fingerprint);
	free(name);
	return rc;
}

/* Answers every keyboard-interactive prompt with the stored password. */
static void answer_prompts(const char *name, int name_len, const char *instruction,
			   int instruction_len, int num_prompts,
			   const LIBSSH2_USERAUTH_KBDINT_PROMPT *prompts,
			   LIBSSH2_USERAUTH_KBDINT_RESPONSE *responses, void **abstract)
{
	const char *password = *abstract;

	for (int i = 0; i < num_prompts && password; i++) {
		responses[i].text = strdup(password);
		responses[i].length = responses[i].text ? (unsigned int)strlen(password) : 0;
	}
}

/* Authenticates with the stored key, then the stored password. */
static int authenticate(sftp_vault *sv)
{
	sm_cred_opts opts = { 0 };
	sm_credentials *creds = NULL;
	const char *user, *key, *password;
	char *methods, *pub = NULL;
	void **abstract;
	int rc, tried = 0;

	opts.callbacks = sv->callbacks;
	rc = sm_credentials_lookup(&creds, sv->config->name, &opts);
	if (rc)
		return rc;
	user = sv->user ? sv->user : creds->fields[SM_CRED_USERNAME];
	key = creds->fields[SM_CRED_SSH_KEY];
	password = creds->fields[SM_CRED_PASSWORD];
	if (!user || !*user) {
		rc = sm_error_set(SM_EAUTH, "vault '%s' has no user name: put it in the location "
				  "(sftp://USER@%s/...) or run 'skillmeat vault auth %s --username USER'",
				  sv->config->name, sv->host, sv->config->name);
		goto done;
	}
	if (!key && !password) {
		rc = sm_error_set(SM_EAUTH, "vault '%s' has no credentials; run 'skillmeat vault auth "
				  "%s --ssh-key FILE' or '... --password'", sv->config->name,
				  sv->config->name);
		goto done;
	}

	methods = libssh2_userauth_list(sv->session, user, (unsigned int)strlen(user));
	if (!methods) {
		if (libssh2_userauth_authenticated(sv->session))
			goto done;
		rc = sftp_fail(sv, "authenticate as", user);
		goto done;
	}
	if (key && strstr(methods, "publickey")) {
		struct stat st;

		if (stat(key, &st) != 0) {
			rc = sm_error_set_errno(SM_EAUTH, errno, "cannot read SSH key '%s' of vault '%s'",
						key, sv->config->name);
			goto done;
		}
		pub = sftp_asprintf("%s.pub", key);
		if (!pub) {
			rc = SM_ENOMEM;
			goto done;
		}
		tried = 1;
		if (libssh2_userauth_publickey_fromfile_ex(sv->session, user, (unsigned int)strlen(user),
							   stat(pub, &st) == 0 ? pub : NULL, key,
							   NULL) == 0)
			goto done;
	}
	if (password && strstr(methods, "password")) {
		tried = 1;
		if (libssh2_userauth_password_ex(sv->session, user, (unsigned int)strlen(user),
						 password, (unsigned int)strlen(password), NULL) == 0)
			goto done;
	}
	if (password && strstr(methods, "keyboard-interactive")) {
		tried = 1;
		abstract = libssh2_session_abstract(sv->session);
		*abstract = (void *)password;
		rc = libssh2_userauth_keyboard_interactive_ex(sv->session, user,
							      (unsigned int)strlen(user),
							      answer_prompts);
		*abstract = NULL;
		if (rc == 0)
			goto done;
	}
	rc = sm_error_set(SM_EAUTH, "server '%s' %s user '%s' of vault '%s' (it offers: %s); check "
			  "'skillmeat vault auth %s'", sv->host,
			  tried ? "rejected the credentials of" : "accepts no stored credential of",
			  user, sv->config->name, methods, sv->config->name);
done:
	free(pub);
	sm_credentials_free(creds);
	return rc;
}

int sftp_connect(sftp_vault *sv)
{
	int rc = tcp_connect(sv);

	if (rc)
		return rc;
	sv->session = libssh2_session_init();
	if (!sv->session)
		return sm_error_set(SM_ENOMEM, "cannot create an SSH session");
	libssh2_session_set_blocking(sv->session, 1);
	libssh2_session_set_timeout(sv->session, sv->timeout_ms);
	prefer_known_key_types(sv);
	if ((rc = offer_methods(sv, LIBSSH2_METHOD_CRYPT_CS, LIBSSH2_METHOD_CRYPT_SC, "ciphers",
				 cipher_order)) != 0 ||
	    (rc = offer_methods(sv, LIBSSH2_METHOD_MAC_CS, LIBSSH2_METHOD_MAC_SC, "MACs", mac_order)) != 0)
		return rc;
	if (libssh2_session_handshake(sv->session, sv->sock) != 0)
		return sftp_fail(sv, "start an SSH session with", sv->host);
	sftp_notify(sv, SM_LOG_DEBUG, "connected to '%s' port %d: cipher %s, MAC %s", sv->host, sv->port,
		    libssh2_session_methods(sv->session, LIBSSH2_METHOD_CRYPT_CS),
		    libssh2_session_methods(sv->session, LIBSSH2_METHOD_MAC_CS));
	if ((rc = check_host_key(sv)) != 0)
		return rc;
	if ((rc = authenticate(sv)) != 0)
		return rc;
	sv->sftp = libssh2_sftp_init(sv->session);
	if (!sv->sftp)
		return sftp_fail(sv, "start the SFTP subsystem on", sv->host);
	return 0;
}

void sftp_disconnect(sftp_vault *sv)
{
	if (sv->sftp)
		libssh2_sftp_shutdown(sv->sftp);
	sv->sftp = NULL;
	if (sv->session) {
		libssh2_session_disconnect(sv->session, "closing");
		libssh2_session_free(sv->session);
	}
	sv->session = NULL;
	if (sv->sock >= 0)
		close(sv->sock);
	sv->sock = -1;
}
