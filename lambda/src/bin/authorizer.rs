//! The token authorizer as an AWS Lambda function (`provided.al2023`,
//! built as `authorizer`): API Gateway calls it with each factory or admin
//! request's `Authorization` header, and it checks the bearer token against
//! the same store `provisiond token add` writes to (only its SHA-256 is
//! kept). Usable: allow that one method, with the token's role and name in
//! the context; revoked or expired: deny (403); otherwise: `Unauthorized`
//! (401). See `lambda::auth::authorize`.
//!
//! Configuration, from the environment:
//! - `PROVISIOND_STORE`: `dynamodb:TABLE_PREFIX` (tables from the template).

use std::sync::Arc;

use lambda::auth::{authorize, AuthorizerAnswer, BearerTokens, TokenAuthorizerEvent};
use lambda::config::StoreUri;
use lambda_http::lambda_runtime::{self, service_fn, LambdaEvent};

fn main() -> Result<(), lambda_http::Error> {
    let store: StoreUri = std::env::var("PROVISIOND_STORE")
        .map_err(|_| "PROVISIOND_STORE is not set")?
        .parse()?;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async move {
            let tokens = Arc::new(BearerTokens::new(store.open_with(false).await?));
            let handler = service_fn(move |event: LambdaEvent<TokenAuthorizerEvent>| {
                let tokens = Arc::clone(&tokens);
                async move {
                    match authorize(&tokens, &event.payload, lambda::unix_now()).await? {
                        AuthorizerAnswer::Policy(p) => Ok::<_, lambda_http::Error>(p),
                        // The exact message API Gateway turns into a 401.
                        AuthorizerAnswer::Unauthorized => Err("Unauthorized".into()),
                    }
                }
            });
            lambda_runtime::run(handler).await
        })
}
