/*
 * Response-cache filter: answers a hit from the worker's cache; on a miss it captures the
 * response as it streams to the client and stores it when the stream completed whole.
 * The request stays in the stream, so the response's Vary headers are matched against it.
 */
#include <string.h>

#include "cache/cache.h"
#include "config/config.h"
#include "filters/filters.h"

#define CACHE_KEY_MAX 4096

struct cache_state {
	struct cache_key key;
	bool keyed;
	bool from_cache;
	struct cache_hit hit;
	struct cache_fill fill;
};

static enum filter_verdict cache_request(struct stream *st, void *state)
{
	struct cache_state *cs = state;
	const struct route_config *rc = &st->cfg->routes[st->route];
	struct resp_cache *cache = st->env->cache;
	char *keybuf;
	size_t n;

	/* Keyed by the namespaced identity: a JWT sub never shares entries with an API-key
	 * consumer of the same name. */
	if (!cache_request_cacheable(&st->req, rc->auth != NULL && st->identity[0]))
		return FILTER_CONTINUE;
	keybuf = stream_alloc(st, CACHE_KEY_MAX);
	if (!keybuf)
		return FILTER_CONTINUE;
	/* The pool is part of the key: a split route's pools may answer differently. */
	n = cache_key_make(&cs->key, keybuf, CACHE_KEY_MAX, &st->req, st->host_name, st->host_len,
			   st->path, st->path_len, st->route + (st->upstream + 1) * 65536,
			   st->identity, strlen(st->identity));
	if (n > CACHE_KEY_MAX)
		return FILTER_CONTINUE;
	cs->keyed = true;
	if (!cache_lookup(cache, &cs->key, &st->req, st->now_ms, &cs->hit))
		return FILTER_CONTINUE;
	cs->from_cache = true;
	st->ops->reply_cached(st, &cs->hit);
	return FILTER_DONE;
}

static void cache_response(struct stream *st, void *state, const struct http_response *resp)
{
	struct cache_state *cs = state;

	if (!cs->keyed || cs->from_cache || st->resp_local || st->req.method != HTTP_GET)
		return;
	cache_fill_begin(st->env->cache, &cs->key, &st->req, resp,
			 st->cfg->routes[st->route].cache_ttl_s, st->now_ms, &cs->fill);
}

static void cache_response_data(struct stream *st, void *state, const char *p, size_t n)
{
	struct cache_state *cs = state;

	if (cs->fill.entry && !cache_fill_append(&cs->fill, p, n))
		cache_fill_abort(&cs->fill);
}

static void cache_end(struct stream *st, void *state)
{
	struct cache_state *cs = state;

	if (cs->fill.entry) {
		if (st->completed)
			cache_fill_commit(st->env->cache, &cs->fill);
		else
			cache_fill_abort(&cs->fill);
	}
	if (cs->from_cache)
		cache_release(st->env->cache, &cs->hit);
}

const struct filter filter_cache = {
	.name = "cache",
	.state_size = sizeof(struct cache_state),
	.on_request = cache_request,
	.on_response = cache_response,
	.on_response_data = cache_response_data,
	.on_end = cache_end,
};
