// SPDX-License-Identifier: GPL-2.0
/* The cheapest XDP program: the floor bench/xdp_bench measures the shield against. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int xdp_floor(struct xdp_md *ctx)
{
	return XDP_DROP;
}

char LICENSE[] SEC("license") = "GPL";
