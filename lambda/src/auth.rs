//! Who is calling the factory and admin endpoints. The entry point decides:
//! the local server checks bearer tokens against the store (which keeps only
//! their SHA-256), the Lambda maps the IAM identity API Gateway vouches for to
//! a role from its configuration. Device endpoints need no credential.

use std::collections::HashMap;
use std::sync::Arc;

use axum::http::request::Parts;
use sha2::{Digest, Sha256};

use crate::model::{Caller, Role};
use crate::store::{Store, StoreError};

/// Establishes the caller of a request.
pub trait Authenticator: Send + Sync {
    /// The caller, or `None` when the request carries no valid credential.
    fn identify(&self, parts: &Parts) -> Result<Option<Caller>, StoreError>;
}

/// Prefix of every token text, so a leaked one is recognisable.
pub const TOKEN_PREFIX: &str = "pvd_";

/// A new random token's text: the prefix and 32 random bytes in hex.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut bytes);
    let text = format!("{TOKEN_PREFIX}{}", hex::encode(bytes));
    zeroize::Zeroize::zeroize(&mut bytes);
    text
}

/// What the store keeps of a token: SHA-256 of its text.
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// How long a token, once found in the store, is believed without asking
/// the store again.
const TOKEN_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(10);

/// Bearer tokens checked against the store (the local server). Tokens found
/// are remembered for [`TOKEN_CACHE_TTL`]; unknown ones are asked every time.
pub struct BearerTokens {
    store: Arc<dyn Store>,
    known: std::sync::Mutex<HashMap<[u8; 32], (Caller, std::time::Instant)>>,
}

impl std::fmt::Debug for BearerTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BearerTokens").finish_non_exhaustive()
    }
}

impl BearerTokens {
    /// Check tokens against `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            known: std::sync::Mutex::new(HashMap::new()),
        }
    }
}

impl Authenticator for BearerTokens {
    fn identify(&self, parts: &Parts) -> Result<Option<Caller>, StoreError> {
        let Some(value) = parts.headers.get(axum::http::header::AUTHORIZATION) else {
            return Ok(None);
        };
        let Some(token) = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| t.starts_with(TOKEN_PREFIX))
        else {
            return Ok(None);
        };
        let hash = token_hash(token);
        let now = std::time::Instant::now();
        {
            let known = self.known.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((caller, at)) = known.get(&hash) {
                if now.duration_since(*at) < TOKEN_CACHE_TTL {
                    return Ok(Some(caller.clone()));
                }
            }
        }
        let caller = self.store.caller_by_token(&hash)?;
        if let Some(c) = &caller {
            let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
            if known.len() > 1024 {
                known.clear();
            }
            known.insert(hash, (c.clone(), now));
        }
        Ok(caller)
    }
}

/// The IAM identity API Gateway authorised (the Lambda), mapped to roles by
/// configuration: role ARNs, and the assumed-role sessions of those roles.
#[derive(Debug, Clone, Default)]
pub struct IamRoles {
    roles: HashMap<String, Role>,
}

impl IamRoles {
    /// Parse the configuration: a JSON object from IAM role (or user) ARN to
    /// `"factory"` or `"admin"`.
    pub fn from_json(text: &str) -> Result<Self, String> {
        let raw: HashMap<String, String> =
            serde_json::from_str(text).map_err(|e| format!("caller roles: {e}"))?;
        let mut roles = HashMap::new();
        for (arn, role) in raw {
            let role = Role::parse(&role)
                .ok_or_else(|| format!("caller roles: {arn}: unknown role {role:?}"))?;
            roles.insert(arn, role);
        }
        Ok(Self { roles })
    }

    /// The role of the caller `arn`, as API Gateway reports it: an IAM ARN,
    /// or `arn:aws:sts::ACCOUNT:assumed-role/NAME/SESSION` for a session of
    /// the role `arn:aws:iam::ACCOUNT:role/NAME`.
    pub fn caller(&self, arn: &str) -> Option<Caller> {
        let role_arn = assumed_role_arn(arn);
        let key = role_arn.as_deref().unwrap_or(arn);
        self.roles.get(key).map(|&role| Caller {
            name: key.to_owned(),
            role,
        })
    }
}

impl Authenticator for IamRoles {
    fn identify(&self, parts: &Parts) -> Result<Option<Caller>, StoreError> {
        use lambda_http::request::RequestContext;
        let arn = match parts.extensions.get::<RequestContext>() {
            Some(RequestContext::ApiGatewayV1(ctx)) => ctx.identity.user_arn.clone(),
            Some(RequestContext::ApiGatewayV2(ctx)) => ctx
                .authorizer
                .as_ref()
                .and_then(|a| a.iam.as_ref())
                .and_then(|iam| iam.user_arn.clone()),
            _ => None,
        };
        Ok(arn.and_then(|arn| self.caller(&arn)))
    }
}

fn assumed_role_arn(arn: &str) -> Option<String> {
    let rest = arn.strip_prefix("arn:")?;
    let mut fields = rest.splitn(5, ':');
    let (partition, service, _region, account, resource) = (
        fields.next()?,
        fields.next()?,
        fields.next()?,
        fields.next()?,
        fields.next()?,
    );
    if service != "sts" {
        return None;
    }
    let name = resource.strip_prefix("assumed-role/")?.split('/').next()?;
    Some(format!("arn:{partition}:iam::{account}:role/{name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assumed_role_sessions_map_to_their_role() {
        let roles = IamRoles::from_json(
            r#"{"arn:aws:iam::123456789012:role/factory-station": "factory",
                "arn:aws:iam::123456789012:user/alice": "admin"}"#,
        )
        .unwrap();
        let c = roles
            .caller("arn:aws:sts::123456789012:assumed-role/factory-station/line-3")
            .unwrap();
        assert_eq!(c.role, Role::Factory);
        assert_eq!(c.name, "arn:aws:iam::123456789012:role/factory-station");
        assert_eq!(
            roles
                .caller("arn:aws:iam::123456789012:user/alice")
                .unwrap()
                .role,
            Role::Admin
        );
        assert!(roles
            .caller("arn:aws:sts::999999999999:assumed-role/factory-station/x")
            .is_none());
        assert!(roles.caller("not an arn").is_none());
        assert!(IamRoles::from_json(r#"{"arn:x": "root"}"#).is_err());
    }

    proptest::proptest! {
        /// Caller ARNs come from the request context: any text maps to a
        /// configured role or to nobody, never a panic, and never to a role
        /// unless it names a configured ARN or a session of one.
        #[test]
        fn arn_mapping_is_total(arn in "(arn:aws:(iam|sts)::[0-9]{0,12}:)?[ -~]{0,60}") {
            let roles = IamRoles::from_json(
                r#"{"arn:aws:iam::123456789012:role/factory-station": "factory"}"#,
            )
            .unwrap();
            if let Some(c) = roles.caller(&arn) {
                proptest::prop_assert_eq!(c.name.as_str(), "arn:aws:iam::123456789012:role/factory-station");
                proptest::prop_assert!(
                    arn == c.name
                        || arn.starts_with("arn:aws:sts::123456789012:assumed-role/factory-station")
                );
            }
        }
    }

    #[test]
    fn tokens_are_random_and_prefixed() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX));
        assert_eq!(a.len(), TOKEN_PREFIX.len() + 64);
        assert_ne!(token_hash(&a), token_hash(&b));
    }
}
