//! `--asn-db`: which network (autonomous system) an address belongs to, from an MMDB file.
//!
//! Owns reading the file (the `maxminddb` crate) and the record layouts it accepts: MaxMind's
//! GeoLite2-ASN and DB-IP's free ASN database (`autonomous_system_number` as a number,
//! `autonomous_system_organization`), and databases that store the number as a string such as
//! `"AS15169"`. The publisher owns the database in use, looks addresses up (never per flow: per
//! distinct address of a delta, with a cache) and reloads the file on SIGHUP.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

/// An opened ASN database.
pub struct AsnDb {
    reader: maxminddb::Reader<Vec<u8>>,
    path: PathBuf,
}

impl std::fmt::Debug for AsnDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AsnDb({})", self.path.display())
    }
}

/// The AS number as the database stores it.
#[derive(Deserialize)]
#[serde(untagged)]
enum AsNumber<'a> {
    Number(u64),
    Text(&'a str),
}

impl AsNumber<'_> {
    fn value(&self) -> Option<u32> {
        match self {
            AsNumber::Number(n) => u32::try_from(*n).ok(),
            AsNumber::Text(s) => {
                let digits = s.trim().trim_start_matches("AS").trim_start_matches("as");
                digits.parse().ok()
            }
        }
    }
}

#[derive(Deserialize)]
struct Record<'a> {
    #[serde(borrow)]
    autonomous_system_number: Option<AsNumber<'a>>,
    autonomous_system_organization: Option<&'a str>,
}

impl AsnDb {
    /// Reads and checks `path`: an MMDB file whose records have an AS number field.
    pub fn open(path: &Path) -> anyhow::Result<AsnDb> {
        let reader = maxminddb::Reader::open_readfile(path)
            .with_context(|| format!("cannot read --asn-db file {}", path.display()))?;
        if !reader
            .metadata
            .database_type
            .to_ascii_lowercase()
            .contains("asn")
        {
            tracing::warn!(
                file = %path.display(),
                database_type = %reader.metadata.database_type,
                "--asn-db: the database type does not say ASN; addresses without an autonomous_system_number count as 0"
            );
        }
        Ok(AsnDb {
            reader,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The AS number and organization of `addr`; `None` when the database has no entry (private
    /// and unrouted addresses) or the entry has no number.
    pub fn lookup(&self, addr: IpAddr) -> Option<(u32, &str)> {
        let record: Record = self.reader.lookup(addr).ok()??;
        let number = record.autonomous_system_number?.value()?;
        Some((number, record.autonomous_system_organization.unwrap_or("")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db(name: &str) -> AsnDb {
        AsnDb::open(
            &Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("testdata")
                .join(name),
        )
        .unwrap()
    }

    #[test]
    fn looks_up_numbers_and_names_in_both_layouts() {
        for name in ["asn-test.mmdb", "asn-test-string.mmdb"] {
            let db = db(name);
            let at = |a: &str| db.lookup(a.parse().unwrap());
            assert_eq!(
                at("198.51.100.7"),
                Some((64500, "Example Transit")),
                "{name}"
            );
            assert_eq!(
                at("203.0.113.200"),
                Some((64501, "Example Content")),
                "{name}"
            );
            assert_eq!(at("2001:db8:1::5"), Some((64502, "Example Six")), "{name}");
            assert_eq!(at("192.0.2.1"), None, "{name}");
            assert_eq!(at("2001:db8:2::1"), None, "{name}");
        }
    }

    #[test]
    fn a_missing_or_corrupt_file_is_a_clear_error() {
        let missing = AsnDb::open(Path::new("/nonexistent/asn.mmdb")).unwrap_err();
        assert!(format!("{missing:#}").contains("cannot read --asn-db file /nonexistent/asn.mmdb"));
        let dir = tempfile::tempdir().unwrap();
        let corrupt = dir.path().join("corrupt.mmdb");
        std::fs::write(&corrupt, b"not a database").unwrap();
        let e = AsnDb::open(&corrupt).unwrap_err();
        assert!(
            format!("{e:#}").contains("cannot read --asn-db file"),
            "{e:#}"
        );
    }
}
