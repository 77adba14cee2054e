/* Shared between the counting side (metrics.c) and the exposition side (render.c). */
#ifndef XGATE_METRICS_METRICS_INTERNAL_H
#define XGATE_METRICS_METRICS_INTERNAL_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "metrics/metrics.h"

/* Status codes 100..599 get their own counter; anything else lands in CODE_OTHER. */
#define CODE_MIN 100
#define CODE_MAX 599
#define CODE_OTHER (CODE_MAX - CODE_MIN + 1)
#define NCODES (CODE_OTHER + 1)
#define NBUCKETS (METRICS_DURATION_BUCKETS + 1)

typedef _Atomic uint64_t counter_t;

struct route_ctr {
	counter_t codes[NCODES];
	counter_t buckets[NBUCKETS]; /* not cumulative: cumulated when rendered */
	counter_t sum_ns;
	counter_t rate_limited;
	counter_t waf[2]; /* WAF interventions: [0] blocked, [1] detect mode (passed) */
	counter_t rl_fallback; /* cluster limits decided without Redis */
};

struct listener_ctr {
	_Atomic int64_t active;
};

struct target_ctr {
	counter_t outcomes[OUTCOME_COUNT];
};

struct split_ctr {
	counter_t requests;
};

struct consumer_ctr {
	counter_t requests, errors;
};

struct compose_ctr {
	counter_t outcomes[COMPOSE_OUTCOME_COUNT];
};

enum slot_kind { KIND_ROUTE, KIND_LISTENER, KIND_TARGET, KIND_SPLIT, KIND_CONSUMER, KIND_COMPOSE,
		KIND_COUNT };

struct slot_label {
	char *a, *b; /* route/listener name; upstream name and target address; route and
		      * upstream of a split entry; route and call of a compose call */
};

extern _Atomic uint64_t metrics_config_generation;
extern _Atomic int64_t metrics_config_loaded_at;
extern atomic_int metrics_config_last_reload_ok;

/* Label sets interned so far (internal route index 0 is route=""). */
int metrics_table_count(enum slot_kind kind);
const struct slot_label *metrics_table_label(enum slot_kind kind, int i);
/* Sums of one field (byte offset in the record) over all shards. */
uint64_t metrics_sum_counter(enum slot_kind kind, int slot, size_t off);
int64_t metrics_sum_gauge(enum slot_kind kind, int slot, size_t off);
uint64_t metrics_sum_auth(enum auth_reason reason);

#define ROUTE_OFF(field) offsetof(struct route_ctr, field)
#define CODE_OFF(i) (ROUTE_OFF(codes) + (size_t)(i) * sizeof(counter_t))
#define BUCKET_OFF(i) (ROUTE_OFF(buckets) + (size_t)(i) * sizeof(counter_t))
#define OUTCOME_OFF(i) (offsetof(struct target_ctr, outcomes) + (size_t)(i) * sizeof(counter_t))

#endif
