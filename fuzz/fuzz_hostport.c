/*
 * fuzz_hostport — qm_split_hostport() on arbitrary strings.
 * Byte 0 picks the size of the host buffer (1..256) so that the "host too
 * long" and exact-fit edges are reached; the rest is the address string.
 * Checks: on success the host is NUL-terminated inside its buffer and is a
 * substring of the input; on failure the error message is NUL-terminated.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "quicmux/quicmux.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *in, *host, err[128];
  size_t hostlen;
  uint16_t port = 0;
  int rv;

  if (size < 1 || size > 4096)
    return 0;
  hostlen = (size_t)data[0] + 1;
  in = malloc(size);
  host = malloc(hostlen);
  if (!in || !host)
    abort();
  memcpy(in, data + 1, size - 1);
  in[size - 1] = '\0';
  memset(err, 'x', sizeof(err));
  rv = qm_split_hostport(in, host, hostlen, &port, err, sizeof(err));
  if (rv == 0) {
    if (!memchr(host, '\0', hostlen) || !strstr(in, host))
      abort();
  } else if (!memchr(err, '\0', sizeof(err))) {
    abort();
  }
  free(in);
  free(host);
  return 0;
}
