//! `idnode cert`: a development CA with a server and a client certificate.

use std::path::PathBuf;

#[derive(clap::Args)]
pub struct CertArgs {
    /// Output directory.
    #[arg(long, default_value = "./idnode-certs")]
    out: PathBuf,
    /// Names and IP addresses the server certificate is valid for.
    #[arg(long, value_delimiter = ',', default_value = "localhost,127.0.0.1")]
    hosts: Vec<String>,
}

pub fn run(CertArgs { out, hosts }: CertArgs) -> anyhow::Result<()> {
    let c = idnode::tls::dev_certs(&out, &hosts)?;
    println!(
        "CA {}\nserver {} + {} (for {})\nclient {} + {}",
        c.ca.display(),
        c.server_cert.display(),
        c.server_key.display(),
        hosts.join(", "),
        c.client_cert.display(),
        c.client_key.display()
    );
    Ok(())
}
