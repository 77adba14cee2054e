/*
 * Response bodies spliced to kTLS clients: when the kernel encrypts the client's records
 * (kTLS TX), a Content-Length body no filter looks at moves upstream socket -> pipe ->
 * client socket with splice(2), so its bytes never reach the worker's buffers (no recv
 * copy, no memcpy into cli.out, no copy in from a send). Same model as tunnel_pipe.c:
 * readiness from io_uring polls, non-blocking splice calls, and a direction reads only
 * when its pipe is empty (backpressure; at most one pipe per connection in flight).
 *
 * Exactly the body is read: each splice from the upstream asks for at most the bytes the
 * Content-Length still allows, so the upstream connection stays in step for its next
 * response and goes back to the pool as usual.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "proxy/proxy.h"
#include "tls/tls.h"

#define BODY_PIPE_BYTES (256 * 1024)
#define BODY_SPLICE_MIN (256 * 1024) /* smaller bodies: the buffers are as cheap */
#define BODY_ROUNDS 16		     /* splices per step, so one body cannot starve others */

struct body_pipe {
	int rfd, wfd;
	size_t in_pipe;
};

/* No filter sees or changes the body, and the kernel frames the client's records. */
bool body_splice_eligible(const struct conn *c, const struct http_response *resp)
{
	const struct stream *st = c->st;

	if (!c->cli.tls || !c->cli.tls_done || !tls_conn_ktls_tx(c->cli.tls) || c->up->s.tls)
		return false;
	if (resp->body != HTTP_BODY_LENGTH || resp->content_length < BODY_SPLICE_MIN ||
	    resp->status < 200 || c->ex->xf || c->ex->holding || c->ex->from_cache)
		return false;
	/* A transform that claimed the body set ex.xf; a cache sees every body byte. */
	for (int i = 0; st && i < st->entered; i++)
		if (st->chain[i]->on_response_data)
			return false;
	return true;
}

static bool body_pipe_open(struct conn *c)
{
	struct body_pipe *bp;
	int fds[2], fl = fcntl(c->cli.fd, F_GETFL);

	if (fl < 0 || (!(fl & O_NONBLOCK) && fcntl(c->cli.fd, F_SETFL, fl | O_NONBLOCK)))
		return false;
	bp = calloc(1, sizeof(*bp));
	if (!bp || pipe2(fds, O_NONBLOCK | O_CLOEXEC)) {
		free(bp);
		return false;
	}
	fcntl(fds[1], F_SETPIPE_SZ, BODY_PIPE_BYTES);
	bp->rfd = fds[0];
	bp->wfd = fds[1];
	c->body_pipe = bp;
	return true;
}

void body_splice_release(struct conn *c)
{
	if (!c->body_pipe)
		return;
	close(c->body_pipe->rfd);
	close(c->body_pipe->wfd);
	free(c->body_pipe);
	c->body_pipe = NULL;
}

static ssize_t splice_once(int from, int to, size_t len)
{
	ssize_t n = splice(from, NULL, to, NULL, len, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);

	return n < 0 ? -errno : n;
}

/* Pipe -> client; false when the client cannot take more now (a poll is armed). */
static bool drain(struct conn *c, struct body_pipe *bp, bool *progress)
{
	ssize_t n = splice_once(bp->rfd, c->cli.fd, bp->in_pipe);

	if (n == -EAGAIN) {
		side_arm_poll_out_timed(&c->cli, c->cli.send_timeout_ms);
		return false;
	}
	if (n <= 0) {
		c->cli.failed = true;
		c->cli.err = n ? (int)-n : EPIPE;
		*progress = true;
		return false;
	}
	bp->in_pipe -= n;
	c->cli.bytes_sent += n;
	c->ex->bytes_out += n;
	tls_count_ktls_tx_bytes(n);
	tls_count_ktls_spliced_bytes(n);
	return true;
}

/* Upstream -> empty pipe, never past the body; false when nothing is there now. */
static bool fill(struct conn *c, struct body_pipe *bp, bool *progress)
{
	struct side *up = &c->up->s;
	size_t want = c->ex->resp_remaining < BODY_PIPE_BYTES ? c->ex->resp_remaining
							     : BODY_PIPE_BYTES;
	ssize_t n = splice_once(up->fd, bp->wfd, want);

	if (n == -EAGAIN) {
		side_arm_poll_in_timed(up, up->recv_timeout_ms);
		return false;
	}
	if (n <= 0) {
		/* A short body: step_exchange sees the upstream end and resets the client. */
		if (n)
			up->failed = true, up->err = (int)-n;
		else
			up->eof = true;
		*progress = true;
		return false;
	}
	bp->in_pipe += n;
	up->bytes_received += n;
	c->ex->resp_remaining -= n;
	return true;
}

/*
 * Moves the body once userspace holds none of it (buffered bytes go the ordinary way
 * first, and no recv may be armed: one completing later would reorder bytes). Returns
 * true when the exchange must look again (body done, a side ended).
 */
bool body_splice_step(struct conn *c)
{
	struct exchange *ex = c->ex;
	struct side *up = &c->up->s;
	bool progress = false;
	struct body_pipe *bp;

	if (buf_len(&up->in) || (up->pending & PEND_RECV) || buf_len(&c->cli.out) ||
	    (c->cli.pending & PEND_SEND))
		return false;
	if (!c->body_pipe && !body_pipe_open(c)) {
		ex->splice_body = false; /* stays in userspace buffers */
		return true;
	}
	bp = c->body_pipe;
	if (!ex->spliced_counted) {
		ex->spliced_counted = true;
		tls_count_ktls_spliced_response();
	}
	for (int round = 0; round < BODY_ROUNDS; round++) {
		if (bp->in_pipe) {
			if (!drain(c, bp, &progress))
				return progress;
		} else if (ex->resp_remaining) {
			if (!fill(c, bp, &progress))
				return progress;
		} else {
			ex->resp_done = true;
			body_splice_release(c); /* an idle keep-alive connection holds no pipe */
			return true;
		}
	}
	/* Out of rounds with work left: a poll that fires at once brings us back. */
	if (bp->in_pipe)
		side_arm_poll_out_timed(&c->cli, c->cli.send_timeout_ms);
	else
		side_arm_poll_in_timed(up, up->recv_timeout_ms);
	return progress;
}
