//! The program is run here by a small eBPF interpreter (the instructions it
//! uses, nothing more), and its verdicts are compared with the v1
//! controller's semantics ([`Policy::allows`]) and with known answers.

use super::asm::*;
use super::*;

/// Run `prog` on a device request as the kernel would hand it over:
/// access_type = access << 16 | type, then major, then minor.
fn run(prog: &[Insn], kind: char, major: u32, minor: u32, access: u8) -> bool {
    let ty = if kind == 'b' { BLOCK } else { CHAR } as u32;
    let ctx = [(u32::from(access) << 16) | ty, major, minor];
    let mut r = [0u64; 11];
    let mut pc = 0usize;
    for _ in 0..10_000 {
        let i = prog[pc];
        let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
        pc += 1;
        match i.code {
            LDX_W => {
                assert_eq!(src, 1, "loads only from the context");
                r[dst] = u64::from(ctx[i.off as usize / 4]);
            }
            MOV64_X => r[dst] = r[src],
            MOV64_K => r[dst] = i.imm as i64 as u64,
            RSH64_K => r[dst] >>= i.imm,
            AND64_K => r[dst] &= i.imm as i64 as u64,
            JNE32 | JEQ32 => {
                let equal = r[dst] as u32 == i.imm as u32;
                if equal == (i.code == JEQ32) {
                    pc += i.off as usize;
                }
            }
            EXIT => return r[0] == 1,
            other => panic!("opcode {other:#x} is not one the program uses"),
        }
        assert!(pc < prog.len(), "jumped off the end");
    }
    panic!("the program does not end");
}

fn rules(list: &[(bool, &str)]) -> Vec<Rule> {
    list.iter().map(|(allow, l)| parse(*allow, l).unwrap()).collect()
}

fn policy(list: &[(bool, &str)]) -> Policy {
    Policy::of(&rules(list)).unwrap()
}

/// Every combination of a few devices and accesses: the program agrees with the v1 semantics.
fn agrees(p: &Policy) {
    let prog = program(p);
    for kind in ['b', 'c'] {
        for (major, minor) in [(1, 3), (1, 7), (1, 9), (5, 2), (8, 0), (136, 4), (u32::MAX - 1, 7), (0x8000_0001, 1)] {
            for access in 1..8 {
                assert_eq!(
                    run(&prog, kind, major, minor, access),
                    p.allows(kind, major, minor, access),
                    "{kind} {major}:{minor} access {access:#b} under {p:?}"
                );
            }
        }
    }
}

#[test]
fn deny_all_then_allow_null() {
    let p = policy(&[(false, "a *:* rwm"), (true, "c 1:3 rwm")]);
    agrees(&p);
    let prog = program(&p);
    assert!(run(&prog, 'c', 1, 3, READ | WRITE), "/dev/null rw");
    assert!(run(&prog, 'c', 1, 3, MKNOD));
    assert!(!run(&prog, 'c', 1, 7, READ), "/dev/full");
    assert!(!run(&prog, 'b', 8, 0, MKNOD), "mknod of a disk");
    assert!(!run(&prog, 'b', 1, 3, READ), "the type counts");
}

#[test]
fn the_list_a_container_gets() {
    let p = policy(&[
        (false, "a *:* rwm"),
        (true, "c *:* m"),
        (true, "b *:* m"),
        (true, "c 1:3 rwm"),
        (true, "c 136:* rwm"),
    ]);
    agrees(&p);
    let prog = program(&p);
    assert!(run(&prog, 'b', 8, 0, MKNOD), "mknod of any node");
    assert!(!run(&prog, 'b', 8, 0, READ), "but not opening it");
    assert!(!run(&prog, 'c', 1, 1, READ | WRITE), "/dev/mem");
    assert!(run(&prog, 'c', 136, 4, READ | WRITE), "a pty");
    // A request must fit in one exception: "c *:* m" and "c 1:3 rwm" are two.
    assert!(!run(&prog, 'c', 1, 1, READ | MKNOD));
}

#[test]
fn allow_all_then_deny_is_a_blacklist() {
    let p = policy(&[(true, "a"), (false, "c 1:7 w"), (false, "b 8:* rwm")]);
    assert!(p.default_allow);
    agrees(&p);
    let prog = program(&p);
    assert!(run(&prog, 'c', 1, 7, READ), "read of a write-only deny");
    assert!(!run(&prog, 'c', 1, 7, READ | WRITE), "read-write touches the deny (v1 matches partially)");
    assert!(!run(&prog, 'b', 8, 3, MKNOD));
    assert!(run(&prog, 'c', 5, 2, READ | WRITE | MKNOD));
}

#[test]
fn no_a_rule_means_the_v1_default_allow_all() {
    let p = policy(&[(false, "c 1:1 rwm")]);
    agrees(&p);
    assert!(!run(&program(&p), 'c', 1, 1, READ));
    assert!(run(&program(&p), 'c', 1, 3, READ));
}

#[test]
fn the_last_a_rule_resets_and_later_rules_adjust_exceptions() {
    let p = policy(&[(false, "c 1:3 rwm"), (true, "a"), (false, "a"), (true, "c 1:3 rwm"), (false, "c 1:3 w")]);
    assert_eq!(
        p,
        Policy {
            default_allow: false,
            exceptions: [(Meta { kind: 'c', major: Some(1), minor: Some(3) }, READ | MKNOD)].into()
        }
    );
    agrees(&p);
    // Taking every bit away removes the exception.
    let p = policy(&[(false, "a"), (true, "c 1:3 r"), (false, "c 1:3 r")]);
    assert!(p.exceptions.is_empty());
    assert_eq!(program(&p).len(), 8, "the header and the default");
}

#[test]
fn a_hole_in_a_wider_rule_is_refused() {
    let e = Policy::of(&rules(&[(false, "a"), (true, "c 1:* rwm"), (false, "c 1:3 w")])).unwrap_err();
    assert_eq!(
        e.to_string(),
        "config.json: field linux.resources.devices: denying c 1:3 w cannot be cut out of the wider allow c 1:* rwm: \
         the devices controller ignores such a rule"
    );
    let e = Policy::of(&rules(&[(true, "a"), (false, "b *:* r"), (true, "b 8:0 r")])).unwrap_err();
    assert!(e.to_string().contains("allowing b 8:0 r cannot be cut out of the wider deny b *:* r"), "{e}");
    // Bits the wider rule does not hold are no hole.
    Policy::of(&rules(&[(false, "a"), (true, "c 1:* m"), (false, "c 1:3 w")])).unwrap();
}

#[test]
fn bad_rules_name_the_cause() {
    let e = parse(true, "c 1:3 rwx").unwrap_err().to_string();
    assert!(e.contains("access \"rwx\" has 'x': only r, w and m are allowed"), "{e}");
    let e = parse(true, "c 4294967296:1 r").unwrap_err().to_string();
    assert!(e.contains("device number 4294967296 is out of range (0 to 4294967295)"), "{e}");
    let s = spec_with(serde_json::json!([{"allow": false, "type": "p", "access": "rwm"}]));
    let e = super::rules(&s).unwrap_err().to_string();
    assert!(e.contains("linux.resources.devices[0]: type p (a FIFO) has no cgroup rule"), "{e}");
}

fn spec_with(devices: serde_json::Value) -> Spec {
    let mut v = serde_json::to_value(super::super::spec::default_spec()).unwrap();
    v["linux"]["resources"] = serde_json::json!({ "devices": devices });
    serde_json::from_value(v).unwrap()
}

#[test]
fn a_config_becomes_the_rules_devices_rs_writes() {
    let s = spec_with(
        serde_json::json!([{"allow": false, "access": "rwm"}, {"allow": true, "type": "b", "major": 8, "access": "r"}]),
    );
    let r = super::rules(&s).unwrap();
    assert_eq!(r[0], Rule { allow: false, meta: None, access: READ | WRITE | MKNOD });
    assert_eq!(r[1], Rule { allow: true, meta: Some(Meta { kind: 'b', major: Some(8), minor: None }), access: READ });
    let p = Policy::of(&r).unwrap();
    agrees(&p);
    let prog = program(&p);
    assert!(run(&prog, 'c', 1, 9, READ), "/dev/urandom, always allowed");
    assert!(run(&prog, 'b', 8, 1, READ), "the config's b 8:* r");
    assert!(!run(&prog, 'b', 8, 1, WRITE));
}

#[test]
fn big_device_numbers_compare_as_u32() {
    let p = policy(&[(false, "a"), (true, "c 4294967294:7 rw"), (true, "c 2147483649:1 r")]);
    agrees(&p);
    assert!(run(&program(&p), 'c', u32::MAX - 1, 7, READ));
    assert!(!run(&program(&p), 'c', 7, 7, READ));
}
