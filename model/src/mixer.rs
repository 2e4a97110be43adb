//! Generated types and services of `meshtel.mixer.v1` (see `model/proto/`).
#![allow(missing_docs, clippy::all, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

tonic::include_proto!("meshtel.mixer.v1");
