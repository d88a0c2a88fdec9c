// The gateway talks to libsrt directly (the listener callback sets each station's passphrase);
// link the same build of it that GStreamer's srt plugin uses on Debian.
fn main() {
    println!("cargo:rustc-link-lib=dylib=srt-gnutls");
}
