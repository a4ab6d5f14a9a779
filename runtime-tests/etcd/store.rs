//! A real etcd (Debian's, v3.4) for one test, inside a namespace of the
//! test's world: started by the test, listening on its underlay address
//! only, its data in a temp dir of its own, killed on drop. Optionally TLS
//! with client certificates, the CA and certificates made with openssl.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use crate::common::{sh, wait_until};

/// etcd's address on the underlay (the nodes are 192.168.77.1, .2, ...).
pub(crate) const ETCD_IP: &str = "192.168.77.100";

/// flannel's default key prefix.
pub(crate) const PREFIX: &str = "/coreos.com/network";

/// A CA, a server certificate for [`ETCD_IP`] and a client certificate, in PEM files.
pub(crate) struct Tls {
    pub(crate) ca: PathBuf,
    pub(crate) server_cert: PathBuf,
    pub(crate) server_key: PathBuf,
    pub(crate) client_cert: PathBuf,
    pub(crate) client_key: PathBuf,
}

impl Tls {
    /// Make the CA and both certificates in `dir` with openssl.
    fn make(dir: &Path) -> Tls {
        let p = |f: &str| dir.join(f);
        let d = dir.display();
        sh(&format!(
            "cd {d} && openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=rcon-test-ca \
             -keyout ca.key -out ca.crt 2>/dev/null"
        ));
        let leaf = |name: &str, ext: &str| {
            std::fs::write(p(&format!("{name}.ext")), ext).unwrap();
            sh(&format!(
                "cd {d} && openssl req -newkey rsa:2048 -nodes -subj /CN={name} -keyout {name}.key \
                 -out {name}.csr 2>/dev/null && \
                 openssl x509 -req -in {name}.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
                 -extfile {name}.ext -out {name}.crt 2>/dev/null"
            ));
        };
        leaf(
            "server",
            &format!(
                "subjectAltName=IP:{ETCD_IP}\nextendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=CA:FALSE\n"
            ),
        );
        leaf("client", "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n");
        Tls {
            ca: p("ca.crt"),
            server_cert: p("server.crt"),
            server_key: p("server.key"),
            client_cert: p("client.crt"),
            client_key: p("client.key"),
        }
    }
}

/// One etcd member in namespace `ns`, with its data in `dir`.
pub(crate) struct Etcd {
    pub(crate) ns: String,
    pub(crate) tls: Option<Tls>,
    child: Option<Child>,
    starts: u32,
    // Last: removed after the process is gone.
    dir: tempfile::TempDir,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Etcd {
    /// Start etcd in `ns` (which must have [`ETCD_IP`] on the underlay) and
    /// wait until it answers.
    pub(crate) fn new(ns: &str, tls: bool) -> Etcd {
        let dir = tempfile::Builder::new().prefix("rcon-etcd-").tempdir().unwrap();
        let tls = tls.then(|| Tls::make(dir.path()));
        let mut e = Etcd { ns: ns.to_string(), tls, child: None, starts: 0, dir };
        e.start();
        e
    }

    /// The client URL: what `--etcd-endpoints` is given.
    pub(crate) fn endpoint(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{ETCD_IP}:2379")
    }

    /// The rcon flags that reach this etcd (endpoint and, with TLS, the client's files).
    pub(crate) fn rcon_flags(&self) -> Vec<String> {
        let mut f = vec!["--etcd-endpoints".to_string(), self.endpoint()];
        if let Some(t) = &self.tls {
            for (flag, path) in
                [("--etcd-cafile", &t.ca), ("--etcd-certfile", &t.client_cert), ("--etcd-keyfile", &t.client_key)]
            {
                f.extend([flag.to_string(), path.display().to_string()]);
            }
        }
        f
    }

    /// (Re)start etcd on the same data dir (so its keys and leases survive)
    /// and wait until it answers.
    pub(crate) fn start(&mut self) {
        assert!(self.child.is_none(), "etcd is already running");
        let peer = "http://127.0.0.1:2380";
        let data = self.dir.path().join("data");
        self.starts += 1;
        let log = std::fs::File::create(self.dir.path().join(format!("etcd{}.log", self.starts))).unwrap();
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/var/run/netns/{}", self.ns))
            .arg("etcd")
            .args(["--name", "e0", "--data-dir"])
            .arg(&data)
            .args(["--listen-client-urls", &self.endpoint(), "--advertise-client-urls", &self.endpoint()])
            .args(["--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer])
            .args(["--initial-cluster", &format!("e0={peer}")])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        if let Some(t) = &self.tls {
            c.arg("--client-cert-auth")
                .arg("--trusted-ca-file")
                .arg(&t.ca)
                .arg("--cert-file")
                .arg(&t.server_cert)
                .arg("--key-file")
                .arg(&t.server_key);
        }
        // nsenter execs etcd (no --fork): the child is etcd itself.
        self.child = Some(c.spawn().expect("spawning etcd"));
        wait_until("etcd to answer", || {
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("etcd exited ({st}): {}", self.log());
            }
            self.ctl(&self.ns, &["endpoint", "health"]).status.success()
        });
    }

    /// Kill etcd (SIGKILL: a crash, not a shutdown) and reap it.
    pub(crate) fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The log of the latest run, for failure messages.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("etcd{}.log", self.starts))).unwrap_or_default()
    }

    /// `etcdctl ARGS` (API v3) from inside namespace `ns`, with the client
    /// certificate when TLS is on.
    pub(crate) fn ctl(&self, ns: &str, args: &[&str]) -> Output {
        let mut tls = Vec::new();
        if let Some(t) = &self.tls {
            tls = vec![t.ca.clone(), t.client_cert.clone(), t.client_key.clone()];
        }
        let tls: Vec<String> = tls.iter().map(|p| p.display().to_string()).collect();
        let mut a: Vec<&str> = Vec::new();
        if let [ca, cert, key] = &tls[..] {
            a.extend(["--cacert", ca, "--cert", cert, "--key", key]);
        }
        a.extend_from_slice(args);
        self.ctl_raw(ns, &a)
    }

    /// `etcdctl` with exactly these arguments (no TLS flags added).
    pub(crate) fn ctl_raw(&self, ns: &str, args: &[&str]) -> Output {
        Command::new("nsenter")
            .arg(format!("--net=/var/run/netns/{ns}"))
            .args(["etcdctl", "--endpoints", &self.endpoint(), "--dial-timeout", "2s", "--command-timeout", "3s"])
            .args(args)
            .env("ETCDCTL_API", "3")
            .stdin(Stdio::null())
            .output()
            .expect("spawning etcdctl")
    }

    /// [`Etcd::ctl`] that must succeed; returns its stdout.
    pub(crate) fn ctl_ok(&self, ns: &str, args: &[&str]) -> String {
        let out = self.ctl(ns, args);
        assert!(
            out.status.success(),
            "etcdctl {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Every key under `prefix` with its value, as `etcdctl get --prefix` lists them.
    pub(crate) fn get_prefix(&self, ns: &str, prefix: &str) -> Vec<(String, String)> {
        let out = self.ctl_ok(ns, &["get", "--prefix", prefix]);
        let lines: Vec<&str> = out.lines().collect();
        lines.chunks(2).map(|kv| (kv[0].to_string(), kv.get(1).unwrap_or(&"").to_string())).collect()
    }

    /// A new etcd lease of `ttl` seconds; returns its id (hex, as `put --lease` takes it).
    pub(crate) fn grant(&self, ns: &str, ttl: u32) -> String {
        let out = self.ctl_ok(ns, &["lease", "grant", &ttl.to_string()]);
        // "lease 694d7c5e0a1b2c3d granted with TTL(600s)"
        out.split_whitespace().nth(1).unwrap_or_else(|| panic!("lease grant said {out:?}")).to_string()
    }
}
