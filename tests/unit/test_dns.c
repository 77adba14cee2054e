/* DNS discovery: name and target parsing, TTLs of raw answers, the pool's slot rules,
 * rendezvous hashing of DNS pools, re-resolve delays, and seeding a reload from entries. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "config/config.h"
#include "upstream/dns.h"
#include "upstream/upstream.h"

static void test_name_valid(void)
{
	char label64[80], longname[300];

	CHECK(dns_name_valid("users.internal", false));
	CHECK(dns_name_valid("a", false));
	CHECK(dns_name_valid("a-b.c1.example.", false));
	CHECK(!dns_name_valid("", false));
	CHECK(!dns_name_valid(".", false));
	CHECK(!dns_name_valid("a..b", false));
	CHECK(!dns_name_valid("-a.b", false));
	CHECK(!dns_name_valid("a-.b", false));
	CHECK(!dns_name_valid("a_b.c", false));
	CHECK(!dns_name_valid("a b", false));
	CHECK(!dns_name_valid("_http._tcp.users.internal", false));
	CHECK(dns_name_valid("_http._tcp.users.internal", true));
	CHECK(!dns_name_valid("_http._tcp..x", true));
	CHECK(!dns_name_valid("h_ttp.x", true));
	memset(label64, 'a', 64);
	label64[64] = '\0';
	CHECK(!dns_name_valid(label64, false));
	label64[63] = '\0';
	CHECK(dns_name_valid(label64, false));
	memset(longname, 0, sizeof(longname));
	for (int i = 0; i < 127; i++)
		memcpy(longname + 2 * i, "a.", 2);
	longname[253] = '\0'; /* "a.a. ... a" 253 characters */
	CHECK(dns_name_valid(longname, false));
	longname[253] = 'a';
	CHECK(!dns_name_valid(longname, false));
}

static void test_parse_target(void)
{
	char host[DNS_NAME_MAX + 2], err[128];
	uint16_t port = 0;
	bool is_name;

	CHECK(dns_parse_target("users.internal:8080", host, sizeof(host), &port, &is_name, err,
			       sizeof(err)));
	CHECK(is_name);
	CHECK_STR(host, "users.internal");
	CHECK_EQ(port, 8080);
	CHECK(
	    dns_parse_target("localhost:1", host, sizeof(host), &port, &is_name, err, sizeof(err)));
	CHECK(is_name);
	/* IP literals (and malformed ones) are left to cfg_parse_addr. */
	CHECK(dns_parse_target("127.0.0.1:80", host, sizeof(host), &port, &is_name, err,
			       sizeof(err)));
	CHECK(!is_name);
	CHECK(dns_parse_target("999.1.1.1:80", host, sizeof(host), &port, &is_name, err,
			       sizeof(err)));
	CHECK(!is_name);
	CHECK(dns_parse_target("[::1]:80", host, sizeof(host), &port, &is_name, err, sizeof(err)));
	CHECK(!is_name);
	CHECK(dns_parse_target("*:80", host, sizeof(host), &port, &is_name, err, sizeof(err)));
	CHECK(!is_name);
	CHECK(dns_parse_target("noport", host, sizeof(host), &port, &is_name, err, sizeof(err)));
	CHECK(!is_name);
	CHECK(dns_parse_target("::1:80", host, sizeof(host), &port, &is_name, err, sizeof(err)));
	CHECK(!is_name);
	CHECK(!dns_parse_target("bad..name:80", host, sizeof(host), &port, &is_name, err,
				sizeof(err)));
	CHECK(is_name && strstr(err, "invalid host name \"bad..name\""));
	CHECK(!dns_parse_target("a.test:0", host, sizeof(host), &port, &is_name, err, sizeof(err)));
	CHECK(strstr(err, "invalid port"));
	CHECK(!dns_parse_target("a.test:65536", host, sizeof(host), &port, &is_name, err,
				sizeof(err)));
	CHECK(!dns_parse_target("a.test:", host, sizeof(host), &port, &is_name, err, sizeof(err)));
	CHECK(
	    !dns_parse_target("a.test:+8", host, sizeof(host), &port, &is_name, err, sizeof(err)));
}

/* Appends a DNS name in wire format. */
static int put_name(unsigned char *m, int off, const char *name)
{
	const char *p = name;

	while (*p) {
		const char *dot = strchr(p, '.');
		int n = dot ? dot - p : (int)strlen(p);

		m[off++] = n;
		memcpy(m + off, p, n);
		off += n;
		p += n + (dot ? 1 : 0);
	}
	m[off++] = 0;
	return off;
}

static int put_rr(unsigned char *m, int off, uint32_t ttl)
{
	static const unsigned char a[] = {0xc0, 0x0c, 0, 1, 0, 1};

	memcpy(m + off, a, sizeof(a));
	off += sizeof(a);
	m[off++] = ttl >> 24;
	m[off++] = ttl >> 16;
	m[off++] = ttl >> 8;
	m[off++] = ttl;
	m[off++] = 0;
	m[off++] = 4;
	memcpy(m + off, "\x7f\0\0\x02", 4);
	return off + 4;
}

static void test_answer_min_ttl(void)
{
	unsigned char m[512] = {0x12, 0x34, 0x84, 0, 0, 1, 0, 3, 0, 0, 0, 0};
	uint32_t ttl = 0;
	int len = put_name(m, 12, "users.test");

	m[len++] = 0;
	m[len++] = 1;
	m[len++] = 0;
	m[len++] = 1;
	len = put_rr(m, len, 30);
	len = put_rr(m, len, 7);
	len = put_rr(m, len, 300);
	CHECK(dns_answer_min_ttl(m, len, &ttl));
	CHECK_EQ(ttl, 7);
	CHECK(!dns_answer_min_ttl(m, len - 1, &ttl)); /* truncated rdata */
	CHECK(!dns_answer_min_ttl(m, 11, &ttl));
	m[7] = 0; /* no answers */
	CHECK(!dns_answer_min_ttl(m, len, &ttl));
	m[7] = 1;
	m[12] = 0xc0; /* a question name pointing forward past the end */
	m[13] = 0xff;
	CHECK(!dns_answer_min_ttl(m, 14, &ttl));
}

static struct dns_addr v4(const char *ip, uint16_t port, uint32_t w)
{
	struct dns_addr a;
	struct sockaddr_in *s = (struct sockaddr_in *)&a.addr;

	memset(&a, 0, sizeof(a));
	s->sin_family = AF_INET;
	s->sin_port = htons(port);
	inet_pton(AF_INET, ip, &s->sin_addr);
	a.addrlen = sizeof(*s);
	a.weight = w;
	return a;
}

static void test_normalize_and_format(void)
{
	struct dns_addr a[5] = {v4("10.0.0.3", 80, 1), v4("10.0.0.1", 80, 5), v4("10.0.0.3", 80, 9),
				v4("10.0.0.1", 81, 1), v4("10.0.0.2", 80, 1)};
	struct sockaddr_in6 s6 = {.sin6_family = AF_INET6, .sin6_port = htons(443)};
	char text[64];
	int n = dns_addrs_normalize(a, 5);

	CHECK_EQ(n, 4);
	dns_format_addr(&a[0].addr, text, sizeof(text));
	CHECK_STR(text, "10.0.0.1:80");
	CHECK_EQ(a[0].weight, 5);
	dns_format_addr(&a[1].addr, text, sizeof(text));
	CHECK_STR(text, "10.0.0.1:81");
	dns_format_addr(&a[3].addr, text, sizeof(text));
	CHECK_STR(text, "10.0.0.3:80");
	CHECK_EQ(a[3].weight, 1); /* the first of the duplicates */
	inet_pton(AF_INET6, "::1", &s6.sin6_addr);
	dns_format_addr((struct sockaddr_storage *)&s6, text, sizeof(text));
	CHECK_STR(text, "[::1]:443");
}

static int pool_seq;

struct pool {
	struct upstream_config u;
	struct dns_upstream d;
	char name[32];
};

/* A DNS pool with one static target 10.9.0.1:80 (slot 0). */
static void pool_init(struct pool *p)
{
	memset(p, 0, sizeof(*p));
	snprintf(p->name, sizeof(p->name), "dns-test-%d", ++pool_seq);
	p->u.name = p->name;
	p->u.targets = calloc(UPSTREAM_MAX_TARGETS, sizeof(*p->u.targets));
	p->u.targets[0].address_text = strdup("10.9.0.1:80");
	p->u.targets[0].weight = 1;
	p->u.targets[0].state = target_state_get(p->name, "10.9.0.1:80");
	p->u.ntargets = 1;
	p->d.nstatic = 1;
	p->u.dns = &p->d;
}

static void pool_free(struct pool *p)
{
	for (int i = 0; i < p->u.ntargets; i++)
		free(p->u.targets[i].address_text);
	for (int i = 0; i < p->d.nretired; i++)
		free(p->d.retired[i]);
	free(p->d.retired);
	free(p->u.targets);
}

static int slot_of(const struct pool *p, const char *text)
{
	for (int i = 0; i < p->u.ntargets; i++)
		if (!strcmp(p->u.targets[i].address_text, text))
			return i;
	return -1;
}

static void test_pool_add_remove_reweight(void)
{
	struct pool p;
	struct dns_addr want[3] = {v4("10.9.0.2", 80, 1), v4("10.9.0.3", 80, 2),
				   v4("10.9.0.1", 80, 4)};
	struct target_state *st;
	int s2, s3;

	pool_init(&p);
	CHECK(dns_pool_reconcile(&p.u, want, 3, 1000));
	CHECK_EQ(p.u.ntargets, 3); /* 10.9.0.1 is the static target already */
	CHECK_EQ(p.u.targets[0].weight, 1);
	s2 = slot_of(&p, "10.9.0.2:80");
	s3 = slot_of(&p, "10.9.0.3:80");
	CHECK(s2 > 0 && s3 > 0);
	CHECK_EQ(p.u.targets[s3].weight, 2);
	CHECK(p.u.targets[s2].state == target_state_get(p.name, "10.9.0.2:80"));
	CHECK_EQ(dns_upstream_live(&p.u), 2);
	/* 10.9.0.2 leaves: its slot stays (in-flight requests), weight 0; 10.9.0.3 reweighted. */
	want[0] = v4("10.9.0.3", 80, 5);
	st = p.u.targets[s2].state;
	atomic_fetch_add(&st->active, 1);
	CHECK(!dns_pool_reconcile(&p.u, want, 1, 2000));
	CHECK_EQ(p.u.ntargets, 3);
	CHECK_EQ(p.u.targets[s2].weight, 0);
	CHECK_STR(p.u.targets[s2].address_text, "10.9.0.2:80");
	CHECK_EQ(p.u.targets[s3].weight, 5);
	CHECK_EQ(dns_upstream_live(&p.u), 1);
	/* A weight-0 target is never picked. */
	for (int i = 0; i < 20; i++) {
		struct balance_rr rr = {0};

		CHECK(balance_pick(&p.u, &rr, 0, 0, 0) != s2);
	}
	/* It comes back in the same slot. */
	want[1] = v4("10.9.0.2", 80, 1);
	CHECK(!dns_pool_reconcile(&p.u, want, 2, 3000));
	CHECK_EQ(slot_of(&p, "10.9.0.2:80"), s2);
	CHECK_EQ(p.u.targets[s2].weight, 1);
	atomic_fetch_sub(&st->active, 1);
	/* An empty answer set is never applied (lookups keep the last), but reconcile of an
	 * empty want retires every dynamic slot and leaves the static one. */
	CHECK(!dns_pool_reconcile(&p.u, NULL, 0, 4000));
	CHECK_EQ(dns_upstream_live(&p.u), 0);
	CHECK_EQ(p.u.targets[0].weight, 1);
	pool_free(&p);
}

static void test_pool_full_reuses_only_idle_dead_slots(void)
{
	struct dns_addr want[UPSTREAM_MAX_TARGETS];
	struct pool p;
	char ip[32];
	int n = UPSTREAM_MAX_TARGETS - 1;

	pool_init(&p);
	for (int i = 0; i < n; i++) {
		snprintf(ip, sizeof(ip), "10.9.1.%d", i + 1);
		want[i] = v4(ip, 80, 1);
	}
	CHECK(dns_pool_reconcile(&p.u, want, n, 0));
	CHECK_EQ(p.u.ntargets, UPSTREAM_MAX_TARGETS);
	/* 10.9.1.1 leaves; a new address has no free slot until 10.9.1.1 is dead long enough. */
	want[0] = v4("10.9.2.1", 80, 1);
	atomic_fetch_add(&target_state_get(p.name, "10.9.1.1:80")->active, 1);
	CHECK(!dns_pool_reconcile(&p.u, want, n, 1000));
	CHECK(slot_of(&p, "10.9.2.1:80") < 0);
	CHECK(!dns_pool_reconcile(&p.u, want, n, 1000 + DNS_RECYCLE_MS));
	CHECK(slot_of(&p, "10.9.2.1:80") < 0); /* a request is still in flight on it */
	atomic_fetch_sub(&target_state_get(p.name, "10.9.1.1:80")->active, 1);
	CHECK(dns_pool_reconcile(&p.u, want, n, 1000 + DNS_RECYCLE_MS));
	CHECK_EQ(slot_of(&p, "10.9.2.1:80"), 1);
	CHECK(slot_of(&p, "10.9.1.1:80") < 0);
	CHECK_EQ(p.d.nretired, 1);
	CHECK_STR(p.d.retired[0], "10.9.1.1:80");
	CHECK(p.u.targets[1].state == target_state_get(p.name, "10.9.2.1:80"));
	CHECK_EQ(p.u.targets[1].weight, 1);
	pool_free(&p);
}

static void test_rendezvous_hash_remaps_only_the_removed(void)
{
	enum { KEYS = 2000 };
	static int before[KEYS];
	struct dns_addr want[5];
	struct pool p;
	int counts[8] = {0}, moved = 0, removed;
	char ip[32];

	pool_init(&p);
	p.u.balance = BALANCE_HASH;
	p.u.targets[0].weight = 0; /* only the DNS slots */
	for (int i = 0; i < 5; i++) {
		snprintf(ip, sizeof(ip), "10.9.3.%d", i + 1);
		want[i] = v4(ip, 80, i == 4 ? 4 : 1);
	}
	dns_pool_reconcile(&p.u, want, 5, 0);
	for (int k = 0; k < KEYS; k++) {
		uint64_t h = hash_key64(&k, sizeof(k));

		before[k] = balance_pick(&p.u, NULL, h, 0, 0);
		CHECK(before[k] >= 1 && before[k] <= 5);
		counts[before[k]]++;
		CHECK_EQ(balance_pick(&p.u, NULL, h, 0, 0), before[k]); /* stable */
	}
	/* Weight 4 of 8 takes about half. */
	CHECK(counts[slot_of(&p, "10.9.3.5:80")] > KEYS * 4 / 10);
	CHECK(counts[slot_of(&p, "10.9.3.5:80")] < KEYS * 6 / 10);
	removed = slot_of(&p, "10.9.3.2:80");
	dns_pool_reconcile(&p.u, (struct dns_addr[]){want[0], want[2], want[3], want[4]}, 4, 0);
	for (int k = 0; k < KEYS; k++) {
		int now = balance_pick(&p.u, NULL, hash_key64(&k, sizeof(k)), 0, 0);

		CHECK(now != removed);
		if (now != before[k]) {
			moved++;
			CHECK_EQ(before[k], removed);
		}
	}
	CHECK_EQ(moved, counts[removed]);
	pool_free(&p);
}

static void test_next_delay(void)
{
	struct dns_upstream d = {0};

	CHECK_EQ(dns_next_delay_s(&d, true, 0), DNS_MIN_TTL_S);
	CHECK_EQ(dns_next_delay_s(&d, true, 30), 30);
	CHECK_EQ(dns_next_delay_s(&d, true, 86400), DNS_MAX_TTL_S);
	CHECK_EQ(dns_next_delay_s(&d, false, 30), DNS_RETRY_S);
	CHECK_EQ(dns_next_delay_s(&d, false, 2), 2);
	d.interval_s = 45;
	CHECK_EQ(dns_next_delay_s(&d, true, 1), 45);
	CHECK_EQ(dns_next_delay_s(&d, false, 1), DNS_RETRY_S);
	d.interval_s = 2;
	CHECK_EQ(dns_next_delay_s(&d, false, 100), 2);
}

static struct xg_config *load(const char *text)
{
	struct cfg_errs errs = {0};
	struct xg_config *cfg = config_load_buffer(text, strlen(text), "test.json", &errs);

	if (!cfg)
		fprintf(stderr, "load failed:\n%s\n", errs.text ? errs.text : "");
	cfg_errs_free(&errs);
	return cfg;
}

/* A reload starts from the entries' last answers; before any answer the pool is empty. */
static void test_config_seeds_from_entries(void)
{
	static const char *text =
	    "{\"listeners\": [{\"name\": \"p\", \"address\": \"127.0.0.1:8080\"}],"
	    " \"resolver\": {\"servers\": [\"127.0.0.1:5353\", \"[::1]:53\"]},"
	    " \"upstreams\": [{\"name\": \"seed\", \"targets\": [{\"address\": \"seed.test:8080\","
	    " \"weight\": 3}], \"resolve\": {\"interval_s\": 7}}]}";
	struct xg_config *cfg = load(text);
	struct dns_entry *e;
	struct dns_addr *a;

	CHECK(cfg != NULL);
	if (!cfg)
		return;
	CHECK_STR(cfg->resolver_servers, "127.0.0.1:5353,[::1]:53");
	CHECK(cfg->upstreams[0].dns != NULL);
	CHECK_EQ(cfg->upstreams[0].ntargets, 0);
	CHECK_EQ(cfg->upstreams[0].dns->interval_s, 7);
	CHECK_EQ(cfg->upstreams[0].dns->nsources, 1);
	CHECK_STR(dns_unavailable_reason(&cfg->upstreams[0]), "upstream name not resolved yet");
	e = dns_entry_get("seed", DNS_KIND_ADDR, "seed.test");
	CHECK(e == cfg->upstreams[0].dns->sources[0].entry);
	config_put(cfg);

	a = calloc(1, sizeof(*a));
	*a = v4("10.9.4.1", 0, 0);
	dns_lock();
	e->addrs = a;
	e->naddrs = 1;
	e->attempted = e->resolved = true;
	dns_unlock();
	cfg = load(text);
	CHECK(cfg != NULL);
	if (!cfg)
		return;
	CHECK_EQ(cfg->upstreams[0].ntargets, 1);
	CHECK_STR(cfg->upstreams[0].targets[0].address_text, "10.9.4.1:8080");
	CHECK_EQ(cfg->upstreams[0].targets[0].weight, 3);
	CHECK(dns_unavailable_reason(&cfg->upstreams[0]) == NULL);
	config_put(cfg);
}

int main(void)
{
	RUN(test_name_valid);
	RUN(test_parse_target);
	RUN(test_answer_min_ttl);
	RUN(test_normalize_and_format);
	RUN(test_pool_add_remove_reweight);
	RUN(test_pool_full_reuses_only_idle_dead_slots);
	RUN(test_rendezvous_hash_remaps_only_the_removed);
	RUN(test_next_delay);
	RUN(test_config_seeds_from_entries);
	return CHECK_DONE();
}
