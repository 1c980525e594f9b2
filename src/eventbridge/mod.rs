//! EventBridge (DESIGN.md §6): lifecycle events of the journal sent as PutEvents entries by a
//! named [`DurableConsumer`](crate::subscribe::DurableConsumer) (checkpoint in `state.sqlite`).
//!
//! | file | role |
//! |---|---|
//! | [`batch`] | pure: entry sizes, the 10-entry / 256 KiB limits, failed entries |
//! | [`consumer`] | [`EventBridgeConsumer`]: read, batch, send, retry, checkpoint |
//!
//! Each entry: `Source` = [`EventBridgeConfig::source`], `DetailType` = the event type,
//! `Detail` = the event with its envelope ([`crate::envelope::to_json_line`], offset included),
//! `EventBusName` = [`EventBridgeConfig::bus_name`]. The AWS configuration is the standard
//! aws-config chain ([`load_sdk_config`]): `AWS_ENDPOINT_URL`, `AWS_REGION`, credentials.
//!
//! # Invariants
//!
//! - **At least once, in order.** The checkpoint only moves past entries AWS accepted, and never
//!   past one that failed: failed entries (FailedEntryCount > 0) are resent alone, transport and
//!   service errors resend the batch, both after capped exponential backoff with jitter, without
//!   limit. A crash or stop between a send and its commit resends; duplicates carry the same
//!   `offset` in their Detail.
//! - **No stall on the impossible.** An event whose entry alone exceeds the request limit is
//!   skipped with a `tracing::error!`, counted in [`Metrics::skipped_oversized`], and (with
//!   [`EventBridgeConsumer::with_notes`], as `serve` runs it) recorded in the journal as a
//!   `subscriber.skipped` system event before the checkpoint moves past it (idempotency key
//!   `skipped-{consumer}-{offset}`: a restart does not note it twice).

pub mod batch;
pub mod consumer;

pub use consumer::{EventBridgeConfig, EventBridgeConsumer, EventBridgeError, Metrics};

pub use crate::aws::load_sdk_config;
