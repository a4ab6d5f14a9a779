//! The v1 → v2 value conversions, as runc and crun make them, so that a
//! config written for one layout means the same on the other. The OCI spec
//! speaks v1 (shares, blkio weight, memory+swap); docs/CGROUPS.md lists them.

/// cpu.shares (2..=262144) → cpu.weight (1..=10000): the two ranges mapped
/// end to end, linearly. 0 is "unset".
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    let s = shares.clamp(2, 262_144);
    1 + ((s - 2) * 9999) / 262_142
}

/// blkio.weight (10..=1000) → io.weight (1..=10000), likewise. 0 is "unset".
pub fn blkio_to_io_weight(weight: u64) -> u64 {
    if weight == 0 {
        return 0;
    }
    let w = weight.clamp(10, 1000);
    1 + ((w - 10) * 9999) / 990
}

/// What memory.swap.max gets: the spec's `swap` is memory+swap (v1's
/// memsw), v2 limits the swap alone. None leaves the file as it is.
pub fn swap_to_v2(swap: i64, limit: Option<i64>) -> Result<Option<String>, String> {
    let limit = limit.unwrap_or(0);
    match swap {
        // Unlimited memory with swap unset means "both unlimited" (runc).
        0 if limit == -1 => Ok(Some("max".into())),
        0 => Ok(None),
        s if s < 0 => Ok(Some("max".into())),
        _ if limit <= 0 => Err("a swap limit needs a memory limit (swap is memory+swap)".into()),
        s if s < limit => Err(format!("memory+swap ({s}) is below the memory limit ({limit})")),
        s => Ok(Some((s - limit).to_string())),
    }
}

/// A byte limit as v2 writes it: -1 (or any negative) is "max".
pub fn v2_limit(n: i64) -> String {
    if n < 0 {
        "max".into()
    } else {
        n.to_string()
    }
}

/// cpu.max from quota and period (µs): "max" when the quota is unlimited,
/// the kernel's 100ms period when none is given.
pub fn cpu_max(quota: Option<i64>, period: Option<u64>) -> Option<String> {
    if quota.is_none() && period.is_none() {
        return None;
    }
    let q = match quota {
        Some(q) if q > 0 => q.to_string(),
        _ => "max".into(),
    };
    Some(format!("{q} {}", period.filter(|p| *p > 0).unwrap_or(100_000)))
}

/// A hugetlb page size as the kernel names its files: "2MB" → "2MB", and the
/// spec's "2MiB"-style spelling folded to it.
pub fn page_size(s: &str) -> Result<String, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let unit = match unit {
        "KB" | "kB" | "KiB" => "KB",
        "MB" | "MiB" => "MB",
        "GB" | "GiB" => "GB",
        _ => return Err(format!("page size {s:?} is not a number with KB, MB or GB")),
    };
    if num.is_empty() {
        return Err(format!("page size {s:?} is not a number with KB, MB or GB"));
    }
    Ok(format!("{num}{unit}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_map_end_to_end() {
        assert_eq!(shares_to_weight(0), 0);
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
        // Out of range values are clamped as the kernel clamps shares.
        assert_eq!(shares_to_weight(1), 1);
        assert_eq!(shares_to_weight(1 << 40), 10_000);
    }

    #[test]
    fn blkio_weight_maps_end_to_end() {
        assert_eq!(blkio_to_io_weight(0), 0);
        assert_eq!(blkio_to_io_weight(10), 1);
        assert_eq!(blkio_to_io_weight(500), 4950);
        assert_eq!(blkio_to_io_weight(1000), 10_000);
    }

    #[test]
    fn swap_is_memory_plus_swap() {
        assert_eq!(swap_to_v2(0, Some(1 << 20)), Ok(None));
        assert_eq!(swap_to_v2(0, Some(-1)), Ok(Some("max".into())));
        assert_eq!(swap_to_v2(-1, Some(1 << 20)), Ok(Some("max".into())));
        assert_eq!(swap_to_v2(3 << 20, Some(1 << 20)), Ok(Some((2 << 20).to_string())));
        assert_eq!(swap_to_v2(1 << 20, Some(1 << 20)), Ok(Some("0".into())));
        assert!(swap_to_v2(1 << 20, None).unwrap_err().contains("needs a memory limit"));
        assert!(swap_to_v2(1 << 20, Some(2 << 20)).unwrap_err().contains("below the memory limit"));
    }

    #[test]
    fn cpu_max_from_quota_and_period() {
        assert_eq!(cpu_max(None, None), None);
        assert_eq!(cpu_max(Some(50_000), None).unwrap(), "50000 100000");
        assert_eq!(cpu_max(Some(20_000), Some(50_000)).unwrap(), "20000 50000");
        assert_eq!(cpu_max(Some(-1), Some(50_000)).unwrap(), "max 50000");
        assert_eq!(cpu_max(None, Some(10_000)).unwrap(), "max 10000");
    }

    #[test]
    fn limits_and_page_sizes() {
        assert_eq!(v2_limit(-1), "max");
        assert_eq!(v2_limit(4096), "4096");
        assert_eq!(page_size("2MB").unwrap(), "2MB");
        assert_eq!(page_size("1GiB").unwrap(), "1GB");
        assert_eq!(page_size("64KB").unwrap(), "64KB");
        assert!(page_size("MB").is_err());
        assert!(page_size("2XB").is_err());
    }
}
