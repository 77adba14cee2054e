/*
 * Pipe splicing for tunnels (listener "splice": "auto"): once userspace holds none of a
 * flow's bytes, each direction moves socket -> pipe -> socket with splice(2), so the bytes
 * stay in kernel pages and never reach the worker's buffers. Readiness comes from
 * io_uring polls on the sockets; the splice calls themselves are non-blocking, so a flow
 * never ties up an io-wq thread the way an IORING_OP_SPLICE on an idle socket would.
 *
 * Unlike sockmap redirects, this has backpressure: a direction only reads from its source
 * when its pipe is empty, so a slow receiver stops the sender at the TCP window and the
 * gateway holds at most one pipe (PIPE_BYTES) per direction. Nothing is lost or reordered:
 * bytes leave the pipe in the order they entered it, and an EOF is forwarded only after the
 * pipe is empty (HAProxy's splice model).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/socket.h>

#include "common/log.h"
#include "proxy/proxy.h"

#define PIPE_BYTES (256 * 1024)
#define PUMP_ROUNDS 16 /* splices per direction per step, so one flow cannot starve others */

struct pipe_dir {
	int rfd, wfd;
	size_t in_pipe; /* bytes read from the source not yet written to the destination */
};

struct tunnel_pipes {
	struct pipe_dir dir[2]; /* 0: client -> upstream, 1: upstream -> client */
};

static atomic_ulong pipe_flows_total, pipe_flows_active, pipe_bytes;

void tunnel_pipe_stats(unsigned long *total, unsigned long *active, unsigned long *bytes)
{
	*total = atomic_load(&pipe_flows_total);
	*active = atomic_load(&pipe_flows_active);
	*bytes = atomic_load(&pipe_bytes);
}

static bool set_nonblocking(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	return fl >= 0 && fcntl(fd, F_SETFL, fl | O_NONBLOCK) == 0;
}

static bool pipe_dir_open(struct pipe_dir *d)
{
	int fds[2];

	if (pipe2(fds, O_NONBLOCK | O_CLOEXEC))
		return false;
	/* A larger pipe means fewer splices per megabyte; the default 64 KiB still works. */
	fcntl(fds[1], F_SETPIPE_SZ, PIPE_BYTES);
	d->rfd = fds[0];
	d->wfd = fds[1];
	d->in_pipe = 0;
	return true;
}

static void pipe_dir_close(struct pipe_dir *d)
{
	if (d->rfd >= 0)
		close(d->rfd);
	if (d->wfd >= 0)
		close(d->wfd);
	d->rfd = d->wfd = -1;
}

void tunnel_pipe_release(struct conn *c)
{
	if (!c->pipes)
		return;
	pipe_dir_close(&c->pipes->dir[0]);
	pipe_dir_close(&c->pipes->dir[1]);
	free(c->pipes);
	c->pipes = NULL;
	atomic_fetch_sub(&pipe_flows_active, 1);
}

/*
 * Moves the flow into pipes; false when it must stay relayed in userspace. The caller
 * checks that userspace holds none of the flow's bytes and no recv is armed (one
 * completing later would reorder bytes against the pipe).
 */
bool tunnel_pipe_engage(struct conn *c)
{
	struct side *cli = &c->cli, *up = &c->up->s;
	struct tunnel_pipes *tp;

	tp = calloc(1, sizeof(*tp));
	if (tp)
		tp->dir[0].rfd = tp->dir[0].wfd = tp->dir[1].rfd = tp->dir[1].wfd = -1;
	if (!tp || !pipe_dir_open(&tp->dir[0]) || !pipe_dir_open(&tp->dir[1]) ||
	    !set_nonblocking(cli->fd) || !set_nonblocking(up->fd)) {
		log_warn("splice", "cannot set up pipes (%s): relaying %s in userspace",
			 strerror(errno), c->peer_addr);
		if (tp) {
			pipe_dir_close(&tp->dir[0]);
			pipe_dir_close(&tp->dir[1]);
			free(tp);
		}
		c->pipe_wanted = false;
		return false;
	}
	c->pipes = tp;
	atomic_fetch_add(&pipe_flows_total, 1);
	atomic_fetch_add(&pipe_flows_active, 1);
	return true;
}

/* One splice(2) call; returns bytes moved, 0 at EOF, -errno on failure. */
static ssize_t splice_once(int from, int to, size_t len)
{
	ssize_t n = splice(from, NULL, to, NULL, len, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);

	return n < 0 ? -errno : n;
}

/*
 * The helpers below set *progress only for changes the connection's state machine must see
 * (EOF, failure): moving bytes is this file's business, and more of it waits for a poll.
 */

/* Writes what the pipe holds to dst; false when dst cannot take more now. */
static bool drain_pipe(struct pipe_dir *d, struct side *dst, bool *progress)
{
	ssize_t n = splice_once(d->rfd, dst->fd, d->in_pipe);

	if (n == -EAGAIN) {
		side_arm_poll_out(dst);
		return false;
	}
	if (n <= 0) {
		dst->failed = true;
		dst->err = n ? (int)-n : EPIPE;
		*progress = true;
		return false;
	}
	d->in_pipe -= n;
	dst->bytes_sent += n;
	atomic_fetch_add_explicit(&pipe_bytes, n, memory_order_relaxed);
	return true;
}

/* Reads from src into the empty pipe; false when src has nothing now or ended. */
static bool fill_pipe(struct pipe_dir *d, struct side *src, bool *progress)
{
	ssize_t n = splice_once(src->fd, d->wfd, PIPE_BYTES);

	if (n == -EAGAIN) {
		side_arm_poll_in(src);
		return false;
	}
	if (n < 0) {
		src->failed = true;
		src->err = (int)-n;
		*progress = true;
		return false;
	}
	if (n == 0) {
		src->eof = true;
		*progress = true;
		return false;
	}
	d->in_pipe += n;
	src->bytes_received += n;
	return true;
}

static bool pump(struct pipe_dir *d, struct side *src, struct side *dst)
{
	bool progress = false;

	for (int round = 0; round < PUMP_ROUNDS; round++) {
		if (src->failed || dst->failed)
			return true; /* tunnel_step closes both */
		if (d->in_pipe) {
			if (!drain_pipe(d, dst, &progress))
				break;
		} else if (src->eof) {
			if (!dst->want_shut_wr) {
				dst->want_shut_wr = true; /* arm() sends the FIN */
				progress = true;
			}
			break;
		} else if (!fill_pipe(d, src, &progress)) {
			break;
		}
	}
	/* Out of rounds with work left: come back through a poll, which fires at once. */
	if (d->in_pipe && !dst->failed)
		side_arm_poll_out(dst);
	else if (!src->eof && !src->failed)
		side_arm_poll_in(src);
	return progress;
}

/* Pumps both directions of a piped flow. */
bool tunnel_pipe_step(struct conn *c)
{
	struct tunnel_pipes *tp = c->pipes;
	bool progress;

	progress = pump(&tp->dir[0], &c->cli, &c->up->s);
	progress |= pump(&tp->dir[1], &c->up->s, &c->cli);
	return progress;
}
