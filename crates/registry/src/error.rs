//! Errors, each mapped to the HTTP status and the error code of the distribution spec.

use http::StatusCode;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("blob unknown to registry")]
    BlobUnknown,
    #[error("blob upload invalid: {0}")]
    BlobUploadInvalid(String),
    #[error("blob upload unknown to registry")]
    BlobUploadUnknown,
    #[error("provided digest did not match uploaded content: {0}")]
    DigestInvalid(String),
    #[error("manifest references a manifest or blob unknown to registry: {0}")]
    ManifestBlobUnknown(String),
    #[error("manifest invalid: {0}")]
    ManifestInvalid(String),
    #[error("manifest unknown to registry")]
    ManifestUnknown,
    #[error("invalid repository name")]
    NameInvalid,
    #[error("repository name not known to registry")]
    NameUnknown,
    #[error("provided length did not match content length: {0}")]
    SizeInvalid(String),
    #[error("requested range not satisfiable: {0}")]
    RangeInvalid(String),
    #[error("{0} too large")]
    TooLarge(&'static str),
    #[error("the operation is unsupported")]
    Unsupported,
    #[error("invalid tag {0:?}")]
    TagInvalid(String),
    #[error("invalid pagination parameter: {0}")]
    Pagination(String),
    #[error("{0}")]
    Config(String),
    #[error("storage: {0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    /// (HTTP status, spec error code).
    pub fn status_code(&self) -> (StatusCode, &'static str) {
        use Error::*;
        match self {
            BlobUnknown => (StatusCode::NOT_FOUND, "BLOB_UNKNOWN"),
            BlobUploadInvalid(_) => (StatusCode::BAD_REQUEST, "BLOB_UPLOAD_INVALID"),
            BlobUploadUnknown => (StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN"),
            DigestInvalid(_) => (StatusCode::BAD_REQUEST, "DIGEST_INVALID"),
            ManifestBlobUnknown(_) => (StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN"),
            ManifestInvalid(_) => (StatusCode::BAD_REQUEST, "MANIFEST_INVALID"),
            ManifestUnknown => (StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN"),
            NameInvalid => (StatusCode::BAD_REQUEST, "NAME_INVALID"),
            NameUnknown => (StatusCode::NOT_FOUND, "NAME_UNKNOWN"),
            SizeInvalid(_) => (StatusCode::BAD_REQUEST, "SIZE_INVALID"),
            RangeInvalid(_) => (StatusCode::RANGE_NOT_SATISFIABLE, "BLOB_UPLOAD_INVALID"),
            TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "SIZE_INVALID"),
            // distribution answers writes in read-only mode and deletes when deletion is
            // disabled with 405 UNSUPPORTED.
            Unsupported => (StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED"),
            TagInvalid(_) => (StatusCode::BAD_REQUEST, "MANIFEST_INVALID"),
            Pagination(_) => (StatusCode::BAD_REQUEST, "PAGINATION_NUMBER_INVALID"),
            Config(_) | Io(_) => (StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN"),
        }
    }

    /// The spec's error body: `{"errors":[{"code","message","detail"}]}`.
    pub fn body(&self) -> serde_json::Value {
        let (_, code) = self.status_code();
        let detail = match self {
            Error::ManifestBlobUnknown(d) => serde_json::json!({ "digest": d }),
            _ => serde_json::Value::Null,
        };
        serde_json::json!({ "errors": [{ "code": code, "message": self.to_string(), "detail": detail }] })
    }
}
