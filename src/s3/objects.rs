//! [`Objects`]: the one S3 object client, in the manner of Litestream's replica client. Ship,
//! restore, follow, the lease, artifact uploads and `logbook-replay`'s S3 source all go through
//! it; nothing else calls the SDK's object operations.
//!
//! Operations: [`list`](Objects::list), [`get`](Objects::get) (whole, or as a stream),
//! [`head`](Objects::head), [`put_if_absent`](Objects::put_if_absent) (`If-None-Match: *`),
//! [`put_if_match`](Objects::put_if_match) (`If-Match: ETAG`), a plain [`put`](Objects::put)
//! (artifacts only), multipart, [`delete`](Objects::delete) and a pre-signed GET. Each takes a
//! [`Key`] (built by [`super::layout`] only) and answers in terms of this layout: a missing
//! object is `None`, a failed precondition is [`Conditional::Failed`], everything else an
//! [`S3Error`] that names the operation and key.
//!
//! Timeouts ([`Timeouts`]): requests that carry or fetch a body get `attempt + bytes / rate_min`
//! instead of the client's per-attempt timeout, and reading a body is bounded the same way.
//!
//! Invariant: every request is counted ([`Requests`]), so the cost of a shipping round can be
//! observed (`/v1/health`) and asserted by tests.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};

use super::layout::Key;
use super::timeouts::Timeouts;
use super::{S3Error, S3Location};

/// An object's ETag, as S3 returned it (quotes included): what `If-Match` compares.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ETag(pub String);

impl std::fmt::Display for ETag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// User metadata (`x-amz-meta-*`).
pub type Metadata = HashMap<String, String>;

/// What [`Objects::head`] finds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectHead {
    /// Its ETag.
    pub etag: ETag,
    /// Its size in bytes.
    pub size: u64,
    /// Its user metadata.
    pub metadata: Metadata,
}

/// A whole (downloaded) object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    /// Its ETag.
    pub etag: ETag,
    /// Its user metadata.
    pub metadata: Metadata,
    /// Its bytes.
    pub bytes: Vec<u8>,
}

/// An object being downloaded.
#[derive(Debug)]
pub struct ObjectStream {
    /// Its size in bytes.
    pub size: u64,
    /// Its body.
    pub body: ByteStream,
}

/// A listed object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    /// Its key.
    pub key: Key,
    /// Its size in bytes.
    pub size: u64,
}

/// The outcome of a conditional put.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conditional {
    /// Written; the new ETag.
    Written(ETag),
    /// Not written: the object exists (`If-None-Match: *`), or is not the version named
    /// (`If-Match`: another ETag, or gone).
    Failed,
}

/// Requests sent, by kind.
#[derive(Debug, Default)]
pub struct Requests {
    /// ListObjectsV2 pages.
    pub list: AtomicU64,
    /// GetObject.
    pub get: AtomicU64,
    /// HeadObject.
    pub head: AtomicU64,
    /// PutObject, and each multipart request.
    pub put: AtomicU64,
    /// DeleteObject and AbortMultipartUpload.
    pub delete: AtomicU64,
}

/// A copy of [`Requests`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct RequestCounts {
    /// ListObjectsV2 pages.
    pub list: u64,
    /// GetObject.
    pub get: u64,
    /// HeadObject.
    pub head: u64,
    /// PutObject and multipart requests.
    pub put: u64,
    /// DeleteObject and AbortMultipartUpload.
    pub delete: u64,
}

impl RequestCounts {
    /// All requests.
    pub fn total(&self) -> u64 {
        self.list + self.get + self.head + self.put + self.delete
    }
}

impl Requests {
    /// The counts now.
    pub fn snapshot(&self) -> RequestCounts {
        let load = |n: &AtomicU64| n.load(Ordering::Relaxed);
        RequestCounts {
            list: load(&self.list),
            get: load(&self.get),
            head: load(&self.head),
            put: load(&self.put),
            delete: load(&self.delete),
        }
    }
}

fn count(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// The S3 objects under one location (see the module docs). Cheap to clone (the SDK client and
/// the counters are shared).
#[derive(Debug, Clone)]
pub struct Objects {
    client: Client,
    location: S3Location,
    timeouts: Timeouts,
    requests: Arc<Requests>,
}

/// The HTTP status of a failed request, if S3 answered.
fn status<E>(error: &SdkError<E, HttpResponse>) -> Option<u16> {
    error.raw_response().map(|r| r.status().as_u16())
}

/// The answer of a request about one object: `None` if S3 says it does not exist (404).
fn unless_missing<T, E>(
    sent: Result<T, SdkError<E, HttpResponse>>,
    operation: &'static str,
    key: &Key,
) -> Result<Option<T>, S3Error>
where
    E: std::error::Error + 'static,
{
    match sent {
        Ok(out) => Ok(Some(out)),
        Err(error) if status(&error) == Some(404) => Ok(None),
        Err(error) => Err(failed(operation, key.as_str(), error)),
    }
}

/// The error of a failed request, with S3's HTTP status when it answered (a HEAD's error has no
/// body, so the status is all there is to say).
fn failed<E>(operation: &'static str, key: &str, error: SdkError<E, HttpResponse>) -> S3Error
where
    E: std::error::Error + 'static,
{
    let status = status(&error);
    let mut error = S3Error::request(operation, key, error);
    if let (S3Error::Request { message, .. }, Some(status)) = (&mut error, status) {
        message.push_str(&format!(" (HTTP {status})"));
    }
    error
}

impl Objects {
    /// The objects of `location`, through `client`.
    pub fn new(client: Client, location: S3Location) -> Objects {
        let timeouts = Timeouts::of(&client);
        Objects {
            client,
            location,
            timeouts,
            requests: Arc::new(Requests::default()),
        }
    }

    /// The location.
    pub fn location(&self) -> &S3Location {
        &self.location
    }

    /// The requests sent so far (shared by every clone).
    pub fn requests(&self) -> RequestCounts {
        self.requests.snapshot()
    }

    fn bucket(&self) -> &str {
        &self.location.bucket
    }

    /// The SDK configuration override of a request moving `bytes` of body.
    fn body_timeouts(&self, bytes: u64) -> aws_sdk_s3::config::Builder {
        let timeouts = Timeouts {
            attempt: self.timeouts.for_body(bytes),
            ..self.timeouts
        };
        aws_sdk_s3::config::Builder::default().timeout_config(timeouts.config())
    }

    /// Every object whose key starts with `prefix`, after `start_after`, in key order
    /// (paginated).
    pub async fn list(
        &self,
        prefix: &Key,
        start_after: Option<&Key>,
    ) -> Result<Vec<Listing>, S3Error> {
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(self.bucket())
            .prefix(prefix.as_str())
            .set_start_after(start_after.map(|k| k.as_str().to_string()))
            .into_paginator()
            .send();
        let mut listed = Vec::new();
        while let Some(page) = pages.next().await {
            count(&self.requests.list);
            let page = page.map_err(|e| failed("ListObjectsV2", prefix.as_str(), e))?;
            for object in page.contents() {
                let Some(key) = object.key() else { continue };
                listed.push(Listing {
                    key: Key::listed(key.to_string()),
                    size: u64::try_from(object.size().unwrap_or(0)).unwrap_or(0),
                });
            }
        }
        Ok(listed)
    }

    /// The object's ETag, size and metadata; `None` if there is none.
    pub async fn head(&self, key: &Key) -> Result<Option<ObjectHead>, S3Error> {
        count(&self.requests.head);
        let sent = self
            .client
            .head_object()
            .bucket(self.bucket())
            .key(key.as_str())
            .send()
            .await;
        Ok(
            unless_missing(sent, "HeadObject", key)?.map(|out| ObjectHead {
                etag: ETag(out.e_tag().unwrap_or_default().to_string()),
                size: u64::try_from(out.content_length().unwrap_or(0)).unwrap_or(0),
                metadata: out.metadata().cloned().unwrap_or_default(),
            }),
        )
    }

    /// The object, read into memory (for segments and small documents); `None` if there is
    /// none.
    pub async fn get(&self, key: &Key) -> Result<Option<Object>, S3Error> {
        count(&self.requests.get);
        let sent = self
            .client
            .get_object()
            .bucket(self.bucket())
            .key(key.as_str())
            .send()
            .await;
        let Some(out) = unless_missing(sent, "GetObject", key)? else {
            return Ok(None);
        };
        let etag = ETag(out.e_tag().unwrap_or_default().to_string());
        let metadata = out.metadata().cloned().unwrap_or_default();
        let size = u64::try_from(out.content_length().unwrap_or(0)).unwrap_or(0);
        let limit = self.timeouts.for_body(size);
        let bytes = match tokio::time::timeout(limit, out.body.collect()).await {
            Ok(Ok(data)) => data.into_bytes().to_vec(),
            Ok(Err(error)) => return Err(S3Error::request("GetObject", key.as_str(), error)),
            Err(_) => {
                return Err(S3Error::Request {
                    operation: "GetObject",
                    key: key.to_string(),
                    message: format!("the body ({size} bytes) did not arrive within {limit:?}"),
                });
            }
        };
        Ok(Some(Object {
            etag,
            metadata,
            bytes,
        }))
    }

    /// A small JSON document of the layout (`head.json`, `writer.json`) and its ETag; `None` if
    /// there is none, [`S3Error::Conflict`] if it is not a `what`.
    pub async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        key: &Key,
        what: &str,
    ) -> Result<Option<(T, ETag)>, S3Error> {
        let Some(object) = self.get(key).await? else {
            return Ok(None);
        };
        let document = serde_json::from_slice(&object.bytes).map_err(|e| S3Error::Conflict {
            key: key.to_string(),
            reason: format!("not a {what}: {e}"),
        })?;
        Ok(Some((document, object.etag)))
    }

    /// The object as a stream (artifact downloads); an error if there is none.
    pub async fn get_stream(&self, key: &Key) -> Result<ObjectStream, S3Error> {
        count(&self.requests.get);
        let out = self
            .client
            .get_object()
            .bucket(self.bucket())
            .key(key.as_str())
            .send()
            .await
            .map_err(|e| failed("GetObject", key.as_str(), e))?;
        Ok(ObjectStream {
            size: u64::try_from(out.content_length().unwrap_or(0)).unwrap_or(0),
            body: out.body,
        })
    }

    /// How long reading a streamed body of `bytes` may take.
    pub fn body_limit(&self, bytes: u64) -> Duration {
        self.timeouts.for_body(bytes)
    }

    async fn put_with(
        &self,
        key: &Key,
        body: Vec<u8>,
        metadata: Metadata,
        condition: Condition<'_>,
    ) -> Result<Conditional, S3Error> {
        count(&self.requests.put);
        let size = body.len() as u64;
        let mut put = self
            .client
            .put_object()
            .bucket(self.bucket())
            .key(key.as_str())
            .content_type(content_type(key))
            .set_metadata((!metadata.is_empty()).then_some(metadata))
            .body(ByteStream::from(body));
        put = match condition {
            Condition::None => put,
            Condition::Absent => put.if_none_match("*"),
            Condition::Matches(etag) => put.if_match(etag.0.as_str()),
        };
        let sent = put
            .customize()
            .config_override(self.body_timeouts(size))
            .send()
            .await;
        match sent {
            Ok(out) => Ok(Conditional::Written(ETag(
                out.e_tag().unwrap_or_default().to_string(),
            ))),
            Err(error) if status(&error) == Some(412) && condition != Condition::None => {
                Ok(Conditional::Failed)
            }
            // If-Match on an object that is gone: 404 NoSuchKey (a missing bucket is an error).
            Err(error)
                if matches!(condition, Condition::Matches(_))
                    && status(&error) == Some(404)
                    && error.code() == Some("NoSuchKey") =>
            {
                Ok(Conditional::Failed)
            }
            Err(error) => Err(failed("PutObject", key.as_str(), error)),
        }
    }

    /// Creates the object unless one exists (`If-None-Match: *`): never overwrites.
    pub async fn put_if_absent(
        &self,
        key: &Key,
        body: Vec<u8>,
        metadata: Metadata,
    ) -> Result<Conditional, S3Error> {
        self.put_with(key, body, metadata, Condition::Absent).await
    }

    /// Replaces the object only if it is still the version `etag` (`If-Match`).
    pub async fn put_if_match(
        &self,
        key: &Key,
        etag: &ETag,
        body: Vec<u8>,
        metadata: Metadata,
    ) -> Result<Conditional, S3Error> {
        self.put_with(key, body, metadata, Condition::Matches(etag))
            .await
    }

    /// Writes the object whatever is there (artifact files, whose key is theirs alone); its
    /// ETag.
    pub async fn put(&self, key: &Key, body: Vec<u8>, metadata: Metadata) -> Result<ETag, S3Error> {
        match self.put_with(key, body, metadata, Condition::None).await? {
            Conditional::Written(etag) => Ok(etag),
            Conditional::Failed => Err(S3Error::Request {
                operation: "PutObject",
                key: key.to_string(),
                message: "precondition failed on an unconditional put".into(),
            }),
        }
    }

    /// Deletes the object (absent is fine).
    pub async fn delete(&self, key: &Key) -> Result<(), S3Error> {
        count(&self.requests.delete);
        self.client
            .delete_object()
            .bucket(self.bucket())
            .key(key.as_str())
            .send()
            .await
            .map_err(|e| failed("DeleteObject", key.as_str(), e))?;
        Ok(())
    }

    /// Starts a multipart upload; its id.
    pub async fn create_multipart(&self, key: &Key, metadata: Metadata) -> Result<String, S3Error> {
        count(&self.requests.put);
        let created = self
            .client
            .create_multipart_upload()
            .bucket(self.bucket())
            .key(key.as_str())
            .set_metadata(Some(metadata))
            .send()
            .await
            .map_err(|e| failed("CreateMultipartUpload", key.as_str(), e))?;
        created
            .upload_id()
            .map(str::to_string)
            .ok_or_else(|| S3Error::Request {
                operation: "CreateMultipartUpload",
                key: key.to_string(),
                message: "no upload id in the answer".into(),
            })
    }

    /// Uploads part `number` (from 1) of a multipart upload: `len` bytes of the file `path` from
    /// `offset`, streamed from disk (never held in memory), with a CRC32 checksum. The part,
    /// and the CRC32 S3 computed of what it received (base64, as S3 writes it), if it said.
    pub async fn upload_part_from_file(
        &self,
        key: &Key,
        upload_id: &str,
        number: i32,
        path: &std::path::Path,
        offset: u64,
        len: u64,
    ) -> Result<(CompletedPart, Option<String>), S3Error> {
        count(&self.requests.put);
        let body = ByteStream::read_from()
            .path(path)
            .offset(offset)
            .length(aws_sdk_s3::primitives::Length::Exact(len))
            .build()
            .await
            .map_err(|e| S3Error::io(path, std::io::Error::other(e)))?;
        let out = self
            .client
            .upload_part()
            .bucket(self.bucket())
            .key(key.as_str())
            .upload_id(upload_id)
            .part_number(number)
            .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Crc32)
            .body(body)
            .customize()
            .config_override(self.body_timeouts(len))
            .send()
            .await
            .map_err(|e| failed("UploadPart", key.as_str(), e))?;
        let part = CompletedPart::builder()
            .part_number(number)
            .set_e_tag(out.e_tag().map(str::to_string))
            .build();
        Ok((part, out.checksum_crc32().map(str::to_string)))
    }

    /// Completes a multipart upload; the object's ETag.
    pub async fn complete_multipart(
        &self,
        key: &Key,
        upload_id: &str,
        parts: Vec<CompletedPart>,
    ) -> Result<ETag, S3Error> {
        count(&self.requests.put);
        let out = self
            .client
            .complete_multipart_upload()
            .bucket(self.bucket())
            .key(key.as_str())
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| failed("CompleteMultipartUpload", key.as_str(), e))?;
        Ok(ETag(out.e_tag().unwrap_or_default().to_string()))
    }

    /// Abandons a multipart upload (its parts are deleted).
    pub async fn abort_multipart(&self, key: &Key, upload_id: &str) -> Result<(), S3Error> {
        count(&self.requests.delete);
        self.client
            .abort_multipart_upload()
            .bucket(self.bucket())
            .key(key.as_str())
            .upload_id(upload_id)
            .send()
            .await
            .map_err(|e| failed("AbortMultipartUpload", key.as_str(), e))?;
        Ok(())
    }

    /// A pre-signed GET URL of the object, valid for `expires_in` (at most 7 days, S3's
    /// limit); no request is sent.
    pub async fn presign_get(&self, key: &Key, expires_in: Duration) -> Result<String, S3Error> {
        let config = PresigningConfig::expires_in(expires_in).map_err(|e| S3Error::Request {
            operation: "GetObject (presign)",
            key: key.to_string(),
            message: format!("expiry {expires_in:?}: {e}"),
        })?;
        let request = self
            .client
            .get_object()
            .bucket(self.bucket())
            .key(key.as_str())
            .presigned(config)
            .await
            .map_err(|e| failed("GetObject (presign)", key.as_str(), e))?;
        Ok(request.uri().to_string())
    }
}

/// The condition of a put.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Condition<'a> {
    None,
    Absent,
    Matches(&'a ETag),
}

/// The content type of an object (Logbook's documents and JSON artifacts are JSON).
fn content_type(key: &Key) -> &'static str {
    if key.as_str().ends_with(".json") {
        "application/json"
    } else {
        "application/octet-stream"
    }
}
