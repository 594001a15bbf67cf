//! The placeholder check: whether a matched value is a template, a reference, an instruction
//! to the reader or a made-up value rather than a secret, and whether a password a person chose
//! is guessable. Sees secret bytes, so nothing here logs or formats its input.

/// Values published in vendor documentation; never findings.
pub(crate) const DOCUMENTATION_VALUES: &[&str] = &[
    "AKIAIOSFODNN7EXAMPLE",
    "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY",
    "AKIAI44QH8DHBEXAMPLE",
    // The Cosmos DB emulator's well-known key.
    "C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw==",
    // The Google Cloud SDK's installed-application OAuth client secret, published in its source
    // and written into every `application_default_credentials.json` (not a secret).
    "d-FL95Q19q7MQmFpd7hHD0Ty",
    // The same for gsutil/boto's OAuth client, in every legacy `.boto` file gcloud writes.
    "ZmssLNjJy2998hD4CTg2ejr2",
    // The BigQuery CLI's installed-application client secret, published in the Cloud SDK.
    "wbER7576mc_1YOII0dGk7jEE",
    // The fixed password of every P12 service-account key Google issues.
    "notasecret",
    // Azurite's well-known development storage key.
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==",
];

/// Whole values that say there is no value here (a type, a flag, a prompt instruction).
const NON_VALUE_WORDS: &[&str] = &[
    "none",
    "null",
    "nil",
    "true",
    "false",
    "undefined",
    "string",
    "value",
    "required",
    "optional",
    "empty",
    "default",
    "prompt",
    "ask",
    "env",
    "yes",
    "no",
    "on",
    "off",
    "enabled",
    "disabled",
    "define",
    "undef",
];

/// Whole values that are words, not random secrets: in a field that is certainly a credential
/// they are real (weak) passwords.
const WEAK_WORDS: &[&str] = &[
    "password", "passwd", "secret", "token", "pass", "pwd", "admin", "root", "user", "username",
    "key", "apikey", "api_key",
];

/// Markers that make a value a template, a reference to where the real value lives, or an
/// instruction to the reader, wherever they appear. Never a value.
const TEMPLATE_MARKERS: &[&str] = &[
    "changeme",
    "change_me",
    "change-me",
    "placeholder",
    "your_",
    "your-",
    "yourpass",
    "yoursecret",
    "yourtoken",
    "yourkey",
    "xxxx",
    "****",
    "...",
    "\u{2026}",
    "####",
    "redacted",
    "os.environ",
    "process.env",
    "getenv",
    "environ[",
    "env[",
    "env(",
    "secretkeyref",
    "valuefrom",
    "vault:",
    "keyvault",
    "insert",
    "replace",
    "todo",
    "fixme",
    "<%",
    "%>",
    "<your",
    "_here",
    "-here",
    "*sensitive*data*deleted*",
    // Jasypt and similar encrypted-property wrappers: `ENC(…)`.
    "enc(",
    // printf-style formats (`'%s:%s' % (user, pw)`) and anonymous FTP's by-convention password.
    "%s",
    "anonymous",
];

/// Markers of made-up test values: a placeholder in general, a weak password in a field that is
/// certainly a credential.
const WEAK_MARKERS: &[&str] = &[
    "example", "dummy", "sample", "fake", "test", "lorem", "foobar",
];

/// Passwords people choose, beyond the words above and the word shape
/// [`is_weak_password`] recognises.
const COMMON_PASSWORDS: &[&str] = &[
    "123456",
    "1234567",
    "12345678",
    "123456789",
    "1234567890",
    "111111",
    "000000",
    "123123",
    "654321",
    "qwerty",
    "qwerty123",
    "qwertyuiop",
    "asdfgh",
    "asdfghjkl",
    "zxcvbnm",
    "1q2w3e4r",
    "1qaz2wsx",
    "abc123",
    "iloveyou",
    "letmein",
    "trustno1",
    "passw0rd",
    "p@ssw0rd",
    "p@ssword",
    "pa$$word",
    "admin123",
    "root123",
    "toor",
    "welcome1",
    "qazwsx",
];

/// Why a value is not a random secret (see [`placeholder_kind`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placeholder {
    /// Not a value at all: a template, a reference, an instruction (`${VAR}`, `<password>`,
    /// `changeme`, `***`), a documentation value, or empty. Always dropped.
    Template,
    /// A word, a test value or a trivial sequence (`password`, `admin`, `test123`, `123456`):
    /// dropped in general, but a real weak password where the field is certainly a credential.
    Weak,
}

/// The built-in placeholder check: true when `secret` is a template, a reference to where the
/// real value lives, a documentation example or an obviously made-up value.
pub fn is_placeholder(secret: &[u8]) -> bool {
    placeholder_kind(secret).is_some()
}

/// Classify `secret`: `None` for a value that looks like a real secret, else why it does not.
pub fn placeholder_kind(secret: &[u8]) -> Option<Placeholder> {
    let Ok(s) = std::str::from_utf8(secret) else {
        return None;
    };
    let t = s.trim_matches(|c: char| c.is_whitespace() || c == '"' || c == '\'');
    if t.is_empty() || t.chars().all(|c| "*x#.-_?X".contains(c)) {
        return Some(Placeholder::Template);
    }
    if DOCUMENTATION_VALUES.iter().any(|d| t.contains(d)) {
        return Some(Placeholder::Template);
    }
    let lower = t.to_ascii_lowercase();
    if NON_VALUE_WORDS.contains(&lower.as_str())
        || TEMPLATE_MARKERS.iter().any(|m| lower.contains(m))
    {
        return Some(Placeholder::Template);
    }
    // Templates and references: ${VAR}, $VAR, $(cmd), {{ var }}, %VAR%, <your-key>, [secret].
    let b = t.as_bytes();
    if t.starts_with("${")
        || t.starts_with("$(")
        || t.starts_with("%(")
        || t.starts_with("{{")
        || t.starts_with("#{")
        || t.contains("${")
        || t.contains("{{")
        || (b.len() > 1
            && ((b[0] == b'$'
                // `$VAR`, `${x}`, `$obj->x`, `$Config::Config{x}`: an interpolation (a crypt
                // hash, `$y$j9T$…`, has more `$`).
                && (((matches!(b[1], b'_' | b'{') || b[1].is_ascii_alphabetic())
                    && !b[1..].contains(&b'$'))
                    || b[1..]
                        .iter()
                        .all(|c| c.is_ascii_alphanumeric() || *c == b'_')))
                || (b[0] == b'%' && b[b.len() - 1] == b'%')
                // `@@DIR_PASSWORD@@`: a marker a package's configure script replaces.
                || (b.len() > 4 && t.starts_with("@@") && t.ends_with("@@"))
                || (b[0] == b'<' && b[b.len() - 1] == b'>')
                || (b[0] == b'[' && b[b.len() - 1] == b']')
                || (b[0] == b'{' && b[b.len() - 1] == b'}')))
    {
        return Some(Placeholder::Template);
    }
    // A metavariable or a variable's name in capitals (`--password=PASS`, `PASSWORD`,
    // `DB_PASS`, `HASŁO` in a translated usage text): short, or words joined by `_`/`-`. A
    // longer run of capitals alone may be a random key (an `AKIA…` id without a digit).
    let chars = t.chars().count();
    if chars >= 2
        && t.chars().all(|c| c.is_uppercase() || c == '_' || c == '-')
        && t.chars().any(char::is_alphabetic)
        && (chars <= 12 || t.contains(['_', '-']))
    {
        return Some(Placeholder::Template);
    }
    if t.len() < 3
        || WEAK_WORDS.contains(&lower.as_str())
        || WEAK_MARKERS.iter().any(|m| lower.contains(m))
    {
        return Some(Placeholder::Weak);
    }
    // One repeated character, or a short repeated unit ("abababab", "123123123").
    let distinct = {
        let mut seen = [false; 256];
        b.iter()
            .filter(|&&c| !std::mem::replace(&mut seen[usize::from(c)], true))
            .count()
    };
    if distinct <= 2 && b.len() >= 4 {
        return Some(Placeholder::Weak);
    }
    if b.len() >= 8 && (1..=4).any(|p| b.len() % p == 0 && b.chunks(p).all(|c| c == &b[..p])) {
        return Some(Placeholder::Weak);
    }
    // Runs like "123456789" or "abcdefgh".
    let sequential = b
        .windows(2)
        .filter(|w| w[1] == w[0].wrapping_add(1))
        .count();
    (b.len() >= 6 && sequential + 1 == b.len()).then_some(Placeholder::Weak)
}

/// True when a password a person chose is guessable: a placeholder-like word or test value, a
/// common password, or one dictionary-shaped word (letters only, at most its first one a
/// capital, 4 to 12 of them) optionally followed by up to four digits and one symbol
/// (`sunshine`, `Summer2024!`, `dragon99`).
pub fn is_weak_password(secret: &[u8]) -> bool {
    if placeholder_kind(secret).is_some() {
        return true;
    }
    let Ok(s) = std::str::from_utf8(secret) else {
        return false;
    };
    let t = s.trim_matches(|c: char| c.is_whitespace() || c == '"' || c == '\'');
    let lower = t.to_ascii_lowercase();
    if COMMON_PASSWORDS.contains(&lower.as_str()) {
        return true;
    }
    let b = t.as_bytes();
    let letters = b.iter().take_while(|c| c.is_ascii_alphabetic()).count();
    let word = &b[..letters];
    let mut rest = &b[letters..];
    if let Some((last, body)) = rest.split_last()
        && last.is_ascii_punctuation()
    {
        rest = body;
    }
    (4..=12).contains(&letters)
        && word[1..].iter().all(u8::is_ascii_lowercase)
        && rest.len() <= 4
        && rest.iter().all(u8::is_ascii_digit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders() {
        for p in [
            "${DB_PASSWORD}",
            "<your-key>",
            "changeme",
            "xxxxxxxx",
            "********",
            "os.environ['X']",
            "process.env.TOKEN",
            "aaaaaaaa",
            "abababab",
            "EXAMPLE123",
            "dummy",
            "test1234",
            "$PASSWORD",
            "{{ .Values.password }}",
            "%PASSWORD%",
            "@@DIR_PASSWORD@@",
            "12345678",
            "password",
            "AKIAIOSFODNN7EXAMPLE",
            "sk-...",
            "ghp_\u{2026}",
            // Metavariables, interpolations, formats, conventions.
            "PASS",
            "DB_PASSWORD",
            "HAS\u{141}O",
            "$Config::Config{cf_email}",
            "$obj->password",
            "%s:%s",
            "-anonymous@",
            "define",
            "notasecret",
            "ENC(G6N718UuyPE5bHyWKyuLQSm02auQPUtm)",
        ] {
            assert!(is_placeholder(p.as_bytes()), "{p}");
        }
        // Capitals alone, long and unjoined, may be a random key.
        assert!(!is_placeholder(b"AKIAQYLPMNHHHFPZAMQW"));
        // A crypt hash starts with `$` and a letter but is no interpolation.
        assert!(!is_placeholder(
            b"$y$j9T$Zq8wM2rX9vLkT4nB7cD1e/$F3gH5jK6mP9sQ2vX5yZ8bC1eF4hJ7kM0pR3tU6"
        ));
        for s in ["s3cr3tP4ss!", "Zq8wM2rX9vLk", "hunter2-prod"] {
            assert!(!is_placeholder(s.as_bytes()), "{s}");
        }
    }

    #[test]
    fn placeholder_kinds_and_weak_passwords() {
        for p in [
            "${DB_PASSWORD}",
            "<password>",
            "changeme",
            "***",
            "",
            "null",
            "password_here",
        ] {
            assert_eq!(
                placeholder_kind(p.as_bytes()),
                Some(Placeholder::Template),
                "{p}"
            );
        }
        for p in ["password", "admin", "test123", "example", "123456", "ab"] {
            assert_eq!(
                placeholder_kind(p.as_bytes()),
                Some(Placeholder::Weak),
                "{p}"
            );
        }
        for p in [
            "sunshine",
            "Summer2024!",
            "dragon99",
            "qwerty123",
            "letmein",
            "hunter2",
        ] {
            assert!(placeholder_kind(p.as_bytes()).is_none(), "{p}");
            assert!(is_weak_password(p.as_bytes()), "{p}");
        }
        for p in [
            "Ncqe28ajY75FnCtq",
            "jHRg80USP2W5",
            "correct-horse-battery",
            "SuNshine",
        ] {
            assert!(!is_weak_password(p.as_bytes()), "{p}");
        }
    }
}
