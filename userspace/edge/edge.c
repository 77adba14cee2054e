/*
 * Loader of the XDP shield. One instance of bpf/xdp_shield is loaded per interface, all
 * sharing the maps pinned under pin_dir (the first load creates and pins them, the others
 * and every later start reuse them), and each is attached through libxdp's dispatcher so
 * the shield coexists with other XDP programs on the same interface.
 */
#include "edge/edge_internal.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <linux/magic.h>
#include <net/if.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>
#include <xdp/libxdp.h>

#include "common/log.h"
#include "xdp_shield.skel.h"

#define BPFFS_ROOT "/sys/fs/bpf"

struct edge_link {
	char name[IF_NAMESIZE];
	int ifindex;
	enum xdp_attach_mode mode;
	struct xdp_shield_bpf *skel;
	struct xdp_program *prog;
};

struct edge {
	char *pin_dir;
	struct edge_link *links;
	int nlinks;
	int config_fd, stats_fd, deny_v4_fd, deny_v6_fd, allow_v4_fd, allow_v6_fd, lists_gen_fd;
};

/*
 * libbpf's own messages. When libxdp's multi-program dispatcher cannot load (some
 * kernels and hypervisors refuse it), libbpf reports the load failure as several warnings
 * that blame RLIMIT_MEMLOCK, and libxdp then attaches the shield on its own, which works.
 * While a shield is being attached the warnings are held back and attach_link() says what
 * happened in one line; at other times they are event-log warnings. libbpf's info and
 * debug notes (such as ELF sections it skips) are debug lines.
 */
static struct {
	bool holding;
	int held;
	char first[512]; /* the first held warning: why the dispatcher failed */
} libbpf_held;

static void trim_line(char *line)
{
	size_t n = strlen(line);

	while (n && (line[n - 1] == '\n' || line[n - 1] == ' '))
		line[--n] = '\0';
}

static int libbpf_log(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	char line[512];

	vsnprintf(line, sizeof(line), fmt, ap);
	trim_line(line);
	if (level != LIBBPF_WARN) {
		log_debug("libbpf", "%s", line);
		return 0;
	}
	if (!libbpf_held.holding) {
		log_warn("libbpf", "%s", line);
		return 0;
	}
	if (!libbpf_held.held++)
		snprintf(libbpf_held.first, sizeof(libbpf_held.first), "%s", line);
	log_debug("libbpf", "%s", line);
	return 0;
}

static void hold_libbpf_warnings(bool on)
{
	libbpf_held.holding = on;
	if (on) {
		libbpf_held.held = 0;
		libbpf_held.first[0] = '\0';
	}
}

/* One line when libxdp attached the shield without its dispatcher (legacy mode). */
static void report_dispatcher(const struct edge_link *l)
{
	struct xdp_multiprog *mp = xdp_multiprog__get_from_ifindex(l->ifindex);

	if (libxdp_get_error(mp))
		return;
	if (xdp_multiprog__is_legacy(mp))
		log_info("edge",
			 "%s: libxdp's dispatcher is unavailable on this kernel (%s): the shield is "
			 "attached on its own, so no other XDP program can share this interface",
			 l->name, libbpf_held.held ? libbpf_held.first : "no reason given");
	xdp_multiprog__close(mp);
}

/* libxdp's messages as event-log lines; its notes about dispatcher fallback are warnings. */
static int libxdp_log(enum libxdp_print_level level, const char *fmt, va_list ap)
{
	char line[512];

	vsnprintf(line, sizeof(line), fmt, ap);
	trim_line(line);
	log_msg(level == LIBXDP_WARN ? LOG_WARN : LOG_DEBUG, "libxdp", "%s", line);
	return 0;
}

static bool is_bpffs(const char *path)
{
	struct statfs st;

	return !statfs(path, &st) && st.f_type == BPF_FS_MAGIC;
}

/* mkdir -p for the part of pin_dir below the bpffs mount. */
static int make_dirs(const char *path)
{
	char buf[512];
	size_t i, len = strlen(path);

	if (len >= sizeof(buf))
		return -ENAMETOOLONG;
	memcpy(buf, path, len + 1);
	for (i = 1; i <= len; i++) {
		if (buf[i] != '/' && buf[i] != '\0')
			continue;
		buf[i] = '\0';
		if (mkdir(buf, 0700) && errno != EEXIST)
			return -errno;
		buf[i] = i == len ? '\0' : '/';
	}
	return 0;
}

/* pin_dir must live on bpffs; mount the standard one if nothing is mounted there yet. */
static int prepare_pin_dir(const char *pin_dir, char *err, size_t errlen)
{
	int ret;

	if (!strncmp(pin_dir, BPFFS_ROOT "/", strlen(BPFFS_ROOT "/")) && !is_bpffs(BPFFS_ROOT)) {
		if (mount("bpf", BPFFS_ROOT, "bpf", 0, "mode=0700")) {
			snprintf(err, errlen,
				 "bpffs is not mounted on %s and mounting it failed: %s",
				 BPFFS_ROOT, strerror(errno));
			return -errno;
		}
		log_info("edge", "mounted bpffs on %s", BPFFS_ROOT);
	}
	ret = make_dirs(pin_dir);
	if (ret) {
		snprintf(err, errlen, "edge.pin_dir: cannot create %s: %s", pin_dir,
			 strerror(-ret));
		return ret;
	}
	if (!is_bpffs(pin_dir)) {
		snprintf(err, errlen, "edge.pin_dir: %s is not on a bpffs mount", pin_dir);
		return -EINVAL;
	}
	return 0;
}

static int set_pin_paths(struct bpf_object *obj, const char *pin_dir)
{
	struct bpf_map *map;
	char path[512];

	bpf_object__for_each_map(map, obj)
	{
		if ((size_t)snprintf(path, sizeof(path), "%s/%s", pin_dir, bpf_map__name(map)) >=
		    sizeof(path))
			return -ENAMETOOLONG;
		if (bpf_map__set_pin_path(map, path))
			return -errno;
	}
	return 0;
}

/* Whether the map pinned at path has the layout the object declares for map. */
static bool pin_matches(const struct bpf_map *map, const char *path)
{
	struct bpf_map_info info = {};
	__u32 len = sizeof(info);
	int fd = bpf_obj_get(path);
	bool same;

	if (fd < 0)
		return true; /* nothing pinned (or unreadable: libbpf reports it) */
	same = !bpf_obj_get_info_by_fd(fd, &info, &len) && info.type == bpf_map__type(map) &&
	       info.key_size == bpf_map__key_size(map) &&
	       info.value_size == bpf_map__value_size(map) &&
	       info.max_entries == bpf_map__max_entries(map);
	close(fd);
	return same;
}

/*
 * A map pinned by an older xgate whose layout changed (an upgrade) cannot be reused, and
 * libbpf would refuse to load. It is unpinned so this load creates the new layout; a
 * gateway still running the old program keeps its own reference.
 */
static void unpin_stale_layouts(struct bpf_object *obj)
{
	struct bpf_map *map;

	bpf_object__for_each_map(map, obj)
	{
		const char *path = bpf_map__pin_path(map);

		if (!path || pin_matches(map, path))
			continue;
		log_warn("edge", "%s was pinned with an older layout: replaced, its contents are lost",
			 path);
		if (unlink(path))
			log_warn("edge", "cannot unpin %s: %s", path, strerror(errno));
	}
}

/* A shield left attached by a crashed gateway would run twice; remove it first. */
static void detach_stale(int ifindex, const char *ifname)
{
	struct xdp_multiprog *mp = xdp_multiprog__get_from_ifindex(ifindex);
	struct xdp_program *p = NULL;

	if (libxdp_get_error(mp))
		return;
	if (xdp_multiprog__is_legacy(mp)) {
		p = xdp_multiprog__main_prog(mp);
		if (p && !strcmp(xdp_program__name(p), "xdp_shield"))
			xdp_multiprog__detach(mp);
		xdp_multiprog__close(mp);
		return;
	}
	while ((p = xdp_multiprog__next_prog(p, mp))) {
		if (strcmp(xdp_program__name(p), "xdp_shield"))
			continue;
		log_warn("edge", "%s: removing a shield left attached by a previous run", ifname);
		xdp_program__detach(p, ifindex, xdp_multiprog__attach_mode(mp), 0);
		break;
	}
	xdp_multiprog__close(mp);
}

static int attach_mode(struct edge_link *l, enum xdp_attach_mode mode)
{
	int ret = xdp_program__attach(l->prog, l->ifindex, mode, 0);

	if (!ret)
		l->mode = mode;
	return ret;
}

static int attach_link(struct edge_link *l, enum edge_mode want, const char *pin_dir, char *err,
		       size_t errlen)
{
	char msg[256];
	int ret;

	l->skel = xdp_shield_bpf__open();
	if (!l->skel) {
		snprintf(err, errlen, "%s: cannot open the XDP object: %s", l->name,
			 strerror(errno));
		return -errno;
	}
	ret = set_pin_paths(l->skel->obj, pin_dir);
	if (ret) {
		snprintf(err, errlen, "edge.pin_dir: %s", strerror(-ret));
		return ret;
	}
	unpin_stale_layouts(l->skel->obj);
	l->prog = xdp_program__from_bpf_obj(l->skel->obj, NULL);
	ret = libxdp_get_error(l->prog);
	if (ret) {
		l->prog = NULL;
		libxdp_strerror(ret, msg, sizeof(msg));
		snprintf(err, errlen, "%s: cannot prepare the XDP program: %s", l->name, msg);
		return ret;
	}
	detach_stale(l->ifindex, l->name);
	hold_libbpf_warnings(true);
	ret = attach_mode(l, want == EDGE_MODE_GENERIC ? XDP_MODE_SKB : XDP_MODE_NATIVE);
	if (ret && want == EDGE_MODE_AUTO) {
		log_info("edge", "%s: native XDP unavailable, trying generic", l->name);
		ret = attach_mode(l, XDP_MODE_SKB);
	}
	hold_libbpf_warnings(false);
	if (ret && libbpf_held.held)
		log_warn("edge", "%s: %s", l->name, libbpf_held.first);
	if (ret) {
		libxdp_strerror(ret, msg, sizeof(msg));
		snprintf(err, errlen, "%s: cannot attach XDP (%s mode): %s%s", l->name,
			 want == EDGE_MODE_GENERIC  ? "generic"
			 : want == EDGE_MODE_NATIVE ? "native"
						    : "native or generic",
			 msg,
			 ret == -EEXIST || ret == -EBUSY
			     ? " (another XDP program is attached without libxdp)"
			     : "");
		return ret;
	}
	log_info("edge", "%s: XDP shield attached in %s mode", l->name,
		 l->mode == XDP_MODE_NATIVE ? "native" : "generic");
	report_dispatcher(l);
	return 0;
}

static void release_link(struct edge_link *l, bool detach)
{
	if (l->prog) {
		if (detach && l->mode != XDP_MODE_UNSPEC) {
			int ret = xdp_program__detach(l->prog, l->ifindex, l->mode, 0);

			if (ret)
				log_warn("edge", "%s: detaching XDP failed: %s", l->name,
					 strerror(-ret));
			else
				log_info("edge", "%s: XDP shield detached", l->name);
		}
		xdp_program__close(l->prog);
	}
	xdp_shield_bpf__destroy(l->skel);
	l->prog = NULL;
	l->skel = NULL;
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

static void edge_free(struct edge *e)
{
	int i;

	for (i = 0; i < e->nlinks; i++)
		release_link(&e->links[i], true);
	close_fd(&e->config_fd);
	close_fd(&e->stats_fd);
	close_fd(&e->deny_v4_fd);
	close_fd(&e->deny_v6_fd);
	close_fd(&e->allow_v4_fd);
	close_fd(&e->allow_v6_fd);
	close_fd(&e->lists_gen_fd);
	free(e->links);
	free(e->pin_dir);
	free(e);
}

/* Own references to the shared maps, independent of any one interface's program. */
static int open_maps(struct edge *e, char *err, size_t errlen)
{
	struct {
		int *fd;
		const char *name;
	} maps[] = {
	    {&e->config_fd, EDGE_MAP_CONFIG},	    {&e->stats_fd, EDGE_MAP_STATS},
	    {&e->deny_v4_fd, EDGE_MAP_DENY_V4},	    {&e->deny_v6_fd, EDGE_MAP_DENY_V6},
	    {&e->allow_v4_fd, EDGE_MAP_ALLOW_V4},   {&e->allow_v6_fd, EDGE_MAP_ALLOW_V6},
	    {&e->lists_gen_fd, EDGE_MAP_LISTS_GEN},
	};
	size_t i;

	for (i = 0; i < sizeof(maps) / sizeof(maps[0]); i++) {
		*maps[i].fd = edge_pin_open(e->pin_dir, maps[i].name, err, errlen);
		if (*maps[i].fd < 0)
			return *maps[i].fd;
	}
	return 0;
}

static int resolve_interfaces(struct edge *e, const struct edge_config *c, char *err, size_t errlen)
{
	int i;

	e->links = calloc(c->ninterfaces, sizeof(*e->links));
	if (!e->links) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	for (i = 0; i < c->ninterfaces; i++) {
		struct edge_link *l = &e->links[i];

		snprintf(l->name, sizeof(l->name), "%s", c->interfaces[i]);
		l->ifindex = if_nametoindex(l->name);
		if (!l->ifindex) {
			snprintf(err, errlen,
				 "edge.interfaces[%d]: interface \"%s\" does not exist", i,
				 l->name);
			return -ENODEV;
		}
	}
	return 0;
}

struct edge *edge_start(const struct edge_config *c, char *err, size_t errlen)
{
	struct edge *e = calloc(1, sizeof(*e));
	int i, ret;

	if (!e || !(e->pin_dir = strdup(c->pin_dir))) {
		snprintf(err, errlen, "out of memory");
		free(e);
		return NULL;
	}
	libxdp_set_print(libxdp_log);
	libbpf_set_print(libbpf_log);
	e->config_fd = e->stats_fd = e->deny_v4_fd = e->deny_v6_fd = -1;
	e->allow_v4_fd = e->allow_v6_fd = e->lists_gen_fd = -1;
	ret = resolve_interfaces(e, c, err, errlen);
	if (!ret)
		ret = prepare_pin_dir(c->pin_dir, err, errlen);
	for (i = 0; !ret && i < c->ninterfaces; i++) {
		e->nlinks = i + 1;
		ret = attach_link(&e->links[i], c->mode, c->pin_dir, err, errlen);
	}
	if (!ret)
		ret = open_maps(e, err, errlen);
	if (!ret)
		ret = edge_apply(e, c, err, errlen);
	if (ret) {
		edge_free(e);
		return NULL;
	}
	return e;
}

static void warn_restart_needed(const struct edge *e, const struct edge_config *c)
{
	bool same = c->ninterfaces == e->nlinks && !strcmp(c->pin_dir, e->pin_dir);
	int i;

	for (i = 0; same && i < e->nlinks; i++)
		same = !strcmp(c->interfaces[i], e->links[i].name);
	if (!same)
		log_warn("edge", "edge.interfaces/pin_dir changed: takes effect after a restart");
}

/* One list (both families), then the word that invalidates the refusals the program
 * cached under the old lists: written even after a partial update. */
static int sync_list(struct edge *e, const char *name, const struct edge_cidr *cidrs, int n,
		     bool keep_operator_entries, char *err, size_t errlen)
{
	bool deny = name[0] == 'd';
	int ret, gen;

	ret =
	    edge_sync_list(deny ? e->deny_v4_fd : e->allow_v4_fd,
			   deny ? e->deny_v6_fd : e->allow_v6_fd, cidrs, n, keep_operator_entries);
	gen = edge_lists_changed(e->lists_gen_fd);
	if (ret || gen)
		snprintf(err, errlen, "cannot update the %s lists: %s", name,
			 strerror(-(ret ?: gen)));
	return ret ?: gen;
}

int edge_apply(struct edge *e, const struct edge_config *c, char *err, size_t errlen)
{
	int ret;

	warn_restart_needed(e, c);
	ret = edge_write_config(e->config_fd, c, 0);
	if (ret) {
		snprintf(err, errlen, "cannot update %s/config: %s", e->pin_dir, strerror(-ret));
		return ret;
	}
	ret = sync_list(e, "deny", c->deny, c->ndeny, c->keep_operator_entries, err, errlen);
	if (!ret)
		ret = sync_list(e, "allow", c->allow, c->nallow, c->keep_operator_entries, err,
				errlen);
	if (ret)
		return ret;
	log_info("edge",
		 "applied: syn %llu/s burst %llu, packets %llu/s burst %llu, udp %llu/s, "
		 "icmp %llu/s, %d tcp ports%s, %d deny, %d allow",
		 (unsigned long long)c->syn.per_s, (unsigned long long)c->syn.burst,
		 (unsigned long long)c->packets.per_s, (unsigned long long)c->packets.burst,
		 (unsigned long long)c->udp.per_s, (unsigned long long)c->icmp.per_s, c->ntcp_ports,
		 c->port_policy ? "" : " (all allowed)", c->ndeny, c->nallow);
	return 0;
}

void edge_stop(struct edge *e)
{
	if (e)
		edge_free(e);
}

size_t edge_describe(const struct edge *e, char *out, size_t outlen)
{
	size_t n = 0;
	int i;

	if (outlen)
		out[0] = '\0';
	for (i = 0; e && i < e->nlinks; i++) {
		int w = snprintf(n < outlen ? out + n : NULL, n < outlen ? outlen - n : 0,
				 "%s%s=%s", i ? "," : "", e->links[i].name,
				 e->links[i].mode == XDP_MODE_NATIVE ? "native" : "generic");

		n += w;
	}
	return n;
}
