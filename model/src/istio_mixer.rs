//! Generated types and service of Istio's Mixer API (`istio.mixer.v1`, release-1.4;
//! see `model/proto/istio/`), which Mixer-era istio-proxies speak.
#![allow(
    missing_docs,
    clippy::all,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

pub mod istio {
    pub mod mixer {
        pub mod v1 {
            tonic::include_proto!("istio.mixer.v1");
        }
    }
}

pub mod google {
    pub mod rpc {
        tonic::include_proto!("google.rpc");
    }
}

pub use istio::mixer::v1::*;
