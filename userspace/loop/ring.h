/*
 * The worker's ring for code that is not a proxied connection: sub-request clients, the
 * Redis client, anything a filter starts and waits for. Such code embeds a struct ring_op
 * per operation it arms; the worker's dispatcher hands the completion to op->complete.
 *
 * One rule keeps this safe: a ring_op (and whatever its SQE points at: buffers, sockaddr)
 * stays alive until its completion arrived. Cancelling (ring_op_cancel) only hurries the
 * completion along (it then reports -ECANCELED); it does not replace it.
 */
#ifndef XGATE_LOOP_RING_H
#define XGATE_LOOP_RING_H

#include <liburing.h>
#include <stdint.h>

/* user_data tag of callback completions; the proxy's own operation tags stay below it. */
#define RING_TAG_CALLBACK 0xfULL
#define RING_TAG_MASK 0xfULL

struct ring_op {
	void (*complete)(struct ring_op *op, const struct io_uring_cqe *cqe);
} __attribute__((aligned(16)));

/* A free SQE, flushing a full submission queue to the kernel first. */
struct io_uring_sqe *ring_get_sqe(struct io_uring *ring);

/* A free SQE whose completion goes to op->complete; the caller preps it (prep resets
 * user_data, so set it after preparing: ring_op_set()). */
static inline void ring_op_set(struct io_uring_sqe *sqe, struct ring_op *op)
{
	io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)op | RING_TAG_CALLBACK);
}

/* Asks the kernel to complete op's armed operation now (with -ECANCELED if it had not). */
void ring_op_cancel(struct io_uring *ring, struct ring_op *op);

/* Delivers a callback completion; the dispatcher calls it for RING_TAG_CALLBACK. */
static inline void ring_op_dispatch(const struct io_uring_cqe *cqe)
{
	struct ring_op *op = (struct ring_op *)(uintptr_t)(cqe->user_data & ~RING_TAG_MASK);

	op->complete(op, cqe);
}

#endif
