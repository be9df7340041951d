//! Container names: validation and random `adjective_surname` names in Docker's style.

const LEFT: &[&str] = &[
    "admiring",
    "adoring",
    "agitated",
    "amazing",
    "angry",
    "awesome",
    "blissful",
    "bold",
    "boring",
    "brave",
    "busy",
    "charming",
    "clever",
    "compassionate",
    "competent",
    "cool",
    "dazzling",
    "determined",
    "dreamy",
    "eager",
    "ecstatic",
    "elastic",
    "elegant",
    "epic",
    "exciting",
    "fervent",
    "festive",
    "focused",
    "friendly",
    "frosty",
    "gallant",
    "gifted",
    "goofy",
    "gracious",
    "happy",
    "hopeful",
    "hungry",
    "inspiring",
    "jolly",
    "jovial",
    "keen",
    "kind",
    "laughing",
    "loving",
    "lucid",
    "magical",
    "modest",
    "musing",
    "nice",
    "nifty",
    "nostalgic",
    "objective",
    "optimistic",
    "peaceful",
    "pedantic",
    "pensive",
    "practical",
    "priceless",
    "quirky",
    "quizzical",
    "relaxed",
    "reverent",
    "romantic",
    "serene",
    "sharp",
    "silly",
    "sleepy",
    "stoic",
    "strange",
    "sweet",
    "tender",
    "thirsty",
    "trusting",
    "upbeat",
    "vibrant",
    "vigilant",
    "wizardly",
    "wonderful",
    "youthful",
    "zealous",
    "zen",
];

const RIGHT: &[&str] = &[
    "agnesi",
    "albattani",
    "allen",
    "archimedes",
    "babbage",
    "banach",
    "bardeen",
    "bell",
    "blackwell",
    "bohr",
    "booth",
    "borg",
    "bose",
    "brahmagupta",
    "brattain",
    "carson",
    "cerf",
    "chandrasekhar",
    "clarke",
    "curie",
    "darwin",
    "dijkstra",
    "easley",
    "einstein",
    "elion",
    "euclid",
    "euler",
    "fermat",
    "fermi",
    "feynman",
    "franklin",
    "galileo",
    "gauss",
    "goldberg",
    "goodall",
    "hamilton",
    "hawking",
    "heisenberg",
    "hertz",
    "hodgkin",
    "hopper",
    "hypatia",
    "jackson",
    "jemison",
    "johnson",
    "kepler",
    "knuth",
    "lamarr",
    "lamport",
    "leakey",
    "lovelace",
    "mccarthy",
    "meitner",
    "mendel",
    "mirzakhani",
    "morse",
    "newton",
    "nobel",
    "noether",
    "pasteur",
    "payne",
    "perlman",
    "pike",
    "poincare",
    "ramanujan",
    "ritchie",
    "shannon",
    "sinoussi",
    "tesla",
    "thompson",
    "torvalds",
    "turing",
    "volhard",
    "wiles",
    "wilson",
    "wozniak",
    "wright",
    "yalow",
    "yonath",
];

pub fn random_name(retry: usize) -> String {
    let l = LEFT[rand::random_range(0..LEFT.len())];
    let r = RIGHT[rand::random_range(0..RIGHT.len())];
    if retry > 0 {
        format!("{l}_{r}{}", rand::random_range(0..10))
    } else {
        format!("{l}_{r}")
    }
}

/// Docker's `[a-zA-Z0-9][a-zA-Z0-9_.-]+` (after an optional leading `/`).
pub fn valid(name: &str) -> bool {
    let n = name.strip_prefix('/').unwrap_or(name);
    let mut chars = n.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphanumeric() => {}
        _ => return false,
    }
    n.len() >= 2 && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

#[cfg(test)]
mod tests {
    #[test]
    fn names() {
        assert!(super::valid("web"));
        assert!(super::valid("/web-1.a_b"));
        assert!(!super::valid("a"));
        assert!(!super::valid("-x"));
        assert!(!super::valid("a b"));
        let n = super::random_name(0);
        assert!(super::valid(&n), "{n}");
    }
}
