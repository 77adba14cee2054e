/* Response cache: hits, freshness, LRU eviction, byte budget, Vary, cacheability rules. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/cache.h"
#include "unit/check.h"

static const struct http_limits limits = {.max_header_bytes = 16384};

/* Parsed messages keep pointers into their text: keep both together. */
struct req {
	char text[1024];
	struct http_request r;
	bool ok;
};

struct resp {
	char text[2048];
	struct http_response r;
	const char *body;
	size_t body_len;
	bool ok;
};

static void req_parse(struct req *q, const char *text)
{
	snprintf(q->text, sizeof(q->text), "%s", text);
	memset(&q->r, 0, sizeof(q->r));
	q->ok = http_parse_request(q->text, strlen(q->text), &limits, &q->r) > 0;
	if (!q->ok)
		fprintf(stderr, "request did not parse: %s\n", text);
}

static void resp_parse(struct resp *s, const char *text)
{
	int n;

	snprintf(s->text, sizeof(s->text), "%s", text);
	memset(&s->r, 0, sizeof(s->r));
	n = http_parse_response(s->text, strlen(s->text), &limits, HTTP_GET, &s->r);
	s->ok = n > 0;
	s->body = s->ok ? s->text + n : NULL;
	s->body_len = s->ok ? strlen(s->text) - n : 0;
	if (!s->ok)
		fprintf(stderr, "response did not parse: %s\n", text);
}

#define GET_A "GET /a?x=1 HTTP/1.1\r\nHost: example.com\r\n\r\n"
#define OK_HELLO "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello"

struct keybuf {
	char buf[512];
	struct cache_key key;
};

static void key_for(struct keybuf *k, const struct req *q, int route, const char *consumer)
{
	cache_key_make(&k->key, k->buf, sizeof(k->buf), &q->r, "example.com", 11, q->r.path.p,
		       q->r.path.len, route, consumer, consumer ? strlen(consumer) : 0);
}

/* Stores resp_text for req_text under route 1; 0 on success. */
static int store(struct resp_cache *c, const char *req_text, const char *resp_text, uint32_t ttl,
		 uint64_t now)
{
	struct req q;
	struct resp s;
	struct keybuf k;

	req_parse(&q, req_text);
	resp_parse(&s, resp_text);
	if (!q.ok || !s.ok)
		return -2;
	key_for(&k, &q, 1, NULL);
	return cache_store(c, &k.key, &q.r, &s.r, s.body, s.body_len, ttl, now);
}

/* Looks req_text up; returns hit (released) and fills age/body copies. */
static bool lookup(struct resp_cache *c, const char *req_text, uint64_t now, uint32_t *age,
		   char *head, size_t head_cap)
{
	struct cache_hit hit;
	struct req q;
	struct keybuf k;
	bool found;

	req_parse(&q, req_text);
	if (!q.ok)
		return false;
	key_for(&k, &q, 1, NULL);
	found = cache_lookup(c, &k.key, &q.r, now, &hit);
	if (found) {
		if (age)
			*age = hit.age_s;
		if (head)
			snprintf(head, head_cap, "%.*s|%.*s", (int)hit.head_len, hit.head,
				 (int)hit.body_len, hit.body);
		cache_release(c, &hit);
	}
	return found;
}

static void test_hit_and_age(void)
{
	struct resp_cache *c = resp_cache_new(1 << 20, 1 << 16);
	char got[512];
	uint32_t age = 99;

	CHECK_EQ(store(c, GET_A,
		       "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive\r\n"
		       "Keep-Alive: timeout=5\r\nX-Up: 1\r\n\r\nhello",
		       60, 1000),
		 0);
	CHECK(lookup(c, GET_A, 31000, &age, got, sizeof(got)));
	CHECK_EQ(age, 30);
	/* Hop-by-hop headers are not stored; end-to-end ones are, in order. */
	CHECK_STR(got, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Up: 1\r\n|hello");
	/* HEAD shares the GET entry. */
	CHECK(lookup(c, "HEAD /a?x=1 HTTP/1.1\r\nHost: example.com\r\n\r\n", 31000, NULL, NULL, 0));
	/* Different query, path: misses. */
	CHECK(!lookup(c, "GET /a?x=2 HTTP/1.1\r\nHost: example.com\r\n\r\n", 31000, NULL, NULL, 0));
	CHECK(!lookup(c, "GET /a HTTP/1.1\r\nHost: example.com\r\n\r\n", 31000, NULL, NULL, 0));
	/* Upstream Age adds to ours. */
	CHECK_EQ(store(c, "GET /b HTTP/1.1\r\nHost: h\r\n\r\n",
		       "HTTP/1.1 200 OK\r\nAge: 5\r\nContent-Length: 0\r\n\r\n", 60, 0),
		 0);
	CHECK(lookup(c, "GET /b HTTP/1.1\r\nHost: h\r\n\r\n", 2500, &age, got, sizeof(got)));
	CHECK_EQ(age, 7);
	CHECK(strstr(got, "Age") == NULL);
	/* HEAD responses are never stored. */
	CHECK_EQ(store(c, "HEAD /c HTTP/1.1\r\nHost: h\r\n\r\n", OK_HELLO, 60, 0), -1);
	resp_cache_free(c);
}

static void test_key_parts(void)
{
	struct req q1, q2;
	struct keybuf a, b;
	size_t need;

	req_parse(&q1, GET_A);
	req_parse(&q2, "HEAD /a?x=1 HTTP/1.1\r\nHost: example.com\r\n\r\n");
	key_for(&a, &q1, 1, NULL);
	key_for(&b, &q2, 1, NULL);
	CHECK(a.key.len == b.key.len && !memcmp(a.key.bytes, b.key.bytes, a.key.len));
	CHECK(a.key.hash == b.key.hash);
	key_for(&b, &q1, 2, NULL);
	CHECK(a.key.hash != b.key.hash);
	key_for(&b, &q1, 1, "alice");
	CHECK(a.key.hash != b.key.hash);
	key_for(&a, &q1, 1, "bob");
	CHECK(a.key.hash != b.key.hash);
	/* "ab"+"c" and "a"+"bc" must not collide: fields are length-prefixed. */
	cache_key_make(&a.key, a.buf, sizeof(a.buf), &q1.r, "ab", 2, "c", 1, 1, NULL, 0);
	cache_key_make(&b.key, b.buf, sizeof(b.buf), &q1.r, "a", 1, "bc", 2, 1, NULL, 0);
	CHECK(a.key.len != b.key.len || memcmp(a.key.bytes, b.key.bytes, a.key.len));
	memset(&b.key, 0, sizeof(b.key));
	need = cache_key_make(&b.key, b.buf, 8, &q1.r, "example.com", 11, "/a", 2, 1, NULL, 0);
	CHECK(need > 8);
	CHECK(b.key.bytes == NULL);
}

static void test_expiry(void)
{
	struct resp_cache *c = resp_cache_new(1 << 20, 1 << 16);

	CHECK_EQ(store(c, GET_A, OK_HELLO, 60, 1000), 0);
	CHECK(lookup(c, GET_A, 60999, NULL, NULL, 0));
	CHECK(!lookup(c, GET_A, 61000, NULL, NULL, 0));
	/* Expired entries are dropped, not kept around. */
	CHECK(!lookup(c, GET_A, 1000, NULL, NULL, 0));

	/* max-age shorter than the route ttl. */
	CHECK_EQ(store(c, GET_A,
		       "HTTP/1.1 200 OK\r\nCache-Control: public, max-age=10\r\n"
		       "Content-Length: 0\r\n\r\n",
		       60, 0),
		 0);
	CHECK(lookup(c, GET_A, 9999, NULL, NULL, 0));
	CHECK(!lookup(c, GET_A, 10000, NULL, NULL, 0));
	/* s-maxage wins over max-age for a shared cache. */
	CHECK_EQ(store(c, GET_A,
		       "HTTP/1.1 200 OK\r\nCache-Control: max-age=100\r\nCache-Control: "
		       "s-maxage=5\r\nContent-Length: 0\r\n\r\n",
		       60, 0),
		 0);
	CHECK(!lookup(c, GET_A, 5000, NULL, NULL, 0));
	/* Route ttl shorter than max-age. */
	CHECK_EQ(store(c, GET_A,
		       "HTTP/1.1 200 OK\r\nCache-Control: max-age=100\r\nContent-Length: 0\r\n\r\n",
		       3, 0),
		 0);
	CHECK(lookup(c, GET_A, 2999, NULL, NULL, 0));
	CHECK(!lookup(c, GET_A, 3000, NULL, NULL, 0));
	/* Age already consumed part of max-age. */
	CHECK_EQ(store(c, GET_A,
		       "HTTP/1.1 200 OK\r\nCache-Control: max-age=10\r\nAge: 8\r\n"
		       "Content-Length: 0\r\n\r\n",
		       60, 0),
		 0);
	CHECK(lookup(c, GET_A, 1999, NULL, NULL, 0));
	CHECK(!lookup(c, GET_A, 2000, NULL, NULL, 0));
	/* Nothing fresh: not stored. */
	CHECK_EQ(store(c, GET_A,
		       "HTTP/1.1 200 OK\r\nCache-Control: max-age=0\r\nContent-Length: 0\r\n\r\n",
		       60, 0),
		 -1);
	CHECK_EQ(store(c, GET_A,
		       "HTTP/1.1 200 OK\r\nCache-Control: max-age=abc\r\nContent-Length: 0\r\n\r\n",
		       60, 0),
		 -1);
	CHECK_EQ(store(c, GET_A,
		       "HTTP/1.1 200 OK\r\nCache-Control: max-age=10\r\nAge: 10\r\n"
		       "Content-Length: 0\r\n\r\n",
		       60, 0),
		 -1);
	CHECK_EQ(store(c, GET_A, OK_HELLO, 0, 0), -1);
	resp_cache_free(c);
}

#define REQ_PATH(p) "GET " p " HTTP/1.1\r\nHost: example.com\r\n\r\n"

static void test_eviction_order(void)
{
	struct resp_cache *c;
	struct cache_stats st;
	size_t one;

	/* Measure one entry's size, then allow exactly three. */
	c = resp_cache_new(1 << 20, 1 << 16);
	CHECK_EQ(store(c, REQ_PATH("/1"), OK_HELLO, 60, 0), 0);
	resp_cache_stats(c, &st);
	one = st.bytes;
	resp_cache_free(c);
	c = resp_cache_new(one * 3 + one / 2, 1 << 16);
	CHECK_EQ(store(c, REQ_PATH("/1"), OK_HELLO, 60, 0), 0);
	CHECK_EQ(store(c, REQ_PATH("/2"), OK_HELLO, 60, 0), 0);
	CHECK_EQ(store(c, REQ_PATH("/3"), OK_HELLO, 60, 0), 0);
	CHECK(lookup(c, REQ_PATH("/1"), 10, NULL, NULL, 0)); /* /2 is now least recent */
	CHECK_EQ(store(c, REQ_PATH("/4"), OK_HELLO, 60, 0), 0);
	CHECK(!lookup(c, REQ_PATH("/2"), 10, NULL, NULL, 0));
	CHECK(lookup(c, REQ_PATH("/1"), 10, NULL, NULL, 0));
	CHECK(lookup(c, REQ_PATH("/3"), 10, NULL, NULL, 0));
	CHECK(lookup(c, REQ_PATH("/4"), 10, NULL, NULL, 0));
	/* Order now /1 /3 /4 (oldest first): the next store evicts /1. */
	CHECK_EQ(store(c, REQ_PATH("/5"), OK_HELLO, 60, 0), 0);
	CHECK(!lookup(c, REQ_PATH("/1"), 10, NULL, NULL, 0));
	resp_cache_stats(c, &st);
	CHECK_EQ(st.entries, 3);
	CHECK_EQ(st.evictions, 2);
	CHECK(st.bytes <= one * 3 + one / 2);
	/* Replacing a key does not add an entry. */
	CHECK_EQ(store(c, REQ_PATH("/5"), OK_HELLO, 60, 0), 0);
	resp_cache_stats(c, &st);
	CHECK_EQ(st.entries, 3);
	resp_cache_clear(c);
	resp_cache_stats(c, &st);
	CHECK_EQ(st.entries, 0);
	CHECK_EQ(st.bytes, 0);
	resp_cache_free(c);
}

static void test_byte_budget(void)
{
	static char big_resp[1500];
	struct resp_cache *c = resp_cache_new(4096, 1024);
	struct cache_stats st;
	char body[1001];
	char path[64];

	memset(body, 'x', 1000);
	body[1000] = '\0';
	snprintf(big_resp, sizeof(big_resp), "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n%s",
		 body);
	/* Over max_entry_bytes (1000 body + head > 1024). */
	CHECK_EQ(store(c, REQ_PATH("/big"), big_resp, 60, 0), -1);
	resp_cache_free(c);
	c = resp_cache_new(4096, 1 << 16);
	for (int i = 0; i < 50; i++) {
		snprintf(path, sizeof(path), REQ_PATH("/n%d"), i);
		CHECK_EQ(store(c, path, big_resp, 60, 0), 0);
		resp_cache_stats(c, &st);
		CHECK(st.bytes <= 4096);
	}
	CHECK(st.entries >= 2 && st.entries <= 4);
	CHECK(lookup(c, REQ_PATH("/n49"), 1, NULL, NULL, 0));
	CHECK(!lookup(c, REQ_PATH("/n0"), 1, NULL, NULL, 0));
	resp_cache_free(c);
	/* An entry larger than the whole budget is refused. */
	c = resp_cache_new(512, 1 << 16);
	CHECK_EQ(store(c, REQ_PATH("/big"), big_resp, 60, 0), -1);
	resp_cache_free(c);
}

static void test_pinned_entry_survives_eviction(void)
{
	struct resp_cache *c = resp_cache_new(2048, 1 << 16);
	struct cache_hit hit;
	struct keybuf k;
	struct req q;
	char path[64];

	CHECK_EQ(store(c, REQ_PATH("/pinned"), OK_HELLO, 60, 0), 0);
	req_parse(&q, REQ_PATH("/pinned"));
	key_for(&k, &q, 1, NULL);
	CHECK(cache_lookup(c, &k.key, &q.r, 1, &hit));
	for (int i = 0; i < 40; i++) {
		snprintf(path, sizeof(path), REQ_PATH("/other%d"), i);
		store(c, path, OK_HELLO, 60, 0);
	}
	CHECK(!lookup(c, REQ_PATH("/pinned"), 1, NULL, NULL, 0));
	/* Still readable until released (ASan checks the release frees it). */
	CHECK(hit.body_len == 5 && !memcmp(hit.body, "hello", 5));
	cache_release(c, &hit);
	CHECK(hit.entry == NULL);
	resp_cache_free(c);
}

static void test_vary(void)
{
	struct resp_cache *c = resp_cache_new(1 << 20, 1 << 16);
	static const char resp[] = "HTTP/1.1 200 OK\r\nVary: Accept-Encoding, X-Tenant\r\n"
				   "Content-Length: 5\r\n\r\nhello";
	static const char gzip_a[] = "GET /v HTTP/1.1\r\nHost: h\r\nAccept-Encoding: gzip\r\n"
				     "X-Tenant: a\r\n\r\n";

	CHECK_EQ(store(c, gzip_a, resp, 60, 0), 0);
	CHECK(lookup(c, gzip_a, 1, NULL, NULL, 0));
	CHECK(lookup(c,
		     "GET /v HTTP/1.1\r\nHost: h\r\nx-tenant: a\r\naccept-encoding: gzip\r\n\r\n",
		     1, NULL, NULL, 0));
	CHECK(!lookup(c, "GET /v HTTP/1.1\r\nHost: h\r\nAccept-Encoding: br\r\nX-Tenant: a\r\n\r\n",
		      1, NULL, NULL, 0));
	CHECK(!lookup(c, "GET /v HTTP/1.1\r\nHost: h\r\nAccept-Encoding: gzip\r\n\r\n", 1, NULL,
		      NULL, 0));
	/* Absent header recorded as absent. */
	CHECK_EQ(store(c, "GET /w HTTP/1.1\r\nHost: h\r\n\r\n",
		       "HTTP/1.1 200 OK\r\nVary: Accept-Language\r\nContent-Length: 0\r\n\r\n", 60,
		       0),
		 0);
	CHECK(lookup(c, "GET /w HTTP/1.1\r\nHost: h\r\n\r\n", 1, NULL, NULL, 0));
	CHECK(!lookup(c, "GET /w HTTP/1.1\r\nHost: h\r\nAccept-Language: de\r\n\r\n", 1, NULL, NULL,
		      0));
	resp_cache_free(c);
}

static void test_streamed_fill(void)
{
	struct resp_cache *c = resp_cache_new(1 << 20, 1 << 16);
	struct cache_fill fill;
	struct keybuf k;
	struct resp s, vary;
	struct req q;
	char got[256];

	req_parse(&q, GET_A);
	resp_parse(&s, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n");
	resp_parse(&vary, "HTTP/1.1 200 OK\r\nVary: Accept\r\nContent-Length: 10\r\n\r\n");
	key_for(&k, &q, 1, NULL);
	/* Body in pieces; the request head is gone (NULL) at response time. */
	CHECK(cache_fill_begin(c, &k.key, NULL, &s.r, 60, 0, &fill));
	CHECK(cache_fill_append(&fill, "01234", 5));
	CHECK(!lookup(c, GET_A, 1, NULL, NULL, 0)); /* not visible before commit */
	CHECK(cache_fill_append(&fill, "56789", 5));
	CHECK_EQ(cache_fill_commit(c, &fill), 0);
	CHECK(fill.entry == NULL);
	CHECK(lookup(c, GET_A, 1, NULL, got, sizeof(got)));
	CHECK_STR(got, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n|0123456789");
	/* Short body: not stored. */
	resp_cache_clear(c);
	CHECK(cache_fill_begin(c, &k.key, &q.r, &s.r, 60, 0, &fill));
	CHECK(cache_fill_append(&fill, "0123", 4));
	CHECK_EQ(cache_fill_commit(c, &fill), -1);
	CHECK(!lookup(c, GET_A, 1, NULL, NULL, 0));
	/* Too long: aborted at once. */
	CHECK(cache_fill_begin(c, &k.key, &q.r, &s.r, 60, 0, &fill));
	CHECK(!cache_fill_append(&fill, "0123456789x", 11));
	CHECK(fill.entry == NULL);
	CHECK_EQ(cache_fill_commit(c, &fill), -1);
	/* Explicit abort. */
	CHECK(cache_fill_begin(c, &k.key, &q.r, &s.r, 60, 0, &fill));
	cache_fill_abort(&fill);
	CHECK(!lookup(c, GET_A, 1, NULL, NULL, 0));
	/* Vary needs the request's values. */
	CHECK(!cache_fill_begin(c, &k.key, NULL, &vary.r, 60, 0, &fill));
	CHECK(cache_fill_begin(c, &k.key, &q.r, &vary.r, 60, 0, &fill));
	cache_fill_abort(&fill);
	resp_cache_free(c);
}

static bool req_ok(const char *text, bool by_consumer)
{
	struct req q;

	req_parse(&q, text);
	return q.ok && cache_request_cacheable(&q.r, by_consumer);
}

static void test_request_cacheable(void)
{
	CHECK(req_ok(GET_A, false));
	CHECK(req_ok("HEAD / HTTP/1.1\r\nHost: h\r\n\r\n", false));
	CHECK(req_ok("GET / HTTP/1.1\r\nHost: h\r\nCache-Control: max-age=60\r\n\r\n", false));
	CHECK(req_ok("GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n", false));
	CHECK(!req_ok("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n", false));
	CHECK(!req_ok("PUT / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n", false));
	CHECK(!req_ok("DELETE / HTTP/1.1\r\nHost: h\r\n\r\n", false));
	CHECK(!req_ok("GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\n", false));
	CHECK(!req_ok("GET / HTTP/1.1\r\nHost: h\r\nCache-Control: no-store\r\n\r\n", false));
	CHECK(!req_ok("GET / HTTP/1.1\r\nHost: h\r\nCache-Control: max-age=5, No-Cache\r\n\r\n",
		      false));
	CHECK(!req_ok("GET / HTTP/1.1\r\nHost: h\r\nPragma: no-cache\r\n\r\n", false));
	CHECK(!req_ok("GET / HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer x\r\n\r\n", false));
	CHECK(req_ok("GET / HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer x\r\n\r\n", true));
	CHECK(!req_ok(
	    "GET / HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
	    false));
}

static bool resp_ok(const char *text, size_t max_entry)
{
	struct resp s;

	resp_parse(&s, text);
	return s.ok && cache_response_cacheable(&s.r, s.body_len, max_entry);
}

static void test_response_cacheable(void)
{
	static const int ok_codes[] = {200, 203, 301, 404, 410};
	static const int bad_codes[] = {201, 204, 206, 302, 304, 400, 500, 503};
	char text[256];

	for (size_t i = 0; i < sizeof(ok_codes) / sizeof(ok_codes[0]); i++) {
		snprintf(text, sizeof(text), "HTTP/1.1 %d X\r\nContent-Length: 2\r\n\r\nok",
			 ok_codes[i]);
		CHECK(resp_ok(text, 100));
	}
	for (size_t i = 0; i < sizeof(bad_codes) / sizeof(bad_codes[0]); i++) {
		snprintf(text, sizeof(text), "HTTP/1.1 %d X\r\nContent-Length: 0\r\n\r\n",
			 bad_codes[i]);
		CHECK(!resp_ok(text, 100));
	}
	CHECK(!resp_ok("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", 4));
	CHECK(!resp_ok("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", 100));
	CHECK(!resp_ok("HTTP/1.1 200 OK\r\n\r\n", 100)); /* until close: unknown length */
	CHECK(!resp_ok("HTTP/1.1 200 OK\r\nCache-Control: no-store\r\nContent-Length: 0\r\n\r\n",
		       100));
	CHECK(!resp_ok("HTTP/1.1 200 OK\r\nCache-Control: private\r\nContent-Length: 0\r\n\r\n",
		       100));
	CHECK(!resp_ok("HTTP/1.1 200 OK\r\nCache-Control: private=\"x, y\"\r\n"
		       "Content-Length: 0\r\n\r\n",
		       100));
	CHECK(!resp_ok("HTTP/1.1 200 OK\r\nCache-Control: public, no-cache\r\n"
		       "Content-Length: 0\r\n\r\n",
		       100));
	/* A quoted comma does not split directives. */
	CHECK(resp_ok("HTTP/1.1 200 OK\r\nCache-Control: community=\"a,no-store\"\r\n"
		      "Content-Length: 0\r\n\r\n",
		      100));
	CHECK(!resp_ok("HTTP/1.1 200 OK\r\nSet-Cookie: a=b\r\nContent-Length: 0\r\n\r\n", 100));
	CHECK(!resp_ok("HTTP/1.1 200 OK\r\nVary: *\r\nContent-Length: 0\r\n\r\n", 100));
	CHECK(!resp_ok("HTTP/1.1 200 OK\r\nVary: Accept, *\r\nContent-Length: 0\r\n\r\n", 100));
	CHECK(!resp_ok("HTTP/1.1 200 OK\r\nVary: a,b,c,d,e,f,g,h,i\r\nContent-Length: 0\r\n\r\n",
		       100));
	CHECK(
	    resp_ok("HTTP/1.1 200 OK\r\nVary: a,b,c,d,e,f,g,h\r\nContent-Length: 0\r\n\r\n", 100));
}

int main(void)
{
	RUN(test_hit_and_age);
	RUN(test_key_parts);
	RUN(test_expiry);
	RUN(test_eviction_order);
	RUN(test_byte_budget);
	RUN(test_pinned_entry_survives_eviction);
	RUN(test_vary);
	RUN(test_streamed_fill);
	RUN(test_request_cacheable);
	RUN(test_response_cacheable);
	return CHECK_DONE();
}
