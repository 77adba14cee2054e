/*
 * Route filter: normalises the path, takes the host, matches a route (404/405), applies the
 * request-size limit that does not depend on reading the body, and appends the route's
 * filters to the chain.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "config/config.h"
#include "cors/cors.h"
#include "filters/filters.h"
#include "router/router.h"

/* Host without port or trailing dot, lower-cased; false when it does not fit or an IPv6 literal is open. */
static bool host_of(const struct http_request *req, char *out, size_t outlen, size_t *len)
{
	const char *p = req->host.p;
	size_t n = req->host.len, i;

	if (n && p[0] == '[') {
		const char *close = memchr(p, ']', n);

		if (!close)
			return false;
		n = close - p + 1;
	} else {
		const char *colon = memchr(p, ':', n);

		if (colon)
			n = colon - p;
	}
	if (n > 1 && p[n - 1] == '.')
		n--; /* "example.com." is the fully qualified "example.com" */
	if (n >= outlen)
		return false;
	for (i = 0; i < n; i++)
		out[i] = tolower((unsigned char)p[i]);
	out[n] = '\0';
	*len = n;
	return true;
}

static enum filter_verdict reject_unmatched(struct stream *st, enum route_result rr)
{
	char allow[128], extra[160];

	if (rr == ROUTE_NOT_FOUND) {
		stream_reply_error(st, 404, "no route", NULL);
		return FILTER_DONE;
	}
	router_format_allow(st->match.allowed_methods, allow, sizeof(allow));
	snprintf(extra, sizeof(extra), "Allow: %s\r\n", allow);
	stream_reply_error(st, 405, "method not allowed", extra);
	return FILTER_DONE;
}

static bool cors_route_for(struct stream *st, struct http_request *as, enum http_method m)
{
	struct route_match match;

	as->method = m;
	if (router_match(st->cfg->router, st->cfg->routes, as, st->path, st->path_len,
			 st->host_name, st->host_len, &match) != ROUTE_MATCH ||
	    !st->cfg->routes[match.route].cors)
		return false;
	st->match = match;
	return true;
}

/*
 * A preflight announces the request that will follow: it goes to the route that request
 * will take (a route allowing only GET and POST still gets its OPTIONS preflights), when
 * that route has a CORS policy to answer it. A method no route here takes is still the
 * path's CORS policy's to refuse (403), so the other methods are tried after it.
 */
static enum route_result route_preflight(struct stream *st, enum route_result rr)
{
	const struct http_header *m = http_find_header(st->req.headers, st->req.nheaders,
						       "access-control-request-method");
	struct http_request *as = stream_alloc(st, sizeof(*as));
	enum http_method announced = HTTP_OTHER;

	if (!as)
		return rr;
	*as = st->req;
	for (int i = HTTP_GET; i < HTTP_METHOD_COUNT; i++)
		if (strlen(http_method_name(i)) == m->value.len &&
		    !memcmp(http_method_name(i), m->value.p, m->value.len))
			announced = i;
	if (cors_route_for(st, as, announced))
		return ROUTE_MATCH;
	for (int i = HTTP_GET; i < HTTP_METHOD_COUNT; i++)
		if (i != (int)announced && cors_route_for(st, as, i))
			return ROUTE_MATCH;
	return rr;
}

static enum filter_verdict route_request(struct stream *st, void *state)
{
	const struct http_request *req = &st->req;
	enum route_result rr;
	ssize_t plen;

	st->path = stream_strdup(st, req->path.p, req->path.len);
	if (!st->path) {
		stream_reply_error(st, 503, "out of memory", NULL);
		return FILTER_DONE;
	}
	plen = http_path_normalize(st->path, req->path.len);
	if (plen < 0 || !host_of(req, st->host_name, sizeof(st->host_name), &st->host_len)) {
		stream_reply_error(st, 400, plen < 0 ? "invalid path" : "invalid host", NULL);
		return FILTER_DONE;
	}
	st->path_len = plen;
	rr = router_match(st->cfg->router, st->cfg->routes, req, st->path, plen, st->host_name,
			  st->host_len, &st->match);
	if (cors_is_preflight(req) && (rr != ROUTE_MATCH || !st->cfg->routes[st->match.route].cors))
		rr = route_preflight(st, rr);
	if (rr != ROUTE_MATCH)
		return reject_unmatched(st, rr);
	st->route = st->match.route;
	st->upstream = st->cfg->routes[st->route].upstream;
	if (req->body == HTTP_BODY_LENGTH && req->content_length > st->cfg->limits.max_body_bytes) {
		stream_reply_error(st, 413, "request body too large", NULL);
		return FILTER_DONE;
	}
	if (!filters_for_route(st)) {
		stream_reply_error(st, 503, "out of memory", NULL);
		return FILTER_DONE;
	}
	return FILTER_CONTINUE;
}

const struct filter filter_route = {
	.name = "route",
	.on_request = route_request,
};

bool filters_begin(struct stream *st)
{
	return stream_add_filter(st, &filter_route);
}

bool filters_for_route(struct stream *st)
{
	const struct route_config *rc = &st->cfg->routes[st->route];

	if (rc->waf && !stream_add_filter(st, &filter_waf))
		return false;
	if (rc->cors && !stream_add_filter(st, &filter_cors))
		return false;
	if (rc->auth && !stream_add_filter(st, &filter_auth))
		return false;
	if (rc->rate_limit && !stream_add_filter(st, &filter_rate_limit))
		return false;
	if (rc->throttle && !stream_add_filter(st, &filter_throttle))
		return false;
	if (rc->split && !stream_add_filter(st, &filter_split))
		return false;
	if (rc->compression && !stream_add_filter(st, &filter_compress))
		return false;
	if (rc->cache_ttl_s && st->env->cache && !stream_add_filter(st, &filter_cache))
		return false;
	if (rc->transform && !stream_add_filter(st, &filter_transform))
		return false;
	/* last: everything above applies to the composed response */
	if (rc->compose && !stream_add_filter(st, &filter_compose))
		return false;
	/* last too: it answers from its gRPC call, like compose */
	if (rc->grpc_json && !stream_add_filter(st, &filter_grpc_json))
		return false;
	return true;
}
