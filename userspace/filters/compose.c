/*
 * Compose filter: a route with "compose" answers from several upstream calls made on the
 * worker's async client (client/client.h). Calls without {calls.…} references start at
 * once and run in parallel; a call naming another starts when that one has answered.
 * Each completion may start more calls; the last one wakes the stream, whose second run
 * builds the merged body and answers through the host (stream_reply_body), so the
 * filters before this one (cache, compression, CORS) see it as they would an origin's.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/client.h"
#include "common/clock.h"
#include "common/fmt.h"
#include "compose/compose.h"
#include "config/config.h"
#include "filters/filters.h"
#include "metrics/metrics.h"

struct compose_state;

struct compose_slot {
	struct compose_state *cs;
	int idx;
	struct client_call *call;
	int status; /* the upstream's, 0 when none */
	uint64_t duration_us;
	const char *reason; /* static; NULL: succeeded */
};

struct compose_state {
	struct stream *st;
	struct stream_ref ref;
	const struct compose_policy *pol;
	uint64_t deadline_ns;
	uint32_t started, done, failed;
	bool begun;
	json_t *results[COMPOSE_MAX_CALLS];
	struct compose_slot slots[COMPOSE_MAX_CALLS];
	char *body;
};

static void start_ready(struct compose_state *cs);

static bool is_json_type(const struct http_response *h)
{
	for (int i = 0; h && i < h->nheaders; i++)
		if (h->headers[i].name.len == 12 &&
		    !strncasecmp(h->headers[i].name.p, "content-type", 12))
			return h->headers[i].value.len >= 16 &&
			       !strncasecmp(h->headers[i].value.p, "application/json", 16);
	return false;
}

static void call_finished(struct compose_state *cs, int i, int status, const char *reason,
			  json_t *body)
{
	cs->slots[i].status = status;
	cs->slots[i].reason = reason;
	cs->results[i] = body;
	cs->done |= 1u << i;
	if (reason)
		cs->failed |= 1u << i;
}

static void call_done(void *arg, const struct client_response *resp)
{
	struct compose_slot *slot = arg;
	struct compose_state *cs = slot->cs;
	json_t *body = NULL;
	const char *reason = NULL;

	slot->call = NULL;
	slot->duration_us = resp->duration_us;
	if (resp->err == CLIENT_ERR_TIMEOUT)
		reason = "timeout";
	else if (resp->err != CLIENT_OK)
		reason = client_error_name(resp->err);
	else if (resp->status < 200 || resp->status > 299)
		reason = "upstream status";
	else if (!is_json_type(resp->head) ||
		 !(body = json_loadb(resp->body, resp->body_len, 0, NULL)))
		reason = "not JSON";
	call_finished(cs, slot->idx, resp->status, reason, body);
	start_ready(cs);
	if (cs->done == (1u << cs->pol->ncalls) - 1)
		stream_ref_wake(cs->ref);
}

/* X-Request-Id, X-Forwarded-* and the identity headers auth forwards upstream; "" when
 * they do not fit. */
static void call_headers(const struct stream *st, char *out, size_t cap)
{
	size_t n = 0;
	bool ok = fmt_append_str(out, cap, &n, "X-Request-Id: ") &&
		  fmt_append_str(out, cap, &n, st->request_id ? st->request_id : "") &&
		  fmt_append_str(out, cap, &n, "\r\nX-Forwarded-For: ") &&
		  fmt_append_str(out, cap, &n, st->peer_ip ? st->peer_ip : "") &&
		  fmt_append_str(out, cap, &n, "\r\nX-Forwarded-Proto: ") &&
		  fmt_append_str(out, cap, &n, st->tls ? "https\r\n" : "http\r\n");

	for (int i = 0; ok && st->auth_done && i < st->auth.nforward; i++)
		ok = fmt_append_str(out, cap, &n, st->auth.forward[i].name) &&
		     fmt_append_str(out, cap, &n, ": ") &&
		     fmt_append_str(out, cap, &n, st->auth.forward[i].value) &&
		     fmt_append_str(out, cap, &n, "\r\n");
	if (ok && st->client_cert.subject)
		ok = fmt_append_str(out, cap, &n, AUTH_CLIENT_CERT_HEADER ": ") &&
		     fmt_append_str(out, cap, &n, st->client_cert.subject) &&
		     fmt_append_str(out, cap, &n, "\r\n");
	if (!ok)
		out[0] = '\0';
}

static void start_call(struct compose_state *cs, int i)
{
	struct stream *st = cs->st;
	const struct compose_call *c = &cs->pol->calls[i];
	struct compose_vars v = {.consumer = st->consumer,
				 .auth = st->auth_done ? &st->auth : NULL,
				 .req = &st->req,
				 .path = st->path,
				 .path_len = st->path_len,
				 .pol = cs->pol,
				 .results = cs->results};
	char path[2048], headers[4096];
	uint64_t now = clock_mono_ns();
	struct client_request_opts o = {
	    .cfg = st->cfg,
	    .upstream = c->upstream,
	    .path = path,
	    .headers = headers,
	    .max_body_bytes = st->cfg->limits.max_compose_bytes};

	cs->started |= 1u << i;
	if (!compose_expand(c->path, &v, path, sizeof(path))) {
		call_finished(cs, i, 0, "template value missing", NULL);
		return;
	}
	if (now >= cs->deadline_ns) {
		call_finished(cs, i, 0, "timeout", NULL);
		return;
	}
	o.timeout_ms = (cs->deadline_ns - now + 999999) / 1000000;
	call_headers(st, headers, sizeof(headers));
	cs->slots[i].cs = cs;
	cs->slots[i].idx = i;
	cs->slots[i].call = client_request(st->env->client, &o, call_done, &cs->slots[i]);
	if (!cs->slots[i].call)
		call_finished(cs, i, 0, "out of memory", NULL);
}

/* Starts every call whose dependencies answered; a failed dependency fails the call. */
static void start_ready(struct compose_state *cs)
{
	bool again = true;

	while (again) {
		again = false;
		for (int i = 0; i < cs->pol->ncalls; i++) {
			uint32_t deps = cs->pol->calls[i].deps;

			if (cs->started & (1u << i) || (cs->done & deps) != deps)
				continue;
			if (cs->failed & deps) {
				cs->started |= 1u << i;
				call_finished(cs, i, 0, "dependency failed", NULL);
			} else {
				start_call(cs, i);
			}
			again = true; /* an immediate failure may unblock or fail others */
		}
	}
}

static json_t *build_body(struct compose_state *cs)
{
	const struct compose_policy *pol = cs->pol;
	json_t *out = json_object(), *errs = json_object(), *shaped;

	for (int i = 0; i < pol->ncalls; i++) {
		if (!(cs->failed & (1u << i))) {
			shaped = compose_shape(&pol->calls[i], cs->results[i]);
			if (shaped) {
				compose_merge(out, shaped, pol->deep);
				json_decref(shaped);
				continue;
			}
			cs->failed |= 1u << i;
			cs->slots[i].reason = "response does not fit the call's shape";
		}
		json_object_set_new(errs, pol->calls[i].name,
				    json_pack("{s:i,s:s}", "status", cs->slots[i].status, "reason",
					      cs->slots[i].reason));
	}
	if (pol->errors && json_object_size(errs))
		json_object_set(out, "_errors", errs);
	json_decref(errs);
	return out;
}

static enum compose_outcome call_outcome(const struct compose_state *cs, int i)
{
	const char *reason = cs->slots[i].reason;

	if (!(cs->failed & (1u << i)))
		return COMPOSE_OUTCOME_OK;
	if (!strcmp(reason, "timeout"))
		return COMPOSE_OUTCOME_TIMEOUT;
	if (!strcmp(reason, "dependency failed") || !strcmp(reason, "template value missing"))
		return COMPOSE_OUTCOME_SKIPPED;
	return cs->slots[i].status ? COMPOSE_OUTCOME_FAILED : COMPOSE_OUTCOME_ERROR;
}

/* One access-log entry per call: name, upstream pool, status, microseconds; one metric
 * sample per call. */
/* The access log's "calls" array, from each call's prefix made at load. */
static void note_calls(struct stream *st, struct compose_state *cs)
{
	const struct compose_policy *pol = cs->pol;
	size_t cap = 3, n = 0;
	char *text;
	int i;

	for (i = 0; i < pol->ncalls; i++)
		metrics_compose_call(st->env->metrics, pol->calls[i].metrics_slot,
				     call_outcome(cs, i));
	for (i = 0; i < pol->ncalls; i++) {
		if (!pol->calls[i].log_prefix)
			return; /* out of memory at load: no "calls" in the log */
		cap += strlen(pol->calls[i].log_prefix) + sizeof(",\"us\":},") + 2 * FMT_U64_MAX;
	}
	text = stream_alloc(st, cap);
	if (!text)
		return;
	text[n++] = '[';
	for (i = 0; i < pol->ncalls; i++) {
		const char *prefix = pol->calls[i].log_prefix;
		int status = cs->slots[i].status;

		if (i)
			text[n++] = ',';
		memcpy(text + n, prefix, strlen(prefix));
		n += strlen(prefix);
		if (status < 0)
			text[n++] = '-';
		n += fmt_u64(text + n, status < 0 ? -(int64_t)status : status);
		memcpy(text + n, ",\"us\":", 6);
		n += 6;
		n += fmt_u64(text + n, cs->slots[i].duration_us);
		text[n++] = '}';
	}
	text[n++] = ']';
	text[n] = '\0';
	st->log_calls = text;
}

static enum filter_verdict compose_answer(struct stream *st, struct compose_state *cs)
{
	const struct compose_policy *pol = cs->pol;
	json_t *out = build_body(cs);
	bool required_failed = false;

	const char *hdr =
	    cs->failed ? "X-Xgate-Completed: false\r\n" : "X-Xgate-Completed: true\r\n";

	note_calls(st, cs);
	for (int i = 0; i < pol->ncalls; i++)
		if (pol->calls[i].required && (cs->failed & (1u << i)))
			required_failed = true;
	if (required_failed || (cs->failed && pol->fail_on_partial)) {
		json_decref(out);
		stream_reply_error(st, 502, "composition failed", hdr);
		return FILTER_DONE;
	}
	cs->body = json_dumps(out, JSON_COMPACT);
	json_decref(out);
	if (!cs->body) {
		stream_reply_error(st, 503, "out of memory", NULL);
		return FILTER_DONE;
	}
	if (strlen(cs->body) > st->cfg->limits.max_compose_bytes) {
		stream_reply_error(st, 502, "composed response too large", hdr);
		return FILTER_DONE;
	}
	stream_reply_body(st, hdr, cs->body, strlen(cs->body));
	return FILTER_DONE;
}

static enum filter_verdict compose_request(struct stream *st, void *state)
{
	struct compose_state *cs = state;

	if (!cs->begun) {
		cs->begun = true;
		cs->st = st;
		cs->ref = stream_ref(st);
		cs->pol = st->cfg->routes[st->route].compose;
		cs->deadline_ns = clock_mono_ns() + (uint64_t)cs->pol->timeout_ms * 1000000;
		if (!st->env->client) {
			stream_reply_error(st, 503, "no client", NULL);
			return FILTER_DONE;
		}
		start_ready(cs);
	}
	if (cs->done != (1u << cs->pol->ncalls) - 1)
		return FILTER_WAIT;
	return compose_answer(st, cs);
}

static void compose_end(struct stream *st, void *state)
{
	struct compose_state *cs = state;

	(void)st;
	for (int i = 0; cs->pol && i < cs->pol->ncalls; i++) {
		if (cs->slots[i].call)
			client_cancel(cs->slots[i].call);
		json_decref(cs->results[i]);
	}
	free(cs->body);
}

const struct filter filter_compose = {
    .name = "compose",
    .state_size = sizeof(struct compose_state),
    .on_request = compose_request,
    .on_end = compose_end,
};
