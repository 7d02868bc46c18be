//! The HSM options shared by `rotate`, `materials`, `reimport` and (optionally) `scan`, and
//! the key material source they open. The PIN comes from the environment or standard input,
//! never from a flag (a flag is visible to every user of the machine in the process list).

use std::path::PathBuf;

use anyhow::{anyhow, Context};
use kms_rotation_guard::rotation::hsm::{HsmPin, KeyMaterialSource, Pkcs11Source, SoftwareSource};

/// Where key material is generated and kept (`rotate`, `materials`, `reimport`, and optionally `scan`).
#[derive(clap::Args)]
#[group(requires = "hsm")]
pub struct HsmArgs {
    /// pkcs11 (an HSM) or software (development only: it keeps nothing).
    #[arg(long, value_parser = ["pkcs11", "software"])]
    pub hsm: String,
    /// The HSM's PKCS#11 library.
    #[arg(long, required_if_eq("hsm", "pkcs11"))]
    pub pkcs11_module: Option<PathBuf>,
    /// The token's label (slot ids are not stable).
    #[arg(long, required_if_eq("hsm", "pkcs11"))]
    pub token_label: Option<String>,
    /// Read the PIN from the first line of standard input instead of KRG_PKCS11_PIN.
    #[arg(long)]
    pub pin_stdin: bool,
}

/// The key material source of `materials` and `reimport`.
pub fn open_source(args: &HsmArgs) -> anyhow::Result<Box<dyn KeyMaterialSource>> {
    if args.hsm == "software" {
        return Ok(Box::new(SoftwareSource::new_insecure_for_development()));
    }
    let pin = if args.pin_stdin {
        // Zeroized on drop, and large enough that reading a PIN never reallocates (a
        // reallocation would leave a copy in freed memory).
        let mut line = zeroize::Zeroizing::new(String::with_capacity(1024));
        std::io::stdin().read_line(&mut line).context("cannot read the PIN from standard input")?;
        let len = line.trim_end_matches(['\r', '\n']).len();
        line.truncate(len);
        HsmPin::from(line)
    } else {
        HsmPin::new(std::env::var("KRG_PKCS11_PIN").map_err(|_| anyhow!("set KRG_PKCS11_PIN or pass --pin-stdin"))?)
    };
    let module = args.pkcs11_module.as_ref().expect("required by clap");
    let label = args.token_label.as_ref().expect("required by clap");
    Ok(Box::new(Pkcs11Source::open(module, label, &pin)?))
}
