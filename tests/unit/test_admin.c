/* Admin API: the HTTP server (keep-alive, limits, errors, dispatch) and /config redaction. */
#include <arpa/inet.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "admin/admin.h"
#include "admin/server.h"
#include "check.h"

static void hello(void *ctx, const struct admin_call *call, struct admin_response *resp)
{
	int *calls = ctx;

	(*calls)++;
	resp->status = 200;
	resp->content_type = "text/plain";
	resp->body = strdup("hello\n");
	resp->body_len = 6;
}

static void echo_len(void *ctx, const struct admin_call *call, struct admin_response *resp)
{
	admin_json_body(resp, 200, json_pack("{s:I}", "body_len", (json_int_t)call->body_len));
}

static const struct admin_endpoint endpoints[] = {
    {"/hello", HTTP_GET, hello},
    {"/echo", HTTP_POST, echo_len},
    {NULL, 0, NULL},
};

static struct admin_server *server;
static int hello_calls;

static int connect_server(void)
{
	struct sockaddr_in sin = {.sin_family = AF_INET,
				  .sin_port = htons(admin_server_port(server))};
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static void send_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

		if (w <= 0)
			return;
		p += w;
		n -= w;
	}
}

/* Reads one response into out (NUL-terminated); returns its length, 0 on EOF, -1 timeout. */
static void send_str(int fd, const char *s)
{
	send_all(fd, s, strlen(s));
}

static int read_response(int fd, char *out, size_t cap, struct http_response *resp)
{
	static const struct http_limits limits = {.max_header_bytes = 16384};
	size_t len = 0;

	for (;;) {
		int rc = http_parse_response(out, len, &limits, HTTP_GET, resp);

		if (rc > 0 && len >= rc + resp->content_length) {
			out[len] = '\0';
			return (int)len;
		}
		if (rc < 0)
			return -1;
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, 3000) <= 0)
			return -1;
		/* One byte at a time so a second pipelined response stays in the socket. */
		ssize_t n = recv(fd, out + len, 1, 0);
		if (n <= 0)
			return len ? -1 : 0;
		len++;
		if (len >= cap - 1)
			return -1;
	}
}

static bool closed_by_server(int fd)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	char c;

	return poll(&p, 1, 3000) == 1 && recv(fd, &c, 1, 0) == 0;
}

static const char *body_of(const char *resp)
{
	const char *b = strstr(resp, "\r\n\r\n");

	return b ? b + 4 : "";
}

static void test_keepalive_and_head(void)
{
	char buf[8192];
	struct http_response r;
	int fd = connect_server(), before = hello_calls;

	CHECK(fd >= 0);
	send_str(fd, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
	CHECK(read_response(fd, buf, sizeof(buf), &r) > 0);
	CHECK_EQ(r.status, 200);
	CHECK_STR(body_of(buf), "hello\n");
	CHECK(r.keep_alive);
	/* Same connection, query string ignored for dispatch. */
	send_str(fd, "GET /hello?x=1 HTTP/1.1\r\nHost: x\r\nX-Request-Id: abc-123\r\n\r\n");
	CHECK(read_response(fd, buf, sizeof(buf), &r) > 0);
	CHECK_EQ(r.status, 200);
	CHECK(strstr(buf, "X-Request-Id: abc-123\r\n") != NULL);
	/* HEAD: headers with the GET length, no body. */
	const char head[] =
	    "HEAD /hello HTTP/1.1\r\nHost: x\r\n\r\nGET /hello HTTP/1.1\r\nHost: x\r\n\r\n";
	send_all(fd, head, sizeof(head) - 1);
	{
		static const struct http_limits limits = {.max_header_bytes = 16384};
		char all[4096];
		size_t len = 0;
		struct pollfd p = {.fd = fd, .events = POLLIN};

		while (len < sizeof(all) - 1 && poll(&p, 1, 500) == 1) {
			ssize_t n = recv(fd, all + len, sizeof(all) - 1 - len, 0);

			if (n <= 0)
				break;
			len += n;
		}
		all[len] = '\0';
		int rc = http_parse_response(all, len, &limits, HTTP_HEAD, &r);
		CHECK(rc > 0);
		CHECK_EQ(r.status, 200);
		CHECK(strstr(all, "Content-Length: 6\r\n") != NULL);
		/* the pipelined GET follows right after the HEAD head */
		CHECK(rc > 0 && !strncmp(all + rc, "HTTP/1.1 200", 12));
		CHECK(strstr(all + (rc > 0 ? rc : 0), "hello\n") != NULL);
	}
	CHECK_EQ(hello_calls - before, 4);
	close(fd);
}

static void test_errors(void)
{
	char buf[8192];
	struct http_response r;
	json_t *j;
	int fd = connect_server();

	send_str(fd, "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n");
	CHECK(read_response(fd, buf, sizeof(buf), &r) > 0);
	CHECK_EQ(r.status, 404);
	j = json_loads(body_of(buf), 0, NULL);
	CHECK_EQ(json_integer_value(json_object_get(j, "status")), 404);
	CHECK(json_is_string(json_object_get(j, "error")));
	CHECK(json_string_length(json_object_get(j, "request_id")) > 0);
	CHECK(strstr(buf, "Content-Type: application/json\r\n") != NULL);
	json_decref(j);
	/* 405 names the allowed methods; the connection stays usable. */
	send_str(fd, "POST /hello HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
	CHECK(read_response(fd, buf, sizeof(buf), &r) > 0);
	CHECK_EQ(r.status, 405);
	CHECK(strstr(buf, "Allow: GET, HEAD\r\n") != NULL);
	send_str(fd, "GET /echo HTTP/1.1\r\nHost: x\r\n\r\n");
	CHECK(read_response(fd, buf, sizeof(buf), &r) > 0);
	CHECK_EQ(r.status, 405);
	CHECK(strstr(buf, "Allow: POST\r\n") != NULL);
	/* Malformed: 400, then the server closes. */
	send_str(fd, "GET /hello HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n");
	CHECK(read_response(fd, buf, sizeof(buf), &r) > 0);
	CHECK_EQ(r.status, 400);
	CHECK(strstr(buf, "Connection: close\r\n") != NULL);
	CHECK(closed_by_server(fd));
	close(fd);
}

static void test_limits(void)
{
	char buf[8192];
	struct http_response r;
	int fd = connect_server();
	size_t big = ADMIN_MAX_HEAD + 100;
	char *huge = malloc(big);

	CHECK(huge != NULL);
	if (!huge)
		return;
	/* Headers that never end: 431 once the bound is passed. */
	memcpy(huge, "GET /hello HTTP/1.1\r\nHost: x\r\nX-Pad: ", 37);
	memset(huge + 37, 'a', big - 37);
	send_all(fd, huge, big);
	CHECK(read_response(fd, buf, sizeof(buf), &r) > 0);
	CHECK_EQ(r.status, 431);
	CHECK(closed_by_server(fd));
	close(fd);
	free(huge);

	fd = connect_server();
	send_str(fd, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n");
	CHECK(read_response(fd, buf, sizeof(buf), &r) > 0);
	CHECK_EQ(r.status, 413);
	CHECK(closed_by_server(fd));
	close(fd);

	fd = connect_server();
	send_str(fd,
		 "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
	CHECK(read_response(fd, buf, sizeof(buf), &r) > 0);
	CHECK_EQ(r.status, 411);
	close(fd);

	/* A body within the bound, sent in two pieces, reaches the handler whole. */
	fd = connect_server();
	send_str(fd, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\nConnection: "
		     "close\r\n\r\nhello");
	usleep(50000);
	send_str(fd, " world");
	CHECK(read_response(fd, buf, sizeof(buf), &r) > 0);
	CHECK_EQ(r.status, 200);
	CHECK(strstr(body_of(buf), "\"body_len\": 11") != NULL);
	CHECK(closed_by_server(fd));
	close(fd);
}

static void test_many_connections(void)
{
	int fds[ADMIN_MAX_CONNS + 8], ok = 0;
	char buf[4096];
	struct http_response r;

	for (int i = 0; i < ADMIN_MAX_CONNS + 8; i++)
		fds[i] = connect_server();
	usleep(100000);
	for (int i = 0; i < ADMIN_MAX_CONNS + 8; i++) {
		if (fds[i] < 0)
			continue;
		send_str(fds[i], "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
		if (read_response(fds[i], buf, sizeof(buf), &r) > 0 && r.status == 200)
			ok++;
	}
	/* The bound holds (extra connections are refused), and the server keeps serving. */
	CHECK(ok >= ADMIN_MAX_CONNS - 1 && ok <= ADMIN_MAX_CONNS);
	for (int i = 0; i < ADMIN_MAX_CONNS + 8; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	usleep(100000);
	int fd = connect_server();
	send_str(fd, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
	CHECK(read_response(fd, buf, sizeof(buf), &r) > 0);
	CHECK_EQ(r.status, 200);
	close(fd);
}

static void test_bind_error(void)
{
	struct sockaddr_in sin = {.sin_family = AF_INET,
				  .sin_port = htons(admin_server_port(server))};
	char err[256];

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	CHECK(admin_server_start((struct sockaddr *)&sin, sizeof(sin), endpoints, NULL, NULL, NULL, err,
				 sizeof(err)) == NULL);
	CHECK(strstr(err, "Address already in use") != NULL);
}

static const char *demo_config =
    "{\"listeners\": [{\"name\": \"tls\", \"address\": \"0.0.0.0:8443\", \"tls\": "
    "{\"certificates\":"
    "  [{\"cert\": \"config/certs/demo.crt\", \"key\": \"/etc/xgate/PRIVATE-KEY-PATH\"}]}}],"
    " \"upstreams\": [{\"name\": \"users\", \"keepalive\": 32, \"targets\": [{\"address\": "
    "\"127.0.0.1:9101\"}]}],"
    " \"routes\": [{\"name\": \"users\", \"paths\": [\"/api\"], \"headers\": {\"X-Shared-Secret\": "
    "\"HDRSECRET\"}}],"
    " \"auth\": {\"jwt\": {\"jwks_file\": \"config/keys/jwks.json\", \"hmac_secret\": "
    "\"HMACSECRET\","
    "   \"jwks\": {\"keys\": [{\"kty\": \"oct\", \"kid\": \"k1\", \"k\": \"OCTSECRET\"},"
    "                      {\"kty\": \"RSA\", \"kid\": \"r1\", \"n\": \"PUBLICN\", \"e\": "
    "\"AQAB\", \"d\": \"RSAPRIVD\"}]}},"
    "   \"api_keys\": {\"header\": \"X-API-Key\"}},"
    " \"consumers\": [{\"name\": \"mobile-app\", \"api_keys\": [\"LITERALKEY1\", "
    "\"${MOBILE_APP_KEY}\"],"
    "   \"password\": 12345, \"roles\": [\"user\"]}],"
    " \"admin\": {\"address\": \"127.0.0.1:9901\", \"token\": \"ADMINTOKEN\"}}";

static void test_redact(void)
{
	json_t *raw = json_loads(demo_config, 0, NULL), *red;
	char *text;

	CHECK(raw != NULL);
	red = config_redact(raw);
	CHECK(red != NULL);
	text = json_dumps(red, 0);
	CHECK(text != NULL);
	if (!text)
		return;
	static const char *const secrets[] = {
	    "PRIVATE-KEY-PATH", "HDRSECRET", "HMACSECRET", "OCTSECRET", "RSAPRIVD",
	    "LITERALKEY1",	"12345",     "ADMINTOKEN", NULL};
	for (int i = 0; secrets[i]; i++)
		if (strstr(text, secrets[i])) {
			fprintf(stderr, "secret %s leaked: %s\n", secrets[i], text);
			CHECK(!strstr(text, secrets[i]));
		}
	/* What is not secret stays as it was, and the shape is unchanged. */
	static const char *const kept[] = {
	    "config/certs/demo.crt", "127.0.0.1:9101",	  "X-API-Key",	"PUBLICN",	     "AQAB",
	    "config/keys/jwks.json", "${MOBILE_APP_KEY}", "mobile-app", "\"keepalive\": 32", NULL};
	for (int i = 0; kept[i]; i++)
		if (!strstr(text, kept[i])) {
			fprintf(stderr, "%s missing: %s\n", kept[i], text);
			CHECK(strstr(text, kept[i]));
		}
	CHECK_STR(
	    json_string_value(json_array_get(
		json_object_get(json_array_get(json_object_get(red, "consumers"), 0), "api_keys"),
		0)),
	    "<redacted>");
	CHECK_EQ(json_array_size(json_object_get(
		     json_array_get(json_object_get(red, "consumers"), 0), "api_keys")),
		 2);
	/* The input is not modified. */
	CHECK_STR(json_string_value(json_object_get(
		      json_object_get(json_object_get(raw, "auth"), "jwt"), "hmac_secret")),
		  "HMACSECRET");
	free(text);
	json_decref(red);
	json_decref(raw);
	red = config_redact(NULL);
	CHECK(json_is_object(red) && json_object_size(red) == 0);
	json_decref(red);
}

static void test_redact_header_matches(void)
{
	json_t *raw = json_loads(
	    "{\"routes\": [{\"paths\": [\"/a\"], \"headers\": {\"X-Canary\": \"MATCHVAL1\","
	    " \"X-Any\": null, \"X-Env\": \"${HDR}\"}, \"split\": [{\"upstream\": \"a\","
	    " \"match\": {\"headers\": {\"X-Beta\": \"MATCHVAL2\"}}}]}]}",
	    0, NULL);
	json_t *red = config_redact(raw), *h;
	char *text = red ? json_dumps(red, 0) : NULL;

	CHECK(text && !strstr(text, "MATCHVAL1") && !strstr(text, "MATCHVAL2"));
	h = json_object_get(json_array_get(json_object_get(red, "routes"), 0), "headers");
	CHECK(json_is_null(json_object_get(h, "X-Any")));
	CHECK_STR(json_string_value(json_object_get(h, "X-Env")), "${HDR}");
	CHECK_STR(json_string_value(json_object_get(h, "X-Canary")), "<redacted>");
	free(text);
	json_decref(red);
	json_decref(raw);
}

static void test_host_allowed(void)
{
	struct sockaddr_in v4 = {.sin_family = AF_INET, .sin_port = htons(9901)};
	struct sockaddr_in any4 = {.sin_family = AF_INET};
	struct sockaddr_in6 v6 = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
	struct sockaddr_in pub = {.sin_family = AF_INET};
	const struct sockaddr *s4 = (struct sockaddr *)&v4, *s6 = (struct sockaddr *)&v6;
#define HOST_OK(h, sa, port) admin_host_allowed(h, strlen(h), sa, port)

	v4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	inet_pton(AF_INET, "192.0.2.7", &pub.sin_addr);
	CHECK(HOST_OK("127.0.0.1:9901", s4, 9901));
	CHECK(HOST_OK("127.0.0.1", s4, 9901));
	CHECK(HOST_OK("localhost:9901", s4, 9901));
	CHECK(HOST_OK("LocalHost:9901", s4, 9901));
	CHECK(!HOST_OK("127.0.0.1:9902", s4, 9901));
	CHECK(!HOST_OK("127.0.0.2:9901", s4, 9901));
	CHECK(!HOST_OK("attacker.example:9901", s4, 9901));
	CHECK(!HOST_OK("localhost.attacker.example", s4, 9901));
	CHECK(!HOST_OK("127.0.0.1:9901x", s4, 9901));
	CHECK(!HOST_OK("127.0.0.1:+9901", s4, 9901));
	CHECK(!HOST_OK("", s4, 9901));
	CHECK(!HOST_OK(":9901", s4, 9901));
	CHECK(HOST_OK("[::1]:9901", s6, 9901));
	CHECK(HOST_OK("[::1]", s6, 9901));
	CHECK(HOST_OK("localhost", s6, 9901));
	CHECK(!HOST_OK("[::1]:9901", s4, 9901));
	CHECK(!HOST_OK("[::1", s6, 9901));
	CHECK(!HOST_OK("[::1]x", s6, 9901));
	CHECK(!HOST_OK("[evil]:9901", s6, 9901));
	/* A wildcard bind: any address literal names it, names other than localhost do not. */
	CHECK(HOST_OK("198.18.0.1:9901", (struct sockaddr *)&any4, 9901));
	CHECK(!HOST_OK("rebind.example:9901", (struct sockaddr *)&any4, 9901));
	/* localhost does not name a non-loopback address. */
	CHECK(HOST_OK("192.0.2.7:1", (struct sockaddr *)&pub, 1));
	CHECK(!HOST_OK("localhost:1", (struct sockaddr *)&pub, 1));
#undef HOST_OK
}

static void test_token(void)
{
	static const char tok[] = "0123456789abcdef";
#define TOK_OK(h) admin_token_ok(h, strlen(h), tok)

	CHECK(TOK_OK("Bearer 0123456789abcdef"));
	CHECK(TOK_OK("bearer 0123456789abcdef"));
	CHECK(!TOK_OK("Bearer 0123456789abcdeF"));
	CHECK(!TOK_OK("Bearer 0123456789abcde"));
	CHECK(!TOK_OK("Bearer 0123456789abcdef0"));
	CHECK(!TOK_OK("Basic 0123456789abcdef"));
	CHECK(!TOK_OK("0123456789abcdef"));
	CHECK(!admin_token_ok(NULL, 0, tok));
#undef TOK_OK
}

int main(void)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = 0};
	char err[256];

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	server = admin_server_start((struct sockaddr *)&sin, sizeof(sin), endpoints, NULL, NULL, &hello_calls,
				    err, sizeof(err));
	if (!server) {
		fprintf(stderr, "admin_server_start: %s\n", err);
		return 1;
	}
	RUN(test_keepalive_and_head);
	RUN(test_errors);
	RUN(test_limits);
	RUN(test_many_connections);
	RUN(test_bind_error);
	RUN(test_redact);
	RUN(test_redact_header_matches);
	RUN(test_host_allowed);
	RUN(test_token);
	admin_server_stop(server);
	return CHECK_DONE();
}
