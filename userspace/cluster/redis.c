/* Asynchronous Redis connection on the worker's ring: see redis.h. */
#include "cluster/redis.h"

#include <hiredis/async.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/cluster.h"
#include "common/clock.h"
#include "common/log.h"
#include "loop/ring.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 1000 /* SPEC: reconnect attempts at least once a second */

struct redis_link {
	struct ring_op rd, wr;
	struct redis_link *prev, *next; /* in *list */
	struct redis_link **list;
	struct redis_conn *rc; /* NULL once the attempt is over */
	redisAsyncContext *ac; /* NULL once hiredis freed it */
	struct io_uring *ring;
	bool want_rd, want_wr, rd_armed, wr_armed;
	bool ring_dead; /* teardown after the ring is gone: nothing to cancel */
};

#define container_of(p, type, member) ((type *)((char *)(p)-offsetof(type, member)))

static void conn_timer_update(struct redis_conn *rc);

static void link_free(struct redis_link *l)
{
	if (l->prev)
		l->prev->next = l->next;
	else
		*l->list = l->next;
	if (l->next)
		l->next->prev = l->prev;
	free(l);
}

static void link_maybe_free(struct redis_link *l)
{
	if (!l->ac && !l->rd_armed && !l->wr_armed)
		link_free(l);
}

static void link_poll(struct redis_link *l, struct ring_op *op, unsigned mask)
{
	struct io_uring_sqe *sqe = ring_get_sqe(l->ring);

	io_uring_prep_poll_add(sqe, l->ac->c.fd, mask);
	ring_op_set(sqe, op);
}

/* Arms a poll for each direction hiredis wants and that has none armed. */
static void link_arm(struct redis_link *l)
{
	if (!l->ac)
		return;
	if (l->want_rd && !l->rd_armed) {
		link_poll(l, &l->rd, POLLIN);
		l->rd_armed = true;
	}
	if (l->want_wr && !l->wr_armed) {
		link_poll(l, &l->wr, POLLOUT);
		l->wr_armed = true;
	}
}

static void link_io(struct redis_link *l, bool rd)
{
	struct redis_conn *rc = l->rc;

	if (rd)
		l->rd_armed = false;
	else
		l->wr_armed = false;
	/* hiredis reads until EAGAIN and reports errors itself; a failed poll (-errno) is
	 * handed over the same way so that it sees the socket's error. */
	if (l->ac && rd && l->want_rd)
		redisAsyncHandleRead(l->ac);
	else if (l->ac && !rd && l->want_wr)
		redisAsyncHandleWrite(l->ac);
	link_arm(l);
	if (rc && rc->link == l)
		conn_timer_update(rc);
	link_maybe_free(l);
}

static void link_rd_done(struct ring_op *op, const struct io_uring_cqe *cqe)
{
	link_io(container_of(op, struct redis_link, rd), true);
}

static void link_wr_done(struct ring_op *op, const struct io_uring_cqe *cqe)
{
	link_io(container_of(op, struct redis_link, wr), false);
}

static void ev_add_read(void *priv)
{
	struct redis_link *l = priv;

	l->want_rd = true;
	link_arm(l);
}

static void ev_del_read(void *priv)
{
	((struct redis_link *)priv)->want_rd = false;
}

static void ev_add_write(void *priv)
{
	struct redis_link *l = priv;

	l->want_wr = true;
	link_arm(l);
}

static void ev_del_write(void *priv)
{
	((struct redis_link *)priv)->want_wr = false;
}

static void conn_lost(struct redis_conn *rc)
{
	bool was_up = rc->state == REDIS_UP;

	rc->link = NULL;
	rc->state = REDIS_DOWN;
	rc->inflight = 0;
	rc->fail_pending = false;
	if (rc->freeing)
		return;
	if (was_up)
		log_warn("cluster", "redis %s:%d: connection lost; retrying every %u ms at most",
			 rc->host, rc->port, BACKOFF_MAX_MS);
	rc->deadline_ms = clock_mono_ms() + rc->backoff_ms;
	rc->backoff_ms = rc->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : rc->backoff_ms * 2;
	conn_timer_update(rc);
	if (rc->on_state)
		rc->on_state(rc, rc->arg);
}

/* hiredis is done with the context (closed by either side, or a connect failure). */
static void ev_cleanup(void *priv)
{
	struct redis_link *l = priv;
	struct redis_conn *rc = l->rc;

	l->ac = NULL;
	l->rc = NULL;
	l->want_rd = l->want_wr = false;
	if (!l->ring_dead) {
		if (l->rd_armed)
			ring_op_cancel(l->ring, &l->rd);
		if (l->wr_armed)
			ring_op_cancel(l->ring, &l->wr);
	}
	if (rc && rc->link == l)
		conn_lost(rc);
	/* freed by its last poll completion (link_io), or by redis_links_free */
}

static void cmd_reply(redisAsyncContext *ac, void *reply, void *priv)
{
	struct redis_link *l = ac->data;
	struct redis_conn *rc = l ? l->rc : NULL;
	struct redis_cmd *cmd = priv;

	if (rc && rc->inflight && --rc->inflight)
		rc->deadline_ms = clock_mono_ms() + rc->timeout_ms; /* progress: next reply */
	cmd->done(cmd, reply);
}

static void conn_fail_soon(struct redis_conn *rc, const char *what, const redisReply *r)
{
	if (r)
		log_warn("cluster", "redis %s:%d: %s: %.*s", rc->host, rc->port, what, (int)r->len,
			 r->str ? r->str : "");
	rc->fail_pending = true;
	timer_add(rc->timers, &rc->timer, clock_mono_ms(), rc->timer.fire);
}

static struct redis_conn *setup_conn(struct redis_cmd *cmd, int idx)
{
	return container_of(cmd - idx, struct redis_conn, setup);
}

static void setup_auth_done(struct redis_cmd *cmd, redisReply *r)
{
	if (r && r->type == REDIS_REPLY_ERROR)
		conn_fail_soon(setup_conn(cmd, 0), "AUTH refused", r);
}

static void setup_select_done(struct redis_cmd *cmd, redisReply *r)
{
	if (r && r->type == REDIS_REPLY_ERROR)
		conn_fail_soon(setup_conn(cmd, 1), "SELECT refused", r);
}

static void setup_last_done(struct redis_cmd *cmd, redisReply *r)
{
	struct redis_conn *rc = setup_conn(cmd, 2);

	if (!r || rc->fail_pending || rc->state != REDIS_CONNECTING)
		return;
	if (r->type == REDIS_REPLY_ERROR) {
		conn_fail_soon(rc, rc->script ? "SCRIPT LOAD refused" : "PING refused", r);
		return;
	}
	if (rc->script) {
		if (r->type != REDIS_REPLY_STRING || r->len >= sizeof(rc->sha)) {
			conn_fail_soon(rc, "SCRIPT LOAD: unexpected reply", NULL);
			return;
		}
		memcpy(rc->sha, r->str, r->len);
		rc->sha[r->len] = 0;
	}
	rc->state = REDIS_UP;
	rc->backoff_ms = BACKOFF_MIN_MS;
	log_info("cluster", "redis %s:%d: connected", rc->host, rc->port);
	conn_timer_update(rc);
	if (rc->on_state)
		rc->on_state(rc, rc->arg);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
	struct redis_link *l = ac->data;

	if (status != REDIS_OK && l && l->rc && l->rc->backoff_ms == BACKOFF_MIN_MS)
		log_warn("cluster", "redis %s:%d: %s", l->rc->host, l->rc->port, ac->errstr);
}

static bool setup_send(struct redis_conn *rc, int idx, int argc, const char **argv)
{
	if (redisAsyncCommandArgv(rc->link->ac, cmd_reply, &rc->setup[idx], argc, argv, NULL) !=
	    REDIS_OK)
		return false;
	rc->inflight++;
	return true;
}

/* AUTH, SELECT and SCRIPT LOAD (or PING) go out pipelined behind the TCP handshake. */
static bool conn_setup(struct redis_conn *rc)
{
	char db[16];

	snprintf(db, sizeof(db), "%d", rc->db);
	if (rc->password && !setup_send(rc, 0, 2, (const char *[]){"AUTH", rc->password}))
		return false;
	if (rc->db && !setup_send(rc, 1, 2, (const char *[]){"SELECT", db}))
		return false;
	if (rc->script)
		return setup_send(rc, 2, 3, (const char *[]){"SCRIPT", "LOAD", rc->script});
	return setup_send(rc, 2, 1, (const char *[]){"PING"});
}

static void conn_retry_later(struct redis_conn *rc)
{
	rc->state = REDIS_CONNECTING; /* conn_lost logs only a drop from UP */
	conn_lost(rc);
}

static void conn_connect(struct redis_conn *rc)
{
	redisAsyncContext *ac = redisAsyncConnect(rc->host, rc->port);
	struct redis_link *l;

	if (!ac || ac->err) {
		if (ac && rc->backoff_ms == BACKOFF_MIN_MS)
			log_warn("cluster", "redis %s:%d: %s", rc->host, rc->port, ac->errstr);
		if (ac)
			redisAsyncFree(ac);
		conn_retry_later(rc);
		return;
	}
	l = calloc(1, sizeof(*l));
	if (!l) {
		redisAsyncFree(ac);
		conn_retry_later(rc);
		return;
	}
	l->rd.complete = link_rd_done;
	l->wr.complete = link_wr_done;
	l->ring = rc->ring;
	l->rc = rc;
	l->ac = ac;
	l->list = rc->links;
	l->next = *rc->links;
	if (l->next)
		l->next->prev = l;
	*rc->links = l;
	ac->data = l;
	ac->ev.data = l;
	ac->ev.addRead = ev_add_read;
	ac->ev.delRead = ev_del_read;
	ac->ev.addWrite = ev_add_write;
	ac->ev.delWrite = ev_del_write;
	ac->ev.cleanup = ev_cleanup;
	rc->link = l;
	rc->state = REDIS_CONNECTING;
	rc->inflight = 0;
	rc->fail_pending = false;
	rc->deadline_ms = clock_mono_ms() + rc->timeout_ms;
	redisAsyncSetConnectCallback(ac, on_connect); /* arms the write poll */
	if (!conn_setup(rc)) {
		conn_fail_soon(rc, "cannot queue the connection setup", NULL);
		return;
	}
	conn_timer_update(rc);
}

/* Drops the current attempt: its pending commands complete with NULL replies. */
static void conn_drop(struct redis_conn *rc)
{
	struct redis_link *l = rc->link;

	if (!l || !l->ac) {
		conn_lost(rc);
		return;
	}
	l->ring_dead = rc->ring_dead;
	if (rc->state == REDIS_UP && !rc->fail_pending)
		rc->state = REDIS_CONNECTING; /* no new commands from the callbacks */
	redisAsyncFree(l->ac);		      /* ev_cleanup → conn_lost */
}

static void conn_timer_fire(struct timer *t)
{
	struct redis_conn *rc = container_of(t, struct redis_conn, timer);
	uint64_t now = clock_mono_ms();

	if (rc->state == REDIS_DOWN) {
		conn_connect(rc);
		return;
	}
	if (rc->fail_pending) {
		conn_drop(rc);
		return;
	}
	if ((rc->state == REDIS_CONNECTING || rc->inflight) && now >= rc->deadline_ms) {
		log_warn("cluster", "redis %s:%d: no answer within %u ms", rc->host, rc->port,
			 rc->timeout_ms);
		conn_drop(rc);
		return;
	}
	conn_timer_update(rc);
}

/* Down: the reconnect time; connecting or commands pending: their deadline; else none. */
static void conn_timer_update(struct redis_conn *rc)
{
	bool need = rc->state == REDIS_DOWN || rc->state == REDIS_CONNECTING || rc->inflight ||
		    rc->fail_pending;

	if (rc->freeing)
		return;
	if (!need) {
		timer_del(rc->timers, &rc->timer);
		return;
	}
	if (rc->fail_pending)
		return; /* armed for now already */
	if (!timer_armed(&rc->timer) || rc->timer.due_ms != rc->deadline_ms)
		timer_add(rc->timers, &rc->timer, rc->deadline_ms, conn_timer_fire);
}

struct redis_conn *redis_conn_new(struct io_uring *ring, struct timer_heap *timers,
				  const struct cluster_config *cc, const char *script,
				  struct redis_link **links)
{
	struct redis_conn *rc = calloc(1, sizeof(*rc));

	if (!rc)
		return NULL;
	rc->ring = ring;
	rc->timers = timers;
	rc->links = links;
	snprintf(rc->host, sizeof(rc->host), "%s", cc->host);
	rc->port = cc->port;
	rc->db = cc->db;
	rc->timeout_ms = cc->timeout_ms;
	rc->script = script;
	rc->backoff_ms = BACKOFF_MIN_MS;
	rc->timer.fire = conn_timer_fire;
	rc->setup[0].done = setup_auth_done;
	rc->setup[1].done = setup_select_done;
	rc->setup[2].done = setup_last_done;
	if (cc->password && !(rc->password = strdup(cc->password))) {
		free(rc);
		return NULL;
	}
	conn_connect(rc);
	return rc;
}

void redis_conn_free(struct redis_conn *rc)
{
	if (!rc)
		return;
	rc->freeing = true;
	timer_del(rc->timers, &rc->timer);
	conn_drop(rc);
	free(rc->password);
	free(rc);
}

void redis_links_free(struct redis_link **links)
{
	while (*links) {
		struct redis_link *l = *links;

		if (l->ac) { /* only when its connection was never freed: cannot happen */
			l->ring_dead = true;
			l->rc = NULL;
			redisAsyncFree(l->ac);
		}
		link_free(l);
	}
}

bool redis_conn_command(struct redis_conn *rc, struct redis_cmd *cmd, int argc, const char **argv,
			const size_t *lens)
{
	struct redis_link *l = rc ? rc->link : NULL;

	if (!l || !l->ac || rc->state != REDIS_UP || rc->fail_pending ||
	    (l->ac->c.flags & (REDIS_DISCONNECTING | REDIS_FREEING)))
		return false;
	if (redisAsyncCommandArgv(l->ac, cmd_reply, cmd, argc, argv, lens) != REDIS_OK)
		return false;
	if (!rc->inflight++) {
		rc->deadline_ms = clock_mono_ms() + rc->timeout_ms;
		conn_timer_update(rc);
	}
	return true;
}
