//! xtask's own small flag parser: `--name value`, `--name=value`, positionals.

use anyhow::bail;

#[derive(Debug, Default)]
pub struct Flags {
    values: Vec<(String, String)>,
    pub positional: Vec<String>,
}

impl Flags {
    /// The last value given for `--name`.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.values.iter().rev().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// Every value given for `--name`, in order.
    pub fn values(&self, name: &str) -> Vec<&str> {
        self.values.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str()).collect()
    }
}

/// Parses `args`, accepting the flags named in `with_value`; anything else starting with
/// `--` is an error naming the accepted ones.
pub fn parse(args: &[String], with_value: &[&str]) -> anyhow::Result<Flags> {
    let mut flags = Flags::default();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let Some(flag) = arg.strip_prefix("--") else {
            flags.positional.push(arg.clone());
            continue;
        };
        let (name, inline) = match flag.split_once('=') {
            Some((name, value)) => (name, Some(value.to_owned())),
            None => (flag, None),
        };
        if with_value.contains(&name) {
            let value = match inline {
                Some(value) => value,
                None => match args.next() {
                    Some(value) => value.clone(),
                    None => bail!("--{name} needs a value"),
                },
            };
            flags.values.push((name.to_owned(), value));
        } else {
            let known: Vec<String> = with_value.iter().map(|n| format!("--{n}")).collect();
            bail!("unknown flag --{name}; known: {}", known.join(" "));
        }
    }
    Ok(flags)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn values_and_positionals() {
        let args = strings(&["pi@host", "--port", "22", "--opt=a=b", "--opt", "c"]);
        let flags = parse(&args, &["port", "opt"]).unwrap();
        assert_eq!(flags.positional, ["pi@host"]);
        assert_eq!(flags.value("port"), Some("22"));
        assert_eq!(flags.values("opt"), ["a=b", "c"]);
        assert_eq!(flags.value("missing"), None);
    }

    #[test]
    fn unknown_flags_and_missing_values_are_errors() {
        let error = parse(&strings(&["--prot", "22"]), &["port"]).unwrap_err();
        assert!(error.to_string().contains("--port"), "{error}");
        assert!(parse(&strings(&["--port"]), &["port"]).is_err());
    }
}
