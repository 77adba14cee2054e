/*
 * Minimal unit-test harness. Each test binary defines test functions, calls RUN()
 * for each from main() and returns CHECK_DONE(), which prints
 * "<binary>: N passed, N failed" and yields the exit status.
 */
#ifndef XGATE_TESTS_CHECK_H
#define XGATE_TESTS_CHECK_H

#include <stdio.h>
#include <string.h>

static int check_passed, check_failed, check_cur_failed;
static const char *check_cur_name;

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "FAIL %s:%d (%s): %s\n", __FILE__, __LINE__,              \
				check_cur_name, #cond);                                            \
			check_cur_failed = 1;                                                      \
		}                                                                                  \
	} while (0)

#define CHECK_EQ(a, b)                                                                             \
	do {                                                                                       \
		long long _a = (long long)(a), _b = (long long)(b);                                \
		if (_a != _b) {                                                                    \
			fprintf(stderr, "FAIL %s:%d (%s): %s == %s (%lld != %lld)\n", __FILE__,   \
				__LINE__, check_cur_name, #a, #b, _a, _b);                         \
			check_cur_failed = 1;                                                      \
		}                                                                                  \
	} while (0)

#define CHECK_STR(a, b)                                                                            \
	do {                                                                                       \
		const char *_a = (a), *_b = (b);                                                   \
		if (!_a || !_b || strcmp(_a, _b)) {                                                \
			fprintf(stderr, "FAIL %s:%d (%s): %s == \"%s\" (got \"%s\")\n", __FILE__,  \
				__LINE__, check_cur_name, #a, _b ? _b : "(null)",                  \
				_a ? _a : "(null)");                                               \
			check_cur_failed = 1;                                                      \
		}                                                                                  \
	} while (0)

#define RUN(fn)                                                                                    \
	do {                                                                                       \
		check_cur_name = #fn;                                                              \
		check_cur_failed = 0;                                                              \
		fn();                                                                              \
		if (check_cur_failed)                                                              \
			check_failed++;                                                            \
		else                                                                               \
			check_passed++;                                                            \
	} while (0)

#define CHECK_DONE()                                                                               \
	(printf("%s: %d passed, %d failed\n", __FILE__, check_passed, check_failed),               \
	 check_failed ? 1 : 0)

#endif
