//! The provisioning backend as an AWS Lambda function (`provided.al2023`,
//! built as `bootstrap`), behind API Gateway. Factory and admin callers come
//! as the token authorizer (`authorizer`) allowed them, or as IAM (SigV4)
//! identities. The router is the local server's.
//!
//! Configuration, from the environment:
//! - `PROVISIOND_STORE`: `dynamodb:TABLE_PREFIX` (tables from the template).
//! - `PROVISIOND_AUTHORITIES`: the provisioning-authority public keys, PEM.
//! - `PROVISIOND_CALLER_ROLES` (optional): JSON object, IAM role ARN →
//!   `factory`/`admin`, for SigV4 callers.

use std::sync::Arc;

use lambda::api::{router, AppState};
use lambda::auth::{ApiGatewayCallers, IamRoles};
use lambda::config::{authorities_from_pem, StoreUri};

fn var(name: &str) -> Result<String, lambda_http::Error> {
    std::env::var(name).map_err(|_| format!("{name} is not set").into())
}

fn main() -> Result<(), lambda_http::Error> {
    let store: StoreUri = var("PROVISIOND_STORE")?.parse()?;
    let authorities = authorities_from_pem(&var("PROVISIOND_AUTHORITIES")?)
        .map_err(|e| format!("PROVISIOND_AUTHORITIES: {e}"))?;
    let iam = match std::env::var("PROVISIOND_CALLER_ROLES") {
        Ok(json) => IamRoles::from_json(&json)?,
        Err(_) => IamRoles::default(),
    };
    // One invocation at a time per instance: a current-thread runtime starts
    // fastest, and the store's calls are async on it.
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async move {
            let store = store.open_with(false).await?;
            let app = router(AppState {
                store,
                authorities: Arc::new(authorities),
                guard: Default::default(),
                auth: Arc::new(ApiGatewayCallers { iam }),
            });
            lambda_http::run(app).await
        })
}
