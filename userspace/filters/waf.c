/*
 * WAF filter: the config's ModSecurity rules (waf/waf.h) over the request head, then over
 * the first waf.inspect_body_bytes of its body. It runs first after the route (see
 * filters.h): attack traffic is refused before it costs a credential check, an IdP
 * round trip or a rate-limit token.
 *
 * A request with a body waits for the whole body (stream_need_request_body, bounded by
 * limits.max_body_bytes like an unbuffered one); the rules see its first
 * inspect_body_bytes. The evaluation itself is synchronous CPU work on the worker.
 */
#include <string.h>

#include "config/config.h"
#include "filters/filters.h"
#include "metrics/metrics.h"
#include "waf/waf.h"

struct waf_state {
	struct waf_tx *tx;
	bool flagged; /* an intervention was seen (and logged, counted) */
};

static bool has_body(const struct stream *st)
{
	return st->req.body == HTTP_BODY_CHUNKED ||
	       (st->req.body == HTTP_BODY_LENGTH && st->req.content_length > 0);
}

/* The access log's "waf_rules": every rule that logged a match so far. */
static void note_ids(struct stream *st, struct waf_state *ws)
{
	char ids[WAF_MAX_RULE_IDS * 11 + 3];

	waf_tx_rule_ids(ws->tx, ids, sizeof(ids));
	st->log_waf = stream_strdup(st, ids, strlen(ids));
}

/* The rules intervened: the ids go to the access log; block mode answers 403. */
static enum filter_verdict flag(struct stream *st, struct waf_state *ws)
{
	const struct waf_config *w = st->cfg->waf;

	ws->flagged = true;
	note_ids(st, ws);
	metrics_waf(st->env->metrics, st->cfg->routes[st->route].metrics_slot,
		    w->mode == WAF_DETECT);
	if (w->mode == WAF_DETECT)
		return FILTER_CONTINUE;
	stream_reply_error(st, 403, "blocked", NULL);
	return FILTER_DONE;
}

static enum filter_verdict head_phase(struct stream *st, struct waf_state *ws)
{
	const struct waf_config *w = st->cfg->waf;
	struct waf_request r = {
	    .peer = st->peer_addr,
	    .local = st->local_addr,
	    .method = st->req.method_str,
	    .target = st->req.target,
	    .minor_version = st->req.minor_version,
	    .headers = st->req.headers,
	    .nheaders = st->req.nheaders,
	};

	ws->tx = waf_tx_new(w);
	if (!ws->tx) {
		stream_reply_error(st, 503, "out of memory", NULL);
		return FILTER_DONE;
	}
	if (waf_tx_headers(ws->tx, &r) && flag(st, ws) == FILTER_DONE)
		return FILTER_DONE;
	if (!w->inspect_body_bytes || !has_body(st))
		return FILTER_CONTINUE;
	if (!stream_need_request_body(st, st->cfg->limits.max_body_bytes)) {
		stream_reply_error(st, 503, "request body cannot be buffered", NULL);
		return FILTER_DONE;
	}
	return FILTER_WAIT;
}

static enum filter_verdict waf_request(struct stream *st, void *state)
{
	const struct waf_config *w = st->cfg->waf;
	struct waf_state *ws = state;
	size_t len = 0;
	bool hit;

	if (!ws->tx) {
		enum filter_verdict v = head_phase(st, ws);

		if (v != FILTER_CONTINUE || !ws->tx)
			return v;
	}
	if (st->req_body_ready)
		len = st->req_body_len < w->inspect_body_bytes ? st->req_body_len
							       : w->inspect_body_bytes;
	/* phase 2 runs without a body too: CRS decides on the anomaly score there */
	hit = waf_tx_body(ws->tx, st->req_body, len);
	if (hit && !ws->flagged)
		return flag(st, ws);
	if (ws->flagged)
		note_ids(st, ws); /* detect mode: what the body phase added */
	return FILTER_CONTINUE;
}

static void waf_end(struct stream *st, void *state)
{
	struct waf_state *ws = state;

	waf_tx_free(ws->tx);
	ws->tx = NULL;
}

const struct filter filter_waf = {
    .name = "waf",
    .state_size = sizeof(struct waf_state),
    .on_request = waf_request,
    .on_end = waf_end,
};
