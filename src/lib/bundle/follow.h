/*
 * Verifying a bundle while it arrives.
 *
 * A follower is fed an archive's bytes in order, as a download writes
 * them, and hashes the whole stream with SHA-256. As far as the local
 * headers allow, it also inflates each entry and hashes it the way an
 * artifact hash does: each file's relative path, then its bytes. Entries
 * are grouped by their "artifacts/<type>/<name>/" folder.
 *
 * Nothing the follower computes is trusted on its own. Once the file is
 * complete, sm_bundle_verify_followed() opens it the normal way and takes
 * a followed artifact hash only where every entry of the artifact matches
 * the central directory (offset, name, method, sizes) in the manifest's
 * order. Any other artifact is read again from the file. The caller must
 * also make sure the bytes fed are the bytes of the final file (for
 * example by checking the stream's SHA-256 against a trusted value).
 */
#ifndef SM_BUNDLE_FOLLOW_H
#define SM_BUNDLE_FOLLOW_H

#include <stddef.h>
#include <stdint.h>

#include "skillmeat/bundle.h"

typedef struct sm_zip_follower sm_zip_follower;

int sm_zip_follower_new(sm_zip_follower **out);
void sm_zip_follower_free(sm_zip_follower *f);

/* Feeds the next `len` bytes of the stream. Fails only when memory runs out. */
int sm_zip_follower_feed(sm_zip_follower *f, const void *data, size_t len);

/*
 * Ends the stream and writes its SHA-256 as 64 lowercase hex digits and a
 * NUL to `hex`. Call once, after the last sm_zip_follower_feed().
 */
int sm_zip_follower_finish(sm_zip_follower *f, char hex[65]);

/* Bytes fed so far. */
uint64_t sm_zip_follower_fed(const sm_zip_follower *f);

struct sm_zip_entry;

/*
 * Copies the followed hash of artifact folder `prefix` to `digest` and
 * returns 1, for bundle.c. That needs the follower to have hashed exactly
 * the `n` entries dir[indexes[0]] to dir[indexes[n - 1]], in that order,
 * with the same offsets, names, methods and sizes, each entry's data
 * ending inside its span. Returns 0 otherwise.
 */
int sm_zip_follower_artifact(const sm_zip_follower *f, const char *prefix,
			     const struct sm_zip_entry *dir, const size_t *indexes, size_t n,
			     unsigned char digest[32]);

/*
 * sm_bundle_verify() that takes artifact hashes from `f` (finished) where
 * they provably cover the same entries, and sets `*reused` (may be NULL)
 * to how many artifacts it did not read again. `f` may be NULL.
 */
int sm_bundle_verify_followed(sm_bundle *bundle, const sm_zip_follower *f, sm_verify_cb cb,
			      void *payload, size_t *reused);

/*
 * sm_bundle_open() of the file at `path` that names it `label` in every
 * message, for a staged download whose path means nothing to the user.
 */
int sm_bundle_open_as(sm_bundle **out, const char *path, const char *label);

#endif
