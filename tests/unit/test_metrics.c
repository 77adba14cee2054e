/* Metrics: interning, per-worker shards, aggregation and the exposition format. */
#include <pthread.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "config/config.h"
#include "metrics/metrics.h"
#include "upstream/upstream.h"

/* Value of the sample whose series text (name{labels}) is exactly `series`; -1 if absent. */
static long long sample(const char *text, const char *series)
{
	size_t n = strlen(series);

	for (const char *line = text; line && *line;
	     line = strchr(line, '\n'), line = line ? line + 1 : NULL) {
		if (!strncmp(line, series, n) && line[n] == ' ')
			return strtoll(line + n + 1, NULL, 10);
	}
	return -1;
}

static double sample_f(const char *text, const char *series)
{
	size_t n = strlen(series);

	for (const char *line = text; line && *line;
	     line = strchr(line, '\n'), line = line ? line + 1 : NULL) {
		if (!strncmp(line, series, n) && line[n] == ' ')
			return strtod(line + n + 1, NULL);
	}
	return -1;
}

static char *render(const struct xg_config *cfg, const struct metrics_extra *x)
{
	size_t len = 0;
	char *text = metrics_render(cfg, x, &len);

	if (text && strlen(text) != len) {
		free(text);
		return NULL;
	}
	return text;
}

static void test_interning(void)
{
	int a = metrics_route_slot("intern-a"), b = metrics_route_slot("intern-b");

	CHECK(a >= 0);
	CHECK(b >= 0 && b != a);
	CHECK_EQ(metrics_route_slot("intern-a"), a);
	CHECK_EQ(metrics_route_slot(""), -1);
	CHECK_EQ(metrics_route_slot(NULL), -1);
	CHECK(metrics_listener_slot("intern-l") >= 0);
	CHECK_EQ(metrics_listener_slot("intern-l"), metrics_listener_slot("intern-l"));
	int t1 = metrics_target_slot("pool", "127.0.0.1:1"),
	    t2 = metrics_target_slot("pool", "127.0.0.1:2");
	int t3 = metrics_target_slot("other", "127.0.0.1:1");
	CHECK(t1 >= 0 && t2 >= 0 && t3 >= 0);
	CHECK(t1 != t2 && t1 != t3 && t2 != t3);
	CHECK_EQ(metrics_target_slot("pool", "127.0.0.1:2"), t2);
	CHECK_EQ(metrics_target_slot(NULL, "x"), -1);
	CHECK(metrics_shard(-1) == NULL);
	CHECK(metrics_shard(METRICS_MAX_WORKERS) == NULL);
	CHECK(metrics_shard(3) == metrics_shard(3));
}

struct worker_arg {
	int worker, route, target, listener, n;
};

static void *hammer(void *p)
{
	struct worker_arg *a = p;
	struct metrics_shard *m = metrics_shard(a->worker);

	for (int i = 0; i < a->n; i++) {
		metrics_http_request(m, a->route, i % 2 ? 200 : 503, 1000000);
		metrics_upstream_request(m, a->target, i % 2 ? OUTCOME_SUCCESS : OUTCOME_TIMEOUT);
		metrics_connection(m, a->listener, +1);
		metrics_rate_limited(m, a->route);
		metrics_auth_failure(m, AUTH_EXPIRED);
	}
	for (int i = 0; i < a->n / 2; i++)
		metrics_connection(m, a->listener, -1);
	return NULL;
}

static void test_shards_sum(void)
{
	int route = metrics_route_slot("sum-route"),
	    target = metrics_target_slot("sum", "10.0.0.1:80");
	int listener = metrics_listener_slot("sum-listener");
	struct worker_arg args[2] = {{10, route, target, listener, 100000},
				     {11, route, target, listener, 100000}};
	pthread_t th[2];
	char *text;

	for (int i = 0; i < 2; i++)
		pthread_create(&th[i], NULL, hammer, &args[i]);
	/* Interning new slots (new chunks) while workers write must not disturb them. */
	for (int i = 0; i < 100; i++) {
		char name[32];

		snprintf(name, sizeof(name), "grow-%d", i);
		CHECK(metrics_route_slot(name) >= 0);
		CHECK(metrics_target_slot("grow", name) >= 0);
	}
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	text = render(NULL, NULL);
	CHECK(text != NULL);
	if (!text)
		return;
	CHECK_EQ(sample(text, "xgate_http_requests_total{route=\"sum-route\",code=\"200\"}"),
		 100000);
	CHECK_EQ(sample(text, "xgate_http_requests_total{route=\"sum-route\",code=\"503\"}"),
		 100000);
	CHECK_EQ(sample(text, "xgate_http_request_duration_seconds_count{route=\"sum-route\"}"),
		 200000);
	CHECK_EQ(sample(text, "xgate_rate_limited_total{route=\"sum-route\"}"), 200000);
	CHECK_EQ(sample(text,
			"xgate_upstream_requests_total{upstream=\"sum\",target=\"10.0.0.1:80\","
			"outcome=\"success\"}"),
		 100000);
	CHECK_EQ(sample(text,
			"xgate_upstream_requests_total{upstream=\"sum\",target=\"10.0.0.1:80\","
			"outcome=\"timeout\"}"),
		 100000);
	CHECK_EQ(sample(text,
			"xgate_upstream_requests_total{upstream=\"sum\",target=\"10.0.0.1:80\","
			"outcome=\"reset\"}"),
		 -1);
	CHECK_EQ(sample(text, "xgate_connections_active{listener=\"sum-listener\"}"), 100000);
	char series[128];

	snprintf(series, sizeof(series), "xgate_auth_failures_total{reason=\"%s\"}",
		 auth_reason_name(AUTH_EXPIRED));
	CHECK_EQ(sample(text, series), 200000);
	/* Every reason is exposed, zero or not. */
	snprintf(series, sizeof(series), "xgate_auth_failures_total{reason=\"%s\"}",
		 auth_reason_name(AUTH_BAD_SIGNATURE));
	CHECK_EQ(sample(text, series), 0);
	free(text);
}

static void test_histogram(void)
{
	int route = metrics_route_slot("hist");
	struct metrics_shard *m = metrics_shard(0);
	char *text;

	metrics_http_request(m, route, 200, 500000);	  /* exactly le=0.0005 */
	metrics_http_request(m, route, 200, 500001);	  /* le=0.001 */
	metrics_http_request(m, route, 200, 0);		  /* le=0.0005 */
	metrics_http_request(m, route, 404, 300000000);	  /* le=0.5 */
	metrics_http_request(m, route, 500, 20000000000); /* only +Inf */
	text = render(NULL, NULL);
	CHECK(text != NULL);
	if (!text)
		return;
#define B(le)                                                                                      \
	sample(text, "xgate_http_request_duration_seconds_bucket{route=\"hist\",le=\"" le "\"}")
	CHECK_EQ(B("0.0005"), 2);
	CHECK_EQ(B("0.001"), 3);
	CHECK_EQ(B("0.0025"), 3);
	CHECK_EQ(B("0.25"), 3);
	CHECK_EQ(B("0.5"), 4);
	CHECK_EQ(B("1"), 4);
	CHECK_EQ(B("2.5"), 4);
	CHECK_EQ(B("10"), 4);
	CHECK_EQ(B("+Inf"), 5);
#undef B
	CHECK_EQ(sample(text, "xgate_http_request_duration_seconds_count{route=\"hist\"}"), 5);
	double sum = sample_f(text, "xgate_http_request_duration_seconds_sum{route=\"hist\"}");
	CHECK(sum > 20.301000 && sum < 20.301002);
	CHECK_EQ(sample(text, "xgate_http_requests_total{route=\"hist\",code=\"404\"}"), 1);
	/* Histogram family metadata. */
	CHECK(strstr(text, "# TYPE xgate_http_request_duration_seconds histogram\n") != NULL);
	CHECK(strstr(text, "# TYPE xgate_http_requests_total counter\n") != NULL);
	free(text);
}

static void test_no_route_and_odd_status(void)
{
	struct metrics_shard *m = metrics_shard(1);
	char *text;

	metrics_http_request(m, -1, 404, 1000);
	metrics_http_request(m, -1, 404, 1000);
	metrics_http_request(m, -1, 42, 1000);
	metrics_rate_limited(m, -1);
	metrics_http_request(NULL, -1, 404, 1000); /* ignored */
	metrics_http_request(m, 1 << 30, 200, 1);  /* out of range: ignored */
	metrics_upstream_request(m, -5, OUTCOME_SUCCESS);
	metrics_connection(m, -1, 1);
	metrics_auth_failure(m, AUTH_REASON_COUNT);
	text = render(NULL, NULL);
	CHECK(text != NULL);
	if (!text)
		return;
	CHECK_EQ(sample(text, "xgate_http_requests_total{route=\"\",code=\"404\"}"), 2);
	CHECK_EQ(sample(text, "xgate_http_requests_total{route=\"\",code=\"0\"}"), 1);
	CHECK_EQ(sample(text, "xgate_http_request_duration_seconds_count{route=\"\"}"), 3);
	CHECK_EQ(sample(text, "xgate_rate_limited_total{route=\"\"}"), 1);
	free(text);
}

static void test_protocol_error_outcome(void)
{
	struct metrics_shard *m = metrics_shard(2);
	int slot = metrics_target_slot("perr", "10.0.0.9:80");
	char *text;

	CHECK(slot >= 0);
	CHECK_STR(upstream_outcome_name(OUTCOME_PROTOCOL_ERROR), "protocol_error");
	CHECK_STR(upstream_outcome_name(OUTCOME_COUNT), "unknown");
	metrics_upstream_request(m, slot, OUTCOME_PROTOCOL_ERROR);
	metrics_upstream_request(m, slot, OUTCOME_PROTOCOL_ERROR);
	metrics_upstream_request(m, slot, OUTCOME_SUCCESS);
	text = render(NULL, NULL);
	CHECK(text != NULL);
	if (!text)
		return;
	CHECK_EQ(sample(text, "xgate_upstream_requests_total{upstream=\"perr\","
			      "target=\"10.0.0.9:80\",outcome=\"protocol_error\"}"),
		 2);
	CHECK_EQ(sample(text, "xgate_upstream_requests_total{upstream=\"perr\","
			      "target=\"10.0.0.9:80\",outcome=\"success\"}"),
		 1);
	free(text);
}

static void test_escaping(void)
{
	int route = metrics_route_slot("we\"ird\\na\nme");
	char *text;

	metrics_http_request(metrics_shard(0), route, 201, 1);
	text = render(NULL, NULL);
	CHECK(text != NULL);
	if (!text)
		return;
	CHECK_EQ(
	    sample(text, "xgate_http_requests_total{route=\"we\\\"ird\\\\na\\nme\",code=\"201\"}"),
	    1);
	free(text);
}

static void test_config_and_extra(void)
{
	static struct target_state up_state, down_state;
	struct target_config targets[2] = {
	    {.address_text = "127.0.0.1:9101", .state = &up_state},
	    {.address_text = "127.0.0.1:9102", .state = &down_state},
	};
	struct upstream_config ups = {.name = "users", .targets = targets, .ntargets = 2};
	struct route_config routes[1] = {
	    {.name = "quiet", .metrics_slot = metrics_route_slot("quiet")}};
	struct listener_config listeners[1] = {
	    {.name = "public", .metrics_slot = metrics_listener_slot("public")},
	};
	struct xg_config cfg = {.upstreams = &ups,
				.nupstreams = 1,
				.routes = routes,
				.nroutes = 1,
				.listeners = listeners,
				.nlisteners = 1};
	struct metrics_xdp_counter xdp[2] = {{"pass", 10}, {"deny", 3}};
	struct metrics_extra x = {
	    .have_tls = true,
	    .tls_handshakes = 7,
	    .tls_handshake_failures = 2,
	    .ktls_tx = 1,
	    .ktls_tx_bytes = 123456,
	    .have_splice = true,
	    .splice_flows_total = 4,
	    .splice_flows_active = 1,
	    .splice_fallbacks = 2,
	    .have_xdp = true,
	    .xdp = xdp,
	    .nxdp = 2,
	    .access_log_dropped = 9,
	};
	char *text;

	atomic_store(&up_state.up, true);
	atomic_store(&down_state.up, false);
	metrics_set_config_generation(5, 1700000000, 0);
	text = render(&cfg, &x);
	CHECK(text != NULL);
	if (!text)
		return;
	CHECK_EQ(
	    sample(text, "xgate_upstream_target_up{upstream=\"users\",target=\"127.0.0.1:9101\"}"),
	    1);
	CHECK_EQ(
	    sample(text, "xgate_upstream_target_up{upstream=\"users\",target=\"127.0.0.1:9102\"}"),
	    0);
	/* Configured but idle routes and listeners are shown at zero. */
	CHECK_EQ(sample(text, "xgate_http_request_duration_seconds_count{route=\"quiet\"}"), 0);
	CHECK_EQ(
	    sample(text, "xgate_http_request_duration_seconds_bucket{route=\"quiet\",le=\"+Inf\"}"),
	    0);
	CHECK_EQ(sample(text, "xgate_rate_limited_total{route=\"quiet\"}"), 0);
	CHECK_EQ(sample(text, "xgate_connections_active{listener=\"public\"}"), 0);
	CHECK_EQ(sample(text, "xgate_config_generation"), 5);
	CHECK_EQ(sample(text, "xgate_config_last_reload_success"), 0);
	CHECK_EQ(sample(text, "xgate_config_last_reload_timestamp_seconds"), 1700000000);
	CHECK_EQ(sample(text, "xgate_xdp_packets_total{reason=\"deny\"}"), 3);
	CHECK_EQ(sample(text, "xgate_tls_handshakes_total"), 7);
	CHECK_EQ(sample(text, "xgate_tls_handshake_failures_total"), 2);
	CHECK_EQ(sample(text, "xgate_ktls_connections_total{direction=\"tx\"}"), 1);
	CHECK_EQ(sample(text, "xgate_ktls_connections_total{direction=\"rx\"}"), 0);
	CHECK_EQ(sample(text, "xgate_ktls_tx_bytes_total"), 123456);
	CHECK_EQ(sample(text, "xgate_splice_flows_total"), 4);
	CHECK_EQ(sample(text, "xgate_splice_flows_active"), 1);
	CHECK_EQ(sample(text, "xgate_splice_fallbacks_total"), 2);
	CHECK_EQ(sample(text, "xgate_access_log_dropped_total"), 9);
	free(text);

	/* Families whose source is absent are omitted entirely. */
	text = render(&cfg, NULL);
	CHECK(text && !strstr(text, "xgate_xdp_packets_total"));
	CHECK(text && !strstr(text, "xgate_tls_handshakes_total"));
	CHECK(text && !strstr(text, "xgate_splice_flows_total"));
	free(text);
	metrics_set_config_generation(6, 1700000001, 1);
}

/* The whole exposition must be accepted by Prometheus' own linter. */
static void test_promtool(void)
{
	char path[] = "/tmp/xgate-metrics-XXXXXX", cmd[256];
	char *text = render(NULL, NULL);
	int fd = mkstemp(path);

	CHECK(text != NULL);
	CHECK(fd >= 0);
	if (!text || fd < 0) {
		free(text);
		return;
	}
	CHECK_EQ(write(fd, text, strlen(text)), (long long)strlen(text));
	close(fd);
	snprintf(cmd, sizeof(cmd), "promtool check metrics < %s", path);
	CHECK_EQ(system(cmd), 0);
	unlink(path);
	free(text);
}

static void test_quantile(void)
{
	uint64_t b[METRICS_DURATION_BUCKETS + 1] = {0};

	CHECK(metrics_histogram_quantile(b, 0.5) < 0);
	b[0] = 10; /* all in (0, 0.5 ms] */
	CHECK(fabs(metrics_histogram_quantile(b, 0.5) - 0.00025) < 1e-9);
	b[0] = 0;
	b[2] = 100; /* (1 ms, 2.5 ms] */
	CHECK(fabs(metrics_histogram_quantile(b, 0.5) - 0.00175) < 1e-9);
	CHECK(fabs(metrics_histogram_quantile(b, 0.99) - (0.001 + 0.0015 * 0.99)) < 1e-9);
	b[METRICS_DURATION_BUCKETS] = 100; /* +Inf reads as the largest bound */
	CHECK(metrics_histogram_quantile(b, 0.99) == 10);
}

int main(void)
{
	RUN(test_quantile);
	RUN(test_interning);
	RUN(test_shards_sum);
	RUN(test_histogram);
	RUN(test_protocol_error_outcome);
	RUN(test_no_route_and_odd_status);
	RUN(test_escaping);
	RUN(test_config_and_extra);
	RUN(test_promtool);
	return CHECK_DONE();
}
