/*
 * Per-worker response cache: chained hash table for lookup, doubly-linked LRU list for
 * eviction, one allocation per entry (key, head, body and Vary values together).
 * Entries being sent are pinned; evicting a pinned entry only unlinks it and the last
 * cache_release() frees it, so the byte budget counts linked entries only.
 */
#include "cache/cache.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "upstream/upstream.h"

struct cache_entry {
	struct cache_entry *chain;	 /* hash bucket */
	struct cache_entry *prev, *next; /* LRU: head is most recent */
	uint64_t hash;
	uint64_t stored_ms, expires_ms;
	uint32_t initial_age_s;
	uint32_t pins;
	bool linked;
	size_t size; /* bytes charged to the budget */
	size_t key_len, head_len, body_len, vary_len;
	char data[]; /* key, head, body, vary */
};

struct resp_cache {
	struct cache_entry **buckets;
	size_t nbuckets; /* power of two */
	struct cache_entry *lru_head, *lru_tail;
	size_t budget, max_entry, used, count;
	uint64_t hits, misses, stores, evictions;
};

struct cache_control {
	bool no_store, no_cache, private_, has_max_age, has_s_maxage;
	uint64_t max_age, s_maxage;
};

static bool name_is(struct http_str name, const char *lit)
{
	size_t len = strlen(lit);

	return name.len == len && !strncasecmp(name.p, lit, len);
}

static bool has_header(const struct http_header *h, int n, const char *name)
{
	for (int i = 0; i < n; i++)
		if (name_is(h[i].name, name))
			return true;
	return false;
}

/* Directive values: digits only; anything else counts as 0 (stale), the safe reading. */
static uint64_t delta_seconds(const char *p, size_t len)
{
	uint64_t v = 0;

	if (len >= 2 && p[0] == '"' && p[len - 1] == '"') {
		p++;
		len -= 2;
	}
	if (!len)
		return 0;
	for (size_t i = 0; i < len; i++) {
		if (p[i] < '0' || p[i] > '9')
			return 0;
		v = v > UINT32_MAX ? v : v * 10 + (p[i] - '0');
	}
	return v;
}

static void cc_directive(struct cache_control *cc, const char *p, size_t len)
{
	const char *eq = memchr(p, '=', len);
	struct http_str name = {p, eq ? (size_t)(eq - p) : len};
	const char *val = eq ? eq + 1 : NULL;
	size_t val_len = eq ? len - name.len - 1 : 0;

	while (name.len && (name.p[name.len - 1] == ' ' || name.p[name.len - 1] == '\t'))
		name.len--;
	if (name_is(name, "no-store")) {
		cc->no_store = true;
	} else if (name_is(name, "no-cache")) {
		cc->no_cache = true;
	} else if (name_is(name, "private")) {
		cc->private_ = true;
	} else if (name_is(name, "max-age")) {
		cc->has_max_age = true;
		cc->max_age = val ? delta_seconds(val, val_len) : 0;
	} else if (name_is(name, "s-maxage")) {
		cc->has_s_maxage = true;
		cc->s_maxage = val ? delta_seconds(val, val_len) : 0;
	}
}

/* Splits a Cache-Control value on commas outside quoted strings. */
static void cc_parse_value(struct cache_control *cc, struct http_str v)
{
	size_t start = 0;
	bool quoted = false;

	for (size_t i = 0; i <= v.len; i++) {
		if (i < v.len && v.p[i] == '"')
			quoted = !quoted;
		if (i < v.len && (quoted || v.p[i] != ','))
			continue;
		while (start < i && (v.p[start] == ' ' || v.p[start] == '\t'))
			start++;
		if (start < i)
			cc_directive(cc, v.p + start, i - start);
		start = i + 1;
	}
}

static void cc_parse(struct cache_control *cc, const struct http_header *h, int n)
{
	memset(cc, 0, sizeof(*cc));
	for (int i = 0; i < n; i++)
		if (name_is(h[i].name, "cache-control"))
			cc_parse_value(cc, h[i].value);
}

static bool header_has_token(const struct http_header *h, int n, const char *name,
			     const char *token)
{
	for (int i = 0; i < n; i++)
		if (name_is(h[i].name, name) &&
		    http_list_has_token(h[i].value, token, strlen(token)))
			return true;
	return false;
}

bool cache_request_cacheable(const struct http_request *req, bool keyed_by_consumer)
{
	struct cache_control cc;

	if (req->method != HTTP_GET && req->method != HTTP_HEAD)
		return false;
	if (req->upgrade || req->body == HTTP_BODY_CHUNKED ||
	    (req->body == HTTP_BODY_LENGTH && req->content_length))
		return false;
	cc_parse(&cc, req->headers, req->nheaders);
	if (cc.no_store || cc.no_cache)
		return false;
	if (header_has_token(req->headers, req->nheaders, "pragma", "no-cache"))
		return false;
	return keyed_by_consumer || !has_header(req->headers, req->nheaders, "authorization");
}

/* Calls fn for each field name listed in the response's Vary headers; false stops. */
static bool vary_each(const struct http_response *resp, bool (*fn)(struct http_str name, void *arg),
		      void *arg)
{
	for (int i = 0; i < resp->nheaders; i++) {
		struct http_str v = resp->headers[i].value;
		size_t start = 0;

		if (!name_is(resp->headers[i].name, "vary"))
			continue;
		for (size_t j = 0; j <= v.len; j++) {
			struct http_str name;

			if (j < v.len && v.p[j] != ',')
				continue;
			name.p = v.p + start;
			name.len = j - start;
			while (name.len && (*name.p == ' ' || *name.p == '\t')) {
				name.p++;
				name.len--;
			}
			while (name.len &&
			       (name.p[name.len - 1] == ' ' || name.p[name.len - 1] == '\t'))
				name.len--;
			start = j + 1;
			if (name.len && !fn(name, arg))
				return false;
		}
	}
	return true;
}

static bool vary_count(struct http_str name, void *arg)
{
	int *n = arg;

	if (name.len == 1 && name.p[0] == '*')
		return false;
	return ++*n <= CACHE_MAX_VARY;
}

bool cache_response_cacheable(const struct http_response *resp, size_t body_len,
			      size_t max_entry_bytes)
{
	struct cache_control cc;
	int nvary = 0;

	switch (resp->status) {
	case 200:
	case 203:
	case 301:
	case 404:
	case 410:
		break;
	default:
		return false;
	}
	if (resp->body != HTTP_BODY_LENGTH || resp->content_length != body_len ||
	    body_len > max_entry_bytes)
		return false;
	cc_parse(&cc, resp->headers, resp->nheaders);
	if (cc.no_store || cc.private_ || cc.no_cache)
		return false;
	if (has_header(resp->headers, resp->nheaders, "set-cookie"))
		return false;
	return vary_each(resp, vary_count, &nvary);
}

static char *put_field(char *p, const void *data, size_t len)
{
	uint32_t n = len;

	memcpy(p, &n, sizeof(n));
	if (len)
		memcpy(p + sizeof(n), data, len);
	return p + sizeof(n) + len;
}

size_t cache_key_make(struct cache_key *key, char *buf, size_t cap, const struct http_request *req,
		      const char *host, size_t host_len, const char *path, size_t path_len,
		      int route, const char *consumer, size_t consumer_len)
{
	/* HEAD shares GET's entry: only GET responses are stored. */
	static const char method[] = "GET";
	size_t need = 6 * sizeof(uint32_t) + strlen(method) + host_len + path_len + req->query.len +
		      sizeof(route) + (consumer ? consumer_len : 0);
	char *p = buf;

	if (need > cap)
		return need;
	p = put_field(p, method, strlen(method));
	p = put_field(p, host, host_len);
	p = put_field(p, path, path_len);
	p = put_field(p, req->query.p, req->query.len);
	p = put_field(p, &route, sizeof(route));
	p = put_field(p, consumer, consumer ? consumer_len : 0);
	key->bytes = buf;
	key->len = p - buf;
	key->hash = hash_key64(buf, key->len);
	return need;
}

struct resp_cache *resp_cache_new(size_t budget_bytes, size_t max_entry_bytes)
{
	struct resp_cache *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->nbuckets = 64;
	c->buckets = calloc(c->nbuckets, sizeof(*c->buckets));
	if (!c->buckets) {
		free(c);
		return NULL;
	}
	c->budget = budget_bytes;
	c->max_entry = max_entry_bytes;
	return c;
}

static void lru_remove(struct resp_cache *c, struct cache_entry *e)
{
	if (e->prev)
		e->prev->next = e->next;
	else
		c->lru_head = e->next;
	if (e->next)
		e->next->prev = e->prev;
	else
		c->lru_tail = e->prev;
	e->prev = e->next = NULL;
}

static void lru_push_front(struct resp_cache *c, struct cache_entry *e)
{
	e->prev = NULL;
	e->next = c->lru_head;
	if (c->lru_head)
		c->lru_head->prev = e;
	c->lru_head = e;
	if (!c->lru_tail)
		c->lru_tail = e;
}

static void entry_unlink(struct resp_cache *c, struct cache_entry *e)
{
	struct cache_entry **pp = &c->buckets[e->hash & (c->nbuckets - 1)];

	while (*pp != e)
		pp = &(*pp)->chain;
	*pp = e->chain;
	lru_remove(c, e);
	c->used -= e->size;
	c->count--;
	e->linked = false;
	if (!e->pins)
		free(e);
}

void resp_cache_clear(struct resp_cache *c)
{
	while (c->lru_head)
		entry_unlink(c, c->lru_head);
}

void resp_cache_free(struct resp_cache *c)
{
	if (!c)
		return;
	resp_cache_clear(c);
	free(c->buckets);
	free(c);
}

void resp_cache_stats(const struct resp_cache *c, struct cache_stats *out)
{
	out->hits = c->hits;
	out->misses = c->misses;
	out->stores = c->stores;
	out->evictions = c->evictions;
	out->entries = c->count;
	out->bytes = c->used;
}

static struct cache_entry *entry_find(const struct resp_cache *c, const struct cache_key *key)
{
	struct cache_entry *e = c->buckets[key->hash & (c->nbuckets - 1)];

	for (; e; e = e->chain)
		if (e->hash == key->hash && e->key_len == key->len &&
		    !memcmp(e->data, key->bytes, key->len))
			return e;
	return NULL;
}

static const struct http_header *request_header(const struct http_request *req, const char *name,
						size_t len)
{
	for (int i = 0; i < req->nheaders; i++)
		if (req->headers[i].name.len == len &&
		    !strncasecmp(req->headers[i].name.p, name, len))
			return &req->headers[i];
	return NULL;
}

/*
 * Vary blob: per varied header, u32 name length, name, u32 value length or UINT32_MAX
 * when the request lacked the header, value.
 */
static bool vary_matches(const struct cache_entry *e, const struct http_request *req)
{
	const char *p = e->data + e->key_len + e->head_len + e->body_len, *end = p + e->vary_len;

	while (p < end) {
		const struct http_header *h;
		uint32_t name_len, value_len;
		const char *name;

		memcpy(&name_len, p, 4);
		name = p + 4;
		p = name + name_len;
		memcpy(&value_len, p, 4);
		p += 4;
		h = request_header(req, name, name_len);
		if (value_len == UINT32_MAX) {
			if (h)
				return false;
			continue;
		}
		if (!h || h->value.len != value_len || memcmp(h->value.p, p, value_len))
			return false;
		p += value_len;
	}
	return true;
}

bool cache_lookup(struct resp_cache *c, const struct cache_key *key, const struct http_request *req,
		  uint64_t now_ms, struct cache_hit *hit)
{
	struct cache_entry *e = entry_find(c, key);

	memset(hit, 0, sizeof(*hit));
	if (e && now_ms >= e->expires_ms) {
		entry_unlink(c, e);
		e = NULL;
	}
	if (!e || !vary_matches(e, req)) {
		c->misses++;
		return false;
	}
	lru_remove(c, e);
	lru_push_front(c, e);
	e->pins++;
	c->hits++;
	hit->entry = e;
	hit->head = e->data + e->key_len;
	hit->head_len = e->head_len;
	hit->body = hit->head + e->head_len;
	hit->body_len = e->body_len;
	hit->age_s =
	    e->initial_age_s + (now_ms > e->stored_ms ? (now_ms - e->stored_ms) / 1000 : 0);
	return true;
}

void cache_release(struct resp_cache *c, struct cache_hit *hit)
{
	struct cache_entry *e = hit->entry;

	if (!e)
		return;
	hit->entry = NULL;
	if (--e->pins == 0 && !e->linked)
		free(e);
}

static bool header_stored(const struct http_response *resp, const struct http_header *h)
{
	return !http_is_hop_by_hop(h->name, resp->connection) && !name_is(h->name, "age");
}

static size_t head_size(const struct http_response *resp, struct http_str reason)
{
	size_t n = snprintf(NULL, 0, "HTTP/1.1 %d ", resp->status) + reason.len + 2;

	for (int i = 0; i < resp->nheaders; i++)
		if (header_stored(resp, &resp->headers[i]))
			n += resp->headers[i].name.len + 2 + resp->headers[i].value.len + 2;
	return n;
}

static char *head_write(char *p, const struct http_response *resp, struct http_str reason)
{
	p += sprintf(p, "HTTP/1.1 %d ", resp->status);
	memcpy(p, reason.p, reason.len);
	p += reason.len;
	memcpy(p, "\r\n", 2);
	p += 2;
	for (int i = 0; i < resp->nheaders; i++) {
		const struct http_header *h = &resp->headers[i];

		if (!header_stored(resp, h))
			continue;
		memcpy(p, h->name.p, h->name.len);
		p += h->name.len;
		memcpy(p, ": ", 2);
		memcpy(p + 2, h->value.p, h->value.len);
		p += 2 + h->value.len;
		memcpy(p, "\r\n", 2);
		p += 2;
	}
	return p;
}

struct vary_ctx {
	const struct http_request *req;
	char *out; /* NULL: only measure */
	size_t len;
};

static bool vary_record(struct http_str name, void *arg)
{
	struct vary_ctx *v = arg;
	const struct http_header *h = v->req ? request_header(v->req, name.p, name.len) : NULL;
	uint32_t name_len = name.len, value_len = h ? h->value.len : UINT32_MAX;

	if (v->out) {
		char *p = v->out + v->len;

		memcpy(p, &name_len, 4);
		memcpy(p + 4, name.p, name.len);
		memcpy(p + 4 + name.len, &value_len, 4);
		if (h)
			memcpy(p + 8 + name.len, h->value.p, h->value.len);
	}
	v->len += 8 + name.len + (h ? h->value.len : 0);
	return true;
}

/* Seconds of freshness left, 0 when the response must not be stored. */
static uint64_t fresh_for(const struct http_response *resp, uint32_t route_ttl_s,
			  uint32_t *initial_age)
{
	const struct http_header *age = http_find_header(resp->headers, resp->nheaders, "age");
	uint64_t ttl = route_ttl_s, lifetime;
	struct cache_control cc;

	*initial_age = age ? (uint32_t)delta_seconds(age->value.p, age->value.len) : 0;
	cc_parse(&cc, resp->headers, resp->nheaders);
	if (!cc.has_s_maxage && !cc.has_max_age)
		return ttl;
	lifetime = cc.has_s_maxage ? cc.s_maxage : cc.max_age;
	lifetime = lifetime > *initial_age ? lifetime - *initial_age : 0;
	return lifetime < ttl ? lifetime : ttl;
}

static void cache_grow(struct resp_cache *c)
{
	size_t n = c->nbuckets * 2;
	struct cache_entry **b = calloc(n, sizeof(*b));

	if (!b)
		return; /* longer chains, still correct */
	for (size_t i = 0; i < c->nbuckets; i++) {
		struct cache_entry *e = c->buckets[i], *next;

		for (; e; e = next) {
			next = e->chain;
			e->chain = b[e->hash & (n - 1)];
			b[e->hash & (n - 1)] = e;
		}
	}
	free(c->buckets);
	c->buckets = b;
	c->nbuckets = n;
}

static void entry_insert(struct resp_cache *c, struct cache_entry *e)
{
	struct cache_entry **bucket;

	while (c->lru_tail && c->used + e->size > c->budget) {
		entry_unlink(c, c->lru_tail);
		c->evictions++;
	}
	if (c->count >= c->nbuckets)
		cache_grow(c);
	bucket = &c->buckets[e->hash & (c->nbuckets - 1)];
	e->chain = *bucket;
	*bucket = e;
	lru_push_front(c, e);
	e->linked = true;
	c->used += e->size;
	c->count++;
	c->stores++;
}

bool cache_fill_begin(struct resp_cache *c, const struct cache_key *key,
		      const struct http_request *req, const struct http_response *resp,
		      uint32_t route_ttl_s, uint64_t now_ms, struct cache_fill *fill)
{
	struct http_str reason = resp->reason;
	struct vary_ctx vary = {.req = req};
	struct cache_entry *e;
	uint32_t initial_age;
	size_t head_len, size, body_len = resp->content_length;
	uint64_t ttl;
	char *p;

	memset(fill, 0, sizeof(*fill));
	if ((req && req->method != HTTP_GET) ||
	    !cache_response_cacheable(resp, resp->content_length, c->max_entry))
		return false;
	ttl = fresh_for(resp, route_ttl_s, &initial_age);
	if (!ttl)
		return false;
	if (!reason.len) {
		reason.p = http_status_reason(resp->status);
		reason.len = strlen(reason.p);
	}
	head_len = head_size(resp, reason);
	vary_each(resp, vary_record, &vary);
	/* Without the request its Vary values are unknown: such responses are not stored. */
	if (!req && vary.len)
		return false;
	size = sizeof(*e) + key->len + head_len + body_len + vary.len;
	if (size > c->budget || body_len + head_len > c->max_entry)
		return false;
	e = malloc(size);
	if (!e)
		return false;
	memset(e, 0, sizeof(*e));
	e->hash = key->hash;
	e->stored_ms = now_ms;
	e->expires_ms = now_ms + ttl * 1000;
	e->initial_age_s = initial_age;
	e->size = size;
	e->key_len = key->len;
	e->head_len = head_len;
	e->body_len = body_len;
	e->vary_len = vary.len;
	memcpy(e->data, key->bytes, key->len);
	p = head_write(e->data + key->len, resp, reason);
	vary.out = p + body_len;
	vary.len = 0;
	vary_each(resp, vary_record, &vary);
	fill->entry = e;
	return true;
}

bool cache_fill_append(struct cache_fill *fill, const char *data, size_t len)
{
	struct cache_entry *e = fill->entry;

	if (!e)
		return false;
	if (len > e->body_len - fill->got) {
		cache_fill_abort(fill);
		return false;
	}
	memcpy(e->data + e->key_len + e->head_len + fill->got, data, len);
	fill->got += len;
	return true;
}

void cache_fill_abort(struct cache_fill *fill)
{
	free(fill->entry);
	fill->entry = NULL;
	fill->got = 0;
}

int cache_fill_commit(struct resp_cache *c, struct cache_fill *fill)
{
	struct cache_entry *e = fill->entry, *old;
	struct cache_key key;

	if (!e)
		return -1;
	if (fill->got != e->body_len) {
		cache_fill_abort(fill);
		return -1;
	}
	fill->entry = NULL;
	fill->got = 0;
	key.hash = e->hash;
	key.bytes = e->data;
	key.len = e->key_len;
	old = entry_find(c, &key);
	if (old)
		entry_unlink(c, old);
	entry_insert(c, e);
	return 0;
}

int cache_store(struct resp_cache *c, const struct cache_key *key, const struct http_request *req,
		const struct http_response *resp, const char *body, size_t body_len,
		uint32_t route_ttl_s, uint64_t now_ms)
{
	struct cache_fill fill;

	if (resp->content_length != body_len ||
	    !cache_fill_begin(c, key, req, resp, route_ttl_s, now_ms, &fill))
		return -1;
	if (!cache_fill_append(&fill, body, body_len))
		return -1;
	return cache_fill_commit(c, &fill);
}
