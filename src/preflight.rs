//! Checks that need the disk or the network stack, made by `switchboard check`
//! (and logged by `run`) after the config has parsed: every extension's
//! context has a `dialplans/NAME.lua`, the prompts directory exists and its
//! WAV files are ones `play` can use, `media.bind` is an address of this
//! machine.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::Path;

use crate::config::{Config, ConfigSource};
use crate::dialplan::EMBEDDED_DIALPLANS;

/// Most prompt files looked at (a sounds directory with more is unusual;
/// the rest are not checked).
const MAX_PROMPTS_CHECKED: usize = 2_000;

/// What the checks found, each a line in the config error form.
#[derive(Debug, Default)]
pub struct Findings {
    /// Configs that break calls: `check` exits 1.
    pub errors: Vec<String>,
    /// Probably not meant, but calls may still work.
    pub warnings: Vec<String>,
}

/// Runs every check on `config`.
pub fn inspect(config: &Config) -> Findings {
    let mut findings = Findings::default();
    contexts(config, &mut findings);
    sounds(config, &mut findings);
    media_bind(config, &mut findings);
    findings
}

/// An extension whose context has no `NAME.lua`: every call it places gets 500.
fn contexts(config: &Config, findings: &mut Findings) {
    let dir = &config.dialplan.dir;
    let exists = |context: &str| {
        let file = format!("{context}.lua");
        if dir.is_dir() {
            dir.join(&file).is_file()
        } else {
            // The embedded demo config seeds the dialplan at the first run;
            // a config file without the directory is reported by the
            // dialplan check.
            config.source != ConfigSource::Embedded
                || EMBEDDED_DIALPLANS.iter().any(|(name, _)| *name == file)
        }
    };
    for ext in &config.extensions {
        if exists(&ext.context) {
            continue;
        }
        let at = config
            .locations
            .extension_context
            .get(&ext.id)
            .unwrap_or(&config.locations.file);
        findings.errors.push(format!(
            "config {at}: extension {}: context {:?} has no dialplan {}; every call from {} would be refused with 500 — \
             create that file (with a route(call) function) or set context to an existing one",
            ext.id,
            ext.context,
            dir.join(format!("{}.lua", ext.context)).display(),
            ext.id,
        ));
    }
    for trunk in &config.trunks {
        if exists(&trunk.context) {
            continue;
        }
        let at = config
            .locations
            .trunk_context
            .get(&trunk.name)
            .unwrap_or(&config.locations.file);
        findings.errors.push(format!(
            "config {at}: trunk {}: context {:?} has no dialplan {}; every call from the carrier would be refused with 500 — \
             create that file (with a route(call) function) or set context to an existing one",
            trunk.name,
            trunk.context,
            dir.join(format!("{}.lua", trunk.context)).display(),
        ));
    }
}

/// The prompts directory. A missing one is a warning, not an error: an
/// office whose dialplan plays nothing (it only rings phones) works without
/// it. Each WAV file `play` cannot use (stereo, 44.1 kHz, ...) is a warning
/// naming the file and what is wrong.
fn sounds(config: &Config, findings: &mut Findings) {
    let dir = &config.dialplan.sounds;
    if !dir.is_dir() {
        // The embedded demo config writes its prompts at the first run; a
        // missing dialplan directory is the error to fix first.
        if config.source != ConfigSource::Embedded && config.dialplan.dir.is_dir() {
            findings.warnings.push(format!(
                "config {}: dialplan.sounds: {} does not exist; a call:play() of any prompt will fail and end the call — \
                 create it (switchboard init writes the demo prompts) or set sounds in [dialplan]",
                config.locations.file,
                dir.display()
            ));
        }
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        findings.warnings.push(format!(
            "config {}: dialplan.sounds: cannot read {}; prompts will not play",
            config.locations.file,
            dir.display()
        ));
        return;
    };
    let mut wavs: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| is_wav(p))
        .take(MAX_PROMPTS_CHECKED)
        .collect();
    wavs.sort();
    for path in wavs {
        if let Err(e) = media::Prompt::load(&path) {
            findings.warnings.push(format!(
                "prompt {}: play cannot use it: {e}",
                path.display()
            ));
        }
    }
}

fn is_wav(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("wav"))
        && path.is_file()
}

/// `media.bind` must be an address of this machine (or 0.0.0.0 / ::):
/// binding a UDP socket to it, port 0, tells.
fn media_bind(config: &Config, findings: &mut Findings) {
    let ip = config.media.bind;
    if ip.is_unspecified() || is_local(ip) {
        return;
    }
    let at = config
        .locations
        .media_bind
        .as_ref()
        .unwrap_or(&config.locations.file);
    findings.errors.push(format!(
        "config {at}: media.bind: {ip} is not an address of this machine; RTP could not be received — \
         use one of this machine's addresses, or \"0.0.0.0\" (set media.advertise to a public address behind NAT)"
    ));
}

/// Whether `ip` is an address of this machine: the kernel lets a socket bind to it.
pub fn is_local(ip: IpAddr) -> bool {
    UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_local_and_documentation_addresses_are_not() {
        assert!(is_local(IpAddr::from([127, 0, 0, 1])));
        assert!(!is_local(IpAddr::from([203, 0, 113, 77])));
    }
}
