/*
 * TLS termination with OpenSSL 3 on the real (non-blocking) socket, so kTLS can take over
 * record crypto when the kernel has the TLS ULP. The worker drives the handshake and I/O
 * from its io_uring loop: on TLS_WANT_READ/WRITE it arms a poll and calls again.
 */
#ifndef XGATE_TLS_TLS_H
#define XGATE_TLS_TLS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "common/cfg.h"

struct tls_listener; /* per listener: SSL_CTXs, certificates by SNI */
struct tls_conn;

enum ktls_mode { KTLS_AUTO, KTLS_OFF, KTLS_ON };

/* Parses a listener's "tls" object and loads the certificates (errors name the path). */
struct tls_listener *tls_listener_parse(json_t *tls, const char *path, struct cfg_errs *errs);
void tls_listener_free(struct tls_listener *t);

/* Kernel TLS ULP available (probed once, at first call). */
bool tls_ktls_supported(void);

enum tls_io { TLS_OK, TLS_WANT_READ, TLS_WANT_WRITE, TLS_CLOSED, TLS_ERROR };

struct tls_conn *tls_conn_new(struct tls_listener *t, int fd);
void tls_conn_free(struct tls_conn *c);
enum tls_io tls_handshake(struct tls_conn *c);
/* *n is the number of bytes read/written when TLS_OK. */
enum tls_io tls_read(struct tls_conn *c, void *buf, size_t len, size_t *n);
enum tls_io tls_write(struct tls_conn *c, const void *buf, size_t len, size_t *n);
/* Sends close_notify (best effort, non-blocking). */
void tls_shutdown(struct tls_conn *c);
bool tls_conn_ktls_tx(const struct tls_conn *c);
bool tls_conn_ktls_rx(const struct tls_conn *c);
const char *tls_conn_sni(const struct tls_conn *c);
/* Bytes OpenSSL has decrypted but not yet returned (must be drained before polling). */
size_t tls_pending(const struct tls_conn *c);

/*
 * Extracts the SNI host name from a raw TLS ClientHello at the start of buf, for L4 SNI
 * routing without terminating. Returns 1 found, 0 need more bytes, -1 not a ClientHello
 * or no SNI.
 */
int tls_peek_sni(const unsigned char *buf, size_t len, char *host, size_t hostlen);

/* Process-wide counters for metrics and /status. */
struct tls_stats {
	unsigned long handshakes, handshake_failures, ktls_tx, ktls_rx, resumed;
};
void tls_stats_get(struct tls_stats *out);

#endif
