//! The mutants accepted as survivors of the mutation pass (`scripts/mutants.sh`, issue 18), in
//! `scripts/mutants-accepted.txt`: each names the rule it touches and says why it is equivalent
//! or harmless within the bounds. This test pins which rules have accepted survivors, so that a
//! new survivor in another rule is a change someone has to make here, on purpose.

use watermark_model::rules::RULE_COUNT;

/// The rules with accepted survivors ("-": code that decides no rule).
const ACCEPTED_RULES: &[&str] = &[
    "-", "R11", "R12", "R17", "R22", "R25", "R27", "R28", "R34", "R35", "R38", "R39", "R41", "R43",
    "R49", "R5", "R51", "R61", "R7", "R8", "R9",
];

struct Accepted {
    rule: String,
    name: String,
    reason: String,
}

fn accepted() -> Vec<Accepted> {
    let text = include_str!("../scripts/mutants-accepted.txt");
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            // A mutant's name may hold ` | ` itself (a match arm of two patterns); the rule and
            // the reason do not.
            let fields = l
                .split_once(" | ")
                .and_then(|(rule, rest)| Some((rule, rest.rsplit_once(" | ")?)));
            let Some((rule, (name, reason))) = fields else {
                panic!("not `rule | mutant | reason`: {l}");
            };
            Accepted {
                rule: rule.trim().to_string(),
                name: name.trim().to_string(),
                reason: reason.trim().to_string(),
            }
        })
        .collect()
}

#[test]
fn every_accepted_survivor_names_a_rule_a_mutant_of_the_model_and_a_reason() {
    let list = accepted();
    for a in &list {
        let known_rule = a.rule == "-"
            || a.rule
                .strip_prefix('R')
                .and_then(|n| n.parse::<usize>().ok())
                .is_some_and(|n| n < RULE_COUNT);
        assert!(known_rule, "{}: unknown rule {}", a.name, a.rule);
        assert!(
            a.name.starts_with("model/src/") && a.name.contains(": "),
            "{}: not a mutant of model/src as cargo-mutants names it, without line and column",
            a.name
        );
        assert!(
            !a.name.split(": ").next().unwrap().contains(':'),
            "{}: leave out the line and column, they move with every edit",
            a.name
        );
        assert!(
            a.reason.split_whitespace().count() >= 5,
            "{}: say why it is equivalent or harmless",
            a.name
        );
    }
    let mut names: Vec<&str> = list.iter().map(|a| a.name.as_str()).collect();
    names.sort_unstable();
    let before = names.len();
    names.dedup();
    assert_eq!(names.len(), before, "a mutant is listed twice");
}

#[test]
fn the_rules_with_accepted_survivors_are_pinned() {
    let mut rules: Vec<String> = accepted().into_iter().map(|a| a.rule).collect();
    rules.sort();
    rules.dedup();
    let mut pinned: Vec<String> = ACCEPTED_RULES.iter().map(|r| r.to_string()).collect();
    pinned.sort();
    assert_eq!(
        rules, pinned,
        "the rules with accepted survivors changed: a new survivor needs a check, or a reason \
         here and in ACCEPTED_RULES"
    );
}
