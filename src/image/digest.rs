//! Content digests: every blob that enters the store is hashed on the way in
//! and compared with the digest its descriptor names.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

use anyhow::{bail, Context as _, Result};
use sha2::{Digest as _, Sha256};

/// The hex part of `sha256:<64 hex>`; anything else is refused, so a digest
/// can be used as a file name without further checks.
pub fn hex(digest: &str) -> Result<&str> {
    let Some(h) = digest.strip_prefix("sha256:") else {
        bail!("unsupported digest {digest:?} (only sha256 is supported)");
    };
    if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        bail!("malformed digest {digest:?}");
    }
    Ok(h)
}

pub fn of_bytes(data: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(data))
}

/// A reader that hashes what passes through it.
pub struct Hashing<R> {
    pub inner: R,
    hasher: Sha256,
    pub count: u64,
}

impl<R: Read> Hashing<R> {
    pub fn new(inner: R) -> Self {
        Hashing { inner, hasher: Sha256::new(), count: 0 }
    }
    /// Read to the end (tar stops before its trailing padding) and return the digest.
    pub fn finish(mut self) -> io::Result<String> {
        io::copy(&mut self, &mut io::sink())?;
        Ok(format!("sha256:{:x}", self.hasher.finalize()))
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// Fail unless `got` is `want` (and the size matches, when known).
pub fn check(what: &str, want: &str, got: &str, want_size: Option<u64>, got_size: u64) -> Result<()> {
    if want != got {
        bail!("digest mismatch for {what}: expected {want}, got {got}");
    }
    if let Some(s) = want_size {
        if s != got_size {
            bail!("size mismatch for {what} {want}: expected {s} bytes, got {got_size}");
        }
    }
    Ok(())
}

/// Copy `src` to `dst` while hashing it and verify the result.
pub fn copy_verified(src: &Path, dst: &Path, want: &str, want_size: Option<u64>) -> Result<()> {
    hex(want)?;
    let f = File::open(src).with_context(|| format!("blob {want} is missing ({})", src.display()))?;
    let mut r = Hashing::new(f);
    let mut out = File::create(dst).with_context(|| format!("creating {}", dst.display()))?;
    io::copy(&mut r, &mut out).with_context(|| format!("copying blob {want}"))?;
    out.flush()?;
    let n = r.count;
    let got = r.finish()?;
    check(&format!("blob {}", src.display()), want, &got, want_size, n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_validates() {
        let d = of_bytes(b"abc");
        assert_eq!(d, "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert!(hex(&d).is_ok());
        for bad in ["sha512:00", "sha256:../../etc", "sha256:ABC", "ba7816bf"] {
            assert!(hex(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn copy_detects_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, b"hello").unwrap();
        copy_verified(&a, &b, &of_bytes(b"hello"), Some(5)).unwrap();
        let e = copy_verified(&a, &b, &of_bytes(b"other"), None).unwrap_err();
        assert!(e.to_string().contains("digest mismatch"), "{e}");
        assert!(copy_verified(&a, &b, &of_bytes(b"hello"), Some(6)).is_err());
    }
}
