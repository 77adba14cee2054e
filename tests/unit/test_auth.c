/* API keys and consumers, roles and scopes, any_of, schedules and time zones, route config. */
#include <openssl/rand.h>
#include <time.h>

#include <openssl/sha.h>

#include "auth/auth_internal.h"
#include "auth/tzone.h"
#include "check.h"
#include "test_auth_util.h"

#define NOW 1700000000

static unsigned char secret[32];
static struct auth_config *A;
static json_t *A_root;

static struct route_auth *route_full(const struct auth_config *a, const char *auth,
				     const char *schedule, struct cfg_errs *errs)
{
	json_t *ja = auth ? json_loads(auth, JSON_DECODE_ANY, NULL) : NULL;
	json_t *js = schedule ? json_loads(schedule, JSON_DECODE_ANY, NULL) : NULL;
	struct route_auth *ra = route_auth_parse(ja, js, "routes[1]", a, errs);

	json_decref(ja);
	json_decref(js);
	return ra;
}

static struct route_auth *route(const char *auth, const char *schedule)
{
	struct cfg_errs errs = {0};
	struct route_auth *ra = route_full(A, auth, schedule, &errs);

	if (errs.count)
		fprintf(stderr, "route errors:\n%s", errs.text);
	cfg_errs_free(&errs);
	return ra;
}

static void route_expect(const char *auth, const char *schedule, const char *line)
{
	struct cfg_errs errs = {0};
	struct route_auth *ra = route_full(A, auth, schedule, &errs);

	CHECK(ra == NULL);
	if (!errs.text || !strstr(errs.text, line))
		fprintf(stderr, "  expected \"%s\" in:\n%s", line, errs.text ? errs.text : "");
	CHECK(errs.text && strstr(errs.text, line));
	cfg_errs_free(&errs);
}

static char *hs_token(const char *claims)
{
	char pl[1024];

	snprintf(pl, sizeof(pl), "{\"sub\":\"bob\",\"exp\":%d%s%s}", NOW + 600, *claims ? "," : "",
		 claims);
	return tu_token("HS256", "hs", pl, NULL, secret, sizeof(secret));
}

/* One request: optional bearer token, optional API-key header, optional query. */
static enum auth_reason check(const struct route_auth *ra, const char *token, const char *key,
			      const char *query, time_t now, struct auth_result *res)
{
	struct tu_req r;

	tu_req_init(&r, query);
	if (token)
		tu_req_bearer(&r, token);
	if (key)
		tu_req_add(&r, "X-API-Key", key);
	auth_check(A, ra, NULL, &r.req, now, res);
	tu_req_free(&r);
	CHECK_EQ(res->status, auth_reason_status(res->reason));
	return res->reason;
}

static enum auth_reason check1(const struct route_auth *ra, const char *token, const char *key,
			       const char *query, time_t now)
{
	struct auth_result res;
	enum auth_reason r = check(ra, token, key, query, now, &res);

	auth_result_release(&res);
	return r;
}

static void test_reason_names(void)
{
	int i;

	for (i = 0; i < AUTH_REASON_COUNT; i++)
		CHECK(strcmp(auth_reason_name(i), "unknown"));
	CHECK_STR(auth_reason_name(AUTH_BAD_SIGNATURE), "bad_signature");
	CHECK_STR(auth_reason_name(AUTH_REASON_COUNT), "unknown");
	CHECK_EQ(auth_reason_status(AUTH_OK), 0);
	CHECK_EQ(auth_reason_status(AUTH_EXPIRED), 401);
	CHECK_EQ(auth_reason_status(AUTH_BAD_API_KEY), 401);
	CHECK_EQ(auth_reason_status(AUTH_FORBIDDEN_SCOPE), 403);
	CHECK_EQ(auth_reason_status(AUTH_FORBIDDEN_SCHEDULE), 403);
}

static void test_open_routes(void)
{
	struct cfg_errs errs = {0};
	struct auth_result res;

	CHECK(route_full(A, NULL, NULL, &errs) == NULL);
	CHECK(route_full(A, "\"none\"", NULL, &errs) == NULL);
	CHECK(route_full(A, "null", NULL, &errs) == NULL);
	CHECK_EQ(errs.count, 0);
	CHECK_EQ(check(NULL, NULL, NULL, NULL, NOW, &res), AUTH_OK);
	CHECK_EQ(res.status, 0);
	CHECK_EQ(res.nforward, 0);
	CHECK_STR(res.consumer, "");
	auth_result_release(&res);
	cfg_errs_free(&errs);
}

static void test_api_keys(void)
{
	struct route_auth *ra = route("{\"api_key\": {}}", NULL);
	struct auth_result res;
	struct tu_req r;

	CHECK_EQ(check(ra, NULL, "mobile-secret-1", NULL, NOW, &res), AUTH_OK);
	CHECK_STR(res.consumer, "mobile-app");
	CHECK_STR(res.identity, "key:mobile-app");
	CHECK_EQ(res.nforward, 1);
	CHECK_STR(tu_forward(&res, "X-Consumer"), "mobile-app");
	CHECK(res.claim(&res, "sub") == NULL);
	auth_result_release(&res);
	CHECK_EQ(check(ra, NULL, "mobile-secret-2", NULL, NOW, &res), AUTH_OK);
	CHECK_STR(res.consumer, "mobile-app");
	CHECK_EQ(check(ra, NULL, "partner-secret", NULL, NOW, &res), AUTH_OK);
	CHECK_STR(res.consumer, "partner");
	CHECK_EQ(check1(ra, NULL, "mobile-secret-", NULL, NOW), AUTH_BAD_API_KEY);
	CHECK_EQ(check1(ra, NULL, "mobile-secret-1 ", NULL, NOW), AUTH_BAD_API_KEY);
	CHECK_EQ(check1(ra, NULL, "MOBILE-SECRET-1", NULL, NOW), AUTH_BAD_API_KEY);
	CHECK_EQ(check1(ra, NULL, "", NULL, NOW), AUTH_BAD_API_KEY);
	CHECK_EQ(check1(ra, NULL, NULL, NULL, NOW), AUTH_MISSING);
	CHECK_EQ(check(ra, NULL, "nope", NULL, NOW, &res), AUTH_BAD_API_KEY);
	CHECK_EQ(res.status, 401);
	CHECK_EQ(res.nforward, 0);
	CHECK_STR(res.consumer, "");
	/* A bearer token is not an API key. */
	CHECK_EQ(check1(ra, "mobile-secret-1", NULL, NULL, NOW), AUTH_MISSING);
	/* Header name is case-insensitive; two copies are refused. */
	tu_req_init(&r, NULL);
	tu_req_add(&r, "x-api-key", "mobile-secret-1");
	auth_check(A, ra, NULL, &r.req, NOW, &res);
	CHECK_EQ(res.reason, AUTH_OK);
	auth_result_release(&res);
	tu_req_add(&r, "X-API-KEY", "mobile-secret-1");
	auth_check(A, ra, NULL, &r.req, NOW, &res);
	CHECK_EQ(res.reason, AUTH_MALFORMED);
	/* Query parameter, percent-decoded; the header wins when both are present. */
	CHECK_EQ(check(ra, NULL, NULL, "a=1&api_key=partner-secret&b=2", NOW, &res), AUTH_OK);
	CHECK_STR(res.consumer, "partner");
	CHECK_EQ(check(ra, NULL, NULL, "api_key=mobile%2Dsecret%2d1", NOW, &res), AUTH_OK);
	CHECK_STR(res.consumer, "mobile-app");
	CHECK_EQ(check(ra, NULL, "partner-secret", "api_key=mobile-secret-1", NOW, &res), AUTH_OK);
	CHECK_STR(res.consumer, "partner");
	CHECK_EQ(check1(ra, NULL, NULL, "api_key=x&api_key=partner-secret", NOW), AUTH_MALFORMED);
	CHECK_EQ(check1(ra, NULL, NULL, "api_key=partner%2", NOW), AUTH_MALFORMED);
	CHECK_EQ(check1(ra, NULL, NULL, "api_key=partner%zz", NOW), AUTH_MALFORMED);
	CHECK_EQ(check1(ra, NULL, NULL, "xapi_key=partner-secret", NOW), AUTH_MISSING);
	CHECK_EQ(check1(ra, NULL, NULL, "api_key", NOW), AUTH_MISSING);
	CHECK_EQ(check1(ra, NULL, NULL, "api_key=", NOW), AUTH_BAD_API_KEY);
	route_auth_free(ra);
}

static void test_api_key_roles(void)
{
	struct route_auth *ra = route("{\"api_key\": {\"roles\": [\"admin\", \"partner\"]}}", NULL);

	CHECK_EQ(check1(ra, NULL, "partner-secret", NULL, NOW), AUTH_OK);
	CHECK_EQ(check1(ra, NULL, "mobile-secret-1", NULL, NOW), AUTH_FORBIDDEN_ROLE);
	CHECK_EQ(check1(ra, NULL, "nobody-secret", NULL, NOW), AUTH_FORBIDDEN_ROLE);
	CHECK_EQ(check1(ra, NULL, "bad", NULL, NOW), AUTH_BAD_API_KEY);
	route_auth_free(ra);
}

static void test_jwt_roles_scopes(void)
{
	struct route_auth *roles = route("{\"jwt\": {\"roles\": [\"admin\", \"ops\"]}}", NULL);
	struct route_auth *scopes =
	    route("{\"jwt\": {\"scopes\": [\"pay:write\", \"pay:read\"]}}", NULL);
	struct route_auth *both = route("{\"jwt\": {\"roles\": [\"user\"], \"scopes\": "
					"[\"pay:read\"]}}",
					NULL);
	struct {
		const char *claims;
		enum auth_reason roles, scopes, both;
	} cases[] = {
	    {"\"roles\":[\"user\"]", AUTH_FORBIDDEN_ROLE, AUTH_FORBIDDEN_SCOPE,
	     AUTH_FORBIDDEN_SCOPE},
	    {"\"roles\":[\"ops\"]", AUTH_OK, AUTH_FORBIDDEN_SCOPE, AUTH_FORBIDDEN_ROLE},
	    /* a string roles claim is one role (see test_roles_split) */
	    {"\"roles\":\"user admin\"", AUTH_FORBIDDEN_ROLE, AUTH_FORBIDDEN_SCOPE,
	     AUTH_FORBIDDEN_ROLE},
	    {"\"roles\":\"ops\"", AUTH_OK, AUTH_FORBIDDEN_SCOPE, AUTH_FORBIDDEN_ROLE},
	    {"\"roles\":[\"administrator\"]", AUTH_FORBIDDEN_ROLE, AUTH_FORBIDDEN_SCOPE,
	     AUTH_FORBIDDEN_ROLE},
	    {"\"roles\":[\"user\"],\"scope\":\"pay:read pay:write\"", AUTH_FORBIDDEN_ROLE, AUTH_OK,
	     AUTH_OK},
	    {"\"scope\":\"pay:read\"", AUTH_FORBIDDEN_ROLE, AUTH_FORBIDDEN_SCOPE,
	     AUTH_FORBIDDEN_ROLE},
	    {"\"roles\":[\"user\"],\"scope\":\"pay:reads\"", AUTH_FORBIDDEN_ROLE,
	     AUTH_FORBIDDEN_SCOPE, AUTH_FORBIDDEN_SCOPE},
	    {"\"roles\":[\"user\"],\"scope\":[\"pay:read\",\"pay:write\"]", AUTH_FORBIDDEN_ROLE,
	     AUTH_OK, AUTH_OK},
	    {"\"roles\":{\"admin\":true}", AUTH_FORBIDDEN_ROLE, AUTH_FORBIDDEN_SCOPE,
	     AUTH_FORBIDDEN_ROLE},
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *t = hs_token(cases[i].claims);

		CHECK_EQ(check1(roles, t, NULL, NULL, NOW), cases[i].roles);
		CHECK_EQ(check1(scopes, t, NULL, NULL, NOW), cases[i].scopes);
		CHECK_EQ(check1(both, t, NULL, NULL, NOW), cases[i].both);
		free(t);
	}
	route_auth_free(roles);
	route_auth_free(scopes);
	route_auth_free(both);
}

static void test_nested_roles_claim(void)
{
	struct cfg_errs errs = {0};
	char text[1024], *t;
	struct auth_config *saved = A, *a;
	struct route_auth *ra;

	snprintf(text, sizeof(text),
		 "{\"auth\": {\"jwt\": {\"jwks_file\": \"%s\", \"algorithms\": [\"HS256\"], "
		 "\"roles_claim\": \"realm_access.roles\", \"scopes_claim\": \"scp\"}}}",
		 tu_path("jwks.json"));
	a = tu_config(text, &errs, NULL);
	CHECK(a != NULL);
	A = a;
	ra = route("{\"jwt\": {\"roles\": [\"admin\"], \"scopes\": [\"x\"]}}", NULL);
	t = hs_token("\"realm_access\":{\"roles\":[\"admin\"]},\"scp\":[\"x\"]");
	CHECK_EQ(check1(ra, t, NULL, NULL, NOW), AUTH_OK);
	free(t);
	t = hs_token("\"realm_access\":{\"roles\":[\"user\"]},\"scp\":[\"x\"]");
	CHECK_EQ(check1(ra, t, NULL, NULL, NOW), AUTH_FORBIDDEN_ROLE);
	free(t);
	t = hs_token("\"realm_access.roles\":[\"admin\"],\"scp\":\"x y\"");
	CHECK_EQ(check1(ra, t, NULL, NULL, NOW), AUTH_OK);
	free(t);
	route_auth_free(ra);
	A = saved;
	auth_config_free(a);
	cfg_errs_free(&errs);
}

/* roles_split: the issuer writes roles as one space-separated string. */
static void test_roles_split(void)
{
	struct cfg_errs errs = {0};
	char text[1024], *t;
	struct auth_config *saved = A, *a;
	struct route_auth *ra;

	snprintf(text, sizeof(text),
		 "{\"auth\": {\"jwt\": {\"jwks_file\": \"%s\", \"algorithms\": [\"HS256\"], "
		 "\"roles_split\": true}}}",
		 tu_path("jwks.json"));
	a = tu_config(text, &errs, NULL);
	CHECK(a != NULL);
	A = a;
	ra = route("{\"jwt\": {\"roles\": [\"admin\"]}}", NULL);
	t = hs_token("\"roles\":\"user admin\"");
	CHECK_EQ(check1(ra, t, NULL, NULL, NOW), AUTH_OK);
	free(t);
	t = hs_token("\"roles\":\"user administrator\"");
	CHECK_EQ(check1(ra, t, NULL, NULL, NOW), AUTH_FORBIDDEN_ROLE);
	free(t);
	t = hs_token("\"roles\":[\"user admin\"]");
	CHECK_EQ(check1(ra, t, NULL, NULL, NOW), AUTH_FORBIDDEN_ROLE);
	free(t);
	route_auth_free(ra);
	A = saved;
	auth_config_free(a);
	cfg_errs_free(&errs);
	/* a bad type names its path */
	snprintf(text, sizeof(text),
		 "{\"auth\": {\"jwt\": {\"jwks_file\": \"%s\", \"algorithms\": [\"HS256\"], "
		 "\"roles_split\": \"yes\"}}}",
		 tu_path("jwks.json"));
	a = tu_config(text, &errs, NULL);
	CHECK(a == NULL);
	CHECK(errs.count >= 1 && errs.text && strstr(errs.text, "auth.jwt.roles_split") != NULL);
	auth_config_free(a);
	cfg_errs_free(&errs);
}

/* A JWT sub equal to a consumer name, or the same sub from two issuers, are different
 * identities for rate limits and the cache. */
static void test_identity_namespaces(void)
{
	struct route_auth *ra = route("{\"any_of\": [{\"jwt\": {}}, {\"api_key\": {}}]}", NULL);
	struct auth_result res;
	char pl[256];
	char *as_partner, *iss_a, *iss_b, *long_sub;
	char big[450];

	snprintf(pl, sizeof(pl), "{\"sub\":\"partner\",\"exp\":%d}", NOW + 600);
	as_partner = tu_token("HS256", "hs", pl, NULL, secret, sizeof(secret));
	snprintf(pl, sizeof(pl), "{\"sub\":\"u1\",\"iss\":\"https://a\",\"exp\":%d}", NOW + 600);
	iss_a = tu_token("HS256", "hs", pl, NULL, secret, sizeof(secret));
	snprintf(pl, sizeof(pl), "{\"sub\":\"1\",\"iss\":\"https://au\",\"exp\":%d}", NOW + 600);
	iss_b = tu_token("HS256", "hs", pl, NULL, secret, sizeof(secret));
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	long_sub = NULL;
	{
		char lp[600];

		snprintf(lp, sizeof(lp), "{\"sub\":\"%s\",\"exp\":%d}", big, NOW + 600);
		long_sub = tu_token("HS256", "hs", lp, NULL, secret, sizeof(secret));
	}
	CHECK_EQ(check(ra, as_partner, NULL, NULL, NOW, &res), AUTH_OK);
	CHECK_STR(res.consumer, "partner");
	CHECK_STR(res.identity, "jwt:0:partner");
	auth_result_release(&res);
	CHECK_EQ(check(ra, NULL, "partner-secret", NULL, NOW, &res), AUTH_OK);
	CHECK_STR(res.identity, "key:partner");
	auth_result_release(&res);
	/* "https://a" + "u1" and "https://au" + "1" concatenate alike: the length tells */
	CHECK_EQ(check(ra, iss_a, NULL, NULL, NOW, &res), AUTH_OK);
	CHECK_STR(res.identity, "jwt:9:https://au1");
	auth_result_release(&res);
	CHECK_EQ(check(ra, iss_b, NULL, NULL, NOW, &res), AUTH_OK);
	CHECK_STR(res.identity, "jwt:10:https://au1");
	auth_result_release(&res);
	/* an identity too long to keep whole is refused, never truncated into another's */
	CHECK_EQ(check(ra, long_sub, NULL, NULL, NOW, &res), AUTH_MALFORMED);
	auth_result_release(&res);
	free(as_partner);
	free(iss_a);
	free(iss_b);
	free(long_sub);
	route_auth_free(ra);
}

static void test_any_of(void)
{
	struct route_auth *ra = route("{\"any_of\": [{\"jwt\": {\"roles\": [\"user\"]}}, "
				      "{\"api_key\": {}}]}",
				      NULL);
	struct auth_result res;
	char *user = hs_token("\"roles\":[\"user\"]"), *guest = hs_token("\"roles\":[\"guest\"]");
	char *expired =
	    tu_token("HS256", "hs", "{\"sub\":\"x\",\"exp\":1}", NULL, secret, sizeof(secret));

	CHECK_EQ(check(ra, user, NULL, NULL, NOW, &res), AUTH_OK);
	CHECK_STR(res.consumer, "bob");
	CHECK_STR(res.identity, "jwt:0:bob");
	CHECK(res.claim(&res, "sub") != NULL);
	auth_result_release(&res);
	CHECK_EQ(check(ra, NULL, "partner-secret", NULL, NOW, &res), AUTH_OK);
	CHECK_STR(res.consumer, "partner");
	CHECK_STR(res.identity, "key:partner");
	CHECK_STR(tu_forward(&res, "X-Consumer"), "partner");
	CHECK(res.claim(&res, "sub") == NULL);
	auth_result_release(&res);
	CHECK_EQ(check1(ra, NULL, NULL, NULL, NOW), AUTH_MISSING);
	/* One method failing does not stop another from succeeding. */
	CHECK_EQ(check(ra, expired, "partner-secret", NULL, NOW, &res), AUTH_OK);
	CHECK_STR(res.consumer, "partner");
	CHECK(tu_forward(&res, "X-User-Id") == NULL);
	auth_result_release(&res);
	CHECK_EQ(check1(ra, guest, "partner-secret", NULL, NOW), AUTH_OK);
	/* Every method failing: the most telling reason. */
	CHECK_EQ(check1(ra, expired, NULL, NULL, NOW), AUTH_EXPIRED);
	CHECK_EQ(check1(ra, NULL, "wrong", NULL, NOW), AUTH_BAD_API_KEY);
	CHECK_EQ(check1(ra, guest, NULL, NULL, NOW), AUTH_FORBIDDEN_ROLE);
	CHECK_EQ(check1(ra, guest, "wrong", NULL, NOW), AUTH_FORBIDDEN_ROLE);
	CHECK_EQ(check1(ra, expired, "wrong", NULL, NOW), AUTH_EXPIRED);
	free(user);
	free(guest);
	free(expired);
	route_auth_free(ra);
}

/* 2023-11-14 22:13:20 UTC; Seoul is UTC+9 with no DST since 1988. */
static time_t seoul(int hour, int min)
{
	struct tm tm = {
	    .tm_year = 2024 - 1900, .tm_mon = 0, .tm_mday = 15, .tm_hour = hour, .tm_min = min};

	return timegm(&tm) - 9 * 3600;
}

static void test_schedule_seoul(void)
{
	struct route_auth *ra = route(
	    NULL, "{\"deny\": [{\"from\": \"00:00\", \"to\": \"06:00\", \"tz\": \"Asia/Seoul\"}]}");
	struct auth_result res;

	CHECK(ra != NULL);
	CHECK_EQ(check(ra, NULL, NULL, NULL, seoul(0, 0), &res), AUTH_FORBIDDEN_SCHEDULE);
	CHECK_EQ(res.status, 403);
	CHECK_EQ(check1(ra, NULL, NULL, NULL, seoul(3, 30)), AUTH_FORBIDDEN_SCHEDULE);
	CHECK_EQ(check1(ra, NULL, NULL, NULL, seoul(5, 59)), AUTH_FORBIDDEN_SCHEDULE);
	CHECK_EQ(check1(ra, NULL, NULL, NULL, seoul(5, 59) + 59), AUTH_FORBIDDEN_SCHEDULE);
	CHECK_EQ(check1(ra, NULL, NULL, NULL, seoul(6, 0)), AUTH_OK);
	CHECK_EQ(check1(ra, NULL, NULL, NULL, seoul(12, 0)), AUTH_OK);
	CHECK_EQ(check1(ra, NULL, NULL, NULL, seoul(23, 59)), AUTH_OK);
	/* 16:00 UTC is 01:00 in Seoul: denied, although it is afternoon in UTC. */
	CHECK_EQ(check1(ra, NULL, NULL, NULL, seoul(1, 0)), AUTH_FORBIDDEN_SCHEDULE);
	route_auth_free(ra);
}

static void test_schedule_midnight_and_auth(void)
{
	struct route_auth *ra =
	    route("{\"jwt\": {}}",
		  "{\"deny\": [{\"from\": \"22:00\", \"to\": \"02:00\", \"tz\": \"Asia/Seoul\"}, "
		  "{\"from\": \"12:00\", \"to\": \"12:30\", \"tz\": \"UTC\"}]}");
	char *t = tu_token("HS256", "hs", "{\"sub\":\"bob\",\"exp\":4102444800}", NULL, secret,
			   sizeof(secret));

	CHECK(ra != NULL);
	CHECK_EQ(check1(ra, t, NULL, NULL, seoul(21, 59)), AUTH_OK);
	CHECK_EQ(check1(ra, t, NULL, NULL, seoul(22, 0)), AUTH_FORBIDDEN_SCHEDULE);
	CHECK_EQ(check1(ra, t, NULL, NULL, seoul(23, 30)), AUTH_FORBIDDEN_SCHEDULE);
	CHECK_EQ(check1(ra, t, NULL, NULL, seoul(0, 0)), AUTH_FORBIDDEN_SCHEDULE);
	CHECK_EQ(check1(ra, t, NULL, NULL, seoul(1, 59)), AUTH_FORBIDDEN_SCHEDULE);
	CHECK_EQ(check1(ra, t, NULL, NULL, seoul(2, 0)), AUTH_OK);
	/* Second window: 12:00-12:30 UTC is 21:00-21:30 in Seoul. */
	CHECK_EQ(check1(ra, t, NULL, NULL, seoul(21, 15)), AUTH_FORBIDDEN_SCHEDULE);
	CHECK_EQ(check1(ra, t, NULL, NULL, seoul(21, 30)), AUTH_OK);
	/* Credentials are checked first: a bad token is 401 inside the window too. */
	CHECK_EQ(check1(ra, NULL, NULL, NULL, seoul(23, 0)), AUTH_MISSING);
	free(t);
	route_auth_free(ra);
	/* 00:00-24:00 denies the whole day. */
	ra = route(NULL, "{\"deny\": [{\"from\": \"00:00\", \"to\": \"24:00\"}]}");
	CHECK_EQ(check1(ra, NULL, NULL, NULL, NOW), AUTH_FORBIDDEN_SCHEDULE);
	CHECK_EQ(check1(ra, NULL, NULL, NULL, NOW + 86399), AUTH_FORBIDDEN_SCHEDULE);
	route_auth_free(ra);
}

/* Our TZif/POSIX-rule reader against glibc (single-threaded here, so setenv is fine). */
static void test_tzone_matches_libc(void)
{
	static const char *const zones[] = {
	    "Asia/Seoul",	 "America/New_York", "Europe/Berlin",	 "Australia/Sydney",
	    "America/Sao_Paulo", "Asia/Kolkata",     "Pacific/Chatham",	 "UTC",
	    "Europe/Dublin",	 "America/St_Johns", "Africa/Casablanca"};
	char *old = getenv("TZ") ? strdup(getenv("TZ")) : NULL;
	char err[256];
	size_t z;
	int64_t t;
	int mismatches = 0;

	for (z = 0; z < sizeof(zones) / sizeof(zones[0]); z++) {
		struct tzone *tz = tzone_load(zones[z], err, sizeof(err));

		CHECK(tz != NULL);
		if (!tz) {
			fprintf(stderr, "  %s\n", err);
			continue;
		}
		setenv("TZ", zones[z], 1);
		tzset();
		/* 1950 .. 2100 in steps of about 9.5 hours, past every DST switch and 2038. */
		for (t = -631152000LL; t < 4102444800LL; t += 34201) {
			time_t tt = t;
			struct tm tm;

			localtime_r(&tt, &tm);
			if (tm.tm_gmtoff != tzone_offset(tz, t) && mismatches++ < 5)
				fprintf(stderr, "  %s at %lld: libc %ld, ours %d\n", zones[z],
					(long long)t, tm.tm_gmtoff, tzone_offset(tz, t));
		}
		tzone_free(tz);
	}
	CHECK_EQ(mismatches, 0);
	if (old)
		setenv("TZ", old, 1);
	else
		unsetenv("TZ");
	tzset();
	free(old);
}

static void test_tzone_posix_rules(void)
{
	struct tzone *z = tzone_from_posix("EST5EDT,M3.2.0,M11.1.0");
	struct tzone *s = tzone_from_posix("<+1030>-10:30<+11>-11,M10.1.0,M4.1.0");
	struct tzone *j = tzone_from_posix("XXX-3YYY,J60/0,300/-1");
	char err[128];

	CHECK(z && s && j);
	/* 2030-07-01 12:00 UTC: summer in New York. */
	CHECK_EQ(tzone_offset(z, 1909051200), -4 * 3600);
	CHECK_EQ(tzone_offset(z, 1893499200), -5 * 3600); /* 2030-01-01 */
	/* 2030-03-10 06:59:59 UTC is 01:59:59 EST; one second later it is 03:00 EDT. */
	CHECK_EQ(tzone_offset(z, 1899356399), -5 * 3600);
	CHECK_EQ(tzone_offset(z, 1899356400), -4 * 3600);
	CHECK_EQ(tzone_offset(s, 1893499200), 11 * 3600);	 /* January: southern summer */
	CHECK_EQ(tzone_offset(s, 1909051200), 10 * 3600 + 1800); /* July */
	CHECK_EQ(tzone_offset(j, 1893499200), 3 * 3600);	 /* Jan 1: before J60 */
	CHECK_EQ(tzone_offset(j, 1909051200), 4 * 3600);
	CHECK(tzone_from_posix("") == NULL);
	CHECK(tzone_from_posix("EST") == NULL);
	CHECK(tzone_from_posix("EST5EDT,M13.1.0,M11.1.0") == NULL);
	CHECK(tzone_from_posix("EST5EDT,M3.2.0") == NULL);
	CHECK(tzone_from_posix("EST5EDT,M3.2.0,M11.1.0junk") == NULL);
	CHECK(tzone_load("../etc/passwd", err, sizeof(err)) == NULL);
	CHECK(tzone_load("/etc/localtime", err, sizeof(err)) == NULL);
	CHECK(tzone_load("Mars/Olympus_Mons", err, sizeof(err)) == NULL);
	CHECK(strstr(err, "unknown time zone \"Mars/Olympus_Mons\"") != NULL);
	tzone_free(z);
	tzone_free(s);
	tzone_free(j);
}

static void test_identity_headers(void)
{
	struct http_str h;

#define IS_ID(a, s) (h.p = (s), h.len = strlen(s), auth_is_identity_header((a), h))
	CHECK(IS_ID(A, "X-Consumer"));
	CHECK(IS_ID(A, "x-consumer"));
	CHECK(IS_ID(A, "X-User-Id"));
	CHECK(IS_ID(A, "X-USER-ID"));
	CHECK(IS_ID(A, "X-Roles"));
	CHECK(!IS_ID(A, "X-User"));
	CHECK(!IS_ID(A, "X-User-Id2"));
	CHECK(!IS_ID(A, "Authorization"));
	CHECK(IS_ID(NULL, "X-Consumer"));
	CHECK(!IS_ID(NULL, "X-User-Id"));
#undef IS_ID
}

static void test_forward_roles(void)
{
	struct route_auth *ra = route("{\"jwt\": {}}", NULL);
	struct auth_result res;
	char *t = hs_token("\"roles\":[\"a\",\"b\"]");

	CHECK_EQ(check(ra, t, NULL, NULL, NOW, &res), AUTH_OK);
	CHECK_STR(tu_forward(&res, "X-User-Id"), "bob");
	CHECK_STR(tu_forward(&res, "X-Roles"), "a,b");
	CHECK(tu_forward(&res, "X-Consumer") == NULL);
	auth_result_release(&res);
	free(t);
	route_auth_free(ra);
}

static void test_route_errors(void)
{
	struct auth_config *saved = A, *empty;
	struct cfg_errs errs = {0};

	route_expect("{\"jwt\": {\"roles\": \"admin\"}}", NULL,
		     "routes[1].auth.jwt.roles: must be an array of strings\n");
	route_expect("{\"jwt\": {\"roles\": [\"\"]}}", NULL,
		     "routes[1].auth.jwt.roles[0]: must be a non-empty string\n");
	route_expect("{\"jwt\": {\"role\": []}}", NULL, "routes[1].auth.jwt.role: unknown key\n");
	route_expect("{\"api_key\": {\"scopes\": [\"x\"]}}", NULL,
		     "routes[1].auth.api_key.scopes: unknown key\n");
	route_expect("{\"jwt\": {}, \"api_key\": {}}", NULL, "routes[1].auth: must be");
	route_expect("\"jwt\"", NULL, "routes[1].auth: must be");
	route_expect("{\"oauth\": {}}", NULL, "routes[1].auth: must be");
	route_expect("{\"any_of\": []}", NULL, "routes[1].auth.any_of: must be a non-empty array");
	route_expect(
	    "{\"any_of\": [{\"jwt\": {}}, {\"any_of\": []}]}", NULL,
	    "routes[1].auth.any_of[1]: must be {\"jwt\": {...}}, {\"api_key\": {...}}, {\"mtls\": {...}} or {\"introspection\": {...}}\n");
	route_expect(NULL, "{\"deny\": [{\"from\": \"25:00\", \"to\": \"06:00\"}]}",
		     "routes[1].schedule.deny[0].from: must be a time \"HH:MM\"");
	route_expect(NULL, "{\"deny\": [{\"from\": \"1:00\", \"to\": \"06:00\"}]}",
		     "routes[1].schedule.deny[0].from: must be a time");
	route_expect(NULL, "{\"deny\": [{\"from\": \"01:00\", \"to\": \"06:60\"}]}",
		     "routes[1].schedule.deny[0].to: must be a time");
	route_expect(NULL, "{\"deny\": [{\"from\": \"01:00\", \"to\": \"01:00\"}]}",
		     "routes[1].schedule.deny[0]: \"from\" and \"to\" must differ");
	route_expect(
	    NULL,
	    "{\"deny\": [{\"from\": \"01:00\", \"to\": \"02:00\", \"tz\": \"Asia/Nowhere\"}]}",
	    "routes[1].schedule.deny[0].tz: unknown time zone \"Asia/Nowhere\"");
	route_expect(NULL,
		     "{\"deny\": [{\"from\": \"01:00\", \"to\": \"02:00\", \"tz\": \"../x\"}]}",
		     "routes[1].schedule.deny[0].tz: invalid time zone name \"../x\"\n");
	route_expect(NULL, "{\"deny\": []}", "routes[1].schedule.deny: must be a non-empty array");
	route_expect(NULL, "{\"allow\": []}", "routes[1].schedule.allow: unknown key\n");
	route_expect(NULL, "[]", "routes[1].schedule: must be an object");

	empty = tu_config("{}", &errs, NULL);
	CHECK(empty != NULL);
	CHECK_EQ(auth_cache_size(empty), 0);
	A = empty;
	route_expect("{\"jwt\": {}}", NULL, "routes[1].auth.jwt: auth.jwt is not configured\n");
	route_expect("{\"api_key\": {}}", NULL,
		     "routes[1].auth.api_key: no consumer has api_keys\n");
	route_expect("{\"any_of\": [{\"api_key\": {}}, {\"jwt\": {}}]}", NULL,
		     "routes[1].auth.any_of[0].api_key: no consumer has api_keys\n");
	A = saved;
	auth_config_free(empty);
	cfg_errs_free(&errs);
}

static void consumers_expect(const char *consumers, const char *line)
{
	struct cfg_errs errs = {0};
	char text[1024];
	struct auth_config *a;

	snprintf(text, sizeof(text), "{\"consumers\": %s}", consumers);
	a = tu_config(text, &errs, NULL);
	CHECK(a == NULL);
	if (!errs.text || !strstr(errs.text, line))
		fprintf(stderr, "  expected \"%s\" in:\n%s", line, errs.text ? errs.text : "");
	CHECK(errs.text && strstr(errs.text, line));
	cfg_errs_free(&errs);
}

static void test_consumer_errors(void)
{
	consumers_expect("{}", "consumers: must be an array\n");
	consumers_expect("[{\"api_keys\": [\"k1\"]}]",
			 "consumers[0].name: must be a printable string of 1 to 127 bytes\n");
	consumers_expect("[{\"name\": \"a\\nb\"}]", "consumers[0].name: must be a printable");
	consumers_expect("[{\"name\": \"a\"}, {\"name\": \"a\"}]",
			 "consumers[1].name: duplicate consumer \"a\"\n");
	consumers_expect("[{\"name\": \"a\", \"api_keys\": [\"\"]}]",
			 "consumers[0].api_keys[0]: must be a non-empty string\n");
	consumers_expect("[{\"name\": \"a\", \"api_keys\": \"k\"}]",
			 "consumers[0].api_keys: must be an array\n");
	consumers_expect("[{\"name\": \"a\", \"api_keys\": [\"k1\"]}, {\"name\": \"b\", "
			 "\"api_keys\": [\"k2\", \"k1\"]}]",
			 "consumers: the same API key is configured for \"");
	consumers_expect("[{\"name\": \"a\", \"key\": 1}]", "consumers[0].key: unknown key\n");
	consumers_expect("[{\"name\": \"a\", \"roles\": [1]}]",
			 "consumers[0].roles[0]: must be a non-empty string\n");
}

/* Keys are kept only as SHA-256 digests, and lookups work after the config JSON is gone. */
static void test_no_plaintext_keys(void)
{
	static const char *const keys[] = {"mobile-secret-1", "mobile-secret-2", "partner-secret",
					   "nobody-secret"};
	unsigned char digest[32];
	struct route_auth *ra;
	size_t i;
	int k, found;

	CHECK_EQ(A->nkeys, 4);
	for (i = 0; i < 4; i++) {
		CHECK(memmem(A->keys, sizeof(*A->keys) * A->nkeys, keys[i], strlen(keys[i])) ==
		      NULL);
		for (k = 0; k < A->nconsumers; k++)
			CHECK(strstr(A->consumers[k].name, keys[i]) == NULL);
		SHA256((const unsigned char *)keys[i], strlen(keys[i]), digest);
		for (k = 0, found = 0; k < A->nkeys; k++)
			found += !memcmp(A->keys[k].digest, digest, 32);
		CHECK_EQ(found, 1);
	}
	json_decref(A_root);
	A_root = NULL;
	ra = route("{\"api_key\": {}}", NULL);
	CHECK_EQ(check1(ra, NULL, "partner-secret", NULL, NOW), AUTH_OK);
	route_auth_free(ra);
}

int main(void)
{
	struct cfg_errs errs = {0};
	char text[2048];
	json_t *keys = json_array();

	tu_mkdir();
	RAND_bytes(secret, sizeof(secret));
	json_array_append_new(keys, tu_jwk(NULL, secret, sizeof(secret), "hs"));
	tu_write_jwks(tu_path("jwks.json"), keys);
	json_decref(keys);
	snprintf(
	    text, sizeof(text),
	    "{\"auth\": {\"jwt\": {\"jwks_file\": \"%s\", \"algorithms\": [\"HS256\"], "
	    "\"forward_claims\": {\"sub\": \"X-User-Id\", \"roles\": \"X-Roles\"}}, "
	    "\"api_keys\": {\"header\": \"X-API-Key\", \"query\": \"api_key\"}}, "
	    "\"consumers\": [{\"name\": \"mobile-app\", \"api_keys\": [\"mobile-secret-1\", "
	    "\"mobile-secret-2\"], \"roles\": [\"user\"]}, {\"name\": \"partner\", "
	    "\"api_keys\": [\"partner-secret\"], \"roles\": [\"partner\", \"user\"]}, "
	    "{\"name\": \"nobody\", \"api_keys\": [\"nobody-secret\"]}, {\"name\": \"keyless\"}]}",
	    tu_path("jwks.json"));
	A = tu_config(text, &errs, &A_root);
	if (!A) {
		fprintf(stderr, "%s", errs.text);
		return 2;
	}

	RUN(test_reason_names);
	RUN(test_open_routes);
	RUN(test_api_keys);
	RUN(test_api_key_roles);
	RUN(test_jwt_roles_scopes);
	RUN(test_nested_roles_claim);
	RUN(test_roles_split);
	RUN(test_identity_namespaces);
	RUN(test_any_of);
	RUN(test_schedule_seoul);
	RUN(test_schedule_midnight_and_auth);
	RUN(test_tzone_matches_libc);
	RUN(test_tzone_posix_rules);
	RUN(test_identity_headers);
	RUN(test_forward_roles);
	RUN(test_route_errors);
	RUN(test_consumer_errors);
	RUN(test_no_plaintext_keys);

	auth_config_free(A);
	json_decref(A_root);
	cfg_errs_free(&errs);
	tu_rmdir();
	return CHECK_DONE();
}
