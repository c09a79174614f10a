//! Facts about Talos releases, as data: what each minor release from v1.7 to v1.15 (main, in
//! development) enforces on an extension image and accepts in its machine configuration.
//! Validation, rendering and linting read these tables and nothing else, so supporting a new
//! release is a data change with a test. Every fact cites the file and tag of
//! `siderolabs/talos` (or `siderolabs/pkgs`) it was read from.
//!
//! - [`extensions`]: the extension loader and imager (allowed paths, kernel facts, the base
//!   installer, the image cache switch);
//! - [`images`]: the images each release runs and installs with (`talext images`);
//! - [`config`]: the machine-configuration documents of each release and the v1alpha1 fields
//!   each one replaces or conflicts with.

pub mod config;
pub mod extensions;
pub mod images;

use std::fmt;

/// A Talos minor release (`v1.14`): the unit at which the facts here change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Minor {
    pub major: u16,
    pub minor: u16,
}

impl Minor {
    pub const fn new(major: u16, minor: u16) -> Self {
        Minor { major, minor }
    }

    /// The minor release of a version string: `v1.14.0`, `1.14.2`, `v1.14.0-rc.1`, `v1.14`.
    pub fn of(version: &str) -> Option<Minor> {
        let v = version.trim();
        let v = v.strip_prefix('v').unwrap_or(v);
        let mut parts = v.split(['.', '-', '+']);
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        Some(Minor { major, minor })
    }
}

impl fmt::Display for Minor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}.{}", self.major, self.minor)
    }
}

/// The releases talext has facts for, oldest first.
pub const KNOWN: &[Minor] = &[
    Minor::new(1, 7),
    Minor::new(1, 8),
    Minor::new(1, 9),
    Minor::new(1, 10),
    Minor::new(1, 11),
    Minor::new(1, 12),
    Minor::new(1, 13),
    Minor::new(1, 14),
    Minor::new(1, 15),
];

/// The newest release users run; the one after it is in development (`main`).
pub const NEWEST_RELEASED: Minor = Minor::new(1, 14);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minors_parse_and_order() {
        assert_eq!(Minor::of("v1.14.0-rc.1"), Some(Minor::new(1, 14)));
        assert_eq!(Minor::of("1.9.5"), Some(Minor::new(1, 9)));
        assert_eq!(Minor::of("v1.10"), Some(Minor::new(1, 10)));
        assert_eq!(Minor::of("latest"), None);
        assert!(Minor::new(1, 9) < Minor::new(1, 10));
        assert_eq!(Minor::new(1, 14).to_string(), "v1.14");
        assert!(KNOWN.windows(2).all(|w| w[0] < w[1]));
        assert!(KNOWN.contains(&NEWEST_RELEASED));
    }
}
