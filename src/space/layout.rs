//! The space's geometry as pure functions: where panels stand, where doors are, how
//! the player is kept inside walls and away from panels. Positions are on the floor
//! plane, `Vec2(x, z)` in world metres; yaws are rotations about +Y in radians.

use std::f32::consts::TAU;

use bevy::math::Vec2;

/// Widest angle between two neighbouring panels, so that a few people stand close
/// together in front of the player instead of spread around the whole circle.
pub const MAX_PANEL_STEP: f32 = 0.75;

/// Where one panel stands: its centre on the floor and the yaw that turns its front
/// (+Z) towards the circle's centre.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PanelSlot {
    /// Centre of the panel on the floor.
    pub position: Vec2,
    /// Rotation about +Y; the panel's front faces the circle's centre.
    pub yaw: f32,
}

/// Slots for `count` panels on a circle of `radius` around `center`, facing the
/// centre. They spread symmetrically around the "front" of the circle (towards -Z from
/// the centre), at most [`MAX_PANEL_STEP`] apart, and fill the whole circle when there
/// are too many for that.
pub fn panel_slots(count: usize, center: Vec2, radius: f32) -> Vec<PanelSlot> {
    if count == 0 {
        return Vec::new();
    }
    let step = (TAU / count as f32).min(MAX_PANEL_STEP);
    let middle = (count as f32 - 1.0) / 2.0;
    (0..count)
        .map(|index| {
            let angle = (index as f32 - middle) * step;
            PanelSlot {
                position: center + radius * Vec2::new(angle.sin(), -angle.cos()),
                yaw: -angle,
            }
        })
        .collect()
}

/// The direction a yaw turns +Z to, on the floor plane (a panel's front normal).
pub fn facing(yaw: f32) -> Vec2 {
    Vec2::new(yaw.sin(), yaw.cos())
}

/// The direction a yaw turns +X to, on the floor plane (along a panel's width).
pub fn across(yaw: f32) -> Vec2 {
    Vec2::new(yaw.cos(), -yaw.sin())
}

/// An axis-aligned rectangle of floor: a room's inside.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Area {
    /// Centre of the floor.
    pub center: Vec2,
    /// Half the width (x) and depth (z).
    pub half_extents: Vec2,
}

impl Area {
    /// `point` moved inside the walls, at least `margin` from each.
    pub fn clamp(&self, point: Vec2, margin: f32) -> Vec2 {
        let inner = (self.half_extents - Vec2::splat(margin)).max(Vec2::ZERO);
        point.clamp(self.center - inner, self.center + inner)
    }

    /// Whether `point` lies on this floor (walls included).
    pub fn contains(&self, point: Vec2) -> bool {
        let offset = (point - self.center).abs();
        offset.x <= self.half_extents.x && offset.y <= self.half_extents.y
    }
}

/// `point` pushed away from a panel (a segment `half_width` either side of `center`
/// along its width) until it is at least `min_distance` from it; unchanged if it
/// already is.
pub fn keep_clear(point: Vec2, center: Vec2, yaw: f32, half_width: f32, min_distance: f32) -> Vec2 {
    let along = across(yaw);
    let offset = (point - center).dot(along).clamp(-half_width, half_width);
    let closest = center + along * offset;
    let away = point - closest;
    let distance = away.length();
    if distance >= min_distance {
        return point;
    }
    let direction = if distance > 1e-4 {
        away / distance
    } else {
        facing(yaw)
    };
    closest + direction * min_distance
}

/// A door in a wall: the point in the wall at its middle, the wall's inward normal,
/// and half its width.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DoorPlacement {
    /// Middle of the doorway, on the wall.
    pub center: Vec2,
    /// Unit normal of the wall, pointing into the room.
    pub inward: Vec2,
    /// Half the doorway's width.
    pub half_width: f32,
}

impl DoorPlacement {
    /// Whether `point` stands in the doorway: within its width and closer than `reach`
    /// to the wall.
    pub fn hit(&self, point: Vec2, reach: f32) -> bool {
        let offset = point - self.center;
        let depth = offset.dot(self.inward);
        let lateral = offset.dot(self.inward.perp()).abs();
        (-reach..reach).contains(&depth) && lateral <= self.half_width
    }

    /// The yaw that turns a door's front (+Z) into the room.
    pub fn yaw(&self) -> f32 {
        self.inward.x.atan2(self.inward.y)
    }

    /// A point `distance` in front of the door, inside the room.
    pub fn in_front(&self, distance: f32) -> Vec2 {
        self.center + self.inward * distance
    }
}

/// Half the width of every door.
pub const DOOR_HALF_WIDTH: f32 = 0.6;
/// Distance between neighbouring doors on a wall, centre to centre.
pub const DOOR_SPACING: f32 = 2.6;

/// Door places along the wall at `-z` of `area` (its back wall), centred, as many as
/// fit (at most `count`), one [`DOOR_SPACING`] apart.
pub fn back_wall_doors(area: Area, count: usize) -> Vec<DoorPlacement> {
    let usable = 2.0 * area.half_extents.x - DOOR_SPACING / 2.0;
    let fit = (usable / DOOR_SPACING).floor().max(0.0) as usize;
    let shown = count.min(fit);
    let middle = (shown as f32 - 1.0) / 2.0;
    let wall_z = area.center.y - area.half_extents.y;
    (0..shown)
        .map(|index| DoorPlacement {
            center: Vec2::new(
                area.center.x + (index as f32 - middle) * DOOR_SPACING,
                wall_z,
            ),
            inward: Vec2::Y,
            half_width: DOOR_HALF_WIDTH,
        })
        .collect()
}

/// The door in the middle of the wall of `area` whose inward normal is `inward`
/// (one of ±X, ±Z).
pub fn wall_door(area: Area, inward: Vec2) -> DoorPlacement {
    DoorPlacement {
        center: area.center - inward * (inward.abs() * area.half_extents).length(),
        inward,
        half_width: DOOR_HALF_WIDTH,
    }
}

/// Glow of a speaking ring for an audio level (RMS, 0 to 1): faint when silent, bright
/// above [`SPEAKING_LEVEL`], growing with loudness.
pub fn ring_glow(level: f32) -> f32 {
    let level = level.clamp(0.0, 1.0);
    if level > SPEAKING_LEVEL {
        2.0 + 30.0 * level.min(0.2)
    } else {
        0.05
    }
}

/// Audio level (RMS) above which a participant counts as speaking.
pub const SPEAKING_LEVEL: f32 = 0.02;

/// Moves `current` towards `target` by the fraction of the way that `rate` per second
/// covers in `dt` seconds (frame-rate independent smoothing); 1 means arrived.
pub fn approach_fraction(rate: f32, dt: f32) -> f32 {
    1.0 - (-rate * dt.max(0.0)).exp()
}

#[cfg(test)]
mod tests {
    use std::f32::consts::PI;

    use super::*;

    const EPS: f32 = 1e-4;

    #[test]
    fn no_panels_no_slots() {
        assert!(panel_slots(0, Vec2::ZERO, 4.0).is_empty());
    }

    #[test]
    fn one_panel_stands_in_front_facing_the_centre() {
        let slots = panel_slots(1, Vec2::new(10.0, 0.0), 4.0);
        assert_eq!(slots.len(), 1);
        assert!((slots[0].position - Vec2::new(10.0, -4.0)).length() < EPS);
        // Its front normal points at the centre.
        assert!((facing(slots[0].yaw) - Vec2::Y).length() < EPS);
    }

    #[test]
    fn every_panel_faces_the_centre_at_the_radius() {
        let center = Vec2::new(60.0, 3.0);
        for count in 1..=12 {
            let slots = panel_slots(count, center, 4.5);
            assert_eq!(slots.len(), count);
            for slot in &slots {
                assert!(((slot.position - center).length() - 4.5).abs() < EPS);
                let to_center = (center - slot.position).normalize();
                assert!((facing(slot.yaw) - to_center).length() < EPS, "{count}");
            }
        }
    }

    #[test]
    fn few_panels_stay_together_many_fill_the_circle() {
        let slots = panel_slots(2, Vec2::ZERO, 4.0);
        let gap = slots[0].position.angle_to(slots[1].position).abs();
        assert!((gap - MAX_PANEL_STEP).abs() < EPS);
        // Symmetric about the front.
        assert!((slots[0].position.x + slots[1].position.x).abs() < EPS);

        let slots = panel_slots(10, Vec2::ZERO, 4.0);
        let gap = slots[0].position.angle_to(slots[1].position).abs();
        assert!((gap - TAU / 10.0).abs() < EPS);
    }

    #[test]
    fn panels_never_overlap() {
        for count in 1..=12 {
            let slots = panel_slots(count, Vec2::ZERO, 4.5);
            for (i, a) in slots.iter().enumerate() {
                for b in &slots[i + 1..] {
                    assert!(a.position.distance(b.position) > 1.8, "{count}");
                }
            }
        }
    }

    #[test]
    fn area_clamp_keeps_a_margin() {
        let area = Area {
            center: Vec2::new(60.0, 0.0),
            half_extents: Vec2::new(7.0, 5.0),
        };
        assert_eq!(
            area.clamp(Vec2::new(100.0, -100.0), 0.5),
            Vec2::new(66.5, -4.5)
        );
        assert_eq!(area.clamp(Vec2::new(61.0, 1.0), 0.5), Vec2::new(61.0, 1.0));
        assert!(area.contains(Vec2::new(67.0, 5.0)));
        assert!(!area.contains(Vec2::new(0.0, 0.0)));
    }

    #[test]
    fn keep_clear_pushes_out_in_front_behind_and_at_the_edges() {
        let (center, yaw, half, min) = (Vec2::ZERO, 0.0, 0.8, 0.5);
        // In front, too close: pushed straight out to the minimum distance.
        let moved = keep_clear(Vec2::new(0.3, 0.2), center, yaw, half, min);
        assert!((moved - Vec2::new(0.3, 0.5)).length() < EPS);
        // Behind.
        let moved = keep_clear(Vec2::new(-0.3, -0.1), center, yaw, half, min);
        assert!((moved - Vec2::new(-0.3, -0.5)).length() < EPS);
        // Beside the edge: pushed away from the edge point.
        let moved = keep_clear(Vec2::new(1.0, 0.0), center, yaw, half, min);
        assert!((moved - Vec2::new(1.3, 0.0)).length() < EPS);
        // Exactly on the panel: out through the front.
        let moved = keep_clear(Vec2::ZERO, center, yaw, half, min);
        assert!((moved - Vec2::new(0.0, 0.5)).length() < EPS);
        // Far enough: untouched.
        let far = Vec2::new(0.2, 2.0);
        assert_eq!(keep_clear(far, center, yaw, half, min), far);
    }

    #[test]
    fn keep_clear_follows_the_panel_rotation() {
        // A panel turned a quarter: its width runs along z.
        let moved = keep_clear(Vec2::new(0.1, 0.7), Vec2::ZERO, PI / 2.0, 0.8, 0.5);
        assert!((moved - Vec2::new(0.5, 0.7)).length() < EPS);
        let moved = keep_clear(Vec2::new(0.1, 0.9), Vec2::ZERO, PI / 2.0, 0.8, 0.5);
        assert!(moved.distance(Vec2::new(0.0, 0.8)) >= 0.5 - EPS);
    }

    #[test]
    fn door_hit_needs_width_and_reach() {
        let door = DoorPlacement {
            center: Vec2::new(2.0, -7.0),
            inward: Vec2::Y,
            half_width: 0.6,
        };
        assert!(door.hit(Vec2::new(2.0, -6.6), 0.6));
        assert!(door.hit(Vec2::new(2.5, -6.6), 0.6));
        assert!(!door.hit(Vec2::new(2.7, -6.6), 0.6), "beside the door");
        assert!(
            !door.hit(Vec2::new(2.0, -6.0), 0.6),
            "too far from the wall"
        );
        assert!(!door.hit(Vec2::new(2.0, -3.0), 0.6));
    }

    #[test]
    fn doors_face_into_the_room() {
        let area = Area {
            center: Vec2::ZERO,
            half_extents: Vec2::new(10.0, 7.0),
        };
        for inward in [Vec2::X, -Vec2::X, Vec2::Y, -Vec2::Y] {
            let door = wall_door(area, inward);
            assert!(area.contains(door.center));
            assert!(area.contains(door.in_front(1.0)));
            assert!((facing(door.yaw()) - inward).length() < EPS);
            assert!(door.hit(area.clamp(door.in_front(0.1), 0.35), 0.6));
        }
        assert_eq!(wall_door(area, Vec2::X).center, Vec2::new(-10.0, 0.0));
        assert_eq!(wall_door(area, -Vec2::Y).center, Vec2::new(0.0, 7.0));
    }

    #[test]
    fn back_wall_doors_are_centred_spaced_and_capped() {
        let area = Area {
            center: Vec2::ZERO,
            half_extents: Vec2::new(10.0, 7.0),
        };
        let doors = back_wall_doors(area, 3);
        let xs: Vec<f32> = doors.iter().map(|d| d.center.x).collect();
        assert_eq!(xs, vec![-DOOR_SPACING, 0.0, DOOR_SPACING]);
        assert!(
            doors
                .iter()
                .all(|d| d.center.y == -7.0 && d.inward == Vec2::Y)
        );
        let many = back_wall_doors(area, 50);
        assert_eq!(many.len(), 7);
        assert!(many.iter().all(|d| d.center.x.abs() + d.half_width < 10.0));
    }

    #[test]
    fn ring_glows_only_when_speaking() {
        assert!(ring_glow(0.0) < 0.1);
        assert!(ring_glow(SPEAKING_LEVEL) < 0.1);
        assert!(ring_glow(0.05) > 2.0);
        assert!(ring_glow(0.15) > ring_glow(0.05));
        assert_eq!(ring_glow(5.0), ring_glow(1.0));
    }

    #[test]
    fn approach_fraction_is_frame_rate_independent() {
        let one = approach_fraction(6.0, 0.1);
        let two = approach_fraction(6.0, 0.05);
        // Two half steps cover as much as one whole step.
        assert!(((1.0 - two) * (1.0 - two) - (1.0 - one)).abs() < EPS);
        assert_eq!(approach_fraction(6.0, 0.0), 0.0);
    }
}
