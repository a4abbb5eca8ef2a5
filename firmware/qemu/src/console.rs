//! Console lines on UART0, without `core::fmt` (its machinery would cost the
//! boot stage several KiB of flash): strings, decimal numbers, hex bytes and
//! image versions.

use firmware::image::ImageVersion;

use crate::nrf51::Uart;

/// A line-oriented writer on UART0.
#[derive(Debug)]
pub struct Console(Uart);

impl Console {
    /// Take UART0 (TX only) as the console.
    pub fn init() -> Self {
        Self(Uart::init())
    }

    /// The UART, for programs that also read from it.
    pub fn uart(&mut self) -> &mut Uart {
        &mut self.0
    }

    /// Text as it is.
    pub fn str(&mut self, s: &str) -> &mut Self {
        for &b in s.as_bytes() {
            self.0.write(b);
        }
        self
    }

    /// A number in decimal.
    pub fn dec(&mut self, n: u32) -> &mut Self {
        for &d in firmware::text::decimal(n, &mut [0u8; 10]) {
            self.0.write(d);
        }
        self
    }

    /// Bytes as lowercase hex digits.
    pub fn hex(&mut self, bytes: &[u8]) -> &mut Self {
        for &b in bytes {
            for d in firmware::text::hex_pair(b) {
                self.0.write(d);
            }
        }
        self
    }

    /// `MAJ.MIN.REV+BUILD`, as imgtool prints it.
    pub fn version(&mut self, v: ImageVersion) -> &mut Self {
        self.dec(v.major.into())
            .str(".")
            .dec(v.minor.into())
            .str(".")
            .dec(v.revision.into())
            .str("+")
            .dec(v.build)
    }

    /// End the line.
    pub fn end(&mut self) {
        self.str("\n");
    }
}
