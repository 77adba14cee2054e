/*
 * Tunnels: WebSocket (after the upstream's 101) and tcp-mode listeners. Bytes are relayed
 * in both directions without framing; a FIN is forwarded as shutdown(SHUT_WR) once
 * everything before it was delivered; an error on either side closes both.
 */
#include <string.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include "common/log.h"
#include "proxy/proxy.h"
#include "splice/splice.h"
#include "tls/tls.h"
#include "upstream/upstream.h"

#define SPLICE_RECHECK_MS 5

static struct splice *conn_splice(const struct conn *c)
{
	return c->cli.w->gw->splice;
}

/* Puts a socket in the sockhash before anything more is read from it (splice.h, 1). */
bool splice_enrol(struct conn *c, struct side *s)
{
	int err, unread = 0;

	if (s->splice_enrolled)
		return true;
	/*
	 * Bytes already in the receive queue when a socket joins the sockhash never went
	 * through the verdict program, and on Linux 6.18 a partial read of such a segment
	 * followed by the verdict path consuming the rest duplicates bytes (seen under load
	 * in tests/e2e/test_l4.py). Only a socket with nothing queued is enrolled; the rest
	 * of the flow is relayed in userspace.
	 */
	if (ioctl(s->fd, SIOCINQ, &unread) || unread) {
		c->splice_wanted = false;
		tunnel_release_splice(c);
		return false;
	}
	err = splice_add(conn_splice(c), s->fd);
	if (err) {
		log_debug("splice", "cannot enrol a socket (%s): relaying in userspace",
			  strerror(-err));
		c->splice_wanted = false;
		return false;
	}
	s->splice_enrolled = true;
	s->splice_base = s->bytes_received;
	s->splice_handled = 0;
	return true;
}

/* Takes both sockets out of the sockhash; must run while both fds are still open. */
void tunnel_release_splice(struct conn *c)
{
	struct splice *sp = conn_splice(c);
	struct side *up = c->up ? &c->up->s : NULL;

	if (!sp)
		return;
	if (c->spliced && up) {
		splice_unpair(sp, c->cli.fd, up->fd);
		c->cli.splice_enrolled = up->splice_enrolled = false;
	}
	if (c->cli.splice_enrolled)
		splice_remove(sp, c->cli.fd);
	if (up && up->splice_enrolled)
		splice_remove(sp, up->fd);
	c->cli.splice_enrolled = false;
	if (up)
		up->splice_enrolled = false;
	c->spliced = false;
}

static bool buffers_drained(const struct side *a, const struct side *b)
{
	return !buf_len(&a->in) && !buf_len(&b->in) && !buf_len(&a->out) && !buf_len(&b->out) &&
	       !((a->pending | b->pending) & PEND_SEND);
}

/* Pairs the two sockets once userspace holds none of the flow's bytes (splice.h, 2). */
static void try_pair(struct conn *c)
{
	struct side *cli = &c->cli, *up = &c->up->s;
	int err;

	if (!cli->splice_enrolled || !up->splice_enrolled || cli->eof || up->eof ||
	    !buffers_drained(cli, up))
		return;
	err = splice_pair(conn_splice(c), cli->fd, cli->bytes_received - cli->splice_base, up->fd,
			  up->bytes_received - up->splice_base);
	if (err) {
		log_debug("splice", "pairing failed (%s): relaying in userspace", strerror(-err));
		tunnel_release_splice(c);
		c->splice_wanted = false;
		return;
	}
	c->spliced = true;
	cli->splice_handled = cli->bytes_received - cli->splice_base;
	up->splice_handled = up->bytes_received - up->splice_base;
}

/*
 * While spliced, bytes that reach userspace (leftovers from before pairing) and EOFs may be
 * forwarded only once the kernel has delivered what it redirected before them (splice.h,
 * 3). A direction past the in-flight bound (splice.h, 4) is not relayed in userspace: on
 * Linux 6.18 that hand-over duplicated a 64 KiB segment in about one flow in ten
 * (tests/e2e/test_l4.py with a slow receiver), so the flow is reset instead, which the
 * peers see as an error rather than as silently corrupted data.
 */
static bool splice_allows(struct conn *c, struct side *src, struct side *dst)
{
	struct splice_status st;

	if (!c->spliced || splice_poll(conn_splice(c), src->fd, dst->fd, &st))
		return true;
	if (st.state != SPLICE_KERNEL) {
		log_debug("splice", "flow %s past the in-flight bound: reset", c->peer_addr);
		src->failed = true;
		return false;
	}
	if (buf_len(&src->in) || st.queued == 0)
		return true;
	side_arm_timer(&c->cli, SPLICE_RECHECK_MS);
	return false;
}

/* Reports leftover bytes as forwarded so the kernel takes the direction over again. */
static void report_handled(struct conn *c, struct side *src, struct side *dst)
{
	uint64_t total = src->bytes_received - src->splice_base;

	if (!c->spliced || total == src->splice_handled || buf_len(&src->in) ||
	    buf_len(&dst->out) || (dst->pending & PEND_SEND))
		return;
	if (!splice_handled(conn_splice(c), src->fd, total))
		src->splice_handled = total;
}

void tunnel_start(struct conn *c)
{
	uint32_t cap = 64 * 1024 + c->cfg->limits.max_header_bytes;

	c->state = CS_TUNNEL;
	c->cli.recv_timeout_ms = 0;
	c->cli.send_timeout_ms = 0;
	/* Pipes need plain sockets on both sides: TLS bytes must pass through OpenSSL. */
	c->pipe_wanted = c->cfg->listeners[c->listener].splice == SPLICE_AUTO && !c->cli.tls && !c->up->s.tls;
	if (!buf_ensure(&c->cli.out, cap) || !buf_ensure(&c->up->s.out, cap))
		conn_abort(c);
}

/* Relays one direction; forwards EOF as a half-close once src's bytes are delivered. */
static bool relay(struct conn *c, struct side *src, struct side *dst)
{
	size_t n = buf_len(&src->in);

	if ((n || (src->eof && !dst->want_shut_wr)) && !splice_allows(c, src, dst))
		return false;
	if (n) {
		n = pump_room(src, dst);
		if (!n)
			return false;
		buf_append(&dst->out, buf_head(&src->in), n);
		buf_consume(&src->in, n);
		return true;
	}
	if (src->eof && !dst->want_shut_wr) {
		dst->want_shut_wr = true;
		return true;
	}
	return false;
}

bool tunnel_step(struct conn *c)
{
	struct upconn *u = c->up;
	bool progress;

	if (!u || c->cli.failed || u->s.failed) {
		struct linger reset = { .l_onoff = 1, .l_linger = 0 };

		/* Pass a reset on as a reset, not as an orderly close. */
		if (u && c->cli.failed)
			setsockopt(u->s.fd, SOL_SOCKET, SO_LINGER, &reset, sizeof(reset));
		else if (u)
			setsockopt(c->cli.fd, SOL_SOCKET, SO_LINGER, &reset, sizeof(reset));
		conn_abort(c);
		return true;
	}
	if (c->pipes) {
		progress = tunnel_pipe_step(c);
	} else {
		progress = relay(c, &c->cli, &u->s);
		progress |= relay(c, &u->s, &c->cli);
		if (c->pipe_wanted && buffers_drained(&c->cli, &u->s) &&
		    !((c->cli.pending | u->s.pending) & PEND_RECV))
			progress |= tunnel_pipe_engage(c);
	}
	if (c->splice_wanted && !c->spliced)
		try_pair(c);
	report_handled(c, &c->cli, &u->s);
	report_handled(c, &u->s, &c->cli);
	if (c->cli.eof && u->s.eof && !buf_len(&c->cli.in) && !buf_len(&u->s.in) &&
	    c->cli.shut_wr && u->s.shut_wr) {
		if (c->in_exchange)
			finish_exchange(c, false);
		conn_abort(c);
		return true;
	}
	return progress;
}

static int sni_upstream(const struct listener_config *lc, const char *host)
{
	for (int i = 0; i < lc->nsni_routes; i++) {
		const char *pat = lc->sni_routes[i].host;

		if (!strcmp(pat, host))
			return lc->sni_routes[i].upstream;
		if (pat[0] == '*' && pat[1] == '.') {
			const char *dot = strchr(host, '.');

			if (dot && !strcmp(dot, pat + 1))
				return lc->sni_routes[i].upstream;
		}
	}
	return lc->upstream;
}

static void l4_connect(struct conn *c, int upstream)
{
	struct worker *w = c->cli.w;
	const struct upstream_config *uc;
	struct balance_rr local_rr, *rr;
	struct upconn *u;
	int idx;

	if (upstream < 0) {
		conn_abort(c);
		return;
	}
	uc = &c->cfg->upstreams[upstream];
	rr = worker_rr(w, c->cfg, upstream);
	if (!rr) {
		memset(&local_rr, 0, sizeof(local_rr));
		rr = &local_rr;
	}
	idx = balance_pick(uc, rr, hash_key64(c->peer_ip, strlen(c->peer_ip)), 0, w->now_ms);
	u = idx < 0 || !conn_take_exchange(c) ? NULL : upconn_new(w, &uc->targets[idx]);
	if (!u) {
		conn_abort(c);
		return;
	}
	c->ex->upstream = upstream;
	c->ex->target = idx;
	u->owner = c;
	c->up = u;
	upconn_connect(u, uc->connect_timeout_ms);
	c->state = CS_CONNECTING;
}

void l4_start(struct conn *c)
{
	const struct listener_config *lc = &c->cfg->listeners[c->listener];

	c->l4 = true;
	c->splice_wanted = lc->splice == SPLICE_SOCKMAP && conn_splice(c);
	if (c->splice_wanted)
		splice_enrol(c, &c->cli);
	if (lc->nsni_routes) {
		c->state = CS_SNI_PEEK;
		c->cli.recv_timeout_ms = c->cfg->limits.header_timeout_ms;
		return;
	}
	l4_connect(c, lc->upstream);
}

/* Reads until the ClientHello names a server, then connects to that pool. */
bool l4_sni_step(struct conn *c)
{
	const struct listener_config *lc = &c->cfg->listeners[c->listener];
	char host[256];
	int r;

	if (c->cli.failed || c->cli.eof) {
		conn_abort(c);
		return true;
	}
	if (!buf_len(&c->cli.in))
		return false;
	r = tls_peek_sni((const unsigned char *)buf_head(&c->cli.in), buf_len(&c->cli.in), host,
			 sizeof(host));
	if (r == 0 && buf_space(&c->cli.in))
		return false;
	for (char *p = host; r == 1 && *p; p++)
		*p = (*p >= 'A' && *p <= 'Z') ? *p + 32 : *p;
	l4_connect(c, r == 1 ? sni_upstream(lc, host) : lc->upstream);
	return true;
}
