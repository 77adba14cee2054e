/*
 * Path normaliser (userspace/http/path.c). An accepted path starts with '/', never grows,
 * holds no empty, "." or ".." segment, no escape of an unreserved character, only
 * upper-case escapes, and normalising it again changes nothing (and writes nothing). When
 * the input was a path the request parser accepts, so is the output.
 */
#include "fuzz.h"
#include "http/http.h"

static bool is_hex_upper(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F');
}

static bool is_unreserved(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       c == '-' || c == '.' || c == '_' || c == '~';
}

static int hexval(char c)
{
	return c <= '9' ? c - '0' : c - 'A' + 10;
}

static void check_normal(const char *p, size_t n)
{
	FUZZ_CHECK(n >= 1 && p[0] == '/');
	for (size_t i = 0; i < n; i++) {
		FUZZ_CHECK(p[i] != '\\' && p[i] != '\0');
		if (p[i] == '/') {
			size_t seg = i + 1;
			size_t end = seg;

			while (end < n && p[end] != '/')
				end++;
			/* an empty segment is allowed only as the trailing slash */
			FUZZ_CHECK(end > seg || end == n);
			FUZZ_CHECK(!(end - seg == 1 && p[seg] == '.'));
			FUZZ_CHECK(!(end - seg == 2 && p[seg] == '.' && p[seg + 1] == '.'));
		}
		if (p[i] == '%') {
			int c;

			FUZZ_CHECK(i + 2 < n && is_hex_upper(p[i + 1]) && is_hex_upper(p[i + 2]));
			c = hexval(p[i + 1]) << 4 | hexval(p[i + 2]);
			FUZZ_CHECK(!is_unreserved((unsigned char)c));
			FUZZ_CHECK(c != '/' && c != '\\' && c != 0);
		}
	}
	FUZZ_CHECK(!memmem(p, n, "//", 2) && !memmem(p, n, "/../", 4) && !memmem(p, n, "/./", 3));
}

/* Whether the request parser takes p as the path of an origin-form target. */
static bool parser_accepts(const char *p, size_t n)
{
	static const char pre[] = "GET ", post[] = " HTTP/1.1\r\nHost: a\r\n\r\n";
	size_t len = sizeof(pre) - 1 + n + sizeof(post) - 1;
	char *buf = malloc(len);
	struct http_request req;
	bool ok;

	FUZZ_CHECK(buf != NULL);
	memcpy(buf, pre, sizeof(pre) - 1);
	memcpy(buf + sizeof(pre) - 1, p, n);
	memcpy(buf + sizeof(pre) - 1 + n, post, sizeof(post) - 1);
	ok = http_parse_request(buf, len, NULL, &req) == (int)len && req.path.len == n &&
	     req.query.len == 0 && req.path.p == buf + sizeof(pre) - 1;
	free(buf);
	return ok;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *path = fuzz_dup(data, size), *again;
	ssize_t n = http_path_normalize(path, size), n2;

	if (n < 0) {
		free(path);
		return 0;
	}
	FUZZ_CHECK((size_t)n <= size);
	check_normal(path, (size_t)n);
	again = fuzz_dup((const uint8_t *)path, (size_t)n);
	n2 = http_path_normalize(again, (size_t)n);
	FUZZ_CHECK(n2 == n && !memcmp(again, path, (size_t)n));
	if (size < 4096 && parser_accepts((const char *)data, size))
		FUZZ_CHECK(parser_accepts(path, (size_t)n));
	free(again);
	free(path);
	return 0;
}
