/*
 * Config loader (userspace/config/config.c and the section parsers it calls) on JSON text
 * through config_load_buffer. A refused config reports at least one "path: message" line
 * and nothing else is left behind (LeakSanitizer); an accepted one has no errors and every
 * cross reference resolved: route and listener upstreams in range, at least one listener,
 * paths starting with '/', lower-case hosts, upstreams with a name and targets, a route
 * table for the routes, and limits inside their documented ranges.
 */
#include "common/log.h"
#include "config/config.h"
#include "fuzz.h"
#include "metrics/metrics.h"
#include "upstream/dns.h"
#include "upstream/upstream.h"

/*
 * Targets and metrics label sets live in process-wide registries that survive reloads and
 * never shrink (workers keep pointers and slot numbers). Linked with --wrap, the real
 * functions still run, but with a fixed set of names, so millions of configs cannot grow
 * the registries into a slowdown (or into "too many label sets" on every input).
 */
struct target_state *__real_target_state_get(const char *upstream, const char *address);
int __real_metrics_route_slot(const char *route_name);
int __real_metrics_listener_slot(const char *listener_name);
int __real_metrics_target_slot(const char *upstream, const char *target);
int __real_metrics_split_slot(const char *route, const char *upstream);
int __real_metrics_consumer_slot(const char *consumer);
int __real_metrics_compose_slot(const char *route, const char *call);

static const char *fixed(const char *name, const char *as)
{
	return name && *name ? as : name;
}

struct target_state *__wrap_target_state_get(const char *upstream, const char *address)
{
	return __real_target_state_get(fixed(upstream, "u"), fixed(address, "a"));
}

int __wrap_metrics_route_slot(const char *route_name)
{
	return __real_metrics_route_slot(fixed(route_name, "r"));
}

int __wrap_metrics_listener_slot(const char *listener_name)
{
	return __real_metrics_listener_slot(fixed(listener_name, "l"));
}

int __wrap_metrics_target_slot(const char *upstream, const char *target)
{
	return __real_metrics_target_slot(fixed(upstream, "u"), fixed(target, "a"));
}

int __wrap_metrics_split_slot(const char *route, const char *upstream)
{
	return __real_metrics_split_slot(fixed(route, "r"), fixed(upstream, "u"));
}

int __wrap_metrics_compose_slot(const char *route, const char *call)
{
	return __real_metrics_compose_slot(fixed(route, "r"), fixed(call, "c"));
}

int __wrap_metrics_consumer_slot(const char *consumer)
{
	return __real_metrics_consumer_slot(fixed(consumer, "c"));
}

static bool verbose; /* FUZZ_VERBOSE=1: print what each input loads to */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	log_set_level(LOG_ERROR);
	verbose = getenv("FUZZ_VERBOSE") != NULL;
	/* ${FUZZ_ENV} references resolve; anything else unset is a reported error */
	setenv("FUZZ_ENV", "127.0.0.1:9000", 1);
	setenv("MOBILE_APP_KEY", "fuzz-mobile-key-1", 1);
	return 0;
}

static void check_errors(const struct cfg_errs *errs)
{
	int lines = 0;

	FUZZ_CHECK(errs->count > 0 && errs->text && errs->len > 0);
	FUZZ_CHECK(errs->text[errs->len - 1] == '\n');
	for (size_t i = 0; i < errs->len; i++)
		lines += errs->text[i] == '\n';
	FUZZ_CHECK(lines == errs->count);
	FUZZ_CHECK(memmem(errs->text, errs->len, ": ", 2));
}

static bool lower_case(const char *s)
{
	for (; *s; s++)
		if (*s >= 'A' && *s <= 'Z')
			return false;
	return true;
}

static void check_config(const struct xg_config *cfg)
{
	const struct limits_config *l = &cfg->limits;

	FUZZ_CHECK(cfg->workers >= 1 && cfg->workers <= 256);
	FUZZ_CHECK(cfg->nlisteners >= 1);
	FUZZ_CHECK(l->max_header_bytes >= 1024 && l->max_header_bytes <= 65536);
	FUZZ_CHECK(l->max_request_line >= 256 && l->max_request_line <= 65536);
	for (int i = 0; i < cfg->nupstreams; i++) {
		const struct upstream_config *u = &cfg->upstreams[i];

		FUZZ_CHECK(u->name && u->name[0]);
		FUZZ_CHECK(config_upstream_index(cfg, u->name) == i);
		/* Host-name targets are resolved at run time: none may be known at load. */
		FUZZ_CHECK(u->ntargets >= 1 || (u->dns && u->dns->nsources >= 1));
		for (int t = 0; t < u->ntargets; t++)
			FUZZ_CHECK(u->targets[t].address_text && u->targets[t].weight >= 1);
	}
	for (int i = 0; i < cfg->nlisteners; i++) {
		const struct listener_config *lc = &cfg->listeners[i];

		FUZZ_CHECK(lc->name && lc->name[0] && lc->address_text);
		FUZZ_CHECK(lc->upstream >= -1 && lc->upstream < cfg->nupstreams);
		for (int s = 0; s < lc->nsni_routes; s++)
			FUZZ_CHECK(lc->sni_routes[s].upstream >= 0 &&
				   lc->sni_routes[s].upstream < cfg->nupstreams &&
				   lower_case(lc->sni_routes[s].host));
	}
	FUZZ_CHECK(!cfg->nroutes || cfg->router);
	for (int i = 0; i < cfg->nroutes; i++) {
		const struct route_config *rc = &cfg->routes[i];

		FUZZ_CHECK(rc->name);
		FUZZ_CHECK(rc->upstream >= 0 && rc->upstream < cfg->nupstreams);
		FUZZ_CHECK(rc->npaths >= 1);
		for (int p = 0; p < rc->npaths; p++)
			FUZZ_CHECK(rc->paths[p][0] == '/');
		for (int h = 0; h < rc->nhosts; h++)
			FUZZ_CHECK(lower_case(rc->hosts[h]));
		for (int h = 0; h < rc->nheaders; h++)
			FUZZ_CHECK(rc->headers[h].name && lower_case(rc->headers[h].name));
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cfg_errs errs = {0};
	char *buf = fuzz_dup(data, size);
	struct xg_config *cfg = config_load_buffer(buf, size, "fuzz.json", &errs);

	if (verbose)
		fprintf(stderr, "%s\n%s", cfg ? "loaded" : "refused", errs.text ? errs.text : "");
	if (!cfg) {
		check_errors(&errs);
	} else {
		FUZZ_CHECK(errs.count == 0);
		check_config(cfg);
		FUZZ_CHECK(config_get(cfg) == cfg);
		config_put(cfg);
		config_put(cfg);
	}
	cfg_errs_free(&errs);
	free(buf);
	return 0;
}
