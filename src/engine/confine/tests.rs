use super::*;

const HOST: Host = Host { cpus: 2, online: Vec::new(), swap_limit: true };

fn host() -> Host {
    Host { online: vec![0, 1], ..HOST }
}

fn parsed(edit: impl FnOnce(&mut Flags)) -> Result<Confinement> {
    let mut f = Flags::default();
    edit(&mut f);
    parse_on(&f, &host())
}

fn err(edit: impl FnOnce(&mut Flags)) -> String {
    parsed(edit).unwrap_err().to_string()
}

fn base() -> Value {
    serde_json::to_value(crate::runtime::spec::default_spec()).unwrap()
}

fn applied(c: &Confinement) -> Value {
    let mut v = base();
    apply(&mut v, c, &["CAP_CHOWN", "CAP_NET_RAW", "CAP_KILL"]).unwrap();
    // The result must still be a valid spec.
    let _: oci_spec::runtime::Spec = serde_json::from_value(v.clone()).unwrap();
    v
}

#[test]
fn resources_map_as_docker_and_runc_do() {
    let c = parsed(|f| {
        f.memory = Some("64m".into());
        f.memory_swap = Some("128m".into());
        f.cpus = Some("0.5".into());
        f.cpu_shares = Some(512);
        f.cpuset_cpus = Some("0-1".into());
        f.pids_limit = Some(20);
    })
    .unwrap();
    let r = &applied(&c)["linux"]["resources"];
    assert_eq!(r["memory"], json!({"limit": 64 << 20, "swap": 128 << 20}));
    assert_eq!(r["cpu"], json!({"quota": 50_000, "period": 100_000, "shares": 512, "cpus": "0-1"}));
    assert_eq!(r["pids"], json!({"limit": 20}));
}

#[test]
fn swap_defaults_to_twice_memory_where_it_can_be_limited() {
    let c = parsed(|f| f.memory = Some("10m".into())).unwrap();
    assert_eq!(c.memory_swap, Some(20 << 20));
    let f = Flags { memory: Some("10m".into()), ..Default::default() };
    assert_eq!(parse_on(&f, &Host { swap_limit: false, ..host() }).unwrap().memory_swap, None);
    assert_eq!(
        parsed(|f| {
            f.memory = Some("10m".into());
            f.memory_swap = Some("-1".into());
        })
        .unwrap()
        .memory_swap,
        Some(-1)
    );
}

#[test]
fn bad_resources_name_the_flag_and_the_limit() {
    assert!(err(|f| f.memory = Some("5m".into())).contains("minimum memory limit is 6MB"));
    assert!(err(|f| f.memory = Some("12q".into())).contains("--memory \"12q\": not a size"));
    assert!(err(|f| f.memory_swap = Some("1g".into())).contains("--memory-swap needs --memory"));
    let e = err(|f| {
        f.memory = Some("64m".into());
        f.memory_swap = Some("32m".into());
    });
    assert!(e.contains("must be at least --memory"), "{e}");
    assert!(err(|f| f.cpu_shares = Some(1)).contains("from 2 to 262144"));
    assert!(err(|f| f.cpuset_cpus = Some("0-5".into())).contains("CPU 2 is not available"));
    assert_eq!(parsed(|f| f.pids_limit = Some(-1)).unwrap().pids_limit, None);
}

#[test]
fn capability_names_and_dockers_all_rules() {
    let all: Vec<String> =
        ["CAP_CHOWN", "CAP_KILL", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_SYS_ADMIN"].map(String::from).into();
    let def = ["CAP_CHOWN", "CAP_NET_RAW", "CAP_KILL"];
    let c = parsed(|f| {
        f.cap_add = vec!["net_admin".into()];
        f.cap_drop = vec!["CAP_NET_RAW".into()];
    })
    .unwrap();
    assert_eq!(c.cap_add, vec!["CAP_NET_ADMIN"]);
    assert_eq!(capabilities(&c, &def, &all), vec!["CAP_CHOWN", "CAP_KILL", "CAP_NET_ADMIN"]);
    let c = parsed(|f| {
        f.cap_drop = vec!["all".into()];
        f.cap_add = vec!["KILL".into()];
    })
    .unwrap();
    assert_eq!(capabilities(&c, &def, &all), vec!["CAP_KILL"]);
    let c = parsed(|f| {
        f.cap_add = vec!["ALL".into()];
        f.cap_drop = vec!["SYS_ADMIN".into()];
    })
    .unwrap();
    assert_eq!(capabilities(&c, &def, &all).len(), 4);
    let c = parsed(|f| f.privileged = true).unwrap();
    assert_eq!(capabilities(&c, &def, &all), all);
    assert!(err(|f| f.cap_add = vec!["FLY".into()]).contains("--cap-add FLY: unknown capability \"CAP_FLY\""));
}

#[test]
fn defaults_mask_like_docker_and_privileged_lifts_them() {
    let v = applied(&Confinement::default());
    assert_eq!(v["linux"]["maskedPaths"], json!(MASKED_PATHS));
    assert_eq!(v["linux"]["readonlyPaths"], json!(READONLY_PATHS));
    assert_eq!(device_rules(&Confinement::default()), Value::Array(devices::default_rules()));
    assert_eq!(v["process"]["capabilities"]["bounding"], json!(["CAP_CHOWN", "CAP_NET_RAW", "CAP_KILL"]));
    let sys = |v: &Value| v["mounts"].as_array().unwrap().iter().find(|m| m["destination"] == "/sys").unwrap().clone();
    assert!(sys(&v)["options"].as_array().unwrap().contains(&json!("ro")));
    let p = applied(&Confinement { privileged: true, ..Default::default() });
    assert_eq!(p["linux"]["maskedPaths"], json!([]));
    assert_eq!(p["linux"]["readonlyPaths"], json!([]));
    let privileged = Confinement { privileged: true, ..Default::default() };
    assert_eq!(device_rules(&privileged), json!([{"allow": true, "access": "rwm"}]));
    assert!(!sys(&p)["options"].as_array().unwrap().contains(&json!("ro")));
    assert!(p["linux"]["devices"].as_array().unwrap().iter().any(|d| d["path"] == "/dev/null"));
}

#[test]
fn ulimits_replace_the_same_rlimit() {
    let c = parsed(|f| f.ulimits = vec!["nofile=100:200".into(), "nproc=-1".into()]).unwrap();
    let r = applied(&c)["process"]["rlimits"].clone();
    let nofile: Vec<&Value> = r.as_array().unwrap().iter().filter(|x| x["type"] == "RLIMIT_NOFILE").collect();
    assert_eq!(nofile, vec![&json!({"type": "RLIMIT_NOFILE", "soft": 100, "hard": 200})]);
    assert!(r.as_array().unwrap().contains(&json!({"type": "RLIMIT_NPROC", "soft": u64::MAX, "hard": u64::MAX})));
}

#[test]
fn mounts_devices_and_read_only_root() {
    let c = parsed(|f| {
        f.read_only = true;
        f.volumes = vec!["/tmp:/a/b:ro".into()];
        f.tmpfs = vec!["/a".into(), "/dev/shm:size=1m".into()];
        f.devices = vec!["/dev/null:/dev/n0:rw".into()];
    })
    .unwrap();
    let v = applied(&c);
    assert_eq!(v["root"]["readonly"], json!(true));
    let dests: Vec<&str> = v["mounts"].as_array().unwrap().iter().map(|m| m["destination"].as_str().unwrap()).collect();
    let pos = |d: &str| dests.iter().position(|x| *x == d).unwrap();
    assert!(pos("/a") < pos("/a/b"), "{dests:?}");
    assert_eq!(dests.iter().filter(|d| **d == "/dev/shm").count(), 1, "{dests:?}");
    assert_eq!(v["linux"]["devices"][0]["path"], "/dev/n0");
    let rules = device_rules(&c);
    assert_eq!(
        rules.as_array().unwrap().last().unwrap(),
        &json!({"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rw"})
    );
    assert!(err(|f| f.tmpfs = vec!["/x".into(), "/x".into()]).contains("/x is mounted twice"));
}

#[test]
fn host_config_in_dockers_shape() {
    let c = parsed(|f| {
        f.memory = Some("64m".into());
        f.cpus = Some("1.5".into());
        f.ulimits = vec!["nofile=100:200".into()];
        f.volumes = vec!["/tmp:/t:ro".into()];
        f.tmpfs = vec!["/s:size=1m".into()];
        f.mounts = vec!["type=tmpfs,target=/m".into()];
        f.cap_drop = vec!["net_raw".into()];
    })
    .unwrap();
    let h = host_config(&c);
    assert_eq!(h["Memory"], 64 << 20);
    assert_eq!(h["MemorySwap"], 128 << 20);
    assert_eq!(h["NanoCpus"], 1_500_000_000i64);
    assert_eq!(h["Ulimits"], json!([{"Name": "nofile", "Soft": 100, "Hard": 200}]));
    assert_eq!(h["Binds"], json!(["/tmp:/t:ro"]));
    assert_eq!(h["Tmpfs"], json!({"/s": "size=1m"}));
    assert_eq!(h["Mounts"], json!([{"Type": "tmpfs", "Source": "", "Target": "/m", "ReadOnly": false}]));
    assert_eq!(h["CapDrop"], json!(["CAP_NET_RAW"]));
    assert_eq!(h["PidsLimit"], Value::Null);
}
