/*
 * The sealed credentials file, $SKILLMEAT_HOME/credentials.
 *
 * Layout (integers little-endian):
 *   0   8  magic "SMCRED01"
 *   8   1  key mode: 1 = key file, 2 = passphrase
 *   9   7  zero
 *   key mode 2 only:
 *   16 16  Argon2id salt
 *   32  8  opslimit
 *   40  8  memlimit in bytes
 *   then 24 bytes of nonce and the XChaCha20-Poly1305 ciphertext (with its
 *   16-byte tag) of the records. Every byte before the ciphertext is
 *   authenticated as associated data, so changing the mode or the Argon2id
 *   parameters also fails the decryption.
 * A record is: vault name length (1 byte), vault name, field (1 byte),
 * value length (4 bytes), value.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "credentials/credentials_internal.h"
#include "skillmeat/config.h"
#include "util/util.h"

#define MAGIC "SMCRED01"
#define MODE_KEY_FILE 1
#define MODE_PASSPHRASE 2
#define FIXED_HEADER 16
#define PWHASH_HEADER 32
#define NONCE_BYTES crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
#define TAG_BYTES crypto_aead_xchacha20poly1305_ietf_ABYTES
#define KEY_BYTES crypto_aead_xchacha20poly1305_ietf_KEYBYTES
#define HEADER_MAX (FIXED_HEADER + PWHASH_HEADER + NONCE_BYTES)

/* Argon2id cost of new files: libsodium's "interactive" limits (64 MiB). */
#define NEW_OPSLIMIT crypto_pwhash_OPSLIMIT_INTERACTIVE
#define NEW_MEMLIMIT crypto_pwhash_MEMLIMIT_INTERACTIVE

/* Largest Argon2id cost accepted from a file, so a forged header cannot exhaust memory. */
#define MAX_OPSLIMIT 16u
#define MAX_MEMLIMIT (1024ull * 1024 * 1024)

/* The decrypted records, in secret memory. */
typedef struct plain {
	unsigned char *data;
	size_t len;
} plain;

static void put_le64(unsigned char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_le64(const unsigned char *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

/*
 * Opens a file that holds secrets for reading: no symbolic link, a regular
 * file owned by us, readable by no other user. Returns the descriptor, or -1
 * with *rc set (SM_ENOTFOUND when missing).
 */
static int open_secret_file(const char *path, const char *what, struct stat *st, int *rc)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);

	if (fd < 0) {
		if (errno == ENOENT)
			*rc = SM_ENOTFOUND;
		else if (errno == ELOOP)
			*rc = sm_error_set(SM_EINVALID, "%s '%s' is a symbolic link; replace it with "
					   "the file itself", what, path);
		else
			*rc = sm_error_set_errno(errno == EACCES ? SM_EREADONLY : SM_EIO, errno,
						 "cannot open %s '%s'", what, path);
		return -1;
	}
	if (fstat(fd, st) != 0) {
		*rc = sm_error_set_errno(SM_EIO, errno, "cannot read %s '%s'", what, path);
	} else if (!S_ISREG(st->st_mode)) {
		*rc = sm_error_set(SM_EINVALID, "%s '%s' is not a regular file", what, path);
	} else if (st->st_uid != geteuid()) {
		*rc = sm_error_set(SM_EREADONLY, "%s '%s' belongs to another user; remove it and "
				   "store the credentials again", what, path);
	} else if (st->st_mode & 077) {
		*rc = sm_error_set(SM_EREADONLY, "%s '%s' is readable by other users (mode %04o); "
				   "run 'chmod 600 %s'", what, path, (unsigned)(st->st_mode & 07777), path);
	} else {
		*rc = 0;
		return fd;
	}
	close(fd);
	return -1;
}

/* Reads exactly the whole small file behind `fd` into `out` (at most `max` bytes). */
static int read_exact(int fd, const char *path, unsigned char *out, size_t max, size_t *len)
{
	size_t done = 0;

	for (;;) {
		ssize_t n;

		if (done == max) {
			unsigned char extra;

			n = read(fd, &extra, 1);
			if (n > 0)
				return sm_error_set(SM_EINVALID, "'%s' is larger than %zu bytes", path, max);
			break;
		}
		n = read(fd, out + done, max - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return sm_error_set_errno(SM_EIO, errno, "cannot read '%s'", path);
		if (n == 0)
			break;
		done += (size_t)n;
	}
	*len = done;
	return 0;
}

/* Reads the 32-byte key of key-file mode. A missing key file is SM_ENOTFOUND, message unset. */
static int read_key_file(const char *path, unsigned char key[KEY_BYTES])
{
	struct stat st;
	unsigned char buf[KEY_BYTES + 1];
	size_t len = 0;
	int fd, rc;

	fd = open_secret_file(path, "key file", &st, &rc);
	if (fd < 0)
		return rc;
	rc = read_exact(fd, path, buf, sizeof(buf), &len);
	close(fd);
	if (!rc && len != KEY_BYTES)
		rc = sm_error_set(SM_EINTEGRITY, "key file '%s' has %zu bytes instead of %d; it is "
				  "damaged, so remove it and the credentials file beside it and run "
				  "'skillmeat vault auth' again", path, len, KEY_BYTES);
	if (!rc)
		memcpy(key, buf, KEY_BYTES);
	sodium_memzero(buf, sizeof(buf));
	return rc;
}

/* Creates the key file with 32 random bytes: a temporary file, then link() so it appears whole. */
static int create_key_file(const char *path, unsigned char key[KEY_BYTES])
{
	char *tmp = NULL;
	int fd = -1, rc;

	randombytes_buf(key, KEY_BYTES);
	rc = sm_tmpfile_beside(path, 0600, &tmp, &fd);
	if (rc)
		goto done;
	if (fchmod(fd, 0600) != 0 || sm_write_all(fd, key, KEY_BYTES) != 0 || fsync(fd) != 0) {
		rc = sm_error_set_errno(SM_EIO, errno, "cannot write key file '%s'", tmp);
		goto done;
	}
	/* link() fails with EEXIST instead of replacing a key someone else made */
	if (link(tmp, path) != 0) {
		rc = sm_error_set_errno(errno == EEXIST ? SM_EEXISTS : SM_EIO, errno,
					"cannot create key file '%s'", path);
		goto done;
	}
	rc = sm_fsync_parent(path);
done:
	if (fd >= 0)
		close(fd);
	if (tmp)
		unlink(tmp);
	free(tmp);
	if (rc)
		sodium_memzero(key, KEY_BYTES);
	return rc;
}

/* Derives the key from the passphrase and the header's salt and limits. */
static int derive_key(const char *passphrase, const unsigned char *pwhash_header,
		      unsigned char key[KEY_BYTES], const char *path)
{
	uint64_t opslimit = get_le64(pwhash_header + 16);
	uint64_t memlimit = get_le64(pwhash_header + 24);

	if (opslimit < crypto_pwhash_OPSLIMIT_MIN || opslimit > MAX_OPSLIMIT ||
	    memlimit < crypto_pwhash_MEMLIMIT_MIN || memlimit > MAX_MEMLIMIT)
		return sm_error_set(SM_EINTEGRITY, "credentials file '%s' is damaged: its key "
				    "derivation settings are out of range", path);
	if (crypto_pwhash(key, KEY_BYTES, passphrase, strlen(passphrase), pwhash_header,
			  opslimit, (size_t)memlimit, crypto_pwhash_ALG_ARGON2ID13) != 0)
		return sm_error_set(SM_ENOMEM, "cannot derive the credentials key: Argon2id needs "
				    "%llu MiB of memory", (unsigned long long)(memlimit >> 20));
	return 0;
}

/* Paths of the sealed file, its key file and its lock. */
typedef struct paths {
	char *file;
	char *key;
	char *lock;
} paths;

static int paths_init(paths *p, const char *home)
{
	p->file = sm_path_join(home, "credentials");
	p->key = sm_path_join(home, "credentials.key");
	p->lock = sm_path_join(home, "credentials.lock");
	return p->file && p->key && p->lock ? 0 : SM_ENOMEM;
}

static void paths_release(paths *p)
{
	free(p->file);
	free(p->key);
	free(p->lock);
}

static void plain_release(plain *pt)
{
	if (pt->data)
		sodium_free(pt->data);
	pt->data = NULL;
	pt->len = 0;
}

/*
 * Reads and decrypts the sealed file. A missing file gives an empty `pt`
 * and info->exists = 0. `key` receives the key for writing back; `header`
 * and `header_len` the header that a rewrite keeps (salt and limits).
 */
static int open_sealed(const paths *p, const char *passphrase, plain *pt, sm_sealed_info *info,
		       unsigned char key[KEY_BYTES], unsigned char header[HEADER_MAX],
		       size_t *header_len)
{
	unsigned char *raw = NULL;
	size_t raw_len = 0, head;
	unsigned long long plain_len;
	struct stat st;
	int fd, rc, mode;

	pt->data = NULL;
	pt->len = 0;
	info->exists = 0;
	info->passphrase = 0;
	*header_len = 0;

	fd = open_secret_file(p->file, "credentials file", &st, &rc);
	if (fd < 0)
		return rc == SM_ENOTFOUND ? 0 : rc;
	info->exists = 1;
	if ((uint64_t)st.st_size > SM_CRED_FILE_MAX) {
		rc = sm_error_set(SM_EINVALID, "credentials file '%s' is larger than %u bytes",
				  p->file, SM_CRED_FILE_MAX);
		goto done;
	}
	raw = malloc((size_t)st.st_size + 1);
	if (!raw) {
		rc = sm_error_set(SM_ENOMEM, "out of memory");
		goto done;
	}
	rc = read_exact(fd, p->file, raw, (size_t)st.st_size + 1, &raw_len);
	if (rc)
		goto done;

	if (raw_len < FIXED_HEADER || memcmp(raw, MAGIC, 8) != 0) {
		rc = sm_error_set(SM_EINTEGRITY, "credentials file '%s' is truncated or not a "
				  "skillmeat credentials file; restore it from a backup, or remove it "
				  "and run 'skillmeat vault auth' again", p->file);
		goto done;
	}
	mode = raw[8];
	if (mode != MODE_KEY_FILE && mode != MODE_PASSPHRASE) {
		rc = sm_error_set(SM_EINTEGRITY, "credentials file '%s' is damaged: unknown key mode %d",
				  p->file, mode);
		goto done;
	}
	info->passphrase = mode == MODE_PASSPHRASE;
	head = FIXED_HEADER + (info->passphrase ? PWHASH_HEADER : 0) + NONCE_BYTES;
	if (raw_len < head + TAG_BYTES) {
		rc = sm_error_set(SM_EINTEGRITY, "credentials file '%s' is truncated; restore it from "
				  "a backup, or remove it and run 'skillmeat vault auth' again", p->file);
		goto done;
	}

	if (info->passphrase) {
		if (!passphrase) {
			rc = sm_error_set(SM_EAUTH, "credentials file '%s' is sealed with a passphrase; "
					  "set SKILLMEAT_CREDENTIALS_PASSPHRASE or "
					  "SKILLMEAT_CREDENTIALS_PASSPHRASE_FILE", p->file);
			goto done;
		}
		rc = derive_key(passphrase, raw + FIXED_HEADER, key, p->file);
	} else {
		if (passphrase) {
			rc = sm_error_set(SM_EAUTH, "credentials file '%s' is sealed with the key file "
					  "'%s', but a passphrase is set; unset the passphrase, or remove "
					  "both files and store the credentials again", p->file, p->key);
			goto done;
		}
		rc = read_key_file(p->key, key);
		if (rc == SM_ENOTFOUND)
			rc = sm_error_set(SM_ENOTFOUND, "key file '%s' of credentials file '%s' is "
					  "missing, so the stored credentials cannot be read; restore it "
					  "from a backup, or remove '%s' and run 'skillmeat vault auth' again",
					  p->key, p->file, p->file);
	}
	if (rc)
		goto done;

	pt->data = sodium_malloc(raw_len - head - TAG_BYTES + 1);
	if (!pt->data) {
		rc = sm_error_set(SM_ENOMEM, "out of memory");
		goto done;
	}
	if (crypto_aead_xchacha20poly1305_ietf_decrypt(pt->data, &plain_len, NULL, raw + head,
						       raw_len - head, raw, head,
						       raw + head - NONCE_BYTES, key) != 0) {
		if (info->passphrase)
			rc = sm_error_set(SM_EAUTH, "cannot decrypt credentials file '%s': the passphrase "
					  "is wrong or the file was changed", p->file);
		else
			rc = sm_error_set(SM_EINTEGRITY, "cannot decrypt credentials file '%s': the file "
					  "or its key file '%s' was changed or damaged; restore them from a "
					  "backup, or remove both and run 'skillmeat vault auth' again",
					  p->file, p->key);
		goto done;
	}
	pt->len = (size_t)plain_len;
	memcpy(header, raw, head - NONCE_BYTES);
	*header_len = head - NONCE_BYTES;
done:
	close(fd);
	free(raw);
	if (rc) {
		plain_release(pt);
		sodium_memzero(key, KEY_BYTES);
	}
	return rc;
}

/* One record of the plaintext, pointing into it. */
typedef struct record {
	const char *vault;
	size_t vault_len;
	int field;
	const unsigned char *value;
	size_t value_len;
} record;

/*
 * Reads the record at *pos and advances it. Returns 1 for a record, 0 at
 * the end, or a negative code for a malformed record.
 */
static int next_record(const plain *pt, size_t *pos, record *r, const char *path)
{
	const unsigned char *d = pt->data;
	size_t at = *pos;

	if (at == pt->len)
		return 0;
	if (pt->len - at < 1)
		goto bad;
	r->vault_len = d[at++];
	if (r->vault_len == 0 || pt->len - at < r->vault_len + 5)
		goto bad;
	r->vault = (const char *)d + at;
	at += r->vault_len;
	r->field = d[at++];
	r->value_len = (size_t)d[at] | (size_t)d[at + 1] << 8 | (size_t)d[at + 2] << 16 |
		       (size_t)d[at + 3] << 24;
	at += 4;
	if (r->field >= SM_CRED_NFIELDS || r->value_len > SM_CRED_VALUE_MAX ||
	    pt->len - at < r->value_len)
		goto bad;
	r->value = d + at;
	at += r->value_len;
	*pos = at;
	return 1;
bad:
	return sm_error_set(SM_EINTEGRITY, "credentials file '%s' holds a malformed record; "
			    "remove it and run 'skillmeat vault auth' again", path);
}

static int record_is(const record *r, const char *vault)
{
	return r->vault_len == strlen(vault) && memcmp(r->vault, vault, r->vault_len) == 0;
}

int sm_sealed_lookup(const char *home, const char *passphrase, const char *vault,
		     char *values[SM_CRED_NFIELDS], sm_sealed_info *info)
{
	unsigned char key[KEY_BYTES], header[HEADER_MAX];
	size_t header_len, pos = 0;
	sm_sealed_info local_info;
	paths p = { 0 };
	plain pt = { 0 };
	record r = { 0 };
	int rc, more;

	for (int i = 0; i < SM_CRED_NFIELDS; i++)
		values[i] = NULL;
	if (!info)
		info = &local_info;
	rc = paths_init(&p, home);
	if (rc)
		goto done;
	rc = open_sealed(&p, passphrase, &pt, info, key, header, &header_len);
	sodium_memzero(key, sizeof(key));
	if (rc)
		goto done;
	while ((more = next_record(&pt, &pos, &r, p.file)) > 0) {
		if (!record_is(&r, vault))
			continue;
		sm_secret_free(values[r.field]);
		values[r.field] = sm_secret_dup((const char *)r.value, r.value_len);
		if (!values[r.field]) {
			rc = SM_ENOMEM;
			goto done;
		}
	}
	rc = more;
done:
	if (rc)
		sm_secret_array_free(values);
	plain_release(&pt);
	paths_release(&p);
	return rc;
}

/* Appends one record to `out` (room checked by the caller). */
static void put_record(unsigned char *out, size_t *len, const char *vault, size_t vault_len,
		       int field, const void *value, size_t value_len)
{
	unsigned char *p = out + *len;

	*p++ = (unsigned char)vault_len;
	memcpy(p, vault, vault_len);
	p += vault_len;
	*p++ = (unsigned char)field;
	for (int i = 0; i < 4; i++)
		*p++ = (unsigned char)(value_len >> (8 * i));
	memcpy(p, value, value_len);
	*len += 1 + vault_len + 1 + 4 + value_len;
}

/* Encrypts `records` under a fresh nonce and replaces the file atomically with mode 0600. */
static int write_sealed(const paths *p, const unsigned char *header, size_t header_len,
			const unsigned char key[KEY_BYTES], const unsigned char *records, size_t len)
{
	unsigned char *out = NULL;
	unsigned long long out_len;
	size_t head = header_len + NONCE_BYTES;
	char *tmp = NULL;
	int fd = -1, rc;

	out = malloc(head + len + TAG_BYTES);
	if (!out)
		return sm_error_set(SM_ENOMEM, "out of memory");
	memcpy(out, header, header_len);
	randombytes_buf(out + header_len, NONCE_BYTES);
	crypto_aead_xchacha20poly1305_ietf_encrypt(out + head, &out_len, records, len, out, head,
						   NULL, out + header_len, key);
	rc = sm_tmpfile_beside(p->file, 0600, &tmp, &fd);
	if (rc)
		goto done;
	if (fchmod(fd, 0600) != 0 || sm_write_all(fd, out, head + (size_t)out_len) != 0) {
		rc = sm_error_set_errno(SM_EIO, errno, "cannot write '%s'", tmp);
		goto done;
	}
	rc = sm_commit_tmpfile(fd, tmp, p->file);
done:
	if (fd >= 0)
		close(fd);
	if (rc && tmp)
		unlink(tmp);
	free(tmp);
	free(out);
	return rc;
}

/* Builds the header and key of a new file. */
static int new_header(const paths *p, const char *passphrase, unsigned char header[HEADER_MAX],
		      size_t *header_len, unsigned char key[KEY_BYTES])
{
	int rc;

	memset(header, 0, HEADER_MAX);
	memcpy(header, MAGIC, 8);
	if (passphrase) {
		header[8] = MODE_PASSPHRASE;
		randombytes_buf(header + FIXED_HEADER, crypto_pwhash_SALTBYTES);
		put_le64(header + FIXED_HEADER + 16, NEW_OPSLIMIT);
		put_le64(header + FIXED_HEADER + 24, NEW_MEMLIMIT);
		*header_len = FIXED_HEADER + PWHASH_HEADER;
		return derive_key(passphrase, header + FIXED_HEADER, key, p->file);
	}
	header[8] = MODE_KEY_FILE;
	*header_len = FIXED_HEADER;
	/* an existing key file is reused: it may be a restored backup */
	rc = read_key_file(p->key, key);
	if (rc == SM_ENOTFOUND)
		rc = create_key_file(p->key, key);
	return rc;
}

int sm_sealed_update(const char *home, const char *passphrase, const char *vault,
		     const char *const values[SM_CRED_NFIELDS], int remove, int *changed)
{
	unsigned char key[KEY_BYTES], header[HEADER_MAX], *records = NULL;
	size_t header_len = 0, pos = 0, len = 0, room, vault_len = strlen(vault);
	sm_sealed_info info;
	paths p = { 0 };
	plain pt = { 0 };
	record r = { 0 };
	int rc, more, lock_fd = -1, count = 0;

	if (changed)
		*changed = 0;
	if (vault_len == 0 || vault_len > 255)
		return sm_error_set(SM_EINVALID, "invalid vault name for credentials");
	rc = paths_init(&p, home);
	if (rc)
		goto done;
	rc = sm_mkdir_p(home, 0700);
	if (rc)
		goto done;
	rc = sm_lock(p.lock, &lock_fd);
	if (rc)
		goto done;
	rc = open_sealed(&p, passphrase, &pt, &info, key, header, &header_len);
	if (rc)
		goto done;
	if (!info.exists) {
		if (remove)
			goto done;
		rc = new_header(&p, passphrase, header, &header_len, key);
		if (rc)
			goto done;
	}

	/* room for every old record plus the new fields */
	room = pt.len + 1;
	for (int i = 0; !remove && i < SM_CRED_NFIELDS; i++) {
		if (values[i] && strlen(values[i]) > SM_CRED_VALUE_MAX) {
			rc = sm_error_set(SM_EINVALID, "the %s of vault '%s' is longer than %d bytes",
					  sm_cred_field_name(i), vault, SM_CRED_VALUE_MAX);
			goto done;
		}
		if (values[i])
			room += 1 + vault_len + 1 + 4 + strlen(values[i]);
	}
	records = sodium_malloc(room);
	if (!records) {
		rc = sm_error_set(SM_ENOMEM, "out of memory");
		goto done;
	}

	/* keep other vaults' records and this vault's fields that are not replaced */
	while ((more = next_record(&pt, &pos, &r, p.file)) > 0) {
		if (record_is(&r, vault) && (remove || values[r.field])) {
			if (remove)
				count++;
			continue;
		}
		put_record(records, &len, r.vault, r.vault_len, r.field, r.value, r.value_len);
	}
	if (more < 0) {
		rc = more;
		goto done;
	}
	for (int i = 0; !remove && i < SM_CRED_NFIELDS; i++) {
		if (!values[i])
			continue;
		put_record(records, &len, vault, vault_len, i, values[i], strlen(values[i]));
		count++;
	}
	if (remove && count == 0)
		goto done;
	if (remove && len == 0) {
		/*
		 * The last record went: drop the file, so that later lookups do
		 * not ask for the passphrase of a file that holds nothing.
		 */
		if (unlink(p.file) != 0 && errno != ENOENT)
			rc = sm_error_set_errno(SM_EIO, errno, "cannot remove '%s'", p.file);
		else
			rc = sm_fsync_parent(p.file);
	} else {
		rc = write_sealed(&p, header, header_len, key, records, len);
	}
	if (!rc && changed)
		*changed = count;
done:
	sodium_memzero(key, sizeof(key));
	if (records)
		sodium_free(records);
	plain_release(&pt);
	if (lock_fd >= 0)
		sm_unlock(lock_fd);
	paths_release(&p);
	return rc;
}
