/* Request path normalization: dot segments, escapes, forbidden encodings, root escapes. */
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "check.h"
#include "http/http.h"

/* Normalizes a copy of `in`; returns the result string or NULL for -1. */
static const char *norm(const char *in)
{
	static char buf[512];
	size_t n = strlen(in);
	ssize_t r;

	memcpy(buf, in, n);
	r = http_path_normalize(buf, n);
	if (r < 0)
		return NULL;
	if ((size_t)r > n)
		return "(grew)";
	buf[r] = '\0';
	return buf;
}

#define NORM(in, want) CHECK_STR(norm(in), want)
#define INVALID(in) CHECK(norm(in) == NULL)

static void test_unchanged(void)
{
	NORM("/", "/");
	NORM("/a", "/a");
	NORM("/a/b/c", "/a/b/c");
	NORM("/a/b/", "/a/b/");
	NORM("/.a/b.c", "/.a/b.c");
	NORM("/a..b/..c", "/a..b/..c");
	NORM("/users/42:edit@x", "/users/42:edit@x");
}

static void test_dot_segments(void)
{
	NORM("/a/./b", "/a/b");
	NORM("/a/../b", "/b");
	NORM("/a/b/..", "/a/");
	NORM("/a/b/.", "/a/b/");
	NORM("/a/.", "/a/");
	NORM("/.", "/");
	NORM("/./", "/");
	NORM("/a/..", "/");
	NORM("/a/b/../../c", "/c");
	NORM("/a/b/c/../../d/./e", "/a/d/e");
	NORM("/a/./../b/", "/b/");
	NORM("/api/v1/../../admin", "/admin");
}

static void test_encoded_dots(void)
{
	NORM("/a/%2e/b", "/a/b");
	NORM("/a/%2e%2E/b", "/b");
	NORM("/a/.%2e/b", "/b");
	NORM("/a/%2e", "/a/");
	NORM("/a/b/%2E%2e", "/a/");
	INVALID("/%2e%2e");
	INVALID("/%2e%2e/etc/passwd");
	INVALID("/a/%2e%2e/%2E%2E/x");
}

static void test_escapes_root(void)
{
	INVALID("/..");
	INVALID("/../");
	INVALID("/../a");
	INVALID("/a/../..");
	INVALID("/a/../../b");
	INVALID("/./../a");
}

static void test_percent_decoding(void)
{
	NORM("/%41%62c", "/Abc");
	NORM("/%7e%7Euser", "/~~user");
	NORM("/a%2Db%5fc%2e", "/a-b_c");
	NORM("/a%20b", "/a%20b");
	NORM("/a%3ab", "/a%3Ab");
	NORM("/%c3%a9", "/%C3%A9");
	NORM("/%25", "/%25");
	/* decoding happens once; "%25" + hex hex would be an escape to a double decoder */
	INVALID("/%2541");
	INVALID("/%252e%252e/admin");
	INVALID("/a%252F");
	/* also when the digits come from decoding: "%25%41%41" is "%25AA" */
	INVALID("/%25%41%41");
	INVALID("/x%25%32e");
	NORM("/100%25", "/100%25");
	NORM("/50%25off", "/50%25off");
	NORM("/a%25g1", "/a%25g1");
	NORM("/a%252", "/a%252");
}

static void test_forbidden(void)
{
	INVALID("/a%2Fb");
	INVALID("/a%2fb");
	INVALID("/a%5Cb");
	INVALID("/a%5c..%5c");
	INVALID("/a%00b");
	INVALID("/a\\b");
	INVALID("/a%zz");
	INVALID("/a%2");
	INVALID("/a%");
	INVALID("/%g1");
	INVALID("");
	INVALID("a/b");
	INVALID("*");
	INVALID("host:443");
}

/* What Tomcat, Spring, Jetty and IIS make of a path is what the router sees. */
static void test_path_parameters(void)
{
	NORM("/admin;x", "/admin");
	NORM("/admin;jsessionid=1/users", "/admin/users");
	NORM("/a;x/b;y=1,2/c", "/a/b/c");
	NORM("/admin/..;/admin", "/admin");
	NORM("/open/..;/admin", "/admin");
	NORM("/open/..;x=1/admin", "/admin");
	NORM("/open/.;/admin", "/open/admin");
	NORM("/;x/admin", "/admin");
	NORM("/;/admin", "/admin");
	NORM("/admin/;x", "/admin/");
	NORM("/admin;", "/admin");
	/* an encoded ';' is ambiguous (a delimiter to some servers, data to others) */
	INVALID("/admin%3bx");
	INVALID("/admin%3B");
	INVALID("/open/..%3B/admin");
	INVALID("/..;/admin");
	INVALID("/a/..;/..;/b");
}

static void test_trailing_dots(void)
{
	NORM("/admin.", "/admin");
	NORM("/admin..", "/admin");
	NORM("/admin./x", "/admin/x");
	NORM("/admin%2e", "/admin");
	NORM("/admin.%2E", "/admin");
	NORM("/v1.2.", "/v1.2");
	NORM("/a.b", "/a.b");
	NORM("/admin.;x", "/admin");
	/* three or more dots: Windows reads "..." as "..": refused */
	INVALID("/...");
	INVALID("/a/.../b");
	INVALID("/a/%2e%2e%2e");
	INVALID("/a/....");
	INVALID("/a/...;x");
}

static void test_whitespace_and_controls(void)
{
	NORM("/a%20b", "/a%20b");
	INVALID("/admin%20");
	INVALID("/%20admin");
	INVALID("/admin%20/x");
	INVALID("/admin%09");
	INVALID("/admin%0a");
	INVALID("/admin%0D%0A");
	INVALID("/a%1fb");
	INVALID("/a%7fb");
	INVALID("/admin.%20");
}

static void test_raw_nul(void)
{
	char buf[] = {'/', 'a', '\0', 'b'};

	CHECK_EQ(http_path_normalize(buf, sizeof(buf)), -1);
}

static void test_slashes(void)
{
	NORM("//", "/");
	NORM("//admin", "/admin");
	NORM("/a//b///c", "/a/b/c");
	NORM("/a//", "/a/");
	INVALID("//..//a");
}

static void test_length_only(void)
{
	/* only the given length is examined; bytes after it stay untouched */
	char buf[] = "/a/../b?x=/../..";
	ssize_t r = http_path_normalize(buf, 7);

	CHECK_EQ(r, 2);
	CHECK(!memcmp(buf, "/b", 2));
	CHECK_STR(buf + 7, "?x=/../..");
}

static void test_normal_path_not_written(void)
{
	/* the parser may hand out a static "/": a normal path must not be written to */
	long page = sysconf(_SC_PAGESIZE);
	char *p =
	    mmap(NULL, (size_t)page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	CHECK(p != MAP_FAILED);
	if (p == MAP_FAILED)
		return;
	memcpy(p, "/a/b.c/", 7);
	CHECK_EQ(mprotect(p, (size_t)page, PROT_READ), 0);
	CHECK_EQ(http_path_normalize(p, 7), 7);
	CHECK_EQ(http_path_normalize(p, 1), 1);
	munmap(p, (size_t)page);
}

/*
 * Properties over many generated paths (fixed seed, bounded): the output is never longer,
 * normalising twice changes nothing, and what comes out has no parameters, no dot or
 * trailing-dot segments, no empty inner segments: the router and the upstream read it alike.
 */
static void test_properties(void)
{
	static const char *const atoms[] = {
	    "/",   "/",	  "a",	"A", ".",  "..",  ";",	    ";x", "%2e", "%2E", "%3b", "%20",
	    "%41", "%25", "2e", "%", "b.", "%7e", "%c3%a9", "//", "...", "x=1", "\\",  "%00"};
	unsigned seed = 12345;
	char in[128], buf[128], again[128];
	int bad = 0;

	for (int iter = 0; iter < 200000; iter++) {
		size_t n = 0;
		ssize_t r, r2;
		int parts;

		seed = seed * 1103515245u + 12345u;
		parts = 1 + (int)(seed >> 16) % 8;
		in[n++] = '/';
		for (int k = 0; k < parts; k++) {
			const char *a;
			size_t al;

			seed = seed * 1103515245u + 12345u;
			a = atoms[(seed >> 16) % (sizeof(atoms) / sizeof(atoms[0]))];
			al = strlen(a);
			if (n + al >= sizeof(in))
				break;
			memcpy(in + n, a, al);
			n += al;
		}
		memcpy(buf, in, n);
		r = http_path_normalize(buf, n);
		if (r < 0)
			continue;
		if ((size_t)r > n || r == 0 || buf[0] != '/') {
			bad++;
			continue;
		}
		memcpy(again, buf, (size_t)r);
		r2 = http_path_normalize(again, (size_t)r);
		if (r2 != r || memcmp(again, buf, (size_t)r))
			bad++;
		for (ssize_t i = 0; i < r; i++) {
			bool seg_end = i + 1 == r || buf[i + 1] == '/';

			if (buf[i] == ';' || (buf[i] == '.' && seg_end) ||
			    (buf[i] == '/' && i + 1 < r && buf[i + 1] == '/'))
				bad++;
		}
	}
	CHECK_EQ(bad, 0);
}

int main(void)
{
	RUN(test_unchanged);
	RUN(test_dot_segments);
	RUN(test_encoded_dots);
	RUN(test_escapes_root);
	RUN(test_percent_decoding);
	RUN(test_forbidden);
	RUN(test_path_parameters);
	RUN(test_trailing_dots);
	RUN(test_whitespace_and_controls);
	RUN(test_raw_nul);
	RUN(test_slashes);
	RUN(test_length_only);
	RUN(test_normal_path_not_written);
	RUN(test_properties);
	return CHECK_DONE();
}
