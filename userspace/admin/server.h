/*
 * The admin API's HTTP/1.1 server: one thread, epoll, keep-alive, bounded requests,
 * a fixed table of endpoints. Nothing here knows about the gateway, so it is testable
 * on its own.
 */
#ifndef XGATE_ADMIN_SERVER_H
#define XGATE_ADMIN_SERVER_H

#include <stddef.h>
#include <sys/socket.h>

#include <jansson.h>

#include "http/http.h"

#define ADMIN_MAX_HEAD 16384
#define ADMIN_MAX_BODY 65536
#define ADMIN_MAX_CONNS 64
#define ADMIN_IDLE_TIMEOUT_MS 30000

struct admin_response {
	int status;
	const char *content_type; /* default application/json */
	char *body;		  /* malloc'd, owned by the server after the handler returns */
	size_t body_len;
	const char *allow; /* Allow header (405) */
	bool bearer_challenge; /* WWW-Authenticate: Bearer (401) */
};

struct admin_call {
	const struct http_request *req;
	const char *body;
	size_t body_len;
	const char *request_id;
};

typedef void (*admin_handler_fn)(void *ctx, const struct admin_call *call,
				 struct admin_response *resp);

/*
 * Runs before every endpoint (and before 404/405): false when it refused the request and
 * filled resp. NULL: every request goes on.
 */
typedef bool (*admin_guard_fn)(void *ctx, const struct admin_call *call,
			       struct admin_response *resp);

/* Called on the server thread about once a second (and after bursts of requests). */
typedef void (*admin_tick_fn)(void *ctx);

struct admin_endpoint {
	const char *path;
	enum http_method method; /* GET endpoints also answer HEAD */
	admin_handler_fn fn;
};

struct admin_server;

/* Binds and starts the thread; endpoints is terminated by an entry with path NULL. */
struct admin_server *admin_server_start(const struct sockaddr *addr, socklen_t addrlen,
					const struct admin_endpoint *endpoints,
					admin_guard_fn guard, admin_tick_fn tick,
					void *ctx, char *err, size_t errlen);
void admin_server_stop(struct admin_server *s);
/* The bound port (useful when started on port 0). */
int admin_server_port(const struct admin_server *s);

/* Sets resp to the SPEC error body {"error","status","request_id"}. */
void admin_json_error(struct admin_response *resp, int status, const char *reason,
		      const char *request_id);
/* Serializes j (and takes its reference) as the response body. */
void admin_json_body(struct admin_response *resp, int status, json_t *j);

#endif
