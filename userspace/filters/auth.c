/*
 * Authentication filter: JWT / API key / mTLS / introspection / any_of and role checks of
 * the route (auth/).
 *
 * Introspection (RFC 7662) is the one method that needs I/O. auth_check_ex() asks the
 * worker's cache through lookup(); on a miss it reports AUTH_PENDING and the filter asks
 * the IdP on the worker's client, or joins the call another request already made for the
 * same token (auth/introspect.h flights), and waits. The completion caches the answer,
 * gives it to every waiter and wakes them; the second run checks again with the answer
 * in hand, so neither a cache of size 0 nor an eviction in between can loop.
 */
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth/introspect.h"
#include "client/client.h"
#include "common/clock.h"
#include "config/config.h"
#include "filters/filters.h"
#include "metrics/metrics.h"

#define INTRO_MAX_ANSWER_BYTES (64 * 1024)

struct auth_state {
	struct stream_ref ref;
	struct intro_waiter w; /* w.flight set while waiting, w.answered once answered */
	unsigned char digest[INTRO_DIGEST_LEN];
	char *token; /* the pending token, to start a call with */
	size_t token_len;
	bool waited;
};

/* One IdP call, owned by its flight. */
struct intro_call {
	struct intro_cache *cache;
	struct intro_flight *flight;
	const struct introspection_config *ic;
	struct metrics_shard *metrics;
	struct client_call *call;
};

struct lookup_ctx {
	struct stream *st;
	struct auth_state *as;
};

static enum auth_reason reason_of(enum intro_status s)
{
	return s == INTRO_ACTIVE     ? AUTH_OK
	       : s == INTRO_INACTIVE ? AUTH_INACTIVE
				     : AUTH_IDP_UNAVAILABLE;
}

static void forget_token(struct auth_state *as)
{
	if (as->token) {
		OPENSSL_cleanse(as->token, as->token_len);
		free(as->token);
	}
	as->token = NULL;
}

static enum auth_reason intro_lookup(void *ctx, const char *token, size_t len, json_t **claims)
{
	struct lookup_ctx *lc = ctx;
	struct stream *st = lc->st;
	struct auth_state *as = lc->as;
	const struct introspection_config *ic = auth_introspection(st->cfg->auth);
	unsigned char digest[INTRO_DIGEST_LEN];
	enum intro_status status;

	*claims = NULL;
	if (!ic || !st->env->intro || !intro_digest(token, len, digest))
		return AUTH_IDP_UNAVAILABLE;
	if (as->w.answered && !memcmp(digest, as->digest, INTRO_DIGEST_LEN)) {
		*claims = json_incref(as->w.claims);
		return reason_of(as->w.status);
	}
	if (intro_cache_lookup(st->env->intro, digest, ic->generation, clock_mono_ms(), &status,
			       claims)) {
		metrics_introspection(st->env->metrics, INTROSPECTION_CACHED);
		return reason_of(status);
	}
	if (!st->env->client)
		return AUTH_IDP_UNAVAILABLE;
	memcpy(as->digest, digest, INTRO_DIGEST_LEN);
	forget_token(as);
	as->token = malloc(len);
	if (!as->token)
		return AUTH_IDP_UNAVAILABLE;
	memcpy(as->token, token, len);
	as->token_len = len;
	return AUTH_PENDING;
}

static void intro_done(void *arg, const struct client_response *resp)
{
	struct intro_call *c = arg;
	enum introspection_outcome outcome = INTROSPECTION_ERROR;
	enum intro_status status = INTRO_ERROR;
	time_t now = clock_wall_s();
	json_t *claims = NULL;
	int64_t expires = 0;

	if (resp->err == CLIENT_ERR_TIMEOUT) {
		outcome = INTROSPECTION_TIMEOUT;
	} else if (resp->err == CLIENT_OK) {
		status = intro_parse_response(resp->status, resp->body, resp->body_len, now,
					      &claims, &expires);
		outcome = status == INTRO_ACTIVE     ? INTROSPECTION_ACTIVE
			  : status == INTRO_INACTIVE ? INTROSPECTION_INACTIVE
						     : INTROSPECTION_ERROR;
	}
	metrics_introspection(c->metrics, outcome);
	intro_flight_complete(c->cache, c->flight, status, claims, clock_mono_ms(),
			      intro_cache_until(c->ic, status, expires, now, clock_mono_ms()));
	json_decref(claims);
	free(c);
}

static void intro_wake(struct intro_waiter *w)
{
	struct auth_state *as = (struct auth_state *)((char *)w - offsetof(struct auth_state, w));

	stream_ref_wake(as->ref);
}

static bool start_call(struct stream *st, struct auth_state *as,
		       const struct introspection_config *ic, struct intro_flight *f)
{
	char headers[1024];
	struct client_request_opts o = {.cfg = st->cfg,
					.upstream_config = &ic->upstream,
					.tls = ic->tls,
					.tls_name = ic->server_name,
					.method = "POST",
					.path = ic->path,
					.host = ic->host,
					.headers = headers,
					.timeout_ms = ic->timeout_ms,
					.max_body_bytes = INTRO_MAX_ANSWER_BYTES};
	struct intro_call *c = calloc(1, sizeof(*c));
	char *body;
	int n;

	n = snprintf(headers, sizeof(headers),
		     "Content-Type: application/x-www-form-urlencoded\r\n"
		     "Accept: application/json\r\n%s",
		     ic->basic_header ? ic->basic_header : "");
	body = c && n > 0 && (size_t)n < sizeof(headers)
		   ? intro_request_body(ic, as->token, as->token_len, &o.body_len)
		   : NULL;
	if (body) {
		o.body = body;
		c->cache = st->env->intro;
		c->flight = f;
		c->ic = ic;
		c->metrics = st->env->metrics;
		c->call = client_request(st->env->client, &o, intro_done, c);
		OPENSSL_cleanse(body, o.body_len);
		free(body);
	}
	OPENSSL_cleanse(headers, sizeof(headers));
	if (!c || !c->call) {
		free(c);
		return false;
	}
	intro_flight_set_call(f, c);
	return true;
}

/* The token is not known: ask the IdP, or wait for the call already asking. */
static bool wait_for_answer(struct stream *st, struct auth_state *as)
{
	const struct introspection_config *ic = auth_introspection(st->cfg->auth);
	struct intro_cache *cache = st->env->intro;
	struct intro_flight *f = intro_flight_find(cache, as->digest, ic->generation);

	if (f) {
		metrics_introspection(st->env->metrics, INTROSPECTION_CACHED);
	} else {
		f = intro_flight_start(cache, as->digest, ic->generation);
		if (!f)
			return false;
		if (!start_call(st, as, ic, f)) {
			intro_flight_abandon(cache, f);
			return false;
		}
	}
	forget_token(as);
	as->ref = stream_ref(st);
	as->w.wake = intro_wake;
	intro_flight_join(f, &as->w);
	as->waited = true;
	return true;
}

static enum filter_verdict auth_request(struct stream *st, void *state)
{
	const struct route_config *rc = &st->cfg->routes[st->route];
	struct auth_state *as = state;
	struct auth_result *ar = &st->auth;
	struct lookup_ctx lc = {st, as};
	struct auth_introspector intro = {intro_lookup, &lc};

	if (as->w.flight)
		return FILTER_WAIT; /* woken by something else: the answer is not there yet */
	memset(ar, 0, sizeof(*ar));
	auth_check_ex(st->cfg->auth, rc->auth, st->env->jwt_cache, &intro, &st->req,
		      &st->client_cert, clock_wall_s(), ar);
	if (ar->reason == AUTH_PENDING) {
		auth_result_release(ar);
		/* A second miss after an answer cannot happen; refuse rather than loop. */
		if (!as->waited && wait_for_answer(st, as))
			return FILTER_WAIT;
		ar->reason = AUTH_IDP_UNAVAILABLE;
		ar->status = 503;
	}
	forget_token(as);
	if (!ar->status) {
		st->auth_done = true; /* released at stream end, after the upstream head is built */
		snprintf(st->consumer, sizeof(st->consumer), "%s", ar->consumer);
		snprintf(st->identity, sizeof(st->identity), "%s", ar->identity);
		return FILTER_CONTINUE;
	}
	metrics_auth_failure(st->env->metrics, ar->reason);
	if (ar->status == 401)
		stream_reply_error(st, 401, auth_reason_name(ar->reason),
				   "WWW-Authenticate: Bearer error=\"invalid_token\"\r\n");
	else
		stream_reply_error(st, ar->status, auth_reason_name(ar->reason), NULL);
	auth_result_release(ar);
	return FILTER_DONE;
}

/* Leaves a flight still in the air; the last waiter to leave cancels the IdP call. */
static void auth_end(struct stream *st, void *state)
{
	struct auth_state *as = state;
	struct intro_flight *f = as->w.flight;

	if (f && intro_waiter_leave(&as->w)) {
		struct intro_call *c = intro_flight_call(f);

		if (c) {
			client_cancel(c->call);
			free(c);
		}
		intro_flight_abandon(st->env->intro, f);
	}
	json_decref(as->w.claims);
	as->w.claims = NULL;
	forget_token(as);
}

const struct filter filter_auth = {
    .name = "auth",
    .state_size = sizeof(struct auth_state),
    .on_request = auth_request,
    .on_end = auth_end,
};
