/* Shared between the upstream module's files; not part of its interface. */
#ifndef XGATE_UPSTREAM_UPSTREAM_INTERNAL_H
#define XGATE_UPSTREAM_UPSTREAM_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "upstream/upstream.h"

enum target_admit {
	TARGET_REFUSE,
	TARGET_ADMIT,
	TARGET_PROBE, /* breaker wants a half-open probe: admitted only if the slot is claimed */
};

/* What target_available() would say, without claiming the probe slot. NULL t: admit. */
enum target_admit target_peek(const struct target_state *t, const struct breaker_config *b,
			      uint64_t now_ms);
bool target_probe_claim(struct target_state *t, const struct breaker_config *b, uint64_t now_ms);

#endif
