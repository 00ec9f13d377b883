/*
 * How a built-in connector reports to sm_vault_pull() which bytes of the
 * download are final, so the library can verify the bundle while it is
 * still arriving instead of after.
 *
 * sm_vault_pull() sets a watch for the calling thread around the
 * connector's pull(). A connector that takes it (sm_pull_watch_take())
 * promises two things for the rest of that pull:
 *  - `ready` counts the bytes from offset 0 that are written and will not
 *    change; it only grows;
 *  - any write below `ready` sets `rewritten`.
 * In return it may skip its own SHA-256 of the bytes: the library checks
 * the file against the record's "sha256" itself. A connector that never
 * takes the watch keeps its own check, and the library follows the file's
 * size instead.
 */
#ifndef SM_VAULT_PULL_WATCH_H
#define SM_VAULT_PULL_WATCH_H

#include <stdatomic.h>
#include <stdint.h>

typedef struct sm_pull_watch {
	_Atomic uint64_t ready;   /* bytes from offset 0 that are final */
	atomic_int rewritten;     /* bytes below `ready` were written again */
	atomic_int taken;         /* the connector reports through this watch */
} sm_pull_watch;

/*
 * Returns the watch of the pull running in this thread and marks it
 * taken, or NULL outside sm_vault_pull().
 */
sm_pull_watch *sm_pull_watch_take(void);

/* Sets the watch sm_pull_watch_take() returns in this thread (NULL clears it). */
void sm_pull_watch_set(sm_pull_watch *watch);

/*
 * Records that `len` bytes were written at `offset`: extends `ready` when
 * they continue it, and sets `rewritten` when they start below it.
 * Writes that leave a gap after `ready` change nothing; a connector that
 * writes out of order moves `ready` itself with sm_pull_watch_advance().
 * NULL `watch` is a no-op.
 */
static inline void sm_pull_watch_wrote(sm_pull_watch *watch, uint64_t offset, uint64_t len)
{
	uint64_t ready;

	if (!watch)
		return;
	ready = atomic_load_explicit(&watch->ready, memory_order_relaxed);
	if (offset == ready)
		atomic_store_explicit(&watch->ready, ready + len, memory_order_release);
	else if (offset < ready)
		atomic_store(&watch->rewritten, 1);
}

/* Raises the watch's mark to `ready`, and never lowers it. NULL `watch` is a no-op. */
static inline void sm_pull_watch_advance(sm_pull_watch *watch, uint64_t ready)
{
	if (watch && ready > atomic_load_explicit(&watch->ready, memory_order_relaxed))
		atomic_store_explicit(&watch->ready, ready, memory_order_release);
}

#endif
