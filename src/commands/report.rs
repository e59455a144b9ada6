//! `mailshift report REPORTFILE...`: reads `apply --report` files, and plan files for
//! completeness (never a server, never the config), and prints one fleet view of them
//! (`crate::fleet`, `render::fleet`).

use crate::cli::{ReportArgs, ReportFormat};
use crate::fleet::{self, Document, FleetError, Input, PlanInput};
use crate::printer::Printer;
use crate::render::fleet as render;
use crate::Outcome;

pub(super) fn run(args: &ReportArgs, printer: &Printer) -> anyhow::Result<Outcome> {
    let mut inputs = Vec::with_capacity(args.files.len());
    let mut plans = Vec::new();
    for path in &args.files {
        let name = path.display().to_string();
        let read_error = |source| FleetError::Read {
            file: name.clone(),
            source,
        };
        let bytes = std::fs::read(path).map_err(read_error)?;
        let report = match fleet::parse_document(&name, &bytes)? {
            Document::Report(report) => report,
            Document::Plan(plan) => {
                plans.push(PlanInput { name, plan });
                continue;
            }
        };
        // Reports written before the timestamps existed are ordered by their file's time.
        let fallback_time = std::fs::metadata(path)
            .and_then(|m| m.modified())
            .ok()
            .map(|t| {
                chrono::DateTime::<chrono::Utc>::from(t)
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
            });
        inputs.push(Input {
            name,
            report,
            fallback_time,
        });
    }
    let fleet = fleet::merge_with_plans(&inputs, &plans);
    match (args.format, args.failed) {
        // Renderers escape server and message text; the printer escapes the rest.
        (ReportFormat::Text, false) => printer.out(&render::render_text(&fleet)),
        (ReportFormat::Text, true) => printer.out(&render::render_failed_text(&fleet)),
        // serde_json escapes control characters; CSV cells hold none, and the CRLF
        // line ends of RFC 4180 must pass unescaped.
        (ReportFormat::Json, false) => {
            printer.out_raw((render::render_json(&fleet) + "\n").as_bytes())
        }
        (ReportFormat::Json, true) => {
            printer.out_raw((render::render_failed_json(&fleet) + "\n").as_bytes())
        }
        (ReportFormat::Csv, false) => printer.out_raw(render::render_csv(&fleet).as_bytes()),
        (ReportFormat::Csv, true) => printer.out_raw(render::render_failed_csv(&fleet).as_bytes()),
    }
    Ok(Outcome::Success)
}
