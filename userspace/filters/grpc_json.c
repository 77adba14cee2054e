/*
 * grpc_json filter: REST/JSON clients of a gRPC upstream. The request's method and path
 * pick a method of the route's services (grpc/ bindings: google.api.http annotations, and
 * POST /pkg.Service/Method for every method); the JSON body (read whole through the
 * host), path variables and query parameters become the request message, sent with the
 * worker's client as a gRPC call to the route's upstream. The answer is turned back into
 * JSON and served with stream_reply_body() (a server-streaming method: a JSON array of
 * its messages), or a non-OK grpc-status becomes the HTTP status Envoy would give it with
 * the gateway's JSON error body. Requests that already are gRPC (content-type
 * application/grpc) get 415: the proxied path would forward them as HTTP/1.1, which no
 * gRPC server takes; gRPC clients use a route without grpc_json.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "client/client.h"
#include "config/config.h"
#include "filters/filters.h"
#include "grpc/policy.h"

#define GRPC_CALL_HEADERS "Content-Type: application/grpc\r\nTE: trailers\r\n"

struct grpc_json_state {
	struct stream_ref ref;
	struct grpc_match match;
	bool matched, sent, done;
	struct client_call *call;
	enum client_error err;
	int http_status;
	int grpc_status; /* -1: the response named none */
	char grpc_message[256];
	char *body; /* the upstream's frames */
	size_t body_len;
	char *json; /* what the client gets */
};

static bool is_grpc_request(const struct http_request *req)
{
	const struct http_header *ct = http_find_header(req->headers, req->nheaders, "content-type");

	return ct && ct->value.len >= 16 && !strncasecmp(ct->value.p, "application/grpc", 16);
}

static const struct http_header *find_in(const struct http_header *h, int n, const char *name)
{
	return h && n ? http_find_header(h, n, name) : NULL;
}

/* grpc-status / grpc-message from the trailers, or from the head of a Trailers-Only
 * response (how gRPC servers send an error without messages). */
static void note_status(struct grpc_json_state *gs, const struct client_response *resp)
{
	const struct http_header *s = find_in(resp->trailers, resp->ntrailers, "grpc-status");
	const struct http_header *m = find_in(resp->trailers, resp->ntrailers, "grpc-message");

	if (!s && resp->head) {
		s = find_in(resp->head->headers, resp->head->nheaders, "grpc-status");
		m = find_in(resp->head->headers, resp->head->nheaders, "grpc-message");
	}
	gs->grpc_status = -1;
	if (s) {
		char t[12];

		snprintf(t, sizeof(t), "%.*s", (int)s->value.len, s->value.p);
		gs->grpc_status = atoi(t);
	}
	if (m)
		grpc_message_decode(m->value.p, m->value.len, gs->grpc_message,
				    sizeof(gs->grpc_message));
}

static void call_done(void *arg, const struct client_response *resp)
{
	struct grpc_json_state *gs = arg;

	gs->call = NULL;
	gs->done = true;
	gs->err = resp->err;
	gs->http_status = resp->status;
	if (resp->err == CLIENT_OK) {
		note_status(gs, resp);
		gs->body = malloc(resp->body_len ? resp->body_len : 1);
		if (gs->body) {
			memcpy(gs->body, resp->body, resp->body_len);
			gs->body_len = resp->body_len;
		} else {
			gs->err = CLIENT_ERR_NOMEM;
		}
	}
	stream_ref_wake(gs->ref);
}

static enum filter_verdict reply(struct stream *st, int status, const char *reason)
{
	/* the reason outlives this call (the host may write it later) */
	const char *copy = stream_strdup(st, reason, strlen(reason));

	stream_reply_error(st, status, copy ? copy : "bad request", NULL);
	return FILTER_DONE;
}

static enum filter_verdict start_call(struct stream *st, struct grpc_json_state *gs)
{
	const char *query = st->req.query.len ? stream_strdup(st, st->req.query.p,
							      st->req.query.len) : NULL;
	struct client_request_opts o = {.cfg = st->cfg,
					.upstream = st->upstream,
					.method = "POST",
					.path = gs->match.b->method->path,
					.headers = GRPC_CALL_HEADERS,
					.max_body_bytes = st->cfg->limits.max_body_bytes};
	char err[512], *msg;
	size_t n;

	if (!grpc_build_request(&gs->match, st->req_body, st->req_body_len, query, &msg, &n, err,
				sizeof(err)))
		return reply(st, 400, err);
	o.body = grpc_frame(msg, n, &o.body_len);
	free(msg);
	if (!o.body)
		return reply(st, 503, "out of memory");
	gs->ref = stream_ref(st);
	gs->call = client_request(st->env->client, &o, call_done, gs);
	free((char *)o.body); /* the client copied it */
	if (!gs->call)
		return reply(st, 503, "out of memory");
	gs->sent = true;
	return FILTER_WAIT;
}

static enum filter_verdict answer(struct stream *st, struct grpc_json_state *gs)
{
	char err[512];

	if (gs->err == CLIENT_ERR_TIMEOUT)
		return reply(st, 504, "upstream timeout");
	if (gs->err == CLIENT_ERR_NO_TARGET || gs->err == CLIENT_ERR_CONNECT ||
	    gs->err == CLIENT_ERR_QUEUE_TIMEOUT)
		return reply(st, 503, "upstream unavailable");
	if (gs->err != CLIENT_OK)
		return reply(st, 502, client_error_name(gs->err));
	if (gs->grpc_status > 0)
		return reply(st, grpc_status_to_http(gs->grpc_status),
			     gs->grpc_message[0] ? gs->grpc_message : "grpc error");
	if (gs->http_status != 200 || gs->grpc_status < 0)
		return reply(st, 502, "upstream is not a gRPC server (no grpc-status)");
	gs->json = grpc_build_response(gs->match.b, gs->body, gs->body_len, err, sizeof(err));
	if (!gs->json)
		return reply(st, 502, err);
	stream_reply_body(st, "", gs->json, strlen(gs->json));
	return FILTER_DONE;
}

static enum filter_verdict grpc_json_request(struct stream *st, void *state)
{
	struct grpc_json_state *gs = state;
	const struct grpc_json_policy *pol = st->cfg->routes[st->route].grpc_json;

	if (gs->done)
		return answer(st, gs);
	if (gs->sent)
		return FILTER_WAIT;
	if (!gs->matched) {
		if (is_grpc_request(&st->req))
			return reply(st, 415, "this route transcodes JSON; send gRPC elsewhere");
		switch (grpc_match(pol->pool, http_method_name(st->req.method), st->path,
				   st->path_len, &gs->match)) {
		case GRPC_NO_MATCH:
			return reply(st, 404, "no such method");
		case GRPC_BAD_METHOD:
			return reply(st, 405, "method not allowed");
		case GRPC_MATCH:
			break;
		}
		gs->matched = true;
		if (!st->env->client)
			return reply(st, 503, "no client");
		if (!stream_need_request_body(st, st->cfg->limits.max_body_bytes))
			return reply(st, 503, "cannot read the request body");
	}
	if (!st->req_body_ready)
		return FILTER_WAIT;
	return start_call(st, gs);
}

static void grpc_json_end(struct stream *st, void *state)
{
	struct grpc_json_state *gs = state;

	(void)st;
	if (gs->call)
		client_cancel(gs->call);
	grpc_match_clear(&gs->match);
	free(gs->body);
	free(gs->json);
}

const struct filter filter_grpc_json = {
    .name = "grpc_json",
    .state_size = sizeof(struct grpc_json_state),
    .on_request = grpc_json_request,
    .on_end = grpc_json_end,
};
