/*
 * HTTP/2 from clients: the host of an h2/ session on a client connection (after ALPN "h2",
 * or the connection preface on a plain listener with "http2": true). The socket I/O is the
 * connection's side as for HTTP/1 (io.c); this file moves its bytes through nghttp2 and
 * makes every request stream a struct stream, so the same filter chain runs per stream.
 *
 * A request's header block, once nghttp2 validated it, is written as an HTTP/1.1 head
 * and parsed by http/ (its strictness and normalisation, the struct http_request the
 * filters read). Once every filter continued, a stream to an h2c/h2 upstream is forwarded
 * as it comes (client_stream_start): request DATA is acknowledged to the client only as
 * the upstream call takes it (the stream's window is held from the request on), response
 * DATA goes into the session's per-stream buffer only as far as it has room (the call is
 * paused, and resumed once half of it went out), trailers pass both ways, a gRPC
 * grpc-timeout is the call's deadline. A filter that needs the whole response body
 * (hold, transform) gets it gathered; one that reads the whole request body gets it first
 * (the call then takes the body from there). HTTP/1.1 upstreams get the buffered call
 * (client_request), the answer sent as one HEADERS and DATA frames read from the buffered
 * body at the pace of the window.
 *
 * Memory per connection is bounded: the client socket is read only while nghttp2's output
 * is flushed to the side's buffer (SETTINGS/PING floods meet the ACK bound), request
 * bodies by one stream window when streamed, else by limits.max_body_bytes (or a filter's
 * bound: 413), response bodies by H2S_STREAM_BUF plus the client's window when streamed,
 * else by the client's max body (H2_MAX_RESPONSE_BYTES).
 */
#include <string.h>
#include <time.h>

#include "accesslog/accesslog.h"
#include "cache/cache.h"
#include "client/client.h"
#include "common/log.h"
#include "filters/filters.h"
#include "h2/h2.h"
#include "metrics/metrics.h"
#include "proxy/proxy.h"
#include "tls/tls.h"

#define H2_MAX_RESPONSE_BYTES (16u << 20)
#define H2_RESET_BURST 200
#define H2_RESET_PER_S 50
#define H2_MAX_CONTINUATIONS 16
#define H2_MAX_OUTBOUND_ACK 256
/* nghttp2's output is pulled into cli.out only below this much unsent there */
#define H2_OUT_LOW (16 * 1024)

struct h2conn;

struct h2stream {
	struct h2stream *next, *prev;
	struct h2conn *hc;
	int32_t sid;
	struct stream *st;
	struct client_call *call;
	char *body; /* the request body, gathered */
	size_t body_len, body_cap;
	bool body_done, body_over;
	bool reading_body; /* a filter waits for it (read_body) */
	bool want_forward; /* forward came before the body's end */
	bool responded;
	bool grpc;
	bool head; /* HEAD request */
	/* how the stream is forwarded: undecided while the filters run (the request
	 * window is held meanwhile), the whole body with client_request(), or streamed */
	enum { FWD_UNDECIDED, FWD_BUFFER, FWD_STREAM } mode;
	size_t body_total; /* request body bytes received (limits.max_body_bytes) */
	size_t body_off;   /* FWD_STREAM from a filter's whole body: bytes handed on */
	bool fin_sent;	   /* the upstream has the request body's end */
	bool up_paused;	   /* on_data took less than offered: resume once there is room */
	bool collect;	   /* FWD_STREAM, but the answer is gathered whole (hold, transform) */
	bool head_pending; /* FWD_STREAM: the origin head waits for the first body byte */
	bool collect_over;
	struct http_response *rhead; /* the origin head, copied (strings in rhead_mem) */
	void *rhead_mem;
	char *rbody;
	size_t rbody_len, rbody_cap;
	struct http_header *rtrail; /* the origin's trailers, copied to the arena */
	int nrtrail;
	struct http_header *qtrail; /* the client's request trailers (FWD_STREAM passes them) */
	int nqtrail;
	/* the upstream's trailers, during upstream_done only (the client owns them) */
	const struct http_header *trailers;
	int ntrailers;
	/* accounting */
	uint64_t start_ns;
	int64_t start_wall_us;
	char request_id[HTTP_REQUEST_ID_MAX + 1];
	char method[16];
	char *log_path;
	size_t log_path_len;
	int status;
	int route, upstream, consumer_slot;
	char consumer[128];
	char target[64];
	uint64_t bytes_in, bytes_out;
};

struct h2conn {
	struct conn *c;
	struct h2s *h;
	struct h2stream head; /* list sentinel */
	bool goaway;
	bool fatal;
	uint64_t progress_ms; /* last request, request body bytes or answer */
};

static const struct stream_host_ops h2_stream_ops;

static struct worker *hs_worker(const struct h2stream *hs)
{
	return hs->hc->c->cli.w;
}

/* ---- accounting ---- */

static void record(struct h2stream *hs)
{
	struct conn *c = hs->hc->c;
	struct worker *w = c->cli.w;
	const struct route_config *rc = hs->route >= 0 ? &c->cfg->routes[hs->route] : NULL;
	uint64_t dur_ns = clock_mono_ns() - hs->start_ns;
	struct access_entry e;

	if (!hs->status)
		return; /* reset before any answer: nothing was served */
	metrics_http_request(w->metrics, rc ? rc->metrics_slot : -1, hs->status, dur_ns);
	metrics_http_proto(w->metrics, true);
	metrics_consumer_request(w->metrics, hs->consumer_slot, hs->status);
	if (!accesslog_enabled())
		return;
	memset(&e, 0, sizeof(e));
	e.time_us = hs->start_wall_us;
	e.request_id = hs->request_id;
	e.client = (const struct sockaddr *)&c->peer;
	e.method = hs->method;
	e.path = hs->log_path ? hs->log_path : "";
	e.path_len = hs->log_path_len;
	e.route = rc ? rc->name : "";
	e.target = hs->target;
	e.status = hs->status;
	e.bytes_in = hs->bytes_in;
	e.bytes_out = hs->bytes_out;
	e.duration_us = dur_ns / 1000;
	e.consumer = hs->consumer;
	e.client_cert = c->cli.tls ? tls_conn_peer_subject(c->cli.tls) : NULL;
	e.calls = hs->st ? hs->st->log_calls : NULL;
	e.waf_rules = hs->st ? hs->st->log_waf : NULL;
	e.proto = "h2";
	e.stream_id = hs->sid;
	accesslog_write(w->id, &e);
}

static void take_stream_result(struct h2stream *hs)
{
	struct stream *st = hs->st;

	if (!st)
		return;
	hs->route = st->route;
	hs->upstream = st->route >= 0 ? st->upstream : -1;
	snprintf(hs->consumer, sizeof(hs->consumer), "%s", st->consumer);
	hs->consumer_slot = st->auth_done ? st->auth.consumer_slot : -1;
}

static void hs_free(struct h2stream *hs)
{
	if (hs->call)
		client_cancel(hs->call);
	if (hs->st) {
		struct stream *st = hs->st;

		hs->st = NULL;
		stream_end(st);
	}
	hs->prev->next = hs->next;
	hs->next->prev = hs->prev;
	free(hs->body);
	free(hs->rbody);
	free(hs->rhead);
	free(hs->rhead_mem);
	free(hs->rtrail);
	free(hs->qtrail);
	free(hs->log_path);
	free(hs);
}

/* ---- answers ---- */

struct fields {
	struct http_header f[HTTP_MAX_HEADERS + STREAM_MAX_RESP_EDITS + 8];
	int n;
};

static void field(struct fields *fs, const char *name, size_t nl, const char *value, size_t vl)
{
	if (fs->n >= (int)(sizeof(fs->f) / sizeof(fs->f[0])))
		return;
	fs->f[fs->n].name = (struct http_str){name, nl};
	fs->f[fs->n].value = (struct http_str){value, vl};
	fs->n++;
}

static void fieldz(struct fields *fs, const char *name, const char *value)
{
	field(fs, name, strlen(name), value, strlen(value));
}

/* "Name: value\r\n" lines (a filter's extra headers) as fields pointing into them. */
static void field_lines(struct fields *fs, const char *lines)
{
	const char *p = lines;

	while (p && *p) {
		const char *eol = strstr(p, "\r\n"), *colon, *v;

		if (!eol)
			break;
		colon = memchr(p, ':', eol - p);
		if (colon) {
			v = colon + 1;
			while (v < eol && (*v == ' ' || *v == '\t'))
				v++;
			field(fs, p, colon - p, v, eol - v);
		}
		p = eol + 2;
	}
}

static void edit_fields(struct fields *fs, const struct stream *st)
{
	for (int i = 0; st && i < st->nresp_edits; i++)
		if (st->resp_edits[i].value)
			fieldz(fs, st->resp_edits[i].name, st->resp_edits[i].value);
}

static void respond(struct h2stream *hs, int status, struct fields *fs, const char *body,
		    size_t len, bool has_body)
{
	struct h2conn *hc = hs->hc;

	if (hs->responded)
		return;
	hs->responded = true;
	hs->status = status;
	hs->bytes_out += len;
	/* a whole answer: what the client still sends is discarded, its window reopened */
	h2s_hold_window(hc->h, hs->sid, false);
	hc->progress_ms = hs_worker(hs)->now_ms;
	take_stream_result(hs);
	/* trailers need a DATA frame (maybe empty) before them to end the stream after */
	if (!h2s_respond(hc->h, hs->sid, status, fs->f, fs->n, body, len,
			 (has_body || hs->ntrailers) && !hs->head, hs->trailers, hs->ntrailers))
		h2s_reset(hc->h, hs->sid, H2_INTERNAL_ERROR);
}

static int grpc_status(int http)
{
	switch (http) {
	case 401:
		return 16;
	case 403:
		return 7;
	case 429:
		return 8;
	case 502:
	case 503:
		return 14;
	case 504:
		return 4;
	default:
		return 2;
	}
}

/* The filters see the gateway's own answers too (CORS headers on a 401), add-only. */
static void local_edits(struct h2stream *hs, int status, bool has_body, size_t blen)
{
	struct stream *st = hs->st;
	struct http_response resp;
	static const char ctype[] = "application/json";

	if (!st || st->ended)
		return;
	memset(&resp, 0, offsetof(struct http_response, headers));
	resp.status = status;
	resp.minor_version = 1;
	resp.reason.p = http_status_reason(status);
	resp.reason.len = strlen(resp.reason.p);
	resp.keep_alive = true;
	resp.body = has_body ? HTTP_BODY_LENGTH : HTTP_BODY_NONE;
	resp.content_length = has_body ? blen : 0;
	if (has_body) {
		resp.headers[0].name = (struct http_str){"Content-Type", 12};
		resp.headers[0].value = (struct http_str){ctype, sizeof(ctype) - 1};
		resp.nheaders = 1;
	}
	st->resp_local = true;
	stream_response(st, &resp);
	st->body_filter = -1;
}

/* The gateway's own answer: the SPEC JSON error, or a gRPC status for gRPC requests.
 * reason NULL: bodiless (a CORS preflight) with extra header lines. */
static void local_answer(struct h2stream *hs, int status, const char *reason, const char *extra)
{
	struct fields fs;
	char body[320], gs[8], clen[24];
	int blen = 0;

	if (hs->responded)
		return;
	if (hs->call) {
		client_cancel(hs->call);
		hs->call = NULL;
	}
	fs.n = 0;
	if (hs->grpc && reason) {
		local_edits(hs, 200, false, 0);
		snprintf(gs, sizeof(gs), "%d", grpc_status(status));
		fieldz(&fs, "content-type", "application/grpc");
		fieldz(&fs, "grpc-status", gs);
		fieldz(&fs, "grpc-message", reason);
		fieldz(&fs, "x-request-id", hs->request_id);
		edit_fields(&fs, hs->st);
		respond(hs, 200, &fs, NULL, 0, false);
		hs->status = status; /* what it stands for, in metrics and the log */
		return;
	}
	if (reason)
		blen = snprintf(body, sizeof(body),
				"{\"error\":\"%s\",\"status\":%d,\"request_id\":\"%s\"}\n", reason,
				status, hs->request_id);
	local_edits(hs, status, reason != NULL, blen);
	if (reason) {
		snprintf(clen, sizeof(clen), "%d", blen);
		fieldz(&fs, "content-type", "application/json");
		fieldz(&fs, "content-length", clen);
	}
	fieldz(&fs, "x-request-id", hs->request_id);
	field_lines(&fs, extra);
	edit_fields(&fs, hs->st);
	respond(hs, status, &fs, body, blen, reason != NULL);
}

static struct h2stream *host_of(struct stream *st)
{
	return st->host;
}

static void h2_reply_error(struct stream *st, int status, const char *reason,
			   const char *extra_headers)
{
	local_answer(host_of(st), status, reason, extra_headers);
}

static void h2_reply_status(struct stream *st, int status, const char *headers)
{
	local_answer(host_of(st), status, NULL, headers);
}

/* A body transform claimed the body: run it over the whole (buffered) body. */
static char *transform_body(struct stream *st, const char *in, size_t n, size_t *out_len)
{
	size_t cap = n + 1024, len = 0;
	char *out = malloc(cap);
	struct stream_body_io io;

	for (int rounds = 0; out && rounds < 100000; rounds++) {
		if (cap - len < 512) {
			char *nb =
			    cap * 2 > H2_MAX_RESPONSE_BYTES * 2 ? NULL : realloc(out, cap * 2);

			if (!nb)
				break;
			out = nb;
			cap *= 2;
		}
		memset(&io, 0, sizeof(io));
		io.in = in;
		io.in_len = n;
		io.out = out + len;
		io.out_cap = cap - len;
		io.flush = true;
		io.fin = true;
		if (stream_response_body(st, &io) < 0)
			break;
		in += io.in_used;
		n -= io.in_used;
		len += io.out_len;
		if (io.done) {
			*out_len = len;
			return out;
		}
	}
	free(out);
	return NULL;
}

/* The origin head's fields for the client: hop-by-hop and removed ones dropped, the
 * filters' edits added, x-request-id kept or made. drop_len: a transform rewrites the
 * body, its length is the host's. */
static bool origin_fields(struct h2stream *hs, const struct http_response *resp, struct fields *fs,
			  bool drop_len)
{
	struct stream *st = hs->st;
	bool has_rid = false, has_len = false;

	fs->n = 0;
	for (int i = 0; i < resp->nheaders; i++) {
		const struct http_header *h = &resp->headers[i];

		if (http_is_hop_by_hop(h->name, resp->connection) ||
		    (st && stream_resp_header_removed(st, h->name)) ||
		    http_str_eq_nocase(h->name, "transfer-encoding") ||
		    (http_str_eq_nocase(h->name, "content-length") && (drop_len || has_len)))
			continue;
		has_rid |= http_str_eq_nocase(h->name, "x-request-id");
		has_len |= http_str_eq_nocase(h->name, "content-length");
		field(fs, h->name.p, h->name.len, h->value.p, h->value.len);
	}
	edit_fields(fs, st);
	if (!has_rid)
		fieldz(fs, "x-request-id", hs->request_id);
	return has_len;
}

/* An origin (or cached) head and its whole body, after the filters' on_response. */
static void send_response(struct h2stream *hs, const struct http_response *resp, const char *body,
			  size_t len, int age)
{
	struct fields fs;
	struct stream *st = hs->st;
	char *xf = NULL, clen[24], agebuf[16];
	bool has_len, xform = stream_transforms_body(st);

	if (xform) {
		xf = transform_body(st, body, len, &len);
		if (!xf) {
			h2s_reset(hs->hc->h, hs->sid, H2_INTERNAL_ERROR);
			hs->responded = true;
			hs->status = 502;
			return;
		}
		body = xf;
	}
	has_len = origin_fields(hs, resp, &fs, xform);
	if (age >= 0) {
		snprintf(agebuf, sizeof(agebuf), "%d", age);
		fieldz(&fs, "age", agebuf);
	}
	if (!has_len && !hs->head && resp->status != 204 && resp->status != 304) {
		snprintf(clen, sizeof(clen), "%zu", len);
		fieldz(&fs, "content-length", clen);
	}
	if (st)
		st->completed = true;
	respond(hs, resp->status, &fs, body, len, len > 0);
	free(xf);
}

static bool parse_hit(struct h2stream *hs, const struct cache_hit *hit, struct http_response *resp)
{
	struct http_limits lim = {.max_header_bytes = hit->head_len + 2,
				  .max_request_line = hit->head_len + 2};
	char *copy = stream_alloc(hs->st, hit->head_len + 2);

	if (!copy)
		return false;
	memcpy(copy, hit->head, hit->head_len);
	memcpy(copy + hit->head_len, "\r\n", 2);
	return http_parse_response(copy, hit->head_len + 2, &lim, hs->st->req.method, resp) > 0;
}

static void serve_hit(struct h2stream *hs, const struct cache_hit *hit, bool age)
{
	struct http_response resp;

	if (!parse_hit(hs, hit, &resp)) {
		local_answer(hs, 502, "cached response does not fit", NULL);
		return;
	}
	hs->st->resp_local = false;
	stream_response(hs->st, &resp);
	send_response(hs, &resp, hit->body, hit->body_len, age ? (int)hit->age_s : -1);
}

static void h2_reply_cached(struct stream *st, const struct cache_hit *hit)
{
	serve_hit(host_of(st), hit, true);
}

static void h2_reply_body(struct stream *st, const char *headers, const char *body, size_t len)
{
	struct h2stream *hs = host_of(st);
	const struct cache_hit *hit = body_as_hit(st, headers, body, len);

	if (!hit) {
		local_answer(hs, 503, "out of memory", NULL);
		return;
	}
	serve_hit(hs, hit, false);
	stream_response_data(st, body, len);
}

/* ---- forwarding ---- */

static int client_error_status(enum client_error e, const char **reason)
{
	switch (e) {
	case CLIENT_ERR_NO_TARGET:
		*reason = "no healthy upstream";
		return 503;
	case CLIENT_ERR_QUEUE_TIMEOUT:
		*reason = "upstream queue timeout";
		return 503;
	case CLIENT_ERR_TIMEOUT:
		*reason = "upstream timeout";
		return 504;
	case CLIENT_ERR_NOMEM:
		*reason = "out of memory";
		return 503;
	case CLIENT_ERR_TOO_LARGE:
		*reason = "upstream response too large";
		return 502;
	default:
		*reason = "bad gateway";
		return 502;
	}
}

/* A filter held the response (stream_hold_response): it rewrites the whole body, which
 * then goes out like a cached response (the filters see the new head). */
static void finish_hold(struct h2stream *hs, const struct http_response *resp, const char *body,
			size_t len)
{
	struct stream *st = hs->st;
	const char *reason;
	struct cache_hit hit;
	size_t cap = 64 * 1024, hl;
	char *head;

	if (len > st->hold_max) {
		local_answer(hs, 502, "upstream response too large", NULL);
		return;
	}
	if (!stream_response_whole(st, body, len, &reason)) {
		local_answer(hs, 502, reason, NULL);
		return;
	}
	if (st->resp_body) {
		body = st->resp_body;
		len = st->resp_body_len;
	}
	/* not from the arena (32 KiB pooled): serve_hit copies the head it parses there */
	head = malloc(cap);
	hl = head ? build_held_head(resp, st->resp_body_type, len, head, cap) : 0;
	if (!hl) {
		free(head);
		local_answer(hs, 502, "upstream response headers too large", NULL);
		return;
	}
	hit = (struct cache_hit){.head = head, .head_len = hl, .body = body, .body_len = len};
	serve_hit(hs, &hit, false);
	free(head);
}

static void upstream_done(void *arg, const struct client_response *r)
{
	struct h2stream *hs = arg;
	struct stream *st = hs->st;
	struct conn *c = hs->hc->c;
	const char *reason;

	hs->call = NULL;
	snprintf(hs->target, sizeof(hs->target), "%s", r->target ? r->target : "");
	if (r->err != CLIENT_OK) {
		int status = client_error_status(r->err, &reason);

		local_answer(hs, status, reason, NULL);
	} else {
		st->resp_local = false;
		stream_response(st, r->head);
		if (st->hold_filter >= 0) {
			finish_hold(hs, r->head, r->body, r->body_len);
		} else {
			stream_response_data(st, r->body, r->body_len);
			hs->trailers = r->trailers;
			hs->ntrailers = r->ntrailers;
			send_response(hs, r->head, r->body, r->body_len, -1);
			hs->trailers = NULL;
			hs->ntrailers = 0;
		}
	}
	conn_advance(c); /* the answer's frames go out */
}

static const char *arena_str(struct stream *st, struct buf *b)
{
	return stream_strdup(st, buf_head(b), buf_len(b));
}

/* ---- streaming forwarding (h2c/h2 upstreams) ---- */

/* Fields copied into one malloc'd block after `pre` bytes (the arena is kept for the
 * filters: a held body's head is built there). NULL on memory exhaustion. */
static void *copy_block(size_t pre, const struct http_header *h, int n, struct http_header *dst)
{
	size_t mem = pre;
	char *blk, *p;

	for (int i = 0; i < n; i++)
		mem += h[i].name.len + h[i].value.len + 2;
	if (!(blk = malloc(mem)))
		return NULL;
	p = blk + pre;
	if (!dst)
		dst = (struct http_header *)blk;
	for (int i = 0; i < n; i++) {
		struct http_str nm = h[i].name, v = h[i].value;

		memcpy(p, nm.p, nm.len);
		p[nm.len] = '\0';
		dst[i].name = (struct http_str){p, nm.len};
		p += nm.len + 1;
		memcpy(p, v.p, v.len);
		p[v.len] = '\0';
		dst[i].value = (struct http_str){p, v.len};
		p += v.len + 1;
	}
	return blk;
}

/* The head, copied (its strings in *mem): the answer is sent after on_head returned. */
static struct http_response *copy_head(const struct http_response *h, void **mem)
{
	struct http_response *r = malloc(sizeof(*r));

	if (!r)
		return NULL;
	*r = *h;
	r->reason = (struct http_str){"", 0};
	r->connection = (struct http_str){"", 0};
	*mem = copy_block(0, h->headers, h->nheaders, r->headers);
	if (!*mem && h->nheaders) {
		free(r);
		return NULL;
	}
	return r;
}

static struct http_header *copy_fields(const struct http_header *h, int n)
{
	return n ? copy_block(n * sizeof(*h), h, n, NULL) : NULL;
}

/* The request body to the upstream as far as it takes it; what it took is acknowledged
 * to the client (WINDOW_UPDATE), so the client is never more than a window ahead. Runs
 * inside the session's callbacks too: no conn_advance() here (it would recurse). */
static void pump(struct h2stream *hs)
{
	struct stream *st = hs->st;
	bool whole, fin = hs->body_done;
	const char *src;
	size_t len;
	ssize_t k;

	if (hs->mode != FWD_STREAM || !hs->call || hs->fin_sent || !st)
		return;
	whole = st->req_body_ready;
	src = whole ? st->req_body + hs->body_off : hs->body;
	len = whole ? st->req_body_len - hs->body_off : hs->body_len;
	if (!len && !fin)
		return;
	if (fin && hs->nqtrail) {
		/* with the body's end: the call keeps them (h2: a trailing HEADERS) */
		client_stream_trailers(hs->call, hs->qtrail, hs->nqtrail);
		hs->nqtrail = 0;
	}
	k = client_stream_write(hs->call, src ? src : "", len, fin);
	if (k <= 0 && !(k == 0 && !len))
		return; /* full (on_writable comes) or failed (on_done comes) */
	if (whole) {
		hs->body_off += k;
	} else {
		memmove(hs->body, hs->body + k, len - k);
		hs->body_len -= k;
		h2s_consume(hs->hc->h, hs->sid, k);
	}
	if ((size_t)k == len && fin)
		hs->fin_sent = true;
}

/* From the client (outside the connection's step): the WINDOW_UPDATEs want a step. */
static void up_writable(void *arg)
{
	struct h2stream *hs = arg;

	pump(hs);
	conn_advance(hs->hc->c);
}

static void respond_stream(struct h2stream *hs, int status, struct fields *fs)
{
	struct h2conn *hc = hs->hc;

	hs->responded = true;
	hs->status = status;
	hc->progress_ms = hs_worker(hs)->now_ms;
	take_stream_result(hs);
	if (!h2s_respond_stream(hc->h, hs->sid, status, fs->f, fs->n))
		h2s_reset(hc->h, hs->sid, H2_INTERNAL_ERROR);
}

/* The head goes out with the first body byte: an answer that ends without one is sent
 * whole (a gRPC trailers-only answer stays one HEADERS frame with END_STREAM). */
static void up_head(void *arg, const struct http_response *head)
{
	struct h2stream *hs = arg;
	struct stream *st = hs->st;

	if (hs->responded)
		return;
	st->resp_local = false;
	stream_response(st, head);
	/* a filter rewrites the whole body, or there is none to stream: gather it */
	hs->collect = st->hold_filter >= 0 || stream_transforms_body(st) || hs->head ||
		      head->status == 204 || head->status == 304;
	hs->rhead = copy_head(head, &hs->rhead_mem);
	if (!hs->rhead)
		local_answer(hs, 502, "upstream response headers too large", NULL);
	hs->head_pending = hs->rhead && !hs->collect;
}

static void send_head(struct h2stream *hs)
{
	struct fields fs;

	hs->head_pending = false;
	origin_fields(hs, hs->rhead, &fs, false);
	respond_stream(hs, hs->rhead->status, &fs);
}

/* The whole answer had no body: its head (and trailers) in one go. */
static void send_bodiless(struct h2stream *hs)
{
	struct fields fs;

	hs->head_pending = false;
	origin_fields(hs, hs->rhead, &fs, false);
	hs->st->completed = true;
	hs->trailers = hs->rtrail;
	hs->ntrailers = hs->nrtrail;
	respond(hs, hs->rhead->status, &fs, NULL, 0, false);
	hs->trailers = NULL;
	hs->ntrailers = 0;
}

static size_t up_data(void *arg, const char *p, size_t n)
{
	struct h2stream *hs = arg;
	size_t k;

	if (hs->collect) {
		size_t bound = hs->st->hold_filter >= 0 ? hs->st->hold_max : H2_MAX_RESPONSE_BYTES;

		if (hs->collect_over || hs->rbody_len + n > bound) {
			hs->collect_over = true;
			return n;
		}
		if (hs->rbody_len + n > hs->rbody_cap) {
			size_t cap = hs->rbody_cap ? hs->rbody_cap : 16384;
			char *nb;

			while (cap < hs->rbody_len + n)
				cap *= 2;
			if (!(nb = realloc(hs->rbody, cap))) {
				hs->collect_over = true;
				return n;
			}
			hs->rbody = nb;
			hs->rbody_cap = cap;
		}
		memcpy(hs->rbody + hs->rbody_len, p, n);
		hs->rbody_len += n;
		return n;
	}
	if (hs->head_pending)
		send_head(hs);
	if (!n)
		return 0;
	k = h2s_stream_write(hs->hc->h, hs->sid, p, n);
	stream_response_data(hs->st, p, k);
	hs->bytes_out += k;
	hs->hc->progress_ms = hs_worker(hs)->now_ms;
	if (k < n)
		hs->up_paused = true; /* the client's window is closed: resumed from step */
	conn_advance(hs->hc->c);
	return k;
}

static void up_trailers(void *arg, const struct http_header *h, int n)
{
	struct h2stream *hs = arg;

	free(hs->rtrail);
	hs->rtrail = copy_fields(h, n);
	hs->nrtrail = hs->rtrail ? n : 0;
}

/* The upstream failed after the head went out: a gRPC stream ends with a gRPC status
 * in trailers, anything else is reset (the client sees the body was cut). */
static void stream_failed(struct h2stream *hs, enum client_error err)
{
	struct fields fs;
	const char *reason;
	char gs[8];
	int status = client_error_status(err, &reason);

	hs->st->completed = false;
	if (!hs->grpc) {
		h2s_reset(hs->hc->h, hs->sid, H2_INTERNAL_ERROR);
		return;
	}
	fs.n = 0;
	snprintf(gs, sizeof(gs), "%d", err == CLIENT_ERR_TIMEOUT ? 4 : grpc_status(status));
	fieldz(&fs, "grpc-status", gs);
	fieldz(&fs, "grpc-message", reason);
	if (!h2s_stream_end(hs->hc->h, hs->sid, fs.f, fs.n))
		h2s_reset(hs->hc->h, hs->sid, H2_INTERNAL_ERROR);
}

static void up_done(void *arg, enum client_error err, const char *target)
{
	struct h2stream *hs = arg;
	struct stream *st = hs->st;
	const char *reason;

	hs->call = NULL;
	snprintf(hs->target, sizeof(hs->target), "%s", target ? target : "");
	if (err == CLIENT_OK && hs->collect && hs->collect_over)
		err = CLIENT_ERR_TOO_LARGE;
	if (err != CLIENT_OK && !hs->responded) {
		int status = client_error_status(err, &reason);

		local_answer(hs, status,
			     hs->grpc && err == CLIENT_ERR_TIMEOUT ? "deadline exceeded" : reason,
			     NULL);
	} else if (err != CLIENT_OK) {
		stream_failed(hs, err);
	} else if (hs->collect && hs->rhead) {
		if (st->hold_filter >= 0) {
			finish_hold(hs, hs->rhead, hs->rbody, hs->rbody_len);
		} else {
			stream_response_data(st, hs->rbody, hs->rbody_len);
			hs->trailers = hs->rtrail;
			hs->ntrailers = hs->nrtrail;
			send_response(hs, hs->rhead, hs->rbody ? hs->rbody : "", hs->rbody_len, -1);
			hs->trailers = NULL;
			hs->ntrailers = 0;
		}
	} else if (hs->head_pending) {
		send_bodiless(hs);
	} else if (hs->responded) {
		st->completed = true;
		if (!h2s_stream_end(hs->hc->h, hs->sid, hs->rtrail, hs->nrtrail))
			h2s_reset(hs->hc->h, hs->sid, H2_INTERNAL_ERROR);
	}
	conn_advance(hs->hc->c);
}

static const struct client_stream_cbs up_cbs = {
    .on_head = up_head,
    .on_data = up_data,
    .on_trailers = up_trailers,
    .on_done = up_done,
    .on_writable = up_writable,
};

/* The deadline of a call: the upstream's (connect + read), or the client's grpc-timeout
 * when that is sooner. */
static uint32_t call_timeout_ms(const struct h2stream *hs, const struct upstream_config *uc)
{
	const struct http_request *req = &hs->st->req;
	const struct http_header *gt =
	    http_find_header(req->headers, req->nheaders, "grpc-timeout");
	uint64_t cap = (uint64_t)uc->connect_timeout_ms + uc->read_timeout_ms, ms;

	if (hs->grpc && gt && h2_grpc_timeout_ms(gt->value, &ms) && ms < cap)
		return ms ? (uint32_t)ms : 1;
	return (uint32_t)cap;
}

static bool streams(const struct h2stream *hs);

static bool te_trailers(const struct http_request *req)
{
	const struct http_header *te = http_find_header(req->headers, req->nheaders, "te");

	return te && te->value.len == 8 && !strncasecmp(te->value.p, "trailers", 8);
}

/* Options for the upstream call (strings in the stream's arena); false: answered. */
static bool forward_opts(struct h2stream *hs, struct client_request_opts *o)
{
	struct stream *st = hs->st;
	struct conn *c = hs->hc->c;
	const struct route_config *rc = &c->cfg->routes[st->route];
	const struct http_request *req = &st->req;
	struct fwd_ctx x = {
	    .cfg = c->cfg,
	    .route = st->route,
	    .ipv6 = c->peer.ss_family == AF_INET6,
	    .peer_ip = c->peer_ip,
	    .tls = c->cli.tls != NULL,
	    .client_subject = c->cli.tls ? tls_conn_peer_subject(c->cli.tls) : NULL,
	    .request_id = hs->request_id,
	    .st = st,
	};
	struct buf lines = {0}, target = {0};
	const char *up_path = st->path, *path_s, *lines_s;
	size_t up_len = st->path_len, off;
	bool ok;

	hs->want_forward = false;
	take_stream_result(hs);
	if (st->up_path) {
		up_path = st->up_path;
		up_len = st->up_path_len;
	} else if (rc->strip_prefix && st->match.prefix_len) {
		off = st->match.prefix_len;
		if (st->path[off - 1] == '/')
			off--;
		up_path = st->path + off;
		up_len = st->path_len - off;
		if (!up_len) {
			up_path = "/";
			up_len = 1;
		}
	}
	ok = buf_ensure(&lines, c->cfg->limits.max_header_bytes + 16 * 1024) &&
	     buf_ensure(&target, c->cfg->limits.max_header_bytes + 16) &&
	     build_forward_lines(&x, req, st->auth_done ? &st->auth : NULL, &lines) &&
	     build_forward_target(&x, req, up_path, up_len, &target);
	/* TE is hop-by-hop, but "trailers" is end to end over HTTP/2: gRPC servers want it */
	if (ok && streams(hs) && te_trailers(req))
		ok = buf_append(&lines, "te: trailers\r\n", 14);
	path_s = ok ? arena_str(st, &target) : NULL;
	lines_s = ok ? arena_str(st, &lines) : NULL;
	buf_free(&lines);
	buf_free(&target);
	if (!path_s || !lines_s) {
		local_answer(hs, 431, "request headers too large", NULL);
		return false;
	}
	memset(o, 0, sizeof(*o));
	o->cfg = c->cfg;
	o->upstream = st->upstream;
	o->method = stream_strdup(st, req->method_str.p, req->method_str.len);
	o->path = path_s;
	o->host = req->host.len ? stream_strdup(st, req->host.p, req->host.len) : NULL;
	o->headers = lines_s;
	o->timeout_ms = call_timeout_ms(hs, &c->cfg->upstreams[st->upstream]);
	return true;
}

static void do_forward(struct h2stream *hs)
{
	struct stream *st = hs->st;
	struct client_request_opts o;

	if (!forward_opts(hs, &o))
		return;
	if (st->req_body_ready) {
		o.body = st->req_body;
		o.body_len = st->req_body_len;
	} else {
		o.body = hs->body;
		o.body_len = hs->body_len;
	}
	o.max_body_bytes = H2_MAX_RESPONSE_BYTES;
	hs->call = client_request(hs->hc->c->cli.w->client, &o, upstream_done, hs);
	if (!hs->call)
		local_answer(hs, 503, "out of memory", NULL);
}

static void stream_forward(struct h2stream *hs)
{
	struct stream *st = hs->st;
	struct client_request_opts o;

	if (!forward_opts(hs, &o))
		return;
	if (st->req_body_ready)
		o.body_len = st->req_body_len ? st->req_body_len : CLIENT_BODY_NONE;
	else
		o.body_len =
		    hs->body_done && !hs->body_len ? CLIENT_BODY_NONE : CLIENT_BODY_UNKNOWN;
	hs->fin_sent = o.body_len == CLIENT_BODY_NONE;
	hs->call = client_stream_start(hs->hc->c->cli.w->client, &o, &up_cbs, hs);
	if (!hs->call) {
		local_answer(hs, 503, "out of memory", NULL);
		return;
	}
	pump(hs);
}

/* The upstream speaks HTTP/2: the client streams both ways (HTTP/1.1 upstreams get the
 * whole body with client_request(), whose h1 side has no streaming call). */
static bool streams(const struct h2stream *hs)
{
	const struct xg_config *cfg = hs->hc->c->cfg;

	return hs->st->upstream >= 0 && hs->st->upstream < cfg->nupstreams &&
	       cfg->upstreams[hs->st->upstream].protocol != UPSTREAM_HTTP1;
}

/* Buffered from here on: what the client sent is acknowledged, the rest at once. */
static void set_buffered(struct h2stream *hs)
{
	if (hs->mode == FWD_UNDECIDED)
		h2s_hold_window(hs->hc->h, hs->sid, false);
	hs->mode = FWD_BUFFER; /* the WINDOW_UPDATEs go with the connection's next step */
}

/* Every filter continued: stream to an HTTP/2 upstream, else the client call carries a
 * whole body (wait for its end). */
static void h2_forward(struct stream *st)
{
	struct h2stream *hs = host_of(st);

	if (streams(hs)) {
		hs->mode = FWD_STREAM;
		stream_forward(hs);
		return;
	}
	set_buffered(hs);
	if (!hs->body_done) {
		hs->want_forward = true;
		return;
	}
	do_forward(hs);
}

static void give_body(struct h2stream *hs)
{
	struct stream *st = hs->st;

	hs->reading_body = false;
	st->req_body = hs->body ? hs->body : "";
	st->req_body_len = hs->body_len;
	st->req_body_ready = true;
	stream_wake(st);
}

static void h2_read_body(struct stream *st)
{
	struct h2stream *hs = host_of(st);

	hs->reading_body = true;
	set_buffered(hs);
	if (hs->body_done)
		give_body(hs);
}

static void h2_resumed(void *host)
{
	struct h2stream *hs = host;

	conn_advance(hs->hc->c);
}

static const struct stream_host_ops h2_stream_ops = {
    .reply_error = h2_reply_error,
    .reply_cached = h2_reply_cached,
    .reply_status = h2_reply_status,
    .reply_body = h2_reply_body,
    .forward = h2_forward,
    .read_body = h2_read_body,
    .resumed = h2_resumed,
};

/* ---- requests from the session ---- */

/*
 * The header block as an HTTP/1.1 head (:method :path HTTP/1.1, Host from :authority,
 * cookies joined as RFC 9113 8.2.3 says). A body without content-length is announced as
 * chunked so the filters know one follows; the upstream head is built anew anyway.
 */
static size_t h1_head(const struct h2s_request *r, char *out, size_t cap, bool *grpc)
{
	struct http_str method = {0}, path = {0}, auth = {0};
	size_t n = 0;
	bool has_len = false, has_host = false, cookies = false;
	int w;

#define PUT(...)                                                                                   \
	do {                                                                                       \
		w = snprintf(out + n, n < cap ? cap - n : 0, __VA_ARGS__);                         \
		n += w > 0 ? (size_t)w : 0;                                                        \
	} while (0)
	for (int i = 0; i < r->nfields; i++) {
		const struct http_header *f = &r->fields[i];

		if (http_str_eq_nocase(f->name, ":method"))
			method = f->value;
		else if (http_str_eq_nocase(f->name, ":path"))
			path = f->value;
		else if (http_str_eq_nocase(f->name, ":authority"))
			auth = f->value;
	}
	if (!method.len || !path.len)
		return 0;
	PUT("%.*s %.*s HTTP/1.1\r\n", (int)method.len, method.p, (int)path.len, path.p);
	for (int i = 0; i < r->nfields; i++)
		has_host |= http_str_eq_nocase(r->fields[i].name, "host");
	if (auth.len && !has_host)
		PUT("Host: %.*s\r\n", (int)auth.len, auth.p);
	for (int i = 0; i < r->nfields; i++) {
		const struct http_header *f = &r->fields[i];

		if (f->name.len && f->name.p[0] == ':')
			continue;
		if (http_str_eq_nocase(f->name, "cookie")) {
			if (cookies)
				continue;
			cookies = true;
			PUT("cookie: ");
			for (int j = i, first = 1; j < r->nfields; j++)
				if (http_str_eq_nocase(r->fields[j].name, "cookie")) {
					PUT("%s%.*s", first ? "" : "; ",
					    (int)r->fields[j].value.len, r->fields[j].value.p);
					first = 0;
				}
			PUT("\r\n");
			continue;
		}
		has_len |= http_str_eq_nocase(f->name, "content-length");
		if (http_str_eq_nocase(f->name, "content-type") && f->value.len >= 16 &&
		    !strncasecmp(f->value.p, "application/grpc", 16))
			*grpc = true;
		PUT("%.*s: %.*s\r\n", (int)f->name.len, f->name.p, (int)f->value.len, f->value.p);
	}
	if (!r->end_stream && !has_len)
		PUT("Transfer-Encoding: chunked\r\n");
	PUT("\r\n");
#undef PUT
	return n < cap ? n : cap;
}

static void note_request(struct h2stream *hs, const struct http_request *req)
{
	const struct http_header *rid =
	    http_find_header(req->headers, req->nheaders, "x-request-id");
	size_t n = req->method_str.len < sizeof(hs->method) - 1 ? req->method_str.len
								: sizeof(hs->method) - 1;

	memcpy(hs->method, req->method_str.p, n);
	hs->method[n] = '\0';
	hs->head = req->method == HTTP_HEAD;
	if ((hs->log_path = malloc(req->path.len + 1))) {
		memcpy(hs->log_path, req->path.p, req->path.len);
		hs->log_path[req->path.len] = '\0';
		hs->log_path_len = req->path.len;
	}
	if (rid && http_request_id_valid(rid->value) && rid->value.len < sizeof(hs->request_id)) {
		memcpy(hs->request_id, rid->value.p, rid->value.len);
		hs->request_id[rid->value.len] = '\0';
	}
}

static void open_stream(struct h2stream *hs, const struct http_request *req, const char *head,
			size_t len)
{
	struct conn *c = hs->hc->c;
	struct worker *w = c->cli.w;
	struct stream *st;

	note_request(hs, req);
	st = stream_open(w->streams, &h2_stream_ops, hs, c->cfg, req, head, len);
	if (st && !filters_begin(st)) {
		stream_end(st);
		st = NULL;
	}
	if (!st) {
		local_answer(hs, 503, "out of memory", NULL);
		return;
	}
	hs->st = st;
	st->env = &w->env;
	st->peer_ip = c->peer_ip;
	st->peer_addr = (const struct sockaddr *)&c->peer;
	st->local_addr = (const struct sockaddr *)&c->cfg->listeners[c->listener].addr;
	st->is_ipv6 = c->peer.ss_family == AF_INET6;
	st->tls = c->cli.tls;
	if (c->cli.tls) {
		const char *subject = tls_conn_peer_subject(c->cli.tls);

		st->client_cert.cert = tls_conn_peer_cert(c->cli.tls);
		st->client_cert.verified = tls_conn_peer_verified(c->cli.tls);
		st->client_cert.subject =
		    subject ? stream_strdup(st, subject, strlen(subject)) : NULL;
		st->client_cert.verified &= st->client_cert.subject != NULL;
	}
	st->request_id = hs->request_id;
	stream_run(st, w->now_ms);
}

static void on_request(void *arg, int32_t sid, const struct h2s_request *r)
{
	struct h2conn *hc = arg;
	struct conn *c = hc->c;
	struct worker *w = c->cli.w;
	struct h2stream *hs = calloc(1, sizeof(*hs));
	struct http_limits lim = {.max_request_line = c->cfg->limits.max_request_line,
				  .max_header_bytes = c->cfg->limits.max_header_bytes};
	size_t cap = c->cfg->limits.max_header_bytes + 1024, len;
	struct http_request *req;
	struct timespec ts;
	char *head;
	int n;

	if (!hs) {
		h2s_reset(hc->h, sid, H2_INTERNAL_ERROR);
		return;
	}
	hs->hc = hc;
	hs->sid = sid;
	hs->route = hs->upstream = hs->consumer_slot = -1;
	hs->start_ns = clock_mono_ns();
	clock_gettime(CLOCK_REALTIME, &ts);
	hs->start_wall_us = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
	hs->body_done = r->end_stream;
	strcpy(hs->method, "-");
	make_request_id(w, hs->request_id, sizeof(hs->request_id));
	hs->next = hc->head.next;
	hs->prev = &hc->head;
	hc->head.next->prev = hs;
	hc->head.next = hs;
	h2s_set_stream_host(hc->h, sid, hs);
	if (!r->end_stream)
		h2s_hold_window(hc->h, sid, true); /* until it is known how it is forwarded */
	hc->progress_ms = w->now_ms;
	if (r->too_large) {
		local_answer(hs, 431, "request headers too large", NULL);
		return;
	}
	head = malloc(cap);
	req = malloc(sizeof(*req));
	if (!head || !req) {
		free(req);
		free(head);
		local_answer(hs, 503, "out of memory", NULL);
		return;
	}
	/* 0: no :method or :path (CONNECT); cap: it does not fit the header bound */
	len = h1_head(r, head, cap, &hs->grpc);
	n = !len	 ? HTTP_ERR_BAD
	    : len >= cap ? HTTP_ERR_HEADERS_TOO_LARGE
			 : http_parse_request(head, len, &lim, req);
	hs->bytes_in = len < cap ? len : cap;
	if (n <= 0)
		local_answer(hs,
			     n == HTTP_ERR_HEADERS_TOO_LARGE ? 431
			     : n == HTTP_ERR_URI_TOO_LONG    ? 414
							     : 400,
			     n == HTTP_ERR_HEADERS_TOO_LARGE ? "request headers too large"
			     : n == HTTP_ERR_URI_TOO_LONG    ? "request line too long"
							     : "malformed request",
			     NULL);
	else
		open_stream(hs, req, head, len);
	free(req);
	free(head);
}

static size_t body_bound(const struct h2stream *hs)
{
	size_t max = hs->hc->c->cfg->limits.max_body_bytes;

	if (hs->st && hs->st->req_body_wanted && hs->st->req_body_max < max)
		max = hs->st->req_body_max;
	return max;
}

static void on_data(void *arg, int32_t sid, void *host, const char *p, size_t n)
{
	struct h2stream *hs = host;
	bool streaming = hs->mode == FWD_STREAM && hs->call && !hs->fin_sent;

	hs->hc->progress_ms = hs_worker(hs)->now_ms;
	hs->bytes_in += n;
	if (hs->body_over || (hs->responded && !streaming) ||
	    (hs->mode == FWD_STREAM && !streaming)) {
		/* answered already, or the upstream is gone: the rest is discarded */
		h2s_consume(hs->hc->h, sid, n);
		return;
	}
	if (hs->body_total + n > body_bound(hs)) {
		hs->body_over = true;
		if (hs->responded)
			h2s_reset(hs->hc->h, sid, H2_CANCEL);
		else
			local_answer(hs, 413, "request body too large", NULL);
		return;
	}
	hs->body_total += n;
	if (hs->body_len + n > hs->body_cap) {
		size_t cap = hs->body_cap ? hs->body_cap : 4096;
		char *nb;

		while (cap < hs->body_len + n)
			cap *= 2;
		if (!(nb = realloc(hs->body, cap))) {
			local_answer(hs, 503, "out of memory", NULL);
			return;
		}
		hs->body = nb;
		hs->body_cap = cap;
	}
	memcpy(hs->body + hs->body_len, p, n);
	hs->body_len += n;
	pump(hs);
}

static void on_end(void *arg, int32_t sid, void *host)
{
	struct h2stream *hs = host;

	hs->body_done = true;
	if (hs->mode == FWD_STREAM) {
		pump(hs);
		return;
	}
	if (hs->responded || !hs->st)
		return;
	if (hs->reading_body)
		give_body(hs);
	else if (hs->want_forward)
		do_forward(hs);
}

static void on_trailers(void *arg, int32_t sid, void *host, const struct http_header *f, int n)
{
	struct h2stream *hs = host;

	if (hs->st && hs->mode != FWD_BUFFER && !hs->fin_sent && !hs->qtrail) {
		hs->qtrail = copy_fields(f, n);
		hs->nqtrail = hs->qtrail ? n : 0;
	}
}

static void on_close(void *arg, int32_t sid, void *host, uint32_t code)
{
	struct h2stream *hs = host;

	if (hs->st && code != H2_NO_ERROR)
		hs->st->completed = false;
	record(hs);
	hs_free(hs);
}

static const struct h2s_callbacks h2_callbacks = {on_request, on_data, on_end, on_close,
						  on_trailers};

/* ---- the connection ---- */

bool h2conn_start(struct conn *c)
{
	const struct limits_config *l = &c->cfg->limits;
	struct h2s_limits lim = {
	    .max_concurrent_streams = l->h2_max_concurrent_streams,
	    .max_header_bytes = l->max_header_bytes,
	    .max_block_bytes = 2 * l->max_header_bytes + 1024,
	    .max_continuations = H2_MAX_CONTINUATIONS,
	    .reset_burst = H2_RESET_BURST,
	    .reset_per_s = H2_RESET_PER_S,
	    .max_outbound_ack = H2_MAX_OUTBOUND_ACK,
	};
	struct h2conn *hc = calloc(1, sizeof(*hc));

	if (!hc || !buf_ensure(&c->cli.out, 64 * 1024 + l->max_header_bytes)) {
		free(hc);
		conn_abort(c);
		return true;
	}
	hc->c = c;
	hc->head.next = hc->head.prev = &hc->head;
	hc->progress_ms = c->cli.w->now_ms;
	hc->h = h2s_new(&lim, &h2_callbacks, hc);
	if (!hc->h) {
		free(hc);
		conn_abort(c);
		return true;
	}
	c->h2 = hc;
	c->state = CS_H2;
	c->deadline_ms = 0;
	return true;
}

void h2conn_free(struct conn *c)
{
	struct h2conn *hc = c->h2;

	if (!hc)
		return;
	c->h2 = NULL;
	while (hc->head.next != &hc->head) {
		record(hc->head.next);
		hs_free(hc->head.next);
	}
	h2s_free(hc->h);
	free(hc);
}

void h2conn_drain(struct conn *c)
{
	if (c->h2 && !c->h2->goaway) {
		c->h2->goaway = true;
		h2s_goaway(c->h2->h);
		conn_advance(c);
	}
}

/* Streams that wait for the gateway (filters, upstream) keep the connection from idling. */
static bool busy(const struct h2conn *hc)
{
	for (const struct h2stream *hs = hc->head.next; hs != &hc->head; hs = hs->next)
		if (!hs->responded || hs->call)
			return true;
	return false;
}

/* Upstream bodies paused on a full stream buffer go on once half of it went out. */
static void resume_paused(struct h2conn *hc)
{
	for (struct h2stream *hs = hc->head.next; hs != &hc->head; hs = hs->next)
		if (hs->up_paused && hs->call &&
		    h2s_stream_room(hc->h, hs->sid) >= H2S_STREAM_BUF / 2) {
			hs->up_paused = false;
			client_stream_resume(hs->call);
		}
}

bool h2conn_step(struct conn *c)
{
	struct h2conn *hc = c->h2;
	struct side *s = &c->cli;
	struct worker *w = s->w;
	bool progress = false;
	size_t n;

	if (s->timed_out && !hc->fatal) {
		/* idle (a zero window stalls nothing but this): GOAWAY, then close */
		s->failed = s->timed_out = false;
		hc->fatal = true;
		h2s_terminate(hc->h, H2_NO_ERROR, "idle timeout");
		progress = true;
	}
	if (s->failed || s->eof) {
		conn_abort(c);
		return true;
	}
	if (!hc->goaway && (w->draining || c->cfg != w->cfg)) {
		/* a drain or a new config: in-flight streams finish, new ones go elsewhere */
		hc->goaway = true;
		h2s_goaway(hc->h);
	}
	if (buf_len(&s->in) && !hc->fatal && buf_len(&s->out) < H2_OUT_LOW) {
		n = buf_len(&s->in);
		if (h2s_recv(hc->h, buf_head(&s->in), n, w->now_ms) < 0) {
			hc->fatal = true;
			log_debug("h2", "%s: %s", c->peer_addr, h2s_error(hc->h));
		}
		buf_consume(&s->in, n);
		progress = true;
	}
	if (buf_len(&s->out) < H2_OUT_LOW) {
		if (!(s->pending & PEND_SEND))
			buf_compact(&s->out);
		n = h2s_send(hc->h, s->out.data + s->out.end, buf_space(&s->out));
		s->out.end += n;
		progress |= n > 0;
		resume_paused(hc);
	}
	if (h2s_done(hc->h) && !buf_len(&s->out)) {
		h2conn_free(c);
		c->state = CS_CLOSING;
		return true;
	}
	return progress;
}

bool h2conn_arm(struct conn *c)
{
	struct h2conn *hc = c->h2;
	struct side *s = &c->cli;
	uint64_t now = s->w->now_ms, deadline;

	if (busy(hc))
		hc->progress_ms = now;
	deadline = hc->progress_ms + c->cfg->limits.idle_timeout_ms;
	s->recv_timeout_ms = deadline > now ? deadline - now : 1;
	side_retime_recv(s);
	if (!hc->fatal && buf_len(&s->out) < H2_OUT_LOW)
		return side_arm_recv(s);
	return false;
}
