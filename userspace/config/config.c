#include "config/config.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "auth/auth.h"
#include "compress/compress.h"
#include "cors/cors.h"
#include "transform/transform.h"
#include "split/split.h"
#include "edge/edge.h"
#include "http/http.h"
#include "metrics/metrics.h"
#include "ratelimit/ratelimit.h"
#include "cluster/cluster.h"
#include "router/router.h"
#include "compose/compose.h"
#include "grpc/policy.h"
#include "tls/tls.h"
#include "upstream/dns.h"
#include "upstream/upstream.h"
#include "waf/waf.h"

#define MAX_WORKERS 256

/* ${NAME} substitution over every string of the tree; unset variables are errors. */
static json_t *substitute_string(const char *s, const char *path, struct cfg_errs *errs)
{
	size_t cap = strlen(s) + 1, len = 0;
	char *out = malloc(cap);
	json_t *res;

	if (!out)
		return NULL;
	while (*s) {
		const char *end, *val;
		char name[128];
		size_t n;

		if (s[0] != '$' || s[1] != '{' || !(end = strchr(s + 2, '}'))) {
			out[len++] = *s++;
			continue;
		}
		n = end - (s + 2);
		if (n == 0 || n >= sizeof(name)) {
			cfg_err(errs, path, "invalid ${...} reference");
			free(out);
			return NULL;
		}
		memcpy(name, s + 2, n);
		name[n] = '\0';
		val = getenv(name);
		if (!val) {
			cfg_err(errs, path, "environment variable %s is not set", name);
			free(out);
			return NULL;
		}
		cap += strlen(val);
		out = realloc(out, cap);
		if (!out)
			return NULL;
		memcpy(out + len, val, strlen(val));
		len += strlen(val);
		s = end + 1;
	}
	out[len] = '\0';
	res = json_string(out);
	free(out);
	return res;
}

static void substitute_env(json_t *node, const char *path, struct cfg_errs *errs)
{
	char p[CFG_PATH_MAX];
	const char *key;
	json_t *val, *repl;
	size_t i;

	if (json_is_object(node)) {
		json_object_foreach(node, key, val) {
			cfg_path_key(p, path, key);
			if (json_is_string(val) && strstr(json_string_value(val), "${")) {
				repl = substitute_string(json_string_value(val), p, errs);
				if (repl)
					json_object_set_new(node, key, repl);
			} else {
				substitute_env(val, p, errs);
			}
		}
	} else if (json_is_array(node)) {
		json_array_foreach(node, i, val) {
			cfg_path_idx(p, path, i);
			if (json_is_string(val) && strstr(json_string_value(val), "${")) {
				repl = substitute_string(json_string_value(val), p, errs);
				if (repl)
					json_array_set_new(node, i, repl);
			} else {
				substitute_env(val, p, errs);
			}
		}
	}
}

static char *lowercase_dup(const char *s)
{
	char *d = strdup(s);

	for (char *c = d; c && *c; c++)
		*c = tolower((unsigned char)*c);
	return d;
}

int config_upstream_index(const struct xg_config *cfg, const char *name)
{
	/* An upstream whose name was missing or invalid is already an error; skip it. */
	for (int i = 0; i < cfg->nupstreams; i++)
		if (cfg->upstreams[i].name && !strcmp(cfg->upstreams[i].name, name))
			return i;
	return -1;
}

static bool parse_addr_key(json_t *obj, const char *key, const char *path, const char *def,
			   char **text, struct sockaddr_storage *addr, socklen_t *len,
			   struct cfg_errs *errs)
{
	char p[CFG_PATH_MAX], msg[128];

	if (!cfg_get_str(obj, key, path, def, text, errs))
		return false;
	if (!*text) {
		cfg_err(errs, cfg_path_key(p, path, key), "required");
		return false;
	}
	if (!cfg_parse_addr(*text, addr, len, msg, sizeof(msg))) {
		cfg_err(errs, cfg_path_key(p, path, key), "%s", msg);
		return false;
	}
	return true;
}

static void parse_limits(json_t *root, struct limits_config *l, struct cfg_errs *errs)
{
	static const char *const keys[] = { "max_header_bytes", "max_request_line",
					    "max_body_bytes",	"header_timeout_ms",
					    "idle_timeout_ms",	"max_connections",
					    "drain_timeout_ms", "splice_max_inflight_bytes",
					    "tls_handshake_timeout_ms", "max_compose_bytes",
					    "body_timeout_ms",	"body_min_rate",
					    "h2_max_concurrent_streams", NULL };
	json_t *o = cfg_get_object(root, "limits", "", errs);
	long long v;

	if (o)
		cfg_check_keys(o, "limits", keys, errs);
	cfg_get_int(o, "max_header_bytes", "limits", 16384, 1024, 65536, &v, errs);
	l->max_header_bytes = v;
	cfg_get_int(o, "max_request_line", "limits", 8192, 256, 65536, &v, errs);
	l->max_request_line = v;
	cfg_get_int(o, "max_body_bytes", "limits", 1048576, 0, 1LL << 50, &v, errs);
	l->max_body_bytes = v;
	cfg_get_int(o, "header_timeout_ms", "limits", 10000, 1, 3600000, &v, errs);
	l->header_timeout_ms = v;
	cfg_get_int(o, "tls_handshake_timeout_ms", "limits", l->header_timeout_ms, 1, 3600000, &v,
		    errs);
	l->tls_handshake_timeout_ms = v;
	cfg_get_int(o, "body_timeout_ms", "limits", l->header_timeout_ms, 1, 3600000, &v, errs);
	l->body_timeout_ms = v;
	cfg_get_int(o, "body_min_rate", "limits", 1024, 0, 1LL << 30, &v, errs);
	l->body_min_rate = v;
	cfg_get_int(o, "max_compose_bytes", "limits", 1 << 20, 1024, 1LL << 30, &v, errs);
	l->max_compose_bytes = v;
	cfg_get_int(o, "idle_timeout_ms", "limits", 60000, 1, 86400000, &v, errs);
	l->idle_timeout_ms = v;
	cfg_get_int(o, "max_connections", "limits", 100000, 1, 10000000, &v, errs);
	l->max_connections = v;
	cfg_get_int(o, "drain_timeout_ms", "limits", 10000, 0, 600000, &v, errs);
	l->drain_timeout_ms = v;
	cfg_get_int(o, "h2_max_concurrent_streams", "limits", 100, 1, 10000, &v, errs);
	l->h2_max_concurrent_streams = v;
	cfg_get_int(o, "splice_max_inflight_bytes", "limits", 4 << 20, 64 << 10, 1LL << 32, &v,
		    errs);
	l->splice_max_inflight_bytes = v;
}

static bool target_duplicate(const struct upstream_config *uc, const char *text)
{
	for (int i = 0; i < uc->ntargets; i++)
		if (!strcmp(uc->targets[i].address_text, text))
			return true;
	return dns_upstream_has_source(uc, text);
}

/* An IP literal becomes the next slot of uc->targets; a host name a DNS source. */
static void parse_target(json_t *t, const char *path, struct upstream_config *uc,
			 struct cfg_errs *errs)
{
	static const char *const keys[] = { "address", "weight", NULL };
	const char *upstream = uc->name ? uc->name : "";
	char p[CFG_PATH_MAX], msg[128], host[DNS_NAME_MAX + 2], *text = NULL;
	struct target_config *tc = &uc->targets[uc->ntargets];
	uint16_t port;
	bool is_name;
	long long w;

	if (!json_is_object(t)) {
		cfg_err(errs, path, "must be an object");
		return;
	}
	cfg_check_keys(t, path, keys, errs);
	cfg_path_key(p, path, "address");
	cfg_get_int(t, "weight", path, 1, 1, 1000, &w, errs);
	if (!cfg_get_str(t, "address", path, NULL, &text, errs))
		return;
	if (!text) {
		cfg_err(errs, p, "required");
		return;
	}
	if (target_duplicate(uc, text)) {
		cfg_err(errs, p, "duplicate target \"%s\"", text);
	} else if (!dns_parse_target(text, host, sizeof(host), &port, &is_name, msg, sizeof(msg))) {
		cfg_err(errs, p, "%s", msg);
	} else if (is_name) {
		if (!dns_upstream_add_source(uc, DNS_KIND_ADDR, host, port, w, text))
			cfg_err(errs, p, "out of memory");
	} else if (!cfg_parse_addr(text, &tc->addr, &tc->addrlen, msg, sizeof(msg))) {
		cfg_err(errs, p, "%s", msg);
	} else {
		tc->address_text = text;
		tc->weight = w;
		tc->state = target_state_get(upstream, text);
		tc->metrics_slot = metrics_target_slot(upstream, text);
		uc->ntargets++;
		return;
	}
	free(text);
}

static void parse_health(json_t *u, const char *path, struct health_check_config *h,
			 struct cfg_errs *errs)
{
	static const char *const keys[] = { "path",	       "interval_ms",  "timeout_ms",
					    "unhealthy_after", "healthy_after", NULL };
	char p[CFG_PATH_MAX];
	json_t *o = cfg_get_object(u, "health_check", path, errs);
	long long v;

	h->enabled = o != NULL;
	if (!o)
		return;
	cfg_path_key(p, path, "health_check");
	cfg_check_keys(o, p, keys, errs);
	cfg_get_str(o, "path", p, "/health", &h->path, errs);
	if (h->path && h->path[0] != '/')
		cfg_err(errs, p, "path must start with \"/\"");
	cfg_get_int(o, "interval_ms", p, 2000, 50, 3600000, &v, errs);
	h->interval_ms = v;
	cfg_get_int(o, "timeout_ms", p, h->interval_ms < 2000 ? h->interval_ms : 2000, 10,
		    3600000, &v, errs);
	h->timeout_ms = v;
	cfg_get_int(o, "unhealthy_after", p, 3, 1, 1000, &v, errs);
	h->unhealthy_after = v;
	cfg_get_int(o, "healthy_after", p, 2, 1, 1000, &v, errs);
	h->healthy_after = v;
}

static void parse_breaker(json_t *u, const char *path, struct breaker_config *b,
			  struct cfg_errs *errs)
{
	static const char *const keys[] = { "failures", "open_ms", NULL };
	char p[CFG_PATH_MAX];
	json_t *o = cfg_get_object(u, "circuit_breaker", path, errs);
	long long v;

	b->enabled = o != NULL;
	if (!o)
		return;
	cfg_path_key(p, path, "circuit_breaker");
	cfg_check_keys(o, p, keys, errs);
	cfg_get_int(o, "failures", p, 5, 1, 100000, &v, errs);
	b->failures = v;
	cfg_get_int(o, "open_ms", p, 10000, 1, 86400000, &v, errs);
	b->open_ms = v;
}

static void parse_hash_on(json_t *u, const char *path, struct upstream_config *uc,
			  struct cfg_errs *errs)
{
	char p[CFG_PATH_MAX], *s = NULL;

	cfg_path_key(p, path, "hash_on");
	if (!cfg_get_str(u, "hash_on", path, "ip", &s, errs))
		return;
	if (!strcmp(s, "ip")) {
		uc->hash_on = HASH_ON_IP;
	} else if (!strncmp(s, "header:", 7) && s[7]) {
		uc->hash_on = HASH_ON_HEADER;
		uc->hash_key = strdup(s + 7);
	} else if (!strncmp(s, "claim:", 6) && s[6]) {
		uc->hash_on = HASH_ON_CLAIM;
		uc->hash_key = strdup(s + 6);
	} else {
		cfg_err(errs, p, "must be \"ip\", \"header:NAME\" or \"claim:NAME\"");
	}
	free(s);
}

static void parse_upstream(json_t *u, const char *path, struct upstream_config *uc,
			   struct cfg_errs *errs)
{
	static const char *const keys[] = { "name",	 "balance",	 "hash_on",
					    "targets",	 "keepalive",	 "timeouts_ms",
					    "retries",	 "health_check", "circuit_breaker",
					    "max_conns_per_target", "queue_timeout_ms",
					    "dns",	 "resolve",	 "protocol",
					    "max_streams_per_connection", NULL };
	static const char *const tkeys[] = { "connect", "read", NULL };
	static const char *const balances[] = { "round_robin", "least_conn", "hash", NULL };
	static const char *const protocols[] = { "http1", "h2c", "h2", NULL };
	char p[CFG_PATH_MAX], tp[CFG_PATH_MAX];
	json_t *targets, *t, *to;
	long long v;
	int b;
	size_t i;

	if (!json_is_object(u)) {
		cfg_err(errs, path, "must be an object");
		return;
	}
	cfg_check_keys(u, path, keys, errs);
	cfg_get_str(u, "name", path, NULL, &uc->name, errs);
	if (!uc->name || !uc->name[0])
		cfg_err(errs, cfg_path_key(p, path, "name"), "required");
	cfg_get_enum(u, "balance", path, balances, BALANCE_ROUND_ROBIN, &b, errs);
	uc->balance = b;
	if (uc->balance == BALANCE_HASH)
		parse_hash_on(u, path, uc, errs);
	else if (json_object_get(u, "hash_on"))
		cfg_err(errs, cfg_path_key(p, path, "hash_on"), "only valid with \"balance\": \"hash\"");
	cfg_get_int(u, "keepalive", path, 32, 0, 100000, &v, errs);
	uc->keepalive = v;
	cfg_get_enum(u, "protocol", path, protocols, UPSTREAM_HTTP1, &b, errs);
	uc->protocol = b;
	cfg_get_int(u, "max_streams_per_connection", path, 100, 1, 100000, &v, errs);
	uc->max_streams_per_connection = v;
	if (json_object_get(u, "max_streams_per_connection") && uc->protocol == UPSTREAM_HTTP1)
		cfg_err(errs, cfg_path_key(p, path, "max_streams_per_connection"),
			"only valid with \"protocol\": \"h2c\" or \"h2\"");
	cfg_get_int(u, "retries", path, 1, 0, UPSTREAM_MAX_TARGETS, &v, errs);
	uc->retries = v;
	to = cfg_get_object(u, "timeouts_ms", path, errs);
	cfg_path_key(tp, path, "timeouts_ms");
	if (to)
		cfg_check_keys(to, tp, tkeys, errs);
	cfg_get_int(to, "connect", tp, 1000, 1, 600000, &v, errs);
	uc->connect_timeout_ms = v;
	cfg_get_int(to, "read", tp, 30000, 1, 86400000, &v, errs);
	uc->read_timeout_ms = v;
	cfg_get_int(u, "max_conns_per_target", path, 0, 0, 1000000, &v, errs);
	uc->max_conns_per_target = v;
	cfg_get_int(u, "queue_timeout_ms", path, 10000, 1, 3600000, &v, errs);
	uc->queue_timeout_ms = v;
	if (json_object_get(u, "queue_timeout_ms") && !uc->max_conns_per_target)
		cfg_err(errs, cfg_path_key(p, path, "queue_timeout_ms"),
			"only valid with \"max_conns_per_target\"");
	uc->queue = upstream_queue_stats_get(uc->name ? uc->name : "");
	parse_health(u, path, &uc->health, errs);
	parse_breaker(u, path, &uc->breaker, errs);

	targets = cfg_get_array(u, "targets", path, errs);
	cfg_path_key(tp, path, "targets");
	if (json_array_size(targets) > UPSTREAM_MAX_TARGETS) {
		cfg_err(errs, tp, "at most %d targets", UPSTREAM_MAX_TARGETS);
		return;
	}
	/* Room for every slot: DNS upstreams grow their pool at run time. */
	uc->targets = calloc(UPSTREAM_MAX_TARGETS, sizeof(*uc->targets));
	if (!uc->targets) {
		cfg_err(errs, tp, "out of memory");
		return;
	}
	json_array_foreach(targets, i, t)
		parse_target(t, cfg_path_idx(p, tp, i), uc, errs);
	dns_upstream_parse(u, path, uc, errs);
	if (!json_array_size(targets) && !uc->dns)
		cfg_err(errs, tp, "at least one target is required (or \"dns\": {\"srv\": ...})");
	if (errs->count)
		return;
	if (!dns_upstream_finish(uc, uc->ntargets) && uc->balance == BALANCE_HASH)
		uc->ring = hash_ring_build(uc->targets, uc->ntargets);
}

static void parse_upstreams(json_t *root, struct xg_config *cfg, struct cfg_errs *errs)
{
	json_t *arr = cfg_get_array(root, "upstreams", "", errs), *u;
	char p[CFG_PATH_MAX], np[CFG_PATH_MAX];
	size_t i;

	if (!arr)
		return;
	cfg->upstreams = calloc(json_array_size(arr) + 1, sizeof(*cfg->upstreams));
	cfg->nupstreams = json_array_size(arr);
	json_array_foreach(arr, i, u) {
		cfg_path_idx(p, "upstreams", i);
		parse_upstream(u, p, &cfg->upstreams[i], errs);
		for (size_t j = 0; j < i; j++)
			if (cfg->upstreams[i].name && cfg->upstreams[j].name &&
			    !strcmp(cfg->upstreams[i].name, cfg->upstreams[j].name))
				cfg_err(errs, cfg_path_key(np, p, "name"),
					"duplicate upstream \"%s\"", cfg->upstreams[i].name);
	}
}

static int upstream_ref(json_t *obj, const char *key, const char *path, struct xg_config *cfg,
			bool required, struct cfg_errs *errs)
{
	char p[CFG_PATH_MAX], *name = NULL;
	int idx;

	cfg_path_key(p, path, key);
	if (!cfg_get_str(obj, key, path, NULL, &name, errs))
		return -1;
	if (!name) {
		if (required)
			cfg_err(errs, p, "required");
		return -1;
	}
	idx = config_upstream_index(cfg, name);
	if (idx < 0)
		cfg_err(errs, p, "unknown upstream \"%s\"", name);
	free(name);
	return idx;
}

static uint32_t method_bit(const char *name)
{
	for (int m = HTTP_GET; m < HTTP_METHOD_COUNT; m++)
		if (!strcmp(http_method_name(m), name))
			return 1u << m;
	return 0;
}

/* Route hosts compare like request hosts: lower case, without a trailing dot. */
static void tidy_route_host(char *h, const char *jpath, struct cfg_errs *errs)
{
	size_t n = strlen(h);

	for (size_t i = 0; i < n; i++)
		h[i] = tolower((unsigned char)h[i]);
	if (n > 1 && h[n - 1] == '.')
		h[--n] = '\0';
	if (!n || h[0] == '.' || (h[0] != '[' && strchr(h, ':')) || strchr(h, '/') ||
	    (h[0] == '*' && h[1] != '.'))
		cfg_err(errs, jpath, "must be a host name or \"*.domain\" (no port)");
}

/* A route path the normaliser leaves as it is ("$" suffix aside). */
static bool route_path_normal(const char *rp)
{
	size_t n = strlen(rp);
	char *copy;
	ssize_t r;

	if (n && rp[n - 1] == '$')
		n--;
	if (n > 1 && rp[n - 1] == '/')
		n--; /* "/api/" is a dir route: its trailing slash is meaningful */
	copy = strndup(rp, n);
	if (!copy)
		return true; /* out of memory is not the user's error; the router still builds */
	r = http_path_normalize(copy, n);
	r = r == (ssize_t)n && !memcmp(copy, rp, n);
	free(copy);
	return r;
}

static void parse_route_matchers(json_t *r, const char *path, struct route_config *rc,
				 struct cfg_errs *errs)
{
	char p[CFG_PATH_MAX], ip[CFG_PATH_MAX];
	json_t *hdrs, *v;
	const char *key;
	char **methods;
	int nmethods;

	cfg_get_strings(r, "paths", path, false, &rc->paths, &rc->npaths, errs);
	cfg_path_key(p, path, "paths");
	if (!rc->npaths)
		cfg_err(errs, p, "at least one path is required");
	for (int i = 0; i < rc->npaths; i++) {
		if (rc->paths[i][0] != '/')
			cfg_err(errs, cfg_path_idx(ip, p, i), "must start with \"/\"");
		else if (!route_path_normal(rc->paths[i]))
			cfg_err(errs, cfg_path_idx(ip, p, i),
				"\"%s\" is not a normalised path (no %%-escapes of unreserved "
				"characters, dot segments, \";\" parameters, trailing dots or "
				"repeated slashes): requests are normalised before matching, so it "
				"would never match",
				rc->paths[i]);
	}
	cfg_get_strings(r, "methods", path, false, &methods, &nmethods, errs);
	for (int i = 0; i < nmethods; i++) {
		uint32_t bit = method_bit(methods[i]);

		if (!bit)
			cfg_err(errs, cfg_path_idx(ip, cfg_path_key(p, path, "methods"), i),
				"unknown method \"%s\"", methods[i]);
		rc->methods |= bit;
		free(methods[i]);
	}
	free(methods);
	cfg_get_strings(r, "hosts", path, true, &rc->hosts, &rc->nhosts, errs);
	for (int i = 0; i < rc->nhosts; i++)
		tidy_route_host(rc->hosts[i], cfg_path_idx(ip, cfg_path_key(p, path, "hosts"), i),
				errs);
	hdrs = cfg_get_object(r, "headers", path, errs);
	if (!hdrs || !json_object_size(hdrs))
		return;
	rc->headers = calloc(json_object_size(hdrs), sizeof(*rc->headers));
	json_object_foreach(hdrs, key, v) {
		struct header_match *hm = &rc->headers[rc->nheaders];

		if (!json_is_string(v) && !json_is_null(v)) {
			cfg_err(errs, cfg_path_key(ip, cfg_path_key(p, path, "headers"), key),
				"must be a string or null");
			continue;
		}
		hm->name = lowercase_dup(key);
		hm->value = json_is_string(v) ? strdup(json_string_value(v)) : NULL;
		rc->nheaders++;
	}
}

/* A listener's tls names a client_ca (read from the JSON: one that failed to load has its
 * own error, the routes need not repeat it). */
static bool any_mtls_listener(json_t *root)
{
	json_t *arr = json_object_get(root, "listeners"), *l;
	size_t i;

	json_array_foreach(arr, i, l)
		if (json_object_get(json_object_get(l, "tls"), "client_ca"))
			return true;
	return false;
}

/* Every route of a config with a top-level "waf" is inspected unless it says false. */
static void parse_route_waf(json_t *r, const char *path, struct route_config *rc,
			    const struct xg_config *cfg, struct cfg_errs *errs)
{
	char p[CFG_PATH_MAX];

	if (!cfg_get_bool(r, "waf", path, cfg->waf != NULL, &rc->waf, errs))
		return;
	/* (a top-level "waf" that failed to load has its own error) */
	if (rc->waf && !cfg->waf && json_object_get(r, "waf") &&
	    !json_object_get(cfg->raw, "waf"))
		cfg_err(errs, cfg_path_key(p, path, "waf"), "needs a top-level \"waf\"");
	rc->waf = rc->waf && cfg->waf;
}

static void parse_route(json_t *r, const char *path, int idx, struct xg_config *cfg,
			json_t *root_auth, struct cfg_errs *errs)
{
	static const char *const keys[] = { "name",	   "paths",	 "methods", "hosts",
					    "headers",	   "upstream",	 "strip_prefix",
					    "auth",	   "schedule",	 "rate_limit", "cache",
					    "throttle",	   "websocket",	 "cors",
					    "compression", "split",	 "sticky",
					    "hide_credentials", "compose", "transform", "waf",
					    "grpc_json", NULL };
	static const char *const ckeys[] = { "ttl_s", NULL };
	struct route_config *rc = &cfg->routes[idx];
	char p[CFG_PATH_MAX], name[64];
	json_t *cache, *auth, *sched, *rl, *th, *cors, *comp;
	int auth_errs;
	long long v;

	if (!json_is_object(r)) {
		cfg_err(errs, path, "must be an object");
		return;
	}
	cfg_check_keys(r, path, keys, errs);
	snprintf(name, sizeof(name), "route%d", idx);
	cfg_get_str(r, "name", path, name, &rc->name, errs);
	parse_route_matchers(r, path, rc, errs);
	/* A split names its pools; "upstream" is then optional (the first entry's). */
	rc->upstream = upstream_ref(r, "upstream", path, cfg,
				    !json_object_get(r, "split") && !json_object_get(r, "compose"),
				    errs);
	if (json_object_get(r, "compose")) {
		if (json_object_get(r, "upstream") || json_object_get(r, "split"))
			cfg_err(errs, cfg_path_key(p, path, "compose"),
				"a route has \"compose\" instead of \"upstream\" or \"split\"");
		rc->compose = compose_policy_parse(json_object_get(r, "compose"),
						   cfg_path_key(p, path, "compose"), cfg, errs);
		/* accounting needs a pool index: the first call's */
		if (rc->compose)
			rc->upstream = rc->compose->calls[0].upstream;
		for (int i = 0; rc->compose && i < rc->compose->ncalls; i++)
			rc->compose->calls[i].metrics_slot =
			    metrics_compose_slot(rc->name, rc->compose->calls[i].name);
	}
	if (json_object_get(r, "split")) {
		rc->split = split_policy_parse(json_object_get(r, "split"),
					       json_object_get(r, "sticky"), path, rc->name, cfg,
					       errs);
		if (rc->split && rc->upstream < 0 && !json_object_get(r, "upstream"))
			rc->upstream = rc->split->entries[0].upstream;
	} else if (json_object_get(r, "sticky")) {
		cfg_err(errs, cfg_path_key(p, path, "sticky"), "needs \"split\"");
	}
	cfg_get_bool(r, "strip_prefix", path, false, &rc->strip_prefix, errs);
	cfg_get_bool(r, "websocket", path, false, &rc->websocket, errs);
	cache = cfg_get_object(r, "cache", path, errs);
	if (cache) {
		cfg_check_keys(cache, cfg_path_key(p, path, "cache"), ckeys, errs);
		cfg_get_int(cache, "ttl_s", p, 60, 1, 31536000, &v, errs);
		rc->cache_ttl_s = v;
	}
	auth = json_object_get(r, "auth");
	sched = json_object_get(r, "schedule");
	auth_errs = errs->count;
	if (auth || sched)
		rc->auth = route_auth_parse(auth, sched, path, cfg->auth, errs);
	/* A route whose auth failed to parse has its error already. */
	cfg_get_bool(r, "hide_credentials", path, false, &rc->hide_credentials, errs);
	if (rc->hide_credentials && errs->count == auth_errs &&
	    !auth_route_has_credentials(rc->auth))
		cfg_err(errs, cfg_path_key(p, path, "hide_credentials"),
			"needs an \"auth\" with jwt, api_key or introspection (a "
			"credential to hide)");
	rl = cfg_get_object(r, "rate_limit", path, errs);
	if (rl)
		rc->rate_limit = ratelimit_policy_parse(rl, cfg_path_key(p, path, "rate_limit"),
							rc->name, errs);
	th = cfg_get_object(r, "throttle", path, errs);
	if (th)
		rc->throttle = throttle_policy_parse(th, cfg_path_key(p, path, "throttle"),
						     rc->name, errs);
	cors = json_object_get(r, "cors");
	if (cors)
		rc->cors = cors_policy_parse(cors, cfg_path_key(p, path, "cors"), errs);
	if (json_object_get(r, "transform"))
		rc->transform = transform_policy_parse(json_object_get(r, "transform"),
						       cfg_path_key(p, path, "transform"), errs);
	/* A held body is rewritten once on its way out: a cache would store and replay it
	 * beside the hold, and a composed response is the gateway's own. */
	if (rc->transform && rc->transform->resp_body.active && (rc->cache_ttl_s || rc->compose)) {
		char tp[CFG_PATH_MAX];

		cfg_err(errs, cfg_path_key(tp, cfg_path_key(p, path, "transform"), "response.body"),
			"cannot be combined with %s", rc->compose ? "compose" : "cache");
	}
	/* The route's own compression wins; false turns the top-level one off. */
	comp = json_object_get(r, "compression");
	rc->compression = cfg->compression;
	if (json_is_false(comp)) {
		rc->compression = NULL;
	} else if (comp) {
		rc->compression = compress_policy_parse(comp, cfg_path_key(p, path, "compression"),
							errs);
		rc->own_compression = true;
	}
	parse_route_waf(r, path, rc, cfg, errs);
	if (json_object_get(r, "grpc_json")) {
		if (rc->compose)
			cfg_err(errs, cfg_path_key(p, path, "grpc_json"),
				"cannot be combined with compose");
		rc->grpc_json = grpc_json_policy_parse(json_object_get(r, "grpc_json"),
						       cfg_path_key(p, path, "grpc_json"), errs);
	}
	rc->metrics_slot = metrics_route_slot(rc->name);
	(void)root_auth;
}

static void parse_routes(json_t *root, struct xg_config *cfg, struct cfg_errs *errs)
{
	json_t *arr = cfg_get_array(root, "routes", "", errs), *r;
	char p[CFG_PATH_MAX], np[CFG_PATH_MAX], err[256] = "";
	char *sep;
	size_t i;

	if (!arr)
		return;
	cfg->routes = calloc(json_array_size(arr) + 1, sizeof(*cfg->routes));
	cfg->nroutes = json_array_size(arr);
	json_array_foreach(arr, i, r) {
		cfg_path_idx(p, "routes", i);
		parse_route(r, p, i, cfg, json_object_get(root, "auth"), errs);
		if (auth_route_uses_mtls(cfg->routes[i].auth) && !any_mtls_listener(root))
			cfg_err(errs, cfg_path_key(np, p, "auth"),
				"mtls needs a listener with tls.client_ca (no client could "
				"authenticate)");
		for (size_t j = 0; j < i; j++)
			if (cfg->routes[i].name && cfg->routes[j].name &&
			    !strcmp(cfg->routes[i].name, cfg->routes[j].name))
				cfg_err(errs, cfg_path_key(np, p, "name"), "duplicate route \"%s\"",
					cfg->routes[i].name);
	}
	if (errs->count)
		return;
	cfg->router = router_build(cfg->routes, cfg->nroutes, err, sizeof(err));
	if (cfg->router)
		return;
	/* The router names the offending path itself: "routes[1].paths[0]: message". */
	sep = strstr(err, ": ");
	if (sep) {
		*sep = '\0';
		cfg_err(errs, err, "%s", sep + 2);
	} else {
		cfg_err(errs, "routes", "%s", err[0] ? err : "cannot build the route table");
	}
}

static void parse_sni_routes(json_t *l, const char *path, struct listener_config *lc,
			     struct xg_config *cfg, struct cfg_errs *errs)
{
	json_t *o = cfg_get_object(l, "sni_routes", path, errs), *v;
	char p[CFG_PATH_MAX], kp[CFG_PATH_MAX];
	const char *host;

	if (!o)
		return;
	cfg_path_key(p, path, "sni_routes");
	lc->sni_routes = calloc(json_object_size(o) + 1, sizeof(*lc->sni_routes));
	json_object_foreach(o, host, v) {
		int idx = json_is_string(v) ? config_upstream_index(cfg, json_string_value(v)) : -1;

		cfg_path_key(kp, p, host);
		if (!json_is_string(v))
			cfg_err(errs, kp, "must be an upstream name");
		else if (idx < 0)
			cfg_err(errs, kp, "unknown upstream \"%s\"", json_string_value(v));
		lc->sni_routes[lc->nsni_routes].host = lowercase_dup(host);
		lc->sni_routes[lc->nsni_routes++].upstream = idx;
	}
}

static void parse_listener(json_t *l, const char *path, struct listener_config *lc,
			   struct xg_config *cfg, struct cfg_errs *errs)
{
	static const char *const keys[] = { "name", "address",	  "mode", "splice",
					    "tls",  "upstream", "sni_routes", "http2", NULL };
	static const char *const modes[] = { "http", "tcp", NULL };
	static const char *const splices[] = { "auto", "off", "sockmap", NULL };
	/* Off unless asked for: a spliced flow whose receiver falls behind is reset. */
	char p[CFG_PATH_MAX];
	json_t *tls;
	int v;

	if (!json_is_object(l)) {
		cfg_err(errs, path, "must be an object");
		return;
	}
	cfg_check_keys(l, path, keys, errs);
	cfg_get_str(l, "name", path, NULL, &lc->name, errs);
	if (!lc->name || !lc->name[0])
		cfg_err(errs, cfg_path_key(p, path, "name"), "required");
	parse_addr_key(l, "address", path, NULL, &lc->address_text, &lc->addr, &lc->addrlen, errs);
	cfg_get_enum(l, "mode", path, modes, LISTENER_HTTP, &v, errs);
	lc->mode = v;
	cfg_get_enum(l, "splice", path, splices, SPLICE_OFF, &v, errs);
	lc->splice = v;
	tls = cfg_get_object(l, "tls", path, errs);
	if (tls)
		lc->tls = tls_listener_parse(tls, cfg_path_key(p, path, "tls"), errs);
	cfg_get_bool(l, "http2", path, lc->tls != NULL, &lc->http2, errs);
	if (lc->tls && lc->http2)
		tls_listener_offer_h2(lc->tls);
	lc->upstream = upstream_ref(l, "upstream", path, cfg, false, errs);
	parse_sni_routes(l, path, lc, cfg, errs);
	if (lc->mode == LISTENER_TCP) {
		if (lc->upstream < 0 && !lc->nsni_routes && !json_object_get(l, "upstream"))
			cfg_err(errs, path, "a \"tcp\" listener needs \"upstream\" or \"sni_routes\"");
		if (json_object_get(l, "http2"))
			cfg_err(errs, cfg_path_key(p, path, "http2"),
				"a \"tcp\" listener does not speak HTTP");
		if (lc->tls)
			cfg_err(errs, cfg_path_key(p, path, "tls"),
				"a \"tcp\" listener does not terminate TLS (use \"sni_routes\")");
	} else if (json_object_get(l, "upstream") || lc->nsni_routes) {
		cfg_err(errs, path, "\"upstream\" and \"sni_routes\" need \"mode\": \"tcp\"");
	}
	if (lc->name)
		lc->metrics_slot = metrics_listener_slot(lc->name);
}

static void parse_listeners(json_t *root, struct xg_config *cfg, struct cfg_errs *errs)
{
	json_t *arr = cfg_get_array(root, "listeners", "", errs), *l;
	char p[CFG_PATH_MAX];
	size_t i;

	if (!arr || !json_array_size(arr)) {
		cfg_err(errs, "listeners", "at least one listener is required");
		return;
	}
	cfg->listeners = calloc(json_array_size(arr), sizeof(*cfg->listeners));
	cfg->nlisteners = json_array_size(arr);
	json_array_foreach(arr, i, l) {
		struct listener_config *lc = &cfg->listeners[i];

		cfg_path_idx(p, "listeners", i);
		parse_listener(l, p, lc, cfg, errs);
		for (size_t j = 0; j < i; j++) {
			struct listener_config *o = &cfg->listeners[j];

			if (lc->name && o->name && !strcmp(lc->name, o->name))
				cfg_err(errs, p, "duplicate listener name \"%s\"", lc->name);
			if (lc->address_text && o->address_text &&
			    !strcmp(lc->address_text, o->address_text))
				cfg_err(errs, p, "duplicate listener address \"%s\"",
					lc->address_text);
		}
	}
}

static void parse_admin(json_t *root, struct xg_config *cfg, struct cfg_errs *errs)
{
	static const char *const keys[] = { "address", "token", "metrics_public", NULL };
	json_t *o = cfg_get_object(root, "admin", "", errs);

	cfg->admin.enabled = o != NULL;
	if (!o)
		return;
	cfg_check_keys(o, "admin", keys, errs);
	parse_addr_key(o, "address", "admin", "127.0.0.1:9901", &cfg->admin.address_text,
		       &cfg->admin.addr, &cfg->admin.addrlen, errs);
	if (cfg_get_str(o, "token", "admin", NULL, &cfg->admin.token, errs) && cfg->admin.token &&
	    strlen(cfg->admin.token) < 16)
		cfg_err(errs, "admin.token", "must be at least 16 characters");
	cfg_get_bool(o, "metrics_public", "admin", false, &cfg->admin.metrics_public, errs);
}

static void parse_access_log(json_t *root, struct xg_config *cfg, struct cfg_errs *errs)
{
	static const char *const keys[] = { "path", "format", NULL };
	static const char *const formats[] = { "json", NULL };
	json_t *o = cfg_get_object(root, "access_log", "", errs);
	int fmt;

	cfg->access_log.enabled = o != NULL;
	if (!o)
		return;
	cfg_check_keys(o, "access_log", keys, errs);
	cfg_get_str(o, "path", "access_log", "-", &cfg->access_log.path, errs);
	cfg_get_enum(o, "format", "access_log", formats, 0, &fmt, errs);
}

static void parse_headers(json_t *root, struct headers_config *h, struct cfg_errs *errs)
{
	static const char *const keys[] = { "underscores", NULL };
	static const char *const policies[] = { "drop_lookalikes", "drop", "allow", NULL };
	json_t *o = cfg_get_object(root, "headers", "", errs);
	int v = UNDERSCORE_DROP_LOOKALIKES;

	if (o)
		cfg_check_keys(o, "headers", keys, errs);
	cfg_get_enum(o, "underscores", "headers", policies, UNDERSCORE_DROP_LOOKALIKES, &v, errs);
	h->underscores = v;
}

/* Cluster-scoped rate limits need the "cluster" section, and get its node share. */
static void link_cluster_limits(json_t *root, struct xg_config *cfg, struct cfg_errs *errs)
{
	char p[CFG_PATH_MAX];

	for (int i = 0; i < cfg->nroutes; i++) {
		struct route_config *rc = &cfg->routes[i];

		if (!rc->rate_limit || !ratelimit_policy_cluster(rc->rate_limit))
			continue;
		snprintf(p, sizeof(p), "routes[%d].rate_limit.scope", i);
		if (cfg->cluster) {
			if (!ratelimit_policy_set_nodes(rc->rate_limit, rc->name,
							cfg->cluster->nodes))
				cfg_err(errs, p, "out of memory");
		} else if (!json_object_get(root, "cluster")) {
			cfg_err(errs, p, "\"cluster\" needs the top-level \"cluster\" section");
		}
	}
}

static void parse_root(json_t *root, struct xg_config *cfg, struct cfg_errs *errs)
{
	static const char *const keys[] = { "workers",	 "listeners", "admin",	   "limits",
					    "edge",	 "upstreams", "routes",	   "auth",
					    "consumers", "access_log", "headers",  "compression",
					    "resolver",	 "cluster",	 "waf",	NULL };
	long long workers;
	json_t *edge, *comp, *cl;

	cfg_check_keys(root, "", keys, errs);
	cl = cfg_get_object(root, "cluster", "", errs);
	if (cl)
		cfg->cluster = cluster_config_parse(cl, "cluster", errs);
	cfg_get_int(root, "workers", "", 0, 0, MAX_WORKERS, &workers, errs);
	cfg->workers = workers ? workers : sysconf(_SC_NPROCESSORS_ONLN);
	if (cfg->workers < 1)
		cfg->workers = 1;
	if (cfg->workers > MAX_WORKERS)
		cfg->workers = MAX_WORKERS;
	parse_limits(root, &cfg->limits, errs);
	parse_headers(root, &cfg->headers, errs);
	cfg->auth = auth_config_parse(cfg_get_object(root, "auth", "", errs),
				      cfg_get_array(root, "consumers", "", errs), errs);
	comp = json_object_get(root, "compression");
	if (comp)
		cfg->compression = compress_policy_parse(comp, "compression", errs);
	dns_resolver_parse(root, &cfg->resolver_servers, errs);
	/* before the routes: they default to being inspected when it is there */
	if (json_object_get(root, "waf"))
		cfg->waf = waf_config_parse(json_object_get(root, "waf"), "waf", errs);
	parse_upstreams(root, cfg, errs);
	parse_listeners(root, cfg, errs);
	parse_routes(root, cfg, errs);
	link_cluster_limits(root, cfg, errs);
	parse_admin(root, cfg, errs);
	parse_access_log(root, cfg, errs);
	edge = cfg_get_object(root, "edge", "", errs);
	if (edge)
		cfg->edge = edge_config_parse(edge, "edge", errs);
}

struct xg_config *config_load_json(json_t *root, const char *path, struct cfg_errs *errs)
{
	struct xg_config *cfg;
	int before = errs->count;

	if (!json_is_object(root)) {
		cfg_err(errs, "", "the configuration must be a JSON object");
		return NULL;
	}
	cfg = calloc(1, sizeof(*cfg));
	if (!cfg)
		return NULL;
	atomic_init(&cfg->refs, 1);
	cfg->path = strdup(path ? path : "");
	cfg->loaded_at = time(NULL);
	cfg->raw = json_deep_copy(root);
	root = json_deep_copy(root);
	substitute_env(root, "", errs);
	parse_root(root, cfg, errs);
	json_decref(root);
	if (errs->count > before) {
		config_put(cfg);
		return NULL;
	}
	return cfg;
}

/* A JSON syntax error as "file:line:column: text" (no position when jansson has none). */
static void json_syntax_error(const char *path, const json_error_t *jerr, struct cfg_errs *errs)
{
	if (jerr->line < 0)
		cfg_err(errs, "", "%s: %s", path, jerr->text);
	else
		cfg_err(errs, "", "%s:%d:%d: %s", path, jerr->line, jerr->column, jerr->text);
}

struct xg_config *config_load_file(const char *path, struct cfg_errs *errs)
{
	json_error_t jerr;
	json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
	struct xg_config *cfg;

	if (!root) {
		json_syntax_error(path, &jerr, errs);
		return NULL;
	}
	cfg = config_load_json(root, path, errs);
	json_decref(root);
	return cfg;
}

struct xg_config *config_load_buffer(const char *buf, size_t len, const char *path,
				     struct cfg_errs *errs)
{
	json_error_t jerr;
	json_t *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
	struct xg_config *cfg;

	if (!root) {
		json_syntax_error(path ? path : "", &jerr, errs);
		return NULL;
	}
	cfg = config_load_json(root, path, errs);
	json_decref(root);
	return cfg;
}

struct xg_config *config_get(struct xg_config *cfg)
{
	atomic_fetch_add_explicit(&cfg->refs, 1, memory_order_relaxed);
	return cfg;
}

static void free_route(struct route_config *rc)
{
	for (int i = 0; i < rc->npaths; i++)
		free(rc->paths[i]);
	for (int i = 0; i < rc->nhosts; i++)
		free(rc->hosts[i]);
	for (int i = 0; i < rc->nheaders; i++) {
		free(rc->headers[i].name);
		free(rc->headers[i].value);
	}
	free(rc->paths);
	free(rc->hosts);
	free(rc->headers);
	free(rc->name);
	route_auth_free(rc->auth);
	compose_policy_free(rc->compose);
	grpc_json_policy_free(rc->grpc_json);
	ratelimit_policy_free(rc->rate_limit);
	throttle_policy_free(rc->throttle);
	cors_policy_free(rc->cors);
	transform_policy_free(rc->transform);
	split_policy_free(rc->split);
	if (rc->own_compression)
		compress_policy_free(rc->compression);
}

static void free_upstream(struct upstream_config *uc)
{
	for (int i = 0; i < uc->ntargets; i++)
		free(uc->targets[i].address_text);
	free(uc->targets);
	free(uc->name);
	free(uc->hash_key);
	free(uc->health.path);
	hash_ring_free(uc->ring);
	dns_upstream_free(uc->dns);
}

static void free_listener(struct listener_config *lc)
{
	for (int i = 0; i < lc->nsni_routes; i++)
		free(lc->sni_routes[i].host);
	free(lc->sni_routes);
	free(lc->name);
	free(lc->address_text);
	tls_listener_free(lc->tls);
}

void config_put(struct xg_config *cfg)
{
	if (!cfg || atomic_fetch_sub_explicit(&cfg->refs, 1, memory_order_acq_rel) != 1)
		return;
	router_free(cfg->router);
	for (int i = 0; i < cfg->nroutes; i++)
		free_route(&cfg->routes[i]);
	for (int i = 0; i < cfg->nupstreams; i++)
		free_upstream(&cfg->upstreams[i]);
	for (int i = 0; i < cfg->nlisteners; i++)
		free_listener(&cfg->listeners[i]);
	free(cfg->routes);
	free(cfg->upstreams);
	free(cfg->listeners);
	auth_config_free(cfg->auth);
	edge_config_free(cfg->edge);
	cluster_config_free(cfg->cluster);
	compress_policy_free(cfg->compression);
	waf_config_free(cfg->waf);
	free(cfg->admin.address_text);
	free(cfg->admin.token);
	free(cfg->access_log.path);
	free(cfg->resolver_servers);
	free(cfg->path);
	json_decref(cfg->raw);
	free(cfg);
}
