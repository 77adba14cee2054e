/* Prometheus text exposition (format 0.0.4) of the aggregated shards. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "metrics/metrics_internal.h"
#include "upstream/dns.h"
#include "cluster/cluster.h"
#include "upstream/upstream.h"

void mbuf_printf(struct metrics_buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (b->oom)
		return;
	for (;;) {
		size_t room = b->cap - b->len;

		va_start(ap, fmt);
		n = vsnprintf(b->p ? b->p + b->len : NULL, room, fmt, ap);
		va_end(ap);
		if (n < 0) {
			b->oom = true;
			return;
		}
		if ((size_t)n < room) {
			b->len += n;
			return;
		}
		size_t cap = b->cap ? b->cap * 2 : 16384;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *p = realloc(b->p, cap);
		if (!p) {
			b->oom = true;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
}

void mbuf_label_value(struct metrics_buf *b, const char *value)
{
	while (*value) {
		size_t run = strcspn(value, "\\\"\n");

		if (run)
			mbuf_printf(b, "%.*s", (int)run, value);
		value += run;
		if (*value == '\\')
			mbuf_printf(b, "\\\\");
		else if (*value == '"')
			mbuf_printf(b, "\\\"");
		else if (*value == '\n')
			mbuf_printf(b, "\\n");
		if (*value)
			value++;
	}
}

static void family(struct metrics_buf *b, const char *name, const char *type, const char *help)
{
	mbuf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* name{l1="v1"[,l2="v2"[,l3="v3"]]} — labels given as NULL-terminated name/value pairs. */
static void series(struct metrics_buf *b, const char *name, const char *const *labels)
{
	mbuf_printf(b, "%s", name);
	if (!labels || !labels[0]) {
		mbuf_printf(b, " ");
		return;
	}
	mbuf_printf(b, "{");
	for (int i = 0; labels[i]; i += 2) {
		mbuf_printf(b, "%s%s=\"", i ? "," : "", labels[i]);
		mbuf_label_value(b, labels[i + 1]);
		mbuf_printf(b, "\"");
	}
	mbuf_printf(b, "} ");
}

static void sample_u64(struct metrics_buf *b, const char *name, const char *const *labels,
		       uint64_t v)
{
	series(b, name, labels);
	mbuf_printf(b, "%llu\n", (unsigned long long)v);
}

static void sample_i64(struct metrics_buf *b, const char *name, const char *const *labels,
		       int64_t v)
{
	series(b, name, labels);
	mbuf_printf(b, "%lld\n", (long long)v);
}

/* Marks the internal slots the current config uses: their series are shown even at zero. */
static bool *current_slots(enum slot_kind kind, const struct xg_config *cfg, int n)
{
	bool *cur = calloc(n ? n : 1, sizeof(*cur));

	if (!cur || !cfg)
		return cur;
	if (kind == KIND_ROUTE) {
		for (int i = 0; i < cfg->nroutes; i++)
			if (cfg->routes[i].metrics_slot + 1 > 0 &&
			    cfg->routes[i].metrics_slot + 1 < n)
				cur[cfg->routes[i].metrics_slot + 1] = true;
	} else if (kind == KIND_LISTENER) {
		for (int i = 0; i < cfg->nlisteners; i++)
			if (cfg->listeners[i].metrics_slot >= 0 &&
			    cfg->listeners[i].metrics_slot < n)
				cur[cfg->listeners[i].metrics_slot] = true;
	}
	return cur;
}

static void render_requests(struct metrics_buf *b)
{
	int n = metrics_table_count(KIND_ROUTE);
	char code[16];

	family(b, "xgate_http_requests_total", "counter",
	       "HTTP requests answered, by route (\"\" when none matched) and status code.");
	for (int r = 0; r < n; r++) {
		for (int c = 0; c < NCODES; c++) {
			uint64_t v = metrics_sum_counter(KIND_ROUTE, r, CODE_OFF(c));

			if (!v)
				continue;
			snprintf(code, sizeof(code), "%d", c == CODE_OTHER ? 0 : c + CODE_MIN);
			sample_u64(b, "xgate_http_requests_total",
				   (const char *const[]){"route",
							 metrics_table_label(KIND_ROUTE, r)->a,
							 "code", code, NULL},
				   v);
		}
	}
}

static void render_route_histogram(struct metrics_buf *b, int r)
{
	const char *route = metrics_table_label(KIND_ROUTE, r)->a;
	uint64_t cumulative = 0;
	char le[32];

	for (int i = 0; i < NBUCKETS; i++) {
		cumulative += metrics_sum_counter(KIND_ROUTE, r, BUCKET_OFF(i));
		if (i < METRICS_DURATION_BUCKETS)
			snprintf(le, sizeof(le), "%g", metrics_duration_bounds[i]);
		else
			snprintf(le, sizeof(le), "+Inf");
		sample_u64(b, "xgate_http_request_duration_seconds_bucket",
			   (const char *const[]){"route", route, "le", le, NULL}, cumulative);
	}
	series(b, "xgate_http_request_duration_seconds_sum",
	       (const char *const[]){"route", route, NULL});
	mbuf_printf(b, "%.9f\n", metrics_sum_counter(KIND_ROUTE, r, ROUTE_OFF(sum_ns)) / 1e9);
	sample_u64(b, "xgate_http_request_duration_seconds_count",
		   (const char *const[]){"route", route, NULL}, cumulative);
}

static uint64_t route_count(int r)
{
	uint64_t total = 0;

	for (int i = 0; i < NBUCKETS; i++)
		total += metrics_sum_counter(KIND_ROUTE, r, BUCKET_OFF(i));
	return total;
}

/* Series of the routes of the current config, and of older ones that counted any. */
static void render_waf(struct metrics_buf *b, const bool *cur, int n)
{
	static const char *const modes[] = { "block", "detect" };

	family(b, "xgate_waf_blocked_total", "counter",
	       "WAF interventions by route and mode (detect: logged, not blocked).");
	for (int r = 0; r < n; r++)
		for (int m = 0; m < 2; m++) {
			uint64_t v = metrics_sum_counter(
			    KIND_ROUTE, r, ROUTE_OFF(waf) + (size_t)m * sizeof(counter_t));

			if (cur[r] || v)
				sample_u64(b, "xgate_waf_blocked_total",
					   (const char *const[]){
					       "route", metrics_table_label(KIND_ROUTE, r)->a,
					       "mode", modes[m], NULL },
					   v);
		}
}

static void render_leases(struct metrics_buf *b)
{
	uint64_t hits, waits;

	cluster_metrics_lease_totals(&hits, &waits);
	family(b, "xgate_cluster_lease_hits_total", "counter",
	       "Cluster-limited requests admitted at once from their worker's token lease.");
	sample_u64(b, "xgate_cluster_lease_hits_total", NULL, hits);
	family(b, "xgate_cluster_lease_waits_total", "counter",
	       "Cluster-limited requests that waited for a Redis reply (lease empty).");
	sample_u64(b, "xgate_cluster_lease_waits_total", NULL, waits);
}

static void render_fallbacks(struct metrics_buf *b, const bool *cur, int n)
{
	int up = cluster_metrics_up();

	if (up >= 0) {
		family(b, "xgate_cluster_redis_up", "gauge",
		       "1 when every worker's Redis connection is ready, 0 otherwise.");
		sample_u64(b, "xgate_cluster_redis_up", NULL, up);
		render_leases(b);
	}
	family(b, "xgate_ratelimit_fallback_total", "counter",
	       "Cluster rate limits decided by on_redis_error (Redis unusable), by route.");
	for (int r = 0; r < n; r++) {
		uint64_t v = metrics_sum_counter(KIND_ROUTE, r, ROUTE_OFF(rl_fallback));

		if (v)
			sample_u64(b, "xgate_ratelimit_fallback_total",
				   (const char *const[]){
				       "route", metrics_table_label(KIND_ROUTE, r)->a, NULL},
				   v);
	}
}

static void render_durations_and_limits(struct metrics_buf *b, const struct xg_config *cfg)
{
	int n = metrics_table_count(KIND_ROUTE);
	bool *cur = current_slots(KIND_ROUTE, cfg, n);

	if (!cur) {
		b->oom = true;
		return;
	}
	family(b, "xgate_http_request_duration_seconds", "histogram",
	       "Time from request head received to response completed, by route.");
	for (int r = 0; r < n; r++)
		if (cur[r] || route_count(r))
			render_route_histogram(b, r);
	family(b, "xgate_rate_limited_total", "counter", "Requests refused with 429, by route.");
	for (int r = 0; r < n; r++) {
		uint64_t v = metrics_sum_counter(KIND_ROUTE, r, ROUTE_OFF(rate_limited));

		if (cur[r] || v)
			sample_u64(b, "xgate_rate_limited_total",
				   (const char *const[]){
				       "route", metrics_table_label(KIND_ROUTE, r)->a, NULL},
				   v);
	}
	render_waf(b, cur, n);
	render_fallbacks(b, cur, n);
	free(cur);
}

static void render_splits(struct metrics_buf *b)
{
	int n = metrics_table_count(KIND_SPLIT);

	family(b, "xgate_split_requests_total", "counter",
	       "Requests of split routes, by the upstream pool the split chose.");
	for (int i = 0; i < n; i++) {
		const struct slot_label *l = metrics_table_label(KIND_SPLIT, i);

		sample_u64(b, "xgate_split_requests_total",
			   (const char *const[]){ "route", l->a, "upstream", l->b, NULL },
			   metrics_sum_counter(KIND_SPLIT, i, offsetof(struct split_ctr, requests)));
	}
}

static void render_compose(struct metrics_buf *b)
{
	int n = metrics_table_count(KIND_COMPOSE);

	family(b, "xgate_compose_calls_total", "counter",
	       "Calls of compose routes, by route, call and outcome.");
	for (int i = 0; i < n; i++) {
		const struct slot_label *l = metrics_table_label(KIND_COMPOSE, i);

		for (int o = 0; o < COMPOSE_OUTCOME_COUNT; o++)
			sample_u64(b, "xgate_compose_calls_total",
				   (const char *const[]){ "route", l->a, "call", l->b, "outcome",
							  compose_outcome_name(o), NULL },
				   metrics_sum_counter(KIND_COMPOSE, i,
						       offsetof(struct compose_ctr, outcomes) +
							       o * sizeof(counter_t)));
	}
}

static void render_consumers(struct metrics_buf *b)
{
	int n = metrics_table_count(KIND_CONSUMER);

	family(b, "xgate_consumer_requests_total", "counter",
	       "Requests of authenticated API-key consumers, by consumer.");
	for (int i = 0; i < n; i++)
		sample_u64(b, "xgate_consumer_requests_total",
			   (const char *const[]){"consumer", metrics_table_label(KIND_CONSUMER, i)->a,
						 NULL},
			   metrics_sum_counter(KIND_CONSUMER, i,
					       offsetof(struct consumer_ctr, requests)));
	family(b, "xgate_consumer_errors_total", "counter",
	       "Requests of API-key consumers answered with a status of 400 or more.");
	for (int i = 0; i < n; i++)
		sample_u64(b, "xgate_consumer_errors_total",
			   (const char *const[]){"consumer", metrics_table_label(KIND_CONSUMER, i)->a,
						 NULL},
			   metrics_sum_counter(KIND_CONSUMER, i, offsetof(struct consumer_ctr, errors)));
}

static void render_upstreams(struct metrics_buf *b, const struct xg_config *cfg)
{
	int n = metrics_table_count(KIND_TARGET);

	family(b, "xgate_upstream_requests_total", "counter",
	       "Requests sent to upstream targets, by outcome.");
	for (int t = 0; t < n; t++) {
		const struct slot_label *l = metrics_table_label(KIND_TARGET, t);

		for (int o = 0; o < OUTCOME_COUNT; o++) {
			uint64_t v = metrics_sum_counter(KIND_TARGET, t, OUTCOME_OFF(o));

			if (v)
				sample_u64(b, "xgate_upstream_requests_total",
					   (const char *const[]){"upstream", l->a, "target", l->b,
								 "outcome",
								 upstream_outcome_name(o), NULL},
					   v);
		}
	}
	family(b, "xgate_upstream_target_up", "gauge",
	       "1 when the target passes health checks (always 1 without checks).");
	for (int u = 0; cfg && u < cfg->nupstreams; u++) {
		const struct upstream_config *up = &cfg->upstreams[u];

		for (int t = 0; t < up->ntargets; t++) {
			struct target_state *st = up->targets[t].state;

			if (st)
				sample_u64(b, "xgate_upstream_target_up",
					   (const char *const[]){"upstream", up->name, "target",
								 up->targets[t].address_text, NULL},
					   atomic_load(&st->up) ? 1 : 0);
		}
	}
}

/* DNS discovery: lookups by outcome and the resolved addresses in each pool. */
static void render_dns(struct metrics_buf *b, const struct xg_config *cfg)
{
	family(b, "xgate_dns_resolutions_total", "counter",
	       "DNS lookups of upstream names, by outcome.");
	for (int u = 0; cfg && u < cfg->nupstreams; u++) {
		const struct upstream_config *up = &cfg->upstreams[u];

		for (int o = 0; up->dns && o < DNS_OUTCOME_COUNT; o++)
			sample_u64(b, "xgate_dns_resolutions_total",
				   (const char *const[]){"upstream", up->name, "outcome",
							 dns_outcome_name(o), NULL},
				   dns_upstream_outcomes(up, o));
	}
	family(b, "xgate_dns_addresses", "gauge",
	       "Resolved addresses an upstream sends new requests to.");
	for (int u = 0; cfg && u < cfg->nupstreams; u++) {
		const struct upstream_config *up = &cfg->upstreams[u];

		if (!up->dns)
			continue;
		sample_u64(b, "xgate_dns_addresses", (const char *const[]){"upstream", up->name, NULL},
			   dns_upstream_live(up));
	}
}

/* Connection-slot queues of upstreams with max_conns_per_target. */
static void render_upstream_queues(struct metrics_buf *b, const struct xg_config *cfg)
{
	static const struct {
		const char *name, *type, *help;
		size_t off;
	} fams[] = {
		{"xgate_upstream_queue_depth", "gauge",
		 "Requests waiting for a connection slot (max_conns_per_target).",
		 offsetof(struct upstream_queue_stats, depth)},
		{"xgate_upstream_queue_dequeued_total", "counter",
		 "Queued requests that got a connection slot.",
		 offsetof(struct upstream_queue_stats, dequeued)},
		{"xgate_upstream_queue_wait_seconds_total", "counter",
		 "Summed wait of the queued requests that got a slot.",
		 offsetof(struct upstream_queue_stats, wait_us)},
		{"xgate_upstream_queue_timeouts_total", "counter",
		 "Queued requests answered 503 after queue_timeout_ms.",
		 offsetof(struct upstream_queue_stats, timeouts)},
	};

	for (size_t f = 0; f < sizeof(fams) / sizeof(fams[0]); f++) {
		family(b, fams[f].name, fams[f].type, fams[f].help);
		for (int u = 0; cfg && u < cfg->nupstreams; u++) {
			const struct upstream_config *up = &cfg->upstreams[u];
			const char *const labels[] = {"upstream", up->name, NULL};
			const char *p;

			if (!up->max_conns_per_target || !up->queue)
				continue;
			p = (const char *)up->queue + fams[f].off;
			if (fams[f].off == offsetof(struct upstream_queue_stats, depth))
				sample_u64(b, fams[f].name, labels,
					   (uint64_t)atomic_load((const atomic_long *)p));
			else if (fams[f].off == offsetof(struct upstream_queue_stats, wait_us))
			{
				mbuf_printf(b, "%s{upstream=\"", fams[f].name);
				mbuf_label_value(b, up->name);
				mbuf_printf(b, "\"} %.6f\n",
					    atomic_load((const atomic_uint_least64_t *)p) / 1e6);
			}
			else
				sample_u64(b, fams[f].name, labels,
					   atomic_load((const atomic_uint_least64_t *)p));
		}
	}
}

static void render_connections(struct metrics_buf *b, const struct xg_config *cfg)
{
	int n = metrics_table_count(KIND_LISTENER);
	bool *cur = current_slots(KIND_LISTENER, cfg, n);

	if (!cur) {
		b->oom = true;
		return;
	}
	family(b, "xgate_connections_active", "gauge", "Open client connections, by listener.");
	for (int l = 0; l < n; l++) {
		int64_t v =
		    metrics_sum_gauge(KIND_LISTENER, l, offsetof(struct listener_ctr, active));

		if (cur[l] || v)
			sample_i64(b, "xgate_connections_active",
				   (const char *const[]){
				       "listener", metrics_table_label(KIND_LISTENER, l)->a, NULL},
				   v);
	}
	free(cur);
}

static void render_auth(struct metrics_buf *b)
{
	family(b, "xgate_auth_failures_total", "counter",
	       "Requests refused by authentication or authorization, by reason.");
	for (int r = AUTH_OK + 1; r < AUTH_REASON_COUNT; r++) {
		const char *labels[] = {"reason", auth_reason_name(r), NULL};

		sample_u64(b, "xgate_auth_failures_total", labels, metrics_sum_auth(r));
	}
	family(b, "xgate_introspection_requests_total", "counter",
	       "Requests whose bearer token was introspected (RFC 7662), by outcome.");
	for (int o = 0; o < INTROSPECTION_OUTCOME_COUNT; o++) {
		const char *labels[] = {"outcome", metrics_introspection_outcome_name(o), NULL};

		sample_u64(b, "xgate_introspection_requests_total", labels,
			   metrics_sum_introspection(o));
	}
	family(b, "xgate_http_requests_by_proto_total", "counter",
	       "HTTP requests answered, by the client's protocol.");
	sample_u64(b, "xgate_http_requests_by_proto_total",
		   (const char *const[]){"proto", "http/1.1", NULL}, metrics_sum_proto(false));
	sample_u64(b, "xgate_http_requests_by_proto_total", (const char *const[]){"proto", "h2", NULL},
		   metrics_sum_proto(true));
}

static void render_config(struct metrics_buf *b)
{
	family(b, "xgate_config_generation", "gauge", "Generation of the config being served.");
	sample_u64(b, "xgate_config_generation", NULL, atomic_load(&metrics_config_generation));
	family(b, "xgate_config_last_reload_success", "gauge",
	       "1 when the last reload attempt succeeded, 0 when it was rejected.");
	sample_u64(b, "xgate_config_last_reload_success", NULL,
		   atomic_load(&metrics_config_last_reload_ok));
	family(b, "xgate_config_last_reload_timestamp_seconds", "gauge",
	       "Unix time the config being served was loaded.");
	sample_i64(b, "xgate_config_last_reload_timestamp_seconds", NULL,
		   atomic_load(&metrics_config_loaded_at));
}

static void render_extra(struct metrics_buf *b, const struct metrics_extra *x)
{
	family(b, "xgate_access_log_dropped_total", "counter",
	       "Access log lines dropped because a worker's buffer was full.");
	sample_u64(b, "xgate_access_log_dropped_total", NULL, x->access_log_dropped);
	if (x->have_xdp) {
		family(b, "xgate_xdp_packets_total", "counter",
		       "Packets seen by the XDP shield, by verdict reason.");
		for (int i = 0; i < x->nxdp; i++)
			sample_u64(b, "xgate_xdp_packets_total",
				   (const char *const[]){"reason", x->xdp[i].reason, NULL},
				   x->xdp[i].packets);
	}
	if (x->have_tls) {
		family(b, "xgate_tls_handshakes_total", "counter", "Completed TLS handshakes.");
		sample_u64(b, "xgate_tls_handshakes_total", NULL, x->tls_handshakes);
		family(b, "xgate_tls_handshake_failures_total", "counter",
		       "Failed TLS handshakes.");
		sample_u64(b, "xgate_tls_handshake_failures_total", NULL,
			   x->tls_handshake_failures);
		family(b, "xgate_ktls_connections_total", "counter",
		       "TLS connections whose record layer moved into the kernel, by direction.");
		sample_u64(b, "xgate_ktls_connections_total",
			   (const char *const[]){"direction", "tx", NULL}, x->ktls_tx);
		sample_u64(b, "xgate_ktls_connections_total",
			   (const char *const[]){"direction", "rx", NULL}, x->ktls_rx);
		family(b, "xgate_ktls_tx_bytes_total", "counter",
		       "Plaintext bytes written to kTLS sockets for the kernel to encrypt.");
		sample_u64(b, "xgate_ktls_tx_bytes_total", NULL, x->ktls_tx_bytes);
		family(b, "xgate_tls_key_update_closes_total", "counter",
		       "kTLS TX connections closed because the peer requested a TLS 1.3 key update.");
		sample_u64(b, "xgate_tls_key_update_closes_total", NULL, x->tls_key_update_closes);
	}
	if (x->have_splice) {
		family(b, "xgate_splice_flows_total", "counter", "Flows spliced in the kernel.");
		sample_u64(b, "xgate_splice_flows_total", NULL, x->splice_flows_total);
		family(b, "xgate_splice_flows_active", "gauge", "Flows spliced right now.");
		sample_u64(b, "xgate_splice_flows_active", NULL, x->splice_flows_active);
		family(b, "xgate_splice_fallbacks_total", "counter",
		       "Flows that could not be spliced and were copied in userspace.");
		sample_u64(b, "xgate_splice_fallbacks_total", NULL, x->splice_fallbacks);
		family(b, "xgate_splice_bytes_total", "counter",
		       "Bytes moved socket to socket through pipes (splice auto), both directions.");
		sample_u64(b, "xgate_splice_bytes_total", NULL, x->splice_pipe_bytes);
	}
}

char *metrics_render(const struct xg_config *cfg, const struct metrics_extra *extra, size_t *len)
{
	static const struct metrics_extra none;
	struct metrics_buf b = {0};

	render_requests(&b);
	render_durations_and_limits(&b, cfg);
	render_upstreams(&b, cfg);
	render_upstream_queues(&b, cfg);
	render_dns(&b, cfg);
	render_splits(&b);
	render_consumers(&b);
	render_compose(&b);
	render_connections(&b, cfg);
	render_auth(&b);
	render_config(&b);
	render_extra(&b, extra ? extra : &none);
	if (b.oom) {
		free(b.p);
		return NULL;
	}
	if (len)
		*len = b.len;
	return b.p;
}
