//! debconf's template cache (`/var/cache/debconf/templates.dat`, and `templates.dat-old`) holds
//! the templates of the installed packages — questions, their descriptions, defaults — as
//! debconf copied them from each package's `/var/lib/dpkg/info/<package>.templates`. No one's
//! answer is kept there (answers are in `config.dat`, passwords in `passwords.dat`), so a line of
//! it whose text the package's own templates hold is vendor text. A line that no installed
//! package's templates hold is not verified and keeps its severity.
//!
//! Both files come from the scanned disk: parsing is linear, and what is kept is bounded by the
//! caller's byte budget ([`TemplateText::new`]).

/// The shortest value checked against the templates: a shorter one (`true`, a one-word default)
/// says nothing about where it came from.
const MIN_VALUE: usize = 8;

/// The template name and the value of the field on `line` (1-based) of debconf's template cache
/// (`Name:` of its paragraph, and the text after `Field: ` on that line); `None` when the line is
/// not a field of a named paragraph.
pub fn template_line(data: &[u8], line: usize) -> Option<(String, String)> {
    let mut name: Option<&[u8]> = None;
    for (i, text) in data.split(|&b| b == b'\n').enumerate() {
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        if text.iter().all(u8::is_ascii_whitespace) {
            name = None;
        } else if let Some(n) = text.strip_prefix(b"Name: ") {
            name = Some(n);
        }
        if i + 1 == line {
            let colon = text.iter().position(|&b| b == b':')?;
            let field_ok = colon > 0
                && text[..colon]
                    .iter()
                    .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
            let value = text.get(colon + 1..)?;
            if !field_ok {
                return None;
            }
            return Some((
                String::from_utf8_lossy(name?).trim().to_owned(),
                String::from_utf8_lossy(value).into_owned(),
            ));
        }
    }
    None
}

/// Whitespace runs to one space, trimmed; debconf's escaped newlines (`\n`) count as whitespace,
/// and a lone ` .` line (a blank line of a template's extended description) disappears.
fn normalise(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        if line.trim() == "." {
            continue;
        }
        for word in line.replace("\\n", " ").split_whitespace() {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(word);
        }
    }
    out
}

/// The installed packages' debconf templates, whitespace-normalised, to check the lines of
/// debconf's template cache against.
#[derive(Debug, Default)]
pub struct TemplateText {
    packages: Vec<(String, String)>,
    bytes: usize,
    max_bytes: usize,
    /// Some templates were left out (the byte budget was spent).
    pub truncated: bool,
}

impl TemplateText {
    /// Empty; keeps at most `max_bytes` of template text.
    pub fn new(max_bytes: usize) -> Self {
        TemplateText {
            max_bytes,
            ..TemplateText::default()
        }
    }

    /// Add the `.templates` control file of `package`.
    pub fn add(&mut self, package: &str, data: &[u8]) {
        if self.bytes.saturating_add(data.len()) > self.max_bytes {
            self.truncated = true;
            return;
        }
        self.bytes += data.len();
        let text = normalise(&String::from_utf8_lossy(data));
        self.packages.push((package.to_owned(), text));
    }

    /// No templates were added.
    pub fn is_empty(&self) -> bool {
        self.packages.is_empty()
    }

    /// The package whose templates hold `value` (a field value of the template `template`):
    /// the package the template is named after first (`mariadb-server/…`), then any.
    pub fn vendor_of(&self, template: &str, value: &str) -> Option<&str> {
        let value = normalise(value);
        if value.len() < MIN_VALUE {
            return None;
        }
        let prefix = template.split('/').next().unwrap_or("");
        let holds = |(_, text): &&(String, String)| text.contains(&value);
        self.packages
            .iter()
            .filter(|(p, _)| p == prefix)
            .find(holds)
            .or_else(|| self.packages.iter().find(holds))
            .map(|(p, _)| p.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CACHE: &[u8] = b"Name: base-passwd/user-add\n\
Default: true\n\
Description: Add user?\n\
\n\
Name: pkg/root-password\n\
Type: password\n\
Description: New password for the root user:\n\
Extended_description: It is highly recommended that you set a password for the database root user.\\n\\nIf this field is left blank, the password will not be changed.\n\
Owners: pkg\n";

    const TEMPLATES: &[u8] = b"Template: pkg/root-password\n\
Type: password\n\
Description: New password for the root user:\n\
 It is highly recommended that you set a password for the\n\
 database root user.\n\
 .\n\
 If this field is left blank, the password will not be changed.\n";

    #[test]
    fn cache_lines_and_their_templates() {
        assert_eq!(
            template_line(CACHE, 3),
            Some(("base-passwd/user-add".into(), " Add user?".into()))
        );
        assert_eq!(template_line(CACHE, 4), None);
        assert_eq!(template_line(CACHE, 99), None);
        let (name, value) = template_line(CACHE, 8).unwrap();
        assert_eq!(name, "pkg/root-password");

        let mut t = TemplateText::new(1 << 20);
        t.add("other", b"Template: other/x\nDescription: nothing alike\n");
        t.add("pkg", TEMPLATES);
        assert_eq!(t.vendor_of(&name, &value), Some("pkg"));
        // Found in another package's templates when the named one does not hold it.
        assert_eq!(t.vendor_of("gone/x", &value), Some("pkg"));
        // A value the templates do not hold, or too short to say anything, is not vendor text.
        assert_eq!(t.vendor_of(&name, " password: hunter2-xyz"), None);
        assert_eq!(t.vendor_of(&name, " root"), None);
    }

    #[test]
    fn the_budget_bounds_what_is_kept() {
        let mut t = TemplateText::new(10);
        assert!(t.is_empty());
        t.add("pkg", TEMPLATES);
        assert!(t.truncated && t.is_empty());
        assert_eq!(template_line(b"no field here", 1), None);
        assert_eq!(template_line(b"Name: x\n: y", 2), None);
    }
}
