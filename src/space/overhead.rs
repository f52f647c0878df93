//! What people show over their heads: a "hand raised" sign while their hand is up, and
//! for a few seconds after they write in the chat, a bubble with what they wrote. Both
//! hang above the name on the person's panel, so they follow the avatar (or the panel
//! on the gallery's circle) and shrink with it.

use std::collections::HashMap;
use std::time::Duration;

use bevy::platform::time::Instant;
use bevy::prelude::*;

use super::panels::{Panel, SCREEN_SIZE, SCREEN_Y};
use super::sign_material::sign_material;
use crate::call::{ChatLog, HandRaised, Participant};
use crate::media::{SignPainter, SignStyle};
use crate::signaling::protocol::PeerId;

/// How long a chat bubble stays over its sender.
pub const BUBBLE_SHOWN: Duration = Duration::from_secs(5);
/// Characters on one line of a bubble.
const BUBBLE_LINE_CHARS: usize = 28;
/// Lines in a bubble; longer messages end in "...".
const BUBBLE_LINES: usize = 3;
/// The hand sign's size, metres (at full panel size).
const HAND_SIZE: Vec2 = Vec2::new(1.0, 0.3);
/// The bubble's size, metres (at full panel size).
const BUBBLE_SIZE: Vec2 = Vec2::new(1.8, 0.6);
/// The bubble's texture size, pixels.
const BUBBLE_PIXELS: UVec2 = UVec2::new(540, 180);
/// Where the name sign's top is, above the panel's root.
const NAME_TOP: f32 = SCREEN_Y + SCREEN_SIZE.y / 2.0 + 0.4;

/// The meshes and the hand's material every panel shares.
#[derive(Resource)]
pub(super) struct OverheadKit {
    hand: Handle<Mesh>,
    hand_material: Handle<StandardMaterial>,
    bubble: Handle<Mesh>,
}

/// The signs over one panel (on the panel's root entity).
#[derive(Component, Debug)]
pub struct Overhead {
    hand: Entity,
    bubble: Entity,
    bubble_material: Handle<StandardMaterial>,
    /// When the message the bubble shows arrived; `None` while it is hidden.
    bubble_from: Option<Instant>,
}

impl Overhead {
    /// The hand sign's entity.
    pub fn hand(&self) -> Entity {
        self.hand
    }

    /// The bubble's entity.
    pub fn bubble(&self) -> Entity {
        self.bubble
    }
}

pub(super) fn init_overhead_kit(
    painter: Option<Res<SignPainter>>,
    mut images: ResMut<Assets<Image>>,
    mut meshes: ResMut<Assets<Mesh>>,
    mut materials: ResMut<Assets<StandardMaterial>>,
    mut commands: Commands,
) {
    let hand_material = sign_material(
        painter.as_deref(),
        &mut images,
        &["Hand raised"],
        UVec2::new(300, 90),
        SignStyle {
            background: [250, 200, 40, 255],
            text: [30, 25, 10, 255],
        },
    );
    commands.insert_resource(OverheadKit {
        hand: meshes.add(Rectangle::from_size(HAND_SIZE)),
        hand_material: materials.add(hand_material),
        bubble: meshes.add(Rectangle::from_size(BUBBLE_SIZE)),
    });
}

/// Gives each new panel its hand sign and bubble, both hidden.
pub(super) fn spawn_overhead(
    panels: Query<Entity, (With<Panel>, Without<Overhead>)>,
    kit: Option<Res<OverheadKit>>,
    mut materials: ResMut<Assets<StandardMaterial>>,
    mut commands: Commands,
) {
    let Some(kit) = kit else { return };
    for root in &panels {
        let hand = commands
            .spawn((
                Mesh3d(kit.hand.clone()),
                MeshMaterial3d(kit.hand_material.clone()),
                Transform::from_xyz(0.0, NAME_TOP + HAND_SIZE.y / 2.0, 0.0),
                Visibility::Hidden,
                ChildOf(root),
            ))
            .id();
        let bubble_material = materials.add(StandardMaterial {
            unlit: true,
            ..default()
        });
        let bubble_y = NAME_TOP + HAND_SIZE.y + 0.1 + BUBBLE_SIZE.y / 2.0;
        let bubble = commands
            .spawn((
                Mesh3d(kit.bubble.clone()),
                MeshMaterial3d(bubble_material.clone()),
                Transform::from_xyz(0.0, bubble_y, 0.0),
                Visibility::Hidden,
                ChildOf(root),
            ))
            .id();
        commands.entity(root).insert(Overhead {
            hand,
            bubble,
            bubble_material,
            bubble_from: None,
        });
    }
}

/// Shows the hand sign over each participant whose hand is raised.
pub(super) fn show_hands(
    panels: Query<(&Panel, &Overhead)>,
    hands: Query<&HandRaised>,
    mut visibility: Query<&mut Visibility>,
) {
    for (panel, overhead) in &panels {
        let raised = hands.get(panel.participant).is_ok_and(|hand| hand.0);
        if let Ok(mut shown) = visibility.get_mut(overhead.hand) {
            shown.set_if_neq(if raised {
                Visibility::Inherited
            } else {
                Visibility::Hidden
            });
        }
    }
}

/// Shows each sender's newest chat message over them for [`BUBBLE_SHOWN`].
pub(super) fn show_bubbles(
    chat: Res<ChatLog>,
    painter: Option<Res<SignPainter>>,
    people: Query<&Participant>,
    mut panels: Query<(&Panel, &mut Overhead)>,
    mut visibility: Query<&mut Visibility>,
    mut images: ResMut<Assets<Image>>,
    mut materials: ResMut<Assets<StandardMaterial>>,
) {
    let now = Instant::now();
    let mut newest: HashMap<&PeerId, (Instant, &str)> = HashMap::new();
    let recent = chat
        .lines
        .iter()
        .rev()
        .take_while(|(at, _)| now.saturating_duration_since(*at) < BUBBLE_SHOWN);
    for (at, line) in recent {
        newest
            .entry(&line.from)
            .or_insert((*at, line.text.as_str()));
    }
    for (panel, mut overhead) in &mut panels {
        let Ok(person) = people.get(panel.participant) else {
            continue;
        };
        let message = newest.get(&person.peer_id).copied();
        let from = message.map(|(at, _)| at);
        if overhead.bubble_from == from {
            continue;
        }
        overhead.bubble_from = from;
        if let Some((_, text)) = message {
            let lines = bubble_lines(text);
            let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
            let painted = sign_material(
                painter.as_deref(),
                &mut images,
                &lines,
                BUBBLE_PIXELS,
                SignStyle {
                    background: [245, 245, 240, 255],
                    text: [20, 20, 24, 255],
                },
            );
            if let Some(mut material) = materials.get_mut(&overhead.bubble_material) {
                *material = painted;
            }
        }
        if let Ok(mut shown) = visibility.get_mut(overhead.bubble) {
            shown.set_if_neq(if from.is_some() {
                Visibility::Inherited
            } else {
                Visibility::Hidden
            });
        }
    }
}

/// `text` broken at spaces into at most [`BUBBLE_LINES`] lines of at most
/// [`BUBBLE_LINE_CHARS`] characters (a longer word is cut); what does not fit ends the
/// last line with "...".
pub fn bubble_lines(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut cut = false;
    for word in text.split_whitespace() {
        if word.chars().count() > BUBBLE_LINE_CHARS {
            cut = true;
        }
        let word: String = word.chars().take(BUBBLE_LINE_CHARS).collect();
        let fits = lines.last().is_some_and(|line: &String| {
            line.chars().count() + 1 + word.chars().count() <= BUBBLE_LINE_CHARS
        });
        if fits && let Some(line) = lines.last_mut() {
            line.push(' ');
            line.push_str(&word);
        } else if lines.len() == BUBBLE_LINES {
            cut = true;
            break;
        } else {
            lines.push(word);
        }
    }
    if cut && let Some(last) = lines.last_mut() {
        let kept: String = last.chars().take(BUBBLE_LINE_CHARS - 3).collect();
        *last = format!("{kept}...");
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bubble_wraps_at_spaces_and_ends_what_does_not_fit() {
        assert_eq!(bubble_lines("Hi, got a minute?"), vec!["Hi, got a minute?"]);
        assert_eq!(
            bubble_lines("the quick brown fox jumps over the lazy dog"),
            vec!["the quick brown fox jumps", "over the lazy dog"]
        );
        let long = "word ".repeat(40);
        let lines = bubble_lines(&long);
        assert_eq!(lines.len(), BUBBLE_LINES);
        assert!(lines[2].ends_with("..."), "{lines:?}");
        assert!(
            lines
                .iter()
                .all(|line| line.chars().count() <= BUBBLE_LINE_CHARS)
        );
        let unbroken = "x".repeat(100);
        let cut = format!("{}...", "x".repeat(BUBBLE_LINE_CHARS - 3));
        assert_eq!(bubble_lines(&unbroken), vec![cut]);
    }
}
