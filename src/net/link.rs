//! The one place that speaks rtnetlink.
