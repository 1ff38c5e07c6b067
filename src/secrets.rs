//! Secret files: tokens and the node key, written with mode 0600 and read back. Every
//! secret a node keeps on disk goes through here (the admin token, seeded enterprise and
//! node tokens, the node key, the development CA's keys), so the rest of the code only
//! reads them (the audit among them).

use std::path::Path;

use ed25519_dalek::SigningKey;
use rand::RngCore;

/// Writes a secret to a new file readable only by its owner.
pub fn write_secret_file(path: &Path, secret: &str) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    f.write_all(secret.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()
}

/// Loads the node key from `path`, creating it (mode 0600) on first use.
pub fn node_key(path: &Path) -> std::io::Result<SigningKey> {
    if let Ok(text) = std::fs::read_to_string(path) {
        let bytes = hex::decode(text.trim())
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
            .ok_or_else(|| {
                std::io::Error::other(format!("{} is not a node key", path.display()))
            })?;
        return Ok(SigningKey::from_bytes(&bytes));
    }
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    write_secret_file(path, &hex::encode(secret))?;
    Ok(SigningKey::from_bytes(&secret))
}
