//! `scripts/setup --check` against fake roots: it must find exactly what the build loads
//! (bindgen's libclang and clang's resource headers, protoc), never a look-alike such as
//! the base image's `libclang-cpp.so.14`.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::process::Command;

fn touch(root: &Path, rel: &str, executable: bool) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(&p, b"").unwrap();
    if executable {
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    }
}

/// A root with every tool present, and llvm-14 as the base image ships it.
fn base_root() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for tool in ["protoc", "c++", "dig", "curl", "chromium", "chromedriver"] {
        touch(dir.path(), &format!("usr/bin/{tool}"), true);
    }
    touch(
        dir.path(),
        "usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
        false,
    );
    touch(dir.path(), "usr/sbin/unbound", true);
    touch(dir.path(), "usr/lib/llvm-14/lib/libclang-cpp.so.14", false);
    dir
}

/// Runs the detection; returns (success, output).
fn check(root: &Path) -> (bool, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/setup");
    let out = Command::new("sh")
        .arg(script)
        .args(["--check", "--root"])
        .arg(root)
        .output()
        .expect("sh runs scripts/setup");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

fn line<'a>(text: &'a str, requirement: &str) -> &'a str {
    let with_colon = format!("{requirement}:");
    text.lines()
        .find(|l| {
            let name = l.split_whitespace().nth(1);
            name == Some(requirement) || name == Some(&with_colon)
        })
        .unwrap_or_else(|| panic!("no line for {requirement} in:\n{text}"))
}

#[test]
fn libclang_cpp_alone_is_not_libclang() {
    let root = base_root();
    let (ok, text) = check(root.path());
    assert!(!ok, "{text}");
    assert!(line(&text, "libclang").starts_with("missing"), "{text}");
    assert!(line(&text, "libclang").contains("libclang-dev"), "{text}");
}

#[test]
fn libclang_without_resource_headers_is_reported() {
    let root = base_root();
    touch(root.path(), "usr/lib/llvm-14/lib/libclang.so.1", false);
    let (ok, text) = check(root.path());
    assert!(!ok, "{text}");
    assert!(line(&text, "libclang").starts_with("ok"), "{text}");
    assert!(
        line(&text, "clang-headers").starts_with("missing"),
        "{text}"
    );
}

#[test]
fn libclang_with_resource_headers_is_present() {
    let root = base_root();
    touch(root.path(), "usr/lib/llvm-14/lib/libclang.so.1", false);
    touch(
        root.path(),
        "usr/lib/llvm-14/lib/clang/14.0.6/include/stddef.h",
        false,
    );
    let (ok, text) = check(root.path());
    assert!(ok, "{text}");
    assert!(
        line(&text, "libclang").contains("llvm-14/lib/libclang.so.1"),
        "{text}"
    );
    assert!(line(&text, "clang-headers").starts_with("ok"), "{text}");
}

#[test]
fn debian_layout_through_links_is_present() {
    // Debian: the real file lives in the multiarch directory, llvm-14/lib links to it, and
    // the headers sit beside the link.
    let root = base_root();
    touch(
        root.path(),
        "usr/lib/x86_64-linux-gnu/libclang-14.so.1",
        false,
    );
    symlink(
        "../../x86_64-linux-gnu/libclang-14.so.1",
        root.path().join("usr/lib/llvm-14/lib/libclang.so"),
    )
    .unwrap();
    touch(
        root.path(),
        "usr/lib/llvm-14/lib/clang/14.0.6/include/stddef.h",
        false,
    );
    let (ok, text) = check(root.path());
    assert!(ok, "{text}");
}

#[test]
fn missing_protoc_is_reported() {
    let root = base_root();
    touch(root.path(), "usr/lib/llvm-14/lib/libclang.so.1", false);
    touch(
        root.path(),
        "usr/lib/llvm-14/lib/clang/14.0.6/include/stddef.h",
        false,
    );
    fs::remove_file(root.path().join("usr/bin/protoc")).unwrap();
    let (ok, text) = check(root.path());
    assert!(!ok, "{text}");
    assert!(line(&text, "protoc").starts_with("missing"), "{text}");
    assert!(
        line(&text, "protoc").contains("protobuf-compiler"),
        "{text}"
    );
}

#[test]
fn a_missing_browser_driver_or_cjk_font_is_reported() {
    let root = base_root();
    touch(root.path(), "usr/lib/llvm-14/lib/libclang.so.1", false);
    touch(
        root.path(),
        "usr/lib/llvm-14/lib/clang/14.0.6/include/stddef.h",
        false,
    );
    fs::remove_file(root.path().join("usr/bin/chromedriver")).unwrap();
    fs::remove_file(
        root.path()
            .join("usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"),
    )
    .unwrap();
    let (ok, text) = check(root.path());
    assert!(!ok, "{text}");
    assert!(line(&text, "chromium").starts_with("ok"), "{text}");
    assert!(
        line(&text, "chromedriver").contains("chromium-driver"),
        "{text}"
    );
    assert!(line(&text, "cjk-font").contains("fonts-noto-cjk"), "{text}");
}

#[test]
fn this_machine_has_what_the_build_loads() {
    // The real root: after scripts/setup (README), every requirement is found in the form
    // the build uses (libclang is dlopened, protoc is run).
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/setup");
    let out = Command::new("sh")
        .arg(script)
        .arg("--check")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "run scripts/setup first:\n{text}");
}
