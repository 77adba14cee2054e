/*
 * TLS termination with OpenSSL 3 on the real (non-blocking) socket, so kTLS can take over
 * record crypto when the kernel has the TLS ULP. The worker drives the handshake and I/O
 * from its io_uring loop: on TLS_WANT_READ/WRITE it arms a poll and calls again.
 *
 * I/O contract for the worker (the fd is owned by the worker, non-blocking, and must not be
 * read or written by anyone else while a tls_conn exists for it):
 *   - tls_conn_new(), then tls_handshake() until TLS_OK. TLS_WANT_READ: poll POLLIN on the
 *     fd; TLS_WANT_WRITE: poll POLLOUT; then call tls_handshake() again. TLS_ERROR: close
 *     (counted as a handshake failure; so is tls_conn_free() before the handshake finished,
 *     e.g. on the header timeout).
 *   - tls_read()/tls_write() return the same codes; WANT_* means "poll that mask, then call
 *     the same function again" (tls_read can want POLLOUT, e.g. for a TLS 1.3 key update).
 *     After TLS_WANT_* from tls_write the next tls_write must pass the same bytes again
 *     (the buffer may move; partial writes are enabled, *n tells what went out).
 *   - Once tls_conn_ktls_tx() is true the caller may write plaintext to the fd itself
 *     (send, splice) instead of calling tls_write(): the kernel frames and encrypts the
 *     records, and OpenSSL holds no output after the handshake returned TLS_OK.
 *   - After a tls_read() that returned TLS_OK, check tls_pending(): while it is non-zero,
 *     read again before polling, because the socket will not signal data OpenSSL holds.
 *   - TLS_CLOSED from tls_read: the peer sent close_notify or a plain EOF. TLS_ERROR:
 *     close without tls_shutdown(). Before closing a healthy connection call
 *     tls_shutdown() (one non-blocking close_notify), then tls_conn_free() and close(fd).
 *   - SIGPIPE must be ignored by the process (OpenSSL writes with write(2)).
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
enum tls_client_auth { TLS_CLIENT_AUTH_NONE, TLS_CLIENT_AUTH_OPTIONAL, TLS_CLIENT_AUTH_REQUIRED };
struct x509_st;
struct X509_name_st;

/*
 * Parses a listener's "tls" object and loads the certificates (errors name the path, e.g.
 * "listeners[1].tls.certificates[0].key: cannot read ..."). Keys: certificates [{cert, key,
 * sni?}] (first = default; SNI names from SAN DNS names, else CN, unless "sni" is given),
 * ktls "auto"|"off"|"on", min_version "1.2"|"1.3", alpn (default ["http/1.1"]), and for
 * benchmarks/interop ciphers (TLS 1.2 OpenSSL list) and ciphersuites (TLS 1.3).
 * Session tickets use one per-process key, so they survive reloads.
 * mTLS: client_ca (PEM CAs; certificates are requested), client_auth "required" (default:
 * the handshake fails without a valid certificate) | "optional" (any or none completes it;
 * see tls_conn_peer_verified), verify_depth (0-16, default 3: intermediates allowed), crl
 * (PEM CRLs; a revoked certificate, or one whose issuer has no CRL there, does not verify).
 * The files are read at parse time, so a reload picks up new ones.
 */
struct tls_listener *tls_listener_parse(json_t *tls, const char *path, struct cfg_errs *errs);
/* The listener speaks HTTP/2: the default ALPN list becomes h2, http/1.1 (an explicit
 * "alpn" is kept as configured). */
void tls_listener_offer_h2(struct tls_listener *t);
void tls_listener_free(struct tls_listener *t);
enum ktls_mode tls_listener_ktls_mode(const struct tls_listener *t);

/* Kernel TLS ULP available (probed once, at first call, with a loopback connection). */
bool tls_ktls_supported(void);

enum tls_io { TLS_OK, TLS_WANT_READ, TLS_WANT_WRITE, TLS_CLOSED, TLS_ERROR };

/* NULL on allocation failure. The fd stays owned by the caller. */
struct tls_conn *tls_conn_new(struct tls_listener *t, int fd);
void tls_conn_free(struct tls_conn *c);
enum tls_io tls_handshake(struct tls_conn *c);
/* *n is the number of bytes read/written when TLS_OK. */
enum tls_io tls_read(struct tls_conn *c, void *buf, size_t len, size_t *n);
enum tls_io tls_write(struct tls_conn *c, const void *buf, size_t len, size_t *n);
/* Sends close_notify (best effort, non-blocking). */
void tls_shutdown(struct tls_conn *c);
/* Valid after the handshake: whether the kernel does record crypto in that direction. */
bool tls_conn_ktls_tx(const struct tls_conn *c);
bool tls_conn_ktls_rx(const struct tls_conn *c);
/* Lower-case SNI host name the client sent, or NULL. */
const char *tls_conn_sni(const struct tls_conn *c);
/* Negotiated ALPN protocol copied into out, or NULL when none. */
const char *tls_conn_alpn(const struct tls_conn *c, char *out, size_t outlen);
bool tls_conn_resumed(const struct tls_conn *c);
/* "TLSv1.2" / "TLSv1.3" (static string). */
const char *tls_conn_version(const struct tls_conn *c);
/* The client's certificate (X509), NULL when it sent none; lives as long as the conn. */
const struct x509_st *tls_conn_peer_cert(const struct tls_conn *c);
/* A certificate was sent and verified against tls.client_ca (and tls.crl). */
bool tls_conn_peer_verified(const struct tls_conn *c);
/* RFC 4514 subject of the verified certificate, NULL when none. */
const char *tls_conn_peer_subject(const struct tls_conn *c);
/* malloc'd RFC 4514 text of a name (OpenSSL's RFC 2253 printing), NULL on failure. */
char *tls_name_text(const struct X509_name_st *name);
/* Bytes OpenSSL has decrypted but not yet returned (must be drained before polling). */
size_t tls_pending(const struct tls_conn *c);

/*
 * Extracts the SNI host name from a raw TLS ClientHello at the start of buf, for L4 SNI
 * routing without terminating. Returns 1 found (lower-case, trailing dot removed), 0 need
 * more bytes (the whole first record, at most 18437 bytes, is needed), -1 not a ClientHello
 * or no SNI. Never reads past len.
 */
int tls_peek_sni(const unsigned char *buf, size_t len, char *host, size_t hostlen);

/* Process-wide counters for metrics and /status. ktls_tx_bytes: plaintext the worker
 * handed straight to kTLS TX sockets (no SSL_write). */
struct tls_stats {
	unsigned long handshakes, handshake_failures, ktls_tx, ktls_rx, resumed;
	unsigned long ktls_tx_bytes;
	unsigned long ktls_spliced_responses, ktls_spliced_bytes; /* of those, spliced */
	unsigned long key_update_closes; /* kTLS TX connections ended by a peer's KeyUpdate */
};
void tls_count_ktls_tx_bytes(size_t n);
void tls_count_ktls_spliced_response(void);
void tls_count_ktls_spliced_bytes(size_t n);
void tls_stats_get(struct tls_stats *out);

#endif
