//! The meeting space without a window: the player is moved by setting its transform,
//! as walking would, and doors must join and leave real calls.

mod common;

use std::time::Duration;

use bevy::prelude::*;
use common::*;
use meetspace::call::{CallCommand, SpacePeople};
use meetspace::signaling::protocol::{DisplayName, SpaceArea};
use meetspace::space::{Door, DoorKind, Location, Player};

const SECOND: Duration = Duration::from_secs(1);

/// A headless client with the space, called Walker.
fn walker(url: &str) -> App {
    space_client(url, "Walker")
}

/// Puts the player on the floor spot at the middle of the first door matching `kind`.
fn step_into(app: &mut App, kind: impl Fn(&DoorKind) -> bool) {
    let world = app.world_mut();
    let spot = world
        .query::<&Door>()
        .iter(world)
        .find(|door| kind(&door.kind))
        .map(|door| door.placement.center + door.placement.inward * 0.2)
        .expect("no such door");
    let mut players = world.query_filtered::<&mut Transform, With<Player>>();
    let mut transform = players.single_mut(world).unwrap();
    transform.translation.x = spot.x;
    transform.translation.z = spot.y;
}

fn location(app: &App) -> Location {
    *app.world().resource::<Location>()
}

fn has_public_door(app: &mut App) -> bool {
    let world = app.world_mut();
    world
        .query::<&Door>()
        .iter(world)
        .any(|door| matches!(door.kind, DoorKind::Public(_)))
}

#[test]
fn walking_through_a_door_joins_the_room_and_walking_out_leaves_it() {
    let server = TestServer::start();
    let mut host = client(&server.url, "Host");
    let name = DisplayName::parse("Host").unwrap();
    host.world_mut().write_message(CallCommand::CreateRoom {
        name,
        public_title: Some(DisplayName::parse("Standup").unwrap()),
    });
    let mut walker = walker(&server.url);
    assert!(
        pump_until(&mut [&mut host, &mut walker], 10 * SECOND, |apps| {
            room_of(apps[0]).is_some() && has_public_door(apps[1])
        }),
        "the lobby never showed the public room's door"
    );
    assert_eq!(location(&walker), Location::Lobby);

    step_into(&mut walker, |kind| matches!(kind, DoorKind::Public(_)));
    let joined = pump_until(&mut [&mut host, &mut walker], 10 * SECOND, |apps| {
        room_of(apps[1]) == room_of(apps[0])
            && participant_names(apps[1]) == ["Host"]
            && self_view_frames(apps[1]) > 5
    });
    assert!(
        joined,
        "walking through the door did not join: {:?}",
        notices(&walker)
    );
    assert_eq!(location(&walker), Location::Room);

    step_into(&mut walker, |kind| matches!(kind, DoorKind::Exit));
    assert!(
        pump_until(&mut [&mut host, &mut walker], 5 * SECOND, |apps| {
            state(apps[1]).in_lobby() && participant_names(apps[0]).is_empty()
        }),
        "walking out did not leave the call for the lobby: {:?}",
        state(&walker)
    );
    assert_eq!(location(&walker), Location::Lobby);
    // Alone in the lobby: no camera, no microphone.
    assert_capture_stopped(&mut walker);
}

#[test]
fn the_new_room_door_creates_a_public_room_named_after_the_player() {
    let server = TestServer::start();
    let mut walker = walker(&server.url);
    // Out of any room the client is in the lobby; the door takes it from there.
    let in_lobby = pump_until(&mut [&mut walker], 5 * SECOND, |apps| {
        state(apps[0]).in_lobby()
    });
    assert!(in_lobby, "the client did not enter the lobby");
    step_into(&mut walker, |kind| matches!(kind, DoorKind::NewRoom));
    assert!(pump_until(&mut [&mut walker], 5 * SECOND, |apps| room_of(
        apps[0]
    )
    .is_some_and(|room| !room.is_lobby())));
    assert_eq!(location(&walker), Location::Room);

    let mut lobby = client(&server.url, "Lobby");
    lobby.world_mut().write_message(CallCommand::ListRooms);
    assert!(pump_until(
        &mut [&mut walker, &mut lobby],
        5 * SECOND,
        |apps| {
            apps[1]
                .world()
                .resource::<meetspace::call::PublicRooms>()
                .0
                .iter()
                .any(|room| room.title.as_str() == "Walker's room")
        }
    ));
}

/// Who `app` is told is where in the space: "area: names" for each area.
fn space_of(app: &App) -> Vec<String> {
    app.world()
        .resource::<SpacePeople>()
        .by_area()
        .iter()
        .map(|area| {
            let place = match &area.area {
                SpaceArea::Lobby => "lobby",
                SpaceArea::Room { title, .. } => title.as_str(),
                SpaceArea::Private => "private",
            };
            let names: Vec<&str> = area.names.iter().map(DisplayName::as_str).collect();
            format!("{place}: {}", names.join(", "))
        })
        .collect()
}

#[test]
fn everyone_in_the_space_is_told_who_is_in_which_area_as_people_come_go_and_move() {
    let server = TestServer::start();
    let mut host = client(&server.url, "Host");
    host.world_mut().write_message(CallCommand::CreateRoom {
        name: DisplayName::parse("Host").unwrap(),
        public_title: Some(DisplayName::parse("Standup").unwrap()),
    });
    let mut hidden = client(&server.url, "Hidden");
    create_room(&mut hidden);
    let mut walker = walker(&server.url);
    let told = pump_until(
        &mut [&mut host, &mut hidden, &mut walker],
        10 * SECOND,
        |apps| space_of(apps[2]) == ["Standup: Host", "private: Hidden"],
    );
    assert!(told, "the lobby was told {:?}", space_of(&walker));

    // A guest enters the lobby: everyone hears of it; then it walks into the standup.
    let mut guest = space_client(&server.url, "Guest");
    let mut apps = [&mut host, &mut hidden, &mut walker, &mut guest];
    let arrived = pump_until(&mut apps, 10 * SECOND, |apps| {
        space_of(apps[0]) == ["lobby: Walker, Guest", "private: Hidden"]
            && space_of(apps[2]) == ["lobby: Guest", "Standup: Host", "private: Hidden"]
            && has_public_door(apps[3])
    });
    assert!(arrived, "the host was told {:?}", space_of(apps[0]));
    step_into(apps[3], |kind| matches!(kind, DoorKind::Public(_)));
    let moved = pump_until(&mut apps, 10 * SECOND, |apps| {
        space_of(apps[2]) == ["Standup: Host, Guest", "private: Hidden"]
            && space_of(apps[3]) == ["lobby: Walker", "Standup: Host", "private: Hidden"]
    });
    assert!(
        moved,
        "after the guest went through the door, the walker was told {:?}, the guest {:?}",
        space_of(apps[2]),
        space_of(apps[3])
    );

    // The host hangs up: gone for everyone; the hidden room's one person leaves too.
    leave(apps[0]);
    leave(apps[1]);
    let gone = pump_until(&mut apps, 10 * SECOND, |apps| {
        space_of(apps[2]) == ["Standup: Guest"] && space_of(apps[0]).is_empty()
    });
    assert!(gone, "the walker was told {:?}", space_of(apps[2]));
}
