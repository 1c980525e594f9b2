//! What the AWS-using commands share: the SDK configuration from the standard chain (refusing
//! to start without a region), the `--s3 s3://bucket/prefix` argument, and human durations
//! (`90`, `10s`, `5m`, `1h`, `7d`).

use std::time::Duration;

use logbook::s3::S3Location;

use super::BadInput;

/// Loads the shared AWS configuration; a usage error if no region is configured.
pub fn sdk_config(
    runtime: &tokio::runtime::Runtime,
    what: &str,
) -> anyhow::Result<aws_config::SdkConfig> {
    let sdk = runtime.block_on(logbook::aws::load_sdk_config());
    if sdk.region().is_none() {
        return Err(BadInput(format!(
            "{what} needs an AWS region (AWS_REGION, AWS_DEFAULT_REGION or a profile)"
        ))
        .into());
    }
    Ok(sdk)
}

/// An S3 error for the exit code: [`BadInput`] (2) when the input is at fault, else 1.
pub fn s3_error(error: logbook::s3::S3Error) -> anyhow::Error {
    if error.is_bad_input() {
        BadInput(error.to_string()).into()
    } else {
        error.into()
    }
}

/// Parses `s3://bucket/prefix` for clap.
pub fn parse_location(text: &str) -> Result<S3Location, String> {
    text.parse::<S3Location>().map_err(|e| e.to_string())
}

/// Parses `N` (seconds) or `N` followed by `s`, `m`, `h` or `d` for clap.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => text.split_at(i),
        None => (text, "s"),
    };
    let scale = match unit {
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86_400.0,
        _ => return Err(format!("{text:?}: the unit must be s, m, h or d")),
    };
    match number.trim().parse::<f64>() {
        Ok(n) if n.is_finite() && n > 0.0 && n * scale <= 366.0 * 86_400.0 => {
            Ok(Duration::from_secs_f64(n * scale))
        }
        _ => Err(format!(
            "{text:?} is not a positive duration such as 30s, 10m or 1h"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("1.5m"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        for bad in ["", "0", "-1s", "1w", "h", "nan"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
