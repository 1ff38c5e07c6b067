//! Generates the gRPC code from `proto/` and a descriptor set for server reflection.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    let protos = [
        "proto/idnode/v1/types.proto",
        "proto/idnode/v1/resolver.proto",
        "proto/idnode/v1/registry.proto",
        "proto/idnode/v1/admin.proto",
        "proto/idnode/v1/toplevel.proto",
    ];
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("idnode_descriptor.bin"))
        .compile_protos(&protos, &["proto"])?;
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    Ok(())
}
