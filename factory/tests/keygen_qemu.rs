//! Keys born on the chip, on QEMU's nRF51: the sample application finds no
//! key block, draws its key from the RNG and writes the key block itself; a
//! station's request in the key mailbox (written over the GDB stub before
//! the chip runs) is answered with the public key and a proof of possession
//! for this chip and nonce (`firmware::keygen`). After a reset the key is the
//! same; the chip signs challenges with it on its UART.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{boot_keys, free_port, signed_app, ROOT};
use factory::chips::ChipTable;
use factory::target::{read_hw_id, GdbTarget, Target};
use firmware::auth::line::Answer;
use firmware::keygen::{check_answer, holds_answer, request, MAILBOX_LEN};

const MAILBOX: u32 = 0x2000_3F00;

struct Chip(Child);

impl Drop for Chip {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn connect(port: u16, chip: &mut Chip) -> GdbTarget {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            if let Ok(t) = GdbTarget::connect(&format!("127.0.0.1:{port}")) {
                return t;
            }
        }
        assert!(chip.0.try_wait().unwrap().is_none(), "boot.sh exited");
        assert!(Instant::now() < deadline, "the chip did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Read UART lines until the application's `APP` line.
fn until_app(uart: &mut BufReader<TcpStream>) -> String {
    loop {
        let mut line = String::new();
        assert!(uart.read_line(&mut line).unwrap() > 0, "UART closed");
        if line.starts_with("APP ") {
            return line;
        }
    }
}

#[test]
fn the_chip_makes_its_key_and_proves_it() {
    let (gdb, uart) = (free_port(), free_port());
    let app = signed_app();
    let mut chip = Chip(
        Command::new(format!("{ROOT}/firmware/qemu/boot.sh"))
            .args(boot_keys())
            .arg("--image")
            .arg(&app)
            .args(["--gdb", &gdb.to_string(), "--uart", &uart.to_string()])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let table = ChipTable::builtin().unwrap();
    let nrf51 = table.get("nrf51822").unwrap();
    let mut target = connect(gdb, &mut chip);
    let hw_id = read_hw_id(&mut target, nrf51).unwrap();
    let mut part = vec![0u8; 0x1000];
    target.read_memory(nrf51.partition, &mut part).unwrap();
    assert!(part.iter().all(|&b| b == 0xff), "a blank partition");

    let stream = TcpStream::connect(("127.0.0.1", uart)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut lines = BufReader::new(stream.try_clone().unwrap());

    let mut keys = Vec::new();
    for nonce in [[0x5au8; 32], [0xa5u8; 32]] {
        // The station's request, then the chip runs (from reset) and answers;
        // the station takes it again (connecting halts it) until it has.
        target.write_memory(MAILBOX, &request(&nonce)).unwrap();
        target.reset_and_run().unwrap();
        let mut mailbox = [0u8; MAILBOX_LEN];
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            std::thread::sleep(Duration::from_millis(20));
            target.read_memory(MAILBOX, &mut mailbox).unwrap();
            if holds_answer(&mailbox) {
                break;
            }
            assert!(Instant::now() < deadline, "no answer");
            target.release().unwrap();
        }
        let key = check_answer(&mailbox, hw_id, &nonce).unwrap();
        // The same answer does not prove anything for another chip or nonce.
        let other = firmware::record::HwId::from_deviceid(4, 0x1234_5678);
        assert!(check_answer(&mailbox, other, &nonce).is_err());
        assert!(check_answer(&mailbox, hw_id, &[0; 32]).is_err());
        keys.push(key);
        // The acknowledgement lets the application go on.
        target.write_memory(MAILBOX, &[0; MAILBOX_LEN]).unwrap();
        target.release().unwrap();
        let banner = until_app(&mut lines);
        assert!(banner.starts_with("APP unprovisioned"), "{banner}");
    }
    assert_eq!(keys[0], keys[1], "the key is made once and kept");

    // The chip wrote a key block and nothing else into its partition.
    target.read_memory(nrf51.partition, &mut part).unwrap();
    assert!(firmware::partition::key_block(&part).is_some());
    assert!(part[..0x100].iter().all(|&b| b == 0xff), "no record yet");
    target.reset_and_run().unwrap();
    drop(target);
    until_app(&mut lines);

    // Unprovisioned, it does not answer challenges yet.
    writeln!(&stream, "AUTH {}", hex::encode([1u8; 32])).unwrap();
    let answer = loop {
        let mut line = String::new();
        assert!(lines.read_line(&mut line).unwrap() > 0);
        if let Some(a) = Answer::parse(line.as_bytes()).unwrap() {
            break a;
        }
    };
    assert_eq!(
        answer,
        Answer::Refused(firmware::auth::line::Refusal::Unprovisioned)
    );
    writeln!(&stream, "BYE").unwrap();
    assert!(chip.0.wait().unwrap().success());
}
