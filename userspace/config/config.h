/*
 * The whole gateway configuration as one immutable, refcounted snapshot. A reload
 * builds and validates a new snapshot, then publishes it; connections keep a reference
 * to the snapshot they started with until they finish.
 *
 * Section parsers live with their concern (auth/, tls/, edge/, ...) and are called
 * from config.c; each reports errors with their JSON path into a struct cfg_errs.
 */
#ifndef XGATE_CONFIG_CONFIG_H
#define XGATE_CONFIG_CONFIG_H

#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "common/cfg.h"

struct auth_config;   /* auth/auth.h */
struct route_auth;    /* auth/auth.h */
struct tls_listener;  /* tls/tls.h */
struct edge_config;   /* edge/edge.h */
struct upstream_queue_stats; /* upstream/upstream.h */
struct router;	      /* router/router.h */
struct ratelimit_policy; /* ratelimit/ratelimit.h */
struct throttle_policy;  /* ratelimit/ratelimit.h */
struct cors_policy;      /* cors/cors.h */
struct transform_policy; /* transform/transform.h */
struct compress_policy;  /* compress/compress.h */
struct split_policy;     /* split/split.h */
struct compose_policy;
struct grpc_json_policy;
struct waf_config;       /* waf/waf.h */
struct cluster_config; /* cluster/cluster.h */
struct target_state;  /* upstream/target_state.h */
struct dns_upstream;  /* upstream/dns.h */

enum listener_mode { LISTENER_HTTP, LISTENER_TCP };
/* auto: pipes with splice(2) (backpressure, never resets); sockmap: BPF redirects. */
enum splice_mode { SPLICE_AUTO, SPLICE_OFF, SPLICE_SOCKMAP };

struct sni_route {
	char *host; /* lower-case; "*.example.com" wildcard allowed */
	int upstream;
};

struct listener_config {
	char *name;
	char *address_text;
	struct sockaddr_storage addr;
	socklen_t addrlen;
	enum listener_mode mode;
	enum splice_mode splice;
	struct tls_listener *tls; /* NULL: plain */
	bool http2; /* TLS: ALPN h2 first; plain: h2c with prior knowledge too */
	int upstream;		  /* tcp mode: default pool index, -1 none */
	struct sni_route *sni_routes;
	int nsni_routes;
	int metrics_slot;
};

struct limits_config {
	uint32_t max_header_bytes;
	uint32_t max_request_line;
	uint64_t max_body_bytes;
	uint32_t header_timeout_ms;
	uint32_t tls_handshake_timeout_ms; /* the whole handshake, not per read */
	uint32_t body_timeout_ms;	    /* the request body's deadline ... */
	uint32_t body_min_rate;		    /* ... extended by 1 s per this many bytes */
	uint64_t max_compose_bytes; /* each call's body and the composed body */
	uint32_t idle_timeout_ms;
	uint32_t max_connections;
	uint32_t drain_timeout_ms;
	uint32_t h2_max_concurrent_streams;
	uint64_t splice_max_inflight_bytes; /* per spliced direction, process-wide */
};

/* Request header names with '_' (see http_name_dashed). */
enum underscore_policy {
	UNDERSCORE_DROP_LOOKALIKES, /* drop those that read as a header the gateway controls */
	UNDERSCORE_DROP,	    /* drop every one (NGINX's default) */
	UNDERSCORE_ALLOW,	    /* forward them all */
};

struct headers_config {
	enum underscore_policy underscores;
};

enum balance_kind { BALANCE_ROUND_ROBIN, BALANCE_LEAST_CONN, BALANCE_HASH };
enum hash_on_kind { HASH_ON_IP, HASH_ON_HEADER, HASH_ON_CLAIM };
/* What the gateway speaks to an upstream (client/ does h2c and h2). */
enum upstream_protocol { UPSTREAM_HTTP1, UPSTREAM_H2C, UPSTREAM_H2 };

struct target_config {
	char *address_text;
	struct sockaddr_storage addr;
	socklen_t addrlen;
	uint32_t weight;
	struct target_state *state; /* shared runtime state, survives reloads */
	int metrics_slot;
};

struct health_check_config {
	bool enabled;
	char *path;
	uint32_t interval_ms, timeout_ms;
	uint32_t unhealthy_after, healthy_after;
};

struct breaker_config {
	bool enabled;
	uint32_t failures; /* consecutive failures that open it */
	uint32_t open_ms;  /* then one probe request is let through (half-open) */
};

struct upstream_config {
	char *name;
	enum balance_kind balance;
	enum hash_on_kind hash_on;
	char *hash_key; /* header or claim name */
	struct target_config *targets;
	int ntargets;
	struct hash_ring *ring; /* upstream/balance.h, for BALANCE_HASH */
	uint32_t keepalive;
	enum upstream_protocol protocol;
	uint32_t max_streams_per_connection; /* h2c/h2: streams one connection carries */
	uint32_t connect_timeout_ms, read_timeout_ms;
	uint32_t retries;
	/* 0: no cap; else requests past N in flight on every target wait in a FIFO queue */
	uint32_t max_conns_per_target, queue_timeout_ms;
	struct upstream_queue_stats *queue; /* upstream/upstream.h, process-wide by name */
	struct health_check_config health;
	struct breaker_config breaker;
	/* NULL: every target is an IP literal. Else targets has room for UPSTREAM_MAX_TARGETS
	 * and the resolver thread adds, reweights and retires slots (upstream/dns.h). */
	struct dns_upstream *dns;
	int metrics_slot;
};

struct header_match {
	char *name;
	char *value; /* exact match; NULL: header must be present */
};

struct route_config {
	char *name;
	char **paths;
	int npaths;
	uint32_t methods; /* bitmask of 1 << enum http_method; 0 = any */
	char **hosts;	  /* lower-case; empty = any */
	int nhosts;
	struct header_match *headers;
	int nheaders;
	int upstream; /* index into config.upstreams */
	bool strip_prefix;
	bool websocket; /* honour "Upgrade: websocket" (any other upgrade is always ignored) */
	struct route_auth *auth;	    /* NULL: open */
	bool hide_credentials; /* the credentials auth read are not forwarded */
	struct ratelimit_policy *rate_limit; /* NULL: none */
	struct throttle_policy *throttle;    /* NULL: none */
	uint32_t cache_ttl_s;		    /* 0: no caching */
	struct cors_policy *cors;	    /* NULL: no CORS handling */
	struct transform_policy *transform; /* NULL: no transformation */
	struct split_policy *split;	    /* NULL: every request goes to `upstream` */
	struct compose_policy *compose;	    /* compose/compose.h; NULL: proxied */
	struct grpc_json_policy *grpc_json; /* grpc/policy.h; NULL: no transcoding */
	/* the route's own, or the top-level one (not owned); NULL: none */
	struct compress_policy *compression;
	bool own_compression;
	bool waf; /* the top-level waf inspects this route's requests */
	int metrics_slot;
};

struct access_log_config {
	bool enabled;
	char *path; /* "-" = stderr */
};

struct admin_config {
	bool enabled;
	char *address_text;
	struct sockaddr_storage addr;
	socklen_t addrlen;
	char *token;	     /* NULL: no bearer token required */
	bool metrics_public; /* GET /metrics without the token */
};

struct xg_config {
	atomic_int refs;
	uint64_t generation;
	int64_t loaded_at; /* unix seconds */
	char *path;
	json_t *raw; /* as read from the file, before ${ENV} substitution: for GET /config */
	int workers;
	struct listener_config *listeners;
	int nlisteners;
	struct admin_config admin;
	struct limits_config limits;
	struct headers_config headers;
	struct upstream_config *upstreams;
	int nupstreams;
	struct route_config *routes;
	int nroutes;
	struct router *router;
	struct auth_config *auth;
	struct edge_config *edge; /* NULL: no XDP */
	struct compress_policy *compression; /* top level, routes inherit it; NULL: none */
	struct waf_config *waf;		     /* NULL: no WAF */
	struct access_log_config access_log;
	char *resolver_servers; /* "IP:PORT,..." for c-ares; NULL: /etc/resolv.conf */
	struct cluster_config *cluster; /* NULL: no cluster mode */
};

/* Loads and validates; NULL with every error in errs. Generation is set by the caller. */
struct xg_config *config_load_file(const char *path, struct cfg_errs *errs);
struct xg_config *config_load_json(json_t *root, const char *path, struct cfg_errs *errs);
/* Like config_load_file on len bytes of JSON text; `path` only names them in messages. */
struct xg_config *config_load_buffer(const char *buf, size_t len, const char *path,
				     struct cfg_errs *errs);
struct xg_config *config_get(struct xg_config *cfg);
void config_put(struct xg_config *cfg);

int config_upstream_index(const struct xg_config *cfg, const char *name);

#endif
