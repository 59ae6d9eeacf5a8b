//! Python arguments read into core types. Each reader fails with a
//! [`Failure`] naming the argument and its rule; callers hand that failure to
//! the future, so an async call raises it on `await` (see [`crate::bridge`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use pyo3::buffer::PyBuffer;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyMemoryView, PyString};
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

/// A path in a sandbox or volume: `bytes`, or a `str` encoded as UTF-8 with
/// lone surrogates standing for the bytes they escape (as `os.fsencode`
/// does), or an `os.PathLike` of either.
pub fn remote_path(field: &str, value: &Bound<'_, PyAny>) -> Read<Vec<u8>> {
    let py = value.py();
    let invalid = || Error::invalid(field, "must be a path: str, bytes or os.PathLike").into();
    let value = if value.is_instance_of::<PyString>() || value.is_instance_of::<PyBytes>() {
        value.clone()
    } else if value
        .hasattr(pyo3::intern!(py, "__fspath__"))
        .unwrap_or(false)
    {
        py.import(pyo3::intern!(py, "os"))
            .and_then(|os| os.getattr(pyo3::intern!(py, "fspath")))
            .and_then(|fspath| fspath.call1((value,)))
            .map_err(Failure::Python)?
    } else {
        return Err(invalid());
    };
    if let Ok(text) = value.cast::<PyString>() {
        if let Ok(utf8) = text.to_str() {
            return Ok(utf8.as_bytes().to_vec());
        }
        let encoded = text
            .call_method1(pyo3::intern!(py, "encode"), ("utf-8", "surrogateescape"))
            .map_err(Failure::Python)?;
        return Ok(encoded
            .cast::<PyBytes>()
            .map_err(|_| invalid())?
            .as_bytes()
            .to_vec());
    }
    match value.cast::<PyBytes>() {
        Ok(bytes) => Ok(bytes.as_bytes().to_vec()),
        Err(_) => Err(invalid()),
    }
}

/// A path on this machine: a `str` or an `os.PathLike`.
pub fn local_path(field: &str, value: &Bound<'_, PyAny>) -> Read<PathBuf> {
    value
        .extract::<PathBuf>()
        .map_err(|_| Error::invalid(field, "must be a local path: str or os.PathLike").into())
}

/// The bytes of a bytes-like object (`bytes`, `bytearray`, `memoryview`, any
/// buffer) or of a `str` (UTF-8); `None` for anything else.
pub fn bytes_like(value: &Bound<'_, PyAny>) -> Read<Option<Vec<u8>>> {
    let py = value.py();
    if let Ok(bytes) = value.cast::<PyBytes>() {
        return Ok(Some(bytes.as_bytes().to_vec()));
    }
    if let Ok(text) = value.cast::<PyString>() {
        return Ok(Some(
            text.to_str().map_err(Failure::Python)?.as_bytes().to_vec(),
        ));
    }
    if let Ok(buffer) = PyBuffer::<u8>::get(value) {
        return Ok(Some(buffer.to_vec(py).map_err(Failure::Python)?));
    }
    // A buffer of other items (an array of ints, say): its bytes.
    let Ok(view) = PyMemoryView::from(value) else {
        return Ok(None);
    };
    let bytes = view
        .call_method0(pyo3::intern!(py, "tobytes"))
        .map_err(Failure::Python)?;
    Ok(Some(
        bytes
            .cast::<PyBytes>()
            .map_err(|err| Failure::Python(err.into()))?
            .as_bytes()
            .to_vec(),
    ))
}

/// What a file is written from.
#[derive(Debug)]
pub enum Content {
    /// Bytes in memory (from a bytes-like object or a `str`).
    Bytes(Vec<u8>),
    /// A local file, read by the core.
    Local(PathBuf),
    /// A binary file object or an iterable of chunks, read from Python.
    Chunks,
}

/// The content argument of a write: bytes-like, `str`, `os.PathLike`, an
/// object with `read`, an iterable, or (`async_iterables`) an async iterable.
pub fn content(field: &str, value: &Bound<'_, PyAny>, async_iterables: bool) -> Read<Content> {
    let py = value.py();
    if let Some(bytes) = bytes_like(value)? {
        return Ok(Content::Bytes(bytes));
    }
    let has = |name: &Bound<'_, PyString>| value.hasattr(name).unwrap_or(false);
    if has(pyo3::intern!(py, "__fspath__")) {
        return Ok(Content::Local(local_path(field, value)?));
    }
    if has(pyo3::intern!(py, "read"))
        || has(pyo3::intern!(py, "__iter__"))
        || (async_iterables && has(pyo3::intern!(py, "__aiter__")))
    {
        return Ok(Content::Chunks);
    }
    let what = if async_iterables {
        "must be bytes, str, an os.PathLike (a local file), a binary file, or an iterable or async iterable of bytes"
    } else {
        "must be bytes, str, an os.PathLike (a local file), a binary file, or an iterable of bytes"
    };
    Err(Error::invalid(field, what).into())
}

/// Permission bits (the core checks the upper bound: 0o7777).
pub fn mode(value: i64) -> Read<u32> {
    u32::try_from(value).map_err(|_| {
        Error::invalid(
            "mode",
            format!("{value} is not a permission mode (0 to 0o7777)"),
        )
        .into()
    })
}

/// Checks that `encoding` and `errors` name a codec and an error handler.
pub fn codec(py: Python<'_>, encoding: &str, errors: &str) -> Read<()> {
    let codecs = py
        .import(pyo3::intern!(py, "codecs"))
        .map_err(Failure::Python)?;
    codecs
        .call_method1(pyo3::intern!(py, "lookup"), (encoding,))
        .and_then(|_| codecs.call_method1(pyo3::intern!(py, "lookup_error"), (errors,)))
        .map_err(Failure::Python)?;
    Ok(())
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
