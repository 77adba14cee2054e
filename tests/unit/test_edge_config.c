/* The "edge" config section: values, defaults, and errors naming their JSON path. */
#include <arpa/inet.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "check.h"
#include "edge/edge.h"

static struct edge_config *parse(const char *text, struct cfg_errs *errs)
{
	json_t *j = json_loads(text, JSON_DECODE_ANY, NULL);
	struct edge_config *c;

	if (!j) {
		fprintf(stderr, "bad test JSON: %s\n", text);
		return NULL;
	}
	c = edge_config_parse(j, "edge", errs);
	json_decref(j);
	return c;
}

static void expect_error(const char *text, const char *message)
{
	struct cfg_errs errs = {0};
	struct edge_config *c = parse(text, &errs);

	CHECK(c == NULL);
	CHECK_STR(errs.text, message);
	cfg_errs_free(&errs);
	edge_config_free(c);
}

static void test_demo_config(void)
{
	struct cfg_errs errs = {0};
	struct edge_config *c = parse(
	    "{\"interfaces\": [\"xg0\"], \"mode\": \"auto\", \"pin_dir\": \"/sys/fs/bpf/xgate\","
	    " \"allow_tcp_ports\": [8080, 8443],"
	    " \"per_ip\": {\"syn_per_s\": 100, \"syn_burst\": 200, \"packets_per_s\": 20000,"
	    " \"packets_burst\": 40000},"
	    " \"udp_per_ip_per_s\": 0, \"icmp_per_ip_per_s\": 10,"
	    " \"deny\": [\"203.0.113.0/24\", \"2001:db8:bad::/48\"], \"allow\": []}",
	    &errs);
	char text[64];

	CHECK_EQ(errs.count, 0);
	CHECK(c != NULL);
	if (!c)
		return;
	CHECK_EQ(c->ninterfaces, 1);
	CHECK_STR(c->interfaces[0], "xg0");
	CHECK_EQ(c->mode, EDGE_MODE_AUTO);
	CHECK_STR(edge_config_pin_dir(c), "/sys/fs/bpf/xgate");
	CHECK(c->port_policy);
	CHECK_EQ(c->ntcp_ports, 2);
	CHECK_EQ(c->tcp_ports[1], 8443);
	CHECK_EQ(c->syn.per_s, 100);
	CHECK_EQ(c->syn.burst, 200);
	CHECK_EQ(c->packets.per_s, 20000);
	CHECK_EQ(c->packets.burst, 40000);
	CHECK_EQ(c->udp.per_s, 0);
	CHECK_EQ(c->icmp.per_s, 10);
	CHECK_EQ(c->icmp.burst, 10);
	CHECK_EQ(c->ndeny, 2);
	CHECK_EQ(c->deny[1].family, AF_INET6);
	edge_cidr_format(&c->deny[0], text, sizeof(text));
	CHECK_STR(text, "203.0.113.0/24");
	edge_cidr_format(&c->deny[1], text, sizeof(text));
	CHECK_STR(text, "2001:db8:bad::/48");
	CHECK_EQ(c->nallow, 0);
	CHECK(c->keep_operator_entries);
	edge_config_free(c);
}

static void test_defaults(void)
{
	struct cfg_errs errs = {0};
	struct edge_config *c = parse("{\"interfaces\": [\"xg0\", \"xg1\"], \"mode\": \"generic\","
				      " \"per_ip\": {\"syn_per_s\": 50},"
				      " \"keep_operator_entries\": false}",
				      &errs);

	CHECK_EQ(errs.count, 0);
	CHECK(c != NULL);
	if (!c)
		return;
	CHECK_EQ(c->ninterfaces, 2);
	CHECK_EQ(c->mode, EDGE_MODE_GENERIC);
	CHECK_STR(c->pin_dir, EDGE_DEFAULT_PIN_DIR);
	CHECK(!c->port_policy);
	/* A rate without a burst: one second's worth. */
	CHECK_EQ(c->syn.per_s, 50);
	CHECK_EQ(c->syn.burst, 50);
	CHECK_EQ(c->packets.per_s, 20000);
	CHECK_EQ(c->packets.burst, 40000);
	CHECK_EQ(c->udp.per_s, 0);
	CHECK_EQ(c->icmp.per_s, 10);
	CHECK(!c->keep_operator_entries);
	edge_config_free(c);
}

static void test_errors_name_paths(void)
{
	expect_error("{\"interfaces\": [\"xg0\"], \"deny\": [\"10.0.0.0/8\", \"1.2.3.4/40\"]}",
		     "edge.deny[1]: invalid CIDR \"1.2.3.4/40\"\n");
	expect_error("{\"interfaces\": [\"xg0\"], \"allow\": [\"2001:db8::/129\", 7]}",
		     "edge.allow[0]: invalid CIDR \"2001:db8::/129\"\n"
		     "edge.allow[1]: must be a CIDR string\n");
	expect_error("{\"mode\": \"native\"}",
		     "edge.interfaces: must list at least one interface\n");
	expect_error("{\"interfaces\": []}", "edge.interfaces: must list at least one interface\n");
	expect_error("{\"interfaces\": \"xg0\"}", "edge.interfaces: must be an array\n");
	expect_error("{\"interfaces\": [\"xg0\", \"a-very-long-interface-name\", \"xg0\"]}",
		     "edge.interfaces[1]: must be an interface name (1 to 15 characters)\n"
		     "edge.interfaces[2]: interface \"xg0\" listed twice\n");
	expect_error("{\"interfaces\": [\"xg0\"], \"mode\": \"fast\"}",
		     "edge.mode: must be one of \"auto\", \"native\", \"generic\"\n");
	expect_error("{\"interfaces\": [\"xg0\"], \"pin_dir\": \"bpf/xgate\"}",
		     "edge.pin_dir: must be an absolute path\n");
	expect_error("{\"interfaces\": [\"xg0\"], \"allow_tcp_ports\": [80, 0, 70000, \"443\"]}",
		     "edge.allow_tcp_ports[1]: must be a port between 1 and 65535\n"
		     "edge.allow_tcp_ports[2]: must be a port between 1 and 65535\n"
		     "edge.allow_tcp_ports[3]: must be a port between 1 and 65535\n");
	expect_error("{\"interfaces\": [\"xg0\"], \"per_ip\": {\"syn_per_s\": -1}}",
		     "edge.per_ip.syn_per_s: must be between 0 and 1000000000000\n");
	expect_error("{\"interfaces\": [\"xg0\"], \"per_ip\": {\"packets_per_s\": 10, "
		     "\"packets_burst\": 0}}",
		     "edge.per_ip.packets_burst: must be at least 1 when packets_per_s is set\n");
	expect_error("{\"interfaces\": [\"xg0\"], \"per_ip\": {\"syn_rate\": 1}}",
		     "edge.per_ip.syn_rate: unknown key\n");
	expect_error("{\"interfaces\": [\"xg0\"], \"udp_per_ip_per_s\": 1.5}",
		     "edge.udp_per_ip_per_s: must be an integer\n");
	expect_error("{\"interfaces\": [\"xg0\"], \"deny\": {}}", "edge.deny: must be an array\n");
	expect_error("{\"interfaces\": [\"xg0\"], \"keep_operator_entries\": 1}",
		     "edge.keep_operator_entries: must be true or false\n");
	expect_error("[]", "edge: must be an object\n");
}

static void test_cidr_host_bits_cleared(void)
{
	struct cfg_errs errs = {0};
	struct edge_config *c = parse(
	    "{\"interfaces\": [\"xg0\"], \"deny\": [\"198.18.7.9/16\", \"2001:db8::1\"]}", &errs);
	char text[64];

	CHECK(c != NULL);
	if (!c)
		return;
	edge_cidr_format(&c->deny[0], text, sizeof(text));
	CHECK_STR(text, "198.18.0.0/16");
	edge_cidr_format(&c->deny[1], text, sizeof(text));
	CHECK_STR(text, "2001:db8::1/128");
	edge_config_free(c);
}

static void test_reason_names(void)
{
	CHECK_STR(edge_reason_name(0), "pass");
	CHECK_STR(edge_reason_name(4), "deny");
	CHECK(edge_reason_name(-1) == NULL);
	CHECK(edge_reason_name(1000) == NULL);
}

int main(void)
{
	RUN(test_demo_config);
	RUN(test_defaults);
	RUN(test_errors_name_paths);
	RUN(test_cidr_host_bits_cleared);
	RUN(test_reason_names);
	return CHECK_DONE();
}
