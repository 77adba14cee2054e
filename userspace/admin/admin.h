/*
 * Admin API on its own listener (loopback by default; never on public listeners):
 * GET /metrics, GET /status, POST /reload, GET /config (secrets redacted).
 * Runs in its own thread; it only reads worker shards and the current config.
 */
#ifndef XGATE_ADMIN_ADMIN_H
#define XGATE_ADMIN_ADMIN_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

struct gateway;
struct admin;

/*
 * Binds admin.address of the current config and starts the admin thread. NULL with a
 * message in err on failure, NULL with err == "" when the config disables the admin API.
 * The address is read once: a reload that changes it takes effect at the next restart.
 */
struct admin *admin_start(struct gateway *gw, char *err, unsigned long errlen);
void admin_stop(struct admin *a);

/*
 * Redacted deep copy of the raw config: values under keys naming secrets (secret, password,
 * token, key, credential, private: API keys, HMAC secrets, certificate key paths) and the
 * private members of JWK objects ("k", "d", ...) become "<redacted>"; a value that is
 * exactly a "${NAME}" reference is kept (it names the variable, not the secret). String
 * values of routes[].headers and routes[].split[].match.headers are redacted too.
 */
json_t *config_redact(json_t *raw);

/*
 * Host value (as received, "name[:port]") names the admin listener bound at `bound`/`port`:
 * the bound address literal ("127.0.0.1:9901", "[::1]:9901"), or "localhost" when bound to
 * loopback; with a wildcard bind, any address literal. The port may be omitted.
 */
bool admin_host_allowed(const char *host, size_t len, const struct sockaddr *bound, int port);
/* Authorization value is "Bearer <token>" (compared in constant time). */
bool admin_token_ok(const char *authorization, size_t len, const char *token);

#endif
