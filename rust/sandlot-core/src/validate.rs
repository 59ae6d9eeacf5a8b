//! Local checks of user input against the Kubernetes rules, so bad input fails
//! with the field named before any request is sent.

use kube_quantity::ParsedQuantity;

use crate::error::{Error, Result};

/// Longest sandbox or volume name (a DNS-1123 label).
pub const MAX_NAME_LEN: usize = 63;

/// Checks a sandbox or volume name: a DNS-1123 label.
pub fn object_name(field: &str, name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::invalid(field, "must not be empty"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(Error::invalid(
            field,
            format!(
                "{name:?} is {} characters; at most {MAX_NAME_LEN} are allowed",
                name.len()
            ),
        ));
    }
    let valid_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    if !name.chars().all(valid_char) || !name.starts_with(alnum) || !name.ends_with(alnum) {
        return Err(Error::invalid(
            field,
            format!(
                "{name:?} must consist of lowercase letters, digits and '-', and start and end with a letter or digit"
            ),
        ));
    }
    Ok(())
}

/// Checks a DNS-1123 subdomain (a RuntimeClass or StorageClass name): dot-separated
/// labels, at most 253 characters.
pub fn dns_subdomain(field: &str, name: &str) -> Result<()> {
    if name.len() > 253 {
        return Err(Error::invalid(
            field,
            format!("{name:?} is longer than 253 characters"),
        ));
    }
    for label in name.split('.') {
        object_name(field, label).map_err(|_| {
            Error::invalid(
                field,
                format!(
                    "{name:?} must be lowercase letters, digits, '-' and '.', each dot-separated part starting and ending with a letter or digit"
                ),
            )
        })?;
    }
    Ok(())
}

/// Checks the part of a label that sandlot lets users choose: a tag key or a
/// tag value (`allow_empty`). At most 63 characters of letters, digits, '-',
/// '_' and '.', starting and ending with a letter or digit.
pub fn label_part(field: &str, text: &str, allow_empty: bool) -> Result<()> {
    if text.is_empty() {
        return if allow_empty {
            Ok(())
        } else {
            Err(Error::invalid(field, "must not be empty"))
        };
    }
    if text.len() > 63 {
        return Err(Error::invalid(
            field,
            format!(
                "{text:?} is {} characters; at most 63 are allowed",
                text.len()
            ),
        ));
    }
    let alnum = |c: char| c.is_ascii_alphanumeric();
    let valid = text
        .chars()
        .all(|c| alnum(c) || matches!(c, '-' | '_' | '.'))
        && text.starts_with(alnum)
        && text.ends_with(alnum);
    if !valid {
        return Err(Error::invalid(
            field,
            format!(
                "{text:?} must consist of letters, digits, '-', '_' and '.', and start and end with a letter or digit"
            ),
        ));
    }
    Ok(())
}

/// Checks an environment variable name: printable ASCII without '='.
pub fn env_name(field: &str, name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::invalid(
            field,
            "an environment variable name must not be empty",
        ));
    }
    if !name.chars().all(|c| (' '..='~').contains(&c) && c != '=') {
        return Err(Error::invalid(
            field,
            format!("{name:?} must be printable ASCII without '='"),
        ));
    }
    Ok(())
}

/// Checks a Kubernetes resource quantity such as "500m", "1.5", "256Mi" or
/// "1e3" (parsed by `kube_quantity`), and that it is greater than zero.
/// A uid to run as other than the image's user: non-root, and one
/// Kubernetes takes (`runAsUser` is at most 2^31-1).
pub fn run_as_user(field: &str, uid: i64) -> Result<()> {
    if (1..=i64::from(i32::MAX)).contains(&uid) {
        return Ok(());
    }
    Err(Error::invalid(
        field,
        format!("{uid} must be a non-root uid between 1 and 2147483647"),
    ))
}

pub fn quantity(field: &str, text: &str) -> Result<()> {
    let positive = ParsedQuantity::try_from(text)
        .ok()
        .and_then(|quantity| quantity.to_bytes_f64())
        .is_some_and(|value| value > 0.0);
    if !positive {
        return Err(Error::invalid(
            field,
            format!(
                "{text:?} is not a Kubernetes quantity greater than zero (e.g. \"500m\", \"2\", \"256Mi\", \"1G\")"
            ),
        ));
    }
    Ok(())
}

/// Parses `text` as the name of one of `E`'s variants (its strum name); the
/// error names `field` and lists every name, in declaration order.
pub(crate) fn one_of<E>(field: &str, text: &str) -> Result<E>
where
    E: strum::VariantArray + Copy + Into<&'static str>,
{
    E::VARIANTS
        .iter()
        .copied()
        .find(|&variant| variant.into() == text)
        .ok_or_else(|| {
            let names: Vec<&str> = E::VARIANTS.iter().map(|&variant| variant.into()).collect();
            Error::invalid(
                field,
                format!("{text:?} is not one of {}", names.join(", ")),
            )
        })
}

/// A fresh sandbox or volume name: `prefix` and 10 random base-36 characters.
pub fn generated_name(prefix: &str) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut bits: u64 = rand::random();
    let suffix: String = (0..10)
        .map(|_| {
            let c = ALPHABET[(bits % 36) as usize] as char;
            bits /= 36;
            c
        })
        .collect();
    format!("{prefix}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(result: Result<()>) -> String {
        match result {
            Err(Error::InvalidSpec { field, .. }) => field,
            other => panic!("expected InvalidSpec, got {other:?}"),
        }
    }

    #[test]
    fn names_follow_dns_1123_labels() {
        for ok in ["a", "hello", "job-1", "0abc", &"a".repeat(63)] {
            object_name("name", ok).unwrap();
        }
        for bad in [
            "",
            "Bad_Name",
            "UPPER",
            "-lead",
            "trail-",
            "dot.ted",
            "sp ace",
            "ünï",
            &"a".repeat(64),
        ] {
            assert_eq!(
                field_of(object_name("name", bad)),
                "name",
                "{bad:?} should be rejected"
            );
        }
    }

    #[test]
    fn subdomains_are_dot_separated_labels() {
        for ok in ["gvisor", "kata-qemu", "runsc.example.com"] {
            dns_subdomain("runtime_class", ok).unwrap();
        }
        for bad in ["", "G", "a..b", ".a", "a.", "a_b"] {
            assert_eq!(
                field_of(dns_subdomain("runtime_class", bad)),
                "runtime_class",
                "{bad:?}"
            );
        }
    }

    #[test]
    fn label_parts_follow_kubernetes_rules() {
        for ok in ["team", "Team_A", "v1.2", "a-b", &"x".repeat(63)] {
            label_part("tags", ok, false).unwrap();
        }
        label_part("tags", "", true).unwrap();
        for bad in ["", "-a", "a-", "a b", "a/b", "é", &"x".repeat(64)] {
            assert_eq!(field_of(label_part("tags", bad, false)), "tags", "{bad:?}");
        }
    }

    #[test]
    fn env_names_are_printable_without_equals() {
        env_name("env", "PATH").unwrap();
        env_name("env", "my.var-1").unwrap();
        for bad in ["", "A=B", "TAB\t", "NL\n"] {
            assert_eq!(field_of(env_name("env", bad)), "env", "{bad:?}");
        }
    }

    #[test]
    fn quantities_follow_kubernetes_syntax() {
        for ok in [
            "1", "500m", "0.5", ".5", "2.", "256Mi", "1Gi", "1G", "100k", "1e3", "1E-2", "5e+2",
        ] {
            quantity("resources.cpu", ok).unwrap_or_else(|e| panic!("{ok:?}: {e}"));
        }
        for bad in [
            "", "0", "0m", "-1", "1.2.3", "abc", "1KB", "1mi", "Mi", ".", "1e", "1 Gi", "inf",
            "NaN", "-0.5Gi",
        ] {
            assert_eq!(
                field_of(quantity("resources.cpu", bad)),
                "resources.cpu",
                "{bad:?}"
            );
        }
    }

    #[test]
    fn generated_names_are_valid_and_distinct() {
        let a = generated_name("sb-");
        let b = generated_name("sb-");
        object_name("name", &a).unwrap();
        assert_eq!(a.len(), 13);
        assert_ne!(a, b);
    }
}
