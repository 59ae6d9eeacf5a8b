//! [`Mount`]: a volume mounted into a sandbox, and its one text notation.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::validate;

/// A volume mounted into a sandbox.
///
/// Written and parsed in the notation of the Python API: `"volume"` or
/// `"volume:rw"` (read-write), `"volume:ro"` (read-only). [`Display`](fmt::Display)
/// writes the short form back (`"volume"` or `"volume:ro"`), and so does its JSON.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mount {
    /// The name of the volume (its claim).
    pub volume: String,
    /// Mount it read-only.
    pub read_only: bool,
}

impl Mount {
    /// Parses `"volume"`, `"volume:rw"` or `"volume:ro"`, naming `field` in the
    /// [`Error::InvalidSpec`] for a bad mode or volume name.
    pub fn parse(field: &str, text: &str) -> Result<Mount> {
        let (volume, mode) = text.split_once(':').unwrap_or((text, "rw"));
        let read_only = match mode {
            "rw" => false,
            "ro" => true,
            _ => {
                return Err(Error::invalid(
                    field,
                    format!("{text:?}: the mode after ':' must be ro or rw"),
                ));
            }
        };
        validate::object_name(field, volume)?;
        Ok(Mount {
            volume: volume.to_owned(),
            read_only,
        })
    }
}

/// Parses the Python notation; errors name the field `volume_mounts`.
impl FromStr for Mount {
    type Err = Error;

    fn from_str(text: &str) -> Result<Mount> {
        Mount::parse("volume_mounts", text)
    }
}

impl fmt::Display for Mount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.volume)?;
        if self.read_only {
            f.write_str(":ro")?;
        }
        Ok(())
    }
}

impl Serialize for Mount {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_read_and_write_the_python_notation() {
        let read_only: Mount = "data:ro".parse().unwrap();
        assert_eq!(
            read_only,
            Mount {
                volume: "data".into(),
                read_only: true
            }
        );
        assert_eq!(read_only.to_string(), "data:ro");
        let read_write: Mount = "data:rw".parse().unwrap();
        assert!(!read_write.read_only);
        assert_eq!(read_write.to_string(), "data");
        assert_eq!("data".parse::<Mount>().unwrap(), read_write);
        assert_eq!(serde_json::to_value(&read_only).unwrap(), "data:ro");
        for bad in ["data:rx", "data:", "Bad_Name", "a:b:ro", ""] {
            match Mount::parse("volume_mounts[\"/data\"]", bad) {
                Err(Error::InvalidSpec { field, .. }) => {
                    assert_eq!(field, "volume_mounts[\"/data\"]", "{bad:?}")
                }
                other => panic!("{bad:?}: expected InvalidSpec, got {other:?}"),
            }
        }
        assert!(matches!(
            "data:rx".parse::<Mount>(),
            Err(Error::InvalidSpec { field, .. }) if field == "volume_mounts"
        ));
    }
}
