/* Target selection: smooth weighted round-robin, least_conn, consistent hash, hash_key64. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "upstream/upstream.h"
#include "unit/check.h"

static int pool_seq;

struct pool {
	struct upstream_config u;
	struct target_config targets[UPSTREAM_MAX_TARGETS + 8];
	char addr[UPSTREAM_MAX_TARGETS + 8][32];
	struct balance_rr rr;
};

/* Targets "10.<id>.0.<i>:80"; each pool gets fresh target states. */
static void pool_init(struct pool *p, enum balance_kind kind, const uint32_t *weights, int n)
{
	char name[32];

	memset(p, 0, sizeof(*p));
	snprintf(name, sizeof(name), "balance-test-%d", ++pool_seq);
	for (int i = 0; i < n; i++) {
		snprintf(p->addr[i], sizeof(p->addr[i]), "10.%d.%d.%d:80", pool_seq % 256, i / 256,
			 i % 256);
		p->targets[i].address_text = p->addr[i];
		p->targets[i].weight = weights ? weights[i] : 1;
		p->targets[i].state = target_state_get(name, p->addr[i]);
	}
	p->u.name = "pool";
	p->u.balance = kind;
	p->u.targets = p->targets;
	p->u.ntargets = n;
	if (kind == BALANCE_HASH)
		p->u.ring = hash_ring_build(p->targets, n);
}

static void pool_free(struct pool *p)
{
	hash_ring_free(p->u.ring);
}

static void test_hash_key64_vectors(void)
{
	static const char forty[] = "0123456789abcdefghijklmnopqrstuvwxyzABCD";

	/* Reference XXH64 values (seed 0). */
	CHECK(hash_key64("", 0) == 0xef46db3751d8e999ULL);
	CHECK(hash_key64("abc", 3) == 0x44bc2cf5ad770999ULL);
	CHECK(hash_key64(forty, 40) == 0x1b3ce041c106b50bULL);
	CHECK(hash_key64("abd", 3) != hash_key64("abc", 3));
}

static void test_rr_weighted_distribution(void)
{
	static const uint32_t w[] = {5, 3, 1};
	enum { PICKS = 90000 };
	struct pool p;
	int count[3] = {0}, bad = 0;

	pool_init(&p, BALANCE_ROUND_ROBIN, w, 3);
	for (int i = 0; i < PICKS; i++) {
		int t = balance_pick(&p.u, &p.rr, 0, 0, 1000);

		if (t < 0 || t > 2)
			bad++;
		else
			count[t]++;
	}
	CHECK_EQ(bad, 0);
	for (int i = 0; i < 3; i++) {
		double want = (double)PICKS * w[i] / 9;

		CHECK(count[i] > want * 0.99 && count[i] < want * 1.01);
	}
	pool_free(&p);
}

static void test_rr_smooth_interleaving(void)
{
	static const uint32_t w[] = {5, 1, 1};
	char seq[701];
	int run = 0, max_run = 0;
	struct pool p;

	pool_init(&p, BALANCE_ROUND_ROBIN, w, 3);
	for (int i = 0; i < 700; i++) {
		int t = balance_pick(&p.u, &p.rr, 0, 0, 1000);

		seq[i] = t < 0 ? '?' : "abc"[t];
	}
	seq[700] = '\0';
	/* nginx's documented sequence for weights 5,1,1. */
	CHECK(!strncmp(seq, "aabacaa", 7));
	for (int i = 0; i < 700; i++) {
		run = seq[i] == 'a' ? run + 1 : 0;
		if (run > max_run)
			max_run = run;
	}
	/* A plain weighted round-robin would send runs of 5 (10 across cycles). */
	CHECK(max_run <= 4);
	/* Every window of one cycle holds the exact proportions. */
	for (int i = 0; i + 7 <= 700; i++) {
		int a = 0, b = 0, c = 0;

		for (int j = i; j < i + 7; j++) {
			a += seq[j] == 'a';
			b += seq[j] == 'b';
			c += seq[j] == 'c';
		}
		if (a != 5 || b != 1 || c != 1) {
			CHECK(0);
			break;
		}
	}
	pool_free(&p);
}

static void test_skip_mask_and_unavailable(void)
{
	static const uint32_t w[] = {1, 1, 1};
	struct pool p;
	int bad = 0;

	pool_init(&p, BALANCE_ROUND_ROBIN, w, 3);
	for (int i = 0; i < 30; i++)
		bad += balance_pick(&p.u, &p.rr, 0, 0x3, 1000) != 2;
	CHECK_EQ(bad, 0);
	CHECK_EQ(balance_pick(&p.u, &p.rr, 0, 0x7, 1000), -1);
	atomic_store(&p.targets[1].state->up, false);
	for (int i = 0; i < 30; i++)
		bad += balance_pick(&p.u, &p.rr, 0, 0, 1000) == 1;
	CHECK_EQ(bad, 0);
	CHECK_EQ(balance_pick(&p.u, &p.rr, 0, 0x4, 1000), 0);
	atomic_store(&p.targets[0].state->up, false);
	atomic_store(&p.targets[2].state->up, false);
	CHECK_EQ(balance_pick(&p.u, &p.rr, 0, 0, 1000), -1);
	pool_free(&p);
}

static void test_zero_weight_and_target_limit(void)
{
	uint32_t w[UPSTREAM_MAX_TARGETS + 8];
	struct pool *p = malloc(sizeof(*p));
	int bad = 0;

	for (int i = 0; i < UPSTREAM_MAX_TARGETS + 8; i++)
		w[i] = 1;
	w[0] = 0;
	pool_init(p, BALANCE_ROUND_ROBIN, w, UPSTREAM_MAX_TARGETS + 8);
	for (int i = 0; i < 1000; i++) {
		int t = balance_pick(&p->u, &p->rr, 0, 0, 1000);

		bad += t <= 0 || t >= UPSTREAM_MAX_TARGETS;
	}
	CHECK_EQ(bad, 0);
	pool_free(p);
	free(p);
}

static void test_least_conn(void)
{
	static const uint32_t equal[] = {1, 1, 1}, weighted[] = {1, 1, 4}, two_one[] = {2, 1};
	struct pool p;
	int count[2] = {0}, last = -1, repeats = 0;

	pool_init(&p, BALANCE_LEAST_CONN, equal, 3);
	atomic_store(&p.targets[0].state->active, 3);
	atomic_store(&p.targets[1].state->active, 1);
	atomic_store(&p.targets[2].state->active, 2);
	CHECK_EQ(balance_pick(&p.u, &p.rr, 0, 0, 1000), 1);
	CHECK_EQ(balance_pick(&p.u, &p.rr, 0, 1u << 1, 1000), 2);
	atomic_store(&p.targets[1].state->up, false);
	CHECK_EQ(balance_pick(&p.u, &p.rr, 0, 0, 1000), 2);
	pool_free(&p);

	/* Per unit of weight: 4 active on weight 4 beats 2 active on weight 1. */
	pool_init(&p, BALANCE_LEAST_CONN, weighted, 3);
	atomic_store(&p.targets[0].state->active, 2);
	atomic_store(&p.targets[1].state->active, 2);
	atomic_store(&p.targets[2].state->active, 4);
	CHECK_EQ(balance_pick(&p.u, &p.rr, 0, 0, 1000), 2);
	atomic_store(&p.targets[2].state->active, 12);
	CHECK_EQ(balance_pick(&p.u, &p.rr, 0, 0, 1000), 0);
	pool_free(&p);

	/* Ties go round-robin by weight: idle 2:1 targets share 2:1, interleaved. */
	pool_init(&p, BALANCE_LEAST_CONN, two_one, 2);
	for (int i = 0; i < 3000; i++) {
		int t = balance_pick(&p.u, &p.rr, 0, 0, 1000);

		if (t == 1 && last == 1)
			repeats++;
		if (t >= 0)
			count[t]++;
		last = t;
	}
	CHECK_EQ(count[0], 2000);
	CHECK_EQ(count[1], 1000);
	CHECK_EQ(repeats, 0);
	pool_free(&p);
}

static int owner_of(struct pool *p, uint64_t key)
{
	return balance_pick(&p->u, NULL, key, 0, 1000);
}

/* Removing one of n targets moves about 1/n of keys, and only that target's keys. */
static void check_remap(int n, int removed)
{
	enum { KEYS = 100000 };
	struct pool *full = malloc(sizeof(*full)), *less = malloc(sizeof(*less));
	int moved = 0, wrongly_moved = 0, owned_by_removed = 0;

	pool_init(full, BALANCE_HASH, NULL, n);
	pool_init(less, BALANCE_HASH, NULL, n);
	/* Same addresses as full minus one; pool_init gave less fresh states. */
	for (int i = 0, j = 0; i < n; i++) {
		if (i == removed)
			continue;
		less->targets[j] = full->targets[i];
		less->targets[j].address_text = less->addr[j];
		strcpy(less->addr[j], full->addr[i]);
		j++;
	}
	less->u.ntargets = n - 1;
	hash_ring_free(less->u.ring);
	less->u.ring = hash_ring_build(less->targets, n - 1);
	for (int k = 0; k < KEYS; k++) {
		char key[32];
		uint64_t h = hash_key64(key, snprintf(key, sizeof(key), "client-%d", k));
		int a = owner_of(full, h), b = owner_of(less, h);

		if (a < 0 || b < 0) {
			wrongly_moved++;
			continue;
		}
		if (strcmp(full->addr[a], less->addr[b]))
			moved++;
		if (a == removed)
			owned_by_removed++;
		else if (strcmp(full->addr[a], less->addr[b]))
			wrongly_moved++;
	}
	CHECK_EQ(wrongly_moved, 0);
	CHECK_EQ(moved, owned_by_removed);
	CHECK((double)moved / KEYS >= 0.7 / n && (double)moved / KEYS <= 1.3 / n);
	pool_free(full);
	pool_free(less);
	free(full);
	free(less);
}

static void test_hash_remap_fraction(void)
{
	check_remap(4, 1);
	check_remap(4, 3);
	check_remap(8, 0);
	check_remap(8, 5);
}

static void test_hash_weights_and_failover(void)
{
	static const uint32_t w[] = {1, 3};
	enum { KEYS = 40000 };
	struct pool p, three, two;
	int count[2] = {0}, bad = 0;

	pool_init(&p, BALANCE_HASH, w, 2);
	for (int k = 0; k < KEYS; k++) {
		int t = owner_of(&p, hash_key64(&k, sizeof(k)));

		if (t >= 0)
			count[t]++;
	}
	CHECK(count[0] > KEYS * 0.20 && count[0] < KEYS * 0.30);
	CHECK_EQ(count[0] + count[1], KEYS);
	pool_free(&p);

	/* Owner down: the next distinct target on the ring, i.e. its owner without it. */
	pool_init(&three, BALANCE_HASH, NULL, 3);
	pool_init(&two, BALANCE_HASH, NULL, 2);
	strcpy(two.addr[0], three.addr[0]);
	strcpy(two.addr[1], three.addr[2]);
	hash_ring_free(two.u.ring);
	two.u.ring = hash_ring_build(two.targets, 2);
	atomic_store(&three.targets[1].state->up, false);
	for (int k = 0; k < 5000; k++) {
		uint64_t h = hash_key64(&k, sizeof(k));
		int a = owner_of(&three, h), b = owner_of(&two, h);

		bad += a == 1 || a < 0 || b < 0 || strcmp(three.addr[a], two.addr[b]);
		/* Already tried (skip_mask) behaves like down. */
		bad += balance_pick(&three.u, NULL, h, 1u << (a < 0 ? 0 : a), 1000) == a;
	}
	CHECK_EQ(bad, 0);
	atomic_store(&three.targets[0].state->up, false);
	atomic_store(&three.targets[2].state->up, false);
	CHECK_EQ(owner_of(&three, 12345), -1);
	pool_free(&three);
	pool_free(&two);
}

static void test_hash_ring_edges(void)
{
	static const uint32_t zero_first[] = {0, 1};
	struct pool p;
	int bad = 0;

	pool_init(&p, BALANCE_HASH, NULL, 0);
	CHECK(p.u.ring != NULL);
	CHECK_EQ(owner_of(&p, 42), -1);
	pool_free(&p);
	pool_init(&p, BALANCE_HASH, zero_first, 2);
	for (int k = 0; k < 1000; k++)
		bad += owner_of(&p, hash_key64(&k, sizeof(k))) != 1;
	CHECK_EQ(bad, 0);
	pool_free(&p);
	p.u.ring = NULL;
	p.u.balance = BALANCE_HASH;
	CHECK_EQ(balance_pick(&p.u, NULL, 1, 0, 1000), -1);
}

/* max_conns_per_target slots: a cap is never exceeded, 0 means no cap. */
static void test_claim_slot(void)
{
	struct target_state *t = target_state_get("claim-test", "127.0.0.1:1");
	struct upstream_queue_stats *q1 = upstream_queue_stats_get("claim-test");

	CHECK(t != NULL && q1 != NULL);
	CHECK(q1 == upstream_queue_stats_get("claim-test"));
	CHECK(q1 != upstream_queue_stats_get("claim-other"));
	CHECK(target_claim_slot(t, 2));
	CHECK(target_claim_slot(t, 2));
	CHECK(!target_claim_slot(t, 2));
	CHECK_EQ(atomic_load(&t->active), 2);
	atomic_fetch_sub(&t->active, 1);
	CHECK(target_claim_slot(t, 2));
	CHECK(target_claim_slot(t, 0));
	CHECK_EQ(atomic_load(&t->active), 3);
	atomic_store(&t->active, 0);
}

int main(void)
{
	RUN(test_hash_key64_vectors);
	RUN(test_rr_weighted_distribution);
	RUN(test_rr_smooth_interleaving);
	RUN(test_skip_mask_and_unavailable);
	RUN(test_zero_weight_and_target_limit);
	RUN(test_least_conn);
	RUN(test_hash_remap_fraction);
	RUN(test_hash_weights_and_failover);
	RUN(test_hash_ring_edges);
	RUN(test_claim_slot);
	return CHECK_DONE();
}
