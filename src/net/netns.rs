//! Named network namespaces, on the same on-disk contract as `ip netns`.
