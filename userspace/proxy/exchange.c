/*
 * The HTTP connection state machine. Every completion runs conn_advance(): it makes all
 * the progress the buffers allow (parse, route, authenticate, move body bytes with their
 * framing), then arms exactly the I/O still needed. Reads are armed only when there is
 * room to put the bytes, which is the backpressure in both directions.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <string.h>
#include <time.h>

#include "accesslog/accesslog.h"
#include "cache/cache.h"
#include "common/log.h"
#include "filters/filters.h"
#include "h2/h2.h"
#include "metrics/metrics.h"
#include "proxy/proxy.h"
#include "ratelimit/ratelimit.h"
#include "router/router.h"
#include "tls/tls.h"
#include "upstream/dns.h"

static const char continue_100[] = "HTTP/1.1 100 Continue\r\n\r\n";

static const struct listener_config *conn_listener(const struct conn *c)
{
	return &c->cfg->listeners[c->listener];
}

static struct http_limits conn_limits(const struct conn *c)
{
	struct http_limits l = {
		.max_request_line = c->cfg->limits.max_request_line,
		.max_header_bytes = c->cfg->limits.max_header_bytes,
	};
	return l;
}

static void format_peer(struct conn *c)
{
	uint16_t port = 0;

	if (c->peer.ss_family == AF_INET6) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&c->peer;

		inet_ntop(AF_INET6, &s6->sin6_addr, c->peer_ip, sizeof(c->peer_ip));
		port = ntohs(s6->sin6_port);
		snprintf(c->peer_addr, sizeof(c->peer_addr), "[%s]:%u", c->peer_ip, port);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&c->peer;

		inet_ntop(AF_INET, &s4->sin_addr, c->peer_ip, sizeof(c->peer_ip));
		port = ntohs(s4->sin_port);
		snprintf(c->peer_addr, sizeof(c->peer_addr), "%s:%u", c->peer_ip, port);
	}
}

void conn_accepted(struct worker *w, int fd, int listener)
{
	struct conn *c = calloc(1, sizeof(*c));
	const struct listener_config *lc;

	if (!c) {
		close(fd);
		return;
	}
	side_init(&c->cli, w, fd, false);
	c->cfg = config_get(w->cfg);
	c->listener = listener;
	c->peerlen = sizeof(c->peer);
	getpeername(fd, (struct sockaddr *)&c->peer, &c->peerlen);
	format_peer(c);
	c->next = &w->conns_head;
	c->prev = w->conns_head.prev;
	c->prev->next = c;
	w->conns_head.prev = c;
	w->nconns++;
	lc = conn_listener(c);
	metrics_connection(w->metrics, lc->metrics_slot, +1);
	c->cli.send_timeout_ms = c->cfg->limits.idle_timeout_ms;
	if (lc->tls) {
		c->cli.tls = tls_conn_new(lc->tls, fd);
		if (!c->cli.tls) {
			side_close(&c->cli);
			return;
		}
		c->state = CS_TLS_HANDSHAKE;
		c->deadline_ms = w->now_ms + c->cfg->limits.tls_handshake_timeout_ms;
	} else if (lc->mode == LISTENER_TCP) {
		l4_start(c);
	} else {
		c->state = CS_HEAD;
	}
	conn_advance(c);
}

void exchange_reset(struct conn *c)
{
	struct exchange *ex = c->ex;

	if (c->st) {
		struct stream *st = c->st;

		c->st = NULL;
		stream_end(st); /* the filters' on_end: cache commit, releases */
	}
	if (!ex)
		return;
	if (ex->log_path != ex->log_path_short)
		free(ex->log_path);
	free(ex->rb);
	free(ex->hold_head);
	free(ex->hold_buf);
	buf_free(&ex->head);
	buf_free(&ex->req_trailers);
	memset(ex, 0, sizeof(*ex));
	ex->route = ex->upstream = ex->target = ex->consumer_slot = -1;
}

bool conn_take_exchange(struct conn *c)
{
	struct worker *w = c->cli.w;
	struct exchange *ex = c->ex;

	if (ex)
		return true;
	ex = w->ex_free;
	if (ex)
		w->ex_free = ex->free_next;
	else if (!(ex = malloc(sizeof(*ex))))
		return false;
	memset(ex, 0, sizeof(*ex));
	ex->route = ex->upstream = ex->target = ex->consumer_slot = -1;
	c->ex = ex;
	return true;
}

/* Ends the exchange and gives its memory back to the worker. */
static void drop_exchange(struct conn *c)
{
	struct worker *w = c->cli.w;

	exchange_reset(c);
	if (!c->ex)
		return;
	c->ex->free_next = w->ex_free;
	w->ex_free = c->ex;
	c->ex = NULL;
}

void exchange_freelist_free(struct worker *w)
{
	while (w->ex_free) {
		struct exchange *ex = w->ex_free;

		w->ex_free = ex->free_next;
		free(ex);
	}
}

void conn_free(struct conn *c)
{
	struct worker *w = c->cli.w;

	if (c->up) {
		c->up->owner = NULL;
		side_close(&c->up->s);
		c->up = NULL;
	}
	upqueue_remove(c);
	if (c->ex && c->ex->counted_active && c->ex->target >= 0) {
		atomic_fetch_sub(&c->cfg->upstreams[c->ex->upstream].targets[c->ex->target].state->active, 1);
		upqueue_released(w);
	}
	tunnel_pipe_release(c);
	h2conn_free(c);
	body_splice_release(c);
	c->prev->next = c->next;
	c->next->prev = c->prev;
	w->nconns--;
	metrics_connection(w->metrics, conn_listener(c)->metrics_slot, -1);
	drop_exchange(c);
	config_put(c->cfg);
	free(c);
}

/* Closes the client connection and whatever upstream connection it holds. */
void conn_abort(struct conn *c)
{
	upqueue_remove(c);
	if (c->st) {
		struct stream *st = c->st;

		c->st = NULL;
		stream_end(st);
	}
	h2conn_free(c);
	if (c->cli.splice_enrolled || (c->up && c->up->s.splice_enrolled))
		tunnel_release_splice(c);
	tunnel_pipe_release(c);
	if (c->up) {
		c->up->owner = NULL;
		side_close(&c->up->s);
		c->up = NULL;
	}
	c->state = CS_DEAD;
	side_close(&c->cli);
}

static void release_upconn(struct conn *c, bool reusable)
{
	struct upconn *u = c->up;

	if (!u)
		return;
	c->up = NULL;
	if (reusable && c->ex->upstream >= 0)
		pool_put(c->cli.w, u, c->cfg->upstreams[c->ex->upstream].keepalive);
	else {
		u->owner = NULL;
		side_close(&u->s);
	}
}

static void record_exchange(struct conn *c)
{
	struct worker *w = c->cli.w;
	struct exchange *ex = c->ex;
	const struct route_config *rc = ex->route >= 0 ? &c->cfg->routes[ex->route] : NULL;
	const struct upstream_config *uc = ex->upstream >= 0 ? &c->cfg->upstreams[ex->upstream] : NULL;
	uint64_t dur_ns = clock_mono_ns() - ex->start_ns;
	struct access_entry e;

	metrics_http_request(w->metrics, rc ? rc->metrics_slot : -1, ex->status, dur_ns);
	metrics_consumer_request(w->metrics, ex->consumer_slot, ex->status);
	metrics_http_proto(w->metrics, false);
	if (ex->counted_active) {
		atomic_fetch_sub(&uc->targets[ex->target].state->active, 1);
		ex->counted_active = false;
		upqueue_released(w);
	}
	if (!accesslog_enabled())
		return;
	memset(&e, 0, sizeof(e));
	e.time_us = ex->start_wall_us;
	e.request_id = ex->request_id;
	e.client = (const struct sockaddr *)&c->peer;
	e.method = ex->method_str;
	e.path = ex->log_path ? ex->log_path : "";
	e.path_len = ex->log_path_len;
	e.route = rc ? rc->name : "";
	e.target = uc && ex->target >= 0 ? uc->targets[ex->target].address_text : "";
	e.status = ex->status;
	e.bytes_in = ex->bytes_in;
	e.bytes_out = ex->bytes_out;
	e.duration_us = dur_ns / 1000;
	e.consumer = ex->consumer;
	e.client_cert = c->cli.tls ? tls_conn_peer_subject(c->cli.tls) : NULL;
	e.calls = c->st ? c->st->log_calls : NULL;
	e.waf_rules = c->st ? c->st->log_waf : NULL;
	e.proto = "http/1.1";
	accesslog_write(w->id, &e);
}

/* The exchange is over: account it, recycle the upstream, move on to the next request. */
void finish_exchange(struct conn *c, bool upstream_reusable)
{
	struct exchange *ex = c->ex;
	bool keep = ex->keep_alive && ex->req_done && !c->close_after && !c->cli.w->draining &&
		    !c->cli.eof;

	record_exchange(c);
	release_upconn(c, upstream_reusable && ex->req_done && !ex->resp_close);
	drop_exchange(c);
	c->in_exchange = false;
	c->deadline_ms = 0;
	if (!keep) {
		c->state = CS_CLOSING;
		return;
	}
	c->state = CS_HEAD;
	if (!buf_len(&c->cli.in))
		buf_release_if_empty(&c->cli.in);
}

/* false: no memory for it, and the connection is aborted. */
static bool begin_exchange(struct conn *c)
{
	struct exchange *ex;
	struct timespec ts;

	exchange_reset(c);
	if (!conn_take_exchange(c)) {
		conn_abort(c);
		return false;
	}
	ex = c->ex;
	c->in_exchange = true;
	ex->start_ns = clock_mono_ns();
	clock_gettime(CLOCK_REALTIME, &ts);
	ex->start_wall_us = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
	ex->keep_alive = true;
	ex->req_done = true;
	strcpy(ex->method_str, "-");
	return true;
}

static void note_request(struct conn *c, const struct http_request *req)
{
	struct exchange *ex = c->ex;
	const struct http_header *rid = http_find_header(req->headers, req->nheaders,
							 "x-request-id");
	size_t n = req->method_str.len < sizeof(ex->method_str) - 1 ? req->method_str.len
								    : sizeof(ex->method_str) - 1;

	memcpy(ex->method_str, req->method_str.p, n);
	ex->method_str[n] = '\0';
	ex->method = req->method;
	ex->log_path = req->path.len < sizeof(ex->log_path_short) ? ex->log_path_short
								  : malloc(req->path.len + 1);
	if (ex->log_path) {
		memcpy(ex->log_path, req->path.p, req->path.len);
		ex->log_path[req->path.len] = '\0';
		ex->log_path_len = req->path.len;
	}
	if (rid && http_request_id_valid(rid->value) && rid->value.len < sizeof(ex->request_id)) {
		memcpy(ex->request_id, rid->value.p, rid->value.len);
		ex->request_id[rid->value.len] = '\0';
	} else {
		make_request_id(c->cli.w, ex->request_id, sizeof(ex->request_id));
	}
	ex->keep_alive = req->keep_alive;
	ex->req_has_body = req->body != HTTP_BODY_NONE &&
			   !(req->body == HTTP_BODY_LENGTH && req->content_length == 0);
}

/*
 * Answers with a gateway error. The request head (head_len bytes) is consumed; when the
 * request has a body we did not read, the connection closes after the answer.
 */
static void reject(struct conn *c, int status, const char *reason, size_t head_len,
		   const char *extra_headers)
{
	if (head_len)
		buf_consume(&c->cli.in, head_len);
	if (c->ex->req_has_body && !c->ex->req_done)
		c->close_after = true;
	respond_error(c, status, reason, c->close_after || status == 400 || status == 408 ||
						 status == 413 || status == 414 || status == 431,
		      extra_headers);
}

static uint64_t balance_hash(struct conn *c, const struct upstream_config *uc,
			     const struct http_request *req, const struct auth_result *ar)
{
	const struct http_header *h;
	const char *v;

	switch (uc->hash_on) {
	case HASH_ON_HEADER:
		h = http_find_header(req->headers, req->nheaders, uc->hash_key);
		if (h)
			return hash_key64(h->value.p, h->value.len);
		break;
	case HASH_ON_CLAIM:
		v = ar && ar->claim ? ar->claim(ar, uc->hash_key) : NULL;
		if (v)
			return hash_key64(v, strlen(v));
		break;
	case HASH_ON_IP:
		break;
	}
	return hash_key64(c->peer_ip, strlen(c->peer_ip));
}

/* Room kept in the client buffer around a transformed piece: its chunk-size line (fixed
 * width, so the size can be written after the transform ran), the CRLF after the data and
 * the last-chunk. */
#define XF_CHUNK_HEAD 10
#define XF_RESERVE (XF_CHUNK_HEAD + 2 + 5)

/*
 * Runs the stream's body transform over in[0..n) with the room the client buffer has and
 * frames its output for the client. *used: input consumed. -1: the transform failed.
 * Sets ex->xf_done once fin was given and the transform wrote everything.
 */
static int xf_emit(struct conn *c, const char *in, size_t n, bool fin, bool flush, size_t *used)
{
	struct exchange *ex = c->ex;
	struct buf *out = &c->cli.out;
	bool chunked = !ex->client_http10;
	size_t head = chunked ? XF_CHUNK_HEAD : 0;
	struct stream_body_io io = { .in = in, .in_len = n, .flush = flush, .fin = fin };
	size_t before;

	*used = 0;
	if (!(c->cli.pending & PEND_SEND))
		buf_compact(out);
	if (buf_space(out) < XF_RESERVE + 256)
		return 0; /* wait for the client to take what is there */
	before = out->end;
	io.out = out->data + out->end + head;
	io.out_cap = buf_space(out) - (chunked ? XF_RESERVE : 0);
	if (stream_response_body(c->st, &io) < 0 || io.in_used > n || io.out_len > io.out_cap)
		return -1;
	if (io.out_len) {
		if (chunked) {
			char line[24];

			/* Leading zeros are valid chunk-size digits (RFC 9112 7.1); the client
			 * buffer is far below 4 GiB, so 8 digits always hold the size. */
			snprintf(line, sizeof(line), "%08x\r\n", (unsigned)io.out_len);
			memcpy(out->data + out->end, line, XF_CHUNK_HEAD);
		}
		out->end += head + io.out_len;
		if (chunked)
			buf_append(out, "\r\n", 2);
	}
	if (io.done) {
		if (chunked)
			buf_append(out, "0\r\n\r\n", 5);
		ex->xf_done = true;
	}
	ex->bytes_out += out->end - before;
	*used = io.in_used;
	return io.in_used || io.out_len || io.done;
}

/* Streams a cached body into the client buffer as space allows (through the transform
 * when a filter claimed the body: the cache keeps one identity copy). */
static bool pump_cached(struct conn *c)
{
	struct exchange *ex = c->ex;
	size_t n = ex->hit->body_len - ex->hit_off;
	int r;

	if (ex->xf) {
		r = xf_emit(c, ex->hit->body + ex->hit_off, n, true, false, &n);
		if (r < 0) {
			conn_abort(c);
			return true;
		}
		ex->hit_off += n;
		if (ex->xf_done) {
			c->st->completed = true;
			finish_exchange(c, false);
			return true;
		}
		return r > 0;
	}
	if (!(c->cli.pending & PEND_SEND))
		buf_compact(&c->cli.out);
	if (n > buf_space(&c->cli.out))
		n = buf_space(&c->cli.out);
	buf_append(&c->cli.out, ex->hit->body + ex->hit_off, n);
	ex->hit_off += n;
	ex->bytes_out += n;
	if (ex->hit_off == ex->hit->body_len) {
		c->st->completed = true;
		finish_exchange(c, false);
		return true;
	}
	return n > 0;
}

static bool pick_and_connect(struct conn *c);

static const struct auth_result no_auth;

/* The stream's route and identity, as the exchange accounts and logs them. */
static void take_stream_result(struct conn *c, const struct stream *st)
{
	c->ex->route = st->route;
	c->ex->upstream = st->route >= 0 ? st->upstream : -1;
	snprintf(c->ex->consumer, sizeof(c->ex->consumer), "%s", st->consumer);
	c->ex->consumer_slot = st->auth_done ? st->auth.consumer_slot : -1;
}

static void stream_reply_error_host(struct stream *st, int status, const char *reason,
				    const char *extra_headers)
{
	struct conn *c = st->host;

	take_stream_result(c, st);
	reject(c, status, reason, 0, extra_headers);
}

/* A filter answered without a body (a CORS preflight). */
static void stream_reply_status_host(struct stream *st, int status, const char *headers)
{
	struct conn *c = st->host;

	take_stream_result(c, st);
	reject(c, status, NULL, 0, headers);
}

/* A transformed body has no length: an HTTP/1.0 client learns its end from the close. */
static void note_body_transform(struct conn *c)
{
	c->ex->xf = stream_transforms_body(c->st);
	if (c->ex->xf && c->ex->client_http10)
		c->ex->keep_alive = false;
}

static void stream_reply_cached_host(struct stream *st, const struct cache_hit *hit)
{
	struct conn *c = st->host;
	struct exchange *ex = c->ex;
	struct http_response resp;

	take_stream_result(c, st);
	ex->from_cache = true;
	ex->hit = hit;
	if (!parse_cached_head(c, hit, &resp)) {
		reject(c, 502, "cached response does not fit", 0, NULL);
		return;
	}
	st->resp_local = false;
	stream_response(st, &resp); /* per-request edits: CORS, encoding */
	note_body_transform(c);
	if (!write_cached_head(c, hit, &resp)) {
		reject(c, 502, "cached response does not fit", 0, NULL);
		return;
	}
	ex->hit_off = ex->method == HTTP_HEAD ? hit->body_len : 0;
	ex->resp_started = true;
	ex->req_done = true;
	c->state = CS_EXCHANGE;
}

/* A filter made the whole response (compose): served like a cached one, without Age. */
static void stream_reply_body_host(struct stream *st, const char *headers, const char *body,
				   size_t len)
{
	struct conn *c = st->host;
	const struct cache_hit *hit = body_as_hit(st, headers, body, len);

	if (!hit) {
		take_stream_result(c, st);
		reject(c, 503, "out of memory", 0, NULL);
		return;
	}
	c->ex->no_age = true;
	/* the unread request body is not the next request: close after this answer */
	if (c->ex->req_has_body && !c->ex->req_done)
		c->close_after = true;
	stream_reply_cached_host(st, hit);
	if (c->ex->from_cache)
		stream_response_data(st, body, len);
}

static bool pick_and_connect(struct conn *c);

/* Every filter let the request through: build the upstream head and pick a target. */
static void stream_forward_host(struct stream *st)
{
	struct conn *c = st->host;
	struct exchange *ex = c->ex;
	const struct http_request *req = &st->req;
	const struct route_config *rc = &c->cfg->routes[st->route];
	const struct auth_result *ar = st->auth_done ? &st->auth : &no_auth;
	const char *up_path = st->path;
	size_t up_len = st->path_len, off;

	take_stream_result(c, st);
	if (c->cfg->upstreams[ex->upstream].protocol != UPSTREAM_HTTP1) {
		/* an h2c/h2 upstream is reached from HTTP/2 clients (h2conn.c) only */
		reject(c, 505, "route needs HTTP/2", 0, NULL);
		return;
	}
	if (st->up_path) {
		up_path = st->up_path; /* a filter rewrote it (transform.request.path) */
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
	/* Only a WebSocket upgrade (a GET without body, RFC 6455 4.1), only on a route that
	 * allows it: any other Upgrade (h2c, TLS/1.0, ...) is ignored as RFC 9110 7.8 lets a
	 * server do, so the upstream sees a plain request and the gateway never relays a
	 * protocol it does not know. */
	ex->upgrade = req->upgrade && rc->websocket && req->method == HTTP_GET &&
		      !ex->req_has_body && http_str_eq_nocase(req->upgrade_proto, "websocket");
	if (!build_upstream_head(c, req, up_path, up_len, ar, ex->upgrade, &ex->head)) {
		reject(c, 431, "request headers too large", 0, NULL);
		return;
	}
	ex->hash = balance_hash(c, &c->cfg->upstreams[ex->upstream], req, ar);
	if (st->req_body_ready) {
		/* read whole already (step_req_body): sent from the stream after the head */
		ex->rb_buffered = true;
		pick_and_connect(c);
		return;
	}
	ex->req_body = req->body;
	if (ex->upgrade && !c->cli.tls && conn_listener(c)->splice == SPLICE_SOCKMAP &&
	    c->cli.w->gw->splice && !buf_len(&c->cli.in)) {
		/* RFC 6455 clients send nothing before the 101: the head is the last byte read. */
		c->splice_wanted = true;
	}
	ex->req_remaining = req->content_length;
	http_chunked_init(&ex->req_chunked);
	ex->req_chunked.split_trailers = true;
	if (c->splice_wanted)
		splice_enrol(c, &c->cli);
	if (req->expect_continue && ex->req_has_body && !buf_len(&c->cli.in)) {
		buf_ensure(&c->cli.out, 64 * 1024 + c->cfg->limits.max_header_bytes);
		buf_append(&c->cli.out, continue_100, sizeof(continue_100) - 1);
	}
	pick_and_connect(c);
}

/* A filter that waited has finished: the connection moves on from wherever that left it. */
static void stream_resumed_host(void *host)
{
	conn_advance(host);
}

/* A filter waits for the request body: step_req_body() reads it. */
static void stream_read_body_host(struct stream *st)
{
	struct conn *c = st->host;
	struct exchange *ex = c->ex;
	const struct http_request *req = &st->req;

	c->state = CS_REQ_BODY;
	ex->req_body = req->body;
	ex->req_remaining = req->content_length;
	http_chunked_init(&ex->req_chunked);
	if (req->expect_continue && ex->req_has_body && !ex->req_done && !buf_len(&c->cli.in) &&
	    buf_ensure(&c->cli.out, 64 * 1024 + c->cfg->limits.max_header_bytes))
		buf_append(&c->cli.out, continue_100, sizeof(continue_100) - 1);
}

static const struct stream_host_ops conn_stream_ops = {
	.read_body = stream_read_body_host,
	.reply_error = stream_reply_error_host,
	.reply_cached = stream_reply_cached_host,
	.reply_status = stream_reply_status_host,
	.reply_body = stream_reply_body_host,
	.forward = stream_forward_host,
	.resumed = stream_resumed_host,
};

/* The HTTP/1 codec has a request head: open its stream and run the filter chain. */
static bool start_exchange(struct conn *c, const struct http_request *req, size_t head_len)
{
	struct worker *w = c->cli.w;
	struct exchange *ex;
	struct stream *st;

	if (!begin_exchange(c))
		return true;
	ex = c->ex;
	c->h1_seen = true;
	note_request(c, req);
	ex->client_http10 = req->minor_version == 0;
	ex->req_done = !ex->req_has_body;
	st = stream_open(w->streams, &conn_stream_ops, c, c->cfg, req, buf_head(&c->cli.in),
			 head_len);
	if (st && !filters_begin(st)) {
		stream_end(st);
		st = NULL;
	}
	if (!st) {
		reject(c, 503, "out of memory", head_len, NULL);
		return true;
	}
	st->env = &w->env;
	st->peer_ip = c->peer_ip;
	st->peer_addr = (const struct sockaddr *)&c->peer;
	st->local_addr = (const struct sockaddr *)&c->cfg->listeners[c->listener].addr;
	st->is_ipv6 = c->peer.ss_family == AF_INET6;
	st->tls = c->cli.tls;
	if (c->cli.tls) {
		const char *subject = tls_conn_peer_subject(c->cli.tls);

		/* The certificate is read by the auth filter's on_request only; the subject is
		 * copied so that what filters keep does not point into the TLS state. */
		st->client_cert.cert = tls_conn_peer_cert(c->cli.tls);
		st->client_cert.verified = tls_conn_peer_verified(c->cli.tls);
		st->client_cert.subject = subject ? stream_strdup(st, subject, strlen(subject)) : NULL;
		st->client_cert.verified &= st->client_cert.subject != NULL;
	}
	st->request_id = ex->request_id;
	c->st = st;
	ex->bytes_in = head_len;
	buf_consume(&c->cli.in, head_len); /* the stream has its own copy of the head */
	c->state = CS_FILTERS;
	stream_run(st, w->now_ms);
	return true;
}

static bool is_idempotent(enum http_method m)
{
	return m == HTTP_GET || m == HTTP_HEAD || m == HTTP_OPTIONS || m == HTTP_PUT ||
	       m == HTTP_DELETE || m == HTTP_TRACE;
}

#define PICK_ALL_FULL (-2)

static void release_slot(struct conn *c)
{
	struct exchange *ex = c->ex;

	if (!ex->counted_active)
		return;
	atomic_fetch_sub(&c->cfg->upstreams[ex->upstream].targets[ex->target].state->active, 1);
	ex->counted_active = false;
	upqueue_released(c->cli.w);
}

/*
 * Picks a target and claims one of its in-flight slots. Targets at max_conns_per_target
 * are skipped; when only such targets are left, PICK_ALL_FULL (the request waits).
 */
static int pick_with_slot(struct conn *c, struct balance_rr *rr)
{
	struct exchange *ex = c->ex;
	const struct upstream_config *uc = &c->cfg->upstreams[ex->upstream];
	uint64_t full_mask = 0;
	int idx;

	for (int tries = 0; tries < UPSTREAM_MAX_TARGETS; tries++) {
		if (uc->max_conns_per_target)
			for (int i = 0; i < uc->ntargets && i < UPSTREAM_MAX_TARGETS; i++)
				if (atomic_load(&uc->targets[i].state->active) >=
				    (int)uc->max_conns_per_target)
					full_mask |= 1ull << i;
		idx = balance_pick(uc, rr, ex->hash, ex->tried_mask | full_mask, c->cli.w->now_ms);
		if (idx < 0)
			return full_mask & ~ex->tried_mask ? PICK_ALL_FULL : idx;
		if (target_claim_slot(uc->targets[idx].state, uc->max_conns_per_target)) {
			ex->counted_active = true;
			return idx;
		}
		full_mask |= 1ull << idx; /* another worker took its last slot meanwhile */
	}
	return PICK_ALL_FULL;
}

void conn_queue_retry(struct conn *c)
{
	pick_and_connect(c);
	if (c->state != CS_QUEUED)
		conn_advance(c);
}

void conn_queue_expired(struct conn *c)
{
	reject(c, 503, "upstream queue timeout", 0, NULL);
	conn_advance(c);
}

/* Attaches an upstream connection: a pooled one, or a new connect. */
static bool pick_and_connect(struct conn *c)
{
	struct worker *w = c->cli.w;
	struct exchange *ex = c->ex;
	const struct upstream_config *uc = &c->cfg->upstreams[ex->upstream];
	struct balance_rr local_rr, *rr = worker_rr(w, c->cfg, ex->upstream);
	const struct target_config *tc;
	struct upconn *u;
	int idx;

	if (!rr) {
		memset(&local_rr, 0, sizeof(local_rr));
		rr = &local_rr;
	}
	release_slot(c); /* a retry gives the failed target's slot back first */
	idx = pick_with_slot(c, rr);
	if (idx == PICK_ALL_FULL) {
		upqueue_add(c, uc->queue_timeout_ms);
		c->state = CS_QUEUED;
		return true;
	}
	if (idx >= 0)
		upqueue_granted(c);
	else
		upqueue_remove(c);
	if (idx < 0) {
		const char *why = dns_unavailable_reason(uc);

		if (ex->tried_mask)
			reject(c, 502, "upstream failed", 0, NULL);
		else
			reject(c, 503, why ? why : "no healthy upstream", 0, NULL);
		return true;
	}
	ex->target = idx;
	ex->tried_mask |= 1ull << idx;
	ex->attempts++;
	tc = &uc->targets[idx];
	/* An upgrade may be spliced, which needs a socket nothing was read from yet. */
	u = ex->upgrade ? NULL : pool_take(w, tc->state);
	if (!u) {
		u = upconn_new(w, tc);
		if (!u) {
			reject(c, 502, "cannot open upstream socket", 0, NULL);
			return true;
		}
		upconn_connect(u, uc->connect_timeout_ms);
	} else {
		u->connected = true;
	}
	u->owner = c;
	u->received_before = u->s.bytes_received;
	c->up = u;
	u->s.send_timeout_ms = uc->read_timeout_ms;
	c->state = CS_CONNECTING;
	return true;
}

static void count_target(struct conn *c, enum upstream_outcome outcome)
{
	const struct upstream_config *uc = &c->cfg->upstreams[c->ex->upstream];
	const struct target_config *tc = &uc->targets[c->ex->target];

	metrics_upstream_request(c->cli.w->metrics, tc->metrics_slot, outcome);
	target_report(tc->state, &uc->breaker, outcome == OUTCOME_SUCCESS, c->cli.w->now_ms);
}


/*
 * The upstream connection failed before a response reached the client. A connect failure
 * is retried on another target (nothing was sent). A reused keep-alive connection that the
 * upstream had closed is retried on a fresh one when the request is idempotent and fully
 * buffered; anything else is 502, or 504 on timeout.
 */
static bool upstream_failed(struct conn *c)
{
	struct exchange *ex = c->ex;
	const struct upstream_config *uc = &c->cfg->upstreams[ex->upstream];
	struct upconn *u = c->up;
	bool connect_failed = !u->connected, timed_out = u->s.timed_out;
	bool stale_reuse = u->reused && u->s.bytes_received == u->received_before && !timed_out;
	bool body_intact = !ex->req_has_body || ex->req_body_bytes == 0;

	if (!stale_reuse)
		count_target(c, timed_out ? OUTCOME_TIMEOUT
					  : connect_failed ? OUTCOME_CONNECT_ERROR : OUTCOME_RESET);
	release_upconn(c, false);
	if (ex->resp_started) {
		conn_abort(c);
		return true;
	}
	if (stale_reuse && is_idempotent(ex->method) && body_intact) {
		ex->tried_mask &= ~(1ull << ex->target);
		return pick_and_connect(c);
	}
	if (connect_failed && ex->attempts <= (int)uc->retries && body_intact &&
	    (is_idempotent(ex->method) || !ex->req_has_body)) {
		return pick_and_connect(c);
	}
	if (ex->req_has_body && !ex->req_done)
		c->close_after = true;
	if (timed_out)
		reject(c, 504, connect_failed ? "upstream connect timeout" : "upstream timeout", 0,
		       NULL);
	else
		reject(c, 502, connect_failed ? "upstream connect failed" : "upstream failed", 0,
		       NULL);
	return true;
}

static bool step_connecting(struct conn *c)
{
	struct upconn *u = c->up;
	uint32_t cap = 64 * 1024 + c->cfg->limits.max_header_bytes;

	if (u->s.failed)
		return c->l4 ? (conn_abort(c), true) : upstream_failed(c);
	if (!u->connected)
		return false;
	if (c->splice_wanted)
		splice_enrol(c, &u->s); /* before any byte is read from the upstream */
	if (c->l4) {
		tunnel_start(c);
		return true;
	}
	if (!buf_ensure(&u->s.out, cap)) {
		conn_abort(c);
		return true;
	}
	buf_append(&u->s.out, buf_head(&c->ex->head), buf_len(&c->ex->head));
	c->ex->rb_sent = 0; /* a retry sends the buffered body again */
	c->state = CS_EXCHANGE;
	return true;
}

/* How many of src's received bytes fit into dst's send buffer now (0: wait). */
size_t pump_room(struct side *src, struct side *dst)
{
	size_t n = buf_len(&src->in);

	if (!n)
		return 0;
	if (!(dst->pending & PEND_SEND))
		buf_compact(&dst->out);
	return n < buf_space(&dst->out) ? n : buf_space(&dst->out);
}

static bool bad_request_body(struct conn *c)
{
	c->close_after = true;
	if (!c->ex->resp_started) {
		release_upconn(c, false);
		reject(c, 400, "invalid chunked body", 0, NULL);
	} else {
		conn_abort(c);
	}
	return true;
}

/* A client trailer field the upstream may see: allow-listed and not an identity header. */
static bool keep_trailer(struct http_str name, void *arg)
{
	const struct conn *c = arg;

	return http_trailer_allowed(name) && !auth_is_identity_header(c->cfg->auth, name);
}

/*
 * The trailer section of a chunked request body is held back until it is complete, then
 * filtered (RFC 9110 6.5.1: trailers must not smuggle framing, routing, credentials or
 * identity past the checks the head went through) and sent on.
 */
static bool pump_trailers(struct conn *c)
{
	struct exchange *ex = c->ex;
	struct side *src = &c->cli, *dst = &c->up->s;
	struct buf *t = &ex->req_trailers;
	size_t n;
	ssize_t k;

	if (!ex->req_chunked.done && !buf_len(t) && buf_len(&src->in) >= 2 &&
	    !memcmp(buf_head(&src->in), "\r\n", 2)) {
		/* No trailers, the usual case: the final CRLF goes on without a buffer. */
		if (!(dst->pending & PEND_SEND))
			buf_compact(&dst->out);
		if (buf_space(&dst->out) < 2)
			return false;
		if (http_chunked_scan(&ex->req_chunked, buf_head(&src->in), 2, NULL, NULL) != 2 ||
		    !ex->req_chunked.done)
			return bad_request_body(c);
		buf_append(&dst->out, "\r\n", 2);
		buf_consume(&src->in, 2);
		ex->bytes_in += 2;
		ex->req_body_bytes += 2;
		ex->req_done = true;
		return true;
	}
	if (!ex->req_chunked.done) {
		if (!buf_ensure(t, HTTP_CHUNK_TRAILER_MAX + 64)) {
			conn_abort(c);
			return true;
		}
		n = buf_len(&src->in) < buf_space(t) ? buf_len(&src->in) : buf_space(t);
		if (!n)
			return false;
		k = http_chunked_scan(&ex->req_chunked, buf_head(&src->in), n, NULL, NULL);
		if (k < 0)
			return bad_request_body(c);
		buf_append(t, buf_head(&src->in), k);
		buf_consume(&src->in, k);
		ex->bytes_in += k;
		if (ex->req_chunked.done) {
			k = http_trailers_filter(buf_head(t), buf_len(t), buf_head(t), buf_len(t),
						 keep_trailer, c);
			if (k < 0)
				return bad_request_body(c);
			t->end = t->start + k;
		}
		return true;
	}
	if (!(dst->pending & PEND_SEND))
		buf_compact(&dst->out);
	n = buf_len(t) < buf_space(&dst->out) ? buf_len(t) : buf_space(&dst->out);
	buf_append(&dst->out, buf_head(t), n);
	buf_consume(t, n);
	ex->req_body_bytes += n;
	ex->req_done = !buf_len(t);
	return n > 0;
}

#define REFRAME_SPANS 32
/* The most framing one pump_chunks() call adds: a size line and CRLF per span (16 hex
 * digits at most), then the last-chunk line. */
#define REFRAME_OVERHEAD (REFRAME_SPANS * (16 + 4) + 3)

/*
 * A chunked request body goes upstream in chunks the gateway framed itself: the client's
 * payload bytes with sizes in its own hex and no chunk extensions, so no size-line or
 * extension quirk of the client reaches an upstream parser that might read it otherwise.
 * Chunk boundaries are not meaningful (RFC 9112 7.1), so they follow the reads.
 */
static bool pump_chunks(struct conn *c)
{
	struct exchange *ex = c->ex;
	struct side *src = &c->cli, *dst = &c->up->s;
	struct http_span spans[REFRAME_SPANS];
	size_t nspans = REFRAME_SPANS, n = buf_len(&src->in), room;
	const char *p = buf_head(&src->in);
	char line[24];
	ssize_t k;
	int m;

	if (!n)
		return false;
	if (!(dst->pending & PEND_SEND))
		buf_compact(&dst->out);
	room = buf_space(&dst->out);
	if (room <= REFRAME_OVERHEAD)
		return false; /* the send in flight makes room */
	if (n > room - REFRAME_OVERHEAD)
		n = room - REFRAME_OVERHEAD;
	k = http_chunked_scan(&ex->req_chunked, p, n, spans, &nspans);
	if (k < 0)
		return bad_request_body(c);
	if (ex->req_chunked.total > c->cfg->limits.max_body_bytes && !ex->resp_started) {
		c->close_after = true;
		release_upconn(c, false);
		reject(c, 413, "request body too large", 0, NULL);
		return true;
	}
	for (size_t i = 0; i < nspans; i++) {
		m = snprintf(line, sizeof(line), "%zx\r\n", spans[i].len);
		buf_append(&dst->out, line, m);
		buf_append(&dst->out, p + spans[i].off, spans[i].len);
		buf_append(&dst->out, "\r\n", 2);
	}
	if (ex->req_chunked.in_trailers)
		buf_append(&dst->out, "0\r\n", 3); /* the trailers follow (pump_trailers) */
	buf_consume(&src->in, k);
	ex->req_body_bytes += k;
	ex->bytes_in += k;
	return k > 0;
}

/* Moves request body bytes from the client buffer to the upstream, within framing. */
static bool pump_request(struct conn *c)
{
	struct exchange *ex = c->ex;
	struct side *src = &c->cli, *dst = &c->up->s;
	size_t n;
	ssize_t k;

	if (ex->req_body == HTTP_BODY_CHUNKED)
		return ex->req_chunked.in_trailers ? pump_trailers(c) : pump_chunks(c);
	n = pump_room(src, dst);
	if (!n)
		return false;
	k = n < ex->req_remaining ? n : ex->req_remaining;
	ex->req_remaining -= k;
	ex->req_done = ex->req_remaining == 0;
	buf_append(&dst->out, buf_head(&src->in), k);
	buf_consume(&src->in, k);
	ex->req_body_bytes += k;
	ex->bytes_in += k;
	return k > 0;
}

/* Response body bytes on their way to the client pass through the stream's filters. */
static void response_data(struct conn *c, const char *p, size_t n)
{
	if (c->st)
		stream_response_data(c->st, p, n);
}

static bool xf_deframe(struct conn *c);

/*
 * A filter holds the response (stream_hold_response): nothing goes to the client yet. The
 * origin head is kept (the upstream buffer moves on) and the body gathered by pump_hold().
 */
static bool start_hold(struct conn *c, const struct http_response *resp, size_t head_len)
{
	struct exchange *ex = c->ex;
	struct buf *in = &c->up->s.in;

	ex->hold_head = malloc(head_len);
	if (!ex->hold_head) {
		release_upconn(c, false);
		reject(c, 503, "out of memory", 0, NULL);
		return true;
	}
	memcpy(ex->hold_head, buf_head(in), head_len);
	ex->hold_head_len = head_len;
	buf_consume(in, head_len);
	count_target(c, OUTCOME_SUCCESS);
	http_chunked_init(&ex->resp_chunked);
	ex->xf_ready = 0;
	ex->holding = true;
	ex->resp_done = resp->body == HTTP_BODY_LENGTH && resp->content_length == 0;
	return true;
}

static bool hold_fail(struct conn *c, int status, const char *reason)
{
	c->ex->holding = false;
	release_upconn(c, false);
	reject(c, status, reason, 0, NULL);
	return true;
}

/* The held body is in: the filter rewrites it and it goes out like a cached response. */
static bool finish_hold(struct conn *c)
{
	struct exchange *ex = c->ex;
	struct stream *st = c->st;
	struct http_limits lim = { .max_header_bytes = ex->hold_head_len + 2,
				   .max_request_line = ex->hold_head_len + 2 };
	bool reusable = ex->req_done && !buf_len(&c->up->s.in) && !ex->resp_close &&
			!(ex->rb_buffered && ex->rb_sent < st->req_body_len);
	struct http_response resp;
	struct cache_hit *hit;
	const char *reason, *body;
	size_t len, cap = ex->hold_head_len + 64, hl;
	char *head;

	ex->holding = false;
	release_upconn(c, reusable);
	if (http_parse_response(ex->hold_head, ex->hold_head_len, &lim, ex->method, &resp) <= 0)
		return hold_fail(c, 502, "invalid upstream response");
	if (!stream_response_whole(st, ex->hold_buf ? ex->hold_buf : "", ex->hold_len, &reason))
		return hold_fail(c, 502, reason);
	body = st->resp_body ? st->resp_body : ex->hold_buf ? ex->hold_buf : "";
	len = st->resp_body ? st->resp_body_len : ex->hold_len;
	hit = stream_alloc(st, sizeof(*hit));
	head = stream_alloc(st, cap);
	hl = head ? build_held_head(&resp, st->resp_body_type, len, head, cap) : 0;
	if (!hit || !hl)
		return hold_fail(c, 502, "upstream response headers too large");
	hit->head = head;
	hit->head_len = hl;
	hit->body = body;
	hit->body_len = len;
	hit->entry = NULL;
	hit->age_s = 0;
	ex->no_age = true;
	stream_reply_cached_host(st, hit);
	return true;
}

/* Gathers the de-framed body of a held response, bounded by the filter's max (502). */
static bool pump_hold(struct conn *c)
{
	struct exchange *ex = c->ex;
	struct buf *in = &c->up->s.in;
	size_t n, cap;
	char *nb;

	if (!xf_deframe(c)) {
		count_target(c, OUTCOME_PROTOCOL_ERROR);
		return hold_fail(c, 502, "invalid upstream response");
	}
	n = ex->xf_ready;
	if (n > c->st->hold_max - ex->hold_len)
		return hold_fail(c, 502, "upstream response too large");
	if (ex->hold_len + n > ex->hold_cap) {
		cap = ex->hold_cap ? ex->hold_cap * 2 : 16384;
		if (cap < ex->hold_len + n)
			cap = ex->hold_len + n;
		nb = realloc(ex->hold_buf, cap);
		if (!nb)
			return hold_fail(c, 503, "out of memory");
		ex->hold_buf = nb;
		ex->hold_cap = cap;
	}
	if (n)
		memcpy(ex->hold_buf + ex->hold_len, buf_head(in), n);
	ex->hold_len += n;
	buf_consume(in, n);
	ex->xf_ready = 0;
	if (ex->resp_done)
		return finish_hold(c);
	return n > 0;
}

static bool read_response_head(struct conn *c)
{
	struct exchange *ex = c->ex;
	struct side *up = &c->up->s;
	struct http_limits lim = conn_limits(c);
	struct http_response resp;
	int n;

	if (!buf_len(&up->in))
		return false;
	n = http_parse_response(buf_head(&up->in), buf_len(&up->in), &lim, ex->method, &resp);
	if (n == HTTP_INCOMPLETE)
		return false;
	if (n < 0) {
		count_target(c, OUTCOME_PROTOCOL_ERROR);
		release_upconn(c, false);
		reject(c, 502, "invalid upstream response", 0, NULL);
		return true;
	}
	if (resp.status == 101) {
		const struct http_header *proto =
		    http_find_header(resp.headers, resp.nheaders, "upgrade");

		if (!ex->upgrade || !proto || !http_str_eq_nocase(proto->value, "websocket")) {
			count_target(c, OUTCOME_PROTOCOL_ERROR);
			release_upconn(c, false);
			reject(c, 502, "unexpected upgrade from upstream", 0, NULL);
			return true;
		}
	} else if (resp.status < 200) {
		buf_consume(&up->in, n); /* interim responses: we answered 100-continue ourselves */
		return true;
	}
	if (!c->cli.out.data && !buf_ensure(&c->cli.out, 64 * 1024 + lim.max_header_bytes)) {
		conn_abort(c);
		return true;
	}
	if (!(c->cli.pending & PEND_SEND))
		buf_compact(&c->cli.out);
	ex->status = resp.status;
	ex->resp_body = resp.body;
	ex->resp_remaining = resp.content_length;
	ex->resp_dechunk = resp.body == HTTP_BODY_CHUNKED && ex->client_http10;
	if (resp.body == HTTP_BODY_EOF || !resp.keep_alive)
		ex->resp_close = true;
	if (resp.body == HTTP_BODY_EOF || (ex->client_http10 && resp.body != HTTP_BODY_LENGTH &&
					   resp.body != HTTP_BODY_NONE))
		ex->keep_alive = false;
	if (c->st) {
		c->st->resp_local = false;
		stream_response(c->st, &resp);
		if (c->st->hold_filter >= 0 && resp.status >= 200 && resp.body != HTTP_BODY_NONE)
			return start_hold(c, &resp, n);
		note_body_transform(c);
	}
	{
		size_t before = c->cli.out.end;

		if (!build_client_head(c, &resp, &c->cli.out)) {
			count_target(c, OUTCOME_PROTOCOL_ERROR);
			release_upconn(c, false);
			reject(c, 502, "upstream response headers too large", 0, NULL);
			return true;
		}
		ex->bytes_out += c->cli.out.end - before;
	}
	buf_consume(&up->in, n);
	ex->resp_started = true;
	count_target(c, OUTCOME_SUCCESS);
	http_chunked_init(&ex->resp_chunked);
	ex->resp_done = resp.body == HTTP_BODY_NONE ||
			(resp.body == HTTP_BODY_LENGTH && resp.content_length == 0);
	ex->splice_body = !ex->resp_done && body_splice_eligible(c, &resp);
	if (resp.status == 101) {
		tunnel_start(c);
		return true;
	}
	return true;
}

static ssize_t dechunk_into(struct conn *c, const char *p, size_t n)
{
	struct http_span spans[64];
	size_t nspans = 64;
	ssize_t k = http_chunked_scan(&c->ex->resp_chunked, p, n, spans, &nspans);

	for (size_t i = 0; k > 0 && i < nspans; i++)
		buf_append(&c->cli.out, p + spans[i].off, spans[i].len);
	return k;
}

/*
 * De-frames newly received upstream body bytes in place: afterwards the first xf_ready
 * bytes of the upstream buffer are payload. Chunk framing is scanned and squeezed out
 * (the buffer is filled from provided buffers on completion, so nothing writes into it
 * meanwhile). false on a framing error.
 */
static bool xf_deframe(struct conn *c)
{
	struct exchange *ex = c->ex;
	struct buf *in = &c->up->s.in;
	uint64_t n = buf_len(in) - ex->xf_ready;

	switch (ex->resp_body) {
	case HTTP_BODY_LENGTH:
		if (n > ex->resp_remaining)
			n = ex->resp_remaining;
		ex->xf_ready += n;
		ex->resp_remaining -= n;
		ex->resp_done = ex->resp_remaining == 0;
		return true;
	case HTTP_BODY_CHUNKED:
		break;
	default:
		ex->xf_ready = buf_len(in);
		ex->resp_done = c->up->s.eof;
		return true;
	}
	while (!ex->resp_chunked.done && ex->xf_ready < buf_len(in)) {
		struct http_span spans[64];
		size_t nspans = 64, rawlen = buf_len(in) - ex->xf_ready, p = 0;
		char *raw = buf_head(in) + ex->xf_ready;
		ssize_t k = http_chunked_scan(&ex->resp_chunked, raw, rawlen, spans, &nspans);

		if (k < 0)
			return false;
		if (!k)
			break;
		for (size_t i = 0; i < nspans; i++) {
			memmove(raw + p, raw + spans[i].off, spans[i].len);
			p += spans[i].len;
		}
		memmove(raw + p, raw + k, rawlen - k);
		in->end -= k - p;
		ex->xf_ready += p;
	}
	ex->resp_done = ex->resp_chunked.done;
	return true;
}

/* The response body through the stream's transform: payload in, re-framed output out. */
static bool pump_transformed(struct conn *c)
{
	struct exchange *ex = c->ex;
	struct buf *in = &c->up->s.in;
	size_t used;
	int r;

	if (!xf_deframe(c)) {
		count_target(c, OUTCOME_RESET);
		conn_abort(c);
		return true;
	}
	if (!ex->xf_ready && !ex->resp_done)
		return false;
	r = xf_emit(c, buf_head(in), ex->xf_ready, ex->resp_done, true, &used);
	if (r < 0) {
		conn_abort(c);
		return true;
	}
	response_data(c, buf_head(in), used);
	buf_consume(in, used);
	ex->xf_ready -= used;
	return r > 0;
}

/* Moves response body bytes from the upstream buffer to the client, within framing. */
static bool pump_response(struct conn *c)
{
	struct exchange *ex = c->ex;
	struct side *src = &c->up->s, *dst = &c->cli;
	size_t n, before;
	ssize_t k;

	if (ex->xf)
		return pump_transformed(c);
	n = pump_room(src, dst);
	if (!n)
		return false;
	before = dst->out.end;
	switch (ex->resp_body) {
	case HTTP_BODY_LENGTH:
		k = n < ex->resp_remaining ? n : ex->resp_remaining;
		ex->resp_remaining -= k;
		ex->resp_done = ex->resp_remaining == 0;
		break;
	case HTTP_BODY_CHUNKED:
		if (ex->resp_dechunk) {
			k = dechunk_into(c, buf_head(&src->in), n);
		} else {
			k = http_chunked_scan(&ex->resp_chunked, buf_head(&src->in), n, NULL, NULL);
		}
		if (k < 0) {
			count_target(c, OUTCOME_PROTOCOL_ERROR);
			conn_abort(c);
			return true;
		}
		ex->resp_done = ex->resp_chunked.done;
		break;
	default:
		k = n;
		break;
	}
	if (!ex->resp_dechunk || ex->resp_body != HTTP_BODY_CHUNKED)
		buf_append(&dst->out, buf_head(&src->in), k);
	response_data(c, buf_head(&src->in), k);
	ex->bytes_out += dst->out.end - before;
	buf_consume(&src->in, k);
	return k > 0;
}

/* The buffered (possibly replaced) request body, after the head, as room allows. */
static bool pump_buffered(struct conn *c)
{
	struct exchange *ex = c->ex;
	struct side *dst = &c->up->s;
	size_t n = c->st->req_body_len - ex->rb_sent;

	if (!(dst->pending & PEND_SEND))
		buf_compact(&dst->out);
	if (n > buf_space(&dst->out))
		n = buf_space(&dst->out);
	buf_append(&dst->out, c->st->req_body + ex->rb_sent, n);
	ex->rb_sent += n;
	return n > 0;
}

static bool step_exchange(struct conn *c)
{
	struct exchange *ex = c->ex;
	struct upconn *u = c->up;
	bool progress = false;
	enum conn_state st = c->state;

	if (ex->from_cache)
		return pump_cached(c);
	if (ex->rb_buffered && ex->rb_sent < c->st->req_body_len)
		progress |= pump_buffered(c);
	if (!ex->req_done) {
		progress |= pump_request(c);
		if (c->state != st || c->up != u)
			return true;
	}
	if (!ex->resp_started && !ex->holding) {
		progress |= read_response_head(c);
		if (c->state != st || c->up != u)
			return true;
	}
	if (ex->holding) {
		progress |= pump_hold(c);
		if (!ex->holding || c->state != st || c->up != u)
			return true;
	}
	if (ex->resp_started && (!ex->resp_done || (ex->xf && !ex->xf_done))) {
		progress |= pump_response(c);
		if (c->state != st)
			return true;
	}
	if (ex->splice_body && !ex->resp_done)
		progress |= body_splice_step(c);
	if (ex->resp_started && !ex->resp_done && ex->resp_body == HTTP_BODY_EOF && u->s.eof &&
	    !buf_len(&u->s.in)) {
		ex->resp_done = true;
		progress = true;
	}
	/* The whole body is in; the transform's last output waits for client room. */
	if (ex->resp_done && ex->xf && !ex->xf_done)
		return progress;
	if (ex->resp_done) {
		if (!ex->req_done) {
			c->close_after = true;
			ex->resp_close = true;
		}
		if (ex->rb_buffered && ex->rb_sent < c->st->req_body_len)
			ex->resp_close = true; /* the upstream answered before it had the body */
		if (c->st)
			c->st->completed = true;
		if (buf_len(&u->s.in)) {
			/* Bytes past the response's framing: a body to HEAD or after 204/304,
			 * more than Content-Length. Whatever they are, the next request on
			 * this connection would read them as its response. */
			upconn_protocol_error(u);
			finish_exchange(c, false);
			return true;
		}
		finish_exchange(c, !u->s.failed && !u->s.eof && !buf_len(&u->s.out));
		return true;
	}
	if (u->s.failed || (u->s.eof && !buf_len(&u->s.in))) {
		if (!ex->resp_started)
			return upstream_failed(c);
		count_target(c, OUTCOME_RESET);
		conn_abort(c);
		return true;
	}
	if (!ex->req_done && c->cli.eof && !buf_len(&c->cli.in)) {
		conn_abort(c); /* the client gave up in the middle of its request body */
		return true;
	}
	return progress;
}

/* Appends decoded request body bytes; false past the filter's bound. */
static bool rb_append(struct conn *c, const char *p, size_t n)
{
	struct exchange *ex = c->ex;
	size_t max = c->st->req_body_max, cap;
	char *nb;

	if (n > max - ex->rb_len)
		return false;
	if (ex->rb_len + n > ex->rb_cap) {
		cap = ex->rb_cap ? ex->rb_cap * 2 : 16384;
		if (cap < ex->rb_len + n)
			cap = ex->rb_len + n;
		if (cap > max)
			cap = max;
		nb = realloc(ex->rb, cap ? cap : 1);
		if (!nb)
			return false;
		ex->rb = nb;
		ex->rb_cap = cap;
	}
	memcpy(ex->rb + ex->rb_len, p, n);
	ex->rb_len += n;
	return true;
}

static bool req_body_fail(struct conn *c, int status, const char *reason)
{
	take_stream_result(c, c->st);
	c->close_after = true;
	reject(c, status, reason, 0, NULL);
	return true;
}

/* Takes what the client buffer holds of the body, de-framed; false: over the bound. */
static ssize_t rb_take(struct conn *c)
{
	struct exchange *ex = c->ex;
	struct buf *in = &c->cli.in;
	struct http_span spans[64];
	size_t n = buf_len(in), nspans = 64;
	ssize_t k;

	if (ex->req_body == HTTP_BODY_LENGTH) {
		k = n < ex->req_remaining ? n : ex->req_remaining;
		if (!rb_append(c, buf_head(in), k))
			return -413;
		ex->req_remaining -= k;
		ex->req_done = ex->req_remaining == 0;
		return k;
	}
	k = http_chunked_scan(&ex->req_chunked, buf_head(in), n, spans, &nspans);
	if (k < 0)
		return -400;
	for (size_t i = 0; i < nspans; i++)
		if (!rb_append(c, buf_head(in) + spans[i].off, spans[i].len))
			return -413;
	ex->req_done = ex->req_chunked.done; /* trailers were scanned and are dropped */
	return k;
}

/*
 * A filter asked for the whole request body: read it into ex->rb (Content-Length or
 * chunked, de-framed) within the filter's bound, then hand it to the stream and wake it.
 */
static bool step_req_body(struct conn *c)
{
	struct exchange *ex = c->ex;
	struct side *s = &c->cli;
	struct stream *st = c->st;
	ssize_t k = 0;

	if (!ex->req_done && buf_len(&s->in)) {
		k = rb_take(c);
		if (k == -413)
			return req_body_fail(c, 413, "request body too large");
		if (k < 0)
			return req_body_fail(c, 400, "invalid chunked body");
		buf_consume(&s->in, k);
		ex->bytes_in += k;
	}
	if (ex->req_done) {
		st->req_body = ex->rb ? ex->rb : "";
		st->req_body_len = ex->rb_len;
		st->req_body_ready = true;
		c->state = CS_FILTERS;
		stream_wake(st);
		return true;
	}
	if (s->timed_out) {
		s->failed = s->timed_out = false; /* the socket is fine: the answer goes out */
		return req_body_fail(c, 408, "request body timeout");
	}
	if (s->failed || s->eof) {
		conn_abort(c);
		return true;
	}
	return k > 0;
}

/* Plain listener with "http2": the first bytes are (so far) the h2c connection preface. */
static bool h2c_preface(const struct conn *c)
{
	const struct buf *in = &c->cli.in;
	size_t n = buf_len(in) < H2_PREFACE_LEN ? buf_len(in) : H2_PREFACE_LEN;

	return !c->cli.tls && conn_listener(c)->http2 && !c->h1_seen &&
	       !memcmp(buf_head(in), H2_PREFACE, n);
}

static bool step_head(struct conn *c)
{
	struct side *s = &c->cli;
	struct http_limits lim = conn_limits(c);
	struct http_request req;
	int n;

	if (!buf_len(&s->in)) {
		c->deadline_ms = 0;
		if (s->eof || s->failed || c->cli.w->draining) {
			conn_abort(c);
			return true;
		}
		return false;
	}
	if (!c->deadline_ms)
		c->deadline_ms = c->cli.w->now_ms + c->cfg->limits.header_timeout_ms;
	if (h2c_preface(c)) {
		if (buf_len(&s->in) >= H2_PREFACE_LEN)
			return h2conn_start(c);
		if (s->eof || s->failed || s->timed_out) {
			conn_abort(c);
			return true;
		}
		return false;
	}
	n = http_parse_request(buf_head(&s->in), buf_len(&s->in), &lim, &req);
	if (n == HTTP_INCOMPLETE) {
		if (s->timed_out) {
			if (!begin_exchange(c))
				return true;
			s->failed = s->timed_out = false;
			reject(c, 408, "request header timeout", 0, NULL);
			c->close_after = true;
			return true;
		}
		if (s->eof || s->failed) {
			conn_abort(c);
			return true;
		}
		if (!buf_space(&s->in) && !s->in.start) {
			if (!begin_exchange(c))
				return true;
			reject(c, 431, "request headers too large", 0, NULL);
			return true;
		}
		return false;
	}
	c->deadline_ms = 0;
	if (n < 0) {
		if (!begin_exchange(c))
			return true;
		c->close_after = true;
		reject(c, -n, n == HTTP_ERR_URI_TOO_LONG	      ? "request line too long"
			      : n == HTTP_ERR_HEADERS_TOO_LARGE ? "request headers too large"
			      : n == HTTP_ERR_NOT_IMPLEMENTED	      ? "not implemented"
			      : n == HTTP_ERR_VERSION		      ? "http version not supported"
								      : "malformed request",
		       0, NULL);
		return true;
	}
	return start_exchange(c, &req, n);
}

static bool step_tls_handshake(struct conn *c)
{
	if (c->cli.failed) {
		conn_abort(c);
		return true;
	}
	if (!c->cli.tls_done)
		return false;
	c->deadline_ms = 0;
	c->state = CS_HEAD;
	if (conn_listener(c)->http2) {
		char alpn[16];

		if (tls_conn_alpn(c->cli.tls, alpn, sizeof(alpn)) && !strcmp(alpn, "h2"))
			return h2conn_start(c);
	}
	return true;
}

/*
 * Closing a socket with unread input makes the kernel send a reset, which destroys the
 * answer still in flight to a client that is sending (a 413 to an upload). So once the
 * answer is flushed we send FIN and read and discard for a bounded time and volume, as
 * NGINX's lingering_close does, before closing.
 */
#define LINGER_MS 5000
#define LINGER_MAX_BYTES (8u << 20)

static bool step_closing(struct conn *c)
{
	if (c->up)
		release_upconn(c, false);
	if (buf_len(&c->cli.out) && !c->cli.failed)
		return false;
	if (c->cli.failed || c->cli.eof) {
		conn_abort(c);
		return true;
	}
	c->state = CS_LINGER;
	c->deadline_ms = c->cli.w->now_ms + LINGER_MS;
	c->lingered_bytes = 0;
	return true;
}

static bool step_linger(struct conn *c)
{
	struct side *s = &c->cli;

	c->lingered_bytes += buf_len(&s->in);
	buf_consume(&s->in, buf_len(&s->in));
	if (s->failed || s->eof || c->lingered_bytes >= LINGER_MAX_BYTES ||
	    s->w->now_ms >= c->deadline_ms) {
		conn_abort(c);
		return true;
	}
	return false;
}

/* The client's body missed its deadline before any of the response went out: 408. */
static bool body_timed_out(struct conn *c)
{
	struct side *s = &c->cli;

	if (!s->timed_out || c->ex->req_done || c->ex->resp_started)
		return false;
	s->failed = s->timed_out = false;
	if (c->queued)
		upqueue_remove(c);
	if (c->up)
		release_upconn(c, false);
	c->close_after = true;
	reject(c, 408, "request body timeout", 0, NULL);
	return true;
}

static bool step(struct conn *c)
{
	switch (c->state) {
	case CS_TLS_HANDSHAKE:
		return step_tls_handshake(c);
	case CS_HEAD:
		return step_head(c);
	case CS_REQ_BODY:
		return step_req_body(c);
	case CS_FILTERS:
		/* A client that leaves while its request waits gives the request up. */
		if (c->cli.failed || c->cli.eof) {
			conn_abort(c);
			return true;
		}
		return false;
	case CS_QUEUED:
		if (body_timed_out(c))
			return true;
		/* A client that leaves while queued gives its place up. */
		if (c->cli.failed || c->cli.eof) {
			conn_abort(c);
			return true;
		}
		return false;
	case CS_CONNECTING:
		if (body_timed_out(c))
			return true;
		if (c->cli.failed) {
			conn_abort(c);
			return true;
		}
		return step_connecting(c);
	case CS_EXCHANGE:
		if (body_timed_out(c))
			return true;
		if (c->cli.failed) {
			if (c->up)
				count_target(c, OUTCOME_SUCCESS), release_upconn(c, false);
			conn_abort(c);
			return true;
		}
		return step_exchange(c);
	case CS_TUNNEL:
		return tunnel_step(c);
	case CS_SNI_PEEK:
		return l4_sni_step(c);
	case CS_CLOSING:
		return step_closing(c);
	case CS_LINGER:
		return step_linger(c);
	case CS_H2:
		return h2conn_step(c);
	case CS_DEAD:
		return false;
	}
	return false;
}

/*
 * The request body has a deadline, not only a per-read idle timeout, so a client that
 * dribbles a byte now and then cannot hold a connection and an upstream slot for ever
 * (slow POST). Like Apache's mod_reqtimeout it is body_timeout_ms from the first wait,
 * extended by a second for every body_min_rate bytes received, so an upload at a
 * reasonable rate is never cut; time the gateway itself did not read (backpressure from a
 * slow upstream, a full buffer) does not count.
 */
static uint32_t body_recv_timeout(struct conn *c)
{
	const struct limits_config *lim = &c->cfg->limits;
	struct exchange *ex = c->ex;
	uint64_t now = c->cli.w->now_ms, deadline;

	if (!ex->body_start_ms)
		ex->body_start_ms = now;
	deadline = ex->body_start_ms + ex->body_paused_ms + lim->body_timeout_ms;
	if (lim->body_min_rate)
		deadline += (ex->req_body_bytes + ex->rb_len + buf_len(&c->cli.in)) * 1000 /
			    lim->body_min_rate;
	if (deadline <= now)
		return 1;
	return deadline - now < lim->idle_timeout_ms ? deadline - now : lim->idle_timeout_ms;
}

/* Keeps the time the gateway does not read the body out of its deadline. */
static void body_note_reading(struct conn *c)
{
	struct exchange *ex = c->ex;
	uint64_t now = c->cli.w->now_ms;
	bool reading = c->cli.pending & (PEND_RECV | PEND_POLL_IN);

	if (reading && ex->body_paused_since_ms) {
		ex->body_paused_ms += now - ex->body_paused_since_ms;
		ex->body_paused_since_ms = 0;
	} else if (!reading && !ex->body_paused_since_ms) {
		ex->body_paused_since_ms = now;
	}
}

/* Arms the I/O the current state needs; true when a TLS side made progress meanwhile. */
static bool arm(struct conn *c)
{
	struct side *cli = &c->cli;
	struct upconn *u = c->up;
	const struct limits_config *lim = &c->cfg->limits;
	bool progress = false;

	switch (c->state) {
	case CS_TLS_HANDSHAKE:
		/* A total deadline: a client dribbling one byte at a time gains nothing. */
		cli->recv_timeout_ms = c->deadline_ms > cli->w->now_ms ? c->deadline_ms - cli->w->now_ms
								       : 1;
		return side_tls_pump(cli);
	case CS_HEAD:
		if (buf_len(&cli->in) && c->deadline_ms)
			cli->recv_timeout_ms = c->deadline_ms > cli->w->now_ms
						       ? c->deadline_ms - cli->w->now_ms
						       : 1;
		else
			cli->recv_timeout_ms = lim->idle_timeout_ms;
		side_retime_recv(cli);
		progress |= side_arm_recv(cli);
		/* A keep-alive connection between requests holds no buffer (cli.in was released
		 * when the exchange finished). */
		if (!(cli->pending & PEND_SEND))
			buf_release_if_empty(&cli->out);
		break;
	case CS_EXCHANGE:
	case CS_CONNECTING:
	case CS_QUEUED:
		cli->recv_timeout_ms = c->ex->req_done ? 0 : body_recv_timeout(c);
		side_retime_recv(cli);
		if (!c->ex->req_done || buf_len(&cli->in) < lim->max_header_bytes)
			progress |= side_arm_recv(cli);
		if (!c->ex->req_done)
			body_note_reading(c);
		if (u && c->state == CS_EXCHANGE) {
			u->s.recv_timeout_ms = c->ex->req_done && !buf_len(&u->s.out)
						       ? c->cfg->upstreams[c->ex->upstream].read_timeout_ms
						       : 0;
			side_retime_recv(&u->s);
			if (c->ex->splice_body)
				side_cancel_recv(&u->s); /* body_splice.c reads the body */
			else
				progress |= side_arm_recv(&u->s);
			progress |= side_arm_send(&u->s);
		}
		break;
	case CS_TUNNEL:
		cli->recv_timeout_ms = 0;
		if (c->pipe_wanted) {
			/* Reads happen in tunnel_pipe.c once the flow is quiescent. */
			side_cancel_recv(cli);
			if (u)
				side_cancel_recv(&u->s);
		} else {
			progress |= side_arm_recv(cli);
		}
		if (u) {
			u->s.recv_timeout_ms = 0;
			if (!c->pipe_wanted)
				progress |= side_arm_recv(&u->s);
			progress |= side_arm_send(&u->s);
			if (u->s.want_shut_wr && !buf_len(&u->s.out))
				side_arm_shutdown(&u->s);
		}
		if (cli->want_shut_wr && !buf_len(&cli->out))
			side_arm_shutdown(cli);
		break;
	case CS_SNI_PEEK:
		progress |= side_arm_recv(cli);
		break;
	case CS_LINGER:
		side_arm_shutdown(cli);
		cli->recv_timeout_ms = c->deadline_ms > cli->w->now_ms ? c->deadline_ms - cli->w->now_ms
								       : 1;
		side_retime_recv(cli);
		progress |= side_arm_recv(cli);
		break;
	case CS_REQ_BODY:
		/* the same deadline as a streamed body (a buffered one is no slower to POST) */
		cli->recv_timeout_ms = body_recv_timeout(c);
		side_retime_recv(cli);
		progress |= side_arm_recv(cli);
		body_note_reading(c);
		break;
	case CS_H2:
		progress |= h2conn_arm(c);
		break;
	case CS_FILTERS:
		/* Reading on (bounded) notices a client that leaves while its request waits. */
		cli->recv_timeout_ms = 0;
		side_retime_recv(cli);
		if (buf_len(&cli->in) < lim->max_header_bytes)
			progress |= side_arm_recv(cli);
		break;
	default:
		break;
	}
	progress |= side_arm_send(cli);
	return progress;
}

void conn_advance(struct conn *c)
{
	for (int rounds = 0; rounds < 64; rounds++) {
		while (c->state != CS_DEAD && step(c))
			;
		if (c->state == CS_DEAD || !arm(c))
			return;
	}
}

void conn_on_upconn_event(struct upconn *u)
{
	if (u->owner)
		conn_advance(u->owner);
	else
		pool_idle_recv(u->s.w, u);
}
