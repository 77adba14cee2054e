/*
 * nghttp2 server session with the mitigations of h2.h. The frame scanner runs ahead of
 * nghttp2 on the same bytes, so a frame that breaks a bound is never decoded: the bytes
 * before it are fed, then the session is terminated.
 */
#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h2/h2.h"

/* Per stream, while the request headers are decoded and until the answer is sent. */
struct h2st {
	struct h2st *next, *prev;
	int32_t sid;
	void *host;
	bool in_request;  /* decoding the request header block */
	bool in_trailers; /* decoding the request's trailer block */
	bool too_large;
	size_t list_bytes; /* decoded size so far (RFC 9113 6.5.2) */
	char *hbuf;	   /* name\0value\0... of the request fields */
	size_t hlen, hcap;
	int nfields;
	/* the answer's body and trailers */
	char *body;
	size_t body_len, body_off;
	nghttp2_nv *trailers;
	size_t ntrailers;
	char *trailer_buf;
	/* request flow control held by the host (h2s_hold_window): DATA not yet consumed */
	bool hold;
	size_t held;
	/* a streaming answer (h2s_respond_stream): body bytes not yet framed */
	bool streaming, s_eof, s_deferred;
	char *sbuf;
	size_t s_len, s_off;
};

struct h2s {
	nghttp2_session *s;
	struct h2s_limits lim;
	struct h2s_callbacks cb;
	void *arg;
	struct h2st head; /* list sentinel */
	size_t nstreams;
	/* frame scanner */
	size_t magic_left;
	uint8_t fh[9];
	size_t fh_have;
	size_t payload_left;
	bool in_block;
	size_t block_bytes, nconts;
	/* Rapid Reset bucket, in thousandths of a token */
	uint64_t tokens_milli, refill_ms;
	bool failed, goaway;
	char error[96];
	/* a frame nghttp2 gave us that did not fit the caller's room */
	char *pend;
	size_t pend_len, pend_off, pend_cap;
};

static void list_add(struct h2s *h, struct h2st *st)
{
	st->next = h->head.next;
	st->prev = &h->head;
	h->head.next->prev = st;
	h->head.next = st;
	h->nstreams++;
}

static void st_free(struct h2s *h, struct h2st *st)
{
	st->prev->next = st->next;
	st->next->prev = st->prev;
	h->nstreams--;
	free(st->hbuf);
	free(st->body);
	free(st->trailers);
	free(st->trailer_buf);
	free(st->sbuf);
	free(st);
}

static struct h2st *st_get(struct h2s *h, int32_t sid)
{
	return nghttp2_session_get_stream_user_data(h->s, sid);
}

static void fail(struct h2s *h, uint32_t code, const char *why)
{
	if (!h->failed)
		snprintf(h->error, sizeof(h->error), "%s", why);
	h->failed = true;
	nghttp2_session_terminate_session(h->s, code);
}

static int on_begin_headers(nghttp2_session *s, const nghttp2_frame *f, void *arg)
{
	struct h2s *h = arg;
	struct h2st *st;

	if (f->hd.type != NGHTTP2_HEADERS)
		return 0;
	if (f->headers.cat != NGHTTP2_HCAT_REQUEST) {
		/* trailers: kept under the same bounds as the request's fields */
		st = st_get(h, f->hd.stream_id);
		if (st && st->host && h->cb.on_trailers) {
			st->in_trailers = true;
			st->too_large = false;
			st->list_bytes = 0;
			st->nfields = 0;
		}
		return 0;
	}
	st = calloc(1, sizeof(*st));
	if (!st)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	st->sid = f->hd.stream_id;
	st->in_request = true;
	list_add(h, st);
	nghttp2_session_set_stream_user_data(s, st->sid, st);
	return 0;
}

static bool hbuf_add(struct h2st *st, const uint8_t *p, size_t n)
{
	if (st->hlen + n + 1 > st->hcap) {
		size_t cap = st->hcap ? st->hcap : 1024;
		char *nb;

		while (cap < st->hlen + n + 1)
			cap *= 2;
		if (!(nb = realloc(st->hbuf, cap)))
			return false;
		st->hbuf = nb;
		st->hcap = cap;
	}
	memcpy(st->hbuf + st->hlen, p, n);
	st->hbuf[st->hlen + n] = '\0';
	st->hlen += n + 1;
	return true;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name,
		     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
		     void *arg)
{
	struct h2s *h = arg;
	struct h2st *st = st_get(h, f->hd.stream_id);

	if (!st || !(st->in_request || st->in_trailers) || f->hd.type != NGHTTP2_HEADERS)
		return 0;
	st->list_bytes += namelen + valuelen + 32;
	if (st->too_large)
		return 0;
	if (st->list_bytes > h->lim.max_header_bytes || st->nfields >= HTTP_MAX_HEADERS) {
		/* decoded on (HPACK state), kept no more: the answer is a 431 */
		st->too_large = true;
		free(st->hbuf);
		st->hbuf = NULL;
		st->hlen = st->hcap = 0;
		st->nfields = 0;
		return 0;
	}
	if (!hbuf_add(st, name, namelen) || !hbuf_add(st, value, valuelen))
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	st->nfields++;
	return 0;
}

/* A field nghttp2 would silently drop (a bad character in a name): a stream error. */
static int on_invalid_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name,
			     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
			     void *arg)
{
	return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
}

/* The fields gathered in st->hbuf as views; how many. */
static int field_views(const struct h2st *st, struct http_header *fields)
{
	const char *p = st->hbuf;

	for (int i = 0; !st->too_large && i < st->nfields; i++) {
		fields[i].name = (struct http_str){p, strlen(p)};
		p += fields[i].name.len + 1;
		fields[i].value = (struct http_str){p, strlen(p)};
		p += fields[i].value.len + 1;
	}
	return st->too_large ? 0 : st->nfields;
}

static void deliver_trailers(struct h2s *h, struct h2st *st)
{
	struct http_header fields[HTTP_MAX_HEADERS];
	int n = field_views(st, fields);

	st->in_trailers = false;
	if (n && st->host)
		h->cb.on_trailers(h->arg, st->sid, st->host, fields, n);
	free(st->hbuf);
	st->hbuf = NULL;
	st->hlen = st->hcap = 0;
}

static void deliver_request(struct h2s *h, struct h2st *st, bool end_stream)
{
	struct http_header fields[HTTP_MAX_HEADERS];
	struct h2s_request r = {
	    .fields = fields, .end_stream = end_stream, .too_large = st->too_large};

	st->in_request = false;
	r.nfields = field_views(st, fields);
	h->cb.on_request(h->arg, st->sid, &r);
	free(st->hbuf);
	st->hbuf = NULL;
	st->hlen = st->hcap = 0;
}

static int on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *arg)
{
	struct h2s *h = arg;
	struct h2st *st = st_get(h, f->hd.stream_id);
	bool end = f->hd.flags & NGHTTP2_FLAG_END_STREAM;

	if (!st)
		return 0;
	if (f->hd.type == NGHTTP2_HEADERS && st->in_request) {
		deliver_request(h, st, end);
		return 0;
	}
	if (f->hd.type == NGHTTP2_HEADERS && st->in_trailers)
		deliver_trailers(h, st);
	if ((f->hd.type == NGHTTP2_DATA || f->hd.type == NGHTTP2_HEADERS) && end && h->cb.on_end &&
	    st->host)
		h->cb.on_end(h->arg, st->sid, st->host);
	return 0;
}

static int on_data_chunk(nghttp2_session *s, uint8_t flags, int32_t sid, const uint8_t *data,
			 size_t len, void *arg)
{
	struct h2s *h = arg;
	struct h2st *st = st_get(h, sid);

	/* the connection window is granted at once: one held stream must not stall the
	 * others; a stream's own window only when its host took the bytes */
	nghttp2_session_consume_connection(s, len);
	if (st && st->hold)
		st->held += len;
	else
		nghttp2_session_consume_stream(s, sid, len);
	if (st && st->host && h->cb.on_data)
		h->cb.on_data(h->arg, sid, st->host, (const char *)data, len);
	return 0;
}

static int on_stream_close(nghttp2_session *s, int32_t sid, uint32_t code, void *arg)
{
	struct h2s *h = arg;
	struct h2st *st = st_get(h, sid);

	if (!st)
		return 0;
	nghttp2_session_set_stream_user_data(s, sid, NULL);
	if (st->host && h->cb.on_close)
		h->cb.on_close(h->arg, sid, st->host, code);
	st_free(h, st);
	return 0;
}

struct h2s *h2s_new(const struct h2s_limits *lim, const struct h2s_callbacks *cb, void *arg)
{
	struct h2s *h = calloc(1, sizeof(*h));
	nghttp2_session_callbacks *cbs = NULL;
	nghttp2_option *opt = NULL;
	nghttp2_settings_entry iv[] = {
	    {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, lim->max_concurrent_streams},
	    {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, lim->max_header_bytes},
	    {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
	};
	int rv;

	if (!h || nghttp2_session_callbacks_new(&cbs) || nghttp2_option_new(&opt))
		goto fail;
	h->lim = *lim;
	h->cb = *cb;
	h->arg = arg;
	h->head.next = h->head.prev = &h->head;
	h->magic_left = H2_PREFACE_LEN;
	h->tokens_milli = (uint64_t)lim->reset_burst * 1000;
	nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
	nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
	nghttp2_session_callbacks_set_on_invalid_header_callback(cbs, on_invalid_header);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
	nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
	nghttp2_option_set_max_outbound_ack(opt, lim->max_outbound_ack);
	nghttp2_option_set_no_auto_window_update(opt, 1);
	/* the scanner enforces both first; these are nghttp2's own backstops */
	nghttp2_option_set_max_continuations(opt, lim->max_continuations + 1);
	nghttp2_option_set_stream_reset_rate_limit(opt, (uint64_t)lim->reset_burst * 2,
						   lim->reset_per_s * 2);
	rv = nghttp2_session_server_new2(&h->s, cbs, h, opt);
	nghttp2_session_callbacks_del(cbs);
	nghttp2_option_del(opt);
	cbs = NULL;
	opt = NULL;
	if (rv || nghttp2_submit_settings(h->s, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0])))
		goto fail;
	return h;
fail:
	if (cbs)
		nghttp2_session_callbacks_del(cbs);
	if (opt)
		nghttp2_option_del(opt);
	h2s_free(h);
	return NULL;
}

void h2s_free(struct h2s *h)
{
	if (!h)
		return;
	if (h->s)
		nghttp2_session_del(h->s);
	while (h->head.next && h->head.next != &h->head)
		st_free(h, h->head.next);
	free(h->pend);
	free(h);
}

/* One more client RST_STREAM: false when the bucket is empty. */
static bool reset_allowed(struct h2s *h, uint64_t now_ms)
{
	uint64_t cap = (uint64_t)h->lim.reset_burst * 1000;

	if (h->refill_ms && now_ms > h->refill_ms) {
		h->tokens_milli += (now_ms - h->refill_ms) * h->lim.reset_per_s;
		if (h->tokens_milli > cap)
			h->tokens_milli = cap;
	}
	h->refill_ms = now_ms ? now_ms : 1;
	if (h->tokens_milli < 1000)
		return false;
	h->tokens_milli -= 1000;
	return true;
}

/* A complete frame header: NULL when the frame may go on, else why it may not. */
static const char *check_frame(struct h2s *h, uint64_t now_ms)
{
	size_t len = (size_t)h->fh[0] << 16 | (size_t)h->fh[1] << 8 | h->fh[2];
	uint8_t type = h->fh[3], flags = h->fh[4];

	h->payload_left = len;
	if (type == NGHTTP2_HEADERS || type == NGHTTP2_PUSH_PROMISE) {
		h->in_block = !(flags & NGHTTP2_FLAG_END_HEADERS);
		h->block_bytes = len;
		h->nconts = 0;
	} else if (type == NGHTTP2_CONTINUATION && h->in_block) {
		h->block_bytes += len;
		if (++h->nconts > h->lim.max_continuations)
			return "too many CONTINUATION frames";
		h->in_block = !(flags & NGHTTP2_FLAG_END_HEADERS);
	} else if (type == NGHTTP2_RST_STREAM && !reset_allowed(h, now_ms)) {
		return "stream reset rate exceeded";
	}
	if ((type == NGHTTP2_HEADERS || type == NGHTTP2_CONTINUATION) &&
	    h->block_bytes > h->lim.max_block_bytes)
		return "header block too large";
	return NULL;
}

static int feed(struct h2s *h, const char *p, size_t n)
{
	ssize_t rv;

	if (!n || h->failed)
		return h->failed ? -1 : 0;
	rv = nghttp2_session_mem_recv(h->s, (const uint8_t *)p, n);
	if (rv < 0) {
		fail(h, rv == NGHTTP2_ERR_FLOODED ? H2_ENHANCE_YOUR_CALM : H2_PROTOCOL_ERROR,
		     nghttp2_strerror((int)rv));
		return -1;
	}
	return 0;
}

int h2s_recv(struct h2s *h, const char *p, size_t n, uint64_t now_ms)
{
	size_t i = 0;
	const char *why;

	if (h->failed)
		return -1;
	while (i < n) {
		if (h->magic_left) {
			size_t k = n - i < h->magic_left ? n - i : h->magic_left;

			h->magic_left -= k;
			i += k;
		} else if (h->payload_left) {
			size_t k = n - i < h->payload_left ? n - i : h->payload_left;

			h->payload_left -= k;
			i += k;
		} else {
			h->fh[h->fh_have++] = p[i++];
			if (h->fh_have < 9)
				continue;
			h->fh_have = 0;
			if ((why = check_frame(h, now_ms))) {
				/* this frame's header may have begun in an earlier call: those
				 * bytes were fed, nghttp2 just waits for the rest it never gets */
				if (feed(h, p, i >= 9 ? i - 9 : 0))
					return -1;
				fail(h, H2_ENHANCE_YOUR_CALM, why);
				return -1;
			}
		}
	}
	return feed(h, p, n);
}

size_t h2s_send(struct h2s *h, char *out, size_t cap)
{
	size_t done = 0;

	while (done < cap) {
		const uint8_t *data;
		ssize_t k;
		size_t c;

		if (h->pend_len) {
			c = h->pend_len < cap - done ? h->pend_len : cap - done;
			memcpy(out + done, h->pend + h->pend_off, c);
			done += c;
			h->pend_off += c;
			h->pend_len -= c;
			continue;
		}
		k = nghttp2_session_mem_send(h->s, &data);
		if (k <= 0) {
			if (k < 0 && !h->failed) {
				h->failed = true;
				snprintf(h->error, sizeof(h->error), "%s",
					 nghttp2_strerror((int)k));
			}
			break;
		}
		c = (size_t)k < cap - done ? (size_t)k : cap - done;
		memcpy(out + done, data, c);
		done += c;
		if ((size_t)k > c) {
			size_t rest = k - c;

			if (rest > h->pend_cap) {
				char *nb = realloc(h->pend, rest);

				if (!nb) {
					h->failed = true;
					break;
				}
				h->pend = nb;
				h->pend_cap = rest;
			}
			memcpy(h->pend, data + c, rest);
			h->pend_off = 0;
			h->pend_len = rest;
		}
	}
	return done;
}

bool h2s_want_write(const struct h2s *h)
{
	return h->pend_len || nghttp2_session_want_write(h->s);
}

bool h2s_done(const struct h2s *h)
{
	if (h2s_want_write(h))
		return false;
	return h->failed || !nghttp2_session_want_read(h->s);
}

const char *h2s_error(const struct h2s *h)
{
	return h->error;
}

void h2s_set_stream_host(struct h2s *h, int32_t sid, void *host)
{
	struct h2st *st = st_get(h, sid);

	if (st)
		st->host = host;
}

size_t h2s_open_streams(const struct h2s *h)
{
	return h->nstreams;
}

static ssize_t read_body(nghttp2_session *s, int32_t sid, uint8_t *buf, size_t length,
			 uint32_t *flags, nghttp2_data_source *src, void *arg)
{
	struct h2st *st = src->ptr;
	size_t n = st->body_len - st->body_off;

	if (n > length)
		n = length;
	memcpy(buf, st->body + st->body_off, n);
	st->body_off += n;
	if (st->body_off == st->body_len) {
		*flags |= NGHTTP2_DATA_FLAG_EOF;
		if (st->ntrailers) {
			*flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
			if (nghttp2_submit_trailer(s, sid, st->trailers, st->ntrailers))
				return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
		}
	}
	return n;
}

/* A streaming answer's body: what the host wrote so far; DEFERRED until more comes. */
static ssize_t read_stream(nghttp2_session *s, int32_t sid, uint8_t *buf, size_t length,
			   uint32_t *flags, nghttp2_data_source *src, void *arg)
{
	struct h2st *st = src->ptr;
	size_t n = st->s_len - st->s_off;

	if (n > length)
		n = length;
	memcpy(buf, st->sbuf + st->s_off, n);
	st->s_off += n;
	if (st->s_off == st->s_len)
		st->s_off = st->s_len = 0;
	if (st->s_len)
		return n;
	if (!st->s_eof) {
		if (n)
			return n;
		st->s_deferred = true;
		return NGHTTP2_ERR_DEFERRED;
	}
	*flags |= NGHTTP2_DATA_FLAG_EOF;
	if (st->ntrailers) {
		*flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
		if (nghttp2_submit_trailer(s, sid, st->trailers, st->ntrailers))
			return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	}
	return n;
}

/* Fields HTTP/2 forbids (RFC 9113 8.2.2), never sent. */
static bool connection_specific(struct http_str name)
{
	static const char *const names[] = {"connection",	 "keep-alive", "proxy-connection",
					    "transfer-encoding", "upgrade",    NULL};

	for (int i = 0; names[i]; i++)
		if (http_str_eq_nocase(name, names[i]))
			return true;
	return false;
}

/* nv entries for fields, lowercased copies in *store (freed by the caller). */
static size_t make_nv(const struct http_header *f, int n, nghttp2_nv *nv, char **store)
{
	size_t total = 0, k = 0;
	char *p;

	for (int i = 0; i < n; i++)
		total += f[i].name.len + f[i].value.len + 2;
	if (!(*store = p = malloc(total + 1)))
		return (size_t)-1;
	for (int i = 0; i < n; i++) {
		if (connection_specific(f[i].name))
			continue;
		nv[k].name = (uint8_t *)p;
		for (size_t j = 0; j < f[i].name.len; j++)
			*p++ = (f[i].name.p[j] >= 'A' && f[i].name.p[j] <= 'Z')
				   ? f[i].name.p[j] + 32
				   : f[i].name.p[j];
		*p++ = '\0';
		nv[k].namelen = f[i].name.len;
		nv[k].value = (uint8_t *)p;
		memcpy(p, f[i].value.p, f[i].value.len);
		p += f[i].value.len;
		*p++ = '\0';
		nv[k].valuelen = f[i].value.len;
		nv[k].flags = NGHTTP2_NV_FLAG_NONE;
		k++;
	}
	return k;
}

/* Copies trailers into the stream's nv array, sent after the last DATA. */
static bool set_trailers(struct h2st *st, const struct http_header *trailers, int ntrailers)
{
	size_t n;

	if (!ntrailers)
		return true;
	if (st->trailers)
		return false;
	st->trailers = malloc(sizeof(*st->trailers) * ntrailers);
	if (!st->trailers)
		return false;
	n = make_nv(trailers, ntrailers, st->trailers, &st->trailer_buf);
	if (n == (size_t)-1)
		return false;
	st->ntrailers = n;
	return true;
}

/* HEADERS with :status and the fields, then DATA from prd (NULL: HEADERS ends it). */
static bool submit_head(struct h2s *h, int32_t sid, int status, const struct http_header *fields,
			int nfields, nghttp2_data_provider *prd)
{
	nghttp2_nv *nv = malloc(sizeof(*nv) * (nfields + 1));
	char code[4], *store = NULL;
	size_t n;
	int rv = -1;

	if (!nv)
		return false;
	snprintf(code, sizeof(code), "%d", status);
	nv[0] = (nghttp2_nv){(uint8_t *)":status", (uint8_t *)code, 7, 3, NGHTTP2_NV_FLAG_NONE};
	n = make_nv(fields, nfields, nv + 1, &store);
	if (n != (size_t)-1)
		rv = nghttp2_submit_response(h->s, sid, nv, n + 1, prd);
	free(store);
	free(nv);
	return rv == 0;
}

bool h2s_respond(struct h2s *h, int32_t sid, int status, const struct http_header *fields,
		 int nfields, const char *body, size_t len, bool has_body,
		 const struct http_header *trailers, int ntrailers)
{
	struct h2st *st = st_get(h, sid);
	nghttp2_data_provider prd;

	if (!st || status < 100 || status > 999 || st->streaming)
		return false;
	if (has_body) {
		if (len && !(st->body = malloc(len)))
			return false;
		if (len)
			memcpy(st->body, body, len);
		st->body_len = len;
		if (!set_trailers(st, trailers, ntrailers))
			return false;
		prd.source.ptr = st;
		prd.read_callback = read_body;
	}
	return submit_head(h, sid, status, fields, nfields, has_body ? &prd : NULL);
}

bool h2s_respond_stream(struct h2s *h, int32_t sid, int status, const struct http_header *fields,
			int nfields)
{
	struct h2st *st = st_get(h, sid);
	nghttp2_data_provider prd;

	if (!st || status < 100 || status > 999 || st->streaming || st->body_len)
		return false;
	if (!st->sbuf && !(st->sbuf = malloc(H2S_STREAM_BUF)))
		return false;
	st->streaming = true;
	prd.source.ptr = st;
	prd.read_callback = read_stream;
	return submit_head(h, sid, status, fields, nfields, &prd);
}

/* The stream's answer body after a write or its end: frame it when nghttp2 waits. */
static void stream_kick(struct h2s *h, struct h2st *st)
{
	if (st->s_deferred) {
		st->s_deferred = false;
		nghttp2_session_resume_data(h->s, st->sid);
	}
}

size_t h2s_stream_room(struct h2s *h, int32_t sid)
{
	struct h2st *st = st_get(h, sid);

	if (!st || !st->streaming || st->s_eof)
		return 0;
	return H2S_STREAM_BUF - (st->s_len - st->s_off);
}

size_t h2s_stream_write(struct h2s *h, int32_t sid, const char *p, size_t n)
{
	struct h2st *st = st_get(h, sid);
	size_t room = h2s_stream_room(h, sid);

	if (!room)
		return 0;
	if (n > room)
		n = room;
	if (st->s_off) {
		memmove(st->sbuf, st->sbuf + st->s_off, st->s_len - st->s_off);
		st->s_len -= st->s_off;
		st->s_off = 0;
	}
	memcpy(st->sbuf + st->s_len, p, n);
	st->s_len += n;
	stream_kick(h, st);
	return n;
}

bool h2s_stream_end(struct h2s *h, int32_t sid, const struct http_header *trailers, int ntrailers)
{
	struct h2st *st = st_get(h, sid);

	if (!st || !st->streaming || st->s_eof)
		return false;
	st->s_eof = true;
	if (!set_trailers(st, trailers, ntrailers))
		return false;
	stream_kick(h, st);
	return true;
}

size_t h2s_stream_pending(struct h2s *h, int32_t sid)
{
	struct h2st *st = st_get(h, sid);

	return st && st->streaming ? st->s_len - st->s_off : 0;
}

void h2s_hold_window(struct h2s *h, int32_t sid, bool hold)
{
	struct h2st *st = st_get(h, sid);

	if (!st)
		return;
	st->hold = hold;
	if (!hold && st->held) {
		nghttp2_session_consume_stream(h->s, sid, st->held);
		st->held = 0;
	}
}

void h2s_consume(struct h2s *h, int32_t sid, size_t n)
{
	struct h2st *st = st_get(h, sid);

	if (!st || !n)
		return;
	if (n > st->held)
		n = st->held;
	st->held -= n;
	nghttp2_session_consume_stream(h->s, sid, n);
}

void h2s_reset(struct h2s *h, int32_t sid, uint32_t error_code)
{
	nghttp2_submit_rst_stream(h->s, NGHTTP2_FLAG_NONE, sid, error_code);
}

void h2s_goaway(struct h2s *h)
{
	if (h->failed || h->goaway)
		return;
	h->goaway = true;
	nghttp2_submit_goaway(h->s, NGHTTP2_FLAG_NONE,
			      nghttp2_session_get_last_proc_stream_id(h->s), NGHTTP2_NO_ERROR, NULL,
			      0);
}

void h2s_terminate(struct h2s *h, uint32_t error_code, const char *why)
{
	fail(h, error_code, why);
}

bool h2_grpc_timeout_ms(struct http_str v, uint64_t *ms)
{
	uint64_t n = 0;
	size_t i;

	/* gRPC over HTTP/2: TimeoutValue is 1 to 8 ASCII digits, then one unit letter */
	if (v.len < 2 || v.len > 9)
		return false;
	for (i = 0; i + 1 < v.len; i++) {
		if (v.p[i] < '0' || v.p[i] > '9')
			return false;
		n = n * 10 + (v.p[i] - '0');
	}
	switch (v.p[v.len - 1]) {
	case 'H':
		n *= 3600000;
		break;
	case 'M':
		n *= 60000;
		break;
	case 'S':
		n *= 1000;
		break;
	case 'm':
		break;
	case 'u':
		n = (n + 999) / 1000;
		break;
	case 'n':
		n = (n + 999999) / 1000000;
		break;
	default:
		return false;
	}
	*ms = n;
	return true;
}
