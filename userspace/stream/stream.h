/*
 * Streams and filters: one request/response exchange, independent of the protocol that
 * carried it, walked through a chain of filters that may pause it.
 *
 * A codec (HTTP/1 today) parses a request head and opens a stream with it; the stream keeps
 * its own copy of the head in its arena, so the parsed request (struct http_request, whose
 * strings point into the arena) lives until the stream ends, whatever the connection's
 * buffers do meanwhile. The stream then runs its filter chain from a cursor:
 *
 *   FILTER_CONTINUE  go on with the next filter;
 *   FILTER_WAIT      the filter started work it does not have the result of yet (a
 *                    sub-request, a timer, a Redis reply). Nothing stays on the stack:
 *                    whoever completes the work calls stream_wake() (or stream_ref_wake()
 *                    with a reference taken before waiting), which puts the stream on its
 *                    worker's run queue; stream_runq_drain(), called after each completion
 *                    batch, runs the same filter's on_request again (never re-entering);
 *   FILTER_DONE      the filter answered the request itself (stream_reply_error() or a
 *                    host operation such as serving a cached response): the chain stops.
 *
 * When every filter continued, the host forwards the request (ops->forward). Response heads
 * and body bytes pass through on_response / on_response_data of every filter the request
 * went through. on_end runs exactly once for each such filter when the stream ends —
 * completed, failed or cancelled while waiting — in reverse order: it is where a filter
 * cancels its work, releases what it holds and accounts the exchange.
 *
 * Response hooks may also change what the client gets, in one way each:
 *   headers  from on_response, stream_resp_header_add() / _remove() record edits in the
 *            stream; the host applies them when it serialises the response head: origin
 *            headers whose name was removed are skipped, then every added line is written.
 *            A set is a remove plus an add. Gateway-made responses (errors, preflights,
 *            st->resp_local) pass through on_response too and get the added lines;
 *   body     one filter per stream may claim the body (stream_claim_body() from its
 *            on_response); the host then passes the decoded payload (no framing) through
 *            that filter's on_response_body and writes what it produces instead, re-framed
 *            for the client (chunked for HTTP/1.1, close-delimited for HTTP/1.0). The host
 *            offers only the room its client buffer has, and takes back only what the
 *            transform consumed, so backpressure is that of an untransformed body and
 *            nothing is buffered beyond the filter's own encoder state. After the last
 *            input the host calls with fin until the filter reports done.
 * on_response_data always sees the body as it came (before any transform): what a cache
 * stores is the origin's representation.
 *   whole    a filter that needs the whole origin body before the client gets anything
 *            (a JSON rewrite that may still fail) calls stream_hold_response() from
 *            on_response of an upstream head instead: the host sends nothing, reads the
 *            whole body (de-framed, at most max; past it 502), then calls that filter's
 *            on_response_whole. It either answers with a new body (stream_set_response_
 *            body) or fails the exchange (the host answers 502 with the reason). The new
 *            response then goes out like a cached one: every filter's on_response sees
 *            its head again (a second call; edits start over, compression may claim the
 *            body), with the origin's status and headers and a new Content-Length. Holds
 *            are only honoured for upstream responses; on_response_data does not see a
 *            held body.
 *
 * Request side, for filters that must see or change what goes upstream:
 *   body     by default the request body streams from the client to the upstream after
 *            forward, and no filter sees it. A filter that needs it calls
 *            stream_need_request_body(st, max) from on_request and returns FILTER_WAIT;
 *            the host reads the whole body (de-chunked; trailers are dropped), bounded by
 *            max (past it the host answers 413 itself and the stream ends) and by the body
 *            idle timeout, sets req_body / req_body_len / req_body_ready and wakes the
 *            stream: the same on_request runs again. stream_set_request_body() replaces
 *            what is forwarded (the stream keeps a copy). A buffered body goes upstream
 *            with Content-Length and no Transfer-Encoding; chains that never ask keep
 *            the streaming path;
 *   headers  stream_req_header_add() / _remove() record edits applied where the upstream
 *            head is built, like the response ones (client headers whose name was removed
 *            are skipped, then the added lines are written; headers the gateway controls,
 *            framing and forwarding, are never written from an edit);
 *   target   stream_set_upstream_path() / stream_set_upstream_query() replace the path
 *            (then strip_prefix does not apply) and the query the upstream gets.
 *
 * Streams come from a per-worker pool and are never handed back to malloc while the worker
 * runs, so a late completion holding a struct stream_ref finds a stream whose generation
 * moved on and does nothing.
 */
#ifndef XGATE_STREAM_STREAM_H
#define XGATE_STREAM_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "auth/auth.h"
#include "http/http.h"
#include "router/router.h"

#define STREAM_MAX_FILTERS 16
#define STREAM_MAX_RESP_EDITS 24
#define STREAM_MAX_REQ_EDITS 24

struct stream;
struct xg_config;
struct cache_hit;
struct jwt_cache;
struct resp_cache;
struct metrics_shard;
struct timer_heap;
struct io_uring;
struct http_client;
struct intro_cache;
struct cluster_rl;

/* The worker's resources filters use; owned by the worker, outlive every stream. */
struct stream_env {
	struct jwt_cache *jwt_cache;
	struct resp_cache *cache;
	struct metrics_shard *metrics;
	struct timer_heap *timers;
	struct io_uring *ring; /* for loop/ring.h operations; NULL in unit tests' fake hosts */
	struct http_client *client; /* client/client.h sub-requests; NULL in fake hosts */
	struct intro_cache *intro; /* auth/introspect.h answers and IdP calls; NULL: none */
	struct cluster_rl *cluster; /* cluster/cluster.h Redis rate limits; NULL in fake hosts */
};

enum filter_verdict {
	FILTER_CONTINUE,
	FILTER_WAIT,
	FILTER_DONE,
};

/* One call of a body transform: input the host offers, room it has for the output. */
struct stream_body_io {
	const char *in;
	size_t in_len;
	size_t in_used; /* set by the filter: input bytes consumed (the host drops them) */
	char *out;
	size_t out_cap;
	size_t out_len; /* set by the filter: bytes written to out */
	bool flush;	/* the host has no more input right now: emit what is pending */
	bool fin;	/* in holds the last of the body */
	bool done;	/* set by the filter: fin seen, everything written */
};

/* A response header edit: value NULL removes every origin header of that name. */
struct stream_hdr_edit {
	const char *name;
	const char *value;
};

struct filter {
	const char *name;
	/* Bytes of per-stream state, zeroed at stream open, passed as `state`. */
	size_t state_size;
	/* The request head is complete. Called again after a WAIT once the stream is woken.
	 * NULL: the filter only acts on the response (it continues). */
	enum filter_verdict (*on_request)(struct stream *st, void *state);
	/* The response head the client will get (from the upstream or made by the gateway). */
	void (*on_response)(struct stream *st, void *state, const struct http_response *resp);
	/* Response body bytes as the origin sent them (before a transform), in order. */
	void (*on_response_data)(struct stream *st, void *state, const char *p, size_t n);
	/* The body transform of a filter that claimed the body: 0, or -1 when it failed (the
	 * host drops the connection: the client cannot be given a valid body any more).
	 * Must make progress (consume or produce) whenever in_len, fin or its pending output
	 * and out_cap allow it. */
	int (*on_response_body)(struct stream *st, void *state, struct stream_body_io *io);
	/* The whole origin body a filter held (stream_hold_response): false fails the
	 * exchange with a 502 giving *reason. */
	bool (*on_response_whole)(struct stream *st, void *state, const char *body, size_t len,
				  const char **reason);
	/* Always, once, at stream end (st->completed tells whether the response was whole). */
	void (*on_end)(struct stream *st, void *state);
};

/* What the host (the connection that owns the stream) does for the filters. */
struct stream_host_ops {
	/* Answer with the gateway's JSON error (SPEC), optional extra header lines. */
	void (*reply_error)(struct stream *st, int status, const char *reason,
			    const char *extra_headers);
	/* Answer from the response cache; the hit stays valid until the stream ends. */
	void (*reply_cached)(struct stream *st, const struct cache_hit *hit);
	/* Answer with a bodiless response (a CORS preflight's 204) and these header lines. */
	void (*reply_status)(struct stream *st, int status, const char *headers);
	/* Answer 200 with this JSON body (the filter's until the stream ends) and extra header
	 * lines; the body passes through on_response_data like an origin's (compose). */
	void (*reply_body)(struct stream *st, const char *headers, const char *body,
			   size_t len);
	/* Every filter continued: send the request upstream. */
	void (*forward)(struct stream *st);
	/* A filter waits for the whole request body (stream_need_request_body): read it,
	 * bounded by st->req_body_max, then wake the stream. NULL: the host cannot. */
	void (*read_body)(struct stream *st);
	/* A woken stream's chain ran (the stream may have ended meanwhile): let the host
	 * move on (arm I/O, write what a filter produced). */
	void (*resumed)(void *host);
};

struct stream_arena {
	char *base;
	size_t used, cap;
};

struct stream_pool;

struct stream {
	uint64_t gen; /* changes when the stream ends: stale references see another value */
	struct stream_pool *pool;
	const struct stream_host_ops *ops;
	void *host;
	const struct xg_config *cfg; /* the snapshot the host pinned; valid while it lives */
	const struct stream_env *env;
	uint64_t now_ms;	     /* the worker's clock at the last run */
	/* The request as the codec parsed it; strings point into the arena. */
	struct http_request req;
	const char *peer_ip;
	const struct sockaddr *peer_addr;  /* with the port; NULL in fake hosts */
	const struct sockaddr *local_addr; /* the listener's address; NULL: unknown */
	bool is_ipv6;
	bool tls;		    /* the client connection is TLS */
	struct auth_peer client_cert; /* the connection's client certificate (mTLS) */
	const char *request_id; /* the exchange's X-Request-Id; "" when none */
	const char *log_calls;	/* access-log "calls" (a JSON array, in the arena); NULL: none */
	const char *log_waf;	/* access-log "waf_rules" (a JSON array, in the arena); NULL: none */
	/* Filled by the filters as they go. */
	char host_name[256];
	size_t host_len;
	char *path; /* normalised path, in the arena */
	size_t path_len;
	int route; /* -1: none */
	int upstream; /* the pool the request goes to (the route's, or a split's choice) */
	struct route_match match;
	struct auth_result auth;
	bool auth_done;
	char consumer[128];
	char identity[AUTH_IDENTITY_MAX]; /* auth_result.identity: the key of who it is */
	/* Set by the host. */
	int status;
	bool completed;	 /* the whole response reached the client's buffers */
	bool resp_local; /* the response is made by the gateway (error, preflight), not the origin */
	/* Response edits the filters asked for (see the top of this file). */
	struct stream_hdr_edit resp_edits[STREAM_MAX_RESP_EDITS];
	int nresp_edits;
	int body_filter; /* chain index of the filter transforming the body; -1: none */
	/* Request edits (see the top of this file). */
	struct stream_hdr_edit req_edits[STREAM_MAX_REQ_EDITS];
	int nreq_edits;
	const char *up_path; /* NULL: the normalised path (with strip_prefix) */
	size_t up_path_len;
	const char *up_query; /* NULL: the client's query */
	size_t up_query_len;
	/* The buffered request body: asked for, its bound, and once read, the bytes. */
	bool req_body_wanted;
	bool req_body_ready;
	size_t req_body_max;
	const char *req_body;
	size_t req_body_len;
	char *req_body_copy; /* stream_set_request_body()'s copy, freed at stream end */
	/* A held response (see the top of this file). */
	int hold_filter; /* chain index; -1: none */
	size_t hold_max;
	char *resp_body; /* stream_set_response_body()'s copy, freed at stream end */
	size_t resp_body_len;
	const char *resp_body_type; /* its Content-Type; NULL: the origin's */
	/* Chain. */
	const struct filter *chain[STREAM_MAX_FILTERS];
	void *state[STREAM_MAX_FILTERS];
	int nfilters;
	int cursor;  /* next filter to run (or the waiting one) */
	int entered; /* filters whose on_request was called: they get on_end */
	bool waiting, queued, ended, running;
	bool end_requested; /* stream_end() while a filter ran: ends when it returns */
	struct stream *runq_next;
	struct stream_arena arena;
};

/* A reference that survives the stream: waking it after the stream ended does nothing. */
struct stream_ref {
	struct stream *st;
	uint64_t gen;
};

struct stream_pool *stream_pool_new(void);
/* Frees every stream; none may be open. */
void stream_pool_free(struct stream_pool *p);
unsigned long stream_pool_open_count(const struct stream_pool *p);

/*
 * Opens a stream for a parsed request head: copies `head` (head_len bytes, the buffer
 * `req` was parsed from) into the stream's arena and points the copy of `req` there.
 * NULL on memory exhaustion.
 */
struct stream *stream_open(struct stream_pool *p, const struct stream_host_ops *ops, void *host,
			   const struct xg_config *cfg, const struct http_request *req,
			   const char *head, size_t head_len);
/* Memory that lives as long as the stream (8-byte aligned); NULL when exhausted. */
void *stream_alloc(struct stream *st, size_t n);
char *stream_strdup(struct stream *st, const char *p, size_t n);

/* Appends a filter to the chain (before the chain runs or from a filter while it runs). */
bool stream_add_filter(struct stream *st, const struct filter *f);
/* Runs the chain from its cursor until a filter waits or answers, or the chain ends. */
void stream_run(struct stream *st, uint64_t now_ms);
void stream_reply_error(struct stream *st, int status, const char *reason,
			const char *extra_headers);
/* A bodiless answer from a filter (ops->reply_status). */
void stream_reply_status(struct stream *st, int status, const char *headers);
/* A 200 with a body the filter made (ops->reply_body). */
void stream_reply_body(struct stream *st, const char *headers, const char *body, size_t len);
void stream_response(struct stream *st, const struct http_response *resp);
void stream_response_data(struct stream *st, const char *p, size_t n);

/* Response head edits (from on_response); false when the edit list or the arena is full. */
bool stream_resp_header_add(struct stream *st, const char *name, const char *value);
bool stream_resp_header_remove(struct stream *st, const char *name);
/* Edits still possible: a filter that needs several checks first, so it never half-edits. */
int stream_resp_edits_room(const struct stream *st);
/* Host side: whether an origin header is to be dropped. */
bool stream_resp_header_removed(const struct stream *st, struct http_str name);
/* Request head edits (from on_request); false when the edit list or the arena is full. */
bool stream_req_header_add(struct stream *st, const char *name, const char *value);
bool stream_req_header_remove(struct stream *st, const char *name);
int stream_req_edits_room(const struct stream *st);
/* Host side: whether a client header is not to be forwarded. */
bool stream_req_header_removed(const struct stream *st, struct http_str name);
/* The path (starting with '/') and query (without '?') the upstream gets; copied. */
bool stream_set_upstream_path(struct stream *st, const char *p, size_t n);
bool stream_set_upstream_query(struct stream *st, const char *p, size_t n);
/*
 * Asks the host for the whole request body, at most max bytes (from on_request, which then
 * returns FILTER_WAIT and runs again with req_body_ready). false when the host cannot
 * buffer bodies. A request without a body is ready at once with req_body_len 0.
 */
bool stream_need_request_body(struct stream *st, size_t max);
/* Replaces the body forwarded upstream (the stream keeps a copy); false on no memory. */
bool stream_set_request_body(struct stream *st, const char *p, size_t n);
/* From on_response: the host reads the whole origin body first (at most max bytes) and
 * passes it to this filter's on_response_whole. false: another filter holds already, or
 * the filter has no such hook. */
bool stream_hold_response(struct stream *st, void *state, size_t max);
/* From on_response_whole: the body the client gets instead (copied). */
bool stream_set_response_body(struct stream *st, const char *p, size_t n);
/* Its Content-Type (copied); the origin's is dropped. */
bool stream_set_response_type(struct stream *st, const char *type);
/* Host side: the held body is in; false with *reason when the filter failed it. */
bool stream_response_whole(struct stream *st, const char *body, size_t len, const char **reason);
/* The filter owning `state` transforms the body; false when another one already does or
 * it has no on_response_body. */
bool stream_claim_body(struct stream *st, void *state);
static inline bool stream_transforms_body(const struct stream *st)
{
	return st && st->body_filter >= 0;
}
/* Host side: one transform call (see struct stream_body_io). */
int stream_response_body(struct stream *st, struct stream_body_io *io);
/* Runs every entered filter's on_end (reverse order) and returns the stream to its pool. */
void stream_end(struct stream *st);

struct stream_ref stream_ref(struct stream *st);
bool stream_ref_live(struct stream_ref r);
/* Queues a waiting stream to run again; harmless for a stream that is not waiting. */
void stream_wake(struct stream *st);
void stream_ref_wake(struct stream_ref r);
/* Runs the streams woken since the last drain (and those they wake). */
void stream_runq_drain(struct stream_pool *p, uint64_t now_ms);
bool stream_runq_empty(const struct stream_pool *p);

#endif
