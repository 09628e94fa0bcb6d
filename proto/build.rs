use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "sluice/admin/v1/resources.proto",
        "sluice/admin/v1/keys.proto",
        "sluice/admin/v1/teams.proto",
        "sluice/admin/v1/organizations.proto",
        "sluice/admin/v1/access_groups.proto",
        "sluice/admin/v1/models.proto",
        "sluice/admin/v1/router.proto",
        "sluice/admin/v1/credits.proto",
        "sluice/admin/v1/usage.proto",
        "sluice/admin/v1/config.proto",
        "sluice/admin/v1/data_planes.proto",
        "sluice/config/v1/snapshot.proto",
        "sluice/config/v1/discovery.proto",
    ];
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        // Reflection serves this set, so grpcurl works without .proto files.
        .file_descriptor_set_path(out.join("sluice_descriptor.bin"))
        .compile_protos(&protos, &["."])?;
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    Ok(())
}
