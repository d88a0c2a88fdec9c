//! Session and API tokens: 256-bit random values; only their SHA-256 is stored, so a leaked
//! database does not hand out sessions.

use sha2::{Digest, Sha256};

/// A new random token with its prefix (`sws_` session, `swt_` API token) and its stored hash.
pub fn new_token(prefix: &str) -> (String, String) {
    let bytes: [u8; 32] = rand::random();
    let token = format!("{prefix}{}", hex::encode(bytes));
    let hash = token_hash(&token);
    (token, hash)
}

pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_only_their_hash_is_kept() {
        let (a, ha) = new_token("sws_");
        let (b, _) = new_token("sws_");
        assert_ne!(a, b);
        assert_eq!(a.len(), 4 + 64);
        assert_eq!(token_hash(&a), ha);
        assert!(!ha.contains(&a[4..]));
    }
}
