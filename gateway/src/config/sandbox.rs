//! `sandbox = …`: how much of the kernel sandbox `oneway run` must enter (every layer by
//! default; what the kernel has; none).

use super::Problems;

/// `sandbox = …` in the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SandboxMode {
    /// Every layer, or no start (the default).
    #[default]
    Required,
    /// What the kernel supports; what it does not is logged, audited and exported.
    BestEffort,
    /// None (the state is still reported, as `off`).
    Off,
}

impl SandboxMode {
    /// From the config's spelling.
    pub fn parse(s: &str) -> Option<SandboxMode> {
        match s {
            "required" => Some(SandboxMode::Required),
            "best-effort" => Some(SandboxMode::BestEffort),
            "off" => Some(SandboxMode::Off),
            _ => None,
        }
    }

    /// The config's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SandboxMode::Required => "required",
            SandboxMode::BestEffort => "best-effort",
            SandboxMode::Off => "off",
        }
    }
}

/// Checks `sandbox`.
pub(super) fn check(p: &mut Problems, raw: Option<&str>) -> SandboxMode {
    match raw {
        None => SandboxMode::default(),
        Some(s) => SandboxMode::parse(s).unwrap_or_else(|| {
            p.add(
                "sandbox",
                format!("{s:?} is not \"required\", \"best-effort\" or \"off\""),
            );
            SandboxMode::default()
        }),
    }
}
