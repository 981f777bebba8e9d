//! DescribeUserScramCredentials (key 50). Fjord stores no SCRAM
//! credentials yet: asking for all users gives an empty list, asking for
//! named users gives each RESOURCE_NOT_FOUND (a name asked twice:
//! DUPLICATE_RESOURCE), as Kafka answers for users without credentials.
//! `kafka-configs.sh --describe --entity-type users` asks for it.

use std::collections::HashMap;

use kafka_protocol::messages::describe_user_scram_credentials_response::DescribeUserScramCredentialsResult;
use kafka_protocol::messages::{DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse};
use kafka_protocol::protocol::StrBytes;

use crate::error::ResponseError;
use crate::protocol::RequestContext;

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 0;

pub async fn handle(_ctx: &RequestContext, req: DescribeUserScramCredentialsRequest) -> DescribeUserScramCredentialsResponse {
    let users = req.users.unwrap_or_default();
    let mut asked: HashMap<&str, usize> = HashMap::new();
    for u in &users {
        *asked.entry(u.name.as_str()).or_default() += 1;
    }
    let mut seen = std::collections::HashSet::new();
    let results = users
        .iter()
        .filter(|u| seen.insert(u.name.as_str()))
        .map(|u| {
            let (code, message) = if asked[u.name.as_str()] > 1 {
                (ResponseError::DuplicateResource.code(), format!("Cannot describe SCRAM credentials for the same user twice in a single request: {}", u.name.as_str()))
            } else {
                (ResponseError::ResourceNotFound.code(), format!("Attempt to describe a user credential that does not exist: {}", u.name.as_str()))
            };
            DescribeUserScramCredentialsResult::default()
                .with_user(u.name.clone())
                .with_error_code(code)
                .with_error_message(Some(StrBytes::from_string(message)))
        })
        .collect();
    DescribeUserScramCredentialsResponse::default().with_error_code(0).with_results(results)
}
