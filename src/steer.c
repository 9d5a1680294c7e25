/*
 * steer — a reuseport eBPF program that sends a short-header packet to the
 * worker socket its destination connection id names (qm_listener_steer).
 *
 * The program is two dozen instructions written out here and loaded with the
 * bpf(2) system call, so the library needs no BPF toolchain or libbpf at
 * build or run time. What it does:
 *
 *   load 2 bytes at UDP payload + off (the first byte and the first DCID
 *   byte of a short header); on failure, or for a long header, return
 *   SK_PASS without a choice (the kernel's 4-tuple hash decides); else
 *   select socket [dcid[0] % n] of a REUSEPORT_SOCKARRAY map, and pass.
 *
 * The worker is dcid[0] mod n, as qm__cid_make encodes it.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/bpf.h>

#include "internal.h"

#ifndef SO_ATTACH_REUSEPORT_EBPF
#define SO_ATTACH_REUSEPORT_EBPF 52
#endif

#define INSN(c, d, s, o, i)                                                    \
  ((struct bpf_insn){                                                          \
      .code = (c), .dst_reg = (d), .src_reg = (s), .off = (o), .imm = (i)})
#define MOV64_REG(d, s) INSN(BPF_ALU64 | BPF_MOV | BPF_X, d, s, 0, 0)
#define MOV64_IMM(d, i) INSN(BPF_ALU64 | BPF_MOV | BPF_K, d, 0, 0, i)
#define ALU64_IMM(op, d, i) INSN(BPF_ALU64 | (op) | BPF_K, d, 0, 0, i)
#define LDX_B(d, s, o) INSN(BPF_LDX | BPF_MEM | BPF_B, d, s, o, 0)
#define STX_W(d, s, o) INSN(BPF_STX | BPF_MEM | BPF_W, d, s, o, 0)
#define ST_DW(d, o, i) INSN(BPF_ST | BPF_MEM | BPF_DW, d, 0, o, i)
#define JNE_IMM(d, i, o) INSN(BPF_JMP | BPF_JNE | BPF_K, d, 0, o, i)
#define CALL(f) INSN(BPF_JMP | BPF_CALL, 0, 0, 0, f)
#define EXIT() INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0)

static long sys_bpf(int cmd, union bpf_attr *attr) {
  return syscall(__NR_bpf, cmd, attr, sizeof(*attr));
}

int qm__steer_attach(const int *fds, size_t n, size_t off, char *err,
                     size_t errlen) {
  struct bpf_insn prog[] = {
      MOV64_REG(BPF_REG_6, BPF_REG_1), /* r6 = ctx */
      ST_DW(BPF_REG_10, -8, 0),
      MOV64_REG(BPF_REG_1, BPF_REG_6),
      MOV64_IMM(BPF_REG_2, (int)(8 + off)), /* UDP header, then payload */
      MOV64_REG(BPF_REG_3, BPF_REG_10),
      ALU64_IMM(BPF_ADD, BPF_REG_3, -8),
      MOV64_IMM(BPF_REG_4, 2),
      CALL(BPF_FUNC_skb_load_bytes),
      JNE_IMM(BPF_REG_0, 0, 13),        /* -> pass */
      LDX_B(BPF_REG_1, BPF_REG_10, -8), /* first byte */
      ALU64_IMM(BPF_AND, BPF_REG_1, 0x80),
      JNE_IMM(BPF_REG_1, 0, 10),        /* long header -> pass */
      LDX_B(BPF_REG_1, BPF_REG_10, -7), /* dcid[0] */
      ALU64_IMM(BPF_MOD, BPF_REG_1, (int)n),
      STX_W(BPF_REG_10, BPF_REG_1, -16), /* key = dcid[0] % n */
      INSN(BPF_LD | BPF_DW | BPF_IMM, BPF_REG_2, BPF_PSEUDO_MAP_FD, 0, 0),
      INSN(0, 0, 0, 0, 0), /* second half of the 64-bit load */
      MOV64_REG(BPF_REG_1, BPF_REG_6),
      MOV64_REG(BPF_REG_3, BPF_REG_10),
      ALU64_IMM(BPF_ADD, BPF_REG_3, -16),
      MOV64_IMM(BPF_REG_4, 0),
      CALL(BPF_FUNC_sk_select_reuseport), /* a failure: the hash decides */
      MOV64_IMM(BPF_REG_0, SK_PASS),      /* pass: */
      EXIT(),
  };
  union bpf_attr a;
  char log[2048] = "";
  int map_fd, prog_fd;
  size_t i;

  if (n < 2 || n > 256) {
    snprintf(err, errlen, "%zu workers", n);
    return QM_EINVAL;
  }
  memset(&a, 0, sizeof(a));
  a.map_type = BPF_MAP_TYPE_REUSEPORT_SOCKARRAY;
  a.key_size = sizeof(uint32_t);
  a.value_size = sizeof(uint64_t);
  a.max_entries = (uint32_t)n;
  map_fd = (int)sys_bpf(BPF_MAP_CREATE, &a);
  if (map_fd < 0) {
    snprintf(err, errlen, "bpf map: %s", strerror(errno));
    return QM_EIO;
  }
  for (i = 0; i < n; i++) {
    uint32_t key = (uint32_t)i;
    uint64_t val = (uint64_t)fds[i];
    memset(&a, 0, sizeof(a));
    a.map_fd = (uint32_t)map_fd;
    a.key = (uint64_t)(uintptr_t)&key;
    a.value = (uint64_t)(uintptr_t)&val;
    a.flags = BPF_ANY;
    if (sys_bpf(BPF_MAP_UPDATE_ELEM, &a) != 0) {
      snprintf(err, errlen, "bpf map socket %zu: %s", i, strerror(errno));
      close(map_fd);
      return QM_EIO;
    }
  }
  prog[15].imm = map_fd;
  memset(&a, 0, sizeof(a));
  a.prog_type = BPF_PROG_TYPE_SK_REUSEPORT;
  a.insns = (uint64_t)(uintptr_t)prog;
  a.insn_cnt = (uint32_t)QM_ARRAY_LEN(prog);
  a.license = (uint64_t)(uintptr_t) "GPL";
  a.log_buf = (uint64_t)(uintptr_t)log;
  a.log_size = sizeof(log);
  a.log_level = 1;
  prog_fd = (int)sys_bpf(BPF_PROG_LOAD, &a);
  if (prog_fd < 0) {
    /* the verifier's last words, if any */
    char *last = strrchr(log, '\n');
    while (last && last > log && last[1] == '\0') {
      *last = '\0';
      last = strrchr(log, '\n');
    }
    snprintf(err, errlen, "bpf program: %s%s%.120s", strerror(errno),
             *log ? ": " : "", last ? last + 1 : log);
    close(map_fd);
    return QM_EIO;
  }
  /* One socket of the group carries the program for all of them. */
  if (setsockopt(fds[0], SOL_SOCKET, SO_ATTACH_REUSEPORT_EBPF, &prog_fd,
                 sizeof(prog_fd)) != 0) {
    snprintf(err, errlen, "SO_ATTACH_REUSEPORT_EBPF: %s", strerror(errno));
    close(prog_fd);
    close(map_fd);
    return QM_EIO;
  }
  /* The socket group holds the program, the program holds the map. */
  close(prog_fd);
  close(map_fd);
  return 0;
}
