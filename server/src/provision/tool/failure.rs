//! A failed tool's error (`ToolError::Failed`, what a user sees of it)
//! should say why in one line, not only its exit status: this picks that
//! line from everything the tool printed, kept to a few hundred characters.

/// Picks what best explains a failure: Terraform's first error
/// diagnostic; else the first line that looks like an error, with the
/// last line of its details; else the last non-empty line.
#[derive(Default)]
pub(super) struct Summary {
    diagnostic: Option<String>,
    first_error: Option<String>,
    detail: Option<String>,
    recap: bool,
    last: Option<String>,
}

impl Summary {
    pub(super) fn diagnostic(&mut self, address: &str, summary: &str, detail: &str) {
        if self.diagnostic.is_some() {
            return;
        }
        let mut text = if address.is_empty() {
            summary.to_string()
        } else {
            format!("{address}: {summary}")
        };
        // The cause is at the end of a detail (e.g. "... Output: Error: ...").
        if let Some(last) = detail.lines().rev().find(|l| !l.trim().is_empty()) {
            text.push_str(" (");
            text.push_str(&shorten_tail(last.trim()));
            text.push(')');
        }
        self.diagnostic = Some(text);
    }

    pub(super) fn see(&mut self, text: &str) {
        let trimmed = text.trim_start_matches(['│', '╷', '╵', ' ']).trim();
        if trimmed.is_empty() {
            return;
        }
        let looks_like_error = ["Error:", "ERROR!", "fatal:", "error:"]
            .iter()
            .any(|p| trimmed.starts_with(p));
        if self.first_error.is_none() {
            if looks_like_error {
                self.first_error = Some(shorten(trimmed));
            }
        } else if trimmed.starts_with("PLAY RECAP") {
            // Ansible's recap says nothing the error line did not.
            self.recap = true;
        } else if !self.recap {
            self.detail = Some(shorten(trimmed));
        }
        self.last = Some(shorten(trimmed));
    }

    pub(super) fn best(self) -> Option<String> {
        if let Some(diagnostic) = self.diagnostic {
            return Some(diagnostic);
        }
        match (self.first_error, self.detail) {
            (Some(error), Some(detail)) => Some(format!("{error} ({detail})")),
            (Some(error), None) => Some(error),
            (None, _) => self.last,
        }
    }
}

const SHORT: usize = 300;

fn shorten(text: &str) -> String {
    if text.chars().count() <= SHORT {
        text.to_string()
    } else {
        let mut s: String = text.chars().take(SHORT).collect();
        s.push('…');
        s
    }
}

/// The end of `text`, at most [`SHORT`] characters.
fn shorten_tail(text: &str) -> String {
    let count = text.chars().count();
    if count <= SHORT {
        text.to_string()
    } else {
        let tail: String = text.chars().skip(count - SHORT).collect();
        format!("…{tail}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_prefer_error_lines() {
        let mut s = Summary::default();
        let terraform = [
            "Plan: 1 to add",
            "Error: local-exec provisioner error",
            "",
            "  with terraform_data.post_create,",
            "Output: Error: no such template",
        ];
        for line in terraform {
            s.see(line);
        }
        assert_eq!(
            s.best().unwrap(),
            "Error: local-exec provisioner error (Output: Error: no such template)"
        );
        let mut s = Summary::default();
        let ansible = [
            "TASK [fail] ***",
            "fatal: [desktop-abc123]: FAILED! => {\"msg\": \"no disk\"}",
            "PLAY RECAP ***",
            "desktop-abc123 : ok=1 failed=1",
        ];
        for line in ansible {
            s.see(line);
        }
        assert_eq!(
            s.best().unwrap(),
            "fatal: [desktop-abc123]: FAILED! => {\"msg\": \"no disk\"}"
        );
        let mut s = Summary::default();
        s.see("just this");
        s.see("   ");
        assert_eq!(s.best().unwrap(), "just this");
    }
}
