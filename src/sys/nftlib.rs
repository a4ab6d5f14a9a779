//! libnftables, the library inside `nft`, called in-process: the same script
//! text `nft -f -` reads, without a child process (3–5 ms a spawn here).
//!
//! The library is opened with dlopen(3) on first use rather than linked, so
//! that rcon starts (and its iptables backend works) on a host without it;
//! [`Nft::open`] returns None there and the caller falls back to `nft`.
//!
//! A context opens its netlink socket in the network namespace the calling
//! thread is in at that moment, and caches what it read of the ruleset: one
//! context per call, made and freed on the calling thread, so neither crosses
//! a namespace or outlives a change made by another process.

use std::ffi::{c_char, c_int, c_uint, c_void, CStr, CString};
use std::sync::{Mutex, OnceLock};

/// The soname Debian's `libnftables1` ships.
pub const SONAME: &str = "libnftables.so.1";

/// NFT_CTX_OUTPUT_JSON from libnftables.h: listings as `nft -j` prints them.
const OUTPUT_JSON: c_uint = 1 << 4;

type Ctx = *mut c_void;

/// The few entry points rcon uses, resolved once.
struct Api {
    ctx_new: unsafe extern "C" fn(c_uint) -> Ctx,
    ctx_free: unsafe extern "C" fn(Ctx),
    buffer_output: unsafe extern "C" fn(Ctx) -> c_int,
    buffer_error: unsafe extern "C" fn(Ctx) -> c_int,
    output_set_flags: unsafe extern "C" fn(Ctx, c_uint),
    run_cmd: unsafe extern "C" fn(Ctx, *const c_char) -> c_int,
    output_buffer: unsafe extern "C" fn(Ctx) -> *const c_char,
    error_buffer: unsafe extern "C" fn(Ctx) -> *const c_char,
}

/// The loaded library. Calls are serialised: older libnftables releases keep
/// some parser state in globals.
pub struct Nft {
    api: Api,
    lock: Mutex<()>,
}

/// A command that the library refused: its error buffer (nft's stderr).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

static LOADED: OnceLock<Option<Nft>> = OnceLock::new();

impl Nft {
    /// The library, loaded on first call; None when it is not installed.
    pub fn open() -> Option<&'static Nft> {
        LOADED.get_or_init(load).as_ref()
    }

    /// Run `script` (nft syntax; with `json`, listings come back as `nft -j`
    /// prints them) in the calling thread's network namespace; returns the output.
    pub fn run(&self, script: &str, json: bool) -> Result<String, Refused> {
        let cmd = CString::new(script).map_err(|_| Refused("the nft script holds a NUL byte".into()))?;
        let _serial = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let a = &self.api;
        // SAFETY: the functions were resolved from libnftables by their documented names and C
        // signatures (libnftables(3)); the context is checked for NULL, used on this thread only, and
        // freed exactly once below, after the output and error buffers (owned by it) were copied.
        unsafe {
            let ctx = (a.ctx_new)(0);
            if ctx.is_null() {
                return Err(Refused("libnftables: cannot create a context (out of memory?)".into()));
            }
            let buffered = (a.buffer_output)(ctx) == 0 && (a.buffer_error)(ctx) == 0;
            if json {
                (a.output_set_flags)(ctx, OUTPUT_JSON);
            }
            let rc = if buffered { (a.run_cmd)(ctx, cmd.as_ptr()) } else { -1 };
            let text = |p: *const c_char| {
                if p.is_null() {
                    String::new()
                } else {
                    CStr::from_ptr(p).to_string_lossy().into_owned()
                }
            };
            let out = text((a.output_buffer)(ctx));
            let err = text((a.error_buffer)(ctx));
            // Its socket's release could wait for the kernel to free what some commit deleted.
            super::linger::hand_off_all();
            (a.ctx_free)(ctx);
            match (buffered, rc) {
                (false, _) => Err(Refused("libnftables: cannot buffer its output".into())),
                (true, 0) => Ok(out),
                (true, _) if err.trim().is_empty() => Err(Refused(format!("libnftables: command failed ({rc})"))),
                (true, _) => Err(Refused(err)),
            }
        }
    }
}

fn load() -> Option<Nft> {
    let name = CString::new(SONAME).ok()?;
    // SAFETY: dlopen with a valid NUL-terminated name; the handle is never closed, so the symbols
    // resolved from it stay valid for the life of the process.
    let handle = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    if handle.is_null() {
        return None;
    }
    // SAFETY: each field's type is the C signature libnftables.h declares for the symbol named.
    unsafe {
        Some(Nft {
            api: Api {
                ctx_new: sym(handle, c"nft_ctx_new")?,
                ctx_free: sym(handle, c"nft_ctx_free")?,
                buffer_output: sym(handle, c"nft_ctx_buffer_output")?,
                buffer_error: sym(handle, c"nft_ctx_buffer_error")?,
                output_set_flags: sym(handle, c"nft_ctx_output_set_flags")?,
                run_cmd: sym(handle, c"nft_run_cmd_from_buffer")?,
                output_buffer: sym(handle, c"nft_ctx_get_output_buffer")?,
                error_buffer: sym(handle, c"nft_ctx_get_error_buffer")?,
            },
            lock: Mutex::new(()),
        })
    }
}

/// Symbol `name` of the library `handle` as a function pointer of type `F`.
///
/// # Safety
/// `F` must be a function pointer type matching the C declaration of `name`.
unsafe fn sym<F: Copy>(handle: *mut c_void, name: &CStr) -> Option<F> {
    assert_eq!(std::mem::size_of::<F>(), std::mem::size_of::<*mut c_void>());
    // SAFETY: a live handle (never closed) and a NUL-terminated symbol name.
    let p = unsafe { libc::dlsym(handle, name.as_ptr()) };
    // SAFETY: F is a function pointer of the symbol's own signature (the caller's contract), the same size
    // as the data pointer dlsym returns for it.
    (!p.is_null()).then(|| unsafe { std::mem::transmute_copy::<*mut c_void, F>(&p) })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Refusals come back as the library's error text (a parse error needs no privilege).
    #[test]
    fn refusals_carry_the_library_error() {
        let Some(nft) = Nft::open() else { return }; // no libnftables here: the fallback's case
        let err = nft.run("frobnicate table ip rcon", false).unwrap_err().0;
        assert!(err.contains("syntax error"), "{err}");
        let err = nft.run("list tables\0", false).unwrap_err().0;
        assert!(err.contains("NUL"), "{err}");
    }
}
