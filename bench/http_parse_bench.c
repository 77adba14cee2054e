/*
 * Microbenchmark: ns per parse of a typical ~400-byte browser-like request head, and of a
 * small chunked body scan. Usage: http_parse_bench [iterations]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "http/http.h"

static const char request[] =
    "GET /api/v1/users/12345/orders?status=open&limit=50 HTTP/1.1\r\n"
    "Host: api.example.com\r\n"
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0\r\n"
    "Accept: application/json, text/plain, */*\r\n"
    "Accept-Language: en-US,en;q=0.5\r\n"
    "Accept-Encoding: gzip, deflate, br\r\n"
    "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1MSJ9.c2lnbmF0dXJl\r\n"
    "Connection: keep-alive\r\n"
    "X-Request-Id: 7f1c2d3e-4b5a-6978-8a9b-0c1d2e3f4a5b\r\n"
    "\r\n";

static const char chunked[] = "10\r\n0123456789abcdef\r\n20;ext=1\r\n0123456789abcdef0123456789"
			      "abcdef\r\n0\r\nX-Trailer: v\r\n\r\n";

static double now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	long iters = argc > 1 ? atol(argv[1]) : 2000000;
	struct http_limits limits = {.max_request_line = 8192, .max_header_bytes = 16384};
	static struct http_request req;
	volatile long sink = 0;
	double t0, t1;

	if (iters <= 0) {
		fprintf(stderr, "usage: %s [iterations > 0]\n", argv[0]);
		return 2;
	}
	if (http_parse_request(request, sizeof(request) - 1, &limits, &req) !=
	    (int)sizeof(request) - 1) {
		fprintf(stderr, "benchmark request does not parse\n");
		return 1;
	}
	for (long i = 0; i < iters / 10; i++) /* warm-up */
		sink += http_parse_request(request, sizeof(request) - 1, &limits, &req);
	t0 = now_ns();
	for (long i = 0; i < iters; i++)
		sink += http_parse_request(request, sizeof(request) - 1, &limits, &req);
	t1 = now_ns();
	printf("http_parse_request: %zu-byte head, %d headers: %.1f ns/request (%.2f GB/s)\n",
	       sizeof(request) - 1, req.nheaders, (t1 - t0) / iters,
	       (sizeof(request) - 1) * (double)iters / (t1 - t0));

	t0 = now_ns();
	for (long i = 0; i < iters; i++) {
		struct http_chunked c;

		http_chunked_init(&c);
		sink += http_chunked_scan(&c, chunked, sizeof(chunked) - 1, NULL, NULL);
	}
	t1 = now_ns();
	printf("http_chunked_scan: %zu-byte body: %.1f ns/body\n", sizeof(chunked) - 1,
	       (t1 - t0) / iters);
	return sink == 0;
}
