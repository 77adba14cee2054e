/*
 * Transform filter: applies the route's transform.response.headers to every response the
 * client gets (upstream, cached or the gateway's own), in the SPEC's order. It runs last so
 * its edits see what the other filters added before it.
 */
#include <string.h>

#include "config/config.h"
#include "filters/filters.h"
#include "transform/transform.h"

/* Nothing to do on the way in: only responses are transformed (the chain needs the hook). */
static void transform_response(struct stream *st, void *state, const struct http_response *resp)
{
	const struct transform_policy *p = st->cfg->routes[st->route].transform;
	struct transform_edits e;
	char *v;

	(void)state;
	transform_resp_headers(&p->resp, resp->headers, resp->nheaders, &e);
	/* The config bounds the edits to fit beside CORS; only a header repeated many times
	 * and renamed can exceed the slots: removals go first so they always hold, and the
	 * stream refuses the lines past its last slot. */
	for (int i = 0; i < e.ndrop; i++)
		stream_resp_header_remove(st, e.drop[i]);
	for (int i = 0; i < e.nadd; i++) {
		/* Values taken from the response head must outlive it. */
		v = stream_alloc(st, e.add[i].value.len + 1);
		if (!v)
			return;
		memcpy(v, e.add[i].value.p, e.add[i].value.len);
		v[e.add[i].value.len] = '\0';
		stream_resp_header_add(st, e.add[i].name, v);
	}
}

const struct filter filter_transform = {
    .name = "transform",
    .on_response = transform_response,
};
