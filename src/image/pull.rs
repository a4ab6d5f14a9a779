//! `rcon pull`: fetch a manifest and its blobs from an OCI distribution
//! registry with oci-client. The tokio runtime lives only inside this call
//! (current-thread, dropped before returning): rcon forks containers and
//! must not hold runtime threads when it does.

use std::io::Write;
use std::net::IpAddr;

use anyhow::{bail, Context as _, Result};
use futures::StreamExt;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

use super::{check_name, digest, manifest, Prepared, Staging, Store};

const ACCEPT: &[&str] =
    &[manifest::OCI_MANIFEST, manifest::DOCKER_MANIFEST, manifest::OCI_INDEX, manifest::DOCKER_LIST];

/// Plain HTTP is only assumed for the loopback: `localhost`, 127.0.0.0/8, ::1.
pub fn is_loopback(registry: &str) -> bool {
    let host = match registry.rsplit_once(':') {
        Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => h,
        _ => registry,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

pub(super) fn pull(store: &Store, st: &Staging, reference: &str, insecure: bool) -> Result<Prepared> {
    let name = check_name(reference)?;
    let r: Reference = reference.parse().with_context(|| format!("bad reference {reference:?}"))?;
    let registry = r.resolve_registry().to_string();
    let protocol = if insecure || is_loopback(&registry) {
        ClientProtocol::HttpsExcept(vec![registry.clone()])
    } else {
        ClientProtocol::Https
    };
    if is_loopback(&registry) {
        keep_loopback_off_proxies();
    }
    let client = Client::new(ClientConfig { protocol, platform_resolver: None, ..Default::default() });
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the runtime")?;
    let md = rt.block_on(fetch(&client, store, st, &r))?;
    drop(rt);
    st.prepare(store, &md, vec![name])
}

/// Fetch the manifest (resolving an index to this platform) and every blob
/// not already in the store; returns the manifest digest.
async fn fetch(client: &Client, store: &Store, st: &Staging, r: &Reference) -> Result<String> {
    let (mut data, mut md) = get_manifest(client, r, r.digest()).await?;
    let m: serde_json::Value = serde_json::from_slice(&data).context("parsing the manifest")?;
    if m.get("manifests").is_some() {
        let idx = manifest::parse_index(&data)?;
        let d = manifest::pick_platform(&idx.manifests)
            .with_context(|| format!("no linux/{} image in {}", std::env::consts::ARCH, md))?;
        let r2 = r.clone_with_digest(d.digest.clone());
        (data, md) = get_manifest(client, &r2, Some(&d.digest)).await?;
    }
    std::fs::write(st.blob_path(&md)?, &data)?;
    let man = manifest::parse_manifest(&data)?;
    for d in std::iter::once(&man.config).chain(&man.layers) {
        if store.blob(&d.digest)?.exists() || st.blob_path(&d.digest)?.exists() {
            continue;
        }
        let dst = st.blob_path(&d.digest)?;
        let tmp = st.dir.join("incoming");
        let mut f = std::fs::File::create(&tmp)?;
        let mut s = client
            .pull_blob_stream(r, d.digest.as_str())
            .await
            .with_context(|| format!("fetching blob {}", d.digest))?;
        let mut h = Sha(sha2::Sha256::default(), 0);
        while let Some(chunk) = s.stream.next().await {
            let chunk = chunk.with_context(|| format!("fetching blob {}", d.digest))?;
            h.update(&chunk);
            f.write_all(&chunk)?;
        }
        let n = h.1;
        digest::check(&format!("blob {}", d.digest), &d.digest, &h.done(), d.size, n)?;
        std::fs::rename(&tmp, &dst)?;
    }
    Ok(md)
}

struct Sha(sha2::Sha256, u64);
impl Sha {
    fn update(&mut self, b: &[u8]) {
        sha2::Digest::update(&mut self.0, b);
        self.1 += b.len() as u64;
    }
    fn done(self) -> String {
        format!("sha256:{:x}", sha2::Digest::finalize(self.0))
    }
}

/// reqwest honours http(s)_proxy from the environment: a loopback registry
/// must never be asked for through a proxy (it would reach another host).
fn keep_loopback_off_proxies() {
    let proxied = ["http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"]
        .iter()
        .any(|v| std::env::var_os(v).is_some());
    if proxied {
        let mut np = std::env::var("NO_PROXY").or_else(|_| std::env::var("no_proxy")).unwrap_or_default();
        if !np.is_empty() {
            np.push(',');
        }
        np.push_str("localhost,127.0.0.0/8,::1");
        // Single-threaded here: no runtime has been built yet.
        std::env::set_var("NO_PROXY", &np);
        std::env::set_var("no_proxy", &np);
    }
}

/// The raw manifest and its digest, computed here from the bytes (and held
/// to the digest the reference asked for, if any).
async fn get_manifest(client: &Client, r: &Reference, want: Option<&str>) -> Result<(Vec<u8>, String)> {
    let (data, _) = client
        .pull_manifest_raw(r, &RegistryAuth::Anonymous, ACCEPT)
        .await
        .with_context(|| format!("fetching the manifest of {}", r.whole()))?;
    let got = digest::of_bytes(&data);
    if let Some(w) = want {
        if w != got {
            bail!("digest mismatch for manifest: expected {w}, got {got}");
        }
    }
    Ok((data.to_vec(), got))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_registries() {
        for r in ["localhost:5000", "127.0.0.1:5000", "127.1.2.3", "[::1]:5000", "localhost"] {
            assert!(is_loopback(r), "{r}");
        }
        for r in ["docker.io", "10.0.0.1:5000", "localhost.example.com:5000", "registry-1.docker.io"] {
            assert!(!is_loopback(r), "{r}");
        }
    }
}
