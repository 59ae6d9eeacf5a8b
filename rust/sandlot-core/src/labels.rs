//! The names sandlot writes onto Kubernetes objects and reads back: the
//! managed-by label, tags stored as labels, the annotations that record what
//! happened to a sandbox, and the name of a sandbox pod's one container.
//!
//! Both directions live here: encoding tags into labels and decoding them back,
//! the label selector for "managed by sandlot and carrying these tags", and the
//! check that an object is sandlot's.

use std::collections::BTreeMap;

use kube::api::ObjectMeta;

use crate::error::Result;
use crate::validate;

/// Label on everything sandlot creates.
pub(crate) const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`].
pub(crate) const MANAGED_BY: &str = "sandlot";
/// Label on sandlot's helper pods (see `files/helper.rs`), which are not sandboxes.
pub(crate) const HELPER_LABEL: &str = "sandlot.dev/helper";
/// Label selector matching everything sandlot manages but its helper pods
/// and the warm pods of pools, which are not (yet) anyone's sandboxes.
pub(crate) const MANAGED_SELECTOR: &str =
    "app.kubernetes.io/managed-by=sandlot,!sandlot.dev/helper,!sandlot.dev/warm";
/// Label selector matching everything sandlot manages.
pub(crate) const MANAGED_ONLY: &str = "app.kubernetes.io/managed-by=sandlot";
/// Label naming the pool of a pool's ConfigMap, of its warm pods and of the
/// sandboxes created from it (see `pool/`).
pub(crate) const POOL_LABEL: &str = "sandlot.dev/pool";
/// Label on a pool's warm pods until a create claims one: the version (a
/// hash) of the template it was made from.
pub(crate) const WARM_LABEL: &str = "sandlot.dev/warm";
/// Annotation on a warm pod: the template it was made from (JSON).
pub(crate) const POOL_TEMPLATE_ANNOTATION: &str = "sandlot.dev/pool-template";
/// Annotation on a sandbox a create from a pool made cold: why no warm pod served.
pub(crate) const POOL_FALLBACK_ANNOTATION: &str = "sandlot.dev/pool-fallback";
/// Annotation holding the uid of a pod whose network gate was seen to pass,
/// written by the client that readied it for a pool, so later clients need
/// not check again.
pub(crate) const GATE_PASSED_ANNOTATION: &str = "sandlot.dev/gate-passed";
/// Annotation carrying a random token per claim, so a claim whose answer was
/// lost can recognise the pod it took.
pub(crate) const CLAIM_TOKEN_ANNOTATION: &str = "sandlot.dev/claim-token";
/// Annotation holding a claimed sandbox's environment (a JSON object), which
/// every exec and process started in it gets.
pub(crate) const ENV_ANNOTATION: &str = "sandlot.dev/env";
/// Prefix that turns a tag key into a label key, keeping tags apart from other labels.
pub(crate) const TAG_LABEL_PREFIX: &str = "tags.sandlot.dev/";
/// Annotation recording when terminate was requested (RFC 3339).
pub(crate) const TERMINATED_AT_ANNOTATION: &str = "sandlot.dev/terminated-at";
/// Annotation recording the image a sandbox was created with, written when
/// terminate swaps in an image that never starts (see sandbox/terminate.rs).
pub(crate) const CREATED_IMAGE_ANNOTATION: &str = "sandlot.dev/image";
/// Annotation carrying a random token per create call, so a retried create can
/// recognise the pod its own earlier try made.
pub(crate) const CREATE_TOKEN_ANNOTATION: &str = "sandlot.dev/create-token";
/// Annotation recording why a launch failed, once sandlot has stopped retrying it.
pub(crate) const LAUNCH_FAILED_ANNOTATION: &str = "sandlot.dev/launch-failed";
/// Annotation recording the requested maximum lifetime in seconds.
pub(crate) const TTL_ANNOTATION: &str = "sandlot.dev/ttl-seconds";
/// On a volume's claim while a delete decides whether it may go: creates that
/// mount a claim so marked fail, and the delete re-checks its users after
/// marking. The value is the delete's own random token.
pub(crate) const VOLUME_DELETING_ANNOTATION: &str = "sandlot.dev/deleting";
/// The name of the one container in a sandbox pod.
pub(crate) const CONTAINER_NAME: &str = "sandbox";

/// The sandbox container among a pod's containers.
pub(crate) fn sandbox_container(
    containers: &mut [k8s_openapi::api::core::v1::Container],
) -> Option<&mut k8s_openapi::api::core::v1::Container> {
    containers.iter_mut().find(|c| c.name == CONTAINER_NAME)
}

/// Checks tags against the label rules; the field named on error is `tags["key"]`.
pub(crate) fn validate_tags(tags: &BTreeMap<String, String>) -> Result<()> {
    for (key, value) in tags {
        let field = format!("tags[{key:?}]");
        validate::label_part(&field, key, false)?;
        validate::label_part(&field, value, true)?;
    }
    Ok(())
}

/// The labels of a new object: the managed-by label and one label per tag.
/// The tags must have passed [`validate_tags`].
pub(crate) fn labels_of(tags: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut labels = managed_labels();
    labels.extend(
        tags.iter()
            .map(|(key, value)| (format!("{TAG_LABEL_PREFIX}{key}"), value.clone())),
    );
    labels
}

/// Pod Security admission's labels on a namespace sandlot creates: `baseline`
/// enforced, the strictest level every default sandbox passes (`restricted`
/// refuses images that run as root, as most do).
pub(crate) const POD_SECURITY_LABELS: [(&str, &str); 2] = [
    ("pod-security.kubernetes.io/enforce", "baseline"),
    ("pod-security.kubernetes.io/enforce-version", "latest"),
];

/// Just the managed-by label, for objects without tags (the namespace).
pub(crate) fn managed_labels() -> BTreeMap<String, String> {
    BTreeMap::from([(MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned())])
}

/// The tags stored in an object's labels, collected into `T`; other labels
/// are ignored.
pub(crate) fn tags_of<T: FromIterator<(String, String)>>(meta: &ObjectMeta) -> T {
    meta.labels
        .iter()
        .flatten()
        .filter_map(|(key, value)| {
            Some((
                key.strip_prefix(TAG_LABEL_PREFIX)?.to_owned(),
                value.clone(),
            ))
        })
        .collect()
}

/// The label selector for objects sandlot manages that carry every one of
/// `tags`. Invalid tags fail with the field named, before any request is sent.
pub(crate) fn selector(tags: &BTreeMap<String, String>) -> Result<String> {
    validate_tags(tags)?;
    let mut selector = MANAGED_SELECTOR.to_owned();
    for (key, value) in tags {
        selector.push_str(&format!(",{TAG_LABEL_PREFIX}{key}={value}"));
    }
    Ok(selector)
}

/// True if the object carries sandlot's managed-by label; objects of the same
/// name that sandlot did not create are treated as absent.
pub(crate) fn is_managed(meta: &ObjectMeta) -> bool {
    meta.labels
        .as_ref()
        .and_then(|labels| labels.get(MANAGED_BY_LABEL))
        .is_some_and(|value| value == MANAGED_BY)
}

/// The value of annotation `key` on the object, if present.
pub(crate) fn annotation<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a String> {
    meta.annotations.as_ref().and_then(|a| a.get(key))
}

/// The value of label `key` on an object, if it has one.
pub(crate) fn label<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a String> {
    meta.labels.as_ref().and_then(|l| l.get(key))
}

/// The environment a claimed sandbox gives every exec ([`ENV_ANNOTATION`]),
/// in order; none if it has none (or it cannot be read). Entries no create
/// could have given (a bad name, a NUL byte) are left out.
pub(crate) fn sandbox_env(meta: &ObjectMeta) -> Vec<(String, String)> {
    annotation(meta, ENV_ANNOTATION)
        .and_then(|json| serde_json::from_str::<BTreeMap<String, String>>(json).ok())
        .into_iter()
        .flatten()
        .filter(|(key, value)| validate::env_name("env", key).is_ok() && !value.contains('\0'))
        .collect()
}

/// `own` (an exec's environment) after `sandbox`'s, whose entries it overrides.
pub(crate) fn with_sandbox_env(
    sandbox: &[(String, String)],
    own: &[(String, String)],
) -> Vec<(String, String)> {
    sandbox
        .iter()
        .filter(|(key, _)| !own.iter().any(|(k, _)| k == key))
        .chain(own)
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    fn meta(labels: BTreeMap<String, String>) -> ObjectMeta {
        ObjectMeta {
            labels: Some(labels),
            ..ObjectMeta::default()
        }
    }

    #[test]
    fn tags_go_into_labels_and_come_back() {
        let tags = BTreeMap::from([("team".to_owned(), "ml".to_owned())]);
        let labels = labels_of(&tags);
        assert_eq!(labels["tags.sandlot.dev/team"], "ml");
        assert_eq!(labels[MANAGED_BY_LABEL], MANAGED_BY);
        let object = meta(labels);
        assert!(is_managed(&object));
        assert_eq!(tags_of::<BTreeMap<_, _>>(&object), tags);
        assert!(!is_managed(&ObjectMeta::default()));
    }

    #[test]
    fn selector_names_sandlot_and_every_tag() {
        assert_eq!(selector(&BTreeMap::new()).unwrap(), MANAGED_SELECTOR);
        let tags = BTreeMap::from([
            ("a".to_owned(), "1".to_owned()),
            ("b".to_owned(), String::new()),
        ]);
        assert_eq!(
            selector(&tags).unwrap(),
            "app.kubernetes.io/managed-by=sandlot,!sandlot.dev/helper,!sandlot.dev/warm,\
             tags.sandlot.dev/a=1,\
             tags.sandlot.dev/b="
        );
        let bad = BTreeMap::from([("a b".to_owned(), "1".to_owned())]);
        assert!(matches!(
            selector(&bad),
            Err(Error::InvalidSpec { field, .. }) if field == "tags[\"a b\"]"
        ));
    }

    #[test]
    fn a_claimed_sandboxs_env_goes_under_an_execs_own() {
        let meta = ObjectMeta {
            annotations: Some(BTreeMap::from([(
                ENV_ANNOTATION.to_owned(),
                r#"{"A":"sandbox","B":"sandbox","BAD=NAME":"x","C":"nul\u0000"}"#.to_owned(),
            )])),
            ..ObjectMeta::default()
        };
        let env = sandbox_env(&meta);
        assert_eq!(
            env,
            [
                ("A".into(), "sandbox".into()),
                ("B".into(), "sandbox".into())
            ]
        );
        let own = [("B".to_owned(), "exec".to_owned())];
        assert_eq!(
            with_sandbox_env(&env, &own),
            [("A".into(), "sandbox".into()), ("B".into(), "exec".into())]
        );
        assert!(sandbox_env(&ObjectMeta::default()).is_empty());
    }
}
