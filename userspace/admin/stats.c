#include "admin/stats.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "metrics/metrics.h"

#define SEC_SAMPLES 8	 /* requests/s over the last ~8 s */
#define MIN_SAMPLES 61	 /* an hour of minutes plus the one being filled */
#define TOP_N 10
#define SLACK 16 /* series interned between counting and filling */

/* Totals of every series at one instant. */
struct sample {
	int64_t t_ms;
	int nroutes, nconsumers;
	uint64_t *route_req, *route_err;
	uint64_t *cons_req, *cons_err;
};

struct ring {
	struct sample *s;
	int cap, len, head; /* head: index of the oldest */
};

struct admin_stats {
	struct ring sec, min;
};

/* What the shards say now. */
struct current {
	struct metrics_route_totals *routes;
	int nroutes;
	struct metrics_consumer_totals *consumers;
	int nconsumers;
};

static uint64_t route_errors(const struct metrics_route_totals *r)
{
	return r->classes[5];
}

static bool current_read(struct current *c)
{
	int n = metrics_route_totals(NULL, 0) + SLACK, m = metrics_consumer_totals(NULL, 0) + SLACK;

	c->routes = calloc(n, sizeof(*c->routes));
	c->consumers = calloc(m, sizeof(*c->consumers));
	if (!c->routes || !c->consumers) {
		free(c->routes);
		free(c->consumers);
		return false;
	}
	c->nroutes = metrics_route_totals(c->routes, n);
	c->nroutes = c->nroutes < n ? c->nroutes : n;
	c->nconsumers = metrics_consumer_totals(c->consumers, m);
	c->nconsumers = c->nconsumers < m ? c->nconsumers : m;
	return true;
}

static void current_free(struct current *c)
{
	free(c->routes);
	free(c->consumers);
}

static void sample_clear(struct sample *s)
{
	free(s->route_req);
	free(s->route_err);
	free(s->cons_req);
	free(s->cons_err);
	memset(s, 0, sizeof(*s));
}

static bool sample_take(struct sample *s, const struct current *c, int64_t now_ms)
{
	sample_clear(s);
	s->t_ms = now_ms;
	s->route_req = calloc(c->nroutes + 1, sizeof(uint64_t));
	s->route_err = calloc(c->nroutes + 1, sizeof(uint64_t));
	s->cons_req = calloc(c->nconsumers + 1, sizeof(uint64_t));
	s->cons_err = calloc(c->nconsumers + 1, sizeof(uint64_t));
	if (!s->route_req || !s->route_err || !s->cons_req || !s->cons_err) {
		sample_clear(s);
		return false;
	}
	s->nroutes = c->nroutes;
	s->nconsumers = c->nconsumers;
	for (int i = 0; i < c->nroutes; i++) {
		s->route_req[i] = c->routes[i].requests;
		s->route_err[i] = route_errors(&c->routes[i]);
	}
	for (int i = 0; i < c->nconsumers; i++) {
		s->cons_req[i] = c->consumers[i].requests;
		s->cons_err[i] = c->consumers[i].errors;
	}
	return true;
}

static struct sample *ring_at(struct ring *r, int i)
{
	return &r->s[(r->head + i) % r->cap];
}

static struct sample *ring_newest(struct ring *r)
{
	return r->len ? ring_at(r, r->len - 1) : NULL;
}

static void ring_push(struct ring *r, const struct current *c, int64_t now_ms)
{
	struct sample *slot;

	if (r->len < r->cap) {
		slot = ring_at(r, r->len);
		r->len++;
	} else {
		slot = ring_at(r, 0);
		r->head = (r->head + 1) % r->cap;
	}
	if (!sample_take(slot, c, now_ms))
		slot->t_ms = now_ms; /* an empty sample: its series read as 0 */
}

/* The oldest sample at most window_ms old (the newest when all are older). */
static struct sample *ring_since(struct ring *r, int64_t now_ms, int64_t window_ms)
{
	for (int i = 0; i < r->len; i++)
		if (now_ms - ring_at(r, i)->t_ms <= window_ms)
			return ring_at(r, i);
	return ring_newest(r);
}

static bool ring_init(struct ring *r, int cap)
{
	r->s = calloc(cap, sizeof(*r->s));
	r->cap = cap;
	return r->s != NULL;
}

static void ring_free(struct ring *r)
{
	for (int i = 0; r->s && i < r->cap; i++)
		sample_clear(&r->s[i]);
	free(r->s);
}

struct admin_stats *admin_stats_new(int64_t now_ms)
{
	struct admin_stats *s = calloc(1, sizeof(*s));
	struct current c;

	if (!s || !ring_init(&s->sec, SEC_SAMPLES) || !ring_init(&s->min, MIN_SAMPLES)) {
		admin_stats_free(s);
		return NULL;
	}
	if (current_read(&c)) {
		ring_push(&s->sec, &c, now_ms);
		ring_push(&s->min, &c, now_ms);
		current_free(&c);
	}
	return s;
}

void admin_stats_free(struct admin_stats *s)
{
	if (!s)
		return;
	ring_free(&s->sec);
	ring_free(&s->min);
	free(s);
}

void admin_stats_tick(struct admin_stats *s, int64_t now_ms)
{
	struct sample *sec = ring_newest(&s->sec), *min = ring_newest(&s->min);
	bool sec_due = !sec || now_ms - sec->t_ms >= 1000;
	bool min_due = !min || now_ms - min->t_ms >= 60000;
	struct current c;

	if ((!sec_due && !min_due) || !current_read(&c))
		return;
	if (sec_due)
		ring_push(&s->sec, &c, now_ms);
	if (min_due)
		ring_push(&s->min, &c, now_ms);
	current_free(&c);
}

static uint64_t at(const uint64_t *v, int n, int i)
{
	return v && i < n ? v[i] : 0;
}

/* Over at least a second, so the first requests after a sample do not read as a spike. */
static double per_s(uint64_t now, uint64_t then, int64_t dt_ms)
{
	if (dt_ms < 1000)
		dt_ms = 1000;
	return now >= then ? (double)(now - then) * 1000.0 / (double)dt_ms : 0;
}

static json_t *ms_or_null(double seconds)
{
	return seconds < 0 ? json_null() : json_real(seconds * 1000.0);
}

static json_t *route_json(const struct metrics_route_totals *r, const struct sample *base,
			  int i, int64_t now_ms)
{
	int64_t dt = now_ms - base->t_ms;
	uint64_t err = route_errors(r);

	return json_pack(
	    "{s:s, s:I, s:I, s:{s:I, s:I, s:I, s:I, s:I, s:I}, s:I, s:f, s:f, s:o, s:o, s:o}",
	    "name", r->name, "requests", (json_int_t)r->requests, "errors", (json_int_t)err,
	    "status", "1xx", (json_int_t)r->classes[1], "2xx", (json_int_t)r->classes[2], "3xx",
	    (json_int_t)r->classes[3], "4xx", (json_int_t)r->classes[4], "5xx",
	    (json_int_t)r->classes[5], "other", (json_int_t)r->classes[0], "rate_limited",
	    (json_int_t)r->rate_limited, "requests_per_s",
	    per_s(r->requests, at(base->route_req, base->nroutes, i), dt), "errors_per_s",
	    per_s(err, at(base->route_err, base->nroutes, i), dt), "p50_ms",
	    ms_or_null(metrics_histogram_quantile(r->buckets, 0.5)), "p99_ms",
	    ms_or_null(metrics_histogram_quantile(r->buckets, 0.99)), "mean_ms",
	    r->requests ? json_real((double)r->sum_ns / 1e6 / (double)r->requests) : json_null());
}

static json_t *routes_json(const struct current *c, const struct sample *base,
			   const struct xg_config *cfg, int64_t now_ms)
{
	json_t *arr = json_array();
	bool *shown = calloc(c->nroutes + 1, sizeof(bool));

	for (int i = 0; arr && shown && cfg && i < cfg->nroutes; i++) {
		int idx = cfg->routes[i].metrics_slot + 1;

		if (idx > 0 && idx < c->nroutes && !shown[idx]) {
			shown[idx] = true;
			json_array_append_new(arr, route_json(&c->routes[idx], base, idx, now_ms));
		}
	}
	/* Routes a reload removed, and requests no route matched (name ""), while counted. */
	for (int i = 0; arr && shown && i < c->nroutes; i++)
		if (!shown[i] && c->routes[i].requests)
			json_array_append_new(arr, route_json(&c->routes[i], base, i, now_ms));
	free(shown);
	return arr;
}

struct ranked {
	const char *name;
	uint64_t requests, errors;
};

static int ranked_cmp(const void *a, const void *b)
{
	const struct ranked *x = a, *y = b;

	if (x->requests != y->requests)
		return x->requests < y->requests ? 1 : -1;
	return strcmp(x->name, y->name);
}

/* The TOP_N entries with the most requests (ties by name), zero counts left out. */
static json_t *top_json(struct ranked *items, int n)
{
	json_t *arr = json_array();

	qsort(items, n, sizeof(*items), ranked_cmp);
	for (int i = 0; arr && i < n && i < TOP_N && items[i].requests; i++)
		json_array_append_new(arr, json_pack("{s:s, s:I, s:I}", "name", items[i].name,
						     "requests", (json_int_t)items[i].requests,
						     "errors", (json_int_t)items[i].errors));
	return arr;
}

static json_t *routes_delta(const struct current *c, const struct sample *base)
{
	struct ranked *items = calloc(c->nroutes + 1, sizeof(*items));
	int n = 0;
	json_t *out;

	if (!items)
		return NULL;
	for (int i = 1; i < c->nroutes; i++) /* 0 is "no route": not a route to rank */
		items[n++] = (struct ranked){
		    c->routes[i].name, c->routes[i].requests - at(base->route_req, base->nroutes, i),
		    route_errors(&c->routes[i]) - at(base->route_err, base->nroutes, i)};
	out = top_json(items, n);
	free(items);
	return out;
}

static json_t *consumers_delta(const struct current *c, const struct sample *base)
{
	struct ranked *items = calloc(c->nconsumers + 1, sizeof(*items));
	json_t *out;

	if (!items)
		return NULL;
	for (int i = 0; i < c->nconsumers; i++)
		items[i] = (struct ranked){
		    c->consumers[i].name,
		    c->consumers[i].requests -
			(base ? at(base->cons_req, base->nconsumers, i) : 0),
		    c->consumers[i].errors - (base ? at(base->cons_err, base->nconsumers, i) : 0)};
	out = top_json(items, c->nconsumers);
	free(items);
	return out;
}

static json_t *window_json(struct admin_stats *s, const struct current *c, int64_t now_ms,
			   int64_t window_ms)
{
	struct sample *base = ring_since(&s->min, now_ms, window_ms);

	if (!base)
		return json_null();
	return json_pack("{s:I, s:o*, s:o*}", "window_s", (json_int_t)((now_ms - base->t_ms) / 1000),
			 "routes", routes_delta(c, base), "consumers", consumers_delta(c, base));
}

json_t *admin_stats_counters(struct admin_stats *s, const struct xg_config *cfg, int64_t now_ms)
{
	struct sample *base = ring_at(&s->sec, 0);
	struct sample none = {.t_ms = now_ms};
	struct current c;
	json_t *j;

	if (!current_read(&c))
		return NULL;
	if (!s->sec.len)
		base = &none;
	j = json_pack("{s:I, s:o*, s:o*, s:{s:o*, s:o*}}", "rate_window_ms",
		      (json_int_t)(now_ms - base->t_ms), "routes", routes_json(&c, base, cfg, now_ms),
		      "top_consumers", consumers_delta(&c, NULL), "busiest", "5m",
		      window_json(s, &c, now_ms, 5 * 60000), "60m",
		      window_json(s, &c, now_ms, 60 * 60000));
	current_free(&c);
	return j;
}
