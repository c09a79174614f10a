//! `standin DIR`: lay out the stand-in Tailscale payload (Debian's static busybox and stub Go
//! binaries for amd64 and arm64, arranged like the upstream `tailscale/tailscale` image, with its
//! apk database) under `DIR/amd64` and
//! `DIR/arm64`, and print `DIR/{arch}`, the form `talext build --source` takes. Used by
//! `ci/build-tailscale.sh` on machines that cannot reach the upstream registry.

fn main() {
    let Some(dir) = std::env::args_os().nth(1) else {
        eprintln!("usage: standin DIR");
        std::process::exit(2);
    };
    let dir = std::path::PathBuf::from(dir);
    let dir = std::path::absolute(&dir).unwrap_or(dir);
    println!("{}", talext_kit::payload::tailscale_standin(&dir).display());
}
