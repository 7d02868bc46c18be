//! Which HSM object holds which KMS key material: named once, when the object is created.
//!
//! A production HSM may refuse to change an attribute after creation: AWS CloudHSM (Client SDK
//! 5, "Modifying attributes") allows LABEL, TOKEN, ENCRYPT/DECRYPT, SIGN/VERIFY, WRAP/UNWRAP,
//! SENSITIVE, DERIVE, TRUSTED and WRAP_WITH_TRUSTED, and not CKA_ID. So the object gets an id
//! of its own at C_GenerateKey (`CKA_ID = krg-<32 hex>`, `CKA_LABEL` = key ARN) and nothing is
//! set afterwards. KMS carries the link the other way: every ImportKeyMaterial of that
//! material sends `KeyMaterialDescription = "kms-rotation-guard hsm-object:<id>"`, which
//! ListKeyRotations returns next to the KeyMaterialId.
//!
//! Where an endpoint lists no descriptions (LocalStack has no ListKeyRotations), the key's own
//! tags carry the link: the pending tag `<material> hsm-object:<id>` during a rotation, and
//! the HSM object tag (`… CKA_ID=<id>`) next to the material id tag for the current material.
//! Objects made by earlier versions have the KMS material id itself as CKA_ID: those are found
//! by it. Whatever the source of a link, KMS checks it: EXISTING_KEY_MATERIAL with a
//! KeyMaterialId is refused for any other material, and the id KMS returns is compared.

use std::collections::BTreeMap;

use super::hsm::{label_matches, HsmError, KeptMaterial};
use super::{KeyView, RotationError, Rotator, HSM_OBJECT_TAG, MATERIAL_TAG, PENDING_TAG};

/// Every object id this version makes starts with this.
pub const OBJECT_ID_PREFIX: &str = "krg-";
/// Marks the object id in a key material description or a tag value.
const OBJECT_MARK: &str = "hsm-object:";

/// A fresh object id: `krg-` and 16 random bytes in hex. Not secret: it only has to differ
/// from every other object's, so two runs can never name each other's material.
pub fn new_object_id() -> String {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("the operating system's random source");
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{OBJECT_ID_PREFIX}{hex}")
}

/// The KeyMaterialDescription sent with every import of the material in object `object_id`.
/// (KMS allows `^[a-zA-Z0-9:/_\s.-]+$`, up to 256 characters: this uses only those.)
pub fn description(object_id: &str) -> String {
    format!("kms-rotation-guard {OBJECT_MARK}{object_id}")
}

/// The object id a description or tag value names (`hsm-object:<id>`), if any.
pub fn object_named_in(text: &str) -> Option<&str> {
    text.split_whitespace().find_map(|w| w.strip_prefix(OBJECT_MARK)).filter(|id| !id.is_empty())
}

/// The pending tag's value: `hsm-object:<id>` once the object exists, `<material>
/// hsm-object:<id>` once KMS has named the material.
pub fn pending_tag_value(material: Option<&str>, object_id: &str) -> String {
    match material {
        Some(m) => format!("{m} {OBJECT_MARK}{object_id}"),
        None => format!("{OBJECT_MARK}{object_id}"),
    }
}

/// The pending tag read back: (material id, object id). A value of earlier versions is the
/// material id alone.
pub fn parse_pending_tag(value: &str) -> (Option<&str>, Option<&str>) {
    let object = object_named_in(value);
    let material = value.split_whitespace().find(|w| !w.starts_with(OBJECT_MARK));
    (material, object)
}

/// Marks the material id in the HSM object tag.
const MATERIAL_MARK: &str = "material=";

/// The HSM object tag's value: the object and the KMS material it holds
/// (`pkcs11 token=<label> CKA_ID=<id> material=<KeyMaterialId>`, at most about 150 characters
/// of KMS's 256).
pub fn hsm_tag_value(kept: &KeptMaterial, material: &str) -> String {
    format!("{} {MATERIAL_MARK}{material}", kept.tag_value())
}

/// The object id in the HSM object tag (`pkcs11 token=<label> CKA_ID=<id>[ material=<id>]`).
pub fn object_in_hsm_tag(value: &str) -> Option<&str> {
    value.rsplit_once("CKA_ID=").and_then(|(_, rest)| rest.split_whitespace().next())
}

/// The material id the HSM object tag names (tags of earlier versions name none).
pub fn material_in_hsm_tag(value: &str) -> Option<&str> {
    value.split_whitespace().find_map(|w| w.strip_prefix(MATERIAL_MARK)).filter(|m| !m.is_empty())
}

/// KMS's side of the link for one key: material id → object id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MaterialMap {
    objects: BTreeMap<String, String>,
    /// The object of a rotation in flight whose material KMS has not named yet.
    pending_object: Option<String>,
}

impl MaterialMap {
    /// From the (material id, description) pairs ListKeyRotations gave and the key's tags.
    pub fn new<'a>(
        listed: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
        tags: &BTreeMap<String, String>,
    ) -> MaterialMap {
        let mut map = MaterialMap::default();
        for (material, description) in listed {
            if let Some(object) = description.and_then(object_named_in) {
                map.objects.insert(material.to_string(), object.to_string());
            }
        }
        // Tags only fill gaps: the description is what KMS stored with the material itself.
        // The HSM object tag names its material; older tags pair with the material id tag.
        if let Some(hsm_tag) = tags.get(HSM_OBJECT_TAG) {
            let material = material_in_hsm_tag(hsm_tag).or(tags.get(MATERIAL_TAG).map(String::as_str));
            if let (Some(m), Some(o)) = (material, object_in_hsm_tag(hsm_tag)) {
                map.objects.entry(m.to_string()).or_insert_with(|| o.to_string());
            }
        }
        if let Some(v) = tags.get(PENDING_TAG) {
            match parse_pending_tag(v) {
                (Some(m), Some(o)) => {
                    map.objects.entry(m.to_string()).or_insert_with(|| o.to_string());
                }
                (None, Some(o)) => map.pending_object = Some(o.to_string()),
                _ => {}
            }
        }
        map
    }

    /// The object KMS (or the key's tags) says holds `material`.
    pub fn object_for(&self, material: &str) -> Option<&str> {
        self.objects.get(material).map(String::as_str)
    }

    /// The object a stopped rotation generated before KMS named its material.
    pub fn pending_object(&self) -> Option<&str> {
        self.pending_object.as_deref()
    }

    /// The material KMS links to `object`, if any.
    pub fn material_of(&self, object: &str) -> Option<&str> {
        self.objects.iter().find(|(_, o)| o.as_str() == object).map(|(m, _)| m.as_str())
    }
}

/// Where one KMS key material is kept, as this login sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Custody {
    /// This object holds it.
    Held(KeptMaterial),
    /// KMS (or the key's tags) names the object that holds it, and this login does not see
    /// that object: on AWS CloudHSM, another crypto user's (or the token was not restored).
    NotVisible { object_id: String },
    /// No sign that any HSM kept it: KMS is its only holder.
    NotHeld,
}

/// Finds `material` of `key_arn` among the objects this login sees.
pub fn locate(map: &MaterialMap, kept: &[KeptMaterial], key_arn: &str, material: &str) -> Custody {
    let mine = |object: &str| {
        kept.iter()
            .find(|k| k.object_id == object && label_matches(&k.key_arn, key_arn))
            .map(|k| KeptMaterial { key_material_id: Some(material.to_string()), ..k.clone() })
    };
    // Objects of earlier versions carry the material id itself.
    if let Some(k) = mine(material) {
        return Custody::Held(k);
    }
    match map.object_for(material) {
        Some(object) => {
            mine(object).map(Custody::Held).unwrap_or(Custody::NotVisible { object_id: object.to_string() })
        }
        None => Custody::NotHeld,
    }
}

impl Custody {
    /// The object, or the error that says why there is none.
    pub fn require(self, key_arn: &str, material: &str) -> Result<KeptMaterial, HsmError> {
        match self {
            Custody::Held(k) => Ok(k),
            Custody::NotVisible { object_id } => Err(HsmError::NotVisible {
                key_arn: key_arn.to_string(),
                key_material_id: material.to_string(),
                object_id,
                reason: "this login does not see that object".into(),
            }),
            Custody::NotHeld => {
                Err(HsmError::NotKept { key_arn: key_arn.to_string(), key_material_id: material.to_string() })
            }
        }
    }
}

impl Rotator<'_> {
    /// The link from material id to object, as KMS (and the key's tags) give it for `k`.
    pub(super) fn material_map(k: &KeyView) -> MaterialMap {
        let listed =
            k.rotations.iter().flatten().filter_map(|r| Some((r.key_material_id()?, r.key_material_description())));
        MaterialMap::new(listed, &k.tags)
    }

    /// Where `material` of the key `k` is kept.
    pub(super) fn custody_in(&self, k: &KeyView, material: &str) -> Result<Custody, RotationError> {
        if !self.source.keeps_material() {
            return Ok(Custody::NotHeld);
        }
        let kept = self.source.kept_materials(&k.arn)?;
        Ok(locate(&Self::material_map(k), &kept, &k.arn, material))
    }

    /// The one object an earlier version generated for `key_arn` and never named (CKA_ID
    /// `pending`), if there is exactly one.
    pub(super) fn legacy_pending(&self, key_arn: &str) -> Result<Option<KeptMaterial>, RotationError> {
        let pending: Vec<_> = self
            .source
            .kept_materials(key_arn)?
            .into_iter()
            .filter(|k| k.is_legacy_pending() && k.key_arn == key_arn)
            .collect();
        Ok(match <[KeptMaterial; 1]>::try_from(pending) {
            Ok([one]) => Some(one),
            Err(_) => None,
        })
    }

    /// Where `material` of `key` is kept: one read of the key, one look at the token.
    pub(super) async fn custody_of(&self, key: &str, material: &str) -> Result<Custody, RotationError> {
        if !self.source.keeps_material() {
            return Ok(Custody::NotHeld);
        }
        let k = self.read(key).await?;
        self.custody_in(&k, material)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M1: &str = "1111111111111111111111111111111111111111111111111111111111111111";
    const M2: &str = "2222222222222222222222222222222222222222222222222222222222222222";

    #[test]
    fn object_ids_are_fresh_and_fit_a_kms_description() {
        let (a, b) = (new_object_id(), new_object_id());
        assert_ne!(a, b);
        assert!(a.starts_with("krg-") && a.len() == 36, "{a}");
        let d = description(&a);
        assert!(d.len() <= 256 && d.chars().all(|c| c.is_ascii_alphanumeric() || ":/_ .-".contains(c)), "{d}");
        assert_eq!(object_named_in(&d), Some(a.as_str()));
        assert_eq!(
            object_named_in("kms-rotation-guard 2026-01-01T00:00:00Z"),
            None,
            "descriptions of earlier versions"
        );
    }

    #[test]
    fn the_hsm_object_tag_names_its_material_so_an_edited_rotation_tag_moves_nothing() {
        let kept = KeptMaterial {
            token: "t".into(),
            key_arn: "arn:aws:kms:eu-west-1:111122223333:key/k".into(),
            object_id: "krg-abc".into(),
            key_material_id: None,
        };
        let value = hsm_tag_value(&kept, M1);
        assert!(value.len() <= 256, "{value}");
        assert_eq!((object_in_hsm_tag(&value), material_in_hsm_tag(&value)), (Some("krg-abc"), Some(M1)));
        // Someone rewrote the rotation tag: the object tag still links M1 to its object.
        let tags = BTreeMap::from([(MATERIAL_TAG.to_string(), M2.to_string()), (HSM_OBJECT_TAG.to_string(), value)]);
        let map = MaterialMap::new([], &tags);
        assert_eq!(map.object_for(M1), Some("krg-abc"));
        assert_eq!(map.object_for(M2), None);
        // A tag of an earlier version names no material: the rotation tag pairs with it.
        let old = BTreeMap::from([
            (MATERIAL_TAG.to_string(), M2.to_string()),
            (HSM_OBJECT_TAG.to_string(), "pkcs11 token=t CKA_ID=krg-old".to_string()),
        ]);
        assert_eq!(MaterialMap::new([], &old).object_for(M2), Some("krg-old"));
    }

    #[test]
    fn the_map_takes_descriptions_first_then_tags() {
        let tags = BTreeMap::from([
            (MATERIAL_TAG.to_string(), M2.to_string()),
            (HSM_OBJECT_TAG.to_string(), "pkcs11 token=t CKA_ID=krg-from-tag".to_string()),
            (PENDING_TAG.to_string(), pending_tag_value(None, "krg-in-flight")),
        ]);
        let d1 = description("krg-one");
        let map = MaterialMap::new([(M1, Some(d1.as_str())), (M2, None)], &tags);
        assert_eq!(map.object_for(M1), Some("krg-one"));
        assert_eq!(map.object_for(M2), Some("krg-from-tag"), "LocalStack lists no descriptions: the tags link it");
        assert_eq!(map.pending_object(), Some("krg-in-flight"));
        assert_eq!(map.material_of("krg-one"), Some(M1));
        // A description wins over a tag that disagrees.
        let map = MaterialMap::new([(M2, Some(description("krg-two").as_str()))], &tags);
        assert_eq!(map.object_for(M2), Some("krg-two"));
    }

    fn object(arn: &str, id: &str) -> KeptMaterial {
        KeptMaterial { token: "t".into(), key_arn: arn.into(), object_id: id.into(), key_material_id: None }
    }

    #[test]
    fn material_is_found_by_kms_link_or_by_the_old_naming_else_not_visible_or_not_held() {
        const ARN: &str = "arn:aws:kms:eu-west-1:111122223333:key/mrk-1234";
        const REPLICA: &str = "arn:aws:kms:us-east-1:111122223333:key/mrk-1234";
        let d = description("krg-linked");
        let gone = description("krg-other-cu");
        let map = MaterialMap::new([(M1, Some(d.as_str())), (M2, Some(gone.as_str()))], &BTreeMap::new());
        let kept = [
            object(ARN, "krg-linked"),
            object(ARN, "3333333333333333333333333333333333333333333333333333333333333333"),
        ];
        match locate(&map, &kept, REPLICA, M1) {
            Custody::Held(k) => assert!(k.object_id == "krg-linked" && k.key_material_id.as_deref() == Some(M1)),
            other => panic!("{other:?}"),
        }
        // Objects of earlier versions: CKA_ID is the material id (read both).
        let legacy = "3333333333333333333333333333333333333333333333333333333333333333";
        assert!(matches!(locate(&map, &kept, ARN, legacy), Custody::Held(k) if k.object_id == legacy));
        assert_eq!(locate(&map, &kept, ARN, M2), Custody::NotVisible { object_id: "krg-other-cu".into() });
        assert_eq!(locate(&map, &kept, ARN, &"4".repeat(64)), Custody::NotHeld);
        // Another key's object is never taken.
        assert_eq!(
            locate(&map, &[object("arn:aws:kms:eu-west-1:1:key/x", "krg-linked")], ARN, M1),
            Custody::NotVisible { object_id: "krg-linked".into() }
        );
    }

    #[test]
    fn pending_tags_of_this_and_earlier_versions_are_read() {
        assert_eq!(parse_pending_tag(&pending_tag_value(Some(M1), "krg-x")), (Some(M1), Some("krg-x")));
        assert_eq!(parse_pending_tag(&pending_tag_value(None, "krg-x")), (None, Some("krg-x")));
        assert_eq!(parse_pending_tag(M1), (Some(M1), None), "earlier versions wrote the material id alone");
        let tags = BTreeMap::from([(PENDING_TAG.to_string(), pending_tag_value(Some(M1), "krg-x"))]);
        assert_eq!(MaterialMap::new([], &tags).object_for(M1), Some("krg-x"));
        assert_eq!(object_in_hsm_tag("pkcs11 token=rotation tests CKA_ID=krg-y"), Some("krg-y"));
    }
}
