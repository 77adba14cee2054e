/* Throttle (NGINX limit_req burst/delay): pass, delay paced at per_s, reject past burst or
 * queue_timeout_ms, refill over time, config errors with their JSON path. */
#include <jansson.h>
#include <string.h>

#include "ratelimit/ratelimit.h"
#include "unit/check.h"

#define MS 1000000ull

static struct throttle_policy *parse(const char *json, const char *route, struct cfg_errs *errs)
{
	json_t *o = json_loads(json, 0, NULL);
	struct throttle_policy *p;

	cfg_errs_free(errs);
	memset(errs, 0, sizeof(*errs));
	p = throttle_policy_parse(o, "routes[0].throttle", route, errs);
	json_decref(o);
	return p;
}

static enum throttle_verdict admit(struct throttle_policy *p, uint64_t now, uint64_t *d,
				   uint32_t *ra)
{
	return throttle_admit(p, "1.2.3.4", 7, now, d, ra);
}

static void test_burst_delay_semantics(void)
{
	struct cfg_errs errs = { 0 };
	struct throttle_policy *p = parse(
		"{\"per_s\": 10, \"burst\": 20, \"delay_after\": 5, \"queue_timeout_ms\": 5000}",
		"t1", &errs);
	uint64_t now = 1000 * MS * 1000, d;
	uint32_t ra = 0;
	int pass = 0, delayed = 0, rejected = 0;
	uint64_t last_delay = 0;

	CHECK(p != NULL);
	for (int i = 0; i < 30; i++) {
		switch (admit(p, now, &d, &ra)) {
		case THROTTLE_PASS:
			pass++;
			CHECK_EQ(d, 0);
			break;
		case THROTTLE_DELAY:
			delayed++;
			/* paced: each held request 100 ms after the one before */
			CHECK_EQ(d, last_delay + 100 * MS);
			last_delay = d;
			break;
		case THROTTLE_REJECT:
			rejected++;
			CHECK(ra >= 1);
			break;
		}
	}
	CHECK_EQ(pass, 6);	/* the one in rate plus delay_after excess */
	CHECK_EQ(delayed, 15);	/* the rest of burst */
	CHECK_EQ(rejected, 9);
	CHECK_EQ(last_delay, 1500 * MS);
	/* 2 s later the backlog has drained: a request goes at once again. */
	CHECK_EQ(admit(p, now + 2100 * MS, &d, &ra), THROTTLE_PASS);
	/* Another key is independent. */
	CHECK_EQ(throttle_admit(p, "5.6.7.8", 7, now, &d, &ra), THROTTLE_PASS);
	throttle_policy_free(p);
	cfg_errs_free(&errs);
}

static void test_queue_timeout_bounds_delay(void)
{
	struct cfg_errs errs = { 0 };
	struct throttle_policy *p = parse(
		"{\"per_s\": 2, \"burst\": 10, \"queue_timeout_ms\": 1200}", "t2", &errs);
	uint64_t now = 5000 * MS, d;
	uint32_t ra;
	int n_delay = 0;

	CHECK(p != NULL);
	CHECK_EQ(admit(p, now, &d, &ra), THROTTLE_PASS);
	for (int i = 0; i < 10; i++)
		if (admit(p, now, &d, &ra) == THROTTLE_DELAY) {
			n_delay++;
			CHECK(d <= 1200 * MS);
		}
	/* delays of 500 and 1000 ms fit in 1200 ms; 1500 does not */
	CHECK_EQ(n_delay, 2);
	throttle_policy_free(p);
	cfg_errs_free(&errs);
}

static void test_config_errors(void)
{
	struct cfg_errs errs = { 0 };

	CHECK(parse("{\"burst\": 3}", "t3", &errs) == NULL);
	CHECK(errs.count >= 1 && strstr(errs.text, "routes[0].throttle.per_s"));
	CHECK(parse("{\"per_s\": 5, \"burst\": 3, \"delay_after\": 4}", "t3", &errs) == NULL);
	CHECK(errs.count >= 1 && strstr(errs.text, "routes[0].throttle.delay_after"));
	CHECK(parse("{\"per_s\": 5, \"bogus\": 1}", "t3", &errs) == NULL);
	CHECK(errs.count >= 1 && strstr(errs.text, "routes[0].throttle.bogus"));
	CHECK(parse("{\"per_s\": 5, \"by\": \"moon\"}", "t3", &errs) == NULL);
	CHECK(errs.count >= 1 && strstr(errs.text, "routes[0].throttle.by"));
	CHECK(parse("[1]", "t3", &errs) == NULL);
	CHECK(errs.count == 1 && strstr(errs.text, "routes[0].throttle"));
	cfg_errs_free(&errs);
}

int main(void)
{
	RUN(test_burst_delay_semantics);
	RUN(test_queue_timeout_bounds_delay);
	RUN(test_config_errors);
	return CHECK_DONE();
}
