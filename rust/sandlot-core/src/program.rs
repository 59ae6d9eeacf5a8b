//! sandlot's own programs in sandboxes (the network gate, the agent): each
//! build's binary lives in an immutable ConfigMap named by its content, one
//! per namespace, and sandboxes mount it read-only and executable. No image
//! to publish or pull, and it runs in any image, shell or not.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, ConfigMapVolumeSource, KeyToPath, Volume};
use kube::api::{Api, ObjectMeta, PostParams};
use tokio::time::Instant;

use crate::Client;
use crate::error::{Error, Result, api_status};
use crate::labels;
use crate::retry::retry;

/// How long a client trusts that a program's ConfigMap still exists.
const RECHECK: Duration = Duration::from_secs(60);

/// One of sandlot's programs, as placed into sandboxes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Program {
    /// What it is called in messages.
    pub what: &'static str,
    /// The ConfigMap's name before its content tag.
    pub prefix: &'static str,
    /// Its key in the ConfigMap, and its file name where it is mounted.
    pub key: &'static str,
    pub binary: &'static [u8],
}

impl Program {
    /// The name of the ConfigMap holding this build: versioned by content.
    pub fn config_map_name(&self) -> String {
        // FNV-1a: a stable content tag, not a security measure.
        let hash = self.binary.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        format!("{}-{:010x}", self.prefix, hash >> 24)
    }

    /// The read-only, executable volume `volume` of this build's ConfigMap.
    /// Optional: a map deleted after the create leaves the file missing (the
    /// program cannot run) instead of holding the pod in creating.
    pub fn volume(&self, volume: &str) -> Volume {
        Volume {
            name: volume.into(),
            config_map: Some(ConfigMapVolumeSource {
                name: self.config_map_name(),
                default_mode: Some(0o555),
                items: Some(vec![KeyToPath {
                    key: self.key.into(),
                    path: self.key.into(),
                    mode: None,
                }]),
                optional: Some(true),
            }),
            ..Volume::default()
        }
    }
}

impl Client {
    /// Makes sure the namespace holds `program`'s ConfigMap: asked at most
    /// once per [`RECHECK`] per client (`checked` remembers when), so one
    /// deleted meanwhile is made again. A map of that name holding anything
    /// else, or mutable, is refused (409) rather than run in sandboxes.
    pub(crate) async fn ensure_program(
        &self,
        program: &Program,
        checked: &tokio::sync::Mutex<Option<Instant>>,
    ) -> Result<()> {
        let mut checked = checked.lock().await;
        if checked.is_some_and(|at| at.elapsed() < RECHECK) {
            return Ok(());
        }
        let maps: Api<ConfigMap> = Api::namespaced(self.kube().clone(), self.namespace());
        let name = program.config_map_name();
        let map = ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some(labels::managed_labels()),
                ..ObjectMeta::default()
            },
            binary_data: Some(BTreeMap::from([(
                program.key.to_owned(),
                ByteString(program.binary.to_vec()),
            )])),
            immutable: Some(true),
            ..ConfigMap::default()
        };
        let params = PostParams::default();
        // Twice: a map found made but gone before it is read is made again.
        for _ in 0..2 {
            match retry(|| maps.create(&params, &map)).await {
                Ok(_) => {
                    *checked = Some(Instant::now());
                    return Ok(());
                }
                // Made before: by an earlier client, or by someone who may
                // create ConfigMaps here and wants their program in every sandbox.
                Err(err) if api_status(&err).is_some_and(|s| s.code == 409) => {}
                Err(err) => return Err(self.api_error(err)),
            }
            let found = retry(|| maps.get_opt(&name))
                .await
                .map_err(|err| self.api_error(err))?;
            let Some(found) = found else { continue };
            let same = found.immutable == Some(true)
                && found.binary_data == map.binary_data
                && found.data.unwrap_or_default().is_empty();
            if !same {
                return Err(Error::Api {
                    status: 409,
                    reason: "Conflict".into(),
                    message: format!(
                        "ConfigMap {name:?} is not the {} this sandlot runs in sandboxes (its \
                         content differs, or it may be changed): refusing to run it; delete it \
                         and sandlot makes it again",
                        program.what
                    ),
                });
            }
            *checked = Some(Instant::now());
            return Ok(());
        }
        Err(Error::Api {
            status: 409,
            reason: "Conflict".into(),
            message: format!("ConfigMap {name:?} kept being deleted as it was made; try again"),
        })
    }
}
