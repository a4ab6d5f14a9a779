//! A MAC address as a type: parsed once where it enters (a flag, a record, a
//! lease), printed the one way the kernel and `ip link` print it.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::Error;

/// Six bytes, written `02:42:0a:01:00:02` (lower case, as `ip link` shows).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// Docker's MAC for an address, 02:42 and the address: unique wherever the
    /// address is (a cluster network spans nodes that each name things alike).
    pub fn from_ip(ip: Ipv4Addr) -> Mac {
        let o = ip.octets();
        Mac([0x02, 0x42, o[0], o[1], o[2], o[3]])
    }

    pub fn octets(self) -> [u8; 6] {
        self.0
    }

    /// A MAC given for an interface (`--mac`): unicast and not all zero.
    pub fn for_interface(s: &str) -> anyhow::Result<Mac> {
        let mac: Mac = s.parse().map_err(|e| Error::Invalid(format!("--mac {e}")))?;
        Ok(mac.unicast()?)
    }

    /// This MAC, if it can name an interface: unicast and not all zero.
    pub fn unicast(self) -> Result<Mac, Error> {
        if self.0[0] & 1 == 1 {
            return Err(Error::Invalid(format!("--mac {self}: a multicast address cannot name an interface")));
        }
        if self.0 == [0; 6] {
            return Err(Error::Invalid(format!("--mac {self}: the all-zero address cannot name an interface")));
        }
        Ok(self)
    }
}

impl From<[u8; 6]> for Mac {
    fn from(b: [u8; 6]) -> Mac {
        Mac(b)
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(f, "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3], b[4], b[5])
    }
}

impl FromStr for Mac {
    type Err = Error;

    /// Six hex bytes separated by colons, either case.
    fn from_str(s: &str) -> Result<Mac, Error> {
        let bad = || Error::Invalid(format!("{s:?}: use six hex bytes like 02:42:ac:11:00:02"));
        let mut mac = [0u8; 6];
        let mut parts = s.split(':');
        for b in &mut mac {
            let p = parts.next().filter(|p| (1..=2).contains(&p.len())).ok_or_else(bad)?;
            *b = u8::from_str_radix(p, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(Mac(mac))
    }
}

/// Records and leases keep the text form, so files written before the type
/// (and flannel's `VtepMAC`) read as they are.
impl Serialize for Mac {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Mac {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Mac, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trips_in_lower_case() {
        let m: Mac = "02:42:0A:01:00:FF".parse().unwrap();
        assert_eq!(m.octets(), [2, 0x42, 10, 1, 0, 0xff]);
        assert_eq!(m.to_string(), "02:42:0a:01:00:ff");
        assert_eq!(serde_json::to_string(&m).unwrap(), "\"02:42:0a:01:00:ff\"");
        assert_eq!(serde_json::from_str::<Mac>("\"02:42:0a:01:00:ff\"").unwrap(), m);
        assert_eq!(Mac::from_ip(Ipv4Addr::new(10, 1, 0, 255)), m);
    }

    #[test]
    fn bad_text_is_refused_with_the_form_to_use() {
        for bad in [
            "",
            "02:42:0a:01:00",
            "02:42:0a:01:00:ff:01",
            "02:42:0a:01:00:fg",
            "002:42:0a:01:00:ff",
            "02-42-0a-01-00-ff",
        ] {
            let e = bad.parse::<Mac>().unwrap_err();
            assert!(e.to_string().contains("six hex bytes"), "{bad}: {e}");
        }
        assert!(serde_json::from_str::<Mac>("\"nope\"").is_err());
    }

    #[test]
    fn an_interface_mac_is_unicast_and_not_zero() {
        assert!(Mac::for_interface("02:42:0a:01:00:02").is_ok());
        let e = Mac::for_interface("01:00:5e:00:00:01").unwrap_err();
        assert!(e.to_string().contains("multicast"), "{e}");
        assert_eq!(crate::error::kind(&e), Some(crate::error::Kind::Invalid));
        assert!(Mac::for_interface("00:00:00:00:00:00").unwrap_err().to_string().contains("all-zero"));
    }
}
