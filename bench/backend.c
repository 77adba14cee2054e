// SPDX-License-Identifier: GPL-2.0
/*
 * Benchmark backend: answers every HTTP/1.1 request with a fixed small JSON body on
 * keep-alive connections, from one epoll thread. It exists because the benchmark box
 * has two cores: wrk and both backends share one, so the backends must cost far less
 * per request than the proxy under test or they, not the proxy, set the req/s.
 *
 * Usage: backend HOST:PORT   (IPv4). Request bodies are skipped via Content-Length;
 * chunked request bodies are not supported (the benchmark scripts never send them).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF_SIZE 16384
#define MAX_EVENTS 256
#define RESP_MAX 256

struct conn {
	int fd;
	size_t len;	    /* bytes buffered in buf */
	size_t body_left;   /* request body bytes still to discard */
	char buf[BUF_SIZE];
};

static char response[RESP_MAX];
static size_t response_len;
static volatile sig_atomic_t stopping;

static void on_signal(int sig)
{
	stopping = 1;
}

static int listen_on(const char *spec)
{
	char host[64];
	const char *colon = strrchr(spec, ':');
	struct sockaddr_in addr = { .sin_family = AF_INET };
	int fd, one = 1;

	if (!colon || (size_t)(colon - spec) >= sizeof(host)) {
		fprintf(stderr, "backend: want HOST:PORT, got %s\n", spec);
		return -1;
	}
	memcpy(host, spec, colon - spec);
	host[colon - spec] = '\0';
	addr.sin_port = htons((unsigned short)atoi(colon + 1));
	if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) {
		fprintf(stderr, "backend: bad IPv4 address %s\n", host);
		return -1;
	}
	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    bind(fd, (struct sockaddr *)&addr, sizeof(addr)) || listen(fd, 4096)) {
		perror("backend: listen");
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

/* Content-Length of a complete request head (0 when absent); -1 when malformed. */
static long long content_length(const char *head, size_t len)
{
	const char *p = head, *end = head + len;
	static const char name[] = "\r\ncontent-length:";

	for (; p + sizeof(name) - 1 < end; p++) {
		if (*p != '\r' || strncasecmp(p, name, sizeof(name) - 1))
			continue;
		p += sizeof(name) - 1;
		while (p < end && (*p == ' ' || *p == '\t'))
			p++;
		if (p >= end || *p < '0' || *p > '9')
			return -1;
		return strtoll(p, NULL, 10);
	}
	return 0;
}

/* Consumes complete requests from c->buf; returns how many responses are due, -1 on error. */
static int consume_requests(struct conn *c)
{
	size_t off = 0;
	int due = 0;

	for (;;) {
		if (c->body_left) {
			size_t take = c->len - off < c->body_left ? c->len - off : c->body_left;

			off += take;
			c->body_left -= take;
			if (c->body_left)
				break;
			continue;
		}
		char *head_end = memmem(c->buf + off, c->len - off, "\r\n\r\n", 4);

		if (!head_end) {
			if (c->len - off == BUF_SIZE)
				return -1; /* head larger than the buffer */
			break;
		}
		long long cl = content_length(c->buf + off, (size_t)(head_end - c->buf) - off + 2);

		if (cl < 0)
			return -1;
		off = (size_t)(head_end - c->buf) + 4;
		c->body_left = (size_t)cl;
		due++;
	}
	memmove(c->buf, c->buf + off, c->len - off);
	c->len -= off;
	return due;
}

static int send_responses(int fd, int count)
{
	char out[RESP_MAX * 16];
	int batch;

	while (count > 0) {
		batch = count < 16 ? count : 16;
		for (int i = 0; i < batch; i++)
			memcpy(out + i * response_len, response, response_len);
		/* Short sends on a fresh keep-alive socket with tiny responses do not happen
		 * in practice; treat them as an error rather than buffering. */
		if (send(fd, out, batch * response_len, MSG_NOSIGNAL) != (ssize_t)(batch * response_len))
			return -1;
		count -= batch;
	}
	return 0;
}

static void close_conn(int ep, struct conn *c)
{
	epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	free(c);
}

static void on_readable(int ep, struct conn *c)
{
	for (;;) {
		ssize_t n = recv(c->fd, c->buf + c->len, BUF_SIZE - c->len, 0);
		int due;

		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
			close_conn(ep, c);
			return;
		}
		if (n < 0)
			return;
		c->len += (size_t)n;
		due = consume_requests(c);
		if (due < 0 || (due && send_responses(c->fd, due))) {
			close_conn(ep, c);
			return;
		}
	}
}

static void on_accept(int ep, int lfd)
{
	for (;;) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC), one = 1;
		struct epoll_event ev = { .events = EPOLLIN };
		struct conn *c;

		if (fd < 0)
			return;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		c = calloc(1, sizeof(*c));
		if (!c) {
			close(fd);
			continue;
		}
		c->fd = fd;
		ev.data.ptr = c;
		if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev)) {
			close(fd);
			free(c);
		}
	}
}

int main(int argc, char **argv)
{
	struct epoll_event events[MAX_EVENTS], lev = { .events = EPOLLIN };
	const char *body_fmt = "{\"backend\":\"%s\",\"ok\":true}\n";
	char body[128];
	int lfd, ep;

	if (argc != 2) {
		fprintf(stderr, "usage: %s HOST:PORT\n", argv[0]);
		return 2;
	}
	snprintf(body, sizeof(body), body_fmt, strrchr(argv[1], ':') ? strrchr(argv[1], ':') + 1 : "");
	response_len = (size_t)snprintf(response, sizeof(response),
					"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
					"Content-Length: %zu\r\n\r\n%s",
					strlen(body), body);
	lfd = listen_on(argv[1]);
	if (lfd < 0)
		return 1;
	ep = epoll_create1(EPOLL_CLOEXEC);
	lev.data.ptr = NULL;
	if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev)) {
		perror("backend: epoll");
		return 1;
	}
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	while (!stopping) {
		int n = epoll_wait(ep, events, MAX_EVENTS, 500);

		for (int i = 0; i < n; i++) {
			if (!events[i].data.ptr)
				on_accept(ep, lfd);
			else
				on_readable(ep, events[i].data.ptr);
		}
	}
	return 0;
}
