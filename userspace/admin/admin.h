/*
 * Admin API on its own listener (loopback by default; never on public listeners):
 * GET /metrics, GET /status, POST /reload, GET /config (secrets redacted).
 * Runs in its own thread; it only reads worker shards and the current config.
 */
#ifndef XGATE_ADMIN_ADMIN_H
#define XGATE_ADMIN_ADMIN_H

struct gateway;
struct admin;

struct admin *admin_start(struct gateway *gw, char *err, unsigned long errlen);
void admin_stop(struct admin *a);

/* Redacted copy of the raw config (API keys, HMAC secrets, oct JWK "k", env values). */
#include <jansson.h>
json_t *config_redact(json_t *raw);

#endif
