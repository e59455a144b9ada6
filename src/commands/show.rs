//! `mailshift show PLANFILE`: renders a saved plan without touching any server.

use crate::cli::ShowArgs;
use crate::planfile::PlanFile;
use crate::printer::Printer;
use crate::Outcome;

pub(super) fn run(args: &ShowArgs, printer: &Printer) -> anyhow::Result<Outcome> {
    let plan = PlanFile::load(&args.plan_file)?;
    super::print_plan(printer, &plan, args.format, args.detail);
    Ok(if plan.has_errors() {
        Outcome::Failed
    } else {
        Outcome::Success
    })
}
