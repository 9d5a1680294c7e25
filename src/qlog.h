/*
 * qlog — the files behind ngtcp2's qlog writer: one per session, named by
 * time and original destination connection id, at most a given number in
 * the directory (the oldest go first), each capped in size.
 */
#ifndef QM_QLOG_H
#define QM_QLOG_H

#include <stdint.h>
#include <stdio.h>

#include <ngtcp2/ngtcp2.h>

#define QM_QLOG_DEFAULT_FILES 100
/* A file stops growing here: one busy session writes about 300 bytes per
 * packet, so a fast transfer would fill a disk within minutes. */
#define QM_QLOG_MAX_BYTES (64ull * 1024 * 1024)

/* Open dir/<UTC time>-<client|server>-<odcid hex>.sqlog for writing
 * (buffered), first deleting the oldest *.sqlog files of that form so that
 * at most max_files (0 = QM_QLOG_DEFAULT_FILES) remain with the new one.
 * NULL (and a warning) when it cannot be made. */
FILE *qm_qlog_open(const char *dir, uint32_t max_files, int server,
                   const ngtcp2_cid *odcid);

/* ngtcp2's write: append the record unless the file reached its cap
 * (whole records only, so the file stays parseable); flush on FIN. */
void qm_qlog_write(FILE *f, uint64_t *written, uint32_t flags, const void *data,
                   size_t len);

#endif
