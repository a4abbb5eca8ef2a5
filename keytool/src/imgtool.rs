//! keytool as a drop-in `imgtool`: invoked through a link named `imgtool`, it
//! takes imgtool's command lines (`sign`/`create`, `verify`, `getpub`,
//! `getpubhash`, `keygen`, `dumpinfo`, `version`) with imgtool's flags and
//! output, and `-k/--key` also accepts `pkcs11:` and `awskms:` key URIs.
//!
//! A Zephyr/NCS build that runs `imgtool sign …` signs with an HSM key once a
//! link `imgtool -> keytool` comes first on `PATH` (see the README).

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use firmware::image::Image;

use crate::commands::image::{sign, verify};
use crate::commands::key::{generate, getpub};
use crate::failure::{CmdResult, Failure};
use crate::imgtool_dumpinfo;

/// The imgtool version whose command lines and outputs this mirrors.
pub(crate) const IMGTOOL_VERSION: &str = "2.5.0";

/// keytool acting as MCUboot's imgtool. -k/--key also takes pkcs11: and
/// awskms: key URIs.
#[derive(Debug, Parser)]
#[command(name = "imgtool", disable_version_flag = true, max_term_width = 100)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a signed or unsigned image.
    #[command(alias = "create")]
    Sign(Box<sign::Args>),
    /// Check that a signed image can be verified by the given key.
    Verify(VerifyArgs),
    /// Dump the public key of a key.
    Getpub(getpub::Args),
    /// Dump the SHA-256 of the public key.
    Getpubhash(getpub::HashArgs),
    /// Generate a key pair (ecdsa-p256 only).
    Keygen(generate::Args),
    /// Print the header, TLVs and trailer of an image.
    Dumpinfo(DumpinfoArgs),
    /// Print the imgtool version this mirrors.
    Version,
}

#[derive(Debug, clap::Args)]
struct VerifyArgs {
    #[command(flatten)]
    inner: verify::Args,
}

#[derive(Debug, clap::Args)]
struct DumpinfoArgs {
    /// Write the information to this file.
    #[arg(short = 'o', long)]
    outfile: Option<PathBuf>,
    /// Output format: human or json.
    #[arg(short = 'f', long = "format", value_parser = ["human", "yaml", "json"])]
    format: Option<String>,
    /// Accepted for compatibility; imgtool 2.5 ignores it too.
    #[arg(short = 's', long)]
    silent: bool,
    /// The image.
    imgfile: PathBuf,
}

impl Cli {
    pub(crate) fn run(self, ctx: &crate::station::session::Context) -> CmdResult {
        match self.command {
            Command::Sign(a) => a.run(ctx),
            Command::Verify(a) => {
                // imgtool's output: three lines on success.
                let report = a.inner.check()?;
                println!("Image was correctly validated");
                println!("Image version: {}", report.version.unwrap_or_default());
                println!("Image digest: {}", report.digest.unwrap_or_default());
                Ok(())
            }
            Command::Getpub(a) => a.run(),
            Command::Getpubhash(a) => a.run(),
            Command::Keygen(a) => a.run(),
            Command::Dumpinfo(a) => a.run(),
            Command::Version => {
                println!("{IMGTOOL_VERSION}");
                Ok(())
            }
        }
    }
}

impl DumpinfoArgs {
    fn run(self) -> CmdResult {
        // imgtool: human on stdout by default, YAML into --outfile by default.
        let format = self.format.as_deref().unwrap_or(if self.outfile.is_some() {
            "yaml"
        } else {
            "human"
        });
        if format == "yaml" {
            return Err(Failure::usage_msg(
                "yaml output is not supported; use -f json or -f human",
            ));
        }
        let bytes = crate::commands::util::read_image(&self.imgfile)?;
        let fail = |e: firmware::image::ImageError| {
            Failure::failed(anyhow::anyhow!("{}: {e}", self.imgfile.display()))
        };
        let image = Image::parse(&bytes).map_err(fail)?;
        let name = self
            .imgfile
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let info = imgtool_dumpinfo::collect(&name, &image);
        let text = if format == "json" {
            serde_json::to_string_pretty(&info).map_err(Failure::failed)?
        } else {
            imgtool_dumpinfo::human(&info)
        };
        match &self.outfile {
            Some(out) => signer::atomic::write(out, text.as_bytes()).map_err(Failure::failed),
            None => {
                // imgtool ends JSON on stdout with a newline; the human text has its own.
                if format == "json" {
                    println!("{text}");
                } else {
                    print!("{text}");
                }
                Ok(())
            }
        }
    }
}
