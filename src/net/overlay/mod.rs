//! Cross-host pod networks: each node owns a subnet of one cluster range,
//! and reaches the others' subnets by host-gw routes, VXLAN or IPIP.

pub mod ipip_user;
