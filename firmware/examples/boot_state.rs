//! Write the boot-state region's rollback-counter log holding one value, as
//! the boot stage reads it (`docs/boot.md`, "Boot state"): how
//! `firmware/qemu/boot.sh --min-counter N` presets a chip.
//!
//!   cargo run -p firmware --example boot_state -- N OUT.bin
use firmware::boot::counter;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(n), Some(out), 2) = (args.first(), args.get(1), args.len()) else {
        eprintln!("usage: boot_state N OUT.bin");
        std::process::exit(2);
    };
    let Ok(value) = n.parse::<u32>() else {
        eprintln!("{n}: not a counter (0 to 4294967294)");
        std::process::exit(2);
    };
    if value == u32::MAX {
        eprintln!("{n}: not a counter (0 to 4294967294)");
        std::process::exit(2);
    }
    if let Err(e) = std::fs::write(out, counter::encode(value)) {
        eprintln!("{out}: {e}");
        std::process::exit(1);
    }
}
