// SPDX-License-Identifier: GPL-2.0
/*
 * Flood generator for bench/xdp_flood: run with BPF_PROG_RUN in live-frames mode, it sends
 * every frame back out of the interface it "arrived" on (XDP_TX), i.e. to the veth peer
 * whose filter is measured. With `sources` > 1 it rewrites the IPv4 source of each frame
 * (base + n % sources) and patches the IPv4 and TCP checksums, so that spoofed floods from
 * many sources reach the stack as valid packets.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

volatile const __u32 sources = 1; /* set by the loader before load */
volatile const __u32 base_src;	  /* host order */
__u64 sent;

static __always_inline void csum_replace4(__u16 *sum, __u32 from, __u32 to)
{
	__u32 c = (__u16)~*sum;

	c += (~from & 0xffff) + (~from >> 16);
	c += (to & 0xffff) + (to >> 16);
	c = (c & 0xffff) + (c >> 16);
	c = (c & 0xffff) + (c >> 16);
	*sum = (__u16)~c;
}

SEC("xdp")
int xdp_flood_gen(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	struct iphdr *ip = data + sizeof(struct ethhdr);
	__u32 from, to;

	sent++;
	if (sources <= 1 || (void *)(ip + 1) > end)
		return XDP_TX;
	from = ip->saddr;
	to = bpf_htonl(base_src + (__u32)(sent % sources));
	ip->saddr = to;
	csum_replace4(&ip->check, from, to);
	if (ip->protocol == IPPROTO_TCP) {
		struct tcphdr *th = (void *)(ip + 1);

		if ((void *)(th + 1) <= end)
			csum_replace4(&th->check, from, to);
	}
	return XDP_TX;
}

char LICENSE[] SEC("license") = "GPL";
