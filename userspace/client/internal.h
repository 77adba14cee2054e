/*
 * What client.c (HTTP/1.1) and h2.c (HTTP/2) share: the call, connection and pool
 * structures and the call's life cycle helpers. Not for users of client.h.
 */
#ifndef XGATE_CLIENT_INTERNAL_H
#define XGATE_CLIENT_INTERNAL_H

#include <openssl/ssl.h>

#include "client/client.h"
#include "config/config.h"
#include "loop/ring.h"
#include "loop/timer.h"
#include "metrics/metrics.h"
#include "upstream/upstream.h"

#define CONN_READ_CHUNK (16 * 1024)
#define TLS_RAW_CHUNK (16 * 1024 + 512) /* one TLS record and its overhead */
/* A streaming call buffers at most this much request body (client_stream_write). */
#define CLIENT_STREAM_BUF (64 * 1024)
/* HTTP/2 stream window we grant: the most response body a streaming call holds. */
#define CLIENT_H2_WINDOW 65535

struct h2conn;

struct cconn {
	struct ring_op op_tx; /* connect, then sends */
	struct ring_op op_rx; /* receives */
	struct http_client *cl;
	struct target_state *ts;
	int fd;
	bool tx_armed, rx_armed;
	bool connected;
	bool reused;   /* taken from the pool for the current call */
	bool closing;  /* freed once nothing is armed */
	bool got_bytes; /* the current call received something on it */
	struct client_call *call;
	char *in;
	size_t in_len, in_cap;
	uint64_t idle_since_ms;
	struct cconn *next_idle;
	struct cconn *all_next, *all_prev; /* every connection, so client_free finds them all */
	/*
	 * TLS (https upstreams): OpenSSL works on memory BIOs, the ring moves the records.
	 * Received records go from raw into the SSL object and come out as plaintext in `in`;
	 * the ciphertext OpenSSL produces is sent from tls_out, one send at a time.
	 */
	SSL *ssl;	/* NULL: plain TCP */
	bool tls_ready; /* handshake done */
	char *raw;
	char *tls_out;
	size_t tls_out_len, tls_out_sent, tls_out_cap;
};

struct client_pool {
	struct target_state *ts;
	struct cconn *idle;
	unsigned nidle;
	struct h2conn *h2; /* every HTTP/2 connection to the target (shared by calls) */
};

struct http_client {
	struct io_uring *ring;
	struct timer_heap *timers;
	struct metrics_shard *metrics;
	struct client_pool *pools;
	int npools;
	struct cconn *all;
	struct h2conn *h2all; /* every HTTP/2 connection, so client_free finds them all */
	SSL_CTX *h2_tls; /* "protocol": "h2" calls without opts.tls: system roots */
	/* Round-robin state for the snapshot last used (indexes change across reloads). */
	const struct xg_config *rr_cfg;
	struct balance_rr *rr;
	int nrr;
};

struct client_call {
	struct http_client *cl;
	client_done_fn done;
	void *arg;
	const struct xg_config *cfg;
	int upstream;
	const struct upstream_config *uc; /* set: not one of cfg's upstreams */
	SSL_CTX *tls;			  /* set: https */
	char *tls_name;
	enum http_method method;
	char *line;   /* "METHOD path HTTP/1.1\r\n" */
	char *suffix; /* extra headers, framing, empty line, body */
	size_t suffix_len;
	char *host;
	uint64_t hash;
	size_t max_body;
	uint64_t start_ns;
	uint64_t deadline_ms;
	uint64_t connect_due_ms; /* 0: not connecting */
	struct timer timer;
	enum client_error deferred; /* delivered from the timer (never from client_request) */
	bool deferring;
	/* the current attempt */
	int target;
	uint64_t tried;
	unsigned attempts;
	bool stale_retried;
	bool counted_active;
	bool waiting; /* for a connection slot (max_conns_per_target) */
	uint64_t wait_start_ns, wait_until_ms;
	enum client_error last_err;
	struct cconn *conn;
	char *out;
	size_t out_len, out_sent;
	/* the response */
	bool have_head;
	bool eof; /* the upstream closed: the end of a close-delimited body */
	size_t head_len;
	struct http_response resp;
	struct http_chunked chunked;
	size_t raw_done; /* chunked: raw bytes after the head already decoded */
	char *body;	 /* chunked: decoded payload */
	size_t body_len, body_cap;
	/* what h2 and streaming calls keep of the options */
	enum upstream_protocol proto;
	char *method_s, *path_s, *headers_s;
	/* the request body still to send: all of it (client_request) or what
	 * client_stream_write gave (at most CLIENT_STREAM_BUF) */
	char *sbuf;
	size_t sbuf_off, sbuf_len, sbuf_cap;
	size_t req_len; /* CLIENT_BODY_NONE, _UNKNOWN or the length */
	bool req_fin;	/* no more body after sbuf */
	struct http_header *req_trailers;
	int nreq_trailers;
	char *req_trailer_mem;
	/* streaming calls */
	bool streaming;
	struct client_stream_cbs cbs;
	bool want_writable; /* a write was cut short: on_writable when room comes */
	bool in_cb, cancelled; /* client_cancel from a callback: freed when it returns */
	bool head_delivered, trailers_delivered;
	struct timer ev; /* delivers events (data, done, writable, retries) from the heap */
	/* HTTP/2 */
	struct h2conn *h2;
	struct client_call *h2_next, *h2_prev;
	int32_t stream_id;
	bool h2_retried;   /* refused (GOAWAY past last-stream-id, REFUSED_STREAM) once */
	bool retry_pending; /* ev: attempt again (connect failed / refused) */
	bool retry_connecting;
	int hstate;	    /* 0 none, 1 response head, 2 interim head, 3 trailers */
	bool h2_complete;   /* END_STREAM seen */
	bool h2_closed;	    /* the stream is over; h2_err says how */
	bool deferred_data; /* the data provider returned DEFERRED: resume on write */
	bool body_sent;	    /* some request body went out on the current stream */
	enum client_error h2_err;
	/* response head and trailers: name/value offsets into hmem (it may move) */
	char *hmem;
	size_t hmem_len, hmem_cap;
	uint32_t (*hoff)[4];
	int nhoff, ntrail_off, hoff_cap;
	struct http_header *hdr_view;	/* built for delivery */
	struct http_response h2resp;
	/* streaming: response body received, not yet taken (at most one window) */
	char *rbuf;
	size_t rbuf_off, rbuf_len, rbuf_cap;
};


void cl_count(struct client_call *c, enum upstream_outcome outcome, bool report);
void cl_release_active(struct client_call *c);
void cl_wait_end(struct client_call *c, bool got, bool timed_out);
void cl_call_free(struct client_call *c);
void cl_call_finish(struct client_call *c, enum client_error err, bool reusable);
void cl_call_attempt(struct client_call *c);
void cl_call_defer(struct client_call *c, enum client_error err);
void cl_call_timer_fire(struct timer *t);
SSL *cl_tls_new(SSL_CTX *ctx, const char *name);
const struct upstream_config *cl_call_upstream(const struct client_call *c);
const struct target_config *cl_call_target(const struct client_call *c);
struct client_pool *cl_pool_find(struct http_client *cl, struct target_state *ts, bool create);

/* h2.c */
/* Starts c on an HTTP/2 connection to target tc (shared, or a new one). */
void h2_call_start(struct client_call *c, const struct target_config *tc);
/* The call's deadline timer fired (connect timeout or the whole deadline). */
void h2_call_timeout(struct client_call *c);
/* Takes the call off its connection (RST_STREAM CANCEL when it had a stream). */
void h2_call_detach(struct client_call *c, bool cancel);
/* Request body or window changes: let the connection send. */
void h2_call_kick(struct client_call *c);
void h2_call_event_fire(struct timer *t);
void h2_schedule(struct client_call *c);
void h2_conn_free_all(struct http_client *cl);
unsigned h2_idle_count(const struct http_client *cl);
/* Fills r from what the call received (head, body, trailers). */
void h2_fill_response(struct client_call *c, struct client_response *r);

#endif
