//! `rcon gc` is safe at any time (issue 17, part 1): gc in a loop while
//! containers with published ports and pods are being made, 4 at a time.
//! Every run succeeds, every container keeps its eth0 and its port answers
//! from the internet namespace, and gc still removes what a killed run left.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::network::{net_world, UPLINK_NODE};

const RUNS: usize = 16;
const PARALLEL: usize = 4;

#[test]
fn gc_in_a_loop_never_breaks_containers_being_made() {
    let nw = net_world("gcr", "nftables");
    let w = &nw.w;
    let done = AtomicBool::new(false);
    let gcs = AtomicUsize::new(0);
    let next = AtomicUsize::new(0);
    let failures: Vec<String> = std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(Ordering::SeqCst) {
                let _ = w.cmd(&["gc"]).output();
                gcs.fetch_add(1, Ordering::SeqCst);
            }
        });
        let makers: Vec<_> = (0..PARALLEL)
            .map(|_| {
                s.spawn(|| {
                    let mut failed = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        if i >= RUNS {
                            return failed;
                        }
                        let out = if i % 4 == 3 {
                            w.cmd(&["pod", "create", "--name", &format!("gp{i}"), "-p", &format!("{}:80", 36000 + i)])
                                .output()
                                .unwrap()
                        } else {
                            let page = format!("echo page-{i} > /i && exec httpd -f -p 80 -h /");
                            let name = format!("g{i}");
                            let port = format!("{}:80", 36000 + i);
                            w.cmd(&["run", "-d", "--name", &name, "-p", &port, "busybox", "sh", "-c", &page])
                                .stdout(std::process::Stdio::null())
                                .stderr(std::process::Stdio::piped())
                                .output()
                                .unwrap()
                        };
                        if !out.status.success() {
                            failed.push(format!("{i}: {}", String::from_utf8_lossy(&out.stderr)));
                        }
                    }
                })
            })
            .collect();
        let failed = makers.into_iter().flat_map(|m| m.join().unwrap()).collect();
        // A few more rounds of gc over the finished containers.
        let seen = gcs.load(Ordering::SeqCst);
        while gcs.load(Ordering::SeqCst) < seen + 3 {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        done.store(true, Ordering::SeqCst);
        failed
    });
    assert_eq!(failures, Vec::<String>::new(), "runs failed while gc ran");
    assert!(gcs.load(Ordering::SeqCst) >= 3, "gc did not run alongside");
    for i in (0..RUNS).filter(|i| i % 4 != 3) {
        let name = format!("g{i}");
        let link = w.ok(&["exec", &name, "ip", "-o", "link", "show", "eth0"]);
        assert!(link.contains("eth0"), "{name} lost its eth0: {link}");
        let page =
            w.sh_in(&nw.inet, &format!("timeout 3 busybox wget -q -O - http://{UPLINK_NODE}:{}/i || true", 36000 + i));
        assert_eq!(page.trim(), format!("page-{i}"), "{name}'s published port");
    }
    for i in (0..RUNS).filter(|i| i % 4 == 3) {
        let pod = format!("gp{i}");
        let link = w.ok(&["run", "--rm", "--pod", &pod, "busybox", "ip", "-o", "link", "show", "eth0"]);
        assert!(link.contains("eth0"), "pod {pod} lost its eth0: {link}");
    }
    // gc still removes what a killed run left.
    let out = w
        .cmd(&["run", "-d", "--name", "killed", "-p", "36099:80", "busybox", "sleep", "100"])
        .env("RCON_FAULT", "attach:recorded")
        .output()
        .unwrap();
    // run -d's monitor makes the container and is the one killed; the
    // front rcon says so.
    assert!(!out.status.success(), "the killed run succeeded");
    w.ok(&["gc"]);
    assert!(!w.ok(&["ps", "-a"]).contains("killed"), "gc left the killed run");
}
