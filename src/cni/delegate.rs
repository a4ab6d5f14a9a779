//! Delegated IPAM (the spec's "delegated plugins"): the `ipam.type` plugin
//! is found in CNI_PATH and run with this plugin's own environment (so the
//! same CNI_COMMAND, CNI_CONTAINERID …, unless `cmd` overrides the command)
//! and the same configuration on stdin. Its error result becomes ours.

use std::path::{Path, PathBuf};
use std::process::Command;

use rscni_plugin::error::Error;
use rscni_plugin::types::{CNIResultWithVersion, ErrorResult, NetConf};

use crate::sys::spawn::{self, Keep};

/// The first executable `name` in `dirs`.
fn find(name: &str, dirs: &[PathBuf]) -> Result<PathBuf, Error> {
    if name.contains('/') {
        return Err(Error::InvalidNetworkConfig(format!("ipam.type {name:?}: a plugin name has no '/'")));
    }
    dirs.iter().map(|d| d.join(name)).find(|p| p.is_file()).ok_or_else(|| {
        let dirs: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
        Error::InvalidNetworkConfig(format!("ipam.type {name:?}: no such plugin in CNI_PATH [{}]", dirs.join(":")))
    })
}

/// Run the IPAM plugin for `cmd` (ADD, DEL, CHECK, GC, STATUS); its stdout on success.
pub fn run(name: &str, cmd: &str, conf: &NetConf, dirs: &[PathBuf]) -> Result<Vec<u8>, Error> {
    let prog = find(name, dirs)?;
    let input = serde_json::to_vec(conf).map_err(|e| Error::FailedToDecode(e.to_string()))?;
    let mut c = Command::new(&prog);
    c.env("CNI_COMMAND", cmd);
    let out = spawn::run(&mut c, Some(&input), Keep::BOTH, None)
        .map_err(|e| Error::Custom(999, format!("ipam plugin {name} failed"), e.to_string()))?;
    if out.status.success() {
        return Ok(out.stdout);
    }
    Err(failure(&prog, &out.stdout, &out.stderr))
}

/// A failed plugin's error result, or its stderr when it wrote none.
fn failure(prog: &Path, stdout: &[u8], stderr: &[u8]) -> Error {
    match serde_json::from_slice::<ErrorResult>(stdout) {
        Ok(r) => Error::from(r),
        Err(_) => Error::Custom(
            999,
            format!("ipam plugin {} failed", prog.display()),
            String::from_utf8_lossy(stderr).trim().to_string(),
        ),
    }
}

/// The first IPv4 address of an ADD result.
pub fn address(stdout: &[u8]) -> Result<std::net::Ipv4Addr, Error> {
    let r: CNIResultWithVersion =
        serde_json::from_slice(stdout).map_err(|e| Error::FailedToDecode(format!("the ipam plugin's result: {e}")))?;
    r.result()
        .ips
        .iter()
        .find_map(|ip| match ip.address.addr() {
            std::net::IpAddr::V4(a) => Some(a),
            std::net::IpAddr::V6(_) => None,
        })
        .ok_or_else(|| Error::InvalidNetworkConfig("the ipam plugin gave no IPv4 address".into()))
}

/// Whether a delegate's error says it does not know the command (older
/// plugins answer GC and STATUS so): rcon then has nothing to delegate.
pub fn unknown_command(e: &Error) -> bool {
    matches!(e, Error::IncompatibleVersion(_) | Error::InvalidEnvValue(_))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_plugin_names_the_path() {
        let e = find("nope", &[PathBuf::from("/nonexistent")]).unwrap_err();
        assert!(e.details().contains("\"nope\": no such plugin in CNI_PATH [/nonexistent]"), "{}", e.details());
    }

    #[test]
    fn the_delegate_error_result_is_kept() {
        let e = failure(Path::new("/x"), br#"{"cniVersion":"1.0.0","code":11,"msg":"busy","details":"later"}"#, b"");
        assert_eq!(e, Error::TryAgainLater("later".into()));
        let e = failure(Path::new("/x"), b"", b"boom\n");
        assert_eq!(e.details(), "boom");
    }

    #[test]
    fn the_address_of_a_result() {
        let out = br#"{"cniVersion":"1.0.0","ips":[{"address":"10.7.0.5/24","gateway":"10.7.0.1"}]}"#;
        assert_eq!(address(out).unwrap(), std::net::Ipv4Addr::new(10, 7, 0, 5));
    }
}
