#include "loop/ring.h"

struct io_uring_sqe *ring_get_sqe(struct io_uring *ring)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring);

	while (!sqe) {
		/* SQ full: flush it to the kernel and retry. */
		io_uring_submit(ring);
		sqe = io_uring_get_sqe(ring);
	}
	return sqe;
}

void ring_op_cancel(struct io_uring *ring, struct ring_op *op)
{
	struct io_uring_sqe *sqe = ring_get_sqe(ring);

	io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)op | RING_TAG_CALLBACK, 0);
	io_uring_sqe_set_data64(sqe, 0); /* the cancel's own completion is dropped */
}
