//! Who is calling the factory and admin endpoints. The entry point decides:
//! the local server checks bearer tokens against the store (which keeps only
//! their SHA-256); on AWS, API Gateway vouches for the caller, either through
//! the token authorizer ([`authorize`], the `authorizer` Lambda: the same
//! tokens, the same store) or through IAM (SigV4), whose role ARN the
//! configuration maps to a role ([`ApiGatewayCallers`]). Device endpoints
//! need no credential.

use std::collections::HashMap;
use std::sync::Arc;

use axum::http::request::Parts;
use sha2::{Digest, Sha256};

use crate::model::{Caller, Role};
use crate::store::{Store, StoreError, StoreFuture};

/// Who a request comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// A known, usable credential.
    Caller(Caller),
    /// No credential, or one nobody issued.
    Anonymous,
    /// A credential that was issued but may not be used any more: the
    /// refusal code (`token_revoked`, `token_expired`).
    Refused(&'static str),
}

/// Establishes the caller of a request.
pub trait Authenticator: Send + Sync {
    /// Who sent the request.
    fn identify<'a>(&'a self, parts: &'a Parts) -> StoreFuture<'a, Identity>;
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

/// Bearer tokens checked against the store on every request (no cache: a
/// revocation or an expiry counts from the next request on).
pub struct BearerTokens {
    store: Arc<dyn Store>,
}

impl std::fmt::Debug for BearerTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BearerTokens").finish_non_exhaustive()
    }
}

impl BearerTokens {
    /// Check tokens against `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    /// Who `authorization` (an HTTP `Authorization` header's value) names,
    /// at `now` (Unix seconds).
    pub async fn identify_header(
        &self,
        authorization: &str,
        now: i64,
    ) -> Result<Identity, StoreError> {
        let Some(token) = authorization
            .strip_prefix("Bearer ")
            .map(str::trim)
            .filter(|t| t.starts_with(TOKEN_PREFIX))
        else {
            return Ok(Identity::Anonymous);
        };
        Ok(match self.store.token_by_hash(&token_hash(token)).await? {
            None => Identity::Anonymous,
            Some(info) => match info.usable_at(now) {
                Ok(caller) => Identity::Caller(caller),
                Err(code) => Identity::Refused(code),
            },
        })
    }
}

impl Authenticator for BearerTokens {
    fn identify<'a>(&'a self, parts: &'a Parts) -> StoreFuture<'a, Identity> {
        Box::pin(async move {
            let Some(value) = parts
                .headers
                .get(axum::http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
            else {
                return Ok(Identity::Anonymous);
            };
            self.identify_header(value, crate::unix_now()).await
        })
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
            order: None,
        })
    }
}

impl Authenticator for IamRoles {
    fn identify<'a>(&'a self, parts: &'a Parts) -> StoreFuture<'a, Identity> {
        let identity = self.identify_now(parts);
        Box::pin(std::future::ready(Ok(identity)))
    }
}

impl IamRoles {
    /// [`Authenticator::identify`], which needs no store.
    fn identify_now(&self, parts: &Parts) -> Identity {
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
        arn.and_then(|arn| self.caller(&arn))
            .map_or(Identity::Anonymous, Identity::Caller)
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

/// The authorizer's context keys: the token's role and name, which API
/// Gateway hands to the function with the request.
pub const CONTEXT_ROLE: &str = "provisiond_role";
/// See [`CONTEXT_ROLE`].
pub const CONTEXT_TOKEN: &str = "provisiond_token";
/// The production order the token is bound to, if any.
pub const CONTEXT_ORDER: &str = "provisiond_order";
/// Why the authorizer denied a known token (`token_revoked`, `token_expired`).
pub const CONTEXT_REFUSAL: &str = "provisiond_refusal";

/// API Gateway's event for a `TOKEN` Lambda authorizer.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenAuthorizerEvent {
    /// `TOKEN`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The `Authorization` header's value.
    pub authorization_token: String,
    /// The method called: `arn:aws:execute-api:REGION:ACCOUNT:API/STAGE/METHOD/PATH`.
    pub method_arn: String,
}

/// What the token authorizer answers.
#[derive(Debug, Clone, PartialEq)]
pub enum AuthorizerAnswer {
    /// No credential, or one nobody issued: API Gateway answers 401.
    Unauthorized,
    /// An IAM policy for the method called (allow, or deny: API Gateway
    /// answers 403) with the caller in its context.
    Policy(serde_json::Value),
}

/// Decide on an API Gateway `TOKEN` authorizer event at `now` (Unix
/// seconds): a usable token is allowed to call exactly the method it asked
/// for (results are not cached, so a revocation counts from the next
/// request), with its role and name in the context; a revoked or expired one
/// is denied; anything else is unauthorized.
pub async fn authorize(
    tokens: &BearerTokens,
    event: &TokenAuthorizerEvent,
    now: i64,
) -> Result<AuthorizerAnswer, StoreError> {
    let policy = |principal: &str, effect: &str, context: serde_json::Value| {
        AuthorizerAnswer::Policy(serde_json::json!({
            "principalId": principal,
            "policyDocument": {
                "Version": "2012-10-17",
                "Statement": [{
                    "Action": "execute-api:Invoke",
                    "Effect": effect,
                    "Resource": event.method_arn,
                }],
            },
            "context": context,
        }))
    };
    if event.kind != "TOKEN" {
        return Ok(AuthorizerAnswer::Unauthorized);
    }
    Ok(
        match tokens
            .identify_header(&event.authorization_token, now)
            .await?
        {
            Identity::Caller(c) => {
                let mut context =
                    serde_json::json!({ CONTEXT_ROLE: c.role.as_str(), CONTEXT_TOKEN: c.name });
                if let Some(order) = &c.order {
                    context[CONTEXT_ORDER] = order.as_str().into();
                }
                policy(&c.name, "Allow", context)
            }
            Identity::Refused(code) => policy(
                "refused",
                "Deny",
                serde_json::json!({ CONTEXT_REFUSAL: code }),
            ),
            Identity::Anonymous => AuthorizerAnswer::Unauthorized,
        },
    )
}

/// Callers as API Gateway vouches for them (the Lambda entry point): a
/// token the authorizer allowed (its context), else an IAM identity mapped
/// by [`IamRoles`].
#[derive(Debug, Clone, Default)]
pub struct ApiGatewayCallers {
    /// Role ARN → role, for IAM (SigV4) callers.
    pub iam: IamRoles,
}

impl Authenticator for ApiGatewayCallers {
    fn identify<'a>(&'a self, parts: &'a Parts) -> StoreFuture<'a, Identity> {
        use lambda_http::request::RequestContext;
        if let Some(RequestContext::ApiGatewayV1(ctx)) = parts.extensions.get::<RequestContext>() {
            let field = |k: &str| ctx.authorizer.fields.get(k).and_then(|v| v.as_str());
            if let (Some(role), Some(name)) = (field(CONTEXT_ROLE), field(CONTEXT_TOKEN)) {
                let identity = Role::parse(role).map_or(Identity::Anonymous, |role| {
                    Identity::Caller(Caller {
                        name: name.to_owned(),
                        role,
                        order: field(CONTEXT_ORDER).map(str::to_owned),
                    })
                });
                return Box::pin(std::future::ready(Ok(identity)));
            }
        }
        self.iam.identify(parts)
    }
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
