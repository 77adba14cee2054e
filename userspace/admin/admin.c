/* The admin endpoints: what each one reads from the gateway and how it answers. */
#include "admin/admin.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "accesslog/accesslog.h"
#include "admin/dashboard.h"
#include "admin/runtime.h"
#include "admin/server.h"
#include "admin/stats.h"
#include "common/log.h"
#include "config/config.h"
#include "cluster/deny.h"
#include "edge/edge.h"
#include "metrics/metrics.h"
#include "proxy/gateway.h"
#include "splice/splice.h"
#include "tls/tls.h"
#include "upstream/dns.h"
#include "upstream/upstream.h"

#ifndef XGATE_VERSION
#define XGATE_VERSION "unknown"
#endif

#define MAX_XDP_REASONS 64
#define TOP_SOURCES 10
/* Walking the shield's 65,536-entry source tables costs milliseconds: at most this often. */
#define TOP_SOURCES_EVERY_MS 5000

struct admin {
	struct gateway *gw;
	struct admin_server *server;
	struct sockaddr_storage bound; /* admin.address as bound at start (see admin_start) */
	atomic_int port; /* written after the thread started when admin.address has port 0 */
	struct admin_stats *stats;
	char runtime_address[128]; /* what the runtime file says; "" when not written */
	json_t *top_sources; /* cached edge_top() result */
	int64_t top_sources_at_ms;
};

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct xdp_collect {
	struct metrics_xdp_counter counters[MAX_XDP_REASONS];
	int n;
};

static void collect_xdp(const char *reason, uint64_t packets, void *ctx)
{
	struct xdp_collect *x = ctx;

	if (x->n == MAX_XDP_REASONS)
		return;
	snprintf(x->counters[x->n].reason, sizeof(x->counters[x->n].reason), "%s", reason);
	x->counters[x->n++].packets = packets;
}

static void collect_extra(struct gateway *gw, const struct xg_config *cfg, struct xdp_collect *xdp,
			  struct metrics_extra *x)
{
	struct tls_stats tls;

	tls_stats_get(&tls);
	x->have_tls = true;
	x->tls_handshakes = tls.handshakes;
	x->tls_handshake_failures = tls.handshake_failures;
	x->ktls_tx = tls.ktls_tx;
	x->ktls_rx = tls.ktls_rx;
	x->ktls_tx_bytes = tls.ktls_tx_bytes;
	x->tls_key_update_closes = tls.key_update_closes;
	/* Zeros without sockmap: "nothing spliced" is a value, not a missing series. */
	x->have_splice = true;
	if (gw->splice) {
		struct splice_stats sp;

		splice_stats_get(gw->splice, &sp);
		x->splice_flows_total = sp.flows_total;
		x->splice_flows_active = sp.flows_active;
		x->splice_fallbacks = sp.fallbacks;
	}
	{
		unsigned long total, active;

		tunnel_pipe_stats(&total, &active, &x->splice_pipe_bytes);
		x->splice_flows_total += total;
		x->splice_flows_active += active;
	}
	/* Read from the pinned map, so the counters survive gateway restarts like the map. */
	if (cfg->edge && edge_read_stats(edge_config_pin_dir(cfg->edge), collect_xdp, xdp) == 0) {
		x->have_xdp = true;
		x->xdp = xdp->counters;
		x->nxdp = xdp->n;
	}
	x->access_log_dropped = accesslog_dropped();
}

static void get_metrics(void *ctx, const struct admin_call *call, struct admin_response *resp)
{
	struct admin *a = ctx;
	struct xg_config *cfg = gateway_config(a->gw);
	struct xdp_collect xdp = {.n = 0};
	struct metrics_extra extra = {0};

	collect_extra(a->gw, cfg, &xdp, &extra);
	resp->body = metrics_render(cfg, &extra, &resp->body_len);
	config_put(cfg);
	if (!resp->body) {
		admin_json_error(resp, 500, "out of memory", call->request_id);
		return;
	}
	resp->status = 200;
	resp->content_type = "text/plain; version=0.0.4; charset=utf-8";
}

/* "a: x\nb: y\n" → ["a: x", "b: y"] */
static json_t *error_lines(const char *text)
{
	json_t *arr = json_array();

	while (arr && text && *text) {
		const char *nl = strchr(text, '\n');
		size_t n = nl ? (size_t)(nl - text) : strlen(text);

		if (n)
			json_array_append_new(arr, json_stringn(text, n));
		text += n + (nl ? 1 : 0);
	}
	return arr;
}

static const char *breaker_name(int state)
{
	switch (state) {
	case BREAKER_OPEN:
		return "open";
	case BREAKER_HALF_OPEN:
		return "half_open";
	default:
		return "closed";
	}
}

static json_t *status_upstreams(const struct xg_config *cfg)
{
	json_t *ups = json_array();

	for (int u = 0; ups && u < cfg->nupstreams; u++) {
		const struct upstream_config *up = &cfg->upstreams[u];
		json_t *targets = json_array();

		for (int t = 0; targets && t < up->ntargets; t++) {
			struct target_state *st = up->targets[t].state;

			json_array_append_new(
			    targets,
			    json_pack("{s:s, s:b, s:s, s:i}", "address",
				      up->targets[t].address_text, "up",
				      st ? atomic_load(&st->up) : true, "breaker",
				      breaker_name(st ? atomic_load(&st->breaker) : BREAKER_CLOSED),
				      "active", st ? atomic_load(&st->active) : 0));
		}
		json_t *o = json_pack("{s:s, s:o*}", "name", up->name, "targets", targets);

		if (o && up->dns)
			json_object_set_new(o, "dns", dns_upstream_status(up));
		json_array_append_new(ups, o);
	}
	return ups;
}

static json_t *status_json(struct gateway *gw, const struct xg_config *cfg)
{
	const struct gateway_features *f = &gw->features;
	unsigned long active = 0;
	char errors[sizeof(gw->last_reload_errors)];
	struct tls_stats tls;
	bool reload_ok = gateway_reload_status(gw, errors, sizeof(errors));

	tls_stats_get(&tls);
	gateway_worker_stats(gw, &active);
	return json_pack(
	    "{s:s, s:I, s:i, s:{s:I, s:I, s:s, s:b, s:o*}, s:{s:s, s:b, s:b, s:{s:b, s:b}}, "
	    "s:I, s:{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}, s:o*}",
	    "version", XGATE_VERSION, "uptime_s", (json_int_t)(time(NULL) - gw->started_at),
	    "workers", gw->nworkers, "config", "generation", (json_int_t)cfg->generation,
	    "loaded_at", (json_int_t)cfg->loaded_at, "path", cfg->path ? cfg->path : "",
	    "last_reload_ok", reload_ok, "last_reload_errors", error_lines(errors),
	    "features", "xdp", f->xdp[0] ? f->xdp : "off", "ktls", f->ktls, "sockmap", f->sockmap,
	    "io_uring", "single_issuer", f->io_uring_single_issuer, "defer_taskrun",
	    f->io_uring_defer_taskrun, "connections_active", (json_int_t)active, "tls",
	    "handshakes", (json_int_t)tls.handshakes, "handshake_failures",
	    (json_int_t)tls.handshake_failures, "ktls_tx_connections", (json_int_t)tls.ktls_tx,
	    "ktls_rx_connections", (json_int_t)tls.ktls_rx, "ktls_tx_bytes",
	    (json_int_t)tls.ktls_tx_bytes, "ktls_spliced_responses",
	    (json_int_t)tls.ktls_spliced_responses, "ktls_spliced_bytes",
	    (json_int_t)tls.ktls_spliced_bytes, "key_update_closes",
	    (json_int_t)tls.key_update_closes, "upstreams", status_upstreams(cfg));
}

static void get_status(void *ctx, const struct admin_call *call, struct admin_response *resp)
{
	struct admin *a = ctx;
	struct xg_config *cfg = gateway_config(a->gw);
	json_t *j = status_json(a->gw, cfg);

	config_put(cfg);
	if (!j) {
		admin_json_error(resp, 500, "out of memory", call->request_id);
		return;
	}
	admin_json_body(resp, 200, j);
}

static json_t *xdp_json(const struct xg_config *cfg)
{
	struct xdp_collect xdp = {.n = 0};
	json_t *reasons;
	json_int_t dropped = 0;

	if (!cfg->edge || edge_read_stats(edge_config_pin_dir(cfg->edge), collect_xdp, &xdp) < 0)
		return json_null();
	reasons = json_object();
	for (int i = 0; reasons && i < xdp.n; i++) {
		json_object_set_new(reasons, xdp.counters[i].reason,
				    json_integer((json_int_t)xdp.counters[i].packets));
		if (strcmp(xdp.counters[i].reason, "pass"))
			dropped += (json_int_t)xdp.counters[i].packets;
	}
	return json_pack("{s:o*, s:I}", "reasons", reasons, "dropped", dropped);
}

static json_t *read_top_sources(const struct xg_config *cfg)
{
	struct edge_source src[TOP_SOURCES];
	char err[256], text[64];
	ssize_t n;
	json_t *arr;

	if (!cfg->edge)
		return json_array();
	n = edge_top(edge_config_pin_dir(cfg->edge), EDGE_TOP_PACKETS, src, TOP_SOURCES, err,
		     sizeof(err));
	arr = json_array();
	for (ssize_t i = 0; arr && i < n; i++) {
		edge_cidr_format(&src[i].source, text, sizeof(text));
		json_array_append_new(arr, json_pack("{s:s, s:I, s:I}", "source", text, "packets",
						     (json_int_t)src[i].packets, "drops",
						     (json_int_t)src[i].drops));
	}
	return arr;
}

static json_t *top_sources(struct admin *a, const struct xg_config *cfg, int64_t now)
{
	if (!a->top_sources || now - a->top_sources_at_ms >= TOP_SOURCES_EVERY_MS) {
		json_decref(a->top_sources);
		a->top_sources = read_top_sources(cfg);
		a->top_sources_at_ms = now;
	}
	return json_incref(a->top_sources);
}

static void get_stats(void *ctx, const struct admin_call *call, struct admin_response *resp)
{
	struct admin *a = ctx;
	struct xg_config *cfg = gateway_config(a->gw);
	int64_t now = mono_ms();
	json_t *j = admin_stats_counters(a->stats, cfg, now);

	if (j)
		json_object_update_new(
		    j, json_pack("{s:I, s:I, s:I, s:o*, s:o*, s:o*}", "time", (json_int_t)time(NULL),
				 "uptime_s", (json_int_t)(time(NULL) - a->gw->started_at),
				 "generation", (json_int_t)cfg->generation, "upstreams",
				 status_upstreams(cfg), "xdp", xdp_json(cfg), "top_sources",
				 top_sources(a, cfg, now)));
	config_put(cfg);
	if (!j) {
		admin_json_error(resp, 500, "out of memory", call->request_id);
		return;
	}
	admin_json_body(resp, 200, j);
}

static void get_dashboard(void *ctx, const struct admin_call *call, struct admin_response *resp)
{
	size_t len = admin_dashboard_len();

	resp->body = malloc(len);
	if (!resp->body) {
		admin_json_error(resp, 500, "out of memory", call->request_id);
		return;
	}
	memcpy(resp->body, admin_dashboard_html, len);
	resp->body_len = len;
	resp->status = 200;
	resp->content_type = "text/html; charset=utf-8";
}

static void tick(void *ctx)
{
	struct admin *a = ctx;

	admin_stats_tick(a->stats, mono_ms());
}

static void post_reload(void *ctx, const struct admin_call *call, struct admin_response *resp)
{
	struct admin *a = ctx;
	struct cfg_errs errs = {0};
	struct xg_config *cfg;

	log_info("admin", "reload requested (request %s)", call->request_id);
	if (gateway_reload(a->gw, &errs) == 0) {
		cfg = gateway_config(a->gw);
		admin_json_body(resp, 200,
				json_pack("{s:s, s:I}", "status", "ok", "generation",
					  (json_int_t)cfg->generation));
		config_put(cfg);
	} else {
		admin_json_body(resp, 422,
				json_pack("{s:s, s:o*}", "status", "rejected", "errors",
					  error_lines(errs.text ? errs.text : "reload failed\n")));
	}
	cfg_errs_free(&errs);
}

static void generation_answer(struct admin *a, struct admin_response *resp, int rc,
			      struct cfg_errs *errs)
{
	struct xg_config *cfg;

	if (rc) {
		admin_json_body(resp, rc == -ENOENT ? 404 : 400,
				json_pack("{s:o*}", "errors",
					  error_lines(errs->text ? errs->text : "rejected\n")));
		return;
	}
	cfg = gateway_config(a->gw);
	admin_json_body(resp, 200,
			json_pack("{s:s, s:I}", "status", "ok", "generation",
				  (json_int_t)cfg->generation));
	config_put(cfg);
}

static void post_config(void *ctx, const struct admin_call *call, struct admin_response *resp)
{
	struct admin *a = ctx;
	struct cfg_errs errs = {0};

	log_info("admin", "config posted (request %s, %zu bytes)", call->request_id,
		 call->body_len);
	generation_answer(a, resp, gateway_apply_text(a->gw, call->body, call->body_len, &errs),
			  &errs);
	cfg_errs_free(&errs);
}

/* Body: empty, {} or {"generation": N} (N >= 1). */
static bool rollback_target(const struct admin_call *call, uint64_t *generation,
			    struct cfg_errs *errs)
{
	static const char *const keys[] = {"generation", NULL};
	json_error_t jerr;
	json_t *body;
	long long n = 0;
	bool ok;

	*generation = 0;
	if (!call->body_len)
		return true;
	body = json_loadb(call->body, call->body_len, JSON_REJECT_DUPLICATES, &jerr);
	if (!json_is_object(body)) {
		cfg_err(errs, "", "the body must be a JSON object like {\"generation\": 3}");
		json_decref(body);
		return false;
	}
	cfg_check_keys(body, "", keys, errs);
	ok = cfg_get_int(body, "generation", "", 0, 1, INT64_MAX, &n, errs) && !errs->count;
	json_decref(body);
	*generation = (uint64_t)n;
	return ok;
}

static void post_rollback(void *ctx, const struct admin_call *call, struct admin_response *resp)
{
	struct admin *a = ctx;
	struct cfg_errs errs = {0};
	uint64_t generation;

	if (!rollback_target(call, &generation, &errs))
		generation_answer(a, resp, -EINVAL, &errs);
	else
		generation_answer(a, resp, gateway_rollback(a->gw, generation, &errs), &errs);
	cfg_errs_free(&errs);
}

static void get_generations(void *ctx, const struct admin_call *call,
			    struct admin_response *resp)
{
	struct admin *a = ctx;
	json_t *j = gateway_generations_json(a->gw);

	if (!j) {
		admin_json_error(resp, 500, "out of memory", call->request_id);
		return;
	}
	admin_json_body(resp, 200, j);
}

static void get_config(void *ctx, const struct admin_call *call, struct admin_response *resp)
{
	struct admin *a = ctx;
	struct xg_config *cfg = gateway_config(a->gw);
	json_t *j = config_redact(cfg->raw);

	config_put(cfg);
	if (!j) {
		admin_json_error(resp, 500, "out of memory", call->request_id);
		return;
	}
	admin_json_body(resp, 200, j);
}

/*
 * POST /cluster/deny {"action": "add"|"del", "cidr": "...", "ttl_s": N}: writes the
 * cluster deny list in Redis (cluster/deny.h) and publishes the change to every node.
 * Blocking, bounded by cluster.redis.timeout_ms per step: the admin thread's own time.
 */
static void post_cluster_deny(void *ctx, const struct admin_call *call,
			      struct admin_response *resp)
{
	struct admin *a = ctx;
	struct xg_config *cfg = gateway_config(a->gw);
	json_t *body = json_loadb(call->body, call->body_len, 0, NULL);
	const char *action = json_string_value(json_object_get(body, "action"));
	const char *cidr = json_string_value(json_object_get(body, "cidr"));
	json_t *ttl = json_object_get(body, "ttl_s");
	char err[256], canon[64];
	int ret;

	if (!cfg->cluster) {
		admin_json_error(resp, 409, "no \"cluster\" section in the config", call->request_id);
	} else if (!json_is_object(body) || !cidr || !action ||
		   (strcmp(action, "add") && strcmp(action, "del")) ||
		   (ttl && (!json_is_integer(ttl) || json_integer_value(ttl) < 0))) {
		admin_json_error(resp, 400,
				 "expected {\"action\": \"add\"|\"del\", \"cidr\": \"...\", "
				 "\"ttl_s\": N}",
				 call->request_id);
	} else {
		ret = cluster_deny_write(cfg->cluster, !strcmp(action, "add"), cidr,
					 ttl ? (uint64_t)json_integer_value(ttl) : 0, canon, err,
					 sizeof(err));
		if (ret == -EINVAL)
			admin_json_error(resp, 400, err, call->request_id);
		else if (ret == -ENOENT)
			admin_json_error(resp, 404, err, call->request_id);
		else if (ret)
			admin_json_error(resp, 503, err, call->request_id);
		else
			admin_json_body(resp, 200, json_pack("{s:s, s:s, s:s}", "status", "ok",
							     "action", action, "cidr", canon));
	}
	json_decref(body);
	config_put(cfg);
}

static void get_cluster_deny(void *ctx, const struct admin_call *call,
			     struct admin_response *resp)
{
	struct admin *a = ctx;
	struct xg_config *cfg = gateway_config(a->gw);
	char err[256];
	json_t *j;

	if (!cfg->cluster) {
		admin_json_error(resp, 409, "no \"cluster\" section in the config", call->request_id);
	} else if (!(j = cluster_deny_list(cfg->cluster, err, sizeof(err)))) {
		admin_json_error(resp, 503, err, call->request_id);
	} else {
		admin_json_body(resp, 200, j);
	}
	config_put(cfg);
}

static int sockaddr_port(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)ss)->sin_port);
	return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
}

static bool path_is(const struct http_request *req, const char *path)
{
	return req->path.len == strlen(path) && !memcmp(req->path.p, path, req->path.len);
}

/*
 * The token is read from the current config, so a reload rotates it. The dashboard page
 * itself is static code without data (its scripts send the token to /stats), so a browser
 * can open it; /metrics is open when admin.metrics_public says so.
 */
static bool needs_token(const struct xg_config *cfg, const struct http_request *req)
{
	if (!cfg->admin.token)
		return false;
	if (path_is(req, "/dashboard"))
		return false;
	return !(cfg->admin.metrics_public && path_is(req, "/metrics"));
}

static bool guard(void *ctx, const struct admin_call *call, struct admin_response *resp)
{
	struct admin *a = ctx;
	const struct http_request *req = call->req;
	const struct http_header *host = http_find_header(req->headers, req->nheaders, "Host");
	const struct http_header *authz;
	struct xg_config *cfg;
	bool ok = true;

	if (!host || !admin_host_allowed(host->value.p, host->value.len,
					 (const struct sockaddr *)&a->bound, atomic_load(&a->port))) {
		admin_json_error(resp, 421, "Host does not name the admin address",
				 call->request_id);
		return false;
	}
	cfg = gateway_config(a->gw);
	if (needs_token(cfg, req)) {
		authz = http_find_header(req->headers, req->nheaders, "Authorization");
		ok = authz && admin_token_ok(authz->value.p, authz->value.len, cfg->admin.token);
	}
	config_put(cfg);
	if (!ok) {
		admin_json_error(resp, 401, "admin token required", call->request_id);
		resp->bearer_challenge = true;
	}
	return ok;
}

static const struct admin_endpoint endpoints[] = {
    {"/metrics", HTTP_GET, get_metrics},
    {"/status", HTTP_GET, get_status},
    {"/reload", HTTP_POST, post_reload},
    {"/config", HTTP_GET, get_config},
    {"/config", HTTP_POST, post_config},
    {"/config/generations", HTTP_GET, get_generations},
    {"/config/rollback", HTTP_POST, post_rollback},
    {"/stats", HTTP_GET, get_stats},
    {"/dashboard", HTTP_GET, get_dashboard},
    {"/cluster/deny", HTTP_GET, get_cluster_deny},
    {"/cluster/deny", HTTP_POST, post_cluster_deny},
    {NULL, 0, NULL},
};

struct admin *admin_start(struct gateway *gw, char *err, unsigned long errlen)
{
	int rc;
	struct xg_config *cfg = gateway_config(gw);
	struct admin *a;

	err[0] = '\0';
	if (!cfg->admin.enabled) {
		config_put(cfg);
		return NULL;
	}
	a = calloc(1, sizeof(*a));
	if (!a) {
		config_put(cfg);
		snprintf(err, errlen, "admin: out of memory");
		return NULL;
	}
	a->gw = gw;
	a->stats = admin_stats_new(mono_ms());
	if (!a->stats) {
		config_put(cfg);
		free(a);
		snprintf(err, errlen, "admin: out of memory");
		return NULL;
	}
	a->bound = cfg->admin.addr;
	atomic_store(&a->port, sockaddr_port(&cfg->admin.addr));
	a->server = admin_server_start((struct sockaddr *)&cfg->admin.addr, cfg->admin.addrlen,
				       endpoints, guard, tick, a, err, errlen);
	if (!a->server) {
		config_put(cfg);
		admin_stats_free(a->stats);
		free(a);
		return NULL;
	}
	atomic_store(&a->port, admin_server_port(a->server));
	admin_runtime_address((struct sockaddr *)&a->bound, atomic_load(&a->port),
			      a->runtime_address, sizeof(a->runtime_address));
	rc = admin_runtime_write(a->runtime_address);
	if (rc) {
		log_warn("admin", "cannot write the runtime file for xgatectl: %s", strerror(-rc));
		a->runtime_address[0] = '\0';
	}
	log_info("admin", "admin API on %s", cfg->admin.address_text);
	config_put(cfg);
	return a;
}

void admin_stop(struct admin *a)
{
	if (!a)
		return;
	admin_server_stop(a->server);
	if (a->runtime_address[0])
		admin_runtime_remove(a->runtime_address);
	admin_stats_free(a->stats);
	json_decref(a->top_sources);
	free(a);
}
