//! The async and the sync class of one object. Each object is one native base
//! class (`_Sandbox`, `_Client`, ...) that holds the object and its [`Mode`] and
//! declares every operation once; two thin subclasses (`AsyncSandbox`,
//! `Sandbox`) give it its Python names and the protocols that differ (`async
//! with` or `with`). An operation that returns another object returns it in
//! the caller's mode, through [`InMode`].

use pyo3::prelude::*;

use crate::bridge::Mode;

/// A base class's value, to become the Python object of `mode`'s class.
#[derive(Debug)]
pub struct InMode<B>(pub Mode, pub B);

/// A base class with an async and a sync subclass.
pub trait Twins: Sized {
    /// A new Python object of the subclass for `mode`, holding `self`.
    fn into_class(self, py: Python<'_>, mode: Mode) -> PyResult<Bound<'_, PyAny>>;
}

impl<'py, B: Twins> IntoPyObject<'py> for InMode<B> {
    type Target = PyAny;
    type Output = Bound<'py, PyAny>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.1.into_class(py, self.0)
    }
}

/// Implements [`Twins`] for base class `$base` with subclasses `$async_class`
/// and `$sync_class` (unit structs).
macro_rules! twins {
    ($base:ty => $async_class:ident, $sync_class:ident) => {
        impl $crate::twins::Twins for $base {
            fn into_class(
                self,
                py: ::pyo3::Python<'_>,
                mode: $crate::bridge::Mode,
            ) -> ::pyo3::PyResult<::pyo3::Bound<'_, ::pyo3::PyAny>> {
                let base = ::pyo3::PyClassInitializer::from(self);
                Ok(match mode {
                    $crate::bridge::Mode::Async => {
                        ::pyo3::Bound::new(py, base.add_subclass($async_class))?.into_any()
                    }
                    $crate::bridge::Mode::Blocking => {
                        ::pyo3::Bound::new(py, base.add_subclass($sync_class))?.into_any()
                    }
                })
            }
        }
    };
}
pub(crate) use twins;

/// The Python name of `object`'s class, for reprs.
pub fn class_name(object: &Bound<'_, PyAny>) -> String {
    object
        .get_type()
        .name()
        .map(|name| name.to_string())
        .unwrap_or_else(|_| "?".to_owned())
}
