//! age v1 files (<https://age-encryption.org/v1>, c2sp.org/age) encrypted
//! to one passphrase: the format of an encrypted key file, which the `age`
//! command-line tool (`age -d`) opens as well.
//!
//! The subset written and read is exactly age's passphrase form: a header
//! with one `scrypt` stanza (salt, work factor, the wrapped file key) and
//! its HMAC, then the STREAM payload (ChaCha20-Poly1305 in 64 KiB chunks);
//! written ASCII-armored, read armored or binary. ChaCha20-Poly1305, HKDF,
//! HMAC and PBKDF2 are ring's; scrypt (RFC 7914) is below, on ring's
//! PBKDF2, checked against the RFC's vectors.
//!
//! Invariants: nothing is returned before the passphrase has unwrapped the
//! file key and the header's MAC and every chunk's tag have verified; a
//! wrong passphrase is told apart from a damaged file; the plaintext is
//! zeroed when dropped.

use std::num::NonZeroU32;

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine as _;
use rand_core::RngCore as _;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305};
use ring::{hkdf, hmac, pbkdf2};
use zeroize::Zeroizing;

/// The first line of an armored age file.
pub const ARMOR_BEGIN: &str = "-----BEGIN AGE ENCRYPTED FILE-----";
const ARMOR_END: &str = "-----END AGE ENCRYPTED FILE-----";
/// The first line of a binary age file.
const VERSION_LINE: &str = "age-encryption.org/v1";
/// Armor and stanza bodies are wrapped at 64 columns.
const COLUMNS: usize = 64;
/// Plaintext bytes per payload chunk.
const CHUNK: usize = 64 * 1024;
const TAG: usize = 16;

/// The scrypt work factor (log2 N) written by default: age's own, about a
/// second and 256 MiB to open on a laptop, which is what guessing
/// passphrases costs per guess.
pub const DEFAULT_WORK_FACTOR: u8 = 18;
/// The largest work factor opened: 1 GiB of memory. A file asking for more
/// is refused rather than allowed to exhaust the machine.
pub const MAX_WORK_FACTOR: u8 = 20;
/// scrypt's block size and parallelism, fixed by age.
const SCRYPT_R: usize = 8;
const SCRYPT_P: usize = 1;
const SCRYPT_LABEL: &[u8] = b"age-encryption.org/v1/scrypt";

/// Why a file did not open; a caller tells the passphrase apart from the file.
#[derive(Debug, thiserror::Error)]
pub enum AgeError {
    #[error("wrong passphrase")]
    WrongPassphrase,
    #[error("not an age file encrypted to a passphrase: {0}")]
    Unsupported(String),
    #[error("damaged age file: {0}")]
    Damaged(String),
    #[error(
        "its scrypt work factor {0} is above {MAX_WORK_FACTOR} (more than 1 GiB of memory to open); \
         re-encrypt it with a lower one"
    )]
    WorkFactorTooHigh(u8),
}

/// Whether `bytes` look like an age file (armored or binary): the test a
/// reader uses to choose between a plain and an encrypted file.
pub fn is_age(bytes: &[u8]) -> bool {
    let text = trim_ascii_start(bytes);
    text.starts_with(ARMOR_BEGIN.as_bytes()) || text.starts_with(VERSION_LINE.as_bytes())
}

/// `plaintext` encrypted to `passphrase`, ASCII-armored.
pub fn encrypt_armored(plaintext: &[u8], passphrase: &str, work_factor: u8) -> String {
    armor(&encrypt(plaintext, passphrase, work_factor))
}

/// `plaintext` encrypted to `passphrase` (binary age).
pub fn encrypt(plaintext: &[u8], passphrase: &str, work_factor: u8) -> Vec<u8> {
    let mut file_key = Zeroizing::new([0u8; 16]);
    let mut salt = [0u8; 16];
    let mut nonce = [0u8; 16];
    rand_core::OsRng.fill_bytes(file_key.as_mut());
    rand_core::OsRng.fill_bytes(&mut salt);
    rand_core::OsRng.fill_bytes(&mut nonce);

    let wrap_key = scrypt_wrap_key(passphrase, &salt, work_factor);
    let mut body = file_key.to_vec();
    aead(&wrap_key)
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key([0; 12]),
            Aad::empty(),
            &mut body,
        )
        .expect("ChaCha20-Poly1305 seals any 16 bytes");
    let mut header = format!(
        "{VERSION_LINE}\n-> scrypt {} {work_factor}\n{}\n---",
        STANDARD_NO_PAD.encode(salt),
        // 32 bytes: one line of 43 characters, shorter than a full line.
        STANDARD_NO_PAD.encode(&body)
    );
    let mac = header_mac(&file_key, header.as_bytes());
    header.push_str(&format!(" {}\n", STANDARD_NO_PAD.encode(mac.as_ref())));

    let mut out = header.into_bytes();
    out.extend_from_slice(&nonce);
    let payload = aead(&payload_key(&file_key, &nonce));
    let chunks: Vec<&[u8]> = if plaintext.is_empty() {
        vec![&[]]
    } else {
        plaintext.chunks(CHUNK).collect()
    };
    for (counter, chunk) in chunks.iter().enumerate() {
        let mut sealed = chunk.to_vec();
        let last = counter + 1 == chunks.len();
        payload
            .seal_in_place_append_tag(chunk_nonce(counter as u64, last), Aad::empty(), &mut sealed)
            .expect("ChaCha20-Poly1305 seals a 64 KiB chunk");
        out.extend_from_slice(&sealed);
    }
    out
}

/// Opens an age file (armored or binary) encrypted to one passphrase.
pub fn decrypt(bytes: &[u8], passphrase: &str) -> Result<Zeroizing<Vec<u8>>, AgeError> {
    let binary = if trim_ascii_start(bytes).starts_with(ARMOR_BEGIN.as_bytes()) {
        dearmor(bytes)?
    } else {
        bytes.to_vec()
    };
    let header = Header::parse(&binary)?;
    if header.work_factor > MAX_WORK_FACTOR {
        return Err(AgeError::WorkFactorTooHigh(header.work_factor));
    }
    let wrap_key = scrypt_wrap_key(passphrase, &header.salt, header.work_factor);
    let mut body = header.wrapped_key.clone();
    let file_key: [u8; 16] = aead(&wrap_key)
        .open_in_place(
            Nonce::assume_unique_for_key([0; 12]),
            Aad::empty(),
            &mut body,
        )
        .map_err(|_| AgeError::WrongPassphrase)?
        .try_into()
        .map_err(|_| AgeError::Damaged("the file key is not 16 bytes".into()))?;
    let file_key = Zeroizing::new(file_key);
    let key = hmac::Key::new(hmac::HMAC_SHA256, header_key(&file_key).as_ref());
    hmac::verify(&key, header.mac_input, &header.mac)
        .map_err(|_| AgeError::Damaged("the header's MAC does not verify".into()))?;

    let payload = header.payload;
    if payload.len() < 16 {
        return Err(AgeError::Damaged("the payload has no nonce".into()));
    }
    let (nonce, sealed) = payload.split_at(16);
    let opener = aead(&payload_key(&file_key, nonce));
    let pieces: Vec<&[u8]> = sealed.chunks(CHUNK + TAG).collect();
    if pieces.is_empty() {
        return Err(AgeError::Damaged("the payload is cut off".into()));
    }
    let mut plaintext = Zeroizing::new(Vec::with_capacity(sealed.len()));
    for (counter, piece) in pieces.iter().enumerate() {
        let last = counter + 1 == pieces.len();
        let mut chunk = Zeroizing::new(piece.to_vec());
        let opened = opener
            .open_in_place(chunk_nonce(counter as u64, last), Aad::empty(), &mut chunk)
            .map_err(|_| AgeError::Damaged(format!("payload chunk {counter} does not verify")))?;
        if opened.is_empty() && counter > 0 {
            return Err(AgeError::Damaged("an empty last chunk".into()));
        }
        plaintext.extend_from_slice(opened);
    }
    Ok(plaintext)
}

/// The parts of a header with one scrypt stanza.
struct Header<'a> {
    salt: [u8; 16],
    work_factor: u8,
    wrapped_key: Vec<u8>,
    /// The header up to and including `---`: what the MAC covers.
    mac_input: &'a [u8],
    mac: Vec<u8>,
    payload: &'a [u8],
}

impl<'a> Header<'a> {
    fn parse(file: &'a [u8]) -> Result<Header<'a>, AgeError> {
        let unsupported = |why: &str| AgeError::Unsupported(why.to_string());
        let damaged = |why: &str| AgeError::Damaged(why.to_string());
        let mut lines = Lines { file, at: 0 };
        if lines.next().ok_or_else(|| unsupported("empty"))? != VERSION_LINE.as_bytes() {
            return Err(unsupported("its first line is not age-encryption.org/v1"));
        }
        let stanza = lines.next().ok_or_else(|| damaged("no recipient"))?;
        let arguments: Vec<&[u8]> = match stanza.strip_prefix(b"-> ") {
            Some(rest) => rest.split(|&byte| byte == b' ').collect(),
            None => return Err(damaged("no recipient stanza")),
        };
        if arguments.first() != Some(&&b"scrypt"[..]) {
            return Err(unsupported(
                "its recipient is not a passphrase (scrypt); it was encrypted to a key",
            ));
        }
        let [_, salt, work_factor] = arguments[..] else {
            return Err(damaged("the scrypt stanza does not have two arguments"));
        };
        let salt: [u8; 16] = STANDARD_NO_PAD
            .decode(salt)
            .ok()
            .and_then(|salt| salt.try_into().ok())
            .ok_or_else(|| damaged("the scrypt salt is not 16 bytes of canonical base64"))?;
        let work_factor = std::str::from_utf8(work_factor)
            .ok()
            .filter(|text| {
                !text.is_empty()
                    && !text.starts_with('0')
                    && text.bytes().all(|byte| byte.is_ascii_digit())
            })
            .and_then(|text| text.parse::<u8>().ok())
            .ok_or_else(|| damaged("the scrypt work factor is not a decimal number"))?;
        // A body is lines of 64 columns ending with a shorter one.
        let mut body_text = Vec::new();
        loop {
            let line = lines
                .next()
                .ok_or_else(|| damaged("the header is cut off"))?;
            body_text.extend_from_slice(line);
            if line.len() < COLUMNS {
                break;
            }
        }
        let wrapped_key = STANDARD_NO_PAD
            .decode(&body_text)
            .ok()
            .filter(|body| body.len() == 32)
            .ok_or_else(|| damaged("the scrypt stanza's body is not 32 bytes of base64"))?;
        let mac_start = lines.at;
        let mac_line = lines
            .next()
            .ok_or_else(|| damaged("the header has no MAC"))?;
        let Some(mac) = mac_line.strip_prefix(b"--- ") else {
            return Err(if mac_line.starts_with(b"-> ") {
                unsupported("it has more than one recipient (a passphrase file has one)")
            } else {
                damaged("the header's MAC line is malformed")
            });
        };
        let mac = STANDARD_NO_PAD
            .decode(mac)
            .ok()
            .filter(|mac| mac.len() == 32)
            .ok_or_else(|| damaged("the header's MAC is not 32 bytes of base64"))?;
        Ok(Header {
            salt,
            work_factor,
            wrapped_key,
            mac_input: &file[..mac_start + 3],
            mac,
            payload: &file[lines.at..],
        })
    }
}

/// Lines of a header: each ends with `\n` (not included).
struct Lines<'a> {
    file: &'a [u8],
    at: usize,
}

impl<'a> Iterator for Lines<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        let rest = &self.file[self.at..];
        let end = rest.iter().position(|&byte| byte == b'\n')?;
        self.at += end + 1;
        Some(&rest[..end])
    }
}

fn armor(binary: &[u8]) -> String {
    let encoded = STANDARD.encode(binary);
    let mut out = format!("{ARMOR_BEGIN}\n");
    for line in encoded.as_bytes().chunks(COLUMNS) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(ARMOR_END);
    out.push('\n');
    out
}

/// The binary inside an armored file: full 64-column lines of padded
/// base64 and a shorter last one, between the two armor lines; whitespace
/// around the armor is allowed, inside it none.
fn dearmor(bytes: &[u8]) -> Result<Vec<u8>, AgeError> {
    let damaged = |why: &str| AgeError::Damaged(why.to_string());
    let text = std::str::from_utf8(bytes).map_err(|_| damaged("the armor is not text"))?;
    let lines: Vec<&str> = text.trim().lines().collect();
    if lines.len() < 3 || lines[0] != ARMOR_BEGIN || lines[lines.len() - 1] != ARMOR_END {
        return Err(damaged("the armor's BEGIN or END line is missing"));
    }
    let body = &lines[1..lines.len() - 1];
    let (last, full) = body.split_last().expect("at least one line");
    if full.iter().any(|line| line.len() != COLUMNS) || last.is_empty() || last.len() > COLUMNS {
        return Err(damaged("the armor's lines are not 64 columns"));
    }
    STANDARD
        .decode(body.concat())
        .map_err(|error| AgeError::Damaged(format!("the armor is not base64: {error}")))
}

fn trim_ascii_start(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|byte| !byte.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    &bytes[start..]
}

fn aead(key: &[u8; 32]) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, key).expect("a 32-byte key"))
}

/// The STREAM nonce: an 11-byte big-endian counter, then 1 on the last chunk.
fn chunk_nonce(counter: u64, last: bool) -> Nonce {
    let mut nonce = [0u8; 12];
    nonce[3..11].copy_from_slice(&counter.to_be_bytes());
    nonce[11] = u8::from(last);
    Nonce::assume_unique_for_key(nonce)
}

/// The key that wraps the file key: scrypt of the passphrase with age's
/// label before the salt, r = 8, p = 1.
fn scrypt_wrap_key(passphrase: &str, salt: &[u8; 16], work_factor: u8) -> Zeroizing<[u8; 32]> {
    let mut labelled = SCRYPT_LABEL.to_vec();
    labelled.extend_from_slice(salt);
    let mut key = Zeroizing::new([0u8; 32]);
    scrypt(
        passphrase.as_bytes(),
        &labelled,
        work_factor,
        SCRYPT_R,
        SCRYPT_P,
        key.as_mut(),
    );
    key
}

/// HKDF-SHA-256 of the file key, age's way (`salt`, `info`).
fn hkdf_32(file_key: &[u8; 16], salt: &[u8], info: &[u8]) -> Zeroizing<[u8; 32]> {
    struct Len32;
    impl hkdf::KeyType for Len32 {
        fn len(&self) -> usize {
            32
        }
    }
    let mut out = Zeroizing::new([0u8; 32]);
    hkdf::Salt::new(hkdf::HKDF_SHA256, salt)
        .extract(file_key)
        .expand(&[info], Len32)
        .and_then(|okm| okm.fill(out.as_mut()))
        .expect("32 bytes are within HKDF's limit");
    out
}

fn header_key(file_key: &[u8; 16]) -> Zeroizing<[u8; 32]> {
    hkdf_32(file_key, &[], b"header")
}

fn payload_key(file_key: &[u8; 16], nonce: &[u8]) -> Zeroizing<[u8; 32]> {
    hkdf_32(file_key, nonce, b"payload")
}

fn header_mac(file_key: &[u8; 16], mac_input: &[u8]) -> hmac::Tag {
    hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, header_key(file_key).as_ref()),
        mac_input,
    )
}

/// scrypt (RFC 7914) with N = 2^log_n, filling `out`.
fn scrypt(password: &[u8], salt: &[u8], log_n: u8, r: usize, p: usize, out: &mut [u8]) {
    let one = NonZeroU32::new(1).expect("1 is not zero");
    let block_words = 32 * r;
    let mut blocks = Zeroizing::new(vec![0u8; 128 * r * p]);
    pbkdf2::derive(pbkdf2::PBKDF2_HMAC_SHA256, one, salt, password, &mut blocks);
    let n = 1usize << log_n;
    let mut scratch = Zeroizing::new(vec![0u32; block_words * n]);
    for block in blocks.chunks_mut(128 * r) {
        let mut x: Zeroizing<Vec<u32>> = Zeroizing::new(
            block
                .chunks(4)
                .map(|word| u32::from_le_bytes(word.try_into().expect("4 bytes")))
                .collect(),
        );
        ro_mix(&mut x, &mut scratch, n, r);
        for (bytes, word) in block.chunks_mut(4).zip(x.iter()) {
            bytes.copy_from_slice(&word.to_le_bytes());
        }
    }
    pbkdf2::derive(pbkdf2::PBKDF2_HMAC_SHA256, one, &blocks, password, out);
}

/// scryptROMix: `x` (32r words) mixed through `n` stored states.
fn ro_mix(x: &mut [u32], scratch: &mut [u32], n: usize, r: usize) {
    let words = 32 * r;
    let mut y = Zeroizing::new(vec![0u32; words]);
    for i in 0..n {
        scratch[i * words..(i + 1) * words].copy_from_slice(x);
        block_mix(x, &mut y, r);
    }
    for _ in 0..n {
        // Integerify: the first word of the last 64-byte block, mod N (a
        // power of two no larger than 2^32, so the low word decides).
        let j = x[(2 * r - 1) * 16] as usize & (n - 1);
        for (word, stored) in x.iter_mut().zip(&scratch[j * words..(j + 1) * words]) {
            *word ^= stored;
        }
        block_mix(x, &mut y, r);
    }
}

/// scryptBlockMix with Salsa20/8; `y` is scratch space of the same size.
fn block_mix(b: &mut [u32], y: &mut [u32], r: usize) {
    let mut x = [0u32; 16];
    x.copy_from_slice(&b[(2 * r - 1) * 16..]);
    for i in 0..2 * r {
        for (word, input) in x.iter_mut().zip(&b[i * 16..(i + 1) * 16]) {
            *word ^= input;
        }
        salsa20_8(&mut x);
        // Even blocks first, then odd: Y0, Y2, ..., Y1, Y3, ...
        let to = if i % 2 == 0 { i / 2 } else { r + i / 2 };
        y[to * 16..(to + 1) * 16].copy_from_slice(&x);
    }
    b.copy_from_slice(y);
}

fn salsa20_8(block: &mut [u32; 16]) {
    let mut x = *block;
    let quarter = |x: &mut [u32; 16], a: usize, b: usize, c: usize, d: usize| {
        x[b] ^= x[a].wrapping_add(x[d]).rotate_left(7);
        x[c] ^= x[b].wrapping_add(x[a]).rotate_left(9);
        x[d] ^= x[c].wrapping_add(x[b]).rotate_left(13);
        x[a] ^= x[d].wrapping_add(x[c]).rotate_left(18);
    };
    for _ in 0..4 {
        // Columns, then rows.
        quarter(&mut x, 0, 4, 8, 12);
        quarter(&mut x, 5, 9, 13, 1);
        quarter(&mut x, 10, 14, 2, 6);
        quarter(&mut x, 15, 3, 7, 11);
        quarter(&mut x, 0, 1, 2, 3);
        quarter(&mut x, 5, 6, 7, 4);
        quarter(&mut x, 10, 11, 8, 9);
        quarter(&mut x, 15, 12, 13, 14);
    }
    for (word, mixed) in block.iter_mut().zip(x) {
        *word = word.wrapping_add(mixed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7914 section 12, the vectors small enough for a debug build.
    #[test]
    fn scrypt_matches_rfc_7914() {
        let mut out = [0u8; 64];
        scrypt(b"", b"", 4, 1, 1, &mut out);
        assert_eq!(
            hex::encode(out),
            "77d6576238657b203b19ca42c18a0497f16b4844e3074ae8dfdffa3fede21442\
             fcd0069ded0948f8326a753a0fc81f17e8d3e0fb2e0d3628cf35e20c38d18906"
        );
        scrypt(b"password", b"NaCl", 10, 8, 16, &mut out);
        assert_eq!(
            hex::encode(out),
            "fdbabe1c9d3472007856e7190d01e9fe7c6ad7cbc8237830e77376634b373162\
             2eaf30d92e22a3886ff109279d9830dac727afb94a83ee6d8360cbdfa2cc0640"
        );
    }

    #[test]
    fn a_file_opens_with_its_passphrase_only() {
        for size in [0, 1, 200, CHUNK, CHUNK + 1, 2 * CHUNK + 7] {
            let plaintext: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            let armored = encrypt_armored(&plaintext, "correct horse", 4);
            assert!(is_age(armored.as_bytes()));
            let opened = decrypt(armored.as_bytes(), "correct horse").unwrap();
            assert_eq!(*opened, plaintext, "size {size}");
            let binary = encrypt(&plaintext, "correct horse", 4);
            assert_eq!(*decrypt(&binary, "correct horse").unwrap(), plaintext);
            assert!(matches!(
                decrypt(armored.as_bytes(), "wrong horse"),
                Err(AgeError::WrongPassphrase)
            ));
        }
    }

    #[test]
    fn damage_is_told_from_a_wrong_passphrase() {
        let binary = encrypt(b"secret", "pass", 4);
        // A flipped payload byte, a flipped MAC, a cut-off file.
        let mut payload = binary.clone();
        *payload.last_mut().unwrap() ^= 1;
        assert!(matches!(
            decrypt(&payload, "pass"),
            Err(AgeError::Damaged(_))
        ));
        let text = String::from_utf8_lossy(&binary).into_owned();
        let mac_at = text.find("--- ").unwrap() + 4;
        let mut mac = binary.clone();
        mac[mac_at] = if mac[mac_at] == b'A' { b'B' } else { b'A' };
        assert!(matches!(decrypt(&mac, "pass"), Err(AgeError::Damaged(_))));
        assert!(decrypt(&binary[..binary.len() - 20], "pass").is_err());
        // A work factor past the limit is refused before any work.
        let greedy = text.replacen(" 4\n", " 30\n", 1);
        assert!(matches!(
            decrypt(greedy.as_bytes(), "pass"),
            Err(AgeError::WorkFactorTooHigh(30))
        ));
        assert!(!is_age(b"{\"type\": \"ceasefire-ledger-ed25519-key\"}"));
    }
}
