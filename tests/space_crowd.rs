//! A crowd wandering one lobby: bots of this process (real WebRTC connections, a real
//! signaling server on loopback) walk about at random. No client ever holds more than
//! K media connections, and the pairs that should be connected (within earshot, each
//! among the other's nearest K, for more than `SETTLE`) are. Ten people: what these 2
//! cores carry with every bot's video and audio in one process (`meetspace bench
//! --space 10,30` prints bigger crowds).

use std::time::Duration;

use meetspace::bench::space::{SETTLE, wander};
use meetspace::config::NearbySettings;

#[test]
fn a_wandering_crowd_holds_at_most_k_connections_and_links_those_near() {
    let figures = wander(10, Duration::from_secs(30)).expect("the crowd wanders");
    println!(
        "{} people for {:.0} s: connections max {} mean {:.1}; {} of {} settled pair samples \
         connected; {} openings; {} poses timed",
        figures.people,
        figures.seconds,
        figures.max_connections,
        figures.mean_connections,
        figures.settled_pairs_connected,
        figures.settled_pairs,
        figures.first_frame_ms.len(),
        figures.pose_latency_ms.len()
    );
    let most = NearbySettings::default().max_connections;
    assert!(
        figures.max_connections <= most,
        "a client held {} connections (at most {most})",
        figures.max_connections
    );
    assert!(
        figures.settled_pairs > 0,
        "no pair stayed near for {SETTLE:?}: the crowd never met"
    );
    assert!(
        figures.connected_share() >= 0.9,
        "only {:.1} % of the pairs near for over {SETTLE:?} were connected",
        100.0 * figures.connected_share()
    );
}
