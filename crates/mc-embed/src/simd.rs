//! Which vector unit the in-process models use: the widest the CPU has, unless [`ENV_SIMD`] caps it.
//!
//! The cap is for CPUs where the widest unit is not the fastest in practice (some older Xeons lower their clock
//! while 512-bit instructions run) and for measuring one unit against another. Every unit gives vectors within
//! float rounding of each other (the integer products give the same bits), so a cap never changes a model id.

use std::sync::OnceLock;

/// The variable that caps the vector unit: `avx512`, `avx2` or `portable` (no SIMD). Unset or empty: the widest.
pub const ENV_SIMD: &str = "MC_EMBEDDINGS_SIMD";

/// Vector units, narrowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Level {
    Portable,
    Avx2,
    Avx512,
}

impl Level {
    fn parse(value: &str) -> Option<Self> {
        match value.trim().to_ascii_lowercase().as_str() {
            "" | "avx512" | "avx-512" => Some(Level::Avx512),
            "avx2" => Some(Level::Avx2),
            "portable" | "none" | "scalar" => Some(Level::Portable),
            _ => None,
        }
    }
}

/// The cap from [`ENV_SIMD`], read once; a value not understood is reported once and ignored.
pub(crate) fn cap() -> Level {
    static CAP: OnceLock<Level> = OnceLock::new();
    *CAP.get_or_init(|| {
        let value = std::env::var(ENV_SIMD).unwrap_or_default();
        Level::parse(&value).unwrap_or_else(|| {
            tracing::warn!("{ENV_SIMD}={value:?} is not one of avx512, avx2, portable; using the widest unit");
            Level::Avx512
        })
    })
}

/// The `pulp` dispatcher for the f32 loops, within the cap.
pub(crate) fn arch() -> pulp::Arch {
    arch_within(cap())
}

fn arch_within(cap: Level) -> pulp::Arch {
    #[cfg(target_arch = "x86_64")]
    {
        if cap >= Level::Avx512
            && let Some(v4) = pulp::x86::V4::try_new()
        {
            return pulp::Arch::V4(v4);
        }
        if cap >= Level::Avx2
            && let Some(v3) = pulp::x86::V3::try_new()
        {
            return pulp::Arch::V3(v3);
        }
        pulp::Arch::Scalar
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = cap;
        pulp::Arch::new()
    }
}

/// The name of the unit the models use on this CPU within the cap, for diagnostics.
pub fn unit() -> &'static str {
    name(arch())
}

/// The name of a unit as [`ENV_SIMD`] spells it.
pub(crate) fn name(arch: pulp::Arch) -> &'static str {
    match arch {
        #[cfg(target_arch = "x86_64")]
        pulp::Arch::V4(_) => "avx512",
        #[cfg(target_arch = "x86_64")]
        pulp::Arch::V3(_) => "avx2",
        _ => "portable",
    }
}

/// Every unit this CPU runs, narrowest first, whatever the cap: for tests that compare them.
#[cfg(test)]
pub(crate) fn every_unit() -> Vec<pulp::Arch> {
    let mut out = vec![arch_within(Level::Portable)];
    for level in [Level::Avx2, Level::Avx512] {
        let a = arch_within(level);
        if name(a) != name(out[out.len() - 1]) {
            out.push(a);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_of_the_cap() {
        assert_eq!(Level::parse(""), Some(Level::Avx512));
        assert_eq!(Level::parse(" AVX2 "), Some(Level::Avx2));
        assert_eq!(Level::parse("portable"), Some(Level::Portable));
        assert_eq!(Level::parse("sse9"), None);
    }

    #[test]
    fn every_unit_runs_from_portable_to_the_widest_once_each() {
        let names: Vec<&str> = every_unit().into_iter().map(name).collect();
        assert_eq!(names.first(), Some(&"portable"));
        assert_eq!(names.last(), Some(&name(arch_within(Level::Avx512))));
        let mut unique = names.clone();
        unique.dedup();
        assert_eq!(unique, names);
    }

    #[test]
    fn a_cap_never_widens() {
        assert!(matches!(arch_within(Level::Portable), pulp::Arch::Scalar));
        #[cfg(target_arch = "x86_64")]
        {
            assert!(!matches!(arch_within(Level::Avx2), pulp::Arch::V4(_)));
            if pulp::x86::V3::try_new().is_some() {
                assert!(matches!(arch_within(Level::Avx2), pulp::Arch::V3(_)));
            }
        }
    }
}
