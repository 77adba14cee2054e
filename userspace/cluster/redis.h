/*
 * One asynchronous Redis connection on a worker's io_uring (hiredis async mode).
 *
 * hiredis does the protocol; its event-library hooks (addRead/delRead/addWrite/delWrite/
 * cleanup) are mapped to one-shot io_uring polls (loop/ring.h): a poll that completes
 * calls redisAsyncHandleRead/Write and is re-armed while hiredis still wants that
 * direction. Deadlines run on the worker's timers (loop/timer.h): connecting (TCP, AUTH,
 * SELECT, SCRIPT LOAD) and every command's reply must finish within timeout_ms, else the
 * connection is dropped — its pending commands complete with a NULL reply — and a new
 * one is tried after a backoff (100 ms doubling, at most 1 s).
 *
 * Commands are pipelined: hiredis appends them to its output buffer and the write poll
 * sends whatever accumulated in one write.
 *
 * Each connection attempt has its own "link" holding the polls, because a poll of a
 * closed attempt may still be in flight (ring.h: an op lives until its completion).
 */
#ifndef XGATE_CLUSTER_REDIS_H
#define XGATE_CLUSTER_REDIS_H

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "loop/timer.h"

struct io_uring;
struct cluster_config;
struct redis_link;

/* A command's completion, embedded by its owner; reply NULL: the connection failed. */
struct redis_cmd {
	void (*done)(struct redis_cmd *cmd, redisReply *reply);
};

enum redis_state { REDIS_DOWN, REDIS_CONNECTING, REDIS_UP };

struct redis_conn {
	struct io_uring *ring;
	struct timer_heap *timers;
	struct timer timer; /* backoff, connect deadline or reply deadline */
	char host[64];
	int port;
	char *password;
	int db;
	uint32_t timeout_ms;
	const char *script; /* loaded on every connection; NULL: none */
	char sha[48];	    /* its SHA1 as SCRIPT LOAD answered */
	enum redis_state state;
	struct redis_link *link;   /* the current attempt; NULL when down */
	struct redis_link **links; /* the owner's list of every link not yet freed */
	uint32_t backoff_ms;
	uint64_t deadline_ms; /* of the oldest unanswered command, or of connecting */
	uint32_t inflight;
	bool fail_pending; /* drop the connection at the next timer run */
	bool ring_dead;
	bool freeing;
	/* Connection state changes (may be NULL). */
	void (*on_state)(struct redis_conn *rc, void *arg);
	void *arg;
	struct redis_cmd setup[3]; /* AUTH, SELECT, SCRIPT LOAD */
};

/*
 * Starts connecting at once. Links are kept on *links, a list the owner keeps across
 * connections: they outlive their connection until their polls completed (then they free
 * themselves), and redis_links_free() frees what is left once the ring is gone.
 * NULL on memory exhaustion.
 */
struct redis_conn *redis_conn_new(struct io_uring *ring, struct timer_heap *timers,
				  const struct cluster_config *cc, const char *script,
				  struct redis_link **links);
/* Closes (pending commands complete with NULL) and frees; not from inside a callback. */
void redis_conn_free(struct redis_conn *rc);
void redis_links_free(struct redis_link **links);
static inline bool redis_conn_up(const struct redis_conn *rc)
{
	return rc && rc->state == REDIS_UP;
}
/* Queues a command (pipelined); false when the connection is not up or hiredis refused.
 * On true, cmd->done runs exactly once, never from inside this call. */
bool redis_conn_command(struct redis_conn *rc, struct redis_cmd *cmd, int argc, const char **argv,
			const size_t *lens);

#endif
