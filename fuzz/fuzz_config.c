/*
 * fuzz_config — the JSON config file reader (`quicmux -c FILE`,
 * apps/quicmux/config.c): comment stripping, jansson parsing and the
 * tunnel/streamSettings validation, on arbitrary file contents.
 *
 * config.c's reader is static, so this file includes config.c itself; the
 * fuzz build compiles every other program source next to it (main.c with
 * its main() renamed). The input is written to a file under /dev/shm (or
 * TMPDIR) and read back by load(), exactly as the program does.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "../apps/quicmux/config.c"

static char path[256];

static void cleanup(void) {
  if (path[0])
    unlink(path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  cfgctx x;
  app_config cfg;
  FILE *f;
  size_t i;

  if (size > 1 << 16)
    return 0;
  if (!path[0]) {
    const char *dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(path, sizeof(path), "%s/qm-fuzz-config-%ld.json", dir,
             (long)getpid());
    atexit(cleanup);
  }
  f = fopen(path, "wb");
  if (!f)
    abort();
  if (size && fwrite(data, 1, size, f) != size)
    abort();
  fclose(f);

  memset(&x, 0, sizeof(x));
  memset(&cfg, 0, sizeof(cfg));
  (void)load(&x, path, &cfg);
  if (!memchr(x.err, '\0', sizeof(x.err)))
    abort();
  config_free(&cfg);
  for (i = 0; i < x.nwarn; i++)
    free(x.warn[i]);
  free(x.warn);
  return 0;
}
