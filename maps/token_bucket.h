/*
 * Token bucket shared by the XDP shield (clang -target bpf) and the userspace route
 * limiter (gcc): one implementation, unit-tested with a fake clock.
 *
 * The bucket is GCRA ("generic cell rate algorithm"), which is a token bucket whose whole
 * state is one 64-bit word: the theoretical arrival time (TAT), the instant at which the
 * bucket would be full again. Keeping the state in one word lets every CPU (or worker
 * thread) update the same bucket with a single compare-and-swap, so a source whose packets
 * spread over several RX queues gets its rate once, not once per CPU. A spin lock
 * (bpf_spin_lock) would also be correct, but costs a lock/unlock pair per packet and
 * cannot be taken from userspace on the same memory; CAS needs neither (BPF has 64-bit
 * cmpxchg since 5.12).
 *
 * Time is fixed point: one tick is 2^-TB_FRAC_BITS ns, so the cost of one token
 * ("interval") keeps 8 fractional bits of precision even at a million tokens per second.
 * Tick counters wrap modulo 2^64 (after ~417 days of uptime); every comparison is a
 * signed difference, which stays correct across the wrap. Parameters are clamped so no
 * multiplication overflows at extreme rates or bursts (tb_params_init).
 *
 * How it works: a take at time `now` is allowed when, after charging one interval, the
 * TAT is at most `limit` (= burst * interval) ahead of now. A TAT in the past means the
 * bucket is full. A TAT further ahead than `limit` is an empty bucket: it is seen by a
 * CPU whose clock read is slightly older than the one that wrote the word, and after a
 * reload that lowered the burst (the tokens already spent are still owed). A word is
 * always initialised to the current time (tb_init), never to 0, so that new buckets are
 * full however long the host has been up; the signed difference stays meaningful for
 * buckets idle up to 2^63 ticks (~417 days), far beyond any idle eviction.
 */
#ifndef XGATE_MAPS_TOKEN_BUCKET_H
#define XGATE_MAPS_TOKEN_BUCKET_H

#include <linux/types.h>
#include <stdbool.h>

#define TB_FRAC_BITS 8
#define TB_NS_PER_S 1000000000ULL
/* One second in ticks. */
#define TB_TICKS_PER_S (TB_NS_PER_S << TB_FRAC_BITS)
/* The TAT may run at most this far ahead of now: 2^62 ticks = ~208 days of backlog. */
#define TB_LIMIT_MAX (1ULL << 62)
/* Above this rate one token would cost less than one tick; the rate is clamped. */
#define TB_RATE_MAX TB_TICKS_PER_S
/* Bounded CAS retries: BPF needs a bounded loop, and after this many lost races in a row
 * the bucket is being hammered from every CPU at once, so refusing is the safe answer. */
#define TB_CAS_TRIES 8

/* Precomputed per policy; `interval == 0` means unlimited (the bucket is off). */
struct tb_params {
	__u64 interval; /* ticks per token */
	__u64 limit;	/* burst * interval, clamped to TB_LIMIT_MAX */
};

/* rate tokens/s (0: unlimited), burst tokens (0 is taken as 1: a bucket must hold one). */
static inline void tb_params_init(struct tb_params *p, __u64 rate_per_s, __u64 burst)
{
	__u64 interval;

	if (!rate_per_s) {
		p->interval = 0;
		p->limit = 0;
		return;
	}
	if (rate_per_s > TB_RATE_MAX)
		rate_per_s = TB_RATE_MAX;
	/* Rounded to nearest: the rate error is at most half a tick per token. */
	interval = (TB_TICKS_PER_S + rate_per_s / 2) / rate_per_s;
	if (!interval)
		interval = 1;
	if (!burst)
		burst = 1;
	p->interval = interval;
	p->limit = burst > TB_LIMIT_MAX / interval ? TB_LIMIT_MAX : burst * interval;
}

static inline __u64 tb_now_ticks(__u64 now_ns)
{
	return now_ns << TB_FRAC_BITS;
}

/* A bucket word for a new key: full bucket at now_ns. */
static inline __u64 tb_init(__u64 now_ns)
{
	return tb_now_ticks(now_ns);
}

/* How far ahead of now the TAT in `word` is: 0 when full, at most p->limit. */
static inline __u64 tb_backlog(__u64 word, const struct tb_params *p, __u64 now)
{
	__s64 ahead = (__s64)(word - now);

	if (ahead <= 0)
		return 0;
	return (__u64)ahead > p->limit ? p->limit : (__u64)ahead;
}

/* Takes one token at now_ns. True: allowed. Updates *word atomically (CAS). */
static inline bool tb_take(__u64 *word, const struct tb_params *p, __u64 now_ns)
{
	__u64 now = tb_now_ticks(now_ns);
	__u64 old = *(volatile __u64 *)word;
	int i;

	if (!p->interval)
		return true;
	for (i = 0; i < TB_CAS_TRIES; i++) {
		__u64 backlog = tb_backlog(old, p, now);
		__u64 seen;

		if (backlog + p->interval > p->limit)
			return false;
		seen = __sync_val_compare_and_swap(word, old, now + backlog + p->interval);
		if (seen == old)
			return true;
		old = seen;
	}
	return false;
}

/* Nanoseconds until the next token is available (0: now). */
static inline __u64 tb_wait_ns(__u64 word, const struct tb_params *p, __u64 now_ns)
{
	__u64 backlog, need;

	if (!p->interval)
		return 0;
	backlog = tb_backlog(word, p, tb_now_ticks(now_ns));
	if (backlog + p->interval <= p->limit)
		return 0;
	need = backlog + p->interval - p->limit;
	/* Rounded up so that waiting this long is always enough. */
	return (need >> TB_FRAC_BITS) + !!(need & ((1ULL << TB_FRAC_BITS) - 1));
}

/* Whole tokens currently in the bucket (for display). */
static inline __u64 tb_tokens(__u64 word, const struct tb_params *p, __u64 now_ns)
{
	if (!p->interval)
		return ~0ULL;
	return (p->limit - tb_backlog(word, p, tb_now_ticks(now_ns))) / p->interval;
}

#endif
