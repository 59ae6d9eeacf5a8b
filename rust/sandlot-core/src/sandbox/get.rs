use crate::client::Client;
use crate::error::{Error, ObjectKind, Result};
use crate::spec::{MANAGED_BY, MANAGED_BY_LABEL};
use crate::status::SandboxStatus;
use crate::validate;

impl Client {
    /// The current status of sandbox `name`; [`Error::NotFound`] if there is no
    /// such sandbox (a pod of that name that sandlot did not create counts as none).
    pub async fn get_sandbox(&self, name: &str) -> Result<SandboxStatus> {
        validate::object_name("name", name)?;
        let pod = self
            .pods()
            .get(name)
            .await
            .map_err(|err| self.sandbox_error(err, name))?;
        let managed = pod
            .metadata
            .labels
            .as_ref()
            .and_then(|labels| labels.get(MANAGED_BY_LABEL))
            .is_some_and(|value| value == MANAGED_BY);
        if !managed {
            return Err(Error::NotFound {
                kind: ObjectKind::Sandbox,
                name: name.to_owned(),
                namespace: self.namespace().to_owned(),
            });
        }
        Ok(SandboxStatus::from_pod(&pod))
    }
}
