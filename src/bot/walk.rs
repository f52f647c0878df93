//! A bot's walk on its floor (the lobby's, or the room's): it stands, walks a route of
//! spots, or wanders about at random; while it walks, its pose goes to the call every
//! [`SEND_EVERY`]. Spots are metres from the middle of the floor.

use std::time::Duration;

use bevy::platform::time::Instant;
use bevy::prelude::*;

use crate::call::CallCommand;
use crate::call::poses::SEND_EVERY;
use crate::config::{Route, Spot};
use crate::signaling::protocol::Pose;
use crate::space::Area;

/// How far from the floor's walls a wandering bot picks its spots, in metres.
const WANDER_MARGIN: f32 = 1.0;
/// Longest pause between two stretches of wandering, in seconds.
const MAX_PAUSE_SECS: f32 = 3.0;
/// A spot closer than this counts as reached, in metres.
const ARRIVED: f32 = 0.01;

/// What the bot does on its feet.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// Stands where it started.
    Stand,
    /// Walks through these spots in turn, then stands.
    Route(Vec<Vec2>),
    /// Walks to random spots of the floor, pausing in between.
    Wander,
}

/// Where the bot is and where it goes.
#[derive(Resource, Debug, Clone)]
pub struct Walker {
    /// The floor it walks on.
    floor: Area,
    at: Vec2,
    yaw: f32,
    speed: f32,
    plan: Plan,
    /// The next spot of the route, or the wander's current goal.
    goal: Option<Vec2>,
    /// The index of the next route spot.
    next_spot: usize,
    /// Standing still until then (wandering).
    paused_until: Option<Instant>,
    /// When the call was last told the pose.
    told_at: Option<Instant>,
    /// When it last reached a spot it walked to, in milliseconds since the UNIX epoch.
    arrived_unix_ms: Option<u64>,
}

impl Walker {
    /// A bot on `floor` standing at `start` (the middle when `None`), following `plan`
    /// at `speed` metres per second; spots are from the middle of the floor.
    pub fn new(floor: Area, start: Option<Spot>, plan: Plan, speed: f32) -> Self {
        let at = floor.center + start.map_or(Vec2::ZERO, |spot| Vec2::new(spot.x, spot.z));
        let plan = match plan {
            Plan::Route(spots) => {
                Plan::Route(spots.into_iter().map(|spot| floor.center + spot).collect())
            }
            other => other,
        };
        Self {
            floor,
            at,
            yaw: 0.0,
            speed,
            plan,
            goal: None,
            next_spot: 0,
            paused_until: None,
            told_at: None,
            arrived_unix_ms: None,
        }
    }

    /// The same walker, standing still for `delay` before it sets off.
    pub fn starting_after(mut self, delay: Duration) -> Self {
        self.paused_until = Some(Instant::now() + delay);
        self
    }

    /// When it last reached a spot it walked to, in milliseconds since the UNIX epoch.
    pub fn arrived_unix_ms(&self) -> Option<u64> {
        self.arrived_unix_ms
    }

    /// A bot wandering about `floor` from a random spot of it, at `speed` metres per
    /// second.
    pub fn wanderer(floor: Area, speed: f32) -> Self {
        let mut walker = Self::new(floor, None, Plan::Wander, speed);
        walker.at = walker.random_spot();
        walker
    }

    /// The plan from the command line: a route, wandering, or standing.
    pub fn plan_of(route: Option<&Route>, wander: bool) -> Plan {
        match route {
            Some(Route(spots)) => {
                Plan::Route(spots.iter().map(|spot| Vec2::new(spot.x, spot.z)).collect())
            }
            None if wander => Plan::Wander,
            None => Plan::Stand,
        }
    }

    /// Where it stands and faces now.
    pub fn pose(&self) -> Pose {
        let moving = self.goal.is_some() && self.paused_until.is_none();
        Pose::new(self.at.x, self.at.y, self.yaw, moving).unwrap_or_default()
    }

    /// Walks on for `seconds` at `now`.
    pub fn advance(&mut self, seconds: f32, now: Instant) {
        if self.paused_until.is_some_and(|until| now < until) {
            return;
        }
        self.paused_until = None;
        let Some(goal) = self.goal.or_else(|| self.next_goal()) else {
            return;
        };
        self.goal = Some(goal);
        let to_goal = goal - self.at;
        let step = self.speed * seconds;
        if to_goal.length() > ARRIVED {
            // Yaw 0 faces -z; the heading turns towards the goal.
            self.yaw = (-to_goal.x).atan2(-to_goal.y);
        }
        if to_goal.length() <= step.max(ARRIVED) {
            self.at = goal;
            self.goal = None;
            self.arrived_unix_ms = Some(crate::media::synthetic::wall_clock_micros() / 1000);
            if self.plan == Plan::Wander {
                let pause = Duration::from_secs_f32(random_unit() * MAX_PAUSE_SECS);
                self.paused_until = Some(now + pause);
            }
        } else {
            self.at += to_goal.normalize() * step;
        }
    }

    /// The next spot to walk to, if any.
    fn next_goal(&mut self) -> Option<Vec2> {
        match &self.plan {
            Plan::Stand => None,
            Plan::Route(spots) => {
                let spot = spots.get(self.next_spot).copied();
                self.next_spot += 1;
                spot
            }
            Plan::Wander => Some(self.random_spot()),
        }
    }

    /// A random spot of the floor, away from its walls.
    fn random_spot(&self) -> Vec2 {
        let reach = self.floor.half_extents - Vec2::splat(WANDER_MARGIN);
        let unit = Vec2::new(random_unit(), random_unit()) * 2.0 - Vec2::ONE;
        self.floor.center + unit * reach
    }
}

/// A random number in [0, 1].
fn random_unit() -> f32 {
    let mut bytes = [0u8; 4];
    // Without the system's randomness the bot just goes the same way each time.
    let _ = getrandom::fill(&mut bytes);
    u32::from_le_bytes(bytes) as f32 / u32::MAX as f32
}

/// Walks the bot on and tells the call its pose: at once, then every [`SEND_EVERY`]
/// while it moves.
pub(super) fn walk(
    time: Res<Time>,
    mut walker: ResMut<Walker>,
    mut commands: MessageWriter<CallCommand>,
) {
    let now = Instant::now();
    let was_moving = walker.pose().moving;
    walker.advance(time.delta_secs(), now);
    let pose = walker.pose();
    let due = walker
        .told_at
        .is_none_or(|at| now.saturating_duration_since(at) >= SEND_EVERY);
    let stopped = was_moving && !pose.moving;
    if walker.told_at.is_none() || (pose.moving && due) || stopped {
        walker.told_at = Some(now);
        commands.write(CallCommand::SetPose(pose));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::space::{LOBBY, ROOM};

    #[test]
    fn a_route_is_walked_at_the_speed_given_then_the_bot_stands() {
        let start = Spot { x: 20.0, z: 0.0 };
        let route = Route(vec![Spot { x: 1.0, z: 0.0 }, Spot { x: 1.0, z: 2.0 }]);
        let plan = Walker::plan_of(Some(&route), false);
        let mut walker = Walker::new(LOBBY, Some(start), plan, 2.0);
        let now = Instant::now();
        walker.advance(1.0, now);
        let pose = walker.pose();
        assert_eq!((pose.x, pose.z), (18.0, 0.0));
        assert!(pose.moving);
        // Facing -x: yaw +pi/2 (yaw 0 faces -z).
        assert!(
            (pose.yaw - std::f32::consts::FRAC_PI_2).abs() < 1e-4,
            "{pose:?}"
        );
        for _ in 0..20 {
            walker.advance(1.0, now);
        }
        let pose = walker.pose();
        assert_eq!((pose.x, pose.z, pose.moving), (1.0, 2.0, false));
    }

    #[test]
    fn wandering_stays_on_its_floor() {
        for floor in [LOBBY, ROOM] {
            let mut walker = Walker::wanderer(floor, 3.0);
            let mut now = Instant::now();
            for _ in 0..2000 {
                now += Duration::from_millis(100);
                walker.advance(0.1, now);
                let pose = walker.pose();
                assert!(floor.contains(Vec2::new(pose.x, pose.z)), "{pose:?}");
            }
        }
    }

    #[test]
    fn in_a_room_spots_are_from_the_rooms_middle() {
        let route = Route(vec![Spot { x: -1.0, z: 0.0 }]);
        let plan = Walker::plan_of(Some(&route), false);
        let mut walker = Walker::new(ROOM, Some(Spot { x: 1.0, z: 2.0 }), plan, 100.0);
        let pose = walker.pose();
        assert_eq!((pose.x, pose.z), (ROOM.center.x + 1.0, ROOM.center.y + 2.0));
        walker.advance(1.0, Instant::now());
        let pose = walker.pose();
        assert_eq!((pose.x, pose.z), (ROOM.center.x - 1.0, ROOM.center.y));
    }
}
