//! Links `open-clanker` as a position-dependent executable on Linux.
//!
//! A position-independent executable carries a relocation table that the loader walks at every
//! start, writing the relocated pointers into private copies of its pages: about 0.76 MB of
//! `.rela.dyn` read and 0.5 MB of `.data.rel.ro` copied for this binary, all of it resident for
//! the life of the process. Linked at a fixed address those tables are resolved at link time:
//! the file is smaller and an idle gateway's RSS drops by about as much (docs/BENCHMARKS.md).
//! What is given up is address-space randomization of the executable's own image (the heap,
//! stacks and mappings stay randomized), as with Go's default binaries.
//!
//! A static build (`-C target-feature=+crt-static`) must instead be given
//! `-C relocation-model=static` in RUSTFLAGS (the Dockerfile and CI do): adding `-no-pie` to
//! rustc's `-static-pie` link line would produce a broken binary, so this script stays out of it.

fn main() {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let features = std::env::var("CARGO_CFG_TARGET_FEATURE").unwrap_or_default();
    let crt_static = features.split(',').any(|f| f == "crt-static");
    if os == "linux" && !crt_static {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
