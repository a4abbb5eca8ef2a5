//! Devices as the registry knows them.

use firmware::record::{HwId, KeyOrigin};

/// A device serial: 1, 2, 3, … in allocation order.
pub type Serial = u32;

/// Where a device is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceStatus {
    /// Serial allocated at the factory; not yet activated.
    FactoryOnly,
    /// Provisioning record verified; the device may authenticate.
    Active,
    /// Refused from now on.
    Revoked,
}

impl DeviceStatus {
    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FactoryOnly => "factory_only",
            Self::Active => "active",
            Self::Revoked => "revoked",
        }
    }

    /// Parse the stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "factory_only" => Some(Self::FactoryOnly),
            "active" => Some(Self::Active),
            "revoked" => Some(Self::Revoked),
            _ => None,
        }
    }
}

/// A device record in the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// Hardware ID (FICR DEVICEID).
    pub hw_id: HwId,
    /// Serial.
    pub serial: Serial,
    /// Product name, if given at provisioning.
    pub product: Option<String>,
    /// Status.
    pub status: DeviceStatus,
    /// Creation time, Unix seconds.
    pub created_at: i64,
    /// Last change, Unix seconds.
    pub updated_at: i64,
    /// The per-device public key (SEC1), once activated.
    pub device_pubkey: Option<[u8; 65]>,
    /// Where that key was made (from the activated record's flags).
    pub key_origin: Option<KeyOrigin>,
}

impl Device {
    /// A device just given its serial at `now`: `factory_only`, no key yet.
    pub fn allocated(hw_id: HwId, serial: Serial, product: Option<&str>, now: i64) -> Self {
        Self {
            hw_id,
            serial,
            product: product.map(str::to_owned),
            status: DeviceStatus::FactoryOnly,
            created_at: now,
            updated_at: now,
            device_pubkey: None,
            key_origin: None,
        }
    }
}

/// What a caller may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A factory station: provision and activate devices, read the registry.
    Factory,
    /// An administrator: everything a factory may, and revoke devices.
    Admin,
}

impl Role {
    /// The stored and command-line name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Factory => "factory",
            Self::Admin => "admin",
        }
    }

    /// Parse the stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "factory" => Some(Self::Factory),
            "admin" => Some(Self::Admin),
            _ => None,
        }
    }

    /// Whether this role includes `needed`.
    pub fn allows(self, needed: Role) -> bool {
        self == Self::Admin || self == needed
    }
}

/// An authenticated caller of the factory/admin API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Token name, or the IAM role ARN.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// The production order its token is bound to: it provisions only
    /// within that order.
    pub order: Option<String>,
}

impl Caller {
    /// How the caller appears in the audit log: `ROLE:NAME`.
    pub fn actor(&self) -> String {
        format!("{}:{}", self.role.as_str(), self.name)
    }
}

/// Whether `name` may name a token: 1 to 64 printable ASCII characters, no
/// spaces; `Err` says so.
pub fn check_token_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > 64 || !name.bytes().all(|c| c.is_ascii_graphic()) {
        return Err("name: 1 to 64 printable ASCII characters, no spaces");
    }
    Ok(())
}

/// An API token as the store keeps it (never its text: only its SHA-256).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    /// The holder's unique name.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// Creation time, Unix seconds.
    pub created_at: i64,
    /// After this time (Unix seconds) it is refused; `None`: no expiry.
    pub expires_at: Option<i64>,
    /// When it was revoked (Unix seconds); refused from then on.
    pub revoked_at: Option<i64>,
    /// The production order it is bound to.
    pub order: Option<String>,
}

impl TokenInfo {
    /// How token changes name it in the audit log.
    pub fn audit_subject(&self) -> String {
        let mut subject = format!("token:{} role:{}", self.name, self.role.as_str());
        if let Some(at) = self.expires_at {
            subject.push_str(&format!(" expires_at:{at}"));
        }
        if let Some(order) = &self.order {
            subject.push_str(&format!(" order:{order}"));
        }
        subject
    }

    /// Whether a request at `now` may use it: `Err` names why not
    /// (`token_revoked`, `token_expired`).
    pub fn usable_at(&self, now: i64) -> Result<Caller, &'static str> {
        if self.revoked_at.is_some() {
            return Err("token_revoked");
        }
        if self.expires_at.is_some_and(|t| now >= t) {
            return Err("token_expired");
        }
        Ok(Caller {
            name: self.name.clone(),
            role: self.role,
            order: self.order.clone(),
        })
    }
}

/// A production order: what a factory bound to it may create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    /// Its unique name (the same rules as a token's).
    pub name: String,
    /// The product every device of the order is.
    pub product: String,
    /// How many new devices it may create.
    pub quantity: u32,
    /// How many it has created.
    pub used: u32,
    /// Open from (Unix seconds, inclusive) …
    pub not_before: i64,
    /// … until (exclusive).
    pub not_after: i64,
    /// The only hardware IDs it may create, if the chip supplier gave a list.
    pub allow: Option<std::collections::BTreeSet<HwId>>,
    /// When it was opened.
    pub created_at: i64,
}

impl Order {
    /// Whether this order may create a new device for `hw_id` (asked as
    /// `product`, if given) at `now`; `Err` is the refusal.
    pub fn admits(
        &self,
        hw_id: HwId,
        product: Option<&str>,
        now: i64,
    ) -> Result<(), crate::store::StoreError> {
        use crate::store::StoreError;
        if now < self.not_before || now >= self.not_after {
            return Err(StoreError::OrderClosed(self.name.clone()));
        }
        if product.is_some_and(|p| p != self.product) {
            return Err(StoreError::WrongProduct(self.name.clone()));
        }
        if self.allow.as_ref().is_some_and(|a| !a.contains(&hw_id)) {
            return Err(StoreError::NotOnAllowList(hw_id));
        }
        if self.used >= self.quantity {
            return Err(StoreError::OrderExhausted(self.name.clone()));
        }
        Ok(())
    }

    /// How order changes name it in the audit log.
    pub fn audit_subject(&self) -> String {
        format!(
            "order:{} product:{} quantity:{} window:{}..{} allow_list:{}",
            self.name,
            self.product,
            self.quantity,
            self.not_before,
            self.not_after,
            self.allow
                .as_ref()
                .map_or(0, std::collections::BTreeSet::len)
        )
    }
}

/// A chip supplier's list of hardware IDs: one per line (16 hex digits),
/// blank lines and `#` comments allowed. `Err` names the first bad line.
pub fn parse_allow_list(text: &str) -> Result<std::collections::BTreeSet<HwId>, String> {
    let mut ids = std::collections::BTreeSet::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let id = HwId::parse_hex(line)
            .ok_or_else(|| format!("line {}: not a hardware ID (16 hex digits)", i + 1))?;
        ids.insert(id);
    }
    if ids.is_empty() {
        return Err("no hardware IDs".into());
    }
    Ok(ids)
}

#[cfg(test)]
mod order_tests {
    use super::*;

    #[test]
    fn allow_lists_parse_or_name_the_bad_line() {
        let ids = parse_allow_list("# lot 7\n1234567800000003\n\n  1234567800000004  # tray 2\n")
            .unwrap();
        assert_eq!(ids.len(), 2);
        assert_eq!(
            parse_allow_list("1234567800000003\nzz\n").unwrap_err(),
            "line 2: not a hardware ID (16 hex digits)"
        );
        assert!(parse_allow_list("# nothing\n").is_err());
    }

    proptest::proptest! {
        #[test]
        fn any_text_gets_an_answer(text in "[0-9a-fA-F#\\n \\t-~]{0,200}") {
            let _ = parse_allow_list(&text);
        }
    }
}

/// An encrypted release the backend serves per-device copies of
/// (`crate::release`): the signed image as the station made it, its AES key
/// wrapped for the station's encryption key.
#[derive(Clone, PartialEq, Eq)]
pub struct Release {
    /// Its name (`firmware::api::is_plain_name`).
    pub name: String,
    /// The image.
    pub image: Vec<u8>,
    /// SHA-256 of the image.
    pub sha256: [u8; 32],
    /// When it was stored, Unix seconds.
    pub created_at: i64,
}

impl Release {
    /// A release of `image` named `name`, at `now`.
    pub fn new(name: &str, image: Vec<u8>, now: i64) -> Self {
        use sha2::Digest;
        Self {
            name: name.to_owned(),
            sha256: sha2::Sha256::digest(&image).into(),
            image,
            created_at: now,
        }
    }
}

impl std::fmt::Debug for Release {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Release")
            .field("name", &self.name)
            .field("bytes", &self.image.len())
            .field("sha256", &hex::encode(self.sha256))
            .field("created_at", &self.created_at)
            .finish()
    }
}
