//! `mailshift show PLANFILE`: renders a saved plan without touching any server.

use crate::cli::{Format, ShowArgs};
use crate::planfile::PlanFile;
use crate::render::text::{render_plan, TextOptions};
use crate::Outcome;

pub fn run(args: &ShowArgs) -> anyhow::Result<Outcome> {
    let plan = PlanFile::load(&args.plan_file)?;
    match args.format {
        Format::Json => println!("{}", plan.to_json()),
        Format::Text => print!(
            "{}",
            render_plan(
                &plan,
                TextOptions {
                    detail: args.detail
                }
            )
        ),
    }
    Ok(if plan.has_errors() {
        Outcome::Failed
    } else {
        Outcome::Success
    })
}
