use std::time::Duration;

use kube::api::PostParams;

use crate::client::Client;
use crate::error::{Error, Result, api_status};
use crate::spec::SandboxSpec;
use crate::status::SandboxStatus;
use crate::validate;

/// How often a create is tried while a new namespace's service account appears.
const SERVICE_ACCOUNT_RETRIES: u32 = 50;

impl Client {
    /// Creates a sandbox. The spec is validated first; nothing is sent if it is
    /// invalid. Fails with [`Error::NameConflict`] if the name is taken.
    pub async fn create_sandbox(&self, spec: &SandboxSpec) -> Result<SandboxStatus> {
        spec.validate()?;
        let name = spec
            .name
            .clone()
            .unwrap_or_else(|| validate::generated_name("sb-"));
        let pod = spec.to_pod(&name);
        let mut attempt = 0;
        loop {
            match self.pods().create(&PostParams::default(), &pod).await {
                Ok(created) => return Ok(SandboxStatus::from_pod(&created)),
                // A namespace made moments ago may not have its service account yet.
                Err(err)
                    if attempt < SERVICE_ACCOUNT_RETRIES
                        && api_status(&err).is_some_and(|s| {
                            s.code == 403 && s.message.contains("service account")
                        }) =>
                {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(err) => {
                    return Err(match self.sandbox_error(err, &name) {
                        Error::NameConflict { .. } if spec.name.is_none() => {
                            // A generated name collided: vanishingly rare, so say so plainly.
                            Error::invalid(
                                "name",
                                format!("generated name {name:?} collided; try again"),
                            )
                        }
                        other => other,
                    });
                }
            }
        }
    }
}
