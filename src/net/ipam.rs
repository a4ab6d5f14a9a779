//! IPAM: subnet pools and address leases (being written).
