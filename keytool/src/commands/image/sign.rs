//! `keytool image sign`: imgtool's `sign`, for every key type MCUboot
//! verifies, from every key store, with one or two signing keys.

use std::path::PathBuf;

use base64::Engine as _;
use clap::ValueEnum;
use firmware::image::keys::HashAlg;
use firmware::image::ImageVersion;
use signer::image::{
    build, is_hex_path, parse_custom_tlv, parse_dependencies, read_input, sign_file, write_output,
    PublicKeyFormat, SecurityCounter, SignOptions, Signing, VectorToSign,
};
use signer::keys::KeyType;
use signer::public_key::{image_key_id, load_image_key};
use signer::{open_signer, KeyRef};

use crate::commands::util::{based_u16, based_u32, key_ref, print_json};
use crate::failure::{CmdResult, Failure};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Vector {
    Payload,
    Digest,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum KeyFormat {
    Hash,
    Full,
}

fn version(s: &str) -> Result<ImageVersion, String> {
    s.parse()
        .map_err(|e: firmware::image::VersionError| e.to_string())
}

fn security_counter(s: &str) -> Result<SecurityCounter, String> {
    if s.eq_ignore_ascii_case("auto") {
        return Ok(SecurityCounter::Auto);
    }
    based_u32(s).map(SecurityCounter::Value)
}

fn erased_val(s: &str) -> Result<u8, String> {
    match s {
        "0" => Ok(0),
        "0xff" => Ok(0xff),
        _ => Err("choose 0 or 0xff".into()),
    }
}

/// Create a signed (or unsigned) MCUboot image. INFILE and OUTFILE are Intel
/// HEX when their name ends in .hex, binary otherwise.
#[derive(Debug, clap::Args)]
#[command(args_override_self = true)]
pub(crate) struct Args {
    /// Signing key: a path, file:PATH, pkcs11:… or awskms:… (RSA-2048/3072,
    /// ECDSA P-256/P-384, Ed25519). Give it twice (old key, then new key)
    /// for an image both accept, for key rotation. Without it the image is
    /// unsigned.
    #[arg(short, long, value_parser = key_ref, action = clap::ArgAction::Append)]
    key: Vec<KeyRef>,
    /// Image version, maj.min.rev+build (later parts optional).
    #[arg(short = 'v', long, value_parser = version)]
    version: ImageVersion,
    /// Header size (at least 32).
    #[arg(short = 'H', long, value_parser = based_u16)]
    header_size: u16,
    /// Add --header-size erased bytes at the start of the image.
    #[arg(long)]
    pad_header: bool,
    /// Slot size (the secondary slot's if they differ).
    #[arg(short = 'S', long, value_parser = based_u32)]
    slot_size: u32,
    /// Pad the image to --slot-size bytes and add the trailer magic.
    #[arg(long)]
    pad: bool,
    /// Pad and mark the image confirmed (image_ok).
    #[arg(long)]
    confirm: bool,
    /// Pad and mark the image for a test swap.
    #[arg(long)]
    test: bool,
    /// Flash write alignment used by swap upgrades.
    #[arg(long, default_value = "1", value_parser = ["1", "2", "4", "8", "16", "32"])]
    align: String,
    /// Maximum flash alignment of the two slots.
    #[arg(long, value_parser = ["8", "16", "32"])]
    max_align: Option<String>,
    /// Number of sectors the swap status area is sized for (default 128).
    #[arg(short = 'M', long)]
    max_sectors: Option<u32>,
    /// Overwrite-only upgrades (smaller trailer).
    #[arg(long)]
    overwrite_only: bool,
    /// Security counter value, or `auto` to derive it from the version.
    #[arg(short = 's', long, value_parser = security_counter)]
    security_counter: Option<SecurityCounter>,
    /// Dependencies on other images: "(ID,VERSION), ...".
    #[arg(short = 'd', long)]
    dependencies: Option<String>,
    /// Protected custom TLV: TAG VALUE (0x-prefixed hex, or text). Repeatable.
    #[arg(long, num_args = 2, value_names = ["TAG", "VALUE"], action = clap::ArgAction::Append)]
    custom_tlv: Vec<String>,
    /// Protected custom TLV from a file: TAG FILE. Repeatable.
    #[arg(long, num_args = 2, value_names = ["TAG", "FILE"], action = clap::ArgAction::Append)]
    custom_tlv_file: Vec<String>,
    /// RAM load address (sets RAM_LOAD).
    #[arg(short = 'L', long, value_parser = based_u32)]
    load_addr: Option<u32>,
    /// Flash address the image is built for (sets ROM_FIXED).
    #[arg(short = 'F', long, value_parser = based_u32)]
    rom_fixed: Option<u32>,
    /// Value read back from erased flash: 0 or 0xff.
    #[arg(short = 'R', long, value_parser = erased_val)]
    erased_val: Option<u8>,
    /// Put the key's hash (KEYHASH) or the whole key (PUBKEY) in the image.
    #[arg(long, value_enum, default_value = "hash")]
    public_key_format: KeyFormat,
    /// Address of a HEX output (overrides the input's).
    #[arg(short = 'x', long, value_parser = based_u32)]
    hex_addr: Option<u32>,
    /// Mark the image non-bootable.
    #[arg(long)]
    non_bootable: bool,
    /// Write the payload or its digest, to be signed elsewhere, instead of an image.
    #[arg(long, value_enum)]
    vector_to_sign: Option<Vector>,
    /// A signature made elsewhere (base64 DER) to put in the image.
    #[arg(long, value_name = "FILE")]
    fix_sig: Option<PathBuf>,
    /// Public key of the --fix-sig signature.
    #[arg(long, value_name = "FILE", value_parser = key_ref)]
    fix_sig_pubkey: Option<KeyRef>,
    /// Also write the signature, base64, to this file.
    #[arg(long, value_name = "FILE")]
    sig_out: Option<PathBuf>,
    /// Pad the ECDSA signature to 72 bytes (MCUboot < 1.5).
    #[arg(long)]
    pad_sig: bool,
    /// Image hash: `auto` takes the key type's (SHA-256; SHA-384 for
    /// P-384); Ed25519 also takes 512.
    #[arg(long, default_value = "auto", value_parser = ["auto", "256", "384", "512"])]
    sha: String,
    /// Ed25519 signs the image itself rather than its hash (SIG_PURE;
    /// implies SHA-512).
    #[arg(long)]
    pure: bool,
    /// Byte order: only little endian is supported.
    #[arg(short = 'e', long, default_value = "little", value_parser = ["little"])]
    endian: String,
    /// Encrypt the payload for this key (a PEM file: ECIES-P256 or
    /// ECIES-X25519 public key, or a private key's public half).
    #[arg(short = 'E', long, value_name = "FILE", value_parser = key_ref)]
    encrypt: Option<KeyRef>,
    /// AES key length for -E: 128 or 256.
    #[arg(long, value_parser = ["128", "256"])]
    encrypt_keylen: Option<String>,
    /// With -E: set the encryption flags and ENC TLV but leave the payload
    /// in the clear.
    #[arg(short = 'c', long)]
    clear: bool,
    /// With -E: size the trailer's key slots for the whole ENC TLV (the
    /// bootloader saves it instead of the plain key).
    #[arg(long)]
    save_enctlv: bool,
    /// With -E: the HMAC/HKDF hash, auto (256) or 512 (ECIES-X25519 only).
    #[arg(long, value_parser = ["auto", "256", "512"])]
    hmac_sha: Option<String>,
    /// Not supported: image compression.
    #[arg(long, hide = true)]
    compression: Option<String>,
    /// Print a JSON summary on stdout.
    #[arg(long)]
    json: bool,
    /// Input firmware (.bin or .hex).
    infile: PathBuf,
    /// Output image (.bin or .hex).
    outfile: PathBuf,
}

#[derive(serde::Serialize)]
struct Summary {
    output: String,
    version: String,
    security_counter: Option<u32>,
    /// The image hash: sha256, sha384 or sha512.
    hash: &'static str,
    digest: String,
    /// The first signing key (the only one unless the image is signed twice).
    key: Option<String>,
    key_id: Option<String>,
    /// Every signing key, in the order of their signatures.
    signers: Vec<SignerSummary>,
    signed: bool,
}

#[derive(serde::Serialize)]
struct SignerSummary {
    key: String,
    key_type: &'static str,
    key_id: String,
}

impl Args {
    fn refuse_unsupported(&self) -> Result<(), Failure> {
        let enc_flags = self.encrypt_keylen.is_some()
            || self.clear
            || self.save_enctlv
            || self.hmac_sha.is_some();
        if enc_flags && self.encrypt.is_none() {
            return Err(Failure::usage_msg(
                "--encrypt-keylen, --clear, --save-enctlv and --hmac-sha go with -E/--encrypt",
            ));
        }
        if self.compression.as_deref().is_some_and(|c| c != "disabled") {
            return Err(Failure::usage_msg(
                "image compression is not supported by keytool; sign without --compression",
            ));
        }
        Ok(())
    }

    fn options(&self) -> Result<SignOptions, Failure> {
        let mut o = SignOptions::new(self.version, self.header_size, self.slot_size);
        o.pad_header = self.pad_header;
        o.pad = self.pad;
        o.confirm = self.confirm;
        o.test = self.test;
        o.align = self.align.parse().map_err(Failure::usage)?;
        o.max_align = self
            .max_align
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(Failure::usage)?;
        o.max_sectors = self.max_sectors;
        o.overwrite_only = self.overwrite_only;
        o.security_counter = self.security_counter;
        if let Some(d) = &self.dependencies {
            o.dependencies = parse_dependencies(d)?;
        }
        for pair in self.custom_tlv.chunks(2) {
            o.custom_tlvs.push(parse_custom_tlv(&pair[0], &pair[1])?);
        }
        for pair in self.custom_tlv_file.chunks(2) {
            let (tag, _) = parse_custom_tlv(&pair[0], "")?;
            let value = std::fs::read(&pair[1]).map_err(|e| {
                Failure::usage_msg(format!("cannot read custom TLV file {}: {e}", pair[1]))
            })?;
            o.custom_tlvs.push((tag, value));
        }
        o.load_addr = self.load_addr;
        o.rom_fixed = self.rom_fixed;
        o.erased_val = self.erased_val.unwrap_or(0xff);
        o.public_key_format = match self.public_key_format {
            KeyFormat::Hash => PublicKeyFormat::Hash,
            KeyFormat::Full => PublicKeyFormat::Full,
        };
        o.non_bootable = self.non_bootable;
        o.pad_sig = self.pad_sig;
        o.sha = match self.sha.as_str() {
            "256" => Some(HashAlg::Sha256),
            "384" => Some(HashAlg::Sha384),
            "512" => Some(HashAlg::Sha512),
            _ => None,
        };
        o.pure = self.pure;
        if let Some(k) = &self.encrypt {
            let key = signer::image::encrypt::load_enc_public_key(k).map_err(Failure::usage)?;
            o.encrypt = Some(signer::image::encrypt::Encryption {
                key,
                aes256: self.encrypt_keylen.as_deref() == Some("256"),
                hmac_sha512: self.hmac_sha.as_deref() == Some("512"),
                clear: self.clear,
                save_enctlv: self.save_enctlv,
            });
        }
        o.validate()?;
        Ok(o)
    }

    fn fixed_signature(&self) -> Result<Option<(Vec<u8>, firmware::image::AnyImageKey)>, Failure> {
        let Some(path) = &self.fix_sig else {
            return Ok(None);
        };
        let pubkey = self.fix_sig_pubkey.as_ref().ok_or_else(|| {
            Failure::usage_msg(
                "public key of the fixed signature is not specified (--fix-sig-pubkey)",
            )
        })?;
        let text = std::fs::read_to_string(path)
            .map_err(|e| Failure::usage_msg(format!("cannot read {}: {e}", path.display())))?;
        let compact: String = text.split_whitespace().collect();
        let sig = base64::engine::general_purpose::STANDARD
            .decode(compact)
            .map_err(|_| {
                Failure::usage_msg(format!("{}: not a base64 signature", path.display()))
            })?;
        let key = load_image_key(pubkey).map_err(Failure::usage)?;
        Ok(Some((sig, key)))
    }

    /// Under a policy, release images are signed only through approvals.
    fn refuse_under_policy(&self, ctx: &crate::station::session::Context) -> CmdResult {
        let Some(path) = &ctx.policy else {
            return Ok(());
        };
        if self.key.is_empty() && self.fix_sig.is_none() {
            return Ok(()); // unsigned images are what releases are requested for
        }
        let session = crate::station::session::Session::open(path)?;
        let reason = format!(
            "under the policy {:?}, images are signed only by `keytool release sign` with the \
             officers' approvals: build the image without a key, then `keytool release request`",
            session.policy.name
        );
        let subjects = vec![
            format!("input:{}", self.infile.display()),
            format!("version:{}", self.version),
        ];
        Err(session.refuse("image.sign", subjects, &[reason]).into())
    }

    pub(crate) fn run(self, ctx: &crate::station::session::Context) -> CmdResult {
        self.refuse_under_policy(ctx)?;
        self.refuse_unsupported()?;
        let opts = self.options()?;
        let fixed = self.fixed_signature()?;
        if fixed.is_some() && !self.key.is_empty() {
            return Err(Failure::usage_msg(
                "can not sign using a key and provide a fixed signature at the same time",
            ));
        }
        if self.key.len() > 2 {
            return Err(Failure::usage_msg(
                "give at most two keys (the old and the new one, for key rotation)",
            ));
        }
        let keys = self
            .key
            .iter()
            .map(open_signer)
            .collect::<Result<Vec<_>, _>>()
            .map_err(Failure::usage)?;
        let signing = match fixed {
            _ if !keys.is_empty() => Signing::Keys(keys.iter().map(AsRef::as_ref).collect()),
            Some((signature, public_key)) => Signing::Fixed {
                signature,
                public_key,
            },
            None => Signing::Unsigned,
        };
        let mut signers = Vec::with_capacity(keys.len());
        for (reference, key) in self.key.iter().zip(&keys) {
            let public = key.image_key().map_err(Failure::failed)?;
            signers.push(SignerSummary {
                key: reference.to_string(),
                key_type: KeyType::of(&public).name(),
                key_id: hex::encode(image_key_id(&public)),
            });
        }
        let vector = self.vector_to_sign.map(|v| match v {
            Vector::Payload => VectorToSign::Payload,
            Vector::Digest => VectorToSign::Digest,
        });
        if self.sig_out.is_some() && keys.is_empty() && self.fix_sig.is_none() {
            return Err(Failure::usage_msg(
                "--sig-out needs a signature: give -k/--key or --fix-sig",
            ));
        }
        // A pure signature covers the whole image, and an encrypted image is
        // encrypted after it is hashed: both are built in memory.
        let streamable = vector.is_none()
            && !opts.pure
            && opts.encrypt.is_none()
            && !is_hex_path(&self.infile)
            && !is_hex_path(&self.outfile);
        let (digest, signatures) = if streamable {
            let signed = sign_file(&self.infile, &self.outfile, &opts, signing)?;
            (signed.digest, signed.signatures)
        } else {
            let header_room = if opts.pad_header {
                usize::from(opts.header_size)
            } else {
                0
            };
            // Room for the TLVs, so appending them does not copy the image.
            let input = read_input(&self.infile, header_room, opts.erased_val, 1024)?;
            let image = build(input, &opts, signing, vector)?;
            write_output(&self.outfile, &image, &opts, self.hex_addr)?;
            (image.digest, image.signatures)
        };
        if let (Some(path), Some(sig)) = (&self.sig_out, signatures.first()) {
            let b64 = base64::engine::general_purpose::STANDARD.encode(sig);
            signer::atomic::write(path, b64.as_bytes()).map_err(Failure::failed)?;
        }
        if self.json {
            return print_json(&Summary {
                output: self.outfile.display().to_string(),
                version: opts.version.to_string(),
                security_counter: opts.security_counter_value(),
                hash: match digest.alg() {
                    HashAlg::Sha256 => "sha256",
                    HashAlg::Sha384 => "sha384",
                    HashAlg::Sha512 => "sha512",
                },
                digest: hex::encode(digest),
                key: signers.first().map(|s| s.key.clone()),
                key_id: signers.first().map(|s| s.key_id.clone()),
                signed: !signatures.is_empty(),
                signers,
            });
        }
        Ok(())
    }
}
