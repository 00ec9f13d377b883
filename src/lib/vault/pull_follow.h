/*
 * Following a pull's staged file in a second thread (pull_follow.c).
 */
#ifndef SM_VAULT_PULL_FOLLOW_H
#define SM_VAULT_PULL_FOLLOW_H

#include "bundle/follow.h"
#include "vault/pull_watch.h"

typedef struct sm_pull_follow sm_pull_follow;

/*
 * Starts reading `fd` from offset 0 in a second thread, up to the watch's
 * `ready` mark once a connector took `watch`, else up to the file's size.
 * Without a thread, the file is read by sm_pull_follow_finish().
 */
int sm_pull_follow_start(sm_pull_follow **out, int fd, sm_pull_watch *watch);

/*
 * Stops following. With `complete` set (the connector wrote the whole
 * file), reads what is left and returns the finished follower, with
 * `*sha256` set to the hex SHA-256 of the bytes it read. Returns NULL when
 * those bytes may differ from the file (a read failed, or the sizes
 * differ), and at once without `complete`.
 */
const sm_zip_follower *sm_pull_follow_finish(sm_pull_follow *pf, int complete,
					     const char **sha256);

void sm_pull_follow_free(sm_pull_follow *pf);

#endif
