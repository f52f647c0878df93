//! Who is where in the space beyond our own room, as the server tells a client that
//! watches it (`watch_space`, `space`, `person_entered`, `person_left` in
//! docs/signaling.md): the news, and the app's record of it.

use bevy::prelude::Resource;

use crate::signaling::protocol::{DisplayName, PeerId, RoomId, SpaceArea, SpacePerson};

/// What the server told about the space.
#[derive(Debug, Clone, PartialEq)]
pub enum SpaceNews {
    /// Everyone else in the space now (`total` counts those left out of the list too).
    Everyone {
        /// Who is where.
        people: Vec<SpacePerson>,
        /// How many there are.
        total: usize,
    },
    /// Someone entered an area.
    Entered(SpacePerson),
    /// Someone left their area.
    Left(PeerId),
}

/// Everyone else in the space and where they are, in the order the server told them;
/// empty out of a call (and with a Firestore call, which has no space around it).
#[derive(Resource, Debug, Clone, Default, PartialEq, Eq)]
pub struct SpacePeople {
    people: Vec<SpacePerson>,
    /// People the server did not name (past its `space` list's limit).
    unnamed: usize,
}

/// The people of one area, for showing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AreaPeople {
    /// The area.
    pub area: SpaceArea,
    /// Who is there, by name, in the order they came.
    pub names: Vec<DisplayName>,
}

impl SpacePeople {
    /// Takes in what the server told.
    pub fn apply(&mut self, news: SpaceNews) {
        match news {
            SpaceNews::Everyone { people, total } => {
                self.unnamed = total.saturating_sub(people.len());
                self.people = people;
            }
            SpaceNews::Entered(person) => {
                self.people.retain(|p| p.peer_id != person.peer_id);
                self.people.push(person);
            }
            SpaceNews::Left(peer_id) => self.people.retain(|p| p.peer_id != peer_id),
        }
    }

    /// Forgets everyone (the call ended).
    pub fn clear(&mut self) {
        *self = Self::default();
    }

    /// How many other people are in the space.
    pub fn count(&self) -> usize {
        self.people.len() + self.unnamed
    }

    /// Who is in the public room `room`, by name.
    pub fn in_room(&self, room: &RoomId) -> Vec<&DisplayName> {
        self.people
            .iter()
            .filter(|p| matches!(&p.area, SpaceArea::Room { room: r, .. } if r == room))
            .map(|p| &p.name)
            .collect()
    }

    /// The people by area: the lobby first, then public rooms in the order their first
    /// person came, then private rooms together.
    pub fn by_area(&self) -> Vec<AreaPeople> {
        let mut areas: Vec<AreaPeople> = Vec::new();
        for person in &self.people {
            match areas.iter_mut().find(|a| a.area == person.area) {
                Some(area) => area.names.push(person.name.clone()),
                None => areas.push(AreaPeople {
                    area: person.area.clone(),
                    names: vec![person.name.clone()],
                }),
            }
        }
        areas.sort_by_key(|a| match a.area {
            SpaceArea::Lobby => 0,
            SpaceArea::Room { .. } => 1,
            SpaceArea::Private => 2,
        });
        areas
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person(id: &str, name: &str, area: SpaceArea) -> SpacePerson {
        SpacePerson {
            peer_id: PeerId::parse(id).unwrap(),
            name: DisplayName::parse(name).unwrap(),
            area,
        }
    }

    fn standup() -> SpaceArea {
        SpaceArea::Room {
            room: RoomId::parse("standup0room").unwrap(),
            title: DisplayName::parse("Standup").unwrap(),
        }
    }

    fn names(area: &AreaPeople) -> Vec<&str> {
        area.names.iter().map(DisplayName::as_str).collect()
    }

    #[test]
    fn news_keeps_everyone_in_their_area_once_and_areas_come_lobby_first() {
        let mut space = SpacePeople::default();
        space.apply(SpaceNews::Everyone {
            people: vec![
                person("aaaaaaaaaa", "Ann", SpaceArea::Private),
                person("bbbbbbbbbb", "Bo", standup()),
                person("cccccccccc", "Cy", SpaceArea::Lobby),
            ],
            total: 5,
        });
        assert_eq!(space.count(), 5, "two more than named");
        // Bo goes through the door into the lobby (a new id there); Ann leaves.
        space.apply(SpaceNews::Left(PeerId::parse("bbbbbbbbbb").unwrap()));
        space.apply(SpaceNews::Entered(person(
            "dddddddddd",
            "Bo",
            SpaceArea::Lobby,
        )));
        space.apply(SpaceNews::Left(PeerId::parse("aaaaaaaaaa").unwrap()));
        // Told twice (the list and the news crossed): still once.
        space.apply(SpaceNews::Entered(person("eeeeeeeeee", "Di", standup())));
        space.apply(SpaceNews::Entered(person("eeeeeeeeee", "Di", standup())));
        let areas = space.by_area();
        assert_eq!(areas.len(), 2, "{areas:?}");
        assert_eq!(
            (&areas[0].area, names(&areas[0])),
            (&SpaceArea::Lobby, vec!["Cy", "Bo"])
        );
        assert_eq!((&areas[1].area, names(&areas[1])), (&standup(), vec!["Di"]));
        let room = RoomId::parse("standup0room").unwrap();
        assert_eq!(space.in_room(&room).len(), 1);
        space.clear();
        assert_eq!(space.count(), 0);
    }
}
