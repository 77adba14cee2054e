/*
 * Response cache: one per worker (no locks), a bounded LRU of complete responses.
 *
 * Entries are keyed by a 64-bit hash plus the full key bytes (method, host, path, query,
 * route, and the consumer when the route authenticates). Freshness is
 * min(route ttl_s, s-maxage or else max-age minus the upstream's Age); Expires is not
 * consulted. Responses with Vary on request headers are stored with those headers'
 * request values and served only to requests with the same values (one variant per key;
 * a new variant replaces the old). Only responses to GET are stored; HEAD requests share
 * the GET key and are answered with the stored head alone.
 *
 * Flow in the proxy (after auth and rate limits), all on the worker thread:
 *   request:  if (route->cache_ttl_s && cache_request_cacheable(req, route_authenticates)) {
 *                     cache_key_make(&key, keybuf, sizeof(keybuf), req, host, hlen, path,
 *                                    plen, route_index, consumer, clen);   (keep keybuf)
 *                     if (cache_lookup(c, &key, req, now_ms, &hit)) {
 *                             out: hit.head, "Age: <hit.age_s>\r\n", own headers
 *                                  (X-Request-Id, Connection), "\r\n", hit.body unless HEAD;
 *                             cache_release(c, &hit) once copied/sent;
 *                     }
 *             }
 *   response head (GET, miss above): cache_fill_begin(c, &key, req or NULL, &resp,
 *             route->cache_ttl_s, now_ms, &fill) -> false: do not capture;
 *   body bytes as forwarded (Content-Length bodies only): cache_fill_append(&fill, p, n);
 *   exchange complete: cache_fill_commit(c, &fill); on any error: cache_fill_abort(&fill).
 */
#ifndef XGATE_CACHE_CACHE_H
#define XGATE_CACHE_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http/http.h"

#define CACHE_MAX_VARY 8 /* responses varying on more request headers are not stored */
#define CACHE_MAX_ENTRY_BYTES (1u << 20) /* default per-entry limit (head + body) */

struct resp_cache;
struct cache_entry;

struct cache_key {
	uint64_t hash;
	const char *bytes; /* the caller's buffer given to cache_key_make */
	size_t len;
};

struct cache_hit {
	/* Status line and end-to-end headers, each ending in CRLF, without the empty line. */
	const char *head;
	size_t head_len;
	const char *body;
	size_t body_len;
	uint32_t age_s;		   /* value for the Age header */
	struct cache_entry *entry; /* pinned until cache_release() */
};

/* A response being captured while it streams to the client; caller-owned. */
struct cache_fill {
	struct cache_entry *entry; /* NULL: nothing being captured */
	size_t got;
};

struct cache_stats {
	uint64_t hits, misses, stores, evictions;
	size_t entries, bytes;
};

/*
 * budget_bytes bounds the memory of all linked entries (entry overhead included);
 * max_entry_bytes bounds one response (head + body). NULL on allocation failure.
 */
struct resp_cache *resp_cache_new(size_t budget_bytes, size_t max_entry_bytes);
/* Every hit must have been released and every fill committed or aborted before. */
void resp_cache_free(struct resp_cache *c);
/* Drops every entry (e.g. when the worker switches to a new config: route ids change). */
void resp_cache_clear(struct resp_cache *c);
void resp_cache_stats(const struct resp_cache *c, struct cache_stats *out);

/*
 * GET or HEAD without a body or upgrade; no "Cache-Control: no-store/no-cache", no
 * "Pragma: no-cache"; no Authorization unless keyed_by_consumer (the route authenticates
 * and the consumer is part of the key).
 */
bool cache_request_cacheable(const struct http_request *req, bool keyed_by_consumer);

/*
 * Status 200/203/301/404/410 with a Content-Length equal to body_len <= max_entry_bytes;
 * no "Cache-Control: no-store/private/no-cache", no Set-Cookie, no "Vary: *", Vary on at
 * most CACHE_MAX_VARY headers.
 */
bool cache_response_cacheable(const struct http_response *resp, size_t body_len,
			      size_t max_entry_bytes);

/*
 * Serializes the key into buf and hashes it. host: lower-case without port; path: the
 * normalized path; consumer: NULL/0 when the route does not authenticate. Returns the
 * bytes the key needs: when that exceeds cap, key is not made and the request should
 * bypass the cache.
 */
size_t cache_key_make(struct cache_key *key, char *buf, size_t cap, const struct http_request *req,
		      const char *host, size_t host_len, const char *path, size_t path_len,
		      int route, const char *consumer, size_t consumer_len);

/* Fresh entry for key whose Vary values match req: true, with hit pinned. */
bool cache_lookup(struct resp_cache *c, const struct cache_key *key, const struct http_request *req,
		  uint64_t now_ms, struct cache_hit *hit);
void cache_release(struct resp_cache *c, struct cache_hit *hit);

/*
 * Starts capturing a response (at its head) to a GET request: false when it must not be
 * stored (see cache_response_cacheable; also not fresh, too large, no memory). req gives
 * the Vary values; pass NULL when the request head is gone: responses with Vary are then
 * refused. resp is the upstream's parsed head, read only during the call. The entry is
 * sized from Content-Length up front.
 */
bool cache_fill_begin(struct resp_cache *c, const struct cache_key *key,
		      const struct http_request *req, const struct http_response *resp,
		      uint32_t route_ttl_s, uint64_t now_ms, struct cache_fill *fill);
/* Body bytes in order; more than Content-Length aborts the fill and returns false. */
bool cache_fill_append(struct cache_fill *fill, const char *data, size_t len);
/* Links the entry (evicting least recently used ones) if the body is complete: 0, else -1. */
int cache_fill_commit(struct resp_cache *c, struct cache_fill *fill);
void cache_fill_abort(struct cache_fill *fill);

/* All in one, for a response already complete in memory. 0 stored, -1 not. */
int cache_store(struct resp_cache *c, const struct cache_key *key, const struct http_request *req,
		const struct http_response *resp, const char *body, size_t body_len,
		uint32_t route_ttl_s, uint64_t now_ms);

#endif
