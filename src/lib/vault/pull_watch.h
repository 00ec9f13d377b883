/*
 * The inside of the pull watch that include/skillmeat/vault.h declares.
 * sm_vault_pull() sets a watch for the calling thread around the
 * connector's pull(). Once a connector takes it, `ready` counts the bytes
 * from offset 0 that are written and final (it only grows), and a write
 * below `ready` sets `rewritten`. A connector that never takes the watch
 * keeps its own SHA-256 check, and the library follows the file's size.
 */
#ifndef SM_VAULT_PULL_WATCH_H
#define SM_VAULT_PULL_WATCH_H

#include <stdatomic.h>
#include <stdint.h>

#include "skillmeat/vault.h"

struct sm_pull_watch {
	_Atomic uint64_t ready;   /* bytes from offset 0 that are final */
	atomic_int rewritten;     /* bytes below `ready` were written again */
	atomic_int connector_reports; /* the connector took the watch and reports its writes */
};

/* Sets the watch sm_pull_watch_take() returns in this thread (NULL clears it). */
void sm_pull_watch_set(sm_pull_watch *watch);

#endif
