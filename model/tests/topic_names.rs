//! Topic names are interned (`Topic`): equal names are one address, and names read from
//! untrusted input are bounded by TOPIC_NAMES_MAX. Its own test binary, because filling the
//! interner is process-wide.

use watermark_model::types::{Topic, TopicPartition, TOPIC_NAMES_MAX};

#[test]
fn equal_names_are_one_topic_however_they_were_made() {
    let made = Topic::new("orders");
    let read: Topic = serde_json::from_str("\"orders\"").expect("a topic name");
    assert!(made == read);
    assert_eq!(made.as_str(), "orders");
    assert_eq!(serde_json::to_string(&read).unwrap(), "\"orders\"");
    assert!(Topic::new("orders") != Topic::new("payments"));
    // Ordered by name, as Kafka's tools list topics.
    assert!(Topic::new("a") < Topic::new("b"));
    let mut tps = [
        TopicPartition::new(&Topic::new("b"), 0),
        TopicPartition::new(&Topic::new("a"), 1),
        TopicPartition::new(&Topic::new("a"), 0),
    ];
    tps.sort();
    let shown: Vec<String> = tps.iter().map(|tp| tp.to_string()).collect();
    assert_eq!(shown, ["a-0", "a-1", "b-0"]);
}

#[test]
fn names_from_untrusted_input_are_bounded_and_known_names_still_read() {
    let known = Topic::new("known");
    let mut i = 0;
    // Fill the interner to its bound with names a datagram might carry.
    loop {
        match Topic::from_untrusted(&format!("forged-{i}")) {
            Ok(_) => i += 1,
            Err(e) => {
                assert!(e.contains("TOPIC_NAMES_MAX"), "{e}");
                break;
            }
        }
        assert!(i <= TOPIC_NAMES_MAX, "the bound was never reached");
    }
    // A new name is refused as a deserialization error (the datagram is malformed)...
    let refused = serde_json::from_str::<Topic>("\"one-more\"").unwrap_err();
    assert!(refused.to_string().contains("TOPIC_NAMES_MAX"), "{refused}");
    // ...while names already held still read, and the process's own names are still interned.
    let read: Topic = serde_json::from_str("\"known\"").unwrap();
    assert!(read == known);
    assert_eq!(
        Topic::new("created-by-the-operator").as_str(),
        "created-by-the-operator"
    );
}
