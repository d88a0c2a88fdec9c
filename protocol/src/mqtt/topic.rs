//! The topic tree: one subtree per station under [`TOPIC_ROOT`].
//!
//! ```text
//! stationwatch/v1/<station>/status            agent -> controller  QoS 1  retained
//! stationwatch/v1/<station>/health            agent -> controller  QoS 0  retained
//! stationwatch/v1/<station>/events            agent -> controller  QoS 1
//! stationwatch/v1/<station>/cmd               controller -> agent  QoS 1
//! stationwatch/v1/<station>/ack               agent -> controller  QoS 1
//! stationwatch/v1/<station>/snapshot/<camera> agent -> controller  QoS 1  (JPEG bytes)
//! ```

use std::fmt;

use super::status::LAST_WILL_PAYLOAD;
use crate::ids::{CameraId, StationId};

/// First two levels of every topic. The `v1` changes only with an incompatible protocol change.
pub const TOPIC_ROOT: &str = "stationwatch/v1";

/// Default shared-subscription group of controller replicas (see [`controller_subscriptions`]).
pub const SHARED_GROUP: &str = "controllers";

/// MQTT quality of service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QoS {
    /// 0: at most once.
    AtMostOnce = 0,
    /// 1: at least once (receivers de-duplicate by id).
    AtLeastOnce = 1,
    /// 2: exactly once (not used by this protocol).
    ExactlyOnce = 2,
}

impl QoS {
    pub fn as_u8(self) -> u8 {
        self as u8
    }
}

/// Who publishes on a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    AgentToController,
    ControllerToAgent,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::AgentToController => "agent → controller",
            Direction::ControllerToAgent => "controller → agent",
        })
    }
}

/// How a topic is published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TopicSpec {
    pub direction: Direction,
    pub qos: QoS,
    pub retain: bool,
}

/// The topics of one station's subtree, without the station.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TopicKind {
    /// `status`: retained online/offline ([`super::Status`]); the agent's last will.
    Status,
    /// `health`: the latest health report, retained ([`super::Health`]).
    Health,
    /// `events`: something changed ([`super::Event`]).
    Events,
    /// `cmd`: commands to the agent ([`super::CommandEnvelope`]).
    Command,
    /// `ack`: acknowledgements of commands ([`super::Ack`]).
    Ack,
    /// `snapshot/<camera>`: a JPEG of one camera, taken on a `snapshot` command.
    Snapshot(CameraId),
}

impl TopicKind {
    /// Direction, QoS and retained flag of this topic.
    pub fn spec(&self) -> TopicSpec {
        use Direction::*;
        let (direction, qos, retain) = match self {
            TopicKind::Status => (AgentToController, QoS::AtLeastOnce, true),
            TopicKind::Health => (AgentToController, QoS::AtMostOnce, true),
            TopicKind::Events => (AgentToController, QoS::AtLeastOnce, false),
            TopicKind::Command => (ControllerToAgent, QoS::AtLeastOnce, false),
            TopicKind::Ack => (AgentToController, QoS::AtLeastOnce, false),
            TopicKind::Snapshot(_) => (AgentToController, QoS::AtLeastOnce, false),
        };
        TopicSpec {
            direction,
            qos,
            retain,
        }
    }

    /// The topic levels after the station, e.g. `health` or `snapshot/desk`.
    pub fn suffix(&self) -> String {
        match self {
            TopicKind::Status => "status".into(),
            TopicKind::Health => "health".into(),
            TopicKind::Events => "events".into(),
            TopicKind::Command => "cmd".into(),
            TopicKind::Ack => "ack".into(),
            TopicKind::Snapshot(camera) => format!("snapshot/{camera}"),
        }
    }
}

/// The topics of one station.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Topics {
    station: StationId,
    base: String,
}

impl Topics {
    pub fn new(station: &StationId) -> Self {
        Topics {
            station: station.clone(),
            base: format!("{TOPIC_ROOT}/{station}"),
        }
    }

    pub fn station(&self) -> &StationId {
        &self.station
    }

    /// The full topic of `kind` for this station.
    pub fn topic(&self, kind: &TopicKind) -> String {
        format!("{}/{}", self.base, kind.suffix())
    }

    pub fn status(&self) -> String {
        self.topic(&TopicKind::Status)
    }

    pub fn health(&self) -> String {
        self.topic(&TopicKind::Health)
    }

    pub fn events(&self) -> String {
        self.topic(&TopicKind::Events)
    }

    /// `cmd`: what the agent subscribes to (QoS 1, persistent session).
    pub fn command(&self) -> String {
        self.topic(&TopicKind::Command)
    }

    /// Whether a topic the agent received is its `cmd` topic: exactly, or with a broker mount
    /// point still in front (`stations/stationwatch/v1/<station>/cmd`): Mosquitto 2.0.0 to
    /// 2.0.11 deliver topics without removing the listener's `mount_point` (fixed in 2.0.12).
    /// The broker only delivers what the station may read, so the prefix carries no meaning.
    pub fn is_command(&self, topic: &str) -> bool {
        let cmd = self.command();
        topic == cmd
            || topic
                .strip_suffix(cmd.as_str())
                .is_some_and(|mount| mount.ends_with('/') && validate_mount_point(mount).is_ok())
    }

    pub fn ack(&self) -> String {
        self.topic(&TopicKind::Ack)
    }

    pub fn snapshot(&self, camera: &CameraId) -> String {
        self.topic(&TopicKind::Snapshot(camera.clone()))
    }

    /// What the agent subscribes to: its `cmd` topic, QoS 1 (with a persistent session, so
    /// that commands sent while it was away are delivered when it comes back).
    pub fn agent_subscription(&self) -> Subscription {
        Subscription {
            filter: self.command(),
            qos: TopicKind::Command.spec().qos,
        }
    }

    /// `stationwatch/v1/<station>/#`: the whole subtree (what the station's ACL covers).
    pub fn subtree_filter(&self) -> String {
        format!("{}/#", self.base)
    }

    /// The will the agent registers when it connects: retained `offline`/`lost` on `status`.
    pub fn last_will(&self) -> LastWill {
        LastWill {
            topic: self.status(),
            payload: LAST_WILL_PAYLOAD.as_bytes().to_vec(),
            qos: TopicKind::Status.spec().qos,
            retain: TopicKind::Status.spec().retain,
        }
    }
}

/// A last-will message for the MQTT CONNECT packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastWill {
    pub topic: String,
    pub payload: Vec<u8>,
    pub qos: QoS,
    pub retain: bool,
}

/// Splits a topic a controller received into station and kind. `None` for anything that is not
/// exactly a topic of this tree (other roots, wildcards, invalid ids, extra levels).
pub fn parse_topic(topic: &str) -> Option<(StationId, TopicKind)> {
    let rest = topic.strip_prefix(TOPIC_ROOT)?.strip_prefix('/')?;
    let mut levels = rest.split('/');
    let station = StationId::new(levels.next()?).ok()?;
    let kind = match levels.next()? {
        "status" => TopicKind::Status,
        "health" => TopicKind::Health,
        "events" => TopicKind::Events,
        "cmd" => TopicKind::Command,
        "ack" => TopicKind::Ack,
        "snapshot" => TopicKind::Snapshot(CameraId::new(levels.next()?).ok()?),
        _ => return None,
    };
    if levels.next().is_some() {
        return None;
    }
    Some((station, kind))
}

/// Wildcard filters over all stations, for controllers.
pub mod filters {
    /// Every station's status.
    pub const STATUS: &str = "stationwatch/v1/+/status";
    /// Every station's health.
    pub const HEALTH: &str = "stationwatch/v1/+/health";
    /// Every station's events.
    pub const EVENTS: &str = "stationwatch/v1/+/events";
    /// Every station's acks.
    pub const ACK: &str = "stationwatch/v1/+/ack";
    /// Every camera's snapshots.
    pub const SNAPSHOT: &str = "stationwatch/v1/+/snapshot/+";
    /// Everything (debugging; a controller uses the filters above).
    pub const ALL: &str = "stationwatch/v1/#";
}

/// `$share/<group>/<filter>`: a shared subscription, delivering each message to one member of
/// the group (MQTT 5 shared subscriptions).
pub fn shared(group: &str, filter: &str) -> String {
    format!("$share/{group}/{filter}")
}

/// A filter and the QoS to subscribe with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub filter: String,
    pub qos: QoS,
}

/// What a controller replica subscribes to. With `group`, health, events, acks and snapshots go
/// through a shared subscription, so that each message reaches one replica of the group; status
/// is always subscribed to directly, so that every replica sees every station's online state and
/// receives the retained statuses when it subscribes (brokers do not send retained messages to
/// shared subscriptions).
///
/// `mount_point` is the station listener's mount point in the broker (`""` when there is none):
/// the broker files every station topic under it, so the controller's filters carry it after
/// the `$share/<group>/` part (see [`validate_mount_point`] and `config/mosquitto/`).
pub fn controller_subscriptions(group: Option<&str>, mount_point: &str) -> Vec<Subscription> {
    let share = |f: &str| match group {
        Some(g) => shared(g, &format!("{mount_point}{f}")),
        None => format!("{mount_point}{f}"),
    };
    vec![
        Subscription {
            filter: format!("{mount_point}{}", filters::STATUS),
            qos: QoS::AtLeastOnce,
        },
        Subscription {
            filter: share(filters::HEALTH),
            qos: QoS::AtMostOnce,
        },
        Subscription {
            filter: share(filters::EVENTS),
            qos: QoS::AtLeastOnce,
        },
        Subscription {
            filter: share(filters::ACK),
            qos: QoS::AtLeastOnce,
        },
        Subscription {
            filter: share(filters::SNAPSHOT),
            qos: QoS::AtLeastOnce,
        },
    ]
}

/// Why a mount point cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MountPointError {
    #[error("must end with '/'")]
    NoTrailingSlash,
    #[error("must not contain '+', '#' or NUL, nor start with '$' or '/'")]
    Invalid,
}

/// Checks a mount point: empty, or topic levels without wildcards ending in `/`, not starting
/// with `$` (a `$` topic is never matched by ordinary filters) or `/`.
pub fn validate_mount_point(mount_point: &str) -> Result<(), MountPointError> {
    if mount_point.is_empty() {
        return Ok(());
    }
    if mount_point.contains(['+', '#', '\0'])
        || mount_point.starts_with(['$', '/'])
        || mount_point.contains("//")
    {
        return Err(MountPointError::Invalid);
    }
    if !mount_point.ends_with('/') {
        return Err(MountPointError::NoTrailingSlash);
    }
    Ok(())
}

/// A topic as the broker delivers it, with the station listener's mount point removed; `None`
/// when the topic lies outside the mount point.
pub fn unmount<'a>(topic: &'a str, mount_point: &str) -> Option<&'a str> {
    topic.strip_prefix(mount_point)
}
