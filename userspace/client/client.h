/*
 * Asynchronous HTTP/1.1 client for requests the gateway makes itself on behalf of a
 * filter (composition calls, token introspection). One per worker, single-threaded: its
 * sockets run on the worker's ring (loop/ring.h callbacks), its deadlines on the worker's
 * timer heap (loop/timer.h), so nothing blocks and nothing needs a lock.
 *
 * A request names a configured upstream: the target is chosen by upstream/ (balance,
 * health, breaker) and reported back to it; idle keep-alive connections are pooled per
 * target (at most the upstream's `keepalive`); with the upstream's max_conns_per_target,
 * a call that finds every target full waits (polling every CLIENT_QUEUE_POLL_MS, counted
 * in the upstream's queue stats like the proxy's waiters) up to queue_timeout_ms, sharing
 * the per-target in-flight count with proxied requests; a connect failure is retried on another
 * target up to the upstream's `retries`, and a pooled connection the upstream had closed
 * is replaced once by a fresh one. Responses are parsed with http/ (Content-Length,
 * chunked, close-delimited bodies); the decoded body is held in memory up to a bound.
 * With opts.tls the connections speak TLS (OpenSSL on memory BIOs, records moved by the
 * ring), the peer's certificate verified against opts.tls_name.
 *
 * With the upstream's "protocol": "h2c" / "h2" the same calls go over HTTP/2 (nghttp2):
 * one session per connection, up to max_streams_per_connection streams on it (fewer if
 * the server's SETTINGS say so), then another connection; "h2" is TLS with ALPN "h2"
 * (opts.tls, else a context with the system roots). Streams refused by the server (GOAWAY
 * past its last-stream-id, REFUSED_STREAM) are retried once on a new connection; a
 * connection with a protocol error is closed and its calls fail CLIENT_ERR_PROTOCOL.
 * Each call is reported to health and breaker on its own, as for HTTP/1.1.
 *
 * Streaming calls (client_stream_start) hand the request body over piecewise and the
 * response as it comes, with backpressure both ways: the client holds at most
 * CLIENT_STREAM_BUF bytes of request body and one receive window (HTTP/2: 64 KiB per
 * stream; HTTP/1.1: one read chunk, the socket is not read meanwhile) of response body.
 *
 * The completion callback runs exactly once, never from inside client_request() (an
 * immediate failure is delivered from the timer heap), unless the caller cancels first.
 * What it is given is valid only during the call: copy what is needed.
 */
#ifndef XGATE_CLIENT_CLIENT_H
#define XGATE_CLIENT_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "http/http.h"

struct io_uring;
struct timer_heap;
struct metrics_shard;
struct xg_config;
struct upstream_config;
struct ssl_ctx_st;

#define CLIENT_DEFAULT_MAX_BODY (1u << 20)
#define CLIENT_QUEUE_POLL_MS 5

enum client_error {
	CLIENT_OK,
	CLIENT_ERR_NO_TARGET, /* no available target (health, breaker): 503 material */
	CLIENT_ERR_CONNECT,   /* refused, unreachable, connect timeout on every try */
	CLIENT_ERR_TIMEOUT,   /* the request's deadline passed */
	CLIENT_ERR_RESET,     /* closed or reset before the response was complete */
	CLIENT_ERR_PROTOCOL,  /* not a valid HTTP/1.1 response */
	CLIENT_ERR_TOO_LARGE, /* the body is over max_body_bytes */
	CLIENT_ERR_NOMEM,
	CLIENT_ERR_QUEUE_TIMEOUT, /* every target at max_conns_per_target for queue_timeout_ms */
};
const char *client_error_name(enum client_error e);

struct client_response {
	enum client_error err;
	int status;			  /* 0 unless err == CLIENT_OK */
	const struct http_response *head; /* NULL unless err == CLIENT_OK */
	const char *body;		  /* decoded payload (no chunk framing) */
	size_t body_len;
	const char *target; /* address of the target tried last, "" when none */
	uint64_t duration_us;
	/* h2 trailers, or the trailer fields of a chunked HTTP/1.1 response; NULL/0: none */
	const struct http_header *trailers;
	int ntrailers;
};

/* client_request_opts.body_len for streaming calls */
#define CLIENT_BODY_NONE ((size_t)-2)	 /* no body at all */
#define CLIENT_BODY_UNKNOWN ((size_t)-1) /* h1: chunked; h2: DATA until fin */

struct client_request_opts {
	const struct xg_config *cfg; /* the snapshot `upstream` indexes; outlives the request */
	int upstream;
	/* An upstream outside cfg->upstreams (the introspection IdP); `upstream` is then
	 * ignored. It must outlive the request, like cfg. */
	const struct upstream_config *upstream_config;
	/* https: a client SSL_CTX (verifying peers) and the name to verify the certificate
	 * against (an IP literal: its IP SAN; else a DNS name, also sent as SNI). NULL:
	 * plain HTTP. Only for upstreams whose targets all speak TLS, as their pooled
	 * connections are kept with the TLS session. */
	struct ssl_ctx_st *tls;
	const char *tls_name;
	const char *method; /* NULL: GET */
	const char *path;   /* origin-form target with query, already percent-encoded */
	const char *host;   /* Host value; NULL: the target's address */
	const char *headers; /* extra header lines, each ending in CRLF; NULL: none */
	const char *body;    /* copied; sent with Content-Length */
	size_t body_len;
	uint32_t timeout_ms;   /* whole request, retries included; 0: connect + read timeouts */
	size_t max_body_bytes; /* 0: CLIENT_DEFAULT_MAX_BODY */
	uint64_t hash;	       /* key for "balance": "hash" upstreams */
};

typedef void (*client_done_fn)(void *arg, const struct client_response *resp);

struct http_client;
struct client_call;

/* metrics may be NULL (then nothing is counted). NULL on memory exhaustion. */
struct http_client *client_new(struct io_uring *ring, struct timer_heap *timers,
			       struct metrics_shard *metrics);
/* Closes every connection; no request may be pending (their owners cancel them first).
 * Called after the ring is torn down when operations may still be armed. */
void client_free(struct http_client *cl);

/* Starts a request; NULL only on memory exhaustion or bad options (no callback then). */
struct client_call *client_request(struct http_client *cl, const struct client_request_opts *o,
				   client_done_fn done, void *arg);
/* Abandons a pending request: its callback will not run. Not from inside its callback. */
void client_cancel(struct client_call *call);

struct client_stream_cbs {
	/* Response head (interim 1xx skipped). */
	void (*on_head)(void *arg, const struct http_response *head);
	/* Decoded body bytes; returns how many were taken. Fewer than n: the client stops
	 * reading this response (h2: stops granting window) until client_stream_resume(). */
	size_t (*on_data)(void *arg, const char *p, size_t n);
	/* Trailers, once, before on_done (may never come). */
	void (*on_trailers)(void *arg, const struct http_header *h, int n);
	/* Exactly once, last: CLIENT_OK after the whole response, else the failure. Never
	 * from inside client_stream_start/_write/_resume (deferred through the timer heap). */
	void (*on_done)(void *arg, enum client_error err, const char *target);
	/* The request body has room again after client_stream_write took less than offered. */
	void (*on_writable)(void *arg);
};
/* opts as for client_request; opts->body must be NULL: the body comes through
 * client_stream_write. opts->body_len == CLIENT_BODY_NONE (no body), or the exact
 * Content-Length, or CLIENT_BODY_UNKNOWN (h1: chunked; h2: DATA until fin).
 * max_body_bytes does not apply (the caller takes the body as it comes). on_head,
 * on_data and on_trailers may be NULL. NULL on memory exhaustion or bad options, and for
 * "protocol": "http1" upstreams (client_request() there). */
struct client_call *client_stream_start(struct http_client *cl,
					const struct client_request_opts *o,
					const struct client_stream_cbs *cbs, void *arg);
/* Takes up to n body bytes (copies them); fin: the body ends after them. Returns bytes
 * taken (0..n), or -1 when the call already failed. */
ssize_t client_stream_write(struct client_call *call, const char *p, size_t n, bool fin);
/* Optional request trailers (h2 upstreams; h1: chunked trailers), sent with fin. */
bool client_stream_trailers(struct client_call *call, const struct http_header *h, int n);
void client_stream_resume(struct client_call *call);
/* client_cancel() abandons a streaming call too (h2: RST_STREAM CANCEL). */

/* Idle pooled connections to every target (for tests and status). */
unsigned client_idle_count(const struct http_client *cl);
/* Open HTTP/2 connections (for tests: calls share them). */
unsigned client_h2_connections(const struct http_client *cl);

#endif
