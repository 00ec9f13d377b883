/*
 * Building bundles from skill folders. The same folders and options give a
 * byte-identical archive: files in sorted order, fixed dates and modes, no
 * extra fields, and a created_at taken from the inputs, not the clock.
 *
 * Every file is read twice: once to compute the artifact hashes that the
 * manifest needs, and once by libzip while it writes the archive. The
 * second read is hashed too, so a file that changes in between is caught
 * instead of silently giving a bundle that fails verification.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <zip.h>

#include "bundle_internal.h"

#define READ_CHUNK (1024 * 1024)
#define SKILL_FILE "SKILL.md"
#define SKILL_FILE_MAX (256 * 1024)   /* bytes of SKILL.md searched for front matter */
#define MAX_DEPTH 64                  /* folder nesting inside one skill */
#define TEXT_OPTION_MAX 4096
#define TAG_MAX 100
#define TAGS_MAX 100
#define DEFLATE_LEVEL 6               /* Python's zipfile default */
#define DOS_DATE_2020_01_01 ((40 << 9) | (1 << 5) | 1)
#define DOS_TIME_MIDNIGHT 0
#define ENTRY_ATTRIBUTES (0600u << 16)
#define LATEST_EPOCH 253402300799LL   /* 9999-12-31T23:59:59Z */

struct skill;

/* One regular file of a skill folder. */
struct input_file {
	char *rel;                 /* path inside the skill folder */
	char *path;                /* folder + "/" + rel */
	dev_t dev;
	ino_t ino;
	uint64_t size;
	struct skill *skill;
	int fd;                    /* open while libzip reads it */
	uint64_t done;             /* bytes libzip has read */
	int rc;                    /* first failure while libzip read it */
	int stored;                /* written without compression */
	zip_error_t error;
};

/* One skill folder, which becomes one artifact. */
struct skill {
	const char *dir;
	char *name;
	char *version;
	sm_front_matter fm;
	char *title;
	struct input_file *files;
	size_t nfiles;
	size_t cap;
	char hash[72];
	EVP_MD_CTX *reread;        /* hash of what libzip read */
};

struct create_state {
	const sm_bundle_create_opts *opts;
	struct skill *skills;
	size_t nskills;
	size_t total_files;
	uint64_t total_size;
	int64_t newest_mtime;
	unsigned char *chunk;
};

/* Names skipped while walking a skill folder: VCS and cache folders, OS
 * litter, compiled Python and .env files, which often hold secrets. */
static int is_skipped(const char *name)
{
	static const char *const names[] = {
		".git", ".hg", ".svn", "__pycache__", "node_modules", ".DS_Store", ".env",
	};
	size_t len = strlen(name);

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcmp(name, names[i]) == 0)
			return 1;
	return len > 4 && strcmp(name + len - 4, ".pyc") == 0;
}

static int check_text(const char *what, const char *value, size_t max, int required)
{
	if (!value || !*value) {
		if (required)
			return sm_error_set(SM_EINVALID, "missing bundle %s", what);
		return 0;
	}
	if (strlen(value) > max)
		return sm_error_set(SM_EINVALID, "invalid bundle %s: longer than %zu bytes", what, max);
	if (!sm_utf8_valid(value, strlen(value)))
		return sm_error_set(SM_EINVALID, "invalid bundle %s: not valid UTF-8", what);
	/* listings show these on one line, so newlines are rejected too */
	if (sm_has_control_chars(value))
		return sm_error_set(SM_EINVALID, "invalid bundle %s: control characters such as "
				    "newlines are not allowed", what);
	return 0;
}

static int check_options(const sm_bundle_create_opts *opts)
{
	int rc;

	if (!opts->name || !sm_name_valid(opts->name))
		return sm_error_set(SM_EINVALID, "invalid bundle name '%s': use 1 to 100 letters, "
				    "digits, '-' or '_'", opts->name ? opts->name : "");
	if ((rc = check_text("version", opts->version, 100, 1)) ||
	    (rc = check_text("description", opts->description, TEXT_OPTION_MAX, 1)) ||
	    (rc = check_text("author", opts->author, TEXT_OPTION_MAX, 1)) ||
	    (rc = check_text("license", opts->license, TEXT_OPTION_MAX, 0)))
		return rc;
	if (opts->ntags > TAGS_MAX)
		return sm_error_set(SM_EINVALID, "too many tags: %zu, the limit is %d", opts->ntags,
				    TAGS_MAX);
	if (opts->ntags && !opts->tags)
		return sm_error_set(SM_EINVALID, "missing bundle tags");
	for (size_t i = 0; i < opts->ntags; i++) {
		if ((rc = check_text("tag", opts->tags[i], TAG_MAX, 1)))
			return rc;
		for (size_t j = 0; j < i; j++)
			if (strcmp(opts->tags[i], opts->tags[j]) == 0)
				return sm_error_set(SM_EINVALID, "tag '%s' is given twice", opts->tags[i]);
	}
	if (opts->created_at && !sm_iso8601_valid(opts->created_at))
		return sm_error_set(SM_EINVALID, "invalid created_at '%s': expected ISO 8601 such "
				    "as 2025-01-31T12:00:00", opts->created_at);
	return 0;
}

static int add_file(struct create_state *cs, struct skill *sk, const char *rel,
		    const struct stat *st)
{
	struct input_file *f;
	const char *problem = sm_path_problem(rel, strlen(rel));

	if (problem)
		return sm_error_set(SM_EINVALID, "cannot bundle '%s/%s': the path %s", sk->dir, rel,
				    problem);
	if (cs->total_files + 2 > SM_BUNDLE_MAX_ENTRIES)
		return sm_error_set(SM_EINVALID, "the skill folders hold more than %u files, the "
				    "limit of one bundle", SM_BUNDLE_MAX_ENTRIES - 1);
	if ((uint64_t)st->st_size > SM_BUNDLE_MAX_UNCOMPRESSED - cs->total_size)
		return sm_error_set(SM_EINVALID, "the skill folders hold more than %llu bytes, the "
				    "limit of one bundle",
				    (unsigned long long)SM_BUNDLE_MAX_UNCOMPRESSED);
	if (sk->nfiles == sk->cap) {
		size_t cap = sk->cap ? sk->cap * 2 : 16;
		struct input_file *grown = realloc(sk->files, cap * sizeof(*grown));

		if (!grown)
			return sm_error_set(SM_ENOMEM, "out of memory");
		sk->files = grown;
		sk->cap = cap;
	}
	f = &sk->files[sk->nfiles];
	memset(f, 0, sizeof(*f));
	f->fd = -1;
	f->skill = sk;
	f->dev = st->st_dev;
	f->ino = st->st_ino;
	f->size = (uint64_t)st->st_size;
	zip_error_init(&f->error);
	sk->nfiles++;
	f->rel = sm_strdup(rel);
	f->path = sm_path_join(sk->dir, rel);
	if (!f->rel || !f->path)
		return SM_ENOMEM;
	cs->total_files++;
	cs->total_size += f->size;
	if (st->st_mtime > cs->newest_mtime)
		cs->newest_mtime = st->st_mtime;
	return 0;
}

/* Collects the regular files below `fd` (which this call closes); links and devices fail. */
static int walk(struct create_state *cs, struct skill *sk, int fd, const char *prefix, int depth)
{
	DIR *dir = fdopendir(fd);
	struct dirent *de;
	char *rel = NULL;
	int rc = 0;

	if (!dir) {
		close(fd);
		return sm_error_set_errno(SM_EIO, errno, "cannot read folder '%s/%s'", sk->dir, prefix);
	}
	while (!rc) {
		struct stat st;

		errno = 0;
		de = readdir(dir);
		if (!de) {
			if (errno)
				rc = sm_error_set_errno(SM_EIO, errno, "cannot read folder '%s/%s'",
							sk->dir, prefix);
			break;
		}
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0 ||
		    is_skipped(de->d_name))
			continue;
		free(rel);
		rel = *prefix ? sm_asprintf("%s/%s", prefix, de->d_name) : sm_strdup(de->d_name);
		if (!rel) {
			rc = SM_ENOMEM;
			break;
		}
		if (fstatat(dirfd(dir), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
			rc = sm_error_set_errno(SM_EIO, errno, "cannot inspect '%s/%s'", sk->dir, rel);
			break;
		}

		if (S_ISLNK(st.st_mode)) {
			rc = sm_error_set(SM_EINVALID, "cannot bundle '%s/%s': it is a symbolic link; "
					  "replace it with the file or folder it points to", sk->dir, rel);
		} else if (S_ISREG(st.st_mode)) {
			rc = add_file(cs, sk, rel, &st);
		} else if (!S_ISDIR(st.st_mode)) {
			rc = sm_error_set(SM_EINVALID, "cannot bundle '%s/%s': it is not a regular file "
					  "or folder", sk->dir, rel);
		} else if (depth >= MAX_DEPTH) {
			rc = sm_error_set(SM_EINVALID, "cannot bundle '%s/%s': folders nest deeper "
					  "than %d levels", sk->dir, rel, MAX_DEPTH);
		} else {
			int sub = openat(dirfd(dir), de->d_name,
					 O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

			if (sub < 0)
				rc = sm_error_set_errno(SM_EIO, errno, "cannot open folder '%s/%s'",
							sk->dir, rel);
			else
				rc = walk(cs, sk, sub, rel, depth + 1);
		}
	}
	free(rel);
	closedir(dir);
	return rc;
}

/* Opens an input file again, checking it is still the file the walk found. */
static int open_input(const struct input_file *f, int *fd)
{
	struct stat st;

	*fd = open(f->path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (*fd < 0) {
		if (errno == ELOOP)
			return sm_error_set(SM_ECONFLICT, "'%s' became a symbolic link while the "
					    "bundle was being created", f->path);
		return sm_error_set_errno(SM_EIO, errno, "cannot open '%s'", f->path);
	}
	if (fstat(*fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_dev != f->dev ||
	    st.st_ino != f->ino || (uint64_t)st.st_size != f->size) {
		close(*fd);
		*fd = -1;
		return sm_error_set(SM_ECONFLICT, "'%s' changed while the bundle was being "
				    "created; run the command again", f->path);
	}
	return 0;
}

static int compare_files(const void *a, const void *b)
{
	return strcmp(((const struct input_file *)a)->rel, ((const struct input_file *)b)->rel);
}

/* Computes the artifact hash: each relative path followed by the file's bytes. */
static int hash_skill(struct create_state *cs, struct skill *sk)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned char digest[EVP_MAX_MD_SIZE];
	int fd = -1, rc = 0;

	if (!ctx || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL)) {
		rc = sm_error_set(SM_ENOMEM, "cannot set up SHA-256");
		goto done;
	}
	for (size_t i = 0; i < sk->nfiles && !rc; i++) {
		const struct input_file *f = &sk->files[i];
		uint64_t total = 0;
		ssize_t n;

		rc = open_input(f, &fd);
		if (rc)
			break;
		EVP_DigestUpdate(ctx, f->rel, strlen(f->rel));
		while ((n = read(fd, cs->chunk, READ_CHUNK)) != 0) {
			if (n < 0) {
				if (errno == EINTR)
					continue;
				rc = sm_error_set_errno(SM_EIO, errno, "cannot read '%s'", f->path);
				break;
			}
			EVP_DigestUpdate(ctx, cs->chunk, (size_t)n);
			total += (uint64_t)n;
		}
		close(fd);
		fd = -1;
		if (!rc && total != f->size)
			rc = sm_error_set(SM_ECONFLICT, "'%s' changed while the bundle was being "
					  "created; run the command again", f->path);
	}
	if (!rc) {
		EVP_DigestFinal_ex(ctx, digest, NULL);
		memcpy(sk->hash, SM_SHA256_PREFIX, 7);
		sm_hex(digest, 32, sk->hash + 7);
	}
done:
	EVP_MD_CTX_free(ctx);
	return rc;
}

static int read_skill_file(int dirfd, const char *dir, char **text, size_t *len)
{
	sm_buf buf = SM_BUF_INIT(0);
	int fd = openat(dirfd, SKILL_FILE, O_RDONLY | O_NOFOLLOW | O_CLOEXEC), rc = 0;

	*text = NULL;
	if (fd < 0) {
		if (errno == ENOENT)
			return sm_error_set(SM_EINVALID, "'%s' is not a skill folder: " SKILL_FILE
					    " missing", dir);
		if (errno == ELOOP)
			return sm_error_set(SM_EINVALID, "cannot bundle '%s/" SKILL_FILE "': it is a "
					    "symbolic link; replace it with the file it points to",
					    dir);
		return sm_error_set_errno(SM_EIO, errno, "cannot open '%s/" SKILL_FILE "'", dir);
	}
	while (buf.len < SKILL_FILE_MAX) {
		char chunk[16384];
		ssize_t n = read(fd, chunk, sizeof(chunk));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = sm_error_set_errno(SM_EIO, errno, "cannot read '%s/" SKILL_FILE "'", dir);
			break;
		}
		if (n == 0 || (rc = sm_buf_put(&buf, chunk, (size_t)n)))
			break;
	}
	close(fd);
	*len = buf.len;
	if (!rc && !(*text = sm_buf_take(&buf)))
		rc = SM_ENOMEM;
	sm_buf_release(&buf);
	return rc;
}

/* Name, version and metadata from the front matter, with the folder name as fallback. */
static int describe_skill(struct create_state *cs, struct skill *sk, int dirfd)
{
	const char *fm_name, *version;
	char *text = NULL, *real = NULL, *base;
	size_t len = 0;
	int rc;

	rc = read_skill_file(dirfd, sk->dir, &text, &len);
	if (!rc)
		rc = sm_front_matter_parse(text, len, &sk->fm);
	free(text);
	if (rc)
		return rc;
	for (int i = 0; i < SM_FM_COUNT; i++)
		if (sk->fm.values[i] && !sm_utf8_valid(sk->fm.values[i], strlen(sk->fm.values[i])))
			return sm_error_set(SM_EINVALID, "cannot bundle '%s': the front matter of "
					    SKILL_FILE " is not valid UTF-8", sk->dir);

	real = realpath(sk->dir, NULL);
	if (!real)
		return sm_error_set_errno(SM_EIO, errno, "cannot resolve '%s'", sk->dir);
	base = strrchr(real, '/') ? strrchr(real, '/') + 1 : real;
	fm_name = sk->fm.values[SM_FM_NAME];
	if (fm_name && sm_name_valid(fm_name))
		sk->name = sm_strdup(fm_name);
	else if (sm_name_valid(base))
		sk->name = sm_strdup(base);
	else
		rc = sm_error_set(SM_EINVALID, "cannot name the skill in '%s': neither the front "
				  "matter name nor the folder name is 1 to 100 letters, digits, "
				  "'-' or '_'", sk->dir);
	if (!rc)
		sk->title = sm_strdup(fm_name && *fm_name ? fm_name : base);
	free(real);
	if (rc)
		return rc;
	version = sk->fm.values[SM_FM_VERSION];
	sk->version = sm_strdup(version && *version ? version : cs->opts->version);
	return sk->name && sk->title && sk->version ? 0 : SM_ENOMEM;
}

static int load_skill(struct create_state *cs, struct skill *sk)
{
	struct stat st;
	int fd, rc;

	fd = open(sk->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOTDIR)
			return sm_error_set(SM_EINVALID, "'%s' is not a folder", sk->dir);
		return sm_error_set_errno(errno == ENOENT ? SM_ENOTFOUND : SM_EIO, errno,
					  "cannot open skill folder '%s'", sk->dir);
	}
	rc = describe_skill(cs, sk, fd);
	if (rc) {
		close(fd);
		return rc;
	}
	if (fstatat(fd, SKILL_FILE, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return sm_error_set(SM_EINVALID, "'%s' is not a skill folder: " SKILL_FILE " is not "
				    "a regular file", sk->dir);
	}
	rc = walk(cs, sk, fd, "", 0);
	if (rc)
		return rc;
	qsort(sk->files, sk->nfiles, sizeof(*sk->files), compare_files);
	return hash_skill(cs, sk);
}

static int created_at_text(const struct create_state *cs, char out[32])
{
	const char *epoch = getenv("SOURCE_DATE_EPOCH");
	char *end;
	long long seconds;

	if (cs->opts->created_at) {
		snprintf(out, 32, "%s", cs->opts->created_at);
		if (strlen(cs->opts->created_at) >= 32)
			return sm_error_set(SM_EINVALID, "invalid created_at '%s': too long",
					    cs->opts->created_at);
		return 0;
	}
	if (epoch && *epoch) {
		errno = 0;
		seconds = strtoll(epoch, &end, 10);
		if (errno || *end || *epoch == '-' || *epoch == '+' || seconds > LATEST_EPOCH)
			return sm_error_set(SM_EINVALID, "invalid SOURCE_DATE_EPOCH '%s': expected "
					    "seconds since 1970 as a plain number", epoch);
		sm_time_iso8601(seconds, out);
		return 0;
	}
	sm_time_iso8601(cs->newest_mtime, out);
	return 0;
}

static int set_string(json_t *object, const char *key, const char *value)
{
	return json_object_set_new(object, key, json_string(value));
}

static json_t *artifact_json(const struct skill *sk)
{
	static const struct { int index; const char *key; } copied[] = {
		{ SM_FM_DESCRIPTION, "description" },
		{ SM_FM_AUTHOR, "author" },
		{ SM_FM_LICENSE, "license" },
	};
	json_t *a = json_object(), *files = json_array(), *metadata = json_object();
	char *path = sm_asprintf("artifacts/skill/%s/", sk->name);
	int bad = !a || !files || !metadata || !path;

	for (size_t i = 0; i < sk->nfiles && !bad; i++)
		bad |= json_array_append_new(files, json_string(sk->files[i].rel));
	bad |= set_string(metadata, "title", sk->title);
	for (size_t i = 0; i < sizeof(copied) / sizeof(copied[0]); i++)
		if (sk->fm.values[copied[i].index])
			bad |= set_string(metadata, copied[i].key, sk->fm.values[copied[i].index]);
	bad |= set_string(a, "type", "skill");
	bad |= set_string(a, "name", sk->name);
	bad |= set_string(a, "version", sk->version);
	bad |= set_string(a, "scope", "user");
	bad |= set_string(a, "path", path ? path : "");
	bad |= set_string(a, "hash", sk->hash);
	bad |= json_object_set(a, "files", files);
	bad |= json_object_set(a, "metadata", metadata);
	json_decref(files);
	json_decref(metadata);
	free(path);
	if (bad) {
		json_decref(a);
		return NULL;
	}
	return a;
}

/* Builds manifest.json text: sorted keys, two-space indent, newline at the end. */
static int manifest_text(const struct create_state *cs, const char *created_at, sm_buf *out)
{
	const sm_bundle_create_opts *o = cs->opts;
	json_t *root = json_object(), *tags = json_array(), *artifacts = json_array();
	char hash[72];
	int bad = !root || !tags || !artifacts, rc;

	for (size_t i = 0; i < o->ntags && !bad; i++)
		bad |= json_array_append_new(tags, json_string(o->tags[i]));
	for (size_t i = 0; i < cs->nskills && !bad; i++) {
		json_t *a = artifact_json(&cs->skills[i]);

		bad |= !a || json_array_append_new(artifacts, a);
	}
	bad |= set_string(root, "version", SM_MANIFEST_FORMAT_VERSION);
	bad |= set_string(root, "name", o->name);
	bad |= set_string(root, "description", o->description);
	bad |= set_string(root, "author", o->author);
	bad |= set_string(root, "created_at", created_at);
	bad |= set_string(root, "license", o->license ? o->license : "");
	bad |= set_string(root, "bundle_version", o->version);
	bad |= json_object_set(root, "tags", tags);
	bad |= json_object_set(root, "artifacts", artifacts);
	bad |= json_object_set_new(root, "dependencies", json_array());
	json_decref(tags);
	json_decref(artifacts);
	if (bad) {
		rc = sm_error_set(SM_ENOMEM, "out of memory");
		goto done;
	}
	rc = sm_manifest_hash_json(root, hash);
	if (!rc && set_string(root, "bundle_hash", hash))
		rc = sm_error_set(SM_ENOMEM, "out of memory");
	if (!rc)
		rc = sm_json_write_python(root, 2, NULL, out);
	if (!rc)
		rc = sm_buf_putc(out, '\n');
done:
	json_decref(root);
	return rc;
}

/* libzip reads each input through this source, which re-checks and re-hashes it. */
static zip_int64_t file_source(void *userdata, void *data, zip_uint64_t len,
			       zip_source_cmd_t cmd)
{
	struct input_file *f = userdata;
	zip_stat_t *zs;
	ssize_t n;

	switch (cmd) {
	case ZIP_SOURCE_OPEN:
		f->rc = open_input(f, &f->fd);
		if (f->rc) {
			zip_error_set(&f->error, ZIP_ER_OPEN, 0);
			return -1;
		}
		f->done = 0;
		EVP_DigestUpdate(f->skill->reread, f->rel, strlen(f->rel));
		return 0;
	case ZIP_SOURCE_READ:
		do
			n = read(f->fd, data, len);
		while (n < 0 && errno == EINTR);
		if (n < 0) {
			f->rc = sm_error_set_errno(SM_EIO, errno, "cannot read '%s'", f->path);
			zip_error_set(&f->error, ZIP_ER_READ, errno);
			return -1;
		}
		if (f->done + (uint64_t)n > f->size || (n == 0 && f->done != f->size)) {
			f->rc = sm_error_set(SM_ECONFLICT, "'%s' changed while the bundle was being "
					     "created; run the command again", f->path);
			zip_error_set(&f->error, ZIP_ER_READ, 0);
			return -1;
		}
		f->done += (uint64_t)n;
		EVP_DigestUpdate(f->skill->reread, data, (size_t)n);
		return n;
	case ZIP_SOURCE_CLOSE:
		if (f->fd >= 0)
			close(f->fd);
		f->fd = -1;
		return 0;
	case ZIP_SOURCE_STAT:
		if (len < sizeof(*zs)) {
			zip_error_set(&f->error, ZIP_ER_INVAL, 0);
			return -1;
		}
		zs = data;
		zip_stat_init(zs);
		zs->size = f->size;
		zs->valid |= ZIP_STAT_SIZE;
		return sizeof(*zs);
	case ZIP_SOURCE_ERROR:
		return zip_error_to_data(&f->error, data, len);
	case ZIP_SOURCE_FREE:
		return 0;
	case ZIP_SOURCE_SUPPORTS:
		return zip_source_make_command_bitmap(ZIP_SOURCE_OPEN, ZIP_SOURCE_READ,
						      ZIP_SOURCE_CLOSE, ZIP_SOURCE_STAT,
						      ZIP_SOURCE_ERROR, ZIP_SOURCE_FREE, -1);
	default:
		zip_error_set(&f->error, ZIP_ER_OPNOTSUPP, 0);
		return -1;
	}
}

/* Fixes the date, mode and compression of entry `index` so the output is reproducible. */
static int settle_entry(zip_t *zip, zip_int64_t index, int stored)
{
	if (zip_set_file_compression(zip, (zip_uint64_t)index, stored ? ZIP_CM_STORE : ZIP_CM_DEFLATE,
				     stored ? 0 : DEFLATE_LEVEL) ||
	    zip_file_set_dostime(zip, (zip_uint64_t)index, DOS_TIME_MIDNIGHT,
				 DOS_DATE_2020_01_01, 0) ||
	    zip_file_set_external_attributes(zip, (zip_uint64_t)index, 0, ZIP_OPSYS_UNIX,
					     ENTRY_ATTRIBUTES))
		return -1;
	return 0;
}

static int add_entries(struct create_state *cs, zip_t *zip, const sm_buf *manifest)
{
	zip_source_t *src;
	zip_int64_t index;

	for (size_t i = 0; i < cs->nskills; i++) {
		struct skill *sk = &cs->skills[i];

		for (size_t j = 0; j < sk->nfiles; j++) {
			struct input_file *f = &sk->files[j];
			char *name = sm_asprintf("artifacts/skill/%s/%s", sk->name, f->rel);

			if (!name)
				return SM_ENOMEM;
			src = zip_source_function(zip, file_source, f);
			index = src ? zip_file_add(zip, name, src, ZIP_FL_ENC_UTF_8) : -1;
			if (src && index < 0)
				zip_source_free(src);
			free(name);
			if (index < 0 || settle_entry(zip, index, f->stored))
				return sm_error_set(SM_ERROR, "cannot add '%s' to the archive: %s",
						    f->path, zip_strerror(zip));
		}
	}
	src = zip_source_buffer(zip, manifest->data, manifest->len, 0);
	index = src ? zip_file_add(zip, "manifest.json", src, ZIP_FL_ENC_UTF_8) : -1;
	if (src && index < 0)
		zip_source_free(src);
	if (index < 0 || settle_entry(zip, index, 0))
		return sm_error_set(SM_ERROR, "cannot add manifest.json to the archive: %s",
				    zip_strerror(zip));
	return 0;
}

/* Checks that the second reads hash to the artifact hashes in the manifest. */
static int check_rereads(struct create_state *cs)
{
	for (size_t i = 0; i < cs->nskills; i++) {
		struct skill *sk = &cs->skills[i];
		unsigned char digest[EVP_MAX_MD_SIZE];
		char hash[72];

		EVP_DigestFinal_ex(sk->reread, digest, NULL);
		memcpy(hash, SM_SHA256_PREFIX, 7);
		sm_hex(digest, 32, hash + 7);
		if (strcmp(hash, sk->hash) != 0)
			return sm_error_set(SM_ECONFLICT, "files in '%s' changed while the bundle "
					    "was being created; run the command again", sk->dir);
	}
	return 0;
}

/* The first failure a file source recorded, whose message is more useful than libzip's. */
static int source_failure(const struct create_state *cs)
{
	for (size_t i = 0; i < cs->nskills; i++)
		for (size_t j = 0; j < cs->skills[i].nfiles; j++)
			if (cs->skills[i].files[j].rc)
				return cs->skills[i].files[j].rc;
	return 0;
}

/* Writes every entry to `tmp` through libzip and checks the second reads. */
static int write_entries(struct create_state *cs, const sm_buf *manifest, const char *tmp)
{
	zip_t *zip;
	int zerr = 0, rc;

	for (size_t i = 0; i < cs->nskills; i++) {
		if (!cs->skills[i].reread)
			cs->skills[i].reread = EVP_MD_CTX_new();
		if (!cs->skills[i].reread ||
		    !EVP_DigestInit_ex(cs->skills[i].reread, EVP_sha256(), NULL))
			return sm_error_set(SM_ENOMEM, "cannot set up SHA-256");
	}

	/* libzip writes its own temporary file and renames it over `tmp` */
	zip = zip_open(tmp, ZIP_CREATE | ZIP_TRUNCATE, &zerr);
	if (!zip) {
		zip_error_t error;

		zip_error_init_with_code(&error, zerr);
		rc = sm_error_set(SM_EIO, "cannot create '%s': %s", tmp, zip_error_strerror(&error));
		zip_error_fini(&error);
		return rc;
	}
	rc = add_entries(cs, zip, manifest);
	if (rc) {
		zip_discard(zip);
		return rc;
	}
	if (zip_close(zip) != 0) {
		rc = source_failure(cs);
		if (!rc)
			rc = sm_error_set(SM_EIO, "cannot write '%s': %s", tmp, zip_strerror(zip));
		zip_discard(zip);
		return rc;
	}
	return check_rereads(cs);
}

/*
 * Marks the files that deflate compressed beyond SM_BUNDLE_MAX_RATIO, which
 * readers reject as zip bombs, to be stored instead. Sets `*marked` to the
 * number of files marked. Entries follow the files in order, then manifest.json.
 */
static int mark_overcompressed(struct create_state *cs, const char *tmp, size_t *marked)
{
	sm_zip_dir dir;
	struct stat st;
	size_t k = 0;
	int fd = open(tmp, O_RDONLY | O_CLOEXEC), rc;

	*marked = 0;
	if (fd < 0)
		return sm_error_set_errno(SM_EIO, errno, "cannot open '%s'", tmp);
	rc = fstat(fd, &st) ? sm_error_set_errno(SM_EIO, errno, "cannot inspect '%s'", tmp)
			    : sm_zip_dir_read(fd, (uint64_t)st.st_size, tmp, &dir);
	close(fd);
	if (rc)
		return rc;
	for (size_t i = 0; i < cs->nskills; i++) {
		for (size_t j = 0; j < cs->skills[i].nfiles && k < dir.count; j++, k++) {
			const sm_zip_entry *e = &dir.entries[k];

			if (e->size > SM_BUNDLE_RATIO_MIN_SIZE &&
			    e->size / SM_BUNDLE_MAX_RATIO >= e->compressed) {
				cs->skills[i].files[j].stored = 1;
				(*marked)++;
			}
		}
	}
	sm_zip_dir_release(&dir);
	return 0;
}

/* Writes the archive to `tmp` (reserved beside the output) and checks it reads back. */
static int write_archive(struct create_state *cs, const sm_buf *manifest, const char *tmp)
{
	sm_bundle *check = NULL;
	size_t marked = 0;
	int rc;

	rc = write_entries(cs, manifest, tmp);
	if (!rc)
		rc = mark_overcompressed(cs, tmp, &marked);
	/* the same inputs mark the same files, so the output stays reproducible */
	if (!rc && marked)
		rc = write_entries(cs, manifest, tmp);
	if (rc)
		return rc;

	/* never hand out an archive that our own reader would reject */
	rc = sm_bundle_open(&check, tmp);
	sm_bundle_free(check);
	if (rc) {
		char reason[1024];

		snprintf(reason, sizeof(reason), "%s", sm_error_message());
		return sm_error_set(rc, "the new bundle fails its own checks: %s", reason);
	}
	return 0;
}

static int commit(const char *tmp, const char *out_path)
{
	int fd = open(tmp, O_RDONLY | O_NOFOLLOW | O_CLOEXEC), rc;

	if (fd < 0)
		return sm_error_set_errno(SM_EIO, errno, "cannot open '%s'", tmp);
	rc = sm_commit_tmpfile(fd, tmp, out_path);
	close(fd);
	return rc;
}

static void release_state(struct create_state *cs)
{
	for (size_t i = 0; i < cs->nskills; i++) {
		struct skill *sk = &cs->skills[i];

		for (size_t j = 0; j < sk->nfiles; j++) {
			if (sk->files[j].fd >= 0)
				close(sk->files[j].fd);
			free(sk->files[j].rel);
			free(sk->files[j].path);
			zip_error_fini(&sk->files[j].error);
		}
		free(sk->files);
		free(sk->name);
		free(sk->version);
		free(sk->title);
		sm_front_matter_release(&sk->fm);
		EVP_MD_CTX_free(sk->reread);
	}
	free(cs->skills);
	free(cs->chunk);
}

int sm_bundle_create(const char *const *dirs, size_t ndirs,
		     const sm_bundle_create_opts *opts, const char *out_path)
{
	struct create_state cs = { .opts = opts };
	sm_buf manifest = SM_BUF_INIT(SM_MANIFEST_MAX_BYTES);
	char created_at[32], *tmp = NULL;
	int rc, fd = -1;

	if (!dirs || ndirs == 0)
		return sm_error_set(SM_EINVALID, "no skill folders given");
	if (!opts || !out_path || !*out_path)
		return sm_error_set(SM_EINVALID, "missing bundle options or output path");
	rc = check_options(opts);
	if (rc)
		return rc;

	cs.skills = calloc(ndirs, sizeof(*cs.skills));
	cs.chunk = malloc(READ_CHUNK);
	if (!cs.skills || !cs.chunk) {
		rc = sm_error_set(SM_ENOMEM, "out of memory");
		goto done;
	}
	for (size_t i = 0; i < ndirs && !rc; i++) {
		cs.skills[i].dir = dirs[i];
		cs.nskills = i + 1;
		rc = load_skill(&cs, &cs.skills[i]);
		for (size_t j = 0; j < i && !rc; j++)
			if (strcmp(cs.skills[j].name, cs.skills[i].name) == 0)
				rc = sm_error_set(SM_EINVALID, "skill folders '%s' and '%s' are both "
						  "named '%s'; a bundle needs unique names",
						  cs.skills[j].dir, cs.skills[i].dir, cs.skills[i].name);
	}
	if (!rc)
		rc = created_at_text(&cs, created_at);
	if (!rc)
		rc = manifest_text(&cs, created_at, &manifest);
	if (rc)
		goto done;

	rc = sm_tmpfile_beside(out_path, 0644, &tmp, &fd);
	if (rc)
		goto done;
	close(fd);
	rc = write_archive(&cs, &manifest, tmp);
	if (!rc)
		rc = commit(tmp, out_path);
	if (rc)
		unlink(tmp);
done:
	free(tmp);
	sm_buf_release(&manifest);
	release_state(&cs);
	return rc;
}
