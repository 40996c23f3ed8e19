//! What every call the launcher makes to AWS is made with: the SDK clients, built once
//! per invocation ([`clients`]); how a failed call is told and explained
//! ([`aws_errors`]), and which IAM policy grants it ([`policies`]); and the invocation's API budget, which paces GetLogEvents and
//! batches DescribeTasks under ECS's and CloudWatch Logs' quotas ([`api_budget`]).

pub(crate) mod api_budget;
pub(crate) mod aws_errors;
pub(crate) mod clients;
pub(crate) mod policies;
