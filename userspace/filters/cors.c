/*
 * CORS filter: answers preflights itself (they never reach the upstream) and puts the
 * policy's headers on every response to an allowed origin — upstream responses, cached
 * ones and the gateway's own errors (a 401 or 429 a script could not read otherwise).
 * It runs first after the route so a preflight needs no credentials. The upstream's own
 * Access-Control-* answers are replaced: the gateway's policy is the one that holds.
 */
#include <string.h>

#include "config/config.h"
#include "cors/cors.h"
#include "filters/filters.h"

/* A 204 preflight's header lines: the policy's lists plus an origin. */
#define PREFLIGHT_HEADERS_MAX 4096

struct cors_state {
	const char *allow_origin; /* for this request's Origin; NULL: not allowed or none */
	bool preflight;		  /* answered here: its response carries its own headers */
};

static enum filter_verdict cors_request(struct stream *st, void *state)
{
	struct cors_state *cs = state;
	const struct cors_policy *p = st->cfg->routes[st->route].cors;
	const struct http_header *origin;
	char *lines;
	bool fits;

	if (cors_is_preflight(&st->req)) {
		cs->preflight = true;
		lines = stream_alloc(st, PREFLIGHT_HEADERS_MAX);
		if (!lines) {
			stream_reply_error(st, 503, "out of memory", NULL);
			return FILTER_DONE;
		}
		if (cors_preflight(p, &st->req, lines, PREFLIGHT_HEADERS_MAX, &fits) == CORS_OK &&
		    fits)
			stream_reply_status(st, 204, lines);
		else
			stream_reply_error(st, 403, "cors request denied", NULL);
		return FILTER_DONE;
	}
	origin = http_find_header(st->req.headers, st->req.nheaders, "origin");
	if (origin)
		cs->allow_origin = cors_allow_origin(p, origin->value);
	return FILTER_CONTINUE;
}

static void cors_response(struct stream *st, void *state, const struct http_response *resp)
{
	struct cors_state *cs = state;
	const struct cors_policy *p = st->cfg->routes[st->route].cors;

	if (cs->preflight || stream_resp_edits_room(st) < 7)
		return;
	stream_resp_header_remove(st, "Access-Control-Allow-Origin");
	stream_resp_header_remove(st, "Access-Control-Allow-Credentials");
	stream_resp_header_remove(st, "Access-Control-Expose-Headers");
	/* With explicit origins the answer depends on Origin, for every request. */
	if (!p->any_origin)
		stream_resp_header_add(st, "Vary", "Origin");
	if (!cs->allow_origin)
		return;
	stream_resp_header_add(st, "Access-Control-Allow-Origin", cs->allow_origin);
	if (p->credentials)
		stream_resp_header_add(st, "Access-Control-Allow-Credentials", "true");
	if (p->expose_text[0])
		stream_resp_header_add(st, "Access-Control-Expose-Headers", p->expose_text);
}

const struct filter filter_cors = {
    .name = "cors",
    .state_size = sizeof(struct cors_state),
    .on_request = cors_request,
    .on_response = cors_response,
};
