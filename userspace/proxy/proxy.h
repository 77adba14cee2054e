/*
 * io_uring proxy internals shared by the worker loop (worker.c), socket I/O (io.c),
 * the HTTP exchange state machine (exchange.c), tunnels (tunnel.c) and the messages
 * the gateway writes itself (messages.c).
 *
 * Every socket is a `struct side`. Each submitted SQE counts in side->inflight until its
 * final CQE arrives; a side is freed only when it is closed and nothing is in flight, so
 * no completion can ever reach freed memory.
 */
#ifndef XGATE_PROXY_PROXY_H
#define XGATE_PROXY_PROXY_H

#include <liburing.h>
#include <poll.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "auth/auth.h"
#include "common/clock.h"
#include "cache/cache.h"
#include "config/config.h"
#include "http/http.h"
#include "proxy/buf.h"
#include "proxy/gateway.h"
#include "loop/timer.h"
#include "stream/stream.h"
#include "loop/ring.h"
#include "upstream/upstream.h"

#define RECV_CHUNK (16 * 1024)
#define PROVIDED_BUFS 512
#define BUF_GROUP 0

enum op {
	OP_NONE,
	OP_ACCEPT,
	OP_RECV,
	OP_SEND,
	OP_CONNECT,
	OP_POLL,
	OP_SHUTDOWN,
	OP_CANCEL,
	OP_TIMER,
	OP_WAKE, /* the worker's eventfd: a new config or a stop request */
	OP_POLL_OUT, /* OP_POLL waits for POLLIN; both can be armed on one side at once */
	OP_IDLE_POLL, /* readability of a pooled upstream connection: bytes or FIN while idle */
	OP_COUNT,
};
#define OP_MASK RING_TAG_MASK
_Static_assert(OP_COUNT <= RING_TAG_CALLBACK, "proxy operation tags collide with ring_op's");

/* Bits of side->pending: operations armed right now. */
enum {
	PEND_RECV = 1 << 0,
	PEND_SEND = 1 << 1,
	PEND_CONNECT = 1 << 2,
	PEND_POLL_IN = 1 << 3,
	PEND_POLL_OUT = 1 << 4,
	PEND_SHUTDOWN = 1 << 5,
	PEND_TIMER = 1 << 6,
	PEND_IDLE_POLL = 1 << 7,
};

struct worker;
struct conn;
struct upconn;
struct tls_conn;
struct tunnel_pipes;
struct body_pipe;

struct side {
	struct worker *w;
	int fd;
	bool upstream; /* this side is a struct upconn */
	struct tls_conn *tls;
	bool tls_done; /* handshake finished */
	struct buf in, out;
	uint32_t pending;
	int inflight;
	bool eof;	  /* peer closed its write side */
	bool failed;	  /* reset, error or timeout: the side is unusable */
	bool timed_out;	  /* the last failure was a timeout */
	bool closing;	  /* close requested; freed when inflight reaches 0 */
	bool shut_wr;	  /* we sent FIN */
	bool want_shut_wr; /* send FIN once out is flushed */
	/* The last recv took less than a chunk: the socket was empty after it, so the next
	 * recv waits for readiness first instead of failing once with EAGAIN. */
	bool recv_drained;
	/* A pooled connection taken for a request whose first bytes have not been sent: its
	 * recv was armed while idle, and anything it receives now was sent before the
	 * upstream saw the request (never a response to it). */
	bool before_request;
	uint32_t send_len;
	uint32_t recv_timeout_ms; /* timeout for the next armed recv, 0 = none */
	uint32_t send_timeout_ms;
	/* Deadlines of the armed read (recv, POLLIN) and write (send, connect, POLLOUT) on the
	 * worker's timer heap; expiry cancels the operation, which then reports a timeout. */
	struct timer rx_deadline, tx_deadline;
	int err; /* last errno */
	uint32_t armed_recv_timeout_ms;
	bool cancel_requested; /* we cancelled the armed recv ourselves (to re-time it) */
	uint64_t bytes_received, bytes_sent;
	bool splice_enrolled;	   /* in the sockhash (splice_add) */
	uint64_t splice_base;	   /* bytes_received when enrolled */
	uint64_t splice_handled;   /* last total reported with splice_handled() */
	struct __kernel_timespec timer_ts;
	struct side *grave_next; /* on the worker's list of sides to free after this batch */
	bool flush_queued;	 /* on the worker's list of client sides to write at batch end */
	struct side *flush_next;
} __attribute__((aligned(16)));

enum conn_state {
	CS_TLS_HANDSHAKE,
	CS_HEAD,       /* waiting for a request head */
	CS_FILTERS,    /* the request's filter chain waits for something (stream_wake) */
	CS_REQ_BODY,   /* a filter waits for the whole request body: reading it */
	CS_QUEUED,     /* every target at max_conns_per_target: in the worker's FIFO queue */
	CS_CONNECTING, /* waiting for the upstream connection */
	CS_EXCHANGE,   /* request/response in flight */
	CS_TUNNEL,     /* upgraded or L4 flow relayed in userspace */
	CS_SNI_PEEK,   /* L4 listener waiting for the ClientHello */
	CS_CLOSING,    /* flushing cli.out, then close */
	CS_LINGER,     /* answer sent and FIN queued: discarding what the client still sends */
	CS_H2,	       /* HTTP/2: streams multiplexed by h2conn.c */
	CS_DEAD,
};

/* One request/response on a connection; taken from the worker's freelist when the exchange
 * begins and given back when it ends, so an idle keep-alive connection does not carry it. */
struct exchange {
	struct exchange *free_next; /* on the worker's freelist */
	uint64_t start_ns;
	int64_t start_wall_us;
	enum http_method method;
	char method_str[16];
	char *log_path; /* path as received, for the access log: log_path_short or malloc'ed */
	size_t log_path_len;
	char log_path_short[96];
	char request_id[HTTP_REQUEST_ID_MAX + 1];
	char consumer[128];
	int consumer_slot; /* metrics slot of an API-key consumer; -1 none */
	int route;    /* -1 none */
	int upstream; /* -1 none */
	int target;   /* -1 none */
	uint64_t tried_mask;
	int attempts;
	uint64_t hash;
	struct buf head; /* upstream request head, kept for a retry */
	bool keep_alive;
	bool upgrade;
	bool req_has_body;
	/* request body: client -> upstream */
	enum http_body req_body;
	uint64_t req_remaining;
	struct http_chunked req_chunked;
	struct buf req_trailers; /* the client's trailer section, filtered before it goes on */
	bool req_done;
	uint64_t req_body_bytes;
	/* the body's deadline (see body_recv_timeout): when reading it began, time the
	 * gateway itself stopped reading (backpressure), and since when it has not read */
	uint64_t body_start_ms, body_paused_ms, body_paused_since_ms;
	/* the body a filter asked for (stream_need_request_body): read whole into rb, then
	 * sent from the stream's req_body (rb or the filter's replacement) after the head */
	char *rb;
	size_t rb_len, rb_cap;
	bool rb_buffered; /* the request forwarded carries st->req_body, not a stream */
	size_t rb_sent;
	/* response: upstream -> client */
	bool resp_started; /* any byte of the response went to the client */
	int status;
	enum http_body resp_body;
	uint64_t resp_remaining;
	struct http_chunked resp_chunked;
	bool resp_dechunk; /* HTTP/1.0 client: strip chunked framing */
	bool resp_done;
	bool resp_close; /* the upstream connection cannot be reused */
	uint64_t bytes_in, bytes_out;
	/* a filter transforms the body (stream_claim_body): the client gets its output,
	 * framed by us; xf_ready payload bytes at the head of the upstream buffer are
	 * de-framed and waiting for the transform */
	bool xf;
	bool xf_done; /* the transform finished and the body's end went out */
	size_t xf_ready;
	/* a filter holds the response (stream_hold_response): the origin head is kept in the
	 * stream's arena and the de-framed body gathered here before anything is sent */
	bool holding;
	char *hold_head;
	size_t hold_head_len;
	char *hold_buf;
	size_t hold_len, hold_cap;
	bool counted_active; /* target_state.active was incremented */
	bool client_http10;
	/* body_splice.c: the Content-Length body goes upstream -> pipe -> kTLS client */
	bool splice_body;
	bool spliced_counted;
	/* a cached response being sent (the cache filter owns the hit until stream end) */
	bool from_cache;
	bool no_age; /* a filter's own response (compose) served on the cached path */
	const struct cache_hit *hit;
	size_t hit_off;
};

struct conn {
	struct side cli; /* first: a conn is found from its client side */
	struct xg_config *cfg;
	int listener;
	struct sockaddr_storage peer;
	socklen_t peerlen;
	char peer_ip[INET6_ADDRSTRLEN];
	char peer_addr[INET6_ADDRSTRLEN + 8];
	enum conn_state state;
	struct upconn *up;
	struct exchange *ex; /* NULL between exchanges */
	struct stream *st; /* the request's stream while an exchange is on */
	struct h2conn *h2; /* CS_H2: the HTTP/2 session and its streams */
	bool h1_seen;	   /* an HTTP/1 request came: no h2 preface any more */
	bool in_exchange;
	uint64_t deadline_ms; /* header deadline in CS_HEAD once bytes arrived; the
			       * handshake's total deadline; the end of lingering */
	uint64_t lingered_bytes;
	bool close_after;     /* close once cli.out is flushed */
	bool l4;	     /* tcp-mode listener: no HTTP */
	bool splice_wanted;  /* the flow may move into the kernel once it is a tunnel */
	bool spliced;	     /* paired in the sockhash */
	bool pipe_wanted;    /* splice "auto": the tunnel moves into pipes once quiescent */
	struct tunnel_pipes *pipes; /* tunnel_pipe.c, while the flow is piped */
	struct body_pipe *body_pipe; /* body_splice.c, while a response body is spliced */
	struct conn *next, *prev; /* worker's connection list */
	/* CS_QUEUED: place in the worker's queue and the wait's deadline (upqueue.c) */
	struct conn *qnext, *qprev;
	bool queued;
	struct timer qtimer;
	uint64_t queued_ns;
};

struct upconn {
	struct side s;
	struct target_state *ts;
	struct sockaddr_storage addr;
	socklen_t addrlen;
	struct conn *owner; /* NULL while idle in the pool */
	bool idle_poll_stale; /* its idle poll was armed before this owner took it */
	int metrics_slot; /* the target's upstream-request counters */
	bool connected;
	bool reused;
	uint64_t received_before; /* s.bytes_received when this exchange took it */
	uint64_t idle_since_ms;
	struct upconn *next_idle;
	struct upconn **pool_head;
};

struct pool {
	struct target_state *ts;
	struct upconn *idle;
	uint32_t nidle;
};

struct listen_sock {
	char *address; /* listener address text: key across reloads */
	int fd;
	int listener; /* index in the worker's current config */
	bool accept_armed;
	bool closing;
	bool stale; /* not in the current config any more */
};

struct worker {
	int id;
	struct gateway *gw;
	struct io_uring ring;
	struct io_uring_buf_ring *br;
	char *bufs;
	int br_mask;
	struct xg_config *cfg;
	struct listen_sock **ls;
	int nls;
	struct pool *pools;
	int npools;
	struct balance_rr *rr; /* per upstream of cfg */
	int nrr;
	struct jwt_cache *jwt_cache;
	struct intro_cache *intro; /* introspection answers and IdP calls */
	struct resp_cache *cache;
	struct metrics_shard *metrics;
	struct stream_pool *streams;
	struct http_client *client; /* sub-requests of filters (client/client.h) */
	struct cluster_rl *cluster; /* Redis rate limits (cluster/cluster.h) */
	struct stream_env env;
	struct timer_heap timers;
	/* requests waiting for a connection slot, oldest first (upqueue.c) */
	struct conn *queue_head, *queue_tail;
	struct timer queue_timer;
	struct exchange *ex_free; /* exchanges to reuse (exchange.c) */
	struct conn conns_head; /* sentinel of a circular list */
	unsigned long nconns;
	unsigned long max_conns;
	uint64_t req_counter;
	uint64_t now_ms; /* CLOCK_MONOTONIC, refreshed every loop iteration */
	bool draining;
	uint64_t drain_deadline_ms;
	pthread_t thread;
	bool started;
	pthread_mutex_t init_lock;
	pthread_cond_t init_cond;
	int init_state; /* 0 starting, 1 running, -1 failed */
	char init_err[256];
	unsigned long live_sides; /* allocated sides not yet freed */
	int wake_fd;
	uint64_t wake_val;
	/* Closed sides are freed after the current batch of completions, so code still on
	 * the stack (a state machine step that just closed its connection) never touches
	 * freed memory. */
	struct side *graveyard;
	/* Client sides with bytes to send: written once at the end of the batch, so what many
	 * streams (HTTP/2) or events finished in one batch leaves in one send or SSL_write
	 * instead of one each, and the peer gets fewer, fuller segments (worker_flush_sends). */
	struct side *flush_list;
	bool flushing; /* worker_flush_sends runs: client sides send at once */
	atomic_ulong active_conns; /* read by /status */
};

/* worker.c */
struct io_uring_sqe *worker_sqe(struct worker *w);
struct upconn *pool_take(struct worker *w, struct target_state *ts);
void pool_put(struct worker *w, struct upconn *u, uint32_t keepalive);
/* An idle pooled connection became readable (bytes or FIN): it leaves the pool, closed. */
void pool_idle_event(struct worker *w, struct upconn *u);
void pool_idle_recv(struct worker *w, struct upconn *u);
/* Counts a framing violation by a target whose connection is being dropped for it. */
void upconn_protocol_error(struct upconn *u);
struct balance_rr *worker_rr(struct worker *w, const struct xg_config *cfg, int upstream);
void conn_free(struct conn *c);

/* io.c */
void side_init(struct side *s, struct worker *w, int fd, bool upstream);
/* Arm functions return true when they made progress synchronously (TLS). */
bool side_arm_recv(struct side *s);
bool side_arm_send(struct side *s);
void side_retime_recv(struct side *s);
void side_cancel_recv(struct side *s);
void side_arm_poll_in(struct side *s);
void side_arm_poll_out(struct side *s);
void side_arm_shutdown(struct side *s);
void side_arm_timer(struct side *s, uint32_t ms);
void side_close(struct side *s); /* frees the owning struct once nothing is in flight */
void worker_bury(struct worker *w); /* frees the sides closed during this batch */
void worker_flush_sends(struct worker *w); /* sends for the sides side_arm_send queued */
void side_complete(struct side *s, enum op op, struct io_uring_cqe *cqe);
bool side_idle(const struct side *s);
void upconn_connect(struct upconn *u, uint32_t timeout_ms);
struct upconn *upconn_new(struct worker *w, const struct target_config *tc);
bool side_tls_pump(struct side *s); /* TLS: read/write what it can; true when progress */

/* exchange.c */
void conn_accepted(struct worker *w, int fd, int listener);
void conn_advance(struct conn *c);
void conn_on_upconn_event(struct upconn *u);
void conn_abort(struct conn *c);

/*
 * Upstream connection-slot queue (upqueue.c). A request that finds every available target
 * at max_conns_per_target waits, oldest first, until a slot is released or its
 * queue_timeout_ms passes (503). Slots released on this worker retry the queue on the next
 * timer pass; slots released by other workers are noticed by a short poll while the queue
 * is not empty.
 */
void upqueue_add(struct conn *c, uint32_t timeout_ms);
void upqueue_remove(struct conn *c);	/* no-op when c is not queued */
void upqueue_granted(struct conn *c);	/* remove: it got a slot (wait time counted) */
void upqueue_released(struct worker *w); /* a slot of some target was released */
/* exchange.c: a queued request retries its pick; its wait expired. */
void conn_queue_retry(struct conn *c);
void conn_queue_expired(struct conn *c);
void finish_exchange(struct conn *c, bool upstream_reusable);
/* Gives the connection an exchange (reset) if it has none; false on memory exhaustion. */
bool conn_take_exchange(struct conn *c);
void exchange_freelist_free(struct worker *w);
size_t pump_room(struct side *src, struct side *dst);
void exchange_reset(struct conn *c);

/* h2conn.c: HTTP/2 from clients (after ALPN "h2" or the h2c preface) */
bool h2conn_start(struct conn *c);
bool h2conn_step(struct conn *c);
bool h2conn_arm(struct conn *c);
void h2conn_free(struct conn *c);
/* Graceful GOAWAY (drain, new config): in-flight streams finish. */
void h2conn_drain(struct conn *c);

/* tunnel.c */
void tunnel_start(struct conn *c);
bool tunnel_step(struct conn *c);
void l4_start(struct conn *c);
bool l4_sni_step(struct conn *c);
void tunnel_release_splice(struct conn *c);
bool splice_enrol(struct conn *c, struct side *s);

/* body_splice.c */
bool body_splice_eligible(const struct conn *c, const struct http_response *resp);
bool body_splice_step(struct conn *c);
void body_splice_release(struct conn *c);
void side_arm_poll_in_timed(struct side *s, uint32_t timeout_ms);
void side_arm_poll_out_timed(struct side *s, uint32_t timeout_ms);

/* tunnel_pipe.c */
bool tunnel_pipe_engage(struct conn *c);
bool tunnel_pipe_step(struct conn *c);
void tunnel_pipe_release(struct conn *c);

/* messages.c */
void respond_error(struct conn *c, int status, const char *reason, bool close_conn,
		   const char *extra_headers);
/* The head of a held response rewritten for its new body (status line and headers without
 * the empty line, as a cache hit's head), ctype replacing Content-Type unless NULL: 0 when
 * it does not fit cap. */
size_t build_held_head(const struct http_response *resp, const char *ctype, size_t body_len,
		       char *out, size_t cap);
/* What the header selection forwarding needs to know of the client connection, shared by
 * the HTTP/1 exchange and HTTP/2 streams (one rule set for both). */
struct fwd_ctx {
	const struct xg_config *cfg;
	int route; /* -1: none */
	bool ipv6;
	const char *peer_ip;
	bool tls;
	const char *client_subject; /* verified client certificate; NULL: none */
	const char *request_id;
	const struct stream *st;
};
/* The header lines to forward (no request line, Host or framing), appended to out. */
bool build_forward_lines(const struct fwd_ctx *c, const struct http_request *req,
			 const struct auth_result *auth, struct buf *out);
/* The upstream request target: path then the (filtered or rewritten) query. */
bool build_forward_target(const struct fwd_ctx *c, const struct http_request *req,
			  const char *path, size_t path_len, struct buf *out);
bool build_upstream_head(struct conn *c, const struct http_request *req, const char *path,
			 size_t path_len, const struct auth_result *auth, bool upgrade,
			 struct buf *out);
bool build_client_head(struct conn *c, const struct http_response *resp, struct buf *out);
void make_request_id(struct worker *w, char *out, size_t len);
/* A filter's whole 200 JSON response (stream_reply_body) as a cache hit, in the stream's
 * arena, which both hosts serve like a cached one; NULL when the arena is exhausted. */
struct cache_hit *body_as_hit(struct stream *st, const char *headers, const char *body, size_t len);
bool parse_cached_head(struct conn *c, const struct cache_hit *hit, struct http_response *resp);
bool write_cached_head(struct conn *c, const struct cache_hit *hit,
		       const struct http_response *resp);

#endif
