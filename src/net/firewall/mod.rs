//! The firewall: one interface, nftables and iptables backends (being written).
