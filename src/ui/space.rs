//! "Around the space": who else is in the lobby and in which room, in the overlay.

use bevy_egui::egui;

use crate::call::{AreaPeople, SpacePeople};
use crate::signaling::protocol::SpaceArea;

/// Most names shown for one area; the rest are counted.
const NAMES_SHOWN: usize = 6;

/// A collapsible list of the space's areas and who is in each (nothing while the
/// server has told of nobody), open at first when `open`.
pub(super) fn around_the_space(ui: &mut egui::Ui, space: &SpacePeople, open: bool) {
    if space.count() == 0 {
        return;
    }
    egui::CollapsingHeader::new(format!("Around the space ({})", space.count()))
        .id_salt("around_the_space")
        .default_open(open)
        .show(ui, |ui| {
            for area in space.by_area() {
                ui.label(describe(&area));
            }
        });
}

/// "Standup: Ann, Bo", with a count past [`NAMES_SHOWN`] names.
fn describe(area: &AreaPeople) -> String {
    let place = match &area.area {
        SpaceArea::Lobby => "Lobby",
        SpaceArea::Room { title, .. } => title.as_str(),
        SpaceArea::Private => "Private rooms",
    };
    let mut names: Vec<&str> = area
        .names
        .iter()
        .take(NAMES_SHOWN)
        .map(|name| name.as_str())
        .collect();
    let more = area.names.len().saturating_sub(NAMES_SHOWN);
    let more = format!("{more} more");
    if area.names.len() > NAMES_SHOWN {
        names.push(&more);
    }
    format!("{place}: {}", names.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signaling::protocol::DisplayName;

    #[test]
    fn an_area_names_its_first_six_and_counts_the_rest() {
        let names = |n: usize| -> Vec<DisplayName> {
            (0..n)
                .map(|i| DisplayName::parse(&format!("P{i}")).unwrap())
                .collect()
        };
        let lobby = AreaPeople {
            area: SpaceArea::Lobby,
            names: names(2),
        };
        assert_eq!(describe(&lobby), "Lobby: P0, P1");
        let crowd = AreaPeople {
            area: SpaceArea::Private,
            names: names(8),
        };
        assert_eq!(
            describe(&crowd),
            "Private rooms: P0, P1, P2, P3, P4, P5, 2 more"
        );
    }
}
