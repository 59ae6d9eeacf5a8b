//! sandlot's own programs in sandboxes (the network gate, the agent): each
//! build's binary lives in an immutable ConfigMap named by its content, one
//! per namespace, and sandboxes mount it read-only and executable. No image
//! to publish or pull, and it runs in any image, shell or not.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, ConfigMapVolumeSource, KeyToPath, Pod, Volume};
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, PostParams, Preconditions};
use tokio::time::Instant;

use crate::Client;
use crate::error::{Error, Result, api_status};
use crate::labels;
use crate::retry::retry;

/// How long a client trusts that a program's ConfigMap still exists.
const RECHECK: Duration = Duration::from_secs(60);

/// How old the ConfigMap of an earlier build must be before it may be
/// removed: a client of that build trusts it exists for [`RECHECK`] after
/// it last looked, and may still be making sandboxes.
pub const STALE_AFTER: Duration = Duration::from_secs(3600);

static STALE_AFTER_SECONDS: AtomicU64 = AtomicU64::new(STALE_AFTER.as_secs());

/// Sets how old the ConfigMap of an earlier build must be before purge
/// removes it (default [`STALE_AFTER`]), in this process. For tests, which
/// cannot make an old ConfigMap.
#[doc(hidden)]
pub fn set_stale_program_age(age: Duration) {
    STALE_AFTER_SECONDS.store(age.as_secs(), Ordering::Relaxed);
}

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
    /// [`content_tag`] of `binary`, worked out when the program is built
    /// ([`Program::new`]), not on every create.
    tag: u64,
}

/// A stable tag of `bytes` (FNV-1a, 40 bits): names a build, not a security measure.
const fn content_tag(bytes: &[u8]) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325_u64;
    let mut at = 0;
    while at < bytes.len() {
        hash = (hash ^ bytes[at] as u64).wrapping_mul(0x0100_0000_01b3);
        at += 1;
    }
    hash >> 24
}

impl Program {
    pub const fn new(
        what: &'static str,
        prefix: &'static str,
        key: &'static str,
        binary: &'static [u8],
    ) -> Program {
        Program {
            what,
            prefix,
            key,
            binary,
            tag: content_tag(binary),
        }
    }

    /// The name of the ConfigMap holding this build: versioned by content.
    pub fn config_map_name(&self) -> String {
        format!("{}-{:010x}", self.prefix, self.tag)
    }

    /// Whether ConfigMap `name` holds some build of this program (its prefix
    /// and a content tag).
    fn holds_a_build(&self, name: &str) -> bool {
        name.strip_prefix(self.prefix)
            .and_then(|rest| rest.strip_prefix('-'))
            .is_some_and(|tag| tag.len() == 10 && tag.bytes().all(|b| b.is_ascii_hexdigit()))
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

impl Client {
    /// Deletes the ConfigMaps of earlier builds of `programs` (an upgraded
    /// sandlot makes new ones) that no pod in the namespace mounts; the
    /// names deleted. Earlier means made before this build's map in this
    /// namespace (both times are the API server's), and only once this
    /// build's map is [`STALE_AFTER`] old, so that clients of the build
    /// before have moved on. A client that may not list or delete ConfigMaps
    /// leaves them.
    pub(crate) async fn remove_stale_programs(&self, programs: &[&Program]) -> Result<Vec<String>> {
        let maps: Api<ConfigMap> = Api::namespaced(self.kube().clone(), self.namespace());
        let managed = ListParams::default().labels(labels::MANAGED_ONLY);
        let found = match self.list_all(&maps, &managed).await {
            Ok(found) => found,
            Err(Error::PermissionDenied { .. }) => return Ok(Vec::new()),
            Err(err) => return Err(err),
        };
        let made = |map: &ConfigMap| map.metadata.creation_timestamp.as_ref().map(|t| t.0);
        let stale_after = Duration::from_secs(STALE_AFTER_SECONDS.load(Ordering::Relaxed));
        let now = jiff::Timestamp::now();
        let mut stale: Vec<&ConfigMap> = Vec::new();
        for program in programs {
            let current = program.config_map_name();
            let Some(ours) = found
                .iter()
                .find(|map| map.metadata.name.as_deref() == Some(current.as_str()))
                .and_then(made)
            else {
                continue;
            };
            let age = now.duration_since(ours);
            if age.is_negative() || age.unsigned_abs() < stale_after {
                continue;
            }
            stale.extend(found.iter().filter(|map| {
                let name = map.metadata.name.as_deref().unwrap_or_default();
                program.holds_a_build(name)
                    && name != current
                    && made(map).is_some_and(|t| t < ours)
            }));
        }
        if stale.is_empty() {
            return Ok(Vec::new());
        }
        // The ConfigMaps that some pod mounts.
        let mounted: HashSet<String> = self
            .list_all_as(self.lean_pods(), &ListParams::default(), |pod| {
                let volumes = Pod::from(pod).spec?.volumes?;
                Some(
                    volumes
                        .into_iter()
                        .filter_map(|volume| volume.config_map.map(|map| map.name))
                        .collect::<Vec<_>>(),
                )
            })
            .await?
            .into_iter()
            .flatten()
            .collect();
        let mut removed = Vec::new();
        for map in stale {
            let name = map.metadata.name.clone().unwrap_or_default();
            if mounted.contains(name.as_str()) {
                continue;
            }
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: map.metadata.uid.clone(),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            match retry(|| maps.delete(&name, &params)).await {
                Ok(_) => removed.push(name),
                // Gone already, or replaced by a new map of that name.
                Err(err) if api_status(&err).is_some_and(|s| matches!(s.code, 404 | 409)) => {}
                Err(err) => match self.api_error(err) {
                    Error::PermissionDenied { .. } => break,
                    err => return Err(err),
                },
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOY: Program = Program::new("toy", "sandlot-agent", "agent", b"toy");

    #[test]
    fn only_names_of_a_build_are_builds() {
        assert!(TOY.holds_a_build(&TOY.config_map_name()));
        assert!(TOY.holds_a_build("sandlot-agent-00ff00ff00"));
        for other in [
            "sandlot-agent",
            "sandlot-agent-00ff00ff0",
            "sandlot-agent-00ff00ff00x",
            "sandlot-agent-zzzzzzzzzz",
            "sandlot-agentx00ff00ff00",
            "sandlot-pool-web",
        ] {
            assert!(!TOY.holds_a_build(other), "{other}");
        }
    }
}
