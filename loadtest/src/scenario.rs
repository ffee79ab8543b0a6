//! Scenario files (`loadtest/scenarios/*.toml`): one flat table of knobs, each with a default,
//! so that `--set key=value` (and the named CLI flags) can override any of them.

use std::path::Path;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

/// What a run does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScenarioKind {
    /// Hold connections open and measure the server's RSS per connection.
    Idle,
    /// Rooms × members, publishers at a fixed rate: fan-out throughput and latency.
    Fanout,
    /// A realistic mix: direct and group conversations, typing, receipts, history, reconnects.
    Chat,
    /// Every client drops at once, reconnects and syncs; nothing may be missed.
    ReconnectStorm,
}

impl ScenarioKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ScenarioKind::Idle => "idle",
            ScenarioKind::Fanout => "fanout",
            ScenarioKind::Chat => "chat",
            ScenarioKind::ReconnectStorm => "reconnect-storm",
        }
    }
}

/// Every knob of every scenario. Each kind reads the ones it needs (documented per field).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Scenario {
    pub kind: ScenarioKind,
    /// idle, chat, reconnect-storm: number of simulated users (one connection each).
    pub connections: usize,
    /// fanout: number of rooms (group conversations).
    pub rooms: usize,
    /// fanout: members per room, publishers included (one connection each).
    pub members: usize,
    /// fanout: members of each room that publish.
    pub publishers_per_room: usize,
    /// fanout, reconnect-storm: messages per second of each publisher (open loop).
    /// chat: actions per second of each user.
    pub rate: f64,
    /// Length of the load phase, seconds.
    pub duration_secs: f64,
    /// How long to wait after the load for in-flight deliveries before verifying, seconds.
    pub drain_secs: f64,
    /// Bytes of message text (the scheduled-time stamp is padded to this length).
    pub text_bytes: usize,
    /// idle: how long to hold all connections open after they are up, seconds.
    pub hold_secs: f64,
    /// chat: size of each group conversation.
    pub group_size: usize,
    /// chat: fraction of actions that send a message into a group (the rest of the sends go
    /// to direct conversations).
    pub group_send_fraction: f64,
    /// chat: weight of each action kind (normalised).
    pub weight_send: f64,
    pub weight_typing: f64,
    pub weight_receipt: f64,
    pub weight_history: f64,
    pub weight_reconnect: f64,
    /// reconnect-storm: users per group conversation.
    pub storm_group_size: usize,
    /// reconnect-storm: how many storms, spread evenly over the load phase.
    pub storms: usize,
    /// reconnect-storm: publishers stay connected through the storms, so that messages keep
    /// flowing while everyone else is away and must come back through `sync`.
    pub storm_spare_publishers: bool,
    /// Connections opened at once (WebSocket handshakes in flight).
    pub connect_concurrency: usize,
    /// Attempts per message (the first send and its resends with the same `client_msg_id`,
    /// after a reconnect or an `unavailable` answer) before the client gives up on it. The
    /// default, 20, keeps resending for about 80 s: past the 60 s for which the protocol
    /// answers `unavailable` to the resends of a send whose node died before answering.
    pub max_send_attempts: u32,
}

impl Default for Scenario {
    fn default() -> Self {
        Self {
            kind: ScenarioKind::Fanout,
            connections: 100,
            rooms: 10,
            members: 10,
            publishers_per_room: 1,
            rate: 10.0,
            duration_secs: 10.0,
            drain_secs: 10.0,
            text_bytes: 64,
            hold_secs: 5.0,
            group_size: 5,
            group_send_fraction: 0.5,
            weight_send: 10.0,
            weight_typing: 4.0,
            weight_receipt: 4.0,
            weight_history: 1.0,
            weight_reconnect: 0.05,
            storm_group_size: 10,
            storms: 1,
            storm_spare_publishers: true,
            connect_concurrency: 256,
            max_send_attempts: 20,
        }
    }
}

impl Scenario {
    /// Reads a scenario file, then applies `key=value` overrides (TOML values: `rate=50`,
    /// `kind="chat"`; a bare word is taken as a string).
    pub fn load(path: &Path, overrides: &[(String, String)]) -> anyhow::Result<Scenario> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read scenario {}", path.display()))?;
        Self::parse(&text, overrides).with_context(|| format!("in scenario {}", path.display()))
    }

    pub fn parse(text: &str, overrides: &[(String, String)]) -> anyhow::Result<Scenario> {
        let mut table: toml::Table = toml::from_str(text)?;
        for (key, value) in overrides {
            let parsed = format!("value = {value}")
                .parse::<toml::Table>()
                .ok()
                .and_then(|mut one| one.remove("value"))
                .unwrap_or_else(|| toml::Value::String(value.clone()));
            table.insert(key.clone(), parsed);
        }
        let scenario: Scenario = table.try_into()?;
        scenario.validate()?;
        Ok(scenario)
    }

    fn validate(&self) -> anyhow::Result<()> {
        if !(self.rate.is_finite() && self.rate > 0.0) {
            bail!("`rate` must be > 0");
        }
        if !(self.duration_secs.is_finite() && self.duration_secs > 0.0) {
            bail!("`duration_secs` must be > 0");
        }
        if self.text_bytes < 32 {
            bail!("`text_bytes` must be at least 32 (the time stamp needs room)");
        }
        if self.kind == ScenarioKind::Fanout && (self.members < 2 || self.publishers_per_room == 0)
        {
            bail!("fanout needs `members` >= 2 and `publishers_per_room` >= 1");
        }
        if self.publishers_per_room > self.members {
            bail!("`publishers_per_room` must not exceed `members`");
        }
        if self.max_send_attempts == 0 {
            bail!("`max_send_attempts` must be >= 1");
        }
        if self.connect_concurrency == 0 {
            bail!("`connect_concurrency` must be >= 1");
        }
        Ok(())
    }

    /// Connections the run opens.
    pub fn total_connections(&self) -> usize {
        match self.kind {
            ScenarioKind::Fanout => self.rooms * self.members,
            _ => self.connections,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_replace_file_values() {
        let scenario = Scenario::parse(
            "kind = \"fanout\"\nrooms = 3\nrate = 5.0\n",
            &[("rooms".into(), "7".into()), ("rate".into(), "2.5".into())],
        )
        .unwrap();
        assert_eq!(scenario.kind, ScenarioKind::Fanout);
        assert_eq!(scenario.rooms, 7);
        assert_eq!(scenario.rate, 2.5);
        assert_eq!(scenario.total_connections(), 7 * 10);
    }

    #[test]
    fn unknown_keys_are_rejected() {
        assert!(Scenario::parse("kind = \"idle\"\nconections = 3\n", &[]).is_err());
    }

    #[test]
    fn shipped_scenarios_parse() {
        let directory = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
        for name in ["idle", "fanout", "chat", "reconnect-storm"] {
            let scenario = Scenario::load(&directory.join(format!("{name}.toml")), &[]).unwrap();
            assert_eq!(scenario.kind.as_str(), name);
        }
    }
}
