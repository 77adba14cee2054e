#include "admin/server.h"

#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"

#define IN_CAP (ADMIN_MAX_HEAD + ADMIN_MAX_BODY)

struct conn {
	int fd;
	char in[IN_CAP];
	size_t in_len;
	char *out;
	size_t out_len, out_off;
	bool close_after_write;
	int64_t last_active_ms;
};

struct admin_server {
	int listen_fd, epoll_fd, stop_fd;
	int port;
	pthread_t thread;
	const struct admin_endpoint *endpoints;
	admin_guard_fn guard;
	admin_tick_fn tick;
	void *ctx;
	struct conn *conns[ADMIN_MAX_CONNS];
	unsigned long next_request_id;
	char allow[128]; /* Allow header of the current 405 */
};

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void admin_json_body(struct admin_response *resp, int status, json_t *j)
{
	char *text = j ? json_dumps(j, JSON_INDENT(2)) : NULL;

	json_decref(j);
	free(resp->body);
	resp->status = status;
	resp->content_type = "application/json";
	if (!text) {
		static const char oom[] = "{\"error\": \"out of memory\", \"status\": 500}\n";

		resp->status = 500;
		resp->body = strdup(oom);
		resp->body_len = resp->body ? strlen(oom) : 0;
		return;
	}
	resp->body_len = strlen(text);
	/* A trailing newline makes curl output and line-based tools behave. */
	resp->body = realloc(text, resp->body_len + 2);
	if (!resp->body) {
		resp->body = text;
		return;
	}
	resp->body[resp->body_len++] = '\n';
	resp->body[resp->body_len] = '\0';
}

void admin_json_error(struct admin_response *resp, int status, const char *reason,
		      const char *request_id)
{
	admin_json_body(resp, status,
			json_pack("{s:s, s:i, s:s}", "error", reason, "status", status,
				  "request_id", request_id ? request_id : ""));
}

static void conn_close(struct admin_server *s, int slot)
{
	struct conn *c = s->conns[slot];

	epoll_ctl(s->epoll_fd, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	free(c->out);
	free(c);
	s->conns[slot] = NULL;
}

/* Request path without the query string equals `path`. */
static bool path_is(struct http_str p, const char *path)
{
	return p.len == strlen(path) && !memcmp(p.p, path, p.len);
}

static void dispatch(struct admin_server *s, const struct admin_call *call,
		     struct admin_response *resp)
{
	char *allow = s->allow;
	bool path_known = false;
	enum http_method m = call->req->method;

	allow[0] = '\0';
	if (s->guard && !s->guard(s->ctx, call, resp))
		return;
	for (const struct admin_endpoint *e = s->endpoints; e->path; e++) {
		if (!path_is(call->req->path, e->path))
			continue;
		path_known = true;
		if (m == e->method || (m == HTTP_HEAD && e->method == HTTP_GET)) {
			e->fn(s->ctx, call, resp);
			return;
		}
		snprintf(allow + strlen(allow), sizeof(s->allow) - strlen(allow), "%s%s%s",
			 *allow ? ", " : "", http_method_name(e->method),
			 e->method == HTTP_GET ? ", HEAD" : "");
	}
	if (!path_known) {
		admin_json_error(resp, 404, "no such admin endpoint", call->request_id);
		return;
	}
	admin_json_error(resp, 405, "method not allowed", call->request_id);
	resp->allow = allow;
}

/* Builds the whole response (head + body) into c->out. */
static bool queue_response(struct conn *c, const struct admin_response *r, bool head_only,
			   const char *request_id)
{
	char head[512];
	size_t body_len = head_only ? 0 : r->body_len;
	int n =
	    snprintf(head, sizeof(head),
		     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
		     "Cache-Control: no-store\r\nX-Request-Id: %s\r\n%s%s%s%s%s\r\n",
		     r->status, http_status_reason(r->status),
		     r->content_type ? r->content_type : "application/json", r->body_len,
		     request_id, r->allow ? "Allow: " : "", r->allow ? r->allow : "",
		     r->allow ? "\r\n" : "",
		     r->bearer_challenge ? "WWW-Authenticate: Bearer realm=\"xgate admin\"\r\n" : "",
		     c->close_after_write ? "Connection: close\r\n" : "");
	char *out = malloc(n + body_len);

	if (!out)
		return false;
	memcpy(out, head, n);
	if (body_len)
		memcpy(out + n, r->body, body_len);
	free(c->out);
	c->out = out;
	c->out_len = n + body_len;
	c->out_off = 0;
	return true;
}

static void error_response(struct conn *c, int status, const char *reason, const char *rid)
{
	struct admin_response resp = {0};

	c->close_after_write = true;
	admin_json_error(&resp, status, reason, rid);
	if (!queue_response(c, &resp, false, rid))
		c->out_len = 0;
	free(resp.body);
}

static const char *parse_error_reason(int rc)
{
	switch (rc) {
	case HTTP_ERR_URI_TOO_LONG:
		return "request line too long";
	case HTTP_ERR_HEADERS_TOO_LARGE:
		return "request headers too large";
	case HTTP_ERR_NOT_IMPLEMENTED:
		return "not implemented";
	case HTTP_ERR_VERSION:
		return "HTTP version not supported";
	default:
		return "malformed request";
	}
}

/*
 * Handles at most one complete request from c->in. Returns 1 when a response was
 * queued, 0 when more input is needed.
 */
static int handle_one(struct admin_server *s, struct conn *c)
{
	static const struct http_limits limits = {.max_request_line = 8192,
						  .max_header_bytes = ADMIN_MAX_HEAD};
	struct http_request req;
	struct admin_response resp = {0};
	char rid[160];
	size_t total;
	int rc = http_parse_request(c->in, c->in_len, &limits, &req);

	snprintf(rid, sizeof(rid), "admin-%lx", ++s->next_request_id);
	if (rc == HTTP_INCOMPLETE) {
		if (c->in_len < ADMIN_MAX_HEAD)
			return 0;
		rc = HTTP_ERR_HEADERS_TOO_LARGE;
	}
	if (rc < 0) {
		error_response(c, -rc, parse_error_reason(rc), rid);
		return 1;
	}
	const struct http_header *h = http_find_header(req.headers, req.nheaders, "X-Request-Id");
	if (h && http_request_id_valid(h->value))
		snprintf(rid, sizeof(rid), "%.*s", (int)h->value.len, h->value.p);
	if (req.body == HTTP_BODY_CHUNKED) {
		error_response(c, 411, "chunked request bodies are not accepted", rid);
		return 1;
	}
	if (req.body == HTTP_BODY_LENGTH && req.content_length > ADMIN_MAX_BODY) {
		error_response(c, 413, "request body too large", rid);
		return 1;
	}
	total = rc + (req.body == HTTP_BODY_LENGTH ? req.content_length : 0);
	if (c->in_len < total)
		return 0;
	c->close_after_write = !req.keep_alive;
	dispatch(s,
		 &(struct admin_call){
		     .req = &req, .body = c->in + rc, .body_len = total - rc, .request_id = rid},
		 &resp);
	if (!queue_response(c, &resp, req.method == HTTP_HEAD, rid)) {
		c->close_after_write = true;
		c->out_len = 0;
	}
	free(resp.body);
	memmove(c->in, c->in + total, c->in_len - total);
	c->in_len -= total;
	return 1;
}

/* Writes what is queued; false when the connection is done (error or close requested). */
static bool flush_out(struct admin_server *s, struct conn *c)
{
	while (c->out_off < c->out_len) {
		ssize_t n = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN) {
			struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.fd = c->fd};

			epoll_ctl(s->epoll_fd, EPOLL_CTL_MOD, c->fd, &ev);
			return true;
		}
		if (n <= 0)
			return false;
		c->out_off += n;
	}
	free(c->out);
	c->out = NULL;
	c->out_len = c->out_off = 0;
	if (c->close_after_write)
		return false;
	struct epoll_event ev = {.events = EPOLLIN, .data.fd = c->fd};
	epoll_ctl(s->epoll_fd, EPOLL_CTL_MOD, c->fd, &ev);
	return true;
}

/* Reads and serves requests until input runs dry or output would block. */
static void conn_event(struct admin_server *s, int slot)
{
	struct conn *c = s->conns[slot];

	c->last_active_ms = now_ms();
	if (c->out && !flush_out(s, c))
		goto close;
	while (!c->out) {
		if (handle_one(s, c)) {
			if (!flush_out(s, c))
				goto close;
			continue;
		}
		if (c->in_len == sizeof(c->in)) /* cannot happen: limits are checked first */
			goto close;
		ssize_t n = read(c->fd, c->in + c->in_len, sizeof(c->in) - c->in_len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0)
			goto close;
		c->in_len += n;
	}
	return;
close:
	conn_close(s, slot);
}

static int find_slot(struct admin_server *s, int fd)
{
	for (int i = 0; i < ADMIN_MAX_CONNS; i++)
		if (s->conns[i] && s->conns[i]->fd == fd)
			return i;
	return -1;
}

static void accept_all(struct admin_server *s)
{
	for (;;) {
		int fd = accept4(s->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC), slot;
		struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};

		if (fd < 0)
			return;
		for (slot = 0; slot < ADMIN_MAX_CONNS && s->conns[slot]; slot++)
			;
		if (slot == ADMIN_MAX_CONNS) {
			log_warn("admin", "too many admin connections, refusing one");
			close(fd);
			continue;
		}
		s->conns[slot] = calloc(1, sizeof(struct conn));
		if (!s->conns[slot] || epoll_ctl(s->epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0) {
			free(s->conns[slot]);
			s->conns[slot] = NULL;
			close(fd);
			continue;
		}
		s->conns[slot]->fd = fd;
		s->conns[slot]->last_active_ms = now_ms();
	}
}

static void close_idle(struct admin_server *s)
{
	int64_t now = now_ms();

	for (int i = 0; i < ADMIN_MAX_CONNS; i++)
		if (s->conns[i] && now - s->conns[i]->last_active_ms > ADMIN_IDLE_TIMEOUT_MS)
			conn_close(s, i);
}

static void *server_main(void *arg)
{
	struct admin_server *s = arg;
	struct epoll_event evs[16];

	for (;;) {
		int n = epoll_wait(s->epoll_fd, evs, 16, 1000);

		if (n < 0 && errno != EINTR) {
			log_error("admin", "epoll_wait: %s", strerror(errno));
			break;
		}
		for (int i = 0; i < n; i++) {
			int fd = evs[i].data.fd, slot;

			if (fd == s->stop_fd)
				return NULL;
			if (fd == s->listen_fd) {
				accept_all(s);
				continue;
			}
			slot = find_slot(s, fd);
			if (slot >= 0)
				conn_event(s, slot);
		}
		close_idle(s);
		if (s->tick)
			s->tick(s->ctx);
	}
	return NULL;
}

static int listen_on(const struct sockaddr *addr, socklen_t addrlen, char *err, size_t errlen)
{
	int fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;

	if (fd < 0) {
		snprintf(err, errlen, "admin socket: %s", strerror(errno));
		return -1;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, addr, addrlen) < 0 || listen(fd, 64) < 0) {
		snprintf(err, errlen, "admin address: %s", strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

static int bound_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
		return -1;
	if (ss.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&ss)->sin_port);
	return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
}

struct admin_server *admin_server_start(const struct sockaddr *addr, socklen_t addrlen,
					const struct admin_endpoint *endpoints,
					admin_guard_fn guard, admin_tick_fn tick,
					void *ctx, char *err, size_t errlen)
{
	struct admin_server *s = calloc(1, sizeof(*s));
	struct epoll_event ev = {.events = EPOLLIN};
	int rc;

	if (!s) {
		snprintf(err, errlen, "admin: out of memory");
		return NULL;
	}
	s->endpoints = endpoints;
	s->guard = guard;
	s->tick = tick;
	s->ctx = ctx;
	s->epoll_fd = s->stop_fd = -1;
	s->listen_fd = listen_on(addr, addrlen, err, errlen);
	if (s->listen_fd < 0)
		goto fail;
	s->port = bound_port(s->listen_fd);
	s->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	s->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (s->epoll_fd < 0 || s->stop_fd < 0) {
		snprintf(err, errlen, "admin: %s", strerror(errno));
		goto fail;
	}
	ev.data.fd = s->listen_fd;
	epoll_ctl(s->epoll_fd, EPOLL_CTL_ADD, s->listen_fd, &ev);
	ev.data.fd = s->stop_fd;
	epoll_ctl(s->epoll_fd, EPOLL_CTL_ADD, s->stop_fd, &ev);
	rc = pthread_create(&s->thread, NULL, server_main, s);
	if (rc) {
		snprintf(err, errlen, "admin thread: %s", strerror(rc));
		goto fail;
	}
	return s;
fail:
	if (s->listen_fd >= 0)
		close(s->listen_fd);
	if (s->epoll_fd >= 0)
		close(s->epoll_fd);
	if (s->stop_fd >= 0)
		close(s->stop_fd);
	free(s);
	return NULL;
}

void admin_server_stop(struct admin_server *s)
{
	uint64_t one = 1;

	if (!s)
		return;
	if (write(s->stop_fd, &one, sizeof(one)) < 0)
		log_warn("admin", "stop signal: %s", strerror(errno));
	pthread_join(s->thread, NULL);
	for (int i = 0; i < ADMIN_MAX_CONNS; i++)
		if (s->conns[i])
			conn_close(s, i);
	close(s->listen_fd);
	close(s->epoll_fd);
	close(s->stop_fd);
	free(s);
}

int admin_server_port(const struct admin_server *s)
{
	return s->port;
}
