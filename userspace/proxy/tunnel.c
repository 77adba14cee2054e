/*
 * Tunnels: WebSocket (after the upstream's 101) and tcp-mode listeners. Bytes are relayed
 * in both directions without framing; a FIN is forwarded as shutdown(SHUT_WR) once
 * everything before it was delivered; an error on either side closes both.
 */
#include <string.h>

#include "common/log.h"
#include "proxy/proxy.h"
#include "tls/tls.h"
#include "upstream/upstream.h"

void tunnel_start(struct conn *c)
{
	uint32_t cap = 64 * 1024 + c->cfg->limits.max_header_bytes;

	c->state = CS_TUNNEL;
	c->cli.recv_timeout_ms = 0;
	c->cli.send_timeout_ms = 0;
	if (!buf_ensure(&c->cli.out, cap) || !buf_ensure(&c->up->s.out, cap))
		conn_abort(c);
}

/* Relays one direction; forwards EOF as a half-close once src's bytes are delivered. */
static bool relay(struct side *src, struct side *dst)
{
	size_t n = buf_len(&src->in);

	if (n) {
		if (!(dst->pending & PEND_SEND))
			buf_compact(&dst->out);
		if (n > buf_space(&dst->out))
			n = buf_space(&dst->out);
		if (n) {
			buf_append(&dst->out, buf_head(&src->in), n);
			buf_consume(&src->in, n);
			src->relayed += n;
			return true;
		}
		return false;
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
		conn_abort(c);
		return true;
	}
	progress = relay(&c->cli, &u->s);
	progress |= relay(&u->s, &c->cli);
	if (c->cli.eof && u->s.eof && !buf_len(&c->cli.in) && !buf_len(&u->s.in) &&
	    c->cli.shut_wr && u->s.shut_wr) {
		if (c->in_exchange)
			finish_exchange(c, false);
		conn_abort(c);
		return true;
	}
	return progress;
}

void tunnel_arm_watch(struct conn *c)
{
	(void)c;
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
	u = idx < 0 ? NULL : upconn_new(w, &uc->targets[idx]);
	if (!u) {
		conn_abort(c);
		return;
	}
	c->ex.upstream = upstream;
	c->ex.target = idx;
	u->owner = c;
	c->up = u;
	upconn_connect(u, uc->connect_timeout_ms);
	c->state = CS_CONNECTING;
}

void l4_start(struct conn *c)
{
	const struct listener_config *lc = &c->cfg->listeners[c->listener];

	c->l4 = true;
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
