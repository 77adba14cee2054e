/*
 * Transform filter: the route's transform (SPEC "Transformation"). On the way in it edits
 * the request head (headers, query, path) once, after authentication so templates can name
 * the consumer and claims, then, when body ops are set, waits for the whole request body
 * (stream_need_request_body) and replaces it. On the way out it applies the response
 * header ops to every response the client gets (upstream, cached or the gateway's own). It
 * runs last so its response edits see what the other filters added before it.
 */
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "filters/filters.h"
#include "transform/transform.h"

struct transform_state {
	bool head_done;
	bool held;     /* the response body went through on_response_whole */
	bool from_xml; /* the held origin body says it is XML */
	bool to_xml;   /* negotiate: the client prefers XML */
};

static bool wants_req_body(const struct transform_policy *p)
{
	return p->req_body.active || p->req_format == TRANSFORM_FORMAT_XML;
}

static bool wants_resp_body(const struct transform_policy *p)
{
	return p->resp_body.active || p->resp_format == TRANSFORM_FORMAT_NEGOTIATE;
}

static bool has_type(const struct http_header *h, int n, const char *sub)
{
	const struct http_header *ct = http_find_header(h, n, "content-type");

	return ct && memmem(ct->value.p, ct->value.len, sub, strlen(sub));
}

static const struct transform_policy *policy(const struct stream *st)
{
	return st->cfg->routes[st->route].transform;
}

static struct compose_vars vars_of(const struct stream *st)
{
	struct compose_vars v = {
	    .consumer = st->consumer,
	    .auth = st->auth_done ? &st->auth : NULL,
	    .req = &st->req,
	    .path = st->path,
	    .path_len = st->path_len,
	};
	return v;
}

/* Request header edits; false when the stream has no room for them. */
static bool edit_req_headers(struct stream *st, const struct transform_policy *p,
			     const struct compose_vars *v)
{
	struct transform_edits edits, *e = &edits;
	char *val;

	transform_req_headers(&p->req, st->req.headers, st->req.nheaders, v, e);
	if (stream_req_edits_room(st) < e->ndrop + e->nadd)
		return false;
	for (int i = 0; i < e->ndrop; i++)
		stream_req_header_remove(st, e->drop[i]);
	for (int i = 0; i < e->nadd; i++) {
		val = stream_strdup(st, e->add[i].value.p, e->add[i].value.len);
		if (!val || !stream_req_header_add(st, e->add[i].name, val))
			return false;
	}
	return true;
}

/* Headers, query and path; a verdict other than CONTINUE when the request ends here. */
static enum filter_verdict edit_head(struct stream *st, const struct transform_policy *p)
{
	struct compose_vars v = vars_of(st);
	char buf[8192];
	size_t n;
	int r;

	/* A body rewritten on the way out must come as the origin's identity JSON. */
	if (wants_resp_body(p) && !stream_req_header_remove(st, "Accept-Encoding")) {
		stream_reply_error(st, 503, "out of memory", NULL);
		return FILTER_DONE;
	}
	if (!edit_req_headers(st, p, &v)) {
		stream_reply_error(st, 503, "out of memory", NULL);
		return FILTER_DONE;
	}
	if (p->nqremove || p->nqset) {
		if (!transform_query(p, st->req.query, &v, buf, sizeof(buf), &n)) {
			stream_reply_error(st, 414, "request line too long", NULL);
			return FILTER_DONE;
		}
		if (!stream_set_upstream_query(st, buf, n)) {
			stream_reply_error(st, 503, "out of memory", NULL);
			return FILTER_DONE;
		}
	}
	if (p->path_re) {
		r = transform_path(p, st->path, st->path_len, buf, sizeof(buf), &n);
		if (r < 0) {
			stream_reply_error(st, 400, "invalid path", NULL);
			return FILTER_DONE;
		}
		if (!r && !stream_set_upstream_path(st, buf, n)) {
			stream_reply_error(st, 503, "out of memory", NULL);
			return FILTER_DONE;
		}
	}
	return FILTER_CONTINUE;
}

static bool has_body(const struct stream *st)
{
	return st->req.body == HTTP_BODY_CHUNKED ||
	       (st->req.body == HTTP_BODY_LENGTH && st->req.content_length > 0);
}

/* The request body through transform.request.body, once the host has it whole. */
static enum filter_verdict edit_body(struct stream *st, const struct transform_policy *p)
{
	json_error_t err;
	json_t *j;
	char *out;
	size_t n;
	bool ok;

	if (!st->req_body_len)
		return FILTER_CONTINUE; /* a chunked body can still turn out empty */
	j = json_loadb(st->req_body, st->req_body_len, 0, &err);
	if (!j) {
		stream_reply_error(st, 400, "request body is not JSON", NULL);
		return FILTER_DONE;
	}
	transform_json_ops(&p->req_body, j);
	if (p->req_format == TRANSFORM_FORMAT_XML) {
		out = transform_json_to_xml(j, &n);
		json_decref(j);
		if (!out) {
			stream_reply_error(st, 400, "request body has no XML form", NULL);
			return FILTER_DONE;
		}
		ok = stream_set_request_body(st, out, n) &&
		     stream_req_header_remove(st, "Content-Type") &&
		     stream_req_header_add(st, "Content-Type", "application/xml");
	} else {
		out = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
		json_decref(j);
		ok = out && stream_set_request_body(st, out, strlen(out));
	}
	free(out);
	if (!ok) {
		stream_reply_error(st, 503, "out of memory", NULL);
		return FILTER_DONE;
	}
	return FILTER_CONTINUE;
}

static enum filter_verdict transform_request(struct stream *st, void *state)
{
	const struct transform_policy *p = policy(st);
	struct transform_state *ts = state;
	enum filter_verdict v;

	if (!ts->head_done) {
		ts->head_done = true;
		v = edit_head(st, p);
		if (v != FILTER_CONTINUE)
			return v;
	}
	if (!wants_req_body(p) || !has_body(st))
		return FILTER_CONTINUE;
	if (st->req_body_ready)
		return edit_body(st, p);
	if (!stream_need_request_body(st, st->cfg->limits.max_body_bytes)) {
		stream_reply_error(st, 503, "request body cannot be buffered", NULL);
		return FILTER_DONE;
	}
	return FILTER_WAIT;
}

static void transform_response(struct stream *st, void *state, const struct http_response *resp)
{
	const struct transform_policy *p = policy(st);
	struct transform_edits edits, *e = &edits;
	char *v;

	struct transform_state *ts = state;

	/* Only an origin's 2xx: errors (the gateway's or the origin's) keep their bodies. */
	if (wants_resp_body(p) && !ts->held && !st->resp_local && resp->status >= 200 &&
	    resp->status < 300 && resp->body != HTTP_BODY_NONE &&
	    stream_hold_response(st, state, st->cfg->limits.max_compose_bytes)) {
		const struct http_header *acc =
		    http_find_header(st->req.headers, st->req.nheaders, "accept");

		ts->from_xml = has_type(resp->headers, resp->nheaders, "xml");
		ts->to_xml = p->resp_format == TRANSFORM_FORMAT_NEGOTIATE && acc &&
			     transform_prefers_xml(acc->value);
		return; /* the head is seen again with the new body: edits then */
	}
	/* what a negotiated body is depends on Accept: shared caches must know */
	if (ts->held && p->resp_format == TRANSFORM_FORMAT_NEGOTIATE)
		stream_resp_header_add(st, "Vary", "Accept");
	transform_resp_headers(&p->resp, resp->headers, resp->nheaders, e);
	/* The config bounds the edits to fit beside CORS; only a header repeated many times
	 * and renamed can exceed the slots: removals go first so they always hold, and the
	 * stream refuses the lines past its last slot. */
	for (int i = 0; i < e->ndrop; i++)
		stream_resp_header_remove(st, e->drop[i]);
	for (int i = 0; i < e->nadd; i++) {
		/* Values taken from the response head must outlive it. */
		v = stream_alloc(st, e->add[i].value.len + 1);
		if (!v)
			return;
		memcpy(v, e->add[i].value.p, e->add[i].value.len);
		v[e->add[i].value.len] = '\0';
		stream_resp_header_add(st, e->add[i].name, v);
	}
}

/* transform.response.body over the whole origin body (held by the host). */
static bool transform_whole(struct stream *st, void *state, const char *body, size_t len,
			    const char **reason)
{
	const struct transform_policy *p = policy(st);
	struct transform_state *ts = state;
	json_error_t err;
	json_t *j, *r;
	char *out;
	size_t n = 0;
	bool ok;

	ts->held = true;
	/* negotiate reads XML when the origin says so; JSON otherwise */
	j = ts->from_xml && p->resp_format == TRANSFORM_FORMAT_NEGOTIATE
		? transform_xml_to_json(body, len)
		: json_loadb(body, len, 0, &err);
	if (!j) {
		*reason = ts->from_xml && p->resp_format == TRANSFORM_FORMAT_NEGOTIATE
			      ? "upstream response is not XML"
			      : "upstream response is not JSON";
		return false;
	}
	r = transform_json_response(&p->resp_body, j);
	json_decref(j);
	if (!r) {
		*reason = "upstream response has no such target";
		return false;
	}
	if (ts->to_xml)
		out = transform_json_to_xml(r, &n);
	else if ((out = json_dumps(r, JSON_COMPACT | JSON_ENCODE_ANY)))
		n = strlen(out);
	json_decref(r);
	if (!out) {
		*reason = "upstream response has no XML form";
		return false;
	}
	ok = stream_set_response_body(st, out, n) &&
	     (p->resp_format != TRANSFORM_FORMAT_NEGOTIATE ||
	      stream_set_response_type(st, ts->to_xml ? "application/xml" : "application/json"));
	free(out);
	if (!ok)
		*reason = "out of memory";
	return ok;
}

const struct filter filter_transform = {
    .name = "transform",
    .state_size = sizeof(struct transform_state),
    .on_request = transform_request,
    .on_response = transform_response,
    .on_response_whole = transform_whole,
};
