//! Compiles `schemas/agent.proto` without a system `protoc`: `protox` parses it in Rust.
fn main() {
    let proto = "../schemas/agent.proto";
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::compile([proto], ["../schemas"]).expect("schemas/agent.proto must compile");
    tonic_prost_build::configure().compile_fds(descriptors).expect("generating the agent protocol code");
}
