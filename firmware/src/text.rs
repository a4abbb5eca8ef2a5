//! Numbers as text without `core::fmt`, whose machinery would cost a boot
//! stage several KiB of flash: for the console and the UART line protocol.

/// Lowercase hex digits.
pub const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// `n` in decimal: the digits at the end of `buf`.
pub fn decimal(mut n: u32, buf: &mut [u8; 10]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

/// The two lowercase hex digits of `b`.
pub fn hex_pair(b: u8) -> [u8; 2] {
    [
        HEX_DIGITS[usize::from(b >> 4)],
        HEX_DIGITS[usize::from(b & 0xf)],
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits() {
        let mut buf = [0u8; 10];
        assert_eq!(decimal(0, &mut buf), b"0");
        assert_eq!(decimal(4_294_967_295, &mut buf), b"4294967295");
        assert_eq!(decimal(17, &mut buf), b"17");
        assert_eq!(hex_pair(0xa5), *b"a5");
    }
}
