//! Reading rcon's part of the filter and nat tables back: `iptables-save` (or the glance's text of the
//! same shape) parsed into chains and rules with their comments, targets and destinations.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{bail, Context as _, Result};
use ipnet::Ipv4Net;

use super::{ISOLATE, PORT_TAG, PREFIX, PUBLISHED, SVC_TAG};

/// What `iptables-save` shows of the filter and nat tables.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Live {
    /// (table, chain) of every chain, built-in or not.
    pub chains: BTreeSet<(String, String)>,
    pub rules: Vec<Rule>,
}

/// One rule, as `-A CHAIN SPEC`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Rule {
    pub table: String,
    pub chain: String,
    /// Everything after `-A CHAIN `, as iptables-save printed it (so `-D CHAIN SPEC` deletes exactly it).
    pub spec: String,
    pub comment: Option<String>,
    pub target: Option<String>,
    pub dst: Option<Ipv4Net>,
}

impl Live {
    /// Parse `iptables-save` output, keeping the filter and nat tables.
    pub(crate) fn parse(save: &str) -> Result<Live> {
        let mut live = Live::default();
        let mut table: Option<&str> = None;
        for (i, line) in save.lines().enumerate() {
            let line = line.trim_end();
            if let Some(t) = line.strip_prefix('*') {
                table = Some(t);
                continue;
            }
            let Some(t) = table.filter(|t| *t == "filter" || *t == "nat") else { continue };
            if let Some(decl) = line.strip_prefix(':') {
                let chain = decl.split_whitespace().next().unwrap_or_default();
                live.chains.insert((t.to_string(), chain.to_string()));
            } else if let Some(rest) = line.strip_prefix("-A ") {
                let Some((chain, spec)) = rest.split_once(' ') else { continue };
                let words = split_words(spec).with_context(|| format!("iptables-save line {}: {line}", i + 1))?;
                let after = |flag: &str| words.windows(2).find(|w| w[0] == flag).map(|w| w[1].clone());
                // `! -d S` is the negation: not this rule's destination network.
                let negated_dst = words.windows(2).any(|w| w[0] == "!" && w[1] == "-d");
                live.rules.push(Rule {
                    table: t.to_string(),
                    chain: chain.to_string(),
                    spec: spec.to_string(),
                    comment: after("--comment"),
                    target: after("-j"),
                    dst: if negated_dst { None } else { after("-d").and_then(|d| d.parse().ok()) },
                });
            }
        }
        Ok(live)
    }

    pub(super) fn has_chain(&self, table: &str, chain: &str) -> bool {
        self.chains.contains(&(table.to_string(), chain.to_string()))
    }

    pub(super) fn has_jump(&self, table: &str, from: &str, to: &str) -> bool {
        self.rules.iter().any(|r| r.table == table && r.chain == from && r.target.as_deref() == Some(to))
    }

    /// Rules in rcon's chains that belong to `name`.
    pub(super) fn owned<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Rule> + 'a {
        self.rules.iter().filter(move |r| r.chain.starts_with(PREFIX) && r.comment.as_deref() == Some(name))
    }

    /// Network names, from the comments on the rules in rcon's chains.
    pub(crate) fn owners(&self) -> BTreeSet<&str> {
        self.rules
            .iter()
            .filter(|r| r.chain.starts_with(PREFIX))
            .filter_map(|r| r.comment.as_deref())
            .filter(|c| *c != PUBLISHED && !c.starts_with(PORT_TAG) && !c.starts_with(SVC_TAG))
            .collect()
    }

    /// Endpoint keys with published-port rules.
    pub(crate) fn port_owners(&self) -> BTreeSet<&str> {
        self.rules.iter().filter_map(|r| r.comment.as_deref()?.strip_prefix(PORT_TAG)).collect()
    }

    pub(super) fn has_comment(&self, table: &str, chain: &str, comment: &str) -> bool {
        self.rules.iter().any(|r| r.table == table && r.chain == chain && r.comment.as_deref() == Some(comment))
    }

    /// Each network's subnet, from RCON-ISOLATE.
    pub(crate) fn subnets(&self) -> BTreeMap<&str, Ipv4Net> {
        self.rules
            .iter()
            .filter(|r| r.table == "filter" && r.chain == ISOLATE)
            .filter_map(|r| Some((r.comment.as_deref()?, r.dst?)))
            .collect()
    }
}

/// Split an iptables-save rule into words, undoing its double quotes and backslash escapes.
fn split_words(s: &str) -> Result<Vec<String>> {
    let (mut words, mut cur, mut in_word, mut quoted) = (Vec::new(), String::new(), false, false);
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            '\\' if quoted => cur.extend(chars.next()),
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if quoted {
        bail!("unterminated quote");
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::live;
    use super::super::{FORWARD, POSTROUTING};
    use super::*;

    #[test]
    fn words() {
        assert_eq!(
            split_words(r#"-s 1 -m comment --comment "a b\"c" -j X"#).unwrap(),
            ["-s", "1", "-m", "comment", "--comment", "a b\"c", "-j", "X"]
        );
        assert_eq!(split_words(r#"--comment """#).unwrap(), ["--comment", ""]);
        assert!(split_words(r#"--comment "a"#).is_err());
    }

    #[test]
    fn parse_save() {
        let l = live();
        assert_eq!(l.owners().into_iter().collect::<Vec<_>>(), ["a", "b+x"], "the mangle rule is not ours");
        assert_eq!(l.subnets()["a"], "10.1.0.0/24".parse::<Ipv4Net>().unwrap());
        assert!(l.has_jump("filter", "FORWARD", FORWARD) && l.has_jump("nat", "POSTROUTING", POSTROUTING));
        let masq = l.rules.iter().find(|r| r.chain == POSTROUTING && r.comment.as_deref() == Some("a")).unwrap();
        assert_eq!(masq.dst, None, "a negated -d is not the rule's destination");
        assert_eq!(masq.spec, "-s 10.1.0.0/24 ! -d 10.1.0.0/24 -m comment --comment a -j MASQUERADE");
    }
}
