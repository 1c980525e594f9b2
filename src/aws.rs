//! The shared AWS configuration: the standard aws-config chain (environment, profile, IMDS),
//! so `AWS_ENDPOINT_URL`, `AWS_REGION` and the usual credentials work for every AWS client
//! Logbook builds (EventBridge, S3). No test-only path: tests set the same values explicitly.

/// Loads the shared AWS configuration from the standard chain.
pub async fn load_sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await
}
