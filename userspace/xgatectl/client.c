/* A deliberately small HTTP/1.1 client for the admin API: one request per connection. */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "http/http.h"
#include "xgatectl/ctl.h"

#define MAX_REPLY (64u << 20)

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* "host:port", "[v6]:port". */
static int split_host_port(const char *text, char *host, size_t hostlen, char *port, size_t portlen)
{
	const char *colon;
	size_t n;

	if (text[0] == '[') {
		const char *end = strchr(text, ']');

		if (!end || end[1] != ':')
			return -1;
		n = end - text - 1;
		colon = end + 1;
		text++;
	} else {
		colon = strrchr(text, ':');
		if (!colon)
			return -1;
		n = colon - text;
	}
	if (n == 0 || n >= hostlen || strlen(colon + 1) == 0 || strlen(colon + 1) >= portlen)
		return -1;
	memcpy(host, text, n);
	host[n] = '\0';
	strcpy(port, colon + 1);
	return 0;
}

static int wait_fd(int fd, short events, int64_t deadline)
{
	int64_t left = deadline - now_ms();
	struct pollfd p = {.fd = fd, .events = events};
	int rc;

	if (left <= 0)
		return -ETIMEDOUT;
	do
		rc = poll(&p, 1, (int)left);
	while (rc < 0 && errno == EINTR);
	if (rc < 0)
		return -errno;
	return rc == 0 ? -ETIMEDOUT : 0;
}

static int connect_to(const struct addrinfo *ai, int64_t deadline)
{
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), err = 0;
	socklen_t len = sizeof(err);

	if (fd < 0)
		return -errno;
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
		if (errno != EINPROGRESS) {
			err = -errno;
			close(fd);
			return err;
		}
		err = wait_fd(fd, POLLOUT, deadline);
		if (!err && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err)
			err = -err;
		if (err) {
			close(fd);
			return err;
		}
	}
	return fd;
}

static int send_request(int fd, const char *req, size_t len, int64_t deadline)
{
	while (len) {
		ssize_t n = send(fd, req, len, MSG_NOSIGNAL);

		if (n < 0 && errno == EAGAIN) {
			int err = wait_fd(fd, POLLOUT, deadline);

			if (err)
				return err;
			continue;
		}
		if (n < 0 && errno != EINTR)
			return -errno;
		if (n > 0) {
			req += n;
			len -= n;
		}
	}
	return 0;
}

/* Reads until the server closes (we asked for Connection: close). */
static int read_all(int fd, char **out, size_t *outlen, int64_t deadline)
{
	size_t len = 0, cap = 65536;
	char *buf = malloc(cap + 1);

	if (!buf)
		return -ENOMEM;
	for (;;) {
		ssize_t n;
		int err;

		if (len == cap) {
			char *p = cap < MAX_REPLY ? realloc(buf, cap * 2 + 1) : NULL;

			if (!p) {
				free(buf);
				return -EFBIG;
			}
			buf = p;
			cap *= 2;
		}
		n = recv(fd, buf + len, cap - len, 0);
		if (n > 0) {
			len += n;
			continue;
		}
		if (n == 0)
			break;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN) {
			free(buf);
			return -errno;
		}
		err = wait_fd(fd, POLLIN, deadline);
		if (err) {
			free(buf);
			return err;
		}
	}
	buf[len] = '\0';
	*out = buf;
	*outlen = len;
	return 0;
}

static int parse_reply(const char *method, char *raw, size_t len, struct http_reply *reply)
{
	static const struct http_limits limits = {.max_header_bytes = 65536};
	struct http_response resp;
	int head = http_parse_response(raw, len, &limits,
				       strcmp(method, "HEAD") ? HTTP_GET : HTTP_HEAD, &resp);
	size_t body_len;

	if (head <= 0)
		return -EPROTO;
	body_len = len - head;
	if (resp.body == HTTP_BODY_LENGTH) {
		if (body_len < resp.content_length)
			return -EPROTO;
		body_len = resp.content_length;
	} else if (resp.body == HTTP_BODY_CHUNKED) {
		return -EPROTO; /* the admin API never sends chunked bodies */
	}
	reply->status = resp.status;
	reply->body = malloc(body_len + 1);
	if (!reply->body)
		return -ENOMEM;
	memcpy(reply->body, raw + head, body_len);
	reply->body[body_len] = '\0';
	reply->body_len = body_len;
	return 0;
}

static int unreachable(const struct ctl_opts *o, const char *why)
{
	fprintf(stderr, "xgatectl: cannot reach the admin API at %s: %s (is xgate running?)\n",
		o->admin, why);
	return EXIT_UNREACHABLE;
}

static int exchange(const struct ctl_opts *o, int fd, const char *method, const char *path,
		    const char *body, size_t body_len, int64_t deadline, struct http_reply *reply)
{
	char req[1024], *raw = NULL;
	size_t rawlen = 0;
	int err, n = snprintf(req, sizeof(req),
			      "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: xgatectl\r\n%s%s%s"
			      "Content-Type: application/json\r\nContent-Length: %zu\r\n"
			      "Connection: close\r\n\r\n",
			      method, path, o->admin, o->token ? "Authorization: Bearer " : "",
			      o->token ? o->token : "", o->token ? "\r\n" : "", body_len);

	if (n < 0 || (size_t)n >= sizeof(req))
		return unreachable(o, "request too long");
	err = send_request(fd, req, n, deadline);
	if (!err && body_len)
		err = send_request(fd, body, body_len, deadline);
	if (!err)
		err = read_all(fd, &raw, &rawlen, deadline);
	if (err)
		return unreachable(o, strerror(-err));
	err = parse_reply(method, raw, rawlen, reply);
	free(raw);
	if (err)
		return unreachable(o, err == -EPROTO ? "not an HTTP response" : strerror(-err));
	return 0;
}

int admin_request(const struct ctl_opts *o, const char *method, const char *path,
		  struct http_reply *reply)
{
	return admin_request_body(o, method, path, NULL, 0, reply);
}

int admin_request_body(const struct ctl_opts *o, const char *method, const char *path,
		       const char *body, size_t body_len, struct http_reply *reply)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV}, *ai, *it;
	int64_t deadline = now_ms() + o->timeout_ms;
	char host[256], port[16];
	int fd = -ENOENT, rc;

	memset(reply, 0, sizeof(*reply));
	if (split_host_port(o->admin, host, sizeof(host), port, sizeof(port))) {
		fprintf(stderr, "xgatectl: --admin wants HOST:PORT, got \"%s\"\n", o->admin);
		return EXIT_USAGE;
	}
	rc = getaddrinfo(host, port, &hints, &ai);
	if (rc)
		return unreachable(o, gai_strerror(rc));
	for (it = ai; it; it = it->ai_next) {
		fd = connect_to(it, deadline);
		if (fd >= 0)
			break;
	}
	freeaddrinfo(ai);
	if (fd < 0)
		return unreachable(o, strerror(-fd));
	rc = exchange(o, fd, method, path, body, body_len, deadline, reply);
	close(fd);
	return rc;
}

void http_reply_free(struct http_reply *r)
{
	free(r->body);
	r->body = NULL;
}
