/*
 * The client's HTTP/2 side (see client.h): one nghttp2 client session per connection,
 * shared by up to max_streams_per_connection calls. The connection is driven by the
 * ring like the HTTP/1.1 one (connect, sends, receives; TLS on memory BIOs for "h2");
 * nghttp2 only turns bytes into events and back (mem_recv / mem_send).
 *
 * Nothing reaches the caller from inside nghttp2: its callbacks only record what came
 * into the call (head, body, trailers, the end), and the call's event timer (due now)
 * delivers it after the completion batch. So a caller may cancel, start or write to any
 * call from its callbacks.
 *
 * Flow control is the backpressure: the connection is always read (control frames,
 * GOAWAY, other streams), but a stream's window is only granted back as its body is
 * taken (NGHTTP2_OPT_NO_AUTO_WINDOW_UPDATE + nghttp2_session_consume), so a call holds
 * at most one stream window of body. The connection window is large enough for every
 * stream's window, so a stalled stream never stalls the others.
 */
#include <errno.h>
#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "client/internal.h"
#include "common/clock.h"
#include "common/fmt.h"
#include "upstream/dns.h"

#define H2_OUT_MAX (64 * 1024) /* bytes gathered from nghttp2 per send */
#define H2_CONN_WINDOW (16 * 1024 * 1024)

struct h2conn {
	struct ring_op op_tx; /* connect, then sends */
	struct ring_op op_rx;
	struct http_client *cl;
	struct target_state *ts;
	int fd;
	bool tx_armed, rx_armed;
	bool connected, ready; /* TCP up; TLS (if any) done: frames may go out */
	bool closing, failed;
	bool goaway;
	bool proto_error; /* nghttp2 found the peer broke the protocol */
	bool tls;
	nghttp2_session *s;
	SSL *ssl;
	char *raw;   /* receive buffer (ciphertext for h2) */
	char *plain; /* h2: decrypted bytes */
	char *out;
	size_t out_len, out_sent, out_cap;
	struct client_call *calls; /* attached calls, each counted in nstreams */
	unsigned nstreams;
	uint64_t idle_since_ms;
	unsigned busy; /* inside nghttp2: do not free */
	struct h2conn *pool_next;
	struct h2conn *all_next, *all_prev;
};

static struct h2conn *h2_of_tx(struct ring_op *op)
{
	return (struct h2conn *)((char *)op - offsetof(struct h2conn, op_tx));
}

static struct h2conn *h2_of_rx(struct ring_op *op)
{
	return (struct h2conn *)((char *)op - offsetof(struct h2conn, op_rx));
}

/* ---- connection life ---- */

static void h2_unlink_pool(struct h2conn *k)
{
	struct client_pool *p = cl_pool_find(k->cl, k->ts, false);
	struct h2conn **pp;

	for (pp = p ? &p->h2 : NULL; pp && *pp; pp = &(*pp)->pool_next)
		if (*pp == k) {
			*pp = k->pool_next;
			break;
		}
	k->pool_next = NULL;
}

static void h2_free_now(struct h2conn *k)
{
	if (k->all_prev)
		k->all_prev->all_next = k->all_next;
	else
		k->cl->h2all = k->all_next;
	if (k->all_next)
		k->all_next->all_prev = k->all_prev;
	if (k->fd >= 0)
		close(k->fd);
	nghttp2_session_del(k->s);
	SSL_free(k->ssl);
	free(k->raw);
	free(k->plain);
	free(k->out);
	free(k);
}

static void h2_maybe_free(struct h2conn *k)
{
	if (k->closing && !k->tx_armed && !k->rx_armed && !k->busy && !k->calls)
		h2_free_now(k);
}

static void h2_unlink_call(struct client_call *c)
{
	struct h2conn *k = c->h2;

	if (!k)
		return;
	if (c->h2_prev)
		c->h2_prev->h2_next = c->h2_next;
	else
		k->calls = c->h2_next;
	if (c->h2_next)
		c->h2_next->h2_prev = c->h2_prev;
	c->h2_next = c->h2_prev = NULL;
	c->h2 = NULL;
	k->nstreams--;
	if (!k->nstreams)
		k->idle_since_ms = clock_mono_ms();
	if (k->s && c->stream_id > 0)
		nghttp2_session_set_stream_user_data(k->s, c->stream_id, NULL);
}

void h2_schedule(struct client_call *c)
{
	if (!timer_armed(&c->ev))
		timer_add(c->cl->timers, &c->ev, 0, h2_call_event_fire);
}

/* Ends the stream of a call on error: it is detached and told from its event timer. */
static void h2_call_fail(struct client_call *c, enum client_error err, bool retry,
			 bool connecting)
{
	h2_unlink_call(c);
	timer_del(c->cl->timers, &c->timer);
	c->h2_closed = true;
	c->h2_err = err;
	c->retry_pending = retry;
	c->retry_connecting = connecting;
	h2_schedule(c);
}

/* Closes the connection; every call on it fails with err (a connect failure: they may
 * try another target). */
static void h2_conn_close(struct h2conn *k, enum client_error err, bool connecting)
{
	if (k->proto_error && !connecting)
		err = CLIENT_ERR_PROTOCOL;
	if (!k->closing) {
		k->closing = true;
		h2_unlink_pool(k);
	}
	while (k->calls) {
		struct client_call *c = k->calls;
		bool unsent = !k->ready || c->stream_id <= 0;
		bool retry = connecting || (unsent && !c->h2_retried);

		if (connecting)
			cl_count(c, OUTCOME_CONNECT_ERROR, true);
		else if (!retry)
			cl_count(c, err == CLIENT_ERR_PROTOCOL ? OUTCOME_PROTOCOL_ERROR : OUTCOME_RESET,
				 !c->have_head);
		h2_call_fail(c, err, retry, connecting);
	}
	if (k->tx_armed)
		ring_op_cancel(k->cl->ring, &k->op_tx);
	if (k->rx_armed)
		ring_op_cancel(k->cl->ring, &k->op_rx);
	h2_maybe_free(k);
}

static bool h2_out_room(struct h2conn *k, size_t want)
{
	size_t cap = k->out_cap ? k->out_cap : 16384;
	char *p;

	if (k->out_cap - k->out_len >= want)
		return true;
	while (cap - k->out_len < want)
		cap *= 2;
	p = realloc(k->out, cap);
	if (!p)
		return false;
	k->out = p;
	k->out_cap = cap;
	return true;
}

/* Moves the ciphertext OpenSSL produced into out. */
static bool h2_take_tls_out(struct h2conn *k)
{
	BIO *wbio = SSL_get_wbio(k->ssl);
	size_t pend = BIO_ctrl_pending(wbio);
	int n;

	if (!pend)
		return true;
	if (!h2_out_room(k, pend))
		return false;
	n = BIO_read(wbio, k->out + k->out_len, pend);
	if (n > 0)
		k->out_len += n;
	return true;
}

/* Gathers frames from nghttp2 (and encrypts them) and sends them, one send at a time. */
static void h2_flush(struct h2conn *k)
{
	struct io_uring_sqe *sqe;

	if (k->tx_armed || k->closing || !k->connected)
		return;
	if (k->out_sent == k->out_len) {
		k->out_len = k->out_sent = 0;
		while (k->ready && k->out_len < H2_OUT_MAX) {
			const uint8_t *d;
			ssize_t n;
			size_t w;

			k->busy++;
			n = nghttp2_session_mem_send(k->s, &d);
			k->busy--;
			if (n < 0) {
				h2_conn_close(k, CLIENT_ERR_PROTOCOL, false);
				return;
			}
			if (n == 0)
				break;
			if (k->ssl) {
				if (SSL_write_ex(k->ssl, d, n, &w) != 1 || !h2_take_tls_out(k)) {
					ERR_clear_error();
					h2_conn_close(k, CLIENT_ERR_NOMEM, false);
					return;
				}
				continue;
			}
			if (!h2_out_room(k, n)) {
				h2_conn_close(k, CLIENT_ERR_NOMEM, false);
				return;
			}
			memcpy(k->out + k->out_len, d, n);
			k->out_len += n;
		}
		if (k->ssl && !h2_take_tls_out(k)) {
			h2_conn_close(k, CLIENT_ERR_NOMEM, false);
			return;
		}
		if (!k->out_len) {
			/* Both sides are done with it (GOAWAY and no streams): close. */
			if (k->ready && !nghttp2_session_want_read(k->s) &&
			    !nghttp2_session_want_write(k->s))
				h2_conn_close(k, CLIENT_ERR_RESET, false);
			return;
		}
	}
	sqe = ring_get_sqe(k->cl->ring);
	io_uring_prep_send(sqe, k->fd, k->out + k->out_sent, k->out_len - k->out_sent,
			   MSG_NOSIGNAL);
	ring_op_set(sqe, &k->op_tx);
	k->tx_armed = true;
}

static void h2_arm_rx(struct h2conn *k)
{
	struct io_uring_sqe *sqe;

	if (k->rx_armed || k->closing)
		return;
	sqe = ring_get_sqe(k->cl->ring);
	io_uring_prep_recv(sqe, k->fd, k->raw, TLS_RAW_CHUNK, 0);
	ring_op_set(sqe, &k->op_rx);
	k->rx_armed = true;
}

/* TLS handshake step; false when the connection failed. */
static bool h2_tls_advance(struct h2conn *k)
{
	const unsigned char *alpn;
	unsigned alpn_len;
	int r = SSL_do_handshake(k->ssl);

	if (r != 1) {
		r = SSL_get_error(k->ssl, r);
		ERR_clear_error();
		if (r != SSL_ERROR_WANT_READ && r != SSL_ERROR_WANT_WRITE) {
			h2_conn_close(k, CLIENT_ERR_CONNECT, true);
			return false;
		}
		if (!h2_take_tls_out(k)) {
			h2_conn_close(k, CLIENT_ERR_NOMEM, false);
			return false;
		}
		h2_flush(k);
		return true;
	}
	SSL_get0_alpn_selected(k->ssl, &alpn, &alpn_len);
	if (alpn_len != 2 || memcmp(alpn, "h2", 2)) {
		/* the server does not speak HTTP/2 over TLS: as good as refused */
		h2_conn_close(k, CLIENT_ERR_CONNECT, true);
		return false;
	}
	k->ready = true;
	return true;
}

static void h2_tx_done(struct h2conn *k, const struct io_uring_cqe *cqe)
{
	if (k->closing) {
		h2_maybe_free(k);
		return;
	}
	if (!k->connected) {
		if (cqe->res < 0) {
			h2_conn_close(k, CLIENT_ERR_CONNECT, true);
			return;
		}
		k->connected = true;
		for (struct client_call *c = k->calls; c; c = c->h2_next) {
			c->connect_due_ms = 0;
			timer_add(c->cl->timers, &c->timer, c->deadline_ms, cl_call_timer_fire);
		}
		if (k->ssl) {
			if (h2_tls_advance(k) && k->ready)
				h2_flush(k);
		} else {
			k->ready = true;
			h2_flush(k);
		}
		h2_arm_rx(k);
		return;
	}
	if (cqe->res <= 0) {
		h2_conn_close(k, CLIENT_ERR_RESET, false);
		return;
	}
	k->out_sent += cqe->res;
	h2_flush(k);
}

/* Feeds received plaintext to nghttp2; false when the connection failed. */
static bool h2_feed(struct h2conn *k, const char *p, size_t n)
{
	ssize_t r;

	k->busy++;
	r = nghttp2_session_mem_recv(k->s, (const uint8_t *)p, n);
	k->busy--;
	if (r < 0) {
		h2_conn_close(k, r == NGHTTP2_ERR_NOMEM ? CLIENT_ERR_NOMEM : CLIENT_ERR_PROTOCOL,
			      false);
		return false;
	}
	return true;
}

static bool h2_rx_tls(struct h2conn *k, int nbytes)
{
	size_t n;

	if (BIO_write(SSL_get_rbio(k->ssl), k->raw, nbytes) != nbytes) {
		h2_conn_close(k, CLIENT_ERR_NOMEM, false);
		return false;
	}
	if (!k->ready) {
		if (!h2_tls_advance(k))
			return false;
		if (!k->ready)
			return true;
	}
	while (SSL_read_ex(k->ssl, k->plain, CONN_READ_CHUNK, &n) == 1)
		if (!h2_feed(k, k->plain, n))
			return false;
	switch (SSL_get_error(k->ssl, 0)) {
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		ERR_clear_error();
		return true;
	default:
		ERR_clear_error();
		h2_conn_close(k, CLIENT_ERR_RESET, false);
		return false;
	}
}

static void h2_rx_done(struct h2conn *k, const struct io_uring_cqe *cqe)
{
	if (k->closing) {
		h2_maybe_free(k);
		return;
	}
	if (cqe->res <= 0) {
		h2_conn_close(k, CLIENT_ERR_RESET, false);
		return;
	}
	if (k->ssl ? !h2_rx_tls(k, cqe->res) : !h2_feed(k, k->raw, cqe->res))
		return;
	h2_flush(k);
	h2_arm_rx(k);
}

/*
 * Completions of the connection's send and receive. A step may close the connection
 * (a protocol error found while flushing); busy keeps it allocated until the step is
 * over, then it is freed if that is what happened.
 */
static void h2_on_tx(struct ring_op *op, const struct io_uring_cqe *cqe)
{
	struct h2conn *k = h2_of_tx(op);

	k->tx_armed = false;
	k->busy++;
	h2_tx_done(k, cqe);
	k->busy--;
	h2_maybe_free(k);
}

static void h2_on_rx(struct ring_op *op, const struct io_uring_cqe *cqe)
{
	struct h2conn *k = h2_of_rx(op);

	k->rx_armed = false;
	k->busy++;
	h2_rx_done(k, cqe);
	k->busy--;
	h2_maybe_free(k);
}

/* ---- nghttp2 callbacks: they only record into the call ---- */

static struct client_call *stream_call(nghttp2_session *s, int32_t id)
{
	return id > 0 ? nghttp2_session_get_stream_user_data(s, id) : NULL;
}

static bool hmem_add(struct client_call *c, const uint8_t *name, size_t nl,
		     const uint8_t *value, size_t vl)
{
	if (c->nhoff >= HTTP_MAX_HEADERS * 2)
		return false;
	if (c->nhoff == c->hoff_cap) {
		int cap = c->hoff_cap ? c->hoff_cap * 2 : 16;
		void *p = realloc(c->hoff, cap * sizeof(*c->hoff));

		if (!p)
			return false;
		c->hoff = p;
		c->hoff_cap = cap;
	}
	if (c->hmem_cap - c->hmem_len < nl + vl) {
		size_t cap = c->hmem_cap ? c->hmem_cap : 1024;
		char *p;

		while (cap - c->hmem_len < nl + vl)
			cap *= 2;
		p = realloc(c->hmem, cap);
		if (!p)
			return false;
		c->hmem = p;
		c->hmem_cap = cap;
	}
	c->hoff[c->nhoff][0] = c->hmem_len;
	c->hoff[c->nhoff][1] = nl;
	memcpy(c->hmem + c->hmem_len, name, nl);
	c->hmem_len += nl;
	c->hoff[c->nhoff][2] = c->hmem_len;
	c->hoff[c->nhoff][3] = vl;
	memcpy(c->hmem + c->hmem_len, value, vl);
	c->hmem_len += vl;
	c->nhoff++;
	return true;
}

static int cb_begin_headers(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
	struct client_call *c = stream_call(s, f->hd.stream_id);

	if (!c || f->hd.type != NGHTTP2_HEADERS)
		return 0;
	if (c->hstate == 1 && c->h2resp.status >= 200) {
		c->hstate = 3; /* trailers */
		c->ntrail_off = c->nhoff;
		return 0;
	}
	/* a (new) response head; an interim one's fields are dropped */
	c->hstate = 1;
	c->nhoff = 0;
	c->hmem_len = 0;
	c->h2resp.status = 0;
	return 0;
}

static int cb_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name,
		     size_t nl, const uint8_t *value, size_t vl, uint8_t flags, void *ud)
{
	struct client_call *c = stream_call(s, f->hd.stream_id);

	if (!c || f->hd.type != NGHTTP2_HEADERS)
		return 0;
	if (nl && name[0] == ':') {
		if (c->hstate == 1 && nl == 7 && !memcmp(name, ":status", 7)) {
			int st = 0;

			for (size_t i = 0; i < vl && i < 3; i++)
				st = st * 10 + (value[i] - '0');
			c->h2resp.status = st;
		}
		return 0;
	}
	if (!hmem_add(c, name, nl, value, vl))
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* resets the stream */
	return 0;
}

static int cb_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
	struct h2conn *k = ud;
	struct client_call *c = stream_call(s, f->hd.stream_id);

	if (f->hd.type == NGHTTP2_GOAWAY) {
		/* streams past last-stream-id are closed REFUSED_STREAM by nghttp2 */
		k->goaway = true;
		h2_unlink_pool(k);
		return 0;
	}
	if (!c)
		return 0;
	if (f->hd.type == NGHTTP2_HEADERS && c->hstate == 1) {
		if (c->h2resp.status < 100 || c->h2resp.status > 999)
			return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
		if (c->h2resp.status < 200) {
			c->hstate = 0; /* interim: the final head follows */
			c->nhoff = 0;
			c->hmem_len = 0;
		} else if (!c->have_head) {
			c->have_head = true;
			c->connect_due_ms = 0;
			cl_count(c, OUTCOME_SUCCESS, true);
			h2_schedule(c);
		}
	}
	if ((f->hd.type == NGHTTP2_HEADERS || f->hd.type == NGHTTP2_DATA) &&
	    (f->hd.flags & NGHTTP2_FLAG_END_STREAM))
		c->h2_complete = c->have_head;
	return 0;
}

static int cb_data(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *d, size_t n,
		   void *ud)
{
	struct client_call *c = stream_call(s, id);
	size_t *len, *cap, need;
	char **buf;

	if (!c) {
		nghttp2_session_consume(s, id, n);
		return 0;
	}
	buf = c->streaming ? &c->rbuf : &c->body;
	len = c->streaming ? &c->rbuf_len : &c->body_len;
	cap = c->streaming ? &c->rbuf_cap : &c->body_cap;
	if (c->streaming && c->rbuf_off) {
		memmove(c->rbuf, c->rbuf + c->rbuf_off, c->rbuf_len - c->rbuf_off);
		c->rbuf_len -= c->rbuf_off;
		c->rbuf_off = 0;
	}
	need = *len + n;
	if (!c->streaming && need > c->max_body) {
		c->h2_err = CLIENT_ERR_TOO_LARGE;
		nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
		nghttp2_session_consume(s, id, n);
		return 0;
	}
	if (need > *cap) {
		size_t nc = *cap ? *cap : 4096;
		char *p;

		while (nc < need)
			nc *= 2;
		p = realloc(*buf, nc);
		if (!p)
			return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
		*buf = p;
		*cap = nc;
	}
	memcpy(*buf + *len, d, n);
	*len += n;
	if (!c->streaming)
		nghttp2_session_consume(s, id, n); /* taken already */
	else
		h2_schedule(c);
	return 0;
}

static int cb_stream_close(nghttp2_session *s, int32_t id, uint32_t code, void *ud)
{
	struct client_call *c = stream_call(s, id);
	enum client_error err;
	bool refused;

	if (!c)
		return 0;
	refused = code == NGHTTP2_REFUSED_STREAM && !c->have_head && !c->h2_retried;
	if (c->h2_err == CLIENT_ERR_TOO_LARGE)
		err = CLIENT_ERR_TOO_LARGE;
	else if (c->h2_complete && (code == NGHTTP2_NO_ERROR || code == NGHTTP2_CANCEL))
		err = CLIENT_OK; /* a server may reset the request side once it answered */
	else
		err = code == NGHTTP2_PROTOCOL_ERROR || ((struct h2conn *)ud)->proto_error
			      ? CLIENT_ERR_PROTOCOL
			      : CLIENT_ERR_RESET;
	if (err != CLIENT_OK && !refused)
		cl_count(c, err == CLIENT_ERR_PROTOCOL ? OUTCOME_PROTOCOL_ERROR : OUTCOME_RESET,
			 !c->have_head);
	h2_call_fail(c, err, refused, false);
	return 0;
}

static int cb_not_send(nghttp2_session *s, const nghttp2_frame *f, int lib_error, void *ud)
{
	struct client_call *c = stream_call(s, f->hd.stream_id);

	/* a request that could not start (GOAWAY came first): another connection */
	if (c && f->hd.type == NGHTTP2_HEADERS && !c->have_head)
		h2_call_fail(c, CLIENT_ERR_RESET, !c->h2_retried, false);
	return 0;
}

/* Our GOAWAY with an error: nghttp2 found the peer broke the protocol. */
static int cb_frame_send(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
	if (f->hd.type == NGHTTP2_GOAWAY && f->goaway.error_code != NGHTTP2_NO_ERROR)
		((struct h2conn *)ud)->proto_error = true;
	return 0;
}

/* The request body: what the call has buffered; DEFERRED until more comes. */
static ssize_t h2_read_body(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len,
			    uint32_t *flags, nghttp2_data_source *src, void *ud)
{
	struct client_call *c = stream_call(s, id);
	size_t n;

	if (!c)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	n = c->sbuf_len - c->sbuf_off;
	if (n > len)
		n = len;
	memcpy(buf, c->sbuf + c->sbuf_off, n);
	c->sbuf_off += n;
	if (n)
		c->body_sent = true;
	/* a streaming body is gone once sent; client_request's stays for a retry */
	if (c->streaming && c->sbuf_off == c->sbuf_len)
		c->sbuf_off = c->sbuf_len = 0;
	if (c->want_writable && c->sbuf_len - c->sbuf_off < CLIENT_STREAM_BUF)
		h2_schedule(c);
	if (c->sbuf_off == c->sbuf_len && c->req_fin) {
		*flags |= NGHTTP2_DATA_FLAG_EOF;
		if (c->nreq_trailers) {
			nghttp2_nv nv[HTTP_MAX_HEADERS];

			for (int i = 0; i < c->nreq_trailers; i++)
				nv[i] = (nghttp2_nv){ (uint8_t *)c->req_trailers[i].name.p,
						      (uint8_t *)c->req_trailers[i].value.p,
						      c->req_trailers[i].name.len,
						      c->req_trailers[i].value.len,
						      NGHTTP2_NV_FLAG_NONE };
			if (!nghttp2_submit_trailer(s, id, nv, c->nreq_trailers))
				*flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
		}
		return n;
	}
	if (!n) {
		c->deferred_data = true;
		return NGHTTP2_ERR_DEFERRED;
	}
	return n;
}

static nghttp2_session *h2_session_new(struct h2conn *k)
{
	nghttp2_session_callbacks *cbs;
	nghttp2_option *opt;
	nghttp2_session *s = NULL;
	nghttp2_settings_entry set[] = {
		{ NGHTTP2_SETTINGS_ENABLE_PUSH, 0 },
		{ NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, CLIENT_H2_WINDOW },
	};

	if (nghttp2_session_callbacks_new(&cbs))
		return NULL;
	if (nghttp2_option_new(&opt)) {
		nghttp2_session_callbacks_del(cbs);
		return NULL;
	}
	nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, cb_begin_headers);
	nghttp2_session_callbacks_set_on_header_callback(cbs, cb_header);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, cb_frame_recv);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, cb_data);
	nghttp2_session_callbacks_set_on_stream_close_callback(cbs, cb_stream_close);
	nghttp2_session_callbacks_set_on_frame_not_send_callback(cbs, cb_not_send);
	nghttp2_session_callbacks_set_on_frame_send_callback(cbs, cb_frame_send);
	nghttp2_option_set_no_auto_window_update(opt, 1);
	if (nghttp2_session_client_new2(&s, cbs, k, opt) == 0 &&
	    (nghttp2_submit_settings(s, NGHTTP2_FLAG_NONE, set, 2) ||
	     nghttp2_session_set_local_window_size(s, NGHTTP2_FLAG_NONE, 0, H2_CONN_WINDOW))) {
		nghttp2_session_del(s);
		s = NULL;
	}
	nghttp2_option_del(opt);
	nghttp2_session_callbacks_del(cbs);
	return s;
}

static SSL_CTX *default_tls(struct http_client *cl)
{
	if (!cl->h2_tls) {
		cl->h2_tls = SSL_CTX_new(TLS_client_method());
		if (cl->h2_tls) {
			SSL_CTX_set_verify(cl->h2_tls, SSL_VERIFY_PEER, NULL);
			SSL_CTX_set_default_verify_paths(cl->h2_tls);
		}
	}
	return cl->h2_tls;
}

static struct h2conn *h2_open(struct client_call *c, const struct target_config *tc)
{
	static const unsigned char alpn[] = "\x02h2";
	struct http_client *cl = c->cl;
	struct h2conn *k = calloc(1, sizeof(*k));
	bool tls = c->proto == UPSTREAM_H2;
	SSL_CTX *ctx = c->tls ? c->tls : tls ? default_tls(cl) : NULL;
	const char *name = c->tls_name ? c->tls_name : c->host ? c->host : tc->address_text;
	struct io_uring_sqe *sqe;
	int one = 1;

	if (!k)
		return NULL;
	k->fd = -1;
	k->tls = tls;
	k->raw = malloc(TLS_RAW_CHUNK);
	k->s = h2_session_new(k);
	if (tls && ctx) {
		k->ssl = cl_tls_new(ctx, name);
		k->plain = malloc(CONN_READ_CHUNK);
		if (k->ssl)
			SSL_set_alpn_protos(k->ssl, alpn, 3);
	}
	if (!k->raw || !k->s || (tls && (!k->ssl || !k->plain)) ||
	    (k->fd = socket(tc->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
			    0)) < 0) {
		nghttp2_session_del(k->s);
		SSL_free(k->ssl);
		free(k->raw);
		free(k->plain);
		free(k);
		return NULL;
	}
	setsockopt(k->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	k->op_tx.complete = h2_on_tx;
	k->op_rx.complete = h2_on_rx;
	k->cl = cl;
	k->ts = tc->state;
	k->all_next = cl->h2all;
	if (cl->h2all)
		cl->h2all->all_prev = k;
	cl->h2all = k;
	sqe = ring_get_sqe(cl->ring);
	io_uring_prep_connect(sqe, k->fd, (const struct sockaddr *)&tc->addr, tc->addrlen);
	ring_op_set(sqe, &k->op_tx);
	k->tx_armed = true;
	return k;
}

static unsigned h2_capacity(const struct h2conn *k, const struct upstream_config *uc)
{
	uint32_t peer = k->ready ? nghttp2_session_get_remote_settings(
					   k->s, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS)
				 : UINT32_MAX;

	return peer < uc->max_streams_per_connection ? peer : uc->max_streams_per_connection;
}

/* A shared connection with a free stream slot; expired idle ones are closed on the way. */
static struct h2conn *h2_find(struct client_call *c, struct client_pool *p, uint32_t idle_ms)
{
	const struct upstream_config *uc = cl_call_upstream(c);
	uint64_t now = clock_mono_ms();
	struct h2conn *k = p->h2, *next;

	for (; k; k = next) {
		next = k->pool_next;
		if (!k->nstreams && now - k->idle_since_ms > idle_ms) {
			h2_conn_close(k, CLIENT_ERR_RESET, false);
			continue;
		}
		if (k->tls == (c->proto == UPSTREAM_H2) && !k->goaway &&
		    k->nstreams < h2_capacity(k, uc))
			return k;
	}
	return NULL;
}

/* ---- requests ---- */

static bool skip_header(const char *name, size_t nl, const char *value, size_t vl)
{
	static const char *const hop[] = { "connection", "keep-alive", "proxy-connection",
					   "transfer-encoding", "upgrade", "host",
					   "content-length", NULL };

	for (int i = 0; hop[i]; i++)
		if (strlen(hop[i]) == nl && !strncasecmp(name, hop[i], nl))
			return true;
	/* TE: only "trailers" may go over HTTP/2 */
	return nl == 2 && !strncasecmp(name, "te", 2) && !(vl == 8 && !strncasecmp(value, "trailers", 8));
}

/* Submits the call's request on k; false on failure (nothing submitted). */
static bool h2_submit(struct client_call *c, struct h2conn *k, const char *authority)
{
	nghttp2_nv nv[HTTP_MAX_HEADERS + 5];
	char names[4096], clen[FMT_U64_MAX + 1];
	size_t used = 0;
	int n = 0;
	const char *h = c->headers_s ? c->headers_s : "";
	nghttp2_data_provider prd = { .read_callback = h2_read_body };
	int32_t id;

#define NV(nm, nlen, v, vlen)                                                                 \
	nv[n++] = (nghttp2_nv){ (uint8_t *)(nm), (uint8_t *)(v), (nlen), (vlen),               \
				NGHTTP2_NV_FLAG_NONE }
	NV(":method", 7, c->method_s, strlen(c->method_s));
	NV(":scheme", 7, k->tls ? "https" : "http", k->tls ? 5 : 4);
	NV(":authority", 10, authority, strlen(authority));
	NV(":path", 5, c->path_s, strlen(c->path_s));
	if (c->req_len != CLIENT_BODY_NONE && c->req_len != CLIENT_BODY_UNKNOWN) {
		size_t l = fmt_u64(clen, c->req_len);

		NV("content-length", 14, clen, l);
	}
	while (*h) {
		const char *eol = strstr(h, "\r\n"), *colon = memchr(h, ':', eol ? (size_t)(eol - h) : 0);
		const char *v;
		size_t nl, vl;

		if (!eol || !colon)
			return false;
		nl = colon - h;
		v = colon + 1;
		while (v < eol && (*v == ' ' || *v == '\t'))
			v++;
		vl = eol - v;
		while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
			vl--;
		if (!skip_header(h, nl, v, vl)) {
			if (n >= (int)(sizeof(nv) / sizeof(nv[0])) || used + nl > sizeof(names))
				return false;
			for (size_t i = 0; i < nl; i++) /* HTTP/2 field names are lower case */
				names[used + i] = (h[i] >= 'A' && h[i] <= 'Z') ? h[i] + 32 : h[i];
			NV(names + used, nl, v, vl);
			used += nl;
		}
		h = eol + 2;
	}
#undef NV
	id = nghttp2_submit_request(k->s, NULL, nv, n,
				    c->req_len == CLIENT_BODY_NONE || c->req_len == 0 ? NULL : &prd,
				    c);
	if (id < 0)
		return false;
	c->stream_id = id;
	return true;
}

static void h2_attach(struct client_call *c, struct h2conn *k)
{
	c->h2 = k;
	c->h2_prev = NULL;
	c->h2_next = k->calls;
	if (k->calls)
		k->calls->h2_prev = c;
	k->calls = c;
	k->nstreams++;
}

void h2_call_start(struct client_call *c, const struct target_config *tc)
{
	const struct upstream_config *uc = cl_call_upstream(c);
	struct client_pool *p = cl_pool_find(c->cl, tc->state, true);
	const char *authority = c->host ? c->host : uc->dns ? upstream_default_host(uc) : tc->address_text;
	struct h2conn *k = p ? h2_find(c, p, c->cfg->limits.idle_timeout_ms) : NULL;
	bool fresh = !k;

	if (!p) {
		cl_call_defer(c, CLIENT_ERR_NOMEM);
		return;
	}
	if (fresh) {
		k = h2_open(c, tc);
		if (!k) {
			c->last_err = CLIENT_ERR_CONNECT;
			cl_call_defer(c, CLIENT_ERR_CONNECT);
			return;
		}
		k->pool_next = p->h2;
		p->h2 = k;
	}
	c->stream_id = 0;
	c->hstate = 0;
	c->have_head = c->h2_complete = c->h2_closed = false;
	c->h2_err = CLIENT_OK;
	c->nhoff = c->ntrail_off = 0;
	c->hmem_len = 0;
	c->body_len = 0;
	c->rbuf_off = c->rbuf_len = 0;
	c->deferred_data = false;
	h2_attach(c, k);
	if (!h2_submit(c, k, authority)) {
		h2_unlink_call(c);
		if (fresh)
			h2_conn_close(k, CLIENT_ERR_NOMEM, false);
		cl_call_defer(c, CLIENT_ERR_NOMEM);
		return;
	}
	if (!k->connected) {
		c->connect_due_ms = clock_mono_ms() +
				    (uc->connect_timeout_ms ? uc->connect_timeout_ms : 1000);
		timer_add(c->cl->timers, &c->timer,
			  c->connect_due_ms < c->deadline_ms ? c->connect_due_ms : c->deadline_ms,
			  cl_call_timer_fire);
		return;
	}
	timer_add(c->cl->timers, &c->timer, c->deadline_ms, cl_call_timer_fire);
	h2_flush(k);
}

void h2_call_detach(struct client_call *c, bool cancel)
{
	struct h2conn *k = c->h2;

	if (!k)
		return;
	if (cancel && c->stream_id > 0 && k->s)
		nghttp2_submit_rst_stream(k->s, NGHTTP2_FLAG_NONE, c->stream_id, NGHTTP2_CANCEL);
	h2_unlink_call(c);
	if (!k->connected && !k->nstreams) {
		h2_conn_close(k, CLIENT_ERR_CONNECT, true); /* nobody waits for it */
		return;
	}
	h2_flush(k);
	h2_maybe_free(k);
}

void h2_call_kick(struct client_call *c)
{
	struct h2conn *k = c->h2;

	if (!k || c->stream_id <= 0)
		return;
	if (c->deferred_data) {
		c->deferred_data = false;
		nghttp2_session_resume_data(k->s, c->stream_id);
	}
	h2_flush(k);
}

/* The body a streaming caller took: grant that much window back. */
static void h2_consumed(struct client_call *c, size_t n)
{
	if (c->h2 && c->stream_id > 0 && n) {
		nghttp2_session_consume(c->h2->s, c->stream_id, n);
		h2_flush(c->h2);
	}
}

void h2_call_timeout(struct client_call *c)
{
	struct h2conn *k = c->h2;
	bool connecting = k && !k->connected;

	if (connecting && clock_mono_ms() < c->deadline_ms) {
		h2_call_detach(c, false);
		cl_count(c, OUTCOME_CONNECT_ERROR, true);
		c->last_err = CLIENT_ERR_CONNECT;
		c->retry_pending = true;
		c->retry_connecting = true;
		c->h2_closed = true;
		c->h2_err = CLIENT_ERR_CONNECT;
		h2_schedule(c);
		return;
	}
	cl_count(c, OUTCOME_TIMEOUT, !c->have_head);
	h2_call_detach(c, true);
	c->retry_pending = false;
	c->h2_closed = true;
	c->h2_err = CLIENT_ERR_TIMEOUT;
	h2_schedule(c);
}

/* Builds the header views (the arena may have moved since the fields came). */
static bool h2_views(struct client_call *c)
{
	free(c->hdr_view);
	c->hdr_view = calloc(c->nhoff + 1, sizeof(*c->hdr_view));
	if (!c->hdr_view)
		return false;
	for (int i = 0; i < c->nhoff; i++)
		c->hdr_view[i] = (struct http_header){
			{ c->hmem + c->hoff[i][0], c->hoff[i][1] },
			{ c->hmem + c->hoff[i][2], c->hoff[i][3] },
		};
	return true;
}

static void h2_head_view(struct client_call *c)
{
	struct http_response *r = &c->h2resp;
	int nh = c->hstate == 3 ? c->ntrail_off : c->nhoff;
	const struct http_header *cl;

	r->minor_version = 1;
	r->reason = (struct http_str){ "", 0 };
	r->nheaders = nh > HTTP_MAX_HEADERS ? HTTP_MAX_HEADERS : nh;
	memcpy(r->headers, c->hdr_view, r->nheaders * sizeof(r->headers[0]));
	cl = http_find_header(r->headers, r->nheaders, "content-length");
	r->body = HTTP_BODY_EOF;
	r->keep_alive = true;
	if (cl) {
		r->body = HTTP_BODY_LENGTH;
		r->content_length = strtoull(cl->value.p, NULL, 10);
	}
}

void h2_fill_response(struct client_call *c, struct client_response *r)
{
	if (!h2_views(c)) {
		r->err = CLIENT_ERR_NOMEM;
		return;
	}
	h2_head_view(c);
	r->status = c->h2resp.status;
	r->head = &c->h2resp;
	r->body = c->body ? c->body : "";
	r->body_len = c->body_len;
	if (c->hstate == 3) {
		r->trailers = c->hdr_view + c->ntrail_off;
		r->ntrailers = c->nhoff - c->ntrail_off;
	}
}

/* Calls a user callback with the cancel guard; false when the call is gone. */
#define USER_CB(c, expr)                                                                      \
	do {                                                                                  \
		(c)->in_cb = true;                                                            \
		expr;                                                                         \
		(c)->in_cb = false;                                                           \
		if ((c)->cancelled) {                                                         \
			client_cancel(c);                                                     \
			return false;                                                         \
		}                                                                             \
	} while (0)

/* Streaming delivery: head, data while the caller takes it, trailers; true when the
 * call is still there. */
static bool h2_deliver(struct client_call *c)
{
	if (c->have_head && !c->head_delivered) {
		c->head_delivered = true;
		if (!h2_views(c)) {
			c->h2_closed = true;
			c->h2_err = CLIENT_ERR_NOMEM;
			h2_call_detach(c, true);
			return true;
		}
		h2_head_view(c);
		if (c->cbs.on_head)
			USER_CB(c, c->cbs.on_head(c->arg, &c->h2resp));
	}
	while (c->head_delivered && c->rbuf_len > c->rbuf_off) {
		size_t n = c->rbuf_len - c->rbuf_off, took = n;

		if (c->cbs.on_data)
			USER_CB(c, took = c->cbs.on_data(c->arg, c->rbuf + c->rbuf_off, n));
		if (took > n)
			took = n;
		c->rbuf_off += took;
		h2_consumed(c, took);
		if (took < n)
			return true; /* paused until client_stream_resume */
	}
	c->rbuf_off = c->rbuf_len = 0;
	if (c->h2_closed && c->h2_err == CLIENT_OK && c->hstate == 3 && !c->trailers_delivered) {
		c->trailers_delivered = true;
		if (h2_views(c) && c->cbs.on_trailers)
			USER_CB(c, c->cbs.on_trailers(c->arg, c->hdr_view + c->ntrail_off,
						      c->nhoff - c->ntrail_off));
	}
	if (c->want_writable && c->sbuf_len < CLIENT_STREAM_BUF && !c->h2_closed) {
		c->want_writable = false;
		if (c->cbs.on_writable)
			USER_CB(c, c->cbs.on_writable(c->arg));
	}
	return true;
}

static void h2_retry(struct client_call *c)
{
	c->retry_pending = false;
	c->h2_closed = false;
	cl_release_active(c);
	if (c->retry_connecting) {
		/* a failed connect: another target while `retries` allows */
		c->last_err = CLIENT_ERR_CONNECT;
		if (c->attempts > cl_call_upstream(c)->retries) {
			cl_call_finish(c, CLIENT_ERR_CONNECT, false);
			return;
		}
	} else {
		/* refused before it was processed: once more, on a new connection */
		c->h2_retried = true;
		c->tried &= ~(1ull << c->target);
		c->attempts--;
	}
	c->sbuf_off = 0;
	cl_call_attempt(c);
}

void h2_call_event_fire(struct timer *t)
{
	struct client_call *c = (struct client_call *)((char *)t - offsetof(struct client_call, ev));

	if (c->retry_pending) {
		/* a streaming body already handed to the old stream cannot be sent again */
		if (!(c->streaming && c->body_sent)) {
			h2_retry(c);
			return;
		}
		c->retry_pending = false;
	}
	if (c->streaming && !h2_deliver(c))
		return;
	if (!c->h2_closed)
		return;
	if (c->streaming && c->rbuf_len > c->rbuf_off && c->h2_err == CLIENT_OK)
		return; /* the caller still has body to take */
	cl_call_finish(c, c->h2_err, false);
}

void h2_conn_free_all(struct http_client *cl)
{
	while (cl->h2all) {
		struct h2conn *k = cl->h2all;

		for (struct client_call *c = k->calls; c; c = c->h2_next)
			c->h2 = NULL;
		k->calls = NULL;
		h2_free_now(k);
	}
	SSL_CTX_free(cl->h2_tls);
}

unsigned h2_idle_count(const struct http_client *cl)
{
	unsigned n = 0;

	for (const struct h2conn *k = cl->h2all; k; k = k->all_next)
		n += !k->closing && !k->nstreams;
	return n;
}

unsigned client_h2_connections(const struct http_client *cl)
{
	unsigned n = 0;

	for (const struct h2conn *k = cl->h2all; k; k = k->all_next)
		n += !k->closing;
	return n;
}
