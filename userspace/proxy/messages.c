/*
 * Bytes the gateway writes itself: its error responses, the rewritten request head sent
 * upstream and the rewritten response head sent to the client.
 */
#include <stddef.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include "common/fmt.h"
#include "proxy/proxy.h"
#include "tls/tls.h"
#include "upstream/dns.h"

/* Appends text; remembers overflow instead of writing past the end. No printf: this
 * writes every forwarded head, and a vsnprintf per line cost more than the bytes. */
struct head_writer {
	struct buf *b;
	bool overflow;
};

static void hw_put(struct head_writer *hw, const char *p, size_t len)
{
	if (hw->overflow || len >= buf_space(hw->b)) {
		hw->overflow = true;
		return;
	}
	memcpy(hw->b->data + hw->b->end, p, len);
	hw->b->end += len;
}

static void hw_str(struct head_writer *hw, const char *s)
{
	hw_put(hw, s, strlen(s));
}

static void hw_hs(struct head_writer *hw, struct http_str s)
{
	hw_put(hw, s.p, s.len);
}

static void hw_u64(struct head_writer *hw, uint64_t v)
{
	char digits[FMT_U64_MAX];

	hw_put(hw, digits, fmt_u64(digits, v));
}

/* "Name: value\r\n" */
static void hw_line(struct head_writer *hw, struct http_str name, struct http_str value)
{
	hw_hs(hw, name);
	hw_put(hw, ": ", 2);
	hw_hs(hw, value);
	hw_put(hw, "\r\n", 2);
}

static void hw_line_z(struct head_writer *hw, const char *name, const char *value)
{
	hw_line(hw, (struct http_str){ name, strlen(name) }, (struct http_str){ value, strlen(value) });
}

static void hw_header(struct head_writer *hw, const struct http_header *h)
{
	hw_line(hw, h->name, h->value);
}

static void hw_content_length(struct head_writer *hw, uint64_t len)
{
	hw_str(hw, "Content-Length: ");
	hw_u64(hw, len);
	hw_put(hw, "\r\n", 2);
}

/* "HTTP/1.1 status reason\r\n" */
static void hw_status_line(struct head_writer *hw, int status, struct http_str reason)
{
	hw_put(hw, "HTTP/1.1 ", 9);
	hw_u64(hw, (uint64_t)status);
	hw_put(hw, " ", 1);
	hw_hs(hw, reason);
	hw_put(hw, "\r\n", 2);
}

/* The header lines the stream's filters added (CORS, Vary, Content-Encoding, ...). */
static void hw_added_headers(struct head_writer *hw, const struct stream *st)
{
	for (int i = 0; st && i < st->nresp_edits; i++)
		if (st->resp_edits[i].value)
			hw_line_z(hw, st->resp_edits[i].name, st->resp_edits[i].value);
}

static bool header_removed(const struct conn *c, struct http_str name)
{
	return c->st && stream_resp_header_removed(c->st, name);
}

static uint32_t process_salt;
static pthread_once_t process_salt_once = PTHREAD_ONCE_INIT;

static void process_salt_init(void)
{
	if (getrandom(&process_salt, sizeof(process_salt), 0) != sizeof(process_salt))
		process_salt = (uint32_t)clock_mono_ns();
}

void make_request_id(struct worker *w, char *out, size_t len)
{
	pthread_once(&process_salt_once, process_salt_init);
	static const char hex[] = "0123456789abcdef";
	uint64_t parts[3] = { process_salt, (uint64_t)(w->id & 0xff), ++w->req_counter };
	const int width[3] = { 8, 2, 14 };
	size_t n = 0;

	/* 24 hex digits (salt, worker, counter) without a printf per request */
	for (int i = 0; i < 3; i++)
		for (int d = width[i] - 1; d >= 0 && n + 1 < len; d--)
			out[n++] = hex[(parts[i] >> (4 * d)) & 0xf];
	if (len)
		out[n] = '\0';
}

/*
 * Headers the gateway sets itself (framing, forwarding, request id) or that must come from
 * it alone (identity), and HTTP2-Settings (the h2c upgrade is never forwarded): a
 * client's copy is never forwarded. Forwarded and X-Real-IP are
 * replaced like X-Forwarded-For: an edge gateway trusts no client-supplied chain.
 */
static bool controlled_header(const struct fwd_ctx *c, const struct http_request *req,
			      struct http_str name)
{
	static const struct http_str replaced[] = {
		HTTP_LIT("content-length"),   HTTP_LIT("transfer-encoding"),
		HTTP_LIT("x-forwarded-for"),  HTTP_LIT("x-forwarded-proto"),
		HTTP_LIT("x-forwarded-host"), HTTP_LIT("x-forwarded-port"),
		HTTP_LIT("forwarded"),	      HTTP_LIT("x-real-ip"),
		HTTP_LIT("x-request-id"),     HTTP_LIT("expect"),
		HTTP_LIT("http2-settings"),
	};

	if (http_str_in_nocase(name, replaced, sizeof(replaced) / sizeof(replaced[0])))
		return true;
	return http_is_hop_by_hop(name, req->connection) ||
	       auth_is_identity_header(c->cfg->auth, name);
}

/*
 * Headers some upstream frameworks take as the request's real path (IIS, Symfony, Zend:
 * X-Original-URL, X-Rewrite-URL) or method (Rails, Express, Laravel method override):
 * routing and the route's auth went by the request line, so the upstream must not act on
 * another path, nor on another method when the route restricts methods.
 */
static bool overrides_request_line(const struct fwd_ctx *c, struct http_str name)
{
	static const struct http_str path_override[] = { HTTP_LIT("x-original-url"),
							 HTTP_LIT("x-rewrite-url") };
	static const struct http_str method_override[] = { HTTP_LIT("x-http-method-override"),
							   HTTP_LIT("x-http-method"),
							   HTTP_LIT("x-method-override") };
	const struct route_config *rc = c->route >= 0 ? &c->cfg->routes[c->route] : NULL;

	if (http_str_in_nocase(name, path_override, 2))
		return true;
	return rc && rc->methods && http_str_in_nocase(name, method_override, 3);
}

/* Also the names the gateway read to decide on the request: host, credentials, the
 * route's header matches. */
static bool decision_header(const struct fwd_ctx *c, const struct http_request *req,
			    struct http_str name)
{
	const struct route_config *rc = c->route >= 0 ? &c->cfg->routes[c->route] : NULL;

	if (controlled_header(c, req, name) || http_str_eq_nocase(name, "host") ||
	    auth_is_credential_header(c->cfg->auth, name) || overrides_request_line(c, name))
		return true;
	for (int i = 0; rc && i < rc->nheaders; i++)
		if (http_str_eq_nocase(name, rc->headers[i].name))
			return true;
	return false;
}

static bool drop_request_header(const struct fwd_ctx *c, const struct http_request *req,
				const struct http_header *h)
{
	char tmp[256];
	struct http_str dashed;

	if (controlled_header(c, req, h->name) || overrides_request_line(c, h->name))
		return true;
	if (!memchr(h->name.p, '_', h->name.len))
		return false;
	switch (c->cfg->headers.underscores) {
	case UNDERSCORE_ALLOW:
		return false;
	case UNDERSCORE_DROP:
		return true;
	case UNDERSCORE_DROP_LOOKALIKES:
		break;
	}
	/* "X_Consumer" is "X-Consumer" to an upstream that maps both to HTTP_X_CONSUMER. A
	 * name longer than any the gateway controls cannot be one; a huge one goes anyway. */
	if (!http_name_dashed(h->name, tmp, sizeof(tmp), &dashed))
		return true;
	return decision_header(c, req, dashed);
}

/* Route hide_credentials: the credentials its auth read stay at the gateway. */
static bool hidden_credential(const struct fwd_ctx *c, struct http_str name)
{
	const struct route_config *rc = c->route >= 0 ? &c->cfg->routes[c->route] : NULL;

	return rc && rc->hide_credentials && auth_hidden_header(c->cfg->auth, rc->auth, name);
}

/* The query, without the API-key parameter when the route hides credentials. */
static void hw_query(struct head_writer *hw, const struct fwd_ctx *c, struct http_str q)
{
	const struct route_config *rc = c->route >= 0 ? &c->cfg->routes[c->route] : NULL;
	const char *p = q.p, *end = q.p + q.len;
	bool first = true;

	if (!rc || !rc->hide_credentials) {
		if (q.len) {
			hw_put(hw, "?", 1);
			hw_hs(hw, q);
		}
		return;
	}
	while (p < end) {
		const char *amp = memchr(p, '&', end - p), *pend = amp ? amp : end;
		const char *eq = memchr(p, '=', pend - p);
		struct http_str name = { p, (size_t)((eq ? eq : pend) - p) };

		if (!auth_hidden_query_param(c->cfg->auth, rc->auth, name)) {
			hw_put(hw, first ? "?" : "&", 1);
			hw_put(hw, p, pend - p);
			first = false;
		}
		p = pend + 1;
	}
}

/*
 * The header lines filters added to the request (transform): never a header the gateway
 * controls (framing, forwarding, identity) nor Host, whatever the config says.
 */
static void hw_req_edits(struct head_writer *hw, const struct fwd_ctx *c,
			 const struct http_request *req, const struct stream *st)
{
	for (int i = 0; st && i < st->nreq_edits; i++) {
		const struct stream_hdr_edit *e = &st->req_edits[i];
		struct http_str name = { e->name, strlen(e->name) };

		if (e->value && !controlled_header(c, req, name) &&
		    !http_str_eq_nocase(name, "host"))
			hw_line_z(hw, e->name, e->value);
	}
}

/* RFC 7239: "Forwarded: for=node;proto=..."; an IPv6 node is bracketed and quoted. */
static void hw_forwarded(struct head_writer *hw, const struct fwd_ctx *c, const char *proto)
{
	hw_str(hw, c->ipv6 ? "Forwarded: for=\"[" : "Forwarded: for=");
	hw_str(hw, c->peer_ip);
	hw_str(hw, c->ipv6 ? "]\";proto=" : ";proto=");
	hw_str(hw, proto);
	hw_put(hw, "\r\n", 2);
}

/* The header lines forwarded upstream, whatever carries them (HTTP/1.1 head, h2 client):
 * the client's (less those the gateway controls, hides or filters removed), the filters'
 * additions, forwarding and identity. No request line, Host or framing. */
static void hw_forward_lines(struct head_writer *hw, const struct fwd_ctx *c,
			     const struct http_request *req, const struct auth_result *auth)
{
	const struct stream *st = c->st;
	const char *proto = c->tls ? "https" : "http";

	for (int i = 0; i < req->nheaders; i++)
		if (!http_str_eq_nocase(req->headers[i].name, "host") &&
		    !drop_request_header(c, req, &req->headers[i]) &&
		    !hidden_credential(c, req->headers[i].name) &&
		    !(st && stream_req_header_removed(st, req->headers[i].name)))
			hw_header(hw, &req->headers[i]);
	hw_req_edits(hw, c, req, st);
	hw_line_z(hw, "X-Forwarded-For", c->peer_ip);
	hw_line_z(hw, "X-Forwarded-Proto", proto);
	hw_line_z(hw, "X-Real-IP", c->peer_ip);
	hw_forwarded(hw, c, proto);
	hw_line_z(hw, "X-Request-Id", c->request_id);
	for (int i = 0; auth && i < auth->nforward; i++)
		hw_line_z(hw, auth->forward[i].name, auth->forward[i].value);
	if (c->client_subject)
		hw_line_z(hw, AUTH_CLIENT_CERT_HEADER, c->client_subject);
}

bool build_forward_lines(const struct fwd_ctx *c, const struct http_request *req,
			 const struct auth_result *auth, struct buf *out)
{
	struct head_writer hw = { .b = out };

	hw_forward_lines(&hw, c, req, auth);
	return !hw.overflow;
}

bool build_forward_target(const struct fwd_ctx *c, const struct http_request *req,
			  const char *path, size_t path_len, struct buf *out)
{
	struct head_writer hw = { .b = out };
	const struct stream *st = c->st;

	hw_put(&hw, path, path_len);
	hw_query(&hw, c, st && st->up_query ? (struct http_str){ st->up_query, st->up_query_len }
					    : req->query);
	return !hw.overflow;
}

static struct fwd_ctx conn_fwd_ctx(const struct conn *conn)
{
	struct fwd_ctx x = {
		.cfg = conn->cfg,
		.route = conn->ex->route,
		.ipv6 = conn->peer.ss_family == AF_INET6,
		.peer_ip = conn->peer_ip,
		.tls = conn->cli.tls != NULL,
		.client_subject = conn->cli.tls ? tls_conn_peer_subject(conn->cli.tls) : NULL,
		.request_id = conn->ex->request_id,
		.st = conn->st,
	};
	return x;
}

bool build_upstream_head(struct conn *conn, const struct http_request *req, const char *path,
			 size_t path_len, const struct auth_result *auth, bool upgrade,
			 struct buf *out)
{
	struct head_writer hw = { .b = out };
	struct fwd_ctx x = conn_fwd_ctx(conn), *c = &x;
	const struct stream *st = conn->st;

	if (!buf_ensure(out, conn->cfg->limits.max_header_bytes + 16 * 1024))
		return false;
	hw_hs(&hw, req->method_str);
	hw_put(&hw, " ", 1);
	hw_put(&hw, path, path_len);
	hw_query(&hw, c, st && st->up_query ? (struct http_str){ st->up_query, st->up_query_len }
					    : req->query);
	hw_str(&hw, " HTTP/1.1\r\n");
	/* The host the request was routed by is the one Host: the Host field, or for
	 * absolute-form the authority (RFC 9112 3.2.2: any Host field is ignored then). */
	if (req->host.len)
		hw_line(&hw, (struct http_str){ "Host", 4 }, req->host);
	else
		hw_line_z(&hw, "Host",
			  upstream_default_host(&conn->cfg->upstreams[conn->ex->upstream]));
	hw_forward_lines(&hw, c, req, auth);
	if (st && st->req_body_ready) {
		/* buffered: the (possibly replaced) body's own length, never chunked */
		if (st->req_body_len || req->body != HTTP_BODY_NONE)
			hw_content_length(&hw, st->req_body_len);
	} else if (req->body == HTTP_BODY_LENGTH)
		hw_content_length(&hw, req->content_length);
	else if (req->body == HTTP_BODY_CHUNKED)
		hw_str(&hw, "Transfer-Encoding: chunked\r\n");
	if (upgrade)
		hw_str(&hw, "Connection: upgrade\r\nUpgrade: websocket\r\n\r\n");
	else
		hw_str(&hw, "Connection: keep-alive\r\n\r\n");
	return !hw.overflow;
}

bool build_client_head(struct conn *c, const struct http_response *resp, struct buf *out)
{
	struct head_writer hw = { .b = out };
	const struct exchange *ex = c->ex;
	bool has_rid = false;
	const struct http_header *up;

	hw_status_line(&hw, resp->status, resp->reason);
	for (int i = 0; i < resp->nheaders; i++) {
		const struct http_header *h = &resp->headers[i];

		if (http_is_hop_by_hop(h->name, resp->connection) || header_removed(c, h->name))
			continue;
		has_rid |= http_str_eq_nocase(h->name, "x-request-id");
		hw_header(&hw, h);
	}
	hw_added_headers(&hw, c->st);
	if (!has_rid)
		hw_line_z(&hw, "X-Request-Id", ex->request_id);
	/* A transformed body has no length we know: chunked, or close-delimited for 1.0. */
	if (ex->xf ? !ex->client_http10 : resp->body == HTTP_BODY_CHUNKED && !ex->resp_dechunk)
		hw_str(&hw, "Transfer-Encoding: chunked\r\n");
	if (resp->status == 101) {
		up = http_find_header(resp->headers, resp->nheaders, "upgrade");
		hw_str(&hw, "Connection: upgrade\r\n");
		hw_line(&hw, (struct http_str){ "Upgrade", 7 },
			up ? up->value : (struct http_str){ "websocket", 9 });
		hw_put(&hw, "\r\n", 2);
	} else if (!ex->keep_alive || c->close_after || c->cli.w->draining) {
		hw_str(&hw, "Connection: close\r\n\r\n");
	} else if (ex->client_http10) {
		hw_str(&hw, "Connection: keep-alive\r\n\r\n");
	} else {
		hw_put(&hw, "\r\n", 2);
	}
	return !hw.overflow;
}

/*
 * The stream's filters see the gateway's own responses too (CORS headers on a 401 or a
 * 429), as a local response they can only add header lines to.
 */
static void local_response_edits(struct conn *c, int status, bool has_body, int blen)
{
	struct http_response resp;
	static const char ctype[] = "application/json";

	if (!c->st || c->st->ended)
		return;
	memset(&resp, 0, offsetof(struct http_response, headers));
	resp.status = status;
	resp.minor_version = 1;
	resp.reason.p = http_status_reason(status);
	resp.reason.len = strlen(resp.reason.p);
	resp.keep_alive = true;
	resp.nheaders = 0;
	resp.connection = (struct http_str){ NULL, 0 };
	resp.body = has_body ? HTTP_BODY_LENGTH : HTTP_BODY_NONE;
	resp.content_length = has_body ? blen : 0;
	if (has_body) {
		resp.headers[0].name = (struct http_str){ "Content-Type", 12 };
		resp.headers[0].value = (struct http_str){ ctype, sizeof(ctype) - 1 };
		resp.nheaders = 1;
	}
	c->st->resp_local = true;
	stream_response(c->st, &resp);
	c->st->body_filter = -1; /* the gateway writes its own bodies whole */
}

/* reason NULL: a bodiless answer (a CORS preflight's 204). */
void respond_error(struct conn *c, int status, const char *reason, bool close_conn,
		   const char *extra_headers)
{
	struct exchange *ex = c->ex;
	struct head_writer hw = { .b = &c->cli.out };
	char body[256] = "";
	int blen = 0;
	size_t before;

	if (close_conn)
		c->close_after = true;
	if (!ex->request_id[0])
		make_request_id(c->cli.w, ex->request_id, sizeof(ex->request_id));
	if (reason)
		blen = snprintf(body, sizeof(body),
				"{\"error\":\"%s\",\"status\":%d,\"request_id\":\"%s\"}\n", reason,
				status, ex->request_id);
	if (!buf_ensure(&c->cli.out, 64 * 1024 + c->cfg->limits.max_header_bytes)) {
		conn_abort(c);
		return;
	}
	if (!(c->cli.pending & PEND_SEND))
		buf_compact(&c->cli.out);
	local_response_edits(c, status, reason != NULL, blen);
	before = c->cli.out.end;
	hw_status_line(&hw, status, (struct http_str){ http_status_reason(status),
						       strlen(http_status_reason(status)) });
	if (reason) {
		hw_str(&hw, "Content-Type: application/json\r\n");
		hw_content_length(&hw, (uint64_t)blen);
	} else if (status != 204 && status != 304) {
		hw_str(&hw, "Content-Length: 0\r\n");
	}
	hw_line_z(&hw, "X-Request-Id", ex->request_id);
	hw_str(&hw, extra_headers ? extra_headers : "");
	hw_added_headers(&hw, c->st);
	if (c->close_after || !ex->keep_alive)
		hw_str(&hw, "Connection: close\r\n");
	hw_put(&hw, "\r\n", 2);
	if (ex->method != HTTP_HEAD)
		hw_put(&hw, body, (size_t)blen);
	if (hw.overflow) {
		conn_abort(c);
		return;
	}
	ex->status = status;
	ex->bytes_out += c->cli.out.end - before;
	ex->resp_started = true;
	if (!ex->req_has_body)
		ex->req_done = true;
	finish_exchange(c, false);
}

/* The cached head (status line and headers, no empty line) parsed from the stream's arena,
 * so the filters see it like an origin head and edit it per request. */
bool parse_cached_head(struct conn *c, const struct cache_hit *hit, struct http_response *resp)
{
	struct http_limits lim = { .max_header_bytes = hit->head_len + 2,
				   .max_request_line = hit->head_len + 2 };
	char *copy = c->st ? stream_alloc(c->st, hit->head_len + 2) : NULL;

	if (!copy)
		return false;
	memcpy(copy, hit->head, hit->head_len);
	memcpy(copy + hit->head_len, "\r\n", 2);
	return http_parse_response(copy, hit->head_len + 2, &lim, c->ex->method, resp) > 0;
}

bool write_cached_head(struct conn *c, const struct cache_hit *hit,
		       const struct http_response *resp)
{
	struct head_writer hw = { .b = &c->cli.out };
	size_t before;

	if (!buf_ensure(&c->cli.out, 64 * 1024 + c->cfg->limits.max_header_bytes))
		return false;
	if (!(c->cli.pending & PEND_SEND))
		buf_compact(&c->cli.out);
	before = c->cli.out.end;
	hw_status_line(&hw, resp->status, resp->reason);
	for (int i = 0; i < resp->nheaders; i++)
		if (!header_removed(c, resp->headers[i].name))
			hw_header(&hw, &resp->headers[i]);
	hw_added_headers(&hw, c->st);
	if (c->ex->xf && !c->ex->client_http10)
		hw_str(&hw, "Transfer-Encoding: chunked\r\n");
	if (!c->ex->no_age) {
		hw_str(&hw, "Age: ");
		hw_u64(&hw, hit->age_s);
		hw_put(&hw, "\r\n", 2);
	}
	hw_line_z(&hw, "X-Request-Id", c->ex->request_id);
	if (!c->ex->keep_alive || c->close_after)
		hw_str(&hw, "Connection: close\r\n");
	hw_put(&hw, "\r\n", 2);
	if (hw.overflow) {
		c->cli.out.end = before;
		return false;
	}
	c->ex->status = resp->status;
	c->ex->bytes_out += c->cli.out.end - before;
	return true;
}

size_t build_held_head(const struct http_response *resp, const char *ctype, size_t body_len,
		       char *out, size_t cap)
{
	struct buf b = { .data = out, .cap = cap };
	struct head_writer hw = { .b = &b };

	hw_status_line(&hw, resp->status, resp->reason);
	for (int i = 0; i < resp->nheaders; i++) {
		const struct http_header *h = &resp->headers[i];

		/* the framing is ours now; X-Request-Id is written with the head */
		if (http_is_hop_by_hop(h->name, resp->connection) ||
		    http_str_eq_nocase(h->name, "content-length") ||
		    http_str_eq_nocase(h->name, "transfer-encoding") ||
		    http_str_eq_nocase(h->name, "x-request-id") ||
		    (ctype && http_str_eq_nocase(h->name, "content-type")))
			continue;
		hw_header(&hw, h);
	}
	if (ctype)
		hw_line_z(&hw, "Content-Type", ctype);
	hw_content_length(&hw, body_len);
	return hw.overflow ? 0 : b.end;
}

struct cache_hit *body_as_hit(struct stream *st, const char *headers, const char *body, size_t len)
{
	struct cache_hit *hit = stream_alloc(st, sizeof(*hit));
	char *head = stream_alloc(st, 128 + strlen(headers));

	if (!hit || !head)
		return NULL;
	hit->head_len = sprintf(head,
				"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
				"Content-Length: %zu\r\n%s",
				len, headers);
	hit->head = head;
	hit->body = body;
	hit->body_len = len;
	hit->entry = NULL;
	hit->age_s = 0;
	return hit;
}
