//! Compiles the `.proto` files under `proto/` into prost types, with protox
//! (a pure-Rust protobuf compiler): no system `protoc` needed.
//! The generated modules are included from the code that uses them
//! (`include!(concat!(env!("OUT_DIR"), "/<package>.rs"))`).

/// Every proto file compiled, relative to `proto/` (the include root).
const PROTOS: &[&str] = &[
    "jaeger/collector.proto",
    "jaeger/model.proto",
    "prometheus/remote.proto",
    "prometheus/types.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files: Vec<String> = PROTOS.iter().map(|p| format!("proto/{p}")).collect();
    for file in &files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(&files, ["proto"])?;
    prost_build::Config::new()
        // Shared label buffers in remote-write series (see proto/prometheus/types.proto).
        .bytes([".prometheus.Label"])
        .compile_fds(descriptors)?;
    Ok(())
}
