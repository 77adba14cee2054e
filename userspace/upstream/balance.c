/*
 * Target selection: smooth weighted round-robin (nginx), least connections, and a
 * consistent-hash ring. Every pick first computes which targets health and breaker admit;
 * the half-open probe slot is claimed only for the target finally chosen.
 */
#include "upstream/upstream.h"
#include "upstream/upstream_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Virtual nodes per unit of weight, scaled down when the ring would exceed RING_MAX_POINTS. */
#define RING_VNODES_PER_WEIGHT 160
#define RING_MAX_POINTS 65536

struct ring_point {
	uint64_t point;
	uint32_t target;
};

struct hash_ring {
	uint32_t npoints;
	struct ring_point points[];
};

/* XXH64 (seed 0): fast, well distributed, and checkable against published vectors. */
#define XXH_P1 0x9E3779B185EBCA87ULL
#define XXH_P2 0xC2B2AE3D27D4EB4FULL
#define XXH_P3 0x165667B19E3779F9ULL
#define XXH_P4 0x85EBCA77C2B2AE63ULL
#define XXH_P5 0x27D4EB2F165667C5ULL

static inline uint64_t rotl64(uint64_t x, int r)
{
	return (x << r) | (x >> (64 - r));
}

static inline uint64_t read64(const unsigned char *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	v = __builtin_bswap64(v);
#endif
	return v;
}

static inline uint32_t read32(const unsigned char *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	v = __builtin_bswap32(v);
#endif
	return v;
}

static inline uint64_t xxh_round(uint64_t acc, uint64_t input)
{
	acc += input * XXH_P2;
	return rotl64(acc, 31) * XXH_P1;
}

static inline uint64_t xxh_merge(uint64_t acc, uint64_t v)
{
	acc ^= xxh_round(0, v);
	return acc * XXH_P1 + XXH_P4;
}

static uint64_t xxh_stripes(const unsigned char **pp, const unsigned char *end)
{
	const unsigned char *p = *pp;
	uint64_t v1 = XXH_P1 + XXH_P2, v2 = XXH_P2, v3 = 0, v4 = -XXH_P1, h;

	do {
		v1 = xxh_round(v1, read64(p));
		v2 = xxh_round(v2, read64(p + 8));
		v3 = xxh_round(v3, read64(p + 16));
		v4 = xxh_round(v4, read64(p + 24));
		p += 32;
	} while (p + 32 <= end);
	*pp = p;
	h = rotl64(v1, 1) + rotl64(v2, 7) + rotl64(v3, 12) + rotl64(v4, 18);
	h = xxh_merge(h, v1);
	h = xxh_merge(h, v2);
	h = xxh_merge(h, v3);
	return xxh_merge(h, v4);
}

uint64_t hash_key64(const void *data, size_t len)
{
	const unsigned char *p = data, *end = p + len;
	uint64_t h = len >= 32 ? xxh_stripes(&p, end) : XXH_P5;

	h += len;
	for (; p + 8 <= end; p += 8)
		h = rotl64(h ^ xxh_round(0, read64(p)), 27) * XXH_P1 + XXH_P4;
	if (p + 4 <= end) {
		h = rotl64(h ^ (read32(p) * XXH_P1), 23) * XXH_P2 + XXH_P3;
		p += 4;
	}
	for (; p < end; p++)
		h = rotl64(h ^ (*p * XXH_P5), 11) * XXH_P1;
	h ^= h >> 33;
	h *= XXH_P2;
	h ^= h >> 29;
	h *= XXH_P3;
	return h ^ (h >> 32);
}

static int point_cmp(const void *a, const void *b)
{
	const struct ring_point *x = a, *y = b;

	if (x->point != y->point)
		return x->point < y->point ? -1 : 1;
	return (int)x->target - (int)y->target;
}

/*
 * Points derive from the target's address, not its index, so adding or removing a target
 * leaves every other target's points where they were: only the keys of the changed
 * target move.
 */
struct hash_ring *hash_ring_build(const struct target_config *targets, int ntargets)
{
	uint64_t total_weight = 0, per_weight;
	struct hash_ring *ring;
	uint32_t n = 0;

	if (ntargets > UPSTREAM_MAX_TARGETS)
		ntargets = UPSTREAM_MAX_TARGETS;
	for (int i = 0; i < ntargets; i++)
		total_weight += targets[i].weight;
	per_weight = RING_VNODES_PER_WEIGHT;
	if (total_weight && total_weight * per_weight > RING_MAX_POINTS)
		per_weight = RING_MAX_POINTS / total_weight ? RING_MAX_POINTS / total_weight : 1;
	ring = malloc(sizeof(*ring) + total_weight * per_weight * sizeof(ring->points[0]));
	if (!ring)
		return NULL;
	for (int i = 0; i < ntargets; i++) {
		uint64_t vnodes = targets[i].weight * per_weight;

		for (uint64_t v = 0; v < vnodes; v++) {
			char label[320];
			int len = snprintf(label, sizeof(label), "%s#%llu", targets[i].address_text,
					   (unsigned long long)v);

			if (len >= (int)sizeof(label))
				len = sizeof(label) - 1;
			ring->points[n].point = hash_key64(label, len);
			ring->points[n].target = i;
			n++;
		}
	}
	ring->npoints = n;
	qsort(ring->points, n, sizeof(ring->points[0]), point_cmp);
	return ring;
}

void hash_ring_free(struct hash_ring *ring)
{
	free(ring);
}

/*
 * The resolver thread grows and reweights the pools of DNS upstreams while workers pick
 * (upstream/dns.h): ntargets is read with acquire (the slots it covers are filled in),
 * weights relaxed (0: the address left DNS, no new requests).
 */
static inline uint32_t target_weight(const struct target_config *tc)
{
	return __atomic_load_n(&tc->weight, __ATOMIC_RELAXED);
}

/* Bit i set when target i may take a request now (before claiming any probe slot). */
static uint64_t admitted_targets(const struct upstream_config *u, uint64_t skip_mask,
				 uint64_t now_ms)
{
	int n = __atomic_load_n(&u->ntargets, __ATOMIC_ACQUIRE);
	uint64_t mask = 0;

	if (n > UPSTREAM_MAX_TARGETS)
		n = UPSTREAM_MAX_TARGETS;
	for (int i = 0; i < n; i++) {
		const struct target_config *tc = &u->targets[i];

		if (!target_weight(tc) || (skip_mask & (1ULL << i)))
			continue;
		if (target_peek(tc->state, &u->breaker, now_ms) != TARGET_REFUSE)
			mask |= 1ULL << i;
	}
	return mask;
}

/* nginx's smooth weighted round-robin restricted to the targets in mask. */
static int pick_smooth_rr(const struct upstream_config *u, struct balance_rr *rr, uint64_t mask)
{
	int64_t total = 0;
	int best = -1;

	for (uint64_t m = mask; m; m &= m - 1) {
		int i = __builtin_ctzll(m);

		uint32_t w = target_weight(&u->targets[i]);

		rr->current[i] += w;
		total += w;
		if (best < 0 || rr->current[i] > rr->current[best])
			best = i;
	}
	if (best >= 0)
		rr->current[best] -= total;
	return best;
}

/*
 * Fewest in-flight requests per unit of weight (compared by cross-multiplying); ties go
 * through smooth weighted round-robin, so idle targets share load by weight.
 */
static int pick_least_conn(const struct upstream_config *u, struct balance_rr *rr, uint64_t mask)
{
	uint64_t ties = 0;
	int64_t best_active = 0, best_weight = 1;

	for (uint64_t m = mask; m; m &= m - 1) {
		int i = __builtin_ctzll(m);
		const struct target_config *tc = &u->targets[i];
		int64_t active, lhs, rhs;

		active = tc->state ? atomic_load(&tc->state->active) : 0;
		if (active < 0)
			active = 0;
		lhs = active * best_weight;
		rhs = best_active * (int64_t)target_weight(tc);
		if (!ties || lhs < rhs) {
			ties = 1ULL << i;
			best_active = active;
			best_weight = target_weight(tc);
		} else if (lhs == rhs) {
			ties |= 1ULL << i;
		}
	}
	return pick_smooth_rr(u, rr, ties);
}

static uint64_t mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

/*
 * Weighted rendezvous hashing (highest score -w / ln(u), u uniform in (0,1) from the key and
 * the target's address) for DNS pools, whose slots change at run time: no ring to rebuild,
 * and a target that leaves remaps only its own keys.
 */
static int pick_rendezvous(const struct upstream_config *u, uint64_t hash, uint64_t mask)
{
	double best = 0;
	int best_i = -1;

	for (uint64_t m = mask; m; m &= m - 1) {
		int i = __builtin_ctzll(m);
		const char *a = __atomic_load_n(&u->targets[i].address_text, __ATOMIC_ACQUIRE);
		uint64_t h = mix64(hash_key64(a, strlen(a)) ^ hash);
		double x = ((double)(h >> 11) + 0.5) / 9007199254740992.0; /* (0, 1) */
		double score = -(double)target_weight(&u->targets[i]) / log(x);

		if (best_i < 0 || score > best) {
			best = score;
			best_i = i;
		}
	}
	return best_i;
}

static int pick_hash(const struct upstream_config *u, uint64_t hash, uint64_t mask)
{
	const struct hash_ring *ring = u->ring;
	uint32_t lo = 0, hi;

	if (u->dns)
		return pick_rendezvous(u, hash, mask);
	if (!ring || !ring->npoints)
		return -1;
	hi = ring->npoints;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;

		if (ring->points[mid].point < hash)
			lo = mid + 1;
		else
			hi = mid;
	}
	/* Owner unavailable: the next point of an admitted target along the ring. */
	for (uint32_t k = 0; k < ring->npoints; k++) {
		const struct ring_point *pt = &ring->points[(lo + k) % ring->npoints];

		if (mask & (1ULL << pt->target))
			return pt->target;
	}
	return -1;
}

static int pick_once(const struct upstream_config *u, struct balance_rr *rr, uint64_t hash,
		     uint64_t mask)
{
	if (u->balance == BALANCE_HASH)
		return pick_hash(u, hash, mask);
	if (!rr)
		return __builtin_ctzll(mask);
	if (u->balance == BALANCE_LEAST_CONN)
		return pick_least_conn(u, rr, mask);
	return pick_smooth_rr(u, rr, mask);
}

int balance_pick(const struct upstream_config *u, struct balance_rr *rr, uint64_t hash,
		 uint64_t skip_mask, uint64_t now_ms)
{
	uint64_t mask = admitted_targets(u, skip_mask, now_ms);

	while (mask) {
		int i = pick_once(u, rr, hash, mask);
		struct target_state *t;
		enum target_admit admit;

		if (i < 0)
			return -1;
		t = u->targets[i].state;
		admit = target_peek(t, &u->breaker, now_ms);
		if (admit == TARGET_ADMIT ||
		    (admit == TARGET_PROBE && target_probe_claim(t, &u->breaker, now_ms)))
			return i;
		/* Another worker took the probe slot meanwhile. */
		mask &= ~(1ULL << i);
	}
	return -1;
}
