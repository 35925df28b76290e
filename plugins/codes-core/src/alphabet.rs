//! Fixed-width base-N numbers and check characters.
//!
//! The check character makes the position-weighted sum of the digits
//! (weights 1, 2, 3, … from the left, the check character weighing 1 more
//! than the last) a multiple of a prime `p` no larger than the alphabet.
//! With `p` prime and every weight below `p`, changing one digit by `d`
//! changes the sum by `w·d`, which `p` divides only when it divides `d`: so
//! every single mistyped character is caught when the alphabet has exactly
//! `p` characters (31, the print-safe alphabet), and every swap of two
//! adjacent different characters (the sum changes by their difference).

/// An alphabet of N distinct ASCII characters.
#[derive(Debug, Clone, Copy)]
pub struct Alphabet {
    chars: &'static [u8],
    /// The prime the weighted digit sum is checked against.
    prime: u32,
    /// Byte → digit, 255 for "not in the alphabet".
    digits: [u8; 128],
}

impl Alphabet {
    /// `prime` must be a prime no larger than `chars.len()`, and larger than
    /// the longest text checked.
    pub const fn new(chars: &'static [u8], prime: u32) -> Alphabet {
        let mut digits = [255u8; 128];
        let mut i = 0;
        while i < chars.len() {
            digits[chars[i] as usize] = i as u8;
            i += 1;
        }
        Alphabet {
            chars,
            prime,
            digits,
        }
    }

    /// How many characters (the base).
    pub const fn base(&self) -> u128 {
        self.chars.len() as u128
    }

    /// The digit of `c`, if `c` is in the alphabet.
    pub fn digit(&self, c: u8) -> Option<u8> {
        match self.digits.get(c as usize) {
            Some(&d) if d != 255 => Some(d),
            _ => None,
        }
    }

    /// Appends `value` as exactly `width` digits, most significant first.
    /// The caller makes sure `value < base^width`.
    ///
    /// Divisions are what this costs, above all in WebAssembly (where the
    /// print file derives its codes): a `u128` division is a library call,
    /// and every `u64` one a hardware divide. So the value is cut into
    /// groups of digits that fit a `u32` (31^6, 62^5), by dividing its
    /// 32-bit limbs by a constant, and each group into digits with `u32`
    /// arithmetic that the compiler turns into multiplications.
    pub fn push_fixed(&self, value: u128, width: usize, out: &mut Vec<u8>) {
        self.push_weighted(value, width, 1, out);
    }

    /// [`Alphabet::push_fixed`], returning the weighted sum of the digits
    /// pushed (the first weighing `first_weight`, the next one more…): the
    /// check character's sum, without reading the digits back.
    pub(crate) fn push_weighted(
        &self,
        value: u128,
        width: usize,
        first_weight: u64,
        out: &mut Vec<u8>,
    ) -> u64 {
        match self.chars.len() {
            31 => self.push_grouped::<31, 6>(value, width, first_weight, out),
            62 => self.push_grouped::<62, 5>(value, width, first_weight, out),
            _ => {
                let start = out.len();
                out.resize(start + width, 0);
                let (mut value, mut sum) = (value, 0);
                for (i, slot) in out[start..].iter_mut().enumerate().rev() {
                    let digit = (value % self.base()) as usize;
                    *slot = self.chars[digit];
                    sum += (first_weight + i as u64) * digit as u64;
                    value /= self.base();
                }
                sum
            }
        }
    }

    /// [`Alphabet::push_weighted`] for base `B`, `K` digits at a time
    /// (`B^K < 2^32`).
    fn push_grouped<const B: u32, const K: u32>(
        &self,
        value: u128,
        width: usize,
        first_weight: u64,
        out: &mut Vec<u8>,
    ) -> u64 {
        let group = const { (B as u64).pow(K) };
        const { assert!((B as u64).pow(K) <= u32::MAX as u64) };
        let start = out.len();
        out.resize(start + width, 0);
        let mut limbs = [
            (value >> 96) as u32,
            (value >> 64) as u32,
            (value >> 32) as u32,
            value as u32,
        ];
        // The first limb that is not zero (4: the value is zero).
        let mut top = limbs.iter().position(|&l| l != 0).unwrap_or(4);
        let mut slots = out[start..].iter_mut().enumerate().rev();
        let mut sum = 0;
        loop {
            let mut rem = 0u64;
            for limb in &mut limbs[top..] {
                let cur = (rem << 32) | *limb as u64;
                *limb = (cur / group) as u32;
                rem = cur % group;
            }
            while top < 4 && limbs[top] == 0 {
                top += 1;
            }
            let mut digits = rem as u32;
            for _ in 0..K {
                let Some((i, slot)) = slots.next() else {
                    return sum;
                };
                let digit = digits % B;
                *slot = self.chars[digit as usize];
                sum += (first_weight + i as u64) * digit as u64;
                digits /= B;
            }
        }
    }

    /// Reads `text` (alphabet characters only) as a number; `None` on a
    /// character outside the alphabet or an overflow.
    pub fn read(&self, text: &[u8]) -> Option<u128> {
        let mut v: u128 = 0;
        for &c in text {
            v = v
                .checked_mul(self.base())?
                .checked_add(self.digit(c)? as u128)?;
        }
        Some(v)
    }

    fn weighted_sum(&self, text: &[u8]) -> Option<u32> {
        // Reduced once at the end (a division each step is what the print
        // file paid for): any text under 2^20 characters sums below 2^48.
        let mut sum = 0u64;
        for (i, &c) in text.iter().enumerate() {
            sum += (i as u64 + 1) * self.digit(c)? as u64;
        }
        Some((sum % self.prime as u64) as u32)
    }

    /// The check character for `text` (alphabet characters only).
    pub fn check_char(&self, text: &[u8]) -> Option<u8> {
        let sum = self.weighted_sum(text)? as u64;
        Some(self.check_of_sum(sum, self.check_inverse(text.len())))
    }

    /// The inverse of the check character's weight for texts of `len`
    /// characters: w⁻¹ = w^(p-2) mod p (by square-and-multiply), the same
    /// for every code of one format, so a batch computes it once.
    pub(crate) fn check_inverse(&self, len: usize) -> u64 {
        let p = self.prime as u64;
        let (mut inv, mut base, mut exp) = (1u64, (len as u64 + 1) % p, p - 2);
        while exp > 0 {
            if exp & 1 == 1 {
                inv = inv * base % p;
            }
            base = base * base % p;
            exp >>= 1;
        }
        inv
    }

    /// The check character of digits whose weighted sum is `sum`, the
    /// weight's inverse already known: the c with sum + w·c ≡ 0 (mod p) is
    /// c = -sum · w⁻¹.
    pub(crate) fn check_of_sum(&self, sum: u64, inverse: u64) -> u8 {
        let p = self.prime as u64;
        self.chars[((p - sum % p) % p * inverse % p) as usize]
    }

    /// True when the last character of `text` is the check character of
    /// the rest.
    pub fn check_ok(&self, text: &[u8]) -> bool {
        !text.is_empty() && self.weighted_sum(text) == Some(0)
    }
}

/// 31 characters that survive printing and hand typing: no 0/O, 1/I/L.
pub const PRINT_SAFE: Alphabet = Alphabet::new(b"23456789ABCDEFGHJKMNPQRSTUVWXYZ", 31);

/// Digits and both cases of letters: GS1 AI 21 allows them all. Checked
/// modulo 61, so of all single substitutions only `0` ↔ `z` goes unseen
/// (these serials are scanned, not typed).
pub const BASE62: Alphabet = Alphabet::new(
    b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
    61,
);

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};

    use super::*;

    #[test]
    fn fixed_width_digits_are_those_of_plain_u128_division() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        for alphabet in [PRINT_SAFE, BASE62] {
            for bits in [0u32, 1, 31, 32, 33, 63, 64, 65, 95, 96, 97, 104, 127, 128] {
                for _ in 0..200 {
                    let value = if bits == 0 {
                        0
                    } else {
                        rng.r#gen::<u128>() >> (128 - bits)
                    };
                    let mut fast = Vec::new();
                    let sum = alphabet.push_weighted(value, 28, 3, &mut fast);
                    let want: u64 = fast
                        .iter()
                        .enumerate()
                        .map(|(i, &c)| (i as u64 + 3) * alphabet.digit(c).unwrap() as u64)
                        .sum();
                    assert_eq!(sum, want, "{value}");
                    let (mut v, mut plain) = (value, vec![0u8; 28]);
                    for slot in plain.iter_mut().rev() {
                        *slot = alphabet.chars[(v % alphabet.base()) as usize];
                        v /= alphabet.base();
                    }
                    assert_eq!(fast, plain, "{value}");
                }
            }
        }
    }

    #[test]
    fn fixed_width_numbers_read_back() {
        for v in [0u128, 1, 30, 31, 12345678901234567890, (1 << 100) + 7] {
            let mut out = Vec::new();
            PRINT_SAFE.push_fixed(v, 29, &mut out);
            assert_eq!(out.len(), 29);
            assert_eq!(PRINT_SAFE.read(&out), Some(v));
        }
    }

    #[test]
    fn a_check_character_catches_every_single_substitution_and_adjacent_swap() {
        let body = b"23456789ABCDEFGHJKMN";
        let check = PRINT_SAFE.check_char(body).unwrap();
        let mut full = body.to_vec();
        full.push(check);
        assert!(PRINT_SAFE.check_ok(&full));
        for i in 0..full.len() {
            for &c in b"23456789ABCDEFGHJKMNPQRSTUVWXYZ" {
                if c == full[i] {
                    continue;
                }
                let mut typo = full.clone();
                typo[i] = c;
                assert!(!PRINT_SAFE.check_ok(&typo), "{i} {}", c as char);
            }
        }
        for i in 0..full.len() - 1 {
            let mut swapped = full.clone();
            swapped.swap(i, i + 1);
            if swapped != full {
                assert!(!PRINT_SAFE.check_ok(&swapped), "swap at {i}");
            }
        }
    }

    #[test]
    fn characters_outside_the_alphabet_are_not_digits() {
        for c in [b'0', b'1', b'I', b'L', b'O', b'a', b'-', 200u8] {
            assert_eq!(PRINT_SAFE.digit(c), None);
        }
        assert_eq!(PRINT_SAFE.read(b"2O"), None);
    }
}
