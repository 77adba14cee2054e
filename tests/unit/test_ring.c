/* loop/ring: callback completions reach their ring_op, cancels complete them early. */
#include <errno.h>
#include <poll.h>
#include <unistd.h>

#include "check.h"
#include "loop/ring.h"

struct probe {
	struct ring_op op;
	int calls;
	int res;
};

static void probe_complete(struct ring_op *op, const struct io_uring_cqe *cqe)
{
	struct probe *p = (struct probe *)op;

	p->calls++;
	p->res = cqe->res;
}

/* Drains every completion, dispatching callback ones as the worker does. */
static int drain(struct io_uring *ring, int want)
{
	struct io_uring_cqe *cqe;
	int callbacks = 0;

	while (want-- > 0 && !io_uring_wait_cqe(ring, &cqe)) {
		if ((cqe->user_data & RING_TAG_MASK) == RING_TAG_CALLBACK) {
			ring_op_dispatch(cqe);
			callbacks++;
		}
		io_uring_cqe_seen(ring, cqe);
	}
	return callbacks;
}

static void test_completion_reaches_its_op(void)
{
	struct io_uring ring;
	struct probe a = { .op.complete = probe_complete }, b = { .op.complete = probe_complete };
	struct io_uring_sqe *sqe;

	CHECK_EQ(io_uring_queue_init(8, &ring, 0), 0);
	sqe = ring_get_sqe(&ring);
	io_uring_prep_nop(sqe);
	ring_op_set(sqe, &a.op);
	sqe = ring_get_sqe(&ring);
	io_uring_prep_nop(sqe);
	ring_op_set(sqe, &b.op);
	io_uring_submit(&ring);
	CHECK_EQ(drain(&ring, 2), 2);
	CHECK_EQ(a.calls, 1);
	CHECK_EQ(b.calls, 1);
	CHECK_EQ(a.res, 0);
	io_uring_queue_exit(&ring);
}

static void test_cancel_completes_a_waiting_poll(void)
{
	struct io_uring ring;
	struct probe p = { .op.complete = probe_complete };
	struct io_uring_sqe *sqe;
	int fds[2];

	CHECK_EQ(io_uring_queue_init(8, &ring, 0), 0);
	CHECK_EQ(pipe(fds), 0);
	sqe = ring_get_sqe(&ring);
	io_uring_prep_poll_add(sqe, fds[0], POLLIN);
	ring_op_set(sqe, &p.op);
	io_uring_submit(&ring);
	ring_op_cancel(&ring, &p.op);
	io_uring_submit(&ring);
	/* Two completions: the cancel's own (tag 0, dropped) and the poll's. */
	CHECK_EQ(drain(&ring, 2), 1);
	CHECK_EQ(p.calls, 1);
	CHECK_EQ(p.res, -ECANCELED);
	close(fds[0]);
	close(fds[1]);
	io_uring_queue_exit(&ring);
}

static void test_full_queue_is_flushed_not_refused(void)
{
	struct io_uring ring;
	struct probe p = { .op.complete = probe_complete };

	CHECK_EQ(io_uring_queue_init(2, &ring, 0), 0);
	for (int i = 0; i < 5; i++) {
		struct io_uring_sqe *sqe = ring_get_sqe(&ring);

		CHECK(sqe != NULL);
		io_uring_prep_nop(sqe);
		ring_op_set(sqe, &p.op);
	}
	io_uring_submit(&ring);
	CHECK_EQ(drain(&ring, 5), 5);
	CHECK_EQ(p.calls, 5);
	io_uring_queue_exit(&ring);
}

int main(void)
{
	RUN(test_completion_reaches_its_op);
	RUN(test_cancel_completes_a_waiting_poll);
	RUN(test_full_queue_is_flushed_not_refused);
	return CHECK_DONE();
}
