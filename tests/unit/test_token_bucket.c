/* maps/token_bucket.h with a fake clock: rate, burst, refill, extremes, counter wrap. */
#include <stdint.h>

#include "check.h"
#include "maps/token_bucket.h"

#define MS 1000000ULL
#define S 1000000000ULL

/* Takes until refused or max; returns how many were granted at now_ns. */
static unsigned long take_all(__u64 *word, const struct tb_params *p, uint64_t now_ns,
			      unsigned long max)
{
	unsigned long n = 0;

	while (n < max && tb_take(word, p, now_ns))
		n++;
	return n;
}

static void test_burst_then_empty(void)
{
	struct tb_params p;
	__u64 w = 0, t0 = 5 * S;

	tb_params_init(&p, 100, 200);
	CHECK_EQ(take_all(&w, &p, t0, 1000), 200);
	CHECK(!tb_take(&w, &p, t0));
	CHECK_EQ(tb_tokens(w, &p, t0), 0);
}

static void test_refill_rate(void)
{
	struct tb_params p;
	__u64 w = 0, t0 = 5 * S;

	tb_params_init(&p, 100, 200);
	take_all(&w, &p, t0, 1000);
	/* 10 ms per token at 100/s. */
	CHECK(!tb_take(&w, &p, t0 + 9 * MS));
	CHECK(tb_take(&w, &p, t0 + 10 * MS));
	CHECK(!tb_take(&w, &p, t0 + 10 * MS));
	/* One second later: exactly 100 more. */
	CHECK_EQ(take_all(&w, &p, t0 + 1010 * MS, 1000), 100);
	/* A long pause refills to the burst, never beyond. */
	CHECK_EQ(take_all(&w, &p, t0 + 3600 * S, 1000), 200);
}

static void test_steady_rate_over_time(void)
{
	struct tb_params p;
	__u64 w = 0, t, granted = 0;

	tb_params_init(&p, 1000, 10);
	/* Offered 10 per ms for 2 s: granted = burst + rate * time. */
	for (t = S; t < 3 * S; t += MS / 10)
		granted += tb_take(&w, &p, t);
	CHECK(granted >= 2000 + 10 - 1 && granted <= 2000 + 10 + 1);
}

static void test_wait_ns(void)
{
	struct tb_params p;
	__u64 w = 0, t0 = S;

	tb_params_init(&p, 4, 1);
	CHECK_EQ(tb_wait_ns(w, &p, t0), 0);
	CHECK(tb_take(&w, &p, t0));
	CHECK_EQ(tb_wait_ns(w, &p, t0), 250 * MS);
	CHECK_EQ(tb_wait_ns(w, &p, t0 + 100 * MS), 150 * MS);
	CHECK(!tb_take(&w, &p, t0 + 250 * MS - 1));
	CHECK(tb_take(&w, &p, t0 + 250 * MS));
}

static void test_fractional_rate_precision(void)
{
	struct tb_params p;
	__u64 w = 0, t, granted = 0;

	/* 3/s: the interval is not a whole number of ns; 3000 s must give 9000 (+burst). */
	tb_params_init(&p, 3, 10);
	w = tb_init(S);
	for (t = S; t <= 3001 * S; t += 10 * MS)
		granted += tb_take(&w, &p, t);
	CHECK(granted >= 9000 + 10 - 1 && granted <= 9000 + 10 + 1);
}

static void test_unlimited(void)
{
	struct tb_params p;
	__u64 w = 0;

	tb_params_init(&p, 0, 0);
	CHECK_EQ(p.interval, 0);
	CHECK_EQ(take_all(&w, &p, S, 100000), 100000);
	CHECK_EQ(w, 0);
	CHECK_EQ(tb_wait_ns(w, &p, S), 0);
}

static void test_new_word_is_full_at_any_uptime(void)
{
	struct tb_params p;
	uint64_t late = 900ULL * 86400 * S; /* ticks have wrapped past 2^64 */
	__u64 w = tb_init(late);

	tb_params_init(&p, 10, 4);
	CHECK_EQ(take_all(&w, &p, late, 100), 4);
	CHECK_EQ(take_all(&w, &p, late + 100 * MS, 100), 1);
}

static void test_zero_burst_is_one(void)
{
	struct tb_params p;
	__u64 w = 0;

	tb_params_init(&p, 10, 0);
	CHECK_EQ(take_all(&w, &p, S, 100), 1);
}

static void test_extreme_rate(void)
{
	struct tb_params p;
	__u64 w = 0;

	/* Beyond one token per tick: clamped, never a zero interval (which means unlimited). */
	tb_params_init(&p, UINT64_MAX, UINT64_MAX);
	CHECK(p.interval >= 1);
	CHECK(p.limit <= TB_LIMIT_MAX);
	CHECK_EQ(take_all(&w, &p, S, 1000), 1000);
	tb_params_init(&p, 1000000000ULL, 10);
	w = tb_init(S);
	CHECK_EQ(take_all(&w, &p, S, 100), 10);
	CHECK_EQ(take_all(&w, &p, S + 5, 100), 5);
}

static void test_extreme_burst(void)
{
	struct tb_params p;
	__u64 w = 0;

	/* 1/s with a 2^32 burst: burst * interval would overflow 64 bits unclamped. */
	tb_params_init(&p, 1, 1ULL << 32);
	CHECK_EQ(p.limit, TB_LIMIT_MAX);
	CHECK_EQ(take_all(&w, &p, S, 5000), 5000);
	CHECK(tb_tokens(w, &p, S) > 1000000);
	tb_params_init(&p, 1, UINT64_MAX);
	CHECK_EQ(p.limit, TB_LIMIT_MAX);
}

static void test_extreme_elapsed(void)
{
	struct tb_params p;
	__u64 w = 0, t0 = 10 * S;

	tb_params_init(&p, 100, 5);
	take_all(&w, &p, t0, 100);
	/* 400 days later: full bucket, not empty, not more than the burst. */
	CHECK_EQ(take_all(&w, &p, t0 + 400ULL * 86400 * S, 100), 5);
}

static void test_tick_wrap(void)
{
	struct tb_params p;
	/* now_ns such that now_ns << 8 is just below 2^64: the bucket must work across it. */
	uint64_t t0 = (UINT64_MAX >> TB_FRAC_BITS) - 5 * MS;
	__u64 w = tb_init(t0);

	tb_params_init(&p, 1000, 3);
	CHECK_EQ(take_all(&w, &p, t0, 100), 3);
	CHECK(!tb_take(&w, &p, t0 + MS / 2));
	CHECK(tb_take(&w, &p, t0 + MS)); /* TAT now wraps past 2^64 */
	CHECK_EQ(take_all(&w, &p, t0 + 10 * MS, 100), 3);
	CHECK(!tb_take(&w, &p, t0 + 10 * MS));
}

static void test_clock_going_backwards(void)
{
	struct tb_params p;
	__u64 w = 0, t0 = 100 * S;

	tb_params_init(&p, 10, 2);
	CHECK_EQ(take_all(&w, &p, t0, 10), 2);
	CHECK(!tb_take(&w, &p, t0 - 1));
	/* An earlier timestamp (another CPU's slightly older clock read) grants nothing. */
	CHECK(!tb_take(&w, &p, t0 - 50 * MS));
}

static void test_lowered_burst(void)
{
	struct tb_params p, lower;
	__u64 w = 0, t0 = 100 * S;

	tb_params_init(&p, 10, 100);
	take_all(&w, &p, t0, 1000);
	/* A reload that lowers the burst: the tokens already spent are still owed. */
	tb_params_init(&lower, 10, 5);
	CHECK_EQ(take_all(&w, &lower, t0, 1000), 0);
	CHECK_EQ(take_all(&w, &lower, t0 + 9 * S, 1000), 0);
	CHECK_EQ(take_all(&w, &lower, t0 + 10 * S, 1000), 5);
}

int main(void)
{
	RUN(test_burst_then_empty);
	RUN(test_refill_rate);
	RUN(test_steady_rate_over_time);
	RUN(test_wait_ns);
	RUN(test_fractional_rate_precision);
	RUN(test_unlimited);
	RUN(test_zero_burst_is_one);
	RUN(test_new_word_is_full_at_any_uptime);
	RUN(test_extreme_rate);
	RUN(test_extreme_burst);
	RUN(test_extreme_elapsed);
	RUN(test_tick_wrap);
	RUN(test_clock_going_backwards);
	RUN(test_lowered_burst);
	return CHECK_DONE();
}
