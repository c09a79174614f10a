//! Test harness shared by talext's integration tests: stand-in payloads built from real Debian
//! binaries, the reference registry started on 127.0.0.1 (also behind a token service), and wrappers around the independent
//! readers (skopeo, umoci, the OCI image-spec and SPDX JSON schemas, `go version -m`).

pub mod faultproxy;
pub mod gobuild;
pub mod payload;
pub mod registry;
pub mod schema;
pub mod token;
pub mod tools;
