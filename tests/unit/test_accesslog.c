/* Access log: line format and escaping, two writers, reopen after rename, drops when full. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "accesslog/accesslog.h"
#include "check.h"

static char dir[] = "/tmp/xgate-accesslog-XXXXXX";

static struct access_entry entry(const char *path, size_t path_len)
{
	static struct sockaddr_in client = {.sin_family = AF_INET,
					    .sin_port = __builtin_bswap16(5555)};

	client.sin_addr.s_addr = htonl(0xc6120007); /* 198.18.0.7 */
	return (struct access_entry){
	    .time_us = 1700000000123456LL,
	    .request_id = "req-1",
	    .client = (const struct sockaddr *)&client,
	    .method = "GET",
	    .path = path,
	    .path_len = path_len,
	    .route = "users",
	    .target = "127.0.0.1:9101",
	    .status = 200,
	    .bytes_in = 120,
	    .bytes_out = 3456,
	    .duration_us = 789,
	    .consumer = "mobile-app",
	};
}

static json_t *format_and_parse(const struct access_entry *e, size_t outlen, size_t *len)
{
	char *buf = malloc(outlen);
	json_error_t err;
	json_t *j;

	if (!buf)
		return NULL;
	*len = accesslog_format(buf, outlen, e);
	if (*len == 0 || buf[*len - 1] != '\n' || memchr(buf, '\n', *len) != buf + *len - 1) {
		fprintf(stderr, "not one line: %s\n", buf);
		free(buf);
		return NULL;
	}
	j = json_loadb(buf, *len, JSON_ALLOW_NUL, &err);
	if (!j)
		fprintf(stderr, "bad JSON (%s): %.300s\n", err.text, buf);
	free(buf);
	return j;
}

static const char *jstr(json_t *j, const char *key)
{
	return json_string_value(json_object_get(j, key));
}

static long long jint(json_t *j, const char *key)
{
	json_t *v = json_object_get(j, key);

	return json_is_integer(v) ? json_integer_value(v) : -1;
}

static void test_waf_rules(void)
{
	struct access_entry e = entry("/api/users/7", 12);
	size_t len;
	json_t *j, *ids;

	e.waf_rules = "[942100,949110]";
	j = format_and_parse(&e, 4096, &len);
	CHECK(j != NULL);
	ids = json_object_get(j, "waf_rules");
	CHECK(json_is_array(ids) && json_array_size(ids) == 2);
	CHECK_EQ(json_integer_value(json_array_get(ids, 1)), 949110);
	CHECK_EQ(jint(j, "status"), 200);
	json_decref(j);
	e.waf_rules = NULL;
	j = format_and_parse(&e, 4096, &len);
	CHECK(j && !json_object_get(j, "waf_rules"));
	json_decref(j);
}

static void test_fields(void)
{
	struct access_entry e = entry("/api/users/7", 12);
	size_t len;
	json_t *j = format_and_parse(&e, 4096, &len);

	CHECK(j != NULL);
	if (!j)
		return;
	CHECK_STR(jstr(j, "time"), "2023-11-14T22:13:20.123456Z");
	CHECK_STR(jstr(j, "request_id"), "req-1");
	CHECK_STR(jstr(j, "client"), "198.18.0.7:5555");
	CHECK_STR(jstr(j, "method"), "GET");
	CHECK_STR(jstr(j, "path"), "/api/users/7");
	CHECK_STR(jstr(j, "route"), "users");
	CHECK_STR(jstr(j, "upstream"), "127.0.0.1:9101");
	CHECK_EQ(jint(j, "status"), 200);
	CHECK_EQ(jint(j, "bytes_in"), 120);
	CHECK_EQ(jint(j, "bytes_out"), 3456);
	CHECK_EQ(jint(j, "duration_us"), 789);
	CHECK_STR(jstr(j, "consumer"), "mobile-app");
	CHECK_EQ(json_object_size(j), 12);
	json_decref(j);
}

static void test_ipv6_and_missing(void)
{
	struct sockaddr_in6 c6 = {.sin6_family = AF_INET6, .sin6_port = htons(443)};
	struct access_entry e = {.time_us = 5, .client = (struct sockaddr *)&c6, .status = 404};
	size_t len;
	json_t *j;

	inet_pton(AF_INET6, "2001:db8::1", &c6.sin6_addr);
	j = format_and_parse(&e, 4096, &len);
	CHECK(j != NULL);
	if (!j)
		return;
	CHECK_STR(jstr(j, "client"), "[2001:db8::1]:443");
	CHECK_STR(jstr(j, "time"), "1970-01-01T00:00:00.000005Z");
	/* NULL strings become "" rather than breaking the line. */
	CHECK_STR(jstr(j, "route"), "");
	CHECK_STR(jstr(j, "request_id"), "");
	CHECK_STR(jstr(j, "path"), "");
	CHECK_EQ(jint(j, "status"), 404);
	json_decref(j);
}

static void test_hostile_path(void)
{
	/* quote, backslash, CR/LF, tab, NUL, ESC, DEL, bad UTF-8, then valid é € 😀 */
	static const char path[] = "/a\"b\\c\r\nd\te\0f\x1b\x7f"
				   "\xff\xc0\xaf\x80\xed\xa0\x80\xe2\x82"
				   "/\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80";
	static const char expect[] =
	    "/a\"b\\c\r\nd\te\0f\x1b\x7f"
	    "\xc3\xbf\xc3\x80\xc2\xaf\xc2\x80\xc3\xad\xc2\xa0\xc2\x80\xc3\xa2\xc2\x82"
	    "/\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80";
	struct access_entry e = entry(path, sizeof(path) - 1);
	char line[4096];
	size_t len = accesslog_format(line, sizeof(line), &e);
	json_t *j = json_loadb(line, len, JSON_ALLOW_NUL, NULL);
	json_t *p = json_object_get(j, "path");

	CHECK(j != NULL);
	CHECK(!memchr(line, '\r', len));
	CHECK(strstr(line, "\\u00ff\\u00c0\\u00af\\u0080") != NULL);
	CHECK(strstr(line, "\\u0000") != NULL);
	CHECK(json_is_string(p));
	CHECK_EQ(json_string_length(p), sizeof(expect) - 1);
	CHECK(p && !memcmp(json_string_value(p), expect, sizeof(expect) - 1));
	json_decref(j);
}

static void test_truncation(void)
{
	size_t big = 300000, len;
	char *path = malloc(big);
	struct access_entry e;
	json_t *j;

	CHECK(path != NULL);
	if (!path)
		return;
	memset(path, '"', big); /* worst case: every byte doubles */
	e = entry(path, big);
	e.request_id = "id";
	j = format_and_parse(&e, 2048, &len);
	CHECK(j != NULL);
	CHECK(len < 2048);
	CHECK_EQ(jint(j, "status"), 200);
	CHECK_STR(jstr(j, "consumer"), "mobile-app");
	json_decref(j);
	/* Long hostile values in every other field too: still one valid line. */
	char *junk = malloc(5001);
	CHECK(junk != NULL);
	if (junk) {
		memset(junk, '\x01', 5000);
		junk[5000] = '\0';
		struct access_entry f = e;
		f.request_id = f.route = f.target = f.consumer = f.method = junk;
		j = format_and_parse(&f, 2048, &len);
		CHECK(j != NULL);
		CHECK(len < 2048);
		CHECK_EQ(jint(j, "duration_us"), 789);
		json_decref(j);
		free(junk);
	}
	j = format_and_parse(&e, 128 << 10, &len);
	CHECK(j != NULL);
	CHECK(len < (128 << 10));
	CHECK(json_string_length(json_object_get(j, "path")) > 10000);
	json_decref(j);
	free(path);
}

static int count_lines(const char *file, int *seen, int per_worker)
{
	FILE *f = fopen(file, "r");
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	int lines = 0;

	if (!f)
		return -1;
	while ((n = getline(&line, &cap, f)) > 0) {
		json_t *j = json_loadb(line, n, 0, NULL);
		int w, i;

		if (!j ||
		    sscanf(jstr(j, "request_id") ? jstr(j, "request_id") : "", "w%d-%d", &w, &i) !=
			2 ||
		    w < 0 || w > 1 || i < 0 || i >= per_worker) {
			fprintf(stderr, "bad line: %s", line);
			lines = -1000000;
		} else {
			seen[w * per_worker + i]++;
		}
		json_decref(j);
		lines++;
	}
	free(line);
	fclose(f);
	return lines;
}

#define PER_WORKER 20000

struct writer_arg {
	int worker;
};

static void *write_many(void *p)
{
	struct writer_arg *a = p;
	char id[32];

	for (int i = 0; i < PER_WORKER; i++) {
		struct access_entry e = entry("/x/\"y\"", 6);

		snprintf(id, sizeof(id), "w%d-%d", a->worker, i);
		e.request_id = id;
		accesslog_write(a->worker, &e);
		if (i % 1000 == 999) /* stay under the ring size: this test is not about drops */
			accesslog_flush(5000);
	}
	return NULL;
}

static long file_size(const char *path)
{
	struct stat st;

	return stat(path, &st) ? -1 : (long)st.st_size;
}

static void test_two_writers_and_reopen(void)
{
	char file[256], rotated[256];
	struct writer_arg args[2] = {{0}, {1}};
	pthread_t th[2];
	static int seen[2 * PER_WORKER];
	int a, b;

	snprintf(file, sizeof(file), "%s/access.log", dir);
	snprintf(rotated, sizeof(rotated), "%s/access.log.1", dir);
	CHECK_EQ(accesslog_open(file), 0);
	CHECK(accesslog_enabled());
	for (int i = 0; i < 2; i++)
		pthread_create(&th[i], NULL, write_many, &args[i]);
	/* Rotate only once some lines reached the first file, however slow the machine is. */
	for (int waited = 0; waited < 5000 && file_size(file) <= 0; waited++)
		usleep(1000);
	/* logrotate: rename, then signal; new lines must land in a new file of the old name. */
	CHECK_EQ(rename(file, rotated), 0);
	accesslog_reopen();
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	CHECK_EQ(accesslog_flush(5000), 0);
	CHECK_EQ(accesslog_dropped(), 0);
	a = count_lines(rotated, seen, PER_WORKER);
	b = count_lines(file, seen, PER_WORKER);
	CHECK(a > 0);
	CHECK(b > 0);
	CHECK_EQ(a + b, 2 * PER_WORKER);
	for (int i = 0; i < 2 * PER_WORKER; i++)
		if (seen[i] != 1) {
			CHECK_EQ(seen[i], 1);
			break;
		}
	accesslog_close();
	CHECK(!accesslog_enabled());
}

struct fifo_reader {
	int fd;
	size_t bytes;
};

static void *read_fifo(void *p)
{
	struct fifo_reader *r = p;
	char buf[65536];
	ssize_t n;

	while ((n = read(r->fd, buf, sizeof(buf))) > 0 || (n < 0 && errno == EAGAIN)) {
		if (n > 0)
			r->bytes += n;
		else
			usleep(1000);
	}
	return NULL;
}

/* A stuck log consumer must cost lines, never worker time. */
static void test_full_buffer_drops(void)
{
	char fifo[256];
	struct fifo_reader reader = {0};
	struct timespec t0, t1;
	pthread_t th;
	uint64_t before = accesslog_dropped();
	int n = 40000;

	snprintf(fifo, sizeof(fifo), "%s/fifo", dir);
	CHECK_EQ(mkfifo(fifo, 0600), 0);
	reader.fd = open(fifo, O_RDONLY | O_NONBLOCK);
	CHECK(reader.fd >= 0);
	CHECK_EQ(accesslog_open(fifo), 0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int i = 0; i < n; i++) {
		struct access_entry e = entry("/padding/padding/padding/padding/padding", 40);

		accesslog_write(0, &e);
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	CHECK(accesslog_dropped() > before);
	CHECK((t1.tv_sec - t0.tv_sec) < 2);
	pthread_create(&th, NULL, read_fifo, &reader);
	accesslog_close();
	pthread_join(th, NULL);
	close(reader.fd);
	CHECK(reader.bytes > 0);
	unlink(fifo);
}

static void test_open_errors(void)
{
	struct access_entry e = entry("/", 1);

	CHECK_EQ(accesslog_open("/nonexistent-dir/x/access.log"), -ENOENT);
	CHECK(!accesslog_enabled());
	accesslog_write(0, &e); /* disabled: ignored */
	accesslog_write(-1, &e);
	accesslog_reopen(); /* no writer: harmless */
	CHECK_EQ(accesslog_open("-"), 0);
	accesslog_reopen();
	CHECK_EQ(accesslog_flush(1000), 0);
	accesslog_close();
}

int main(void)
{
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	RUN(test_fields);
	RUN(test_waf_rules);
	RUN(test_ipv6_and_missing);
	RUN(test_hostile_path);
	RUN(test_truncation);
	RUN(test_two_writers_and_reopen);
	RUN(test_full_buffer_drops);
	RUN(test_open_errors);
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cleanup of %s failed\n", dir);
	return CHECK_DONE();
}
