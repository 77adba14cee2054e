/* Authentication filter: JWT / API key / mTLS / any_of and role checks of the route (auth/). */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "config/config.h"
#include "filters/filters.h"
#include "metrics/metrics.h"

static enum filter_verdict auth_request(struct stream *st, void *state)
{
	const struct route_config *rc = &st->cfg->routes[st->route];
	struct auth_result *ar = &st->auth;

	memset(ar, 0, sizeof(*ar));
	auth_check_peer(st->cfg->auth, rc->auth, st->env->jwt_cache, &st->req, &st->client_cert,
			time(NULL), ar);
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

const struct filter filter_auth = {
	.name = "auth",
	.on_request = auth_request,
};
