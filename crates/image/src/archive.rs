//! Archive formats: docker-archive (manifest.json, repositories), OCI image layout (index.json),
//! compression sniffing (gzip, zstd, plain).
