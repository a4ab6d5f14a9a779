//! The image store: import of OCI layouts (dir and tar) and docker-save
//! archives, whiteouts, bad input that leaves the store as it was, rm, and
//! pull from a registry that the test runs inside its own netns.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use sha2::{Digest, Sha256};

use crate::common::{rcon_bin, sh, unique, wait_until, World};

fn cache(p: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("hack/.cache").join(p);
    assert!(p.exists(), "no {}: run hack/mkimage.sh (make test does)", p.display());
    p
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Every path under the data root with its size: "unchanged" means equal.
fn listing(w: &World) -> String {
    sh(&format!("cd {} && find . -printf '%p %s\\n' | sort", w.data_root.display()))
}

fn sha(data: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(data))
}

/// A tar of (path, content) regular files.
fn tar_of(files: &[(&str, &str)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (p, c) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(c.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_cksum();
        b.append_data(&mut h, p, c.as_bytes()).unwrap();
    }
    b.into_inner().unwrap()
}

/// Write an OCI layout of plain-tar `layers` at `dir`; returns blob digests
/// (config, layers...) so tests can break them.
pub(crate) fn layout(dir: &Path, layers: &[Vec<u8>]) -> Vec<String> {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |d: &[u8]| {
        let h = sha(d);
        std::fs::write(blobs.join(&h[7..]), d).unwrap();
        h
    };
    let diff_ids: Vec<String> = layers.iter().map(|l| sha(l)).collect();
    let config = serde_json::json!({"architecture":"amd64","os":"linux",
        "config":{"Env":["PATH=/bin"],"Cmd":["sh"],"WorkingDir":"/a","ExposedPorts":{"80/tcp":{}}},
        "rootfs":{"type":"layers","diff_ids":diff_ids}});
    let cbytes = serde_json::to_vec(&config).unwrap();
    let mut out = vec![put(&cbytes)];
    let mut ldescs = Vec::new();
    for l in layers {
        let d = put(l);
        ldescs
            .push(serde_json::json!({"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":d,"size":l.len()}));
        out.push(d);
    }
    let m = serde_json::json!({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
        "config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":out[0],"size":cbytes.len()},
        "layers":ldescs});
    let mb = serde_json::to_vec(&m).unwrap();
    let md = put(&mb);
    let idx = serde_json::json!({"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json",
        "digest":md,"size":mb.len()}]});
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&idx).unwrap()).unwrap();
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    out
}

fn rootfs_of(w: &World, name: &str) -> PathBuf {
    let v: serde_json::Value = serde_json::from_str(&w.ok(&["image", "ls", "--format", "json"])).unwrap();
    let img = v.as_array().unwrap().iter().find(|i| i["name"] == name).unwrap_or_else(|| panic!("{name} not in {v}"));
    let m = img["manifest_digest"].as_str().unwrap();
    w.data_root.join("images/rootfs").join(&m[7..])
}

#[test]
fn import_all_three_formats() {
    let w = World::new("imf");
    w.ok(&["image", "import", s(&cache("busybox-oci"))]);
    w.ok(&["image", "import", s(&cache("busybox-docker.tar")), "dockerbox:1"]);
    let otar = w.dir.path().join("oci.tar");
    sh(&format!("tar -C {} -cf {} .", cache("busybox-oci").display(), otar.display()));
    w.ok(&["image", "import", s(&otar), "ocitar"]);
    let ls = w.ok(&["image", "ls"]);
    let lines: Vec<&str> = ls.lines().collect();
    assert!(lines[0].starts_with("NAME") && lines[0].contains("ID") && lines[0].contains("SIZE"), "{ls}");
    for n in ["busybox:latest", "dockerbox:1", "ocitar:latest"] {
        assert!(lines.iter().any(|l| l.starts_with(n)), "{n} missing from {ls}");
        let r = rootfs_of(&w, n);
        assert!(r.join("bin/busybox").is_file(), "{}", r.display());
        assert_eq!(std::fs::read_link(r.join("bin/sh")).unwrap(), Path::new("busybox"));
        assert!(std::fs::read_to_string(r.join("etc/passwd")).unwrap().starts_with("root:x:0:0"));
    }
    // All three are one image: same config digest (ID column), shared blobs.
    let ids: Vec<&str> = lines[1..].iter().map(|l| l.split_whitespace().nth(1).unwrap()).collect();
    assert!(ids.iter().all(|i| *i == ids[0] && i.len() == 12), "{ls}");
    let v: serde_json::Value = serde_json::from_str(&w.ok(&["image", "ls", "--format", "json"])).unwrap();
    assert_eq!(v[0]["config"]["cmd"], serde_json::json!(["sh"]));
    assert!(v[0]["config"]["env"][0].as_str().unwrap().starts_with("PATH="));
    // rm drops the name and, with the last name of an image, its blobs and rootfs.
    let r = rootfs_of(&w, "dockerbox:1");
    w.ok(&["image", "rm", "dockerbox:1"]);
    assert!(!r.exists(), "docker-archive rootfs left after rm");
    w.ok(&["image", "rm", "busybox", "ocitar"]);
    assert_eq!(w.ok(&["image", "ls"]).lines().count(), 1);
    let left = sh(&format!("find {} -mindepth 1 -not -name .lock", w.data_root.join("images").display()));
    let mut left: Vec<&str> = left.lines().collect();
    left.sort();
    let root = w.data_root.join("images");
    let want: Vec<String> = ["blobs", "blobs/sha256", "index.json", "rootfs", "tmp"]
        .iter()
        .map(|p| root.join(p).display().to_string())
        .collect();
    assert_eq!(left, want, "store not empty after removing every image");
}

#[test]
fn whiteouts_and_opaque_dirs() {
    let w = World::new("imw");
    let dir = w.dir.path().join("wh");
    let l1 = tar_of(&[("a/keep", "k"), ("a/gone", "g"), ("d/x", "x")]);
    let l2 = tar_of(&[("a/.wh.gone", ""), ("d/.wh..wh..opq", ""), ("d/y", "y")]);
    layout(&dir, &[l1, l2]);
    w.ok(&["image", "import", s(&dir), "wh"]);
    let r = rootfs_of(&w, "wh:latest");
    assert_eq!(std::fs::read_to_string(r.join("a/keep")).unwrap(), "k");
    assert!(!r.join("a/gone").exists() && !r.join("a/.wh.gone").exists());
    let mut d: Vec<String> =
        std::fs::read_dir(r.join("d")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    d.sort();
    assert_eq!(d, vec!["y"]);
    let v: serde_json::Value = serde_json::from_str(&w.ok(&["image", "ls", "--format", "json"])).unwrap();
    assert_eq!(v[0]["config"]["working_dir"], "/a");
    assert_eq!(v[0]["config"]["exposed_ports"], serde_json::json!(["80/tcp"]));
}

#[test]
fn bad_input_leaves_the_store_unchanged() {
    let w = World::new("imb");
    w.ok(&["image", "import", s(&cache("busybox-oci")), "busybox"]);
    let before = listing(&w);
    let t = w.dir.path();

    // A corrupt tar: the docker archive cut short and garbage.
    let cut = t.join("cut.tar");
    let data = std::fs::read(cache("busybox-docker.tar")).unwrap();
    std::fs::write(&cut, &data[..data.len() / 2]).unwrap();
    let e = w.fails(&["image", "import", s(&cut), "cut"]);
    assert!(e.contains("cut.tar"), "{e}");
    std::fs::write(t.join("junk.tar"), vec![b'x'; 4096]).unwrap();
    w.fails(&["image", "import", s(&t.join("junk.tar")), "junk"]);
    // A corrupt layer inside a well-formed layout.
    let bad = t.join("badlayer");
    layout(&bad, &[b"not a tar at all, but long enough to fill a header block?".repeat(20)]);
    let e = w.fails(&["image", "import", s(&bad), "badlayer"]);
    assert!(e.contains("layer"), "{e}");
    assert_eq!(listing(&w), before);

    // A missing layer blob.
    let miss = t.join("miss");
    let d = layout(&miss, &[tar_of(&[("f", "1")]), tar_of(&[("g", "2")])]);
    std::fs::remove_file(miss.join("blobs/sha256").join(&d[2][7..])).unwrap();
    let e = w.fails(&["image", "import", s(&miss), "miss"]);
    assert!(e.contains("missing") && e.contains(&d[2]), "{e}");
    assert_eq!(listing(&w), before);

    // A blob whose content does not match its digest.
    let mm = t.join("mismatch");
    let d = layout(&mm, &[tar_of(&[("f", "1")])]);
    std::fs::write(mm.join("blobs/sha256").join(&d[1][7..]), tar_of(&[("f", "2")])).unwrap();
    let e = w.fails(&["image", "import", s(&mm), "mm"]);
    assert!(e.contains("digest mismatch"), "{e}");
    assert_eq!(listing(&w), before);

    // Unknown names say which names exist, for get (run), rm and import into nothing.
    let e = w.fails(&["image", "rm", "nosuch"]);
    assert!(e.contains("nosuch") && e.contains("busybox:latest"), "{e}");
    let e = w.fails(&["run", "--rm", "nosuch", "true"]);
    assert!(e.contains("busybox:latest"), "{e}");
    w.fails(&["image", "import", s(&t.join("does-not-exist"))]);
    assert_eq!(listing(&w), before);
}

/// docker-registry serving from the test's temp dir inside a netns of the
/// test's world; killed on drop.
struct Registry {
    child: Child,
}

impl Registry {
    /// Debian's docker-registry serving on 127.0.0.1:`port` inside `ns`, with
    /// its storage in the world's dir; returns once it listens.
    fn start(w: &World, ns: &Path, port: u16) -> Registry {
        let dir = w.dir.path().join(format!("registry-{port}"));
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let cfg = dir.join("config.yml");
        let data = dir.join("data");
        let yml = format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            data.display()
        );
        std::fs::write(&cfg, yml).unwrap();
        let log = dir.join("log");
        let child = Command::new("nsenter")
            .arg(format!("--net={}", ns.display()))
            .args(["/usr/bin/docker-registry", "serve", s(&cfg)])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.join("out")).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let reg = Registry { child };
        wait_until("the registry to listen", || {
            std::fs::read_to_string(&log).unwrap_or_default().contains("listening on")
        });
        reg
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn nsenter(w: &World, ns: &Path, args: &[&str]) -> std::process::Output {
    let mut c = Command::new("nsenter");
    c.arg(format!("--net={}", ns.display()))
        .args(args)
        .env("RCON_ROOT", &w.root)
        .env("RCON_NETNS_DIR", &w.netns_dir)
        .env("RCON_DATA_ROOT", &w.data_root)
        .stdin(Stdio::null());
    c.output().unwrap()
}

fn ns_ok(w: &World, ns: &Path, args: &[&str]) -> String {
    let o = nsenter(w, ns, args);
    assert!(
        o.status.success(),
        "{args:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn pull_from_a_local_registry() {
    let w = World::new("imp");
    let ns_name = unique("reg");
    w.ok(&["netns", "add", &ns_name]);
    let ns = w.netns_dir.join(&ns_name);
    ns_ok(&w, &ns, &["ip", "link", "set", "lo", "up"]);
    let port = 5000;
    let _reg = Registry::start(&w, &ns, port);

    let target = format!("docker://127.0.0.1:{port}/busybox:latest");
    let src = format!("oci:{}:latest", cache("busybox-oci").display());
    ns_ok(&w, &ns, &["skopeo", "--insecure-policy", "copy", "--dest-tls-verify=false", &src, &target]);

    let a = format!("127.0.0.1:{port}/busybox");
    let out = ns_ok(&w, &ns, &[rcon_bin(), "pull", &a]);
    assert!(out.starts_with(&format!("{a}:latest ")), "{out}");
    let b = format!("localhost:{port}/busybox:latest");
    ns_ok(&w, &ns, &[rcon_bin(), "pull", &b]);
    let ls = w.ok(&["image", "ls"]);
    assert!(ls.contains(&format!("{a}:latest")) && ls.contains(&b), "{ls}");
    // The pulled image is the one that was pushed: same config digest as an import.
    let r = rootfs_of(&w, &b);
    assert!(r.join("bin/busybox").is_file());
    // A tag that is not there is an error of one line, and changes nothing.
    let before = listing(&w);
    let o = nsenter(&w, &ns, &[rcon_bin(), "pull", &format!("127.0.0.1:{port}/busybox:nosuch")]);
    assert!(!o.status.success());
    assert_eq!(String::from_utf8_lossy(&o.stderr).trim_end().lines().count(), 1, "{o:?}");
    assert_eq!(listing(&w), before);
    // run by registry name and by short name (both pulled names are one image).
    let out = ns_ok(&w, &ns, &[rcon_bin(), "run", "--rm", &b, "echo", "pulled"]);
    assert_eq!(out.trim(), "pulled");
    let out = ns_ok(&w, &ns, &[rcon_bin(), "run", "--rm", "busybox", "echo", "short"]);
    assert_eq!(out.trim(), "short");
}

#[test]
fn run_pulls_a_missing_image() {
    let w = World::new("imr");
    let ns_name = unique("reg");
    w.ok(&["netns", "add", &ns_name]);
    let ns = w.netns_dir.join(&ns_name);
    ns_ok(&w, &ns, &["ip", "link", "set", "lo", "up"]);
    let _reg = Registry::start(&w, &ns, 5001);
    let src = format!("oci:{}:latest", cache("busybox-oci").display());
    ns_ok(
        &w,
        &ns,
        &["skopeo", "--insecure-policy", "copy", "--dest-tls-verify=false", &src, "docker://127.0.0.1:5001/tools/bb:1"],
    );
    let out = ns_ok(&w, &ns, &[rcon_bin(), "run", "--rm", "localhost:5001/tools/bb:1", "cat", "/etc/group"]);
    assert!(out.starts_with("root:x:0:"), "{out}");
    assert!(w.ok(&["image", "ls"]).contains("localhost:5001/tools/bb:1"));
}

#[test]
fn rm_refuses_an_image_a_container_uses() {
    let w = World::with_node("imu");
    w.ok(&["image", "import", s(&cache("busybox-oci")), "busybox"]);
    let id = w.ok_files(&["run", "-d", "busybox", "sleep", "100"]).stdout.trim().to_string();
    let before = listing(&w);
    let e = w.fails(&["image", "rm", "busybox"]);
    assert!(e.contains("in use"), "{e}");
    assert_eq!(listing(&w), before);
    w.ok_files(&["rm", "-f", &id]);
    w.ok(&["image", "rm", "busybox"]);
    assert_eq!(w.ok(&["image", "ls"]).lines().count(), 1);
}
