/*
 * Socket I/O for both sides of a connection: arming io_uring operations (their deadlines
 * on the worker's timer heap, not linked timeouts: moving a deadline costs no SQE and an
 * operation one SQE and one CQE), completing them into the side's buffers, TLS through OpenSSL on the raw fd,
 * and closing without ever freeing memory an in-flight operation still refers to.
 */
#include <errno.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "proxy/proxy.h"
#include "proxy/worker.h"
#include "splice/splice.h"
#include "tls/tls.h"

static uint32_t side_buf_cap(const struct side *s)
{
	return 64 * 1024 + s->w->cfg->limits.max_header_bytes;
}

void side_init(struct side *s, struct worker *w, int fd, bool upstream)
{
	memset(s, 0, sizeof(*s));
	s->w = w;
	s->fd = fd;
	s->upstream = upstream;
	w->live_sides++;
}

static void set_data(struct io_uring_sqe *sqe, struct side *s, enum op op)
{
	io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)s | op);
	s->inflight++;
}

static void ms_to_ts(struct __kernel_timespec *ts, uint32_t ms)
{
	ts->tv_sec = ms / 1000;
	ts->tv_nsec = (long long)(ms % 1000) * 1000000;
}

static void cancel_op(struct side *s, enum op op)
{
	struct io_uring_sqe *sqe = worker_sqe(s->w);

	io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)s | op, 0);
	io_uring_sqe_set_data64(sqe, OP_CANCEL);
}

/* A deadline passed: cancelling the operations makes them complete with -ECANCELED. */
static void cancel_pending(struct side *s, uint32_t mask)
{
	static const struct {
		uint32_t bit;
		enum op op;
	} ops[] = { { PEND_RECV, OP_RECV },	  { PEND_POLL_IN, OP_POLL }, { PEND_SEND, OP_SEND },
		    { PEND_CONNECT, OP_CONNECT }, { PEND_POLL_OUT, OP_POLL_OUT } };

	if (s->closing)
		return;
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
		if (s->pending & mask & ops[i].bit)
			cancel_op(s, ops[i].op);
}

static void rx_expired(struct timer *t)
{
	cancel_pending((struct side *)((char *)t - offsetof(struct side, rx_deadline)),
		       PEND_RECV | PEND_POLL_IN);
}

static void tx_expired(struct timer *t)
{
	cancel_pending((struct side *)((char *)t - offsetof(struct side, tx_deadline)),
		       PEND_SEND | PEND_CONNECT | PEND_POLL_OUT);
}

/* Sets (ms > 0) or clears a side's deadline; no SQE either way. */
static void set_deadline(struct side *s, struct timer *t, uint32_t ms)
{
	struct worker *w = s->w;

	if (!ms) {
		timer_del(&w->timers, t);
		return;
	}
	if (!timer_add(&w->timers, t, w->now_ms + ms,
		       t == &s->rx_deadline ? rx_expired : tx_expired))
		s->failed = true; /* no memory for the deadline: do not wait forever */
}

static bool side_usable(const struct side *s)
{
	return !s->closing && !s->failed;
}

static void arm_poll(struct side *s, uint32_t mask, uint32_t bit, uint32_t timeout_ms)
{
	struct io_uring_sqe *sqe;

	if (s->pending & bit)
		return;
	sqe = worker_sqe(s->w);
	io_uring_prep_poll_add(sqe, s->fd, mask);
	set_data(sqe, s, bit == PEND_POLL_OUT ? OP_POLL_OUT : OP_POLL);
	s->pending |= bit;
	set_deadline(s, bit == PEND_POLL_OUT ? &s->tx_deadline : &s->rx_deadline, timeout_ms);
}

/* Reads and writes what OpenSSL can without blocking; arms polls for the rest. */
bool side_tls_pump(struct side *s)
{
	bool progress = false;
	enum tls_io r;
	size_t n;

	if (!side_usable(s))
		return false;
	if (!s->tls_done) {
		r = tls_handshake(s->tls);
		if (r == TLS_OK) {
			s->tls_done = true;
			return true;
		}
		if (r == TLS_WANT_READ)
			arm_poll(s, POLLIN, PEND_POLL_IN, s->recv_timeout_ms);
		else if (r == TLS_WANT_WRITE)
			arm_poll(s, POLLOUT, PEND_POLL_OUT, s->recv_timeout_ms);
		else
			s->failed = true;
		return s->failed;
	}
	while (buf_len(&s->out)) {
		r = tls_write(s->tls, buf_head(&s->out), buf_len(&s->out), &n);
		if (r == TLS_OK) {
			buf_consume(&s->out, n);
			progress = true;
			continue;
		}
		if (r == TLS_WANT_WRITE)
			arm_poll(s, POLLOUT, PEND_POLL_OUT, s->send_timeout_ms);
		else if (r == TLS_WANT_READ)
			arm_poll(s, POLLIN, PEND_POLL_IN, s->send_timeout_ms);
		else {
			s->failed = true;
			return true;
		}
		break;
	}
	return progress;
}

static bool tls_read_some(struct side *s)
{
	bool progress = false;
	enum tls_io r;
	size_t n;

	for (;;) {
		if (!buf_ensure(&s->in, side_buf_cap(s))) {
			s->failed = true;
			return true;
		}
		buf_compact(&s->in);
		if (buf_space(&s->in) < 1024)
			return progress;
		r = tls_read(s->tls, s->in.data + s->in.end, buf_space(&s->in), &n);
		if (r == TLS_OK) {
			s->in.end += n;
			progress = true;
			continue;
		}
		if (r == TLS_WANT_READ)
			arm_poll(s, POLLIN, PEND_POLL_IN, s->recv_timeout_ms);
		else if (r == TLS_WANT_WRITE)
			arm_poll(s, POLLOUT, PEND_POLL_OUT, s->recv_timeout_ms);
		else if (r == TLS_CLOSED)
			s->eof = true;
		else
			s->failed = true;
		return progress || r == TLS_CLOSED || r == TLS_ERROR;
	}
}

/* Returns true when the call itself made progress (TLS reads data synchronously). */
bool side_arm_recv(struct side *s)
{
	struct io_uring_sqe *sqe;

	if (!side_usable(s) || s->eof || (s->pending & (PEND_RECV | PEND_POLL_IN)))
		return false;
	if (s->tls)
		return s->tls_done ? tls_read_some(s) : side_tls_pump(s);
	/* The ring provides the recv's buffer: an idle connection owns no storage of its own
	 * until bytes arrive (complete_recv allocates). */
	if (s->in.data && buf_space(&s->in) < RECV_CHUNK)
		buf_compact(&s->in);
	if (s->in.data && buf_space(&s->in) < RECV_CHUNK)
		return false; /* backpressure: the consumer has not caught up */
	sqe = worker_sqe(s->w);
	io_uring_prep_recv(sqe, s->fd, NULL, RECV_CHUNK, 0);
	if (s->recv_drained)
		sqe->ioprio |= IORING_RECVSEND_POLL_FIRST;
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = BUF_GROUP;
	set_data(sqe, s, OP_RECV);
	s->pending |= PEND_RECV;
	s->armed_recv_timeout_ms = s->recv_timeout_ms;
	set_deadline(s, &s->rx_deadline, s->recv_timeout_ms);
	return false;
}

/* Moves an armed recv's deadline to the timeout wanted now (a timer update, no SQE). */
void side_retime_recv(struct side *s)
{
	if (!(s->pending & PEND_RECV) || s->armed_recv_timeout_ms == s->recv_timeout_ms)
		return;
	s->armed_recv_timeout_ms = s->recv_timeout_ms;
	set_deadline(s, &s->rx_deadline, s->recv_timeout_ms);
}

/* Cancels an armed recv (not a failure): the caller stops reading through the ring. */
void side_cancel_recv(struct side *s)
{
	if (!(s->pending & PEND_RECV) || s->cancel_requested)
		return;
	timer_del(&s->w->timers, &s->rx_deadline);
	cancel_op(s, OP_RECV);
	s->cancel_requested = true;
}

/* Readiness polls without a timeout, for I/O the caller does itself (tunnel_pipe.c). */
void side_arm_poll_in(struct side *s)
{
	if (side_usable(s))
		arm_poll(s, POLLIN, PEND_POLL_IN, 0);
}

void side_arm_poll_out(struct side *s)
{
	if (side_usable(s))
		arm_poll(s, POLLOUT, PEND_POLL_OUT, 0);
}

/* The same with the side's deadline (0: none), for a body spliced in body_splice.c. */
void side_arm_poll_in_timed(struct side *s, uint32_t timeout_ms)
{
	if (side_usable(s))
		arm_poll(s, POLLIN, PEND_POLL_IN, timeout_ms);
}

void side_arm_poll_out_timed(struct side *s, uint32_t timeout_ms)
{
	if (side_usable(s))
		arm_poll(s, POLLOUT, PEND_POLL_OUT, timeout_ms);
}

bool side_arm_send(struct side *s)
{
	struct io_uring_sqe *sqe;

	if (!side_usable(s) || !buf_len(&s->out) || (s->pending & (PEND_SEND | PEND_POLL_OUT)))
		return false;
	if (s->tls && !s->tls_done)
		return false;
	if (!s->upstream && !s->w->flushing) {
		if (!s->flush_queued) {
			s->flush_queued = true;
			s->flush_next = s->w->flush_list;
			s->w->flush_list = s;
		}
		return false;
	}
	/* With kTLS TX the kernel frames and encrypts: the plaintext goes to the socket
	 * through the ring like a plain side's, not through SSL_write (one write(2) per
	 * 16 KiB record, outside the ring). OpenSSL has nothing queued once the handshake
	 * returned OK, and its own later writes (close_notify) are whole control records. */
	if (s->tls && !tls_conn_ktls_tx(s->tls))
		return side_tls_pump(s);
	sqe = worker_sqe(s->w);
	s->send_len = buf_len(&s->out);
	io_uring_prep_send(sqe, s->fd, buf_head(&s->out), s->send_len, MSG_NOSIGNAL);
	set_data(sqe, s, OP_SEND);
	s->pending |= PEND_SEND;
	set_deadline(s, &s->tx_deadline, s->send_timeout_ms);
	return false;
}

void side_arm_shutdown(struct side *s)
{
	struct io_uring_sqe *sqe;

	if (!side_usable(s) || s->shut_wr || (s->pending & PEND_SHUTDOWN))
		return;
	if (s->tls)
		tls_shutdown(s->tls);
	sqe = worker_sqe(s->w);
	io_uring_prep_shutdown(sqe, s->fd, SHUT_WR);
	set_data(sqe, s, OP_SHUTDOWN);
	s->pending |= PEND_SHUTDOWN;
}

bool side_idle(const struct side *s)
{
	return !s->pending && !buf_len(&s->out);
}

/* Queues s to be freed after the current completion batch. */
static void side_retire(struct side *s)
{
	s->grave_next = s->w->graveyard;
	s->w->graveyard = s;
}

static void side_free(struct side *s)
{
	struct worker *w = s->w;

	timer_del(&w->timers, &s->rx_deadline);
	timer_del(&w->timers, &s->tx_deadline);
	if (s->splice_enrolled && w->gw->splice)
		splice_remove(w->gw->splice, s->fd); /* its entry must go before the fd does */
	if (s->fd >= 0)
		close(s->fd);
	if (s->tls)
		tls_conn_free(s->tls);
	buf_free(&s->in);
	buf_free(&s->out);
	w->live_sides--;
	if (s->upstream) {
		struct upconn *u = (struct upconn *)s;

		/* Both sides of a connection can be buried in one batch (forced close). */
		if (u->owner && u->owner->up == u)
			u->owner->up = NULL;
		free(u);
	} else
		conn_free((struct conn *)s);
}

void side_close(struct side *s)
{
	struct io_uring_sqe *sqe;

	if (s->closing)
		return;
	s->closing = true;
	if (s->inflight) {
		sqe = worker_sqe(s->w);
		io_uring_prep_cancel_fd(sqe, s->fd, IORING_ASYNC_CANCEL_ALL);
		io_uring_sqe_set_data64(sqe, OP_CANCEL);
		return;
	}
	side_retire(s);
}

void worker_flush_sends(struct worker *w)
{
	w->flushing = true;
	while (w->flush_list) {
		struct side *s = w->flush_list;

		w->flush_list = s->flush_next;
		s->flush_queued = false;
		/* A TLS write that freed room or failed moves its connection on (a close after
		 * the last byte, more of a response); a ring send does that on completion. */
		if (side_arm_send(s))
			conn_advance((struct conn *)((char *)s - offsetof(struct conn, cli)));
	}
	w->flushing = false;
}

void worker_bury(struct worker *w)
{
	while (w->graveyard) {
		struct side *s = w->graveyard;

		w->graveyard = s->grave_next;
		side_free(s);
	}
}

static void complete_recv(struct side *s, struct io_uring_cqe *cqe)
{
	bool cancelled_by_us = s->cancel_requested;

	s->pending &= ~PEND_RECV;
	s->cancel_requested = false;
	timer_del(&s->w->timers, &s->rx_deadline);
	s->recv_drained = cqe->res > 0 && cqe->res < RECV_CHUNK;
	if (cqe->res > 0 && s->before_request) {
		/* stray bytes of the idle connection: dropped, the attempt fails as a reused
		 * connection that went bad (retried on a fresh one when safe) */
		upconn_protocol_error((struct upconn *)s);
		worker_buf_return(s->w, cqe->flags >> IORING_CQE_BUFFER_SHIFT);
		s->failed = true;
		return;
	}
	if (cqe->res > 0) {
		int bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;

		/* Space for RECV_CHUNK was checked when the recv was armed, but an idle buffer
		 * may have been released since: take storage again rather than drop bytes. */
		if (!buf_ensure(&s->in, side_buf_cap(s)) ||
		    !buf_append(&s->in, worker_buf(s->w, bid), cqe->res))
			s->failed = true;
		worker_buf_return(s->w, bid);
		s->bytes_received += cqe->res;
	} else if (cqe->res == 0) {
		s->eof = true;
	} else if (cqe->res == -ECANCELED) {
		if (!cancelled_by_us && !s->closing)
			s->failed = s->timed_out = true;
	} else if (cqe->res != -ENOBUFS && cqe->res != -EAGAIN && cqe->res != -EINTR) {
		s->failed = true;
		s->err = -cqe->res;
	}
	if (cqe->flags & IORING_CQE_F_BUFFER && cqe->res <= 0)
		worker_buf_return(s->w, cqe->flags >> IORING_CQE_BUFFER_SHIFT);
}

static void complete_send(struct side *s, struct io_uring_cqe *cqe)
{
	s->pending &= ~PEND_SEND;
	timer_del(&s->w->timers, &s->tx_deadline);
	if (cqe->res > 0) {
		buf_consume(&s->out, cqe->res);
		s->bytes_sent += cqe->res;
		s->before_request = false;
		if (s->tls)
			tls_count_ktls_tx_bytes(cqe->res);
	} else if (cqe->res == -ECANCELED && !s->closing) {
		s->failed = s->timed_out = true;
	} else if (cqe->res < 0 && cqe->res != -EAGAIN && cqe->res != -EINTR) {
		s->failed = true;
		s->err = -cqe->res;
	}
}

static void complete_connect(struct side *s, struct io_uring_cqe *cqe)
{
	struct upconn *u = (struct upconn *)s;

	s->pending &= ~PEND_CONNECT;
	timer_del(&s->w->timers, &s->tx_deadline);
	if (cqe->res == 0) {
		u->connected = true;
	} else {
		s->failed = true;
		s->timed_out = cqe->res == -ECANCELED;
		s->err = -cqe->res;
	}
}

static void complete_poll(struct side *s, uint32_t bit, struct io_uring_cqe *cqe)
{
	s->pending &= ~bit;
	timer_del(&s->w->timers, bit == PEND_POLL_OUT ? &s->tx_deadline : &s->rx_deadline);
	if (cqe->res == -ECANCELED && !s->closing)
		s->failed = s->timed_out = true;
}

void side_complete(struct side *s, enum op op, struct io_uring_cqe *cqe)
{
	s->inflight--;
	switch (op) {
	case OP_RECV:
		complete_recv(s, cqe);
		break;
	case OP_SEND:
		complete_send(s, cqe);
		break;
	case OP_CONNECT:
		complete_connect(s, cqe);
		break;
	case OP_POLL:
		complete_poll(s, PEND_POLL_IN, cqe);
		break;
	case OP_POLL_OUT:
		complete_poll(s, PEND_POLL_OUT, cqe);
		break;
	case OP_SHUTDOWN:
		s->pending &= ~PEND_SHUTDOWN;
		s->shut_wr = true;
		break;
	case OP_TIMER:
		s->pending &= ~PEND_TIMER;
		break;
	case OP_IDLE_POLL:
		s->pending &= ~PEND_IDLE_POLL;
		if (s->closing)
			break;
		/* Taken from the pool since (the cancel raced): the owner's recv reads. */
		if (cqe->res != -ECANCELED && !((struct upconn *)s)->owner)
			pool_idle_event(s->w, (struct upconn *)s);
		return;
	default:
		break;
	}
	if (s->closing) {
		if (!s->inflight)
			side_retire(s);
		return;
	}
	if (s->upstream)
		conn_on_upconn_event((struct upconn *)s);
	else
		conn_advance((struct conn *)s);
}

struct upconn *upconn_new(struct worker *w, const struct target_config *tc)
{
	struct upconn *u;
	int one = 1;
	int fd = socket(tc->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return NULL;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	u = calloc(1, sizeof(*u));
	if (!u) {
		close(fd);
		return NULL;
	}
	side_init(&u->s, w, fd, true);
	u->ts = tc->state;
	u->metrics_slot = tc->metrics_slot;
	memcpy(&u->addr, &tc->addr, tc->addrlen);
	u->addrlen = tc->addrlen;
	return u;
}

void upconn_connect(struct upconn *u, uint32_t timeout_ms)
{
	struct io_uring_sqe *sqe = worker_sqe(u->s.w);

	io_uring_prep_connect(sqe, u->s.fd, (struct sockaddr *)&u->addr, u->addrlen);
	set_data(sqe, &u->s, OP_CONNECT);
	u->s.pending |= PEND_CONNECT;
	set_deadline(&u->s, &u->s.tx_deadline, timeout_ms);
}

/* A one-shot wake-up for this side's connection (re-checks that have no event to wait on). */
void side_arm_timer(struct side *s, uint32_t ms)
{
	struct io_uring_sqe *sqe;

	if (!side_usable(s) || (s->pending & PEND_TIMER))
		return;
	ms_to_ts(&s->timer_ts, ms);
	sqe = worker_sqe(s->w);
	io_uring_prep_timeout(sqe, &s->timer_ts, 0, 0);
	set_data(sqe, s, OP_TIMER);
	s->pending |= PEND_TIMER;
}
