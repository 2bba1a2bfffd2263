//! `switchboard test [DIR] [--filter PATTERN]`: runs the dialplan's spec
//! files (`*_spec.lua`, by default in `tests/` of `dialplan.dir`) against the
//! real dialplan runtime with simulated calls (`dialplan::SpecRunner`).

use std::path::PathBuf;

use dialplan::{ExtensionInfo, SpecRunner, SpecSettings};

use crate::config::{Config, ConfigSource};
use crate::error::Error;

/// Runs the specs; `Ok(true)` if every case passed, `Ok(false)` if one
/// failed (the report is on stdout), `Err` if they could not run at all.
pub fn test(
    source: &ConfigSource,
    dir: Option<PathBuf>,
    filter: Option<&str>,
) -> Result<bool, Error> {
    let config = Config::load(source)?;
    let settings = &config.dialplan;
    let dir = dir.unwrap_or_else(|| settings.dir.join("tests"));
    let files = dialplan::spec_files(&dir).map_err(|e| {
        Error::Check(format!(
            "cannot read the spec directory {}: {e} (give one: switchboard test DIR)",
            dir.display()
        ))
    })?;
    if files.is_empty() {
        return Err(Error::Check(format!(
            "no spec files (*_spec.lua) in {}",
            dir.display()
        )));
    }
    let spec = SpecSettings {
        dialplans: settings.dir.clone(),
        plugins: settings.plugins.clone(),
        sounds: settings.sounds.is_dir().then(|| settings.sounds.clone()),
        limits: settings.limits(),
        extensions: config
            .extensions
            .iter()
            .map(|e| ExtensionInfo {
                id: e.id.clone(),
                name: e.name.clone(),
                context: e.context.clone(),
                did: e.did.clone(),
                outbound: e.outbound,
                international: e.international,
            })
            .collect(),
    };
    let runner = SpecRunner::new(spec).map_err(|e| match e {
        dialplan::Error::Reload(r) => {
            let mut lines: Vec<String> = r.errors.iter().map(ToString::to_string).collect();
            let last = lines.pop().unwrap_or_else(|| "dialplan load failed".into());
            for line in lines {
                eprintln!("switchboard: {line}");
            }
            Error::Check(last)
        }
        other => Error::Check(format!("dialplan: {other}")),
    })?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Error::Runtime)?;
    let mut out = std::io::stdout().lock();
    let report = runtime
        .block_on(runner.run(&files, filter, &mut out))
        .map_err(|e| Error::Check(format!("cannot write the report: {e}")))?;
    if report.cases.is_empty() {
        return Err(Error::Check(match filter {
            Some(filter) => format!("no case in {} matches --filter {filter:?}", dir.display()),
            None => format!("no cases in {}", dir.display()),
        }));
    }
    Ok(report.failed() == 0)
}
