//! Python arguments read into core types. Each reader fails with a
//! [`Failure`] naming the argument and its rule; callers hand that failure to
//! the future, so an async call raises it on `await` (see [`crate::bridge`]).

use std::collections::BTreeMap;
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};
use sandlot_core::{Error, Phase, Resources, Selection, Ttl};

use crate::bridge::Failure;
use crate::sandbox::SandboxBase;

/// What reading an argument gives.
pub type Read<T> = Result<T, Failure>;

/// Names from an iterable of names or sandboxes (async or sync).
pub fn names(value: &Bound<'_, PyAny>) -> Read<Vec<String>> {
    let invalid = || Error::invalid("names", "must be a list of sandbox names or sandboxes").into();
    if value.is_instance_of::<PyString>() {
        return Err(invalid());
    }
    let items = value.try_iter().map_err(|_| invalid())?;
    items
        .map(|item| {
            let item = item.map_err(Failure::Python)?;
            match item.cast::<SandboxBase>() {
                Ok(sandbox) => Ok(sandbox.get().name().to_owned()),
                Err(_) => item.extract::<String>().map_err(|_| invalid()),
            }
        })
        .collect()
}

/// One phase (a `Phase` or its name) or an iterable of them.
pub fn phases(value: &Bound<'_, PyAny>) -> Read<Vec<Phase>> {
    let texts: Vec<String> = if value.is_instance_of::<PyString>() {
        vec![value.extract().map_err(Failure::Python)?]
    } else {
        let invalid = || Error::invalid("phase", "must be a phase name or a list of phase names");
        let items = value.try_iter().map_err(|_| invalid())?;
        items
            .map(|item| {
                let item = item.map_err(Failure::Python)?;
                item.extract::<String>().map_err(|_| invalid().into())
            })
            .collect::<Read<_>>()?
    };
    texts
        .iter()
        .map(|text| text.parse().map_err(Failure::from))
        .collect()
}

/// The sandboxes a bulk operation picks.
pub fn selection(
    names: Option<&Bound<'_, PyAny>>,
    tags: Option<BTreeMap<String, String>>,
    phase: Option<&Bound<'_, PyAny>>,
    all: bool,
) -> Read<Selection> {
    Ok(Selection {
        names: names.map(self::names).transpose()?.unwrap_or_default(),
        tags: tags.unwrap_or_default(),
        phases: phase.map(phases).transpose()?.unwrap_or_default(),
        all,
    })
}

/// `{"cpu": ..., "memory": ..., "disk": ...}`; any other key is refused.
pub fn resources(mut given: BTreeMap<String, String>) -> Read<Resources> {
    let resources = Resources {
        cpu: given.remove("cpu"),
        memory: given.remove("memory"),
        disk: given.remove("disk"),
    };
    match given.keys().next() {
        Some(key) => Err(Error::invalid(
            format!("resources[{key:?}]"),
            "only \"cpu\", \"memory\" and \"disk\" can be set",
        )
        .into()),
        None => Ok(resources),
    }
}

/// A list of strings, or one string run by `/bin/sh -c`.
pub fn command(value: &Bound<'_, PyAny>) -> Read<Vec<String>> {
    if let Ok(text) = value.cast::<PyString>() {
        let text = text.to_str().map_err(Failure::Python)?;
        return Ok(vec!["/bin/sh".into(), "-c".into(), text.to_owned()]);
    }
    value.extract::<Vec<String>>().map_err(|_| {
        Error::invalid(
            "command",
            "must be a list of strings or one shell command string",
        )
        .into()
    })
}

/// The bytes of a `str` (UTF-8) or `bytes` value.
pub fn bytes(field: &str, value: &Bound<'_, PyAny>) -> Read<Vec<u8>> {
    if let Ok(text) = value.cast::<PyString>() {
        return Ok(text.to_str().map_err(Failure::Python)?.as_bytes().to_vec());
    }
    if let Ok(bytes) = value.cast::<PyBytes>() {
        return Ok(bytes.as_bytes().to_vec());
    }
    Err(Error::invalid(field, "must be str or bytes").into())
}

/// A number of seconds as a duration.
pub fn seconds(field: &str, value: f64) -> Read<Duration> {
    Duration::try_from_secs_f64(value).map_err(|_| {
        Error::invalid(field, format!("{value} is not a number of seconds >= 0")).into()
    })
}

/// A lifetime argument: `None` is no lifetime, an int is seconds; an omitted
/// one is the signature's default, `TtlArg(Ttl::Default)`. Checked later, with
/// the rest of the request.
#[derive(Debug, Clone, Copy)]
pub struct TtlArg(pub Ttl);

impl<'a, 'py> FromPyObject<'a, 'py> for TtlArg {
    type Error = PyErr;

    fn extract(value: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        if value.is_none() {
            return Ok(TtlArg(Ttl::Unlimited));
        }
        Ok(TtlArg(Ttl::Seconds(value.extract::<i64>()?)))
    }
}
