/*
 * state — the server's static secret, kept across restarts in a file of its
 * state directory (state.c says which directory).
 */
#ifndef QM_APP_STATE_H
#define QM_APP_STATE_H

#include <stddef.h>
#include <stdint.h>

#define STATE_SECRET_LEN 32

/* Read the secret from dir (NULL: the default directory), or make it. 0: out
 * holds it; 1: no usable default directory (err says why; go on with a
 * random secret); -1: the directory given or the file is bad (err). where
 * gets the directory tried. */
int state_secret(const char *dir, uint8_t *out, char *where, size_t wherelen,
                 char *err, size_t errlen);

#endif
