/* WAF module: rules loading and its errors, phases, rule ids, the body bound. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "waf/waf.h"

static char dir[] = "/tmp/xgate-waf-XXXXXX";

static const char *write_rules(const char *name, const char *text)
{
	static char path[4][256];
	static int n;
	char *p = path[n++ % 4];
	FILE *f;

	snprintf(p, 256, "%s/%s", dir, name);
	f = fopen(p, "w");
	fputs(text, f);
	fclose(f);
	return p;
}

static struct waf_config *load(const char *json, struct cfg_errs *errs)
{
	json_error_t jerr;
	json_t *o = json_loads(json, 0, &jerr);
	struct waf_config *w = waf_config_parse(o, "waf", errs);

	json_decref(o);
	return w;
}

static const char rules[] =
    "SecRule ARGS \"@contains evil\" \"id:1001,phase:1,deny,log,msg:'evil arg'\"\n"
    "SecRule REQUEST_HEADERS:X-Bad \"@streq yes\" \"id:1002,phase:1,pass,log\"\n"
    "SecRule REQUEST_HEADERS:X-Bad \"@streq yes\" \"id:1003,phase:1,deny,log\"\n"
    "SecRule REQUEST_BODY \"@contains payload\" \"id:1004,phase:2,deny,log\"\n";

static struct waf_config *good(void)
{
	struct cfg_errs errs = {0};
	char json[512];
	struct waf_config *w;

	snprintf(json, sizeof(json), "{\"rules\": [\"%s\"]}", write_rules("good.conf", rules));
	w = load(json, &errs);
	CHECK(w != NULL);
	CHECK_EQ(errs.count, 0);
	cfg_errs_free(&errs);
	return w;
}

static bool head(struct waf_tx *t, const char *target, const struct http_header *h, int nh)
{
	struct sockaddr_in peer = {.sin_family = AF_INET, .sin_port = htons(4242)};
	struct waf_request r = {
	    .peer = (struct sockaddr *)&peer,
	    .method = {"GET", 3},
	    .target = {target, strlen(target)},
	    .minor_version = 1,
	    .headers = h,
	    .nheaders = nh,
	};

	inet_pton(AF_INET, "198.18.0.7", &peer.sin_addr);
	return waf_tx_headers(t, &r);
}

static void test_query_intervention_and_ids(void)
{
	struct waf_config *w = good();
	struct waf_tx *t = waf_tx_new(w);
	char ids[64];

	CHECK(!head(t, "/a?x=fine", NULL, 0));
	CHECK(!waf_tx_body(t, NULL, 0));
	waf_tx_rule_ids(t, ids, sizeof(ids));
	CHECK_STR(ids, "[]");
	waf_tx_free(t);
	t = waf_tx_new(w);
	CHECK(head(t, "/a?x=very%20evil", NULL, 0));
	waf_tx_rule_ids(t, ids, sizeof(ids));
	CHECK_STR(ids, "[1001]");
	waf_tx_free(t);
	waf_config_free(w);
}

static void test_header_rules_in_order(void)
{
	struct waf_config *w = good();
	struct waf_tx *t = waf_tx_new(w);
	struct http_header h[] = {{{"X-Bad", 5}, {"yes", 3}}};
	char ids[64];

	CHECK(head(t, "/", h, 1));
	waf_tx_rule_ids(t, ids, sizeof(ids));
	CHECK_STR(ids, "[1002,1003]");
	/* truncated to whole ids */
	waf_tx_rule_ids(t, ids, 8);
	CHECK_STR(ids, "[1002]");
	waf_tx_free(t);
	waf_config_free(w);
}

static void test_body_phase(void)
{
	struct waf_config *w = good();
	struct waf_tx *t = waf_tx_new(w);
	char ids[64];

	CHECK(!head(t, "/", NULL, 0));
	CHECK(waf_tx_body(t, "a payload here", 14));
	waf_tx_rule_ids(t, ids, sizeof(ids));
	CHECK_STR(ids, "[1004]");
	waf_tx_free(t);
	t = waf_tx_new(w);
	CHECK(!head(t, "/", NULL, 0));
	CHECK(!waf_tx_body(t, "a payload here", 4)); /* only the part given is seen */
	waf_tx_free(t);
	waf_config_free(w);
}

/* A path imitating ModSecurity's details, and a value imitating part of them, do not
 * hide the real id. */
static void test_forged_id_in_value(void)
{
	struct waf_config *w;
	struct cfg_errs errs = {0};
	struct waf_tx *t;
	char json[512], ids[64];

	snprintf(json, sizeof(json), "{\"rules\": [\"%s\"]}",
		 write_rules("log.conf",
			     "SecRule ARGS \"@contains zz\" "
			     "\"id:2001,phase:1,pass,log,logdata:'%{MATCHED_VAR}'\"\n"));
	w = load(json, &errs);
	CHECK(w != NULL);
	t = waf_tx_new(w);
	CHECK(!head(
	    t,
	    "/u%22%5D%20%5Bline%20%221%22%5D%20%5Bid%20%228%22%5D?q=zz%22%5D%20%5Bid%20%229%22%5D",
	    NULL, 0));
	waf_tx_rule_ids(t, ids, sizeof(ids));
	CHECK_STR(ids, "[2001]");
	waf_tx_free(t);
	waf_config_free(w);
	cfg_errs_free(&errs);
}

static void test_config_errors(void)
{
	struct cfg_errs errs = {0};
	char json[768];
	const char *ok = write_rules("ok.conf", rules);
	const char *bad = write_rules("bad.conf", "SecRule ARGS \"@rx x\" \"id:9,phase:2,nope\"\n");

	snprintf(json, sizeof(json), "{\"rules\": [\"%s\", \"%s\", \"%s/none.conf\"]}", ok, bad,
		 dir);
	CHECK(load(json, &errs) == NULL);
	CHECK_EQ(errs.count, 2);
	CHECK(strstr(errs.text, "waf.rules[1]: rules not loaded: ") == errs.text);
	CHECK(strstr(errs.text, "\nwaf.rules[2]: rules not loaded: ") != NULL);
	CHECK(strstr(errs.text, "nope") != NULL);
	cfg_errs_free(&errs);
	memset(&errs, 0, sizeof(errs));
	CHECK(load("{\"rules\": [], \"mode\": \"x\"}", &errs) == NULL);
	CHECK(strstr(errs.text, "waf.rules: at least one rules file is required") != NULL);
	CHECK(strstr(errs.text, "waf.mode: ") != NULL);
	cfg_errs_free(&errs);
	memset(&errs, 0, sizeof(errs));
	snprintf(json, sizeof(json),
		 "{\"rules\": [\"%s\"], \"mode\": \"detect\", \"inspect_body_bytes\": 0}", ok);
	struct waf_config *w = load(json, &errs);
	CHECK(w && w->mode == WAF_DETECT && w->inspect_body_bytes == 0);
	waf_config_free(w);
	cfg_errs_free(&errs);
}

int main(void)
{
	char cmd[300];

	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	RUN(test_query_intervention_and_ids);
	RUN(test_header_rules_in_order);
	RUN(test_body_phase);
	RUN(test_forged_id_in_value);
	RUN(test_config_errors);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", dir);
	return CHECK_DONE();
}
