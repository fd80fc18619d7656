//! Where the session user's password comes from. It is never taken from the
//! command line, never printed, and never put in an error message.

use std::io::{BufRead, IsTerminal};

use crate::error::CliError;

/// The environment variable holding the session password.
pub const PASSWORD_ENV: &str = "DAAS_SESSION_PASSWORD";

/// Where to read the password from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `DAAS_SESSION_PASSWORD`.
    Env,
    /// The first line of standard input (`--password-stdin`).
    Stdin,
    /// A hidden prompt on the terminal.
    Prompt,
}

/// Picks the password source: `--password-stdin` first, then the
/// environment, then a prompt when standard input is a terminal. `None`
/// when no session user is asked for.
pub fn choose(
    session_user: bool,
    password_stdin: bool,
    env_set: bool,
    stdin_is_terminal: bool,
) -> Result<Option<Source>, CliError> {
    if !session_user {
        return Ok(None);
    }
    if password_stdin {
        Ok(Some(Source::Stdin))
    } else if env_set {
        Ok(Some(Source::Env))
    } else if stdin_is_terminal {
        Ok(Some(Source::Prompt))
    } else {
        Err(CliError::Usage(format!(
            "--session-user needs a password: set {PASSWORD_ENV}, pass --password-stdin, \
             or run in a terminal to be prompted"
        )))
    }
}

/// The password of `session_user`, or `None` without a session user.
pub fn resolve(
    session_user: Option<&str>,
    password_stdin: bool,
) -> Result<Option<String>, CliError> {
    let env = std::env::var_os(PASSWORD_ENV).filter(|v| !v.is_empty());
    let source = choose(
        session_user.is_some(),
        password_stdin,
        env.is_some(),
        std::io::stdin().is_terminal(),
    )?;
    let password = match source {
        None => return Ok(None),
        Some(Source::Env) => env
            .and_then(|v| v.into_string().ok())
            .ok_or_else(|| CliError::Password(format!("{PASSWORD_ENV} is not valid UTF-8")))?,
        Some(Source::Stdin) => first_line(std::io::stdin().lock())?,
        Some(Source::Prompt) => {
            let prompt = format!(
                "Password for {} on the desktop: ",
                session_user.unwrap_or("the session user")
            );
            rpassword::prompt_password(prompt)
                .map_err(|err| CliError::Password(format!("cannot read the password: {err}")))?
        }
    };
    if password.is_empty() {
        return Err(CliError::Password(
            "the session password is empty".to_owned(),
        ));
    }
    Ok(Some(password))
}

/// The first line of `input`, without its end-of-line.
fn first_line(mut input: impl BufRead) -> Result<String, CliError> {
    let mut line = String::new();
    let read = input.read_line(&mut line).map_err(|err| {
        CliError::Password(format!(
            "cannot read the password from standard input: {err}"
        ))
    })?;
    if read == 0 {
        return Err(CliError::Password(
            "--password-stdin: standard input is empty".to_owned(),
        ));
    }
    let end = line.trim_end_matches(['\n', '\r']).len();
    line.truncate(end);
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_session_user_needs_no_password() {
        for flags in [
            (false, false, false),
            (true, true, true),
            (false, true, false),
        ] {
            let (stdin, env, tty) = flags;
            assert_eq!(choose(false, stdin, env, tty).ok(), Some(None));
        }
    }

    #[test]
    fn password_stdin_wins() {
        assert_eq!(
            choose(true, true, true, true).ok(),
            Some(Some(Source::Stdin))
        );
        assert_eq!(
            choose(true, true, false, false).ok(),
            Some(Some(Source::Stdin))
        );
    }

    #[test]
    fn then_the_environment() {
        assert_eq!(
            choose(true, false, true, true).ok(),
            Some(Some(Source::Env))
        );
        assert_eq!(
            choose(true, false, true, false).ok(),
            Some(Some(Source::Env))
        );
    }

    #[test]
    fn then_a_prompt_on_a_terminal() {
        assert_eq!(
            choose(true, false, false, true).ok(),
            Some(Some(Source::Prompt))
        );
    }

    #[test]
    fn otherwise_a_usage_error() {
        let err = choose(true, false, false, false).err();
        assert!(matches!(&err, Some(CliError::Usage(m)) if m.contains(PASSWORD_ENV)));
        assert_eq!(err.map(|e| e.exit_code()), Some(2));
    }

    #[test]
    fn reads_one_line_without_its_end() {
        let line = first_line(&b"s3cret pass\r\nsecond line\n"[..]).ok();
        assert_eq!(line.as_deref(), Some("s3cret pass"));
        let line = first_line(&b"no newline"[..]).ok();
        assert_eq!(line.as_deref(), Some("no newline"));
        assert!(first_line(&b""[..]).is_err());
    }
}
