// SPDX-License-Identifier: Apache-2.0
// rcon's bridge shortcut: a tc program on a bridge's egress, built by
// build.rs with clang -target bpf and loaded by shortcut.rs.
//
// A GSO packet that the node routes to one of the bridge's own endpoints
// goes straight to that endpoint's port (its veth's node end), found in
// rcon_sc_ports by the inner destination address. Everything else
// (ARP, broadcast, packets that are not GSO, addresses not in the map, a
// frame for another MAC than the endpoint's) goes on through the bridge.
//
// Why: a packet decapsulated by the eBPF IPIP plane keeps the kernel's
// tunnel marks (bpf_skb_adjust_room cannot clear them, as the kernel's own
// tunnels do when they pull their header). A bridge offers no offloads for
// tunnel packets, so the kernel cut each such 64 KB packet into MTU-sized
// ones, with checksums in software, as it entered the bridge. A veth offers
// them all, so handed to the port it stays whole up to the pod's TCP.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

// An endpoint on the bridge, as shortcut.rs: Port writes it.
struct port {
	__u32 ifindex;      // its veth's node end, a port of the bridge
	__u8 mac[6];        // its own MAC: the neighbour entry the frame was addressed by
	__u8 pad[2];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096); // a bridge takes at most 1023 ports
	__type(key, __be32);       // the endpoint's IPv4 address
	__type(value, struct port);
} rcon_sc_ports SEC(".maps");

SEC("classifier/shortcut")
int rcon_shortcut(struct __sk_buff *skb)
{
	// Not gso_segs: a decapsulation leaves it 0, for the kernel to count again.
	if (!skb->gso_size)
		return TC_ACT_OK; // not GSO: the bridge has nothing to cut
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = data + sizeof(*eth);
	if ((void *)(ip + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
		return TC_ACT_OK;
	struct port *p = bpf_map_lookup_elem(&rcon_sc_ports, &ip->daddr);
	if (!p)
		return TC_ACT_OK;
	// Byte by byte: clang would make memcmp a call, which BPF has not.
#pragma unroll
	for (int i = 0; i < 6; i++)
		if (p->mac[i] != eth->h_dest[i])
			return TC_ACT_OK;
	return bpf_redirect(p->ifindex, 0);
}

// It calls no GPL-only helper.
char LICENSE[] SEC("license") = "Apache-2.0";
