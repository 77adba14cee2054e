/*
 * The worker's HTTP/1.1 client (see client.h). A call owns at most one connection at a
 * time; a connection belongs to a call, to its target's idle pool, or to nobody while it
 * waits for its last completions before the socket is closed and the memory freed (the
 * ring_op rule: nothing the kernel may still complete into is freed early).
 */
#include "client/client.h"
#include "client/internal.h"

#include <errno.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/fmt.h"
#include "config/config.h"
#include "loop/ring.h"
#include "loop/timer.h"
#include "metrics/metrics.h"
#include "upstream/dns.h"
#include "upstream/upstream.h"


static const char *const error_names[] = {
	[CLIENT_OK] = "ok",
	[CLIENT_ERR_NO_TARGET] = "no available target",
	[CLIENT_ERR_CONNECT] = "connect failed",
	[CLIENT_ERR_TIMEOUT] = "timeout",
	[CLIENT_ERR_RESET] = "connection closed",
	[CLIENT_ERR_PROTOCOL] = "invalid response",
	[CLIENT_ERR_TOO_LARGE] = "response too large",
	[CLIENT_ERR_NOMEM] = "out of memory",
	[CLIENT_ERR_QUEUE_TIMEOUT] = "upstream queue timeout",
};

const char *client_error_name(enum client_error e)
{
	return (unsigned)e < sizeof(error_names) / sizeof(error_names[0]) ? error_names[e] : "?";
}

static struct cconn *conn_of_tx(struct ring_op *op)
{
	return (struct cconn *)((char *)op - offsetof(struct cconn, op_tx));
}

static struct cconn *conn_of_rx(struct ring_op *op)
{
	return (struct cconn *)((char *)op - offsetof(struct cconn, op_rx));
}

const struct upstream_config *cl_call_upstream(const struct client_call *c)
{
	return c->uc ? c->uc : &c->cfg->upstreams[c->upstream];
}

const struct target_config *cl_call_target(const struct client_call *c)
{
	return c->target >= 0 ? &cl_call_upstream(c)->targets[c->target] : NULL;
}

/* ---- connections ---- */

static void conn_free_now(struct cconn *k)
{
	if (k->all_prev)
		k->all_prev->all_next = k->all_next;
	else
		k->cl->all = k->all_next;
	if (k->all_next)
		k->all_next->all_prev = k->all_prev;
	if (k->fd >= 0)
		close(k->fd);
	SSL_free(k->ssl);
	free(k->raw);
	free(k->tls_out);
	free(k->in);
	free(k);
}

static void conn_maybe_free(struct cconn *k)
{
	if (k->closing && !k->tx_armed && !k->rx_armed)
		conn_free_now(k);
}

/* Closes the connection once its armed operations have completed (cancelled now). */
static void conn_close(struct cconn *k)
{
	k->call = NULL;
	k->closing = true;
	if (k->tx_armed)
		ring_op_cancel(k->cl->ring, &k->op_tx);
	if (k->rx_armed)
		ring_op_cancel(k->cl->ring, &k->op_rx);
	conn_maybe_free(k);
}

struct client_pool *cl_pool_find(struct http_client *cl, struct target_state *ts, bool create)
{
	struct client_pool *p;

	for (int i = 0; i < cl->npools; i++)
		if (cl->pools[i].ts == ts)
			return &cl->pools[i];
	if (!create)
		return NULL;
	p = realloc(cl->pools, (cl->npools + 1) * sizeof(*p));
	if (!p)
		return NULL;
	cl->pools = p;
	p = &cl->pools[cl->npools++];
	memset(p, 0, sizeof(*p));
	p->ts = ts;
	return p;
}

/* An idle connection is usable when the upstream neither closed it nor sent bytes nobody
 * asked for (they would be taken as the next response). */
static bool conn_idle_clean(struct cconn *k)
{
	char ch;
	ssize_t n = recv(k->fd, &ch, 1, MSG_PEEK | MSG_DONTWAIT);

	return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

static struct cconn *pool_take(struct http_client *cl, struct target_state *ts,
			       uint32_t idle_timeout_ms)
{
	struct client_pool *p = cl_pool_find(cl, ts, false);
	uint64_t now = clock_mono_ms();

	while (p && p->idle) {
		struct cconn *k = p->idle;

		p->idle = k->next_idle;
		p->nidle--;
		k->next_idle = NULL;
		if (now - k->idle_since_ms <= idle_timeout_ms && conn_idle_clean(k)) {
			k->reused = true;
			return k;
		}
		conn_close(k);
	}
	return NULL;
}

static void pool_put(struct http_client *cl, struct cconn *k, unsigned keepalive)
{
	struct client_pool *p = cl_pool_find(cl, k->ts, true);

	k->call = NULL;
	if (!p || p->nidle >= keepalive || k->tx_armed || k->rx_armed) {
		conn_close(k);
		return;
	}
	k->in_len = 0;
	k->idle_since_ms = clock_mono_ms();
	k->next_idle = p->idle;
	p->idle = k;
	p->nidle++;
}

static void conn_arm_rx(struct cconn *k);
static void conn_arm_tx(struct cconn *k);
static void conn_start(struct cconn *k);
static bool tls_flush(struct cconn *k);
static bool conn_room(struct cconn *k, size_t want);
static void call_progress(struct client_call *c);
static void call_conn_failed(struct client_call *c, enum client_error err, bool connecting);
void cl_call_attempt(struct client_call *c);

/* ---- TLS over the ring ---- */

/* Sends what OpenSSL wrote into its output BIO (nothing while a send is in flight).
 * false when it failed the call (which may be gone). */
static bool tls_flush(struct cconn *k)
{
	BIO *wbio = SSL_get_wbio(k->ssl);
	struct io_uring_sqe *sqe;
	size_t pend;
	int n;

	if (k->tx_armed)
		return true;
	if (k->tls_out_sent == k->tls_out_len) {
		pend = BIO_ctrl_pending(wbio);
		if (!pend)
			return true;
		if (pend > k->tls_out_cap) {
			char *p = realloc(k->tls_out, pend);

			if (!p) {
				call_conn_failed(k->call, CLIENT_ERR_NOMEM, false);
				return false;
			}
			k->tls_out = p;
			k->tls_out_cap = pend;
		}
		n = BIO_read(wbio, k->tls_out, pend);
		if (n <= 0)
			return true;
		k->tls_out_len = n;
		k->tls_out_sent = 0;
	}
	sqe = ring_get_sqe(k->cl->ring);
	io_uring_prep_send(sqe, k->fd, k->tls_out + k->tls_out_sent,
			   k->tls_out_len - k->tls_out_sent, MSG_NOSIGNAL);
	ring_op_set(sqe, &k->op_tx);
	k->tx_armed = true;
	return true;
}

/* Handshake, then the request: false when the connection failed (the call moved on). */
static bool tls_advance(struct cconn *k)
{
	struct client_call *c = k->call;
	size_t n;
	int r;

	if (!k->tls_ready) {
		r = SSL_do_handshake(k->ssl);
		if (r != 1) {
			r = SSL_get_error(k->ssl, r);
			if (r != SSL_ERROR_WANT_READ && r != SSL_ERROR_WANT_WRITE) {
				ERR_clear_error();
				/* e.g. a refused certificate: a failed connect */
				call_conn_failed(c, CLIENT_ERR_CONNECT, true);
				return false;
			}
			return tls_flush(k);
		}
		k->tls_ready = true;
	}
	if (c->out_sent < c->out_len) {
		if (SSL_write_ex(k->ssl, c->out + c->out_sent, c->out_len - c->out_sent, &n) != 1) {
			ERR_clear_error();
			call_conn_failed(c, CLIENT_ERR_RESET, false);
			return false;
		}
		c->out_sent += n;
	}
	return tls_flush(k);
}

/* Decrypts what arrived into `in`: 1 plaintext came, 0 none yet, -1 failed (call moved
 * on), -2 the server closed the TLS session (close_notify). */
static int tls_take(struct cconn *k)
{
	int got = 0, r;
	size_t n;

	for (;;) {
		if (!conn_room(k, CONN_READ_CHUNK)) {
			call_conn_failed(k->call, CLIENT_ERR_NOMEM, false);
			return -1;
		}
		if (SSL_read_ex(k->ssl, k->in + k->in_len, k->in_cap - k->in_len, &n) == 1) {
			k->in_len += n;
			got = 1;
			continue;
		}
		r = SSL_get_error(k->ssl, 0);
		if (r == SSL_ERROR_WANT_READ || r == SSL_ERROR_WANT_WRITE)
			break;
		ERR_clear_error();
		if (r == SSL_ERROR_ZERO_RETURN)
			return got ? 1 : -2;
		call_conn_failed(k->call, CLIENT_ERR_RESET, false);
		return -1;
	}
	/* a key update may want to answer */
	return tls_flush(k) ? got : -1;
}

/* The connection is up (fresh) or taken from the pool: send the request. */
static void conn_start(struct cconn *k)
{
	if (k->ssl) {
		if (tls_advance(k))
			conn_arm_rx(k);
		return;
	}
	conn_arm_tx(k);
	conn_arm_rx(k);
}

static void on_tx(struct ring_op *op, const struct io_uring_cqe *cqe)
{
	struct cconn *k = conn_of_tx(op);
	struct client_call *c = k->call;

	k->tx_armed = false;
	if (k->closing || !c) {
		conn_maybe_free(k);
		return;
	}
	if (!k->connected) {
		if (cqe->res < 0) {
			call_conn_failed(c, CLIENT_ERR_CONNECT, true);
			return;
		}
		k->connected = true;
		c->connect_due_ms = 0;
		timer_add(c->cl->timers, &c->timer, c->deadline_ms, c->timer.fire);
		conn_start(k);
		return;
	}
	if (cqe->res <= 0) {
		call_conn_failed(c, CLIENT_ERR_RESET, false);
		return;
	}
	if (k->ssl) {
		k->tls_out_sent += cqe->res;
		tls_flush(k);
		return;
	}
	c->out_sent += cqe->res;
	if (c->out_sent < c->out_len)
		conn_arm_tx(k);
}

static void on_rx_tls(struct cconn *k, int nbytes)
{
	struct client_call *c = k->call;
	int r;

	if (BIO_write(SSL_get_rbio(k->ssl), k->raw, nbytes) != nbytes) {
		call_conn_failed(c, CLIENT_ERR_NOMEM, false);
		return;
	}
	if (!k->tls_ready) {
		if (!tls_advance(k))
			return;
		if (!k->tls_ready) {
			conn_arm_rx(k);
			return;
		}
	}
	r = tls_take(k);
	if (r == -1)
		return;
	if (r == -2) {
		/* close_notify: the end of a close-delimited body, else too early */
		if (c->have_head && c->resp.body == HTTP_BODY_EOF) {
			c->eof = true;
			call_progress(c);
			return;
		}
		call_conn_failed(c, CLIENT_ERR_RESET, false);
		return;
	}
	if (r == 0) {
		conn_arm_rx(k);
		return;
	}
	call_progress(c);
}

static void on_rx(struct ring_op *op, const struct io_uring_cqe *cqe)
{
	struct cconn *k = conn_of_rx(op);
	struct client_call *c = k->call;

	k->rx_armed = false;
	if (k->closing || !c) {
		conn_maybe_free(k);
		return;
	}
	if (cqe->res < 0) {
		call_conn_failed(c, CLIENT_ERR_RESET, false);
		return;
	}
	if (cqe->res == 0) {
		/* The upstream closed: the end of a close-delimited body, else too early. */
		if (c->have_head && c->resp.body == HTTP_BODY_EOF) {
			c->eof = true;
			call_progress(c);
			return;
		}
		call_conn_failed(c, CLIENT_ERR_RESET, false);
		return;
	}
	k->got_bytes = true;
	if (k->ssl) {
		on_rx_tls(k, cqe->res);
		return;
	}
	k->in_len += cqe->res;
	call_progress(c);
}

static void conn_arm_tx(struct cconn *k)
{
	struct client_call *c = k->call;
	struct io_uring_sqe *sqe = ring_get_sqe(k->cl->ring);

	io_uring_prep_send(sqe, k->fd, c->out + c->out_sent, c->out_len - c->out_sent,
			   MSG_NOSIGNAL);
	ring_op_set(sqe, &k->op_tx);
	k->tx_armed = true;
}

static bool conn_room(struct cconn *k, size_t want)
{
	char *p;
	size_t cap;

	if (k->in_cap - k->in_len >= want)
		return true;
	cap = k->in_cap ? k->in_cap : CONN_READ_CHUNK;
	while (cap - k->in_len < want)
		cap *= 2;
	p = realloc(k->in, cap);
	if (!p)
		return false;
	k->in = p;
	k->in_cap = cap;
	return true;
}

static void conn_arm_rx(struct cconn *k)
{
	struct io_uring_sqe *sqe;

	if (k->rx_armed)
		return;
	if (k->ssl) {
		sqe = ring_get_sqe(k->cl->ring);
		io_uring_prep_recv(sqe, k->fd, k->raw, TLS_RAW_CHUNK, 0);
		ring_op_set(sqe, &k->op_rx);
		k->rx_armed = true;
		return;
	}
	if (!conn_room(k, CONN_READ_CHUNK)) {
		call_conn_failed(k->call, CLIENT_ERR_NOMEM, false);
		return;
	}
	sqe = ring_get_sqe(k->cl->ring);
	io_uring_prep_recv(sqe, k->fd, k->in + k->in_len, k->in_cap - k->in_len, 0);
	ring_op_set(sqe, &k->op_rx);
	k->rx_armed = true;
}

/* A client SSL on memory BIOs, verifying the peer as `name` (an IP literal: its IP SAN). */
SSL *cl_tls_new(SSL_CTX *ctx, const char *name)
{
	SSL *ssl = SSL_new(ctx);
	BIO *rbio = BIO_new(BIO_s_mem()), *wbio = BIO_new(BIO_s_mem());
	unsigned char ip[16];
	bool is_ip = inet_pton(AF_INET, name, ip) == 1 || inet_pton(AF_INET6, name, ip) == 1;

	if (!ssl || !rbio || !wbio) {
		SSL_free(ssl);
		BIO_free(rbio);
		BIO_free(wbio);
		return NULL;
	}
	BIO_set_mem_eof_return(rbio, -1); /* empty means "more to come", not EOF */
	SSL_set_bio(ssl, rbio, wbio);
	SSL_set_connect_state(ssl);
	if (is_ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name) != 1
		  : SSL_set_tlsext_host_name(ssl, name) != 1 || SSL_set1_host(ssl, name) != 1) {
		SSL_free(ssl);
		return NULL;
	}
	return ssl;
}

static struct cconn *conn_open(struct http_client *cl, const struct target_config *tc, SSL_CTX *tls,
			       const char *tls_name)
{
	struct cconn *k;
	struct io_uring_sqe *sqe;
	int one = 1;
	int fd = socket(tc->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return NULL;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	k = calloc(1, sizeof(*k));
	if (k && tls) {
		k->ssl = cl_tls_new(tls, tls_name);
		k->raw = malloc(TLS_RAW_CHUNK);
	}
	if (!k || (tls && (!k->ssl || !k->raw))) {
		if (k) {
			SSL_free(k->ssl);
			free(k->raw);
			free(k);
		}
		close(fd);
		return NULL;
	}
	k->op_tx.complete = on_tx;
	k->op_rx.complete = on_rx;
	k->cl = cl;
	k->fd = fd;
	k->ts = tc->state;
	k->all_next = cl->all;
	if (cl->all)
		cl->all->all_prev = k;
	cl->all = k;
	sqe = ring_get_sqe(cl->ring);
	io_uring_prep_connect(sqe, fd, (const struct sockaddr *)&tc->addr, tc->addrlen);
	ring_op_set(sqe, &k->op_tx);
	k->tx_armed = true;
	return k;
}

/* ---- calls ---- */

void cl_call_free(struct client_call *c)
{
	free(c->line);
	free(c->suffix);
	free(c->host);
	free(c->tls_name);
	free(c->out);
	free(c->body);
	free(c->method_s);
	free(c->path_s);
	free(c->headers_s);
	free(c->sbuf);
	free(c->req_trailers);
	free(c->req_trailer_mem);
	free(c->hmem);
	free(c->hoff);
	free(c->hdr_view);
	free(c->rbuf);
	free(c);
}

void cl_count(struct client_call *c, enum upstream_outcome outcome, bool report)
{
	const struct target_config *tc = cl_call_target(c);

	if (!tc)
		return;
	metrics_upstream_request(c->cl->metrics, tc->metrics_slot, outcome);
	if (report)
		target_report(tc->state, &cl_call_upstream(c)->breaker, outcome == OUTCOME_SUCCESS,
			      clock_mono_ms());
}

void cl_release_active(struct client_call *c)
{
	if (c->counted_active) {
		atomic_fetch_sub(&cl_call_target(c)->state->active, 1);
		c->counted_active = false;
	}
}

/* Ends a wait for a slot: it got one, timed out, or the call ended otherwise. */
void cl_wait_end(struct client_call *c, bool got, bool timed_out)
{
	struct upstream_queue_stats *qs = cl_call_upstream(c)->queue;

	if (!c->waiting)
		return;
	c->waiting = false;
	if (!qs)
		return;
	atomic_fetch_sub(&qs->depth, 1);
	if (got) {
		atomic_fetch_add(&qs->dequeued, 1);
		atomic_fetch_add(&qs->wait_us, (clock_mono_ns() - c->wait_start_ns) / 1000);
	} else if (timed_out) {
		atomic_fetch_add(&qs->timeouts, 1);
	}
}

/* Delivers the outcome and frees the call; the connection goes back to the pool when the
 * response was complete and nothing follows it. */
void cl_call_finish(struct client_call *c, enum client_error err, bool reusable)
{
	struct client_response r = { .err = err, .target = "" };
	const struct target_config *tc = cl_call_target(c);
	struct cconn *k = c->conn;
	struct http_response resp;
	struct http_limits lim = { .max_header_bytes = c->head_len, .max_request_line = 0 };

	timer_del(c->cl->timers, &c->timer);
	timer_del(c->cl->timers, &c->ev);
	cl_release_active(c);
	cl_wait_end(c, false, err == CLIENT_ERR_QUEUE_TIMEOUT);
	if (c->h2)
		h2_call_detach(c, err != CLIENT_OK);
	if (tc)
		r.target = tc->address_text;
	r.duration_us = (clock_mono_ns() - c->start_ns) / 1000;
	if (c->streaming) {
		c->cbs.on_done(c->arg, err, r.target);
		if (k) {
			c->conn = NULL;
			if (reusable && err == CLIENT_OK)
				pool_put(c->cl, k, cl_call_upstream(c)->keepalive);
			else
				conn_close(k);
		}
		cl_call_free(c);
		return;
	}
	if (err == CLIENT_OK && c->proto != UPSTREAM_HTTP1) {
		h2_fill_response(c, &r);
	} else if (err == CLIENT_OK) {
		/* Parsed again: the buffer may have moved since the head was first parsed. */
		if (http_parse_response(k->in, c->head_len, &lim, c->method, &resp) <= 0) {
			r.err = CLIENT_ERR_PROTOCOL;
			reusable = false;
		} else {
			resp.body = c->resp.body;
			resp.keep_alive = c->resp.keep_alive;
			r.status = resp.status;
			r.head = &resp;
			if (c->resp.body == HTTP_BODY_CHUNKED) {
				r.body = c->body ? c->body : "";
				r.body_len = c->body_len;
			} else {
				r.body = k->in + c->head_len;
				r.body_len = k->in_len - c->head_len;
			}
		}
	}
	c->done(c->arg, &r);
	if (k) {
		c->conn = NULL;
		if (reusable && r.err == CLIENT_OK)
			pool_put(c->cl, k, cl_call_upstream(c)->keepalive);
		else
			conn_close(k);
	}
	cl_call_free(c);
}

static void call_deferred_fire(struct client_call *c)
{
	cl_call_finish(c, c->deferred, false);
}

void cl_call_timer_fire(struct timer *t)
{
	struct client_call *c = (struct client_call *)((char *)t - offsetof(struct client_call, timer));
	uint64_t now = clock_mono_ms();

	if (c->deferring) {
		call_deferred_fire(c);
		return;
	}
	if (c->waiting) {
		cl_call_attempt(c);
		return;
	}
	if (c->proto != UPSTREAM_HTTP1) {
		h2_call_timeout(c);
		return;
	}
	if (c->connect_due_ms && now < c->deadline_ms) {
		call_conn_failed(c, CLIENT_ERR_CONNECT, true); /* connect timeout: next target */
		return;
	}
	cl_count(c, OUTCOME_TIMEOUT, !c->have_head);
	cl_call_finish(c, CLIENT_ERR_TIMEOUT, false);
}

/* Fails the call from the timer heap, so the caller never sees its callback early. */
void cl_call_defer(struct client_call *c, enum client_error err)
{
	c->deferring = true;
	c->deferred = err;
	if (!timer_add(c->cl->timers, &c->timer, 0, cl_call_timer_fire))
		cl_call_finish(c, err, false); /* cannot happen with a heap that has room */
}

static bool build_out(struct client_call *c, const char *host)
{
	size_t line = strlen(c->line), hl = strlen(host);
	size_t n = line + 6 + hl + 2 + c->suffix_len;

	free(c->out);
	c->out = malloc(n);
	if (!c->out)
		return false;
	memcpy(c->out, c->line, line);
	memcpy(c->out + line, "Host: ", 6);
	memcpy(c->out + line + 6, host, hl);
	memcpy(c->out + line + 6 + hl, "\r\n", 2);
	memcpy(c->out + line + 8 + hl, c->suffix, c->suffix_len);
	c->out_len = n;
	c->out_sent = 0;
	return true;
}

static struct balance_rr *client_rr(struct http_client *cl, const struct xg_config *cfg,
				    int upstream)
{
	if (cl->rr_cfg != cfg || upstream >= cl->nrr) {
		struct balance_rr *rr = calloc(cfg->nupstreams + 1, sizeof(*rr));

		if (!rr)
			return NULL;
		free(cl->rr);
		cl->rr = rr;
		cl->nrr = cfg->nupstreams;
		cl->rr_cfg = cfg;
	}
	return &cl->rr[upstream];
}

static void reset_response(struct client_call *c)
{
	c->have_head = false;
	c->eof = false;
	c->head_len = 0;
	c->raw_done = 0;
	c->body_len = 0;
	http_chunked_init(&c->chunked);
}

/* Sends the request on k (fresh: after its connect; pooled: now). */
static void call_use_conn(struct client_call *c, struct cconn *k, bool fresh)
{
	const struct upstream_config *uc = cl_call_upstream(c);

	c->conn = k;
	k->call = c;
	k->got_bytes = false;
	k->in_len = 0;
	reset_response(c);
	if (fresh) {
		k->reused = false;
		c->connect_due_ms = clock_mono_ms() + (uc->connect_timeout_ms ? uc->connect_timeout_ms : 1000);
		timer_add(c->cl->timers, &c->timer,
			  c->connect_due_ms < c->deadline_ms ? c->connect_due_ms : c->deadline_ms,
			  cl_call_timer_fire);
		return;
	}
	conn_start(k);
}

/*
 * Picks a target and claims one of its in-flight slots, as the proxy does: targets at
 * max_conns_per_target are skipped; *all_full when only such targets are left.
 */
static int pick_with_slot(struct client_call *c, struct balance_rr *rr, bool *all_full)
{
	const struct upstream_config *uc = cl_call_upstream(c);
	uint32_t cap = uc->max_conns_per_target;
	uint64_t full = 0, now = clock_mono_ms();
	int idx;

	*all_full = false;
	for (int tries = 0; tries < UPSTREAM_MAX_TARGETS; tries++) {
		int n = __atomic_load_n(&uc->ntargets, __ATOMIC_ACQUIRE);

		for (int i = 0; cap && i < n && i < UPSTREAM_MAX_TARGETS; i++)
			if (atomic_load(&uc->targets[i].state->active) >= (int)cap)
				full |= 1ull << i;
		idx = balance_pick(uc, rr, c->hash, c->tried | full, now);
		if (idx < 0) {
			*all_full = (full & ~c->tried) != 0;
			return -1;
		}
		if (target_claim_slot(uc->targets[idx].state, cap))
			return idx;
		full |= 1ull << idx; /* another request took its last slot meanwhile */
	}
	*all_full = true;
	return -1;
}

/* Every target is full: poll again soon, until queue_timeout_ms (or the deadline). */
static void call_wait(struct client_call *c)
{
	const struct upstream_config *uc = cl_call_upstream(c);
	uint64_t now = clock_mono_ms(), due;

	if (!c->waiting) {
		c->waiting = true;
		c->wait_start_ns = clock_mono_ns();
		c->wait_until_ms = now + uc->queue_timeout_ms;
		if (c->wait_until_ms > c->deadline_ms)
			c->wait_until_ms = c->deadline_ms;
		if (uc->queue)
			atomic_fetch_add(&uc->queue->depth, 1);
	}
	if (now >= c->wait_until_ms) {
		cl_call_defer(c, now >= c->deadline_ms ? CLIENT_ERR_TIMEOUT : CLIENT_ERR_QUEUE_TIMEOUT);
		return;
	}
	due = now + CLIENT_QUEUE_POLL_MS;
	if (!timer_add(c->cl->timers, &c->timer, due < c->wait_until_ms ? due : c->wait_until_ms,
		       cl_call_timer_fire))
		cl_call_defer(c, CLIENT_ERR_NOMEM);
}

/* Picks a target and starts on it, waits for a slot, or fails the call (deferred). */
void cl_call_attempt(struct client_call *c)
{
	const struct upstream_config *uc = cl_call_upstream(c);
	struct balance_rr local, *rr = c->uc ? NULL : client_rr(c->cl, c->cfg, c->upstream);
	const struct target_config *tc;
	struct cconn *k;
	bool all_full;
	int idx;

	if (!rr) {
		memset(&local, 0, sizeof(local));
		rr = &local;
	}
	idx = pick_with_slot(c, rr, &all_full);
	if (idx < 0 && all_full) {
		call_wait(c);
		return;
	}
	cl_wait_end(c, idx >= 0, false);
	if (idx < 0) {
		cl_call_defer(c, c->tried ? c->last_err : CLIENT_ERR_NO_TARGET);
		return;
	}
	c->target = idx;
	c->tried |= 1ull << idx;
	c->attempts++;
	tc = &uc->targets[idx];
	c->counted_active = true; /* pick_with_slot claimed it */
	if (c->proto != UPSTREAM_HTTP1) {
		h2_call_start(c, tc);
		return;
	}
	if (!build_out(c, c->host ? c->host : uc->dns ? upstream_default_host(uc) : tc->address_text)) {
		cl_call_defer(c, CLIENT_ERR_NOMEM);
		return;
	}
	k = pool_take(c->cl, tc->state, c->cfg->limits.idle_timeout_ms);
	if (k) {
		call_use_conn(c, k, false);
		return;
	}
	k = conn_open(c->cl, tc, c->tls, c->tls_name);
	if (!k) {
		c->last_err = CLIENT_ERR_CONNECT;
		cl_call_defer(c, CLIENT_ERR_CONNECT);
		return;
	}
	call_use_conn(c, k, true);
}

/*
 * The connection failed. A connect failure moves to another target while `retries`
 * allows; a pooled connection the upstream had closed before answering is replaced by a
 * fresh one once (the request never reached an application); anything else ends the call.
 */
static void call_conn_failed(struct client_call *c, enum client_error err, bool connecting)
{
	struct cconn *k = c->conn;
	bool stale = k && k->reused && !k->got_bytes && !connecting;

	c->conn = NULL;
	if (k)
		conn_close(k);
	c->connect_due_ms = 0;
	if (stale && !c->stale_retried) {
		c->stale_retried = true;
		c->tried &= ~(1ull << c->target);
		c->attempts--;
		cl_release_active(c);
		cl_call_attempt(c);
		return;
	}
	cl_count(c, connecting ? OUTCOME_CONNECT_ERROR : (err == CLIENT_ERR_PROTOCOL ? OUTCOME_PROTOCOL_ERROR : OUTCOME_RESET),
	      !c->have_head);
	c->last_err = err;
	if (connecting && c->attempts <= cl_call_upstream(c)->retries) {
		cl_release_active(c);
		cl_call_attempt(c);
		return;
	}
	cl_call_finish(c, err, false);
}

/* Decodes the chunked bytes received since the last call into c->body. */
static int take_chunked(struct client_call *c)
{
	struct cconn *k = c->conn;
	size_t start = c->head_len + c->raw_done;
	struct http_span spans[64];

	while (start < k->in_len && !c->chunked.done) {
		size_t nspans = 64;
		ssize_t used = http_chunked_scan(&c->chunked, k->in + start, k->in_len - start,
						 spans, &nspans);

		if (used < 0)
			return -1;
		for (size_t i = 0; i < nspans; i++) {
			size_t need = c->body_len + spans[i].len;

			if (need > c->max_body)
				return -2;
			if (need > c->body_cap) {
				size_t cap = c->body_cap ? c->body_cap : 4096;
				char *p;

				while (cap < need)
					cap *= 2;
				p = realloc(c->body, cap);
				if (!p)
					return -3;
				c->body = p;
				c->body_cap = cap;
			}
			memcpy(c->body + c->body_len, k->in + start + spans[i].off, spans[i].len);
			c->body_len += spans[i].len;
		}
		start += used;
		if (used == 0)
			break;
	}
	/* Decoded raw bytes are dropped, so the buffer holds the head and a partial chunk. */
	memmove(k->in + c->head_len, k->in + start, k->in_len - start);
	k->in_len -= start - c->head_len;
	c->raw_done = 0;
	return 0;
}

static bool parse_head(struct client_call *c)
{
	struct cconn *k = c->conn;
	struct http_limits lim = { .max_header_bytes = c->cfg->limits.max_header_bytes };
	int r;

	for (;;) {
		r = http_parse_response(k->in, k->in_len, &lim, c->method, &c->resp);
		if (r <= 0)
			break;
		if (c->resp.status >= 200)
			break;
		if (c->resp.status == 101) {
			r = -1; /* nobody asked for an upgrade */
			break;
		}
		/* 1xx interim responses: dropped, the final one follows. */
		memmove(k->in, k->in + r, k->in_len - r);
		k->in_len -= r;
	}
	if (r < 0) {
		call_conn_failed(c, CLIENT_ERR_PROTOCOL, false);
		return false;
	}
	if (r == 0) {
		conn_arm_rx(k);
		return false;
	}
	c->have_head = true;
	c->head_len = r;
	c->connect_due_ms = 0;
	cl_count(c, OUTCOME_SUCCESS, true);
	if (c->resp.body == HTTP_BODY_LENGTH && c->resp.content_length > c->max_body) {
		cl_call_finish(c, CLIENT_ERR_TOO_LARGE, false);
		return false;
	}
	return true;
}

/* Whatever arrived: parse the head, take body bytes, finish when the body is complete. */
static void call_progress(struct client_call *c)
{
	struct cconn *k = c->conn;
	size_t have;
	int r;

	if (!c->have_head && !parse_head(c))
		return;
	have = k->in_len - c->head_len;
	switch (c->resp.body) {
	case HTTP_BODY_NONE:
		cl_call_finish(c, CLIENT_OK, have == 0 && c->resp.keep_alive);
		return;
	case HTTP_BODY_LENGTH:
		if (have >= c->resp.content_length) {
			bool exact = have == c->resp.content_length;

			cl_call_finish(c, CLIENT_OK, exact && c->resp.keep_alive);
			return;
		}
		break;
	case HTTP_BODY_CHUNKED:
		r = take_chunked(c);
		if (r < 0) {
			cl_call_finish(c, r == -2 ? CLIENT_ERR_TOO_LARGE : r == -3 ? CLIENT_ERR_NOMEM : CLIENT_ERR_PROTOCOL, false);
			return;
		}
		if (c->chunked.done) {
			cl_call_finish(c, CLIENT_OK, k->in_len == c->head_len && c->resp.keep_alive);
			return;
		}
		break;
	case HTTP_BODY_EOF:
		if (have > c->max_body) {
			cl_call_finish(c, CLIENT_ERR_TOO_LARGE, false);
			return;
		}
		if (c->eof) {
			cl_call_finish(c, CLIENT_OK, false);
			return;
		}
		break;
	}
	conn_arm_rx(k);
}

static char *dup_str(const char *s)
{
	return s ? strdup(s) : NULL;
}

static enum http_method method_of(const char *m)
{
	for (int i = HTTP_GET; i < HTTP_METHOD_COUNT; i++)
		if (!strcmp(http_method_name(i), m))
			return i;
	return HTTP_OTHER;
}

static bool build_request_text(struct client_call *c, const struct client_request_opts *o)
{
	static const char keep_alive[] = "Connection: keep-alive\r\n\r\n";
	const char *method = o->method ? o->method : "GET";
	const char *hdrs = o->headers ? o->headers : "";
	size_t ml = strlen(method), pl = strlen(o->path), hl = strlen(hdrs), n = 0;
	char clen[sizeof("Content-Length: \r\n") + FMT_U64_MAX] = "";
	size_t cl = 0;

	c->line = malloc(ml + pl + sizeof(" HTTP/1.1\r\n") + 1);
	if (!c->line)
		return false;
	memcpy(c->line, method, ml);
	c->line[ml] = ' ';
	memcpy(c->line + ml + 1, o->path, pl);
	memcpy(c->line + ml + 1 + pl, " HTTP/1.1\r\n", sizeof(" HTTP/1.1\r\n"));
	if (o->body_len || c->method == HTTP_POST || c->method == HTTP_PUT ||
	    c->method == HTTP_PATCH) {
		memcpy(clen, "Content-Length: ", 16);
		cl = 16 + fmt_u64(clen + 16, o->body_len);
		memcpy(clen + cl, "\r\n", 2);
		cl += 2;
	}
	c->suffix = malloc(hl + cl + sizeof(keep_alive) + o->body_len);
	if (!c->suffix)
		return false;
	memcpy(c->suffix, hdrs, hl);
	n = hl;
	memcpy(c->suffix + n, clen, cl);
	n += cl;
	memcpy(c->suffix + n, keep_alive, sizeof(keep_alive) - 1);
	n += sizeof(keep_alive) - 1;
	if (o->body_len)
		memcpy(c->suffix + n, o->body, o->body_len);
	c->suffix_len = n + o->body_len;
	return true;
}

/* What every call keeps of its options; NULL on bad options or memory exhaustion. */
static struct client_call *call_new(struct http_client *cl, const struct client_request_opts *o)
{
	struct client_call *c;
	const struct upstream_config *uc;
	uint32_t timeout;

	if (!cl || !o || !o->cfg || !o->path || o->path[0] != '/' ||
	    (!o->upstream_config && (o->upstream < 0 || o->upstream >= o->cfg->nupstreams)))
		return NULL;
	c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	uc = o->upstream_config ? o->upstream_config : &o->cfg->upstreams[o->upstream];
	c->uc = o->upstream_config;
	c->cl = cl;
	c->cfg = o->cfg;
	c->upstream = o->upstream;
	c->proto = uc->protocol;
	c->method = method_of(o->method ? o->method : "GET");
	c->hash = o->hash;
	c->target = -1;
	c->max_body = o->max_body_bytes ? o->max_body_bytes : CLIENT_DEFAULT_MAX_BODY;
	c->start_ns = clock_mono_ns();
	timeout = o->timeout_ms ? o->timeout_ms : uc->connect_timeout_ms + uc->read_timeout_ms;
	c->deadline_ms = clock_mono_ms() + timeout;
	c->timer.fire = cl_call_timer_fire;
	c->ev.fire = h2_call_event_fire;
	c->host = dup_str(o->host);
	c->tls = o->tls;
	c->tls_name = dup_str(o->tls_name);
	c->method_s = strdup(o->method ? o->method : "GET");
	c->path_s = strdup(o->path);
	c->headers_s = dup_str(o->headers);
	http_chunked_init(&c->chunked);
	if ((o->host && !c->host) || (o->tls && !c->tls_name) || !c->method_s || !c->path_s ||
	    (o->headers && !c->headers_s)) {
		cl_call_free(c);
		return NULL;
	}
	return c;
}

struct client_call *client_request(struct http_client *cl, const struct client_request_opts *o,
				   client_done_fn done, void *arg)
{
	struct client_call *c = done ? call_new(cl, o) : NULL;

	if (!c)
		return NULL;
	c->done = done;
	c->arg = arg;
	if (c->proto != UPSTREAM_HTTP1) {
		/* the whole body, kept until the call ends (a refused stream is sent again) */
		bool framed = o->body_len || c->method == HTTP_POST || c->method == HTTP_PUT ||
			      c->method == HTTP_PATCH;

		c->req_len = framed ? o->body_len : CLIENT_BODY_NONE;
		c->req_fin = true;
		if (o->body_len && !(c->sbuf = malloc(o->body_len))) {
			cl_call_free(c);
			return NULL;
		}
		if (o->body_len)
			memcpy(c->sbuf, o->body, o->body_len);
		c->sbuf_len = c->sbuf_cap = o->body_len;
	} else if (!build_request_text(c, o)) {
		cl_call_free(c);
		return NULL;
	}
	cl_call_attempt(c);
	return c;
}

struct client_call *client_stream_start(struct http_client *cl,
					const struct client_request_opts *o,
					const struct client_stream_cbs *cbs, void *arg)
{
	struct client_call *c;

	if (!cbs || !cbs->on_done || !o || o->body)
		return NULL;
	c = call_new(cl, o);
	if (!c)
		return NULL;
	if (c->proto == UPSTREAM_HTTP1) {
		cl_call_free(c); /* HTTP/1.1 upstreams: client_request() */
		return NULL;
	}
	c->streaming = true;
	c->cbs = *cbs;
	c->arg = arg;
	c->req_len = o->body_len;
	c->req_fin = o->body_len == CLIENT_BODY_NONE || o->body_len == 0;
	c->sbuf = malloc(CLIENT_STREAM_BUF);
	if (!c->sbuf) {
		cl_call_free(c);
		return NULL;
	}
	c->sbuf_cap = CLIENT_STREAM_BUF;
	cl_call_attempt(c);
	return c;
}

/* The call ended already (its outcome is on its way), or its stream did. */
static bool stream_over(const struct client_call *c)
{
	return c->deferring || c->h2_closed || c->cancelled;
}

ssize_t client_stream_write(struct client_call *c, const char *p, size_t n, bool fin)
{
	size_t room, take;

	if (!c || !c->streaming)
		return -1;
	if (stream_over(c))
		return c->h2_closed && c->h2_err == CLIENT_OK ? (ssize_t)n : -1;
	if (c->req_fin)
		return n ? -1 : 0;
	if (c->sbuf_off) {
		memmove(c->sbuf, c->sbuf + c->sbuf_off, c->sbuf_len - c->sbuf_off);
		c->sbuf_len -= c->sbuf_off;
		c->sbuf_off = 0;
	}
	room = c->sbuf_cap - c->sbuf_len;
	take = n < room ? n : room;
	memcpy(c->sbuf + c->sbuf_len, p, take);
	c->sbuf_len += take;
	if (take < n)
		c->want_writable = true;
	else if (fin)
		c->req_fin = true;
	h2_call_kick(c);
	return take;
}

bool client_stream_trailers(struct client_call *c, const struct http_header *h, int n)
{
	size_t mem = 0, off = 0;

	if (!c || !c->streaming || c->req_fin || c->nreq_trailers || n <= 0 ||
	    n > HTTP_MAX_HEADERS)
		return false;
	for (int i = 0; i < n; i++)
		mem += h[i].name.len + h[i].value.len;
	c->req_trailers = calloc(n, sizeof(*c->req_trailers));
	c->req_trailer_mem = malloc(mem + 1);
	if (!c->req_trailers || !c->req_trailer_mem)
		return false;
	for (int i = 0; i < n; i++) {
		char *nm = c->req_trailer_mem + off;

		/* HTTP/2 field names are lower case */
		for (size_t j = 0; j < h[i].name.len; j++) {
			char ch = h[i].name.p[j];

			nm[j] = ch >= 'A' && ch <= 'Z' ? ch + 32 : ch;
		}
		off += h[i].name.len;
		memcpy(c->req_trailer_mem + off, h[i].value.p, h[i].value.len);
		c->req_trailers[i].name = (struct http_str){ nm, h[i].name.len };
		c->req_trailers[i].value = (struct http_str){ c->req_trailer_mem + off, h[i].value.len };
		off += h[i].value.len;
	}
	c->nreq_trailers = n;
	return true;
}

void client_stream_resume(struct client_call *c)
{
	if (!c || !c->streaming || c->cancelled)
		return;
	h2_schedule(c);
}

void client_cancel(struct client_call *c)
{
	if (!c)
		return;
	if (c->in_cb) {
		c->cancelled = true; /* freed once the callback returns */
		return;
	}
	timer_del(c->cl->timers, &c->timer);
	timer_del(c->cl->timers, &c->ev);
	cl_release_active(c);
	cl_wait_end(c, false, false);
	if (c->h2)
		h2_call_detach(c, true);
	if (c->conn) {
		conn_close(c->conn);
		c->conn = NULL;
	}
	cl_call_free(c);
}

struct http_client *client_new(struct io_uring *ring, struct timer_heap *timers,
			       struct metrics_shard *metrics)
{
	struct http_client *cl = calloc(1, sizeof(*cl));

	if (!cl)
		return NULL;
	cl->ring = ring;
	cl->timers = timers;
	cl->metrics = metrics;
	return cl;
}

void client_free(struct http_client *cl)
{
	if (!cl)
		return;
	/* Idle ones and closing ones still waiting for completions: the ring is gone. */
	while (cl->all)
		conn_free_now(cl->all);
	h2_conn_free_all(cl);
	free(cl->pools);
	free(cl->rr);
	free(cl);
}

unsigned client_idle_count(const struct http_client *cl)
{
	unsigned n = 0;

	for (int i = 0; i < cl->npools; i++)
		n += cl->pools[i].nidle;
	return n + h2_idle_count(cl);
}
