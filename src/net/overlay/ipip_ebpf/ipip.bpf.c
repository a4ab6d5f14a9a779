// SPDX-License-Identifier: Apache-2.0
// rcon's eBPF IPIP data plane (RFC 2003), for kernels without ipip.ko.
//
// Two tc programs, built by build.rs with clang -target bpf and loaded by
// ipip_ebpf.rs:
// - rcon_ipip_out, on the egress of rcon's veth "rcon-ebpf", where the
//   routes to the peers' pod subnets point: looks the inner destination up
//   in rcon_ipip_nets (pod subnet -> peer underlay address), pushes an outer
//   IPv4 header (protocol 4) in front of the inner one, keeping GSO, and
//   sends it out of the underlay through the kernel's route and neighbour
//   lookup (bpf_redirect_neigh).
// - rcon_ipip_in, on the ingress of the underlay: an IPIP packet from an
//   address in rcon_ipip_peers loses its outer header and re-enters the
//   stack as if received by rcon-ebpf (as the kernel's ipip device does, so
//   reverse-path checks and firewall rules see the tunnel device); one from
//   any other address is dropped; everything else passes untouched.
//
// What goes on the wire is what the kernel's ipip sends with its defaults
// (no outer options, DF set, TTL and TOS from the inner packet), so a node
// in this mode and one with the ipip device talk to each other.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

// linux/bpf.h of kernels before 6.3 lacks it; older kernels refuse it
// with EINVAL, and the program strips the header without it then.
#ifndef BPF_F_ADJ_ROOM_DECAP_L3_IPV4
#define BPF_F_ADJ_ROOM_DECAP_L3_IPV4 (1ULL << 7)
#endif

#define IP_DF 0x4000
#define OUTER_LEN ((int)sizeof(struct iphdr))

// Written by rcon when it loads the programs (ipip_ebpf.rs: Cfg).
struct cfg {
	__be32 local;       // this node's underlay address: the outer source
	__u32 underlay;     // the underlay's ifindex
	__u32 dev;          // rcon-ebpf's ifindex
	__u8 dev_mac[6];    // rcon-ebpf's MAC: decapped frames are addressed to it
	__u8 pad[2];
};

struct lpm_key {
	__u32 prefixlen;
	__be32 addr;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct cfg);
} rcon_ipip_cfg SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lpm_key);
	__type(value, __be32);
} rcon_ipip_nets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __be32);
	__type(value, __u32);
} rcon_ipip_peers SEC(".maps");

static __always_inline __u16 csum_fold(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

static __always_inline struct cfg *config(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&rcon_ipip_cfg, &zero);
}

SEC("classifier/out")
int rcon_ipip_out(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *inner = data + sizeof(*eth);
	if ((void *)(inner + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
		return TC_ACT_SHOT; // only IPv4 is routed here
	struct lpm_key key = { .prefixlen = 32, .addr = inner->daddr };
	__be32 *peer = bpf_map_lookup_elem(&rcon_ipip_nets, &key);
	struct cfg *c = config();
	if (!peer || !c)
		return TC_ACT_SHOT; // no peer owns the destination: as an unreachable route
	__be32 remote = *peer, local = c->local;
	__u32 underlay = c->underlay;

	struct iphdr outer = {
		.version = 4,
		.ihl = 5,
		.tos = inner->tos,
		.ttl = inner->ttl,
		.protocol = IPPROTO_IPIP,
		.frag_off = bpf_htons(IP_DF),
		.saddr = local,
		.daddr = remote,
	};
	__u32 len = skb->len - sizeof(*eth) + OUTER_LEN;
	// A GSO packet may be longer than one IP header can say: segmentation
	// writes each segment's own length.
	outer.tot_len = bpf_htons(len > 0xffff ? 0xffff : len);

	// Room after the Ethernet header; the kernel marks the packet as IPIP
	// so that GSO cuts it with ipip_gso_segment. The inner MSS already
	// fits: rcon-ebpf's MTU is the underlay's minus this header.
	if (bpf_skb_adjust_room(skb, OUTER_LEN, BPF_ADJ_ROOM_MAC,
				BPF_F_ADJ_ROOM_ENCAP_L3_IPV4 | BPF_F_ADJ_ROOM_FIXED_GSO))
		return TC_ACT_SHOT;

	__u32 sum = 0;
	__u16 *w = (__u16 *)&outer;
#pragma unroll
	for (int i = 0; i < OUTER_LEN / 2; i++)
		sum += w[i];
	outer.check = csum_fold(sum);
	if (bpf_skb_store_bytes(skb, sizeof(struct ethhdr), &outer, OUTER_LEN, 0))
		return TC_ACT_SHOT;
	// The route and neighbour of the outer destination, out of the underlay.
	return bpf_redirect_neigh(underlay, NULL, 0, 0);
}

SEC("classifier/in")
int rcon_ipip_in(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *outer = data + sizeof(*eth);
	if ((void *)(outer + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP) || outer->protocol != IPPROTO_IPIP)
		return TC_ACT_OK;
	struct cfg *c = config();
	if (!c || outer->daddr != c->local)
		return TC_ACT_OK; // not ours to take
	if (!bpf_map_lookup_elem(&rcon_ipip_peers, &outer->saddr))
		return TC_ACT_SHOT; // IPIP from a node that is not a peer
	if (outer->ihl != 5 || (outer->frag_off & bpf_htons(0x3fff)))
		return TC_ACT_SHOT; // options or a fragment: the kernel's ipip would reassemble, we do not
	__u32 dev = c->dev;
	__u8 mac[6];
	__builtin_memcpy(mac, c->dev_mac, sizeof(mac));

	// FIXED_GSO: a GSO packet (a veth underlay carries them whole) keeps
	// its segment size. Without it the kernel grows the size by the 20
	// bytes taken off, and each segment of the inner packet no longer fits
	// the pods' MTU when it is forwarded: every bulk TCP packet was dropped.
	if (bpf_skb_adjust_room(skb, -OUTER_LEN, BPF_ADJ_ROOM_MAC,
				BPF_F_ADJ_ROOM_DECAP_L3_IPV4 | BPF_F_ADJ_ROOM_FIXED_GSO) &&
	    bpf_skb_adjust_room(skb, -OUTER_LEN, BPF_ADJ_ROOM_MAC, BPF_F_ADJ_ROOM_FIXED_GSO))
		return TC_ACT_SHOT;
	if (bpf_skb_store_bytes(skb, 0, mac, sizeof(mac), 0))
		return TC_ACT_SHOT;
	return bpf_redirect(dev, BPF_F_INGRESS);
}

// It calls no GPL-only helper.
char LICENSE[] SEC("license") = "Apache-2.0";
