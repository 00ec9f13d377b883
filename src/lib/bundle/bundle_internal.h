/*
 * Internal parts of the bundle module: path rules, the raw zip central
 * directory reader, the entry data reader, the Python-compatible JSON
 * writer and the manifest parser. Nothing here is part of the public API.
 */
#ifndef SM_BUNDLE_INTERNAL_H
#define SM_BUNDLE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <zlib.h>

#include "skillmeat/bundle.h"
#include "util/util.h"

/* Maximum length of an entry name or a manifest file path, in bytes. */
#define SM_BUNDLE_PATH_MAX 4096

/* Maximum length of one path component, in bytes (NAME_MAX on Linux). */
#define SM_BUNDLE_COMPONENT_MAX 255

/* Maximum size of a central directory that is read, in bytes. */
#define SM_ZIP_CDIR_MAX (64u * 1024 * 1024)

/* Entries up to this uncompressed size are exempt from the ratio cap. */
#define SM_BUNDLE_RATIO_MIN_SIZE (64u * 1024)

/* Artifact hash prefix and the length of a full "sha256:<64 hex>" string. */
#define SM_SHA256_PREFIX "sha256:"
#define SM_HASH_STRLEN 71

/* ---- paths.c ---- */

/*
 * Checks that the `len` bytes at `path` are a safe relative path: valid
 * UTF-8, no control characters (NUL included), no backslash, not absolute,
 * no trailing '/', no empty, "." or ".." component, within the length caps.
 * Returns NULL when safe, else a short reason ("has a '..' component").
 */
const char *sm_path_problem(const char *path, size_t len);

/* Returns 1 when `name` matches ^[A-Za-z0-9_-]{1,100}$. */
int sm_name_valid(const char *name);

/* Returns 1 when `len` bytes at `text` are valid UTF-8 (no surrogates). */
int sm_utf8_valid(const char *text, size_t len);

/* Counts the code points of a valid UTF-8 string. */
size_t sm_utf8_length(const char *text);

/*
 * Returns 1 for "YYYY-MM-DD" optionally followed by 'T' or ' ' and
 * "HH:MM[:SS[.fraction]]" and an optional "Z" or "+HH:MM" offset: the
 * forms Python's datetime.fromisoformat() reads.
 */
int sm_iso8601_valid(const char *text);

/*
 * Writes `len` bytes of `name` into `out` for an error message: bytes
 * below 0x20, 0x7f and backslash become \xNN, and long names are cut
 * with "..." so one message stays readable.
 */
void sm_quote_bytes(const char *name, size_t len, char *out, size_t out_size);

/* ---- zipdir.c ---- */

/* Little-endian fields of zip records. */
static inline uint16_t sm_le16(const unsigned char *p)
{
	return (uint16_t)(p[0] | (p[1] << 8));
}

static inline uint32_t sm_le32(const unsigned char *p)
{
	return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
	       ((uint32_t)p[3] << 24);
}

static inline uint64_t sm_le64(const unsigned char *p)
{
	return (uint64_t)sm_le32(p) | ((uint64_t)sm_le32(p + 4) << 32);
}

/* One central directory record, as the archive stores it. */
typedef struct sm_zip_entry {
	char *name;            /* raw bytes plus a NUL; may hold embedded NULs */
	size_t name_len;
	uint16_t made_by;      /* high byte: host system (3 = Unix) */
	uint16_t flags;        /* general purpose bit flags */
	uint16_t method;       /* compression method */
	uint16_t dos_time;
	uint16_t dos_date;
	uint16_t extra_len;    /* bytes of extra fields in the central record */
	uint32_t crc;
	uint32_t external_attributes;
	uint64_t size;         /* uncompressed */
	uint64_t compressed;
	uint64_t offset;       /* of the local header */
	/*
	 * Offset where the next local header or the central directory starts:
	 * the local header, name, extra field and data must end there.
	 * sm_zip_dir_read() sets the central directory's offset and the
	 * overlap check of sm_bundle_open() narrows it to the next entry.
	 */
	uint64_t span_end;
} sm_zip_entry;

/* The central directory of an archive. */
typedef struct sm_zip_dir {
	sm_zip_entry *entries;
	size_t count;
	char *names;           /* storage behind every entry's name */
	uint64_t cdir_offset;
	uint64_t cdir_size;
} sm_zip_dir;

/*
 * Reads the central directory of the archive open at `fd` (`file_size`
 * bytes) with its own parser, so embedded NULs in names and zip64 fields
 * are seen as stored. `label` names the archive in messages. Rejects more
 * than SM_BUNDLE_MAX_ENTRIES entries before reading them.
 */
int sm_zip_dir_read(int fd, uint64_t file_size, const char *label, sm_zip_dir *dir);
void sm_zip_dir_release(sm_zip_dir *dir);

/*
 * Reads exactly `len` bytes at `offset` of `fd`, retrying short reads.
 * Returns SM_EIO when reading fails and SM_EINVALID when the file ends
 * first. `label` names the archive in messages.
 */
int sm_zip_read_at(int fd, void *buf, size_t len, uint64_t offset, const char *label);

/* ---- entry_reader.c ---- */

/*
 * Bytes read from the archive per pread(), and bytes inflated per
 * inflate() call. Verifying a 1 GiB bundle of incompressible data took
 * about 15% more CPU time with 256 KiB reads, while 64 KiB to 1 MiB of
 * inflate output made no measurable difference, so that buffer stays small
 * (AMD EPYC, 2 vCPUs, warm page cache).
 */
#define SM_ENTRY_READ_CHUNK (1024 * 1024)
#define SM_ENTRY_INFLATE_CHUNK (256 * 1024)

/* Maximum length of the reason sm_entry_read() gives for a damaged entry, NUL included. */
#define SM_ENTRY_PROBLEM_MAX 200

/*
 * Buffers and the zlib stream for reading entry data straight from the
 * archive. One reader serves many entries in turn. Initialise it with
 * sm_entry_reader_init() and free it with sm_entry_reader_release().
 */
typedef struct sm_entry_reader {
	int fd;                 /* borrowed */
	const char *label;      /* names the archive in messages; borrowed */
	unsigned char *in;      /* SM_ENTRY_READ_CHUNK bytes */
	unsigned char *out;     /* SM_ENTRY_INFLATE_CHUNK bytes */
	z_stream zs;
	int zs_ready;           /* 1 once inflateInit2() succeeded */
} sm_entry_reader;

/*
 * Receives an entry's uncompressed bytes in order. A nonzero return stops
 * the read, and sm_entry_read() returns it unchanged.
 */
typedef int (*sm_entry_sink)(void *payload, const void *data, size_t len);

/* Prepares `reader` to read entries of the archive open at `fd`. */
int sm_entry_reader_init(sm_entry_reader *reader, int fd, const char *label);
void sm_entry_reader_release(sm_entry_reader *reader);

/*
 * Streams the uncompressed data of `e` to `sink`, after checking that its
 * local header matches the central directory record. Returns 0 when the
 * entry yields exactly its declared size, or a negative code when the
 * archive cannot be read or `sink` fails. Returns 1 when the entry is
 * damaged or lies about its size, and then writes the reason to `problem`
 * (such as "yields more bytes than its declared size of 4").
 */
int sm_entry_read(sm_entry_reader *reader, const sm_zip_entry *e, sm_entry_sink sink,
		  void *payload, char problem[SM_ENTRY_PROBLEM_MAX]);

/* ---- canonical_json.c ---- */

/*
 * Serialises `value` the way Python's json.dumps(value, sort_keys=True,
 * ensure_ascii=False) does: compact with separators "," and ":" when
 * `indent` is negative, else with `indent` spaces per level and ": "
 * after keys (no trailing newline). Keys are sorted by UTF-8 bytes, which
 * is code point order. `skip_key`, when not NULL, leaves out that key of
 * the top-level object.
 */
int sm_json_write_python(const json_t *value, int indent, const char *skip_key, sm_buf *out);

/* Formats a double as Python's repr(float) does ("1e-05", "100.0"). */
void sm_json_format_real(double value, char out[32]);

/*
 * Computes the bundle hash of a parsed manifest: "sha256:" + hex of
 * SHA-256 over the manifest hash followed by the sorted artifact hashes.
 */
int sm_manifest_hash_json(const json_t *manifest, char out[72]);

/* ---- frontmatter.c ---- */

/* Keys read from the front matter of SKILL.md. */
enum sm_front_matter_key {
	SM_FM_NAME,
	SM_FM_VERSION,
	SM_FM_DESCRIPTION,
	SM_FM_AUTHOR,
	SM_FM_LICENSE,
	SM_FM_COUNT
};

/* Values of the known keys; NULL where the front matter lacks one. */
typedef struct sm_front_matter {
	char *values[SM_FM_COUNT];
} sm_front_matter;

/*
 * Reads the flat `key: value` lines between a first line "---" and the
 * next "---" line, with surrounding quotes removed and indented lines
 * joined to the value above by one space. Text without such a block gives
 * no values. Values are not checked for UTF-8.
 */
int sm_front_matter_parse(const char *text, size_t len, sm_front_matter *fm);
void sm_front_matter_release(sm_front_matter *fm);

/* ---- manifest.c ---- */

/*
 * Parses manifest.json text and checks its shape. On success `m` is
 * filled (files without sizes) and `*root` holds the parsed JSON, which
 * the caller releases with json_decref(). `label` names the bundle.
 */
int sm_manifest_parse(const char *text, size_t len, const char *label,
		      sm_manifest *m, json_t **root);

/* Frees everything `m` owns and zeroes it. */
void sm_manifest_release(sm_manifest *m);

#endif
