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
    pub fn push_fixed(&self, mut value: u128, width: usize, out: &mut Vec<u8>) {
        let start = out.len();
        out.resize(start + width, 0);
        for slot in out[start..].iter_mut().rev() {
            *slot = self.chars[(value % self.base()) as usize];
            value /= self.base();
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
        let mut sum = 0u32;
        for (i, &c) in text.iter().enumerate() {
            sum = (sum + (i as u32 + 1) * self.digit(c)? as u32) % self.prime;
        }
        Some(sum)
    }

    /// The check character for `text` (alphabet characters only).
    pub fn check_char(&self, text: &[u8]) -> Option<u8> {
        let p = self.prime;
        let w = text.len() as u32 + 1;
        // Find c with sum + w·c ≡ 0 (mod p): c = -sum · w⁻¹, w⁻¹ = w^(p-2).
        let mut inv = 1u32;
        for _ in 0..p - 2 {
            inv = inv * (w % p) % p;
        }
        let c = (p - self.weighted_sum(text)?) % p * inv % p;
        Some(self.chars[c as usize])
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
    use super::*;

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
