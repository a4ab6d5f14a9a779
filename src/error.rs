//! The failures a caller must tell apart, as types rather than message text.
//!
//! Most errors in rcon only travel up to the one line the user reads, so they
//! stay `anyhow` chains. Where a caller branches on what went wrong (a link
//! already gone, a name taken, a feature the kernel lacks), the failure is an
//! [`Error`] somewhere in the chain, or a kernel errno that [`kind`] maps to
//! the same [`Kind`]. Nobody matches on message text.

use std::io;

/// What kind of failure an error is, for the callers that branch on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The object does not exist (ENOENT, ENODEV, ESRCH).
    NotFound,
    /// The object is in use (EBUSY).
    Busy,
    /// The name or object is already there (EEXIST).
    Exists,
    /// The input is not acceptable (EINVAL).
    Invalid,
    /// The kernel or host lacks the feature (EOPNOTSUPP, EAFNOSUPPORT, EPROTONOSUPPORT).
    Unsupported,
}

/// An error whose kind a caller may need; its message is the user's line.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Busy(String),
    #[error("{0}")]
    Exists(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Unsupported(String),
}

impl Error {
    pub fn kind(&self) -> Kind {
        match self {
            Error::NotFound(_) => Kind::NotFound,
            Error::Busy(_) => Kind::Busy,
            Error::Exists(_) => Kind::Exists,
            Error::Invalid(_) => Kind::Invalid,
            Error::Unsupported(_) => Kind::Unsupported,
        }
    }
}

/// The kind of a kernel errno, for the errnos callers branch on.
pub fn errno_kind(errno: i32) -> Option<Kind> {
    match errno {
        libc::ENOENT | libc::ENODEV | libc::ESRCH => Some(Kind::NotFound),
        libc::EBUSY => Some(Kind::Busy),
        libc::EEXIST => Some(Kind::Exists),
        libc::EINVAL => Some(Kind::Invalid),
        libc::EOPNOTSUPP | libc::EAFNOSUPPORT | libc::EPROTONOSUPPORT => Some(Kind::Unsupported),
        _ => None,
    }
}

/// The kernel errno somewhere in `e`'s chain, if there is one.
pub fn errno(e: &anyhow::Error) -> Option<i32> {
    e.chain().find_map(|c| {
        c.downcast_ref::<io::Error>()
            .and_then(io::Error::raw_os_error)
            .or_else(|| c.downcast_ref::<nix::errno::Errno>().map(|n| *n as i32))
    })
}

/// The kind of `e`: the first typed [`Error`] in its chain, else its errno's.
pub fn kind(e: &anyhow::Error) -> Option<Kind> {
    e.chain().find_map(|c| c.downcast_ref::<Error>().map(Error::kind)).or_else(|| errno(e).and_then(errno_kind))
}

/// Whether `e` says the object is not there.
pub fn is_not_found(e: &anyhow::Error) -> bool {
    kind(e) == Some(Kind::NotFound)
}

#[cfg(test)]
mod tests {
    use anyhow::Context as _;

    use super::*;

    #[test]
    fn a_typed_error_is_found_under_context() {
        let e = anyhow::Error::from(Error::Exists("network \"a\" already exists".into())).context("creating");
        assert_eq!(kind(&e), Some(Kind::Exists));
        assert_eq!(format!("{e:#}"), "creating: network \"a\" already exists");
    }

    #[test]
    fn errnos_map_to_kinds() {
        let io = Err::<(), _>(io::Error::from_raw_os_error(libc::ENODEV)).context("deleting rv1").unwrap_err();
        assert!(is_not_found(&io));
        assert_eq!(errno(&io), Some(libc::ENODEV));
        let nix = anyhow::Error::from(nix::errno::Errno::EOPNOTSUPP).context("adding an fdb entry");
        assert_eq!(kind(&nix), Some(Kind::Unsupported));
        let other = anyhow::Error::from(io::Error::from_raw_os_error(libc::EPERM));
        assert_eq!(kind(&other), None);
        assert_eq!(kind(&anyhow::anyhow!("no such container")), None, "text is never read");
    }
}
