//! Compiles meshtel's own protobuf services with a vendored `protoc`, so that building
//! needs nothing installed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let include = protoc_bin_vendored::include_path()?;
    let include = include
        .to_str()
        .ok_or("the vendored protoc include path is not UTF-8")?
        .to_string();
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_with_config(
            config,
            &[
                "proto/meshtel/mixer/v1/mixer.proto",
                "proto/envoy/service/ratelimit/v3/rls.proto",
                "proto/istio/mixer/v1/mixer.proto",
            ],
            &["proto", include.as_str()],
        )?;
    Ok(())
}
