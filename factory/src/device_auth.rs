//! Device authentication from the station. [`over_uart`]: the chip answers
//! the backend's challenge itself, over its UART, with its own key
//! (`firmware::auth::line`); nothing touches its debug port. [`authenticate`]:
//! an end-of-line check of an unlocked chip whose key the station made
//! (`--key-origin station`), answering as the device would with the key read
//! back from its provisioning partition; a chip whose record says its key was
//! born on it is refused, since reading that key back is what device-made
//! keys rule out.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use firmware::auth::line::{Answer, MAX_LINE};
use firmware::record::{KeyOrigin, ProvisioningRecord, RECORD_LEN};

use crate::backend::Backend;
use crate::chips::Chip;
use crate::partition;
use crate::provision::FlowError;
use crate::target::{read_hw_id, Target};

/// Authenticate the chip to the backend; returns its serial.
pub fn authenticate(
    target: &mut dyn Target,
    chip: &Chip,
    backend: &Backend,
) -> Result<u32, FlowError> {
    let hw_id = read_hw_id(target, chip)?;
    let mut head = [0u8; RECORD_LEN];
    target.read_memory(chip.partition, &mut head)?;
    let record = ProvisioningRecord::parse(&head)
        .map_err(|e| FlowError::Inconsistent(format!("no provisioning record on the chip: {e}")))?;
    if record.body.key_origin == KeyOrigin::Device {
        return Err(FlowError::Inconsistent(
            "the chip's key was born on it and is never read out: authenticate it over its \
             UART (--uart HOST:PORT)"
                .into(),
        ));
    }
    if record.body.hw_id != hw_id {
        return Err(FlowError::Inconsistent(format!(
            "the record on the chip is for hw_id {}, the chip is {hw_id}",
            record.body.hw_id
        )));
    }
    let mut part = zeroize::Zeroizing::new(vec![0u8; partition::IMAGE_LEN]);
    target.read_memory(chip.partition, &mut part)?;
    let scalar = partition::key_block(&part)
        .ok_or_else(|| FlowError::Inconsistent("no device key block on the chip".into()))?;
    let serial = record.body.serial;
    let (challenge_id, nonce) = challenge(backend, serial)?;
    // The device's own signer (firmware::auth), as the chip would run it.
    let signature = firmware::auth::sign_auth(&scalar, &nonce, hw_id, serial).map_err(|_| {
        FlowError::Inconsistent("the device key on the chip is not a P-256 key".into())
    })?;
    backend.verify(&challenge_id, serial, hw_id, &signature)?;
    Ok(serial)
}

/// How long the chip has to answer a challenge on its UART.
const UART_TIMEOUT: Duration = Duration::from_secs(30);

/// The backend's challenge for `serial`, its nonce checked.
fn challenge(backend: &Backend, serial: u32) -> Result<(String, [u8; 32]), FlowError> {
    let challenge = backend.challenge(serial)?;
    let nonce: [u8; 32] = hex::decode(&challenge.nonce)
        .ok()
        .and_then(|n| n.try_into().ok())
        .ok_or_else(|| {
            FlowError::Inconsistent("the backend's nonce is not 32 bytes of hex".into())
        })?;
    Ok((challenge.challenge_id, nonce))
}

/// Authenticate device `serial`, reachable on its UART at `addr` (`HOST:PORT`
/// of a serial-to-TCP bridge): get a challenge from the backend, pass it to
/// the chip, post the chip's answer. The chip signs with its own key; the
/// station never holds it. Returns the serial.
pub fn over_uart(addr: &str, serial: u32, backend: &Backend) -> Result<u32, FlowError> {
    let uart_err = |what: &str, e: std::io::Error| {
        FlowError::Inconsistent(format!("the chip's UART at {addr}: {what}: {e}"))
    };
    let stream = TcpStream::connect(addr).map_err(|e| uart_err("cannot connect", e))?;
    stream
        .set_read_timeout(Some(UART_TIMEOUT))
        .map_err(|e| uart_err("cannot set a timeout", e))?;
    let mut reader = BufReader::new(stream.try_clone().map_err(|e| uart_err("", e))?);
    let mut writer = stream;
    let (challenge_id, nonce) = challenge(backend, serial)?;
    writeln!(writer, "AUTH {}", hex::encode(nonce)).map_err(|e| uart_err("write", e))?;
    // Console lines (BOOT, APP, ...) may come first; the answer is the first
    // AUTH line.
    let answer = loop {
        let mut line = Vec::new();
        let n = std::io::Read::take(&mut reader, MAX_LINE as u64 + 2)
            .read_until(b'\n', &mut line)
            .map_err(|e| uart_err("no answer", e))?;
        if n == 0 {
            return Err(FlowError::Inconsistent(format!(
                "the chip's UART at {addr} closed before an answer"
            )));
        }
        match Answer::parse(&line) {
            Ok(Some(answer)) => break answer,
            Ok(None) => continue,
            Err(e) => {
                return Err(FlowError::Inconsistent(format!(
                    "the chip's UART at {addr}: {e}: {:?}",
                    String::from_utf8_lossy(&line).trim_end()
                )))
            }
        }
    };
    let (said, hw_id, sig) = match answer {
        Answer::Signed { serial, hw_id, sig } => (serial, hw_id, sig),
        Answer::Refused(r) => {
            return Err(FlowError::Inconsistent(format!(
                "the chip refused to sign: {}",
                r.code()
            )))
        }
    };
    if said != serial {
        return Err(FlowError::Inconsistent(format!(
            "the chip on {addr} is serial {said}, not {serial}"
        )));
    }
    backend.verify(&challenge_id, serial, hw_id, &sig)?;
    Ok(serial)
}

/// Print the outcome of a device authentication for people and scripts:
/// `AUTHENTICATED serial=N`, or `REFUSED reason=CODE` with the backend's
/// code (then an error naming its message); other failures are errors.
pub fn report(outcome: Result<u32, FlowError>) -> anyhow::Result<()> {
    match outcome {
        Ok(serial) => {
            println!("AUTHENTICATED serial={serial}");
            Ok(())
        }
        Err(FlowError::Backend(crate::backend::BackendError::Refused {
            code, message, ..
        })) => {
            println!("REFUSED reason={code}");
            anyhow::bail!("the backend refused the device: {message}")
        }
        Err(e) => Err(e.into()),
    }
}
