//! Reading TOML configuration files so that every problem is reported at once, each with the
//! dotted path of its key (`camera[1].source: ...`). Shared by the agent's and the controller's
//! config loaders: serde stops at the first error and does not name keys this precisely, and no
//! crate we know of collects all problems with their key paths.

use std::fmt;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

/// One thing wrong with a file: which key and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted path of the key, e.g. `camera[1].source`; empty for whole-file problems.
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}

/// `config file F has N problems:` and one line per problem, each starting with the file name
/// (so that editors and people find it).
pub fn render_problems(file: &Path, problems: &[Problem]) -> String {
    let mut s = format!(
        "config file {} has {} problem{}:",
        file.display(),
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    );
    for p in problems {
        s.push_str(&format!("\n  {}: {p}", file.display()));
    }
    s
}

/// A configuration file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {}: {source}", file.display())]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{}", render_problems(file, problems))]
    Invalid {
        file: PathBuf,
        problems: Vec<Problem>,
    },
}

impl ConfigError {
    /// The individual problems (empty for a read error).
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Read { .. } => &[],
            ConfigError::Invalid { problems, .. } => problems,
        }
    }
}

/// The text of a config file.
pub fn read_file(file: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
        file: file.to_owned(),
        source,
    })
}

/// Parses `text` (from `file`) and hands the tree to `walk`, which returns the configuration
/// (if it could build one) and every problem it found; any problem makes the whole file invalid.
pub fn parse_config<T>(
    file: &Path,
    text: &str,
    walk: impl FnOnce(&toml::Table) -> (Option<T>, Vec<Problem>),
) -> Result<T, ConfigError> {
    let invalid = |problems| ConfigError::Invalid {
        file: file.to_owned(),
        problems,
    };
    let root = parse_toml(text).map_err(|p| invalid(vec![p]))?;
    match walk(&root) {
        (Some(cfg), problems) if problems.is_empty() => Ok(cfg),
        (_, problems) => Err(invalid(problems)),
    }
}

/// Parses TOML text; a syntax error becomes the single whole-file problem.
pub fn parse_toml(text: &str) -> Result<toml::Table, Problem> {
    text.parse().map_err(|e: toml::de::Error| Problem {
        key: String::new(),
        message: format!("not valid TOML: {}", e.to_string().trim_end()),
    })
}

/// `parent.key`, or `key` at the top.
pub fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

/// Walks a TOML tree, collecting every problem. Each getter returns `None` when the value is
/// present but unusable (the problem is recorded); absent optional keys give their default.
#[derive(Debug, Default)]
pub struct TomlReader {
    pub problems: Vec<Problem>,
}

impl TomlReader {
    pub fn problem(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            key: key.into(),
            message: message.into(),
        });
    }

    /// Records every key of `table` that is not in `allowed`.
    pub fn unknown_keys(&mut self, table: &toml::Table, path: &str, allowed: &[&str]) {
        for k in table.keys() {
            if !allowed.contains(&k.as_str()) {
                self.problem(
                    join(path, k),
                    format!("unknown key (allowed here: {})", allowed.join(", ")),
                );
            }
        }
    }

    pub fn table<'t>(
        &mut self,
        parent: &'t toml::Table,
        path: &str,
        key: &str,
        required: bool,
    ) -> Option<&'t toml::Table> {
        match parent.get(key) {
            Some(toml::Value::Table(t)) => Some(t),
            Some(v) => {
                self.problem(
                    join(path, key),
                    format!("must be a table ([{key}]), found {}", v.type_str()),
                );
                None
            }
            None => {
                if required {
                    self.problem(join(path, key), "missing required section");
                }
                None
            }
        }
    }

    /// A required RFC 3339 time with offset (a TOML string or datetime).
    pub fn time(
        &mut self,
        t: &toml::Table,
        path: &str,
        key: &str,
    ) -> Option<chrono::DateTime<chrono::Utc>> {
        let text = match t.get(key) {
            Some(toml::Value::String(s)) => s.clone(),
            Some(toml::Value::Datetime(d)) => d.to_string(),
            Some(v) => {
                self.problem(
                    join(path, key),
                    format!("must be an RFC 3339 time, found {}", v.type_str()),
                );
                return None;
            }
            None => {
                self.problem(join(path, key), "missing required key");
                return None;
            }
        };
        match chrono::DateTime::parse_from_rfc3339(&text) {
            Ok(d) => Some(d.with_timezone(&chrono::Utc)),
            Err(e) => {
                self.problem(
                    join(path, key),
                    format!("{text:?} is not an RFC 3339 time with offset (e.g. 2026-11-21T06:00:00Z): {e}"),
                );
                None
            }
        }
    }

    /// A top-level section that may be absent (then every key takes its default).
    pub fn optional_section<'t>(
        &mut self,
        root: &'t toml::Table,
        key: &str,
        allowed: &[&str],
    ) -> &'t toml::Table {
        static EMPTY: std::sync::LazyLock<toml::Table> = std::sync::LazyLock::new(toml::Table::new);
        let t = self.table(root, "", key, false).unwrap_or(&EMPTY);
        self.unknown_keys(t, key, allowed);
        t
    }

    pub fn string(
        &mut self,
        t: &toml::Table,
        path: &str,
        key: &str,
        required: bool,
    ) -> Option<String> {
        match t.get(key) {
            Some(toml::Value::String(s)) => Some(s.clone()),
            Some(v) => {
                self.problem(
                    join(path, key),
                    format!("must be a string, found {}", v.type_str()),
                );
                None
            }
            None => {
                if required {
                    self.problem(join(path, key), "missing required key");
                }
                None
            }
        }
    }

    /// An integer within `range`, or `default` when absent. `None` when present but invalid.
    pub fn int(
        &mut self,
        t: &toml::Table,
        path: &str,
        key: &str,
        range: RangeInclusive<i64>,
        default: i64,
    ) -> Option<i64> {
        match t.get(key) {
            None => Some(default),
            Some(toml::Value::Integer(i)) if range.contains(i) => Some(*i),
            Some(toml::Value::Integer(i)) => {
                self.problem(
                    join(path, key),
                    format!("{i} is out of range ({}..={})", range.start(), range.end()),
                );
                None
            }
            Some(v) => {
                self.problem(
                    join(path, key),
                    format!("must be an integer, found {}", v.type_str()),
                );
                None
            }
        }
    }

    /// A number (integer or float) within `range`, or `default` when absent.
    pub fn number(
        &mut self,
        t: &toml::Table,
        path: &str,
        key: &str,
        range: RangeInclusive<f64>,
        default: f64,
    ) -> Option<f64> {
        let v = match t.get(key) {
            None => return Some(default),
            Some(toml::Value::Integer(i)) => *i as f64,
            Some(toml::Value::Float(f)) => *f,
            Some(v) => {
                self.problem(
                    join(path, key),
                    format!("must be a number, found {}", v.type_str()),
                );
                return None;
            }
        };
        if range.contains(&v) {
            Some(v)
        } else {
            self.problem(
                join(path, key),
                format!("{v} is out of range ({}..={})", range.start(), range.end()),
            );
            None
        }
    }

    /// A boolean, or `default` when absent.
    pub fn bool(&mut self, t: &toml::Table, path: &str, key: &str, default: bool) -> Option<bool> {
        match t.get(key) {
            None => Some(default),
            Some(toml::Value::Boolean(b)) => Some(*b),
            Some(v) => {
                self.problem(
                    join(path, key),
                    format!("must be true or false, found {}", v.type_str()),
                );
                None
            }
        }
    }

    /// An absolute path to an existing file (existence checked only when `check_machine`).
    pub fn file(
        &mut self,
        t: &toml::Table,
        path: &str,
        key: &str,
        check_machine: bool,
    ) -> Option<PathBuf> {
        let f = PathBuf::from(self.string(t, path, key, false)?);
        if !f.is_absolute() {
            self.problem(
                join(path, key),
                format!("{} must be an absolute path", f.display()),
            );
            return None;
        }
        if check_machine {
            if let Err(e) = std::fs::metadata(&f) {
                self.problem(join(path, key), format!("{}: {e}", f.display()));
                return None;
            }
        }
        Some(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collects_every_problem_with_its_key() {
        let root = parse_toml("a = 1\n[s]\nn = \"x\"\nb = 3\nf = -1.5\nzz = 0\n").unwrap();
        let mut r = TomlReader::default();
        r.unknown_keys(&root, "", &["s"]);
        let s = r.table(&root, "", "s", true).unwrap();
        r.unknown_keys(s, "s", &["n", "b", "f"]);
        assert_eq!(r.int(s, "s", "n", 0..=9, 0), None);
        assert_eq!(r.bool(s, "s", "b", false), None);
        assert_eq!(r.number(s, "s", "f", 0.0..=1.0, 0.5), None);
        assert_eq!(r.int(s, "s", "missing", 0..=9, 7), Some(7));
        let keys: Vec<_> = r.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["a", "s.zz", "s.n", "s.b", "s.f"]);
        let text = render_problems(Path::new("/etc/x.toml"), &r.problems);
        assert!(text.starts_with("config file /etc/x.toml has 5 problems:"));
        assert!(text.contains("/etc/x.toml: s.n: must be an integer, found string"));
    }

    #[test]
    fn syntax_error_is_one_whole_file_problem() {
        let p = parse_toml("a = [").unwrap_err();
        assert!(p.key.is_empty());
        assert!(p.message.starts_with("not valid TOML"), "{}", p.message);
    }
}
