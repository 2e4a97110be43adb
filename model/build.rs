//! Compiles meshtel's own protobuf services with a vendored `protoc`, so that building
//! needs nothing installed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_with_config(config, &["proto/meshtel/mixer/v1/mixer.proto"], &["proto"])?;
    Ok(())
}
