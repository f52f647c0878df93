//! The lobby's rule for media connections: whom we want to see and hear, by distance.
//!
//! Each side picks on its own, from where everyone stands: the people within earshot,
//! the nearest [`NearbySettings::max_connections`] of them. Someone we hold a
//! connection with stays wanted until past earshot plus a margin, so that a person
//! standing at the edge does not flicker in and out. A connection needs both sides to
//! want it (see `Room`), so neither holds more than its maximum.

use std::collections::{HashMap, HashSet};

use crate::config::NearbySettings;
use crate::signaling::protocol::{PeerId, Pose};

/// Whom someone standing at `own` wants media with: those of `others` within earshot
/// (within earshot plus the margin for those in `held`), the nearest
/// `max_connections` of them (ties by id, so both sides of a tie agree).
pub fn choose(
    own: &Pose,
    others: &HashMap<PeerId, Pose>,
    held: &HashSet<PeerId>,
    settings: &NearbySettings,
) -> HashSet<PeerId> {
    let mut near: Vec<(f32, &PeerId)> = others
        .iter()
        .filter_map(|(peer, pose)| {
            let distance = own.distance(pose);
            let reach = if held.contains(peer) {
                settings.earshot + settings.margin
            } else {
                settings.earshot
            };
            (distance < reach).then_some((distance, peer))
        })
        .collect();
    near.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(b.1)));
    near.into_iter()
        .take(settings.max_connections)
        .map(|(_, peer)| peer.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(x: f32) -> Pose {
        Pose::new(x, 0.0, 0.0, false).expect("a valid pose")
    }

    fn peer(raw: &str) -> PeerId {
        PeerId::parse(raw).expect("a valid id")
    }

    #[test]
    fn earshot_opens_the_margin_keeps_and_the_nearest_win() {
        let settings = NearbySettings {
            max_connections: 2,
            ..NearbySettings::default()
        };
        let others: HashMap<PeerId, Pose> = [("a", 1.0), ("b", 4.9), ("c", 6.0), ("d", 3.0)]
            .into_iter()
            .map(|(id, x)| (peer(id), at(x)))
            .collect();
        let none = HashSet::new();
        let chosen = choose(&at(0.0), &others, &none, &settings);
        assert_eq!(chosen, HashSet::from([peer("a"), peer("d")]));

        // c at 6 m is kept while held (earshot 5 + margin 2), if it is among the nearest.
        let wide = NearbySettings::default();
        let held = HashSet::from([peer("c")]);
        assert!(choose(&at(0.0), &others, &held, &wide).contains(&peer("c")));
        assert!(!choose(&at(0.0), &others, &none, &wide).contains(&peer("c")));
        assert!(!choose(&at(-1.1), &others, &held, &wide).contains(&peer("c")));
    }
}
