//! `oauthimap diagnose`: the login diagnostic, as text or JSON. Exits 1 when a step failed.

use std::fmt::Write as _;

use oauthimap_app::{AccountSelector, AppError, Core, DiagnoseOptions, Outcome};

use crate::output::Output;

pub async fn execute(
    app: &Core,
    out: &Output,
    account: String,
    filter: Option<String>,
    options: &DiagnoseOptions,
    transcript: bool,
) -> Result<(), AppError> {
    let report = app
        .diagnose(&AccountSelector::new(account, filter), options)
        .await?;
    out.record(&report, || {
        let mut text = format!(
            "Diagnostic for {} on {} ({})\n",
            report.mailbox, report.server, report.security
        );
        for step in &report.steps {
            let mark = match step.outcome {
                Outcome::Ok => "ok  ",
                Outcome::Warning => "WARN",
                Outcome::Failed => "FAIL",
                Outcome::Skipped => "skip",
            };
            let _ = writeln!(text, "[{mark}] {:<14} {}", step.name, step.detail);
            if let Some(hint) = &step.hint {
                let _ = writeln!(text, "       hint: {hint}");
            }
        }
        if transcript {
            text.push_str("\nTranscript (tokens redacted):\n");
            for line in &report.transcript {
                let _ = writeln!(text, "  {line}");
            }
        }
        text.push_str(if report.ok {
            "\nResult: the account can log in.\n"
        } else {
            "\nResult: FAILED (see the hints above).\n"
        });
        text
    });
    if report.ok {
        Ok(())
    } else {
        Err(AppError::DiagnosticFailed)
    }
}
