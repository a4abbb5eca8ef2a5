//! Power cuts during an upgrade on QEMU's nRF51: the boot stage installs a
//! pending image from the secondary slot while a debugger (QEMU's GDB stub,
//! through the station's own client) stops the chip at a random point of the
//! copy: after a random number of page erases (a watchpoint on the NVMC's
//! ERASEPAGE register), then a random number of single steps. The flash is
//! read out as it is at that instant, QEMU is killed, and a fresh chip boots
//! from the saved flash: it must start a verified image, the upgrade's, with
//! the counter raised. Every cut point is tried on the host as well
//! (`firmware/src/boot/tests.rs`).
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{build_app, free_port, imgtool_sign, ROOT};
use factory::gdb::GdbClient;

const PUB: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/data/images/dev-key.pub.pem"
);
/// NVMC ERASEPAGE (nRF51): written once per page erase.
const NVMC_ERASEPAGE: u32 = 0x4001_E508;
const FLASH_SIZE: usize = 0x4_0000;
/// Pages the upgrade's copy erases: its image is padded to this many KiB.
const COPY_PAGES: u64 = 48;
const CUTS: u64 = 10;

/// boot.sh and its QEMU; the debugger ends QEMU (the power cut), and a
/// chip left running is killed when the test ends.
struct Chip(Child);

impl Chip {
    fn start(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Self {
        let mut cmd = Command::new(format!("{ROOT}/firmware/qemu/boot.sh"));
        for a in args {
            cmd.arg(a);
        }
        Self(
            cmd.stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        )
    }
}

impl Drop for Chip {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A small deterministic generator: the cut points are the same every run
/// (and printed when one fails).
fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

#[test]
fn an_upgrade_cut_at_random_points_still_boots_a_verified_image() {
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("app.bin");
    build_app(&app);
    // Pad the application so that its copy spans COPY_PAGES pages.
    let mut bytes = std::fs::read(&app).unwrap();
    bytes.resize((COPY_PAGES as usize - 1) * 1024, 0);
    let big = dir.path().join("app-big.bin");
    std::fs::write(&big, &bytes).unwrap();
    let v1 = dir.path().join("v1.bin");
    let v2 = dir.path().join("v2.bin");
    imgtool_sign(&app, &v1, &["-v", "1.0.0", "-s", "3"]);
    imgtool_sign(&big, &v2, &["-v", "2.0.0", "-s", "4", "--pad"]);

    let mut seed = 0x2026_1205_u64;
    for cut in 0..CUTS {
        // Mostly inside the copy; the last two in the erase of the secondary.
        let erases = if cut < CUTS - 2 {
            1 + next(&mut seed) % COPY_PAGES
        } else {
            COPY_PAGES + 1 + next(&mut seed) % 40
        };
        let steps = next(&mut seed) % 4000;
        let port = free_port();
        let mut chip = Chip::start(&[
            &"--release-key",
            &PUB,
            &"--image",
            &v1,
            &"--upgrade",
            &v2,
            &"--min-counter",
            &"3",
            &"--gdb",
            &port.to_string(),
        ]);
        let deadline = Instant::now() + Duration::from_secs(600);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(chip.0.try_wait().unwrap().is_none(), "boot.sh exited");
            assert!(Instant::now() < deadline, "the chip did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut gdb = GdbClient::connect(("127.0.0.1", port)).unwrap();
        let watch = format!("Z2,{NVMC_ERASEPAGE:x},4");
        assert_eq!(gdb.request(watch.as_bytes()).unwrap(), b"OK");
        for _ in 0..erases {
            let stop = gdb.request(b"c").unwrap();
            assert!(stop.starts_with(b"T"), "{}", String::from_utf8_lossy(&stop));
        }
        gdb.request(format!("z2,{NVMC_ERASEPAGE:x},4").as_bytes())
            .unwrap();
        for _ in 0..steps {
            gdb.request(b"s").unwrap();
        }
        let mut flash = vec![0u8; FLASH_SIZE];
        gdb.read_memory(0, &mut flash).unwrap();
        gdb.kill().unwrap();
        let _ = chip.0.wait();

        let saved = dir.path().join(format!("cut-{cut}.bin"));
        std::fs::write(&saved, &flash).unwrap();
        let out = Command::new(format!("{ROOT}/firmware/qemu/boot.sh"))
            .arg("--flash")
            .arg(&saved)
            .output()
            .unwrap();
        let console = String::from_utf8_lossy(&out.stdout);
        let what = format!("cut {cut}: after {erases} page erases and {steps} steps");
        assert!(out.status.success(), "{what}:\n{console}");
        assert!(
            console.contains("BOOT ok version=2.0.0+0 counter=4")
                && console.contains("APP unprovisioned version=2.0.0+0"),
            "{what}:\n{console}"
        );
    }
}
