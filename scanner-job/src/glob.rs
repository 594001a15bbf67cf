//! The path globs of `exclusions.paths`: `**` matches across `/` (and `**/` also matches
//! nothing), `*` and `?` match within one path segment, every other character itself.

/// A path glob (`exclusions.paths`): `**` matches across `/`, `*` and `?` within one segment.
pub(crate) struct Glob {
    pattern: Vec<char>,
}

impl Glob {
    /// The glob `p`.
    pub(crate) fn new(p: &str) -> Self {
        Glob {
            pattern: p.chars().collect(),
        }
    }

    /// Whether the whole of `path` matches.
    pub(crate) fn matches(&self, path: &str) -> bool {
        let text: Vec<char> = path.chars().collect();
        glob_match(&self.pattern, &text)
    }
}

fn glob_match(p: &[char], t: &[char]) -> bool {
    // Iterative matcher with memo over (pattern index, text index); bounded by |p|·|t|.
    let (np, nt) = (p.len(), t.len());
    let mut memo = vec![None::<bool>; (np + 1) * (nt + 1)];
    fn go(p: &[char], t: &[char], i: usize, j: usize, memo: &mut [Option<bool>]) -> bool {
        let idx = i * (t.len() + 1) + j;
        if let Some(v) = memo[idx] {
            return v;
        }
        let v = if i == p.len() {
            j == t.len()
        } else if p[i] == '*' && p.get(i + 1) == Some(&'*') {
            // `**/` also matches nothing.
            let next = if p.get(i + 2) == Some(&'/') {
                i + 3
            } else {
                i + 2
            };
            go(p, t, next, j, memo)
                || (next != i + 2 && go(p, t, i + 2, j, memo))
                || (j < t.len() && go(p, t, i, j + 1, memo))
        } else if p[i] == '*' {
            go(p, t, i + 1, j, memo) || (j < t.len() && t[j] != '/' && go(p, t, i, j + 1, memo))
        } else if j < t.len() && (p[i] == t[j] || (p[i] == '?' && t[j] != '/')) {
            go(p, t, i + 1, j + 1, memo)
        } else {
            false
        };
        memo[idx] = Some(v);
        v
    }
    go(p, t, 0, 0, &mut memo)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        let m = |p: &str, t: &str| Glob::new(p).matches(t);
        assert!(m("/var/lib/docker/**", "/var/lib/docker/a/b/c"));
        assert!(!m("/var/lib/docker/**", "/var/lib/dockerx/a"));
        assert!(m("**/.env", "/opt/app/.env"));
        assert!(m("**/.env", ".env"));
        assert!(m(
            "/home/*/.aws/credentials",
            "/home/alice/.aws/credentials"
        ));
        assert!(!m("/home/*/.aws/credentials", "/home/a/b/.aws/credentials"));
        assert!(m("/tmp/?.txt", "/tmp/a.txt"));
        assert!(!m("/tmp/?.txt", "/tmp/ab.txt"));
    }
}
