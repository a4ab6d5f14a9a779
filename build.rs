//! Build script: the git commit that `rcon --version` prints, the tc
//! eBPF programs (`bpf_programs`), and how the binaries are linked
//! (`position_dependent_binaries`).
//!
//! `RCON_GIT_COMMIT` is `git rev-parse --short HEAD` of the repository this
//! crate is the top of, or "unknown" when it is built outside git (a source
//! tarball, or a copy inside some other repository). Setting RCON_GIT_COMMIT
//! in the environment overrides both, for packagers.
//!
//! It runs again when HEAD moves: a checkout (`HEAD` itself) or a commit on
//! the current branch (that branch's ref, loose or packed). Nothing else in
//! .git is watched, so `git add` and the like rebuild nothing.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=RCON_GIT_COMMIT");
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let commit = match std::env::var("RCON_GIT_COMMIT") {
        Ok(c) if !c.trim().is_empty() => c.trim().to_string(),
        _ => from_git(&manifest_dir).unwrap_or_else(|| "unknown".to_string()),
    };
    println!("cargo:rustc-env=RCON_GIT_COMMIT={commit}");
    bpf_programs(&manifest_dir);
    position_dependent_binaries();
}

/// rcon and rcon-cni are linked as plain (non-PIE) executables, as Go links
/// runc and containerd: a PIE rcon has 37,000 relative relocations, and
/// applying them at each start touches 150 pages and costs about 0.3 ms of
/// a 6 ms `rcon run`. The price is that the binary's own code is not
/// randomized (libraries, heap and stack still are). `RCON_PIE=1` builds
/// PIE executables, for packagers whose policy asks for them.
fn position_dependent_binaries() {
    println!("cargo:rerun-if-env-changed=RCON_PIE");
    let pie = std::env::var("RCON_PIE").is_ok_and(|v| !v.is_empty() && v != "0");
    let linux = std::env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "linux");
    if linux && !pie {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
}

/// The tc programs, each compiled by clang -target bpf into OUT_DIR: the
/// eBPF IPIP data plane (src/net/overlay/ipip_ebpf.rs embeds ipip.bpf.o) and
/// the bridge shortcut it uses (src/net/shortcut.rs, shortcut.bpf.o).
/// Without clang, or the headers of libbpf-dev and linux-libc-dev, an object
/// is left empty and rcon says so when `--ipip-mode ebpf` is asked for; the
/// rest of rcon builds as before. `RCON_CLANG` names another clang.
fn bpf_programs(manifest_dir: &Path) {
    println!("cargo:rerun-if-env-changed=RCON_CLANG");
    for (src, obj) in
        [("src/net/overlay/ipip_ebpf/ipip.bpf.c", "ipip.bpf.o"), ("src/net/shortcut.bpf.c", "shortcut.bpf.o")]
    {
        bpf_object(&manifest_dir.join(src), obj);
    }
}

fn bpf_object(src: &Path, obj: &str) {
    println!("cargo:rerun-if-changed={}", src.display());
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join(obj);
    let clang = std::env::var("RCON_CLANG").unwrap_or_else(|_| "clang".into());
    // -target bpf does not search the multiarch directory that holds asm/types.h.
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_else(|_| "x86_64".into());
    let multiarch = format!("/usr/include/{}-linux-gnu", if arch == "x86" { "i386" } else { &arch });
    let res = Command::new(&clang)
        .args(["-O2", "-g", "-Wall", "-Werror", "-target", "bpf", "-I", &multiarch, "-c"])
        .arg(src)
        .arg("-o")
        .arg(&out)
        .output();
    let name = src.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    match res {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            let _ = std::fs::write(&out, b"");
            for line in String::from_utf8_lossy(&o.stderr).lines().take(5) {
                println!("cargo:warning={name}: {line}");
            }
            println!(
                "cargo:warning=the eBPF IPIP data plane is not built in (`make deps` installs clang and libbpf-dev)"
            );
        }
        Err(e) => {
            let _ = std::fs::write(&out, b"");
            println!(
                "cargo:warning={clang}: {e}: the eBPF IPIP data plane is not built in (`make deps` installs clang)"
            );
        }
    }
}

/// `git -C DIR ARGS…`'s trimmed stdout, if git ran and succeeded.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git").arg("-C").arg(dir).args(args).output().ok()?;
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !s.is_empty()).then_some(s)
}

/// The short commit of HEAD, when `dir` is the top of a git work tree; also
/// tells cargo which files to watch.
fn from_git(dir: &Path) -> Option<String> {
    let top = git(dir, &["rev-parse", "--show-toplevel"])?;
    if std::fs::canonicalize(&top).ok()? != std::fs::canonicalize(dir).ok()? {
        return None; // a copy of the sources inside someone else's repository
    }
    // --git-path resolves worktrees and $GIT_DIR; relative paths are relative to `dir`.
    let watch = |p: &str| {
        if let Some(path) = git(dir, &["rev-parse", "--git-path", p]) {
            let path = dir.join(path);
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    };
    watch("HEAD");
    if let Some(branch) = git(dir, &["symbolic-ref", "-q", "HEAD"]) {
        watch(&branch);
        watch("packed-refs");
    }
    git(dir, &["rev-parse", "--short", "HEAD"])
}
