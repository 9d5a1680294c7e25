/*
 * gen_corpus — turn plain QUIC datagrams into fuzz_unwrap seeds.
 *
 * usage: fuzz_gen_corpus OUTDIR FILE...
 * For every input file (one plain QUIC datagram) and every security x header
 * combination, writes OUTDIR/<input-name>.<security>.<header>: the selector
 * byte fuzz_unwrap expects (key "fuzz-key") followed by the datagram wrapped
 * as v2ray would (SPEC §3). Built by fuzz/CMakeLists.txt; used by
 * fuzz/make_corpus.py.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"

int main(int argc, char **argv) {
  static uint8_t in[65536], buf[65536 + QM_CODEC_MAX_OVERHEAD + 1];
  int i;
  unsigned sec, hdr;
  if (argc < 3) {
    fprintf(stderr, "usage: %s OUTDIR FILE...\n", argv[0]);
    return 2;
  }
  for (i = 2; i < argc; i++) {
    FILE *f = fopen(argv[i], "rb");
    size_t n;
    const char *base =
        strrchr(argv[i], '/') ? strrchr(argv[i], '/') + 1 : argv[i];
    if (!f) {
      perror(argv[i]);
      return 1;
    }
    n = fread(in, 1, sizeof(in), f);
    fclose(f);
    for (sec = 0; sec < 3; sec++)
      for (hdr = 0; hdr < 6; hdr++) {
        qm_codec c;
        char path[1024];
        ssize_t w;
        FILE *o;
        unsigned sel = 18 + hdr * 3 + sec; /* (sel/18)&1 = 1: key "fuzz-key" */
        if (qm_codec_init_seeded(&c, (qm_security)sec, "fuzz-key", 8,
                                 (qm_header)hdr, 0x12345678u) != 0)
          return 1;
        memcpy(buf + 1 + qm_codec_prefix(&c), in, n);
        w = qm_codec_seal(&c, buf + 1, sizeof(buf) - 1, n);
        if (w < 0)
          return 1;
        buf[0] = (uint8_t)sel;
        snprintf(path, sizeof(path), "%s/%s.%s.%s", argv[1], base,
                 qm_security_name((qm_security)sec),
                 qm_header_name((qm_header)hdr));
        o = fopen(path, "wb");
        if (!o || fwrite(buf, 1, (size_t)w + 1, o) != (size_t)w + 1) {
          perror(path);
          return 1;
        }
        fclose(o);
        qm_codec_clear(&c);
      }
  }
  return 0;
}
